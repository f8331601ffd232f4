import Foundation
import Sidecar
import Testing

/// Runs `GRPCClientScript` scenarios with the venv `scripts/test-venv` makes, and the TF Serving
/// message classes `grpcio-tools` compiles from the vendored protos.
enum GRPCClients {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// The venv's python (pip: grpcio, grpcio-tools, tritonclient[grpc], numpy, h2), made once.
    static let python: Result<String, TestFailure> = {
        let (status, output) = runProcess("/bin/bash", [packageRoot.appendingPathComponent("scripts/test-venv").path])
        let path = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init)
        guard status == 0, let path else {
            return .failure(
                TestFailure(
                    "the gRPC client tests need python3 with venv and pip; scripts/test-venv failed (\(status)): \(output)"
                )
            )
        }
        return .success(path)
    }()

    /// A directory with the TF Serving python message classes, compiled from `Protos/`.
    static let stubs: Result<String, TestFailure> = {
        let python: String
        switch GRPCClients.python {
        case .success(let path): python = path
        case .failure(let error): return .failure(error)
        }
        let out = NSTemporaryDirectory() + "switchyard-grpc-stubs-\(getpid())"
        try? FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let protos = packageRoot.appendingPathComponent("Protos").path
        let (status, output) = runProcess(
            python,
            [
                "-m", "grpc_tools.protoc", "-I\(protos)/tensorflow", "-I\(protos)/tensorflow-serving",
                "--python_out=\(out)",
                "tensorflow/core/framework/types.proto", "tensorflow/core/framework/tensor_shape.proto",
                "tensorflow/core/framework/resource_handle.proto", "tensorflow/core/framework/tensor.proto",
                "tensorflow/core/protobuf/meta_graph.proto", "tensorflow_serving/apis/model.proto",
                "tensorflow_serving/apis/predict.proto", "tensorflow_serving/apis/get_model_metadata.proto",
            ]
        )
        guard status == 0 else { return .failure(TestFailure("grpc_tools.protoc failed (\(status)): \(output)")) }
        return .success(out)
    }()

    static let scriptPath: String = {
        let path = NSTemporaryDirectory() + "switchyard-grpc-client-\(getpid()).py"
        try? GRPCClientScript.source.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    /// Runs one scenario against `port` and returns the JSON object it printed.
    static func scenario(_ name: String, port: Int) throws -> [String: Any] {
        let python = try python.get()
        let stubs = try stubs.get()
        let (status, output) = runProcess(python, [scriptPath, name, String(port), stubs])
        guard status == 0, let line = output.split(separator: "\n").last,
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else {
            throw TestFailure("gRPC client scenario \(name) failed (\(status)):\n\(output)")
        }
        return object
    }
}

/// gRPC through the sidecar (SPEC §13) with real clients: tritonclient.grpc and grpcio against
/// embedded models, REST versions translated, fallback, status mapping, deadlines, shadows, and
/// HTTP/1.1 beside HTTP/2 on one port. The REST path's answer for the same rows is the oracle.
@Suite(.serialized) struct GRPCTests {
    static let rows = #"[12,70.5,1,0,3,20.0,0,1]"#
    static let restBody =
        #"{"inputs":[{"name":"input-0","datatype":"FP64","shape":[2,4],"data":"# + rows + "}]}"

    /// A sidecar with gRPC routes for `churn` (embedded; a REST shadow answering `shadowAnswer`),
    /// and for models whose versions are REST servers: dead, dead with an embedded fallback, slow,
    /// answering, and refusing.
    final class Setup {
        let config: TempConfig
        let sidecar: RunningSidecar
        let shadow: FakeUpstream
        let slow: FakeUpstream
        let rest: FakeUpstream
        let restError: FakeUpstream
        let comparisonLog: String

        init(configure: (inout SidecarOptions) -> Void = { _ in }) throws {
            let models = GRPCClients.packageRoot.appendingPathComponent("examples/models").path
            shadow = FakeUpstream(
                .json(
                    #"{"model_name":"churn","model_version":"s","outputs":[{"name":"predict","datatype":"FP64","shape":[2],"data":[0.25,0.75]}]}"#
                )
            )
            let answer =
                #"{"model_name":"rest","model_version":"r","outputs":[{"name":"predict","datatype":"FP64","shape":[2],"data":[0.125,0.5]}]}"#
            slow = FakeUpstream(.slow(milliseconds: 2_000, body: answer))
            rest = FakeUpstream(.json(answer))
            restError = FakeUpstream(.status(400, #"{"error":"input-0 has the wrong width"}"#))
            let dead = deadPort()
            comparisonLog = NSTemporaryDirectory() + "switchyard-grpc-cmp-\(UUID().uuidString).jsonl"
            func grpcRoute(_ model: String, extra: String = "") -> String {
                "  - { name: \(model)-grpc, match: { grpc: inference.GRPCInferenceService/ModelInfer, model: \(model) }, model: \(model), protocol: v2-grpc\(extra) }"
            }
            func remote(_ model: String, _ url: String, extra: String = "") -> String {
                """
                model: \(model)
                versions:
                  r: { url: "\(url)", timeout_ms: 5000 }
                \(extra)
                split: { r: 100 }
                """
            }
            config = try TempConfig(
                routes: """
                    routes:
                    \(grpcRoute("churn", extra: ", version_from: message"))
                      - { name: churn-tf, match: { grpc: tensorflow.serving.PredictionService/Predict, model: churn }, model: churn, protocol: tfserving-grpc }
                      - { name: churn-oip, match: { path: /v2/models/churn/infer, method: POST }, model: churn, protocol: v2 }
                      - { name: churn-oip-pinned, match: { template: "/v2/models/churn/versions/{version}/infer", method: POST }, model: churn, protocol: v2 }
                    \(grpcRoute("dead"))
                    \(grpcRoute("fb"))
                    \(grpcRoute("slow"))
                    \(grpcRoute("rest"))
                    \(grpcRoute("resterr"))
                    """,
                policies: [
                    "churn": """
                    model: churn
                    versions:
                      v1: { embedded: linear, file: \(models)/churn-linear-v1.json }
                      v3: { embedded: xgboost, file: \(models)/churn-xgb-v3.json }
                      s: { url: "http://127.0.0.1:\(shadow.port)" }
                    split: { v1: 100 }
                    shadow:
                      - { version: s, percent: 100 }
                    compare: { output: /predictions, tolerance: 0.1, threshold: 0.5, log: \(comparisonLog) }
                    """,
                    "dead": remote("dead", "http://127.0.0.1:\(dead)"),
                    "fb": """
                    model: fb
                    versions:
                      r: { url: "http://127.0.0.1:\(dead)" }
                      stable: { embedded: linear, file: \(models)/churn-linear-v1.json }
                    split: { r: 100 }
                    fallback: stable
                    """,
                    "slow": remote("slow", "http://127.0.0.1:\(slow.port)"),
                    "rest": remote("rest", "http://127.0.0.1:\(rest.port)"),
                    "resterr": remote("resterr", "http://127.0.0.1:\(restError.port)"),
                ]
            )
            sidecar = try RunningSidecar(config: config.path, configure: configure)
        }

        func stop() {
            sidecar.stop()
            for upstream in [shadow, slow, rest, restError] { upstream.stop() }
            config.remove()
            try? FileManager.default.removeItem(atPath: comparisonLog)
        }

        /// The REST path's predictions for the test rows (`version` pins one).
        func restPredictions(version: String? = nil) throws -> [Double] {
            let path = version.map { "/v2/models/churn/versions/\($0)/infer" } ?? "/v2/models/churn/infer"
            let response = try #require(httpRequest(port: sidecar.port, "POST", path, body: GRPCTests.restBody))
            #expect(response.status == 200, "\(response.bodyText)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
            let outputs = try #require(object["outputs"] as? [[String: Any]])
            return try #require(outputs.first?["data"] as? [Double])
        }
    }

    static func doubles(_ value: Any?) -> [Double] {
        (value as? [Any])?.compactMap { ($0 as? NSNumber)?.doubleValue } ?? []
    }
    static func object(_ value: Any?) -> [String: Any] { value as? [String: Any] ?? [:] }

    @Test func healthAndMetadataRPCsAnswerLikeTheirRESTTwins() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let result = try GRPCClients.scenario("health", port: setup.sidecar.port)
        #expect(result["live"] as? Bool == true)
        #expect(result["ready"] as? Bool == true)
        #expect(result["model_ready"] as? Bool == true)
        let metadata = Self.object(result["metadata"])
        #expect(metadata["name"] as? String == "churn")
        #expect(metadata["versions"] as? [String] == ["v1", "v3", "s"])
        let inputs = metadata["inputs"] as? [[Any]] ?? []
        #expect(inputs.first?[0] as? String == "input-0")
        #expect(inputs.first?[1] as? String == "FP64")
        #expect(Self.doubles(inputs.first?[2]) == [-1, 4])
        let tf = Self.object(result["tf_metadata"])
        #expect(tf["name"] as? String == "churn")
        #expect(tf["inputs"] as? [String] == ["instances"])
        #expect(tf["outputs"] as? [String] == ["predictions"])
        #expect(tf["method"] as? String == "tensorflow/serving/predict")
        #expect(result["unknown_model"] as? String == "NOT_FOUND")
    }

    @Test func embeddedAnswersMatchTheRESTPathRawAndTyped() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let expected = try setup.restPredictions()
        let expectedV3 = try setup.restPredictions(version: "v3")
        #expect(expected.count == 2)
        let result = try GRPCClients.scenario("infer", port: setup.sidecar.port)

        // tritonclient sends raw tensors and reads raw ones back.
        let raw = Self.object(result["raw"])
        #expect(Self.doubles(raw["predict"]) == expected)
        #expect(raw["typed"] as? Bool == false)
        #expect(raw["version"] as? String == "v1")
        #expect(raw["id"] as? String == "raw-1")

        // Typed contents in, typed contents out; the sidecar's fields as initial metadata.
        let typed = Self.object(result["typed"])
        #expect(typed["code"] as? String == "OK")
        #expect(typed["typed"] as? Bool == true)
        #expect(Self.doubles(typed["predict"]) == expected)
        #expect(typed["id"] as? String == "typed-1")
        let initial = Self.object(typed["initial"])
        #expect(initial["x-switchyard-version"] as? String == "v1")
        #expect((initial["x-request-id"] as? String)?.isEmpty == false)
        #expect(Self.object(typed["trailing"])["grpc-status"] == nil)  // grpcio keeps it out of metadata

        // `version_from: message`: the message's model_version pins v3 (FP32 outputs).
        let pinned = Self.object(result["pinned"])
        #expect(pinned["model_version"] as? String == "v3")
        #expect(Self.object(pinned["initial"])["x-switchyard-version"] as? String == "v3")
        let v3 = Self.doubles(pinned["predict"])
        #expect(v3.count == 2 && zip(v3, expectedV3).allSatisfy { abs($0 - $1) < 1e-6 })

        // TF Serving Predict: tensor_content mirrored, typed double_val mirrored; one output
        // named `predictions`, the single input read whatever its name.
        for (key, content) in [("tf_content", true), ("tf_typed", false)] {
            let tf = Self.object(result[key])
            #expect(tf["code"] as? String == "OK", "\(key): \(tf)")
            #expect(tf["dtype"] as? String == "DT_DOUBLE")
            #expect(tf["content"] as? Bool == content)
            #expect(Self.doubles(tf["predictions"]) == expected)
            #expect(tf["version"] as? String == "0" || tf["version"] as? String == "v1")
        }
    }

    @Test func errorsAreStatusesAndRESTVersionsAreTranslated() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let result = try GRPCClients.scenario("errors", port: setup.sidecar.port)
        func code(_ key: String) -> String? { Self.object(result[key])["code"] as? String }
        func details(_ key: String) -> String { Self.object(result[key])["details"] as? String ?? "" }
        #expect(code("unknown_model") == "NOT_FOUND")
        #expect(details("unknown_model").contains("nosuch"))
        #expect(code("bad_shape") == "INVALID_ARGUMENT")
        #expect(details("bad_shape").contains("shape [2, 4] has 8 elements"), "\(details("bad_shape"))")
        #expect(code("unknown_version") == "NOT_FOUND")
        #expect(details("unknown_version").contains("v9"))
        #expect(code("classify") == "UNIMPLEMENTED")
        #expect(code("model_config") == "UNIMPLEMENTED")
        #expect(code("other_service") == "UNIMPLEMENTED")
        #expect(code("dead") == "UNAVAILABLE")
        #expect(Self.object(Self.object(result["dead"])["trailing"])["x-switchyard-version"] as? String == "r")

        // The dead REST version fails over to the embedded one, and says so.
        let fallback = Self.object(result["fallback"])
        #expect(fallback["code"] as? String == "OK", "\(fallback)")
        #expect(Self.object(fallback["initial"])["x-switchyard-version"] as? String == "stable")
        #expect(Self.object(fallback["initial"])["x-switchyard-fallback"] as? String == "r")
        #expect(Self.doubles(fallback["predict"]) == (try setup.restPredictions()))

        // A REST version: the message goes as its REST twin, the answer comes back typed.
        let rest = Self.object(result["rest"])
        #expect(rest["code"] as? String == "OK", "\(rest)")
        #expect(Self.doubles(rest["predict"]) == [0.125, 0.5])
        let received = try #require(setup.rest.received.first)
        #expect(received.requestLine == "POST /v2/models/rest/infer HTTP/1.1")
        #expect(received.header("content-type") == "application/json")
        #expect(received.header("grpc-timeout") == nil && received.header("te") == nil)
        let sent = try #require(try JSONSerialization.jsonObject(with: Data(received.body)) as? [String: Any])
        let inputs = sent["inputs"] as? [[String: Any]] ?? []
        #expect(Self.doubles(inputs.first?["data"]) == [12, 70.5, 1, 0, 3, 20, 0, 1])
        #expect(code("rest_error") == "INVALID_ARGUMENT")
        #expect(details("rest_error").contains("wrong width"))

        // Metrics: the same series, `code` the HTTP status the outcome pairs with.
        let metrics = ShadowTests.metrics(setup.sidecar)
        #expect(
            metrics.contains(
                #"switchyard_requests_total{route="dead-grpc",model="dead",version="r",role="live",code="502"}"#
            )
        )
        #expect(metrics.contains(#"switchyard_fallbacks_total{model="fb",from_version="r",to_version="stable"}"#))
    }

    @Test func grpcTimeoutShortensTheVersionsTimeout() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let result = try GRPCClients.scenario("deadline", port: setup.sidecar.port)
        #expect(result["status"] as? String == "4", "\(result)")
        let message = result["message"] as? String ?? ""
        #expect(message.contains("did not answer within") && !message.contains("5000"), "\(message)")
        let metrics = ShadowTests.metrics(setup.sidecar)
        #expect(
            metrics.contains(
                #"switchyard_requests_total{route="slow-grpc",model="slow",version="r",role="live",code="504"}"#
            )
        )
    }

    @Test func shadowsOfGRPCCallsAreComparedOnTheRESTRendering() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let expected = try setup.restPredictions()
        _ = try GRPCClients.scenario("infer", port: setup.sidecar.port)
        var records: [[String: Any]] = []
        #expect(
            eventually {
                let text = (try? String(contentsOfFile: setup.comparisonLog, encoding: .utf8)) ?? ""
                records = text.split(separator: "\n").compactMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }
                return records.contains { $0["route"] as? String == "churn-grpc" }
                    && records.contains { $0["route"] as? String == "churn-tf" }
            }
        )
        for route in ["churn-grpc", "churn-tf"] {
            let record = try #require(records.first { $0["route"] as? String == route })
            #expect(Self.doubles(Self.object(record["live"])["output"]) == expected, "\(record)")
            #expect(Self.doubles(Self.object(record["shadow"])["output"]) == [0.25, 0.75])
            #expect(record["outcome"] as? String == "mismatch")
        }
        let metrics = ShadowTests.metrics(setup.sidecar)
        let series =
            #"switchyard_shadow_comparisons_total{model="churn",live_version="v1",shadow_version="s",outcome="mismatch"}"#
        #expect((ShadowTests.metric(metrics, series) ?? 0) >= 3)
        // The shadow was sent the REST twin of the gRPC message.
        #expect(setup.shadow.received.contains { $0.requestLine == "POST /v2/models/churn/infer HTTP/1.1" })
    }

    @Test func messagesOverTheLimitAreResourceExhausted() throws {
        let setup = try Setup { $0.maxGRPCMessageBytes = 1_000 }
        defer { setup.stop() }
        let result = try GRPCClients.scenario("big", port: setup.sidecar.port)
        #expect(result["code"] as? String == "RESOURCE_EXHAUSTED", "\(result)")
        #expect((result["details"] as? String ?? "").contains("limit of 1000 bytes"))
    }

    @Test func http1AndGRPCShareThePort() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let result = try GRPCClients.scenario("mixed", port: setup.sidecar.port)
        #expect(result["rest"] as? Int == 40)
        #expect(result["grpc"] as? Int == 40)
        #expect(result["rest_same"] as? Bool == true && result["grpc_same"] as? Bool == true)
        #expect(Self.doubles(result["rest_answer"]) == Self.doubles(result["grpc_answer"]))
    }
}
