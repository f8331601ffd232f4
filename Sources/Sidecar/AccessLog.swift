import Compare
import EventHTTP
import Logging
import Policy

#if canImport(Glibc)
import Glibc
#endif

/// How access log lines are written (`--access-log-format`).
public enum AccessLogFormat: String, Sendable, CaseIterable {
    /// One JSON object per line.
    case json
    /// One line of space-separated fields in a fixed order, `-` for an absent one (like nginx).
    case text
}

/// The access log (`--access-log`): one line per request answered and per shadow copy that
/// finished, never a body. Lines are made on the worker's loop thread by its `AccessLogger` and
/// written off it by a `LogFileWriter` (bounded queue, whole lines, rotation), like the
/// comparison log. Lines lost are counted in `switchyard_access_log_records_dropped_total`.
final class AccessLog: Sendable {
    /// A file path, or `-` for standard output.
    let path: String
    let format: AccessLogFormat
    /// How often the writer thread writes what is queued.
    let flushIntervalSeconds: Double
    private let writer: LogFileWriter

    init(
        path: String,
        format: AccessLogFormat,
        metrics: SidecarMetrics,
        logger: Logger,
        flushIntervalSeconds: Double = 0.2,
        maxFileBytes: Int = SidecarOptions().accessLogMaxBytes,
        rotatedFiles: Int = SidecarOptions().accessLogRotatedFiles
    ) {
        self.path = path
        self.format = format
        self.flushIntervalSeconds = flushIntervalSeconds
        writer = LogFileWriter(
            name: "access log",
            counters: LogFileWriter.Counters(
                recordsQueueFull: metrics.accessLogRecordsDropped(reason: "queue_full"),
                recordsWriteFailed: metrics.accessLogRecordsDropped(reason: "write_failed")
            ),
            logger: logger,
            flushIntervalSeconds: flushIntervalSeconds,
            maxFileBytes: maxFileBytes,
            rotatedFiles: rotatedFiles
        )
    }

    /// Queues one whole line (newline included). Any thread; never blocks on I/O.
    func append(_ line: [UInt8]) { writer.append(line, to: path) }

    /// Queues `records` whole lines written back to back in `lines`. Any thread; never blocks on I/O.
    func append(_ lines: UnsafeBufferPointer<UInt8>, records: Int) { writer.append(lines, records: records, to: path) }

    /// Writes what is queued and stops the writer thread. Blocks until done.
    func close() { writer.close() }
}

/// One access log line's fields. Strings are empty when absent (written `null` or `-`).
struct AccessEntry: ~Copyable {
    var requestID = ""
    var route = ""
    var model = ""
    var version = ""
    var isShadow = false
    var method = ""
    /// The request target: its path is written, never the query after a `?` (whose values may
    /// be keys or tokens).
    var target = ""
    var status = 0
    /// The sidecar's own error code (SPEC §8); empty when a version answered.
    var errorCode = ""
    var bytesIn = 0
    var bytesOut = 0
    /// The route, model and version fields and the remote version's address as the line
    /// writes them, made before (`AccessLogger.versionText`); nil: the line writes the three
    /// strings, and no address.
    var versionText: VersionText?
    /// Nil when the request was refused before it was read whole.
    var durationNanoseconds: UInt64?
    /// Nil when no version was asked.
    var upstreamNanoseconds: UInt64?
    /// The version that failed before the fallback answered; empty when none did.
    var fallback = ""
    var hasStickyKey = false

    init() {}

    /// What every line of `exchange` shares: the request, its routing, and its duration until `now`.
    init(_ exchange: Exchange, now: UInt64) {
        requestID = exchange.requestID
        route = exchange.routeName
        model = exchange.model
        method = exchange.request.head.method
        target = exchange.request.head.target
        bytesIn = exchange.request.body.count
        durationNanoseconds = now &- exchange.startNanoseconds
        hasStickyKey = exchange.hasStickyKey
    }
}

/// Formats a worker's access log lines with byte stores into one buffer of its own (no
/// `DateFormatter`, no interpolation, no per-line array), and hands the shared `AccessLog` the
/// lines in chunks: when `chunkBytes` are waiting, or `flushDelayMilliseconds` after the first
/// line of a chunk, so that the writer's lock is taken once per chunk, not per line. One per
/// worker; its loop thread only (the drain calls `flush` there too).
final class AccessLogger {
    let log: AccessLog
    /// Where the timer that sends a chunk that does not fill runs; nil: every line goes at once.
    private let loop: EventLoop?
    /// A chunk is handed over once it holds this many bytes.
    static let chunkBytes = 32 << 10
    private let flushDelayMilliseconds: Int
    /// The lines not yet handed over, back to back.
    private let chunk = LineBuilder(capacity: AccessLogger.chunkBytes + 4_096)
    // Exclusivity is checked here and in `LineBuilder`: leaving it unchecked saved nothing
    // measurable (bench/instructions.sh "--access-log a.json": 39.9k instructions/request with it
    // unchecked, 39.4k checked).
    /// Lines in `chunk`.
    private var records = 0
    private var isFlushScheduled = false
    /// The wall-clock second `secondPrefix` was made for.
    private var cachedSecond = Int64.min
    /// `2026-12-03T12:41:23.`: the timestamp up to its milliseconds, remade once per second.
    private var secondPrefix: [UInt8] = []
    /// What lines write about a version (`versionText`), by config generation, route and
    /// version name: made once, not per line (a few entries; the oldest is replaced).
    private var upstreams: [VersionText] = []
    private var nextUpstreamSlot = 0

    init(log: AccessLog, loop: EventLoop? = nil) {
        self.log = log
        self.loop = loop
        flushDelayMilliseconds = min(50, max(1, Int(log.flushIntervalSeconds * 1000)))
    }

    /// Formats one line into the chunk; the chunk goes to the log when it is full, or soon.
    func write(_ entry: borrowing AccessEntry) {
        loop?.assertInLoop()
        let line = chunk
        appendTime(to: line)
        switch log.format {
        case .json: line.appendJSON(entry)
        case .text: line.appendText(entry)
        }
        line.append(0x0A)
        records += 1
        if line.count >= Self.chunkBytes || loop == nil {
            flush()
        } else if !isFlushScheduled, let loop {
            isFlushScheduled = true
            loop.scheduleTimer(afterMilliseconds: flushDelayMilliseconds) { [self] in
                isFlushScheduled = false
                flush()
            }
        }
    }

    /// Hands the lines formatted so far to the log (also when the worker has drained).
    func flush() {
        loop?.assertInLoop()
        guard records > 0 else { return }
        log.append(UnsafeBufferPointer(start: chunk.storage, count: chunk.count), records: records)
        chunk.removeAll()
        records = 0
    }

    /// RFC 3339 UTC with milliseconds, from `CLOCK_REALTIME`; the part up to the seconds is
    /// remade only when the second changes. JSON lines open with it too (`{"time":"` first).
    private func appendTime(to line: LineBuilder) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let second = Int64(now.tv_sec)
        if second != cachedSecond {
            cachedSecond = second
            // `…:SS.000Z` without its last four bytes.
            secondPrefix = Array(RFC3339.format(millisecondsSinceEpoch: second * 1000).utf8.dropLast(4))
        }
        let isJSON = log.format == .json
        if isJSON { line.append("{\"time\":\"") }
        line.append(secondPrefix)
        let milliseconds = Int(now.tv_nsec) / 1_000_000
        line.reserve(5)
        line.put(0x30 &+ UInt8(truncatingIfNeeded: milliseconds / 100))
        line.put(0x30 &+ UInt8(truncatingIfNeeded: milliseconds / 10 % 10))
        line.put(0x30 &+ UInt8(truncatingIfNeeded: milliseconds % 10))
        line.put(0x5A)
        if isJSON { line.put(0x22) }
    }

    /// What a line of `version` (of the route `exchange` took) writes about the version: its
    /// route, model and version fields, and its address (nil when it is not a remote version),
    /// escaped for the log's format. Made once per config generation, route and version, not
    /// per line; `backend` gives the version's backend when it is made.
    private func versionText(
        _ exchange: Exchange,
        version: String,
        backend: () -> Backend?
    ) -> VersionText {
        let generation = exchange.snapshot.generation
        let routeIndex = exchange.routeIndex
        for entry in upstreams
        where entry.generation == generation && entry.routeIndex == routeIndex && entry.version == version
            && entry.route == exchange.routeName && entry.model == exchange.model
        {
            return entry
        }
        let json = log.format == .json
        let names = LineBuilder(capacity: 128)
        if json {
            names.appendJSONNames(route: exchange.routeName, model: exchange.model, version: version)
        } else {
            names.appendTextNames(route: exchange.routeName, model: exchange.model, version: version)
        }
        var address: [UInt8]?
        if case .remote(let remote)? = backend() {
            let bytes = LineBuilder(capacity: 64)
            bytes.appendAddress(remote, json: json)
            address = bytes.bytes
        }
        let entry = VersionText(
            generation: generation,
            routeIndex: routeIndex,
            version: version,
            route: exchange.routeName,
            model: exchange.model,
            names: names.bytes,
            address: address
        )
        if upstreams.count < 8 {
            upstreams.append(entry)
        } else {
            upstreams[nextUpstreamSlot] = entry
            nextUpstreamSlot = (nextUpstreamSlot + 1) % upstreams.count
        }
        return entry
    }
}

/// What access log lines write about one version of one route (`AccessLogger.versionText`).
final class VersionText {
    let generation: Int
    let routeIndex: Int
    let version: String
    let route: String
    let model: String
    /// The route, model and version fields, escaped.
    let names: [UInt8]
    /// The version's address, escaped; nil when it is not a remote version.
    let address: [UInt8]?

    init(
        generation: Int,
        routeIndex: Int,
        version: String,
        route: String,
        model: String,
        names: [UInt8],
        address: [UInt8]?
    ) {
        self.generation = generation
        self.routeIndex = routeIndex
        self.version = version
        self.route = route
        self.model = model
        self.names = names
        self.address = address
    }
}

/// Access log lines under construction: bytes stored into memory of its own (a byte is a
/// store, not an array append with its uniqueness and capacity checks). The `AccessEntry`
/// fields of a line follow its timestamp. Its owner's thread only.
final class LineBuilder {
    private(set) var storage: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int = 512) {
        self.capacity = max(64, capacity)
        storage = .allocate(capacity: self.capacity)
    }

    /// A builder holding `bytes` already.
    convenience init(bytes: [UInt8]) {
        self.init(capacity: bytes.count + 512)
        append(bytes)
    }

    deinit { storage.deallocate() }

    /// What has been written.
    var bytes: [UInt8] { Array(UnsafeBufferPointer(start: storage, count: count)) }

    /// Empties the builder, keeping its memory.
    func removeAll() { count = 0 }

    /// Room for `more` bytes: `put` may then store them unchecked.
    @inline(__always)
    func reserve(_ more: Int) {
        if count &+ more > capacity { grow(to: count + more) }
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

    /// One byte, after `reserve`.
    @inline(__always)
    func put(_ byte: UInt8) {
        storage[count] = byte
        count &+= 1
    }

    func append(_ byte: UInt8) {
        reserve(1)
        put(byte)
    }

    /// Short sources (field names, ids) are copied byte by byte: a call to `memmove` costs more.
    @inline(__always)
    func append(_ source: UnsafeBufferPointer<UInt8>) {
        guard let base = source.baseAddress, !source.isEmpty else { return }
        reserve(source.count)
        if source.count <= 32 {
            for k in 0..<source.count { storage[count &+ k] = base[k] }
        } else {
            (storage + count).update(from: base, count: source.count)
        }
        count &+= source.count
    }

    func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { append($0) }
    }

    @inline(__always)
    func append(_ text: StaticString) {
        append(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    func appendJSON(_ e: borrowing AccessEntry) {
        append(",\"request_id\":")
        appendJSONString(e.requestID)
        if let text = e.versionText {
            append(text.names)
        } else {
            appendJSONNames(route: e.route, model: e.model, version: e.version)
        }
        append(e.isShadow ? ",\"role\":\"shadow\",\"method\":" : ",\"role\":\"live\",\"method\":")
        appendJSONString(e.method)
        append(",\"path\":")
        appendJSONString(pathOf: e.target)
        append(",\"status\":")
        appendDecimal(e.status)
        append(",\"error\":")
        appendJSONString(e.errorCode)
        append(",\"bytes_in\":")
        appendDecimal(e.bytesIn)
        append(",\"bytes_out\":")
        appendDecimal(e.bytesOut)
        append(",\"upstream\":")
        if let upstream = e.versionText?.address {
            append(0x22)
            append(upstream)
            append(0x22)
        } else {
            append("null")
        }
        append(",\"duration_ms\":")
        if let duration = e.durationNanoseconds { appendMilliseconds(duration) } else { append("null") }
        append(",\"upstream_ms\":")
        if let upstream = e.upstreamNanoseconds { appendMilliseconds(upstream) } else { append("null") }
        append(",\"fallback\":")
        appendJSONString(e.fallback)
        append(e.hasStickyKey ? ",\"sticky_key\":true}" : ",\"sticky_key\":false}")
    }

    /// `TIME REQUEST_ID ROLE "METHOD PATH" STATUS ERROR BYTES_IN BYTES_OUT ROUTE MODEL VERSION
    /// UPSTREAM DURATION_MS UPSTREAM_MS FALLBACK STICKY_KEY`; no field holds a space (bytes
    /// outside printable ASCII, `"` and `\` are written `\xHH`, as nginx does).
    func appendText(_ e: borrowing AccessEntry) {
        append(0x20)
        appendTextField(e.requestID)
        append(e.isShadow ? " shadow \"" : " live \"")
        appendTextField(e.method)
        append(0x20)
        appendTextField(pathOf: e.target)
        append("\" ")
        appendDecimal(e.status)
        append(0x20)
        appendTextField(e.errorCode)
        append(0x20)
        appendDecimal(e.bytesIn)
        append(0x20)
        appendDecimal(e.bytesOut)
        append(0x20)
        if let text = e.versionText {
            append(text.names)
        } else {
            appendTextNames(route: e.route, model: e.model, version: e.version)
        }
        append(0x20)
        if let upstream = e.versionText?.address { append(upstream) } else { append(0x2D) }
        append(0x20)
        if let duration = e.durationNanoseconds { appendMilliseconds(duration) } else { append(0x2D) }
        append(0x20)
        if let upstream = e.upstreamNanoseconds { appendMilliseconds(upstream) } else { append(0x2D) }
        append(0x20)
        appendTextField(e.fallback)
        append(e.hasStickyKey ? " true" : " false")
    }

    /// `,"route":…,"model":…,"version":…`
    func appendJSONNames(route: String, model: String, version: String) {
        append(",\"route\":")
        appendJSONString(route)
        append(",\"model\":")
        appendJSONString(model)
        append(",\"version\":")
        appendJSONString(version)
    }

    /// `ROUTE MODEL VERSION`
    func appendTextNames(route: String, model: String, version: String) {
        appendTextField(route)
        append(0x20)
        appendTextField(model)
        append(0x20)
        appendTextField(version)
    }

    func appendDecimal(_ value: Int) {
        if value < 0 { append(0x2D) }
        appendDecimal(UInt64(value.magnitude))
    }

    /// The digits are stored from the last one back, where the number's length puts them.
    func appendDecimal(_ value: UInt64) {
        reserve(20)
        if value < 10 {
            put(0x30 &+ UInt8(truncatingIfNeeded: value))
            return
        }
        var digits = 0
        var left = value
        repeat {
            digits &+= 1
            left /= 10
        } while left > 0
        var rest = value
        var index = count &+ digits &- 1
        while rest >= 10 {
            storage[index] = 0x30 &+ UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
            index &-= 1
        }
        storage[index] = 0x30 &+ UInt8(truncatingIfNeeded: rest)
        count &+= digits
    }

    /// Milliseconds with three decimals (microseconds): `12.345`.
    func appendMilliseconds(_ nanoseconds: UInt64) {
        let microseconds = nanoseconds / 1_000
        appendDecimal(microseconds / 1_000)
        let fraction = microseconds % 1_000
        reserve(4)
        put(0x2E)
        put(0x30 &+ UInt8(truncatingIfNeeded: fraction / 100))
        put(0x30 &+ UInt8(truncatingIfNeeded: fraction / 10 % 10))
        put(0x30 &+ UInt8(truncatingIfNeeded: fraction % 10))
    }

    /// `host:port` (`[v6]:port`) or the Unix socket's path, escaped for JSON or for text.
    func appendAddress(_ remote: RemoteBackend, json: Bool) {
        if let socketPath = remote.socketPath {
            if json { appendJSONEscaped(socketPath) } else { appendTextEscaped(socketPath) }
            return
        }
        let isV6 = remote.host.utf8.contains(0x3A)
        if isV6 { append(0x5B) }
        if json { appendJSONEscaped(remote.host) } else { appendTextEscaped(remote.host) }
        if isV6 { append(0x5D) }
        append(0x3A)
        appendDecimal(remote.port)
    }

    /// A JSON string, or `null` when `text` is empty.
    func appendJSONString(_ text: String) {
        if text.isEmpty {
            append("null")
            return
        }
        var text = text
        text.withUTF8 { appendJSONQuoted($0) }
    }

    /// The part of a request target before any `?`, as a JSON string (`null` when empty).
    func appendJSONString(pathOf target: String) {
        var target = target
        target.withUTF8 { utf8 in
            let path = Self.path(of: utf8)
            if path.isEmpty { append("null") } else { appendJSONQuoted(path) }
        }
    }

    private func appendJSONQuoted(_ utf8: UnsafeBufferPointer<UInt8>) {
        reserve(2)
        put(0x22)
        appendJSONEscaped(utf8)
        reserve(1)
        put(0x22)
    }

    /// A text field, or `-` when `text` is empty.
    func appendTextField(_ text: String) {
        if text.isEmpty {
            append(0x2D)
        } else {
            appendTextEscaped(text)
        }
    }

    /// The part of a request target before any `?`, as a text field (`-` when empty).
    func appendTextField(pathOf target: String) {
        var target = target
        target.withUTF8 { utf8 in
            let path = Self.path(of: utf8)
            if path.isEmpty { append(0x2D) } else { appendTextEscaped(path) }
        }
    }

    private static func path(of target: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        guard let query = target.firstIndex(of: 0x3F) else { return target }
        return UnsafeBufferPointer(rebasing: target[..<query])
    }

    func appendJSONEscaped(_ text: String) {
        var text = text
        text.withUTF8 { appendJSONEscaped($0) }
    }

    func appendTextEscaped(_ text: String) {
        var text = text
        text.withUTF8 { appendTextEscaped($0) }
    }

    /// `"` and `\` backslash-escaped, control bytes as `\u00HH`; the rest as it is.
    func appendJSONEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        reserve(utf8.count &* 6)  // `\u00HH` at most per byte
        for byte in utf8 {
            if byte >= 0x20 && byte != 0x22 && byte != 0x5C {
                put(byte)
            } else {
                put(0x5C)
                if byte < 0x20 {
                    put(0x75)
                    put(0x30)
                    put(0x30)
                    putHex(byte)
                } else {
                    put(byte)
                }
            }
        }
    }

    /// Printable ASCII but `"` and `\` as it is; every other byte (space included) `\xHH`.
    func appendTextEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        reserve(utf8.count &* 4)  // `\xHH` at most per byte
        for byte in utf8 {
            if byte > 0x20 && byte < 0x7F && byte != 0x22 && byte != 0x5C {
                put(byte)
            } else {
                put(0x5C)
                put(0x78)
                putHex(byte)
            }
        }
    }

    @inline(__always)
    private func putHex(_ byte: UInt8) {
        let high = byte >> 4
        let low = byte & 0x0F
        put(high < 10 ? 0x30 &+ high : 0x37 &+ high)
        put(low < 10 ? 0x30 &+ low : 0x37 &+ low)
    }
}

extension AccessLogger {
    /// Logs a live answer that has ended (`Worker.finishLive`): `version` answered, or nil when
    /// the sidecar answered before a version was chosen.
    func live(_ exchange: Exchange, status: Int, version: String?) {
        let now = Monotonic.nanoseconds()
        var entry = AccessEntry(exchange, now: now)
        entry.status = status
        entry.errorCode = exchange.errorCode ?? ""
        entry.bytesOut = exchange.bytesOut
        entry.fallback = exchange.failedVersion ?? ""
        if let version, exchange.isRouted {
            entry.version = version
            entry.versionText = versionText(exchange, version: version) {
                exchange.snapshot.routing.version(version, routeIndex: exchange.routeIndex)?.backend
            }
            if exchange.attemptStartNanoseconds > 0 {
                entry.upstreamNanoseconds = now &- exchange.attemptStartNanoseconds
            }
        }
        write(entry)
    }

    /// Logs a request the server refused before the worker saw it (`HTTPServer.onRefused`):
    /// no route, no version, no duration; the method and path when its head was read.
    func refused(_ request: RefusedRequest) {
        var entry = AccessEntry()
        entry.requestID = request.requestID
        entry.method = request.head?.method ?? ""
        entry.target = request.head?.target ?? ""
        entry.status = request.status
        entry.errorCode = request.code
        entry.bytesOut = request.bodyBytes
        write(entry)
    }

    /// Logs a shadow copy that has finished (`Worker.shadowFinished`) with `status`. Its
    /// `bytes_out` is the size of the shadow's response body (never sent to the client); its
    /// duration runs from the request's arrival, its upstream time from when the copy went out.
    func shadow(_ exchange: Exchange, _ run: ShadowRun, status: Int, bytesOut: Int, result: Worker.VersionResult) {
        let now = Monotonic.nanoseconds()
        var entry = AccessEntry(exchange, now: now)
        entry.version = run.version
        entry.isShadow = true
        entry.status = status
        entry.bytesOut = bytesOut
        entry.upstreamNanoseconds = now &- run.startNanoseconds
        entry.versionText = versionText(exchange, version: run.version) { run.spec.backend }
        switch result {
        case .answered(let reply): entry.errorCode = reply.errorCode ?? ""
        // A backend's own 5xx is its answer, not the sidecar's error.
        case .failed(let error, let reply): entry.errorCode = reply == nil ? error.code : ""
        }
        write(entry)
    }
}

extension AccessLog {
    /// The access log `options` ask for, or nil when it is off.
    convenience init?(options: SidecarOptions, metrics: SidecarMetrics, logger: Logger) {
        guard let path = options.accessLogPath else { return nil }
        self.init(
            path: path,
            format: options.accessLogFormat,
            metrics: metrics,
            logger: logger,
            maxFileBytes: options.accessLogMaxBytes,
            rotatedFiles: options.accessLogRotatedFiles
        )
    }
}
