import Policy
import Routing
import Testing

// Routing of gRPC calls (SPEC §13): `match.grpc` by the call's `:path`, `match.model` by the
// model its message names, metadata in `match.headers` and `sticky`, `version_from: message`.

private let inference = "inference.GRPCInferenceService"
private let prediction = "tensorflow.serving.PredictionService"

private func grpcRoute(
    _ name: String,
    _ service: String,
    _ method: String?,
    model: String? = nil,
    headers: [(name: String, value: String)] = [],
    pin: VersionPin? = nil,
    wireProtocol: WireProtocol = .v2GRPC
) -> Route {
    let grpc = GRPCMethodMatch(service: service, method: method)
    return Route(
        name: name,
        match: RouteMatch(path: grpc.pathMatch, method: nil, headers: headers, grpc: grpc, model: model),
        model: "churn",
        wireProtocol: wireProtocol,
        pin: pin,
        location: here
    )
}

/// gRPC routes first, then REST routes that would take any path.
private let grpcRoutes: [Route] = [
    grpcRoute("infer-acme", inference, "ModelInfer", model: "churn", headers: [("x-tenant", "acme")]),
    grpcRoute("infer-churn", inference, "ModelInfer", model: "churn", pin: .message),
    grpcRoute("metadata", inference, "ModelMetadata", model: "churn"),
    grpcRoute("inference-any", inference, nil),
    grpcRoute("tf-predict", prediction, "Predict", model: "churn", pin: .message, wireProtocol: .tfservingGRPC),
    route("rest-any", .prefix("/")),
]

private func call(
    _ service: String,
    _ method: String,
    model: String?,
    version: String? = nil,
    metadata: [(name: String, value: String)] = []
) -> RequestFacts {
    RequestFacts(
        method: "POST",
        path: "/\(service)/\(method)",
        headers: metadata,
        grpc: GRPCCallFacts(model: model, modelVersion: version)
    )
}

private func decideCall(_ request: RequestFacts, seed: UInt64 = 7) -> RoutingOutcome {
    var generator = SplitMix64(seed: seed)
    return decide(request, config: sampleConfig(routes: grpcRoutes), using: &generator)
}

struct GRPCMatchCase: Sendable, CustomTestStringConvertible {
    /// Made when read: `RequestFacts` is not `Sendable` (its body reader belongs to one thread).
    let makeRequest: @Sendable () -> RequestFacts
    var route: String
    var request: RequestFacts { makeRequest() }

    init(request: @autoclosure @escaping @Sendable () -> RequestFacts, route: String) {
        self.makeRequest = request
        self.route = route
    }

    var testDescription: String {
        "\(request.path) model \(request.grpc?.model ?? "none") \(request.headers.map(\.value)) → \(route)"
    }
}

private let grpcMatchCases: [GRPCMatchCase] = [
    // The exact method, the model the message names, and metadata.
    GRPCMatchCase(
        request: call(inference, "ModelInfer", model: "churn", metadata: [("x-tenant", "acme")]),
        route: "infer-acme"
    ),
    GRPCMatchCase(
        request: call(inference, "ModelInfer", model: "churn", metadata: [("X-Tenant", "acme")]),
        route: "infer-acme"
    ),
    GRPCMatchCase(
        request: call(inference, "ModelInfer", model: "churn", metadata: [("x-tenant", "other")]),
        route: "infer-churn"
    ),
    GRPCMatchCase(request: call(inference, "ModelInfer", model: "churn"), route: "infer-churn"),
    GRPCMatchCase(request: call(inference, "ModelMetadata", model: "churn"), route: "metadata"),
    // Another model, or none (server health), skips routes with `match.model`: `Service/*` takes it.
    GRPCMatchCase(request: call(inference, "ModelInfer", model: "fraud"), route: "inference-any"),
    GRPCMatchCase(request: call(inference, "ModelInfer", model: "Churn"), route: "inference-any"),
    GRPCMatchCase(request: call(inference, "ServerLive", model: nil), route: "inference-any"),
    GRPCMatchCase(request: call(inference, "ModelReady", model: "churn"), route: "inference-any"),
    GRPCMatchCase(request: call(prediction, "Predict", model: "churn"), route: "tf-predict"),
    // A method no gRPC route names: never a REST route, whatever its path.
    GRPCMatchCase(request: call(prediction, "GetModelMetadata", model: "churn"), route: "no route"),
    GRPCMatchCase(request: call("grpc.health.v1.Health", "Check", model: nil), route: "no route"),
    // `Service/*` is the service's methods, not a service whose name starts the same.
    GRPCMatchCase(request: call(inference + "2", "ModelInfer", model: "churn"), route: "no route"),
    // A REST request to the same path is not a gRPC call: REST routes only.
    GRPCMatchCase(request: request("/\(inference)/ModelInfer"), route: "rest-any"),
]

@Test(arguments: grpcMatchCases)
func aGRPCCallMatchesByMethodModelAndMetadata(_ c: GRPCMatchCase) {
    let outcome = decideCall(c.request)
    let name: String
    switch outcome {
    case .routed(let decision): name = decision.route.name
    case .noRoute: name = "no route"
    default: name = outcome.summary
    }
    #expect(name == c.route)
}

@Test func aRESTRequestNeverMatchesAGRPCRoute() {
    let routes = [grpcRoute("infer", inference, "ModelInfer"), grpcRoute("any", inference, nil)]
    var generator = SplitMix64(seed: 1)
    for path in ["/\(inference)/ModelInfer", "/\(inference)/", "/"] {
        let outcome = decide(request(path), config: sampleConfig(routes: routes), using: &generator)
        #expect(outcome.summary == "no route", "\(path)")
    }
}

@Test func aGRPCCallNeverMatchesAPathRoute() {
    let routes = [
        route("exact", .exact("/\(inference)/ModelInfer")), route("prefix", .prefix("/")),
        route("post", .prefix("/"), method: "POST"),
    ]
    var generator = SplitMix64(seed: 1)
    let outcome = decide(
        call(inference, "ModelInfer", model: "churn"),
        config: sampleConfig(routes: routes),
        using: &generator
    )
    #expect(outcome.summary == "no route")
}

struct MessagePinCase: Sendable, CustomTestStringConvertible {
    var version: String?
    var expected: String
    var testDescription: String { "model_version \(version.map { "'\($0)'" } ?? "unset") → \(expected)" }
}

/// `version_from: message`: a non-empty version in the message pins it; an unknown one is
/// `unknown_version`, as a header or path pin is; an unset or empty one follows the split.
@Test(arguments: [
    MessagePinCase(version: "v3", expected: "infer-churn v3"),
    MessagePinCase(version: "candidate", expected: "infer-churn v2"),
    MessagePinCase(version: "stable", expected: "infer-churn v1"),
    MessagePinCase(version: "v9", expected: "unknown infer-churn v9"),
])
func theMessagesVersionPinsIt(_ c: MessagePinCase) {
    var generator = TrappingGenerator()
    let outcome = decide(
        call(inference, "ModelInfer", model: "churn", version: c.version),
        config: sampleConfig(routes: grpcRoutes),
        using: &generator
    )
    #expect(outcome.summary == c.expected)
    if let decision = outcome.decision {
        #expect(decision.reason == .pinnedByMessage(c.version!))
        #expect(decision.reason.isPinned)
        #expect(decision.requested == c.version)
        #expect(decision.wireProtocol == .v2GRPC)
    }
}

@Test func aMessagePinExplainsItself() throws {
    let decision = try #require(
        decideCall(call(inference, "ModelInfer", model: "churn", version: "candidate")).decision
    )
    #expect(decision.explanation == "pinned by message: candidate → v2")
    #expect(decision.description == "route infer-churn → churn/v2: pinned by message: candidate → v2")
}

@Test(arguments: [nil, ""] as [String?])
func anUnsetOrEmptyVersionFollowsTheSplit(version: String?) throws {
    // The policy's sticky key is `header:x-user-id`: here, gRPC metadata.
    var generator = TrappingGenerator()
    let request = call(inference, "ModelInfer", model: "churn", version: version, metadata: [("x-user-id", "u-42")])
    let outcome = decide(request, config: sampleConfig(routes: grpcRoutes), using: &generator)
    let decision = try #require(outcome.decision)
    #expect(decision.route.name == "infer-churn")
    #expect(decision.reason == .stickySplit(key: "u-42", source: .header("x-user-id")))
    #expect(decision.requested == nil)
}

/// TF Serving names its version in `model_spec.version` (a number, passed as its decimal text)
/// or `version_label`: both pin through the same field.
@Test func aTFServingCallIsPinnedByItsVersionOrLabel() {
    var generator = TrappingGenerator()
    let config = sampleConfig(routes: grpcRoutes)
    let byLabel = decide(
        call(prediction, "Predict", model: "churn", version: "stable"),
        config: config,
        using: &generator
    )
    #expect(byLabel.summary == "tf-predict v1")
    #expect(byLabel.decision?.wireProtocol == .tfservingGRPC)
    let unknown = decide(call(prediction, "Predict", model: "churn", version: "2"), config: config, using: &generator)
    #expect(unknown.summary == "unknown tf-predict 2")
}

/// Metadata pins a version on a gRPC route with `version_from: header:N`, as a header does on REST.
@Test func metadataPinsAVersionByHeader() {
    let routes = [grpcRoute("infer", inference, "ModelInfer", pin: .header("x-model-version"))]
    var generator = TrappingGenerator()
    let outcome = decide(
        call(inference, "ModelInfer", model: "churn", version: "v1", metadata: [("x-model-version", "v3")]),
        config: sampleConfig(routes: routes),
        using: &generator
    )
    #expect(outcome.summary == "infer v3")
    #expect(outcome.decision?.reason == .pinnedByHeader(header: "x-model-version", value: "v3"))
}

/// The table and the config decide gRPC calls alike.
@Test func theRoutingTableDecidesGRPCCallsAsTheConfigDoes() {
    let config = sampleConfig(routes: grpcRoutes)
    let table = RoutingTable(config)
    for c in grpcMatchCases {
        var a = SplitMix64(seed: 3)
        var b = SplitMix64(seed: 3)
        let byConfig = decide(c.request, config: config, using: &a)
        let byTable = decide(c.request, table: table, using: &b)
        #expect(byConfig.summary == byTable.summary, "\(c.testDescription)")
    }
}
