import Foundation
import Testing

@testable import Policy

private func loaded(_ name: String) throws -> (Config, String) {
    let directory = Fixtures.directory("valid", name)
    switch ConfigLoader.load(directory: directory) {
    case .success(let config): return (config, directory)
    case .failure(let diagnostics):
        Issue.record("unexpected diagnostics:\n\(Fixtures.render(diagnostics, in: directory))")
        throw CancellationError()
    }
}

@Test func fullSampleRoutesInFileOrder() throws {
    let (config, _) = try loaded("full")
    #expect(config.routes.map(\.name) == ["churn", "churn-pinned", "churn-by-header", "churn-api-v2", "scores"])
    let churn = config.routes[0]
    #expect(churn.match.path == .exact("/v1/models/churn:predict"))
    #expect(churn.match.method == "POST")
    #expect(churn.match.headers.map { "\($0.name)=\($0.value)" } == ["x-tenant=acme"])
    #expect(churn.wireProtocol == .tfserving)
    #expect(churn.pin == nil)
    #expect(churn.location.line == 3)
    #expect(churn.location.column == 5)

    let pinned = config.routes[1]
    #expect(pinned.pin == .pathCapture("version"))
    #expect(
        pinned.match.path
            == .template(
                PathTemplate(
                    source: "/v1/models/churn/versions/{version}:predict",
                    segments: [.literal("/v1/models/churn/versions/"), .capture("version"), .literal(":predict")]
                )
            )
    )
    #expect(config.routes[2].pin == .header("x-model-version"))
    #expect(config.routes[2].match.path == .prefix("/churn"))
    #expect(config.routes[2].wireProtocol == .json)
    #expect(config.routes[3].pin == .fixed("candidate"))
}

@Test func fullSamplePolicyIsResolved() throws {
    let (config, directory) = try loaded("full")
    let policy = try #require(config.models["churn"])
    #expect(policy.versionOrder == ["v1", "v2", "v3", "v0"])
    #expect(policy.labels == ["stable": "v1", "candidate": "v2"])
    #expect(policy.split == [SplitEntry(version: "v1", weight: 9000), SplitEntry(version: "v2", weight: 1000)])
    #expect(policy.sticky == .header("x-user-id"))
    #expect(policy.fallback == "v1")
    #expect(policy.shadows == [ShadowSpec(version: "v3", percent: 100)])
    #expect(
        policy.compare
            == CompareSpec(
                output: "/predictions",
                tolerance: 0.0001,
                threshold: 0.5,
                log: "\(directory)/comparisons/churn.jsonl",
                sample: 1
            )
    )
    #expect(
        policy.guardSpec
            == GuardSpec(
                version: "v2",
                maxErrorRatio: 0.05,
                maxP99Milliseconds: 250,
                minRequests: 100,
                windowSeconds: 60
            )
    )

    guard case .remote(let v1)? = policy.versions["v1"]?.backend,
        case .remote(let v2)? = policy.versions["v2"]?.backend,
        case .embedded(let v3)? = policy.versions["v3"]?.backend,
        case .embedded(let v0)? = policy.versions["v0"]?.backend
    else {
        Issue.record("wrong backends: \(policy.versions)")
        return
    }
    #expect(v1 == RemoteBackend(host: "127.0.0.1", port: 9001, path: nil, timeoutMilliseconds: 500, maxConnections: 64))
    #expect(
        v2
            == RemoteBackend(
                host: "127.0.0.1",
                port: 9002,
                path: "/v2/models/churn/infer",
                timeoutMilliseconds: 1000,
                maxConnections: 64
            )
    )
    #expect(policy.versions["v1"]?.wireProtocol == nil)
    #expect(policy.versions["v2"]?.wireProtocol == .v2)
    #expect(v3 == EmbeddedBackend(kind: .xgboost, file: "\(directory)/examples/models/churn-v3.json", key: nil))
    #expect(FileManager.default.isReadableFile(atPath: v3.file))
    #expect(v0.kind == .table)
    #expect(v0.key == .body("/instances/0/customer_id"))
}

@Test func numericVersionsAndFractionalWeights() throws {
    let (config, _) = try loaded("full")
    let policy = try #require(config.models["scores"])
    #expect(policy.versionOrder == ["1", "2"])
    #expect(policy.labels == ["old": "1", "new": "2"])
    #expect(policy.split == [SplitEntry(version: "1", weight: 3333), SplitEntry(version: "2", weight: 6667)])
    #expect(policy.sticky == .cookie("uid"))
    #expect(policy.compare == CompareSpec(output: "", tolerance: 0, threshold: nil, log: nil, sample: 1))
    guard case .remote(let one)? = policy.versions["1"]?.backend else {
        Issue.record("version 1 is not remote")
        return
    }
    #expect(
        one == RemoteBackend(host: "scores.internal", port: 80, path: nil, timeoutMilliseconds: 1000, maxConnections: 8)
    )
    guard case .embedded(let two)? = policy.versions["2"]?.backend else {
        Issue.record("version 2 is not embedded")
        return
    }
    #expect(two.file == "/dev/null")
}

@Test func filesAreListedWithChecksums() throws {
    let (config, directory) = try loaded("full")
    #expect(
        config.files.map(\.path) == [
            "\(directory)/policies/churn.yaml", "\(directory)/policies/scores.yaml",
            "\(directory)/routes/churn.yaml", "\(directory)/routes/zz-other.yml",
        ]
    )
    for file in config.files {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file.path)))
        #expect(file.checksum == ConfigLoader.fnv1a64(bytes))
        #expect(file.checksum.count == 16)
    }
}

@Test func minimalConfigGetsDefaults() throws {
    let (config, directory) = try loaded("minimal")
    let policy = try #require(config.models["m"])
    #expect(policy.split == [SplitEntry(version: "only", weight: 10000)])
    #expect(
        policy.guardSpec
            == GuardSpec(
                version: "only",
                maxErrorRatio: nil,
                maxP99Milliseconds: 100,
                minRequests: 100,
                windowSeconds: 60
            )
    )
    #expect(config.routes.first?.wireProtocol == .json)
    #expect(config.routes.first?.match.method == nil)
    guard case .embedded(let only)? = policy.versions["only"]?.backend else {
        Issue.record("version only is not embedded")
        return
    }
    #expect(only == EmbeddedBackend(kind: .linear, file: "\(directory)/policies/models/m.json", key: nil))
}

@Test func trailingSlashOnTheDirectoryIsDropped() throws {
    let directory = Fixtures.directory("valid", "minimal")
    guard case .success(let config) = ConfigLoader.load(directory: directory + "/") else {
        Issue.record("minimal fixture did not load with a trailing slash")
        return
    }
    #expect(config.files.map(\.path) == ["\(directory)/policies/m.yaml", "\(directory)/routes/api.yaml"])
}

@Test func dotDirectoryRendersBarePaths() {
    #expect(ConfigLoader.join(ConfigLoader.normalize("."), "routes") == "routes")
    #expect(ConfigLoader.join(ConfigLoader.normalize("./"), "routes") == "routes")
    #expect(ConfigLoader.join(ConfigLoader.normalize("conf//"), "routes") == "conf/routes")
    #expect(ConfigLoader.join(ConfigLoader.normalize("/"), "routes") == "/routes")
}

@Test func fnvMatchesReferenceValues() {
    #expect(ConfigLoader.fnv1a64([]) == "cbf29ce484222325")
    #expect(ConfigLoader.fnv1a64(Array("a".utf8)) == "af63dc4c8601ec8c")
    #expect(ConfigLoader.fnv1a64(Array("foobar".utf8)) == "85944171f73967e8")
}

@Test func oversizedFileIsOneFileLevelDiagnostic() throws {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("switchyard-policy-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try FileManager.default.createDirectory(atPath: directory + "/routes", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: directory + "/policies", withIntermediateDirectories: true)
    let big = "# " + String(repeating: "x", count: 1 << 20) + "\n"
    try big.write(toFile: directory + "/policies/big.yaml", atomically: true, encoding: .utf8)
    try "routes: []\n".write(toFile: directory + "/routes/r.yaml", atomically: true, encoding: .utf8)
    guard case .failure(let diagnostics) = ConfigLoader.load(directory: directory) else {
        Issue.record("a 1 MiB policy file loaded")
        return
    }
    #expect(
        Fixtures.render(diagnostics, in: directory) == """
            policies/big.yaml: error: file is larger than 1 MiB (1048576 bytes), the limit for a config file
            routes: error: no routes defined; expected at least one route in routes/*.yaml
            """
    )
}

@Test(arguments: [
    ("policies/../examples/m.json", "examples/m.json"),
    ("/etc/sy/policies/../models/x", "/etc/sy/models/x"),
    ("./a/./b/", "a/b"),
    ("../../m", "../../m"),
    ("a/../../m", "../m"),
    ("/../m", "/m"),
    ("a/..", "."),
])
func pathsInsideFilesAreNormalizedLexically(path: String, expected: String) {
    #expect(FileScope.normalize(path) == expected)
}
