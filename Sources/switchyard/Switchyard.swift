import ArgumentParser
import Foundation
import Logging
import Policy
import Sidecar

@main
struct Switchyard: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchyard",
        abstract: "A sidecar reverse proxy that routes, canaries and shadows ML prediction calls.",
        version: VersionCommand.text,
        subcommands: [
            Serve.self, Validate.self, Explain.self, Report.self, VersionCommand.self, Bench.self, Schema.self,
        ]
    )
}

/// Exit codes: 0 success, 1 the thing checked is bad (invalid config, refused request), 2 usage.
enum Exit {
    static let problem = ExitCode(1)
}
