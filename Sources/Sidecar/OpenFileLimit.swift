#if canImport(Glibc)
import Glibc
#endif

/// The process's open-file limit (`RLIMIT_NOFILE`) and the share of it the data listeners leave
/// free.
enum OpenFileLimit {
    /// `RLIM_INFINITY` (all ones), whose C macro does not import into Swift.
    private static let unlimited = rlim_t.max

    /// The soft limit; nil when it cannot be read or is unlimited.
    static var current: Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != unlimited else {
            return nil
        }
        return Int(limit.rlim_cur)
    }

    /// What `raiseToHardLimit` did.
    enum Outcome: Equatable {
        case raised(from: Int, to: Int)
        case alreadyAtHardLimit(Int)
        /// The limit could not be read or set; the text says why.
        case failed(String)
    }

    /// Raises the soft limit to the hard one, as nginx's `worker_rlimit_nofile` and HAProxy do
    /// (the soft limit is often 1024 where the hard one allows far more).
    static func raiseToHardLimit() -> Outcome {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            return .failed("getrlimit: \(String(cString: strerror(errno)))")
        }
        let soft = limit.rlim_cur
        // Linux refuses an unlimited RLIMIT_NOFILE (it is bounded by fs.nr_open): leave it.
        guard soft < limit.rlim_max, limit.rlim_max != unlimited else {
            return .alreadyAtHardLimit(Int(clamping: soft))
        }
        limit.rlim_cur = limit.rlim_max
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            return .failed("setrlimit to \(limit.rlim_max): \(String(cString: strerror(errno)))")
        }
        return .raised(from: Int(clamping: soft), to: Int(clamping: limit.rlim_max))
    }

    /// The descriptors the data listeners leave to upstream connections, the admin listener and
    /// config reads: an eighth of the limit, at least 16 and at most 1024 (0 without a limit).
    static func reserve(forLimit limit: Int?) -> Int {
        guard let limit else { return 0 }
        return min(max(limit / 8, 16), 1024)
    }
}
