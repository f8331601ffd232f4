import Foundation
import Logging
import Prometheus
import Routing

#if canImport(Glibc)
import Glibc
#endif

/// Sends ended spans to an OpenTelemetry collector, OTLP over HTTP/protobuf, from one
/// background thread, like the OpenTelemetry BatchSpanProcessor: spans queue in memory up to
/// `maxQueuedSpans` (more are dropped and counted); the thread exports as soon as
/// `maxBatchSpans` are waiting, or every `exportIntervalMilliseconds`, each request bounded by
/// `exportTimeoutMilliseconds`. A failed export is counted and its spans dropped (no retry:
/// the next batch is already queuing). `close()` exports what is queued (drain).
///
/// The encoding (`OTLPEncoder`) and the HTTP/1.1 client (`OTLPHTTPClient`) are the project's
/// own: swift-otel brings SwiftNIO and async-http-client, which the sidecar does not use.
final class OTLPExporter: @unchecked Sendable {
    let endpoint: OTLPEndpoint
    private let options: TracingOptions
    private let metrics: SidecarMetrics
    private let logger: Logger
    private let encoder: OTLPEncoder
    private let condition = NSCondition()
    // Guarded by `condition`: chunks of spans from the workers, and how many spans they hold.
    private var queue: [[SpanRecord]] = []
    private var queuedSpans = 0
    private var closed = false
    private var finished = false
    /// The last export failed (exporter thread): a failure is logged once per streak.
    private var failing = false
    /// Unix time minus the monotonic clock (exporter thread): kept while the two agree within
    /// a millisecond, so that spans of one request converted in different batches keep their
    /// order; a stepped wall clock is followed at the next export.
    private var epochOffsetNanoseconds = OTLPEncoder.epochOffsetNanoseconds()
    /// The collector connection (exporter thread).
    private var client: OTLPHTTPClient
    /// One batch's encoded spans, and one span's (exporter thread; reused).
    private let batch = ProtobufWriter(capacity: 256 << 10)
    private let scratch = ProtobufWriter(capacity: 1_024)
    private let droppedQueueFull: Counter
    private let batchSpans: Int

    init(endpoint: OTLPEndpoint, options: TracingOptions, metrics: SidecarMetrics, logger: Logger) {
        self.endpoint = endpoint
        self.options = options
        self.metrics = metrics
        self.logger = logger
        self.encoder = OTLPEncoder(serviceName: options.serviceName, serviceVersion: SwitchyardVersion.current)
        self.client = OTLPHTTPClient(endpoint: endpoint)
        let capacity = max(1, options.maxQueuedSpans)
        self.batchSpans = min(max(1, options.maxBatchSpans), capacity)
        droppedQueueFull = metrics.traceSpansDropped(reason: "queue_full")
        // Series that count events exist from the start at 0.
        _ = metrics.traceSpansDropped(reason: "export_failed")
        _ = metrics.traceExports(result: "success")
        _ = metrics.traceExports(result: "failure")
        _ = metrics.traceSpansExported()
        // The thread holds the exporter until `close()` ends its loop.
        let thread = Thread { [self] in self.exportLoop() }
        thread.name = "switchyard-otlp-exporter"
        thread.start()
    }

    /// Queues ended spans (a worker's chunk); those beyond `maxQueuedSpans` are dropped and
    /// counted. Any thread; takes a lock, never waits for I/O.
    func submit(_ spans: consuming [SpanRecord]) {
        var spans = spans
        condition.lock()
        let room = closed ? 0 : max(0, options.maxQueuedSpans - queuedSpans)
        let dropped = max(0, spans.count - room)
        if dropped > 0 { spans.removeLast(dropped) }
        let wasBelowBatch = queuedSpans < batchSpans
        if !spans.isEmpty {
            queuedSpans += spans.count
            queue.append(spans)
        }
        let isBatchFull = wasBelowBatch && queuedSpans >= batchSpans
        condition.unlock()
        if dropped > 0 { droppedQueueFull.increment(by: Int64(dropped)) }
        if isBatchFull { condition.signal() }
    }

    /// Exports what is queued and stops the thread. Blocks until done (at most one export
    /// timeout per batch queued).
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func exportLoop() {
        let interval = Double(max(1, options.exportIntervalMilliseconds)) / 1000
        while true {
            condition.lock()
            let deadline = Date().addingTimeInterval(interval)
            while !closed && queuedSpans < batchSpans {
                if !condition.wait(until: deadline) { break }
            }
            var taken: [[SpanRecord]] = []
            swap(&taken, &queue)
            queuedSpans = 0
            let isClosing = closed
            condition.unlock()
            exportBatches(taken, isClosing: isClosing)
            if isClosing {
                client.close()
                condition.lock()
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
        }
    }

    /// Encodes the chunks into batches of up to `batchSpans` and posts each. While closing, a
    /// failed post (or one that failed just before) drops the rest: the drain does not wait on
    /// a collector that is not answering.
    private func exportBatches(_ chunks: [[SpanRecord]], isClosing: Bool) {
        let offset = OTLPEncoder.epochOffsetNanoseconds()
        if abs(offset - epochOffsetNanoseconds) > 1_000_000 { epochOffsetNanoseconds = offset }
        var inBatch = 0
        // A collector that failed the last export is not waited on again by the drain.
        var givenUp = isClosing && failing
        func send() {
            if givenUp {
                metrics.traceSpansDropped(reason: "export_failed").increment(by: Int64(inBatch))
            } else if !export(spans: inBatch) && isClosing {
                givenUp = true
            }
            batch.removeAll()
            inBatch = 0
        }
        for chunk in chunks {
            var start = 0
            while start < chunk.count {
                let end = min(chunk.count, start + batchSpans - inBatch)
                encoder.encodeSpans(
                    chunk[start..<end],
                    epochOffsetNanoseconds: epochOffsetNanoseconds,
                    into: batch,
                    scratch: scratch
                )
                inBatch += end - start
                start = end
                if inBatch == batchSpans { send() }
            }
        }
        if inBatch > 0 { send() }
    }

    /// Posts the batch encoded in `batch` (`spans` spans); counts the outcome. Exporter thread.
    private func export(spans: Int) -> Bool {
        // The request's bytes before the spans, then the spans where they were encoded: the
        // batch is not copied into a request of its own.
        let prefix = encoder.requestPrefix(spans: batch)
        let result = batch.withWrittenBytes { spans in
            client.post(
                prefix: prefix,
                spans,
                contentType: "application/x-protobuf",
                timeoutMilliseconds: options.exportTimeoutMilliseconds
            )
        }
        let problem: String?
        switch result {
        case .success(let status) where (200..<300).contains(status): problem = nil
        case .success(let status): problem = "the collector answered \(status)"
        case .failure(let error): problem = error.message
        }
        if let problem {
            metrics.traceExports(result: "failure").increment()
            metrics.traceSpansDropped(reason: "export_failed").increment(by: Int64(spans))
            if !failing {
                failing = true
                logger.warning(
                    "trace export failed; spans are dropped until it works again",
                    metadata: ["endpoint": "\(endpoint)", "error": "\(problem)"]
                )
            }
            return false
        }
        metrics.traceExports(result: "success").increment()
        metrics.traceSpansExported().increment(by: Int64(spans))
        if failing {
            failing = false
            logger.info("trace export works again", metadata: ["endpoint": "\(endpoint)"])
        }
        return true
    }
}

/// Where OTLP/HTTP spans are posted: `http://host[:port][/path]`. Without a path (or with
/// `/`) the path is `/v1/traces`, as for OTEL_EXPORTER_OTLP_ENDPOINT; a path is used as it is,
/// as for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT. Plain HTTP only; the port defaults to 80.
public struct OTLPEndpoint: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var path: String

    /// The endpoint, or a message saying what is wrong with `text`.
    public static func parse(_ text: String) -> Result<OTLPEndpoint, OTLPEndpointError> {
        let scheme = "http://"
        guard text.lowercased().hasPrefix(scheme) else {
            if text.lowercased().hasPrefix("https://") {
                return .failure(OTLPEndpointError("expects an http:// URL (https is not supported), got '\(text)'"))
            }
            return .failure(OTLPEndpointError("expects an http://host:port URL, got '\(text)'"))
        }
        let rest = text.dropFirst(scheme.count)
        let authority = rest.prefix { $0 != "/" }
        var path = String(rest.dropFirst(authority.count))
        if path.isEmpty || path == "/" { path = "/v1/traces" }
        guard !authority.contains("@"), !authority.isEmpty else {
            return .failure(OTLPEndpointError("expects http://host:port with a host and no user name, got '\(text)'"))
        }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                return .failure(OTLPEndpointError("has an unclosed '[' in '\(text)'"))
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return .failure(OTLPEndpointError("has a bad port in '\(text)'")) }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        var port = 80
        if let portText {
            guard let value = Int(portText), (1...65_535).contains(value) else {
                return .failure(OTLPEndpointError("has a bad port in '\(text)'"))
            }
            port = value
        }
        guard !host.isEmpty else { return .failure(OTLPEndpointError("has no host in '\(text)'")) }
        return .success(OTLPEndpoint(host: String(host), port: port, path: path))
    }

    public var description: String {
        let shown = host.contains(":") ? "[\(host)]" : host
        return "http://\(shown):\(port)\(path)"
    }
}

public struct OTLPEndpointError: Error, CustomStringConvertible {
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - Encoding

/// Encodes spans as an OTLP `ExportTraceServiceRequest` in the protobuf wire format, field
/// numbers from opentelemetry-proto (Apache-2.0): collector/trace/v1/trace_service.proto,
/// trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto.
///
/// Written for the exporter thread's budget (it shares the workers' CPUs): attribute keys and
/// the resource are encoded once, each span is written into one reused buffer whose length is
/// then known, the enclosing messages' lengths are added up rather than buffered, and records
/// are read where they lie (none of their strings is retained).
struct OTLPEncoder: Sendable {
    /// `ResourceSpans.resource` (field 1) with its attributes, encoded once.
    private let resource: [UInt8]
    /// `ScopeSpans.scope` (field 1): InstrumentationScope name = 1, version = 2.
    private let scope: [UInt8]

    init(serviceName: String, serviceVersion: String) {
        let attributes = ProtobufWriter()
        // Resource.attributes = 1
        attributes.attribute(1, AttributeKey("service.name"), string: serviceName)
        attributes.attribute(1, AttributeKey("service.version"), string: serviceVersion)
        attributes.attribute(1, AttributeKey("telemetry.sdk.name"), string: "switchyard")
        attributes.attribute(1, AttributeKey("telemetry.sdk.language"), string: "swift")
        attributes.attribute(1, AttributeKey("telemetry.sdk.version"), string: serviceVersion)
        let resource = ProtobufWriter()
        resource.message(1, attributes)
        self.resource = resource.bytes
        let fields = ProtobufWriter()
        fields.string(1, "switchyard")
        fields.string(2, serviceVersion)
        let scope = ProtobufWriter()
        scope.message(1, fields)
        self.scope = scope.bytes
    }

    /// Unix time minus the monotonic clock, now: what converts `SpanRecord` times.
    static func epochOffsetNanoseconds() -> Int64 {
        var real = timespec()
        clock_gettime(CLOCK_REALTIME, &real)
        let monotonic = Monotonic.nanoseconds()
        let unix = Int64(real.tv_sec) &* 1_000_000_000 &+ Int64(real.tv_nsec)
        return unix &- Int64(bitPattern: monotonic)
    }

    /// One request's bytes for `spans`.
    func encode(_ spans: ArraySlice<SpanRecord>, epochOffsetNanoseconds offset: Int64) -> [UInt8] {
        let list = ProtobufWriter(capacity: spans.count * 512)
        encodeSpans(spans, epochOffsetNanoseconds: offset, into: list, scratch: ProtobufWriter())
        return request(spans: list)
    }

    /// Appends `spans` to `list` as `ScopeSpans.spans` (field 2) entries, each written once into
    /// `scratch` and then copied after its length.
    func encodeSpans(
        _ spans: ArraySlice<SpanRecord>,
        epochOffsetNanoseconds offset: Int64,
        into list: ProtobufWriter,
        scratch span: ProtobufWriter
    ) {
        spans.withUnsafeBufferPointer { records in
            guard let first = records.baseAddress else { return }
            for index in records.indices {
                span.removeAll()
                encodeSpan(first + index, offset: offset, into: span)
                list.message(2, span)
            }
        }
    }

    /// The `ExportTraceServiceRequest` holding the spans `encodeSpans` wrote into `list`.
    func request(spans list: ProtobufWriter) -> [UInt8] {
        var out = requestPrefix(spans: list)
        list.withWrittenBytes { out.append(contentsOf: $0) }
        return out
    }

    /// The `ExportTraceServiceRequest`'s bytes that come before the spans `encodeSpans` wrote
    /// into `list` (which follow them as they are).
    func requestPrefix(spans list: ProtobufWriter) -> [UInt8] {
        let scopeSpansLength = scope.count + list.count
        let resourceSpansLength =
            resource.count + 1 + ProtobufWriter.varintSize(UInt64(scopeSpansLength)) + scopeSpansLength
        let out = ProtobufWriter(capacity: resource.count + scope.count + 32)
        // ExportTraceServiceRequest.resource_spans = 1
        out.tag(1, wireType: 2)
        out.rawVarint(UInt64(resourceSpansLength))
        out.append(resource)  // ResourceSpans.resource = 1
        // ResourceSpans.scope_spans = 2
        out.tag(2, wireType: 2)
        out.rawVarint(UInt64(scopeSpansLength))
        out.append(scope)
        return out.bytes
    }

    /// One span's fields. `record` is read through the pointer: a copy would retain every string.
    private func encodeSpan(_ record: UnsafePointer<SpanRecord>, offset: Int64, into out: ProtobufWriter) {
        let kind = record.pointee.kind
        out.id(1, record.pointee.traceIDHigh, record.pointee.traceIDLow)  // trace_id
        out.id(2, record.pointee.spanID)  // span_id
        if record.pointee.traceState?.isEmpty == false { out.string(3, record.pointee.traceState!) }  // trace_state
        let parentSpanID = record.pointee.parentSpanID
        if parentSpanID != 0 { out.id(4, parentSpanID) }  // parent_span_id
        // name = 5
        switch kind {
        case .server where record.pointee.route.isEmpty: out.string(5, record.pointee.method)
        case .server: out.string(5, record.pointee.method, " ", record.pointee.route)
        case .client: out.string(5, record.pointee.method, " ", record.pointee.version)
        case .internal: out.string(5, "evaluate", " ", record.pointee.version)
        }
        out.varint(6, UInt64(kind.rawValue))  // kind
        // start_time_unix_nano = 7, end_time_unix_nano = 8
        out.fixed64(7, UInt64(bitPattern: Int64(bitPattern: record.pointee.startNanoseconds) &+ offset))
        out.fixed64(8, UInt64(bitPattern: Int64(bitPattern: record.pointee.endNanoseconds) &+ offset))
        // attributes = 9
        out.attribute(9, AttributeKey.method, string: record.pointee.method)
        if record.pointee.path != nil { out.attribute(9, AttributeKey.path, pathOf: record.pointee.path!) }
        if record.pointee.serverAddress != nil {
            out.attribute(9, AttributeKey.serverAddress, string: record.pointee.serverAddress!)
        }
        if let port = record.pointee.serverPort { out.attribute(9, AttributeKey.serverPort, int: Int64(port)) }
        let statusCode = record.pointee.statusCode
        if let statusCode { out.attribute(9, AttributeKey.statusCode, int: Int64(statusCode)) }
        let hasErrorType = record.pointee.errorType != nil
        if hasErrorType { out.attribute(9, AttributeKey.errorType, string: record.pointee.errorType!) }
        // The request id and the route are the server span's; its children say what differs.
        if kind == .server {
            out.attribute(9, AttributeKey.requestID, string: record.pointee.requestID)
            if !record.pointee.route.isEmpty { out.attribute(9, AttributeKey.route, string: record.pointee.route) }
        }
        if !record.pointee.model.isEmpty { out.attribute(9, AttributeKey.model, string: record.pointee.model) }
        let hasVersion = !record.pointee.version.isEmpty
        if hasVersion { out.attribute(9, AttributeKey.version, string: record.pointee.version) }
        if record.pointee.reason != nil {
            out.attribute(9, AttributeKey.why, reason: record.pointee.reason!)
            if let present = record.pointee.reason!.stickyKeyPresent {
                out.attribute(9, AttributeKey.stickyKeyPresent, bool: present)
            }
        }
        if kind != .server { out.attribute(9, AttributeKey.role, string: record.pointee.isShadow ? "shadow" : "live") }
        if hasVersion { out.attribute(9, AttributeKey.fallback, bool: record.pointee.isFallback) }
        // status = 15: Status.code = 3 (STATUS_CODE_ERROR = 2), message = 2. Unset otherwise.
        if (statusCode ?? 0) >= 500 || (statusCode == nil && hasErrorType) {
            let messageLength = hasErrorType ? record.pointee.errorType!.utf8.count : 0
            let messageField = hasErrorType ? 1 + ProtobufWriter.varintSize(UInt64(messageLength)) + messageLength : 0
            out.tag(15, wireType: 2)
            out.rawVarint(UInt64(messageField + 2))
            if hasErrorType { out.string(2, record.pointee.errorType!) }
            out.varint(3, 2)
        }
        // flags = 16 (fixed32): the trace flags (sampled), and whether the parent is remote
        // (SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK 0x100, SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK 0x200).
        var flags: UInt32 = 0x01
        if parentSpanID != 0 { flags |= 0x100 | (record.pointee.parentIsRemote ? 0x200 : 0) }
        out.fixed32(16, flags)
    }
}

/// An attribute key: a static string (read in place, nothing retained), shorter than 128
/// bytes (its length is one byte).
struct AttributeKey: Sendable {
    let key: StaticString

    init(_ key: StaticString) {
        precondition(key.utf8CodeUnitCount < 0x80 && key.hasPointerRepresentation, "an attribute key is short ASCII")
        self.key = key
    }

    static let method = AttributeKey("http.request.method")
    static let path = AttributeKey("url.path")
    static let serverAddress = AttributeKey("server.address")
    static let serverPort = AttributeKey("server.port")
    static let statusCode = AttributeKey("http.response.status_code")
    static let errorType = AttributeKey("error.type")
    static let requestID = AttributeKey("switchyard.request_id")
    static let route = AttributeKey("switchyard.route")
    static let model = AttributeKey("switchyard.model")
    static let version = AttributeKey("switchyard.version")
    static let why = AttributeKey("switchyard.why")
    static let stickyKeyPresent = AttributeKey("switchyard.sticky_key_present")
    static let role = AttributeKey("switchyard.role")
    static let fallback = AttributeKey("switchyard.fallback")
}

/// The protobuf wire format (https://protobuf.dev/programming-guides/encoding/): varints,
/// fixed 32- and 64-bit little-endian values, and length-delimited bytes, strings and
/// messages, written into memory of its own (a byte is a store, not an array append). A
/// sub-message is written into a writer of its own and appended after its length
/// (`message(_:_:)`), or its length is added up first (`attribute`). Exporter thread only.
final class ProtobufWriter {
    private var storage: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int = 256) {
        self.capacity = max(16, capacity)
        storage = .allocate(capacity: self.capacity)
    }

    deinit { storage.deallocate() }

    /// What has been written.
    var bytes: [UInt8] { Array(UnsafeBufferPointer(start: storage, count: count)) }

    /// What has been written, in place.
    func withWrittenBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage, count: count))
    }

    /// Empties the writer, keeping its memory.
    func removeAll() { count = 0 }

    static func varintSize(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    /// Room for `more` bytes.
    @inline(__always)
    private func reserve(_ more: Int) {
        if count + more > capacity { grow(to: count + more) }
    }

    private func grow(to needed: Int) {
        var next = capacity * 2
        while next < needed { next *= 2 }
        let larger = UnsafeMutablePointer<UInt8>.allocate(capacity: next)
        larger.update(from: storage, count: count)
        storage.deallocate()
        storage = larger
        capacity = next
    }

    @inline(__always)
    private func put(_ byte: UInt8) {
        storage[count] = byte
        count += 1
    }

    /// Short sources (names, ids) are copied byte by byte: a call to `memmove` costs more.
    @inline(__always)
    private func put(_ source: UnsafeRawBufferPointer) {
        guard let base = source.baseAddress, !source.isEmpty else { return }
        reserve(source.count)
        let from = base.assumingMemoryBound(to: UInt8.self)
        if source.count <= 16 {
            for k in 0..<source.count { storage[count &+ k] = from[k] }
        } else {
            (storage + count).update(from: from, count: source.count)
        }
        count += source.count
    }

    @inline(__always)
    func rawVarint(_ value: UInt64) {
        reserve(10)
        var value = value
        while value >= 0x80 {
            put(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        put(UInt8(value))
    }

    @inline(__always)
    func tag(_ field: Int, wireType: UInt64) {
        rawVarint(UInt64(field) << 3 | wireType)
    }

    func append(_ encoded: [UInt8]) {
        encoded.withUnsafeBytes { put($0) }
    }

    func append(_ other: ProtobufWriter) {
        put(UnsafeRawBufferPointer(start: other.storage, count: other.count))
    }

    /// A string's UTF-8, read where it is stored (a native string always is); `limit` bytes
    /// at most.
    private func appendUTF8(_ text: String, limit: Int = .max) {
        let copied: Void? = text.utf8.withContiguousStorageIfAvailable { utf8 in
            put(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(utf8)[..<min(limit, utf8.count)]))
        }
        if copied == nil {
            for byte in text.utf8.prefix(limit) {
                reserve(1)
                put(byte)
            }
        }
    }

    func varint(_ field: Int, _ value: UInt64) {
        tag(field, wireType: 0)
        rawVarint(value)
    }

    func fixed64(_ field: Int, _ value: UInt64) {
        tag(field, wireType: 1)
        withUnsafeBytes(of: value.littleEndian) { put($0) }
    }

    func fixed32(_ field: Int, _ value: UInt32) {
        tag(field, wireType: 5)
        withUnsafeBytes(of: value.littleEndian) { put($0) }
    }

    func string(_ field: Int, _ value: String) {
        tag(field, wireType: 2)
        rawVarint(UInt64(value.utf8.count))
        appendUTF8(value)
    }

    /// A string field made of three parts (a span name), without joining them first.
    func string(_ field: Int, _ first: String, _ second: String, _ third: String) {
        tag(field, wireType: 2)
        rawVarint(UInt64(first.utf8.count + second.utf8.count + third.utf8.count))
        appendUTF8(first)
        appendUTF8(second)
        appendUTF8(third)
    }

    /// A span id: 8 bytes, most significant first.
    func id(_ field: Int, _ word: UInt64) {
        tag(field, wireType: 2)
        reserve(1)
        put(8)
        withUnsafeBytes(of: word.bigEndian) { put($0) }
    }

    /// A trace id: 16 bytes, its high word then its low word, most significant first.
    func id(_ field: Int, _ high: UInt64, _ low: UInt64) {
        tag(field, wireType: 2)
        reserve(1)
        put(16)
        withUnsafeBytes(of: high.bigEndian) { put($0) }
        withUnsafeBytes(of: low.bigEndian) { put($0) }
    }

    /// A length-delimited sub-message: what `body` holds, after its length.
    func message(_ field: Int, _ body: ProtobufWriter) {
        tag(field, wireType: 2)
        rawVarint(UInt64(body.count))
        append(body)
    }

    /// A `KeyValue` (key = 1, value = 2) whose `AnyValue` is a string (1); lengths added up.
    func attribute(_ field: Int, _ key: AttributeKey, string value: String) {
        attribute(field, key, string: value, limit: .max)
    }

    /// A string `KeyValue` holding the part of a request target before any `?` (`url.path`).
    func attribute(_ field: Int, _ key: AttributeKey, pathOf target: String) {
        let length =
            target.utf8.withContiguousStorageIfAvailable { $0.firstIndex(of: UInt8(ascii: "?")) ?? $0.count }
            ?? (target.utf8.firstIndex(of: UInt8(ascii: "?")).map {
                target.utf8.distance(from: target.startIndex, to: $0)
            }
                ?? target.utf8.count)
        attribute(field, key, string: target, limit: length)
    }

    private func attribute(_ field: Int, _ key: AttributeKey, string value: String, limit: Int) {
        let valueLength = min(limit, value.utf8.count)
        let anyLength = 1 + Self.varintSize(UInt64(valueLength)) + valueLength
        keyValue(field, key, anyLength: anyLength)
        tag(1, wireType: 2)
        rawVarint(UInt64(valueLength))
        appendUTF8(value, limit: valueLength)
    }

    /// A string `KeyValue` holding `Decision.Reason.traceDescription`, written in its parts.
    func attribute(_ field: Int, _ key: AttributeKey, reason: Decision.Reason) {
        let parts = reason.traceDescriptionParts
        let valueLength =
            parts.0.utf8.count + parts.1.utf8.count + parts.2.utf8.count + parts.3.utf8.count + parts.4.utf8.count
        let anyLength = 1 + Self.varintSize(UInt64(valueLength)) + valueLength
        keyValue(field, key, anyLength: anyLength)
        tag(1, wireType: 2)
        rawVarint(UInt64(valueLength))
        appendUTF8(parts.0)
        appendUTF8(parts.1)
        appendUTF8(parts.2)
        appendUTF8(parts.3)
        appendUTF8(parts.4)
    }

    /// A `KeyValue` whose `AnyValue` is a bool (2).
    func attribute(_ field: Int, _ key: AttributeKey, bool value: Bool) {
        keyValue(field, key, anyLength: 2)
        varint(2, value ? 1 : 0)
    }

    /// A `KeyValue` whose `AnyValue` is an int64 (3).
    func attribute(_ field: Int, _ key: AttributeKey, int value: Int64) {
        let encoded = UInt64(bitPattern: value)
        keyValue(field, key, anyLength: 1 + Self.varintSize(encoded))
        varint(3, encoded)
    }

    /// A `KeyValue`'s tag, length, key and the tag and length of its `AnyValue` (value = 2),
    /// whose body is `anyLength` bytes and follows.
    private func keyValue(_ field: Int, _ key: AttributeKey, anyLength: Int) {
        let keyLength = key.key.utf8CodeUnitCount
        let length = 2 + keyLength + 1 + Self.varintSize(UInt64(anyLength)) + anyLength
        tag(field, wireType: 2)
        rawVarint(UInt64(length))
        // KeyValue.key = 1
        reserve(2)
        put(0x0A)
        put(UInt8(keyLength))
        put(UnsafeRawBufferPointer(start: key.key.utf8Start, count: keyLength))
        tag(2, wireType: 2)
        rawVarint(UInt64(anyLength))
    }
}

// MARK: - HTTP

/// A blocking HTTP/1.1 client for the exporter thread only: POSTs on one keep-alive
/// connection to the collector (opened again when the collector closed it or asked to), one
/// deadline per request for connecting, sending and reading the answer.
struct OTLPHTTPClient {
    struct Failure: Error {
        var message: String
    }

    let endpoint: OTLPEndpoint
    /// The open connection, or -1.
    private var descriptor: Int32 = -1

    init(endpoint: OTLPEndpoint) {
        self.endpoint = endpoint
    }

    /// Closes the connection, if one is open.
    mutating func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }

    /// The answer's status code, or why there is none. A kept connection that turns out to be
    /// closed is replaced once, within the same deadline.
    mutating func post(_ body: [UInt8], contentType: String, timeoutMilliseconds: Int) -> Result<Int, Failure> {
        body.withUnsafeBytes {
            post(prefix: [], $0, contentType: contentType, timeoutMilliseconds: timeoutMilliseconds)
        }
    }

    /// Posts `prefix` then `rest` as one body (`rest` is sent from where it lies, not copied).
    mutating func post(
        prefix: [UInt8],
        _ rest: UnsafeRawBufferPointer,
        contentType: String,
        timeoutMilliseconds: Int
    ) -> Result<Int, Failure> {
        let deadline = Monotonic.nanoseconds() &+ UInt64(max(1, timeoutMilliseconds)) &* 1_000_000
        let hostField =
            endpoint.host.contains(":") ? "[\(endpoint.host)]:\(endpoint.port)" : "\(endpoint.host):\(endpoint.port)"
        // The body's first bytes go with the head, in one send.
        let head =
            Array(
                ("POST \(endpoint.path) HTTP/1.1\r\nhost: \(hostField)\r\ncontent-type: \(contentType)\r\n"
                    + "content-length: \(prefix.count + rest.count)\r\nuser-agent: switchyard/"
                    + "\(SwitchyardVersion.current)\r\n\r\n").utf8
            ) + prefix
        let body = rest
        let wasOpen = descriptor >= 0
        var result = attempt(head: head, body: body, deadline: deadline)
        if case .failure(let failure) = result, wasOpen, failure.isStaleConnection {
            result = attempt(head: head, body: body, deadline: deadline)
        }
        return result.mapError { Failure(message: $0.message) }
    }

    private struct AttemptFailure: Error {
        var message: String
        /// Nothing came back on a kept connection: the collector had closed it.
        var isStaleConnection = false
    }

    private mutating func attempt(
        head: [UInt8],
        body: UnsafeRawBufferPointer,
        deadline: UInt64
    ) -> Result<Int, AttemptFailure> {
        if descriptor < 0 {
            switch Self.connect(endpoint, deadline: deadline) {
            case .success(let connected): descriptor = connected
            case .failure(let failure): return .failure(AttemptFailure(message: failure.message))
            }
        }
        let fd = descriptor
        var keep = false
        defer { if !keep { close() } }
        for isHead in [true, false] {
            var offset = 0
            let count = isHead ? head.count : body.count
            while offset < count {
                guard Self.setTimeouts(fd, deadline: deadline) else {
                    return .failure(AttemptFailure(message: "timed out"))
                }
                let sent =
                    isHead
                    ? head.withUnsafeBytes { send(fd, $0.baseAddress! + offset, count - offset, Int32(MSG_NOSIGNAL)) }
                    : send(fd, body.baseAddress! + offset, count - offset, Int32(MSG_NOSIGNAL))
                if sent < 0 {
                    if errno == EINTR { continue }
                    let stale = errno == EPIPE || errno == ECONNRESET
                    return .failure(
                        AttemptFailure(
                            message: errno == EAGAIN ? "timed out" : "send failed: \(String(cString: strerror(errno)))",
                            isStaleConnection: stale
                        )
                    )
                }
                offset += sent
            }
        }
        // The answer's head, then its body (Content-Length), read whole so the connection can serve the next.
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4_096)
        var headEnd: Int?
        var expected = Int.max
        while answer.count < expected {
            guard answer.count < 1 << 20, Self.setTimeouts(fd, deadline: deadline) else {
                return .failure(AttemptFailure(message: "timed out"))
            }
            let received = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if received < 0 {
                if errno == EINTR { continue }
                return .failure(
                    AttemptFailure(
                        message: errno == EAGAIN ? "timed out" : "receive failed: \(String(cString: strerror(errno)))",
                        isStaleConnection: answer.isEmpty && errno == ECONNRESET
                    )
                )
            }
            if received == 0 {
                guard headEnd != nil, expected == Int.max else {
                    return .failure(
                        AttemptFailure(
                            message: "the collector closed the connection",
                            isStaleConnection: answer.isEmpty
                        )
                    )
                }
                break  // A body read until close.
            }
            answer.append(contentsOf: chunk[0..<received])
            if headEnd == nil, let end = Self.headEnd(answer) {
                headEnd = end
                let answerHead = Self.parseHead(answer[..<end])
                guard let status = answerHead.status else {
                    return .failure(AttemptFailure(message: "the answer is not HTTP"))
                }
                if let length = answerHead.contentLength {
                    expected = end + length
                    keep = answerHead.isKeepAlive
                } else if answerHead.isChunked || status == 204 || status == 304 {
                    // Not read further: the connection is closed instead.
                    return .success(status)
                }
                // Otherwise the body lasts until the collector closes the connection.
            }
        }
        guard let end = headEnd, let status = Self.parseHead(answer[..<end]).status else {
            return .failure(AttemptFailure(message: "the answer is not HTTP"))
        }
        if answer.count > expected { keep = false }
        return .success(status)
    }

    /// The index after the head's blank line, if it has arrived.
    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for k in 3..<bytes.count
        where bytes[k] == 0x0A && bytes[k - 1] == 0x0D && bytes[k - 2] == 0x0A && bytes[k - 3] == 0x0D {
            return k + 1
        }
        return nil
    }

    /// The status, `content-length`, whether it is chunked and whether the connection may be kept.
    /// Read from the bytes (field names and the values read compared without case), as once per
    /// export it costs little that way.
    private static func parseHead(
        _ bytes: ArraySlice<UInt8>
    ) -> (status: Int?, contentLength: Int?, isChunked: Bool, isKeepAlive: Bool) {
        let none: (Int?, Int?, Bool, Bool) = (nil, nil, false, false)
        // Lines, without their CR LF; empty ones skipped.
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = bytes.startIndex
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == 0x0A, index > lineStart, bytes[index - 1] == 0x0D {
                if index - 1 > lineStart { lines.append(bytes[lineStart..<(index - 1)]) }
                lineStart = index + 1
            }
            index += 1
        }
        if lineStart < bytes.endIndex { lines.append(bytes[lineStart...]) }
        guard let statusLine = lines.first else { return none }
        // `HTTP/1.x SP status [SP reason]`
        let parts = statusLine.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: true)
        guard parts.count >= 2, parts[0].starts(with: Array("HTTP/1.".utf8)), let status = decimal(parts[1]) else {
            return none
        }
        var contentLength: Int?
        var isChunked = false
        var isKeepAlive = parts[0].elementsEqual("HTTP/1.1".utf8)
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: 0x3A) else { continue }
            let name = line[..<colon]
            var value = line[(colon + 1)...]
            while let first = value.first, first == 0x20 || first == 0x09 { value = value.dropFirst() }
            while let last = value.last, last == 0x20 || last == 0x09 { value = value.dropLast() }
            if equalsIgnoringCase(name, "content-length") {
                contentLength = decimal(value)
            } else if equalsIgnoringCase(name, "transfer-encoding") {
                isChunked = containsIgnoringCase(value, "chunked")
            } else if equalsIgnoringCase(name, "connection") {
                isKeepAlive =
                    isKeepAlive ? !containsIgnoringCase(value, "close") : containsIgnoringCase(value, "keep-alive")
            }
        }
        return (status, isChunked ? nil : contentLength, isChunked, isKeepAlive)
    }

    /// A non-negative decimal number made of digits only, or nil.
    private static func decimal(_ digits: ArraySlice<UInt8>) -> Int? {
        guard !digits.isEmpty, digits.count <= 18 else { return nil }
        var value = 0
        for byte in digits {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            value = value * 10 + Int(byte - 0x30)
        }
        return value
    }

    private static func lowered(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }

    /// `bytes` is `lowercase` (lower-case ASCII) but for case.
    private static func equalsIgnoringCase(_ bytes: ArraySlice<UInt8>, _ lowercase: StaticString) -> Bool {
        let expected = UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        return bytes.count == expected.count && zip(bytes, expected).allSatisfy { lowered($0) == $1 }
    }

    /// `bytes` holds `lowercase` (lower-case ASCII) somewhere, case aside.
    private static func containsIgnoringCase(_ bytes: ArraySlice<UInt8>, _ lowercase: StaticString) -> Bool {
        let needle = UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        guard bytes.count >= needle.count else { return false }
        var start = bytes.startIndex
        while start + needle.count <= bytes.endIndex {
            if zip(bytes[start...], needle).allSatisfy({ lowered($0) == $1 }) { return true }
            start += 1
        }
        return false
    }

    /// Sets the socket's send and receive timeouts to what is left before `deadline`; false
    /// when nothing is left.
    private static func setTimeouts(_ fd: Int32, deadline: UInt64) -> Bool {
        let now = Monotonic.nanoseconds()
        guard now < deadline else { return false }
        let left = deadline - now
        var time = timeval(tv_sec: Int(left / 1_000_000_000), tv_usec: Int(left % 1_000_000_000 / 1_000))
        if time.tv_sec == 0 && time.tv_usec == 0 { time.tv_usec = 1 }
        let size = socklen_t(MemoryLayout<timeval>.size)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, size)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, size)
        return true
    }

    /// A connected socket to the endpoint's first address that answers, before `deadline`.
    private static func connect(_ endpoint: OTLPEndpoint, deadline: UInt64) -> Result<Int32, Failure> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list)
        guard resolved == 0, let first = list else {
            return .failure(
                Failure(message: "cannot resolve \(endpoint.host): \(String(cString: gai_strerror(resolved)))")
            )
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let info = next {
            next = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            if fd < 0 { continue }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var rc = Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen)
            if rc != 0 && errno == EINPROGRESS {
                let now = Monotonic.nanoseconds()
                let left = now < deadline ? Int32(min((deadline - now) / 1_000_000, 60_000)) : 0
                var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&poller, 1, max(left, 1)) == 1 {
                    var error: Int32 = 0
                    var size = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size)
                    rc = error == 0 ? 0 : -1
                    if error != 0 { lastError = "connect failed: \(String(cString: strerror(error)))" }
                } else {
                    lastError = "connect timed out"
                }
            } else if rc != 0 {
                lastError = "connect failed: \(String(cString: strerror(errno)))"
            }
            if rc == 0 {
                _ = fcntl(fd, F_SETFL, flags)
                return .success(fd)
            }
            Glibc.close(fd)
        }
        return .failure(Failure(message: lastError))
    }
}
