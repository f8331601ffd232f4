import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Why test TLS support could not be set up (no openssl CLI, no python3, a server that did not start).
public struct TLSSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Certificates made at test time with the openssl CLI, once per test process, in a temp dir:
/// a CA, a server certificate for `localhost` and 127.0.0.1, one for `model.svc` only, an unrelated
/// CA, and a client CA with a client certificate.
public final class TestPKI: Sendable {
    static let openssl = "/usr/bin/openssl"
    private static let made = Result { try TestPKI() }

    /// The shared certificates; throws (failing the test) when they cannot be made.
    public static func shared() throws -> TestPKI { try made.get() }

    public let directory: String
    public var caFile: String { path("ca.pem") }
    public var otherCAFile: String { path("other-ca.pem") }
    public var clientCAFile: String { path("client-ca.pem") }
    /// For `localhost` and IP 127.0.0.1, signed by `caFile`.
    public var serverCert: String { path("server.pem") }
    public var serverKey: String { path("server.key") }
    /// For `model.svc` only, signed by `caFile`.
    public var modelCert: String { path("model.pem") }
    public var modelKey: String { path("model.key") }
    /// Signed by `clientCAFile`.
    public var clientCert: String { path("client.pem") }
    public var clientKey: String { path("client.key") }
    var serverScript: String { path("tls_server.py") }

    public func path(_ name: String) -> String { directory + "/" + name }

    /// The text of one of the files above (to copy it into a config directory).
    public func contents(of file: String) throws -> String { try String(contentsOfFile: file, encoding: .utf8) }

    private init() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.openssl) else {
            throw TLSSupportError(
                "TLS tests make their certificates with the openssl CLI, not found at \(Self.openssl)"
            )
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
            throw TLSSupportError("openssl \(arguments.joined(separator: " ")) failed: \(text)")
        }
    }
}
