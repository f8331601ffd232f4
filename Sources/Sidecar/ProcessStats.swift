#if canImport(Glibc)
import Glibc
#endif

/// The process's own resource figures, read from `/proc` (Linux) when `/metrics` is scraped.
/// Each is nil when it cannot be read, and its series is then left out.
struct ProcessStats: Equatable {
    /// User plus system CPU time, in seconds.
    var cpuSeconds: Double?
    /// Resident set size, in bytes.
    var residentBytes: Double?
    /// Open file descriptors.
    var openDescriptors: Double?
    /// The soft `RLIMIT_NOFILE`; nil when unlimited.
    var maxDescriptors: Double?
    /// When the process started, in seconds since the Unix epoch.
    var startTime: Double?

    /// Reads every figure now.
    static func read() -> ProcessStats {
        var stats = ProcessStats()
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        if ticks > 0, let fields = statFields() {
            // Fields 14 (utime), 15 (stime) and 22 (starttime) of proc(5), counted from field 3.
            if fields.count > 19, let user = Double(fields[11]), let system = Double(fields[12]) {
                stats.cpuSeconds = (user + system) / ticks
            }
            if fields.count > 19, let started = Double(fields[19]), let boot = bootTime() {
                stats.startTime = boot + started / ticks
            }
        }
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        if pageSize > 0, let statm = contents(of: "/proc/self/statm") {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Double(fields[1]) {
                stats.residentBytes = pages * pageSize
            }
        }
        stats.openDescriptors = openDescriptorCount().map(Double.init)
        stats.maxDescriptors = OpenFileLimit.current.map(Double.init)
        return stats
    }

    /// The fields of `/proc/self/stat` after the command name, which may hold spaces and
    /// parentheses: index 0 is field 3 (state).
    private static func statFields() -> [Substring]? {
        guard let text = contents(of: "/proc/self/stat"), let close = text.lastIndex(of: ")") else {
            return nil
        }
        return text[text.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
    }

    /// The `btime` line of `/proc/stat`: boot time, seconds since the epoch.
    private static func bootTime() -> Double? {
        guard let text = contents(of: "/proc/stat") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst("btime ".count).trimmingSpaces())
        }
        return nil
    }

    /// Entries of `/proc/self/fd` (the directory's own descriptor included, as other clients
    /// count it).
    private static func openDescriptorCount() -> Int? {
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { count += 1 }
        }
        return count
    }

    /// A whole `/proc` file (their sizes are reported as 0, so read until the end).
    private static func contents(of path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        let start = firstIndex(where: { $0 != " " }) ?? endIndex
        let end = lastIndex(where: { $0 != " " }).map { index(after: $0) } ?? start
        return self[start..<end]
    }
}
