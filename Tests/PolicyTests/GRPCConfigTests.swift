import Foundation
import Testing

@testable import Policy

// gRPC routes and versions as the loader builds them (SPEC §13).

@Test func grpcRoutesLoadWithTheirMethodModelProtocolAndPin() throws {
    let config = try ConfigLoader.load(directory: Fixtures.directory("valid", "grpc")).get()
    let routes = Dictionary(uniqueKeysWithValues: config.routes.map { ($0.name, $0) })

    let infer = try #require(routes["churn-grpc"])
    #expect(infer.match.grpc == GRPCMethodMatch(service: "inference.GRPCInferenceService", method: "ModelInfer"))
    #expect(infer.match.path == .exact("/inference.GRPCInferenceService/ModelInfer"))
    #expect(infer.match.model == "churn")
    #expect(infer.match.method == nil)
    #expect(infer.wireProtocol == .v2GRPC)
    #expect(infer.pin == .message)

    // No protocol: the service's. `*` takes every method of the service by its `:path` prefix.
    let any = try #require(routes["churn-grpc-acme"])
    #expect(any.wireProtocol == .v2GRPC)
    #expect(any.match.grpc?.description == "inference.GRPCInferenceService/*")
    #expect(any.match.path == .prefix("/inference.GRPCInferenceService/"))
    #expect(any.match.model == nil)
    #expect(any.match.headers.map(\.name) == ["x-tenant"])
    #expect(any.pin == .header("x-model-version"))

    #expect(routes["tf-predict"]?.wireProtocol == .tfservingGRPC)
    #expect(routes["tf-predict"]?.pin == .message)
    #expect(routes["tf-metadata"]?.wireProtocol == .tfservingGRPC)
    #expect(routes["churn-rest"]?.match.grpc == nil)
    #expect(routes["churn-rest"]?.wireProtocol == .v2)
}

@Test func grpcVersionsLoadAsGRPCBackends() throws {
    let config = try ConfigLoader.load(directory: Fixtures.directory("valid", "grpc")).get()
    let triton = try #require(config.models["triton"])
    func remote(_ policy: ModelPolicy, _ name: String) -> RemoteBackend? {
        guard case .remote(let r)? = policy.versions[name]?.backend else { return nil }
        return r
    }
    #expect(
        remote(triton, "local")
            == RemoteBackend(
                host: "[::1]",
                port: 8001,
                path: nil,
                timeoutMilliseconds: 1000,
                maxConnections: 64,
                isGRPC: true
            )
    )
    #expect(remote(triton, "remote")?.port == 443)
    #expect(remote(triton, "remote")?.isGRPC == true)
    #expect(remote(triton, "remote")?.tls == TLSSpec(serverName: "triton.svc"))
    #expect(remote(triton, "pinned-ca")?.tls?.caFile?.hasSuffix("/models/ca.pem") == true)
    #expect(config.tlsFiles.contains { $0.hasSuffix("/models/ca.pem") })

    let tf = try #require(config.models["tf-churn"])
    #expect(remote(tf, "1")?.isGRPC == true)
    #expect(remote(tf, "1")?.maxConnections == 4)
    #expect(remote(tf, "2")?.isGRPC == false)
}

/// A version without `protocol:` speaks its route's, except a REST version behind a gRPC route,
/// which speaks the REST twin; a written `protocol:` always wins.
@Test func aVersionSpeaksItsRoutesProtocolOrItsRESTTwin() throws {
    let config = try ConfigLoader.load(directory: Fixtures.directory("valid", "grpc")).get()
    let churn = try #require(config.models["churn"])
    let tf = try #require(config.models["tf-churn"])
    #expect(churn.versions["v2"]?.wireProtocol(onRoute: .v2GRPC) == .v2)
    #expect(churn.versions["v2"]?.wireProtocol(onRoute: .v2) == .v2)
    #expect(churn.versions["v1"]?.wireProtocol(onRoute: .v2GRPC) == .v2)
    #expect(churn.versions["v3"]?.wireProtocol(onRoute: .v2GRPC) == .v2GRPC)
    #expect(tf.versions["1"]?.wireProtocol(onRoute: .tfservingGRPC) == .tfservingGRPC)
    #expect(tf.versions["2"]?.wireProtocol(onRoute: .tfservingGRPC) == .tfserving)
    #expect(config.models["triton"]?.versions["remote"]?.wireProtocol(onRoute: .v2GRPC) == .v2GRPC)
}

@Test func protocolsKnowTheirServicesAndTwins() {
    #expect(WireProtocol.allCases.filter(\.isGRPC) == [.v2GRPC, .tfservingGRPC])
    #expect(WireProtocol.v2GRPC.rawValue == "v2-grpc")
    #expect(WireProtocol.tfservingGRPC.rawValue == "tfserving-grpc")
    #expect(WireProtocol.v2GRPC.restTwin == .v2)
    #expect(WireProtocol.tfservingGRPC.restTwin == .tfserving)
    #expect(WireProtocol.json.restTwin == .json)
    #expect(WireProtocol.grpc(service: "inference.GRPCInferenceService") == .v2GRPC)
    #expect(WireProtocol.grpc(service: "tensorflow.serving.PredictionService") == .tfservingGRPC)
    #expect(WireProtocol.grpc(service: "grpc.health.v1.Health") == nil)
    #expect(WireProtocol.v2.grpcService == nil)
}

@Test(
    arguments: [
        ("inference.GRPCInferenceService/ModelInfer", "inference.GRPCInferenceService", "ModelInfer"),
        ("inference.GRPCInferenceService/*", "inference.GRPCInferenceService", nil),
        ("Greeter/SayHello", "Greeter", "SayHello"),
        ("a_1.b_2.Svc/M_3", "a_1.b_2.Svc", "M_3"),
    ] as [(String, String, String?)]
)
func acceptedGRPCMethod(text: String, service: String, method: String?) {
    #expect(Syntax.grpcMethod(text) == GRPCMethodMatch(service: service, method: method))
}

@Test(arguments: [
    "", "/", "inference.GRPCInferenceService", "inference.GRPCInferenceService/", "/inference.Svc/M",
    "inference.Svc/M/N", "inference..Svc/M", ".Svc/M", "Svc./M", "1pkg.Svc/M", "pkg.Svc/1M", "pkg.Svc/M*",
    "pkg-x.Svc/M", "pkg.Svc/**", "pkg.Svc/ M",
])
func rejectedGRPCMethod(text: String) {
    #expect(Syntax.grpcMethod(text) == nil)
}
