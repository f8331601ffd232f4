import Foundation
import TestTLSSupport
import Testing

@testable import EventHTTP

#if canImport(Glibc)
import Glibc
#endif

/// What one TLS connection to a test server did.
struct TLSExchange {
    /// The handshake's failure, or the first read's or write's (`failureDetail`), nil when none.
    var failure: String?
    /// The response body, when a whole response arrived.
    var body: String?
    var wasResumed = false
    var protocolVersion = ""
    var negotiatedProtocol: String?
    /// Reads that stopped at `maxBytesPerRead` with decrypted bytes left in OpenSSL (`hasBufferedInput`).
    var readsThatLeftBufferedInput = 0
}

/// Drives a `TLSSession` over a non-blocking socket with poll(): connect, handshake, one `GET /`,
/// read the response (framed by its content-length). Every wait is bounded (5 s in all).
/// `maxBytesPerRead` is passed to every `read`; buffered input is read without waiting for the socket.
func tlsExchange(
    context: TLSClientContext,
    port: Int,
    host: String = "localhost",
    maxBytesPerRead: Int = .max
) throws -> TLSExchange {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard rc == 0 else { throw TestFailure("connect to port \(port) failed: \(String(cString: strerror(errno)))") }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)

    let deadline = Date().addingTimeInterval(5)
    func wait(readable: Bool) throws {
        let remaining = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
        var entry = pollfd(fd: fd, events: Int16(readable ? POLLIN : POLLOUT), revents: 0)
        guard remaining > 0, poll(&entry, 1, remaining) > 0 else { throw TestFailure("the TLS exchange timed out") }
    }

    let session = TLSSession(context: context, fd: fd, host: host, port: port)
    defer { session.shutdown() }
    var exchange = TLSExchange()
    handshake: while true {
        switch session.handshake() {
        case .done: break handshake
        case .wantRead: try wait(readable: true)
        case .wantWrite: try wait(readable: false)
        case .failed(let detail):
            exchange.failure = detail
            return exchange
        }
    }
    exchange.wasResumed = session.wasResumed
    exchange.protocolVersion = session.protocolVersion
    exchange.negotiatedProtocol = session.negotiatedProtocol

    let request = EventBuffer()
    request.append("GET / HTTP/1.1\r\nhost: \(host):\(port)\r\n\r\n")
    flushing: while true {
        switch session.flush(from: request.evbuffer) {
        case .drained: break flushing
        case .pending: try wait(readable: session.needsReadableToWrite)
        case .failed:
            exchange.failure = session.failureDetail ?? "flush failed without a detail"
            return exchange
        }
    }

    let response = EventBuffer()
    while true {
        let text = String(decoding: response.bytes, as: UTF8.self)
        if let split = text.range(of: "\r\n\r\n") {
            let head = text[..<split.lowerBound].lowercased()
            let body = String(text[split.upperBound...])
            if let field = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
                let length = Int(field.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)),
                body.utf8.count >= length
            {
                exchange.body = body
                return exchange
            }
        }
        switch session.read(into: response.evbuffer, maxBytes: maxBytesPerRead) {
        case .bytes:
            if session.hasBufferedInput { exchange.readsThatLeftBufferedInput += 1 }
        case .wouldBlock: try wait(readable: !session.needsWritableToRead)
        case .endOfStream:
            exchange.failure = "the server closed the connection after \(response.count) bytes"
            return exchange
        case .failed:
            exchange.failure = session.failureDetail ?? "read failed without a detail"
            return exchange
        }
    }
}
