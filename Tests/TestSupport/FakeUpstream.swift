import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A scripted model server on raw sockets, one thread per connection. It records every
/// request it receives (head text and body) so tests can check what reached it.
public final class FakeUpstream: @unchecked Sendable {
    public enum Behavior: Sendable {
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
        /// Holds each request until `release()` is called, then answers 200 with the body: a
        /// request kept in flight for exactly as long as the test needs, with no timing margin.
        case gated(String)
    }

    public struct Received: Sendable {
        public var head: String
        public var body: [UInt8]
        public init(head: String, body: [UInt8]) {
            self.head = head
            self.body = body
        }
        public func header(_ name: String) -> String? {
            for line in head.components(separatedBy: "\r\n").dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                if line[..<colon].lowercased() == name.lowercased() {
                    return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
            }
            return nil
        }
        public var requestLine: String { head.components(separatedBy: "\r\n").first ?? "" }
    }

    public let port: Int
    private let listenFD: Int32
    private let lock = NSLock()
    private var _behavior: Behavior
    private var _received: [Received] = []
    private var _connections = 0
    private var stopped = false
    private let gate = NSCondition()
    private var isReleased = false

    public init(_ behavior: Behavior) {
        let (fd, port) = Net.listenSocket()
        self.listenFD = fd
        self.port = port
        self._behavior = behavior
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    public var behavior: Behavior {
        get { lock.withLock { _behavior } }
        set { lock.withLock { _behavior = newValue } }
    }
    public var received: [Received] { lock.withLock { _received } }
    public var connections: Int { lock.withLock { _connections } }

    /// Lets every request held by `.gated` (now and later) be answered.
    public func release() {
        gate.lock()
        isReleased = true
        gate.broadcast()
        gate.unlock()
    }

    public func stop() {
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
            // The scenario: an upstream slower than some deadline of the sidecar's.
            usleep(UInt32(ms) * 1000)
            respond(200, b)
        case .gated(let b):
            gate.lock()
            while !isReleased { gate.wait() }
            gate.unlock()
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
    public static func completeRequest(_ bytes: [UInt8]) -> (String, [UInt8], Int)? {
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

/// A fresh folder under the temporary directory holding `files` (relative path → text, folders
/// made as needed); the caller removes it.
public func temporaryDirectory(files: [String: String], prefix: String = "switchyard-") throws -> String {
    let path = NSTemporaryDirectory() + prefix + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    for (name, text) in files {
        let full = path + "/" + name
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true
        )
        try text.write(toFile: full, atomically: true, encoding: .utf8)
    }
    return path
}

/// A config directory in a temporary folder, removed by `remove()`.
public struct TempConfig {
    public let path: String

    public init(routes: String, policies: [String: String], extraFiles: [String: String] = [:]) throws {
        var files = extraFiles
        files["routes/routes.yaml"] = routes
        for (name, text) in policies { files["policies/\(name).yaml"] = text }
        path = try temporaryDirectory(files: files, prefix: "switchyard-test-")
        try FileManager.default.createDirectory(atPath: path + "/policies", withIntermediateDirectories: true)
    }

    public func write(_ relative: String, _ text: String) throws {
        try text.write(toFile: path + "/" + relative, atomically: true, encoding: .utf8)
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}
