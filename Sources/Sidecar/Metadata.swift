import HTTP1
import Models
import Policy

/// The model metadata endpoints clients of each protocol expect, answered by the sidecar for
/// the models behind its routes (SPEC §9 "OIP metadata"), when no route claims the path:
/// TF Serving `GET /v1/models/{m}[/versions/{v}]` and `/metadata`; OIP `GET /v2/health/live`,
/// `/v2/health/ready`, `/v2/models/{m}[/versions/{v}]` and `.../ready`. Model names are the
/// policies' names; versions are version names.
enum Metadata {
    struct Answer {
        var status: Int
        var body: JSON
    }

    /// nil when `path` is not a metadata path (the caller answers `no_route`).
    static func answer(method: String, path: Substring, snapshot: ConfigSnapshot, isReady: Bool) -> Answer? {
        guard method == "GET" || method == "HEAD" else { return nil }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        let config = snapshot.config
        if parts == ["v2", "health", "live"] {
            return Answer(status: 200, body: .fields([("live", .bool(true))]))
        }
        if parts == ["v2", "health", "ready"] {
            return Answer(status: isReady ? 200 : 503, body: .fields([("ready", .bool(isReady))]))
        }
        guard parts.count >= 3, parts[0] == "v1" || parts[0] == "v2", parts[1] == "models" else { return nil }
        let protocolV2 = parts[0] == "v2"
        var rest = Array(parts.dropFirst(2))
        var modelName = rest.removeFirst()
        // TF Serving writes `/v1/models/churn/metadata`; a `:` suffix is not metadata.
        if modelName.contains(":") { return nil }
        guard let policy = config.models[modelName] else {
            return Answer(status: 404, body: .error("model_not_found", "no model '\(modelName)' behind this sidecar"))
        }
        modelName = policy.model
        var version: String?
        if rest.count >= 2, rest[0] == "versions" {
            guard let resolved = policy.resolve(rest[1]) else {
                return Answer(
                    status: 404,
                    body: .error("unknown_version", "model '\(modelName)' has no version or label '\(rest[1])'")
                )
            }
            version = resolved
            rest.removeFirst(2)
        } else if rest.count >= 2, rest[0] == "labels", !protocolV2 {
            guard let resolved = policy.labels[rest[1]] else {
                return Answer(
                    status: 404,
                    body: .error("unknown_version", "model '\(modelName)' has no label '\(rest[1])'")
                )
            }
            version = resolved
            rest.removeFirst(2)
        }
        switch (protocolV2, rest) {
        case (false, []):
            return Answer(status: 200, body: tfServingStatus(policy, only: version))
        case (false, ["metadata"]):
            return Answer(
                status: 200,
                body: tfServingMetadata(policy, version: version ?? primary(policy), snapshot: snapshot)
            )
        case (true, []):
            return Answer(status: 200, body: oipMetadata(policy, version: version, snapshot: snapshot))
        case (true, ["ready"]):
            return Answer(
                status: isReady ? 200 : 503,
                body: .fields([("name", .string(modelName)), ("ready", .bool(isReady))])
            )
        default:
            return nil
        }
    }

    /// The version unpinned traffic mostly reaches: the heaviest split entry.
    static func primary(_ policy: ModelPolicy) -> String {
        policy.split.max { $0.weight < $1.weight }?.version ?? policy.versionOrder[0]
    }

    private static func tfServingStatus(_ policy: ModelPolicy, only: String?) -> JSON {
        let versions = only.map { [$0] } ?? policy.versionOrder
        return .fields([
            (
                "model_version_status",
                .array(
                    versions.map { v in
                        .fields([
                            ("version", .string(v)), ("state", .string("AVAILABLE")),
                            ("status", .fields([("error_code", .string("OK")), ("error_message", .string(""))])),
                        ])
                    }
                )
            )
        ])
    }

    struct Shape {
        var platform: String
        var featureNames: [String]?
        var featureCount: Int?
        var outputWidth: Int
        var datatype: OIPDatatype
    }

    static func shape(_ policy: ModelPolicy, version: String, snapshot: ConfigSnapshot) -> Shape {
        guard let spec = policy.versions[version] else {
            return Shape(platform: "unknown", featureNames: nil, featureCount: nil, outputWidth: 1, datatype: .fp64)
        }
        switch spec.backend {
        case .remote:
            return Shape(platform: "remote", featureNames: nil, featureCount: nil, outputWidth: 1, datatype: .fp64)
        case .embedded(let e):
            switch snapshot.model(policy.model, version: version) {
            case .embedded(let model)?:
                var width = 1
                if let xgb = model as? XGBoostModel { width = xgb.outputWidth }
                if let linear = model as? LinearModel, linear.link == .softmax { width = linear.outputCount }
                return Shape(
                    platform: e.kind.rawValue,
                    featureNames: model.featureNames,
                    featureCount: model.featureCount,
                    outputWidth: width,
                    datatype: model.outputDatatype
                )
            case .table(let table)?:
                return Shape(
                    platform: "table",
                    featureNames: nil,
                    featureCount: nil,
                    outputWidth: table.outputColumns.count,
                    datatype: .fp64
                )
            case nil:
                return Shape(
                    platform: e.kind.rawValue,
                    featureNames: nil,
                    featureCount: nil,
                    outputWidth: 1,
                    datatype: .fp64
                )
            }
        }
    }

    private static func oipMetadata(_ policy: ModelPolicy, version: String?, snapshot: ConfigSnapshot) -> JSON {
        let described = version ?? primary(policy)
        let s = shape(policy, version: described, snapshot: snapshot)
        var inputs: [JSON] = []
        if let count = s.featureCount {
            inputs.append(
                .fields([
                    ("name", .string("input-0")), ("datatype", .string("FP64")),
                    ("shape", .array([.number(-1), .number(Double(count))])),
                ])
            )
        }
        let outputShape: [JSON] = s.outputWidth > 1 ? [.number(-1), .number(Double(s.outputWidth))] : [.number(-1)]
        var fields: [(String, JSON)] = [
            ("name", .string(policy.model)),
            ("versions", .array((version.map { [$0] } ?? policy.versionOrder).map(JSON.string))),
            ("platform", .string(s.platform)),
            ("inputs", .array(inputs)),
            (
                "outputs",
                .array([
                    .fields([
                        ("name", .string(OIPCodec.outputName)), ("datatype", .string(s.datatype.rawValue)),
                        ("shape", .array(outputShape)),
                    ])
                ])
            ),
        ]
        if let names = s.featureNames {
            fields.append(("parameters", .fields([("feature_names", .array(names.map(JSON.string)))])))
        }
        return .fields(fields)
    }

    private static func tfServingMetadata(_ policy: ModelPolicy, version: String, snapshot: ConfigSnapshot) -> JSON {
        let s = shape(policy, version: version, snapshot: snapshot)
        var inputs: [(String, JSON)] = []
        if let count = s.featureCount {
            inputs.append(
                (
                    "instances",
                    .fields([
                        ("dtype", .string("DT_DOUBLE")),
                        (
                            "tensor_shape",
                            .fields([
                                (
                                    "dim",
                                    .array([
                                        .fields([("size", .string("-1"))]), .fields([("size", .string(String(count)))]),
                                    ])
                                )
                            ])
                        ),
                    ])
                )
            )
        }
        let signature: JSON = .fields([
            ("inputs", .fields(inputs)),
            (
                "outputs",
                .fields([
                    (
                        "predictions",
                        .fields([("dtype", .string(s.datatype == .int64 ? "DT_INT64" : "DT_DOUBLE"))])
                    )
                ])
            ),
            ("method_name", .string("tensorflow/serving/predict")),
        ])
        var metadata: [(String, JSON)] = [("signature_def", .fields([("serving_default", signature)]))]
        if let names = s.featureNames { metadata.append(("feature_names", .array(names.map(JSON.string)))) }
        return .fields([
            (
                "model_spec",
                .fields([
                    ("name", .string(policy.model)), ("signature_name", .string("")), ("version", .string(version)),
                ])
            ),
            ("metadata", .fields(metadata)),
        ])
    }
}
