public import Policy

/// The versions whose guard has tripped, by model name (versions by name, labels resolved).
public struct GuardState: Sendable, Hashable {
    public var tripped: [String: Set<String>]

    public init(tripped: [String: Set<String>] = [:]) {
        self.tripped = tripped
    }

    public func isTripped(model: String, version: String) -> Bool {
        tripped[model]?.contains(version) ?? false
    }
}

/// What routing decided for one request.
public enum RoutingOutcome: Sendable {
    /// A version answers. Not boxed: a box was one allocation per request (a `Decision` holds its
    /// route by reference, so copying it copies no route).
    case routed(Decision)
    /// No route matches the request (404 for the caller).
    case noRoute
    // Indirect: a whole `Route` inline would make every outcome as large as a route.
    /// The request pins a version or label the route's model does not have (404 for the caller).
    indirect case unknownVersion(route: Route, name: String)
    /// The version this request must go to has a tripped guard and there is no usable fallback
    /// (503 for the caller): a pinned request never goes to another version.
    indirect case guardOpen(route: Route, version: String)

    /// The decision when a version answers, else nil.
    public var decision: Decision? {
        if case .routed(let decision) = self { return decision }
        return nil
    }
}

/// Which version answers a routed request, which versions shadow it, and why.
public struct Decision: Sendable, CustomStringConvertible {
    // Boxed, and shared with the `RoutingTable`, so that making and copying a decision copies one
    // reference instead of every field of the route.
    private var routeBox: RouteBox
    public var route: Route {
        // A borrow of the boxed route: `decision.route.name` copies the name, not the route.
        _read { yield routeBox.route }
        set { routeBox = RouteBox(newValue) }
    }
    /// The route's position in `Config.routes`.
    public var routeIndex: Int
    /// The route's model (policy) name.
    public var model: String
    /// The version that answers: a version name, never a label.
    public var version: String
    /// The version or label named to pin the request (`candidate`), nil when the split chose.
    public var requested: String?
    public var reason: Reason
    /// The version the split chose whose guard has tripped, when `version` is its fallback instead.
    public var guardRedirect: String?
    /// The version that answers if `version` fails; nil when there is none or it is `version`.
    public var fallback: String?
    /// Versions that get a shadow copy, in policy order; may include `version` itself.
    public var shadows: [String]
    /// What the client speaks (the route's protocol).
    public var wireProtocol: WireProtocol

    public init(
        route: Route,
        routeIndex: Int,
        model: String,
        version: String,
        requested: String?,
        reason: Reason,
        guardRedirect: String?,
        fallback: String?,
        shadows: [String],
        wireProtocol: WireProtocol
    ) {
        self.init(
            routeBox: RouteBox(route),
            routeIndex: routeIndex,
            model: model,
            version: version,
            requested: requested,
            reason: reason,
            guardRedirect: guardRedirect,
            fallback: fallback,
            shadows: shadows,
            wireProtocol: wireProtocol
        )
    }

    init(
        routeBox: RouteBox,
        routeIndex: Int,
        model: String,
        version: String,
        requested: String?,
        reason: Reason,
        guardRedirect: String?,
        fallback: String?,
        shadows: [String],
        wireProtocol: WireProtocol
    ) {
        self.routeBox = routeBox
        self.routeIndex = routeIndex
        self.model = model
        self.version = version
        self.requested = requested
        self.reason = reason
        self.guardRedirect = guardRedirect
        self.fallback = fallback
        self.shadows = shadows
        self.wireProtocol = wireProtocol
    }

    /// Why a version was chosen.
    public enum Reason: Sendable, Hashable, CustomStringConvertible {
        /// `version:` on the route names this version or label.
        case pinnedByRoute(String)
        /// The route's template captured this version or label.
        case pinnedByPath(String)
        /// `version_from: header:…` and the header had this value.
        case pinnedByHeader(header: String, value: String)
        /// `version_from: message` and the gRPC call's message asked for this version or label.
        case pinnedByMessage(String)
        /// The split, by weighted rendezvous on this sticky key.
        case stickySplit(key: String, source: KeySource)
        /// The split, by a uniform bucket in 0..<10000 against the cumulative weights.
        case randomSplit(bucket: Int, why: RandomCause)

        public var description: String {
            switch self {
            case .pinnedByRoute(let name): return "pinned by route: \(name)"
            case .pinnedByPath(let name): return "pinned by path: \(name)"
            case .pinnedByHeader(let header, let value): return "pinned by header \(header): \(value)"
            case .pinnedByMessage(let name): return "pinned by message: \(name)"
            case .stickySplit(let key, let source):
                return "split: sticky key '\(key)' (\(source)) by weighted rendezvous"
            case .randomSplit(let bucket, let why):
                return "split: random bucket \(bucket) of \(splitTotal) (\(why))"
            }
        }

        public var isPinned: Bool {
            switch self {
            case .pinnedByRoute, .pinnedByPath, .pinnedByHeader, .pinnedByMessage: return true
            case .stickySplit, .randomSplit: return false
            }
        }
    }

    /// Why the split drew a random bucket rather than hashing a sticky key.
    public enum RandomCause: Sendable, Hashable, CustomStringConvertible {
        case noStickyConfigured
        case stickyKeyMissing(KeySource)

        public var description: String {
            switch self {
            case .noStickyConfigured: return "no sticky key configured"
            case .stickyKeyMissing(let source): return "sticky key \(source) missing"
            }
        }
    }

    /// One line for `switchyard explain`, e.g.
    /// `pinned by header x-model-version: candidate → v2` or
    /// `split: random bucket 4711 of 10000 (no sticky key configured) → v1`.
    public var explanation: String {
        var line = reason.description
        if let tripped = guardRedirect {
            line += " → \(tripped), guard open → fallback \(version)"
        } else if requested != version {
            line += " → \(version)"
        }
        return line
    }

    /// `route churn → churn/v2: <explanation>`.
    public var description: String { "route \(route.name) → \(model)/\(version): \(explanation)" }
}

/// The weights the split uses once guards are applied: each tripped version's weight moves to the
/// policy's fallback (appended with weight 0 when it is not in the split), in split order.
///
/// When there is no fallback, or it has tripped too, the weights stay: those requests get
/// `.guardOpen`. The shares `decide` produces follow these weights.
public func effectiveSplit(_ policy: ModelPolicy, guards: GuardState) -> [SplitEntry] {
    let tripped = guards.tripped[policy.model] ?? []
    guard let fallback = policy.fallback, !tripped.contains(fallback),
        policy.split.contains(where: { tripped.contains($0.version) })
    else { return policy.split }
    var split = policy.split
    if !split.contains(where: { $0.version == fallback }) {
        split.append(SplitEntry(version: fallback, weight: 0))
    }
    var moved = 0
    for index in split.indices where tripped.contains(split[index].version) {
        moved += split[index].weight
        split[index].weight = 0
    }
    let fallbackIndex = split.firstIndex(where: { $0.version == fallback })!
    split[fallbackIndex].weight += moved
    return split
}

/// Which version answers `request`, which shadow it, and why (SPEC §3 "Semantics").
///
/// Routes are tried in order and the first match wins. A pinned request (route `version:`, path
/// capture, `version_from` header present, or `version_from: message` and a non-empty version
/// in the gRPC call's message) goes to the version it names, never consults the split
/// and draws from `entropy` only to sample a shadow below 100 % when it has no sticky key: shadows
/// copy all of the model's live traffic, pinned or not (as a route-level mirror would).
/// Otherwise the split decides: by the sticky key when the policy has one and the request carries
/// it (non-empty), else by a uniform bucket drawn from `entropy`. A split choice whose guard has
/// tripped goes to the fallback; sticky keys keep their assignment once the guard resets.
///
/// `config` must be as the loader checks it: every route's model has a policy whose split weights
/// sum to 10000. Anything else is a programmer mistake and traps.
public func decide<G: RandomNumberGenerator>(
    _ request: RequestFacts,
    config: Config,
    guards: GuardState = .init(),
    using entropy: inout G
) -> RoutingOutcome {
    guard let (index, captures) = firstMatch(request, in: config.routes) else { return .noRoute }
    let route = config.routes[index]
    guard let policy = config.models[route.model] else {
        preconditionFailure("Route '\(route.name)' sends to model '\(route.model)', which has no policy in the config.")
    }
    return decide(
        request,
        route: RouteBox(route),
        index: index,
        captures: captures,
        policy: RoutingTable.PolicyBox(policy, listingVersions: false),
        guards: guards,
        using: &entropy
    )
}

/// `decide` with the policies looked up in `table` by route index: no model name hashed and no
/// `ModelPolicy` copied per request. Decides exactly as `decide(_:config:guards:using:)` on
/// `table.config`.
public func decide<G: RandomNumberGenerator>(
    _ request: RequestFacts,
    table: RoutingTable,
    guards: GuardState = .init(),
    using entropy: inout G
) -> RoutingOutcome {
    guard let (index, captures) = firstMatch(request, in: table.config.routes) else { return .noRoute }
    return decide(
        request,
        route: table.routes[index],
        index: index,
        captures: captures,
        policy: table.policies[index],
        guards: guards,
        using: &entropy
    )
}

/// A route behind a reference: decisions share it instead of copying its fields.
final class RouteBox: Sendable {
    let route: Route
    init(_ route: Route) { self.route = route }
}

/// `config`'s policies by route index, built once per config for `decide(_:table:guards:using:)`
/// and for looking up the version a decision names. Immutable; shared by every worker.
public final class RoutingTable: Sendable {
    public let config: Config
    /// By route index: the route's model's policy, boxed so that reading it copies nothing.
    let policies: [PolicyBox]
    /// By route index: the route, boxed so that a decision shares it.
    let routes: [RouteBox]

    /// A policy and what `decide` would otherwise work out from it on every request.
    final class PolicyBox: Sendable {
        let policy: ModelPolicy
        /// The sum of the split's positive weights (checked against `splitTotal` when deciding).
        let splitWeightTotal: Int
        /// `policy.versions` as a list, when it is short enough that comparing names one by one
        /// costs less than hashing the name; nil otherwise.
        let versionList: [(name: String, spec: VersionSpec)]?

        /// `listingVersions` false skips `versionList` for a box used for one decision.
        init(_ policy: ModelPolicy, listingVersions: Bool = true) {
            self.policy = policy
            splitWeightTotal = policy.split.reduce(0) { $0 + max($1.weight, 0) }
            versionList =
                listingVersions && policy.versions.count <= 8 ? policy.versions.map { ($0.key, $0.value) } : nil
        }

        func version(_ name: String) -> VersionSpec? {
            guard let versionList else { return policy.versions[name] }
            for entry in versionList where entry.name == name { return entry.spec }
            return nil
        }
    }

    /// `config` must be as the loader checks it: every route's model has a policy (else this traps).
    public init(_ config: Config) {
        self.config = config
        var boxes: [String: PolicyBox] = [:]
        policies = config.routes.map { route in
            if let box = boxes[route.model] { return box }
            guard let policy = config.models[route.model] else {
                preconditionFailure(
                    "Route '\(route.name)' sends to model '\(route.model)', which has no policy in the config."
                )
            }
            let box = PolicyBox(policy)
            boxes[route.model] = box
            return box
        }
        routes = config.routes.map(RouteBox.init)
    }

    /// The spec of `version` of the model that route `routeIndex` sends to.
    public func version(_ version: String, routeIndex: Int) -> VersionSpec? {
        policies[routeIndex].version(version)
    }
}

/// `decide` once the route has matched and its policy is known.
private func decide<G: RandomNumberGenerator>(
    _ request: RequestFacts,
    route routeBox: RouteBox,
    index: Int,
    captures: [String: String],
    policy policyBox: RoutingTable.PolicyBox,
    guards: GuardState,
    using entropy: inout G
) -> RoutingOutcome {
    // Fields are read through the boxes: binding `route` or `policy` to a local would copy all of it.
    let model = policyBox.policy.model
    // Most workers have no tripped guard: skip hashing the model name then.
    let tripped = guards.tripped.isEmpty ? [] : guards.tripped[model] ?? []
    let policyFallback = policyBox.policy.fallback
    func fallback(_ version: String) -> String? { policyFallback == version ? nil : policyFallback }

    // The sticky key (empty counts as missing): it assigns the split and samples the shadows.
    let sticky = policyBox.policy.sticky
    let key = sticky.flatMap { keyValue($0, in: request) }.flatMap { $0.isEmpty ? nil : $0 }
    if let pin = routeBox.route.pin, let (requested, reason) = pinnedName(pin, request: request, captures: captures) {
        guard let version = policyBox.policy.resolve(requested) else {
            return .unknownVersion(route: routeBox.route, name: requested)
        }
        if tripped.contains(version) { return .guardOpen(route: routeBox.route, version: version) }
        let shadows = sampledShadows(policyBox.policy.shadows, key: key, entropy: &entropy)
        return .routed(
            Decision(
                routeBox: routeBox,
                routeIndex: index,
                model: routeBox.route.model,
                version: version,
                requested: requested,
                reason: reason,
                guardRedirect: nil,
                fallback: fallback(version),
                shadows: shadows,
                wireProtocol: routeBox.route.wireProtocol
            )
        )
    }

    let total = policyBox.splitWeightTotal
    precondition(
        total == splitTotal,
        "Model '\(model)' has split weights summing to \(total), not \(splitTotal) hundredths of a percent."
    )

    let chosen: String
    let reason: Decision.Reason
    if let sticky, let key {
        chosen = stickyVersion(for: key, split: policyBox.policy.split)!
        reason = .stickySplit(key: key, source: sticky)
    } else {
        let bucket = randomBucket(using: &entropy)
        chosen = version(atBucket: bucket, split: policyBox.policy.split)
        reason = .randomSplit(bucket: bucket, why: sticky.map { .stickyKeyMissing($0) } ?? .noStickyConfigured)
    }

    var version = chosen
    var guardRedirect: String?
    if tripped.contains(chosen) {
        guard let fallback = policyFallback, !tripped.contains(fallback) else {
            return .guardOpen(route: routeBox.route, version: chosen)
        }
        version = fallback
        guardRedirect = chosen
    }

    let shadows = sampledShadows(policyBox.policy.shadows, key: key, entropy: &entropy)
    return .routed(
        Decision(
            routeBox: routeBox,
            routeIndex: index,
            model: routeBox.route.model,
            version: version,
            requested: nil,
            reason: reason,
            guardRedirect: guardRedirect,
            fallback: fallback(version),
            shadows: shadows,
            wireProtocol: routeBox.route.wireProtocol
        )
    )
}

/// Split weights are in hundredths of a percent and sum to this.
let splitTotal = 10_000

/// A uniform bucket in `0..<splitTotal`: the same draws and result as
/// `Int.random(in: 0..<splitTotal, using: &entropy)`, but with the arithmetic on `UInt64` written
/// out, so an unspecialized `decide` does not run the stdlib's generic integer code (~0.3 µs).
/// Lemire's nearly divisionless method, as the stdlib's `next(upperBound:)` does it.
@inline(__always)
func randomBucket<G: RandomNumberGenerator>(using entropy: inout G) -> Int {
    let bound = UInt64(splitTotal)
    var m = entropy.next().multipliedFullWidth(by: bound)
    if m.low < bound {
        let t = (0 &- bound) % bound
        while m.low < t { m = entropy.next().multipliedFullWidth(by: bound) }
    }
    return Int(truncatingIfNeeded: m.high)
}

/// The version or label `pin` names for this request, or nil when the request is not pinned.
private func pinnedName(
    _ pin: VersionPin,
    request: RequestFacts,
    captures: [String: String]
) -> (String, Decision.Reason)? {
    switch pin {
    case .fixed(let name):
        return (name, .pinnedByRoute(name))
    case .pathCapture(let capture):
        guard let name = captures[capture] else { return nil }
        return (name, .pinnedByPath(name))
    case .header(let header):
        guard let value = request.header(header) else { return nil }
        return (value, .pinnedByHeader(header: header, value: value))
    case .message:
        // An empty version field is protobuf's "not set": the split decides then.
        guard let name = request.grpc?.modelVersion, !name.isEmpty else { return nil }
        return (name, .pinnedByMessage(name))
    }
}

/// The entry whose cumulative-weight range (in split order) holds `bucket`.
func version(atBucket bucket: Int, split: [SplitEntry]) -> String {
    var upper = 0
    for entry in split where entry.weight > 0 {
        upper += entry.weight
        if bucket < upper { return entry.version }
    }
    preconditionFailure("Bucket \(bucket) lies beyond the split's total weight \(upper).")
}

/// The shadows this request's copy goes to, in policy order.
private func sampledShadows<G: RandomNumberGenerator>(
    _ shadows: [ShadowSpec],
    key: String?,
    entropy: inout G
) -> [String] {
    // Most policies have no shadow: no arrays made then.
    if shadows.isEmpty { return [] }
    return shadows.filter { isSampled($0, key: key, entropy: &entropy) }.map(\.version)
}

/// Whether `shadow` gets a copy: by the sticky key's hash when there is one, else by a draw.
/// 100 % and 0 % decide without drawing.
private func isSampled<G: RandomNumberGenerator>(
    _ shadow: ShadowSpec,
    key: String?,
    entropy: inout G
) -> Bool {
    if shadow.percent >= 100 { return true }
    if shadow.percent <= 0 { return false }
    let u: Double
    if let key {
        u = unitInterval(hashing: [key, "shadow", shadow.version])
    } else {
        u = Double.random(in: 0..<1, using: &entropy)
    }
    return u * 100 < shadow.percent
}
