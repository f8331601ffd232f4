import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// How a `PacedUpstream` frames the body it sends in pieces.
enum PacedFraming: String, Sendable, CaseIterable {
    case contentLength = "content-length"
    case chunked
    case untilClose = "until-close"
}

/// A model server that answers every request with a head and then a body in separate writes,
/// `delayMilliseconds` apart (0: back to back), framed as asked. It records when each piece left,
/// so tests can compare with when the client saw it. One thread per connection.
final class PacedUpstream: @unchecked Sendable {
    let port: Int
    let pieces: [[UInt8]]
    let framing: PacedFraming
    let delayMilliseconds: Int
    let contentType: String
    private let listenFD: Int32
    private let lock = NSLock()
    private var _sentAt: [Date] = []
    private var _requests = 0
    private var _connectionsClosedEarly = 0
    private var _connections = 0

    convenience init(
        pieces: [String],
        framing: PacedFraming,
        delayMilliseconds: Int,
        contentType: String = "application/json"
    ) {
        self.init(
            pieceBytes: pieces.map { Array($0.utf8) },
            framing: framing,
            delayMilliseconds: delayMilliseconds,
            contentType: contentType
        )
    }

    init(pieceBytes: [[UInt8]], framing: PacedFraming, delayMilliseconds: Int, contentType: String) {
        self.pieces = pieceBytes
        self.framing = framing
        self.delayMilliseconds = delayMilliseconds
        self.contentType = contentType
        let (fd, port) = Net.listenSocket()
        self.listenFD = fd
        self.port = port
        Thread { [self] in
            while true {
                let client = accept(listenFD, nil, nil)
                if client < 0 { return }
                lock.withLock { _connections += 1 }
                Net.setTimeout(client, seconds: 10)
                Thread { [self] in serve(client) }.start()
            }
        }.start()
    }

    /// When each piece of the last answer was written.
    var sentAt: [Date] { lock.withLock { _sentAt } }
    var requests: Int { lock.withLock { _requests } }
    /// Connections accepted (a reused keep-alive connection counts once).
    var connections: Int { lock.withLock { _connections } }
    /// Answers whose writes failed because the peer had gone (a client disconnect reached us).
    var connectionsClosedEarly: Int { lock.withLock { _connectionsClosedEarly } }

    func stop() {
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer: [UInt8] = []
        while true {
            let (bytes, _) = Net.receive(fd) { b in FakeUpstream.completeRequest(buffer + b) != nil }
            buffer += bytes
            guard let (_, _, used) = FakeUpstream.completeRequest(buffer) else { return }
            buffer.removeFirst(used)
            lock.withLock {
                _requests += 1
                _sentAt = []
            }
            var head = "HTTP/1.1 200 OK\r\ncontent-type: \(contentType)\r\n"
            switch framing {
            case .contentLength: head += "content-length: \(pieces.reduce(0) { $0 + $1.count })\r\n"
            case .chunked: head += "transfer-encoding: chunked\r\n"
            case .untilClose: head += "connection: close\r\n"
            }
            Net.send(fd, head + "\r\n")
            for (index, piece) in pieces.enumerated() {
                // The scenario: an upstream pacing its pieces.
                if index > 0 && delayMilliseconds > 0 { usleep(UInt32(delayMilliseconds) * 1000) }
                var bytes = piece
                if framing == .chunked {
                    bytes = Array((String(piece.count, radix: 16) + "\r\n").utf8) + piece + [13, 10]
                }
                if !sendAll(fd, bytes) {
                    lock.withLock { _connectionsClosedEarly += 1 }
                    return
                }
                lock.withLock { _sentAt.append(Date()) }
            }
            if framing == .chunked { _ = sendAll(fd, Array("0\r\n\r\n".utf8)) }
            if framing == .untilClose { return }
        }
    }

}

/// A response read the way a client reads it: by Content-Length, chunked or until close, with
/// when each body read arrived.
struct FramedResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    /// The body arrived chunked (and was de-chunked here).
    var wasChunked: Bool
    /// The chunked body ended with its last chunk (false: cut short).
    var isComplete: Bool
    /// Arrival time and de-framed byte count of each read that carried body bytes.
    var arrivals: [(Date, Int)]

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Reads one response from `fd` (which has a receive timeout), whatever its framing.
func readFramedResponse(_ fd: Int32, isHEAD: Bool = false) -> FramedResponse? {
    var buffer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    func more() -> Bool {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { return false }
        buffer.append(contentsOf: chunk[0..<n])
        return true
    }
    var headEnd: Int?
    while headEnd == nil {
        headEnd = find(Array("\r\n\r\n".utf8), in: buffer)
        if headEnd == nil && !more() { return nil }
    }
    let head = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
    buffer.removeFirst(headEnd! + 4)
    var lines = head.components(separatedBy: "\r\n")
    let parts = lines.removeFirst().split(separator: " ", maxSplits: 2)
    guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
    var headers: [(String, String)] = []
    for line in lines {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
    }
    var response = FramedResponse(
        status: status,
        headers: headers,
        body: [],
        wasChunked: false,
        isComplete: true,
        arrivals: []
    )
    if isHEAD { return response }
    if !buffer.isEmpty { response.arrivals.append((Date(), buffer.count)) }
    if let length = response.header("content-length").flatMap({ Int($0) }) {
        while buffer.count < length {
            let before = buffer.count
            if !more() {
                response.isComplete = false
                break
            }
            response.arrivals.append((Date(), buffer.count - before))
        }
        response.body = Array(buffer.prefix(length))
        return response
    }
    if response.header("transfer-encoding")?.lowercased() == "chunked" {
        response.wasChunked = true
        response.isComplete = false
        var raw = buffer
        var body: [UInt8] = []
        var position = 0
        while true {
            // Decode as far as the bytes go.
            while let lineEnd = find([13, 10], in: raw, from: position) {
                let sizeText = String(decoding: raw[position..<lineEnd], as: UTF8.self)
                guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16) else { return nil }
                if size == 0 {
                    response.isComplete = true
                    response.body = body
                    return response
                }
                guard raw.count >= lineEnd + 2 + size + 2 else { break }
                body += raw[(lineEnd + 2)..<(lineEnd + 2 + size)]
                position = lineEnd + 2 + size + 2
            }
            let before = raw.count
            buffer = []
            if !more() {
                response.body = body
                return response
            }
            raw += buffer
            response.arrivals.append((Date(), raw.count - before))
        }
    }
    var seen = buffer.count
    while more() {
        response.arrivals.append((Date(), buffer.count - seen))
        seen = buffer.count
    }
    response.body = buffer
    return response
}

/// Byte `i` of the pattern a `PatternUpstream` sends: position-dependent, so a lost, repeated or
/// reordered piece shows at its first byte.
@inline(__always) func patternByte(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: (i &* 31) ^ (i >> 13)) }

/// A model server that answers each request with `size` pattern bytes, chunked or with a
/// Content-Length, written as fast as the socket takes them (64 KiB at a time, made on the fly:
/// it holds no copy of the body).
final class PatternUpstream: @unchecked Sendable {
    let port: Int
    let size: Int
    let chunked: Bool
    private let listenFD: Int32
    private let lock = NSLock()
    private var _bytesSent = 0
    private var _totalSent = 0
    private var _finished = 0
    private var _failed = 0

    init(size: Int, chunked: Bool) {
        self.size = size
        self.chunked = chunked
        let (fd, port) = Net.listenSocket()
        self.listenFD = fd
        self.port = port
        Thread { [self] in
            while true {
                let client = accept(listenFD, nil, nil)
                if client < 0 { return }
                Net.setTimeout(client, seconds: 30)
                Thread { [self] in serve(client) }.start()
            }
        }.start()
    }

    var bytesSent: Int { lock.withLock { _bytesSent } }
    /// Body bytes written over every connection.
    var totalSent: Int { lock.withLock { _totalSent } }
    /// Answers sent whole, and answers whose writes failed (the peer went away).
    var finished: Int { lock.withLock { _finished } }
    var failed: Int { lock.withLock { _failed } }

    func stop() {
        shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer: [UInt8] = []
        let (bytes, _) = Net.receive(fd) { b in FakeUpstream.completeRequest(buffer + b) != nil }
        buffer += bytes
        guard FakeUpstream.completeRequest(buffer) != nil else { return }
        let framing = chunked ? "transfer-encoding: chunked" : "content-length: \(size)"
        Net.send(fd, "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\(framing)\r\n\r\n")
        var offset = 0
        var piece = [UInt8](repeating: 0, count: 64 * 1024)
        while offset < size {
            let count = min(piece.count, size - offset)
            for k in 0..<count { piece[k] = patternByte(offset + k) }
            var out = Array(piece[0..<count])
            if chunked { out = Array((String(count, radix: 16) + "\r\n").utf8) + out + [13, 10] }
            if !sendAll(fd, out) {
                lock.withLock { _failed += 1 }
                return
            }
            offset += count
            lock.withLock {
                _bytesSent = offset
                _totalSent += count
            }
        }
        if chunked { _ = sendAll(fd, Array("0\r\n\r\n".utf8)) }
        lock.withLock { _finished += 1 }
    }

}

/// This process's resident set size in bytes (from /proc/self/status).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let digits = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return digits * 1024
    }
    return 0
}

/// A metric's value from the admin `/metrics` text: the sum over series whose labels contain
/// every `labels` pair.
func metricValue(_ text: String, _ name: String, _ labels: [String: String] = [:]) -> Double {
    var total = 0.0
    for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
        let matches = labels.allSatisfy { line.contains("\($0.key)=\"\($0.value)\"") }
        if matches, let value = line.split(separator: " ").last.flatMap({ Double($0) }) { total += value }
    }
    return total
}

/// `switchyard serve` as a child process on Unix sockets, so that its memory is its own
/// (`residentBytes(of:)`), not shared with the tests running beside it in this process.
final class ChildSidecar {
    let process = Process()
    let directory: String
    var socketPath: String { directory + "/data.sock" }
    var adminPath: String { directory + "/admin.sock" }

    init(config: String, arguments: [String] = []) throws {
        var template = Array("/tmp/sy-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        directory = String(cString: made!)
        let products =
            Bundle.main.executableURL?.deletingLastPathComponent().path ?? CommandLine.arguments[0]
        process.executableURL = URL(fileURLWithPath: products + "/switchyard")
        process.arguments =
            [
                "serve", "--config", config, "--listen", "unix:" + directory + "/data.sock",
                "--admin", "unix:" + directory + "/admin.sock", "--workers", "1", "--config-poll-ms", "0",
            ] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let listening = eventually {
            let fd = connect()
            if fd >= 0 { close(fd) }
            return fd >= 0
        }
        if !listening { throw TestFailure("the child sidecar did not start listening") }
    }

    var pid: Int32 { process.processIdentifier }

    /// A connection to the data socket (5 s receive timeout), or -1.
    func connect(receiveBufferBytes: Int32? = nil) -> Int32 {
        let fd = Net.connect(unixPath: socketPath)
        if fd >= 0, var size = receiveBufferBytes {
            // Set after connect: a Unix socket's window is the sender's buffer, so this only
            // keeps what this client reads small.
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        return fd
    }

    /// The admin `/metrics` text (empty if it does not answer).
    func metrics() -> String {
        let fd = Net.connect(unixPath: adminPath)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        Net.send(fd, "GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        return String(decoding: Net.receive(fd) { _ in false }.bytes, as: UTF8.self)
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A process's resident set size in bytes (from /proc/PID/status).
func residentBytes(of pid: Int32) -> Int {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return (line.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
    }
    return 0
}

/// Sends all of `bytes`; false when the peer has gone.
func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return false }
        offset += n
    }
    return true
}
