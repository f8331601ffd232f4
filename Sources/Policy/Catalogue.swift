/// Every key of `routes/*.yaml` and `policies/*.yaml`: its name, type, allowed values, default,
/// description and an example, in one place.
///
/// The checkers take their lists of accepted keys from here (`PolicyChecker.keys`,
/// `RouteChecker.matchKeys`, ...), and the JSON Schemas (`schema/*.schema.json`) and the
/// configuration reference (`docs/configuration.md`) are generated from it, so the loader, the
/// editor's completion and the documentation cannot name different keys. The loader stays the
/// authority on what is valid: the schema says everything it can express and never refuses
/// what the loader accepts (cross-references such as "a known version" it leaves to
/// `switchyard validate`).

/// The type of a key's value.
public indirect enum ConfigValueType: Sendable {
    /// Text; `pattern` (ECMA-262, anchored) when it has a shape, which `shape` describes.
    case string(pattern: String? = nil, shape: String? = nil)
    /// One of these strings.
    case choice([String])
    case integer(ClosedRange<Int>)
    /// A finite number within `minimum...maximum` (no maximum when nil); `exclusiveMinimum`
    /// when the minimum itself is refused.
    case number(minimum: Double, maximum: Double?, exclusiveMinimum: Bool = false)
    case boolean
    /// A version, label or model name: a non-empty string, or an integer as written (TF
    /// Serving numbers its versions).
    case name
    case object(ConfigObject)
    /// A mapping whose keys the user chooses (versions, labels, split, headers).
    case map(keys: String, keyPattern: String? = nil, value: ConfigValueType, minEntries: Int = 0)
    /// A sequence of values.
    case list(ConfigValueType)
}

/// A key's default: what the loader uses when the key is absent.
public enum ConfigDefault: Sendable {
    case int(Int)
    case number(Double)
    case string(String)
    case bool(Bool)
    /// No JSON value, only words (a version's `protocol` defaults to its route's).
    case text(String)
}

/// One key of a mapping.
public struct ConfigKey: Sendable {
    public var name: String
    public var type: ConfigValueType
    public var isRequired: Bool
    public var defaultValue: ConfigDefault?
    /// What the key means and when to use it; Markdown (backquotes).
    public var summary: String
    /// The value, as YAML, in a typical use: what follows `name: ` (`500`,
    /// `{ stable: 90, candidate: 10 }`), or, for a block, the lines under `name:`, indented.
    public var example: String

    public init(
        _ name: String,
        _ type: ConfigValueType,
        required: Bool = false,
        default defaultValue: ConfigDefault? = nil,
        _ summary: String,
        example: String
    ) {
        self.name = name
        self.type = type
        self.isRequired = required
        self.defaultValue = defaultValue
        self.summary = summary
        self.example = example
    }
}

/// A rule between keys of one mapping that a per-key type cannot say.
public enum ConfigRule: Sendable {
    /// Exactly one of these keys is given.
    case exactlyOne([String])
    /// At most one of these keys is given.
    case atMostOne([String])
    /// At least one of these keys is given.
    case atLeastOne([String])
    /// When `key` is given, each of `others` is given too.
    case requires(String, [String])
    /// `key` is required when `other` is the string `value`.
    case requiredWhen(String, other: String, is: String)
    /// `key` is allowed only when `other`'s value matches `pattern` (described by `shape`).
    case onlyWhen(String, other: String, pattern: String, shape: String)
    /// `key` is required when the map `other` has at least `entries` entries.
    case requiredWhenEntries(String, map: String, entries: Int)
}

/// A mapping with named keys: a file's top level or a block inside it.
public struct ConfigObject: Sendable {
    /// The block's name as the reference titles it (`route`, `match`, `version`).
    public var name: String
    /// Where it appears, in the reference's words (`each item of routes`).
    public var place: String
    public var summary: String
    public var keys: [ConfigKey]
    public var rules: [ConfigRule]
    /// Words for a rule the schema cannot check (it needs another key's or file's content).
    public var notes: [String]

    public init(
        name: String,
        place: String,
        summary: String,
        keys: [ConfigKey],
        rules: [ConfigRule] = [],
        notes: [String] = []
    ) {
        self.name = name
        self.place = place
        self.summary = summary
        self.keys = keys
        self.rules = rules
        self.notes = notes
    }

    /// The accepted keys in catalogue order: what a checker passes as `allowed`.
    public var names: [String] { keys.map(\.name) }

    public subscript(_ name: String) -> ConfigKey? { keys.first { $0.name == name } }

    /// Keys that need one of `others` beside them (`.requires`), e.g. the remote-only keys
    /// of a version, which need `url`.
    func keys(requiring other: String) -> [String] {
        rules.compactMap { rule -> String? in
            if case .requires(let key, let others) = rule, others == [other] { return key }
            return nil
        }
    }
}

/// The two kinds of config file.
public enum ConfigFileKind: String, Sendable, CaseIterable {
    case routes
    case policy

    /// The file's top level.
    public var root: ConfigObject {
        switch self {
        case .routes: return ConfigCatalogue.routeFile
        case .policy: return ConfigCatalogue.policy
        }
    }

    /// Where such files live in a config directory.
    public var glob: String {
        switch self {
        case .routes: return "routes/*.yaml"
        case .policy: return "policies/*.yaml"
        }
    }

    /// The schema's file name in `schema/`.
    public var schemaFileName: String { "\(rawValue).schema.json" }
}

/// The catalogue itself.
public enum ConfigCatalogue {
    static let token = "[-!#$%&'*+.^_`|~0-9A-Za-z]+"
    static let pointer = "(/([^~]|~[01])*)*"
    /// `Syntax.keySource`: header token, cookie or query name without spaces or `;=&`, or a
    /// body JSON pointer.
    static let keySourcePattern = "^(header:\(token)|cookie:[^\\s;=&]+|query:[^\\s;=&]+|body:/([^~]|~[01])*)$"
    /// The scheme is matched without regard to case, as `Syntax.url` does.
    static let urlPattern =
        "^([Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\s]+(/[^?#\\s]*)?|[Uu][Nn][Ii][Xx]:/[^?#\\s]*|[Gg][Rr][Pp][Cc]://[^/?#@\\s]+:[0-9]+/?|[Gg][Rr][Pp][Cc][Ss]://[^/?#@\\s]+/?)$"
    /// The schemes that take `tls:` (SPEC §11, §13).
    static let tlsSchemePattern = "^([Hh][Tt][Tt][Pp][Ss]|[Gg][Rr][Pp][Cc][Ss])://"
    /// The schemes that take `headers:` (SPEC §14): every REST one.
    static let httpSchemePattern = "^([Hh][Tt][Tt][Pp][Ss]?://|[Uu][Nn][Ii][Xx]:)"
    static let identifier = "[A-Za-z_][A-Za-z0-9_]*"
    /// `Syntax.grpcMethod`.
    static let grpcMethodPattern = "^\(identifier)(\\.\(identifier))*/(\(identifier)|\\*)$"
    static let protocols = WireProtocol.allCases.map(\.rawValue)
    static let embeddedKinds = ["xgboost", "linear", "table"]

    static let keySource = ConfigValueType.string(pattern: keySourcePattern, shape: Syntax.keySourceShape)

    // MARK: Routes

    public static let match = ConfigObject(
        name: "match",
        place: "`match:` of a route",
        summary: "Which requests the route takes. All given conditions must hold.",
        keys: [
            ConfigKey(
                "path",
                .string(pattern: "^/", shape: "/path"),
                "The request path, without its query, equals this.",
                example: "/v1/models/churn:predict"
            ),
            ConfigKey(
                "prefix",
                .string(pattern: "^/", shape: "/path"),
                "The request path starts with this.",
                example: "/churn"
            ),
            ConfigKey(
                "template",
                .string(pattern: "^/[^{}]*\\{(version|label)\\}[^{}]*$", shape: "/path/{version} or /path/{label}"),
                "A path with exactly one capture, `{version}` or `{label}`, which matches one or more characters up to the next literal text (never `/`); the captured text pins the request to that version or label of the route's model, and an unknown one is a 404 `unknown_version`.",
                example: "\"/v1/models/churn/versions/{version}:predict\""
            ),
            ConfigKey(
                "grpc",
                .string(pattern: grpcMethodPattern, shape: Syntax.grpcMethodShape),
                "A gRPC method, `package.Service/Method`, or `package.Service/*` for all of the service's methods: the route takes gRPC calls (HTTP/2) to it, and no REST request. `inference.GRPCInferenceService` methods (`ServerLive`, `ServerReady`, `ModelReady`, `ModelMetadata`, `ModelInfer`) are protocol `v2-grpc`; `tensorflow.serving.PredictionService` methods (`Predict`, `GetModelMetadata`) are `tfserving-grpc`.",
                example: "inference.GRPCInferenceService/ModelInfer"
            ),
            ConfigKey(
                "method",
                .string(pattern: "^\(token)$", shape: "an HTTP method"),
                "The request method, such as `POST` (upper-cased when loaded); any method when absent. Not with `grpc`.",
                example: "POST"
            ),
            ConfigKey(
                "headers",
                .map(keys: "header names", keyPattern: "^\(token)$", value: .string()),
                "Headers the request must carry, each with exactly this value (names without regard to case); on a gRPC route, the call's metadata.",
                example: "{ x-tenant: acme }"
            ),
            ConfigKey(
                "model",
                .name,
                "With `grpc`: the model name inside the call's message (`model_name`, or TF Serving's `model_spec.name`) equals this. Calls that name no model (`ServerLive`, `ServerReady`) never match it.",
                example: "churn"
            ),
        ],
        rules: [
            .exactlyOne(["path", "prefix", "template", "grpc"]),
            .atMostOne(["grpc", "method"]),
            .requires("model", ["grpc"]),
        ],
        notes: [
            "A `grpc` method must belong to the route's protocol's service, and be one the sidecar answers; `validate` names the methods."
        ]
    )

    public static let route = ConfigObject(
        name: "route",
        place: "each item of `routes:`",
        summary:
            "One route: which requests it takes and the model that answers them. Routes are tried in order (files in lexical order, items in file order); the first that matches wins.",
        keys: [
            ConfigKey(
                "name",
                .string(pattern: "^[a-z0-9_-]+$", shape: "[a-z0-9_-]+"),
                required: true,
                "Unique across all route files; the `route` label of metrics, logs and `explain`.",
                example: "churn"
            ),
            ConfigKey(
                "match",
                .object(match),
                required: true,
                "Which requests the route takes.",
                example: "{ path: /v1/models/churn:predict, method: POST }"
            ),
            ConfigKey(
                "model",
                .name,
                required: true,
                "The model that answers: the `model` of one policy file.",
                example: "churn"
            ),
            ConfigKey(
                "protocol",
                .choice(protocols),
                default: .text("`\(ConfigDefaults.routeProtocol.rawValue)`; with `match.grpc`, its service's protocol"),
                "What the client speaks: `tfserving` (TF Serving REST), `v2` (Open Inference Protocol), `json` (opaque, forwarded as it is), `openai` (OpenAI-compatible `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`: the body's `model` rewritten to the version's `model_name`, streamed answers relayed event by event, shadow answers compared as text), or over gRPC `v2-grpc` (`inference.GRPCInferenceService`) and `tfserving-grpc` (`tensorflow.serving.PredictionService`), which need `match.grpc`. When a version speaks another protocol, numeric tensors are translated.",
                example: "tfserving"
            ),
            ConfigKey(
                "version",
                .name,
                "Pins every request of this route to this version or label of the model, instead of the split.",
                example: "candidate"
            ),
            ConfigKey(
                "version_from",
                .string(pattern: "^(header:\(token)|message)$", shape: "header:NAME or message"),
                "Pins a request to the version or label its header names (gRPC metadata on a gRPC route), or, with `message` on a gRPC route, that the call's message names (`model_version`, or TF Serving's `model_spec.version` / `version_label`); a request without one follows the split, an unknown name is a 404 `unknown_version` (gRPC `NOT_FOUND`).",
                example: "header:x-model-version"
            ),
        ],
        rules: [.atMostOne(["version", "version_from"])],
        notes: [
            "A template capture (`{version}`, `{label}`) pins the version too, so a route with one has neither `version` nor `version_from`.",
            "`model` names a policy's model; `version` a version or label of it.",
            "`version_from: message` needs `match.grpc`; `protocol: v2-grpc` and `tfserving-grpc` need `match.grpc`, and `match.grpc` needs one of them.",
            "A gRPC route's versions: embedded models and tables, `grpc://` / `grpcs://` versions speaking the route's protocol, and REST versions speaking its REST twin (`v2` for `v2-grpc`, `tfserving` for `tfserving-grpc`; their default), translated both ways. A `grpc://` version answers only gRPC routes.",
            "An `openai` route takes REST requests only (no `match.grpc`). Its model's versions are remote `http://`, `https://` or `unix:` servers that speak `openai` (inherited from the route; a version naming another protocol is an error), and a version with `protocol: openai` answers only `openai` routes.",
        ]
    )

    public static let routeFile = ConfigObject(
        name: "routes file",
        place: "`routes/*.yaml`",
        summary: "The API surface: which requests go to which model.",
        keys: [
            ConfigKey(
                "routes",
                .list(.object(route)),
                required: true,
                "The routes of this file, tried in order. The config needs at least one route in all.",
                example: """
                      - name: churn
                        match: { path: /v1/models/churn:predict, method: POST }
                        model: churn
                        protocol: tfserving
                    """
            )
        ]
    )

    // MARK: Policies

    public static let tls = ConfigObject(
        name: "tls",
        place: "`tls:` of an `https://` or `grpcs://` version",
        summary:
            "How the sidecar checks the backend's certificate and, for mutual TLS, presents its own. Without the block an `https://` or `grpcs://` version is verified against the system's trust store and its URL's host. Files are relative to the policy file's directory and must be readable.",
        keys: [
            ConfigKey(
                "ca_file",
                .string(),
                "Trust only this CA bundle (PEM) instead of the system's trust store.",
                example: "../certs/ca.pem"
            ),
            ConfigKey(
                "cert_file",
                .string(),
                "Client certificate (PEM) for mutual TLS; needs `key_file`.",
                example: "../certs/client.pem"
            ),
            ConfigKey(
                "key_file",
                .string(),
                "The client certificate's private key (PEM); needs `cert_file`.",
                example: "../certs/client.key"
            ),
            ConfigKey(
                "server_name",
                .string(shape: "a DNS name or IP address"),
                "The name sent as SNI and verified in the certificate, when it differs from the URL's host.",
                example: "model.svc"
            ),
            ConfigKey(
                "insecure_skip_verify",
                .boolean,
                default: .bool(false),
                "`true`: no certificate verification at all (anyone on the path can pose as the backend); `validate` warns.",
                example: "false"
            ),
        ],
        rules: [.requires("cert_file", ["key_file"]), .requires("key_file", ["cert_file"])]
    )

    public static let version = ConfigObject(
        name: "version",
        place: "each value of `versions:`",
        summary:
            "One version of the model: a remote model server (`url`) or a model evaluated inside the sidecar (`embedded`).",
        keys: [
            ConfigKey(
                "url",
                .string(pattern: urlPattern, shape: Syntax.urlShape),
                "A remote version. Without a path the request's path is kept; with one, it replaces the request's path. `unix:/abs/path.sock` connects to a Unix socket (`unix:/abs/path.sock:/path` replaces the path). `grpc://host:port` (the port is required: plaintext gRPC has no conventional one) and `grpcs://host[:port]` (default 443) are gRPC servers for gRPC routes; they take no path.",
                example: "\"http://127.0.0.1:9001\""
            ),
            ConfigKey(
                "embedded",
                .choice(embeddedKinds),
                "A version evaluated inside the sidecar: `xgboost` (XGBoost JSON model), `linear` (`coef`, `intercept`, `link`) or `table` (precomputed predictions from CSV, looked up by `key`).",
                example: "xgboost"
            ),
            ConfigKey(
                "file",
                .string(),
                "The embedded model's file, relative to the policy file's directory; must be readable.",
                example: "../examples/models/churn-xgb-v3.json"
            ),
            ConfigKey(
                "key",
                keySource,
                "Where a `table` version reads its lookup key from the request.",
                example: "\"body:/instances/0/customer_id\""
            ),
            ConfigKey(
                "protocol",
                .choice(protocols),
                default: .text("the route's protocol"),
                "What this version speaks, when it differs from the route's: the sidecar translates numeric tensors. Behind a gRPC route, a REST version speaks the route's REST twin by default (`v2` for `v2-grpc`, `tfserving` for `tfserving-grpc`); `v2-grpc` and `tfserving-grpc` need a `grpc://` or `grpcs://` url. Behind an `openai` route a version speaks `openai`, and no other protocol.",
                example: "v2"
            ),
            ConfigKey(
                "timeout_ms",
                .integer(ConfigDefaults.timeoutMillisecondsRange),
                default: .int(ConfigDefaults.timeoutMilliseconds),
                "The whole exchange with the backend, connect included; for a streamed body, until the response head has arrived. Remote versions only.",
                example: "500"
            ),
            ConfigKey(
                "max_connections",
                .integer(ConfigDefaults.maxConnectionsRange),
                default: .int(ConfigDefaults.maxConnections),
                "Keep-alive connections to the backend, per worker. Remote versions only.",
                example: "32"
            ),
            ConfigKey(
                "idle_timeout_ms",
                .integer(ConfigDefaults.idleTimeoutMillisecondsRange),
                default: .int(ConfigDefaults.idleTimeoutMilliseconds),
                "The longest silence between two reads of a streamed response body. Remote versions only.",
                example: "60000"
            ),
            ConfigKey(
                "tls",
                .object(tls),
                "TLS settings of an `https://` or `grpcs://` version.",
                example: "{ ca_file: ../certs/ca.pem }"
            ),
            ConfigKey(
                "model_name",
                .string(pattern: "^.+$", shape: "a non-empty name"),
                "Versions of `openai` routes: the name the backend serves the model under. The request body's `model` field is rewritten to it, so the app keeps asking for one model while versions point at different ones. Without it the app's `model` is sent as it is. An error on a version whose model no `openai` route serves.",
                example: "llama-3.1-8b-ft-v7"
            ),
            ConfigKey(
                "headers",
                .map(keys: "header names", keyPattern: "^\(token)$", value: .string()),
                "Fields set on every request to this version (an `http://`, `https://` or `unix:` url, any protocol), replacing the app's field of the same name: typically a provider's API key. `${NAME}` in a value is replaced by the environment variable `NAME` when the config is loaded and on every reload (an unset variable is an error); `$$` is a literal `$`, and any other `$` is an error. Values are secret: `/config`, `explain`, `validate` and the logs print `***`. Hop-by-hop and framing fields (`connection`, `content-length`, `host`, `keep-alive`, `proxy-authenticate`, `proxy-authorization`, `proxy-connection`, `te`, `trailer`, `transfer-encoding`, `upgrade`) cannot be set.",
                example: "{ authorization: \"Bearer ${OPENAI_API_KEY}\" }"
            ),
        ],
        rules: [
            .exactlyOne(["url", "embedded"]),
            .requires("embedded", ["file"]),
            .requires("file", ["embedded"]),
            .requires("key", ["embedded"]),
            .requiredWhen("key", other: "embedded", is: "table"),
            .onlyWhen("key", other: "embedded", pattern: "^table$", shape: "table"),
            .requires("timeout_ms", ["url"]),
            .requires("max_connections", ["url"]),
            .requires("idle_timeout_ms", ["url"]),
            .requires("tls", ["url"]),
            .onlyWhen("tls", other: "url", pattern: tlsSchemePattern, shape: "an https:// or grpcs:// url"),
            .requires("model_name", ["url"]),
            .requires("headers", ["url"]),
            .onlyWhen("headers", other: "url", pattern: httpSchemePattern, shape: "an http://, https:// or unix: url"),
        ],
        notes: [
            "`model_name` is only valid when an `openai` route serves the version's model; `validate` checks it."
        ]
    )

    public static let shadow = ConfigObject(
        name: "shadow",
        place: "each item of `shadow:`",
        summary:
            "A version that also receives a copy of requests, off the live path: its answer is compared with the live one and never reaches the client.",
        keys: [
            ConfigKey(
                "version",
                .name,
                required: true,
                "The version or label shadowed; each version at most once.",
                example: "v3"
            ),
            ConfigKey(
                "percent",
                .number(minimum: 0, maximum: 100),
                required: true,
                "Share of requests copied to it, 0 to 100; picked by the sticky key when there is one.",
                example: "100"
            ),
        ]
    )

    public static let compare = ConfigObject(
        name: "compare",
        place: "`compare:` of a policy",
        summary: "How a shadow's answer is compared with the live answer, and where comparisons are logged.",
        keys: [
            ConfigKey(
                "output",
                .string(pattern: "^\(pointer)$", shape: "a JSON pointer"),
                "A JSON pointer into both responses (after protocol normalizing) to the part compared; empty for the whole body. Required unless only `openai` routes serve the model: their answers are compared as text or embeddings, and an `output` there is ignored (`validate` warns).",
                example: "/predictions"
            ),
            ConfigKey(
                "tolerance",
                .number(minimum: 0, maximum: nil),
                default: .number(ConfigDefaults.compareTolerance),
                "Numbers within this absolute difference count as agreeing.",
                example: "0.0001"
            ),
            ConfigKey(
                "threshold",
                .number(minimum: 0, maximum: 1),
                "For a single probability: the cut that labels it, so a flip across it counts as churn.",
                example: "0.5"
            ),
            ConfigKey(
                "similarity_threshold",
                .number(minimum: 0, maximum: 1),
                default: .text("texts: normalized equality; embeddings: cosine 0.99"),
                "Models served by `openai` routes: a shadow's text matches the live one when their similarity (token-level F1 after Unicode NFC, case folding and collapsing whitespace) is at least this, and an embedding when its cosine similarity is. An error on a model no `openai` route serves.",
                example: "0.8"
            ),
            ConfigKey(
                "log",
                .string(),
                "A JSONL file of comparison records for `switchyard report`, relative to the policy file's directory. Its directory is created when missing; `validate` reports a path that cannot be written.",
                example: "../comparisons/churn.jsonl"
            ),
            ConfigKey(
                "sample",
                .number(minimum: 0, maximum: 1),
                default: .number(ConfigDefaults.compareSample),
                "Share of comparisons written to `log`, 0 to 1.",
                example: "0.1"
            ),
        ],
        notes: [
            "`output` may be left out only when every route serving the model is `openai`, and `similarity_threshold` given only when one is; `validate` checks both."
        ]
    )

    public static let guardBlock = ConfigObject(
        name: "guard",
        place: "`guard:` of a policy",
        summary:
            "Watches one version's own errors and latency; when it trips, that version's live share goes to `fallback` for a cool-down and requests pinned to it get 503 `guard_open`.",
        keys: [
            ConfigKey(
                "version",
                .name,
                required: true,
                "The version or label guarded.",
                example: "candidate"
            ),
            ConfigKey(
                "max_error_ratio",
                .number(minimum: 0, maximum: 1),
                "Trip when the share of its requests that fail, over the window, is above this.",
                example: "0.05"
            ),
            ConfigKey(
                "max_p99_ms",
                .number(minimum: 0, maximum: nil, exclusiveMinimum: true),
                "Trip when its 99th percentile latency over the window, in milliseconds, is above this.",
                example: "250"
            ),
            ConfigKey(
                "min_requests",
                .integer(1...Int.max),
                default: .int(ConfigDefaults.guardMinRequests),
                "Requests in the window before the guard may trip.",
                example: "100"
            ),
            ConfigKey(
                "window_s",
                .integer(1...Int.max),
                default: .int(ConfigDefaults.guardWindowSeconds),
                "Length of the sliding window, in seconds.",
                example: "60"
            ),
        ],
        rules: [.atLeastOne(["max_error_ratio", "max_p99_ms"])]
    )

    public static let policy = ConfigObject(
        name: "policy file",
        place: "`policies/*.yaml`",
        summary: "One model: its versions, labels, split, shadows, comparison and guard.",
        keys: [
            ConfigKey(
                "model",
                .name,
                required: true,
                "The model's name, unique across policy files; routes refer to it.",
                example: "churn"
            ),
            ConfigKey(
                "versions",
                .map(keys: "version names", value: .object(version), minEntries: 1),
                required: true,
                "The model's versions by name (at least one).",
                example: """
                      v1: { url: "http://127.0.0.1:9001", timeout_ms: 500 }
                      v3: { embedded: xgboost, file: ../examples/models/churn-xgb-v3.json }
                    """
            ),
            ConfigKey(
                "labels",
                .map(keys: "label names", value: .name),
                "Other names for versions (TF Serving style), usable wherever a version is; a label names a version, not another label, and not a version's own name.",
                example: "{ stable: v1, candidate: v2 }"
            ),
            ConfigKey(
                "split",
                .map(keys: "version or label names", value: .number(minimum: 0, maximum: 100)),
                default: .text("100 to the only version"),
                "How unpinned requests are shared among versions: weights from 0 to 100 with at most two decimals, summing to 100. Versions not named get none.",
                example: "{ stable: 90, candidate: 10 }"
            ),
            ConfigKey(
                "sticky",
                keySource,
                "Where the sticky key is read: the same key gets the same version on every replica, across restarts and reloads, while weights stay the same. A request without it is assigned at random.",
                example: "header:x-user-id"
            ),
            ConfigKey(
                "fallback",
                .name,
                "The version or label that answers, once, when the chosen version fails (connect error, timeout, 5xx, embedded error, table miss); the response says so in `x-switchyard-fallback`.",
                example: "stable"
            ),
            ConfigKey(
                "shadow",
                .list(.object(shadow)),
                "Versions that receive copies of requests, off the live path.",
                example: """
                      - { version: v3, percent: 100 }
                    """
            ),
            ConfigKey(
                "compare",
                .object(compare),
                "How shadow answers are compared with live ones.",
                example: "{ output: /predictions, tolerance: 0.01, threshold: 0.5 }"
            ),
            ConfigKey(
                "guard",
                .object(guardBlock),
                "Takes a failing version out of the split; needs `fallback`.",
                example: "{ version: candidate, max_error_ratio: 0.05, max_p99_ms: 250 }"
            ),
        ],
        rules: [
            .requiredWhenEntries("split", map: "versions", entries: 2),
            .requires("guard", ["fallback"]),
        ],
        notes: [
            "`split`, `fallback`, `shadow` and `guard` name versions or labels of this policy; `validate` checks they exist."
        ]
    )

    /// Every block, in the order the reference documents them.
    public static let objects: [ConfigObject] = [
        routeFile, route, match, policy, version, tls, shadow, compare, guardBlock,
    ]
}
