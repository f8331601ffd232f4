import Foundation
import TestTLSSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SPEC §11 end to end: client → sidecar → a Python TLS server (Tests/TestTLSSupport) on an
/// `https://` version, as the sidecar's client sees it.
@Suite(.serialized) struct TLSUpstreamTests {
    /// A sidecar config whose model `m` has one version `v1` at `url` with `tls` (YAML flow
    /// mapping contents, nil: no `tls` block).
    static func config(url: String, tls: String?) throws -> TempConfig {
        let block = tls.map { ", tls: { \($0) }" } ?? ""
        return try ProxyTests.remoteConfig(versions: [("v1", #"{ url: "\#(url)"\#(block) }"#)])
    }

    /// `ca_file: <the test CA>`, plus `extra` settings.
    static func trustingTheTestCA(_ extra: String = "") throws -> String {
        let pki = try TestPKI.shared()
        return #"ca_file: "\#(pki.caFile)""# + (extra.isEmpty ? "" : ", \(extra)")
    }

    /// One prediction request through a sidecar in front of `server` at `url`.
    static func predict(
        url: (Int) -> String = { "https://localhost:\($0)" },
        server: TLSTestServer,
        tls: String?
    ) throws -> ClientResponse {
        let config = try Self.config(url: url(server.port), tls: tls)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        return try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
    }

    /// Expects the 502 `upstream_tls_failed` of version `v1` whose detail is `detail` (after the
    /// `version 'v1': ` prefix), and no body of the backend.
    static func expectTLSFailure(
        _ response: ClientResponse,
        detail: (String) -> Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(response.status == 502, sourceLocation: sourceLocation)
        #expect(
            response.json?["error"] as? String == "upstream_tls_failed",
            "\(response.bodyText)",
            sourceLocation: sourceLocation
        )
        let text = response.json?["detail"] as? String ?? ""
        #expect(text.hasPrefix("version 'v1': "), "\(text)", sourceLocation: sourceLocation)
        #expect(detail(String(text.dropFirst("version 'v1': ".count))), "\(text)", sourceLocation: sourceLocation)
        #expect(response.header("x-switchyard-version") == "v1", sourceLocation: sourceLocation)
        #expect(!response.bodyText.contains(TLSTestServer.body), sourceLocation: sourceLocation)
    }

    @Test(arguments: ["localhost", "127.0.0.1"])
    func answersThroughATLSBackendTrustingItsCAFile(host: String) throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey)
        defer { server.stop() }
        let response = try Self.predict(url: { "https://\(host):\($0)" }, server: server, tls: Self.trustingTheTestCA())
        #expect(response.status == 200)
        #expect(response.bodyText == TLSTestServer.body)
        #expect(response.header("x-switchyard-version") == "v1")
        #expect(server.handshakes == [TLSTestServer.Handshake(isResumed: false, protocolVersion: "TLSv1.3")])
    }

    // Several requests share one TLS connection; the next connection, once the backend has closed
    // the first, resumes the first one's session (the server's own `session_reused`).
    @Test func keepsTheConnectionAliveAndResumesTheSessionOnTheNext() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey, .closeAfterRequests(3))
        defer { server.stop() }
        let config = try Self.config(url: "https://localhost:\(server.port)", tls: Self.trustingTheTestCA())
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }

        for _ in 0..<3 {
            let response = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
            #expect(response.status == 200)
            #expect(response.bodyText == TLSTestServer.body)
            #expect(response.header("x-switchyard-version") == "v1")
        }
        #expect(server.connections == 1)
        #expect(server.handshakes == [TLSTestServer.Handshake(isResumed: false, protocolVersion: "TLSv1.3")])

        // The third answer said `connection: close` and the server closed: a new connection.
        let response = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
        #expect(response.status == 200)
        #expect(response.bodyText == TLSTestServer.body)
        #expect(server.eventually { $0.handshakes.count == 2 })
        #expect(server.connections == 2)
        #expect(server.handshakes.last == TLSTestServer.Handshake(isResumed: true, protocolVersion: "TLSv1.3"))
        #expect(server.requests == 4)
    }

    @Test func refusesACertificateOfAnotherCA() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey)
        defer { server.stop() }
        let response = try Self.predict(server: server, tls: #"ca_file: "\#(pki.otherCAFile)""#)
        Self.expectTLSFailure(response) { $0 == "certificate verify failed: unable to get local issuer certificate" }
        #expect(server.requests == 0)
    }

    // Without `ca_file` the system's trust store decides, and it does not hold the test CA.
    @Test func refusesACertificateTheSystemTrustStoreDoesNotTrust() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey)
        defer { server.stop() }
        let response = try Self.predict(server: server, tls: nil)
        Self.expectTLSFailure(response) { $0 == "certificate verify failed: unable to get local issuer certificate" }
        #expect(server.requests == 0)
    }

    @Test func refusesACertificateForAnotherName() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.modelCert, key: pki.modelKey)  // model.svc only
        defer { server.stop() }
        let response = try Self.predict(server: server, tls: Self.trustingTheTestCA())
        Self.expectTLSFailure(response) { $0 == "hostname mismatch: the certificate is not valid for 'localhost'" }
        #expect(server.requests == 0)
    }

    @Test func serverNameIsTheNameVerified() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.modelCert, key: pki.modelKey)
        defer { server.stop() }
        let response = try Self.predict(server: server, tls: Self.trustingTheTestCA("server_name: model.svc"))
        #expect(response.status == 200)
        #expect(response.bodyText == TLSTestServer.body)
        #expect(response.header("x-switchyard-version") == "v1")
    }

    @Test func aBackendThatRequiresAClientCertificateRefusesNone() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(
            cert: pki.serverCert,
            key: pki.serverKey,
            .requireClientCertificate(caFile: pki.clientCAFile)
        )
        defer { server.stop() }
        let response = try Self.predict(server: server, tls: Self.trustingTheTestCA())
        // TLS 1.3: the server refuses after the client's side of the handshake is done, with an alert.
        // The alert usually arrives before the reset; a loaded machine may see the reset first.
        Self.expectTLSFailure(response) {
            $0 == "TLS failed: tlsv13 alert certificate required" || $0.hasPrefix("TLS failed: Connection reset")
        }
        #expect(server.requests == 0)
    }

    @Test func presentsItsClientCertificate() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(
            cert: pki.serverCert,
            key: pki.serverKey,
            .requireClientCertificate(caFile: pki.clientCAFile)
        )
        defer { server.stop() }
        let tls = try Self.trustingTheTestCA(#"cert_file: "\#(pki.clientCert)", key_file: "\#(pki.clientKey)""#)
        let response = try Self.predict(server: server, tls: tls)
        #expect(response.status == 200)
        #expect(response.bodyText == TLSTestServer.body)
        #expect(response.header("x-switchyard-version") == "v1")
    }

    // Neither the CA (no ca_file: the system store) nor the name (model.svc at localhost) would pass.
    @Test func insecureSkipVerifyAcceptsAnUntrustedCertificate() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.modelCert, key: pki.modelKey)
        defer { server.stop() }
        let response = try Self.predict(server: server, tls: "insecure_skip_verify: true")
        #expect(response.status == 200)
        #expect(response.bodyText == TLSTestServer.body)
        #expect(response.header("x-switchyard-version") == "v1")
    }

    @Test func refusesABackendThatSpeaksOnlyTLS11() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey, .maxTLS11)
        defer { server.stop() }
        let response = try Self.predict(server: server, tls: Self.trustingTheTestCA())
        Self.expectTLSFailure(response) { $0 == "handshake failed: tlsv1 alert protocol version" }
        #expect(server.requests == 0)
    }

    @Test func fallbackCatchesATLSFailure() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey)
        defer { server.stop() }
        let stable = FakeUpstream(.json(#"{"predictions":[1]}"#))
        defer { stable.stop() }
        let config = try ProxyTests.remoteConfig(
            versions: [
                ("v1", #"{ url: "http://127.0.0.1:\#(stable.port)" }"#),
                ("v2", #"{ url: "https://localhost:\#(server.port)", tls: { ca_file: "\#(pki.otherCAFile)" } }"#),
            ],
            labels: "{ stable: v1, candidate: v2 }",
            split: "{ stable: 0, candidate: 100 }",
            fallback: "stable"
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let response = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
        #expect(response.status == 200)
        #expect(response.bodyText == #"{"predictions":[1]}"#)
        #expect(response.header("x-switchyard-version") == "v1")
        #expect(response.header("x-switchyard-fallback") == "v2")
        #expect(stable.received.count == 1)
        #expect(server.eventually { !$0.failedHandshakes.isEmpty })  // v2 was tried, and refused
        #expect(server.requests == 0)
    }

    // A `json` route relays the body as it arrives (SPEC §10): more than 1 MiB (the default
    // --max-response-bytes is 8 MiB, but a streamed body is not read whole), chunked by the backend.
    @Test func relaysALargeChunkedBodyIntact() throws {
        let pki = try TestPKI.shared()
        let size = (1 << 20) + 300_001
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey, .chunkedBody(bytes: size))
        defer { server.stop() }
        let config = try Self.config(url: "https://localhost:\(server.port)", tls: Self.trustingTheTestCA())
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let client = try #require(Client(port: sidecar.port))
        client.sendRaw("POST /v1/models/m:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}")
        let response = try #require(readFramedResponse(client.fd))
        #expect(response.status == 200)
        #expect(response.header("x-switchyard-version") == "v1")
        #expect(response.wasChunked)
        #expect(response.isComplete)
        #expect(response.body.count == size)
        // Compared here, not in #expect, whose diff of two large arrays takes minutes.
        let expected = TLSTestServer.chunkedBodyBytes(size)
        let firstDifference = (0..<min(size, response.body.count)).first { response.body[$0] != expected[$0] }
        #expect(firstDifference == nil, "the body differs from byte \(firstDifference ?? 0)")
    }

    @Test func aSlowReaderOfATLSStreamGetsEveryByte() throws {
        // Back-pressure pauses and resumes the TLS upstream many times; every byte still arrives,
        // in order.
        let pki = try TestPKI.shared()
        let size = 4 << 20
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey, .chunkedBody(bytes: size))
        defer { server.stop() }
        let config = try Self.config(url: "https://localhost:\(server.port)", tls: Self.trustingTheTestCA())
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let fd = Net.connect(port: sidecar.port, timeoutSeconds: 10)
        defer { close(fd) }
        var small: Int32 = 16 * 1024
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        Net.send(fd, "POST /v1/models/m:predict HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8 * 1024)
        var reads = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
            reads += 1
            if reads % 8 == 0 { usleep(1_000) }  // the scenario: a slow reader
            if let end = find([48, 13, 10, 13, 10], in: Array(received.suffix(5))), end == 0 { break }
        }
        let headEnd = try #require(find([13, 10, 13, 10], in: Array(received.prefix(4096))))
        var body: [UInt8] = []
        var position = headEnd + 4
        while position < received.count, let lineEnd = find([13, 10], in: received, from: position) {
            let size = Int(String(decoding: received[position..<lineEnd], as: UTF8.self), radix: 16) ?? -1
            if size <= 0 { break }
            body += received[(lineEnd + 2)..<min(received.count, lineEnd + 2 + size)]
            position = lineEnd + 2 + size + 2
        }
        #expect(body.count == size)
        let expected = TLSTestServer.chunkedBodyBytes(size)
        let firstDifference = (0..<min(size, body.count)).first { body[$0] != expected[$0] }
        #expect(firstDifference == nil, "the body differs from byte \(firstDifference ?? 0)")
    }
}
