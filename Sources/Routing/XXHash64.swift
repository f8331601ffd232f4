/// xxHash64 (XXH64), Yann Collet's non-cryptographic hash, as specified in
/// https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md.
///
/// Seed-free by default and identical on every platform and process, unlike Swift's `Hasher`:
/// sticky assignment depends on it being reproducible (Python: `xxhash.xxh64(b, seed=0)`).
public enum XXHash64 {
    static let prime1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let prime2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let prime3: UInt64 = 0x1656_67B1_9E37_79F9
    static let prime4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let prime5: UInt64 = 0x27D4_EB2F_1656_67C5

    /// The 64-bit hash of `bytes`, in one shot.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let count = bytes.count
        var offset = 0
        var acc: UInt64

        if count >= 32 {
            var v1 = seed &+ prime1 &+ prime2
            var v2 = seed &+ prime2
            var v3 = seed
            var v4 = seed &- prime1
            while offset + 32 <= count {
                v1 = round(v1, read64(bytes, offset))
                v2 = round(v2, read64(bytes, offset + 8))
                v3 = round(v3, read64(bytes, offset + 16))
                v4 = round(v4, read64(bytes, offset + 24))
                offset += 32
            }
            acc = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            acc = mergeRound(acc, v1)
            acc = mergeRound(acc, v2)
            acc = mergeRound(acc, v3)
            acc = mergeRound(acc, v4)
        } else {
            acc = seed &+ prime5
        }

        acc = acc &+ UInt64(count)

        while offset + 8 <= count {
            acc ^= round(0, read64(bytes, offset))
            acc = rotl(acc, 27) &* prime1 &+ prime4
            offset += 8
        }
        if offset + 4 <= count {
            acc ^= UInt64(read32(bytes, offset)) &* prime1
            acc = rotl(acc, 23) &* prime2 &+ prime3
            offset += 4
        }
        while offset < count {
            acc ^= UInt64(bytes[offset]) &* prime5
            acc = rotl(acc, 11) &* prime1
            offset += 1
        }

        acc ^= acc >> 33
        acc = acc &* prime2
        acc ^= acc >> 29
        acc = acc &* prime3
        acc ^= acc >> 32
        return acc
    }

    /// The 64-bit hash of a byte collection (`[UInt8]`, `String.UTF8View`, ...), in one shot.
    public static func hash(_ bytes: some Collection<UInt8>, seed: UInt64 = 0) -> UInt64 {
        if let result = bytes.withContiguousStorageIfAvailable({ hash(UnsafeRawBufferPointer($0), seed: seed) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes { hash($0, seed: seed) }
    }

    @inline(__always)
    static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always)
    static func round(_ acc: UInt64, _ lane: UInt64) -> UInt64 {
        rotl(acc &+ lane &* prime2, 31) &* prime1
    }

    @inline(__always)
    static func mergeRound(_ acc: UInt64, _ lane: UInt64) -> UInt64 {
        (acc ^ round(0, lane)) &* prime1 &+ prime4
    }

    // Lanes are little-endian whatever the host, and the buffer may be unaligned.
    @inline(__always)
    static func read64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inline(__always)
    static func read32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}
