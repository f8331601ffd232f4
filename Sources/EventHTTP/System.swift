// The few POSIX calls the module needs, through the shim's C helpers: no file of this module
// may import Glibc (see Sources/CLibevent/shim.h for why).
internal import CLibevent

enum System {
    /// Milliseconds on the monotonic clock.
    static func monotonicMilliseconds() -> Int64 {
        Int64(switchyard_monotonic_ms())
    }

    /// Nanoseconds on the monotonic clock.
    static func monotonicNanoseconds() -> UInt64 {
        UInt64(switchyard_monotonic_ns())
    }

    /// The text of the current `errno`.
    static func lastErrorText() -> String {
        errorText(switchyard_errno())
    }

    /// The text of an errno value.
    static func errorText(_ code: Int32) -> String {
        guard code != 0, let text = switchyard_strerror(code) else { return "unknown error" }
        return String(cString: text)
    }

    /// A non-blocking, close-on-exec pipe: (read end, write end).
    static func makeWakePipe() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let rc = fds.withUnsafeMutableBufferPointer { switchyard_wake_pipe($0.baseAddress) }
        precondition(rc == 0, "EventLoop could not create its wake-up pipe: \(lastErrorText()).")
        return (fds[0], fds[1])
    }

    /// Writes one byte; a full pipe already guarantees a wake-up, so EAGAIN is ignored.
    static func poke(_ fd: Int32) {
        switchyard_poke(fd)
    }

    /// Reads until the pipe is empty.
    static func drain(_ fd: Int32) {
        switchyard_drain_pipe(fd)
    }

    static func close(_ fd: Int32) {
        switchyard_close(fd)
    }

    /// 16 random lower-case hex characters (a request id when the client sent none).
    static func randomHexID() -> String {
        let value = UInt64.random(in: .min ... .max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// Runs `body` on a new detached thread. Returns false when no thread could be started.
func spawnDetachedThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    final class Work {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let context = Unmanaged.passRetained(Work(body)).toOpaque()
    let rc = switchyard_spawn_detached(
        { raw in
            guard let raw else { return }
            Unmanaged<Work>.fromOpaque(raw).takeRetainedValue().body()
        },
        context
    )
    if rc != 0 {
        Unmanaged<Work>.fromOpaque(context).release()
        return false
    }
    return true
}

/// A pthread mutex; the only lock in the module (the cross-thread work queue).
final class Lock: @unchecked Sendable {
    private let mutex: OpaquePointer

    init() {
        guard let mutex = switchyard_mutex_new() else {
            fatalError("EventLoop could not allocate its mutex.")
        }
        self.mutex = OpaquePointer(mutex)
    }

    deinit {
        switchyard_mutex_free(UnsafeMutablePointer(mutex))
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        switchyard_mutex_lock(UnsafeMutablePointer(mutex))
        defer { switchyard_mutex_unlock(UnsafeMutablePointer(mutex)) }
        return try body()
    }
}
