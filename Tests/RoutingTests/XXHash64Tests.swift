import Routing
import Testing

/// The bytes the vectors hash: byte i is (i * 31 + 7) mod 256.
func patternBytes(_ count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
}

// Reference values from the xxHash C library through Python's `xxhash` 3.x:
// `xxhash.xxh64(bytes((i * 31 + 7) & 0xff for i in range(n)), seed=s).intdigest()`.
// They cover every tail path: < 4, 4..7, 8..31 bytes, exactly one stripe and more.
let patternVectors: [(count: Int, seed: UInt64, hash: UInt64)] = [
    (0, 0, 0xEF46_DB37_51D8_E999),
    (1, 0, 0xA96C_7F0C_E858_BBB7),
    (3, 0, 0x56E6_9576_32A4_87F9),
    (4, 0, 0xC60D_15B1_E3FF_8F04),
    (7, 0, 0xAFBE_FC3D_6C6F_9A8E),
    (8, 0, 0x3DA5_C7AA_2696_83E0),
    (14, 0, 0x1523_F762_201B_A56E),
    (31, 0, 0x4A74_F3A1_A39A_D4A1),
    (32, 0, 0x8D57_D6A4_671C_C43D),
    (33, 0, 0x62C9_FD21_ED85_7664),
    (63, 0, 0x5C32_0A0D_2707_057F),
    (64, 0, 0x7BBA_BBC4_5729_D17E),
    (100, 0, 0xEFA0_AD2D_3E70_C151),
    (257, 0, 0x6FF1_5897_6587_84E0),
    (1000, 0, 0x9959_4F48_2804_3D35),
    (0, 0x9E37_79B1_85EB_CA8D, 0x0B30_3D92_0EC3_49DF),
    (1, 0x9E37_79B1_85EB_CA8D, 0x7634_9A43_0E97_F416),
    (14, 0x9E37_79B1_85EB_CA8D, 0xC793_2555_30F9_036B),
    (32, 0x9E37_79B1_85EB_CA8D, 0xA784_AE39_E74A_5A70),
    (100, 0x9E37_79B1_85EB_CA8D, 0x8DA8_3BA6_A3C5_979D),
]

@Test(arguments: patternVectors.indices)
func xxHash64MatchesReference(_ index: Int) {
    let vector = patternVectors[index]
    let bytes = patternBytes(vector.count)
    #expect(XXHash64.hash(bytes, seed: vector.seed) == vector.hash, "length \(vector.count)")
    let raw = bytes.withUnsafeBytes { XXHash64.hash($0, seed: vector.seed) }
    #expect(raw == vector.hash, "length \(vector.count), raw buffer")
}

@Test(arguments: [
    ("", UInt64(0xEF46_DB37_51D8_E999)),
    ("a", 0xD24E_C4F1_A98C_6E5B),
    ("abc", 0x44BC_2CF5_AD77_0999),
    ("message digest", 0x066E_D728_FCEE_B3BE),
    ("Nobody inspects the spammish repetition", 0xFBCE_A83C_8A37_8BF1),
    ("u123\u{0}v1", 0x32D5_046A_AB86_9566),
])
func xxHash64OfText(_ text: String, _ expected: UInt64) {
    #expect(XXHash64.hash(text.utf8) == expected)
}

@Test func xxHash64ReadsUnalignedAndNonContiguousInput() {
    let bytes = patternBytes(101)
    // Offset by one byte: every 8-byte lane is unaligned.
    let unaligned = bytes.withUnsafeBytes { XXHash64.hash(UnsafeRawBufferPointer(rebasing: $0[1...])) }
    // Python: xxhash.xxh64(bytes((i * 31 + 7) & 0xff for i in range(101))[1:]).intdigest()
    #expect(unaligned == 0x7763_1AE2_4F44_BC66)
    // A lazy collection has no contiguous storage and is copied first.
    #expect(XXHash64.hash(patternBytes(33).lazy.map { $0 }) == 0x62C9_FD21_ED85_7664)
}
