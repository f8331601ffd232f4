import EventHTTP
import Prometheus

/// Every metric the sidecar exports (SPEC §6), its name, help and label order, in one place.
/// Label values are route, model and version names (labels resolved), never raw paths.
///
/// Handles are made through the registry, which returns the existing collector for the same
/// name and labels; making one costs ~600 ns, so workers cache them (`MetricCache`) and the
/// request path only increments.
final class SidecarMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    /// From 25 µs: an embedded model answers in tens of microseconds.
    static let requestDurationBuckets: [Double] = [
        0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1, 2.5, 5, 10,
    ]
    /// Probabilities differ by at most 1; regression outputs may differ by hundreds.
    static let absDiffBuckets: [Double] = [
        0, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100,
        250, 500, 1000,
    ]

    func requests(route: String, model: String, version: String, role: Role, code: Int) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_requests_total",
                "Requests answered, by route, model, version (the one that answered), role (live or shadow) and status code."
            ),
            labels: [
                ("route", route), ("model", model), ("version", version), ("role", role.rawValue),
                ("code", String(code)),
            ]
        )
    }

    func duration(model: String, version: String, role: Role) -> ValueHistogram {
        registry.makeValueHistogram(
            descriptor: Self.named(
                "switchyard_request_duration_seconds",
                "Time from the request's arrival to its answer, per version and role."
            ),
            labels: [("model", model), ("version", version), ("role", role.rawValue)],
            buckets: Self.requestDurationBuckets
        )
    }

    func comparisons(model: String, live: String, shadow: String, outcome: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_shadow_comparisons_total",
                "Shadow comparisons by outcome: match, mismatch or error."
            ),
            labels: [("model", model), ("live_version", live), ("shadow_version", shadow), ("outcome", outcome)]
        )
    }

    func flips(model: String, live: String, shadow: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_shadow_flips_total",
                "Comparisons in which some row's class label differs between live and shadow."
            ),
            labels: [("model", model), ("live_version", live), ("shadow_version", shadow)]
        )
    }

    func absDiff(model: String, live: String, shadow: String) -> ValueHistogram {
        registry.makeValueHistogram(
            descriptor: Self.named(
                "switchyard_shadow_abs_diff",
                "Largest absolute difference between live and shadow outputs, once per comparison."
            ),
            labels: [("model", model), ("live_version", live), ("shadow_version", shadow)],
            buckets: Self.absDiffBuckets
        )
    }

    func shadowDropped(model: String, version: String, reason: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_shadow_dropped_total",
                "Shadow copies not sent: reason overloaded (the worker's in-flight shadow bound) or draining."
            ),
            labels: [("model", model), ("version", version), ("reason", reason)]
        )
    }

    func fallbacks(model: String, from: String, to: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_fallbacks_total",
                "Requests answered by the fallback after the chosen version failed."
            ),
            labels: [("model", model), ("from_version", from), ("to_version", to)]
        )
    }

    func splitWeightRatio(model: String, version: String) -> Gauge {
        registry.makeGauge(
            descriptor: Self.named(
                "switchyard_split_weight_ratio",
                "Effective split weight of each version, 0 to 1, after guards."
            ),
            labels: [("model", model), ("version", version)]
        )
    }

    func guardTripped(model: String, version: String) -> Gauge {
        registry.makeGauge(
            descriptor: Self.named(
                "switchyard_guard_tripped",
                "1 while the version's guard holds its live share back, else 0."
            ),
            labels: [("model", model), ("version", version)]
        )
    }

    func streamsCut(model: String, version: String, reason: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_streams_cut_total",
                "Streamed responses that ended before their end: reason upstream_closed, idle_timeout or client_closed."
            ),
            labels: [("model", model), ("version", version), ("reason", reason)]
        )
    }

    static let firstByteBuckets: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]

    func upstreamFirstByte(model: String, version: String, role: Role) -> ValueHistogram {
        registry.makeValueHistogram(
            descriptor: Self.named(
                "switchyard_upstream_first_byte_seconds",
                "Time from sending a request to a remote version to its response head."
            ),
            labels: [("model", model), ("version", version), ("role", role.rawValue)],
            buckets: Self.firstByteBuckets
        )
    }

    /// LLM answers take from tens of milliseconds to minutes to their first token.
    static let firstTokenBuckets: [Double] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
    ]

    /// SPEC §14: tokens an `openai` version reported in its answers' `usage` (`kind` prompt or
    /// completion), a stream's final usage event included.
    func llmTokens(model: String, version: String, role: Role, kind: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_llm_tokens_total",
                "Tokens openai versions reported in their answers' usage: kind prompt or completion."
            ),
            labels: [("model", model), ("version", version), ("role", role.rawValue), ("kind", kind)]
        )
    }

    /// SPEC §14: from sending a request to an `openai` version to its first token — the first
    /// event carrying text or a tool call of a streamed answer; the whole answer otherwise.
    func llmFirstToken(model: String, version: String, role: Role) -> ValueHistogram {
        registry.makeValueHistogram(
            descriptor: Self.named(
                "switchyard_llm_time_to_first_token_seconds",
                "Time from sending a request to an openai version to its first token (a whole answer when not streamed)."
            ),
            labels: [("model", model), ("version", version), ("role", role.rawValue)],
            buckets: Self.firstTokenBuckets
        )
    }

    func sendTimeouts() -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_send_timeouts_total",
                "Client connections closed because the client took no response bytes for --send-timeout-ms."
            )
        )
    }

    func drainCut() -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_drain_cut_total",
                "Requests still under way (a body arriving or a response leaving) when --drain-timeout ended the drain."
            )
        )
    }

    func configReloads(success: Bool) -> Counter {
        registry.makeCounter(
            descriptor: Self.named("switchyard_config_reloads_total", "Config reloads by result."),
            labels: [("result", success ? "success" : "failure")]
        )
    }

    let configGeneration: Gauge

    init() {
        configGeneration = registry.makeGauge(
            descriptor: Self.named(
                "switchyard_config_generation",
                "The config generation serving now; +1 per successful reload."
            )
        )
    }

    /// Failed attempts, not records: +1 per batch that could not be written (`write_failed`; a
    /// batch is what one file got in one flush, any number of records) and +1 per record the full
    /// queue refused (`queue_full`). How many records were lost is
    /// `comparisonRecordsDropped(reason:)`.
    func comparisonLogErrors(reason: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_comparison_log_errors_total",
                "Failed comparison log write attempts, not records: reason write_failed (+1 per batch not "
                    + "written whole) or queue_full (+1 per record refused). Records lost are in "
                    + "switchyard_comparison_records_dropped_total."
            ),
            labels: [("reason", reason)]
        )
    }

    /// Records lost, one each: `write_failed` (not written whole: a disk error such as ENOSPC,
    /// EFBIG or EIO, or a file that could not be opened) or `queue_full` (refused by the
    /// in-memory bound). Unlike `comparisonLogErrors(reason:)`, a failed batch adds every record
    /// it lost.
    func comparisonRecordsDropped(reason: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_comparison_records_dropped_total",
                "Comparison records lost, each counted once: reason write_failed (not written whole) or queue_full."
            ),
            labels: [("reason", reason)]
        )
    }

    /// Access log records lost, one each: `queue_full` (refused by the in-memory bound) or
    /// `write_failed` (not written whole: a disk error, or a file that could not be opened).
    func accessLogRecordsDropped(reason: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_access_log_records_dropped_total",
                "Access log records lost, each counted once: reason write_failed (not written whole) or queue_full."
            ),
            labels: [("reason", reason)]
        )
    }

    func acceptErrors(reason: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_accept_errors_total",
                "Connections a data or admin listener could not take, by reason: emfile (the process open-file "
                    + "limit), enfile (the system's), reserve (the descriptors kept for upstreams, the admin port "
                    + "and config reads) or other. Each one pauses that listener, 10 ms doubling to 1 s."
            ),
            labels: [("reason", reason)]
        )
    }

    /// The `reason` label of `switchyard_accept_errors_total`.
    static let acceptErrorReasons = ["emfile", "enfile", "reserve", "other"]

    static func acceptErrorReason(_ failure: AcceptFailure) -> String {
        switch failure {
        case .processDescriptorLimit: return "emfile"
        case .systemDescriptorLimit: return "enfile"
        case .descriptorReserve: return "reserve"
        case .other: return "other"
        }
    }

    func stickyMissing(model: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_sticky_key_missing_total",
                "Requests to a sticky policy that carried no key and were assigned at random."
            ),
            labels: [("model", model)]
        )
    }

    /// Spans not exported: reason queue_full (the exporter's queue was full when the span
    /// ended) or export_failed (its batch could not be sent).
    func traceSpansDropped(reason: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_trace_spans_dropped_total",
                "Trace spans not exported: reason queue_full (the export queue was full) or export_failed."
            ),
            labels: [("reason", reason)]
        )
    }

    /// OTLP export requests by result: success (a 2xx answer) or failure.
    func traceExports(result: String) -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_trace_exports_total",
                "OTLP trace export requests by result: success (2xx) or failure (no answer, timeout or not 2xx)."
            ),
            labels: [("result", result)]
        )
    }

    func traceSpansExported() -> Counter {
        registry.makeCounter(
            descriptor: Self.named(
                "switchyard_trace_spans_exported_total",
                "Trace spans the collector accepted (in 2xx-answered export requests)."
            )
        )
    }

    enum Role: String {
        case live, shadow
    }

    private static func named(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// `switchyard_build_info{version,libevent,libyaml} 1`.
    private func buildInfo() -> Gauge {
        registry.makeGauge(
            descriptor: Self.named(
                "switchyard_build_info",
                "Always 1; the labels name the sidecar's version and the libevent and libyaml it runs on."
            ),
            labels: [
                ("version", SwitchyardVersion.current), ("libevent", SwitchyardVersion.libevent),
                ("libyaml", SwitchyardVersion.libyaml),
            ]
        )
    }

    /// Sets the process series (Prometheus client conventions) from `stats`. A figure that is
    /// nil leaves its series as it was: absent until it is first read.
    func updateProcess(_ stats: ProcessStats) {
        if let seconds = stats.cpuSeconds {
            let counter = registry.makeCounter(
                descriptor: Self.named("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
            )
            // The kernel keeps the total: the counter is set to it, not added to.
            counter.reset()
            counter.increment(by: seconds)
        }
        let gauges: [(String, String, Double?)] = [
            ("process_resident_memory_bytes", "Resident memory size in bytes.", stats.residentBytes),
            ("process_open_fds", "Number of open file descriptors.", stats.openDescriptors),
            ("process_max_fds", "Maximum number of open file descriptors.", stats.maxDescriptors),
            (
                "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                stats.startTime
            ),
        ]
        for (name, help, value) in gauges {
            guard let value else { continue }
            registry.makeGauge(descriptor: Self.named(name, help)).set(to: value)
        }
    }

    /// The exposition text, with the process series and build info read now. Admin loop thread
    /// (the process counter is reset and set, which two renders at once could interleave).
    func render() -> [UInt8] {
        buildInfo().set(to: 1)
        updateProcess(ProcessStats.read())
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}

/// A worker's cache of metric handles, so the request path does one dictionary lookup and an
/// atomic increment. Emptied when a new config is installed. Loop thread only.
struct MetricCache {
    struct RequestKey: Hashable {
        var route: String
        var version: String
        var role: SidecarMetrics.Role
        var code: Int
    }
    struct VersionKey: Hashable {
        var model: String
        var version: String
        var role: SidecarMetrics.Role
    }
    /// A compared pair: the live and the shadow version of one model.
    struct ComparedPairKey: Hashable {
        var model: String
        var liveVersion: String
        var shadowVersion: String
    }
    /// A fallback taken: the version that failed and the version answered instead.
    struct FallbackKey: Hashable {
        var model: String
        var fromVersion: String
        var toVersion: String
    }
    /// Something that happened to one version for a reason (a shadow dropped, a stream cut).
    struct ReasonKey: Hashable {
        var model: String
        var version: String
        var reason: String
    }

    var requests: [RequestKey: Counter] = [:]
    var durations: [VersionKey: ValueHistogram] = [:]
    var pairs: [ComparedPairKey: PairHandles] = [:]
    var fallbacks: [FallbackKey: Counter] = [:]
    var sticky: [String: Counter] = [:]
    var dropped: [ReasonKey: Counter] = [:]
    var cuts: [ReasonKey: Counter] = [:]
    var firstBytes: [VersionKey: ValueHistogram] = [:]
    /// SPEC §14's handles: per version and role, the prompt and completion token counters and the
    /// time-to-first-token histogram.
    var llm: [VersionKey: LLMHandles] = [:]
    private var lastFirstByte: (key: VersionKey, handle: ValueHistogram)?
    /// The handles `count` used last: most requests repeat them, and comparing two keys whose
    /// strings share storage costs less than hashing them.
    /// One entry per role: live and shadow answers alternate on a shadowed model.
    private var lastLiveRequest: (key: RequestKey, handle: Counter)?
    private var lastShadowRequest: (key: RequestKey, handle: Counter)?
    private var lastLiveDuration: (key: VersionKey, handle: ValueHistogram)?
    private var lastShadowDuration: (key: VersionKey, handle: ValueHistogram)?
    private var lastPair: (key: ComparedPairKey, handle: PairHandles)?
    /// While shadows are being dropped, every request drops the same one.
    private var lastDropped: (key: ReasonKey, handle: Counter)?

    /// The handle for `key`: the one used last when the key is the same (comparing two keys whose
    /// strings share storage costs less than hashing one), else the table's, else a new one from
    /// `make`; remembered as the last one either way.
    @inline(__always)
    private static func handle<Key: Hashable, Handle>(
        _ key: Key,
        last: inout (key: Key, handle: Handle)?,
        in table: inout [Key: Handle],
        make: () -> Handle
    ) -> Handle {
        if let remembered = last, remembered.key == key { return remembered.handle }
        let handle: Handle
        if let known = table[key] {
            handle = known
        } else {
            handle = make()
            table[key] = handle
        }
        last = (key, handle)
        return handle
    }

    mutating func fallback(_ metrics: SidecarMetrics, model: String, from: String, to: String) -> Counter {
        let key = FallbackKey(model: model, fromVersion: from, toVersion: to)
        if let counter = fallbacks[key] { return counter }
        let counter = metrics.fallbacks(model: model, from: from, to: to)
        fallbacks[key] = counter
        return counter
    }

    mutating func stickyMissing(_ metrics: SidecarMetrics, model: String) -> Counter {
        if let counter = sticky[model] { return counter }
        let counter = metrics.stickyMissing(model: model)
        sticky[model] = counter
        return counter
    }

    mutating func shadowDropped(_ metrics: SidecarMetrics, model: String, version: String, reason: String) -> Counter {
        Self.handle(ReasonKey(model: model, version: version, reason: reason), last: &lastDropped, in: &dropped) {
            metrics.shadowDropped(model: model, version: version, reason: reason)
        }
    }

    mutating func streamCut(_ metrics: SidecarMetrics, model: String, version: String, reason: String) -> Counter {
        let key = ReasonKey(model: model, version: version, reason: reason)
        if let counter = cuts[key] { return counter }
        let counter = metrics.streamsCut(model: model, version: version, reason: reason)
        cuts[key] = counter
        return counter
    }

    mutating func firstByte(
        _ metrics: SidecarMetrics,
        model: String,
        version: String,
        role: SidecarMetrics.Role
    ) -> ValueHistogram {
        Self.handle(VersionKey(model: model, version: version, role: role), last: &lastFirstByte, in: &firstBytes) {
            metrics.upstreamFirstByte(model: model, version: version, role: role)
        }
    }

    struct LLMHandles {
        var promptTokens: Counter
        var completionTokens: Counter
        var firstToken: ValueHistogram
    }

    mutating func llm(
        _ metrics: SidecarMetrics,
        model: String,
        version: String,
        role: SidecarMetrics.Role
    ) -> LLMHandles {
        let key = VersionKey(model: model, version: version, role: role)
        if let handles = llm[key] { return handles }
        let handles = LLMHandles(
            promptTokens: metrics.llmTokens(model: model, version: version, role: role, kind: "prompt"),
            completionTokens: metrics.llmTokens(model: model, version: version, role: role, kind: "completion"),
            firstToken: metrics.llmFirstToken(model: model, version: version, role: role)
        )
        llm[key] = handles
        return handles
    }

    struct PairHandles {
        var match: Counter
        var mismatch: Counter
        var error: Counter
        var flips: Counter
        var absDiff: ValueHistogram
    }

    mutating func count(
        _ metrics: SidecarMetrics,
        route: String,
        model: String,
        version: String,
        role: SidecarMetrics.Role,
        code: Int,
        seconds: Double
    ) {
        let key = RequestKey(route: route, version: version, role: role, code: code)
        let durationKey = VersionKey(model: model, version: version, role: role)
        // Live and shadow answers alternate on a shadowed model: each role remembers its own.
        if role == .live {
            Self.handle(key, last: &lastLiveRequest, in: &requests) {
                metrics.requests(route: route, model: model, version: version, role: role, code: code)
            }.increment()
            Self.handle(durationKey, last: &lastLiveDuration, in: &durations) {
                metrics.duration(model: model, version: version, role: role)
            }.record(seconds)
        } else {
            Self.handle(key, last: &lastShadowRequest, in: &requests) {
                metrics.requests(route: route, model: model, version: version, role: role, code: code)
            }.increment()
            Self.handle(durationKey, last: &lastShadowDuration, in: &durations) {
                metrics.duration(model: model, version: version, role: role)
            }.record(seconds)
        }
    }

    mutating func pair(_ metrics: SidecarMetrics, model: String, live: String, shadow: String) -> PairHandles {
        Self.handle(
            ComparedPairKey(model: model, liveVersion: live, shadowVersion: shadow),
            last: &lastPair,
            in: &pairs
        ) {
            PairHandles(
                match: metrics.comparisons(model: model, live: live, shadow: shadow, outcome: "match"),
                mismatch: metrics.comparisons(model: model, live: live, shadow: shadow, outcome: "mismatch"),
                error: metrics.comparisons(model: model, live: live, shadow: shadow, outcome: "error"),
                flips: metrics.flips(model: model, live: live, shadow: shadow),
                absDiff: metrics.absDiff(model: model, live: live, shadow: shadow)
            )
        }
    }
}
