import Foundation
import HTTP1
import Testing

@testable import Sidecar

#if canImport(Glibc)
import Glibc
#endif

/// Answers whose bodies arrive in many reads (SPEC §10), end to end through real sockets.
@Suite(.serialized) struct StreamingTests {
    static func config(
        upstreamPort: Int,
        routeProtocol: String,
        compare: Bool = false,
        extra: String = ""
    ) throws
        -> TempConfig
    {
        var policy = """
            model: m
            versions:
              v1: { url: "http://127.0.0.1:\(upstreamPort)"\(extra) }

            """
        if compare { policy += "shadow: [{ version: v1, percent: 100 }]\ncompare: { output: /predictions }\n" }
        let routes = """
            routes:
              - name: main
                match: { prefix: /v1/models/m }
                model: m
                protocol: \(routeProtocol)
            """
        return try TempConfig(routes: routes, policies: ["m": policy])
    }

    /// Nine pieces of one JSON answer (the cut answers of issue 9 needed five or more reads).
    static let pieces = [#"{"predictions":["#, "0.1,", "0.2,", "0.3,", "0.4,", "0.5,", "0.6,", "0.7", "]}"]

    static func request(port: Int, path: String = "/v1/models/m:predict", version: String = "1.1") -> Int32 {
        let fd = Net.connect(port: port, timeoutSeconds: 5)
        Net.send(
            fd,
            "POST \(path) HTTP/\(version)\r\nhost: x\r\ncontent-type: application/json\r\n"
                + "content-length: 22\r\n\r\n{\"instances\":[[1, 2]]}"
        )
        return fd
    }

    /// One request through a sidecar in front of a `PacedUpstream` sending `pieces`; the response
    /// as the client read it.
    static func pacedExchange(
        framing: PacedFraming,
        delay: Int,
        routeProtocol: String,
        pieces: [String] = pieces
    ) throws -> FramedResponse {
        let upstream = PacedUpstream(pieces: pieces, framing: framing, delayMilliseconds: delay)
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: routeProtocol)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let fd = Self.request(port: sidecar.port)
        defer { close(fd) }
        return try #require(readFramedResponse(fd))
    }

    @Test(arguments: PacedFraming.allCases, [0, 30])
    func aBodyInManyReadsArrivesWholeOnAnOpaqueRoute(framing: PacedFraming, delay: Int) throws {
        let response = try Self.pacedExchange(framing: framing, delay: delay, routeProtocol: "json")
        #expect(response.status == 200)
        #expect(response.isComplete)
        #expect(response.bodyText == Self.pieces.joined())
    }

    @Test(arguments: PacedFraming.allCases, [0, 30])
    func aBodyInManyReadsArrivesWholeOnATypedRoute(framing: PacedFraming, delay: Int) throws {
        let response = try Self.pacedExchange(framing: framing, delay: delay, routeProtocol: "tfserving")
        if framing == .untilClose {
            // SPEC §9: a typed route reads bodies whole and refuses one without a length.
            #expect(response.status == 502)
            #expect(response.bodyText.contains("upstream_bad_response"))
        } else {
            #expect(response.status == 200)
            #expect(response.header("content-length") == String(Self.pieces.joined().utf8.count))
            #expect(response.bodyText == Self.pieces.joined())
        }
    }

    /// A metric's value once it is non-zero (polled for up to 10 s), else 0.
    static func eventuallyMetric(_ sidecar: RunningSidecar, _ name: String, _ labels: [String: String]) -> Double {
        var value = 0.0
        eventually {
            value = metricValue(httpRequest(port: sidecar.adminPort, "GET", "/metrics")?.bodyText ?? "", name, labels)
            return value != 0
        }
        return value
    }

    static let events = (1...5).map { "data: {\"token\": \"t\($0)\"}\n\n" }

    @Test(arguments: ["json", "tfserving"])
    func serverSentEventsReachTheClientWhileTheUpstreamIsStillSending(routeProtocol: String) throws {
        let upstream = PacedUpstream(
            pieces: Self.events,
            framing: .chunked,
            delayMilliseconds: 300,
            contentType: "text/event-stream"
        )
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: routeProtocol)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let fd = Self.request(port: sidecar.port)
        defer { close(fd) }
        let response = try #require(readFramedResponse(fd))
        #expect(response.status == 200)
        #expect(response.wasChunked)
        #expect(response.isComplete)
        #expect(response.bodyText == Self.events.joined())
        // Each event arrives on its own, soon after it left: never batched until the end.
        let sent = upstream.sentAt
        try #require(sent.count == 5)
        #expect(response.arrivals.count >= 5)
        let firstArrival = try #require(response.arrivals.first?.0)
        #expect(firstArrival < sent[4].addingTimeInterval(-0.6))
        #expect(firstArrival.timeIntervalSince(sent[0]) < 0.25)
        // The time to the response head is observed once for the live request.
        #expect(
            Self.eventuallyMetric(
                sidecar,
                "switchyard_upstream_first_byte_seconds_count",
                ["version": "v1", "role": "live"]
            ) == 1
        )
    }

    @Test func chunkedStaysChunkedAndContentLengthIsKept() throws {
        for framing in [PacedFraming.chunked, .contentLength] {
            let upstream = PacedUpstream(pieces: Self.pieces, framing: framing, delayMilliseconds: 10)
            defer { upstream.stop() }
            let config = try Self.config(upstreamPort: upstream.port, routeProtocol: "json")
            defer { config.remove() }
            let sidecar = try RunningSidecar(config: config.path)
            defer { sidecar.stop() }
            let fd = Self.request(port: sidecar.port)
            defer { close(fd) }
            let response = try #require(readFramedResponse(fd))
            #expect(response.bodyText == Self.pieces.joined())
            if framing == .chunked {
                #expect(response.wasChunked)
                #expect(response.header("content-length") == nil)
            } else {
                #expect(!response.wasChunked)
                #expect(response.header("content-length") == String(Self.pieces.joined().utf8.count))
            }
            // The connection goes on with the next request.
            Net.send(
                fd,
                "POST /v1/models/m:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
            )
            #expect(readFramedResponse(fd)?.bodyText == Self.pieces.joined())
        }
    }

    @Test func streamedAndWholeAnswersTakeTurnsOnOneConnection() throws {
        // The worker reuses its last live reply object for the next answer: a streamed answer's
        // stream and length must not leak into the whole answer after it, nor the reverse.
        let large = #"{"predictions":[""# + String(repeating: "7", count: 300_000) + #""]}"#
        let small = #"{"predictions":[0.5]}"#
        let upstream = FakeUpstream(.json(large))
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: "json")
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let client = try #require(Client(port: sidecar.port))
        for (i, body) in [large, small, large, small, small, large].enumerated() {
            upstream.behavior = .json(body)
            let r = try #require(
                client.request("POST", "/v1/models/m:predict", headers: [("x-request-id", "t\(i)")], body: "{}")
            )
            #expect(r.status == 200)
            #expect(r.bodyText == body, "answer \(i)")
            #expect(r.header("content-length") == String(body.utf8.count))
            #expect(r.header("x-request-id") == "t\(i)")
        }
    }

    @Test func anHTTP10ClientGetsAStreamDelimitedByClose() throws {
        let upstream = PacedUpstream(pieces: Self.pieces, framing: .chunked, delayMilliseconds: 10)
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: "json")
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let fd = Self.request(port: sidecar.port, version: "1.0")
        defer { close(fd) }
        let response = try #require(readFramedResponse(fd))
        #expect(response.status == 200)
        #expect(!response.wasChunked)
        #expect(response.header("transfer-encoding") == nil)
        #expect(response.header("content-length") == nil)
        #expect(response.header("connection") == "close")
        #expect(response.bodyText == Self.pieces.joined())
    }

    @Test func theIdleDeadlineCutsAStreamAndItsConnectionIsNotReused() throws {
        let upstream = PacedUpstream(pieces: ["first,", "second"], framing: .chunked, delayMilliseconds: 1500)
        defer { upstream.stop() }
        let config = try Self.config(
            upstreamPort: upstream.port,
            routeProtocol: "json",
            extra: ", idle_timeout_ms: 300"
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let started = Date()
        let fd = Self.request(port: sidecar.port)
        defer { close(fd) }
        let response = try #require(readFramedResponse(fd))
        #expect(response.status == 200)
        #expect(response.wasChunked)
        #expect(!response.isComplete)  // no last chunk: the client sees the cut
        #expect(response.bodyText == "first,")
        #expect(Date().timeIntervalSince(started) < 1.4)  // cut by the 300 ms deadline, not the upstream
        #expect(
            Self.eventuallyMetric(sidecar, "switchyard_streams_cut_total", ["version": "v1", "reason": "idle_timeout"])
                == 1
        )
        // The next request opens a new upstream connection.
        let second = Self.request(port: sidecar.port)
        defer { close(second) }
        _ = readFramedResponse(second)
        #expect(upstream.connections == 2)
    }

    @Test func aClientThatDisconnectsMidStreamClosesTheUpstream() throws {
        let upstream = PatternUpstream(size: 256 << 20, chunked: true)
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: "json")
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let fd = Self.request(port: sidecar.port)
        var chunk = [UInt8](repeating: 0, count: 65536)
        let got = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        #expect(got > 0)
        close(fd)
        // The upstream's writes fail soon: the sidecar closed its connection when the client left.
        #expect(eventually { upstream.failed > 0 })
        #expect(upstream.failed == 1)
        #expect(upstream.bytesSent < 64 << 20)
        #expect(
            Self.eventuallyMetric(
                sidecar,
                "switchyard_streams_cut_total",
                ["version": "v1", "reason": "client_closed"]
            )
                == 1
        )
    }

    @Test func aLargeBodyThroughASlowReaderKeepsMemoryBoundedAndArrivesIntact() throws {
        let size = 64 << 20
        let upstream = PatternUpstream(size: size, chunked: false)
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: "json")
        defer { config.remove() }
        // A child process, so that its memory is measured alone.
        let sidecar = try ChildSidecar(config: config.path)
        defer { sidecar.stop() }
        let before = residentBytes(of: sidecar.pid)
        let fd = sidecar.connect(receiveBufferBytes: 64 * 1024)  // a small window: the reader really is slow
        try #require(fd >= 0)
        defer { close(fd) }
        Net.send(fd, "GET /v1/models/m:predict HTTP/1.1\r\nhost: x\r\n\r\n")
        var buffer = [UInt8](repeating: 0, count: 32 * 1024)
        var head: [UInt8] = []
        var bodyOffset = 0
        var mismatchAt: Int?
        var peak = before
        var reads = 0
        while bodyOffset < size {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            var start = 0
            if head.count < 4 || find([13, 10, 13, 10], in: head) == nil {
                head += buffer[0..<n]
                guard let end = find([13, 10, 13, 10], in: head) else { continue }
                start = n - (head.count - (end + 4))
                head = Array(head[0..<(end + 4)])
            }
            for k in start..<n {
                if mismatchAt == nil && buffer[k] != patternByte(bodyOffset) { mismatchAt = bodyOffset }
                bodyOffset += 1
            }
            reads += 1
            // Slow for the first 16 MiB (the upstream is far ahead), then as fast as it goes.
            if bodyOffset < 16 << 20 && reads % 4 == 0 { usleep(2_000) }  // the scenario: a slow reader
            if reads % 64 == 0 { peak = max(peak, residentBytes(of: sidecar.pid)) }
        }
        let headText = String(decoding: head, as: UTF8.self)
        #expect(headText.contains("content-length: \(size)"), "\(headText)")
        #expect(bodyOffset == size)
        #expect(mismatchAt == nil)
        // Without back-pressure the sidecar would hold tens of MiB the reader had not taken.
        #expect(peak - before < 16 << 20, "RSS grew by \(peak - before) bytes")
    }

    @Test func aShadowedEventStreamIsComparedByItsBytes() throws {
        let upstream = PacedUpstream(
            pieces: Self.events,
            framing: .chunked,
            delayMilliseconds: 20,
            contentType: "text/event-stream"
        )
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: "json", compare: true)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let fd = Self.request(port: sidecar.port)
        defer { close(fd) }
        let response = try #require(readFramedResponse(fd))
        #expect(response.wasChunked)
        #expect(response.bodyText == Self.events.joined())
        let matches = Self.eventuallyMetric(sidecar, "switchyard_shadow_comparisons_total", ["outcome": "match"])
        #expect(matches == 1)
    }

    @Test func aStreamedLiveAnswerLongerThanTheCopyIsAComparisonErrorTooLarge() throws {
        let upstream = PacedUpstream(
            pieces: Self.events,
            framing: .chunked,
            delayMilliseconds: 5,
            contentType: "text/event-stream"
        )
        defer { upstream.stop() }
        let logPath = NSTemporaryDirectory() + "switchyard-too-large-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        var policy = """
            model: m
            versions:
              v1: { url: "http://127.0.0.1:\(upstream.port)" }
            shadow: [{ version: v1, percent: 100 }]
            compare: { output: "", log: "\(logPath)" }

            """
        policy += ""
        let config = try TempConfig(
            routes: "routes:\n  - { name: main, match: { prefix: /v1 }, model: m }\n",
            policies: ["m": policy]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { $0.maxResponseBytes = 64 }
        let fd = Self.request(port: sidecar.port)
        defer { close(fd) }
        let response = try #require(readFramedResponse(fd))
        // The client's stream is whole: the bound is on the copy, not on the relay.
        #expect(response.bodyText == Self.events.joined())
        let errors = Self.eventuallyMetric(sidecar, "switchyard_shadow_comparisons_total", ["outcome": "error"])
        #expect(errors == 1)
        sidecar.stop()  // flushes the log
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        #expect(log.contains(#""error":"too_large""#))
        #expect(log.contains(#""outcome":"error""#))
    }

    @Test(arguments: [
        ("text/event-stream", true), ("Text/Event-Stream; charset=utf-8", true), (" text/event-stream\t", true),
        ("text/event-streams", false), ("text/event", false), ("application/json", false), ("", false),
    ])
    func eventStreamsAreKnownByTheirMediaType(contentType: String, isEventStream: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        #expect(Worker.isEventStream(headers) == isEventStream)
        #expect(!Worker.isEventStream(HTTPHeaders()))
    }
}
