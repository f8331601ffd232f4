import Foundation
import TestTLSSupport
import Testing

@testable import EventHTTP

@Suite struct TLSTests {
    @Test func trustsTheCAOfItsCAFile() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey)
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile))
        let exchange = try tlsExchange(context: context, port: server.port)
        #expect(exchange.failure == nil)
        #expect(exchange.body == "hello over tls")
        #expect(exchange.protocolVersion == "TLSv1.3")
        #expect(exchange.negotiatedProtocol == "http/1.1")
    }

    // The socket never signals bytes OpenSSL has already decrypted: a read cut short by maxBytes
    // says so (hasBufferedInput), and the next read gets them without waiting for the socket.
    @Test func aReadCutShortLeavesTheRestBufferedInOpenSSL() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey)
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile))
        let exchange = try tlsExchange(context: context, port: server.port, maxBytesPerRead: 7)
        #expect(exchange.failure == nil)
        #expect(exchange.body == "hello over tls")
        #expect(exchange.readsThatLeftBufferedInput > 0)
    }

    @Test func verifiesAnIPLiteralHostAsAnIP() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey)
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile))
        let exchange = try tlsExchange(context: context, port: server.port, host: "127.0.0.1")
        #expect(exchange.failure == nil)
        #expect(exchange.body == "hello over tls")
    }

    // The system trust store cannot be tested offline; what can: it does not hold the test CA.
    @Test func refusesACertificateTheSystemTrustStoreDoesNotTrust() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey)
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions())
        let exchange = try tlsExchange(context: context, port: server.port)
        #expect(exchange.failure == "certificate verify failed: unable to get local issuer certificate")
        #expect(exchange.body == nil)
    }

    @Test func refusesACertificateOfAnotherCA() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey)
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.otherCAFile))
        let exchange = try tlsExchange(context: context, port: server.port)
        #expect(exchange.failure == "certificate verify failed: unable to get local issuer certificate")
    }

    @Test(arguments: ["localhost", "127.0.0.1"])
    func refusesACertificateForAnotherName(host: String) throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.modelCert, key: pki.modelKey)  // model.svc only
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile))
        let exchange = try tlsExchange(context: context, port: server.port, host: host)
        #expect(exchange.failure == "hostname mismatch: the certificate is not valid for '\(host)'")
    }

    @Test func serverNameIsTheNameVerified() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.modelCert, key: pki.modelKey)
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile, serverName: "model.svc"))
        let exchange = try tlsExchange(context: context, port: server.port, host: "127.0.0.1")
        #expect(exchange.failure == nil)
        #expect(exchange.body == "hello over tls")
    }

    @Test func aServerThatRequiresAClientCertificateRefusesNone() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(
            cert: pki.serverCert,
            key: pki.serverKey,
            .requireClientCertificate(caFile: pki.clientCAFile)
        )
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile))
        let exchange = try tlsExchange(context: context, port: server.port)
        // TLS 1.3: the client's handshake is over before the server checks the certificate, so
        // the server's alert arrives on the first read (or, when the request was sent first, after a
        // write that failed on the reset that followed it).
        // TLS 1.3 refuses after the handshake: the alert usually arrives before the reset, but a
        // loaded machine may see the reset first; either way it is a TLS failure, said as one.
        #expect(
            exchange.failure == "TLS failed: tlsv13 alert certificate required"
                || exchange.failure?.hasPrefix("TLS failed: Connection reset") == true
        )
        #expect(exchange.body == nil)
    }

    @Test func presentsItsClientCertificate() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(
            cert: pki.serverCert,
            key: pki.serverKey,
            .requireClientCertificate(caFile: pki.clientCAFile)
        )
        defer { server.stop() }
        let options = TLSClientOptions(caFile: pki.caFile, certFile: pki.clientCert, keyFile: pki.clientKey)
        let exchange = try tlsExchange(context: try TLSClientContext(options: options), port: server.port)
        #expect(exchange.failure == nil)
        #expect(exchange.body == "hello over tls")
    }

    @Test func insecureSkipVerifyAcceptsAnUntrustedCertificateForAnotherName() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.modelCert, key: pki.modelKey)
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions(insecureSkipVerify: true))
        let exchange = try tlsExchange(context: context, port: server.port, host: "localhost")
        #expect(exchange.failure == nil)
        #expect(exchange.body == "hello over tls")
    }

    @Test func refusesAServerThatSpeaksOnlyTLS11() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey, .maxTLS11)
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile))
        let exchange = try tlsExchange(context: context, port: server.port)
        // OpenSSL's own words: the server, seeing only TLS 1.2 and 1.3 offered, sends the alert.
        #expect(exchange.failure == "handshake failed: tlsv1 alert protocol version")
    }

    @Test func resumesTheSessionOfAnEarlierConnection() throws {
        let pki = try TestPKI.shared()
        let server = try TLSTestServer(cert: pki.serverCert, key: pki.serverKey)
        defer { server.stop() }
        let context = try TLSClientContext(options: TLSClientOptions(caFile: pki.caFile))
        let first = try tlsExchange(context: context, port: server.port)
        #expect(first.failure == nil)
        #expect(!first.wasResumed)
        #expect(context.cachedSessionCount == 1)
        let second = try tlsExchange(context: context, port: server.port)
        #expect(second.failure == nil)
        #expect(second.wasResumed)
        #expect(second.body == "hello over tls")
    }

    @Test func acceptsReadableFiles() throws {
        let pki = try TestPKI.shared()
        let options = TLSClientOptions(caFile: pki.caFile, certFile: pki.clientCert, keyFile: pki.clientKey)
        #expect(TLSClientContext.check(options) == nil)
    }

    @Test func refusesAMissingCAFile() throws {
        let pki = try TestPKI.shared()
        let path = pki.path("missing.pem")
        #expect(
            TLSClientContext.check(TLSClientOptions(caFile: path))?.description
                == "cannot read ca_file '\(path)': No such file or directory"
        )
    }

    @Test func refusesACAFileWithoutCertificates() throws {
        let pki = try TestPKI.shared()
        let path = pki.path("garbage.pem")
        try Data("this is not a certificate\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(
            TLSClientContext.check(TLSClientOptions(caFile: path))?.description
                == "cannot read ca_file '\(path)': no certificates in it"
        )
    }

    @Test func refusesACAFileWithABrokenCertificate() throws {
        let pki = try TestPKI.shared()
        let path = pki.path("broken.pem")
        let text = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        #expect(
            TLSClientContext.check(TLSClientOptions(caFile: path))?.description
                == "cannot read ca_file '\(path)': malformed certificate (too long)"
        )
    }

    @Test func refusesAKeyOfAnotherCertificate() throws {
        let pki = try TestPKI.shared()
        let options = TLSClientOptions(caFile: pki.caFile, certFile: pki.clientCert, keyFile: pki.serverKey)
        #expect(TLSClientContext.check(options)?.description == "cert_file and key_file do not match")
    }

    @Test func refusesAKeyFileWithoutAKey() throws {
        let pki = try TestPKI.shared()
        let options = TLSClientOptions(certFile: pki.clientCert, keyFile: pki.clientCert)
        #expect(
            TLSClientContext.check(options)?.description
                == "cannot read key_file '\(pki.clientCert)': no private key in it"
        )
    }
}
