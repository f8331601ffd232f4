// The few POSIX calls the module needs. This file imports Glibc and must not import CLibevent:
// libevent's headers define `_GNU_SOURCE`, and one Swift file seeing both modules fails to build
// (two different `fd_set`s).
#if canImport(Glibc)
    import Glibc
#endif

enum System {
    /// Milliseconds on the monotonic clock.
    static func monotonicMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// The text of the current `errno`.
    static func lastErrorText() -> String {
        let code = errno
        guard code != 0, let text = strerror(code) else { return "unknown error" }
        return String(cString: text)
    }

    /// The text of an errno value.
    static func errorText(_ code: Int32) -> String {
        guard code != 0, let text = strerror(code) else { return "unknown error" }
        return String(cString: text)
    }

    /// A non-blocking, close-on-exec pipe: (read end, write end).
    static func makeWakePipe() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let rc = pipe(&fds)
        precondition(rc == 0, "EventLoop could not create its wake-up pipe: \(lastErrorText()).")
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        return (fds[0], fds[1])
    }

    /// Writes one byte; a full pipe already guarantees a wake-up, so EAGAIN is ignored.
    static func poke(_ fd: Int32) {
        var byte: UInt8 = 1
        _ = write(fd, &byte, 1)
    }

    /// Reads until the pipe is empty.
    static func drain(_ fd: Int32) {
        var scratch = [UInt8](repeating: 0, count: 64)
        while scratch.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// 16 random lower-case hex characters (a request id when the client sent none).
    static func randomHexID() -> String {
        let value = UInt64.random(in: .min ... .max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// A pthread mutex; the only lock in the module (the cross-thread work queue).
final class Lock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
