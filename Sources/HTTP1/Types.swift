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
public struct HTTPHeaders: Sendable, Hashable, Sequence {
    public private(set) var fields: [(name: String, value: String)]
    /// How many leading fields came from a head parser (`init(parsed:)`), which has checked each
    /// name is a token and each value free of CR, LF and NUL: writers copy those without checking
    /// them again. Fields added later are checked when written.
    public private(set) var parsedCount = 0

    public init(_ fields: [(name: String, value: String)] = []) {
        self.fields = fields
    }

    /// Fields a head parser has checked (see `parsedCount`).
    public init(parsed fields: [(name: String, value: String)]) {
        self.fields = fields
        self.parsedCount = fields.count
    }

    public var count: Int { fields.count }

    public mutating func add(name: String, value: String) {
        fields.append((name, value))
    }

    /// Replaces every field of this name with one field.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        fields.append((name, value))
    }

    public mutating func remove(name: String) {
        guard let first = fields.firstIndex(where: { $0.name.asciiCaseInsensitiveEquals(name) }) else { return }
        fields.removeAll { $0.name.asciiCaseInsensitiveEquals(name) }
        // Fields after the first removed one have moved: they are checked again when written.
        parsedCount = Swift.min(parsedCount, first)
    }

    /// The first value of the field, if any.
    public func first(name: String) -> String? {
        for f in fields where f.name.asciiCaseInsensitiveEquals(name) { return f.value }
        return nil
    }

    /// Every value of the field, in order.
    public func values(name: String) -> [String] {
        fields.compactMap { $0.name.asciiCaseInsensitiveEquals(name) ? $0.value : nil }
    }

    public func contains(name: String) -> Bool { first(name: name) != nil }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }

    /// Equal fields in the same order (`parsedCount` is not compared).
    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for f in fields {
            hasher.combine(f.name)
            hasher.combine(f.value)
        }
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
