/// The configuration model: what `routes/*.yaml` and `policies/*.yaml` say, after checking.
///
/// Every value here has passed the loader's checks: names are unique, references resolve,
/// weights sum to 100. Values are immutable and `Sendable`, so a whole `Config` can be handed
/// to every worker thread and replaced whole on reload.

/// A position in a config file, for diagnostics. Lines and columns count from 1.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// `file:line:column`, or just `file` when the problem is the file itself (line 0).
    public var description: String { line > 0 ? "\(file):\(line):\(column)" : file }
}

/// The wire protocol a client or a backend speaks (SPEC §3 "Protocols").
public enum WireProtocol: String, Sendable, Hashable, CaseIterable {
    /// TF Serving REST: `{"instances": [...]}` or `{"inputs": ...}` → `{"predictions": [...]}`.
    case tfserving
    /// Open Inference Protocol v2 (KServe, MLServer, Triton).
    case v2
    /// Opaque JSON, forwarded as it is.
    case json
    /// The Open Inference Protocol over gRPC: `inference.GRPCInferenceService` (SPEC §13).
    case v2GRPC = "v2-grpc"
    /// TF Serving over gRPC: `tensorflow.serving.PredictionService` (SPEC §13).
    case tfservingGRPC = "tfserving-grpc"
    /// OpenAI-compatible chat, completion and embedding calls (SPEC §14): forwarded with the
    /// body's `model` rewritten, streamed answers relayed event by event, compared as text.
    case openai

    /// Whether clients speak it as gRPC calls over HTTP/2 (routes with `match.grpc`).
    public var isGRPC: Bool { self == .v2GRPC || self == .tfservingGRPC }

    /// The REST protocol with the same messages: what a gRPC protocol's REST backends speak
    /// (`v2-grpc` → `v2`, `tfserving-grpc` → `tfserving`); a REST protocol is its own twin.
    public var restTwin: WireProtocol {
        switch self {
        case .v2GRPC: return .v2
        case .tfservingGRPC: return .tfserving
        case .tfserving, .v2, .json, .openai: return self
        }
    }

    /// The gRPC service this protocol's calls name (`inference.GRPCInferenceService`); nil for
    /// a REST protocol.
    public var grpcService: String? {
        switch self {
        case .v2GRPC: return "inference.GRPCInferenceService"
        case .tfservingGRPC: return "tensorflow.serving.PredictionService"
        case .tfserving, .v2, .json, .openai: return nil
        }
    }

    /// The methods of `grpcService` that the sidecar answers, in the service's order.
    public var grpcMethods: [String] {
        switch self {
        case .v2GRPC: return ["ServerLive", "ServerReady", "ModelReady", "ModelMetadata", "ModelInfer"]
        case .tfservingGRPC: return ["Predict", "GetModelMetadata"]
        case .tfserving, .v2, .json, .openai: return []
        }
    }

    /// Methods of `grpcService` whose requests name no model (server health): a route with
    /// `match.model` never takes them.
    public var grpcMethodsWithoutModel: [String] {
        self == .v2GRPC ? ["ServerLive", "ServerReady"] : []
    }

    /// Methods the real service has but the sidecar does not answer (TF Serving's `Classify`,
    /// `Regress`, `MultiInference`): named in a route, they are a `validate` error that says so.
    public var grpcMethodsNotServed: [String] {
        self == .tfservingGRPC ? ["Classify", "Regress", "MultiInference"] : []
    }

    /// The gRPC protocol whose service is `service`, if any.
    public static func grpc(service: String) -> WireProtocol? {
        allCases.first { $0.grpcService == service }
    }
}

/// The whole checked configuration: routes in match order and one policy per model.
public struct Config: Sendable {
    /// Routes in the order they are tried: files in lexical order, entries in file order.
    public var routes: [Route]
    /// Policies by model name.
    public var models: [String: ModelPolicy]
    /// The files read, relative to the config directory, with a SHA-256-free checksum
    /// (FNV-1a 64 of the bytes, hex) so `/config` and reload can tell what changed.
    public var files: [ConfigFile]
    /// Problems that do not stop the config from loading (for example `insecure_skip_verify:
    /// true`), sorted like errors; `validate` prints them and `serve` logs them.
    public var warnings: [Diagnostic]

    public init(routes: [Route], models: [String: ModelPolicy], files: [ConfigFile], warnings: [Diagnostic] = []) {
        self.routes = routes
        self.models = models
        self.files = files
        self.warnings = warnings
    }

    /// Every TLS file (`ca_file`, `cert_file`, `key_file`) the remote versions name, resolved,
    /// sorted, each once: what a reload must watch besides the YAML and model files (SPEC §11).
    public var tlsFiles: [String] {
        var files: Set<String> = []
        for policy in models.values {
            for spec in policy.versions.values {
                guard case .remote(let remote) = spec.backend, let tls = remote.tls else { continue }
                for file in [tls.caFile, tls.certFile, tls.keyFile] {
                    if let file { files.insert(file) }
                }
            }
        }
        return files.sorted()
    }
}

public struct ConfigFile: Sendable, Hashable {
    /// Path as given to the loader (config directory joined with `routes/x.yaml`).
    public var path: String
    public var checksum: String

    public init(path: String, checksum: String) {
        self.path = path
        self.checksum = checksum
    }
}

// MARK: - Routes

public struct Route: Sendable {
    /// Unique across all route files, `[a-z0-9_-]+`.
    public var name: String
    public var match: RouteMatch
    /// The model (policy) this route sends to.
    public var model: String
    /// What the client speaks; defaults to `.json`.
    public var wireProtocol: WireProtocol
    /// How this route pins a version, if it does.
    public var pin: VersionPin?
    public var location: SourceLocation

    public init(
        name: String,
        match: RouteMatch,
        model: String,
        wireProtocol: WireProtocol,
        pin: VersionPin?,
        location: SourceLocation
    ) {
        self.name = name
        self.match = match
        self.model = model
        self.wireProtocol = wireProtocol
        self.pin = pin
        self.location = location
    }
}

public struct RouteMatch: Sendable {
    /// The request path. For a gRPC route (`grpc` set), the `:path` its calls carry:
    /// `.exact("/package.Service/Method")`, or `.prefix("/package.Service/")` for `Service/*`.
    public var path: PathMatch
    /// Upper-case method (`POST`), or nil for any. Always nil for a gRPC route.
    public var method: String?
    /// Header names lower-cased; values compared exactly; all must match. On a gRPC route, the
    /// call's metadata.
    public var headers: [(name: String, value: String)]
    /// `match.grpc`: the gRPC method the route takes; nil for a REST route. A gRPC route takes
    /// only gRPC calls, and a REST route only REST requests.
    public var grpc: GRPCMethodMatch?
    /// `match.model`: the model name the call's message must carry (gRPC routes only).
    public var model: String?

    public init(
        path: PathMatch,
        method: String?,
        headers: [(name: String, value: String)],
        grpc: GRPCMethodMatch? = nil,
        model: String? = nil
    ) {
        self.path = path
        self.method = method
        self.headers = headers
        self.grpc = grpc
        self.model = model
    }
}

/// `match.grpc`: `package.Service/Method`, or `package.Service/*` for every method of the service.
public struct GRPCMethodMatch: Sendable, Hashable, CustomStringConvertible {
    /// The fully qualified service, `inference.GRPCInferenceService`.
    public var service: String
    /// The method, `ModelInfer`; nil for `*`.
    public var method: String?

    public init(service: String, method: String?) {
        self.service = service
        self.method = method
    }

    /// As written in the config: `inference.GRPCInferenceService/ModelInfer` or `.../*`.
    public var description: String { "\(service)/\(method ?? "*")" }

    /// The `:path` match that takes these calls: `/service/method` exactly, or `/service/` as
    /// a prefix for `*`.
    public var pathMatch: PathMatch {
        method.map { .exact("/\(service)/\($0)") } ?? .prefix("/\(service)/")
    }
}

public enum PathMatch: Sendable, Hashable {
    /// The request path (target without query) equals this.
    case exact(String)
    /// The request path starts with this.
    case prefix(String)
    /// A template such as `/v1/models/churn/versions/{version}:predict`.
    case template(PathTemplate)
}

/// A path template split into literal text and at most one capture per name.
/// A capture matches one or more characters up to the next literal (never `/`).
public struct PathTemplate: Sendable, Hashable {
    public enum Segment: Sendable, Hashable {
        case literal(String)
        /// `{version}` or `{label}`: both name a version or a label of the route's model.
        case capture(String)
    }

    public var source: String
    public var segments: [Segment]

    public init(source: String, segments: [Segment]) {
        self.source = source
        self.segments = segments
    }
}

/// How a route picks a version instead of the split.
public enum VersionPin: Sendable, Hashable {
    /// `version: candidate` on the route: a version or label name, checked at load time.
    case fixed(String)
    /// `{version}` / `{label}` in the route's template: the captured text names it.
    case pathCapture(String)
    /// `version_from: header:x-model-version`: header name lower-cased.
    case header(String)
    /// `version_from: message` on a gRPC route: the version the call's message names
    /// (`model_version` in OIP v2, `model_spec.version` or `version_label` in TF Serving).
    case message
}

// MARK: - Policies

public struct ModelPolicy: Sendable {
    public var model: String
    /// Versions by name, and their names in file order.
    public var versions: [String: VersionSpec]
    public var versionOrder: [String]
    /// Label → version name.
    public var labels: [String: String]
    /// Weights by version name (labels resolved), in file order. Sum is 10000 (0.01 % units).
    public var split: [SplitEntry]
    public var sticky: KeySource?
    /// Version name (label resolved).
    public var fallback: String?
    public var shadows: [ShadowSpec]
    public var compare: CompareSpec?
    public var guardSpec: GuardSpec?
    public var location: SourceLocation

    public init(
        model: String,
        versions: [String: VersionSpec],
        versionOrder: [String],
        labels: [String: String],
        split: [SplitEntry],
        sticky: KeySource?,
        fallback: String?,
        shadows: [ShadowSpec],
        compare: CompareSpec?,
        guardSpec: GuardSpec?,
        location: SourceLocation
    ) {
        self.model = model
        self.versions = versions
        self.versionOrder = versionOrder
        self.labels = labels
        self.split = split
        self.sticky = sticky
        self.fallback = fallback
        self.shadows = shadows
        self.compare = compare
        self.guardSpec = guardSpec
        self.location = location
    }

    /// The version a version-or-label name refers to: a version name wins over a label.
    public func resolve(_ name: String) -> String? {
        if versions[name] != nil { return name }
        return labels[name]
    }
}

public struct SplitEntry: Sendable, Hashable {
    /// Version name (labels resolved).
    public var version: String
    /// Weight in hundredths of a percent: 0...10000.
    public var weight: Int

    public init(version: String, weight: Int) {
        self.version = version
        self.weight = weight
    }
}

public struct VersionSpec: Sendable {
    public var name: String
    public var backend: Backend
    /// The protocol this version speaks as written; nil means "the route's" (SPEC §9). Read
    /// `wireProtocol(onRoute:)` for what it speaks behind a given route.
    public var wireProtocol: WireProtocol?
    public var location: SourceLocation

    public init(name: String, backend: Backend, wireProtocol: WireProtocol?, location: SourceLocation) {
        self.name = name
        self.backend = backend
        self.wireProtocol = wireProtocol
        self.location = location
    }

    /// What this version speaks when it answers a route speaking `route`: its own `protocol:`
    /// when it has one; else the route's, except that a REST version (`http://`, `https://`,
    /// `unix:`) behind a gRPC route speaks the route's REST twin (`v2` for `v2-grpc`,
    /// `tfserving` for `tfserving-grpc`), SPEC §13.
    public func wireProtocol(onRoute route: WireProtocol) -> WireProtocol {
        if let wireProtocol { return wireProtocol }
        if route.isGRPC, case .remote(let remote) = backend, !remote.isGRPC { return route.restTwin }
        return route
    }
}

public enum Backend: Sendable {
    case remote(RemoteBackend)
    case embedded(EmbeddedBackend)
}

public struct RemoteBackend: Sendable, Hashable {
    /// The TCP host (`http://`, `https://`, `grpc://`, `grpcs://`); `localhost` for a Unix socket
    /// (its `Host` field).
    public var host: String
    /// The TCP port; 0 for a Unix socket.
    public var port: Int
    /// nil: keep the request's path and query. Otherwise the path to send to (query kept).
    public var path: String?
    /// The whole exchange, connect included. Default 1000. For a streamed body (SPEC §10), until
    /// the response head has arrived.
    public var timeoutMilliseconds: Int
    /// Per worker. Default 64.
    public var maxConnections: Int
    /// `unix:/path` versions: the socket's absolute path (SPEC §12). nil for TCP.
    public var socketPath: String?
    /// `https://` and `grpcs://` versions: how TLS is set up (SPEC §11); nil for plain HTTP.
    public var tls: TLSSpec? {
        get { tlsStorage?.spec }
        set { tlsStorage = newValue.map(TLSStorage.init) }
    }
    /// Boxed: the request path copies a `RemoteBackend` out of its version, and the TLS settings
    /// (four optional strings) would cost a retain and a release each per copy.
    private var tlsStorage: TLSStorage?
    /// `model_name:` (SPEC §14, `openai` versions): the request body's `model` field is rewritten
    /// to it. Nil keeps the client's.
    public var modelName: String? {
        get { extrasStorage?.modelName }
        set { setExtras(modelName: newValue, headers: headers) }
    }
    /// `headers:` (SPEC §14): fields set on every request to this version, replacing the
    /// client's field of the same name, in file order. Values are secret: never printed.
    public var headers: [VersionHeader] {
        get { extrasStorage?.headers ?? [] }
        set { setExtras(modelName: modelName, headers: newValue) }
    }
    /// Boxed like `tlsStorage`: nil for every version without `model_name:` or `headers:`.
    private var extrasStorage: ExtrasStorage?
    /// The longest silence between two reads of a streamed body (SPEC §10). Default 30000.
    public var idleTimeoutMilliseconds: Int
    /// `grpc://` and `grpcs://` versions (SPEC §13): gRPC over HTTP/2, `tls` set for `grpcs://`.
    /// `path` is nil then: a call keeps its `/package.Service/Method`.
    public var isGRPC: Bool

    private final class TLSStorage: Sendable {
        let spec: TLSSpec
        init(_ spec: TLSSpec) { self.spec = spec }
    }

    private final class ExtrasStorage: Sendable {
        let modelName: String?
        let headers: [VersionHeader]
        init(modelName: String?, headers: [VersionHeader]) {
            self.modelName = modelName
            self.headers = headers
        }
    }

    private mutating func setExtras(modelName: String?, headers: [VersionHeader]) {
        extrasStorage =
            modelName == nil && headers.isEmpty ? nil : ExtrasStorage(modelName: modelName, headers: headers)
    }

    public static func == (lhs: RemoteBackend, rhs: RemoteBackend) -> Bool {
        lhs.host == rhs.host && lhs.port == rhs.port && lhs.path == rhs.path
            && lhs.timeoutMilliseconds == rhs.timeoutMilliseconds && lhs.maxConnections == rhs.maxConnections
            && lhs.socketPath == rhs.socketPath && lhs.tls == rhs.tls
            && lhs.idleTimeoutMilliseconds == rhs.idleTimeoutMilliseconds && lhs.isGRPC == rhs.isGRPC
            && lhs.modelName == rhs.modelName && lhs.headers == rhs.headers
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(host)
        hasher.combine(port)
        hasher.combine(path)
        hasher.combine(timeoutMilliseconds)
        hasher.combine(maxConnections)
        hasher.combine(socketPath)
        hasher.combine(tls)
        hasher.combine(idleTimeoutMilliseconds)
        hasher.combine(isGRPC)
        hasher.combine(modelName)
        hasher.combine(headers)
    }

    public init(
        host: String,
        port: Int,
        path: String?,
        timeoutMilliseconds: Int,
        maxConnections: Int,
        socketPath: String? = nil,
        tls: TLSSpec? = nil,
        idleTimeoutMilliseconds: Int = ConfigDefaults.idleTimeoutMilliseconds,
        isGRPC: Bool = false,
        modelName: String? = nil,
        headers: [VersionHeader] = []
    ) {
        self.host = host
        self.port = port
        self.path = path
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxConnections = maxConnections
        self.socketPath = socketPath
        self.tlsStorage = tls.map(TLSStorage.init)
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        self.isGRPC = isGRPC
        setExtras(modelName: modelName, headers: headers)
    }
}

/// One field of a version's `headers:` map (SPEC §14).
public struct VersionHeader: Sendable, Hashable {
    /// Lower-cased.
    public var name: String
    /// The value sent, `${NAME}` replaced by the environment's value at load (and reload).
    /// Secret: `/config`, `explain`, `validate` and the logs print `***` instead.
    public var value: String
    /// The value as written in the policy (`Bearer ${OPENAI_API_KEY}`).
    public var template: String

    public init(name: String, value: String, template: String) {
        self.name = name
        self.value = value
        self.template = template
    }

    /// What is printed in place of a value.
    public static let redacted = "***"
}

/// A version's `tls:` block (SPEC §11). Every field is optional; an `https://` version without
/// the block verifies the server against the system trust store and its URL's host.
public struct TLSSpec: Sendable, Hashable {
    /// Trust only this CA bundle (PEM), resolved against the policy file's directory.
    public var caFile: String?
    /// Client certificate (PEM) for mTLS; given together with `keyFile`.
    public var certFile: String?
    public var keyFile: String?
    /// The name sent as SNI and verified in the certificate, when it differs from the URL's host.
    public var serverName: String?
    /// No verification at all (validate warns).
    public var insecureSkipVerify: Bool

    public init(
        caFile: String? = nil,
        certFile: String? = nil,
        keyFile: String? = nil,
        serverName: String? = nil,
        insecureSkipVerify: Bool = false
    ) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.serverName = serverName
        self.insecureSkipVerify = insecureSkipVerify
    }
}

public enum EmbeddedKind: String, Sendable, Hashable {
    case xgboost, linear, table
}

public struct EmbeddedBackend: Sendable, Hashable {
    public var kind: EmbeddedKind
    /// Absolute or config-dir-joined path, resolved against the policy file's directory.
    public var file: String
    /// For tables: where the lookup key comes from.
    public var key: KeySource?

    public init(kind: EmbeddedKind, file: String, key: KeySource?) {
        self.kind = kind
        self.file = file
        self.key = key
    }
}

/// Where a key (sticky key, table key) is read from a request.
public enum KeySource: Sendable, Hashable, CustomStringConvertible {
    /// Header name lower-cased.
    case header(String)
    case cookie(String)
    case query(String)
    /// A JSON pointer (RFC 6901) into the request body, e.g. `/instances/0/customer_id`.
    case body(String)

    public var description: String {
        switch self {
        case .header(let n): return "header:\(n)"
        case .cookie(let n): return "cookie:\(n)"
        case .query(let n): return "query:\(n)"
        case .body(let p): return "body:\(p)"
        }
    }
}

public struct ShadowSpec: Sendable, Hashable {
    /// Version name (label resolved).
    public var version: String
    /// 0...100, resolution 0.01.
    public var percent: Double

    public init(version: String, percent: Double) {
        self.version = version
        self.percent = percent
    }
}

public struct CompareSpec: Sendable, Hashable {
    /// A JSON pointer, e.g. `/predictions`. Nil only for a model that `openai` routes serve
    /// (SPEC §14): its answers are compared as text or embeddings.
    public var output: String?
    public var tolerance: Double
    public var threshold: Double?
    /// `similarity_threshold` (SPEC §14, `openai` models): texts match when their similarity is
    /// at least this, embeddings when their cosine is. Nil: texts match on normalized equality,
    /// embeddings at cosine 0.99.
    public var similarityThreshold: Double?
    /// Resolved path of the JSONL comparison log.
    public var log: String?
    /// Share of comparisons written to the log, 0...1. Default 1.
    public var sample: Double

    public init(
        output: String?,
        tolerance: Double,
        threshold: Double?,
        log: String?,
        sample: Double,
        similarityThreshold: Double? = nil
    ) {
        self.output = output
        self.tolerance = tolerance
        self.threshold = threshold
        self.similarityThreshold = similarityThreshold
        self.log = log
        self.sample = sample
    }
}

public struct GuardSpec: Sendable, Hashable {
    /// Version name (label resolved).
    public var version: String
    public var maxErrorRatio: Double?
    public var maxP99Milliseconds: Double?
    public var minRequests: Int
    public var windowSeconds: Int

    public init(
        version: String,
        maxErrorRatio: Double?,
        maxP99Milliseconds: Double?,
        minRequests: Int,
        windowSeconds: Int
    ) {
        self.version = version
        self.maxErrorRatio = maxErrorRatio
        self.maxP99Milliseconds = maxP99Milliseconds
        self.minRequests = minRequests
        self.windowSeconds = windowSeconds
    }
}

// MARK: - Diagnostics

/// One problem found in a config, rendered compiler-style:
/// `policies/churn.yaml:12:7: error: split weights sum to 90, expected 100`.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible, Error {
    /// An error stops a config from loading; a warning does not (the config loads and carries it
    /// in `Config.warnings`).
    public enum Severity: String, Sendable, Hashable {
        case error
        case warning
    }

    public var location: SourceLocation
    public var message: String
    public var severity: Severity

    public init(_ location: SourceLocation, _ message: String, severity: Severity = .error) {
        self.location = location
        self.message = message
        self.severity = severity
    }

    public var isError: Bool { severity == .error }

    /// `file:line:column: error: message` or `file:line:column: warning: message`.
    public var description: String { "\(location): \(severity.rawValue): \(message)" }

    /// Sorted by file, then line, then column; ties keep their order in `diagnostics`.
    public static func sorted(_ diagnostics: [Diagnostic]) -> [Diagnostic] {
        diagnostics.enumerated().sorted { a, b in
            let l = a.element.location
            let r = b.element.location
            if l.file != r.file { return l.file < r.file }
            if l.line != r.line { return l.line < r.line }
            if l.column != r.column { return l.column < r.column }
            return a.offset < b.offset
        }.map(\.element)
    }
}
