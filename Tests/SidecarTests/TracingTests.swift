import Foundation
import Routing
import Testing

@testable import Sidecar

#if canImport(Glibc)
import Glibc
#endif

/// Tracing with OpenTelemetry (README "Tracing"): W3C Trace Context in, spans out to an OTLP/HTTP
/// receiver in the test, decoded here with a wire-format reader of its own.
@Suite(.serialized) struct TracingTests {
    static let callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
    static let callerSpanID = "00f067aa0ba902b7"

    /// `v1` live (100 %), `v2` shadowed, `v3` the fallback; sticky on `x-user`.
    static func config(live: Int, shadow: Int?, fallback: Int) throws -> TempConfig {
        let shadowPort = shadow ?? deadPort()
        return try TempConfig(
            routes: """
                routes:
                  - { name: main, match: { path: /predict }, model: m }
                """,
            policies: [
                "m": """
                model: m
                versions:
                  v1: { url: "http://127.0.0.1:\(live)" }
                  v2: { url: "http://127.0.0.1:\(shadowPort)" }
                  v3: { url: "http://127.0.0.1:\(fallback)" }
                split: { v1: 100, v2: 0, v3: 0 }
                sticky: header:x-user
                fallback: v3
                \(shadow == nil ? "" : "shadow:\n  - { version: v2, percent: 100 }")
                """
            ]
        )
    }

    static func tracing(_ receiver: OTLPReceiver) -> (inout SidecarOptions) -> Void {
        { options in
            options.tracing.otlpEndpoint = "http://127.0.0.1:\(receiver.port)"
            options.tracing.exportIntervalMilliseconds = 50
        }
    }

    @Test func joinsTheCallersTraceWithLiveAndShadowSpans() throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let shadow = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let spare = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let receiver = OTLPReceiver()
        defer {
            for upstream in [live, shadow, spare] { upstream.stop() }
            receiver.stop()
        }
        let config = try Self.config(live: live.port, shadow: shadow.port, fallback: spare.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, configure: Self.tracing(receiver))
        defer { sidecar.stop() }

        let response = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/predict",
                headers: [
                    ("traceparent", "00-\(Self.callerTraceID)-\(Self.callerSpanID)-01"),
                    ("tracestate", "vendor=abc,other=1"), ("x-user", "alice-secret"),
                ],
                body: #"{"instances":[[1]]}"#
            )
        )
        #expect(response.status == 200)
        #expect(receiver.waitForSpans(3))
        let spans = receiver.spans
        #expect(spans.count == 3)
        let server = try #require(spans.first { $0.kind == 2 })
        let client = try #require(spans.first { $0.kind == 3 && $0.attributes["switchyard.role"] == .string("live") })
        let copy = try #require(spans.first { $0.kind == 3 && $0.attributes["switchyard.role"] == .string("shadow") })

        for span in spans { #expect(span.traceID == Self.callerTraceID) }
        #expect(server.parentSpanID == Self.callerSpanID)
        #expect(client.parentSpanID == server.spanID)
        #expect(copy.parentSpanID == server.spanID)
        #expect(Set([server.spanID, client.spanID, copy.spanID]).count == 3)
        #expect(server.traceState == "vendor=abc,other=1")
        #expect(server.flags == 0x301)
        #expect(client.flags == 0x101)

        // The upstreams were told the client spans, and the caller's tracestate as it came.
        let seenLive = try #require(live.received.first)
        #expect(seenLive.header("traceparent") == "00-\(Self.callerTraceID)-\(client.spanID)-01")
        #expect(seenLive.header("tracestate") == "vendor=abc,other=1")
        #expect(eventually { !shadow.received.isEmpty })
        #expect(shadow.received.first?.header("traceparent") == "00-\(Self.callerTraceID)-\(copy.spanID)-01")

        #expect(server.name == "POST main")
        #expect(server.attributes["switchyard.route"] == .string("main"))
        #expect(server.attributes["switchyard.model"] == .string("m"))
        #expect(server.attributes["switchyard.version"] == .string("v1"))
        #expect(
            server.attributes["switchyard.why"] == .string("split: sticky key (header:x-user) by weighted rendezvous")
        )
        #expect(server.attributes["switchyard.sticky_key_present"] == .bool(true))
        #expect(server.attributes["switchyard.fallback"] == .bool(false))
        #expect(server.attributes["http.request.method"] == .string("POST"))
        #expect(server.attributes["url.path"] == .string("/predict"))
        #expect(server.attributes["http.response.status_code"] == .int(200))
        #expect(server.attributes["switchyard.request_id"] == response.header("x-request-id").map { .string($0) })
        #expect(server.statusCode == 0)

        #expect(client.name == "POST v1")
        #expect(client.attributes["switchyard.version"] == .string("v1"))
        #expect(client.attributes["server.address"] == .string("127.0.0.1"))
        #expect(client.attributes["server.port"] == .int(Int64(live.port)))
        #expect(client.attributes["http.response.status_code"] == .int(200))
        #expect(copy.attributes["switchyard.version"] == .string("v2"))
        #expect(copy.attributes["server.port"] == .int(Int64(shadow.port)))

        // The sticky key's value is never exported.
        #expect(!receiver.bodies.contains { find(Array("alice-secret".utf8), in: $0) != nil })
        // Times are Unix nanoseconds of now, the children inside the request's time.
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        #expect(server.start > now - 60_000_000_000 && server.end <= now + 1_000_000_000)
        #expect(client.start >= server.start && client.end <= server.end && client.start <= client.end)
        #expect(receiver.resource["service.name"] == .string("switchyard"))
        #expect(receiver.resource["service.version"] == .string(SwitchyardVersion.current))
        #expect(receiver.paths.allSatisfy { $0 == "/v1/traces" })
        #expect(receiver.contentTypes.allSatisfy { $0 == "application/x-protobuf" })
    }

    @Test func aFailedVersionAndItsFallbackAreEachASpan() throws {
        let broken = FakeUpstream(.status(500, #"{"error":"boom"}"#))
        let fallback = FakeUpstream(.json(#"{"predictions":[3]}"#))
        let receiver = OTLPReceiver()
        defer {
            broken.stop()
            fallback.stop()
            receiver.stop()
        }
        let config = try Self.config(live: broken.port, shadow: nil, fallback: fallback.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, configure: Self.tracing(receiver))
        defer { sidecar.stop() }

        let response = try #require(httpRequest(port: sidecar.port, "POST", "/predict?debug=1", body: "{}"))
        #expect(response.status == 200)
        #expect(response.header("x-switchyard-fallback") == "v1")
        #expect(receiver.waitForSpans(3))
        let spans = receiver.spans
        let server = try #require(spans.first { $0.kind == 2 })
        let failed = try #require(spans.first { $0.name == "POST v1" })
        let answered = try #require(spans.first { $0.name == "POST v3" })
        #expect(server.parentSpanID == "")
        #expect(server.attributes["url.path"] == .string("/predict"))
        #expect(server.attributes["switchyard.fallback"] == .bool(true))
        #expect(server.attributes["switchyard.sticky_key_present"] == .bool(false))
        #expect(
            server.attributes["switchyard.why"] == .string("split: random bucket (sticky key header:x-user missing)")
        )
        #expect(failed.parentSpanID == server.spanID && answered.parentSpanID == server.spanID)
        #expect(failed.attributes["error.type"] == .string("upstream_error"))
        #expect(failed.attributes["http.response.status_code"] == .int(500))
        #expect(failed.statusCode == 2)
        #expect(failed.attributes["switchyard.fallback"] == .bool(false))
        #expect(answered.attributes["switchyard.fallback"] == .bool(true))
        #expect(answered.statusCode == 0)
        #expect(broken.received.first?.header("traceparent") == "00-\(server.traceID)-\(failed.spanID)-01")
        #expect(fallback.received.first?.header("traceparent") == "00-\(server.traceID)-\(answered.spanID)-01")
    }

    @Test func anErrorTheSidecarAnswersMarksTheServerSpan() throws {
        let receiver = OTLPReceiver()
        defer { receiver.stop() }
        // Every version unreachable: 502 connect_failed from the sidecar.
        let config = try Self.config(live: deadPort(), shadow: nil, fallback: deadPort())
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, configure: Self.tracing(receiver))
        defer { sidecar.stop() }
        let response = try #require(httpRequest(port: sidecar.port, "POST", "/predict", body: "{}"))
        #expect(response.status == 502)
        #expect(receiver.waitForSpans(3))
        let server = try #require(receiver.spans.first { $0.kind == 2 })
        #expect(server.statusCode == 2)
        #expect(server.attributes["error.type"] == .string("upstream_connect_failed"))
        #expect(server.attributes["http.response.status_code"] == .int(502))
    }

    @Test(arguments: [
        nil, "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    ])
    func withoutAValidTraceparentANewTraceStarts(traceparent: String?) throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let receiver = OTLPReceiver()
        defer {
            live.stop()
            receiver.stop()
        }
        let config = try Self.config(live: live.port, shadow: nil, fallback: live.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, configure: Self.tracing(receiver))
        defer { sidecar.stop() }
        let headers = traceparent.map { [("traceparent", $0), ("tracestate", "vendor=abc")] } ?? []
        let response = try #require(httpRequest(port: sidecar.port, "POST", "/predict", headers: headers, body: "{}"))
        #expect(response.status == 200)
        #expect(receiver.waitForSpans(2))
        let server = try #require(receiver.spans.first { $0.kind == 2 })
        let client = try #require(receiver.spans.first { $0.kind == 3 })
        #expect(server.parentSpanID == "")
        #expect(server.traceID.count == 32 && server.traceID != String(repeating: "0", count: 32))
        #expect(server.traceID != Self.callerTraceID && server.traceID.lowercased() != traceparent?.lowercased())
        #expect(server.traceState == "")
        #expect(server.flags == 0x01)
        #expect(client.traceID == server.traceID && client.parentSpanID == server.spanID)
        #expect(live.received.first?.header("traceparent") == "00-\(server.traceID)-\(client.spanID)-01")
    }

    @Test func anUnsampledCallerIsPropagatedAndNothingIsExported() throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let receiver = OTLPReceiver()
        defer {
            live.stop()
            receiver.stop()
        }
        let config = try Self.config(live: live.port, shadow: nil, fallback: live.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, configure: Self.tracing(receiver))
        let response = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/predict",
                headers: [("traceparent", "00-\(Self.callerTraceID)-\(Self.callerSpanID)-00")],
                body: "{}"
            )
        )
        #expect(response.status == 200)
        // A ratio of 1 does not override the caller's decision; the drain flushes the queue.
        #expect(sidecar.stop())
        #expect(receiver.spans.isEmpty)
        let seen = try #require(live.received.first?.header("traceparent"))
        let parts = seen.split(separator: "-").map(String.init)
        #expect(parts.count == 4)
        #expect(parts[0] == "00" && parts[1] == Self.callerTraceID && parts[3] == "00")
        #expect(parts[2].count == 16 && parts[2] != Self.callerSpanID)
    }

    @Test func aZeroRatioRecordsNoNewTraceButStillPropagatesOne() throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let receiver = OTLPReceiver()
        defer {
            live.stop()
            receiver.stop()
        }
        let config = try Self.config(live: live.port, shadow: nil, fallback: live.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { options in
            Self.tracing(receiver)(&options)
            options.tracing.sampleRatio = 0
        }
        #expect(httpRequest(port: sidecar.port, "POST", "/predict", body: "{}")?.status == 200)
        #expect(sidecar.stop())
        #expect(receiver.spans.isEmpty)
        let seen = try #require(live.received.first?.header("traceparent"))
        #expect(TraceParent.parse(seen)?.flags == 0)
    }

    @Test func theDrainExportsWhatIsQueued() throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let receiver = OTLPReceiver()
        defer {
            live.stop()
            receiver.stop()
        }
        let config = try Self.config(live: live.port, shadow: nil, fallback: live.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { options in
            Self.tracing(receiver)(&options)
            // Nothing would go out for a minute but for the drain.
            options.tracing.exportIntervalMilliseconds = 60_000
        }
        #expect(httpRequest(port: sidecar.port, "POST", "/predict", body: "{}")?.status == 200)
        #expect(sidecar.stop())
        #expect(receiver.spans.count == 2)
    }

    @Test func tracingOffForwardsTheTraceparentAsItCame() throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        defer { live.stop() }
        let config = try Self.config(live: live.port, shadow: nil, fallback: live.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let traceparent = "00-\(Self.callerTraceID)-\(Self.callerSpanID)-01"
        let response = try #require(
            httpRequest(port: sidecar.port, "POST", "/predict", headers: [("traceparent", traceparent)], body: "{}")
        )
        #expect(response.status == 200)
        #expect(live.received.first?.header("traceparent") == traceparent)
        #expect(!ShadowTests.metrics(sidecar).contains("switchyard_trace_"))
    }

    @Test func spansBeyondTheQueueAreDroppedAndCounted() throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        // A collector that takes the request and never answers: the exporter is stuck in it.
        let receiver = OTLPReceiver(answers: false)
        defer {
            live.stop()
            receiver.stop()
        }
        let config = try Self.config(live: live.port, shadow: nil, fallback: live.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { options in
            Self.tracing(receiver)(&options)
            options.tracing.maxQueuedSpans = 2
            options.tracing.maxBatchSpans = 2
            options.tracing.exportTimeoutMilliseconds = 1_000
        }
        let client = try #require(Client(port: sidecar.port))
        for _ in 0..<6 { #expect(client.request("POST", "/predict", body: "{}")?.status == 200) }
        let dropped = #"switchyard_trace_spans_dropped_total{reason="queue_full"}"#
        #expect(eventually { (ShadowTests.metric(ShadowTests.metrics(sidecar), dropped) ?? 0) >= 1 })
        #expect(eventually { receiver.requests >= 1 })
        #expect(sidecar.stop())
    }

    @Test func aFailingCollectorIsCountedAndNeverDelaysAnswers() throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let receiver = OTLPReceiver(status: 503)
        defer {
            live.stop()
            receiver.stop()
        }
        let config = try Self.config(live: live.port, shadow: nil, fallback: live.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, configure: Self.tracing(receiver))
        defer { sidecar.stop() }
        #expect(httpRequest(port: sidecar.port, "POST", "/predict", body: "{}")?.status == 200)
        let failures = #"switchyard_trace_exports_total{result="failure"}"#
        let lost = #"switchyard_trace_spans_dropped_total{reason="export_failed"}"#
        #expect(eventually { ShadowTests.metric(ShadowTests.metrics(sidecar), failures) == 1 })
        let text = ShadowTests.metrics(sidecar)
        #expect(ShadowTests.metric(text, lost) == 2)
        #expect(ShadowTests.metric(text, #"switchyard_trace_exports_total{result="success"}"#) == 0)
    }

    @Test(arguments: [OTLPReceiver.Connection.keepAlive, .closeSilently])
    func exportsReuseTheCollectorConnectionAndReplaceAClosedOne(connection: OTLPReceiver.Connection) throws {
        let live = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let receiver = OTLPReceiver(connection: connection)
        defer {
            live.stop()
            receiver.stop()
        }
        let config = try Self.config(live: live.port, shadow: nil, fallback: live.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, configure: Self.tracing(receiver))
        defer { sidecar.stop() }
        for round in 1...3 {
            #expect(httpRequest(port: sidecar.port, "POST", "/predict", body: "{}")?.status == 200)
            // Each request's spans go out in an export of their own.
            #expect(receiver.waitForSpans(2 * round))
        }
        #expect(receiver.requests >= 3)
        #expect(receiver.connections == (connection == .keepAlive ? 1 : receiver.requests))
        let metrics = ShadowTests.metrics(sidecar)
        #expect(ShadowTests.metric(metrics, #"switchyard_trace_exports_total{result="failure"}"#) == 0)
        #expect(ShadowTests.metric(metrics, "switchyard_trace_spans_exported_total") == 6)
    }

    // MARK: - Units

    @Test(arguments: [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", true),
        // A later version: its first four fields are read, more may follow after a dash.
        ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true),
        ("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next", true),
        ("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", false),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", false),
        ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", false),
        (" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false), ("", false),
    ])
    func parsesTraceparentStrictly(value: String, isValid: Bool) {
        let parsed = TraceParent.parse(value)
        #expect((parsed != nil) == isValid)
        if let parsed, value.hasPrefix("00") {
            #expect(parsed.header == value)
        }
    }

    @Test func readsTheIdsAndTheSampledFlag() throws {
        let parsed = try #require(TraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"))
        #expect(parsed.traceIDHigh == 0x4bf9_2f35_77b3_4da6)
        #expect(parsed.traceIDLow == 0xa3ce_929d_0e0e_4736)
        #expect(parsed.spanID == 0x00f0_67aa_0ba9_02b7)
        #expect(parsed.flags == 0x03 && parsed.isSampled)
        #expect(TraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02")?.isSampled == false)
    }

    @Test func encodesSpansThatDecodeBackToTheirFields() throws {
        var server = SpanRecord(
            kind: .server,
            traceIDHigh: 0x0102_0304_0506_0708,
            traceIDLow: 0x090a_0b0c_0d0e_0f10,
            spanID: 0xdead_beef_0000_0001,
            parentSpanID: 0x1111_2222_3333_4444,
            parentIsRemote: true,
            traceState: "k=v",
            startNanoseconds: 1_000,
            endNanoseconds: 5_000
        )
        server.method = "POST"
        server.path = "/predict?explain=1"
        // Long enough to need a two-byte length in the attribute, the span and the request.
        server.requestID = String(repeating: "x", count: 300)
        server.route = "main"
        server.model = "m"
        server.version = "v1"
        server.reason = .pinnedByPath("v1")
        server.statusCode = 503
        server.errorType = "overloaded"
        var client = SpanRecord(
            kind: .client,
            traceIDHigh: server.traceIDHigh,
            traceIDLow: server.traceIDLow,
            spanID: 2,
            parentSpanID: server.spanID,
            startNanoseconds: 2_000,
            endNanoseconds: 3_000
        )
        client.method = "POST"
        client.model = "m"
        client.version = "v2"
        client.isShadow = true
        client.serverAddress = "example.internal"
        client.serverPort = 8_501
        client.statusCode = 200
        client.requestID = server.requestID
        let encoder = OTLPEncoder(serviceName: "svc", serviceVersion: "9.9")
        let bytes = encoder.encode([server, client], epochOffsetNanoseconds: 1_700_000_000_000_000_000)
        let export = try #require(DecodedExport(bytes))
        #expect(export.resource["service.name"] == .string("svc"))
        #expect(export.resource["service.version"] == .string("9.9"))
        #expect(export.scopeName == "switchyard")
        #expect(export.spans.count == 2)
        let decoded = export.spans[0]
        #expect(decoded.traceID == "0102030405060708090a0b0c0d0e0f10")
        #expect(decoded.spanID == "deadbeef00000001")
        #expect(decoded.parentSpanID == "1111222233334444")
        #expect(decoded.traceState == "k=v")
        #expect(decoded.name == "POST main")
        #expect(decoded.kind == 2)
        #expect(decoded.start == 1_700_000_000_000_001_000 && decoded.end == 1_700_000_000_000_005_000)
        #expect(decoded.flags == 0x301)
        #expect(decoded.statusCode == 2 && decoded.statusMessage == "overloaded")
        #expect(decoded.attributes["http.response.status_code"] == .int(503))
        #expect(decoded.attributes["switchyard.why"] == .string("pinned by path: v1"))
        #expect(decoded.attributes["switchyard.sticky_key_present"] == nil)
        #expect(decoded.attributes["url.path"] == .string("/predict"))
        #expect(decoded.attributes["switchyard.request_id"] == .string(server.requestID))
        #expect(decoded.attributes["switchyard.route"] == .string("main"))
        let second = export.spans[1]
        #expect(second.spanID == "0000000000000002")
        #expect(second.kind == 3 && second.flags == 0x101 && second.statusCode == 0)
        #expect(second.name == "POST v2")
        #expect(second.attributes["server.address"] == .string("example.internal"))
        #expect(second.attributes["server.port"] == .int(8_501))
        #expect(second.attributes["switchyard.role"] == .string("shadow"))
        // The request id and the route are the server span's only.
        #expect(second.attributes["switchyard.request_id"] == nil)
        #expect(second.attributes["switchyard.route"] == nil)
        #expect(second.attributes["switchyard.model"] == .string("m"))
    }

    @Test func theWhyIsExplainsWordingWithoutTheClientsKeyOrBucket() {
        #expect(Decision.Reason.pinnedByRoute("v2").traceDescription == "pinned by route: v2")
        #expect(
            Decision.Reason.pinnedByHeader(header: "x-model-version", value: "canary").traceDescription
                == "pinned by header x-model-version: canary"
        )
        #expect(
            Decision.Reason.stickySplit(key: "alice", source: .body("/user")).traceDescription
                == "split: sticky key (body:/user) by weighted rendezvous"
        )
        #expect(
            Decision.Reason.randomSplit(bucket: 4711, why: .noStickyConfigured).traceDescription
                == "split: random bucket (no sticky key configured)"
        )
        #expect(
            Decision.Reason.randomSplit(bucket: 1, why: .stickyKeyMissing(.cookie("uid"))).traceDescription
                == "split: random bucket (sticky key cookie:uid missing)"
        )
    }

    @Test(arguments: [
        ("http://collector:4318", "collector", 4_318, "/v1/traces"),
        ("http://127.0.0.1:4318/", "127.0.0.1", 4_318, "/v1/traces"),
        ("http://[::1]:4318/custom/path", "::1", 4_318, "/custom/path"),
        ("HTTP://otel", "otel", 80, "/v1/traces"),
    ])
    func readsAnEndpoint(text: String, host: String, port: Int, path: String) throws {
        let endpoint = try OTLPEndpoint.parse(text).get()
        #expect(endpoint == OTLPEndpoint(host: host, port: port, path: path))
    }

    @Test(arguments: ["https://collector:4318", "collector:4318", "http://", "http://host:0", "http://u@host:1"])
    func refusesABadEndpoint(text: String) {
        #expect((try? OTLPEndpoint.parse(text).get()) == nil)
    }
}

// MARK: - An OTLP/HTTP receiver and a protobuf wire-format reader

/// Accepts OTLP/HTTP posts on 127.0.0.1 and keeps their bodies, decoded; answers `status`
/// (or never, when `answers` is false). `connection`: what it does after an answer.
final class OTLPReceiver: @unchecked Sendable {
    enum Connection {
        /// Says `connection: close` and closes.
        case close
        /// Keeps the connection for the next request.
        case keepAlive
        /// Closes without saying so (an idle timeout on the collector's side).
        case closeSilently
    }

    let port: Int
    private let listenFD: Int32
    private let status: Int
    private let answers: Bool
    private let connection: Connection
    private let lock = NSLock()
    private var _bodies: [[UInt8]] = []
    private var _paths: [String] = []
    private var _contentTypes: [String] = []
    private var _requests = 0
    private var _connections = 0
    private var held: [Int32] = []
    private var stopped = false

    init(status: Int = 200, answers: Bool = true, connection: Connection = .close) {
        (listenFD, port) = Net.listenSocket()
        self.status = status
        self.answers = answers
        self.connection = connection
        Thread { [self] in acceptLoop() }.start()
    }

    var bodies: [[UInt8]] { lock.withLock { _bodies } }
    var paths: [String] { lock.withLock { _paths } }
    var contentTypes: [String] { lock.withLock { _contentTypes } }
    var requests: Int { lock.withLock { _requests } }
    var connections: Int { lock.withLock { _connections } }
    var spans: [DecodedSpan] { bodies.flatMap { DecodedExport($0)?.spans ?? [] } }
    var resource: [String: DecodedValue] { bodies.first.flatMap { DecodedExport($0)?.resource } ?? [:] }

    /// Waits (up to 5 s) until at least `count` spans have arrived.
    func waitForSpans(_ count: Int) -> Bool {
        eventually { spans.count >= count }
    }

    func stop() {
        lock.withLock {
            stopped = true
            for fd in held { shutdown(fd, Int32(SHUT_RDWR)) }
        }
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 { return }
            Net.setTimeout(fd, seconds: 5)
            lock.withLock {
                _connections += 1
                held.append(fd)
            }
            Thread { [self] in serve(fd) }.start()
        }
    }

    private func serve(_ fd: Int32) {
        defer {
            lock.withLock { held.removeAll { $0 == fd } }
            close(fd)
        }
        var buffer: [UInt8] = []
        while true {
            let (bytes, _) = Net.receive(fd) { FakeUpstream.completeRequest(buffer + $0) != nil }
            buffer += bytes
            guard let (head, body, used) = FakeUpstream.completeRequest(buffer) else { return }
            buffer.removeFirst(used)
            let received = FakeUpstream.Received(head: head, body: body)
            let path = received.requestLine.split(separator: " ").dropFirst().first.map(String.init) ?? ""
            lock.withLock {
                _requests += 1
                if answers {
                    _bodies.append(body)
                    _paths.append(path)
                    _contentTypes.append(received.header("content-type") ?? "")
                }
            }
            guard answers else {
                // Holds the request unanswered until the test stops the receiver.
                _ = Net.receive(fd) { _ in lock.withLock { stopped } }
                return
            }
            let close = connection == .close ? "connection: close\r\n" : ""
            Net.send(fd, "HTTP/1.1 \(status) X\r\ncontent-length: 2\r\n\(close)\r\n{}")
            if connection != .keepAlive { return }
        }
    }
}

/// One field's value as the wire format carries it.
enum WireValue {
    case varint(UInt64)
    case fixed64(UInt64)
    case bytes([UInt8])
    case fixed32(UInt32)
}

/// A protobuf message read field by field (repeated fields in order), no schema.
struct WireMessage {
    var fields: [(number: Int, value: WireValue)] = []

    init?(_ bytes: [UInt8]) {
        var at = 0
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while at < bytes.count, shift < 64 {
                let byte = bytes[at]
                at += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
            return nil
        }
        func fixed(_ size: Int) -> UInt64? {
            guard at + size <= bytes.count else { return nil }
            var value: UInt64 = 0
            for k in 0..<size { value |= UInt64(bytes[at + k]) << UInt64(8 * k) }
            at += size
            return value
        }
        while at < bytes.count {
            guard let key = varint() else { return nil }
            let number = Int(key >> 3)
            switch key & 7 {
            case 0:
                guard let value = varint() else { return nil }
                fields.append((number, .varint(value)))
            case 1:
                guard let value = fixed(8) else { return nil }
                fields.append((number, .fixed64(value)))
            case 2:
                guard let length = varint(), at + Int(length) <= bytes.count else { return nil }
                fields.append((number, .bytes(Array(bytes[at..<at + Int(length)]))))
                at += Int(length)
            case 5:
                guard let value = fixed(4) else { return nil }
                fields.append((number, .fixed32(UInt32(value))))
            default:
                return nil
            }
        }
    }

    func all(_ number: Int) -> [WireValue] { fields.filter { $0.number == number }.map(\.value) }

    func bytes(_ number: Int) -> [UInt8]? {
        for case .bytes(let value) in all(number) { return value }
        return nil
    }
    func messages(_ number: Int) -> [WireMessage] {
        all(number).compactMap { if case .bytes(let value) = $0 { WireMessage(value) } else { nil } }
    }
    func message(_ number: Int) -> WireMessage? { bytes(number).flatMap(WireMessage.init) }
    func string(_ number: Int) -> String? { bytes(number).map { String(decoding: $0, as: UTF8.self) } }
    func varint(_ number: Int) -> UInt64? {
        for case .varint(let value) in all(number) { return value }
        return nil
    }
    func fixed64(_ number: Int) -> UInt64? {
        for case .fixed64(let value) in all(number) { return value }
        return nil
    }
    func fixed32(_ number: Int) -> UInt32? {
        for case .fixed32(let value) in all(number) { return value }
        return nil
    }
}

enum DecodedValue: Equatable {
    case string(String)
    case bool(Bool)
    case int(Int64)
}

/// `KeyValue`s (key 1, `AnyValue` 2: string 1, bool 2, int 3) by key.
func decodeAttributes(_ list: [WireMessage]) -> [String: DecodedValue] {
    var attributes: [String: DecodedValue] = [:]
    for keyValue in list {
        guard let key = keyValue.string(1), let value = keyValue.message(2) else { continue }
        if let text = value.string(1) {
            attributes[key] = .string(text)
        } else if let flag = value.varint(2) {
            attributes[key] = .bool(flag != 0)
        } else if let number = value.varint(3) {
            attributes[key] = .int(Int64(bitPattern: number))
        }
    }
    return attributes
}

/// A `Span` (trace.proto) as the tests read it: ids in lower-case hex ("" when absent).
struct DecodedSpan {
    var traceID: String
    var spanID: String
    var parentSpanID: String
    var traceState: String
    var name: String
    var kind: UInt64
    var start: UInt64
    var end: UInt64
    var attributes: [String: DecodedValue]
    var statusCode: UInt64
    var statusMessage: String
    var flags: UInt32

    init(_ span: WireMessage) {
        func hex(_ bytes: [UInt8]?) -> String { (bytes ?? []).map { String(format: "%02x", $0) }.joined() }
        traceID = hex(span.bytes(1))
        spanID = hex(span.bytes(2))
        traceState = span.string(3) ?? ""
        parentSpanID = hex(span.bytes(4))
        name = span.string(5) ?? ""
        kind = span.varint(6) ?? 0
        start = span.fixed64(7) ?? 0
        end = span.fixed64(8) ?? 0
        attributes = decodeAttributes(span.messages(9))
        let status = span.message(15)
        statusCode = status?.varint(3) ?? 0
        statusMessage = status?.string(2) ?? ""
        flags = span.fixed32(16) ?? 0
    }
}

/// An `ExportTraceServiceRequest` with one resource and one scope, as the sidecar sends.
struct DecodedExport {
    var resource: [String: DecodedValue]
    var scopeName: String
    var spans: [DecodedSpan]

    init?(_ bytes: [UInt8]) {
        guard let request = WireMessage(bytes), let resourceSpans = request.message(1) else { return nil }
        resource = decodeAttributes(resourceSpans.message(1)?.messages(1) ?? [])
        let scopeSpans = resourceSpans.messages(2)
        scopeName = scopeSpans.first?.message(1)?.string(1) ?? ""
        spans = scopeSpans.flatMap { $0.messages(2) }.map(DecodedSpan.init)
    }
}
