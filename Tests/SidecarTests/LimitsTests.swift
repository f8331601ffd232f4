import Foundation
import Sidecar
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SPEC §8 through the whole sidecar: refused input never reaches an upstream.
@Suite(.serialized) struct LimitsTests {
    static func setUp(
        configure: (inout SidecarOptions) -> Void = { _ in }
    ) throws -> (FakeUpstream, TempConfig, RunningSidecar) {
        let upstream = FakeUpstream(.json("{}"))
        let config = try ProxyTests.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(upstream.port)" }"#)])
        let sidecar = try RunningSidecar(config: config.path, configure: configure)
        return (upstream, config, sidecar)
    }

    @Test func oversizeBodyIs413AndNothingIsForwarded() throws {
        let (upstream, config, sidecar) = try Self.setUp { $0.requestLimits.maxBodyBytes = 1_000 }
        defer {
            sidecar.stop()
            upstream.stop()
            config.remove()
        }
        let client = try #require(Client(port: sidecar.port))
        client.sendRaw("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        let r = try #require(client.readResponse())
        #expect(r.status == 413)
        #expect(r.json?["error"] as? String == "body_too_large")
        #expect(client.isClosedByPeer())

        let chunked = try #require(Client(port: sidecar.port))
        let piece = String(repeating: "a", count: 600)
        chunked.sendRaw(
            "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n\(piece)\r\n258\r\n\(piece)\r\n0\r\n\r\n"
        )
        let r2 = try #require(chunked.readResponse())
        #expect(r2.status == 413)
        #expect(upstream.received.isEmpty)
    }

    @Test(arguments: [
        ("CL and TE", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", 400),
        ("TE gzip", "Transfer-Encoding: gzip\r\n", 501),
        ("TE list", "Transfer-Encoding: chunked, identity\r\n", 501),
        ("two CL", "Content-Length: 4\r\nContent-Length: 4\r\n", 400),
        ("CL plus sign", "Content-Length: +4\r\n", 400),
        ("CL hex", "Content-Length: 0x4\r\n", 400),
        ("space before colon", "Content-Length : 4\r\n", 400),
    ])
    func smugglingAttemptsAreRefusedAndClosed(name: String, headers: String, status: Int) throws {
        let (upstream, config, sidecar) = try Self.setUp()
        defer {
            sidecar.stop()
            upstream.stop()
            config.remove()
        }
        let client = try #require(Client(port: sidecar.port))
        client.sendRaw(
            "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n\(headers)\r\n0\r\n\r\nGET /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        let r = try #require(client.readResponse(), "\(name)")
        #expect(r.status == status, "\(name)")
        #expect(r.json?["error"] != nil, "\(name)")
        #expect(client.isClosedByPeer(), "\(name)")
        #expect(upstream.received.isEmpty, "\(name)")
    }

    @Test func absoluteFormTargetIsRefused() throws {
        let (upstream, config, sidecar) = try Self.setUp()
        defer {
            sidecar.stop()
            upstream.stop()
            config.remove()
        }
        let client = try #require(Client(port: sidecar.port))
        client.sendRaw("GET http://127.0.0.1:\(upstream.port)/v1/models/m:predict HTTP/1.1\r\nHost: x\r\n\r\n")
        let r = try #require(client.readResponse())
        #expect(r.status == 400)
        #expect(r.json?["error"] as? String == "bad_request")
        #expect(upstream.received.isEmpty)
    }

    @Test func aClientSendingOneByteAtATimeIsCutOff() throws {
        let (upstream, config, sidecar) = try Self.setUp { $0.headerTimeoutMilliseconds = 400 }
        defer {
            sidecar.stop()
            upstream.stop()
            config.remove()
        }
        let client = try #require(Client(port: sidecar.port))
        let start = Date()
        var cut = false
        for byte in Array("POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}".utf8) {
            client.sendRaw([byte])
            // The scenario: a client pausing on purpose between bytes, past the header timeout.
            usleep(100_000)
            if Date().timeIntervalSince(start) > 3 { break }
            var pfd = pollfd(fd: client.fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 0) > 0 {
                cut = true
                break
            }
        }
        #expect(cut)
        let r = try #require(client.readResponse())
        #expect(r.status == 408)
        #expect(r.json?["error"] as? String == "request_timeout")
        #expect(upstream.received.isEmpty)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let upstream = FakeUpstream(.echo)
        defer { upstream.stop() }
        let config = try ProxyTests.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(upstream.port)" }"#)])
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let client = try #require(Client(port: sidecar.port))
        var text = ""
        for i in 0..<5 {
            text +=
                "POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nx-request-id: r\(i)\r\nContent-Length: 2\r\n\r\n{}"
        }
        client.sendRaw(text)
        for i in 0..<5 {
            let r = try #require(client.readResponse())
            #expect(r.status == 200)
            #expect(r.header("x-request-id") == "r\(i)")
        }
    }
}
