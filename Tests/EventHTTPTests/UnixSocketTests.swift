import EventHTTP
import Foundation
import HTTP1
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A server on the Unix socket `path` answering `PEER LOOPBACK HOST TARGET`.
private func startUnixServer(_ loop: LoopThread, path: String, mode: UInt32 = 0o660) throws -> Box<HTTPServer> {
    try loop.make {
        try HTTPServer(loop: loop.loop, address: .unix(path: path), socketMode: mode) { request, writer in
            let host = request.head.headers.first(name: "host") ?? "-"
            let text = "\(request.peerAddress) \(request.isPeerLoopback) \(host) \(request.head.target)"
            writer.respond(status: 200, body: Array(text.utf8))
        }
    }
}

/// A socket file with nobody listening: bound, then closed without unlinking (a crashed process's leftover).
private func leaveStaleSocket(at path: String) throws {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
    }
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    close(fd)
    guard rc == 0 else { throw TestFailure("could not bind the stale socket at \(path)") }
}

private func get(_ path: String, _ target: String = "/") throws -> ClientResponse {
    let client = try RawClient(unixPath: path)
    client.send("GET \(target) HTTP/1.1\r\nhost: a\r\n\r\n")
    return try client.readResponse()
}

@Suite struct UnixSocketTests {
    @Test func aServerOnAUnixSocketAnswersAndCountsItsClientsAsLoopback() throws {
        let directory = SocketDirectory()
        defer { directory.remove() }
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let path = directory.file("s.sock")
        let server = try startUnixServer(loop, path: path)
        #expect(server.value.port == 0)
        #expect(server.value.address == .unix(path: path))
        #expect(server.value.address.description == "unix:\(path)")

        let client = try RawClient(unixPath: path)
        for target in ["/one", "/two"] {
            client.send("GET \(target) HTTP/1.1\r\nhost: a\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(response.text == "127.0.0.1 true a \(target)")
        }
        #expect(try loop.sync { server.value.connectionsAccepted } == 1)
    }

    @Test(arguments: [0o600, 0o660, 0o666] as [UInt32])
    func theSocketFileHasTheModeAskedFor(mode: UInt32) throws {
        let directory = SocketDirectory()
        defer { directory.remove() }
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let path = directory.file("m.sock")
        _ = try startUnixServer(loop, path: path, mode: mode)
        let found = try #require(fileMode(path))
        #expect(found & S_IFMT == S_IFSOCK)
        #expect(String(found & 0o7777, radix: 8) == String(mode, radix: 8))
    }

    @Test func aSocketFileNobodyListensOnIsReplaced() throws {
        let directory = SocketDirectory()
        defer { directory.remove() }
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let path = directory.file("stale.sock")
        try leaveStaleSocket(at: path)
        #expect(isSocketFile(path))
        #expect(throws: TestFailure.self) { try RawClient(unixPath: path) }

        _ = try startUnixServer(loop, path: path)
        #expect(try get(path, "/fresh").text == "127.0.0.1 true a /fresh")
    }

    @Test func aSocketAnotherListenerHoldsIsAStartError() throws {
        let directory = SocketDirectory()
        defer { directory.remove() }
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let path = directory.file("taken.sock")
        let first = try startUnixServer(loop, path: path)

        do {
            _ = try loop.sync { try HTTPServer(loop: loop.loop, address: .unix(path: path)) { _, _ in } }
            Issue.record("a second server bound a socket the first one listens on")
        } catch {
            #expect(
                "\(error)" == "cannot listen on unix:\(path): Address already in use (another process listens there)"
            )
        }
        // The first one still serves, from the same file (the second's probe was one of its clients).
        #expect(try get(path).status == 200)
        #expect(try loop.sync { first.value.connectionsAccepted } == 2)
    }

    @Test func aFileThatIsNotASocketIsRefusedAndLeftAlone() throws {
        let directory = SocketDirectory()
        defer { directory.remove() }
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let path = directory.file("notes.txt")
        try "keep me".write(toFile: path, atomically: false, encoding: .utf8)

        do {
            _ = try loop.sync { try HTTPServer(loop: loop.loop, address: .unix(path: path)) { _, _ in } }
            Issue.record("a server replaced a regular file")
        } catch {
            #expect(
                "\(error)" == "cannot listen on unix:\(path): the path exists and is not a socket (it is left alone)"
            )
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
    }

    @Test func aPathTooLongForSunPathIsAStartError() throws {
        let path = "/tmp/" + String(repeating: "x", count: 120) + ".sock"
        #expect(throws: EventHTTPError.self) { try UnixListeningSocket(path: path) }
        #expect(fileMode(path) == nil)
    }

    @Test func theFileIsRemovedWhenTheServerStops() throws {
        let directory = SocketDirectory()
        defer { directory.remove() }
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let stopped = directory.file("stopped.sock")
        let drained = directory.file("drained.sock")
        let one = try startUnixServer(loop, path: stopped)
        let two = try startUnixServer(loop, path: drained)
        #expect(isSocketFile(stopped) && isSocketFile(drained))

        try loop.sync { one.value.stopAccepting() }
        #expect(fileMode(stopped) == nil)
        let done = Box(false)
        try loop.sync { two.value.drain { done.value = true } }
        #expect(try loop.eventually { done.value })
        #expect(fileMode(drained) == nil)
    }

    @Test func aFileBoundByAnotherProcessSinceIsNotRemoved() throws {
        let directory = SocketDirectory()
        defer { directory.remove() }
        let path = directory.file("moved.sock")
        let socket = try UnixListeningSocket(path: path)
        // Someone else removes the file and binds their own socket there.
        unlink(path)
        try leaveStaleSocket(at: path)
        let theirs = try #require(fileMode(path))
        socket.removeFile()
        #expect(fileMode(path) == theirs)
        #expect(isSocketFile(path))
    }

    @Test func loopsOnTwoThreadsAcceptFromOneSocket() throws {
        let directory = SocketDirectory()
        defer { directory.remove() }
        let first = try LoopThread()
        let second = try LoopThread()
        defer {
            first.shutdown()
            second.shutdown()
        }
        let path = directory.file("shared.sock")
        let socket = try UnixListeningSocket(path: path, mode: 0o600)
        func serve(_ loop: LoopThread, _ name: String) throws -> Box<HTTPServer> {
            try loop.make {
                try HTTPServer(loop: loop.loop, socket: socket) { _, writer in
                    writer.respond(status: 200, body: Array(name.utf8))
                }
            }
        }
        let a = try serve(first, "a")
        let b = try serve(second, "b")
        // Either loop answers while the other one has stopped.
        try first.sync { a.value.stopAccepting() }
        #expect(try get(path).text == "b")
        #expect(isSocketFile(path), "a server accepting from a shared socket leaves its file alone")
        let c = try serve(first, "c")
        try second.sync { b.value.stopAccepting() }
        #expect(try get(path).text == "c")

        // Once every descriptor is closed, connecting is refused; then the file goes.
        try first.sync { c.value.stopAccepting() }
        socket.close()
        #expect(throws: TestFailure.self) { try RawClient(unixPath: path) }
        #expect(isSocketFile(path))
        socket.removeFile()
        #expect(fileMode(path) == nil)
    }

    @Test func anUpstreamPoolTalksToAUnixSocketAndReusesItsConnection() throws {
        let directory = SocketDirectory()
        defer { directory.remove() }
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let path = directory.file("model.sock")
        let server = try startUnixServer(loop, path: path)
        let pool = try loop.make { UpstreamPool(loop: loop.loop, socketPath: path, maxConnections: 4) }
        #expect(pool.value.socketPath == path)

        for target in ["/v1/models/m:predict", "/v2/models/m/infer", "/again"] {
            let result = try send(pool, on: loop, { UpstreamRequest(method: "GET", target: target) })
            let outcome = try result.get()
            #expect(outcome.status == 200)
            #expect(outcome.body == "127.0.0.1 true localhost \(target)")
        }
        #expect(try loop.sync { pool.value.connectionsOpened } == 1)
        #expect(try loop.sync { server.value.connectionsAccepted } == 1)
    }

    @Test func anUpstreamPoolNamesTheSocketPathWhenItCannotConnect() throws {
        let directory = SocketDirectory()
        defer { directory.remove() }
        let loop = try LoopThread()
        defer { loop.shutdown() }
        let missing = directory.file("missing.sock")
        let stale = directory.file("stale.sock")
        try leaveStaleSocket(at: stale)
        for (path, why) in [(missing, "No such file or directory"), (stale, "Connection refused")] {
            let pool = try loop.make { UpstreamPool(loop: loop.loop, socketPath: path) }
            let result = try send(pool, on: loop)
            guard case .failure(let error) = result else {
                Issue.record("expected a connect failure, got \(result)")
                continue
            }
            #expect(error == .connectFailed("connect to unix:\(path) failed: \(why)"))
        }
    }
}

/// `--listen` / `--admin` text as users write it (SPEC §12; IPv6 literals in brackets, as in URLs).
@Suite struct ListenAddressParsingTests {
    @Test(arguments: [
        ("127.0.0.1:8480", ListenAddress.tcp(host: "127.0.0.1", port: 8480), "127.0.0.1:8480"),
        ("[::1]:8480", .tcp(host: "::1", port: 8480), "[::1]:8480"),
        ("::1:8480", .tcp(host: "::1", port: 8480), "[::1]:8480"),
        ("[fe80::1%lo]:0", .tcp(host: "fe80::1%lo", port: 0), "[fe80::1%lo]:0"),
        ("localhost:1", .tcp(host: "localhost", port: 1), "localhost:1"),
        ("unix:/run/s.sock", .unix(path: "/run/s.sock"), "unix:/run/s.sock"),
    ])
    func readsAndWritesBack(text: String, address: ListenAddress, written: String) {
        #expect(ListenAddress(parsing: text) == address)
        #expect(address.description == written)
        #expect(ListenAddress(parsing: written) == address)
    }

    @Test(arguments: ["[::1]", "[::1:8480", "::1]:8480", "[]:8480", "[127.0.0.1]:8480", "[::1]x:8480", "8480", "unix:"])
    func refusesMalformedAddresses(text: String) {
        #expect(ListenAddress(parsing: text) == nil)
    }
}
