import Foundation
import TestTLSSupport
import Testing

/// `switchyard validate` on the TLS files of an `https://` version (SPEC §11): OpenSSL's refusals
/// are diagnostics at the version.
@Suite struct TLSValidateTests {
    /// A config directory whose version `v1` names `certs/client.pem` and `certs/<key>` (copied
    /// from the test PKI) as its client certificate and key.
    static func config(key: String) throws -> String {
        let pki = try TestPKI.shared()
        return try CLI.tempDirectory(files: [
            "routes/r.yaml": "routes:\n  - { name: r, match: { path: /p }, model: m }\n",
            "policies/m.yaml": """
            model: m
            versions:
              v1:
                url: "https://localhost:8443"
                tls: { ca_file: ../certs/ca.pem, cert_file: ../certs/client.pem, key_file: ../certs/\(key) }
            """,
            "certs/ca.pem": try pki.contents(of: pki.caFile),
            "certs/client.pem": try pki.contents(of: pki.clientCert),
            "certs/client.key": try pki.contents(of: pki.clientKey),
            "certs/server.key": try pki.contents(of: pki.serverKey),
        ])
    }

    @Test func refusesACertificateAndKeyThatDoNotMatch() throws {
        let dir = try Self.config(key: "server.key")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["validate", "."], in: dir)
        #expect(r.status == 1)
        #expect(r.stdout == "policies/m.yaml:4:5: error: version 'v1': tls: cert_file and key_file do not match\n")
        #expect(r.stderr == "1 error\n")
    }

    @Test func acceptsACertificateWithItsKey() throws {
        let dir = try Self.config(key: "client.key")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["validate", "."], in: dir)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout == ".: ok: 1 route, 1 model, 1 version (0 embedded), 2 files\n")
        #expect(r.stderr == "")
    }
}
