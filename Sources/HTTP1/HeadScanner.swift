// The part of head parsing that requests and responses share: the byte budget and the
// field lines up to the blank line. Every check is made at the byte where it can first be
// decided, scanning forward, so a prefix of the input either is `.incomplete` or fails
// with the same error as the whole input.

/// Where the scan may look: `bytes[..<end]`, where `end` is the received count or, when
/// more than the header budget has arrived, the first byte past the budget.
struct HeadCursor {
    let end: Int
    /// More bytes arrived than the budget allows, so reaching `end` means the head is too large.
    let overBudget: Bool
    let maxHeaderBytes: Int

    init(count: Int, headStart: Int, maxHeaderBytes: Int) {
        // A head's field ranges are 32-bit offsets (`ParsedFields`): no budget goes past them.
        self.maxHeaderBytes = min(max(0, maxHeaderBytes), Int(Int32.max))
        let budget = self.maxHeaderBytes
        if count - headStart > budget {
            end = headStart + budget
            overBudget = true
        } else {
            end = count
            overBudget = false
        }
    }

    /// What running into `end` means.
    func exhausted() -> ScanOutcome {
        overBudget
            ? .failure(.headersTooLarge("header block exceeds \(maxHeaderBytes) bytes without its blank line"))
            : .incomplete
    }
}

enum ScanOutcome {
    case incomplete
    case failure(HTTPParseError)
    /// The index just past the blank line.
    case complete(Int)
}

/// What a connection keeps from one head to the next: the next head's fields are parsed into
/// the last head's `ParsedFields` when nothing else holds them any more (no allocation per
/// head), else into new ones.
public struct FieldStorage {
    var fields: ParsedFields?
    /// The last request's target: a keep-alive client that asks for the same path again gets
    /// the same String (compared byte for byte), not a new one (one allocation for a target
    /// over 15 bytes).
    var target = ""

    public init() {}

    /// `bytes[range]` as a String: the last target when its bytes are the same, else a new one,
    /// kept as the last target.
    mutating func target(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        let n = range.count
        // Only a long target is worth comparing: a short one is an inline String (no allocation).
        if n > 15 && target.utf8.count == n, let base = bytes.baseAddress {
            let same: Bool? = target.utf8.withContiguousStorageIfAvailable { last in
                sameBytes(base + range.lowerBound, UnsafeRawPointer(last.baseAddress!), count: n)
            }
            if same == true { return target }
        }
        target = makeString(bytes, range)
        return target
    }
}

/// Whether `count` bytes at `a` and `b` are the same, compared a word at a time.
@inline(__always)
private func sameBytes(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, count n: Int) -> Bool {
    var k = 0
    while k &+ 8 <= n {
        if a.loadUnaligned(fromByteOffset: k, as: UInt64.self) != b.loadUnaligned(fromByteOffset: k, as: UInt64.self) {
            return false
        }
        k &+= 8
    }
    while k < n {
        if a.load(fromByteOffset: k, as: UInt8.self) != b.load(fromByteOffset: k, as: UInt8.self) { return false }
        k &+= 1
    }
    return true
}

/// Field lines (as ranges, see `ParsedFields`) plus what the framing rules need, gathered while
/// scanning.
struct ScannedFields {
    let fields: ParsedFields
    /// Where the field lines start in the scanned bytes: ranges are recorded relative to it.
    var origin = 0
    var contentLengthCount = 0
    /// The first well-formed Content-Length value.
    var contentLength: Int? = nil
    /// Some Content-Length value is not 1–18 ASCII digits.
    var contentLengthMalformed = false
    /// Two Content-Length values differ.
    var contentLengthConflict = false
    var transferEncodingCount = 0
    /// The (last) Transfer-Encoding value is exactly `chunked`, ignoring case.
    var transferEncodingIsChunked = false
    var hostCount = 0
    var connectionClose = false
    var connectionKeepAlive = false
    var expectCount = 0
    /// Every Expect value is `100-continue`, ignoring case.
    var expectOnlyContinue = true

    /// Scans into `storage`'s fields (emptied, their buffers kept) when nothing else holds them
    /// any more, else into new ones, which `storage` keeps for the next head.
    init(reusing storage: inout FieldStorage) {
        if storage.fields != nil && isKnownUniquelyReferenced(&storage.fields!) {
            fields = storage.fields!
            fields.reset()
        } else {
            fields = ParsedFields()
            storage.fields = fields
        }
    }

    /// The head is whole: its field lines, `bytes[origin..<end]`, are copied for the ranges.
    func finish(_ bytes: UnsafeRawBufferPointer, end: Int) -> HTTPHeaders {
        fields.copyLines(bytes, origin..<end)
        return HTTPHeaders(parsed: fields)
    }

    /// Longest Content-Length accepted: 18 digits always fit an Int.
    static let maxContentLengthDigits = 18

    mutating func record(_ bytes: UnsafeRawBufferPointer, name: Range<Int>, value: Range<Int>) {
        fields.record(name: name, value: value, origin: origin)
        switch name.count {
        case 4:
            if bytesEqualIgnoringCase(bytes, name, "host") { hostCount += 1 }
        case 6:
            if bytesEqualIgnoringCase(bytes, name, "expect") {
                expectCount += 1
                if !bytesEqualIgnoringCase(bytes, value, "100-continue") { expectOnlyContinue = false }
            }
        case 10:
            if bytesEqualIgnoringCase(bytes, name, "connection") {
                fields.connectionFields &+= 1
                scanConnection(bytes, value)
            }
        case 14:
            if bytesEqualIgnoringCase(bytes, name, "content-length") { recordContentLength(bytes, value) }
        case 17:
            if bytesEqualIgnoringCase(bytes, name, "transfer-encoding") {
                transferEncodingCount += 1
                transferEncodingIsChunked = bytesEqualIgnoringCase(bytes, value, "chunked")
            }
        default:
            break
        }
    }

    private mutating func recordContentLength(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>) {
        contentLengthCount += 1
        guard !value.isEmpty, value.count <= Self.maxContentLengthDigits else {
            contentLengthMalformed = true
            return
        }
        var n = 0
        for k in value {
            let d = bytes[k] &- 0x30
            guard d < 10 else {
                contentLengthMalformed = true
                return
            }
            n = n &* 10 &+ Int(d)
        }
        if let first = contentLength {
            if first != n { contentLengthConflict = true }
        } else {
            contentLength = n
        }
    }

    /// `Connection` is a comma-separated list of tokens; only `close` and `keep-alive` matter here.
    private mutating func scanConnection(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>) {
        var i = value.lowerBound
        while i < value.upperBound {
            while i < value.upperBound && (isOWS(bytes[i]) || bytes[i] == ASCII.comma) { i += 1 }
            let start = i
            while i < value.upperBound && bytes[i] != ASCII.comma { i += 1 }
            var end = i
            while end > start && isOWS(bytes[end - 1]) { end -= 1 }
            let token = start..<end
            if bytesEqualIgnoringCase(bytes, token, "close") {
                connectionClose = true
            } else if bytesEqualIgnoringCase(bytes, token, "keep-alive") {
                connectionKeepAlive = true
            }
        }
    }
}

/// Scans field lines from `index` (the byte after the start line's CRLF) through the blank line.
func scanFields(
    _ bytes: UnsafeRawBufferPointer,
    from index: Int,
    cursor: HeadCursor,
    maxHeaderCount: Int,
    into scanned: inout ScannedFields
) -> ScanOutcome {
    let end = cursor.end
    var i = index
    scanned.origin = index
    while true {
        guard i < end else { return cursor.exhausted() }
        let first = bytes[i]
        if first == ASCII.cr {
            guard i + 1 < end else { return cursor.exhausted() }
            guard bytes[i + 1] == ASCII.lf else { return .failure(.badRequest("bare CR in the header block")) }
            return .complete(i + 2)
        }
        if first == ASCII.lf { return .failure(.badRequest("bare LF in the header block, expected CRLF")) }
        if isOWS(first) {
            return .failure(.badRequest("header line starts with whitespace (obsolete line folding)"))
        }
        if scanned.fields.count >= maxHeaderCount {
            return .failure(.headersTooLarge("more than \(maxHeaderCount) header fields"))
        }

        // field-name ":"
        let nameStart = i
        while true {
            guard i < end else { return cursor.exhausted() }
            let c = bytes[i]
            if c == ASCII.colon { break }
            guard isTChar(c) else {
                if isOWS(c) { return .failure(.badRequest("whitespace between header name and ':'")) }
                if c == ASCII.cr || c == ASCII.lf { return .failure(.badRequest("header line without ':'")) }
                return .failure(.badRequest("invalid byte \(describeByte(c)) in header name"))
            }
            i += 1
        }
        let nameEnd = i
        if nameEnd == nameStart { return .failure(.badRequest("empty header name")) }
        i += 1

        // OWS field-value OWS CRLF
        while true {
            guard i < end else { return cursor.exhausted() }
            guard isOWS(bytes[i]) else { break }
            i += 1
        }
        let valueStart = i
        var valueEnd = i
        while true {
            // Eight visible bytes at a time (most of a value); other bytes go one by one below.
            while i &+ 8 <= end && isVisibleWord(loadWord(bytes, i)) {
                i &+= 8
                valueEnd = i
            }
            guard i < end else { return cursor.exhausted() }
            let c = bytes[i]
            if c > ASCII.sp && c != ASCII.del {
                i += 1
                valueEnd = i
            } else if isOWS(c) {
                i += 1
            } else if c == ASCII.cr {
                break
            } else if c == ASCII.lf {
                return .failure(.badRequest("bare LF in a header line, expected CRLF"))
            } else {
                return .failure(.badRequest("control byte \(describeByte(c)) in the value of a header field"))
            }
        }
        guard i + 1 < end else { return cursor.exhausted() }
        guard bytes[i + 1] == ASCII.lf else { return .failure(.badRequest("bare CR in a header line")) }
        i += 2
        scanned.record(bytes, name: nameStart..<nameEnd, value: valueStart..<valueEnd)
    }
}

extension ScanOutcome {
    /// The parse result for a scan that stopped before a whole head: read more, or fail.
    func stopped<Head>() -> HeadParseResult<Head> {
        switch self {
        case .incomplete, .complete: return .incomplete
        case .failure(let e): return .failure(e)
        }
    }
}

enum VersionScan {
    case version(major: UInt8, minor: UInt8)
    case stop(ScanOutcome)
}

/// Scans the 8 bytes `HTTP/d.d` at `i`, leaving `i` after them. Says nothing about which
/// versions are supported; the caller decides.
func scanVersion(_ bytes: UnsafeRawBufferPointer, at i: inout Int, cursor: HeadCursor) -> VersionScan {
    // The usual case, `HTTP/1.1` whole, in one comparison; anything else byte by byte, so a
    // prefix is `.incomplete` and a mismatch fails at its first byte.
    if i &+ 8 <= cursor.end {
        // Byte k of the line is bits 8k..<8k+8 of `w`: `HTTP/` and the `.` are compared at once.
        let w = UInt64(littleEndian: loadWord(bytes, i))
        let fixedBytes: UInt64 = 0x00FF_00FF_FFFF_FFFF
        let expected: UInt64 = 0x002E_002F_5054_5448  // H T T P / _ . _
        let major = UInt8(truncatingIfNeeded: w >> 40) &- 0x30
        let minor = UInt8(truncatingIfNeeded: w >> 56) &- 0x30
        if w & fixedBytes == expected && major < 10 && minor < 10 {
            i &+= 8
            return .version(major: major, minor: minor)
        }
    }
    var major: UInt8 = 0
    var minor: UInt8 = 0
    for k in 0..<8 {
        guard i < cursor.end else { return .stop(cursor.exhausted()) }
        let c = bytes[i]
        let ok: Bool
        switch k {
        case 0: ok = c == 0x48  // H
        case 1, 2: ok = c == 0x54  // T
        case 3: ok = c == 0x50  // P
        case 4: ok = c == ASCII.slash
        case 5:
            major = c &- 0x30
            ok = major < 10
        case 6: ok = c == 0x2E  // .
        default:
            minor = c &- 0x30
            ok = minor < 10
        }
        guard ok else { return .stop(.failure(.badRequest("malformed HTTP version, expected HTTP/1.1 or HTTP/1.0"))) }
        i += 1
    }
    return .version(major: major, minor: minor)
}
