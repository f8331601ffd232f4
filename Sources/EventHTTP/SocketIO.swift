internal import CLibevent

// Connection I/O on plain libevent events (no bufferevents), as nginx does it: a persistent read
// event registered once per connection, reads straight into the input evbuffer, writes attempted
// from the code that queued the bytes, and a write event added only while output is left over.
// In the steady state a keep-alive exchange costs one read and one write per socket and no
// epoll_ctl or ioctl (bufferevents added and removed EV_WRITE around every response, in
// different loop iterations, and asked FIONREAD before every read).

/// What one read did.
enum ReadOutcome {
    case bytes(Int)
    /// Nothing to read now (EAGAIN).
    case wouldBlock
    /// The peer closed its side.
    case endOfStream
    /// A socket error (errno).
    case failed(Int32)
}

/// What flushing the output did.
enum FlushOutcome {
    /// Nothing is left to send.
    case drained
    /// Bytes are left; the socket is full.
    case pending
    /// A socket error (errno); the output is left as it was.
    case failed(Int32)
}

enum SocketIO {
    /// Bytes asked for per read: an evbuffer chain of 16 KiB with its header.
    static let readChunkBytes = 16 * 1024 - 128
    /// Reads per readiness when each read fills its chunk (more waits for the next loop iteration).
    static let maxReadsPerWakeup = 4

    /// Reads what the socket has, up to `maxBytes`: one `recv` of a chunk, repeated while each read
    /// fills its chunk (a short read means the socket is drained: no EAGAIN round trip). Into an
    /// empty `buffer` the first read goes through `scratch` (the loop's `readScratch`, at least
    /// `readChunkBytes` long) and is copied into a chain of its own size; later reads fill the
    /// buffer's spare space directly.
    static func read(
        _ fd: Int32,
        into buffer: OpaquePointer,
        maxBytes: Int = .max,
        scratch: UnsafeMutableRawPointer
    ) -> ReadOutcome {
        var total = 0
        var error: Int32 = 0
        for _ in 0..<maxReadsPerWakeup {
            let want = min(readChunkBytes, maxBytes - total)
            if want <= 0 { break }
            let got =
                evbuffer_get_length(buffer) == 0
                ? switchyard_read_via(buffer, fd, want, scratch, &error)
                : switchyard_read_into(buffer, fd, want, &error)
            if got > 0 {
                total += got
                if got < want { break }
                continue
            }
            if total > 0 { break }  // report the bytes now; the EOF or error comes again on the next read
            if got == 0 { return .endOfStream }
            if got == -1 { return .wouldBlock }
            return .failed(error)
        }
        return total > 0 ? .bytes(total) : .wouldBlock
    }

    /// Sends a whole message at once, straight from `bytes`, when the socket takes it: a message
    /// that goes out whole never gets an output chain. What the socket does not take (all of it on
    /// an error, which the caller's next flush then reports) is appended to `output`, which must be
    /// empty. Returns whether bytes were left in `output`.
    static func sendOrQueue(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, output: OpaquePointer) -> Bool {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return false }
        var error: Int32 = 0
        let sent = max(0, switchyard_send(fd, base, bytes.count, &error))
        if sent == bytes.count { return false }
        evbuffer_add(output, base + sent, bytes.count - sent)
        return true
    }

    /// Sends as much of `buffer` as the socket takes now. A buffer sent whole costs one syscall; a
    /// short send (socket full, or more than 16 segments) is retried until EAGAIN.
    static func flush(_ fd: Int32, from buffer: OpaquePointer) -> FlushOutcome {
        var error: Int32 = 0
        while evbuffer_get_length(buffer) > 0 {
            let sent = switchyard_write_from(buffer, fd, &error)
            if sent == -1 { return .pending }
            if sent < 0 { return .failed(error) }
        }
        return .drained
    }
}

/// The two events of one connection's socket: a persistent read event, added for as long as the
/// connection reads, and a persistent write event, added only while output waits for the socket.
/// The owner frees them (`free()`) before closing the socket.
struct SocketEvents {
    private var readEvent: OpaquePointer?
    private var writeEvent: OpaquePointer?
    private(set) var isReading = false
    private(set) var isWaitingToWrite = false

    /// `callback` receives `EV_READ` or `EV_WRITE` with `owner`.
    init(base: OpaquePointer, fd: Int32, callback: event_callback_fn, owner: UnsafeMutableRawPointer) {
        readEvent = event_new(base, fd, Int16(EV_READ | EV_PERSIST), callback, owner)
        writeEvent = event_new(base, fd, Int16(EV_WRITE | EV_PERSIST), callback, owner)
        precondition(readEvent != nil && writeEvent != nil, "event_new failed for a connection (out of memory).")
    }

    mutating func startReading() {
        guard !isReading, let readEvent else { return }
        isReading = true
        event_add(readEvent, nil)
    }

    mutating func stopReading() {
        guard isReading, let readEvent else { return }
        isReading = false
        event_del(readEvent)
    }

    mutating func waitToWrite() {
        guard !isWaitingToWrite, let writeEvent else { return }
        isWaitingToWrite = true
        event_add(writeEvent, nil)
    }

    mutating func stopWaitingToWrite() {
        guard isWaitingToWrite, let writeEvent else { return }
        isWaitingToWrite = false
        event_del(writeEvent)
    }

    /// Makes the read callback run in this loop iteration even if the socket is not readable.
    func activateRead() {
        if let readEvent { event_active(readEvent, Int32(EV_READ), 0) }
    }

    /// Deletes and frees both events. Idempotent.
    mutating func free() {
        if let readEvent { event_free(readEvent) }
        if let writeEvent { event_free(writeEvent) }
        readEvent = nil
        writeEvent = nil
        isReading = false
        isWaitingToWrite = false
    }
}

/// A deadline that is cheap to move. The timer event is re-armed only when the deadline comes
/// earlier than the pending firing; a firing before the deadline re-arms for the rest. So a
/// keep-alive connection whose deadline moves forward on every request touches its timer about
/// once per timeout period, not once per request. Loop thread only.
final class DeadlineTimer {
    private var timer: LoopTimer?
    /// When the armed timer fires (monotonic milliseconds), nil when it is not armed.
    private var firesAt: Int64?
    /// The deadline (monotonic milliseconds), nil when none.
    private(set) var deadline: Int64?
    private let action: () -> Void

    /// `action` runs once the deadline has passed (and was not moved or cleared before).
    init(loop: EventLoop, action: @escaping () -> Void) {
        self.action = action
        timer = LoopTimer(loop: loop, isOneShot: false) { [unowned self] in self.fired() }
    }

    /// Sets the deadline to `deadline` (monotonic milliseconds). Reads the clock only when the
    /// timer must be re-armed.
    func set(_ deadline: Int64) {
        self.deadline = deadline
        if let firesAt, firesAt <= deadline { return }
        arm(at: deadline, now: System.monotonicMilliseconds())
    }

    /// Forgets the deadline; a pending firing finds nothing to do.
    func clear() {
        deadline = nil
    }

    /// Forgets the deadline and unschedules the timer.
    func cancel() {
        deadline = nil
        firesAt = nil
        timer?.disarm()
    }

    private func arm(at time: Int64, now: Int64) {
        firesAt = time
        timer?.arm(milliseconds: Int(max(0, time - now)))
    }

    private func fired() {
        firesAt = nil
        guard let deadline else { return }
        let now = System.monotonicMilliseconds()
        if now < deadline {
            arm(at: deadline, now: now)  // libevent's coarse clock may fire a little early
            return
        }
        self.deadline = nil
        action()
    }
}
