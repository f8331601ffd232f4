import Compare
import Foundation
import Testing

/// The comparison log's live `latency_ms` is the answering version's own time, measured as a
/// shadow's is; `total_ms` beside it is the end-to-end time the client saw.
@Suite(.serialized) struct LiveLatencyTests {
    @Test func liveLatencyIsTheAnsweringVersionsOwnTimeAndTotalIsEndToEnd() throws {
        // v1 times out after 300 ms, so the fallback v3 answers: the live version's own time
        // starts only when v3 is asked, at least 300 ms after the request arrived.
        let slow = FakeUpstream(.slow(milliseconds: 3_000, body: #"{"predictions":[0.1]}"#))
        let fallback = FakeUpstream(.json(#"{"predictions":[0.2]}"#))
        let shadow = FakeUpstream(.json(#"{"predictions":[0.2]}"#))
        defer {
            slow.stop()
            fallback.stop()
            shadow.stop()
        }
        let logPath = NSTemporaryDirectory() + "switchyard-latency-\(UUID().uuidString)/m.jsonl"
        let config = try TempConfig(
            routes: "routes:\n  - { name: main, match: { path: /predict }, model: m, protocol: tfserving }\n",
            policies: [
                "m": """
                model: m
                versions:
                  v1: { url: "http://127.0.0.1:\(slow.port)", timeout_ms: 300 }
                  v2: { url: "http://127.0.0.1:\(shadow.port)" }
                  v3: { url: "http://127.0.0.1:\(fallback.port)" }
                split: { v1: 100 }
                fallback: v3
                shadow: [ { version: v2, percent: 100 } ]
                compare: { output: /predictions, tolerance: 0.01, log: \(logPath) }
                """
            ]
        )
        defer {
            config.remove()
            try? FileManager.default.removeItem(atPath: (logPath as NSString).deletingLastPathComponent)
        }
        let sidecar = try RunningSidecar(config: config.path)
        let response = try #require(httpRequest(port: sidecar.port, "POST", "/predict", body: "{}"))
        #expect(response.status == 200)
        #expect(response.header("x-switchyard-fallback") == "v1")
        #expect(eventually { shadow.received.count == 1 })
        #expect(sidecar.stop())  // drain flushes the log

        let log = try String(contentsOfFile: logPath, encoding: .utf8)
        let line = try #require(log.split(separator: "\n").first)
        let record = try ComparisonRecord.parse(Array(line.utf8))
        #expect(record.live.version == "v3")
        let total = try #require(record.live.totalMilliseconds)
        #expect(total >= 299)
        // Everything before v3 was asked (v1's 300 ms) is in total_ms, none of it in latency_ms.
        #expect(record.live.latencyMilliseconds <= total - 299)
        #expect(record.shadow.totalMilliseconds == nil)
        #expect(!line.contains("\"total_ms\":null"))
    }
}
