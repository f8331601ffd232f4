import Policy
import Routing
@_exported import TestSupport

/// A generator that must not be used: pinned and keyed decisions draw nothing.
struct TrappingGenerator: RandomNumberGenerator {
    mutating func next() -> UInt64 {
        fatalError("This decision drew entropy, but it must be decided without any.")
    }
}

/// Counts the draws of a SplitMix64.
struct CountingGenerator: RandomNumberGenerator {
    var inner: SplitMix64
    var draws = 0

    init(seed: UInt64) { inner = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 {
        draws += 1
        return inner.next()
    }
}

let here = SourceLocation(file: "test.yaml", line: 1, column: 1)

func remote(_ port: Int) -> Backend {
    .remote(RemoteBackend(host: "127.0.0.1", port: port, path: nil, timeoutMilliseconds: 1000, maxConnections: 64))
}

/// A policy with versions `v1`, `v2`, `v3`, labels `stable` → v1 and `candidate` → v2.
func churnPolicy(
    split: [SplitEntry] = [SplitEntry(version: "v1", weight: 9000), SplitEntry(version: "v2", weight: 1000)],
    sticky: KeySource? = .header("x-user-id"),
    fallback: String? = "v1",
    shadows: [ShadowSpec] = [ShadowSpec(version: "v3", percent: 100)]
) -> ModelPolicy {
    let names = ["v1", "v2", "v3", "v4"]
    var versions: [String: VersionSpec] = [:]
    for (index, name) in names.enumerated() {
        versions[name] = VersionSpec(name: name, backend: remote(9001 + index), wireProtocol: nil, location: here)
    }
    return ModelPolicy(
        model: "churn",
        versions: versions,
        versionOrder: names,
        labels: ["stable": "v1", "candidate": "v2"],
        split: split,
        sticky: sticky,
        fallback: fallback,
        shadows: shadows,
        compare: nil,
        guardSpec: nil,
        location: here
    )
}

func route(
    _ name: String,
    _ path: PathMatch,
    method: String? = nil,
    headers: [(name: String, value: String)] = [],
    pin: VersionPin? = nil,
    wireProtocol: WireProtocol = .tfserving
) -> Route {
    Route(
        name: name,
        match: RouteMatch(path: path, method: method, headers: headers),
        model: "churn",
        wireProtocol: wireProtocol,
        pin: pin,
        location: here
    )
}

let versionTemplate = PathTemplate(
    source: "/v1/models/churn/versions/{version}:predict",
    segments: [.literal("/v1/models/churn/versions/"), .capture("version"), .literal(":predict")]
)

/// The routes of SPEC §3's sample, plus a catch-all prefix route last.
let sampleRoutes: [Route] = [
    route("churn", .exact("/v1/models/churn:predict"), method: "POST", headers: [("x-tenant", "acme")]),
    route("churn-pinned", .template(versionTemplate), pin: .pathCapture("version")),
    route("churn-by-header", .prefix("/churn"), pin: .header("x-model-version"), wireProtocol: .json),
    route("churn-api-v2", .exact("/v2/churn/predict"), pin: .fixed("candidate"), wireProtocol: .v2),
    route("churn-any", .prefix("/v1/models/churn")),
]

func sampleConfig(_ policy: ModelPolicy = churnPolicy(), routes: [Route] = sampleRoutes) -> Config {
    Config(routes: routes, models: ["churn": policy], files: [])
}

func request(
    _ path: String,
    method: String = "POST",
    query: String? = nil,
    headers: [(name: String, value: String)] = []
) -> RequestFacts {
    RequestFacts(method: method, path: path, query: query, headers: headers)
}

extension RoutingOutcome {
    /// A one-line summary to compare in tables: `churn v2`, `no route`, `unknown churn-pinned v9`,
    /// `guard open churn-api-v2 v2`.
    var summary: String {
        switch self {
        case .routed(let decision): return "\(decision.route.name) \(decision.version)"
        case .noRoute: return "no route"
        case .unknownVersion(let route, let name): return "unknown \(route.name) \(name)"
        case .guardOpen(let route, let version): return "guard open \(route.name) \(version)"
        }
    }
}

/// Whether `count` of `draws` is within four standard deviations of a share `p`.
func withinFourSigma(_ count: Int, of draws: Int, share p: Double) -> Bool {
    let mean = Double(draws) * p
    let sigma = (Double(draws) * p * (1 - p)).squareRoot()
    return abs(Double(count) - mean) <= 4 * sigma
}
