import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Test plumbing on plain POSIX sockets, independent of the code under test: a scripted fake
/// upstream model server and a tiny HTTP/1.1 client. Everything binds 127.0.0.1 and every
/// socket has a receive timeout, so no test can hang.

enum Net {
    static func listenSocket(port: Int = 0) -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0, "socket() failed")
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        precondition(bound == 0, "bind() failed: \(errno)")
        precondition(Glibc.listen(fd, 128) == 0, "listen() failed")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        var out = sockaddr_in()
        _ = withUnsafeMutablePointer(to: &out) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return (fd, Int(UInt16(bigEndian: out.sin_port)))
    }

    static func connect(port: Int, timeoutSeconds: Int = 5) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0)
        setTimeout(fd, seconds: timeoutSeconds)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            close(fd)
            return -1
        }
        return fd
    }

    /// A connected Unix stream socket, or -1.
    static func connect(unixPath: String, timeoutSeconds: Int = 5) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0)
        setTimeout(fd, seconds: timeoutSeconds)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, byte) in unixPath.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc != 0 {
            close(fd)
            return -1
        }
        return fd
    }

    static func setTimeout(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    static func send(_ fd: Int32, _ text: String) { send(fd, Array(text.utf8)) }

    /// Reads until `done(buffer)` says so, EOF, or the socket's timeout.
    static func receive(_ fd: Int32, until done: ([UInt8]) -> Bool) -> (bytes: [UInt8], closed: Bool) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !done(buffer) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return (buffer, true) }
            if n < 0 { return (buffer, false) }
            buffer.append(contentsOf: chunk[0..<n])
        }
        return (buffer, false)
    }
}

/// A parsed HTTP/1.1 response as a client sees it.
struct ClientResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    var bodyText: String { String(decoding: body, as: UTF8.self) }

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }
}

/// Parses one Content-Length-framed response from the front of `bytes`; nil if incomplete.
func parseResponse(_ bytes: [UInt8]) -> (ClientResponse, consumed: Int)? {
    guard let headEnd = find(Array("\r\n\r\n".utf8), in: bytes) else { return nil }
    let head = String(decoding: bytes[0..<headEnd], as: UTF8.self)
    var lines = head.components(separatedBy: "\r\n")
    let statusLine = lines.removeFirst()
    let parts = statusLine.split(separator: " ", maxSplits: 2)
    guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
    var headers: [(String, String)] = []
    for line in lines {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
    }
    let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
    let start = headEnd + 4
    guard bytes.count >= start + length else { return nil }
    return (
        ClientResponse(status: status, headers: headers, body: Array(bytes[start..<start + length])), start + length
    )
}

func find(_ needle: [UInt8], in haystack: [UInt8], from: Int = 0) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    var i = from
    while i + needle.count <= haystack.count {
        if haystack[i] == needle[0] && Array(haystack[i..<i + needle.count]) == needle { return i }
        i += 1
    }
    return nil
}

/// A keep-alive client connection.
final class Client {
    let fd: Int32
    private var pending: [UInt8] = []

    init?(port: Int, timeoutSeconds: Int = 5) {
        fd = Net.connect(port: port, timeoutSeconds: timeoutSeconds)
        if fd < 0 { return nil }
    }

    init?(unixPath: String, timeoutSeconds: Int = 5) {
        fd = Net.connect(unixPath: unixPath, timeoutSeconds: timeoutSeconds)
        if fd < 0 { return nil }
    }

    deinit { close(fd) }

    func sendRaw(_ text: String) { Net.send(fd, text) }
    func sendRaw(_ bytes: [UInt8]) { Net.send(fd, bytes) }

    /// Reads one response; nil on timeout or close before a whole response.
    func readResponse() -> ClientResponse? {
        if let (r, used) = parseResponse(pending) {
            pending.removeFirst(used)
            return r
        }
        let (bytes, _) = Net.receive(fd) { parseResponse(self.pending + $0) != nil }
        pending += bytes
        guard let (r, used) = parseResponse(pending) else { return nil }
        pending.removeFirst(used)
        return r
    }

    /// True when the server closed the connection (within the socket timeout).
    func isClosedByPeer() -> Bool {
        let (bytes, closed) = Net.receive(fd) { _ in false }
        pending += bytes
        return closed
    }

    func request(
        _ method: String,
        _ target: String,
        headers: [(String, String)] = [],
        body: String? = nil
    ) -> ClientResponse? {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (n, v) in headers { text += "\(n): \(v)\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n"
        if let body { text += body }
        sendRaw(text)
        return readResponse()
    }
}

/// One-shot request on a fresh connection.
func httpRequest(
    port: Int,
    _ method: String,
    _ target: String,
    headers: [(String, String)] = [],
    body: String? = nil
) -> ClientResponse? {
    Client(port: port)?.request(method, target, headers: headers, body: body)
}

/// One-shot request on a fresh Unix socket connection.
func httpRequest(
    unixPath: String,
    _ method: String,
    _ target: String,
    headers: [(String, String)] = [],
    body: String? = nil
) -> ClientResponse? {
    Client(unixPath: unixPath)?.request(method, target, headers: headers, body: body)
}

/// A fresh short directory under /tmp (sun_path holds 107 bytes), removed by `remove()`.
struct SocketDirectory {
    let path: String

    init() {
        var template = Array("/tmp/sy-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(cString: made!)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// The file type and permission bits of `path` (lstat), or nil when nothing is there.
func fileMode(_ path: String) -> mode_t? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return info.st_mode
}

/// A scripted model server on raw sockets, one thread per connection. It records every
/// request it receives (head text and body) so tests can check what reached it.
final class FakeUpstream: @unchecked Sendable {
    enum Behavior: Sendable {
        /// 200 with this JSON body (Content-Length framed, keep-alive).
        case json(String)
        /// This status with this body.
        case status(Int, String)
        /// Waits, then answers 200 with the body.
        case slow(milliseconds: Int, body: String)
        /// Sends bytes that are not HTTP, then closes.
        case garbage
        /// Sends a head promising 100 bytes, 10 of them, then closes.
        case closeMidBody
        /// Reads the request and closes without answering.
        case closeWithoutAnswer
        /// 200, body not JSON.
        case notJSON
        /// 200 with a body of this many bytes.
        case huge(Int)
        /// 200 without Content-Length, body until close.
        case untilClose(String)
        /// Echoes the request's head (as JSON {"head": "..."}) and body.
        case echo
    }

    struct Received: Sendable {
        var head: String
        var body: [UInt8]
        func header(_ name: String) -> String? {
            for line in head.components(separatedBy: "\r\n").dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                if line[..<colon].lowercased() == name.lowercased() {
                    return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
            }
            return nil
        }
        var requestLine: String { head.components(separatedBy: "\r\n").first ?? "" }
    }

    let port: Int
    private let listenFD: Int32
    private let lock = NSLock()
    private var _behavior: Behavior
    private var _received: [Received] = []
    private var _connections = 0
    private var stopped = false

    init(_ behavior: Behavior) {
        let (fd, port) = Net.listenSocket()
        self.listenFD = fd
        self.port = port
        self._behavior = behavior
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    var behavior: Behavior {
        get { lock.withLock { _behavior } }
        set { lock.withLock { _behavior = newValue } }
    }
    var received: [Received] { lock.withLock { _received } }
    var connections: Int { lock.withLock { _connections } }

    func stop() {
        lock.withLock { stopped = true }
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 { return }
            if lock.withLock({ stopped }) {
                close(fd)
                return
            }
            lock.withLock { _connections += 1 }
            Net.setTimeout(fd, seconds: 10)
            let thread = Thread { [self] in serve(fd) }
            thread.start()
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer: [UInt8] = []
        while true {
            let (bytes, closed) = Net.receive(fd) { b in Self.completeRequest(buffer + b) != nil }
            buffer += bytes
            guard let (head, body, used) = Self.completeRequest(buffer) else { return }
            _ = closed
            buffer.removeFirst(used)
            lock.withLock { _received.append(Received(head: head, body: body)) }
            if !answer(fd, head: head, body: body) { return }
        }
    }

    /// Returns false when the connection must close.
    private func answer(_ fd: Int32, head: String, body: [UInt8]) -> Bool {
        func respond(_ status: Int, _ body: String, extra: String = "") {
            Net.send(
                fd,
                "HTTP/1.1 \(status) X\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n\(extra)\r\n\(body)"
            )
        }
        switch behavior {
        case .json(let b):
            respond(200, b)
        case .status(let s, let b):
            respond(s, b)
        case .slow(let ms, let b):
            usleep(UInt32(ms) * 1000)
            respond(200, b)
        case .garbage:
            Net.send(fd, "this is not http at all\r\n\r\n")
            return false
        case .closeMidBody:
            Net.send(fd, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            return false
        case .closeWithoutAnswer:
            return false
        case .notJSON:
            respond(200, "<html>not json</html>")
        case .huge(let n):
            Net.send(fd, "HTTP/1.1 200 OK\r\ncontent-length: \(n)\r\n\r\n")
            Net.send(fd, [UInt8](repeating: UInt8(ascii: "7"), count: n))
        case .untilClose(let b):
            Net.send(fd, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n\(b)")
            return false
        case .echo:
            let escaped = head.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\r\n", with: "\\n")
            respond(
                200,
                "{\"head\":\"\(escaped)\",\"body\":\"\(String(decoding: body, as: UTF8.self).replacingOccurrences(of: "\"", with: "\\\""))\"}"
            )
        }
        return true
    }

    /// A whole request (Content-Length or chunked) at the front of `bytes`.
    static func completeRequest(_ bytes: [UInt8]) -> (String, [UInt8], Int)? {
        guard let headEnd = find(Array("\r\n\r\n".utf8), in: bytes) else { return nil }
        let head = String(decoding: bytes[0..<headEnd], as: UTF8.self)
        let start = headEnd + 4
        var length = 0
        for line in head.components(separatedBy: "\r\n").dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "content-length" {
                length = Int(parts[1].trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        guard bytes.count >= start + length else { return nil }
        return (head, Array(bytes[start..<start + length]), start + length)
    }
}

/// A config directory in a temporary folder, removed by `remove()`.
struct TempConfig {
    let path: String

    init(routes: String, policies: [String: String], extraFiles: [String: String] = [:]) throws {
        path = NSTemporaryDirectory() + "switchyard-test-" + UUID().uuidString
        let fm = FileManager.default
        try fm.createDirectory(atPath: path + "/routes", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: path + "/policies", withIntermediateDirectories: true)
        try routes.write(toFile: path + "/routes/routes.yaml", atomically: true, encoding: .utf8)
        for (name, text) in policies {
            try text.write(toFile: path + "/policies/\(name).yaml", atomically: true, encoding: .utf8)
        }
        for (name, text) in extraFiles {
            let full = path + "/" + name
            try fm.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true
            )
            try text.write(toFile: full, atomically: true, encoding: .utf8)
        }
    }

    func write(_ relative: String, _ text: String) throws {
        try text.write(toFile: path + "/" + relative, atomically: true, encoding: .utf8)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A port nothing listens on (bound, then closed).
func deadPort() -> Int {
    let (fd, port) = Net.listenSocket()
    close(fd)
    return port
}
