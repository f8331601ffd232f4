#if canImport(Glibc)
import Glibc
#endif
func sysMono() -> Int32 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int32(errno)
}
