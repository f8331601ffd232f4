import Foundation
import Testing

@testable import EventHTTP

#if canImport(Glibc)
import Glibc
#endif

/// Certificates made at test time with the openssl CLI, once per test process, in a temp dir:
/// a CA, a server certificate for `localhost` and 127.0.0.1, one for `model.svc` only, an unrelated
/// CA, and a client CA with a client certificate.
final class TestPKI: Sendable {
    static let openssl = "/usr/bin/openssl"
    private static let made = Result { try TestPKI() }

    /// The shared certificates; throws (failing the test) when they cannot be made.
    static func shared() throws -> TestPKI { try made.get() }

    let directory: String
    var caFile: String { path("ca.pem") }
    var otherCAFile: String { path("other-ca.pem") }
    var clientCAFile: String { path("client-ca.pem") }
    /// For `localhost` and IP 127.0.0.1, signed by `caFile`.
    var serverCert: String { path("server.pem") }
    var serverKey: String { path("server.key") }
    /// For `model.svc` only, signed by `caFile`.
    var modelCert: String { path("model.pem") }
    var modelKey: String { path("model.key") }
    /// Signed by `clientCAFile`.
    var clientCert: String { path("client.pem") }
    var clientKey: String { path("client.key") }
    var serverScript: String { path("tls_server.py") }

    func path(_ name: String) -> String { directory + "/" + name }

    private init() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.openssl) else {
            throw TestFailure("TLS tests make their certificates with the openssl CLI, not found at \(Self.openssl)")
        }
        directory = NSTemporaryDirectory() + "switchyard-tls-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try makeCA("ca", subject: "Switchyard Test CA")
        try makeCA("other-ca", subject: "Unrelated Test CA")
        try makeCA("client-ca", subject: "Switchyard Client CA")
        try makeLeaf(
            "server",
            subject: "localhost",
            signer: "ca",
            extensions: "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"
        )
        try makeLeaf("model", subject: "model.svc", signer: "ca", extensions: "subjectAltName=DNS:model.svc")
        try makeLeaf(
            "client",
            subject: "switchyard client",
            signer: "client-ca",
            extensions: "extendedKeyUsage=clientAuth"
        )
        try Data(tlsServerScript.utf8).write(to: URL(fileURLWithPath: serverScript))
    }

    private func makeCA(_ name: String, subject: String) throws {
        try openssl(
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            path("\(name).key"),
            "-out",
            path("\(name).pem"),
            "-days",
            "2",
            "-subj",
            "/CN=\(subject)",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign"
        )
    }

    private func makeLeaf(_ name: String, subject: String, signer: String, extensions: String) throws {
        try openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            path("\(name).key"),
            "-out",
            path("\(name).csr"),
            "-subj",
            "/CN=\(subject)"
        )
        try Data("basicConstraints=CA:FALSE\n\(extensions)\n".utf8).write(to: URL(fileURLWithPath: path("\(name).ext")))
        try openssl(
            "x509",
            "-req",
            "-in",
            path("\(name).csr"),
            "-CA",
            path("\(signer).pem"),
            "-CAkey",
            path("\(signer).key"),
            "-set_serial",
            String(Int.random(in: 1..<Int(Int32.max))),
            "-days",
            "2",
            "-out",
            path("\(name).pem"),
            "-extfile",
            path("\(name).ext")
        )
    }

    private func openssl(_ arguments: String...) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.openssl)
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestFailure("openssl \(arguments.joined(separator: " ")) failed: \(text)")
        }
    }
}

/// A Python 3 TLS server on 127.0.0.1 (port 0) that answers every HTTP/1.1 request on a keep-alive
/// connection with `200 hello over tls`. Stopped by `stop()`, or when the test process dies (it
/// exits when its stdin closes).
final class TLSTestServer {
    let port: Int
    private let process = Process()
    private let input = Pipe()

    enum Option {
        /// Refuse clients without a certificate signed by this CA.
        case requireClientCertificate(caFile: String)
        /// Speak TLS 1.0 and 1.1 only.
        case maxTLS11
    }

    init(cert: String, key: String, _ options: Option...) throws {
        let pki = try TestPKI.shared()
        var arguments = ["python3", pki.serverScript, "--cert", cert, "--key", key]
        for option in options {
            switch option {
            case .requireClientCertificate(let caFile): arguments += ["--client-ca", caFile]
            case .maxTLS11: arguments.append("--max-tls11")
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
            throw TestFailure("TLS tests need python3 on PATH for their TLS server: \(error)")
        }
        // The first line is the port; a script that fails (python3 missing: env exits 127) prints none.
        // (read(2) and not FileHandle.availableData, which traps on EINTR.)
        var line = Data()
        let reader = output.fileHandleForReading.fileDescriptor
        var chunk = [UInt8](repeating: 0, count: 64)
        while !line.contains(UInt8(ascii: "\n")) {
            let got = chunk.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { break }
            line += chunk[0..<got]
        }
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            process.terminate()
            process.waitUntilExit()
            throw TestFailure(
                "the Python TLS server did not start (exit \(process.terminationStatus); TLS tests need python3 on PATH)"
            )
        }
        self.port = port
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    deinit { stop() }
}

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

    let request = ByteBuffer()
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

    let response = ByteBuffer()
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

private let tlsServerScript = #"""
    # A TLS test server for Switchyard's TLSTests (written to a temp dir by TLSSupport.swift).
    import argparse, os, socket, ssl, sys, threading, warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # TLS 1.0/1.1 on purpose
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client-ca")
    parser.add_argument("--max-tls11", action="store_true")
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["http/1.1"])
    if args.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(args.client_ca)
    if args.max_tls11:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1

    BODY = b"hello over tls"
    RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)

    def serve(raw):
        try:
            with context.wrap_socket(raw, server_side=True) as conn:
                pending = b""
                while True:
                    while b"\r\n\r\n" not in pending:
                        data = conn.recv(65536)
                        if not data:
                            return
                        pending += data
                    _, pending = pending.split(b"\r\n\r\n", 1)
                    conn.sendall(RESPONSE)
        except (ssl.SSLError, OSError):
            pass

    def watch_stdin():
        sys.stdin.read()  # the test closed its end, or died
        os._exit(0)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    threading.Thread(target=watch_stdin, daemon=True).start()
    print(listener.getsockname()[1], flush=True)
    while True:
        raw, _ = listener.accept()
        threading.Thread(target=serve, args=(raw,), daemon=True).start()
    """#
