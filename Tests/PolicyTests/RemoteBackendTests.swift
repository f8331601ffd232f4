import Foundation
import Testing

@testable import Policy

// MARK: - URL shapes (SPEC §4, §11, §12)

private let longestSocketPath = "/run/" + String(repeating: "s", count: 97) + ".sock"

@Test(arguments: [
    ("http://127.0.0.1", Syntax.URLParts(host: "127.0.0.1", port: 80, path: nil)),
    ("http://127.0.0.1/", Syntax.URLParts(host: "127.0.0.1", port: 80, path: nil)),
    (
        "http://models.internal:8080/v1/predict",
        Syntax.URLParts(host: "models.internal", port: 8080, path: "/v1/predict")
    ),
    ("http://[::1]:9001", Syntax.URLParts(host: "[::1]", port: 9001, path: nil)),
    ("HTTP://Models.Internal", Syntax.URLParts(host: "Models.Internal", port: 80, path: nil)),
    ("https://models.internal", Syntax.URLParts(host: "models.internal", port: 443, path: nil, isTLS: true)),
    (
        "https://models.internal:8443/v2/models/m/infer",
        Syntax.URLParts(host: "models.internal", port: 8443, path: "/v2/models/m/infer", isTLS: true)
    ),
    ("https://[::1]/", Syntax.URLParts(host: "[::1]", port: 443, path: nil, isTLS: true)),
    (
        "unix:/run/model.sock",
        Syntax.URLParts(host: "localhost", port: 0, path: nil, socketPath: "/run/model.sock")
    ),
    (
        "unix:/run/model.sock:/v2/models/churn/infer",
        Syntax.URLParts(host: "localhost", port: 0, path: "/v2/models/churn/infer", socketPath: "/run/model.sock")
    ),
    (
        "unix:/run/model.sock:/",
        Syntax.URLParts(host: "localhost", port: 0, path: nil, socketPath: "/run/model.sock")
    ),
    (
        "UNIX:/tmp/m.sock:/a:b",
        Syntax.URLParts(host: "localhost", port: 0, path: "/a:b", socketPath: "/tmp/m.sock")
    ),
    (
        "unix:\(longestSocketPath)",
        Syntax.URLParts(host: "localhost", port: 0, path: nil, socketPath: longestSocketPath)
    ),
    ("grpc://m.internal:9000", Syntax.URLParts(host: "m.internal", port: 9000, path: nil, isGRPC: true)),
    ("GRPC://[::1]:8001/", Syntax.URLParts(host: "[::1]", port: 8001, path: nil, isGRPC: true)),
    ("grpcs://m.internal", Syntax.URLParts(host: "m.internal", port: 443, path: nil, isTLS: true, isGRPC: true)),
    (
        "grpcs://m.internal:8443",
        Syntax.URLParts(host: "m.internal", port: 8443, path: nil, isTLS: true, isGRPC: true)
    ),
])
func acceptedURL(text: String, expected: Syntax.URLParts) throws {
    let parts = try Syntax.url(text).get()
    #expect(parts == expected)
}

@Test(arguments: [
    (
        "https://",
        "bad url 'https://': the host is missing; expected https://host[:port][/path]"
    ),
    (
        "https://m.internal:65536",
        "bad url 'https://m.internal:65536': port '65536' is not a number in 1...65535; expected https://host[:port][/path]"
    ),
    (
        "https://m.internal/x?y=1",
        "bad url 'https://m.internal/x?y=1': a query is not allowed; expected https://host[:port][/path]"
    ),
    (
        "grpc+tcp://m.internal:9000",
        "bad url 'grpc+tcp://m.internal:9000': the scheme must be http, https, unix, grpc or grpcs; expected http://host[:port][/path], https://host[:port][/path], unix:/abs/path.sock[:/path], grpc://host:port or grpcs://host[:port]"
    ),
    (
        "grpc://m.internal",
        "bad url 'grpc://m.internal': the port is missing; plaintext gRPC has no default port; expected grpc://host:port"
    ),
    (
        "grpc://m.internal:8001/inference.GRPCInferenceService/ModelInfer",
        "bad url 'grpc://m.internal:8001/inference.GRPCInferenceService/ModelInfer': a path is not allowed; a gRPC call keeps its /package.Service/Method; expected grpc://host:port"
    ),
    (
        "grpcs://m.internal:0",
        "bad url 'grpcs://m.internal:0': port '0' is not a number in 1...65535; expected grpcs://host[:port]"
    ),
    (
        "unix:model.sock",
        "bad url 'unix:model.sock': the socket path 'model.sock' must be absolute (start with '/'); expected unix:/abs/path.sock[:/path]"
    ),
    (
        "unix://run/m.sock",
        "bad url 'unix://run/m.sock': the socket path '//run/m.sock' starts with '//'; write one '/' after 'unix:', as in 'unix:/run/m.sock'; expected unix:/abs/path.sock[:/path]"
    ),
    (
        "unix:\(longestSocketPath)x",
        "bad url 'unix:\(longestSocketPath)x': the socket path is 108 bytes long; a Unix socket path holds at most 107; expected unix:/abs/path.sock[:/path]"
    ),
    (
        "unix:/run/m.sock:infer",
        "bad url 'unix:/run/m.sock:infer': the path after the socket path must start with '/', found 'infer'; expected unix:/abs/path.sock[:/path]"
    ),
    (
        "unix:/run/m.sock:/infer#x",
        "bad url 'unix:/run/m.sock:/infer#x': a fragment is not allowed; expected unix:/abs/path.sock[:/path]"
    ),
])
func rejectedURL(text: String, message: String) {
    switch Syntax.url(text) {
    case .success(let parts): Issue.record("'\(text)' was accepted as \(parts)")
    case .failure(let error): #expect(error.message == message)
    }
}

@Test(arguments: [
    ("model.svc", true), ("model.svc.", true), ("localhost", true), ("a-b.c9", true),
    ("xn--bcher-kva.example", true), ("10.0.0.7", true), ("::1", true), ("fe80::1", true),
    ("", false), ("model svc", false), ("-a.b", false), ("a-.b", false), ("a..b", false), (".", false),
    ("999.1.1.1", false), ("10.0.0", false), ("[::1]", false), ("a_b.c", false), ("::g", false),
    ("models.internal:8443", false), (String(repeating: "a", count: 64) + ".b", false),
    (String(repeating: "a", count: 63) + ".b", true),
])
func serverNames(name: String, isValid: Bool) {
    #expect(Syntax.isServerName(name) == isValid)
}

// MARK: - Loaded backends

@Test func everyTransportLoadsAsItsRemoteBackend() throws {
    let directory = Fixtures.directory("valid", "transports")
    let config = try ConfigLoader.load(directory: directory).get()
    let policy = try #require(config.models["m"])
    func remote(_ name: String) -> RemoteBackend? {
        guard case .remote(let r)? = policy.versions[name]?.backend else { return nil }
        return r
    }
    let certs = "\(directory)/certs"
    #expect(
        remote("plain")
            == RemoteBackend(
                host: "models.internal",
                port: 8080,
                path: "/v1/predict",
                timeoutMilliseconds: 250,
                maxConnections: 64,
                idleTimeoutMilliseconds: 5000
            )
    )
    #expect(
        remote("secure")
            == RemoteBackend(
                host: "models.internal",
                port: 443,
                path: nil,
                timeoutMilliseconds: 1000,
                maxConnections: 64,
                tls: TLSSpec(),
                idleTimeoutMilliseconds: 30_000
            )
    )
    #expect(
        remote("secure-v6")
            == RemoteBackend(
                host: "[::1]",
                port: 8443,
                path: "/v2/models/m/infer",
                timeoutMilliseconds: 1000,
                maxConnections: 8,
                tls: TLSSpec()
            )
    )
    #expect(
        remote("mtls")
            == RemoteBackend(
                host: "models.internal",
                port: 8443,
                path: nil,
                timeoutMilliseconds: 1000,
                maxConnections: 64,
                tls: TLSSpec(
                    caFile: "\(certs)/ca.pem",
                    certFile: "\(certs)/client.pem",
                    keyFile: "\(certs)/client.key",
                    serverName: "model.svc",
                    insecureSkipVerify: false
                )
            )
    )
    #expect(remote("by-address")?.tls == TLSSpec(serverName: "10.0.0.7"))
    #expect(remote("insecure")?.tls == TLSSpec(insecureSkipVerify: true))
    #expect(remote("insecure-ca")?.tls == TLSSpec(caFile: "\(certs)/ca.pem", insecureSkipVerify: true))
    #expect(
        remote("socket")
            == RemoteBackend(
                host: "localhost",
                port: 0,
                path: nil,
                timeoutMilliseconds: 1000,
                maxConnections: 64,
                socketPath: "/run/model.sock"
            )
    )
    #expect(
        remote("socket-path")
            == RemoteBackend(
                host: "localhost",
                port: 0,
                path: "/v2/models/m/infer",
                timeoutMilliseconds: 1000,
                maxConnections: 64,
                socketPath: "/run/model.sock",
                idleTimeoutMilliseconds: 600_000
            )
    )
    #expect(policy.versions["socket-path"]?.wireProtocol == .v2)
    #expect(config.tlsFiles == ["\(certs)/ca.pem", "\(certs)/client.key", "\(certs)/client.pem"])
}

@Test func defaultsForNewRemoteKeys() {
    #expect(ConfigDefaults.idleTimeoutMilliseconds == 30_000)
    #expect(ConfigDefaults.idleTimeoutMillisecondsRange == 1...600_000)
    #expect(ConfigDefaults.httpsPort == 443)
}

// MARK: - Diagnostics

@Test func diagnosticsRenderTheirSeverity() {
    let location = SourceLocation(file: "policies/m.yaml", line: 12, column: 7)
    #expect(
        Diagnostic(location, "split weights sum to 90, expected 100").description
            == "policies/m.yaml:12:7: error: split weights sum to 90, expected 100"
    )
    let warning = Diagnostic(location, "insecure_skip_verify is true", severity: .warning)
    #expect(warning.description == "policies/m.yaml:12:7: warning: insecure_skip_verify is true")
    #expect(!warning.isError)
    #expect(
        Diagnostic(SourceLocation(file: "routes", line: 0, column: 0), "no routes", severity: .warning).description
            == "routes: warning: no routes"
    )
}

@Test func sortingKeepsWarningsAmongErrorsInFileOrder() {
    func at(_ file: String, _ line: Int, _ severity: Diagnostic.Severity) -> Diagnostic {
        Diagnostic(SourceLocation(file: file, line: line, column: 1), "\(file):\(line)", severity: severity)
    }
    let sorted = Diagnostic.sorted([at("b", 1, .error), at("a", 9, .warning), at("a", 2, .error)])
    #expect(sorted.map(\.description) == ["a:2:1: error: a:2", "a:9:1: warning: a:9", "b:1:1: error: b:1"])
}

/// A warning alone does not stop a policy from loading, and an error beside it still does.
@Test func warningsAloneLoadButNotBesideAnError() throws {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("switchyard-policy-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try FileManager.default.createDirectory(atPath: directory + "/routes", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: directory + "/policies", withIntermediateDirectories: true)
    try "routes:\n  - { name: r, match: { path: /p }, model: m }\n"
        .write(toFile: directory + "/routes/r.yaml", atomically: true, encoding: .utf8)
    let policy = """
        model: m
        versions:
          v1: { url: "https://m.internal", tls: { insecure_skip_verify: true } }

        """
    try policy.write(toFile: directory + "/policies/m.yaml", atomically: true, encoding: .utf8)
    let warning =
        "policies/m.yaml:3:65: warning: insecure_skip_verify is true: the certificate of 'https://m.internal' is not verified, so anyone on the network path can pose as this backend"

    let config = try ConfigLoader.load(directory: directory).get()
    #expect(Fixtures.render(config.warnings, in: directory) == warning)
    #expect(config.models["m"]?.versions["v1"] != nil)

    try (policy + "split: { v1: 90 }\n").write(
        toFile: directory + "/policies/m.yaml",
        atomically: true,
        encoding: .utf8
    )
    guard case .failure(let diagnostics) = ConfigLoader.load(directory: directory) else {
        Issue.record("a split summing to 90 loaded")
        return
    }
    #expect(
        Fixtures.render(diagnostics, in: directory) == """
            \(warning)
            policies/m.yaml:4:1: error: split weights sum to 90, expected 100
            """
    )
}
