import EventHTTP
import HTTP1
import Policy
import Routing

/// How the sidecar traces (README "Tracing"): off unless `otlpEndpoint` is set.
public struct TracingOptions: Sendable {
    /// Where spans are exported, OTLP over HTTP/protobuf: `http://host:port` posts to
    /// `/v1/traces`; a URL with a path is used as it is. Nil (default): tracing is off and a
    /// client's `traceparent` is forwarded as it came.
    public var otlpEndpoint: String?
    /// The `service.name` resource attribute. Default `switchyard`.
    public var serviceName = "switchyard"
    /// The share of requests without a valid caller `traceparent` that are recorded, 0 to 1.
    /// Default 1. A caller's `traceparent` decides for its own requests (parent-based).
    public var sampleRatio = 1.0
    /// Ended spans waiting for export; more are dropped and counted. Default 8192 (the
    /// OpenTelemetry SDKs' 2048 lasts ~10 ms at 100 % sampling of 100k requests/s, less than
    /// the exporter thread may wait for a CPU it shares with a busy worker; 8192 spans hold
    /// a few MiB).
    public var maxQueuedSpans = 8_192
    /// Spans per export request; reaching it starts an export early. Default 512.
    public var maxBatchSpans = 512
    /// The longest a span waits for export. Default 5 s.
    public var exportIntervalMilliseconds = 5_000
    /// One export request's deadline (connect, send, answer). Default 10 s.
    public var exportTimeoutMilliseconds = 10_000

    public init() {}
}

/// A W3C Trace Context `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header).
struct TraceParent: Equatable, Sendable {
    var traceIDHigh: UInt64
    var traceIDLow: UInt64
    var spanID: UInt64
    var flags: UInt8

    var isSampled: Bool { flags & 0x01 != 0 }

    /// Parses a header value strictly: lower-case hex only; version `ff` is invalid; version
    /// `00` is exactly 55 characters; a later version may be longer, with a `-` after the
    /// 55th character (its further fields are ignored); the trace id and the parent id are not
    /// all zero. Nil when any of it fails (the caller then starts a new trace).
    static func parse(_ value: String) -> TraceParent? {
        var value = value
        return value.withUTF8 { parse($0) }
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> TraceParent? {
        guard bytes.count >= 55, let version = hex(bytes, 0, 2), version != 0xFF else { return nil }
        if version == 0 {
            guard bytes.count == 55 else { return nil }
        } else if bytes.count > 55 {
            guard bytes[55] == UInt8(ascii: "-") else { return nil }
        }
        let dash = UInt8(ascii: "-")
        guard bytes[2] == dash, bytes[35] == dash, bytes[52] == dash,
            let high = hex(bytes, 3, 16), let low = hex(bytes, 19, 16), high | low != 0,
            let span = hex(bytes, 36, 16), span != 0,
            let flags = hex(bytes, 53, 2)
        else { return nil }
        return TraceParent(traceIDHigh: high, traceIDLow: low, spanID: span, flags: UInt8(flags))
    }

    /// `count` lower-case hex digits from `start`, or nil.
    private static func hex(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int) -> UInt64? {
        var value: UInt64 = 0
        for k in start..<(start + count) {
            let byte = bytes[k]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte &- UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte &- UInt8(ascii: "a") &+ 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    /// The version `00` header value, `00-<trace id>-<parent id>-<flags>`, written in place.
    var header: String {
        String(unsafeUninitializedCapacity: 55) { out in
            let base = out.baseAddress!
            base[0] = 0x30
            base[1] = 0x30
            base[2] = UInt8(ascii: "-")
            Self.putHex(traceIDHigh, at: base + 3)
            Self.putHex(traceIDLow, at: base + 19)
            base[35] = UInt8(ascii: "-")
            Self.putHex(spanID, at: base + 36)
            base[52] = UInt8(ascii: "-")
            base[53] = Self.hexDigit(flags >> 4)
            base[54] = Self.hexDigit(flags & 0x0F)
            return 55
        }
    }

    /// `value` as 16 lower-case hex digits at `out`, the last one first.
    @inline(__always)
    private static func putHex(_ value: UInt64, at out: UnsafeMutablePointer<UInt8>) {
        var rest = value
        var index = 15
        while index >= 0 {
            out[index] = hexDigit(UInt8(truncatingIfNeeded: rest) & 0x0F)
            rest >>= 4
            index &-= 1
        }
    }

    @inline(__always)
    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 0x30 &+ nibble : 0x57 &+ nibble
    }
}

/// One worker's tracer: the sampler, and the ended spans it has not yet handed to the shared
/// exporter. They go in chunks (`flushSpans` at a time, or after `flushDelayMilliseconds`), so
/// the exporter's lock is taken once per chunk, not per span. Its worker's loop thread only
/// (the drain calls `flush` there too).
final class Tracer: @unchecked Sendable {
    let exporter: OTLPExporter
    /// A new trace is recorded when the low 64 bits of its id are below this (ratio × 2⁶⁴,
    /// as OpenTelemetry's TraceIdRatioBased sampler compares a part of the id).
    private let sampleThreshold: UInt64
    private let samplesEveryTrace: Bool
    private let flushSpans: Int
    private let flushDelayMilliseconds: Int
    // Unchecked (loop thread only, no access overlaps another): checking `pending` and
    // `lastUpstream` too costs +300 instructions/request, 0.6 % (bench/instructions.sh
    // "--otlp-endpoint … --trace-sample-ratio 1" minus bench/instructions.sh "": 14.9k → 15.2k).
    @exclusivity(unchecked) private var pending: [SpanRecord] = []
    private var isFlushScheduled = false
    /// The upstream address `upstream(of:version:)` found last: most client spans name the one
    /// before them, and comparing a generation, an index and a name costs less than copying the
    /// version's spec out of the routing table.
    @exclusivity(unchecked) private var lastUpstream:
        (generation: Int, routeIndex: Int, version: String, address: String?, port: Int?)?

    init(options: TracingOptions, exporter: OTLPExporter) {
        self.exporter = exporter
        let ratio = min(1, max(0, options.sampleRatio))
        samplesEveryTrace = ratio >= 1
        sampleThreshold = ratio >= 1 ? .max : UInt64(ratio * 18_446_744_073_709_551_616.0)
        flushSpans = min(64, max(1, options.maxBatchSpans))
        flushDelayMilliseconds = min(100, max(1, options.exportIntervalMilliseconds))
    }

    /// Whether a new trace (no valid caller `traceparent`) is recorded.
    func samples(traceIDLow: UInt64) -> Bool {
        samplesEveryTrace || traceIDLow < sampleThreshold
    }

    /// Keeps an ended span for the next chunk; a timer on `loop` sends a chunk that does not fill.
    func record(_ span: consuming SpanRecord, loop: EventLoop) {
        if pending.isEmpty { pending.reserveCapacity(flushSpans) }
        pending.append(span)
        if pending.count >= flushSpans {
            flush()
        } else if !isFlushScheduled {
            isFlushScheduled = true
            loop.scheduleTimer(afterMilliseconds: flushDelayMilliseconds) { [self] in
                isFlushScheduled = false
                flush()
            }
        }
    }

    /// The remote version's host (or Unix socket path) and port, as its config names them.
    func upstream(of exchange: Exchange, version: String) -> (address: String?, port: Int?) {
        let generation = exchange.snapshot.generation
        if lastUpstream?.generation == generation, lastUpstream?.routeIndex == exchange.routeIndex,
            lastUpstream?.version == version
        {
            return (lastUpstream?.address, lastUpstream?.port)
        }
        var address: String?
        var port: Int?
        if let spec = exchange.snapshot.routing.version(version, routeIndex: exchange.routeIndex),
            case .remote(let remote) = spec.backend
        {
            address = remote.socketPath ?? remote.host
            if remote.socketPath == nil { port = remote.port }
        }
        lastUpstream = (generation, exchange.routeIndex, version, address, port)
        return (address, port)
    }

    /// Hands the kept spans to the exporter (also when the worker has drained).
    func flush() {
        guard !pending.isEmpty else { return }
        var chunk: [SpanRecord] = []
        swap(&chunk, &pending)
        exporter.submit(chunk)
    }
}

/// A request's place in its trace (loop thread), kept in its `Exchange` (nothing allocated for
/// a request not recorded). Made for every request while tracing is on, sampled or not: its
/// ids are propagated either way; `details` exist only for a recorded request.
struct RequestTrace {
    var traceIDHigh: UInt64
    var traceIDLow: UInt64
    /// The server span's id: the parent of every downstream span.
    var spanID: UInt64
    /// The caller's span id; 0 when the sidecar started the trace.
    var parentSpanID: UInt64
    var isSampled: Bool
    /// What a recorded request's spans say beyond ids; nil for a request not recorded, so that
    /// copying a `RequestTrace` copies no strings.
    let details: TraceDetails?

    init(
        traceIDHigh: UInt64,
        traceIDLow: UInt64,
        spanID: UInt64,
        parentSpanID: UInt64,
        isSampled: Bool,
        traceState: String? = nil
    ) {
        self.traceIDHigh = traceIDHigh
        self.traceIDLow = traceIDLow
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.isSampled = isSampled
        details = isSampled ? TraceDetails(traceState: traceState) : nil
    }

    /// The caller's `tracestate`, exported with the spans (it is forwarded either way).
    var traceState: String? { details?.traceState }
    /// Why routing chose the version (recorded requests only).
    var reason: Decision.Reason? {
        get { details?.reason }
        nonmutating set { details?.reason = newValue }
    }
    /// The sidecar's error code when it answered with one of its own errors (recorded requests only).
    var errorType: String? {
        get { details?.errorType }
        nonmutating set { details?.errorType = newValue }
    }
}

/// The parts of a recorded request's trace that are not ids (loop thread).
final class TraceDetails {
    let traceState: String?
    var reason: Decision.Reason?
    var errorType: String?

    init(traceState: String?) { self.traceState = traceState }
}

/// A downstream span in progress: 0 ids when the request is not recorded (the closure that
/// completes the exchange captures it for free).
struct ChildSpan {
    var spanID: UInt64 = 0
    var startNanoseconds: UInt64 = 0
    var isRecording: Bool { startNanoseconds != 0 }
}

/// An ended span as the exporter encodes it. The request path fills ids, monotonic times and
/// references to strings it already holds; names and attribute values are made on the
/// exporter thread (`OTLPEncoder`).
struct SpanRecord: Sendable {
    enum Kind: UInt8, Sendable {
        case `internal` = 1
        case server = 2
        case client = 3
    }

    var kind: Kind
    var traceIDHigh: UInt64
    var traceIDLow: UInt64
    var spanID: UInt64
    /// 0 for a root span.
    var parentSpanID: UInt64
    /// The parent is the caller's span (another process).
    var parentIsRemote = false
    var traceState: String?
    /// CLOCK_MONOTONIC nanoseconds; the exporter converts them to Unix time.
    var startNanoseconds: UInt64
    var endNanoseconds: UInt64
    var method = ""
    /// The request target (server span): `url.path` is its part before any `?`.
    var path: String?
    var requestID = ""
    var route = ""
    var model = ""
    /// The version routing chose (server span) or the one asked (client span).
    var version = ""
    var reason: Decision.Reason?
    /// Server span: the fallback was asked after the chosen version failed. Client span: this
    /// attempt is the fallback.
    var isFallback = false
    var isShadow = false
    var statusCode: Int?
    /// `error.type`: the sidecar's error code, or the status code of a 5xx without one.
    var errorType: String?
    /// The upstream's host (or Unix socket path) and port (client spans).
    var serverAddress: String?
    var serverPort: Int?
}

extension Decision.Reason {
    /// The reason as `switchyard explain` words it, less what is the client's own data: a
    /// sticky key's value and the random bucket drawn.
    var traceDescription: String {
        let parts = traceDescriptionParts
        return parts.0 + parts.1 + parts.2 + parts.3 + parts.4
    }

    /// `traceDescription` in the parts it is joined from (the exporter writes them one after
    /// the other, joining nothing).
    var traceDescriptionParts: (String, String, String, String, String) {
        switch self {
        case .pinnedByRoute(let name): return ("pinned by route: ", name, "", "", "")
        case .pinnedByPath(let name): return ("pinned by path: ", name, "", "", "")
        case .pinnedByHeader(let header, let value): return ("pinned by header ", header, ": ", value, "")
        case .pinnedByMessage(let name): return ("pinned by message: ", name, "", "", "")
        case .stickySplit(_, let source):
            let (kind, name) = source.parts
            return ("split: sticky key (", kind, name, ") by weighted rendezvous", "")
        case .randomSplit(_, .noStickyConfigured):
            return ("split: random bucket (no sticky key configured)", "", "", "", "")
        case .randomSplit(_, .stickyKeyMissing(let source)):
            let (kind, name) = source.parts
            return ("split: random bucket (sticky key ", kind, name, " missing)", "")
        }
    }

    /// True for a split on a sticky key, false for a sticky policy whose key was missing, nil
    /// when the policy has no sticky key or the version was pinned.
    var stickyKeyPresent: Bool? {
        switch self {
        case .stickySplit: return true
        case .randomSplit(_, .stickyKeyMissing): return false
        default: return nil
        }
    }
}

extension KeySource {
    /// `description` in two parts, `header:` and the name, not joined.
    fileprivate var parts: (String, String) {
        switch self {
        case .header(let name): return ("header:", name)
        case .cookie(let name): return ("cookie:", name)
        case .query(let name): return ("query:", name)
        case .body(let pointer): return ("body:", pointer)
        }
    }
}

// MARK: - The request path's hooks

extension Worker {
    /// Joins the caller's trace (one valid `traceparent`) or starts one, and decides whether it
    /// is recorded. Tracing on only; loop thread.
    func beginTrace(_ exchange: Exchange, tracer: Tracer) {
        var parent: TraceParent?
        var traceparents = 0
        var traceState: String?
        let headers = exchange.request.head.headers
        for index in 0..<headers.count {
            switch headers.withField(at: index, { name, _ in name.count }) {
            case 11 where headers.hasName("traceparent", at: index):
                traceparents += 1
                parent = TraceParent.parse(headers.value(at: index))
            case 10 where headers.hasName("tracestate", at: index):
                // Several fields are one list (RFC 9110 §5.3).
                let value = headers.value(at: index)
                traceState = traceState.map { "\($0),\(value)" } ?? value
            default:
                continue
            }
        }
        if traceparents == 1, let parent {
            exchange.trace = RequestTrace(
                traceIDHigh: parent.traceIDHigh,
                traceIDLow: parent.traceIDLow,
                spanID: nonZeroID(),
                parentSpanID: parent.spanID,
                isSampled: parent.isSampled,
                traceState: parent.isSampled ? traceState : nil
            )
        } else {
            // A new trace: a caller's tracestate belongs to no trace now.
            let high = random.next()
            let low = nonZeroID()
            exchange.trace = RequestTrace(
                traceIDHigh: high,
                traceIDLow: low,
                spanID: nonZeroID(),
                parentSpanID: 0,
                isSampled: tracer.samples(traceIDLow: low)
            )
        }
    }

    private func nonZeroID() -> UInt64 {
        let id = random.next()
        return id == 0 ? 1 : id
    }

    /// A downstream span: its id and, when the request is recorded, its start.
    func beginChildSpan(_ exchange: Exchange, _ child: inout ChildSpan) {
        guard let trace = exchange.trace else { return }
        child.spanID = nonZeroID()
        if trace.isSampled { child.startNanoseconds = Monotonic.nanoseconds() }
    }

    /// A downstream request's span begun, and the `traceparent` it carries (the request's
    /// sampled flag, the span's id as parent id).
    func beginClientSpan(_ exchange: Exchange, _ child: inout ChildSpan) -> String? {
        beginChildSpan(exchange, &child)
        guard let trace = exchange.trace else { return nil }
        return TraceParent(
            traceIDHigh: trace.traceIDHigh,
            traceIDLow: trace.traceIDLow,
            spanID: child.spanID,
            flags: trace.isSampled ? 0x01 : 0x00
        ).header
    }

    /// Ends a recorded downstream span: a CLIENT span for a remote version, an INTERNAL one
    /// for an embedded evaluation. The upstream's address is looked up here, for recorded
    /// spans only: the request path's completion closure does not carry it.
    func endChildSpan(
        _ exchange: Exchange,
        _ child: ChildSpan,
        version: String,
        isShadow: Bool,
        isRemote: Bool,
        result: VersionResult
    ) {
        guard let trace = exchange.trace, let tracer else { return }
        let statusCode: Int?
        let errorType: String?
        switch result {
        case .answered(let reply):
            statusCode = reply.status
            errorType = reply.status >= 500 ? String(reply.status) : nil
        case .failed(let error, let reply):
            statusCode = reply?.status
            errorType = error.code
        }
        let upstream: (address: String?, port: Int?) =
            isRemote ? tracer.upstream(of: exchange, version: version) : (nil, nil)
        // Made in one expression and handed over as it is: a record filled field by field was
        // copied into the tracer's chunk, then destroyed here.
        tracer.record(
            SpanRecord(
                kind: isRemote ? .client : .internal,
                traceIDHigh: trace.traceIDHigh,
                traceIDLow: trace.traceIDLow,
                spanID: child.spanID,
                parentSpanID: trace.spanID,
                traceState: trace.traceState,
                startNanoseconds: child.startNanoseconds,
                endNanoseconds: Monotonic.nanoseconds(),
                method: exchange.request.head.method,
                requestID: exchange.requestID,
                route: exchange.routeName,
                model: exchange.model,
                version: version,
                isFallback: !isShadow && exchange.failedVersion != nil,
                isShadow: isShadow,
                statusCode: statusCode,
                errorType: errorType,
                serverAddress: upstream.address,
                serverPort: upstream.port
            ),
            loop: loop
        )
    }

    /// Ends the recorded server span once the live answer has ended. `version`: the one that
    /// answered (nil when the sidecar answered itself).
    func endServerSpan(_ exchange: Exchange, status: Int, endNanoseconds: UInt64) {
        guard let trace = exchange.trace, trace.isSampled, let tracer else { return }
        tracer.record(
            SpanRecord(
                kind: .server,
                traceIDHigh: trace.traceIDHigh,
                traceIDLow: trace.traceIDLow,
                spanID: trace.spanID,
                parentSpanID: trace.parentSpanID,
                parentIsRemote: trace.parentSpanID != 0,
                traceState: trace.traceState,
                startNanoseconds: exchange.startNanoseconds,
                endNanoseconds: endNanoseconds,
                method: exchange.request.head.method,
                // The target as it came (no copy here); the exporter cuts the query off.
                path: exchange.request.head.target,
                requestID: exchange.requestID,
                route: exchange.routeName,
                model: exchange.model,
                version: exchange.version,
                reason: trace.reason,
                isFallback: exchange.failedVersion != nil,
                statusCode: status,
                errorType: trace.errorType ?? (status >= 500 ? String(status) : nil)
            ),
            loop: loop
        )
    }
}
