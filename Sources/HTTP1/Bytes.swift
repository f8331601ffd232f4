// Byte classes and small byte helpers shared by the parsers and the serializer.
// Everything here works on raw bytes; Strings are made once per token by the callers.

enum ASCII {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let sp: UInt8 = 0x20
    static let htab: UInt8 = 0x09
    static let colon: UInt8 = 0x3A
    static let semicolon: UInt8 = 0x3B
    static let comma: UInt8 = 0x2C
    static let equals: UInt8 = 0x3D
    static let quote: UInt8 = 0x22
    static let backslash: UInt8 = 0x5C
    static let slash: UInt8 = 0x2F
    static let del: UInt8 = 0x7F
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of a method or a field name.
@inline(__always)
func isTChar(_ c: UInt8) -> Bool {
    switch c {
    case 0x61...0x7A, 0x41...0x5A, 0x30...0x39: return true  // a-z A-Z 0-9
    case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E:
        return true  // ! # $ % & ' * + - . ^ _ ` | ~
    default: return false
    }
}

/// `field-vchar` or SP/HTAB: visible ASCII, obs-text (0x80–0xFF), space and tab. No other CTL, no DEL.
@inline(__always)
func isFieldContentOrWhitespace(_ c: UInt8) -> Bool {
    (c >= 0x20 && c != ASCII.del) || c == ASCII.htab
}

@inline(__always)
func isOWS(_ c: UInt8) -> Bool { c == ASCII.sp || c == ASCII.htab }

/// The value of a hex digit, or nil.
@inline(__always)
func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c &- 0x30
    case 0x61...0x66: return c &- 0x61 &+ 10
    case 0x41...0x46: return c &- 0x41 &+ 10
    default: return nil
    }
}

/// Whether `bytes[range]` equals `lowercase` ignoring ASCII case. `lowercase` holds only
/// lower-case letters, digits and `-`; then `byte | 0x20` is exact for every byte that can match.
@inline(__always)
func bytesEqualIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercase: StaticString) -> Bool {
    let n = lowercase.utf8CodeUnitCount
    guard range.count == n else { return false }
    let lit = lowercase.utf8Start
    var k = 0
    while k < n {
        let c = bytes[range.lowerBound &+ k]
        // Only letters get folded; `-` and digits already have bit 0x20 set, and no byte
        // other than the letter itself or `\r` (never inside a token) folds onto them.
        if c | 0x20 != lit[k] { return false }
        k &+= 1
    }
    return true
}

@inline(__always)
func makeString(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
    // A typed buffer takes String's contiguous fast path; a raw buffer would go byte by byte.
    guard let base = bytes.baseAddress, !range.isEmpty else { return "" }
    let typed = UnsafeBufferPointer(
        start: (base + range.lowerBound).assumingMemoryBound(to: UInt8.self),
        count: range.count
    )
    return String(decoding: typed, as: UTF8.self)
}

/// `0x0A`-style rendering of a byte for error details.
func describeByte(_ c: UInt8) -> String {
    if c >= 0x21 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
    let hex = String(c, radix: 16, uppercase: true)
    return c < 0x10 ? "0x0\(hex)" : "0x\(hex)"
}

extension Array where Element == UInt8 {
    /// Appends the decimal digits of a non-negative integer without making a String.
    @inline(__always)
    mutating func appendDecimal(_ value: Int) {
        precondition(value >= 0, "appendDecimal needs a non-negative value, got \(value).")
        if value < 10 {
            append(UInt8(truncatingIfNeeded: value) &+ 0x30)
            return
        }
        var n = 0
        var v = value
        repeat {
            n += 1
            v /= 10
        } while v > 0
        let start = count
        append(contentsOf: repeatElement(0x30, count: n))
        v = value
        var k = start + n - 1
        while v > 0 {
            self[k] = UInt8(truncatingIfNeeded: v % 10) &+ 0x30
            v /= 10
            k -= 1
        }
    }
}
