// The codec's entry points. Signatures are fixed (EventHTTP codes against them); the scanning
// shared by requests and responses is in HeadScanner.swift, byte classes in Bytes.swift.

public enum RequestHeadParser {
    /// Empty lines (CRLF) skipped before a request line (RFC 9112 §2.2); more is a bad request.
    public static let maxLeadingEmptyLines = 4

    /// Parses a request head from the start of `bytes` (the bytes received so far).
    /// `.incomplete` when no blank line has arrived and nothing is wrong yet (including when
    /// the bytes so far are under `limits.maxHeaderBytes`); `.failure` as soon as something is.
    /// `consumed` counts skipped leading empty lines too.
    ///
    /// Each call scans from the start of `bytes`. To keep a client that sends a few bytes per
    /// packet from costing quadratic time, call it again only when the new bytes hold an LF or
    /// the buffer has grown past `limits.maxHeaderBytes`: a refusal is then reported at the next
    /// LF or when the budget is passed, at the latest.
    public static func parse(_ bytes: UnsafeRawBufferPointer, limits: HTTPLimits) -> HeadParseResult<RequestHead> {
        var storage = FieldStorage()
        return parse(bytes, limits: limits, reusing: &storage)
    }

    /// `parse`, with the head's fields in `storage`'s buffer when nothing else holds it any more
    /// (see `FieldStorage`); `storage` then shares the new head's.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer,
        limits: HTTPLimits,
        reusing storage: inout FieldStorage
    ) -> HeadParseResult<RequestHead> {
        let count = bytes.count
        var i = 0
        var emptyLines = 0
        while i < count && (bytes[i] == ASCII.cr || bytes[i] == ASCII.lf) {
            guard bytes[i] == ASCII.cr else { return .failure(.badRequest("bare LF before the request line")) }
            guard i + 1 < count else { return .incomplete }
            guard bytes[i + 1] == ASCII.lf else { return .failure(.badRequest("bare CR before the request line")) }
            emptyLines += 1
            if emptyLines > maxLeadingEmptyLines {
                return .failure(.badRequest("more than \(maxLeadingEmptyLines) empty lines before the request line"))
            }
            i += 2
        }
        let cursor = HeadCursor(count: count, headStart: i, maxHeaderBytes: limits.maxHeaderBytes)
        let end = cursor.end

        // method SP
        let methodStart = i
        while true {
            guard i < end else { return cursor.exhausted().stopped() }
            let c = bytes[i]
            if c == ASCII.sp { break }
            guard isTChar(c) else {
                if c == ASCII.cr || c == ASCII.lf {
                    return .failure(.badRequest("request line ends after the method"))
                }
                return .failure(.badRequest("invalid byte \(describeByte(c)) in the method"))
            }
            i += 1
        }
        let methodEnd = i
        if methodEnd == methodStart { return .failure(.badRequest("request line starts with a space")) }
        i += 1

        // request-target SP: origin-form only.
        let targetStart = i
        guard i < end else { return cursor.exhausted().stopped() }
        guard bytes[i] == ASCII.slash else {
            return .failure(
                .badRequest("request target must be origin-form (start with '/'), found \(describeByte(bytes[i]))")
            )
        }
        while true {
            // Eight visible ASCII bytes at a time; a space, control or non-ASCII byte goes below.
            while i &+ 8 <= end {
                let w = loadWord(bytes, i)
                guard isVisibleWord(w) && w & 0x8080_8080_8080_8080 == 0 else { break }
                i &+= 8
            }
            guard i < end else { return cursor.exhausted().stopped() }
            let c = bytes[i]
            if c == ASCII.sp { break }
            guard c > ASCII.sp && c < ASCII.del else {
                if c == ASCII.cr || c == ASCII.lf {
                    return .failure(.badRequest("request line has no HTTP version"))
                }
                return .failure(.badRequest("invalid byte \(describeByte(c)) in the request target"))
            }
            i += 1
        }
        let targetEnd = i
        i += 1

        // HTTP-version CRLF
        let version: (major: UInt8, minor: UInt8)
        switch scanVersion(bytes, at: &i, cursor: cursor) {
        case .stop(let outcome): return outcome.stopped()
        case .version(let major, let minor): version = (major, minor)
        }
        guard i < end else { return cursor.exhausted().stopped() }
        if bytes[i] != ASCII.cr {
            if bytes[i] == ASCII.lf { return .failure(.badRequest("bare LF after the request line, expected CRLF")) }
            return .failure(.badRequest("malformed HTTP version, expected HTTP/1.1 or HTTP/1.0"))
        }
        guard i + 1 < end else { return cursor.exhausted().stopped() }
        guard bytes[i + 1] == ASCII.lf else { return .failure(.badRequest("bare CR after the request line")) }
        i += 2
        guard version.major == 1 && version.minor <= 1 else {
            return .failure(
                .unsupportedVersion(
                    "HTTP/\(version.major).\(version.minor) is not supported, expected HTTP/1.1 or HTTP/1.0"
                )
            )
        }
        let isHTTP11 = version.minor == 1

        var scanned = ScannedFields(reusing: &storage)
        let headEnd: Int
        switch scanFields(bytes, from: i, cursor: cursor, maxHeaderCount: limits.maxHeaderCount, into: &scanned) {
        case .incomplete: return .incomplete
        case .failure(let e): return .failure(e)
        case .complete(let e): headEnd = e
        }

        if isHTTP11 && scanned.hostCount == 0 { return .failure(.badRequest("HTTP/1.1 request without a Host header")) }
        if scanned.hostCount > 1 { return .failure(.badRequest("several Host headers")) }
        if scanned.contentLengthCount > 1 { return .failure(.badRequest("several Content-Length headers")) }
        if scanned.contentLengthMalformed {
            return .failure(.badRequest("Content-Length must be 1 to 18 ASCII digits"))
        }
        let framing: BodyFraming
        if scanned.transferEncodingCount > 0 {
            if scanned.transferEncodingCount > 1 {
                return .failure(.badRequest("several Transfer-Encoding headers"))
            }
            if scanned.contentLengthCount > 0 {
                return .failure(.badRequest("both Transfer-Encoding and Content-Length"))
            }
            if !isHTTP11 { return .failure(.badRequest("Transfer-Encoding in an HTTP/1.0 request")) }
            if !scanned.transferEncodingIsChunked {
                return .failure(.unsupportedTransferEncoding("only Transfer-Encoding: chunked is supported"))
            }
            framing = .chunked
        } else if let length = scanned.contentLength {
            if length > limits.maxBodyBytes {
                return .failure(
                    .bodyTooLarge("Content-Length \(length) exceeds the limit of \(limits.maxBodyBytes) bytes")
                )
            }
            framing = .contentLength(length)
        } else {
            framing = .none
        }
        if scanned.expectCount > 0 && !scanned.expectOnlyContinue {
            return .failure(.expectationFailed("only Expect: 100-continue is supported"))
        }

        let head = RequestHead(
            method: makeString(bytes, methodStart..<methodEnd),
            target: storage.target(bytes, targetStart..<targetEnd),
            version: isHTTP11 ? .http11 : .http10,
            headers: scanned.finish(bytes, end: headEnd),
            framing: framing,
            keepAlive: isHTTP11 ? !scanned.connectionClose : (scanned.connectionKeepAlive && !scanned.connectionClose),
            // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
            expectsContinue: isHTTP11 && scanned.expectCount > 0
        )
        return .complete(head, consumed: headEnd)
    }
}

public enum ResponseHeadParser {
    /// Parses a response head. `requestMethod` decides framing for HEAD; 1xx heads other than
    /// 101 are returned like any other head (the caller skips them). A 101 gets framing `.none`
    /// and `keepAlive` false: the connection no longer speaks HTTP/1.1. Every refusal is
    /// `.badRequest` (the caller answers 502); `limits.maxBodyBytes` bounds Content-Length.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer,
        limits: HTTPLimits,
        requestMethod: String
    ) -> HeadParseResult<ResponseHead> {
        var storage = FieldStorage()
        return parse(bytes, limits: limits, requestMethod: requestMethod, reusing: &storage)
    }

    /// `parse`, with the head's fields in `storage`'s buffer (see `FieldStorage`).
    public static func parse(
        _ bytes: UnsafeRawBufferPointer,
        limits: HTTPLimits,
        requestMethod: String,
        reusing storage: inout FieldStorage
    ) -> HeadParseResult<ResponseHead> {
        switch parseHead(bytes, limits: limits, requestMethod: requestMethod, storage: &storage) {
        case .incomplete: return .incomplete
        case .complete(let head, let consumed): return .complete(head, consumed: consumed)
        case .failure(let e): return .failure(.badRequest("upstream response: \(e.detail)"))
        }
    }

    private static func bad(_ detail: String) -> HeadParseResult<ResponseHead> {
        .failure(.badRequest(detail))
    }

    private static func parseHead(
        _ bytes: UnsafeRawBufferPointer,
        limits: HTTPLimits,
        requestMethod: String,
        storage: inout FieldStorage
    ) -> HeadParseResult<ResponseHead> {
        let cursor = HeadCursor(count: bytes.count, headStart: 0, maxHeaderBytes: limits.maxHeaderBytes)
        let end = cursor.end
        var i = 0

        // HTTP-version SP
        let version: (major: UInt8, minor: UInt8)
        switch scanVersion(bytes, at: &i, cursor: cursor) {
        case .stop(.failure): return bad("malformed status line, expected HTTP/1.x")
        case .stop(let outcome): return outcome.stopped()
        case .version(let major, let minor): version = (major, minor)
        }
        guard version.major == 1 && version.minor <= 1 else {
            return bad("unsupported version HTTP/\(version.major).\(version.minor)")
        }
        guard i < end else { return cursor.exhausted().stopped() }
        guard bytes[i] == ASCII.sp else { return bad("malformed status line, expected a space after the version") }
        i += 1

        // 3DIGIT
        var status = 0
        for _ in 0..<3 {
            guard i < end else { return cursor.exhausted().stopped() }
            let d = bytes[i] &- 0x30
            guard d < 10 else { return bad("malformed status code, expected 3 digits") }
            status = status * 10 + Int(d)
            i += 1
        }
        guard (100...599).contains(status) else { return bad("status code \(status) is outside 100–599") }

        // [SP reason-phrase] CRLF; a missing SP is tolerated when the reason is empty.
        guard i < end else { return cursor.exhausted().stopped() }
        var reasonStart = i
        if bytes[i] == ASCII.sp {
            i += 1
            reasonStart = i
        } else if bytes[i] != ASCII.cr {
            if bytes[i] == ASCII.lf { return bad("bare LF after the status line, expected CRLF") }
            return bad("malformed status line, expected a space after the status code")
        }
        while true {
            guard i < end else { return cursor.exhausted().stopped() }
            let c = bytes[i]
            if c == ASCII.cr { break }
            guard isFieldContentOrWhitespace(c) else {
                if c == ASCII.lf { return bad("bare LF after the status line, expected CRLF") }
                return bad("control byte \(describeByte(c)) in the reason phrase")
            }
            i += 1
        }
        let reasonEnd = i
        guard i + 1 < end else { return cursor.exhausted().stopped() }
        guard bytes[i + 1] == ASCII.lf else { return bad("bare CR in the status line") }
        i += 2

        var scanned = ScannedFields(reusing: &storage)
        let headEnd: Int
        switch scanFields(bytes, from: i, cursor: cursor, maxHeaderCount: limits.maxHeaderCount, into: &scanned) {
        case .incomplete: return .incomplete
        case .failure(let e): return .failure(e)
        case .complete(let e): headEnd = e
        }

        let isHTTP11 = version.minor == 1
        if scanned.contentLengthMalformed { return bad("Content-Length must be 1 to 18 ASCII digits") }
        if scanned.contentLengthConflict { return bad("several differing Content-Length values") }
        if scanned.transferEncodingCount > 1 { return bad("several Transfer-Encoding headers") }
        if scanned.transferEncodingCount > 0 {
            if scanned.contentLengthCount > 0 { return bad("both Transfer-Encoding and Content-Length") }
            if !isHTTP11 { return bad("Transfer-Encoding in an HTTP/1.0 response") }
            if !scanned.transferEncodingIsChunked { return bad("Transfer-Encoding other than chunked") }
        }

        let framing: BodyFraming
        if requestMethod == "HEAD" || status < 200 || status == 204 || status == 304 {
            framing = .none
        } else if scanned.transferEncodingCount > 0 {
            framing = .chunked
        } else if let length = scanned.contentLength {
            if length > limits.maxBodyBytes {
                return bad("Content-Length \(length) exceeds the limit of \(limits.maxBodyBytes) bytes")
            }
            framing = .contentLength(length)
        } else {
            framing = .untilClose
        }
        var keepAlive = isHTTP11 ? !scanned.connectionClose : (scanned.connectionKeepAlive && !scanned.connectionClose)
        if framing == .untilClose || status == 101 { keepAlive = false }

        let head = ResponseHead(
            status: status,
            reason: makeString(bytes, reasonStart..<reasonEnd),
            version: isHTTP11 ? .http11 : .http10,
            headers: scanned.finish(bytes, end: headEnd),
            framing: framing,
            keepAlive: keepAlive
        )
        return .complete(head, consumed: headEnd)
    }
}

/// Incremental decoder of a chunked body (RFC 9112 §7.1), trailers read and discarded.
///
/// Strict framing: 1–16 hex digits of chunk size, optional `;name[=token|"quoted"]` extensions
/// (whitespace only around `;` and `=`), CRLF after the size line and after each chunk's data,
/// trailer fields, then CRLF. A size line is at most `maxSizeLineBytes`, the trailer block at
/// most `maxTrailerBytes`.
public struct ChunkedDecoder: Sendable {
    public struct Progress: Sendable, Hashable {
        /// Bytes of the input that were used (the caller drains them).
        public var consumed: Int
        /// Payload ranges within the input, in order.
        public var data: [Range<Int>]
        /// The last chunk and the trailers have been read.
        public var isComplete: Bool

        public init(consumed: Int, data: [Range<Int>], isComplete: Bool) {
            self.consumed = consumed
            self.data = data
            self.isComplete = isComplete
        }
    }

    /// Bytes of a chunk-size line, extensions included, CRLF excluded.
    public static let maxSizeLineBytes = 1024
    /// Bytes of all trailer field lines together, CRLFs included.
    public static let maxTrailerBytes = 8 * 1024

    private enum State: Sendable {
        case size  // hex digits
        case extEnd  // after the size or a whole extension: `;`, OWS or CR
        case wsBeforeSemicolon  // OWS that must be followed by `;`
        case beforeExtName
        case extName
        case wsAfterExtName  // OWS that must be followed by `=` or `;`
        case beforeExtValue
        case extToken
        case extQuoted
        case extQuotedEscape
        case sizeLF
        case data
        case dataCR
        case dataLF
        case trailerLineStart
        case trailerName
        case trailerValue
        case trailerLF
        case finalLF
        case done
    }

    private let maxBodyBytes: Int
    private var state: State = .size
    private var sizeDigits = 0
    private var chunkSize: UInt64 = 0
    private var remaining = 0
    private var lineBytes = 0
    private var trailerBytes = 0
    private var failure: HTTPParseError? = nil
    /// Payload bytes decoded so far.
    public private(set) var bodyBytes = 0

    /// `maxBodyBytes` bounds the de-chunked payload (`.bodyTooLarge` past it).
    public init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    /// The last chunk and the trailers have been read.
    public var isComplete: Bool { state == .done }

    /// Feeds the bytes received so far (after what was consumed before). Until the body is
    /// complete every byte given is consumed; once it is, `consumed` stops after the final
    /// CRLF and later calls consume nothing. After a failure every call returns that failure.
    public mutating func decode(_ bytes: UnsafeRawBufferPointer) -> Result<Progress, HTTPParseError> {
        if let failure { return .failure(failure) }
        var data: [Range<Int>] = []
        var i = 0
        let count = bytes.count
        while i < count {
            if state == .data {
                let n = min(remaining, count - i)
                data.append(i..<(i + n))
                remaining -= n
                bodyBytes += n
                i += n
                if remaining == 0 { state = .dataCR }
                continue
            }
            if state == .done { break }
            if let error = step(bytes[i]) {
                failure = error
                return .failure(error)
            }
            i += 1
        }
        return .success(Progress(consumed: i, data: data, isComplete: state == .done))
    }

    /// Advances over one framing byte (any state but `.data` and `.done`).
    private mutating func step(_ c: UInt8) -> HTTPParseError? {
        switch state {
        case .size, .extEnd, .wsBeforeSemicolon, .beforeExtName, .extName, .wsAfterExtName, .beforeExtValue,
            .extToken, .extQuoted, .extQuotedEscape:
            if c != ASCII.cr {
                lineBytes += 1
                if lineBytes > Self.maxSizeLineBytes {
                    return .badRequest("chunk size line longer than \(Self.maxSizeLineBytes) bytes")
                }
            }
            return stepSizeLine(c)

        case .sizeLF:
            guard c == ASCII.lf else { return .badRequest("bare CR after a chunk size") }
            if chunkSize == 0 {
                state = .trailerLineStart
                return nil
            }
            if chunkSize > UInt64(max(0, maxBodyBytes - bodyBytes)) {
                return .bodyTooLarge("chunked body exceeds the limit of \(maxBodyBytes) bytes")
            }
            remaining = Int(chunkSize)
            state = .data
            return nil

        case .dataCR:
            guard c == ASCII.cr else { return .badRequest("chunk data not followed by CRLF") }
            state = .dataLF
            return nil

        case .dataLF:
            guard c == ASCII.lf else { return .badRequest("chunk data not followed by CRLF") }
            state = .size
            sizeDigits = 0
            chunkSize = 0
            lineBytes = 0
            return nil

        case .trailerLineStart, .trailerName, .trailerValue, .trailerLF:
            trailerBytes += 1
            if trailerBytes > Self.maxTrailerBytes {
                return .badRequest("chunked trailer fields exceed \(Self.maxTrailerBytes) bytes")
            }
            return stepTrailer(c)

        case .finalLF:
            guard c == ASCII.lf else { return .badRequest("bare CR at the end of a chunked body") }
            state = .done
            return nil

        case .data, .done:
            preconditionFailure("ChunkedDecoder.step is never called in the data or done state.")
        }
    }

    private mutating func stepSizeLine(_ c: UInt8) -> HTTPParseError? {
        let badExtension = HTTPParseError.badRequest("malformed chunk extension")
        switch state {
        case .size:
            if let v = hexValue(c) {
                sizeDigits += 1
                if sizeDigits > 16 { return .badRequest("chunk size longer than 16 hex digits") }
                chunkSize = chunkSize << 4 | UInt64(v)
                return nil
            }
            if sizeDigits == 0 { return .badRequest("chunk size is not a hex number") }
            state = .extEnd
            return stepSizeLine(c)
        case .extEnd:
            switch c {
            case ASCII.semicolon: state = .beforeExtName
            case ASCII.cr: state = .sizeLF
            case ASCII.sp, ASCII.htab: state = .wsBeforeSemicolon
            case ASCII.lf: return .badRequest("bare LF after a chunk size, expected CRLF")
            default: return .badRequest("invalid byte \(describeByte(c)) after a chunk size")
            }
        case .wsBeforeSemicolon:
            if c == ASCII.semicolon {
                state = .beforeExtName
            } else if !isOWS(c) {
                return badExtension
            }
        case .beforeExtName:
            if isTChar(c) {
                state = .extName
            } else if !isOWS(c) {
                return badExtension
            }
        case .extName:
            if isTChar(c) { return nil }
            switch c {
            case ASCII.equals: state = .beforeExtValue
            case ASCII.semicolon: state = .beforeExtName
            case ASCII.cr: state = .sizeLF
            case ASCII.sp, ASCII.htab: state = .wsAfterExtName
            default: return badExtension
            }
        case .wsAfterExtName:
            switch c {
            case ASCII.equals: state = .beforeExtValue
            case ASCII.semicolon: state = .beforeExtName
            case ASCII.sp, ASCII.htab: break
            default: return badExtension
            }
        case .beforeExtValue:
            if c == ASCII.quote {
                state = .extQuoted
            } else if isTChar(c) {
                state = .extToken
            } else if !isOWS(c) {
                return badExtension
            }
        case .extToken:
            if isTChar(c) { return nil }
            state = .extEnd
            return stepSizeLine(c)
        case .extQuoted:
            if c == ASCII.quote {
                state = .extEnd
            } else if c == ASCII.backslash {
                state = .extQuotedEscape
            } else if !isFieldContentOrWhitespace(c) {
                return badExtension
            }
        case .extQuotedEscape:
            guard isFieldContentOrWhitespace(c) else { return badExtension }
            state = .extQuoted
        default:
            preconditionFailure("ChunkedDecoder.stepSizeLine is only called on a size line.")
        }
        return nil
    }

    private mutating func stepTrailer(_ c: UInt8) -> HTTPParseError? {
        switch state {
        case .trailerLineStart:
            if c == ASCII.cr {
                state = .finalLF
            } else if isTChar(c) {
                state = .trailerName
            } else if isOWS(c) {
                return .badRequest("trailer line starts with whitespace (obsolete line folding)")
            } else if c == ASCII.lf {
                return .badRequest("bare LF in the trailer section, expected CRLF")
            } else {
                return .badRequest("invalid byte \(describeByte(c)) in a trailer field name")
            }
        case .trailerName:
            if c == ASCII.colon {
                state = .trailerValue
            } else if !isTChar(c) {
                return .badRequest("invalid byte \(describeByte(c)) in a trailer field name")
            }
        case .trailerValue:
            if c == ASCII.cr {
                state = .trailerLF
            } else if !isFieldContentOrWhitespace(c) {
                return .badRequest("control byte \(describeByte(c)) in a trailer field value")
            }
        case .trailerLF:
            guard c == ASCII.lf else { return .badRequest("bare CR in the trailer section") }
            state = .trailerLineStart
        default:
            preconditionFailure("ChunkedDecoder.stepTrailer is only called in the trailer section.")
        }
        return nil
    }
}

public enum HTTPSerializer {
    /// `HTTP/1.1 200 OK\r\n` + headers + `content-length` (when given) + `\r\n`.
    /// Header fields whose name is not a token or whose value contains CR, LF or NUL are
    /// dropped, never written. When `contentLength` is given, `content-length` and
    /// `transfer-encoding` fields in `headers` are dropped too, so the framing is never ambiguous.
    /// `status` must be in 100...999 and `contentLength` non-negative (programmer errors trap).
    public static func responseHead(status: Int, headers: HTTPHeaders, contentLength: Int?) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(estimatedCapacity(headers) + 32)
        appendStatusLine(&out, status: status)
        appendFields(&out, headers, contentLength)
        return out
    }

    /// `METHOD target HTTP/1.1\r\n` + headers + `content-length` (when given) + `\r\n`, with the
    /// same header rules as `responseHead`. `method` must be a token (a programmer error traps);
    /// target bytes outside visible ASCII are percent-encoded so they cannot break the line.
    public static func requestHead(method: String, target: String, headers: HTTPHeaders, contentLength: Int?) -> [UInt8]
    {
        var out: [UInt8] = []
        out.reserveCapacity(estimatedCapacity(headers) + method.utf8.count + target.utf8.count)
        appendRequestLine(&out, method: method, target: target)
        appendFields(&out, headers, contentLength)
        return out
    }

    // The pieces of a head, for callers that write fields from several sources into one reused
    // buffer (no intermediate `HTTPHeaders`). `responseHead` is `appendStatusLine`, then
    // `appendField(…, droppingFraming: contentLength != nil)` per field, then `appendEnd`.

    /// Appends `HTTP/1.1 200 OK\r\n`. `status` must be in 100...999.
    public static func appendStatusLine(_ out: inout [UInt8], status: Int) {
        precondition((100...999).contains(status), "HTTPSerializer needs a 3-digit status code, got \(status).")
        out.append(contentsOf: "HTTP/1.1 ".utf8)
        out.appendDecimal(status)
        out.append(ASCII.sp)
        out.append(contentsOf: reasonPhrase(status).utf8)
        out.append(ASCII.cr)
        out.append(ASCII.lf)
    }

    /// Appends `METHOD target HTTP/1.1\r\n` (see `requestHead`).
    public static func appendRequestLine(_ out: inout [UInt8], method: String, target: String) {
        precondition(isToken(method), "HTTPSerializer needs a token as the method, got \"\(method)\".")
        out.append(contentsOf: method.utf8)
        out.append(ASCII.sp)
        if target.isEmpty { out.append(ASCII.slash) }
        let copied: Void? = target.utf8.withContiguousStorageIfAvailable { bytes in
            // Most targets are visible ASCII: copy them in one piece.
            if !bytes.contains(where: { $0 <= ASCII.sp || $0 >= ASCII.del }) {
                out.append(contentsOf: bytes)
            } else {
                appendPercentEncoded(&out, bytes)
            }
        }
        if copied == nil { appendPercentEncoded(&out, target.utf8) }
        out.append(contentsOf: " HTTP/1.1\r\n".utf8)
    }

    private static func appendPercentEncoded(_ out: inout [UInt8], _ bytes: some Sequence<UInt8>) {
        for c in bytes {
            if c > ASCII.sp && c < ASCII.del {
                out.append(c)
            } else {
                out.append(0x25)  // %
                out.append(hexDigit(c >> 4))
                out.append(hexDigit(c & 0x0F))
            }
        }
    }

    /// Appends `name: value\r\n`, unless the name is not a token or the value holds CR, LF or
    /// NUL, or `droppingFraming` is set and the name is `content-length` or `transfer-encoding`.
    @inline(__always)
    public static func appendField(_ out: inout [UInt8], name: String, value: String, droppingFraming: Bool) {
        // Native strings lend their contiguous UTF-8 without a copy or a mutable copy of the String
        // (`withUTF8` on a `var` costs a retain and a uniqueness check per string).
        let done: Void? =
            name.utf8.withContiguousStorageIfAvailable { n in
                value.utf8.withContiguousStorageIfAvailable { v in
                    appendField(&out, name: n, value: v, droppingFraming: droppingFraming)
                }
            } ?? nil
        if done == nil {
            var name = name
            var value = value
            name.withUTF8 { n in
                value.withUTF8 { v in appendField(&out, name: n, value: v, droppingFraming: droppingFraming) }
            }
        }
    }

    @inline(__always)
    static func appendField(
        _ out: inout [UInt8],
        name n: UnsafeBufferPointer<UInt8>,
        value v: UnsafeBufferPointer<UInt8>,
        droppingFraming: Bool
    ) {
        guard !n.isEmpty else { return }
        for c in n where !isTChar(c) { return }
        guard isSafeFieldValueBytes(v) else { return }
        if droppingFraming && (n.count == 14 || n.count == 17) {
            let raw = UnsafeRawBufferPointer(n)
            if bytesEqualIgnoringCase(raw, 0..<n.count, "content-length")
                || bytesEqualIgnoringCase(raw, 0..<n.count, "transfer-encoding")
            {
                return
            }
        }
        // One append: one capacity check and two copies, not six appends (measured: six
        // appends cost about 500 instructions a request more).
        out.append(contentsOf: FieldLine(name: n, value: v))
    }

    /// Appends the field at `index` of `headers`: its bytes copied as they are when a head
    /// parser checked them (`HTTPHeaders.parsedCount`), else checked as `appendField` checks them.
    @inline(__always)
    public static func appendField(
        _ out: inout [UInt8],
        at index: Int,
        of headers: HTTPHeaders,
        droppingFraming: Bool
    ) {
        let checked = index < headers.parsedCount
        headers.withField(at: index) { n, v in
            if checked {
                out.append(contentsOf: FieldLine(name: n, value: v))
            } else {
                appendField(&out, name: n, value: v, droppingFraming: droppingFraming)
            }
        }
    }

    /// Appends a constant field line (`name: value\r\n`, CRLF included) as it is.
    @inline(__always)
    public static func appendLine(_ out: inout [UInt8], _ line: StaticString) {
        out.append(contentsOf: UnsafeBufferPointer(start: line.utf8Start, count: line.utf8CodeUnitCount))
    }

    /// Appends `name: value\r\n` without checking either: for fields a head parser has checked
    /// (`HTTPHeaders.parsedCount`) and the sidecar's own constant or checked values.
    @inline(__always)
    public static func appendCheckedField(_ out: inout [UInt8], name: String, value: String) {
        let done: Void? =
            name.utf8.withContiguousStorageIfAvailable { n in
                value.utf8.withContiguousStorageIfAvailable { v in
                    out.append(contentsOf: FieldLine(name: n, value: v))
                }
            } ?? nil
        if done == nil {
            out.append(contentsOf: name.utf8)
            out.append(ASCII.colon)
            out.append(ASCII.sp)
            out.append(contentsOf: value.utf8)
            out.append(ASCII.cr)
            out.append(ASCII.lf)
        }
    }

    /// No CR, LF or NUL in `v`.
    @inline(__always)
    static func isSafeFieldValueBytes(_ v: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = v.count
        guard let base = v.baseAddress else { return true }
        var k = 0
        // Eight bytes at a time while none is below 0x0E (no CR, LF or NUL can hide there).
        while k &+ 8 <= n
            && !hasByte(below: 0x0E, in: UnsafeRawPointer(base).loadUnaligned(fromByteOffset: k, as: UInt64.self))
        {
            k &+= 8
        }
        while k < n {
            let c = v[k]
            if c == ASCII.cr || c == ASCII.lf || c == 0 { return false }
            k &+= 1
        }
        return true
    }

    /// Appends `content-length: N\r\n` when `contentLength` is given, then the blank line.
    public static func appendEnd(_ out: inout [UInt8], contentLength: Int?) {
        if let contentLength {
            precondition(
                contentLength >= 0,
                "HTTPSerializer needs a non-negative content length, got \(contentLength)."
            )
            out.append(contentsOf: "content-length: ".utf8)
            out.appendDecimal(contentLength)
            out.append(ASCII.cr)
            out.append(ASCII.lf)
        }
        out.append(ASCII.cr)
        out.append(ASCII.lf)
    }

    /// The standard reason phrase (`Not Found`), or `Unknown`.
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 101: return "Switching Protocols"
        case 102: return "Processing"
        case 103: return "Early Hints"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 203: return "Non-Authoritative Information"
        case 204: return "No Content"
        case 205: return "Reset Content"
        case 206: return "Partial Content"
        case 300: return "Multiple Choices"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 402: return "Payment Required"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 406: return "Not Acceptable"
        case 407: return "Proxy Authentication Required"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 410: return "Gone"
        case 411: return "Length Required"
        case 412: return "Precondition Failed"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 416: return "Range Not Satisfiable"
        case 417: return "Expectation Failed"
        case 421: return "Misdirected Request"
        case 422: return "Unprocessable Content"
        case 423: return "Locked"
        case 424: return "Failed Dependency"
        case 425: return "Too Early"
        case 426: return "Upgrade Required"
        case 428: return "Precondition Required"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Unknown"
        }
    }

    /// Whether `name` is a non-empty token, i.e. writable as a field name or method.
    public static func isToken(_ name: String) -> Bool {
        let utf8 = name.utf8
        return !utf8.isEmpty && utf8.allSatisfy(isTChar)
    }

    /// Whether `value` can be written as a field value without ending the line: no CR, LF or NUL.
    public static func isSafeFieldValue(_ value: String) -> Bool {
        !value.utf8.contains { $0 == ASCII.cr || $0 == ASCII.lf || $0 == 0 }
    }

    private static func estimatedCapacity(_ headers: HTTPHeaders) -> Int {
        var n = 64  // start line, content-length, final CRLF
        for k in 0..<headers.count { n += headers.withField(at: k) { name, value in name.count + value.count + 4 } }
        return n
    }

    private static func appendFields(_ out: inout [UInt8], _ headers: HTTPHeaders, _ contentLength: Int?) {
        let droppingFraming = contentLength != nil
        for k in 0..<headers.count {
            headers.withField(at: k) { n, v in appendField(&out, name: n, value: v, droppingFraming: droppingFraming) }
        }
        appendEnd(&out, contentLength: contentLength)
    }

    private static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x41 + v - 10 }
}

/// `name: value\r\n` as a sequence of bytes that copies itself into an array's storage whole.
struct FieldLine: Sequence {
    let name: UnsafeBufferPointer<UInt8>
    let value: UnsafeBufferPointer<UInt8>

    var underestimatedCount: Int { name.count &+ value.count &+ 4 }

    struct Iterator: IteratorProtocol {
        let line: FieldLine
        var offset: Int

        mutating func next() -> UInt8? {
            let n = line.name.count
            let v = line.value.count
            defer { offset &+= 1 }
            switch offset {
            case ..<n: return line.name[offset]
            case n: return ASCII.colon
            case n &+ 1: return ASCII.sp
            case ..<(n &+ 2 &+ v): return line.value[offset &- n &- 2]
            case n &+ 2 &+ v: return ASCII.cr
            case n &+ 3 &+ v: return ASCII.lf
            default:
                offset &-= 1
                return nil
            }
        }
    }

    func makeIterator() -> Iterator { Iterator(line: self, offset: 0) }

    // `Array.append(contentsOf:)` reserves `underestimatedCount` and then calls this: two
    // `memcpy`s and four stores instead of a call per byte (swift-nio's `ByteBufferView` does the same).
    func _copyContents(initializing buffer: UnsafeMutableBufferPointer<UInt8>) -> (Iterator, Int) {
        let total = underestimatedCount
        guard buffer.count >= total, let out = buffer.baseAddress else {
            // Not room for all of it: the element-by-element way.
            var iterator = makeIterator()
            var written = 0
            while written < buffer.count, let byte = iterator.next() {
                buffer[written] = byte
                written &+= 1
            }
            return (iterator, written)
        }
        let n = name.count
        let v = value.count
        if let base = name.baseAddress { out.initialize(from: base, count: n) }
        out[n] = ASCII.colon
        out[n &+ 1] = ASCII.sp
        if let base = value.baseAddress { (out + (n &+ 2)).initialize(from: base, count: v) }
        out[n &+ 2 &+ v] = ASCII.cr
        out[n &+ 3 &+ v] = ASCII.lf
        return (Iterator(line: self, offset: total), total)
    }
}

/// Hop-by-hop header names (RFC 9110 §7.6.1), lower-case, which a proxy never forwards,
/// plus those named in the message's own `Connection` header.
public enum HopByHop {
    public static let names: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// Whether `name` is in `names`, ignoring ASCII case.
    public static func isHopByHop(_ name: String) -> Bool {
        withUTF8Bytes(name) { isHopByHop($0) }
    }

    /// The field names listed in the `Connection` fields of `headers`, in order; empty (without
    /// allocating) when there is no `Connection` field.
    public static func connectionNamed(in headers: HTTPHeaders) -> [String] {
        var named: [String] = []
        // A parsed head knows whether it has a `Connection` field: most have none.
        if headers.parsed?.connectionFields == 0 && headers.count == headers.parsed?.count { return named }
        for k in 0..<headers.count {
            headers.withField(at: k) { name, value in
                guard isConnection(name) else { return }
                for token in value.split(separator: ASCII.comma) {
                    var t = token.drop(while: isOWS)
                    while let last = t.last, isOWS(last) { t = t.dropLast() }
                    if !t.isEmpty { named.append(String(decoding: t, as: UTF8.self)) }
                }
            }
        }
        return named
    }

    /// Whether a field name is `Connection`, ignoring ASCII case.
    @inline(__always)
    public static func isConnection(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        name.count == 10 && name.equalsIgnoringCase("connection")
    }

    /// Whether `name` is in `names`, ignoring ASCII case.
    public static func isHopByHop(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        switch name.count {
        case 2: return name.equalsIgnoringCase("te")
        case 7: return name.equalsIgnoringCase("trailer") || name.equalsIgnoringCase("upgrade")
        case 10: return name.equalsIgnoringCase("connection") || name.equalsIgnoringCase("keep-alive")
        case 16: return name.equalsIgnoringCase("proxy-connection")
        case 17: return name.equalsIgnoringCase("transfer-encoding")
        case 18: return name.equalsIgnoringCase("proxy-authenticate")
        case 19: return name.equalsIgnoringCase("proxy-authorization")
        default: return false
        }
    }

    /// `headers` without the hop-by-hop fields and without the fields named in its `Connection` values.
    public static func removing(from headers: HTTPHeaders) -> HTTPHeaders {
        let named = connectionNamed(in: headers)
        var kept: [(name: String, value: String)] = []
        kept.reserveCapacity(headers.count)
        for field in headers.fields {
            if isHopByHop(field.name) { continue }
            if named.contains(where: { $0.asciiCaseInsensitiveEquals(field.name) }) { continue }
            kept.append(field)
        }
        return HTTPHeaders(kept)
    }
}
