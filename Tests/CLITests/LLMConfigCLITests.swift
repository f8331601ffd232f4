import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A version's header values are secrets (SPEC §14): `validate`, `explain` (text and JSON), the
/// admin `/config` and `serve`'s log print header names with `***`, never a value, while the
/// value itself is read from the environment of the process that runs the command.
@Suite struct LLMConfigCLITests {
    static let secret = "sk-test-9f8e7d"
    static let environment = ProcessInfo.processInfo.environment.merging(
        ["SWITCHYARD_TEST_SECRET": secret],
        uniquingKeysWith: { $1 }
    )

    static func config(policyTail: String = "") throws -> String {
        try CLI.tempDirectory(files: [
            "routes/llm.yaml": """
            routes:
              - { name: chat, match: { path: /v1/chat/completions, method: POST }, model: assistant, protocol: openai }
            """,
            "policies/assistant.yaml": """
            model: assistant
            versions:
              ft:
                url: "http://127.0.0.1:9"
                model_name: llama-ft-v8
                headers:
                  Authorization: "Bearer ${SWITCHYARD_TEST_SECRET}"
                  x-inline: "\(secret)-inline"
            compare: { output: /choices, similarity_threshold: 0.8 }
            """ + policyTail,
        ])
    }

    /// Runs the built binary with `SWITCHYARD_TEST_SECRET` set; stdout and stderr together.
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLI.binary)
        process.arguments = arguments
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func validatePrintsNoHeaderValue() throws {
        let directory = try Self.config()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let r = try Self.run(["validate", directory])
        // Loads, with the warning that output is ignored on an openai-only model.
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("warning: compare output is ignored"))
        #expect(!r.output.contains(Self.secret))
    }

    @Test func validateErrorsAboutAHeaderValueQuoteNoValue() throws {
        let directory = try CLI.tempDirectory(files: [
            "routes/llm.yaml": """
            routes:
              - { name: chat, match: { path: /v1/chat/completions }, model: assistant, protocol: openai }
            """,
            "policies/assistant.yaml": """
            model: assistant
            versions:
              a: { url: "http://127.0.0.1:9", headers: { authorization: "${SWITCHYARD_TEST_SECRET}$" } }
              b: { url: "http://127.0.0.1:9", headers: { authorization: "\(Self.secret)${SWITCHYARD_TEST_UNSET_9f8e}" } }
              c: { url: "http://127.0.0.1:9", headers: { x-n: 98765, x-m: "\(Self.secret)${" } }
            split: { a: 100 }
            """,
        ])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let r = try Self.run(["validate", directory])
        #expect(r.status == 1)
        #expect(r.output.contains("policies/assistant.yaml:3:"))
        #expect(r.output.contains("environment variable SWITCHYARD_TEST_UNSET_9f8e is not set"))
        #expect(r.output.contains("4 errors"), "\(r.output)")
        #expect(!r.output.contains(Self.secret))
        #expect(!r.output.contains("98765"))
    }

    @Test func explainShowsModelNameAndHeaderNamesButNoValue() throws {
        let directory = try Self.config()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let text = try Self.run(["explain", "--config", directory, "POST", "/v1/chat/completions"])
        #expect(text.status == 0, "\(text.output)")
        #expect(text.output.contains("route: chat"))
        #expect(text.output.contains("protocol: openai"))
        #expect(text.output.contains("model_name: llama-ft-v8"))
        #expect(text.output.contains("headers: authorization: ***, x-inline: ***"))
        #expect(!text.output.contains(Self.secret))

        let json = try Self.run(["explain", "--config", directory, "--json", "POST", "/v1/chat/completions"])
        #expect(json.status == 0, "\(json.output)")
        #expect(!json.output.contains(Self.secret))
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        )
        #expect(object["model_name"] as? String == "llama-ft-v8")
        #expect(object["headers"] as? [String: String] == ["authorization": "***", "x-inline": "***"])
    }

    @Test func configOnTheAdminListenerAndServesLogShowNoHeaderValue() throws {
        let directory = try Self.config()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let serve = try ServeProcess(["--config", directory, "--workers", "1"], environment: Self.environment)
        defer { serve.kill() }
        let admin = serve.adminPort

        let response = try #require(
            DefaultConfigServeTests.roundTrip(
                port: admin,
                "GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
        )
        let text = String(decoding: response, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200"))
        #expect(!text.contains(Self.secret))
        let body = try #require(text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) })
        let document = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        let models = try #require(document["models"] as? [String: Any])
        let assistant = try #require(models["assistant"] as? [String: Any])
        let versions = try #require(assistant["versions"] as? [String: Any])
        let ft = try #require(versions["ft"] as? [String: Any])
        #expect(ft["model_name"] as? String == "llama-ft-v8")
        #expect(ft["headers"] as? [String: String] == ["authorization": "***", "x-inline": "***"])
        let routes = try #require(document["routes"] as? [[String: Any]])
        #expect(routes.first?["protocol"] as? String == "openai")

        serve.stop()
        let output = serve.stdout + serve.stderr
        #expect(output.contains("compare output is ignored"), "\(output)")
        #expect(!output.contains(Self.secret))
    }
}
