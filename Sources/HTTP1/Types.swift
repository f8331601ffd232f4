/// Values shared by the HTTP/1.1 request and response codecs.

/// Limits a parser enforces. Defaults are SPEC §8's.
public struct HTTPLimits: Sendable, Hashable {
    /// Bytes from the first byte of the request line to the end of the blank line. Default 32 KiB.
    public var maxHeaderBytes: Int
    /// Header fields per message. Default 100.
    public var maxHeaderCount: Int
    /// Body bytes (after de-chunking). Default 1 MiB for requests.
    public var maxBodyBytes: Int

    public init(maxHeaderBytes: Int = 32 * 1024, maxHeaderCount: Int = 100, maxBodyBytes: Int = 1 << 20) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
    }
}

/// `HTTP/1.0` or `HTTP/1.1`.
public struct HTTPVersion: Sendable, Hashable {
    public var major: Int
    public var minor: Int
    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }
    public static let http10 = HTTPVersion(major: 1, minor: 0)
    public static let http11 = HTTPVersion(major: 1, minor: 1)
}

/// Header fields in arrival order. Names keep their case as received; lookups ignore case.
///
/// Stored as they go on the wire: one byte array of `name: value\r\n` lines and one span per
/// field into it. A parsed head's fields are copied in once (no `String` per name or value), a
/// serializer writes them with one copy per kept run of lines, and a `String` is made only for a
/// field a caller reads by name (`first(name:)`) or as a tuple (`fields`, iteration). Every stored
/// field can be written: the parser checked it, and `add` drops a name that is not a token or a
/// value with CR, LF or NUL.
public struct HTTPHeaders: Sendable, Hashable, Sequence {
    /// `name: value\r\n` per field, in order.
    @usableFromInline var lines: [UInt8]
    /// Where each field's name and value are in `lines`.
    @usableFromInline var spans: [Span]

    @usableFromInline
    struct Span: Sendable, Hashable {
        /// The line starts with the name; the value runs to two bytes before the line's end.
        @usableFromInline var nameStart: Int32
        @usableFromInline var nameEnd: Int32
        @usableFromInline var valueStart: Int32
        @usableFromInline var valueEnd: Int32

        @usableFromInline var lineEnd: Int { Int(valueEnd) + 2 }

        @usableFromInline
        init(nameStart: Int32, nameEnd: Int32, valueStart: Int32, valueEnd: Int32) {
            self.nameStart = nameStart
            self.nameEnd = nameEnd
            self.valueStart = valueStart
            self.valueEnd = valueEnd
        }
    }

    @inlinable
    public init() {
        lines = []
        spans = []
    }

    public init(_ fields: [(name: String, value: String)]) {
        self.init()
        for field in fields { add(name: field.name, value: field.value) }
    }

    /// Room for `count` fields of `bytes` line bytes in all (the parser's sizing).
    public init(reservingFields count: Int, bytes: Int) {
        self.init()
        lines.reserveCapacity(bytes)
        spans.reserveCapacity(count)
    }

    public var count: Int { spans.count }

    /// The fields as tuples (a `String` pair made per field: for callers off the request path).
    public var fields: [(name: String, value: String)] {
        spans.indices.map { (name: name(at: $0), value: value(at: $0)) }
    }

    /// The field at `index`'s name and value.
    public func name(at index: Int) -> String {
        let span = spans[index]
        return lines.withUnsafeBufferPointer {
            String(decoding: UnsafeBufferPointer(rebasing: $0[Int(span.nameStart)..<Int(span.nameEnd)]), as: UTF8.self)
        }
    }

    public func value(at index: Int) -> String {
        let span = spans[index]
        return lines.withUnsafeBufferPointer {
            String(
                decoding: UnsafeBufferPointer(rebasing: $0[Int(span.valueStart)..<Int(span.valueEnd)]),
                as: UTF8.self
            )
        }
    }

    /// Appends a field; a name that is not a token or a value with CR, LF or NUL is dropped (it
    /// could not be written on the wire).
    public mutating func add(name: String, value: String) {
        var name = name
        var value = value
        name.withUTF8 { n in
            value.withUTF8 { v in append(name: UnsafeRawBufferPointer(n), value: UnsafeRawBufferPointer(v)) }
        }
    }

    /// Appends a field from bytes, checked as `add` checks it.
    public mutating func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        guard !name.isEmpty, name.allSatisfy(isTChar), isFieldValue(value) else { return }
        appendChecked(name: name, value: value)
    }

    /// Appends a field the caller has checked (the parser).
    @usableFromInline
    mutating func appendChecked(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let nameStart = lines.count
        lines.append(contentsOf: name)
        let nameEnd = lines.count
        lines.append(UInt8(ascii: ":"))
        lines.append(UInt8(ascii: " "))
        let valueStart = lines.count
        lines.append(contentsOf: value)
        let valueEnd = lines.count
        lines.append(UInt8(ascii: "\r"))
        lines.append(UInt8(ascii: "\n"))
        spans.append(
            Span(
                nameStart: Int32(nameStart),
                nameEnd: Int32(nameEnd),
                valueStart: Int32(valueStart),
                valueEnd: Int32(valueEnd)
            )
        )
    }

    /// Replaces every field of this name with one field.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        add(name: name, value: value)
    }

    public mutating func remove(name: String) {
        var name = name
        name.withUTF8 { wanted in
            let wanted = UnsafeRawBufferPointer(wanted)
            self = filter { field, _ in !asciiCaseInsensitiveEqualBytes(field, wanted) }
        }
    }

    /// The index of the first field named `name`, if any.
    public func firstIndex(name: String) -> Int? {
        var name = name
        return name.withUTF8 { wanted in firstIndex(nameBytes: UnsafeRawBufferPointer(wanted)) }
    }

    @usableFromInline
    func firstIndex(nameBytes wanted: UnsafeRawBufferPointer) -> Int? {
        lines.withUnsafeBytes { all in
            for (index, span) in spans.enumerated()
            where Int(span.nameEnd - span.nameStart) == wanted.count
                && asciiCaseInsensitiveEqualBytes(
                    UnsafeRawBufferPointer(rebasing: all[Int(span.nameStart)..<Int(span.nameEnd)]),
                    wanted
                )
            {
                return index
            }
            return nil
        }
    }

    /// The first value of the field, if any.
    public func first(name: String) -> String? {
        firstIndex(name: name).map { value(at: $0) }
    }

    /// Every value of the field, in order.
    public func values(name: String) -> [String] {
        var name = name
        return name.withUTF8 { wanted in
            let wanted = UnsafeRawBufferPointer(wanted)
            var found: [String] = []
            forEachField { index, fieldName, _ in
                if asciiCaseInsensitiveEqualBytes(fieldName, wanted) { found.append(value(at: index)) }
            }
            return found
        }
    }

    public func contains(name: String) -> Bool { firstIndex(name: name) != nil }

    /// Calls `body` with each field's index, name bytes and value bytes, in order (no `String` made).
    @inlinable
    public func forEachField(
        _ body: (_ index: Int, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Void
    ) rethrows {
        try lines.withUnsafeBytes { all in
            for index in spans.indices {
                let span = spans[index]
                try body(
                    index,
                    UnsafeRawBufferPointer(rebasing: all[Int(span.nameStart)..<Int(span.nameEnd)]),
                    UnsafeRawBufferPointer(rebasing: all[Int(span.valueStart)..<Int(span.valueEnd)])
                )
            }
        }
    }

    /// The fields `keep` returns true for (given each field's name and value bytes), copied as
    /// bytes: consecutive kept lines in one copy.
    @inlinable
    public func filter(_ keep: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool) -> HTTPHeaders
    {
        var kept = HTTPHeaders()
        kept.lines.reserveCapacity(lines.count + 96)
        kept.spans.reserveCapacity(spans.count + 4)
        lines.withUnsafeBytes { all in
            for span in spans {
                let name = UnsafeRawBufferPointer(rebasing: all[Int(span.nameStart)..<Int(span.nameEnd)])
                let value = UnsafeRawBufferPointer(rebasing: all[Int(span.valueStart)..<Int(span.valueEnd)])
                guard keep(name, value) else { continue }
                let shift = Int32(kept.lines.count) - span.nameStart
                kept.lines.append(contentsOf: UnsafeRawBufferPointer(rebasing: all[Int(span.nameStart)..<span.lineEnd]))
                kept.spans.append(
                    Span(
                        nameStart: span.nameStart + shift,
                        nameEnd: span.nameEnd + shift,
                        valueStart: span.valueStart + shift,
                        valueEnd: span.valueEnd + shift
                    )
                )
            }
        }
        return kept
    }

    /// Writes every field as `name: value\r\n`, without `content-length` and
    /// `transfer-encoding` when `droppingFraming` (the writer sets the framing itself).
    public func write(to out: inout [UInt8], droppingFraming: Bool) {
        lines.withUnsafeBytes { all in
            guard droppingFraming else {
                out.append(contentsOf: all)
                return
            }
            // Runs of kept lines are copied at once.
            var runStart = 0
            for span in spans {
                let length = Int(span.nameEnd - span.nameStart)
                guard length == 14 || length == 17 else { continue }
                let name = UnsafeRawBufferPointer(rebasing: all[Int(span.nameStart)..<Int(span.nameEnd)])
                if equalsIgnoringCase(name, "content-length") || equalsIgnoringCase(name, "transfer-encoding") {
                    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: all[runStart..<Int(span.nameStart)]))
                    runStart = span.lineEnd
                }
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: all[runStart...]))
        }
    }

    /// Writes every field `skip` returns false for (given its name bytes), as `name: value\r\n`;
    /// consecutive written lines in one copy.
    @inlinable
    public func write(to out: inout [UInt8], skipping skip: (_ name: UnsafeRawBufferPointer) -> Bool) {
        lines.withUnsafeBytes { all in
            var runStart = 0
            for span in spans {
                let name = UnsafeRawBufferPointer(rebasing: all[Int(span.nameStart)..<Int(span.nameEnd)])
                if skip(name) {
                    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: all[runStart..<Int(span.nameStart)]))
                    runStart = span.lineEnd
                }
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: all[runStart...]))
        }
    }

    /// The bytes `write(to:droppingFraming: false)` writes.
    public var byteCount: Int { lines.count }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.lines == rhs.lines
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(lines)
    }
}

/// Whether `bytes` equal `lowercase` (an ASCII literal in lower case) ignoring ASCII case.
@inlinable
public func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
    let n = lowercase.utf8CodeUnitCount
    guard bytes.count == n else { return false }
    let literal = lowercase.utf8Start
    var k = 0
    while k < n {
        let b = bytes[k]
        let lower = (b &- 65) < 26 ? b | 0x20 : b
        if lower != literal[k] { return false }
        k &+= 1
    }
    return true
}

/// Whether two byte buffers are equal ignoring ASCII case (false when their lengths differ).
@inlinable
public func asciiCaseInsensitiveEqualBytes(_ x: UnsafeRawBufferPointer, _ y: UnsafeRawBufferPointer) -> Bool {
    asciiCaseInsensitiveEqualBytes(x.assumingMemoryBound(to: UInt8.self), y.assumingMemoryBound(to: UInt8.self))
}

/// A value the writers can put on the wire: no CR, LF or NUL (what would end or corrupt a line).
@usableFromInline
func isFieldValue(_ value: UnsafeRawBufferPointer) -> Bool {
    for byte in value where byte == 0x0D || byte == 0x0A || byte == 0x00 { return false }
    return true
}

extension String {
    /// ASCII case-insensitive comparison, for header names and tokens.
    @inlinable
    public func asciiCaseInsensitiveEquals(_ other: String) -> Bool {
        let a = self.utf8
        let b = other.utf8
        guard a.count == b.count else { return false }
        // Native strings are contiguous UTF-8: compare through pointers, no iterator state.
        let fast: Bool? =
            a.withContiguousStorageIfAvailable { x in
                b.withContiguousStorageIfAvailable { y in asciiCaseInsensitiveEqualBytes(x, y) }
            } ?? nil
        if let fast { return fast }
        for (x, y) in zip(a, b) where x != y {
            let lx = (x >= 65 && x <= 90) ? x | 0x20 : x
            let ly = (y >= 65 && y <= 90) ? y | 0x20 : y
            if lx != ly { return false }
        }
        return true
    }
}

/// Whether two byte buffers are equal ignoring ASCII case (false when their lengths differ).
@inlinable
public func asciiCaseInsensitiveEqualBytes(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Bool {
    guard x.count == y.count else { return false }
    var k = 0
    let n = x.count
    while k < n {
        let p = x[k]
        let q = y[k]
        if p != q {
            let lp = (p &- 65) < 26 ? p | 0x20 : p
            let lq = (q &- 65) < 26 ? q | 0x20 : q
            if lp != lq { return false }
        }
        k &+= 1
    }
    return true
}

/// How the body of a message is delimited, decided from its head.
public enum BodyFraming: Sendable, Hashable {
    /// No body (a request with neither header; a 204/304/1xx or HEAD response).
    case none
    /// Exactly this many bytes follow.
    case contentLength(Int)
    /// `Transfer-Encoding: chunked`.
    case chunked
    /// Responses only: the body runs until the connection closes.
    case untilClose
}

public struct RequestHead: Sendable, Hashable {
    /// As received: a token such as `POST`.
    public var method: String
    /// Origin-form target, e.g. `/v1/models/churn:predict?x=1` (absolute-form is refused).
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    public var framing: BodyFraming
    /// Whether the connection may carry another request after this one
    /// (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`).
    public var keepAlive: Bool
    /// `Expect: 100-continue` was sent.
    public var expectsContinue: Bool

    public init(
        method: String,
        target: String,
        version: HTTPVersion = .http11,
        headers: HTTPHeaders = HTTPHeaders(),
        framing: BodyFraming = .none,
        keepAlive: Bool = true,
        expectsContinue: Bool = false
    ) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.framing = framing
        self.keepAlive = keepAlive
        self.expectsContinue = expectsContinue
    }

    /// The target up to `?`.
    public var path: Substring { pathAndQuery.path }

    /// The text after `?`, if any.
    public var query: Substring? { pathAndQuery.query }

    /// The target split at its first `?`, with one byte search (a target is ASCII, and a
    /// Character search costs grapheme breaking): the path, and the query after the `?` (nil
    /// when there is none).
    public var pathAndQuery: (path: Substring, query: Substring?) {
        let utf8 = target.utf8
        let offset =
            utf8.withContiguousStorageIfAvailable { $0.firstIndex(of: 0x3F) }
            ?? utf8.firstIndex(of: 0x3F).map { utf8.distance(from: utf8.startIndex, to: $0) }
        guard let offset else { return (target[...], nil) }
        let mark = utf8.index(utf8.startIndex, offsetBy: offset)
        return (target[..<mark], target[utf8.index(after: mark)...])
    }
}

public struct ResponseHead: Sendable, Hashable {
    public var status: Int
    public var reason: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    public var framing: BodyFraming
    /// Whether the connection may be reused after this response.
    public var keepAlive: Bool

    public init(
        status: Int,
        reason: String = "",
        version: HTTPVersion = .http11,
        headers: HTTPHeaders = HTTPHeaders(),
        framing: BodyFraming = .none,
        keepAlive: Bool = true
    ) {
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.framing = framing
        self.keepAlive = keepAlive
    }
}

/// Why a message was refused. Each case maps to the status and SPEC §8 error code the
/// server answers with (for requests) before closing the connection.
public enum HTTPParseError: Error, Sendable, Hashable {
    /// Malformed request/status line, header line, chunk framing, bare CR or LF, obs-fold,
    /// a bad header name, a bad Content-Length, Content-Length with Transfer-Encoding,
    /// several Content-Lengths, an absolute-form or otherwise invalid target. 400 `bad_request`.
    case badRequest(String)
    /// Header block over `maxHeaderBytes` or more than `maxHeaderCount` fields. 431 `headers_too_large`.
    case headersTooLarge(String)
    /// Declared or de-chunked body over `maxBodyBytes`. 413 `body_too_large`.
    case bodyTooLarge(String)
    /// A Transfer-Encoding other than `chunked`. 501 `not_implemented`.
    case unsupportedTransferEncoding(String)
    /// An HTTP version other than 1.0 / 1.1. 505 `unsupported_version`.
    case unsupportedVersion(String)
    /// `Expect` with a value other than `100-continue`. 417 `expectation_failed`.
    case expectationFailed(String)

    public var status: Int {
        switch self {
        case .badRequest: return 400
        case .headersTooLarge: return 431
        case .bodyTooLarge: return 413
        case .unsupportedTransferEncoding: return 501
        case .unsupportedVersion: return 505
        case .expectationFailed: return 417
        }
    }

    /// SPEC §8 error code.
    public var code: String {
        switch self {
        case .badRequest: return "bad_request"
        case .headersTooLarge: return "headers_too_large"
        case .bodyTooLarge: return "body_too_large"
        case .unsupportedTransferEncoding: return "not_implemented"
        case .unsupportedVersion: return "unsupported_version"
        case .expectationFailed: return "expectation_failed"
        }
    }

    public var detail: String {
        switch self {
        case .badRequest(let d), .headersTooLarge(let d), .bodyTooLarge(let d),
            .unsupportedTransferEncoding(let d), .unsupportedVersion(let d), .expectationFailed(let d):
            return d
        }
    }
}

/// The result of trying to parse a head from the bytes received so far.
public enum HeadParseResult<Head: Sendable>: Sendable {
    /// Not yet a whole head, and nothing wrong so far: read more.
    case incomplete
    /// A whole head; `consumed` bytes (through the blank line) belong to it.
    case complete(Head, consumed: Int)
    case failure(HTTPParseError)
}
