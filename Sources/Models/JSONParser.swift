/// Why a JSON text was refused, and where.
public struct JSONError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Zero-based byte offset of the problem in the input.
    public var offset: Int
    /// What was found, e.g. `unexpected character 'x'`.
    public var reason: String
    /// What would have been valid there, e.g. `',' or ']'`; nil when nothing helps.
    public var expected: String?

    public init(offset: Int, reason: String, expected: String? = nil) {
        self.offset = offset
        self.reason = reason
        self.expected = expected
    }

    /// `unexpected character 'x' at byte 12; expected ',' or '}'`.
    public var description: String {
        var text = "\(reason) at byte \(offset)"
        if let expected { text += "; expected \(expected)" }
        return text
    }
}

/// A strict RFC 8259 parser over UTF-8 bytes.
///
/// Single pass, no recursion (nesting is an explicit stack, bounded by `maxDepth`), no
/// `Character` iteration. Refuses trailing commas, `NaN`/`Infinity`, leading zeros, control
/// characters and invalid escapes in strings, lone surrogates, invalid UTF-8, a byte order mark,
/// duplicate object keys, numbers that overflow a `Double`, and anything but whitespace after
/// the top-level value. Any value may be at the top level.
public enum JSONParser {
    /// Nesting limit used when the caller gives none: arrays and objects count one level each.
    public static let defaultMaxDepth = 64

    /// Parses one JSON text.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer,
        maxDepth: Int = defaultMaxDepth
    ) throws(JSONError)
        -> JSON
    {
        guard let base = bytes.baseAddress, !bytes.isEmpty else {
            throw JSONError(offset: 0, reason: "empty input", expected: "a JSON value")
        }
        // The parser's stacks start in this function's frame: a small document allocates nothing
        // but its result.
        let result = withUnsafeTemporaryAllocation(of: JSON.self, capacity: 16) { values in
            withUnsafeTemporaryAllocation(of: Parser.Key.self, capacity: 8) { keys in
                withUnsafeTemporaryAllocation(of: Parser.Frame.self, capacity: 8) { frames in
                    var parser = Parser(
                        base: base.assumingMemoryBound(to: UInt8.self),
                        count: bytes.count,
                        maxDepth: maxDepth,
                        storage: (values, keys, frames)
                    )
                    return Result { () throws(JSONError) -> JSON in try parser.parseDocument() }
                }
            }
        }
        return try result.get()
    }

    /// Parses one JSON text.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSON {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(JSONError) -> JSON in try parse(buffer, maxDepth: maxDepth) }
        }
        return try result.get()
    }

    /// Parses one JSON text given as a string (its UTF-8 bytes).
    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> JSON {
        var text = text
        let result = text.withUTF8 { buffer in
            Result { () throws(JSONError) -> JSON in try parse(UnsafeRawBufferPointer(buffer), maxDepth: maxDepth) }
        }
        return try result.get()
    }
}

// Powers of ten exactly representable as Double, for the exact fast path of number conversion.
private let exactPowersOfTen: [Double] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]

private enum Byte {
    static let quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\")
    static let comma = UInt8(ascii: ",")
    static let colon = UInt8(ascii: ":")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let minus = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let nine = UInt8(ascii: "9")
}

/// How a byte reads in an error message: `character 'x'` or `byte 0x01`.
func describeByte(_ byte: UInt8) -> String {
    if byte > 0x20 && byte < 0x7F { return "character '\(Character(Unicode.Scalar(byte)))'" }
    return "byte 0x\(hex2(byte))"
}

func hex2(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
}

/// A stack whose elements are moved in and out, never copied. It starts in storage the caller
/// lends (on the machine stack) and moves to the heap only when it outgrows it.
private struct Stack<Element>: ~Copyable {
    private(set) var base: UnsafeMutablePointer<Element>
    private(set) var count = 0
    private var capacity: Int
    private var isOnHeap = false

    init(lending storage: UnsafeMutableBufferPointer<Element>) {
        precondition(storage.count > 0, "A parser stack needs lent storage for at least one element.")
        base = storage.baseAddress!
        capacity = storage.count
    }

    deinit {
        base.deinitialize(count: count)
        if isOnHeap { base.deallocate() }
    }

    var last: Element? { count > 0 ? base[count - 1] : nil }

    subscript(index: Int) -> Element { base[index] }

    @inline(__always)
    mutating func push(_ element: consuming Element) {
        if count == capacity { grow() }
        (base + count).initialize(to: element)
        count += 1
    }

    mutating func pop() -> Element {
        count -= 1
        return (base + count).move()
    }

    /// Hands `body` the elements from `start` to the top, which it must move out, and drops them.
    mutating func moveOut<Result>(from start: Int, _ body: (UnsafeMutablePointer<Element>, Int) -> Result) -> Result {
        let result = body(base + start, count - start)
        count = start
        return result
    }

    private mutating func grow() {
        // Quadrupling while small copies a third as many elements for a tensor's few hundred
        // numbers; doubling beyond keeps a large document's spare stack at most its own size.
        let newCapacity = capacity < 4096 ? capacity * 4 : capacity * 2
        let newBase = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
        newBase.moveInitialize(from: base, count: count)
        if isOnHeap { base.deallocate() }
        base = newBase
        capacity = newCapacity
        isOnHeap = true
    }
}

private struct Parser: ~Copyable {
    struct Frame {
        var isObject: Bool
        var valueStart: Int
        var keyStart: Int
    }

    struct Key {
        var name: String
        var offset: Int
    }

    let p: UnsafePointer<UInt8>
    let count: Int
    let maxDepth: Int
    var i = 0
    // Finished values, keys and open containers: a container's children sit on top of these
    // stacks until it closes, so nesting needs no recursion.
    var values: Stack<JSON>
    var keys: Stack<Key>
    var frames: Stack<Frame>

    init(
        base: UnsafePointer<UInt8>,
        count: Int,
        maxDepth: Int,
        storage: (
            values: UnsafeMutableBufferPointer<JSON>,
            keys: UnsafeMutableBufferPointer<Key>,
            frames: UnsafeMutableBufferPointer<Frame>
        )
    ) {
        self.p = base
        self.count = count
        self.maxDepth = maxDepth
        values = Stack(lending: storage.values)
        keys = Stack(lending: storage.keys)
        frames = Stack(lending: storage.frames)
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while i < count {
            switch p[i] {
            case 0x20, 0x0A, 0x0D, 0x09: i += 1
            default: return
            }
        }
    }

    func unexpected(expected: String) -> JSONError {
        if i >= count { return JSONError(offset: i, reason: "unexpected end of input", expected: expected) }
        return JSONError(offset: i, reason: "unexpected \(describeByte(p[i]))", expected: expected)
    }

    mutating func parseDocument() throws(JSONError) -> JSON {
        if count >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF {
            throw JSONError(offset: 0, reason: "byte order mark is not allowed", expected: "a JSON value")
        }
        try parseValue()
        skipWhitespace()
        if i < count {
            throw JSONError(
                offset: i,
                reason: "unexpected \(describeByte(p[i])) after the JSON value",
                expected: "end of input"
            )
        }
        return values.pop()
    }

    mutating func parseValue() throws(JSONError) {
        valueLoop: while true {
            skipWhitespace()
            guard i < count else { throw unexpected(expected: "a value") }
            switch p[i] {
            case Byte.openBrace:
                try checkDepth()
                i += 1
                skipWhitespace()
                if i < count && p[i] == Byte.closeBrace {
                    i += 1
                    values.push(.object(JSONObject()))
                } else {
                    frames.push(Frame(isObject: true, valueStart: values.count, keyStart: keys.count))
                    try parseKeyAndColon()
                    continue valueLoop
                }
            case Byte.openBracket:
                try checkDepth()
                i += 1
                skipWhitespace()
                if i < count && p[i] == Byte.closeBracket {
                    i += 1
                    values.push(.array([]))
                } else {
                    frames.push(Frame(isObject: false, valueStart: values.count, keyStart: keys.count))
                    continue valueLoop
                }
            case Byte.quote:
                values.push(.string(try parseString()))
            case UInt8(ascii: "t"):
                try expectLiteral("true")
                values.push(.bool(true))
            case UInt8(ascii: "f"):
                try expectLiteral("false")
                values.push(.bool(false))
            case UInt8(ascii: "n"):
                try expectLiteral("null")
                values.push(.null)
            case Byte.minus, Byte.zero...Byte.nine:
                values.push(.number(try parseNumber()))
            case UInt8(ascii: "N"), UInt8(ascii: "I"):
                throw JSONError(
                    offset: i,
                    reason: "unexpected \(describeByte(p[i])) (NaN and Infinity are not JSON)",
                    expected: "a value"
                )
            default:
                throw unexpected(expected: "a value")
            }

            // A value is complete: close every container that ends here, or move to the next element.
            while let frame = frames.last {
                skipWhitespace()
                guard i < count else {
                    throw unexpected(expected: frame.isObject ? "',' or '}'" : "',' or ']'")
                }
                let byte = p[i]
                if byte == Byte.comma {
                    i += 1
                    if frame.isObject {
                        skipWhitespace()
                        try parseKeyAndColon()
                    }
                    continue valueLoop
                } else if frame.isObject && byte == Byte.closeBrace {
                    i += 1
                    try closeObject(frame)
                } else if !frame.isObject && byte == Byte.closeBracket {
                    i += 1
                    closeArray(frame)
                } else {
                    throw unexpected(expected: frame.isObject ? "',' or '}'" : "',' or ']'")
                }
            }
            return
        }
    }

    func checkDepth() throws(JSONError) {
        if frames.count >= maxDepth {
            throw JSONError(offset: i, reason: "nesting deeper than \(maxDepth) levels")
        }
    }

    mutating func parseKeyAndColon() throws(JSONError) {
        guard i < count && p[i] == Byte.quote else { throw unexpected(expected: "a string key") }
        let offset = i
        keys.push(Key(name: try parseString(), offset: offset))
        skipWhitespace()
        guard i < count && p[i] == Byte.colon else { throw unexpected(expected: "':'") }
        i += 1
    }

    mutating func closeArray(_ frame: Frame) {
        // `reserveCapacity` and `append` rather than `init(unsafeUninitializedCapacity:)`, whose
        // unspecialized allocation looks up the array's generic metadata on every call.
        let array = values.moveOut(from: frame.valueStart) { elements, n in
            var array: [JSON] = []
            array.reserveCapacity(n)
            for k in 0..<n { array.append((elements + k).move()) }
            return array
        }
        values.push(.array(array))
        _ = frames.pop()
    }

    mutating func closeObject(_ frame: Frame) throws(JSONError) {
        try refuseDuplicateKeys(from: frame.keyStart)
        let members = keys.moveOut(from: frame.keyStart) { names, n in
            values.moveOut(from: frame.valueStart) { elements, _ in
                var members: [JSONObject.Member] = []
                members.reserveCapacity(n)
                for k in 0..<n { members.append((key: (names + k).move().name, value: (elements + k).move())) }
                return members
            }
        }
        values.push(.object(JSONObject(members)))
        _ = frames.pop()
    }

    /// Duplicate keys make lookups ambiguous between parsers, so they are refused. Keys compare as
    /// Swift strings (canonical equivalence), the same for small and large objects.
    func refuseDuplicateKeys(from start: Int) throws(JSONError) {
        let n = keys.count - start
        if n <= 16 {
            for b in (start + 1)..<max(start + 1, keys.count) {
                for a in start..<b where keys.base[a].name == keys.base[b].name {
                    throw duplicateKey(keys.base[b])
                }
            }
        } else {
            var seen = Set<String>(minimumCapacity: n)
            for b in start..<keys.count where !seen.insert(keys.base[b].name).inserted {
                throw duplicateKey(keys.base[b])
            }
        }
    }

    func duplicateKey(_ key: Key) -> JSONError {
        JSONError(offset: key.offset, reason: "duplicate key '\(key.name)'")
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let length = literal.utf8CodeUnitCount
        let bytes = literal.utf8Start
        for k in 0..<length {
            guard i + k < count, p[i + k] == bytes[k] else {
                i += k
                throw unexpected(expected: "'\(literal)'")
            }
        }
        i += length
    }

    // MARK: Strings

    /// Parses a string starting at the opening quote; leaves `i` after the closing quote.
    mutating func parseString() throws(JSONError) -> String {
        let start = i
        var j = i + 1
        // Fast path: no escapes, so the string is a slice of the input (validated here).
        while j < count {
            let byte = p[j]
            if byte == Byte.quote {
                i = j + 1
                return makeString(from: p + start + 1, count: j - start - 1)
            } else if byte == Byte.backslash {
                break
            } else if byte < 0x20 {
                throw controlCharacter(at: j)
            } else if byte < 0x80 {
                j += 1
            } else {
                j += try utf8SequenceLength(at: j)
            }
        }
        guard j < count else {
            throw JSONError(offset: start, reason: "unterminated string", expected: "'\"' before the end of input")
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(j - start + 16)
        buffer.append(contentsOf: UnsafeBufferPointer(start: p + start + 1, count: j - start - 1))
        while j < count {
            let byte = p[j]
            if byte == Byte.quote {
                i = j + 1
                return String(decoding: buffer, as: UTF8.self)
            } else if byte == Byte.backslash {
                j = try parseEscape(at: j, into: &buffer)
            } else if byte < 0x20 {
                throw controlCharacter(at: j)
            } else if byte < 0x80 {
                buffer.append(byte)
                j += 1
            } else {
                let length = try utf8SequenceLength(at: j)
                buffer.append(contentsOf: UnsafeBufferPointer(start: p + j, count: length))
                j += length
            }
        }
        throw JSONError(offset: start, reason: "unterminated string", expected: "'\"' before the end of input")
    }

    /// A string of already validated UTF-8. Up to 15 ASCII bytes become a small string with no
    /// second validation pass, which `String(decoding:as:)` would make.
    @inline(__always)
    func makeString(from start: UnsafePointer<UInt8>, count length: Int) -> String {
        if length == 0 { return "" }
        return String(unsafeUninitializedCapacity: length) { buffer in
            buffer.baseAddress!.initialize(from: start, count: length)
            return length
        }
    }

    func controlCharacter(at offset: Int) -> JSONError {
        JSONError(
            offset: offset,
            reason: "control character 0x\(hex2(p[offset])) in a string",
            expected: "an escape such as \\n or \\u00\(hex2(p[offset]))"
        )
    }

    /// Length of the well-formed UTF-8 sequence at `j` (RFC 3629: no overlongs, no surrogates,
    /// nothing above U+10FFFF).
    func utf8SequenceLength(at j: Int) throws(JSONError) -> Int {
        let lead = p[j]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            high = 0x9F
        case 0xF0:
            length = 4
            low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            high = 0x8F
        default: throw JSONError(offset: j, reason: "invalid UTF-8 byte 0x\(hex2(lead))")
        }
        guard j + length <= count else {
            throw JSONError(offset: j, reason: "truncated UTF-8 sequence")
        }
        let second = p[j + 1]
        guard second >= low && second <= high else {
            throw JSONError(offset: j + 1, reason: "invalid UTF-8 byte 0x\(hex2(second))")
        }
        for k in 2..<max(2, length) where p[j + k] & 0xC0 != 0x80 {
            throw JSONError(offset: j + k, reason: "invalid UTF-8 byte 0x\(hex2(p[j + k]))")
        }
        return length
    }

    /// Decodes the escape at `j` (a backslash) into `buffer`; returns the offset after it.
    func parseEscape(at j: Int, into buffer: inout [UInt8]) throws(JSONError) -> Int {
        guard j + 1 < count else {
            throw JSONError(offset: j, reason: "unterminated string", expected: "'\"' before the end of input")
        }
        let simple: UInt8
        switch p[j + 1] {
        case Byte.quote: simple = Byte.quote
        case Byte.backslash: simple = Byte.backslash
        case UInt8(ascii: "/"): simple = UInt8(ascii: "/")
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "n"): simple = 0x0A
        case UInt8(ascii: "r"): simple = 0x0D
        case UInt8(ascii: "t"): simple = 0x09
        case UInt8(ascii: "u"):
            var scalar = try hex4(at: j + 2)
            var next = j + 6
            if scalar >= 0xD800 && scalar <= 0xDBFF {
                guard next + 1 < count, p[next] == Byte.backslash, p[next + 1] == UInt8(ascii: "u") else {
                    throw JSONError(
                        offset: j,
                        reason: "lone high surrogate in \\u escape",
                        expected: "a low surrogate \\uDC00-\\uDFFF to follow"
                    )
                }
                let low = try hex4(at: next + 2)
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw JSONError(
                        offset: next,
                        reason: "high surrogate followed by a non-low-surrogate escape",
                        expected: "a low surrogate \\uDC00-\\uDFFF"
                    )
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                next += 6
            } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                throw JSONError(offset: j, reason: "lone low surrogate in \\u escape")
            }
            appendUTF8(scalar, to: &buffer)
            return next
        default:
            let escaped = p[j + 1]
            let shown =
                escaped > 0x20 && escaped < 0x7F
                ? "'\\\(Character(Unicode.Scalar(escaped)))'" : "'\\' followed by byte 0x\(hex2(escaped))"
            throw JSONError(
                offset: j,
                reason: "invalid escape \(shown)",
                expected: "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX"
            )
        }
        buffer.append(simple)
        return j + 2
    }

    func hex4(at j: Int) throws(JSONError) -> UInt32 {
        var value: UInt32 = 0
        for k in 0..<4 {
            guard j + k < count else {
                throw JSONError(
                    offset: j + k,
                    reason: "unexpected end of input in \\u escape",
                    expected: "4 hex digits"
                )
            }
            let byte = p[j + k]
            let digit: UInt8
            switch byte {
            case Byte.zero...Byte.nine: digit = byte - Byte.zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default:
                throw JSONError(
                    offset: j + k,
                    reason: "invalid \(describeByte(byte)) in \\u escape",
                    expected: "4 hex digits"
                )
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    func appendUTF8(_ scalar: UInt32, to buffer: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            buffer.append(UInt8(scalar))
        case 0x80..<0x800:
            buffer.append(UInt8(0xC0 | (scalar >> 6)))
            buffer.append(UInt8(0x80 | (scalar & 0x3F)))
        case 0x800..<0x10000:
            buffer.append(UInt8(0xE0 | (scalar >> 12)))
            buffer.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            buffer.append(UInt8(0x80 | (scalar & 0x3F)))
        default:
            buffer.append(UInt8(0xF0 | (scalar >> 18)))
            buffer.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            buffer.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            buffer.append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }

    // MARK: Numbers

    @inline(__always)
    func isDigit(_ k: Int) -> Bool { k < count && p[k] >= Byte.zero && p[k] <= Byte.nine }

    /// Reads the run of digits at `j` into `mantissa`; returns the offset after it. Arithmetic
    /// wraps: past 18 digits the mantissa is unused, as the exact fast path no longer applies.
    @inline(__always)
    func readDigits(from j: Int, into mantissa: inout UInt64) -> Int {
        var k = j
        while k < count {
            let digit = p[k] &- Byte.zero
            if digit > 9 { break }
            mantissa = mantissa &* 10 &+ UInt64(digit)
            k &+= 1
        }
        return k
    }

    /// Parses a number per the RFC 8259 grammar; correctly rounded.
    mutating func parseNumber() throws(JSONError) -> Double {
        let start = i
        var j = i
        let isNegative = p[j] == Byte.minus
        if isNegative { j += 1 }
        guard isDigit(j) else {
            i = j
            throw unexpected(expected: "a digit after '-'")
        }
        var mantissa: UInt64 = 0
        var digitCount = 0
        if p[j] == Byte.zero {
            j += 1
            if isDigit(j) { throw JSONError(offset: start, reason: "leading zeros are not allowed in numbers") }
        } else {
            let end = readDigits(from: j, into: &mantissa)
            digitCount = end - j
            j = end
        }
        var fractionDigits = 0
        if j < count && p[j] == Byte.dot {
            j += 1
            guard isDigit(j) else {
                i = j
                throw unexpected(expected: "a digit after '.'")
            }
            let end = readDigits(from: j, into: &mantissa)
            fractionDigits = end - j
            digitCount += fractionDigits
            j = end
        }
        var exponent = 0
        if j < count && (p[j] == UInt8(ascii: "e") || p[j] == UInt8(ascii: "E")) {
            j += 1
            var isExponentNegative = false
            if j < count && (p[j] == Byte.plus || p[j] == Byte.minus) {
                isExponentNegative = p[j] == Byte.minus
                j += 1
            }
            guard isDigit(j) else {
                i = j
                throw unexpected(expected: "a digit in the exponent")
            }
            while isDigit(j) {
                if exponent < 1_000_000 { exponent = exponent * 10 + Int(p[j] - Byte.zero) }
                j += 1
            }
            if isExponentNegative { exponent = -exponent }
        }
        i = j
        // Exact fast path (Clinger): an exact mantissa times or over an exact power of ten
        // rounds once, so the result is correctly rounded.
        let scale = exponent - fractionDigits
        if digitCount < 19 && mantissa <= 1 << 53 && scale >= -22 && scale <= 22 {
            var value = Double(mantissa)
            if scale < 0 { value /= exactPowersOfTen[-scale] } else { value *= exactPowersOfTen[scale] }
            return isNegative ? -value : value
        }
        let text = String(decoding: UnsafeBufferPointer(start: p + start, count: j - start), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw JSONError(offset: start, reason: "number \(text) is out of range for a 64-bit float")
        }
        return value
    }
}
