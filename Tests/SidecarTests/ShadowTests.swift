import Compare
import Foundation
import Testing

/// Shadow copies (SPEC §3 "Shadow", §6): isolated from the live path, compared, counted, logged.
@Suite(.serialized) struct ShadowTests {
    static func config(
        live: Int,
        shadow: Int,
        shadowTimeout: Int = 3_000,
        shadowMaxConnections: Int = 64,
        compare: String = "",
        extraPolicy: String = "",
        routeProtocol: String = "tfserving"
    ) throws -> TempConfig {
        try TempConfig(
            routes: """
                routes:
                  - { name: main, match: { path: /predict }, model: m, protocol: \(routeProtocol) }
                """,
            policies: [
                "m": """
                model: m
                versions:
                  v1: { url: "http://127.0.0.1:\(live)" }
                  v2: { url: "http://127.0.0.1:\(shadow)", timeout_ms: \(shadowTimeout), max_connections: \(shadowMaxConnections) }
                split: { v1: 100, v2: 0 }
                shadow:
                  - { version: v2, percent: 100 }
                \(compare)
                \(extraPolicy)
                """
            ]
        )
    }

    static func metric(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    static func metrics(_ sidecar: RunningSidecar) -> String {
        httpRequest(port: sidecar.adminPort, "GET", "/metrics")?.bodyText ?? ""
    }

    @Test(arguments: ["slow", "dead", "garbage", "huge", "closeMidBody"])
    func aBadShadowNeverTouchesTheLiveResponse(kind: String) throws {
        let live = FakeUpstream(.json(#"{"predictions":[0.5]}"#))
        let shadow = FakeUpstream(
            kind == "slow" ? .slow(milliseconds: 2_000, body: #"{"predictions":[0.5]}"#) : ProxyTests.behavior(kind)
        )
        defer {
            live.stop()
            shadow.stop()
        }
        let shadowPort = kind == "dead" ? deadPort() : shadow.port
        let config = try Self.config(live: live.port, shadow: shadowPort)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { $0.maxResponseBytes = 1 << 16 }
        defer { sidecar.stop() }

        // Several live requests on one keep-alive connection while the shadow misbehaves.
        let client = try #require(Client(port: sidecar.port))
        let start = Date()
        for i in 0..<5 {
            let r = try #require(
                client.request("POST", "/predict", headers: [("x-request-id", "r\(i)")], body: #"{"instances":[[1]]}"#)
            )
            #expect(r.status == 200)
            #expect(r.bodyText == #"{"predictions":[0.5]}"#)
            #expect(r.header("x-switchyard-version") == "v1")
            #expect(r.header("x-request-id") == "r\(i)")
        }
        // Five live answers long before one slow shadow (2 s) could have finished.
        #expect(Date().timeIntervalSince(start) < 1.5)
        #expect(live.received.count == 5)
        #expect(live.received.allSatisfy { $0.header("x-switchyard-shadow") == nil })
        if kind != "dead" {
            #expect(eventually { shadow.received.count == 5 })
            #expect(shadow.received.allSatisfy { $0.header("x-switchyard-shadow") == "1" })
            #expect(
                shadow.received.compactMap { $0.header("x-request-id") }.sorted() == ["r0", "r1", "r2", "r3", "r4"]
            )
        }
        if kind != "slow" {
            let series =
                #"switchyard_shadow_comparisons_total{model="m",live_version="v1",shadow_version="v2",outcome="error"}"#
            #expect(eventually { Self.metric(Self.metrics(sidecar), series) == 5 })
        }
    }

    @Test func comparisonsCountMatchesMismatchesAndFlips() throws {
        let live = FakeUpstream(.json("{}"))
        let shadow = FakeUpstream(.json("{}"))
        defer {
            live.stop()
            shadow.stop()
        }
        let logPath = NSTemporaryDirectory() + "switchyard-shadow-\(UUID().uuidString)/m.jsonl"
        let config = try Self.config(
            live: live.port,
            shadow: shadow.port,
            compare: "compare: { output: /predictions, tolerance: 0.01, threshold: 0.5, log: \(logPath) }"
        )
        defer {
            config.remove()
            try? FileManager.default.removeItem(atPath: (logPath as NSString).deletingLastPathComponent)
        }
        let sidecar = try RunningSidecar(config: config.path)

        // (live, shadow) outputs: 3 matches, 2 mismatches of which 1 flips, 1 shadow error.
        let pairs: [(String, String)] = [
            (#"{"predictions":[0.2]}"#, #"{"predictions":[0.205]}"#),
            (#"{"predictions":[0.9]}"#, #"{"predictions":[0.9]}"#),
            (#"{"predictions":[[0.3, 0.7]]}"#, #"{"predictions":[0.7]}"#),
            (#"{"predictions":[0.45]}"#, #"{"predictions":[0.55]}"#),
            (#"{"predictions":[0.1]}"#, #"{"predictions":[0.3]}"#),
            (#"{"predictions":[0.1]}"#, "not json"),
        ]
        let client = try #require(Client(port: sidecar.port))
        for (i, (l, s)) in pairs.enumerated() {
            live.behavior = .json(l)
            shadow.behavior = s == "not json" ? .notJSON : .json(s)
            let r = try #require(client.request("POST", "/predict", headers: [("x-request-id", "q\(i)")], body: "{}"))
            #expect(r.status == 200)
            // One request at a time, so each shadow sees its own behavior.
            #expect(eventually { shadow.received.count == i + 1 })
        }
        let prefix = #"{model="m",live_version="v1",shadow_version="v2""#
        #expect(
            eventually {
                Self.metric(
                    Self.metrics(sidecar),
                    "switchyard_shadow_comparisons_total" + prefix + #",outcome="error"}"#
                ) == 1
            }
        )
        let text = Self.metrics(sidecar)
        #expect(Self.metric(text, "switchyard_shadow_comparisons_total" + prefix + #",outcome="match"}"#) == 3)
        #expect(Self.metric(text, "switchyard_shadow_comparisons_total" + prefix + #",outcome="mismatch"}"#) == 2)
        #expect(Self.metric(text, "switchyard_shadow_flips_total" + prefix + "}") == 1)
        #expect(Self.metric(text, "switchyard_shadow_abs_diff_count" + prefix + "}") == 5)
        // Buckets reach regression differences in the hundreds (swift-prometheus writes 100 as "100.0").
        #expect(Self.metric(text, "switchyard_shadow_abs_diff_bucket" + prefix + #",le="100.0"}"#) == 5)
        #expect(Self.metric(text, "switchyard_shadow_abs_diff_bucket" + prefix + #",le="1000.0"}"#) == 5)
        #expect(
            Self.metric(
                text,
                #"switchyard_requests_total{route="main",model="m",version="v2",role="shadow",code="200"}"#
            ) == 6
        )
        #expect(
            Self.metric(text, #"switchyard_requests_total{route="main",model="m",version="v1",role="live",code="200"}"#)
                == 6
        )
        #expect(Self.metric(text, #"switchyard_split_weight_ratio{model="m",version="v1"}"#) == 1)
        #expect(Self.metric(text, #"switchyard_split_weight_ratio{model="m",version="v2"}"#) == 0)
        #expect(Self.metric(text, "switchyard_config_generation") == 1)

        // Drain flushes the log.
        #expect(sidecar.stop())
        let log = try String(contentsOfFile: logPath, encoding: .utf8)
        let records = log.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(records.count == 6)
        let byID = Dictionary(uniqueKeysWithValues: records.map { ($0["request_id"] as? String ?? "", $0) })
        #expect(byID["q0"]?["outcome"] as? String == "match")
        #expect(byID["q3"]?["outcome"] as? String == "mismatch")
        #expect(byID["q3"]?["flip"] as? Bool == true)
        #expect(byID["q3"]?["live_label"] as? Int == 0)
        #expect(byID["q3"]?["shadow_label"] as? Int == 1)
        #expect(byID["q5"]?["outcome"] as? String == "error")
        let q4 = try #require(byID["q4"])
        #expect(q4["model"] as? String == "m")
        #expect(q4["route"] as? String == "main")
        #expect(abs((q4["max_abs_diff"] as? Double ?? 0) - 0.2) < 1e-9)
        let liveSide = try #require(q4["live"] as? [String: Any])
        #expect(liveSide["version"] as? String == "v1")
        #expect(liveSide["status"] as? Int == 200)
        #expect(liveSide["output"] as? [Double] == [0.1])
        #expect((liveSide["latency_ms"] as? Double ?? -1) >= 0)
        #expect((q4["shadow"] as? [String: Any])?["output"] as? [Double] == [0.3])
        #expect(q4["ts"] as? String != nil)

        // The report reads what serve wrote.
        let report = try #require(
            try? JSONSerialization.jsonObject(with: Data(reportJSON(logPath).utf8)) as? [String: Any]
        )
        let pair = try #require((report["pairs"] as? [[String: Any]])?.first)
        #expect(pair["requests"] as? Int == 6)
        #expect((pair["agreement"] as? [String: Any])?["rate"] as? Double == 0.6)
    }

    #if DEBUG
    /// Issue 14: the live answer is parsed once however many shadows. Three shadows answer the
    /// same bytes (a match, not parsed either), other numbers (a mismatch) and a body with no
    /// output (an error); with and without a comparison log (the full comparison and the
    /// summary). Each live answer is unique to the test, so the debug parse count is its own.
    @Test(arguments: [false, true])
    func theLiveAnswerIsParsedOnceForThreeShadows(withLog: Bool) throws {
        let liveBodies = (0..<2).map { #"{"predictions":[0.5],"id":"\#(UUID().uuidString)-\#($0)"}"# }
        let live = FakeUpstream(.json(liveBodies[0]))
        let same = FakeUpstream(.json(liveBodies[0]))
        let other = FakeUpstream(.json(#"{"predictions":[0.9]}"#))
        let none = FakeUpstream(.json(#"{"other":1}"#))
        defer { for upstream in [live, same, other, none] { upstream.stop() } }
        let folder = NSTemporaryDirectory() + "switchyard-parse-once-\(UUID().uuidString)"
        let log = withLog ? ", log: \(folder)/m.jsonl" : ""
        let config = try TempConfig(
            routes: """
                routes:
                  - { name: main, match: { path: /predict }, model: m }
                """,
            policies: [
                "m": """
                model: m
                versions:
                  v1: { url: "http://127.0.0.1:\(live.port)" }
                  v2: { url: "http://127.0.0.1:\(same.port)" }
                  v3: { url: "http://127.0.0.1:\(other.port)" }
                  v4: { url: "http://127.0.0.1:\(none.port)" }
                split: { v1: 100, v2: 0, v3: 0, v4: 0 }
                shadow:
                  - { version: v2, percent: 100 }
                  - { version: v3, percent: 100 }
                  - { version: v4, percent: 100 }
                compare: { output: /predictions, tolerance: 0\(log) }
                """
            ]
        )
        defer {
            config.remove()
            try? FileManager.default.removeItem(atPath: folder)
        }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let client = try #require(Client(port: sidecar.port))
        let prefix = #"switchyard_shadow_comparisons_total{model="m",live_version="v1",shadow_version=""#
        for (index, body) in liveBodies.enumerated() {
            live.behavior = .json(body)
            same.behavior = .json(body)
            let r = try #require(client.request("POST", "/predict", body: "{}"))
            #expect(r.bodyText == body)
            // Every comparison of this request counted before the next one.
            #expect(
                eventually {
                    let text = Self.metrics(sidecar)
                    return Self.metric(text, prefix + #"v2",outcome="match"}"#) == Double(index + 1)
                        && Self.metric(text, prefix + #"v3",outcome="mismatch"}"#) == Double(index + 1)
                        && Self.metric(text, prefix + #"v4",outcome="error"}"#) == Double(index + 1)
                }
            )
            #expect(ComparisonParseCounter.parses(of: Array(body.utf8)) == 1)
        }
    }
    #endif

    @Test func shadowsBeyondTheInFlightBoundAreDroppedAndCounted() throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let shadow = FakeUpstream(.slow(milliseconds: 1_000, body: #"{"predictions":[1]}"#))
        defer {
            live.stop()
            shadow.stop()
        }
        let config = try Self.config(live: live.port, shadow: shadow.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { $0.maxShadowsInFlight = 2 }
        defer { sidecar.stop() }
        let client = try #require(Client(port: sidecar.port))
        for _ in 0..<5 {
            #expect(client.request("POST", "/predict", body: "{}")?.status == 200)
        }
        let text = Self.metrics(sidecar)
        #expect(Self.metric(text, #"switchyard_shadow_dropped_total{model="m",version="v2",reason="overloaded"}"#) == 3)
    }

    /// A copy that would have to wait for a connection to a busy shadow is dropped at once, not
    /// queued to time out later.
    @Test func aCopyThatWouldWaitForABusyShadowIsDroppedNotQueued() throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let shadow = FakeUpstream(.slow(milliseconds: 800, body: #"{"predictions":[1]}"#))
        defer {
            live.stop()
            shadow.stop()
        }
        let config = try Self.config(
            live: live.port,
            shadow: shadow.port,
            shadowMaxConnections: 1,
            compare: "compare: { output: /predictions }"
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let client = try #require(Client(port: sidecar.port))
        for _ in 0..<4 {
            #expect(client.request("POST", "/predict", body: "{}")?.status == 200)
        }
        let dropped = #"switchyard_shadow_dropped_total{model="m",version="v2",reason="overloaded"}"#
        let matched =
            #"switchyard_shadow_comparisons_total{model="m",live_version="v1",shadow_version="v2",outcome="match"}"#
        let failed =
            #"switchyard_shadow_comparisons_total{model="m",live_version="v1",shadow_version="v2",outcome="error"}"#
        #expect(Self.metric(Self.metrics(sidecar), dropped) == 3)
        #expect(eventually { Self.metric(Self.metrics(sidecar), matched) == 1 })
        #expect(Self.metric(Self.metrics(sidecar), failed) == 0)
        #expect(shadow.received.count == 1)
    }

    @Test func anEmbeddedShadowIsAnsweredAfterLive() throws {
        let models = EmbeddedTests.models
        let live = FakeUpstream(.json(#"{"predictions":[0.8906722628860125]}"#))
        defer { live.stop() }
        let config = try TempConfig(
            routes: "routes:\n  - { name: main, match: { path: /predict }, model: m, protocol: tfserving }\n",
            policies: [
                "m": """
                model: m
                versions:
                  v1: { url: "http://127.0.0.1:\(live.port)" }
                  v2: { embedded: linear, file: \(models)/churn-linear-v1.json }
                split: { v1: 100, v2: 0 }
                shadow: [ { version: v2, percent: 100 } ]
                compare: { output: /predictions, tolerance: 0.000001 }
                """
            ]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let r = try #require(
            httpRequest(port: sidecar.port, "POST", "/predict", body: #"{"instances": [[12, 73.36, 2, 1]]}"#)
        )
        #expect(r.status == 200)
        #expect(r.header("x-switchyard-version") == "v1")
        let series =
            #"switchyard_shadow_comparisons_total{model="m",live_version="v1",shadow_version="v2",outcome="match"}"#
        #expect(eventually { Self.metric(Self.metrics(sidecar), series) == 1 })
    }
}

/// `switchyard report --format json` on one file, through the Compare module's runner.
func reportJSON(_ path: String) -> String {
    ReportRunner.run(files: [path], format: "json", output: nil, failIf: []).stdout
}
