internal import CLibevent
import HTTP1

/// A request for a backend. The pool writes the head itself (`host: host:port`, `content-length`),
/// never the client's framing: `headers` are the caller's end-to-end fields; hop-by-hop fields,
/// `host`, `content-length` and `transfer-encoding` in them are dropped.
public struct UpstreamRequest {
    public var method: String
    /// Origin-form, e.g. `/v1/models/churn:predict`.
    public var target: String
    public var headers: HTTPHeaders
    /// Sent as is and left intact (the same buffer can go to a live and a shadow backend, or be retried).
    public var body: EventBuffer
    /// The caller has already dropped the hop-by-hop fields, those named by `Connection`, `host`
    /// and `content-length` from `headers`: the pool writes them without filtering them again
    /// (fields that are not tokens or hold CR, LF or NUL are still never written).
    public var headersAreEndToEnd: Bool
    /// More fields, already written as `name: value\r\n` lines, sent after `headers` as they
    /// are: the caller has checked them and left out hop-by-hop fields, `host`,
    /// `content-length` and `transfer-encoding`.
    public var fieldLines: [UInt8]

    public init(
        method: String,
        target: String,
        headers: HTTPHeaders = HTTPHeaders(),
        fieldLines: [UInt8] = [],
        body: EventBuffer = EventBuffer(),
        headersAreEndToEnd: Bool = false
    ) {
        self.method = method
        self.target = target
        self.headers = headers
        self.fieldLines = fieldLines
        self.body = body
        self.headersAreEndToEnd = headersAreEndToEnd
    }
}

/// A whole backend response (1xx interim responses skipped).
public struct UpstreamResponse {
    public var head: ResponseHead
    /// The de-chunked payload.
    public var body: EventBuffer
    /// The body had no length and ran until the backend closed the connection.
    public var wasReadUntilClose: Bool
    /// Set when the caller asked for the body as a stream (`BodyDisposition.stream`): its reads
    /// arrive through it, and `body` is empty.
    public var stream: UpstreamStream?
    /// From the request's last byte handed to the socket to the response head (nanoseconds).
    public var firstByteNanoseconds: UInt64 = 0
    /// The caller asked for this body as a stream, and it had all arrived with its head: it is
    /// handed over whole in `body` instead (pass it on as a stream's would be).
    public var wasStreamable = false

    public init(head: ResponseHead, body: EventBuffer, wasReadUntilClose: Bool) {
        self.head = head
        self.body = body
        self.wasReadUntilClose = wasReadUntilClose
    }
}

/// What to do with a response body once its head has arrived.
public enum BodyDisposition: Sendable {
    /// Read it whole (bounded by the pool's `maxBodyBytes`) before completing.
    case collect
    /// Complete with the head at once and deliver the body through `UpstreamResponse.stream`,
    /// unbounded, paced by the consumer.
    case stream
}

/// Why an upstream exchange failed.
public enum UpstreamError: Error, Sendable, Hashable {
    /// The TCP connection could not be made (refused, unreachable, unresolvable name).
    case connectFailed(String)
    /// The whole exchange (queueing and connect included) took longer than its timeout.
    case timeout
    /// Malformed, cut short, or over the response size limit.
    case badResponse(String)
    /// The TLS handshake or certificate verification failed (SPEC §11); says why.
    case tlsFailed(String)
    /// Every connection was busy and the wait queue was full.
    case overloaded
    /// The pool was closed.
    case closed
}

/// Keep-alive connections to one backend, owned by one `EventLoop`. Loop thread only.
///
/// At most `maxConnections` are open (in flight and idle together); idle ones are reused last-in
/// first-out; beyond that, requests wait first-in first-out, at most `maxQueued` of them.
public final class UpstreamPool {
    public let loop: EventLoop
    /// The backend's host (`localhost` for a Unix socket, the `host` field sent).
    public let host: String
    /// The backend's TCP port; 0 for a Unix socket.
    public let port: Int
    /// The backend's Unix socket path (SPEC §12); nil for TCP.
    public let socketPath: String?
    /// `host:port` or `unix:/path`, as connect errors name the backend.
    let endpoint: String
    public let maxConnections: Int
    public let maxQueued: Int
    /// `maxBodyBytes` bounds response bodies; headers are bounded like requests.
    public let limits: HTTPLimits
    /// Set for an `https://` backend: every connection speaks TLS with this context (SPEC §11).
    public let tls: TLSClientContext?

    /// Open connections: connecting, in flight or idle.
    public private(set) var openConnections = 0
    /// TCP connections opened since the pool was created.
    public private(set) var connectionsOpened = 0
    /// Idle keep-alive connections.
    public var idleConnections: Int { idle.count }
    /// Requests waiting for a connection.
    public var queuedRequests: Int { waiting.count }

    /// Where connections go; a host name is looked up again now and then.
    private let address: BackendAddress
    let hostHeader: String
    // Unchecked: checking these costs +403 instructions/request, 3 checks (bench/instructions.sh "", 33,815 -> 34,218).
    @exclusivity(unchecked) private var idle: [UpstreamConnection] = []
    @exclusivity(unchecked) private var waiting: [UpstreamExchange] = []
    private var isClosed = false
    /// The earliest deadline among `waiting` (connections watch the deadlines of their own exchanges).
    private var waitingTimer: DeadlineTimer?

    /// `host` is an IPv4 or IPv6 literal or `localhost` (127.0.0.1); any other name is resolved
    /// here synchronously (getaddrinfo blocks the loop: create pools at startup or on reload),
    /// then again on a background thread every 30 s, and every second while it does not
    /// resolve (so a DNS record that appears late, or a Service re-created with a new address, is
    /// picked up without a restart). While a name does not resolve, `send` fails with
    /// `.connectFailed`.
    /// `limits.maxBodyBytes` defaults to 8 MiB (SPEC §8: backend response).
    public init(
        loop: EventLoop,
        host: String,
        port: Int,
        maxConnections: Int = 64,
        maxQueued: Int = 1024,
        limits: HTTPLimits = HTTPLimits(maxBodyBytes: 8 << 20),
        tls: TLSClientContext? = nil
    ) {
        precondition(maxConnections > 0, "UpstreamPool needs maxConnections of at least 1, got \(maxConnections).")
        self.loop = loop
        self.host = host
        self.port = port
        self.tls = tls
        self.socketPath = nil
        self.endpoint = "\(host):\(port)"
        self.maxConnections = maxConnections
        self.maxQueued = max(0, maxQueued)
        self.limits = limits
        self.hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        self.address = BackendAddress(host: host, port: port)
    }

    /// A pool to a backend listening on the Unix socket `socketPath` (SPEC §12): requests carry
    /// `host: localhost`; there is no name to look up. A missing socket file or one nobody listens
    /// on fails `send` with `.connectFailed("connect to unix:/path failed: ...")`.
    public init(
        loop: EventLoop,
        socketPath: String,
        maxConnections: Int = 64,
        maxQueued: Int = 1024,
        limits: HTTPLimits = HTTPLimits(maxBodyBytes: 8 << 20)
    ) {
        precondition(maxConnections > 0, "UpstreamPool needs maxConnections of at least 1, got \(maxConnections).")
        self.loop = loop
        self.host = "localhost"
        self.port = 0
        self.tls = nil
        self.socketPath = socketPath
        self.endpoint = "unix:\(socketPath)"
        self.maxConnections = maxConnections
        self.maxQueued = max(0, maxQueued)
        self.limits = limits
        self.hostHeader = "localhost"
        // `switchyard_connect` also tries TCP_NODELAY, which a Unix socket refuses; it ignores that.
        self.address = BackendAddress(socketPath: socketPath)
    }

    deinit {
        // In-flight exchanges keep the pool alive, so only idle connections are left here.
        for connection in idle { connection.close() }
    }

    /// Sends `request` and calls `completion` exactly once, on the loop thread, never inside
    /// `send`. `timeoutMilliseconds` covers the whole exchange: waiting for a connection,
    /// connecting, writing and reading. A reused keep-alive connection that fails before any
    /// response byte is retried once on a new connection.
    ///
    /// `disposition` (nil: always `.collect`) decides from the final response head whether the
    /// body is read whole or streamed. A streamed body's completion comes with the head, so
    /// `timeoutMilliseconds` then ends there; after it, `idleTimeoutMilliseconds` bounds the
    /// silence between two reads.
    public func send(
        _ request: UpstreamRequest,
        timeoutMilliseconds: Int,
        idleTimeoutMilliseconds: Int = 30_000,
        disposition: ((ResponseHead) -> BodyDisposition)? = nil,
        completion: @escaping (Result<UpstreamResponse, UpstreamError>) -> Void
    ) {
        send(
            request,
            timeoutMilliseconds: timeoutMilliseconds,
            idleTimeoutMilliseconds: idleTimeoutMilliseconds,
            disposition: disposition,
            exchange: CompletionExchange(completion)
        )
    }

    /// `send`, with the result going to `exchange.upstreamFinished` instead of a closure: the
    /// caller's own object for the request (a subclass of `UpstreamExchange`) carries the send, so
    /// the pool allocates nothing for it. `exchange` carries one send at a time: the next only
    /// once the last one's result has come (a fallback may send again from `upstreamFinished`).
    public func send(
        _ request: UpstreamRequest,
        timeoutMilliseconds: Int,
        idleTimeoutMilliseconds: Int = 30_000,
        disposition: ((ResponseHead) -> BodyDisposition)? = nil,
        exchange: UpstreamExchange
    ) {
        loop.assertInLoop()
        precondition(
            exchange.isFinished,
            "UpstreamPool.send was given an exchange whose last send has not finished; it carries one send at a time."
        )
        let now = System.monotonicMilliseconds()
        exchange.begin(
            pool: self,
            request: request,
            deadline: now + Int64(max(0, timeoutMilliseconds)),
            idleTimeoutMilliseconds: idleTimeoutMilliseconds,
            disposition: disposition
        )
        if isClosed {
            finishSoon(exchange, .failure(.closed))
            return
        }
        address.refresh(loop: loop, now: now)
        if let failure = address.failure {
            finishSoon(exchange, .failure(.connectFailed(failure)))
            return
        }
        if let connection = idle.popLast() {
            connection.start(exchange, request: request, isReused: true)
        } else if openConnections < maxConnections {
            openConnection(for: exchange, request: request)
        } else if waiting.count < maxQueued {
            enqueue(exchange)
        } else {
            finishSoon(exchange, .failure(.overloaded))
        }
    }

    /// Whether `send` would start at once: an idle connection, or room for a new one (a shadow
    /// copy is dropped when it would wait, rather than queued behind a backend that cannot keep
    /// up, where it would only time out).
    public var hasFreeConnection: Bool { !idle.isEmpty || openConnections < maxConnections }

    /// Closes idle connections and fails queued requests with `.closed`; in-flight exchanges
    /// finish, then their connections close. Later sends fail with `.closed`.
    public func close() {
        isClosed = true
        for connection in idle { connection.close() }
        idle = []
        let queued = waiting
        waiting = []
        for exchange in queued { exchange.finish(.failure(.closed)) }
    }

    // MARK: Internals (loop thread)

    private func finishSoon(_ exchange: UpstreamExchange, _ result: Result<UpstreamResponse, UpstreamError>) {
        loop.runSoon { exchange.finish(result) }
    }

    private func enqueue(_ exchange: UpstreamExchange, first: Bool = false) {
        if first {
            waiting.insert(exchange, at: 0)
        } else {
            waiting.append(exchange)
        }
        if waitingTimer == nil {
            waitingTimer = DeadlineTimer(loop: loop) { [unowned self] in self.expireWaiting() }
        }
        if let timer = waitingTimer, timer.deadline.map({ exchange.deadline < $0 }) ?? true {
            timer.set(exchange.deadline)
        }
    }

    /// The earliest queued deadline passed: time out every expired queued request.
    private func expireWaiting() {
        let now = System.monotonicMilliseconds()
        let expired = waiting.filter { $0.deadline <= now }
        waiting.removeAll { $0.deadline <= now }
        if let next = waiting.map(\.deadline).min() { waitingTimer?.set(next) }
        for exchange in expired { exchange.finish(.failure(.timeout)) }
    }

    /// `request` is `exchange.request`, passed on by a caller that has it at hand (no copy).
    private func openConnection(for exchange: UpstreamExchange, request: UpstreamRequest? = nil) {
        openConnections += 1
        connectionsOpened += 1
        let connection = UpstreamConnection(pool: self)
        let failure = address.withSockaddr { sa, length in connection.connect(address: sa, length: length) }
        if let failure {
            connection.close()
            finishSoon(exchange, .failure(.connectFailed(failure)))
            return
        }
        connection.start(exchange, request: request ?? exchange.request!, isReused: false)
    }

    /// The deadline of `exchange`, in flight on `connection`, passed.
    func connection(_ connection: UpstreamConnection, timedOut exchange: UpstreamExchange) {
        // The backend may still answer this one: never reuse the connection.
        connection.abandon()
        exchange.finish(.failure(.timeout))
    }

    /// A response arrived whole.
    func connection(
        _ connection: UpstreamConnection,
        finished exchange: UpstreamExchange,
        with response: UpstreamResponse,
        reusable: Bool
    ) {
        if reusable && !isClosed {
            if waiting.isEmpty {
                connection.becomeIdle()
                idle.append(connection)
            } else {
                connection.start(waiting.removeFirst(), isReused: true)
            }
        } else {
            connection.close()
        }
        exchange.finish(.success(response))
    }

    /// A streamed body ended cleanly on a keep-alive connection: reuse it.
    func connectionFinishedStream(_ connection: UpstreamConnection) {
        guard !isClosed else {
            connection.close()
            return
        }
        if waiting.isEmpty {
            connection.becomeIdle()
            idle.append(connection)
        } else {
            connection.start(waiting.removeFirst(), isReused: true)
        }
    }

    /// The connection failed during `exchange` (it has been closed already).
    func connection(failed exchange: UpstreamExchange, with error: UpstreamError, isRetryable: Bool) {
        guard isRetryable, !exchange.hasRetried, !isClosed, !exchange.isFinished else {
            exchange.finish(.failure(error))
            return
        }
        exchange.hasRetried = true
        if openConnections < maxConnections {
            openConnection(for: exchange)
        } else {
            enqueue(exchange, first: true)
        }
    }

    /// Every connection calls this exactly once, from `close()`.
    func connectionClosed(_ connection: UpstreamConnection) {
        openConnections -= 1
        if let index = idle.firstIndex(where: { $0 === connection }) { idle.remove(at: index) }
        while !waiting.isEmpty && !isClosed {
            if let reusable = idle.popLast() {
                reusable.start(waiting.removeFirst(), isReused: true)
            } else if openConnections < maxConnections {
                openConnection(for: waiting.removeFirst())
            } else {
                break
            }
        }
    }
}

/// One `send`: its request, its deadline, and who hears the result (`upstreamFinished`, on the
/// loop thread, exactly once per send). A caller that has an object per request already subclasses
/// it and passes it to `send(_:...exchange:)`, so that no object is made per request for the
/// pool; a completion closure gets one of its own (`CompletionExchange`). Loop thread only.
open class UpstreamExchange {
    /// Strong: a pool with exchanges in flight stays alive until they finish. Set by `begin`.
    final var pool: UpstreamPool!
    /// Set by `begin` (nil before the first send).
    final var request: UpstreamRequest?
    /// When the whole exchange times out (monotonic milliseconds). The connection serving it, or
    /// the pool while it is queued, watches it.
    final var deadline: Int64 = 0
    final var hasRetried = false
    /// Streamed bodies only: the longest silence between two reads.
    final var idleTimeoutMilliseconds = 30_000
    final var decideDisposition: ((ResponseHead) -> BodyDisposition)?
    /// The disposition decided for the head that arrived (asked once per head).
    private final var decided: BodyDisposition?
    /// The last send's result has been handed over (true before the first send).
    public private(set) final var isFinished = true

    public init() {}

    /// Hears the result of a send: once per send, on the loop thread, never inside `send`.
    open func upstreamFinished(_ result: Result<UpstreamResponse, UpstreamError>) {}

    /// Starts a send on this exchange.
    final func begin(
        pool: UpstreamPool,
        request: UpstreamRequest,
        deadline: Int64,
        idleTimeoutMilliseconds: Int,
        disposition: ((ResponseHead) -> BodyDisposition)?
    ) {
        self.pool = pool
        self.request = request
        self.deadline = deadline
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        decideDisposition = disposition
        hasRetried = false
        decided = nil
        isFinished = false
    }

    /// What to do with the body of `head`.
    final func disposition(_ head: ResponseHead) -> BodyDisposition {
        if let decided { return decided }
        let answer = decideDisposition?(head) ?? .collect
        decided = answer
        return answer
    }

    /// Hands the result over if it has not been yet. The request stays until the next `begin` or
    /// the exchange's end: letting it go here (for a subclass that outlives its send) cost 76
    /// instructions a request and saved no allocation (bench/instructions.sh, plain and shadow).
    final func finish(_ result: Result<UpstreamResponse, UpstreamError>) {
        guard !isFinished else { return }
        isFinished = true
        upstreamFinished(result)
    }
}

/// A completion closure's exchange (`send(_:...completion:)`).
private final class CompletionExchange: UpstreamExchange {
    let completion: (Result<UpstreamResponse, UpstreamError>) -> Void

    init(_ completion: @escaping (Result<UpstreamResponse, UpstreamError>) -> Void) {
        self.completion = completion
    }

    override func upstreamFinished(_ result: Result<UpstreamResponse, UpstreamError>) {
        completion(result)
    }
}

/// One connection to a backend: the response-reading role over the shared connection core
/// (`ConnectionSocket`, `HeadReader`, `BodyReader`). Retained for libevent from `connect` until
/// `close()`, which frees the events and closes the socket exactly once.
final class UpstreamConnection {
    private enum State {
        /// An exchange is in progress: its request is being written or its head or whole body read.
        case busy
        /// The exchange has its head; the body goes to its `UpstreamStream` read by read.
        case streaming
        case idle
        case closed
    }

    // `@exclusivity(unchecked)`: see `ServerConnection` (loop-thread state, no overlapping access).
    private weak var pool: UpstreamPool?
    private let loop: EventLoop
    private let limits: HTTPLimits
    private let hostHeader: String
    private let endpoint: String
    // Unchecked: checking it costs +448 instructions/request, 4 checks (bench/instructions.sh "", 33,815 -> 34,263,
    // with `exchange`, which alone costs no check).
    @exclusivity(unchecked) private var socket = ConnectionSocket(fd: -1)
    /// The last response head's field buffer, parsed into again once that head is gone.
    /// Checked: see `ConnectionScratch` (the same measurement).
    private var fieldStorage = FieldStorage()
    private var state = State.busy
    private var selfRetain: Unmanaged<UpstreamConnection>?
    /// The socket is connected and, for TLS, the handshake is done: requests may be written.
    private var isConnected = false
    /// TCP is connected; a TLS handshake is in progress in `handshake`.
    private var handshake: TLSSession?
    /// The backend's context, for an `https://` pool.
    private let tlsContext: TLSClientContext?
    private let port: Int
    private let host: String
    /// A write failed (errno): the read callback, activated for it, reports it.
    private var writeError: Int32?
    /// Watches the deadline of the exchange in progress (then a stream's idle deadline).
    private var timer: DeadlineTimer?

    // The exchange in progress.
    private var exchange: UpstreamExchange?
    private var isReused = false
    private var hasResponseBytes = false
    /// When the request went out (monotonic nanoseconds), for the time to the response head.
    private var sentNanoseconds: UInt64 = 0
    /// The final response's head has been read (it waits in `head` for the body).
    private var hasHead = false
    private var head: ResponseHead?
    private var keepsAlive = false
    private var body = EventBuffer()
    // Unchecked: checking these costs +671 instructions/request, 6 checks (bench/instructions.sh "", 33,815 -> 34,486).
    @exclusivity(unchecked) private var bodyReader = BodyReader(framing: .none, maxBodyBytes: 0)
    @exclusivity(unchecked) private var headReader = HeadReader()
    /// The stream the body goes to, while `state == .streaming`.
    private var stream: UpstreamStream?
    private var idleTimeoutMilliseconds = 0
    // Unchecked: checking it costs +512 instructions/request, 3 checks (bench/instructions.sh "", 33,815 -> 34,327).
    /// The request head being written, kept between requests for its capacity, its request line
    /// and `host` field.
    @exclusivity(unchecked) private var headScratch = HeadScratch()
    /// The method and target whose request line starts `headScratch`.
    private var headScratchMethod = ""
    private var headScratchTarget = ""

    init(pool: UpstreamPool) {
        self.pool = pool
        self.loop = pool.loop
        self.limits = pool.limits
        self.hostHeader = pool.hostHeader
        self.endpoint = pool.endpoint
        self.tlsContext = pool.tls
        self.host = pool.host
        self.port = pool.port
    }

    deinit {
        socket.close()
        socket.freeBuffers()
    }

    /// Starts a non-blocking connect (TCP_NODELAY set); returns why it failed at once, or nil.
    /// The outcome of a connect in progress arrives as the first EV_WRITE.
    func connect(address: UnsafePointer<sockaddr>, length: Int32) -> String? {
        var inProgress: Int32 = 0
        var error: Int32 = 0
        let fd = switchyard_connect(address, length, &inProgress, &error)
        guard fd >= 0 else {
            return "connect to \(endpoint) failed: \(System.errorText(error))"
        }
        selfRetain = Unmanaged.passRetained(self)
        timer = DeadlineTimer(loop: loop) { [unowned self] in self.deadlinePassed() }
        socket.attach(
            fd: fd,
            base: loop.base,
            callback: UpstreamCallbacks.io,
            owner: Unmanaged.passUnretained(self).toOpaque()
        )
        socket.startReading()
        if inProgress != 0 {
            socket.waitToWrite()
        } else {
            socketConnected()
        }
        return nil
    }

    /// TCP is up: ready for requests, or first the TLS handshake (SPEC §11).
    private func socketConnected() {
        guard let tlsContext else {
            isConnected = true
            return
        }
        handshake = TLSSession(context: tlsContext, fd: socket.fd, host: host, port: port)
        socket.waitToWrite()  // the handshake's first flight goes out when the socket is writable
    }

    /// Drives the handshake as far as the socket allows; once done, sends what waits.
    private func continueHandshake() {
        guard let session = handshake else { return }
        switch session.handshake() {
        case .done:
            handshake = nil
            socket.tls = session
            isConnected = true
            socket.stopWaitingToWrite()
            if socket.outputLength > 0 { flushOutput() }
        case .wantRead:
            socket.stopWaitingToWrite()
        case .wantWrite:
            socket.waitToWrite()
        case .failed(let detail):
            handshake = nil
            guard state == .busy, let exchange else {
                close()
                return
            }
            fail(exchange, .tlsFailed(detail), isRetryable: false)
        }
    }

    /// Writes `exchange`'s request and waits for its response.
    func start(_ exchange: UpstreamExchange, isReused: Bool) {
        start(exchange, request: exchange.request!, isReused: isReused)
    }

    /// `start`, with `exchange.request` passed by a caller that has it at hand (no copy).
    func start(_ exchange: UpstreamExchange, request: UpstreamRequest, isReused: Bool) {
        guard state != .closed else { return }
        state = .busy
        self.exchange = exchange
        self.isReused = isReused
        hasResponseBytes = false
        if hasHead {
            hasHead = false
            head = nil
        }
        headReader.reset()
        timer?.set(exchange.deadline)
        sentNanoseconds = System.monotonicNanoseconds()

        let bodyLength = request.body.count
        let sendsLength =
            bodyLength > 0 || request.method == "POST" || request.method == "PUT" || request.method == "PATCH"
        // Written straight from the caller's fields into a reused buffer: `host` first, then the
        // fields that are not hop-by-hop, not named by `Connection`, not `host` or `content-length`.
        // The request line and `host` stay from the last request when method and target are the same.
        let isSameLine = request.method == headScratchMethod && request.target == headScratchTarget
        if !headScratch.reset(keepingPrefix: isSameLine) {
            HTTPSerializer.appendRequestLine(&headScratch.bytes, method: request.method, target: request.target)
            HTTPSerializer.appendField(&headScratch.bytes, name: "host", value: hostHeader, droppingFraming: false)
            headScratch.markPrefix()
            headScratchMethod = request.method
            headScratchTarget = request.target
        }
        let headers = request.headers
        if request.headersAreEndToEnd {
            // Filtered by the caller already: one pass over the fields, not two.
            for index in 0..<headers.count {
                HTTPSerializer.appendField(&headScratch.bytes, at: index, of: headers, droppingFraming: sendsLength)
            }
        } else if headers.count > 0 {
            let named = HopByHop.connectionNamed(in: headers)
            for index in 0..<headers.count {
                // Names read as bytes: no String per field of a parsed head.
                let skipped = headers.withField(at: index) { name, _ in
                    HopByHop.isHopByHop(name) || name.equalsIgnoringCase("host")
                        || name.equalsIgnoringCase("content-length")
                        || named.contains { name.equalsIgnoringCase(string: $0) }
                }
                if !skipped {
                    HTTPSerializer.appendField(&headScratch.bytes, at: index, of: headers, droppingFraming: sendsLength)
                }
            }
        }
        headScratch.bytes.append(contentsOf: request.fieldLines)
        HeadBytes.appendEnd(&headScratch.bytes, contentLength: sendsLength ? bodyLength : nil)
        let canSend = isConnected && !socket.isWaitingToWrite
        if canSend && bodyLength <= EventBuffer.maxCopiedBytes && socket.outputLength == 0 {
            // Head and a small body in one buffer, sent at once: no output chain when it all goes out.
            HeadBytes.appendBytes(of: request.body, to: &headScratch.bytes)
            let left = headScratch.bytes.withUnsafeBytes { raw in socket.sendOrQueue(raw) }
            if left { flushOutput() }
            return
        }
        headScratch.bytes.withUnsafeBytes { raw in _ = evbuffer_add(socket.output, raw.baseAddress, raw.count) }
        EventBuffer.addCopy(of: request.body.evbuffer, to: socket.output)
        if canSend { flushOutput() }
    }

    func becomeIdle() {
        state = .idle
        exchange = nil
        timer?.clear()
    }

    /// The exchange timed out: close without completing it (the pool does).
    func abandon() {
        exchange = nil
        close()
    }

    /// Frees the events, closes the socket and tells the pool. Idempotent.
    func close() {
        guard state != .closed else { return }
        state = .closed
        timer?.cancel()
        socket.close()
        pool?.connectionClosed(self)
        let retained = selfRetain
        selfRetain = nil
        retained?.release()
    }

    // MARK: Events

    private func deadlinePassed() {
        switch state {
        case .busy:
            guard let exchange, let pool else { return }
            pool.connection(self, timedOut: exchange)
        case .streaming:
            endStream(.cut(.idleTimeout))
        case .idle, .closed:
            break
        }
    }

    /// Sends what the socket takes; waits for EV_WRITE for the rest. A write error is reported
    /// from the read callback (activated here), never from inside `start`, so a completion never
    /// runs inside `send`.
    private func flushOutput() {
        if case .failed(let error) = socket.flush() {
            writeError = error
            socket.activateRead()
        }
    }

    fileprivate func writable() {
        guard state != .closed else { return }
        if handshake != nil {
            continueHandshake()
            return
        }
        if !isConnected {
            let error = switchyard_socket_error(socket.fd)
            if error != 0 {
                ended(errorText: System.errorText(error))
                return
            }
            socketConnected()
            if !isConnected {
                continueHandshake()
                return
            }
        }
        if socket.tls?.needsWritableToRead ?? false {
            socket.stopWaitingToWrite()
            readable()
            return
        }
        flushOutput()
    }

    fileprivate func readable() {
        if handshake != nil && state != .closed {
            continueHandshake()
            return
        }
        switch state {
        case .idle:
            close()  // bytes nobody asked for, or the backend closed: the connection is out of step
            return
        case .closed:
            return
        case .streaming:
            // Paused: the bytes wait in the socket until the client has taken what it was given.
            if stream?.isPaused ?? true {
                socket.stopReading()
                return
            }
            // Bytes read before (with the head, or before a pause) go first.
            if socket.inputLength > 0 {
                readStream()
                guard state == .streaming, !(stream?.isPaused ?? true) else { return }
            }
        case .busy:
            break
        }
        let outcome = socket.read(scratch: loop.readScratch)
        if let tls = socket.tls {
            // Decrypted bytes OpenSSL keeps will not wake the loop; nor does a read that needs a write.
            if tls.hasBufferedInput { socket.activateRead() }
            if tls.needsWritableToRead { socket.waitToWrite() }
            if tls.needsReadableToWrite && socket.outputLength > 0 { flushOutput() }
        }
        switch outcome {
        case .bytes:
            hasResponseBytes = true
            parse()
        case .wouldBlock:
            if let writeError { ended(errorText: System.errorText(writeError)) }
        case .endOfStream:
            ended(errorText: writeError.map(System.errorText))
        case .failed(let error):
            ended(errorText: System.errorText(error))
        }
    }

    private func parse() {
        while true {
            switch state {
            case .busy where exchange != nil:
                let progressed = hasHead ? readBody() : readHead()
                if !progressed { return }
            case .streaming:
                readStream()
                return
            default:
                return
            }
        }
    }

    /// The backend closed the connection (`errorText` nil) or the socket failed.
    private func ended(errorText: String?) {
        if state == .streaming {
            if bodyReader.endsAtClose && errorText == nil {
                endStream(.complete)
            } else {
                endStream(.cut(.upstreamClosed))
            }
            return
        }
        guard state == .busy, let exchange else {
            close()
            return
        }
        if hasHead && bodyReader.endsAtClose && errorText == nil {
            complete(reusable: false)
            return
        }
        let error: UpstreamError
        var isRetryable = false
        if let detail = socket.tls?.failureDetail, !hasResponseBytes {
            // TLS 1.3 refuses a missing client certificate after the handshake, on the first
            // read or write: a TLS failure, never a stale connection to retry.
            error = .tlsFailed(detail)
        } else if !isConnected {
            error = .connectFailed("connect to \(endpoint) failed: \(errorText ?? "connection closed")")
        } else if !hasResponseBytes {
            isRetryable = isReused  // a stale keep-alive connection: the backend never saw the request
            error = .badResponse(
                "upstream closed the connection without responding" + (errorText.map { " (\($0))" } ?? "")
            )
        } else {
            error = .badResponse("upstream closed the connection mid-response" + (errorText.map { " (\($0))" } ?? ""))
        }
        fail(exchange, error, isRetryable: isRetryable)
    }

    // MARK: Reading the response

    private func readHead() -> Bool {
        guard let exchange else { return false }
        let method = exchange.request!.method
        let limits = self.limits
        // The body limit is checked below, once the head says whether the body is streamed
        // (unbounded) or read whole: the parser checks only the head.
        var headLimits = limits
        headLimits.maxBodyBytes = .max
        guard let window = headReader.window(in: socket.input, maxHeaderBytes: limits.maxHeaderBytes) else {
            return false
        }
        switch ResponseHeadParser.parse(window, limits: headLimits, requestMethod: method, reusing: &fieldStorage) {
        case .incomplete:
            headReader.incomplete(window)
            return false
        case .failure(let error):
            fail(exchange, .badResponse(error.detail), isRetryable: false)
            return false
        case .complete(let head, let consumed):
            headReader.consume(consumed, from: socket.input)
            if (100..<200).contains(head.status) {
                if head.status == 101 {
                    fail(exchange, .badResponse("upstream switched protocols (101)"), isRetryable: false)
                    return false
                }
                return true  // interim response: the real one follows
            }
            keepsAlive = head.keepAlive
            if case .contentLength(let length) = head.framing, length > limits.maxBodyBytes,
                exchange.disposition(head) == .collect
            {
                fail(exchange, .badResponse(overLimit), isRetryable: false)
                return false
            }
            // A streamed body is bounded by back-pressure, not by `maxBodyBytes` (SPEC §10).
            let streams = exchange.disposition(head) == .stream
            bodyReader = BodyReader(framing: head.framing, maxBodyBytes: streams ? .max : limits.maxBodyBytes)
            self.head = head
            hasHead = true
            body = reusableBody()
            if bodyReader.isComplete {
                complete(reusable: keepsAlive, wasStreamable: streams)
                return false
            }
            if streams {
                // What came with the head first: a body that is all here already (most small
                // answers) is handed over whole, head and body in one write to the client, rather
                // than as a head and a piece.
                if case .failure = bodyReader.read(from: socket.input, into: body.evbuffer) {
                    fail(exchange, .badResponse("upstream chunked body is malformed"), isRetryable: false)
                    return false
                }
                if bodyReader.isComplete {
                    complete(reusable: keepsAlive, wasStreamable: true)
                    return false
                }
                hasHead = false
                self.head = nil
                beginStream(exchange, head: head, first: body)  // leaves `body` empty, for reuse
                return false
            }
            return true
        }
    }

    /// The last response's body buffer, emptied, when nothing else holds it any more (one
    /// allocation and one `evbuffer_new` less per response); else a new one.
    private func reusableBody() -> EventBuffer {
        if isKnownUniquelyReferenced(&body) {
            body.removeAll()
            return body
        }
        return EventBuffer()
    }

    private var overLimit: String { "upstream response body exceeds the limit of \(limits.maxBodyBytes) bytes" }

    private func readBody() -> Bool {
        guard let exchange else { return false }
        switch bodyReader.read(from: socket.input, into: body.evbuffer) {
        case .failure(let error):
            let detail = error.status == 413 ? overLimit : "upstream chunked body: \(error.detail)"
            fail(exchange, .badResponse(detail), isRetryable: false)
        case .success:
            if bodyReader.endsAtClose && body.count > limits.maxBodyBytes {
                fail(exchange, .badResponse(overLimit), isRetryable: false)
            } else if bodyReader.isComplete {
                complete(reusable: keepsAlive)
            }
        }
        return false
    }

    private func complete(reusable: Bool, wasStreamable: Bool = false) {
        guard let exchange, hasHead, let head = head.take() else { return }
        hasHead = false
        // Bytes after the response, or request bytes still unsent (an early answer), mean the
        // connection is out of step: do not reuse it.
        let isClean = socket.inputLength == 0 && socket.outputLength == 0 && writeError == nil
        let readUntilClose = bodyReader.endsAtClose
        var response = UpstreamResponse(head: head, body: body, wasReadUntilClose: readUntilClose)
        response.firstByteNanoseconds = firstByteNanoseconds
        response.wasStreamable = wasStreamable
        self.exchange = nil
        let pool: UpstreamPool = exchange.pool
        pool.connection(self, finished: exchange, with: response, reusable: reusable && isClean && !readUntilClose)
    }

    private var firstByteNanoseconds: UInt64 {
        System.monotonicNanoseconds() &- sentNanoseconds
    }

    private func fail(_ exchange: UpstreamExchange, _ error: UpstreamError, isRetryable: Bool) {
        self.exchange = nil
        close()
        exchange.pool.connection(failed: exchange, with: error, isRetryable: isRetryable)
    }

    // MARK: Streaming the body

    /// Hands the head to the caller now, with a stream that the body's reads go to.
    private func beginStream(_ exchange: UpstreamExchange, head: ResponseHead, first: EventBuffer) {
        let stream = UpstreamStream(connection: self)
        stream.pending.moveAll(from: first)
        self.stream = stream
        self.exchange = nil
        state = .streaming
        idleTimeoutMilliseconds = exchange.idleTimeoutMilliseconds
        setIdleDeadline()
        var response = UpstreamResponse(
            head: head,
            body: EventBuffer(),
            wasReadUntilClose: bodyReader.endsAtClose
        )
        response.stream = stream
        response.firstByteNanoseconds = firstByteNanoseconds
        exchange.finish(.success(response))
    }

    private func setIdleDeadline() {
        timer?.set(System.monotonicMilliseconds() + Int64(idleTimeoutMilliseconds))
    }

    /// Moves what has arrived of the body to the stream's consumer.
    private func readStream() {
        guard let stream else { return }
        switch bodyReader.read(from: socket.input, into: stream.pending.evbuffer) {
        case .failure:
            endStream(.cut(.upstreamClosed))
            return
        case .success(let moved):
            if moved > 0 { setIdleDeadline() }
        }
        stream.deliver()
        guard state == .streaming else { return }  // the consumer cancelled
        if bodyReader.isComplete { endStream(.complete) }
    }

    /// The consumer paused (`isPaused`) or resumed the stream.
    func streamPausedChanged(_ stream: UpstreamStream) {
        guard state == .streaming, stream === self.stream else { return }
        if stream.isPaused {
            socket.stopReading()
            timer?.clear()  // the silence is the client's, not the backend's
        } else {
            socket.startReading()
            setIdleDeadline()
            // Bytes already read (into the input, or decrypted and held by OpenSSL) would never
            // wake the loop again.
            if socket.inputLength > 0 || (socket.tls?.hasBufferedInput ?? false) { socket.activateRead() }
        }
    }

    /// The consumer gave up (its client went away): the backend may still be sending, so the
    /// connection closes at once.
    func streamCancelled(_ stream: UpstreamStream) {
        guard state == .streaming, stream === self.stream else { return }
        endStream(.cut(.clientClosed))
    }

    private func endStream(_ end: UpstreamStream.End) {
        guard state == .streaming, let stream else { return }
        self.stream = nil
        let isClean = socket.inputLength == 0 && socket.outputLength == 0 && writeError == nil
        let reusable: Bool
        if case .complete = end {
            reusable = keepsAlive && isClean && !bodyReader.endsAtClose
        } else {
            reusable = false
        }
        if reusable, let pool {
            pool.connectionFinishedStream(self)
        } else {
            close()
        }
        stream.end(end)
    }
}

/// A response body that arrives read by read (SPEC §10), for the caller that asked for
/// `.stream`. Loop thread only. The consumer installs its handlers with `start`, moves the
/// bytes it is given, and calls `pause()` while its own client has too much unsent.
public final class UpstreamStream {
    /// How a stream ended.
    public enum End: Sendable, Equatable {
        /// The whole body arrived (by its framing, or by the backend closing a body that runs
        /// until close).
        case complete
        /// It stopped before its end.
        case cut(CutReason)
    }

    /// Why a stream was cut (SPEC §10's `reason` label).
    public enum CutReason: String, Sendable {
        case upstreamClosed = "upstream_closed"
        case idleTimeout = "idle_timeout"
        case clientClosed = "client_closed"
    }

    private weak var connection: UpstreamConnection?
    /// Bytes read and not yet handed to the consumer.
    let pending = EventBuffer()
    private var onData: ((EventBuffer) -> Void)?
    private var onEnd: ((End) -> Void)?
    private var ending: End?
    /// Reading the backend is paused.
    public private(set) var isPaused = false
    /// The stream has ended (its `onEnd` ran or will run when `start` is called).
    public var hasEnded: Bool { ending != nil }

    init(connection: UpstreamConnection) {
        self.connection = connection
    }

    /// Installs the consumer: `onData` receives each read's bytes (move them out: what is left
    /// after the call is dropped), `onEnd` runs once, after the last `onData`. Bytes and an end
    /// that came before `start` are delivered at once.
    public func start(onData: @escaping (EventBuffer) -> Void, onEnd: @escaping (End) -> Void) {
        self.onData = onData
        self.onEnd = onEnd
        deliver()
        if let ending { finish(ending) }
    }

    /// Stops reading the backend until `resume()`.
    public func pause() {
        guard !isPaused, ending == nil else { return }
        isPaused = true
        connection?.streamPausedChanged(self)
    }

    public func resume() {
        guard isPaused, ending == nil else { return }
        isPaused = false
        connection?.streamPausedChanged(self)
    }

    /// Ends the stream now and closes the backend connection (cut, `client_closed`).
    public func cancel() {
        guard ending == nil else { return }
        if let connection {
            connection.streamCancelled(self)
        } else {
            end(.cut(.clientClosed))
        }
    }

    func deliver() {
        guard let onData, !pending.isEmpty else { return }
        onData(pending)
        pending.removeAll()
    }

    func end(_ end: End) {
        guard ending == nil else { return }
        ending = end
        connection = nil
        if onEnd != nil { finish(end) }
    }

    private func finish(_ end: End) {
        deliver()
        let onEnd = self.onEnd
        self.onEnd = nil
        onData = nil
        onEnd?(end)
    }
}

enum UpstreamCallbacks {
    static let io: event_callback_fn = { _, what, arg in
        let connection = Unmanaged<UpstreamConnection>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(connection) {
            if what & Int16(EV_READ) != 0 { connection.readable() }
            if what & Int16(EV_WRITE) != 0 { connection.writable() }
        }
    }
}
