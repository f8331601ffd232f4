import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Slow and stopped clients (issue "Overload and slow peers"): the send deadline, memory per
/// slow reader, and a drain that waits for bodies still arriving and responses still leaving.
@Suite(.serialized) struct SlowPeerTests {
    static func config(upstreamPort: Int, routeProtocol: String = "json") throws -> TempConfig {
        try StreamingTests.config(upstreamPort: upstreamPort, routeProtocol: routeProtocol)
    }

    /// A connection whose receive buffer is small, so a client that stops reading stops the
    /// sidecar's writes soon.
    static func stalledRequest(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var small: Int32 = 16 * 1024
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        Net.setTimeout(fd, seconds: 5)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        Net.send(fd, "GET /v1/models/m:predict HTTP/1.1\r\nhost: x\r\n\r\n")
        return fd
    }

    /// Reads everything until the peer closes (or 5 s pass); returns the byte count.
    static func drain(_ fd: Int32) -> Int {
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return total }
            total += n
        }
    }

    @Test func aStreamToAClientThatStopsReadingIsCutAtTheSendDeadline() throws {
        let upstream = PatternUpstream(size: 256 << 20, chunked: true)
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { $0.sendTimeoutMilliseconds = 300 }
        defer { sidecar.stop() }
        let fd = Self.stalledRequest(port: sidecar.port)
        defer { close(fd) }
        #expect(StreamingTests.eventuallyMetric(sidecar, "switchyard_send_timeouts_total", [:]) == 1)
        // Its upstream connection was closed with it, and the client sees the end.
        #expect(eventually { upstream.failed > 0 })
        #expect(upstream.failed == 1)
        #expect(Self.drain(fd) < 256 << 20)
    }

    @Test func aWholeAnswerToAClientThatStopsReadingIsCutAtTheSendDeadline() throws {
        let big = "{\"predictions\":[" + Array(repeating: "0.5", count: 1_000_000).joined(separator: ",") + "]}"
        let upstream = FakeUpstream(.json(big))
        defer { upstream.stop() }
        // A typed route reads the answer whole: it waits in the sidecar's output for the client.
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: "tfserving")
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { $0.sendTimeoutMilliseconds = 300 }
        defer { sidecar.stop() }
        let fd = Self.stalledRequest(port: sidecar.port)
        defer { close(fd) }
        #expect(StreamingTests.eventuallyMetric(sidecar, "switchyard_send_timeouts_total", [:]) == 1)
        #expect(Self.drain(fd) < big.utf8.count)
    }

    @Test func manyStalledReadersOfALargeStreamKeepMemoryBounded() throws {
        let readers = 40
        let upstream = PatternUpstream(size: 5 << 20, chunked: false)
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port)
        defer { config.remove() }
        // A child process, so that its memory is measured alone.
        let sidecar = try ChildSidecar(config: config.path, arguments: ["--send-timeout-ms", "2000"])
        defer { sidecar.stop() }
        let before = residentBytes(of: sidecar.pid)
        let fds = (0..<readers).map { _ in
            let fd = sidecar.connect(receiveBufferBytes: 16 * 1024)
            Net.send(fd, "GET /v1/models/m:predict HTTP/1.1\r\nhost: x\r\n\r\n")
            return fd
        }
        defer { for fd in fds { close(fd) } }
        // Wait until every answer has filled its client's socket and paused its upstream: the
        // upstream stops being able to write.
        var sent = upstream.totalSent
        var steady = 0
        let settle = Date().addingTimeInterval(10)
        while steady < 3 && Date() < settle {
            // A stability window (no progress over three 100 ms looks): "stopped sending" is the
            // absence of an event, so there is nothing else to wait on.
            usleep(100_000)
            let now = upstream.totalSent
            steady = now == sent && now > 0 ? steady + 1 : 0
            sent = now
        }
        #expect(steady == 3, "the upstream never stopped sending")
        let during = residentBytes(of: sidecar.pid)
        // 40 whole answers held here would be 200 MiB; paused streams hold about one read each.
        #expect(during - before < 24 << 20, "RSS grew by \(during - before) bytes")
        // Each is cut once it has taken nothing for 2 s (the kernel may take a little more for a
        // while after the first stall, which moves its deadline on): all of them, counted.
        var cut = 0.0
        eventually(within: 30, every: 0.2) {
            cut = metricValue(sidecar.metrics(), "switchyard_send_timeouts_total")
            return cut >= Double(readers)
        }
        #expect(cut == Double(readers))
    }

    /// Reads whatever is buffered on `fd` without waiting.
    static func discard(_ fd: Int32) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while chunk.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
    }

    @Test func aDrainWaitsForABodyStillArriving() throws {
        let upstream = FakeUpstream(.json(#"{"ok":true}"#))
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        let size = 440_000
        let fd = Net.connect(port: sidecar.port, timeoutSeconds: 10)
        defer { close(fd) }
        // A first exchange on the connection: the sidecar has accepted it before the drain.
        Net.send(fd, "POST /v1/models/m:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        #expect(readFramedResponse(fd)?.status == 200)
        Net.send(fd, "POST /v1/models/m:predict HTTP/1.1\r\nhost: x\r\ncontent-length: \(size)\r\n\r\n")
        let body = [UInt8](repeating: UInt8(ascii: "a"), count: size)
        Net.send(fd, Array(body[0..<100_000]))
        sidecar.sidecar.shutdown()  // SIGTERM's drain, while the body is still arriving
        var sent = 100_000
        while sent < size {
            let next = min(size, sent + 60_000)
            Net.send(fd, Array(body[sent..<next]))
            sent = next
            // The scenario: a body still arriving in pieces while the drain runs.
            usleep(50_000)
        }
        let response = try #require(readFramedResponse(fd))
        #expect(response.status == 200)
        #expect(response.header("connection") == "close")
        #expect(upstream.received.last?.body.count == size)
        #expect(sidecar.stop())
    }

    @Test(arguments: ["json", "tfserving"])
    func aDrainWaitsForAResponseStillLeaving(routeProtocol: String) throws {
        // On a json route the answer streams; on a typed route it is read whole and then waits
        // in the sidecar's output: both must reach a slow reader whole after SIGTERM.
        let big = "{\"predictions\":[" + Array(repeating: "0.25", count: 1_400_000).joined(separator: ",") + "]}"
        let upstream = FakeUpstream(.json(big))
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port, routeProtocol: routeProtocol)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        let fd = Self.stalledRequest(port: sidecar.port)
        defer { close(fd) }
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        var received: [UInt8] = []
        // The answer has started: its first bytes are here when SIGTERM comes.
        let first = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        try #require(first > 0)
        received += chunk[0..<first]
        sidecar.sidecar.shutdown()
        // A slow reader: about 4 MB/s, so the drain must wait about two seconds for it.
        received.reserveCapacity(big.utf8.count + 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
            usleep(4_000)  // the scenario: a slow reader
        }
        let headEnd = try #require(find([13, 10, 13, 10], in: received))
        let body = Array(received[(headEnd + 4)...])
        #expect(body.count == big.utf8.count)
        // The first differing byte, not `#expect(body == ...)`: swift-testing would spend minutes
        // describing the difference of two 6 MB arrays.
        let expected = Array(big.utf8)
        let firstDifference = zip(body, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(firstDifference == nil)
        #expect(sidecar.stop())
    }

    @Test func aDrainCutsWhatIsStillUnderWayAtItsDeadline() throws {
        let upstream = PatternUpstream(size: 256 << 20, chunked: true)
        defer { upstream.stop() }
        let config = try Self.config(upstreamPort: upstream.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { $0.drainTimeoutMilliseconds = 300 }
        let fd = Self.stalledRequest(port: sidecar.port)
        defer { close(fd) }
        #expect(eventually { upstream.bytesSent > 0 })  // the stream is under way
        try #require(upstream.bytesSent > 0)
        let started = Date()
        #expect(sidecar.stop())
        #expect(Date().timeIntervalSince(started) < 3)
        #expect(Self.drain(fd) < 256 << 20)
    }
}
