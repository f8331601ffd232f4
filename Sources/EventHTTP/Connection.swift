internal import CLibevent
import HTTP1

// The HTTP/1 connection core that both sides share: the client side (`ServerConnection`, which
// reads requests and writes responses) and the backend side (`UpstreamConnection`, which writes
// requests and reads responses) are thin roles over it. The core holds the socket and its events,
// the input and output buffers, the transport (plain or TLS), head scanning, body framing as a
// sequence of reads, and the close sequence; a role holds only its state machine and what its
// messages mean. A framing fix is made here once.

/// A connection's socket, buffers and events. Owned by one role object, which passes itself as
/// the events' owner; loop thread only.
struct ConnectionSocket {
    private(set) var fd: Int32
    let input: OpaquePointer
    let output: OpaquePointer
    private(set) var events: SocketEvents?
    /// Encrypts what goes out and decrypts what comes in, once a TLS handshake is done.
    var tls: TLSSession?

    init(fd: Int32) {
        self.fd = fd
        guard let input = evbuffer_new(), let output = evbuffer_new() else {
            preconditionFailure("evbuffer_new failed (out of memory).")
        }
        self.input = input
        self.output = output
    }

    /// Frees the buffers; the role calls it from its `deinit`.
    func freeBuffers() {
        evbuffer_free(input)
        evbuffer_free(output)
    }

    /// libevent's chain blocks come from a per-thread cache (`switchyard_install_chain_cache` in
    /// the shim): without it every request and every response read mallocs and frees a chain.
    /// Installed before the first connection reads.
    private static let chainCacheInstalled: Void = switchyard_install_chain_cache()

    /// Registers the read and write events for `fd` with `owner` as their argument.
    mutating func attach(fd: Int32, base: OpaquePointer, callback: event_callback_fn, owner: UnsafeMutableRawPointer) {
        _ = ConnectionSocket.chainCacheInstalled
        self.fd = fd
        events = SocketEvents(base: base, fd: fd, callback: callback, owner: owner)
    }

    var inputLength: Int { evbuffer_get_length(input) }
    var outputLength: Int { evbuffer_get_length(output) }
    var isWaitingToWrite: Bool { events?.isWaitingToWrite ?? true }

    mutating func startReading() { events?.startReading() }
    mutating func stopReading() { events?.stopReading() }
    mutating func waitToWrite() { events?.waitToWrite() }
    mutating func stopWaitingToWrite() { events?.stopWaitingToWrite() }
    func activateRead() { events?.activateRead() }

    /// Reads what the socket (or the TLS session) has into `input`, up to `maxBytes`.
    func read(maxBytes: Int = .max, scratch: UnsafeMutableRawPointer) -> ReadOutcome {
        if let tls { return tls.read(into: input, maxBytes: maxBytes) }
        return SocketIO.read(fd, into: input, maxBytes: maxBytes, scratch: scratch)
    }

    /// Sends as much of `output` as the socket takes now.
    func flushOutcome() -> FlushOutcome {
        if let tls { return tls.flush(from: output) }
        return SocketIO.flush(fd, from: output)
    }

    /// Sends what the socket takes now and waits for EV_WRITE for the rest; returns the outcome.
    mutating func flush() -> FlushOutcome {
        let outcome = flushOutcome()
        switch outcome {
        case .drained: events?.stopWaitingToWrite()
        case .pending: events?.waitToWrite()
        case .failed: events?.stopWaitingToWrite()
        }
        return outcome
    }

    /// A whole message sent straight from `bytes` when the socket takes it (no output chain); the
    /// rest is queued in `output`, which must be empty. Returns whether bytes were left queued.
    func sendOrQueue(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if let tls {
            evbuffer_add(output, bytes.baseAddress, bytes.count)
            if case .drained = tls.flush(from: output) { return false }
            return true
        }
        return SocketIO.sendOrQueue(fd, bytes, output: output)
    }

    /// Frees the events and closes the socket. Idempotent.
    mutating func close() {
        events?.free()
        tls?.shutdown()
        tls = nil
        if fd >= 0 { evutil_closesocket(fd) }
        fd = -1
    }
}

/// Finds a message head at the front of a connection's input, parsing again only after a new
/// line arrives. One per connection; `reset()` for each message. The role parses the window with
/// its own parser (request or response) and reports back, so the head is never copied through
/// a generic result.
struct HeadReader {
    /// Head bytes already looked at without finding a complete head.
    private var scannedBytes = 0

    mutating func reset() { scannedBytes = 0 }

    /// The bytes at the front of `input` to parse a head from (at most `maxHeaderBytes + 1`), or
    /// nil when there is nothing new to parse: no bytes, or no line end since the last look (a
    /// head can only complete or fail at a line end, or when the window is full).
    mutating func window(in input: OpaquePointer, maxHeaderBytes: Int) -> UnsafeRawBufferPointer? {
        let available = evbuffer_get_length(input)
        guard available > 0 else { return nil }
        let window = min(available, maxHeaderBytes + 1)
        guard let start = evbuffer_pullup(input, window) else { return nil }
        let bytes = UnsafeRawBufferPointer(start: start, count: window)
        if window <= maxHeaderBytes && scannedBytes < window && !HeadBytes.containsLineFeed(bytes, from: scannedBytes) {
            scannedBytes = window
            return nil
        }
        return bytes
    }

    /// The parser found no whole head in `window` yet.
    mutating func incomplete(_ window: UnsafeRawBufferPointer) {
        scannedBytes = window.count
    }

    /// The parser found a head of `consumed` bytes: they leave the input.
    mutating func consume(_ consumed: Int, from input: OpaquePointer) {
        evbuffer_drain(input, consumed)
        scannedBytes = 0
    }
}

/// A message body as a sequence of reads: each call moves the payload bytes that have arrived
/// from the connection's input to a destination buffer (without copying), dropping chunk framing.
/// Reading a body whole is the special case of calling it until `isComplete` into one buffer.
struct BodyReader {
    private enum Mode {
        case length(remaining: Int)
        case chunked(ChunkedDecoder)
        case untilClose
        case complete
    }

    private var mode: Mode
    /// Payload bytes moved so far.
    private(set) var bytesRead = 0

    /// `maxBodyBytes` bounds a chunked body (`.bodyTooLarge` past it); a declared length is
    /// checked by the caller before it reads, a read-until-close body by the caller as it reads.
    init(framing: BodyFraming, maxBodyBytes: Int) {
        switch framing {
        case .none, .contentLength(0): mode = .complete
        case .contentLength(let length): mode = .length(remaining: length)
        case .chunked: mode = .chunked(ChunkedDecoder(maxBodyBytes: maxBodyBytes))
        case .untilClose: mode = .untilClose
        }
    }

    /// The whole body has been read (never, for a body that runs until the connection closes).
    var isComplete: Bool {
        if case .complete = mode { return true }
        return false
    }

    /// The body ends only when the connection closes.
    var endsAtClose: Bool {
        if case .untilClose = mode { return true }
        return false
    }

    /// Moves what has arrived of the body from `input` to `destination`; returns the payload
    /// bytes moved. Bytes after the body stay in `input`.
    mutating func read(from input: OpaquePointer, into destination: OpaquePointer) -> Result<Int, HTTPParseError> {
        let available = evbuffer_get_length(input)
        switch mode {
        case .complete:
            return .success(0)
        case .untilClose:
            if available > 0 { evbuffer_remove_buffer(input, destination, available) }
            bytesRead += available
            return .success(available)
        case .length(let remaining):
            let length = min(available, remaining)
            if length > 0 { evbuffer_remove_buffer(input, destination, length) }
            bytesRead += length
            mode = remaining == length ? .complete : .length(remaining: remaining - length)
            return .success(length)
        case .chunked(var decoder):
            guard available > 0, let start = evbuffer_pullup(input, -1) else { return .success(0) }
            let result = decoder.decode(UnsafeRawBufferPointer(start: start, count: available))
            switch result {
            case .failure(let error):
                mode = .chunked(decoder)
                return .failure(error)
            case .success(let progress):
                // Move the payload ranges out (no copy) and drop the chunk framing between them.
                var position = 0
                var moved = 0
                for range in progress.data {
                    evbuffer_drain(input, range.lowerBound - position)
                    evbuffer_remove_buffer(input, destination, range.count)
                    position = range.upperBound
                    moved += range.count
                }
                evbuffer_drain(input, progress.consumed - position)
                bytesRead += moved
                mode = progress.isComplete ? .complete : .chunked(decoder)
                return .success(moved)
            }
        }
    }
}

/// How a streamed body is framed toward the client (SPEC §10).
enum StreamFraming {
    /// The upstream's Content-Length, kept.
    case contentLength
    /// Chunks as they arrive (an HTTP/1.1 client).
    case chunked
    /// The body ends when the connection closes (an HTTP/1.0 client).
    case untilClose
}

extension EventBuffer {
    /// Moves every byte of `self` to the end of `destination` (no copy).
    func moveAll(to destination: OpaquePointer) {
        evbuffer_add_buffer(destination, evbuffer)
    }

    /// Moves every byte of `other` to the end of `self` (no copy); `other` is left empty.
    public func moveAll(from other: EventBuffer) {
        evbuffer_add_buffer(evbuffer, other.evbuffer)
    }

    /// Appends a copy of `other`'s bytes (real copies: `other` may be moved on right after) when
    /// the result stays within `limit` bytes; returns false, appending nothing, when it would not.
    public func appendCopy(of other: EventBuffer, limit: Int) -> Bool {
        guard other.count <= limit - count else { return false }
        EventBuffer.copySegments(of: other.evbuffer, to: evbuffer)
        return true
    }
}
