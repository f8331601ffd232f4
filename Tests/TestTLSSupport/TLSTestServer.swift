import Foundation
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A Python 3 TLS server on 127.0.0.1 (port 0) that answers every HTTP/1.1 request on a keep-alive
/// connection with `200 hello over tls` (or, with `.chunkedBody`, a chunked body), and reports what
/// it saw: connections, handshakes (and which resumed a session), requests. Stopped by `stop()`,
/// or when the test process dies (it exits when its stdin closes).
public final class TLSTestServer: @unchecked Sendable {
    /// The body of every answer without `.chunkedBody`.
    public static let body = "hello over tls"

    public let port: Int
    private let process = Process()
    private let input = Pipe()
    private let events: Events

    public enum Option {
        /// Refuse clients without a certificate signed by this CA.
        case requireClientCertificate(caFile: String)
        /// Speak TLS 1.0 and 1.1 only.
        case maxTLS11
        /// Answer with `chunkedBodyBytes(count)`, chunked, in chunks of varied sizes.
        case chunkedBody(bytes: Int)
        /// Answer the n-th request of a connection with `connection: close`, then close it.
        case closeAfterRequests(Int)
    }

    /// What one connection's handshake did, in the order they finished.
    public struct Handshake: Equatable, Sendable {
        public var isResumed: Bool
        /// "TLSv1.3", ...
        public var protocolVersion: String

        public init(isResumed: Bool, protocolVersion: String) {
            self.isResumed = isResumed
            self.protocolVersion = protocolVersion
        }
    }

    public init(cert: String, key: String, _ options: Option...) throws {
        let pki = try TestPKI.shared()
        var arguments = ["python3", pki.serverScript, "--cert", cert, "--key", key]
        for option in options {
            switch option {
            case .requireClientCertificate(let caFile): arguments += ["--client-ca", caFile]
            case .maxTLS11: arguments.append("--max-tls11")
            case .chunkedBody(let bytes): arguments += ["--chunked-bytes", String(bytes)]
            case .closeAfterRequests(let count): arguments += ["--close-after", String(count)]
            }
        }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = input
        do {
            try process.run()
        } catch {
            throw TLSSupportError("TLS tests need python3 on PATH for their TLS server: \(error)")
        }
        // The first line is the port, then one line per event; a script that fails (python3
        // missing: env exits 127) prints none.
        let lines = LineReader(fd: output.fileHandleForReading.fileDescriptor)
        guard let first = lines.next(), let port = Int(first) else {
            process.terminate()
            process.waitUntilExit()
            throw TLSSupportError(
                "the Python TLS server did not start (exit \(process.terminationStatus); TLS tests need python3 on PATH)"
            )
        }
        self.port = port
        let events = Events()
        self.events = events
        let thread = Thread {
            withExtendedLifetime(output) {
                while let line = lines.next() { events.record(line) }
            }
        }
        thread.start()
    }

    /// TCP connections accepted.
    public var connections: Int { events.read { $0.connections } }
    /// Handshakes that succeeded.
    public var handshakes: [Handshake] { events.read { $0.handshakes } }
    /// Why handshakes failed, as Python's ssl module says it ("TLSV13_ALERT_CERTIFICATE_REQUIRED", ...).
    public var failedHandshakes: [String] { events.read { $0.failures } }
    /// Requests answered.
    public var requests: Int { events.read { $0.requests } }

    /// Polls until `condition` holds (true) or `timeoutMilliseconds` pass (false).
    public func eventually(timeoutMilliseconds: Int = 3000, _ condition: (TLSTestServer) -> Bool) -> Bool {
        TestSupport.eventually(within: Double(timeoutMilliseconds) / 1000, every: 0.005) { condition(self) }
    }

    /// The body `.chunkedBody(bytes: count)` answers with: bytes 0 to 250, repeated.
    public static func chunkedBodyBytes(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8($0 % 251) }
    }

    public func stop() {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    deinit { stop() }

    private final class Events: @unchecked Sendable {
        struct State {
            var connections = 0
            var handshakes: [Handshake] = []
            var failures: [String] = []
            var requests = 0
        }
        private let lock = NSLock()
        private var state = State()

        func read<T>(_ body: (State) -> T) -> T { lock.withLock { body(state) } }

        func record(_ line: String) {
            let words = line.split(separator: " ", maxSplits: 1).map(String.init)
            lock.withLock {
                switch words.first {
                case "connection": state.connections += 1
                case "request": state.requests += 1
                case "handshake":
                    // "handshake resumed=1 TLSv1.3"
                    let fields = (words.count > 1 ? words[1] : "").split(separator: " ")
                    state.handshakes.append(
                        Handshake(
                            isResumed: fields.first == "resumed=1",
                            protocolVersion: fields.count > 1 ? String(fields[1]) : ""
                        )
                    )
                case "handshake-failed": state.failures.append(words.count > 1 ? words[1] : "")
                default: break
                }
            }
        }
    }
}

/// Lines from a pipe, with read(2) (not FileHandle.availableData, which traps on EINTR).
private final class LineReader: @unchecked Sendable {
    private let fd: Int32
    private var pending: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    /// The next line without its newline; nil at the end of the stream.
    func next() -> String? {
        var chunk = [UInt8](repeating: 0, count: 512)
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line.trimmingCharacters(in: .whitespaces)
            }
            let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return nil }
            pending += chunk[0..<got]
        }
    }
}
