import Models
import Policy

/// How bodies cross between what a route's client speaks and what a version speaks
/// (SPEC §3 "Protocols", §9 "Protocols by default"). Pure functions of bytes and JSON.
enum Protocols {
    /// The protocol a version speaks: its own `protocol:`, else its route's (a REST version of a
    /// gRPC route: the REST twin, `VersionSpec.wireProtocol(onRoute:)`).
    static func versionProtocol(_ spec: VersionSpec, route: WireProtocol) -> WireProtocol {
        spec.wireProtocol(onRoute: route)
    }

    /// Whether a request/response must be translated between the two: only between the two
    /// tensor protocols; `json` is opaque and never translated.
    static func needsTranslation(route: WireProtocol, version: WireProtocol) -> Bool {
        route != version && route != .json && version != .json
    }

    /// The request body for a version speaking `version`, from a client speaking `route`.
    static func translateRequest(
        _ body: JSON,
        from route: WireProtocol,
        to version: WireProtocol
    ) throws(ModelError)
        -> [UInt8]
    {
        switch (route, version) {
        case (.tfserving, .v2): return try ProtocolTranslation.v2Request(fromTFServing: body).serialized()
        case (.v2, .tfserving): return try ProtocolTranslation.tfServingRequest(fromV2: body).serialized()
        default: return body.serialized()
        }
    }

    /// The response body for a client speaking `route`, from a version speaking `version`.
    static func translateResponse(
        _ body: JSON,
        from version: WireProtocol,
        to route: WireProtocol,
        model: String,
        versionName: String,
        id: String?
    ) throws(UpstreamResponseError) -> [UInt8] {
        switch (version, route) {
        case (.v2, .tfserving): return try ProtocolTranslation.tfServingResponse(fromV2: body).serialized()
        case (.tfserving, .v2):
            return try ProtocolTranslation.v2Response(
                fromTFServing: body,
                modelName: model,
                modelVersion: versionName,
                id: id
            )
            .serialized()
        default: return body.serialized()
        }
    }

    /// Rows for an embedded model from a request body in the route's protocol (`json` routes
    /// read TF Serving `instances`, the format embedded models document). `ignoring` names
    /// instance fields that are keys for a table version of the same model, not features.
    static func rows(
        _ body: JSON,
        route: WireProtocol,
        model: any EmbeddedModel,
        ignoring: Set<String>
    ) throws(ModelError) -> FeatureMatrix {
        switch route {
        case .v2, .v2GRPC:
            return try OIPCodec.decodeInstances(
                body,
                featureNames: model.featureNames,
                featureCount: model.featureCount
            )
        case .tfserving, .json, .tfservingGRPC, .openai:
            return try TFServingCodec.decodeInstances(
                body,
                featureNames: model.featureNames,
                featureCount: model.featureCount,
                ignoring: ignoring
            )
        }
    }

    /// An embedded answer in the route's protocol.
    static func encode(
        _ predictions: [JSON],
        route: WireProtocol,
        datatype: OIPDatatype,
        model: String,
        version: String,
        id: String?
    ) throws(ModelError) -> [UInt8] {
        switch route {
        case .v2, .v2GRPC:
            return try OIPCodec.encodeResponse(
                predictions,
                datatype: datatype,
                modelName: model,
                modelVersion: version,
                id: id
            )
        case .tfserving, .json, .tfservingGRPC, .openai:
            return TFServingCodec.encodePredictions(predictions)
        }
    }

    /// The OIP request `id` of a v2 body, echoed in v2 responses.
    static func requestID(_ body: JSON?) -> String? {
        guard case .object(let object)? = body, case .string(let id)? = object["id"] else { return nil }
        return id
    }

    /// Instance fields that a table version of `policy` reads its key from
    /// (`body:/instances/N/name`): model versions of the same policy ignore them.
    static func tableKeyFields(_ policy: ModelPolicy) -> Set<String> {
        var names: Set<String> = []
        for spec in policy.versions.values {
            guard case .embedded(let e) = spec.backend, e.kind == .table, case .body(let pointer)? = e.key else {
                continue
            }
            let tokens = pointer.split(separator: "/", omittingEmptySubsequences: false)
            if tokens.count == 4, tokens[1] == "instances", Int(tokens[2]) != nil {
                names.insert(
                    tokens[3].replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
                )
            }
        }
        return names
    }
}
