import Foundation
import Testing

/// `serve`'s tracing options are checked before anything starts.
@Suite struct TracingCLITests {
    @Test(arguments: [
        (
            ["--otlp-endpoint", "https://collector:4318"],
            "--otlp-endpoint expects an http:// URL (https is not supported)"
        ),
        (["--otlp-endpoint", "collector:4318"], "--otlp-endpoint expects an http://host:port URL"),
        (["--trace-sample-ratio", "1.5"], "--trace-sample-ratio must be between 0 and 1"),
    ])
    func refusesABadTracingOption(arguments: [String], message: String) throws {
        let result = try CLI.run(["serve", "--config", CLI.root] + arguments)
        #expect(result.status == 64)
        #expect(result.stderr.contains(message))
    }
}
