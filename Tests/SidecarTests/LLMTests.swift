import Foundation
import Logging
import Sidecar
import Testing

/// `examples/llm/fake-openai.py` on a free port: an OpenAI-compatible upstream that streams with
/// delays and records what it was sent.
final class FakeOpenAI: @unchecked Sendable {
    let process = Process()
    let port: Int
    let record: String

    init(_ arguments: [String]) throws {
        record = NSTemporaryDirectory() + "switchyard-fake-openai-\(UUID().uuidString).jsonl"
        let script = GRPCClients.packageRoot.appendingPathComponent("examples/llm/fake-openai.py").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u", script, "--port", "0", "--record", record] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first line says where it listens.
        var line: [UInt8] = []
        let handle = pipe.fileHandleForReading
        while true {
            let byte = handle.readData(ofLength: 1)
            guard let first = byte.first else { break }
            if first == UInt8(ascii: "\n") { break }
            line.append(first)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let last = text.split(separator: ":").last, let port = Int(last) else {
            process.terminate()
            throw TestFailure("fake-openai.py did not say where it listens: '\(text)'")
        }
        self.port = port
    }

    var url: String { "http://127.0.0.1:\(port)" }

    /// The requests it received, oldest first: `path`, `headers`, `body`.
    func requests() -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: record, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// Polls until it has received `count` requests (at most 10 s).
    func waitForRequests(_ count: Int) -> [[String: Any]] {
        var seen: [[String: Any]] = []
        eventually {
            seen = requests()
            return seen.count >= count
        }
        return seen
    }

    func stop() {
        if process.isRunning {
            // SIGKILL: a child started from a sidecar test thread inherits its blocked SIGTERM.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: record)
    }
}

/// OpenAI-compatible routes (SPEC §14) driven by the official `openai` Python client through a
/// sidecar in this process, against fake upstreams that stream with delays: model rewriting,
/// version headers and their secrecy, split and sticky by `user`, streaming event by event, shadows
/// sent without streaming, every comparison outcome, embeddings, and the token and time-to-first-
/// token metrics.
@Suite(.serialized) struct LLMTests {
    static let secret = "sk-live-secret-7f3a9c2e"
    static let secretVariable = "SWITCHYARD_LLM_TEST_KEY"

    static let scriptPath: String = {
        let path = NSTemporaryDirectory() + "switchyard-llm-client-\(getpid()).py"
        try? LLMClientScript.source.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    /// Runs one client scenario against the sidecar and returns what it printed.
    static func client(_ scenario: String, port: Int, _ argument: String = "") throws -> Any {
        let python = try GRPCClients.python.get()
        let (status, output) = runProcess(
            python,
            [scriptPath, scenario, "http://127.0.0.1:\(port)/v1", argument].filter { !$0.isEmpty }
        )
        guard status == 0, let line = output.split(separator: "\n").last,
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8))
        else {
            throw TestFailure("openai client scenario \(scenario) failed (\(status)):\n\(output)")
        }
        return object
    }

    static func object(_ value: Any?) -> [String: Any] { value as? [String: Any] ?? [:] }

    /// Comparison log records, once `count` are there (polled for up to 10 s).
    static func records(_ path: String, count: Int) -> [[String: Any]] {
        var lines: [[String: Any]] = []
        eventually {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            lines = text.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            return lines.count >= count
        }
        return lines
    }

    /// Two versions of `assistant` behind `/v1/chat/completions` and `/v1/completions` (split
    /// 50/50, sticky by the body's `user`, the secret in their `authorization`), shadowed by a
    /// cheaper model; the upstreams stream one word every `delayMilliseconds`.
    final class Setup {
        let config: TempConfig
        let sidecar: RunningSidecar
        let v7: FakeOpenAI
        let v8: FakeOpenAI
        let cheap: FakeOpenAI
        let comparisonLog: String
        let accessLog: String
        let logs = LogLines()

        init(delayMilliseconds: Int = 5) throws {
            setenv(LLMTests.secretVariable, LLMTests.secret, 1)
            let reply = "The capital of France is Paris."
            v7 = try FakeOpenAI(["--reply", reply, "--delay-ms", String(delayMilliseconds)])
            v8 = try FakeOpenAI(["--reply", reply, "--delay-ms", String(delayMilliseconds)])
            cheap = try FakeOpenAI(["--reply", "the capital of  FRANCE is paris.", "--delay-ms", "0"])
            comparisonLog = NSTemporaryDirectory() + "switchyard-llm-cmp-\(UUID().uuidString).jsonl"
            accessLog = NSTemporaryDirectory() + "switchyard-llm-access-\(UUID().uuidString).jsonl"
            config = try TempConfig(
                routes: """
                    routes:
                      - { name: chat, match: { path: /v1/chat/completions, method: POST }, model: assistant, protocol: openai }
                      - { name: completions, match: { path: /v1/completions, method: POST }, model: assistant, protocol: openai }
                    """,
                policies: [
                    "assistant": """
                    model: assistant
                    versions:
                      v7:
                        url: \(v7.url)
                        model_name: llama-3.1-8b-ft-v7
                        headers: { authorization: "Bearer ${\(LLMTests.secretVariable)}" }
                      v8:
                        url: \(v8.url)
                        model_name: llama-3.1-8b-ft-v8
                        headers: { authorization: "Bearer ${\(LLMTests.secretVariable)}" }
                      cheap: { url: \(cheap.url), model_name: cheap-1b }
                    split: { v7: 50, v8: 50 }
                    sticky: body:/user
                    shadow:
                      - { version: cheap, percent: 100 }
                    compare: { log: \(comparisonLog) }
                    """
                ]
            )
            let logs = self.logs
            var logger = Logger(label: "llm-test") { _ in CapturingHandler(logs) }
            logger.logLevel = .trace
            let accessLog = self.accessLog
            sidecar = try RunningSidecar(config: config.path, logger: logger) { options in
                options.accessLogPath = accessLog
            }
        }

        func metrics() -> String { httpRequest(port: sidecar.adminPort, "GET", "/metrics")?.bodyText ?? "" }

        func stop() {
            sidecar.stop()
            for upstream in [v7, v8, cheap] { upstream.stop() }
            config.remove()
            try? FileManager.default.removeItem(atPath: comparisonLog)
            try? FileManager.default.removeItem(atPath: accessLog)
        }
    }

    @Test func modelIsRewrittenAndVersionHeadersReplaceTheApps() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let answer = Self.object(try Self.client("chat", port: setup.sidecar.port))
        let version = try #require(answer["version"] as? String)
        #expect(["v7", "v8"].contains(version))
        // The fake echoes the `model` it was sent: the version's model_name, not the app's.
        #expect(answer["model"] as? String == "llama-3.1-8b-ft-\(version)")
        #expect(answer["text"] as? String == "The capital of France is Paris.")
        let upstream = version == "v7" ? setup.v7 : setup.v8
        let seen = try #require(upstream.waitForRequests(1).first)
        #expect(seen["path"] as? String == "/v1/chat/completions")
        #expect(Self.object(seen["body"])["model"] as? String == "llama-3.1-8b-ft-\(version)")
        #expect(Self.object(seen["headers"])["authorization"] as? String == "Bearer \(Self.secret)")
        // The shadow has no `headers:`: the app's own authorization goes on.
        let shadowSeen = try #require(setup.cheap.waitForRequests(1).first)
        #expect(Self.object(shadowSeen["headers"])["authorization"] as? String == "Bearer sk-app-own-key")
        #expect(Self.object(shadowSeen["body"])["model"] as? String == "cheap-1b")

        let completion = Self.object(try Self.client("completion", port: setup.sidecar.port))
        let completionVersion = try #require(completion["version"] as? String)
        #expect(completion["model"] as? String == "llama-3.1-8b-ft-\(completionVersion)")
        #expect((completion["text"] as? String)?.isEmpty == false)
    }

    @Test func splitIsStickyByTheBodysUser() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let seen = Self.object(try Self.client("sticky", port: setup.sidecar.port, "16"))
        var versions: Set<String> = []
        for (user, value) in seen {
            let answers = value as? [String] ?? []
            #expect(answers.count == 3 && Set(answers).count == 1, "user \(user) moved between versions: \(answers)")
            versions.formUnion(answers)
        }
        // 16 users on a 50/50 split: both versions answer (a one-sided split has odds 2^-15).
        #expect(versions == ["v7", "v8"])
    }

    @Test func streamedEventsArriveWhileTheUpstreamStillSends() throws {
        // One word every 150 ms: six words take ~1 s upstream.
        let setup = try Setup(delayMilliseconds: 150)
        defer { setup.stop() }
        let answer = Self.object(try Self.client("stream", port: setup.sidecar.port))
        let chunks = answer["chunks"] as? [String] ?? []
        let arrivals = answer["arrivals"] as? [Double] ?? []
        #expect(chunks.joined() == "The capital of France is Paris.")
        #expect(chunks.count >= 6)
        // Held back until the end, every chunk would arrive in the same instant; relayed, the
        // first comes about 0.75 s before the last.
        if let first = arrivals.first, let last = arrivals.last {
            #expect(last - first > 0.4, "chunks arrived at \(arrivals)")
        }
        let version = try #require(answer["version"] as? String)
        #expect(answer["model"] as? String == "llama-3.1-8b-ft-\(version)")
        #expect(answer["finish_reason"] as? String == "stop")
        let usage = Self.object(answer["usage"])
        #expect((usage["completion_tokens"] as? Int ?? 0) > 0)

        // The shadow copy was sent without streaming.
        let shadowBody = Self.object(try #require(setup.cheap.waitForRequests(1).first)["body"])
        #expect(shadowBody["stream"] as? Bool == false)
        #expect(shadowBody["stream_options"] == nil)
        // The live one streamed, as the app asked.
        let upstream = version == "v7" ? setup.v7 : setup.v8
        let liveBody = Self.object(try #require(upstream.waitForRequests(1).first)["body"])
        #expect(liveBody["stream"] as? Bool == true)

        // The live answer was assembled from its events and compared: the cheap model differs
        // in case and spacing only (normalized agreement, not exact).
        let record = try #require(Self.records(setup.comparisonLog, count: 1).first)
        #expect(record["outcome"] as? String == "match")
        let text = Self.object(record["text"])
        #expect(text["exact"] as? Bool == false)
        #expect(text["normalized"] as? Bool == true)
        #expect(Self.object(record["live"])["text"] as? String == "The capital of France is Paris.")
        #expect(Self.object(record["shadow"])["text"] as? String == "the capital of  FRANCE is paris.")
        #expect((Self.object(record["live"])["ttft_ms"] as? Double ?? 0) > 0)

        // Tokens from the stream's final usage event, and from the shadow's answer.
        let metrics = setup.metrics()
        let completion = metricValue(
            metrics,
            "switchyard_llm_tokens_total",
            ["model": "assistant", "version": version, "role": "live", "kind": "completion"]
        )
        #expect(completion == Double(usage["completion_tokens"] as? Int ?? -1))
        #expect(
            metricValue(
                metrics,
                "switchyard_llm_tokens_total",
                ["model": "assistant", "version": "cheap", "role": "shadow", "kind": "prompt"]
            ) > 0
        )
        #expect(
            metricValue(
                metrics,
                "switchyard_llm_time_to_first_token_seconds_count",
                ["model": "assistant", "version": version, "role": "live"]
            ) == 1
        )
        // The first token came about one word's delay in, well before the whole answer.
        let ttft = metricValue(
            metrics,
            "switchyard_llm_time_to_first_token_seconds_sum",
            ["model": "assistant", "version": version, "role": "live"]
        )
        #expect(ttft > 0 && ttft < 0.6, "time to first token \(ttft) s")
        #expect(
            metricValue(
                metrics,
                "switchyard_shadow_comparisons_total",
                ["model": "assistant", "shadow_version": "cheap", "outcome": "match"]
            ) == 1
        )
    }

    @Test func secretsNeverReachLogsRecordsOrMetrics() throws {
        let setup = try Setup()
        defer { setup.stop() }
        _ = try Self.client("chat", port: setup.sidecar.port)
        _ = try Self.client("stream", port: setup.sidecar.port)
        _ = Self.records(setup.comparisonLog, count: 2)
        let config = httpRequest(port: setup.sidecar.adminPort, "GET", "/config")?.bodyText ?? ""
        #expect(config.contains("***"))
        let access = (try? String(contentsOfFile: setup.accessLog, encoding: .utf8)) ?? ""
        let comparisons = (try? String(contentsOfFile: setup.comparisonLog, encoding: .utf8)) ?? ""
        let logLines = setup.logs.all.joined(separator: "\n")
        for (name, text) in [
            ("/config", config), ("/metrics", setup.metrics()), ("the access log", access),
            ("the comparison log", comparisons), ("the sidecar's log", logLines),
        ] {
            #expect(!text.contains(Self.secret), "\(name) shows the secret")
        }
    }
}

/// Every SPEC §14 comparison outcome, on scripted answers: one live version and shadows that
/// answer the same text, the same after normalization, a near text, a tool call, another finish
/// reason; a second model with `similarity_threshold`; embeddings by cosine.
@Suite(.serialized) struct LLMComparisonTests {
    @Test func eachOutcomeOnScriptedTexts() throws {
        let live = try FakeOpenAI(["--reply", "The capital of France is Paris.", "--delay-ms", "0"])
        let cased = try FakeOpenAI(["--reply", "the capital of  FRANCE is paris.", "--delay-ms", "0"])
        let near = try FakeOpenAI(["--reply", "The capital of France is Paris, a city.", "--delay-ms", "0"])
        let tool = try FakeOpenAI(["--reply", "The capital of France is Paris.", "--tool-call", "get_weather"])
        let cut = try FakeOpenAI(["--reply", "The capital of France is Paris.", "--finish-reason", "length"])
        let embedding = try FakeOpenAI([])
        let close = try FakeOpenAI(["--embedding-noise", "0.01"])
        let far = try FakeOpenAI(["--embedding-noise", "1.0"])
        let upstreams = [live, cased, near, tool, cut, embedding, close, far]
        let strictLog = NSTemporaryDirectory() + "switchyard-llm-strict-\(UUID().uuidString).jsonl"
        let lenientLog = NSTemporaryDirectory() + "switchyard-llm-lenient-\(UUID().uuidString).jsonl"
        let embeddingLog = NSTemporaryDirectory() + "switchyard-llm-embed-\(UUID().uuidString).jsonl"
        let config = try TempConfig(
            routes: """
                routes:
                  - { name: strict, match: { path: /v1/chat/completions, headers: { x-judge: strict } }, model: strict, protocol: openai }
                  - { name: lenient, match: { path: /v1/chat/completions }, model: lenient, protocol: openai }
                  - { name: embeddings, match: { path: /v1/embeddings }, model: embedder, protocol: openai }
                """,
            policies: [
                "strict": """
                model: strict
                versions:
                  live: { url: \(live.url) }
                  same: { url: \(live.url) }
                  cased: { url: \(cased.url) }
                  near: { url: \(near.url) }
                  tool: { url: \(tool.url) }
                  cut: { url: \(cut.url) }
                split: { live: 100 }
                shadow:
                  - { version: same, percent: 100 }
                  - { version: cased, percent: 100 }
                  - { version: near, percent: 100 }
                  - { version: tool, percent: 100 }
                  - { version: cut, percent: 100 }
                compare: { log: \(strictLog) }
                """,
                "lenient": """
                model: lenient
                versions:
                  live: { url: \(live.url) }
                  near: { url: \(near.url) }
                split: { live: 100 }
                shadow:
                  - { version: near, percent: 100 }
                compare: { similarity_threshold: 0.8, log: \(lenientLog) }
                """,
                "embedder": """
                model: embedder
                versions:
                  base: { url: \(embedding.url) }
                  close: { url: \(close.url) }
                  far: { url: \(far.url) }
                split: { base: 100 }
                shadow:
                  - { version: close, percent: 100 }
                  - { version: far, percent: 100 }
                compare: { log: \(embeddingLog) }
                """,
            ]
        )
        let sidecar = try RunningSidecar(config: config.path)
        defer {
            sidecar.stop()
            for upstream in upstreams { upstream.stop() }
            config.remove()
            for path in [strictLog, lenientLog, embeddingLog] { try? FileManager.default.removeItem(atPath: path) }
        }
        let body = #"{"model":"assistant","messages":[{"role":"user","content":"Capital of France?"}]}"#
        let strictAnswer = httpRequest(
            port: sidecar.port,
            "POST",
            "/v1/chat/completions",
            headers: [("content-type", "application/json"), ("x-judge", "strict")],
            body: body
        )
        #expect(strictAnswer?.status == 200)
        let lenientAnswer = httpRequest(
            port: sidecar.port,
            "POST",
            "/v1/chat/completions",
            headers: [("content-type", "application/json")],
            body: body
        )
        #expect(lenientAnswer?.status == 200)
        let embeddings = try LLMTests.client("embeddings", port: sidecar.port)
        #expect((LLMTests.object(embeddings)["vectors"] as? [[Double]])?.count == 2)

        func byShadow(_ records: [[String: Any]]) -> [String: [String: Any]] {
            var table: [String: [String: Any]] = [:]
            for record in records {
                if let name = LLMTests.object(record["shadow"])["version"] as? String { table[name] = record }
            }
            return table
        }
        let strict = byShadow(LLMTests.records(strictLog, count: 5))
        func text(_ shadow: String) -> [String: Any] { LLMTests.object(strict[shadow]?["text"]) }
        #expect(strict["same"]?["outcome"] as? String == "match")
        #expect(text("same")["exact"] as? Bool == true)
        #expect(strict["cased"]?["outcome"] as? String == "match")
        #expect(text("cased")["exact"] as? Bool == false)
        #expect(text("cased")["normalized"] as? Bool == true)
        // Without a threshold, texts match only when equal after normalization.
        #expect(strict["near"]?["outcome"] as? String == "mismatch")
        let nearSimilarity = text("near")["similarity"] as? Double ?? 0
        #expect(nearSimilarity > 0.8 && nearSimilarity < 1)
        // Same text, but a tool call the live answer did not make.
        #expect(strict["tool"]?["outcome"] as? String == "mismatch")
        #expect(text("tool")["tool_calls_agree"] as? Bool == false)
        // Another finish reason is reported; the texts still match.
        #expect(strict["cut"]?["outcome"] as? String == "match")
        #expect(text("cut")["finish_reason_agrees"] as? Bool == false)

        let lenient = byShadow(LLMTests.records(lenientLog, count: 1))
        #expect(lenient["near"]?["outcome"] as? String == "match")

        let embedded = byShadow(LLMTests.records(embeddingLog, count: 2))
        #expect(embedded["close"]?["outcome"] as? String == "match")
        #expect(embedded["far"]?["outcome"] as? String == "mismatch")
        let metrics = httpRequest(port: sidecar.adminPort, "GET", "/metrics")?.bodyText ?? ""
        #expect(
            metricValue(
                metrics,
                "switchyard_shadow_comparisons_total",
                ["model": "strict", "outcome": "mismatch"]
            ) == 2
        )
    }
}
