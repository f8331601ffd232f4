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
/// A parsed head's fields stay bytes: ranges into a copy of the head's field lines
/// (`ParsedFields`), with no String made per field. `first(name:)`, `withField(at:)` and the
/// writers read those bytes; a String is made only for a value a caller asks for, or for each
/// field when a field is removed or replaced (rare on the request path). Fields added with `add`
/// follow the parsed ones as Strings.
public struct HTTPHeaders: Sendable, Hashable, Sequence {
    /// The parsed fields, which come first (nil: none).
    @usableFromInline var parsed: ParsedFields?
    /// Fields added as Strings, after the parsed ones.
    @usableFromInline var added: [(name: String, value: String)]
    /// How many leading fields came from a head parser, which has checked each name is a token
    /// and each value free of CR, LF and NUL: writers copy those without checking them again.
    /// Fields added later are checked when written.
    public private(set) var parsedCount = 0

    public init(_ fields: [(name: String, value: String)] = []) {
        self.added = fields
    }

    /// Fields a head parser has checked (see `parsedCount`), as Strings.
    public init(parsed fields: [(name: String, value: String)]) {
        self.added = fields
        self.parsedCount = fields.count
    }

    /// The fields a head parser left in `parsed` (see `FieldStorage`).
    init(parsed: ParsedFields) {
        self.parsed = parsed
        self.added = []
        self.parsedCount = parsed.count
    }

    @inlinable
    public var count: Int { (parsed?.count ?? 0) &+ added.count }

    /// Every field as a String pair (a String is made for each parsed field: for callers off the
    /// request path).
    public var fields: [(name: String, value: String)] {
        guard let parsed else { return added }
        var all: [(name: String, value: String)] = []
        all.reserveCapacity(count)
        for k in 0..<parsed.count { all.append((parsed.name(at: k), parsed.value(at: k))) }
        all.append(contentsOf: added)
        return all
    }

    /// The name of field `index`, as a String.
    public func name(at index: Int) -> String {
        if let parsed, index < parsed.count { return parsed.name(at: index) }
        return added[index &- (parsed?.count ?? 0)].name
    }

    /// The value of field `index`, as a String.
    public func value(at index: Int) -> String {
        if let parsed, index < parsed.count { return parsed.value(at: index) }
        return added[index &- (parsed?.count ?? 0)].value
    }

    /// Calls `body` with field `index`'s name and value bytes, valid only during the call: no
    /// String is made for a parsed field.
    @inlinable
    public func withField<R>(
        at index: Int,
        _ body: (_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) throws -> R
    ) rethrows -> R {
        if let parsed, index < parsed.count {
            return try parsed.withField(at: index, body)
        }
        let field = added[index &- (parsed?.count ?? 0)]
        return try withUTF8Bytes(field.name) { n in try withUTF8Bytes(field.value) { v in try body(n, v) } }
    }

    /// Whether field `index`'s name is `name`, ignoring ASCII case.
    @inlinable
    public func hasName(_ name: String, at index: Int) -> Bool {
        withUTF8Bytes(name) { wanted in
            withField(at: index) { n, _ in asciiCaseInsensitiveEqualBytes(n, wanted) }
        }
    }

    public mutating func add(name: String, value: String) {
        added.append((name, value))
    }

    /// Replaces every field of this name with one field.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        added.append((name, value))
    }

    public mutating func remove(name: String) {
        guard let first = firstIndex(name: name) else { return }
        if parsed != nil {
            // Fields become Strings once, so that the rest can be removed from one list.
            added = fields
            parsed = nil
        }
        added.removeAll { $0.name.asciiCaseInsensitiveEquals(name) }
        // Fields after the first removed one have moved: they are checked again when written.
        parsedCount = Swift.min(parsedCount, first)
    }

    /// The index of the first field of this name, if any.
    public func firstIndex(name: String) -> Int? {
        withUTF8Bytes(name) { wanted in
            for k in 0..<count where withField(at: k, { n, _ in asciiCaseInsensitiveEqualBytes(n, wanted) }) {
                return k
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
        (0..<count).compactMap { hasName(name, at: $0) ? value(at: $0) : nil }
    }

    public func contains(name: String) -> Bool { firstIndex(name: name) != nil }

    public struct Iterator: IteratorProtocol {
        let headers: HTTPHeaders
        var index = 0

        public mutating func next() -> (name: String, value: String)? {
            guard index < headers.count else { return nil }
            defer { index &+= 1 }
            return (headers.name(at: index), headers.value(at: index))
        }
    }

    /// Each field as a String pair (a String is made for each parsed field).
    public func makeIterator() -> Iterator { Iterator(headers: self) }

    /// Equal fields in the same order (`parsedCount` is not compared).
    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for k in 0..<lhs.count {
            let same = lhs.withField(at: k) { n1, v1 in
                rhs.withField(at: k) { n2, v2 in n1.elementsEqual(n2) && v1.elementsEqual(v2) }
            }
            if !same { return false }
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        for k in 0..<count {
            withField(at: k) { n, v in
                hasher.combine(bytes: UnsafeRawBufferPointer(n))
                hasher.combine(0xFF as UInt8)
                hasher.combine(bytes: UnsafeRawBufferPointer(v))
            }
        }
    }
}

/// Calls `body` with `text`'s UTF-8 bytes: a native String's own storage, without a copy.
@inlinable
func withUTF8Bytes<R>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
    if let result = try text.utf8.withContiguousStorageIfAvailable(body) { return result }
    return try Array(text.utf8).withUnsafeBufferPointer(body)
}

/// A parsed head's field lines: a copy of their bytes and each field's name and value ranges in
/// it. Written only by the head parser, while its `FieldStorage` is the only holder (checked
/// with `isKnownUniquelyReferenced`), then read-only: so it is safe to share between threads.
public final class ParsedFields: @unchecked Sendable {
    @usableFromInline struct Span {
        @usableFromInline var nameStart: Int32
        @usableFromInline var nameEnd: Int32
        @usableFromInline var valueStart: Int32
        @usableFromInline var valueEnd: Int32
    }

    // Unchecked: written only while the parser's `FieldStorage` is the only holder, read-only
    // after, so no two accesses can overlap. Checking them costs a `swift_beginAccess` per read,
    // several per field (bench/instructions.sh "": 36,913 instructions a request checked, against
    // 31,663 unchecked).
    @exclusivity(unchecked) @usableFromInline var spans: UnsafeMutablePointer<Span>
    @exclusivity(unchecked) @usableFromInline var count = 0
    @exclusivity(unchecked) var spanCapacity = 16
    @exclusivity(unchecked) @usableFromInline var bytes: UnsafeMutableRawPointer
    @exclusivity(unchecked) var capacity = 256
    /// How many `Connection` fields there are: with none, no field names others to drop.
    @exclusivity(unchecked) public internal(set) var connectionFields = 0

    init() {
        spans = .allocate(capacity: spanCapacity)
        bytes = .allocate(byteCount: capacity, alignment: 8)
    }

    deinit {
        spans.deallocate()
        bytes.deallocate()
    }

    /// Empties it for the next head, keeping its buffers.
    func reset() {
        count = 0
        connectionFields = 0
    }

    /// Records a field at ranges of the head's bytes, relative to `origin` (where the field lines
    /// start; the bytes are copied by `copyLines` once the head is whole).
    @inline(__always)
    func record(name: Range<Int>, value: Range<Int>, origin: Int) {
        if count == spanCapacity {
            let grown = UnsafeMutablePointer<Span>.allocate(capacity: spanCapacity &* 2)
            grown.moveInitialize(from: spans, count: count)
            spans.deallocate()
            spans = grown
            spanCapacity &*= 2
        }
        (spans + count).initialize(
            to: Span(
                nameStart: Int32(truncatingIfNeeded: name.lowerBound &- origin),
                nameEnd: Int32(truncatingIfNeeded: name.upperBound &- origin),
                valueStart: Int32(truncatingIfNeeded: value.lowerBound &- origin),
                valueEnd: Int32(truncatingIfNeeded: value.upperBound &- origin)
            )
        )
        count &+= 1
    }

    /// Copies the field lines, `source[lines]`, that the recorded ranges point into.
    func copyLines(_ source: UnsafeRawBufferPointer, _ lines: Range<Int>) {
        let n = lines.count
        if n > capacity {
            bytes.deallocate()
            capacity = Swift.max(n, capacity &* 2)
            bytes = .allocate(byteCount: capacity, alignment: 8)
        }
        if n > 0, let base = source.baseAddress {
            bytes.copyMemory(from: base + lines.lowerBound, byteCount: n)
        }
    }

    @inlinable
    func withField<R>(
        at index: Int,
        _ body: (_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) throws -> R
    ) rethrows -> R {
        precondition(index >= 0 && index < count, "header field index out of range")
        let span = spans[index]
        let base = UnsafeRawPointer(bytes).assumingMemoryBound(to: UInt8.self)
        return try withExtendedLifetime(self) {
            try body(
                UnsafeBufferPointer(start: base + Int(span.nameStart), count: Int(span.nameEnd &- span.nameStart)),
                UnsafeBufferPointer(start: base + Int(span.valueStart), count: Int(span.valueEnd &- span.valueStart))
            )
        }
    }

    func name(at index: Int) -> String {
        withField(at: index) { n, _ in makeString(UnsafeRawBufferPointer(n), 0..<n.count) }
    }

    func value(at index: Int) -> String {
        withField(at: index) { _, v in makeString(UnsafeRawBufferPointer(v), 0..<v.count) }
    }
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

extension UnsafeBufferPointer<UInt8> {
    /// Whether these bytes are `literal`'s, ignoring ASCII case (false when the lengths differ):
    /// for header names read as bytes (`HTTPHeaders.withField`).
    @inlinable @inline(__always)
    public func equalsIgnoringCase(_ literal: StaticString) -> Bool {
        asciiCaseInsensitiveEqualBytes(
            self,
            UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        )
    }

    /// Whether these bytes are `text`'s UTF-8, ignoring ASCII case.
    @inlinable
    public func equalsIgnoringCase(string text: String) -> Bool {
        guard count == text.utf8.count else { return false }
        return withUTF8Bytes(text) { asciiCaseInsensitiveEqualBytes(self, $0) }
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
