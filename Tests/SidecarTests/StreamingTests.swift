import Foundation
import Testing

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

    @Test(arguments: PacedFraming.allCases, [0, 30])
    func aBodyInManyReadsArrivesWholeOnAnOpaqueRoute(framing: PacedFraming, delay: Int) throws {
        let upstream = PacedUpstream(pieces: Self.pieces, framing: framing, delayMilliseconds: delay)
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: "json")
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let fd = Self.request(port: sidecar.port)
        defer { close(fd) }
        let response = try #require(readFramedResponse(fd))
        #expect(response.status == 200)
        #expect(response.isComplete)
        #expect(response.bodyText == Self.pieces.joined())
    }

    @Test(arguments: PacedFraming.allCases, [0, 30])
    func aBodyInManyReadsArrivesWholeOnATypedRoute(framing: PacedFraming, delay: Int) throws {
        let upstream = PacedUpstream(pieces: Self.pieces, framing: framing, delayMilliseconds: delay)
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: "tfserving")
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let fd = Self.request(port: sidecar.port)
        defer { close(fd) }
        let response = try #require(readFramedResponse(fd))
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
}
