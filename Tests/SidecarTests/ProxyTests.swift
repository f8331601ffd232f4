import Foundation
import Testing

/// End to end through real sockets: client → sidecar → fake upstreams.
@Suite(.serialized) struct ProxyTests {
    static func remoteConfig(
        versions: [(String, String)],
        labels: String = "",
        split: String? = nil,
        fallback: String? = nil,
        routeProtocol: String = "json",
        extraRoutes: String = ""
    ) throws -> TempConfig {
        let versionLines = versions.map { "  \($0.0): \($0.1)" }.joined(separator: "\n")
        var policy = "model: m\nversions:\n\(versionLines)\n"
        if !labels.isEmpty { policy += "labels: \(labels)\n" }
        if let split { policy += "split: \(split)\n" }
        if let fallback { policy += "fallback: \(fallback)\n" }
        let routes = """
            routes:
              - name: pinned
                match: { template: "/v1/models/m/versions/{version}:predict" }
                model: m
                protocol: \(routeProtocol)
              - name: labelled
                match: { template: "/v1/models/m/labels/{label}:predict" }
                model: m
                protocol: \(routeProtocol)
              - name: by-header
                match: { prefix: /byheader }
                model: m
                version_from: header:x-model-version
            \(extraRoutes)
              - name: main
                match: { path: /v1/models/m:predict, method: POST }
                model: m
                protocol: \(routeProtocol)
            """
        return try TempConfig(routes: routes, policies: ["m": policy])
    }

    @Test func forwardsToARemoteVersionWithTheRightHeaders() throws {
        let upstream = FakeUpstream(.json(#"{"predictions":[0.25]}"#))
        defer { upstream.stop() }
        let config = try Self.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(upstream.port)" }"#)])
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }

        let response = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/v1/models/m:predict?trace=1",
                headers: [
                    ("Connection", "keep-alive, x-private"), ("x-private", "secret"), ("TE", "trailers"),
                    ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                    ("content-type", "application/json"),
                ],
                body: #"{"instances":[[1,2]]}"#
            )
        )
        #expect(response.status == 200)
        #expect(response.bodyText == #"{"predictions":[0.25]}"#)
        #expect(response.header("x-switchyard-version") == "v1")
        let requestID = try #require(response.header("x-request-id"))
        #expect(requestID.count == 16)
        #expect(response.header("x-switchyard-fallback") == nil)

        let seen = try #require(upstream.received.first)
        #expect(seen.requestLine == "POST /v1/models/m:predict?trace=1 HTTP/1.1")
        #expect(String(decoding: seen.body, as: UTF8.self) == #"{"instances":[[1,2]]}"#)
        #expect(seen.header("x-request-id") == requestID)
        #expect(seen.header("x-forwarded-for") == "127.0.0.1")
        #expect(seen.header("traceparent") == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        #expect(seen.header("x-private") == nil)
        #expect(seen.header("te") == nil)
        #expect(seen.header("content-length") == "21")
        #expect(seen.header("host") == "127.0.0.1:\(upstream.port)")
    }

    @Test func keepsTheClientsRequestIDAndReplacesAConfiguredPath() throws {
        let upstream = FakeUpstream(.json(#"{"outputs":[]}"#))
        defer { upstream.stop() }
        let config = try Self.remoteConfig(versions: [
            ("v1", #"{ url: "http://127.0.0.1:\#(upstream.port)/v2/models/m/infer" }"#)
        ])
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let response = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/v1/models/m:predict?x=1",
                headers: [("x-request-id", "abc-123")],
                body: "{}"
            )
        )
        #expect(response.status == 200)
        #expect(response.header("x-request-id") == "abc-123")
        #expect(upstream.received.first?.requestLine == "POST /v2/models/m/infer?x=1 HTTP/1.1")
        #expect(upstream.received.first?.header("x-request-id") == "abc-123")
    }

    @Test func pinsByPathLabelAndHeader() throws {
        let one = FakeUpstream(.json(#"{"v":1}"#))
        let two = FakeUpstream(.json(#"{"v":2}"#))
        defer {
            one.stop()
            two.stop()
        }
        let config = try Self.remoteConfig(
            versions: [
                ("v1", #"{ url: "http://127.0.0.1:\#(one.port)" }"#),
                ("v2", #"{ url: "http://127.0.0.1:\#(two.port)" }"#),
            ],
            labels: "{ stable: v1, candidate: v2 }",
            split: "{ stable: 100, candidate: 0 }"
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }

        let byVersion = try #require(
            httpRequest(port: sidecar.port, "POST", "/v1/models/m/versions/v2:predict", body: "{}")
        )
        #expect(byVersion.header("x-switchyard-version") == "v2")
        #expect(byVersion.bodyText == #"{"v":2}"#)
        let byLabel = try #require(
            httpRequest(port: sidecar.port, "POST", "/v1/models/m/labels/candidate:predict", body: "{}")
        )
        #expect(byLabel.header("x-switchyard-version") == "v2")
        let byHeader = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/byheader/x",
                headers: [("x-model-version", "candidate")],
                body: "{}"
            )
        )
        #expect(byHeader.header("x-switchyard-version") == "v2")
        let unpinned = try #require(httpRequest(port: sidecar.port, "POST", "/byheader/x", body: "{}"))
        #expect(unpinned.header("x-switchyard-version") == "v1")

        let unknown = try #require(
            httpRequest(port: sidecar.port, "POST", "/v1/models/m/versions/v9:predict", body: "{}")
        )
        #expect(unknown.status == 404)
        #expect(unknown.json?["error"] as? String == "unknown_version")
        #expect(unknown.json?["request_id"] as? String == unknown.header("x-request-id"))
        let unknownHeader = try #require(
            httpRequest(port: sidecar.port, "POST", "/byheader/x", headers: [("x-model-version", "nope")], body: "{}")
        )
        #expect(unknownHeader.status == 404)
        #expect(unknownHeader.json?["error"] as? String == "unknown_version")
        // Refused on a matched route: counted under that route and model, with no version.
        let metrics = try #require(httpRequest(port: sidecar.adminPort, "GET", "/metrics")).bodyText
        let refused = ["model": "m", "version": "", "role": "live", "code": "404"]
        #expect(metricValue(metrics, "switchyard_requests_total", refused.merging(["route": "pinned"]) { $1 }) == 1)
        #expect(metricValue(metrics, "switchyard_requests_total", refused.merging(["route": "by-header"]) { $1 }) == 1)
        #expect(metricValue(metrics, "switchyard_requests_total", ["route": "", "code": "404"]) == 0)

        let noRoute = try #require(httpRequest(port: sidecar.port, "GET", "/elsewhere"))
        #expect(noRoute.status == 404)
        #expect(noRoute.json?["error"] as? String == "no_route")
        let wrongMethod = try #require(httpRequest(port: sidecar.port, "GET", "/v1/models/m:predict"))
        #expect(wrongMethod.json?["error"] as? String == "no_route")
        #expect(one.received.count == 1)
    }

    @Test func splitSharesFollowTheWeights() throws {
        let one = FakeUpstream(.json("{}"))
        let two = FakeUpstream(.json("{}"))
        defer {
            one.stop()
            two.stop()
        }
        let config = try Self.remoteConfig(
            versions: [
                ("v1", #"{ url: "http://127.0.0.1:\#(one.port)" }"#),
                ("v2", #"{ url: "http://127.0.0.1:\#(two.port)" }"#),
            ],
            split: "{ v1: 80, v2: 20 }"
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let client = try #require(Client(port: sidecar.port))
        var counts: [String: Int] = [:]
        let n = 1_000
        for _ in 0..<n {
            let r = try #require(client.request("POST", "/v1/models/m:predict", body: "{}"))
            counts[r.header("x-switchyard-version") ?? "?", default: 0] += 1
        }
        // Binomial(1000, 0.2): sd ≈ 12.6; allow 5 sd.
        let v2 = counts["v2", default: 0]
        #expect(abs(v2 - 200) <= 63, "v2 got \(v2) of \(n)")
        #expect(counts["v1", default: 0] + v2 == n)
        // Keep-alive to the upstreams: far fewer connections than requests.
        #expect(one.connections + two.connections <= 4)
    }

    @Test(arguments: [
        ("dead", "upstream_connect_failed", 502),
        ("status500", "", 500),
        ("slow", "upstream_timeout", 504),
        ("garbage", "upstream_bad_response", 502),
        ("closeMidBody", "upstream_bad_response", 502),
        ("huge", "upstream_bad_response", 502),
        ("closeWithoutAnswer", "upstream_bad_response", 502),
    ])
    func failuresWithoutFallback(kind: String, code: String, status: Int) throws {
        let upstream = FakeUpstream(Self.behavior(kind))
        defer { upstream.stop() }
        let port = kind == "dead" ? deadPort() : upstream.port
        // A `json` route relays a body as it arrives, so one cut mid-body is a cut stream there
        // and one over --max-response-bytes is relayed whole (StreamingTests); a typed route
        // reads it whole and answers 502.
        // Only the slow upstream is meant to time out: every other failure gets a deadline far
        // beyond its answer (300 ms timed out the garbage answer once on a loaded machine).
        let timeout = kind == "slow" ? 300 : 5_000
        let config = try Self.remoteConfig(
            versions: [("v1", #"{ url: "http://127.0.0.1:\#(port)", timeout_ms: \#(timeout) }"#)],
            routeProtocol: ["closeMidBody", "huge"].contains(kind) ? "tfserving" : "json"
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { $0.maxResponseBytes = 1 << 16 }
        defer { sidecar.stop() }
        let r = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
        #expect(r.status == status)
        #expect(r.header("x-switchyard-version") == "v1")
        if code.isEmpty {
            #expect(r.bodyText == #"{"error":"boom"}"#)
        } else {
            #expect(r.json?["error"] as? String == code)
            #expect(r.json?["request_id"] as? String == r.header("x-request-id"))
        }
    }

    @Test(arguments: ["dead", "status500", "slow", "garbage", "closeMidBody"])
    func fallbackAnswersOnceWhenTheChosenVersionFails(kind: String) throws {
        let failing = FakeUpstream(Self.behavior(kind))
        let healthy = FakeUpstream(.json(#"{"predictions":[1]}"#))
        defer {
            failing.stop()
            healthy.stop()
        }
        let port = kind == "dead" ? deadPort() : failing.port
        let config = try Self.remoteConfig(
            versions: [
                ("v1", #"{ url: "http://127.0.0.1:\#(healthy.port)" }"#),
                ("v2", #"{ url: "http://127.0.0.1:\#(port)", timeout_ms: 300 }"#),
            ],
            labels: "{ stable: v1, candidate: v2 }",
            split: "{ stable: 0, candidate: 100 }",
            fallback: "stable",
            // After a streamed head has gone out nothing can fall back: a typed route reads the
            // body whole first (see failuresWithoutFallback).
            routeProtocol: kind == "closeMidBody" ? "tfserving" : "json"
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let r = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
        #expect(r.status == 200)
        #expect(r.bodyText == #"{"predictions":[1]}"#)
        #expect(r.header("x-switchyard-version") == "v1")
        #expect(r.header("x-switchyard-fallback") == "v2")
        #expect(healthy.received.count == 1)
    }

    @Test func typedRoutesRefuseBodiesThatAreNotJSON() throws {
        let upstream = FakeUpstream(.notJSON)
        defer { upstream.stop() }
        let config = try Self.remoteConfig(
            versions: [("v1", #"{ url: "http://127.0.0.1:\#(upstream.port)" }"#)],
            routeProtocol: "tfserving"
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let r = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
        #expect(r.status == 502)
        #expect(r.json?["error"] as? String == "upstream_bad_response")
        #expect(upstream.received.first?.header("accept-encoding") == "identity")

        upstream.behavior = .untilClose(#"{"predictions":[2]}"#)
        let untilClose = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
        #expect(untilClose.status == 502)
    }

    @Test func opaqueRoutesAcceptAResponseReadUntilClose() throws {
        let upstream = FakeUpstream(.untilClose(#"{"predictions":[2]}"#))
        defer { upstream.stop() }
        let config = try Self.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(upstream.port)" }"#)])
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        // Relayed as it arrives (SPEC §10): chunked to an HTTP/1.1 client, no invented length.
        let fd = Net.connect(port: sidecar.port)
        defer { close(fd) }
        Net.send(fd, "POST /v1/models/m:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        let r = try #require(readFramedResponse(fd))
        #expect(r.status == 200)
        #expect(r.wasChunked)
        #expect(r.header("content-length") == nil)
        #expect(r.isComplete)
        #expect(r.bodyText == #"{"predictions":[2]}"#)
    }

    static func behavior(_ kind: String) -> FakeUpstream.Behavior {
        switch kind {
        case "status500": return .status(500, #"{"error":"boom"}"#)
        case "slow": return .slow(milliseconds: 1_500, body: "{}")
        case "garbage": return .garbage
        case "closeMidBody": return .closeMidBody
        case "huge": return .huge(1 << 20)
        case "closeWithoutAnswer": return .closeWithoutAnswer
        default: return .json("{}")
        }
    }
}
