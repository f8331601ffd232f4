import Foundation
import Logging
import Models
import TestTLSSupport
import Testing

@testable import Sidecar

/// The config side of SPEC §10-§12 as the running sidecar shows it: `/config`, the watcher
/// and the warnings in the log.
@Suite(.serialized) struct TransportConfigTests {
    /// The CA certificate the config's `ca_file` names, and the different one a rotation writes over it
    /// (the loader makes a TLS context from it, so both are real certificates).
    static func certificates() throws -> (first: String, rotated: String) {
        let pki = try TestPKI.shared()
        return (try pki.contents(of: pki.caFile), try pki.contents(of: pki.otherCAFile))
    }

    static func transports(upstreamPort: Int) throws -> TempConfig {
        try ProxyTests.remoteConfig(
            versions: [
                ("v1", #"{ url: "http://127.0.0.1:\#(upstreamPort)", idle_timeout_ms: 5000 }"#),
                (
                    "v2",
                    #"{ url: "https://models.internal:8443/infer", tls: { ca_file: ../certs/ca.pem, server_name: model.svc } }"#
                ),
                ("v3", #"{ url: "unix:/run/switchyard-test.sock:/v2/models/m/infer" }"#),
            ],
            split: "{ v1: 100 }"
        )
    }

    @Test func configDocumentShowsTLSSocketsAndIdleTimeouts() throws {
        let config = try Self.transports(upstreamPort: 9)
        defer { config.remove() }
        try config.writeFile("certs/ca.pem", try Self.certificates().first)
        let snapshot = try ConfigSnapshot.load(directory: config.path).get()
        let text = String(decoding: ConfigDocument.render(snapshot).serialized(), as: UTF8.self)
        let ca = "\(config.path)/certs/ca.pem"
        let expected = [
            #""v1":{"url":"http://127.0.0.1:9","timeout_ms":1000,"idle_timeout_ms":5000,"max_connections":64}"#,
            #""v2":{"url":"https://models.internal:8443/infer","timeout_ms":1000,"idle_timeout_ms":30000,"#
                + #""max_connections":64,"tls":{"ca_file":"\#(ca)","server_name":"model.svc","#
                + #""insecure_skip_verify":false}}"#,
            #""v3":{"url":"unix:/run/switchyard-test.sock:/v2/models/m/infer","#
                + #""socket_path":"/run/switchyard-test.sock","timeout_ms":1000,"idle_timeout_ms":30000,"#
                + #""max_connections":64}"#,
        ]
        for fragment in expected {
            #expect(text.contains(fragment), "\(fragment) not in \(text)")
        }
    }

    @Test func theWatcherSeesAChangedCertificate() throws {
        let config = try Self.transports(upstreamPort: 9)
        defer { config.remove() }
        let certificates = try Self.certificates()
        try config.writeFile("certs/ca.pem", certificates.first)
        let snapshot = try ConfigSnapshot.load(directory: config.path).get()
        #expect(snapshot.watchedFiles == ["\(config.path)/certs/ca.pem"])
        let watcher = ConfigWatcher(directory: config.path) { snapshot.watchedFiles }
        #expect(!watcher.hasChanged())
        try config.writeFile("certs/ca.pem", certificates.rotated)
        #expect(watcher.hasChanged())
        #expect(!watcher.hasChanged())
    }

    @Test func aRotatedCertificateIsReloaded() throws {
        let upstream = FakeUpstream(.json("{}"))
        defer { upstream.stop() }
        let config = try Self.transports(upstreamPort: upstream.port)
        defer { config.remove() }
        let certificates = try Self.certificates()
        try config.writeFile("certs/ca.pem", certificates.first)
        let sidecar = try RunningSidecar(config: config.path) { $0.configPollMilliseconds = 50 }
        defer { sidecar.stop() }
        #expect(sidecar.sidecar.snapshot.generation == 1)
        let before = sidecar.sidecar.snapshot.tlsContexts.values.map(ObjectIdentifier.init)
        try config.writeFile("certs/ca.pem", certificates.rotated)
        eventually { sidecar.sidecar.snapshot.generation != 1 }
        #expect(sidecar.sidecar.snapshot.generation == 2)
        // The rotated CA makes a new TLS context (an unchanged file would keep the old one).
        let after = sidecar.sidecar.snapshot.tlsContexts.values.map(ObjectIdentifier.init)
        #expect(before.count == 1 && after.count == 1 && after != before)
    }

    @Test func serveLogsConfigWarningsAtStartAndOnReload() throws {
        let config = try ProxyTests.remoteConfig(versions: [
            ("v1", #"{ url: "https://models.internal", tls: { insecure_skip_verify: true } }"#)
        ])
        defer { config.remove() }
        let lines = LogLines()
        let sidecar = try RunningSidecar(
            config: config.path,
            logger: Logger(label: "test") { _ in CapturingHandler(lines) }
        )
        defer { sidecar.stop() }
        let warning =
            "warning config warning diagnostic=\(config.path)/policies/m.yaml:3:70: warning: insecure_skip_verify is true: "
            + "the certificate of 'https://models.internal' is not verified, so anyone on the network path can pose as this backend"
        #expect(lines.all.filter { $0.hasPrefix("warning ") } == [warning])
        let reload = try #require(httpRequest(port: sidecar.adminPort, "POST", "/reload"))
        #expect(reload.bodyText == #"{"generation":2}"#)
        #expect(lines.all.filter { $0.hasPrefix("warning ") } == [warning, warning])
    }
}

extension TempConfig {
    /// Writes a file under the config directory, making its directories.
    func writeFile(_ relative: String, _ text: String) throws {
        let full = path + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true
        )
        try text.write(toFile: full, atomically: true, encoding: .utf8)
    }
}

/// Log lines as `level message key=value...`, in order.
final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}

struct CapturingHandler: LogHandler {
    let lines: LogLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    init(_ lines: LogLines) { self.lines = lines }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        lines.append(([event.level.rawValue, "\(event.message)"] + fields).joined(separator: " "))
    }
}
