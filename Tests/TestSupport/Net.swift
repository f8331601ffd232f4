import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Test plumbing on plain POSIX sockets, independent of the code under test: a scripted fake
/// upstream model server and a tiny HTTP/1.1 client. Everything binds 127.0.0.1 and every
/// socket has a receive timeout, so no test can hang.

public enum Net {
    public static func listenSocket(port: Int = 0) -> (fd: Int32, port: Int) {
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

    public static func connect(port: Int, timeoutSeconds: Int = 5) -> Int32 {
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
    public static func connect(unixPath: String, timeoutSeconds: Int = 5) -> Int32 {
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

    /// Whether a TCP connection to 127.0.0.1:`port` is accepted now.
    public static func canConnect(port: Int) -> Bool {
        let fd = connect(port: port, timeoutSeconds: 1)
        if fd < 0 { return false }
        close(fd)
        return true
    }

    public static func setTimeout(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    public static func send(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    public static func send(_ fd: Int32, _ text: String) { send(fd, Array(text.utf8)) }

    /// Reads until `done(buffer)` says so, EOF, or the socket's timeout.
    public static func receive(_ fd: Int32, until done: ([UInt8]) -> Bool) -> (bytes: [UInt8], closed: Bool) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !done(buffer) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return (buffer, true) }
            // A signal (a child process of another test ending) interrupts a read: read again.
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return (buffer, false) }
            buffer.append(contentsOf: chunk[0..<n])
        }
        return (buffer, false)
    }
}

/// A parsed HTTP/1.1 response as a client sees it.
public struct ClientResponse {
    public init(status: Int, headers: [(String, String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }
}

/// Parses one Content-Length-framed response from the front of `bytes`; nil if incomplete.
public func parseClientResponse(_ bytes: [UInt8]) -> (ClientResponse, consumed: Int)? {
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

/// A keep-alive client connection.
public final class Client {
    public let fd: Int32
    private var pending: [UInt8] = []

    public init?(port: Int, timeoutSeconds: Int = 5) {
        fd = Net.connect(port: port, timeoutSeconds: timeoutSeconds)
        if fd < 0 { return nil }
    }

    public init?(unixPath: String, timeoutSeconds: Int = 5) {
        fd = Net.connect(unixPath: unixPath, timeoutSeconds: timeoutSeconds)
        if fd < 0 { return nil }
    }

    deinit { close(fd) }

    public func sendRaw(_ text: String) { Net.send(fd, text) }
    public func sendRaw(_ bytes: [UInt8]) { Net.send(fd, bytes) }

    /// Reads one response; nil on timeout or close before a whole response.
    public func readResponse() -> ClientResponse? {
        if let (r, used) = parseClientResponse(pending) {
            pending.removeFirst(used)
            return r
        }
        let (bytes, _) = Net.receive(fd) { parseClientResponse(self.pending + $0) != nil }
        pending += bytes
        guard let (r, used) = parseClientResponse(pending) else { return nil }
        pending.removeFirst(used)
        return r
    }

    /// True when the server closed the connection (within the socket timeout).
    public func isClosedByPeer() -> Bool {
        let (bytes, closed) = Net.receive(fd) { _ in false }
        pending += bytes
        return closed
    }

    public func request(
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
public func httpRequest(
    port: Int,
    _ method: String,
    _ target: String,
    headers: [(String, String)] = [],
    body: String? = nil
) -> ClientResponse? {
    Client(port: port)?.request(method, target, headers: headers, body: body)
}

/// One-shot request on a fresh Unix socket connection.
public func httpRequest(
    unixPath: String,
    _ method: String,
    _ target: String,
    headers: [(String, String)] = [],
    body: String? = nil
) -> ClientResponse? {
    Client(unixPath: unixPath)?.request(method, target, headers: headers, body: body)
}

/// A fresh short directory under /tmp (sun_path holds 107 bytes), removed by `remove()`.
public struct SocketDirectory {
    public let path: String

    public init() {
        var template = Array("/tmp/sy-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(cString: made!)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// The file type and permission bits of `path` (lstat), or nil when nothing is there.
public func fileMode(_ path: String) -> mode_t? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return info.st_mode
}

/// Sockets bound by `deadPort()`, held open until the test process exits.
private let deadPortSockets = NSLock()
nonisolated(unsafe) private var heldDeadPorts: [Int32] = []

/// A port nothing listens on, for connect-refused cases: a socket bound to 127.0.0.1 but never
/// listening, kept open until the test process ends, so no other process can take the port
/// meanwhile (a bound-then-closed port can be reused by anyone at once).
public func deadPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    precondition(fd >= 0, "socket() failed")
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    precondition(bound, "bind() failed: \(errno)")
    deadPortSockets.withLock { heldDeadPorts.append(fd) }
    return Int(UInt16(bigEndian: address.sin_port))
}
