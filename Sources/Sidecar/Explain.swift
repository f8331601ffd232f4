import HTTP1
import Models
import Policy
import Routing

/// `switchyard explain`: the decision for one request, sent nowhere.
public struct Explanation: Sendable {
    /// True when the request would reach a version; false for a 404 / 503 decision.
    public var isRouted: Bool
    public var text: String
    public var json: JSON

    /// `headers` as given on the command line (`Name: value`), `body` the request body if any.
    public static func explain(
        snapshot: ConfigSnapshot,
        method: String,
        target: String,
        headers: [(name: String, value: String)],
        body: [UInt8]?
    ) -> Explanation {
        let head = RequestHead(method: method, target: target)
        let path = String(head.path)
        let query = head.query.map(String.init)
        let parsedBody: JSON? = body.flatMap { bytes in bytes.withUnsafeBytes { try? JSONParser.parse($0) } }
        let facts = RequestFacts(
            method: method.uppercased(),
            path: path,
            query: query,
            headers: headers,
            bodyKey: { pointer in parsedBody?.value(atPointer: pointer)?.keyString }
        )
        return explain(facts, snapshot: snapshot, noRoute: .noRoute(method, path[...]))
    }

    /// The decision for one gRPC call (SPEC §13): `method` is `package.Service/Method`, `model`
    /// and `modelVersion` what its message would name (`model_name` / `model_version`, or TF
    /// Serving's `model_spec`), `headers` its metadata. A refusal also names the gRPC status the
    /// client would get.
    public static func explainGRPC(
        snapshot: ConfigSnapshot,
        method: String,
        model: String?,
        modelVersion: String?,
        headers: [(name: String, value: String)]
    ) -> Explanation {
        let facts = RequestFacts(
            method: "POST",
            path: "/" + method,
            headers: headers,
            grpc: GRPCCallFacts(model: model, modelVersion: modelVersion)
        )
        let named = model.map { " for model '\($0)'" } ?? ""
        let noRoute = SidecarError(status: 404, code: "no_route", detail: "no route matches gRPC \(method)\(named)")
        return explain(facts, snapshot: snapshot, noRoute: noRoute)
    }

    private static func explain(_ facts: RequestFacts, snapshot: ConfigSnapshot, noRoute: SidecarError) -> Explanation {
        var generator = SystemRandomNumberGenerator()
        let config = snapshot.config
        let isGRPC = facts.grpc != nil
        switch decide(facts, config: config, using: &generator) {
        case .noRoute:
            return refusal(noRoute, route: nil, isGRPC: isGRPC)
        case .unknownVersion(let route, let name):
            return refusal(.unknownVersion(model: route.model, name: name), route: route, isGRPC: isGRPC)
        case .guardOpen(let route, let version):
            return refusal(.guardOpen(model: route.model, version: version), route: route, isGRPC: isGRPC)
        case .routed(let decision):
            let policy = config.models[decision.model]!
            var lines: [String] = []
            var fields: [(String, JSON)] = []
            let route = decision.route
            lines.append("route: \(route.name) (\(route.location))")
            lines.append("model: \(decision.model)")
            lines.append("version: \(decision.version)")
            lines.append("why: \(decision.reason)")
            fields.append(("route", .string(route.name)))
            fields.append(("model", .string(decision.model)))
            fields.append(("version", .string(decision.version)))
            if let requested = decision.requested {
                fields.append(("requested", .string(requested)))
            }
            fields.append(("reason", .string("\(decision.reason)")))
            let split = policy.split.map { "\($0.version) \(percentText($0.weight))" }.joined(separator: ", ")
            lines.append("split: \(split)")
            fields.append(("split", .fields(policy.split.map { ($0.version, .number(Double($0.weight) / 100)) })))
            let spec = policy.versions[decision.version]
            if let spec {
                lines.append("backend: \(describe(spec.backend))")
                fields.append(("backend", .string(describe(spec.backend))))
            }
            // SPEC §14: the model name sent, and the header names a version sets; never a value.
            if case .remote(let remote)? = spec?.backend {
                if let modelName = remote.modelName {
                    lines.append("model_name: \(modelName)")
                    fields.append(("model_name", .string(modelName)))
                }
                if !remote.headers.isEmpty {
                    let names = remote.headers.map { "\($0.name): \(VersionHeader.redacted)" }
                    lines.append("headers: \(names.joined(separator: ", "))")
                    fields.append(
                        ("headers", .fields(remote.headers.map { ($0.name, .string(VersionHeader.redacted)) }))
                    )
                }
            }
            // What the version speaks, when it is not what the client speaks (translated).
            let versionProtocol = spec?.wireProtocol(onRoute: route.wireProtocol) ?? route.wireProtocol
            if versionProtocol != route.wireProtocol, case .remote? = spec?.backend {
                lines.append("protocol: \(route.wireProtocol.rawValue) (version speaks \(versionProtocol.rawValue))")
            } else {
                lines.append("protocol: \(route.wireProtocol.rawValue)")
            }
            fields.append(("protocol", .string(route.wireProtocol.rawValue)))
            if case .remote? = spec?.backend {
                fields.append(("version_protocol", .string(versionProtocol.rawValue)))
            }
            lines.append("fallback: \(decision.fallback ?? "none")")
            fields.append(("fallback", decision.fallback.map(JSON.string) ?? .null))
            lines.append("shadows: \(decision.shadows.isEmpty ? "none" : decision.shadows.joined(separator: ", "))")
            fields.append(("shadows", .array(decision.shadows.map(JSON.string))))
            return Explanation(isRouted: true, text: lines.joined(separator: "\n"), json: .fields(fields))
        }
    }

    private static func refusal(_ error: SidecarError, route: Route?, isGRPC: Bool) -> Explanation {
        var lines: [String] = []
        var fields: [(String, JSON)] = []
        if let route {
            lines.append("route: \(route.name) (\(route.location))")
            lines.append("model: \(route.model)")
            fields.append(("route", .string(route.name)))
            fields.append(("model", .string(route.model)))
        } else {
            lines.append("route: none")
            fields.append(("route", .null))
        }
        lines.append("response: \(error.status) \(error.code): \(error.detail)")
        fields.append(("status", .number(Double(error.status))))
        fields.append(("error", .string(error.code)))
        fields.append(("detail", .string(error.detail)))
        if isGRPC {
            // SPEC §13: what a gRPC client gets instead of the HTTP status.
            let status = error.status == 404 ? "NOT_FOUND" : "UNAVAILABLE"
            lines.append("grpc-status: \(status)")
            fields.append(("grpc_status", .string(status)))
        }
        return Explanation(isRouted: false, text: lines.joined(separator: "\n"), json: .fields(fields))
    }

    private static func percentText(_ hundredths: Int) -> String {
        hundredths % 100 == 0 ? "\(hundredths / 100)%" : "\(Double(hundredths) / 100)%"
    }

    private static func describe(_ backend: Backend) -> String {
        switch backend {
        case .remote(let r):
            if r.isGRPC {
                let scheme = r.tls == nil ? "grpc" : "grpcs"
                return "remote \(scheme)://\(r.host):\(r.port), timeout \(r.timeoutMilliseconds) ms"
            }
            let path = r.path.map { "path replaced by \($0)" } ?? "request path kept"
            let target =
                r.socketPath.map { "unix:\($0)" } ?? "\(r.tls == nil ? "http" : "https")://\(r.host):\(r.port)"
            return "remote \(target) (\(path)), timeout \(r.timeoutMilliseconds) ms"
        case .embedded(let e):
            return "embedded \(e.kind.rawValue) \(e.file)" + (e.key.map { " keyed by \($0)" } ?? "")
        }
    }
}
