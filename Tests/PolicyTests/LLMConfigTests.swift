import Foundation
import TestSupport
import Testing

@testable import Policy

// openai routes, model_name, version headers with ${NAME} and the openai compare keys
// (SPEC §14) as the loader builds and checks them.

private func remote(_ config: Config, _ model: String, _ version: String) -> RemoteBackend? {
    guard case .remote(let r)? = config.models[model]?.versions[version]?.backend else { return nil }
    return r
}

/// A config directory in a fresh temporary folder; removed by the caller.
private func configDirectory(routes: String, policies: [String: String]) throws -> String {
    var files = ["routes/r.yaml": routes]
    for (name, text) in policies { files["policies/\(name).yaml"] = text }
    return try temporaryDirectory(files: files, prefix: "switchyard-llm-")
}

private let chatRoute = """
    routes:
      - { name: chat, match: { path: /v1/chat/completions }, model: assistant, protocol: openai }
    """

@Suite struct LLMConfigTests {
    @Test func anOpenAIConfigLoadsWithModelNamesHeadersAndItsCompareKeys() throws {
        let config = try Fixtures.load("valid", "llm").get()
        let routes = Dictionary(uniqueKeysWithValues: config.routes.map { ($0.name, $0) })
        #expect(routes["chat"]?.wireProtocol == .openai)
        #expect(routes["embeddings"]?.wireProtocol == .openai)
        #expect(routes["churn"]?.wireProtocol == .tfserving)

        let v7 = try #require(remote(config, "assistant", "v7"))
        #expect(v7.modelName == "llama-3.1-8b-ft-v7")
        #expect(v7.headers.isEmpty)
        // A URL without a path keeps the request's (/v1/chat/completions or /v1/completions).
        #expect(v7.path == nil)

        let v8 = try #require(remote(config, "assistant", "v8"))
        #expect(v8.modelName == "llama-3.1-8b-ft-v8")
        #expect(v8.path == "/v1/chat/completions")
        #expect(v8.tls == TLSSpec())
        #expect(
            v8.headers == [
                VersionHeader(
                    name: "authorization",
                    value: "Bearer sk-fixture-$-inline",
                    template: "Bearer sk-fixture-$$-inline"
                ),
                VersionHeader(name: "openai-organization", value: "org-fixture", template: "org-fixture"),
            ]
        )

        // Versions inherit openai from the route; a written `protocol: openai` is the same.
        let assistant = try #require(config.models["assistant"])
        #expect(assistant.versions["v7"]?.wireProtocol == nil)
        #expect(assistant.versions["v7"]?.wireProtocol(onRoute: .openai) == .openai)
        #expect(assistant.versions["local"]?.wireProtocol == .openai)
        #expect(remote(config, "assistant", "local")?.socketPath == "/tmp/switchyard-llm.sock")
        #expect(remote(config, "assistant", "local")?.modelName == nil)
        #expect(assistant.sticky == .body("/user"))

        // compare: no output needed; an output on an openai-only model is dropped (with a warning).
        #expect(assistant.compare?.output == nil)
        #expect(assistant.compare?.similarityThreshold == 0.8)
        let embedder = try #require(config.models["embedder"])
        #expect(embedder.compare?.output == nil)
        #expect(embedder.compare?.similarityThreshold == 0.99)
        #expect(config.warnings.map(\.message).contains { $0.hasPrefix("compare output is ignored") })

        // Headers on a tfserving version; its compare keeps its output.
        #expect(remote(config, "churn", "v1")?.headers.map(\.name) == ["x-api-key"])
        #expect(remote(config, "churn", "v1")?.modelName == nil)
        #expect(config.models["churn"]?.compare?.output == "/predictions")
        #expect(config.models["churn"]?.compare?.similarityThreshold == nil)
    }

    @Test func headerValuesReadTheInjectedEnvironment() throws {
        let directory = try configDirectory(
            routes: chatRoute,
            policies: [
                "assistant": """
                model: assistant
                versions:
                  v1:
                    url: "http://127.0.0.1:8001"
                    model_name: llama
                    headers:
                      Authorization: "Bearer ${SWITCHYARD_TEST_KEY}"
                      x-price: "$$${SWITCHYARD_TEST_PRICE}$$"
                      x-both: "${SWITCHYARD_TEST_KEY}/${SWITCHYARD_TEST_PRICE}"
                """
            ]
        )
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let environment = ["SWITCHYARD_TEST_KEY": "sk-test-1a2b", "SWITCHYARD_TEST_PRICE": "5"]
        let config = try ConfigLoader.load(directory: directory, environment: environment).get()
        let v1 = try #require(remote(config, "assistant", "v1"))
        #expect(v1.headers.map(\.name) == ["authorization", "x-price", "x-both"])
        #expect(v1.headers.map(\.value) == ["Bearer sk-test-1a2b", "$5$", "sk-test-1a2b/5"])
        #expect(v1.headers[0].template == "Bearer ${SWITCHYARD_TEST_KEY}")

        // A reload reads the environment afresh: a rotated key is picked up.
        let rotated = try ConfigLoader.load(
            directory: directory,
            environment: ["SWITCHYARD_TEST_KEY": "sk-rotated", "SWITCHYARD_TEST_PRICE": "6"]
        ).get()
        #expect(remote(rotated, "assistant", "v1")?.headers.first?.value == "Bearer sk-rotated")
    }

    @Test func anUnsetVariableIsAnErrorAtTheValueNamingItAndNoValue() throws {
        let directory = try configDirectory(
            routes: chatRoute,
            policies: [
                "assistant": """
                model: assistant
                versions:
                  v1:
                    url: "http://127.0.0.1:8001"
                    headers:
                      authorization: "Bearer ${SWITCHYARD_TEST_MISSING} sk-inline-7c6b"
                      x-other: "${SWITCHYARD_TEST_KEY}"
                """
            ]
        )
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = ConfigLoader.load(directory: directory, environment: ["SWITCHYARD_TEST_KEY": "sk-test-1a2b"])
        guard case .failure(let diagnostics) = result else {
            Issue.record("a config with an unset variable loaded")
            return
        }
        let rendered = diagnostics.map(\.description)
        #expect(
            rendered == [
                "\(directory)/policies/assistant.yaml:6:22: error: header 'authorization': environment variable SWITCHYARD_TEST_MISSING is not set"
            ]
        )
        for line in rendered {
            #expect(!line.contains("sk-test-1a2b"))
            #expect(!line.contains("sk-inline-7c6b"))
        }
    }

    @Test func templatesResolveAndTheirProblemsQuoteNoValue() {
        let env = ["A": "alpha", "_b1": "beta", "EMPTY": ""]
        #expect(EnvironmentTemplate.resolve("plain", environment: env) == .success("plain"))
        #expect(EnvironmentTemplate.resolve("${A}-${_b1}", environment: env) == .success("alpha-beta"))
        #expect(EnvironmentTemplate.resolve("$$A $${A}", environment: env) == .success("$A ${A}"))
        #expect(EnvironmentTemplate.resolve("x${EMPTY}y", environment: env) == .success("xy"))
        #expect(EnvironmentTemplate.resolve("é${A}", environment: env) == .success("éalpha"))
        #expect(EnvironmentTemplate.resolve("${X} ${Y} ${X}", environment: env) == .failure(.unset(["X", "Y"])))
        #expect("\(EnvironmentTemplate.Problem.unset(["X", "Y"]))" == "environment variables X, Y are not set")
        for bad in ["sk-secret$", "sk-secret$x", "é-sk-secret${A", "${}", "${1A}", "${sk-secret}", "${A B}"] {
            guard case .failure(.malformed(let why)) = EnvironmentTemplate.resolve(bad, environment: env) else {
                Issue.record("'\(bad)' resolved")
                continue
            }
            #expect(!why.contains("secret"))
            #expect(!why.contains("A B"))
        }
        // Character positions, not bytes.
        #expect(
            EnvironmentTemplate.resolve("é$", environment: env)
                == .failure(
                    .malformed(
                        "the '$' at character 2 starts no ${NAME}; write ${NAME} for an environment variable or $$ for a literal '$'"
                    )
                )
        )
    }

    @Test func anEnvironmentValueWithALineBreakIsRefused() throws {
        let directory = try configDirectory(
            routes: chatRoute,
            policies: [
                "assistant": """
                model: assistant
                versions:
                  v1: { url: "http://127.0.0.1:8001", headers: { authorization: "${SWITCHYARD_TEST_KEY}" } }
                """
            ]
        )
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = ConfigLoader.load(
            directory: directory,
            environment: ["SWITCHYARD_TEST_KEY": "sk-test\r\nx-injected: 1"]
        )
        guard case .failure(let diagnostics) = result else {
            Issue.record("a header value with a line break loaded")
            return
        }
        #expect(diagnostics.count == 1)
        #expect(diagnostics.first?.location.line == 3)
        #expect(diagnostics.first?.message.contains("line break") == true)
        #expect(diagnostics.first?.message.contains("injected") == false)
    }

    /// `output` may be left out only when every route serving the model is openai; the error for
    /// the other cases keeps its wording.
    @Test func compareOutputIsOptionalOnlyForOpenAIOnlyModels() throws {
        let policy = """
            model: assistant
            versions:
              v1: { url: "http://127.0.0.1:8001" }
            compare: { sample: 0.5 }
            """
        let openaiOnly = try configDirectory(routes: chatRoute, policies: ["assistant": policy])
        let mixed = try configDirectory(
            routes: chatRoute + "\n  - { name: raw, match: { prefix: /raw }, model: assistant }\n",
            policies: ["assistant": policy]
        )
        defer { for d in [openaiOnly, mixed] { try? FileManager.default.removeItem(atPath: d) } }
        let config = try ConfigLoader.load(directory: openaiOnly, environment: [:]).get()
        #expect(config.models["assistant"]?.compare?.output == nil)
        #expect(config.models["assistant"]?.compare?.sample == 0.5)
        #expect(config.warnings.isEmpty)
        guard case .failure(let diagnostics) = ConfigLoader.load(directory: mixed, environment: [:]) else {
            Issue.record("a model served by a json route loaded without compare.output")
            return
        }
        #expect(
            diagnostics.map(\.description) == [
                "\(mixed)/policies/assistant.yaml:4:10: error: missing required key 'output' in compare"
            ]
        )
    }

    /// The README's LLM example config loads, its keys as the README describes them.
    @Test func theReadmesExampleConfigLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let directory = root.appendingPathComponent("examples/llm/config").path
        let config = try ConfigLoader.load(directory: directory, environment: ["OPENAI_API_KEY": "sk-readme"]).get()
        #expect(config.warnings.isEmpty)
        let assistant = try #require(config.models["assistant"])
        guard case .remote(let v7)? = assistant.versions["ft-v7"]?.backend else {
            Issue.record("ft-v7 is not a remote version")
            return
        }
        #expect(v7.modelName == "llama-3.1-8b-ft-v7")
        #expect(v7.headers.map(\.value) == ["Bearer sk-readme"])
        #expect(assistant.compare?.similarityThreshold == 0.8)
        #expect(assistant.sticky == .body("/user"))
        #expect(config.routes.allSatisfy { $0.wireProtocol == .openai })
    }
}
