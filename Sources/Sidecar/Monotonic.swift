#if canImport(Glibc)
import Glibc
#endif

/// The monotonic clock, in nanoseconds (vDSO `clock_gettime`, ~20 ns).
enum Monotonic {
    static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
