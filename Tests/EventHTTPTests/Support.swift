import Dispatch
import EventHTTP
import Foundation
import HTTP1
@_exported import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Shares a value with the loop thread; the tests order accesses with semaphores.
final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// An `EventLoop` running on its own thread. Objects created on it are kept until `shutdown()`,
/// which stops the loop, waits for the thread, then releases them.
final class LoopThread: @unchecked Sendable {
    let loop: EventLoop
    private let finished = DispatchSemaphore(value: 0)
    private var kept: [AnyObject] = []

    init() throws {
        let loop = try EventLoop()
        self.loop = loop
        let finished = self.finished
        let thread = Thread {
            loop.run()
            finished.signal()
        }
        thread.start()
    }

    /// Runs `body` on the loop thread and waits for its result (at most 10 s).
    func sync<T>(_ body: @escaping () throws -> T) throws -> T {
        let work = Box(body)
        let result = Box<Result<T, Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        loop.execute {
            result.value = Result { try work.value() }
            done.signal()
        }
        guard done.wait(timeout: .now() + 10) == .success else { throw TestFailure("the loop did not answer") }
        return try result.value!.get()
    }

    /// Creates an object on the loop thread and keeps it alive until `shutdown()`.
    func make<T: AnyObject>(_ body: @escaping () throws -> T) throws -> Box<T> {
        let object = try sync(body)
        kept.append(object)
        return Box(object)
    }

    /// Polls `condition` on the loop thread until it holds (or `timeoutMilliseconds` pass).
    func eventually(timeoutMilliseconds: Int = 3000, _ condition: @escaping () -> Bool) throws -> Bool {
        try TestSupport.eventually(within: Double(timeoutMilliseconds) / 1000) { try sync(condition) }
    }

    func shutdown() {
        loop.stop()
        finished.wait()
        kept.removeAll()
    }
}

/// A parsed response as the client saw it.
struct ClientResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// A blocking TCP client with a receive timeout, so no test can hang.
final class RawClient {
    let fd: Int32
    private var pending: [UInt8] = []

    init(port: Int, receiveTimeoutMilliseconds: Int = 3000) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket failed") }
        var timeout = timeval(
            tv_sec: receiveTimeoutMilliseconds / 1000,
            tv_usec: Int((receiveTimeoutMilliseconds % 1000) * 1000)
        )
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            Glibc.close(fd)
            throw TestFailure("connect to port \(port) failed")
        }
    }

    /// Connects to a Unix socket at `unixPath`.
    init(unixPath: String, receiveTimeoutMilliseconds: Int = 3000) throws {
        fd = try unixConnect(unixPath)
        var timeout = timeval(
            tv_sec: receiveTimeoutMilliseconds / 1000,
            tv_usec: Int((receiveTimeoutMilliseconds % 1000) * 1000)
        )
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    func shutdownWrite() { Glibc.shutdown(fd, Int32(SHUT_WR)) }

    /// Reads once: nil on EOF, error or timeout.
    private func readSome() -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Array(chunk[0..<n])
    }

    /// Reads exactly `count` bytes, or throws.
    func read(count: Int) throws -> [UInt8] {
        while pending.count < count {
            guard let more = readSome() else { throw TestFailure("connection ended after \(pending.count) bytes") }
            pending += more
        }
        let out = Array(pending[0..<count])
        pending.removeFirst(count)
        return out
    }

    /// Reads one response framed by Content-Length (or until close when it has none).
    func readResponse() throws -> ClientResponse {
        while true {
            if let end = find([13, 10, 13, 10], in: pending) {
                let headText = String(decoding: pending[0..<end], as: UTF8.self)
                pending.removeFirst(end + 4)
                var lines = headText.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst().split(separator: " ")
                guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
                    throw TestFailure("bad status line in \(headText)")
                }
                let headers = lines.map { line -> (String, String) in
                    let colon = line.firstIndex(of: ":")!
                    return (
                        String(line[..<colon]),
                        String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
                    )
                }
                var response = ClientResponse(status: status, headers: headers, body: [])
                if (100..<200).contains(status) { return response }
                if let length = response.header("content-length").flatMap({ Int($0) }) {
                    response.body = try read(count: length)
                } else {
                    response.body = readUntilClose()
                }
                return response
            }
            guard let more = readSome() else {
                throw TestFailure("connection ended before a whole response head (\(pending.count) bytes)")
            }
            pending += more
        }
    }

    /// Everything until EOF or the receive timeout.
    func readUntilClose() -> [UInt8] {
        var out = pending
        pending = []
        while let more = readSome() { out += more }
        return out
    }

    /// Whether the server closed the connection (EOF) with no more bytes, within the receive timeout.
    func isClosedByPeer() -> Bool {
        guard pending.isEmpty else { return false }
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, 0)
        return n == 0 || (n < 0 && errno == ECONNRESET)
    }
}

/// A JSON object body decoded with Foundation (tests only).
func jsonObject(_ body: [UInt8]) -> [String: String] {
    let any = try? JSONSerialization.jsonObject(with: Data(body))
    return (any as? [String: Any])?.compactMapValues { $0 as? String } ?? [:]
}

/// A scripted backend on plain blocking sockets, for answers `HTTPServer` would never give.
/// `respond(connection, request)` returns the bytes to write and whether to close afterwards,
/// or nil to close without answering. Requests are read up to their blank line (no bodies).
final class RawUpstream: @unchecked Sendable {
    let port: Int
    private let listenFD: Int32
    private let lock = NSLock()
    private var accepted = 0

    var connectionsAccepted: Int { lock.withLock { accepted } }

    init(respond: @escaping @Sendable (_ connection: Int, _ request: Int) -> (bytes: [UInt8], close: Bool)?) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        listenFD = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, sa, &length) == 0
            }
        }
        guard bound else { throw TestFailure("RawUpstream could not listen") }
        port = Int(UInt16(bigEndian: address.sin_port))
        let listener = listenFD
        Thread { [self] in
            while true {
                let fd = accept(listener, nil, nil)
                if fd < 0 { return }
                let index = lock.withLock {
                    accepted += 1
                    return accepted - 1
                }
                Thread { RawUpstream.serve(fd: fd, connection: index, respond: respond) }.start()
            }
        }.start()
    }

    private static func serve(
        fd: Int32,
        connection: Int,
        respond: (Int, Int) -> (bytes: [UInt8], close: Bool)?
    ) {
        defer { Glibc.close(fd) }
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffered: [UInt8] = []
        var request = 0
        while true {
            while find([13, 10, 13, 10], in: buffered) == nil {
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return }
                buffered += chunk[0..<n]
            }
            buffered.removeFirst(find([13, 10, 13, 10], in: buffered)! + 4)
            guard let answer = respond(connection, request) else { return }
            request += 1
            answer.bytes.withUnsafeBytes { _ = send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if answer.close { return }
        }
    }

    func stop() {
        Glibc.shutdown(listenFD, Int32(SHUT_RDWR))
        Glibc.close(listenFD)
    }
}

/// What a test keeps of an upstream result.
struct Outcome {
    var status: Int
    var body: String
    var wasReadUntilClose: Bool
}

/// Sends through `pool` from the test thread and waits for the completion.
func send(
    _ pool: Box<UpstreamPool>,
    on loop: LoopThread,
    _ request: @escaping () -> UpstreamRequest = {
        UpstreamRequest(method: "GET", target: "/")
    },
    timeoutMilliseconds: Int = 2000
) throws -> Result<Outcome, UpstreamError> {
    let result = Box<Result<Outcome, UpstreamError>?>(nil)
    let done = DispatchSemaphore(value: 0)
    let build = Box(request)
    loop.loop.execute {
        pool.value.send(build.value(), timeoutMilliseconds: timeoutMilliseconds) { outcome in
            result.value = outcome.map {
                Outcome(
                    status: $0.head.status,
                    body: String(decoding: $0.body.bytes, as: UTF8.self),
                    wasReadUntilClose: $0.wasReadUntilClose
                )
            }
            done.signal()
        }
    }
    guard done.wait(timeout: .now() + 10) == .success else { throw TestFailure("no completion") }
    return result.value!
}

/// A connected Unix stream socket, or a `TestFailure` naming the errno.
func unixConnect(_ path: String) throws -> Int32 {
    let fd = Net.connect(unixPath: path)
    guard fd >= 0 else {
        // errno of the failed connect (a successful close leaves it alone).
        throw TestFailure("connect to unix:\(path) failed: \(String(cString: strerror(errno)))")
    }
    return fd
}

func isSocketFile(_ path: String) -> Bool {
    fileMode(path).map { $0 & S_IFMT == S_IFSOCK } ?? false
}
