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
    private var line: [UInt8] = []
    /// The wall-clock second `secondPrefix` was made for.
    private var cachedSecond = Int64.min
    /// `2026-12-03T12:41:23.`: the timestamp up to its milliseconds, remade once per second.
    private var secondPrefix: [UInt8] = []

    init(log: AccessLog) {
        self.log = log
        line.reserveCapacity(512)
    }

    /// Formats and queues one line.
    func write(_ entry: AccessEntry) {
        line.removeAll(keepingCapacity: true)
        switch log.format {
        case .json: appendJSON(entry)
        case .text: appendText(entry)
        }
        line.append(0x0A)
        log.append(line)
    }

    // MARK: Formats

    private func appendJSON(_ e: AccessEntry) {
        append("{\"time\":\"")
        appendTime()
        append("\",\"request_id\":")
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
            line.append(0x22)
            appendAddress(upstream, escape: appendJSONEscaped)
            line.append(0x22)
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
    private func appendText(_ e: AccessEntry) {
        appendTime()
        line.append(0x20)
        appendTextField(e.requestID)
        append(e.isShadow ? " shadow \"" : " live \"")
        appendTextField(e.method)
        line.append(0x20)
        appendTextField(e.path)
        append("\" ")
        appendDecimal(e.status)
        line.append(0x20)
        appendTextField(e.errorCode)
        line.append(0x20)
        appendDecimal(e.bytesIn)
        line.append(0x20)
        appendDecimal(e.bytesOut)
        line.append(0x20)
        appendTextField(e.route)
        line.append(0x20)
        appendTextField(e.model)
        line.append(0x20)
        appendTextField(e.version)
        line.append(0x20)
        if let upstream = e.upstream { appendAddress(upstream, escape: appendTextEscaped) } else { line.append(0x2D) }
        line.append(0x20)
        if let duration = e.durationNanoseconds { appendMilliseconds(duration) } else { line.append(0x2D) }
        line.append(0x20)
        if let upstream = e.upstreamNanoseconds { appendMilliseconds(upstream) } else { line.append(0x2D) }
        line.append(0x20)
        appendTextField(e.fallback)
        append(e.hasStickyKey ? " true" : " false")
    }

    // MARK: Pieces

    private func append(_ text: StaticString) {
        line.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// RFC 3339 UTC with milliseconds, from `CLOCK_REALTIME`; the part up to the seconds is
    /// remade only when the second changes.
    private func appendTime() {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let second = Int64(now.tv_sec)
        if second != cachedSecond {
            cachedSecond = second
            // `…:SS.000Z` without its last four bytes.
            secondPrefix = Array(RFC3339.format(millisecondsSinceEpoch: second * 1000).utf8.dropLast(4))
        }
        line.append(contentsOf: secondPrefix)
        let milliseconds = Int(now.tv_nsec) / 1_000_000
        line.append(0x30 + UInt8(milliseconds / 100))
        line.append(0x30 + UInt8(milliseconds / 10 % 10))
        line.append(0x30 + UInt8(milliseconds % 10))
        line.append(0x5A)
    }

    private func appendDecimal(_ value: Int) {
        if value < 0 {
            line.append(0x2D)
            appendDecimal(UInt64(value.magnitude))
        } else {
            appendDecimal(UInt64(value))
        }
    }

    private func appendDecimal(_ value: UInt64) {
        if value < 10 {
            line.append(0x30 + UInt8(value))
            return
        }
        let start = line.count
        var rest = value
        while rest > 0 {
            line.append(0x30 + UInt8(rest % 10))
            rest /= 10
        }
        line[start...].reverse()
    }

    /// Milliseconds with three decimals (microseconds): `12.345`.
    private func appendMilliseconds(_ nanoseconds: UInt64) {
        let microseconds = nanoseconds / 1_000
        appendDecimal(microseconds / 1_000)
        line.append(0x2E)
        let fraction = microseconds % 1_000
        line.append(0x30 + UInt8(fraction / 100))
        line.append(0x30 + UInt8(fraction / 10 % 10))
        line.append(0x30 + UInt8(fraction % 10))
    }

    /// `host:port` (`[v6]:port`) or the Unix socket's path.
    private func appendAddress(_ remote: RemoteBackend, escape: (UInt8) -> Void) {
        if let socketPath = remote.socketPath {
            for byte in socketPath.utf8 { escape(byte) }
            return
        }
        let isV6 = remote.host.utf8.contains(0x3A)
        if isV6 { line.append(0x5B) }
        for byte in remote.host.utf8 { escape(byte) }
        if isV6 { line.append(0x5D) }
        line.append(0x3A)
        appendDecimal(remote.port)
    }

    /// A JSON string, or `null` when `text` is empty.
    private func appendJSONString<S: StringProtocol>(_ text: S) {
        if text.isEmpty {
            append("null")
            return
        }
        line.append(0x22)
        for byte in text.utf8 { appendJSONEscaped(byte) }
        line.append(0x22)
    }

    private func appendJSONEscaped(_ byte: UInt8) {
        switch byte {
        case 0x22, 0x5C:
            line.append(0x5C)
            line.append(byte)
        case ..<0x20:
            append("\\u00")
            line.append(Self.hexDigits[Int(byte >> 4)])
            line.append(Self.hexDigits[Int(byte & 0x0F)])
        default:
            line.append(byte)
        }
    }

    /// A text field, or `-` when `text` is empty.
    private func appendTextField<S: StringProtocol>(_ text: S) {
        if text.isEmpty {
            line.append(0x2D)
            return
        }
        for byte in text.utf8 { appendTextEscaped(byte) }
    }

    private func appendTextEscaped(_ byte: UInt8) {
        if byte <= 0x20 || byte >= 0x7F || byte == 0x22 || byte == 0x5C {
            append("\\x")
            line.append(Self.hexDigits[Int(byte >> 4)])
            line.append(Self.hexDigits[Int(byte & 0x0F)])
        } else {
            line.append(byte)
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)
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
