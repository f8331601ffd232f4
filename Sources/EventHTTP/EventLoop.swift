internal import CLibevent

/// A failure to set up a loop, a listener or a socket; `message` says what failed and why.
public struct EventHTTPError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One libevent `event_base`, driven by the thread that calls `run()`.
///
/// Only `run()`, `stop()` and `execute(_:)` may be called from any thread. Everything else in
/// this module (timers, signals, servers, pools, buffers) belongs to one loop and is used only on
/// that loop's thread (or before `run()` starts). The loop must outlive what is created on it.
/// Debug builds check this at the confined entry points with `assertInLoop()`.
public final class EventLoop: @unchecked Sendable {
    let base: OpaquePointer
    #if DEBUG
    /// The thread that owns the loop's state (`pthread_self()`): the creating thread until
    /// `run()` starts, then the thread running it. Read from any thread by `assertInLoop()`.
    ///
    /// A plain word, not a `Synchronization.Atomic`: importing Synchronization beside CLibevent
    /// brings glibc's module in, whose `fd_set` clashes with libevent's (`_GNU_SOURCE`) and fails
    /// a clean build. It is written at `init` and by the loop's thread as `run()` starts, and every
    /// thread compares it with its own id: the loop's thread always reads its own write, so a
    /// stale read can at worst let the creating thread pass just after `run()` began elsewhere.
    private nonisolated(unsafe) var ownerThread: UInt = 0
    #endif
    private let wakePipe: (read: Int32, write: Int32)
    private var wakeEvent: OpaquePointer?
    private var soonEvent: OpaquePointer?

    // Guarded by `lock`: work handed over by other threads.
    private let lock = Lock()
    private var crossThreadWork: [@Sendable () -> Void] = []
    private var isWakePending = false

    // Loop thread only.
    /// Where a read into an empty input buffer lands first (`SocketIO.read`); one per loop.
    let readScratch = UnsafeMutableRawPointer.allocate(byteCount: SocketIO.readChunkBytes, alignment: 16)
    private var soonWork: [() -> Void] = []
    private var signalHandlers: [SignalHandler] = []

    /// Creates the `event_base` (epoll with the change list; no libevent locking: one base per thread).
    public init() throws {
        guard let config = event_config_new() else { throw EventHTTPError("event_config_new failed") }
        defer { event_config_free(config) }
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST.rawValue))
        guard let base = event_base_new_with_config(config) else {
            throw EventHTTPError("event_base_new_with_config failed")
        }
        self.base = base
        self.wakePipe = System.makeWakePipe()
        #if DEBUG
        ownerThread = UInt(pthread_self())
        #endif
        let me = Unmanaged.passUnretained(self).toOpaque()
        wakeEvent = event_new(base, wakePipe.read, Int16(EV_READ | EV_PERSIST), Callbacks.wake, me)
        soonEvent = event_new(base, -1, 0, Callbacks.soon, me)
        guard let wakeEvent, soonEvent != nil, event_add(wakeEvent, nil) == 0 else {
            throw EventHTTPError("could not register the loop's wake-up event")
        }
    }

    deinit {
        for handler in signalHandlers { handler.free() }
        if let wakeEvent { event_free(wakeEvent) }
        if let soonEvent { event_free(soonEvent) }
        System.close(wakePipe.read)
        System.close(wakePipe.write)
        event_base_free(base)
        readScratch.deallocate()
    }

    /// Runs the loop on the calling thread until `stop()`. From here on that thread owns the
    /// loop's state, also after `run()` returns (until a later `run()` on another thread).
    public func run() {
        #if DEBUG
        ownerThread = UInt(pthread_self())
        #endif
        event_base_loop(base, Int32(EVLOOP_NO_EXIT_ON_EMPTY))
    }

    /// Whether the calling thread owns the loop's state: the thread running the loop, or before
    /// `run()` the thread that created it. Any thread; for checks and tests (`assertInLoop()`).
    /// Always true in a release build, which records no owner.
    public var isInLoop: Bool {
        #if DEBUG
        return ownerThread == UInt(pthread_self())
        #else
        return true
        #endif
    }

    /// Traps in a debug build when called off the loop's thread (as swift-nio's
    /// `preconditionInEventLoop`); does nothing in a release build. The first line of each entry
    /// point to loop-confined state, so a cross-thread call fails where it is made instead of as
    /// a data race later.
    @inlinable
    public func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        #if DEBUG
        checkInLoop(file: file, line: line)
        #endif
    }

    @usableFromInline
    func checkInLoop(file: StaticString, line: UInt) {
        if !isInLoop {
            preconditionFailure(
                "Loop-confined state was used off its loop's thread: use `execute` to get onto the loop.",
                file: file,
                line: line
            )
        }
    }

    /// Makes `run()` return after the current callback. Any thread; called before `run()`, the
    /// next `run()` returns at once.
    public func stop() {
        execute { [self] in event_base_loopbreak(base) }
    }

    /// Runs `work` on the loop thread, soon. Any thread; work items run in the order given.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        let mustWake = lock.withLock {
            crossThreadWork.append(work)
            if isWakePending { return false }
            isWakePending = true
            return true
        }
        if mustWake { System.poke(wakePipe.write) }
    }

    /// Calls `callback` once on the loop thread after `afterMilliseconds` (0 = next iteration).
    /// Loop thread only. The timer stays scheduled even if the returned handle is dropped.
    @discardableResult
    public func scheduleTimer(afterMilliseconds: Int, _ callback: @escaping () -> Void) -> LoopTimer {
        assertInLoop()
        let timer = LoopTimer(loop: self, isOneShot: true, action: callback)
        timer.arm(milliseconds: afterMilliseconds)
        return timer
    }

    /// Calls `callback` on the loop thread each time signal `signo` arrives (libevent's signal
    /// events: the C handler only wakes the loop). Loop thread only; stays registered for the
    /// loop's lifetime. Only one loop per process should watch signals.
    public func onSignal(_ signo: Int32, _ callback: @escaping () -> Void) {
        assertInLoop()
        let handler = SignalHandler(callback)
        let event = event_new(
            base,
            signo,
            Int16(EV_SIGNAL | EV_PERSIST),
            Callbacks.signal,
            Unmanaged.passUnretained(handler).toOpaque()
        )
        guard let event else { preconditionFailure("event_new failed for signal \(signo).") }
        handler.event = event
        precondition(event_add(event, nil) == 0, "event_add failed for signal \(signo).")
        signalHandlers.append(handler)
    }

    /// Milliseconds on a monotonic clock (for deadlines and latencies). Any thread.
    public var nowMilliseconds: Int64 { System.monotonicMilliseconds() }

    /// Runs `work` on the loop thread in a later callback, never synchronously. Loop thread only.
    func runSoon(_ work: @escaping () -> Void) {
        assertInLoop()
        soonWork.append(work)
        if soonWork.count == 1, let soonEvent { event_active(soonEvent, Int32(EV_TIMEOUT), 0) }
    }

    fileprivate func runCrossThreadWork() {
        System.drain(wakePipe.read)
        let work = lock.withLock {
            let work = crossThreadWork
            crossThreadWork = []
            isWakePending = false
            return work
        }
        for item in work { item() }
    }

    fileprivate func runSoonWork() {
        let work = soonWork
        soonWork = []
        for item in work { item() }
    }
}

/// A timer on an `EventLoop`. Loop thread only.
public final class LoopTimer {
    private var eventStorage: OpaquePointer?
    private var action: (() -> Void)?
    private let isOneShot: Bool
    // A one-shot timer keeps itself alive while scheduled, so dropping the handle does not cancel it.
    private var selfRetain: Unmanaged<LoopTimer>?

    init(loop: EventLoop, isOneShot: Bool, action: @escaping () -> Void) {
        self.isOneShot = isOneShot
        self.action = action
        let created = event_new(loop.base, -1, 0, Callbacks.timer, Unmanaged.passUnretained(self).toOpaque())
        guard let created else { preconditionFailure("event_new failed for a timer.") }
        self.eventStorage = created
    }

    deinit {
        if let eventStorage { event_free(eventStorage) }
    }

    /// Whether the timer is scheduled and has not fired.
    public var isPending: Bool {
        guard let eventStorage else { return false }
        return event_pending(eventStorage, Int16(EV_TIMEOUT), nil) != 0
    }

    /// Unschedules the timer; its callback will not run. Calling it again, or after it fired, does nothing.
    public func cancel() {
        disarm()
        if isOneShot { action = nil }
    }

    /// (Re)schedules the timer `milliseconds` from now.
    func arm(milliseconds: Int) {
        guard let eventStorage else { return }
        let ms = max(0, milliseconds)
        var tv = timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
        event_add(eventStorage, &tv)
        if isOneShot && selfRetain == nil { selfRetain = Unmanaged.passRetained(self) }
    }

    func disarm() {
        if let eventStorage { event_del(eventStorage) }
        selfRetain?.release()
        selfRetain = nil
    }

    fileprivate func fire() {
        let retained = selfRetain
        selfRetain = nil
        let action = self.action
        if isOneShot { self.action = nil }
        action?()
        retained?.release()
    }
}

final class SignalHandler {
    let callback: () -> Void
    var event: OpaquePointer?
    init(_ callback: @escaping () -> Void) { self.callback = callback }
    func free() {
        if let event { event_free(event) }
        event = nil
    }
}

/// The C callbacks: closures that capture nothing and get their owner back from `arg`.
enum Callbacks {
    static let wake: event_callback_fn = { _, _, arg in
        let loop = Unmanaged<EventLoop>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(loop) { loop.runCrossThreadWork() }
    }
    static let soon: event_callback_fn = { _, _, arg in
        let loop = Unmanaged<EventLoop>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(loop) { loop.runSoonWork() }
    }
    static let timer: event_callback_fn = { _, _, arg in
        let timer = Unmanaged<LoopTimer>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(timer) { timer.fire() }
    }
    static let signal: event_callback_fn = { _, _, arg in
        let handler = Unmanaged<SignalHandler>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(handler) { handler.callback() }
    }
}
