import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `switchyard serve` as a user runs it: the access log on standard output in each format (and
/// nothing there when it is off), and `--log-format json` lines with typed numbers and
/// millisecond times.
@Suite struct AccessLogCLITests {
    static func config() throws -> String {
        try CLI.tempDirectory(files: [
            "routes/routes.yaml": """
            routes:
              - { name: churn, match: { path: /predict, method: POST }, model: churn, protocol: tfserving }
            """,
            "policies/churn.yaml": """
            model: churn
            versions:
              v1: { embedded: linear, file: \(CLI.root)/examples/models/churn-linear-v1.json }
            split: { v1: 100 }
            """,
        ])
    }

    static func jsonLines(_ text: String) throws -> [[String: Any]] {
        try text.split(separator: "\n").map { line in
            try #require(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                "not a JSON object: \(line)"
            )
        }
    }

    static func isTimestamp(_ text: Any?) -> Bool {
        guard let text = text as? String else { return false }
        return text.wholeMatch(of: #/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/#) != nil
    }

    /// Runs the sidecar with `arguments` added, sends one prediction, stops it with SIGTERM, and
    /// returns what it wrote to standard output and standard error.
    static func serveOnce(_ arguments: [String]) throws -> (stdout: String, stderr: String) {
        let directory = try config()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let serve = try ServeProcess(["--config", directory, "--workers", "1", "--log-format", "json"] + arguments)
        defer { serve.kill() }
        let answer = try #require(
            DefaultConfigServeTests.post(
                port: serve.port,
                path: "/predict?user=alice",
                body: #"{"instances": [[12, 73.36, 2, 1]]}"#,
                headers: ["x-request-id": "cli-1"]
            )
        )
        #expect(answer.0 == 200)
        #expect(serve.stop() == 0)
        return (serve.stdout, serve.stderr)
    }

    @Test func theAccessLogGoesToStandardOutputAsJSON() throws {
        let (stdout, _) = try Self.serveOnce(["--access-log", "-"])
        let lines = try Self.jsonLines(stdout)
        try #require(lines.count == 1, "\(stdout)")
        #expect(lines[0]["request_id"] as? String == "cli-1")
        #expect(lines[0]["path"] as? String == "/predict")
        #expect(lines[0]["status"] as? Int == 200)
        #expect(lines[0]["version"] as? String == "v1")
        #expect(Self.isTimestamp(lines[0]["time"]))
    }

    @Test func theTextFormatIsOneLineOfFields() throws {
        let (stdout, _) = try Self.serveOnce(["--access-log", "-", "--access-log-format", "text"])
        let lines = stdout.split(separator: "\n")
        try #require(lines.count == 1, "\(stdout)")
        let fields = lines[0].split(separator: " ").map(String.init)
        #expect(fields.count == 17)
        #expect(Array(fields[1...5]) == ["cli-1", "live", "\"POST", "/predict\"", "200"])
        #expect(!stdout.contains("alice"))
    }

    @Test func withoutTheFlagNothingIsWrittenToStandardOutput() throws {
        let (stdout, stderr) = try Self.serveOnce([])
        #expect(stdout.isEmpty)
        #expect(!stderr.contains("cli-1"))
    }

    /// `--log-format json`: numbers logged as numbers are JSON numbers, times have milliseconds.
    @Test func jsonLogLinesHaveTypedNumbersAndMilliseconds() throws {
        let (_, stderr) = try Self.serveOnce([])
        let lines = try Self.jsonLines(stderr)
        #expect(!lines.isEmpty)
        for line in lines { #expect(Self.isTimestamp(line["ts"]), "\(line)") }
        let serving = try #require(lines.first { $0["msg"] as? String == "serving" })
        #expect(serving["workers"] is NSNumber && !(serving["workers"] is String))
        #expect(serving["workers"] as? Int == 1)
        #expect(serving["admin"] is String)
        let loaded = try #require(lines.first { $0["generation"] != nil })
        #expect(loaded["generation"] as? Int == 1)
        let draining = try #require(lines.first { $0["msg"] as? String == "draining" })
        #expect(draining["timeout_ms"] as? Int == 10_000)
        #expect(draining["signal"] as? String == "SIGTERM")
    }
}
