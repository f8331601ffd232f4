public import Policy

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The version a sticky `key` is assigned to by `split`, or nil when no entry has a weight.
///
/// Weighted rendezvous hashing, seed-free and the same in every process and on every replica:
///
/// 1. For each entry with weight > 0 (weights in hundredths of a percent), hash the UTF-8 bytes
///    of the key, one 0x00 byte, then the UTF-8 bytes of the version name with xxHash64, seed 0:
///    `h = XXH64(key ‖ 0x00 ‖ version, seed: 0)`.
/// 2. Map the top 53 bits to the open interval (0, 1): `u = (Double(h >> 11) + 0.5) / 2^53`.
/// 3. Score the entry `weight / -ln(u)`.
/// 4. The highest score wins; on an exact tie the earlier entry wins.
///
/// Each entry's chance of winning is its weight over the total and the order of entries does not
/// matter. Only the ratios between weights count, so when one weight rises and the others shrink
/// in proportion (weights always sum to 10000), keys move only to the raised version; removing a
/// version (or setting its weight to 0) moves only the keys it had.
///
/// Reproduce an assignment in Python (`pip install xxhash`):
///
/// ```python
/// import math, xxhash
///
/// def sticky_version(key, split):  # split: [(version, weight in 0.01 %)], file order
///     best, best_score = None, 0.0
///     for version, weight in split:
///         if weight <= 0:
///             continue
///         h = xxhash.xxh64(key.encode() + b"\x00" + version.encode(), seed=0).intdigest()
///         u = ((h >> 11) + 0.5) / 2**53
///         score = weight / -math.log(u)
///         if best is None or score > best_score:
///             best, best_score = version, score
///     return best
///
/// sticky_version("u123", [("v1", 9000), ("v2", 1000)])  # 'v1'
/// sticky_version("u3", [("v1", 9000), ("v2", 1000)])    # 'v2'
/// ```
public func stickyVersion(for key: String, split: [SplitEntry]) -> String? {
    var best: String?
    var bestScore = 0.0
    for entry in split where entry.weight > 0 {
        let u = unitInterval(hashing: [key, entry.version])
        let score = Double(entry.weight) / -log(u)
        if best == nil || score > bestScore {
            best = entry.version
            bestScore = score
        }
    }
    return best
}

/// A number in the open interval (0, 1) from the xxHash64 (seed 0) of `parts` joined by 0x00.
func unitInterval(hashing parts: [String]) -> Double {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(parts.reduce(parts.count) { $0 + $1.utf8.count })
    for (index, part) in parts.enumerated() {
        if index > 0 { bytes.append(0) }
        bytes.append(contentsOf: part.utf8)
    }
    let hash = XXHash64.hash(bytes, seed: 0)
    return (Double(hash >> 11) + 0.5) / 9_007_199_254_740_992.0  // 2^53
}
