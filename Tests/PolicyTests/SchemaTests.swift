import Foundation
import Testing
import YAMLSource

@testable import Policy

/// The catalogue, the schemas and the reference generated from it, and the checkers that take
/// their keys from it: all must agree with each other, with the files checked in, and with
/// every example config in the repository.
enum SchemaFiles {
    /// The repository root (this file is Tests/PolicyTests/SchemaTests.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The generated files and what they must hold.
    static let generated: [(path: String, text: String)] =
        ConfigFileKind.allCases.map { ("schema/\($0.schemaFileName)", ConfigCatalogue.schemaText($0)) }
        + [("docs/configuration.md", ConfigCatalogue.referenceMarkdown())]

    static func json(yaml text: String) -> OrderedJSON? {
        let document = YAMLParser.parse(Array(text.utf8))
        guard document.errors.isEmpty, let root = document.root else { return nil }
        return OrderedJSON(yaml: root)
    }

    /// Every example config in the repository that must load: `(name, kind, YAML text)`. Names
    /// starting with `.` are skipped, as the loader skips them.
    static func examples() throws -> [(name: String, kind: ConfigFileKind, text: String)] {
        let fm = FileManager.default
        var directories: [String] = [root.path]
        let examples = root.appendingPathComponent("examples").path
        for entry in (fm.subpaths(atPath: examples) ?? []).sorted() {
            let last = (entry as NSString).lastPathComponent
            if last == "routes" || last == "policies" {
                directories.append((examples + "/" + entry as NSString).deletingLastPathComponent)
            }
        }
        for name in Fixtures.names("valid") { directories.append(Fixtures.directory("valid", name)) }
        var found: [(String, ConfigFileKind, String)] = []
        for directory in Set(directories).sorted() {
            for (folder, kind) in [("routes", ConfigFileKind.routes), ("policies", .policy)] {
                let dir = directory + "/" + folder
                for file in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted()
                where !file.hasPrefix(".") && (file.hasSuffix(".yaml") || file.hasSuffix(".yml")) {
                    let path = dir + "/" + file
                    let name = path.replacingOccurrences(of: root.path + "/", with: "")
                    found.append((name, kind, try String(contentsOfFile: path, encoding: .utf8)))
                }
            }
        }
        // The Kubernetes example carries its routes and policy inside a ConfigMap.
        let configMap = examples + "/kubernetes/configmap.yaml"
        if let map = json(yaml: try String(contentsOfFile: configMap, encoding: .utf8)),
            case .object(let data)? = map["data"]
        {
            for member in data {
                guard case .string(let text) = member.value else { continue }
                let kind: ConfigFileKind? =
                    member.key.hasPrefix("routes") ? .routes : member.key.hasPrefix("policies") ? .policy : nil
                if let kind { found.append(("examples/kubernetes/configmap.yaml data.\(member.key)", kind, text)) }
            }
        }
        return found
    }
}

@Suite struct SchemaTests {
    /// Regenerate with `SWITCHYARD_RECORD_SCHEMA=1 swift test --filter SchemaTests`, or
    /// `switchyard schema routes > schema/routes.schema.json` (and `policy`, and `--markdown`).
    @Test func checkedInFilesEqualTheGeneratorsOutput() throws {
        for (path, text) in SchemaFiles.generated {
            let url = SchemaFiles.root.appendingPathComponent(path)
            if ProcessInfo.processInfo.environment["SWITCHYARD_RECORD_SCHEMA"] == "1" {
                try FileManager.default.createDirectory(
                    at: url.deletingLastPathComponent(),
                    withIntermediateDirectories: true
                )
                try text.write(to: url, atomically: true, encoding: .utf8)
            }
            let checkedIn = try? String(contentsOf: url, encoding: .utf8)
            #expect(checkedIn == text, "\(path) is not the generator's output; regenerate it (see this test)")
        }
    }

    @Test func everyExampleConfigValidatesAgainstItsSchema() throws {
        let examples = try SchemaFiles.examples()
        #expect(examples.count >= 12)
        #expect(examples.contains { $0.name == "routes/churn.yaml" })
        #expect(examples.contains { $0.name.hasPrefix("examples/kubernetes/configmap.yaml data.policies") })
        #expect(examples.contains { $0.name == "examples/tls/policies/scorer.yaml" })
        let dump = ProcessInfo.processInfo.environment["SWITCHYARD_SCHEMA_DUMP"]
        for (index, example) in examples.enumerated() {
            let json = try #require(SchemaFiles.json(yaml: example.text), "\(example.name) is not YAML")
            let errors = JSONSchemaValidator.errors(json, against: ConfigCatalogue.schema(example.kind))
            #expect(errors.isEmpty, "\(example.name): \(errors)")
            // For a check with another validator (README of this test: `jsonschema` in Python).
            if let dump {
                let file = "\(dump)/\(example.kind.rawValue)-\(index).json"
                try (json.rendered() + "\n").write(toFile: file, atomically: true, encoding: .utf8)
            }
        }
    }

    @Test func everyKeysExampleValidatesAgainstItsKeysSchema() throws {
        for object in ConfigCatalogue.objects {
            for key in object.keys {
                let value = try #require(key.exampleValue, "\(object.name).\(key.name): example is not YAML")
                let errors = JSONSchemaValidator.errors(value, against: ConfigCatalogue.keySchema(key))
                #expect(errors.isEmpty, "\(object.name).\(key.name) example \(key.example): \(errors)")
            }
        }
    }

    /// Each checker block refuses an unknown key by listing what it accepts: that list must be
    /// the catalogue's, in the catalogue's order.
    @Test(arguments: KeyListCase.all)
    func checkerAcceptsExactlyTheCataloguesKeys(_ c: KeyListCase) throws {
        let directory = try TempConfig.write(routes: c.routes, policy: c.policy)
        guard case .failure(let diagnostics) = ConfigLoader.load(directory: directory) else {
            Issue.record("\(c.object.name): an unknown key loaded")
            return
        }
        let unknown = diagnostics.map(\.message).filter { $0.hasPrefix("unknown key 'zz_unknown'") }
        #expect(unknown.count == 1, "\(c.object.name): \(diagnostics.map(\.message))")
        let listed = unknown.first.flatMap { $0.components(separatedBy: "expected one of: ").last }
        #expect(listed == c.object.names.joined(separator: ", "), "\(c.object.name)")
    }

    /// A config that uses every key of the catalogue loads and validates: the schema describes
    /// no key the loader refuses, and misses none it accepts.
    @Test func aConfigWithEveryKeyLoadsAndValidates() throws {
        let directory = try TempConfig.write(
            routes: """
                routes:
                  - name: a
                    match: { path: /a, method: POST, headers: { x-tenant: acme } }
                    model: churn
                    protocol: tfserving
                    version: candidate
                  - { name: b, match: { prefix: /b }, model: churn, version_from: header:x-v }
                  - { name: c, match: { template: "/c/{label}" }, model: churn }
                  - name: d
                    match: { grpc: inference.GRPCInferenceService/ModelInfer, model: churn, headers: { x-tenant: acme } }
                    model: grpc-churn
                    protocol: v2-grpc
                    version_from: message
                  - { name: e, match: { path: /v1/chat/completions }, model: llm, protocol: openai }
                """,
            policy: """
                model: churn
                versions:
                  v1:
                    url: "https://127.0.0.1:9443/v2/models/churn/infer"
                    protocol: v2
                    timeout_ms: 500
                    max_connections: 8
                    idle_timeout_ms: 60000
                    tls: { ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, server_name: model.svc, insecure_skip_verify: false }
                  v2: { embedded: table, file: t.csv, key: "body:/instances/0/id" }
                  v3: { url: "unix:/tmp/model.sock:/v2/infer" }
                  4: { embedded: linear, file: l.json }
                labels: { stable: v1, candidate: v2 }
                split: { stable: 89.5, candidate: 10, 4: 0.5 }
                sticky: cookie:uid
                fallback: stable
                shadow: [{ version: v3, percent: 50 }]
                compare: { output: /predictions, tolerance: 0.01, threshold: 0.5, log: out/c.jsonl, sample: 0.5 }
                guard: { version: candidate, max_error_ratio: 0.05, max_p99_ms: 250, min_requests: 10, window_s: 30 }
                """,
            files: ["policies/ca.pem", "policies/c.pem", "policies/k.pem", "policies/t.csv", "policies/l.json"]
        )
        try """
        model: grpc-churn
        versions:
          g: { url: "grpcs://127.0.0.1:8443", protocol: v2-grpc, tls: { server_name: model.svc } }
        """.write(toFile: directory + "/policies/q.yaml", atomically: true, encoding: .utf8)
        try """
        model: llm
        versions:
          a: { url: "http://127.0.0.1:8001", model_name: llama-3.1-8b, headers: { authorization: "Bearer $$plain" } }
        compare: { similarity_threshold: 0.8 }
        """.write(toFile: directory + "/policies/o.yaml", atomically: true, encoding: .utf8)
        if case .failure(let diagnostics) = ConfigLoader.load(directory: directory) {
            Issue.record("\(diagnostics.map(\.description))")
        }
        var used: Set<String> = []
        for (kind, file) in [
            (ConfigFileKind.routes, "routes/r.yaml"), (.policy, "policies/p.yaml"), (.policy, "policies/q.yaml"),
            (.policy, "policies/o.yaml"),
        ] {
            let json = try #require(
                SchemaFiles.json(yaml: try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8))
            )
            #expect(JSONSchemaValidator.errors(json, against: ConfigCatalogue.schema(kind)) == [])
            Self.collectKeys(json, into: &used)
        }
        let missing = ConfigCatalogue.objects.flatMap(\.names).filter { !used.contains($0) }
        #expect(missing.isEmpty, "keys this config does not use: \(missing)")
    }

    private static func collectKeys(_ json: OrderedJSON, into keys: inout Set<String>) {
        switch json {
        case .object(let members):
            for member in members {
                keys.insert(member.key)
                collectKeys(member.value, into: &keys)
            }
        case .array(let items): for item in items { collectKeys(item, into: &keys) }
        default: break
        }
    }

    /// Deliberately wrong files: the schema refuses each, and so does the loader (the schema
    /// never says more than the loader does).
    @Test(arguments: WrongCase.all)
    func aWrongConfigFailsTheSchemaAndTheLoader(_ c: WrongCase) throws {
        let json = try #require(SchemaFiles.json(yaml: c.text))
        let errors = JSONSchemaValidator.errors(json, against: ConfigCatalogue.schema(c.kind))
        #expect(errors.contains { $0.contains(c.schemaSays) }, "\(c.name): \(errors)")
        let directory = try TempConfig.write(
            routes: c.kind == .routes ? c.text : TempConfig.goodRoutes,
            policy: c.kind == .policy ? c.text : TempConfig.goodPolicy
        )
        guard case .failure(let diagnostics) = ConfigLoader.load(directory: directory) else {
            Issue.record("\(c.name): the loader accepted it")
            return
        }
        #expect(diagnostics.contains { $0.message.contains(c.loaderSays) }, "\(c.name): \(diagnostics.map(\.message))")
    }

    /// The validator itself can fail: it refuses a keyword it does not implement.
    @Test func theValidatorRefusesKeywordsItDoesNotImplement() {
        let schema = OrderedJSON.object([.init("type", .string("object")), .init("patternProperties", .object([]))])
        #expect(
            JSONSchemaValidator.errors(.object([]), against: schema) == ["/: unsupported keyword 'patternProperties'"]
        )
    }
}

/// A config directory under the temporary directory.
enum TempConfig {
    static let goodRoutes = """
        routes:
          - { name: churn, match: { path: /p }, model: churn }
        """
    static let goodPolicy = """
        model: churn
        versions:
          v1: { url: "http://127.0.0.1:9001" }
        """

    static func write(routes: String, policy: String, files: [String] = []) throws -> String {
        let directory = NSTemporaryDirectory() + "switchyard-schema-" + UUID().uuidString
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory + "/routes", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: directory + "/policies", withIntermediateDirectories: true)
        try routes.write(toFile: directory + "/routes/r.yaml", atomically: true, encoding: .utf8)
        try policy.write(toFile: directory + "/policies/p.yaml", atomically: true, encoding: .utf8)
        for file in files { try "x\n".write(toFile: directory + "/" + file, atomically: true, encoding: .utf8) }
        return directory
    }
}

struct KeyListCase: CustomTestStringConvertible, Sendable {
    var object: ConfigObject
    var routes = TempConfig.goodRoutes
    var policy = TempConfig.goodPolicy
    var testDescription: String { object.name }

    static let all: [KeyListCase] = [
        KeyListCase(object: ConfigCatalogue.routeFile, routes: "zz_unknown: 1\n" + TempConfig.goodRoutes),
        KeyListCase(
            object: ConfigCatalogue.route,
            routes: "routes:\n  - { name: churn, match: { path: /p }, model: churn, zz_unknown: 1 }\n"
        ),
        KeyListCase(
            object: ConfigCatalogue.match,
            routes: "routes:\n  - { name: churn, match: { path: /p, zz_unknown: 1 }, model: churn }\n"
        ),
        KeyListCase(object: ConfigCatalogue.policy, policy: TempConfig.goodPolicy + "\nzz_unknown: 1\n"),
        KeyListCase(
            object: ConfigCatalogue.version,
            policy: "model: churn\nversions:\n  v1: { url: \"http://127.0.0.1:9001\", zz_unknown: 1 }\n"
        ),
        KeyListCase(
            object: ConfigCatalogue.tls,
            policy: "model: churn\nversions:\n  v1: { url: \"https://127.0.0.1:9001\", tls: { zz_unknown: 1 } }\n"
        ),
        KeyListCase(
            object: ConfigCatalogue.shadow,
            policy: TempConfig.goodPolicy + "\nshadow: [{ version: v1, percent: 1, zz_unknown: 1 }]\n"
        ),
        KeyListCase(
            object: ConfigCatalogue.compare,
            policy: TempConfig.goodPolicy + "\ncompare: { output: /p, zz_unknown: 1 }\n"
        ),
        KeyListCase(
            object: ConfigCatalogue.guardBlock,
            policy: TempConfig.goodPolicy
                + "\nfallback: v1\nguard: { version: v1, max_p99_ms: 1, zz_unknown: 1 }\n"
        ),
    ]
}

struct WrongCase: CustomTestStringConvertible, Sendable {
    var name: String
    var kind: ConfigFileKind
    var text: String
    /// Part of one of the validator's errors.
    var schemaSays: String
    /// Part of one of the loader's diagnostics.
    var loaderSays: String
    var testDescription: String { name }

    static let policyHead = "model: churn\nversions:\n"

    static let all: [WrongCase] = [
        WrongCase(
            name: "unknown key",
            kind: .policy,
            text: TempConfig.goodPolicy + "\nsplitt: { v1: 100 }\n",
            schemaSays: "unknown key 'splitt'",
            loaderSays: "unknown key 'splitt'"
        ),
        WrongCase(
            name: "unknown key in a route",
            kind: .routes,
            text: "routes:\n  - { name: churn, match: { path: /p }, model: churn, versoin: v1 }\n",
            schemaSays: "unknown key 'versoin'",
            loaderSays: "unknown key 'versoin'"
        ),
        WrongCase(
            name: "wrong type",
            kind: .policy,
            text: policyHead + "  v1: { url: \"http://127.0.0.1:9001\", timeout_ms: \"500\" }\n",
            schemaSays: "/versions/v1/timeout_ms: expected integer",
            loaderSays: "expected an integer"
        ),
        WrongCase(
            name: "a weight that is not a number",
            kind: .policy,
            text: policyHead + "  v1: { url: \"http://127.0.0.1:9001\" }\nsplit: { v1: .inf }\n",
            schemaSays: "/split/v1: expected number",
            loaderSays: "expected a finite number"
        ),
        WrongCase(
            name: "bad enum value",
            kind: .routes,
            text: "routes:\n  - { name: churn, match: { path: /p }, model: churn, protocol: grpc }\n",
            schemaSays: "\"grpc\" is not one of",
            loaderSays: "unknown protocol 'grpc'"
        ),
        WrongCase(
            name: "bad embedded kind",
            kind: .policy,
            text: policyHead + "  v1: { embedded: onnx, file: m.onnx }\n",
            schemaSays: "\"onnx\" is not one of",
            loaderSays: "unknown embedded kind 'onnx'"
        ),
        WrongCase(
            name: "missing required key",
            kind: .policy,
            text: "versions:\n  v1: { url: \"http://127.0.0.1:9001\" }\n",
            schemaSays: "missing required key 'model'",
            loaderSays: "missing required key 'model'"
        ),
        WrongCase(
            name: "missing match",
            kind: .routes,
            text: "routes:\n  - { name: churn, model: churn }\n",
            schemaSays: "/routes/0: missing required key 'match'",
            loaderSays: "missing required key 'match'"
        ),
        WrongCase(
            name: "bad route name",
            kind: .routes,
            text: "routes:\n  - { name: Churn, match: { path: /p }, model: churn }\n",
            schemaSays: "'Churn' does not match",
            loaderSays: "route name 'Churn' is not valid"
        ),
        WrongCase(
            name: "two path matches",
            kind: .routes,
            text: "routes:\n  - { name: churn, match: { path: /p, prefix: /p }, model: churn }\n",
            schemaSays: "matches 2 of oneOf",
            loaderSays: "match has several of path, prefix, template"
        ),
        WrongCase(
            name: "two captures",
            kind: .routes,
            text: "routes:\n  - { name: churn, match: { template: \"/{version}/{label}\" }, model: churn }\n",
            schemaSays: "does not match",
            loaderSays: "has 2 captures"
        ),
        WrongCase(
            name: "version and version_from",
            kind: .routes,
            text:
                "routes:\n  - { name: churn, match: { path: /p }, model: churn, version: v1, version_from: header:x-v }\n",
            schemaSays: "must not match",
            loaderSays: "route pins its version in 2 ways"
        ),
        WrongCase(
            name: "url and embedded",
            kind: .policy,
            text: policyHead + "  v1: { url: \"http://127.0.0.1:9001\", embedded: linear, file: m.json }\n",
            schemaSays: "matches 2 of oneOf",
            loaderSays: "has both 'url' and 'embedded'"
        ),
        WrongCase(
            name: "a remote key on an embedded version",
            kind: .policy,
            text: policyHead + "  v1: { embedded: linear, file: m.json, timeout_ms: 5 }\n",
            schemaSays: "'timeout_ms' needs 'url'",
            loaderSays: "'timeout_ms' is only valid for remote versions"
        ),
        WrongCase(
            name: "a table without key",
            kind: .policy,
            text: policyHead + "  v1: { embedded: table, file: t.csv }\n",
            schemaSays: "missing required key 'key'",
            loaderSays: "missing required key 'key'"
        ),
        WrongCase(
            name: "tls on http",
            kind: .policy,
            text: policyHead + "  v1: { url: \"http://127.0.0.1:9001\", tls: { server_name: a.svc } }\n",
            schemaSays: "does not match ^([Hh][Tt][Tt][Pp][Ss]|[Gg][Rr][Pp][Cc][Ss])://",
            loaderSays: "'tls' is only valid with an https:// or grpcs:// url"
        ),
        WrongCase(
            name: "a grpc method with a path",
            kind: .routes,
            text:
                "routes:\n  - { name: churn, match: { grpc: /inference.GRPCInferenceService/ModelInfer }, model: churn }\n",
            schemaSays: "'/inference.GRPCInferenceService/ModelInfer' does not match",
            loaderSays: "bad grpc method '/inference.GRPCInferenceService/ModelInfer'"
        ),
        WrongCase(
            name: "grpc with method",
            kind: .routes,
            text:
                "routes:\n  - { name: churn, match: { grpc: inference.GRPCInferenceService/ModelInfer, method: POST }, model: churn }\n",
            schemaSays: "must not match",
            loaderSays: "'method' is not valid with 'grpc'"
        ),
        WrongCase(
            name: "match.model without grpc",
            kind: .routes,
            text: "routes:\n  - { name: churn, match: { path: /p, model: churn }, model: churn }\n",
            schemaSays: "'model' needs 'grpc'",
            loaderSays: "'model' is only valid with 'grpc'"
        ),
        WrongCase(
            name: "a grpc url without a port",
            kind: .policy,
            text: policyHead + "  v1: { url: \"grpc://127.0.0.1\" }\n",
            schemaSays: "'grpc://127.0.0.1' does not match",
            loaderSays: "the port is missing"
        ),
        WrongCase(
            name: "a bad url scheme",
            kind: .policy,
            text: policyHead + "  v1: { url: \"ftp://127.0.0.1:9001\" }\n",
            schemaSays: "'ftp://127.0.0.1:9001' does not match",
            loaderSays: "the scheme must be http, https, unix, grpc or grpcs"
        ),
        WrongCase(
            name: "split missing with two versions",
            kind: .policy,
            text: policyHead + "  v1: { url: \"http://127.0.0.1:9001\" }\n  v2: { url: \"http://127.0.0.1:9002\" }\n",
            schemaSays: "missing required key 'split'",
            loaderSays: "missing required key 'split'"
        ),
        WrongCase(
            name: "guard without fallback",
            kind: .policy,
            text: TempConfig.goodPolicy + "\nguard: { version: v1, max_error_ratio: 0.1 }\n",
            schemaSays: "'guard' needs 'fallback'",
            loaderSays: "guard needs a policy 'fallback'"
        ),
        WrongCase(
            name: "guard without a limit",
            kind: .policy,
            text: TempConfig.goodPolicy + "\nfallback: v1\nguard: { version: v1 }\n",
            schemaSays: "matches none of anyOf",
            loaderSays: "guard has neither"
        ),
        WrongCase(
            name: "percent out of range",
            kind: .policy,
            text: TempConfig.goodPolicy + "\nshadow: [{ version: v1, percent: 101 }]\n",
            schemaSays: "101 is out of range",
            loaderSays: "percent 101 is out of range"
        ),
        WrongCase(
            name: "a bad sticky source",
            kind: .policy,
            text: TempConfig.goodPolicy + "\nsticky: user-id\n",
            schemaSays: "'user-id' does not match",
            loaderSays: "bad key source 'user-id'"
        ),
    ]
}
