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
    // One bit per byte below 0x80 (the two words below): a shift and a mask, not a chain of ranges.
    c < 0x40 ? (tcharBitsLow >> UInt64(c)) & 1 != 0 : c < 0x80 && (tcharBitsHigh >> UInt64(c & 0x3F)) & 1 != 0
}

/// Bits 0x00–0x3F of the `tchar` set: `! # $ % & ' * + - .` and `0-9`.
let tcharBitsLow: UInt64 = 0x03FF_6CFA_0000_0000
/// Bits 0x40–0x7F of the `tchar` set, less 0x40: A-Z, ^, _, backquote, a-z, | and ~.
let tcharBitsHigh: UInt64 = 0x57FF_FFFF_C7FF_FFFE

// Word-at-a-time tests (eight bytes in a `UInt64`) for the scans' fast paths; a word that fails
// one is looked at byte by byte, so each only has to be exact about the word as a whole.

private let everyByte: UInt64 = 0x0101_0101_0101_0101
private let everyHighBit: UInt64 = 0x8080_8080_8080_8080

/// The eight bytes at `bytes[i..<i + 8]`, which must all be in the buffer.
@inline(__always)
func loadWord(_ bytes: UnsafeRawBufferPointer, _ i: Int) -> UInt64 {
    bytes.baseAddress.unsafelyUnwrapped.loadUnaligned(fromByteOffset: i, as: UInt64.self)
}

/// Whether some byte of `w` is below `n`, for `n` in 1...128. A borrow can only mark a byte
/// after one that really is below `n`, so the answer for the word is exact.
@inline(__always)
func hasByte(below n: UInt8, in w: UInt64) -> Bool {
    (w &- everyByte &* UInt64(n)) & ~w & everyHighBit != 0
}

/// Whether some byte of `w` equals `b`.
@inline(__always)
func hasByte(_ b: UInt8, in w: UInt64) -> Bool {
    hasByte(below: 1, in: w ^ (everyByte &* UInt64(b)))
}

/// Whether every byte of `w` is `field-vchar` other than DEL: 0x21–0x7E or obs-text (0x80–0xFF).
@inline(__always)
func isVisibleWord(_ w: UInt64) -> Bool {
    !hasByte(below: 0x21, in: w) && !hasByte(ASCII.del, in: w)
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
    guard let base = bytes.baseAddress, !range.isEmpty else { return "" }
    let start = base + range.lowerBound
    let count = range.count
    if count <= smallStringCapacity {
        // Written straight into a small (inline) string, validated only when not ASCII; the
        // `decoding:` initializer would validate first and then copy byte by byte.
        return String(unsafeUninitializedCapacity: count) { buffer in
            UnsafeMutableRawPointer(buffer.baseAddress.unsafelyUnwrapped).copyMemory(from: start, byteCount: count)
            return count
        }
    }
    if let common = commonLongValue(start, count) { return common }
    // A typed buffer takes String's contiguous fast path; a raw buffer would go byte by byte.
    return String(
        decoding: UnsafeBufferPointer(start: start.assumingMemoryBound(to: UInt8.self), count: count),
        as: UTF8.self
    )
}

/// The most UTF-8 bytes a String stores inline (on 64-bit platforms), without allocating.
private let smallStringCapacity = 15

/// A literal for a long value that most prediction traffic carries, else nil: a literal costs no
/// allocation and no validation, where a new long String costs both (and a free later).
@inline(__always)
private func commonLongValue(_ start: UnsafeRawPointer, _ count: Int) -> String? {
    switch count {
    case 16: return bytesEqual(start, "application/json") ? "application/json" : nil
    case 31: return bytesEqual(start, "application/json; charset=utf-8") ? "application/json; charset=utf-8" : nil
    default: return nil
    }
}

/// Whether the bytes at `start` are exactly `literal`'s (the caller has checked the length).
/// Compares a word at a time; no `memcmp`, as this module imports no C library (see ARCHITECTURE).
@inline(__always)
private func bytesEqual(_ start: UnsafeRawPointer, _ literal: StaticString) -> Bool {
    let other = UnsafeRawPointer(literal.utf8Start)
    let n = literal.utf8CodeUnitCount
    var k = 0
    while k &+ 8 <= n {
        let a = start.loadUnaligned(fromByteOffset: k, as: UInt64.self)
        if a != other.loadUnaligned(fromByteOffset: k, as: UInt64.self) { return false }
        k &+= 8
    }
    while k < n {
        if start.load(fromByteOffset: k, as: UInt8.self) != other.load(fromByteOffset: k, as: UInt8.self) {
            return false
        }
        k &+= 1
    }
    return true
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
