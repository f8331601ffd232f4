import Foundation
import Testing

/// `switchyard explain --grpc`: the decision for a gRPC call (SPEC §13), from a temporary config
/// with gRPC routes beside a REST one; real model files from `examples/models`.
@Suite struct GRPCExplainTests {
    static let models = CLI.root + "/examples/models"

    static func config() throws -> String {
        try CLI.tempDirectory(files: [
            "routes/grpc.yaml": """
            routes:
              - name: churn-grpc
                match: { grpc: inference.GRPCInferenceService/ModelInfer, model: churn }
                model: churn
                protocol: v2-grpc
                version_from: message
              - name: churn-tf
                match: { grpc: "tensorflow.serving.PredictionService/*", headers: { x-tenant: acme } }
                model: churn
              - name: fraud-rest
                match: { path: /v2/models/fraud/infer }
                model: fraud
                protocol: v2
            """,
            // A grpc:// version answers only gRPC routes: the REST route has a model of its own.
            "policies/fraud.yaml": """
            model: fraud
            versions:
              v1: { embedded: linear, file: \(models)/churn-linear-v2.json }
            """,
            "policies/churn.yaml": """
            model: churn
            versions:
              v1: { embedded: linear, file: \(models)/churn-linear-v1.json }
              v2: { url: "grpc://127.0.0.1:8001", timeout_ms: 300 }
              v3: { url: "http://127.0.0.1:9003" }
            labels: { stable: v1, candidate: v2 }
            split: { stable: 100 }
            sticky: header:x-user-id
            fallback: stable
            shadow:
              - { version: v3, percent: 100 }
            """,
        ])
    }

    @Test func aCallPinnedByItsMessagesVersion() throws {
        let dir = try Self.config()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run([
            "explain", "--config", dir, "--grpc", "inference.GRPCInferenceService/ModelInfer", "--model", "churn",
            "--model-version", "candidate",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(
            r.stdout == """
                route: churn-grpc (\(dir)/routes/grpc.yaml:2:5)
                model: churn
                version: v2
                why: pinned by message: candidate
                split: v1 100%
                backend: remote grpc://127.0.0.1:8001, timeout 300 ms
                protocol: v2-grpc
                fallback: v1
                shadows: v3

                """
        )
    }

    /// Without a version in the message, the split decides, by the sticky key in the metadata;
    /// a REST version behind the gRPC route speaks the REST twin.
    @Test func anUnpinnedCallFollowsTheSplitWithMetadataAsTheStickyKey() throws {
        let dir = try Self.config()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run([
            "explain", "--config", dir, "--json", "--grpc", "inference.GRPCInferenceService/ModelInfer",
            "--model", "churn", "-H", "x-user-id: u-42",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let decision = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(decision["route"] as? String == "churn-grpc")
        #expect(decision["version"] as? String == "v1")
        #expect(decision["reason"] as? String == "split: sticky key 'u-42' (header:x-user-id) by weighted rendezvous")
        #expect(decision["protocol"] as? String == "v2-grpc")
        #expect(decision["shadows"] as? [String] == ["v3"])

        let pinnedREST = try CLI.run([
            "explain", "--config", dir, "--grpc", "inference.GRPCInferenceService/ModelInfer", "--model", "churn",
            "--model-version", "v3",
        ])
        #expect(pinnedREST.stdout.contains("backend: remote http://127.0.0.1:9003 (request path kept)"))
        #expect(pinnedREST.stdout.contains("protocol: v2-grpc (version speaks v2)\n"))
    }

    @Test func metadataMatchesARoutesHeaders() throws {
        let dir = try Self.config()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let withTenant = try CLI.run([
            "explain", "--config", dir, "--grpc", "tensorflow.serving.PredictionService/Predict", "--model", "churn",
            "-H", "x-tenant: acme",
        ])
        #expect(withTenant.status == 0, "\(withTenant.stderr)")
        #expect(withTenant.stdout.hasPrefix("route: churn-tf ("))
        #expect(withTenant.stdout.contains("protocol: tfserving-grpc\n"))

        let without = try CLI.run([
            "explain", "--config", dir, "--grpc", "tensorflow.serving.PredictionService/Predict", "--model", "churn",
        ])
        #expect(without.status == 1)
        #expect(
            without.stdout == """
                route: none
                response: 404 no_route: no route matches gRPC tensorflow.serving.PredictionService/Predict for model 'churn'
                grpc-status: NOT_FOUND

                """
        )
    }

    @Test func refusalsNameTheirGRPCStatus() throws {
        let dir = try Self.config()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let unknown = try CLI.run([
            "explain", "--config", dir, "--json", "--grpc", "inference.GRPCInferenceService/ModelInfer", "--model",
            "churn", "--model-version", "v9",
        ])
        #expect(unknown.status == 1)
        let refusal = try #require(
            try JSONSerialization.jsonObject(with: Data(unknown.stdout.utf8)) as? [String: Any]
        )
        #expect(refusal["route"] as? String == "churn-grpc")
        #expect(refusal["error"] as? String == "unknown_version")
        #expect(refusal["grpc_status"] as? String == "NOT_FOUND")

        // Another model in the message: the route's `match.model` does not take it.
        let otherModel = try CLI.run([
            "explain", "--config", dir, "--grpc", "inference.GRPCInferenceService/ModelInfer", "--model", "fraud",
        ])
        #expect(otherModel.status == 1)
        #expect(
            otherModel.stdout.contains(
                "no route matches gRPC inference.GRPCInferenceService/ModelInfer for model 'fraud'"
            )
        )
    }

    /// REST requests still explain as before, and never match a gRPC route.
    @Test func aRESTRequestToTheGRPCPathIsNotAGRPCCall() throws {
        let dir = try Self.config()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["explain", "--config", dir, "POST", "/inference.GRPCInferenceService/ModelInfer"])
        #expect(r.status == 1)
        #expect(r.stdout.contains("404 no_route: no route matches POST /inference.GRPCInferenceService/ModelInfer"))
        #expect(!r.stdout.contains("grpc-status"))
        let rest = try CLI.run(["explain", "--config", dir, "POST", "/v2/models/fraud/infer"])
        #expect(rest.status == 0)
        #expect(rest.stdout.hasPrefix("route: fraud-rest ("))
    }

    @Test(arguments: [
        (
            ["--grpc", "inference.GRPCInferenceService/ModelInfer", "POST", "/x"],
            "--grpc explains a gRPC call; give no METHOD PATH with it"
        ),
        (
            ["POST", "/x", "--model", "churn"],
            "--model and --model-version describe a gRPC message; use them with --grpc"
        ),
        (["--grpc", "/inference.GRPCInferenceService/ModelInfer"], "--grpc expects package.Service/Method"),
        (["--grpc", "ModelInfer"], "--grpc expects package.Service/Method"),
        ([], "Missing expected argument '<method> <path>' (or --grpc SERVICE/METHOD)"),
    ])
    func badUsageExits64(arguments: [String], message: String) throws {
        let r = try CLI.run(["explain"] + arguments)
        #expect(r.status == 64)
        #expect(r.stderr.contains(message), "\(r.stderr)")
    }
}
