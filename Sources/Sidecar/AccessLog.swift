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

    /// Writes what is queued and stops the writer thread. Blocks until done.
    func close() { writer.close() }
}

/// One access log line's fields. Strings are empty when absent (written `null` or `-`).
struct AccessEntry {
    var requestID = ""
    var route = ""
    var model = ""
    var version = ""
    var isShadow = false
    var method = ""
    /// The request target's path, without the query (whose values may be keys or tokens).
    var path: Substring = ""
    var status = 0
    /// The sidecar's own error code (SPEC §8); empty when a version answered.
    var errorCode = ""
    var bytesIn = 0
    var bytesOut = 0
    /// The remote version asked, if it is one.
    var upstream: RemoteBackend?
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
        path = exchange.request.head.path
        bytesIn = exchange.request.body.count
        durationNanoseconds = now &- exchange.startNanoseconds
        hasStickyKey = exchange.hasStickyKey
    }
}

/// Formats a worker's access log lines with byte appends into one reused buffer (no
/// `DateFormatter`, no interpolation), and hands them to the shared `AccessLog`. One per worker;
/// its loop thread only.
final class AccessLogger {
    let log: AccessLog
    // `@exclusivity(unchecked)`: the worker's loop thread only, one line at a time.
    /// The last line's buffer, kept for its capacity.
    @exclusivity(unchecked) private var spare: [UInt8] = []
    /// The wall-clock second `secondPrefix` was made for.
    @exclusivity(unchecked) private var cachedSecond = Int64.min
    /// `2026-12-03T12:41:23.`: the timestamp up to its milliseconds, remade once per second.
    @exclusivity(unchecked) private var secondPrefix: [UInt8] = []

    init(log: AccessLog) {
        self.log = log
        spare.reserveCapacity(512)
    }

    /// Formats and queues one line.
    func write(_ entry: AccessEntry) {
        // The line is built in a local value (a field of this class would be checked for
        // exclusive access at every byte appended), then its buffer is kept for the next one.
        var line = LineBuilder(bytes: spare)
        spare = []
        line.bytes.removeAll(keepingCapacity: true)
        appendTime(to: &line)
        switch log.format {
        case .json: line.appendJSON(entry)
        case .text: line.appendText(entry)
        }
        line.bytes.append(0x0A)
        log.append(line.bytes)
        spare = line.bytes
    }

    /// RFC 3339 UTC with milliseconds, from `CLOCK_REALTIME`; the part up to the seconds is
    /// remade only when the second changes. JSON lines open with it too (`{"time":"` first).
    private func appendTime(to line: inout LineBuilder) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let second = Int64(now.tv_sec)
        if second != cachedSecond {
            cachedSecond = second
            // `…:SS.000Z` without its last four bytes.
            secondPrefix = Array(RFC3339.format(millisecondsSinceEpoch: second * 1000).utf8.dropLast(4))
        }
        if log.format == .json { line.append("{\"time\":\"") }
        line.bytes.append(contentsOf: secondPrefix)
        let milliseconds = Int(now.tv_nsec) / 1_000_000
        line.bytes.append(0x30 + UInt8(milliseconds / 100))
        line.bytes.append(0x30 + UInt8(milliseconds / 10 % 10))
        line.bytes.append(0x30 + UInt8(milliseconds % 10))
        line.bytes.append(0x5A)
        if log.format == .json { line.bytes.append(0x22) }
    }
}

/// One access log line under construction: the fields of an `AccessEntry` after its timestamp.
struct LineBuilder {
    var bytes: [UInt8]

    mutating func appendJSON(_ e: AccessEntry) {
        append(",\"request_id\":")
        appendJSONString(e.requestID)
        append(",\"route\":")
        appendJSONString(e.route)
        append(",\"model\":")
        appendJSONString(e.model)
        append(",\"version\":")
        appendJSONString(e.version)
        append(e.isShadow ? ",\"role\":\"shadow\",\"method\":" : ",\"role\":\"live\",\"method\":")
        appendJSONString(e.method)
        append(",\"path\":")
        appendJSONString(e.path)
        append(",\"status\":")
        appendDecimal(e.status)
        append(",\"error\":")
        appendJSONString(e.errorCode)
        append(",\"bytes_in\":")
        appendDecimal(e.bytesIn)
        append(",\"bytes_out\":")
        appendDecimal(e.bytesOut)
        append(",\"upstream\":")
        if let upstream = e.upstream {
            bytes.append(0x22)
            appendAddress(upstream, json: true)
            bytes.append(0x22)
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
    mutating func appendText(_ e: AccessEntry) {
        bytes.append(0x20)
        appendTextField(e.requestID)
        append(e.isShadow ? " shadow \"" : " live \"")
        appendTextField(e.method)
        bytes.append(0x20)
        appendTextField(e.path)
        append("\" ")
        appendDecimal(e.status)
        bytes.append(0x20)
        appendTextField(e.errorCode)
        bytes.append(0x20)
        appendDecimal(e.bytesIn)
        bytes.append(0x20)
        appendDecimal(e.bytesOut)
        bytes.append(0x20)
        appendTextField(e.route)
        bytes.append(0x20)
        appendTextField(e.model)
        bytes.append(0x20)
        appendTextField(e.version)
        bytes.append(0x20)
        if let upstream = e.upstream { appendAddress(upstream, json: false) } else { bytes.append(0x2D) }
        bytes.append(0x20)
        if let duration = e.durationNanoseconds { appendMilliseconds(duration) } else { bytes.append(0x2D) }
        bytes.append(0x20)
        if let upstream = e.upstreamNanoseconds { appendMilliseconds(upstream) } else { bytes.append(0x2D) }
        bytes.append(0x20)
        appendTextField(e.fallback)
        append(e.hasStickyKey ? " true" : " false")
    }

    mutating func append(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    mutating func appendDecimal(_ value: Int) {
        if value < 0 { bytes.append(0x2D) }
        appendDecimal(UInt64(value.magnitude))
    }

    mutating func appendDecimal(_ value: UInt64) {
        if value < 10 {
            bytes.append(0x30 + UInt8(value))
            return
        }
        let start = bytes.count
        var rest = value
        while rest > 0 {
            bytes.append(0x30 + UInt8(rest % 10))
            rest /= 10
        }
        bytes[start...].reverse()
    }

    /// Milliseconds with three decimals (microseconds): `12.345`.
    mutating func appendMilliseconds(_ nanoseconds: UInt64) {
        let microseconds = nanoseconds / 1_000
        appendDecimal(microseconds / 1_000)
        bytes.append(0x2E)
        let fraction = microseconds % 1_000
        bytes.append(0x30 + UInt8(fraction / 100))
        bytes.append(0x30 + UInt8(fraction / 10 % 10))
        bytes.append(0x30 + UInt8(fraction % 10))
    }

    /// `host:port` (`[v6]:port`) or the Unix socket's path, escaped for JSON or for text.
    mutating func appendAddress(_ remote: RemoteBackend, json: Bool) {
        if let socketPath = remote.socketPath {
            if json { appendJSONEscaped(socketPath) } else { appendTextEscaped(socketPath) }
            return
        }
        let isV6 = remote.host.utf8.contains(0x3A)
        if isV6 { bytes.append(0x5B) }
        if json { appendJSONEscaped(remote.host) } else { appendTextEscaped(remote.host) }
        if isV6 { bytes.append(0x5D) }
        bytes.append(0x3A)
        appendDecimal(remote.port)
    }

    /// A JSON string, or `null` when `text` is empty.
    mutating func appendJSONString<S: StringProtocol>(_ text: S) {
        if text.isEmpty {
            append("null")
            return
        }
        bytes.append(0x22)
        appendJSONEscaped(text)
        bytes.append(0x22)
    }

    /// A text field, or `-` when `text` is empty.
    mutating func appendTextField<S: StringProtocol>(_ text: S) {
        if text.isEmpty {
            bytes.append(0x2D)
        } else {
            appendTextEscaped(text)
        }
    }

    /// `"` and `\` backslash-escaped, control bytes as `\u00HH`; the rest as it is.
    mutating func appendJSONEscaped<S: StringProtocol>(_ text: S) {
        appendEscaped(
            text,
            isPlain: { $0 >= 0x20 && $0 != 0x22 && $0 != 0x5C },
            escape: { builder, byte in
                builder.bytes.append(0x5C)
                if byte < 0x20 {
                    builder.append("u00")
                    builder.appendHex(byte)
                } else {
                    builder.bytes.append(byte)
                }
            }
        )
    }

    /// Printable ASCII but `"` and `\` as it is; every other byte (space included) `\xHH`.
    mutating func appendTextEscaped<S: StringProtocol>(_ text: S) {
        appendEscaped(
            text,
            isPlain: { $0 > 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C },
            escape: { builder, byte in
                builder.append("\\x")
                builder.appendHex(byte)
            }
        )
    }

    /// Appends `text`'s UTF-8: in one copy when every byte `isPlain` (names, ids and paths
    /// almost always are), else byte by byte with `escape` for the others.
    private mutating func appendEscaped<S: StringProtocol>(
        _ text: S,
        isPlain: (UInt8) -> Bool,
        escape: (inout LineBuilder, UInt8) -> Void
    ) {
        let copied: Bool? = text.utf8.withContiguousStorageIfAvailable { utf8 in
            guard utf8.allSatisfy(isPlain) else { return false }
            bytes.append(contentsOf: utf8)
            return true
        }
        if copied == true { return }
        for byte in text.utf8 {
            if isPlain(byte) { bytes.append(byte) } else { escape(&self, byte) }
        }
    }

    private mutating func appendHex(_ byte: UInt8) {
        let digits: StaticString = "0123456789ABCDEF"
        bytes.append(digits.utf8Start[Int(byte >> 4)])
        bytes.append(digits.utf8Start[Int(byte & 0x0F)])
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
            if case .remote(let remote)? = exchange.snapshot.routing.version(version, routeIndex: exchange.routeIndex)?
                .backend
            {
                entry.upstream = remote
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
        entry.path = request.head?.path ?? ""
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
        if case .remote(let remote) = run.spec.backend { entry.upstream = remote }
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
