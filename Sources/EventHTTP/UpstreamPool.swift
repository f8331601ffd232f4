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
    public var body: ByteBuffer

    public init(method: String, target: String, headers: HTTPHeaders = HTTPHeaders(), body: ByteBuffer = ByteBuffer()) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }
}

/// A whole backend response (1xx interim responses skipped).
public struct UpstreamResponse {
    public var head: ResponseHead
    /// The de-chunked payload.
    public var body: ByteBuffer
    /// The body had no length and ran until the backend closed the connection.
    public var wasReadUntilClose: Bool

    public init(head: ResponseHead, body: ByteBuffer, wasReadUntilClose: Bool) {
        self.head = head
        self.body = body
        self.wasReadUntilClose = wasReadUntilClose
    }
}

/// Why an upstream exchange failed.
public enum UpstreamError: Error, Sendable, Hashable {
    /// The TCP connection could not be made (refused, unreachable, unresolvable name).
    case connectFailed(String)
    /// The whole exchange (queueing and connect included) took longer than its timeout.
    case timeout
    /// Malformed, cut short, or over the response size limit.
    case badResponse(String)
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
    public let host: String
    public let port: Int
    public let maxConnections: Int
    public let maxQueued: Int
    /// `maxBodyBytes` bounds response bodies; headers are bounded like requests.
    public let limits: HTTPLimits

    /// Open connections: connecting, in flight or idle.
    public private(set) var openConnections = 0
    /// TCP connections opened since the pool was created.
    public private(set) var connectionsOpened = 0
    /// Idle keep-alive connections.
    public var idleConnections: Int { idle.count }
    /// Requests waiting for a connection.
    public var queuedRequests: Int { waiting.count }

    private var address = sockaddr_storage()
    private var addressLength: Int32 = 0
    private var resolutionFailure: String?
    let hostHeader: String
    private var idle: [UpstreamConnection] = []
    private var waiting: [Exchange] = []
    private var isClosed = false

    /// `host` is an IPv4 or IPv6 literal or `localhost` (127.0.0.1); any other name is resolved
    /// here, once and synchronously (getaddrinfo blocks the loop: create pools at startup or on
    /// reload). An unresolvable name makes every `send` fail with `.connectFailed`.
    /// `limits.maxBodyBytes` defaults to 8 MiB (SPEC §8: backend response).
    public init(
        loop: EventLoop, host: String, port: Int, maxConnections: Int = 64, maxQueued: Int = 1024,
        limits: HTTPLimits = HTTPLimits(maxBodyBytes: 8 << 20)
    ) {
        precondition(maxConnections > 0, "UpstreamPool needs maxConnections of at least 1, got \(maxConnections).")
        self.loop = loop
        self.host = host
        self.port = port
        self.maxConnections = maxConnections
        self.maxQueued = max(0, maxQueued)
        self.limits = limits
        self.hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let literal = host == "localhost" ? "127.0.0.1" : host
        addressLength = switchyard_make_sockaddr(literal, Int32(port), &address)
        if addressLength == 0 {
            addressLength = switchyard_resolve(host, Int32(port), &address)
        }
        if addressLength == 0 {
            resolutionFailure = "cannot resolve backend host \"\(host)\""
        }
    }

    deinit {
        // In-flight exchanges keep the pool alive, so only idle connections are left here.
        for connection in idle { connection.close() }
    }

    /// Sends `request` and calls `completion` exactly once, on the loop thread, never inside
    /// `send`. `timeoutMilliseconds` covers the whole exchange: waiting for a connection,
    /// connecting, writing and reading. A reused keep-alive connection that fails before any
    /// response byte is retried once on a new connection.
    public func send(
        _ request: UpstreamRequest, timeoutMilliseconds: Int,
        completion: @escaping (Result<UpstreamResponse, UpstreamError>) -> Void
    ) {
        let exchange = Exchange(pool: self, request: request, completion: completion)
        if isClosed {
            finishSoon(exchange, .failure(.closed))
            return
        }
        if let resolutionFailure {
            finishSoon(exchange, .failure(.connectFailed(resolutionFailure)))
            return
        }
        exchange.timer = loop.scheduleTimer(afterMilliseconds: timeoutMilliseconds) {
            exchange.pool.timedOut(exchange)
        }
        if let connection = idle.popLast() {
            connection.start(exchange, isReused: true)
        } else if openConnections < maxConnections {
            openConnection(for: exchange)
        } else if waiting.count < maxQueued {
            waiting.append(exchange)
        } else {
            exchange.timer?.cancel()
            finishSoon(exchange, .failure(.overloaded))
        }
    }

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

    private func finishSoon(_ exchange: Exchange, _ result: Result<UpstreamResponse, UpstreamError>) {
        loop.runSoon { exchange.finish(result) }
    }

    private func openConnection(for exchange: Exchange) {
        openConnections += 1
        connectionsOpened += 1
        let connection = UpstreamConnection(pool: self)
        let failure = withUnsafePointer(to: &address) { storage in
            storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                connection.connect(base: loop.base, address: sa, length: addressLength)
            }
        }
        if let failure {
            connection.close()
            exchange.timer?.cancel()
            finishSoon(exchange, .failure(.connectFailed(failure)))
            return
        }
        connection.start(exchange, isReused: false)
    }

    private func timedOut(_ exchange: Exchange) {
        if let index = waiting.firstIndex(where: { $0 === exchange }) {
            waiting.remove(at: index)
        } else if let connection = exchange.connection {
            // The backend may still answer this one: never reuse the connection.
            connection.abandon()
        }
        exchange.finish(.failure(.timeout))
    }

    /// A response arrived whole.
    func connection(
        _ connection: UpstreamConnection, finished exchange: Exchange, with response: UpstreamResponse, reusable: Bool
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

    /// The connection failed during `exchange` (it has been closed already).
    func connection(failed exchange: Exchange, with error: UpstreamError, isRetryable: Bool) {
        guard isRetryable, !exchange.hasRetried, !isClosed, exchange.completion != nil else {
            exchange.finish(.failure(error))
            return
        }
        exchange.hasRetried = true
        if openConnections < maxConnections {
            openConnection(for: exchange)
        } else {
            waiting.insert(exchange, at: 0)
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

/// One `send`: its completion, its deadline, and the connection serving it.
final class Exchange {
    /// Strong: a pool with exchanges in flight stays alive until they finish.
    let pool: UpstreamPool
    let request: UpstreamRequest
    var completion: ((Result<UpstreamResponse, UpstreamError>) -> Void)?
    var timer: LoopTimer?
    weak var connection: UpstreamConnection?
    var hasRetried = false

    init(
        pool: UpstreamPool, request: UpstreamRequest,
        completion: @escaping (Result<UpstreamResponse, UpstreamError>) -> Void
    ) {
        self.pool = pool
        self.request = request
        self.completion = completion
    }

    /// Calls the completion if it has not been called yet.
    func finish(_ result: Result<UpstreamResponse, UpstreamError>) {
        timer?.cancel()
        timer = nil
        connection = nil
        guard let completion else { return }
        self.completion = nil
        completion(result)
    }
}

/// One TCP connection to a backend, on a bufferevent. Retained for libevent from `connect` until
/// `close()`, which frees the bufferevent exactly once.
final class UpstreamConnection {
    private enum State {
        case busy, idle, closed
    }

    private weak var pool: UpstreamPool?
    private let limits: HTTPLimits
    private let hostHeader: String
    private let endpoint: String
    private var bev: OpaquePointer?
    private var state = State.busy
    private var selfRetain: Unmanaged<UpstreamConnection>?
    private var isConnected = false

    // The exchange in progress.
    private var exchange: Exchange?
    private var isReused = false
    private var hasResponseBytes = false
    private var head: ResponseHead?
    private var body = ByteBuffer()
    private var bodyRemaining = 0
    private var chunkedDecoder: ChunkedDecoder?
    private var readsUntilClose = false
    private var scannedHeadBytes = 0

    init(pool: UpstreamPool) {
        self.pool = pool
        self.limits = pool.limits
        self.hostHeader = pool.hostHeader
        self.endpoint = "\(pool.host):\(pool.port)"
    }

    /// Starts a non-blocking connect; returns why it failed at once, or nil.
    func connect(base: OpaquePointer, address: UnsafePointer<sockaddr>, length: Int32) -> String? {
        guard let bev = bufferevent_socket_new(base, -1, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue)) else {
            return "cannot create a socket for \(endpoint): \(System.lastErrorText())"
        }
        self.bev = bev
        selfRetain = Unmanaged.passRetained(self)
        bufferevent_setcb(
            bev, UpstreamCallbacks.read, nil, UpstreamCallbacks.event, Unmanaged.passUnretained(self).toOpaque())
        bufferevent_enable(bev, Int16(EV_READ | EV_WRITE))
        if bufferevent_socket_connect(bev, UnsafeMutablePointer(mutating: address), length) != 0 {
            return "connect to \(endpoint) failed: \(System.lastErrorText())"
        }
        return nil
    }

    /// Writes `exchange`'s request and waits for its response.
    func start(_ exchange: Exchange, isReused: Bool) {
        guard let bev, let output = bufferevent_get_output(bev) else { return }
        state = .busy
        self.exchange = exchange
        exchange.connection = self
        self.isReused = isReused
        hasResponseBytes = false
        head = nil
        body = ByteBuffer()
        bodyRemaining = 0
        chunkedDecoder = nil
        readsUntilClose = false
        scannedHeadBytes = 0

        let request = exchange.request
        var headers = HopByHop.removing(from: request.headers)
        headers.remove(name: "host")
        headers.remove(name: "content-length")
        var fields = HTTPHeaders([("host", hostHeader)])
        for field in headers { fields.add(name: field.name, value: field.value) }
        let bodyLength = request.body.count
        let sendsLength = bodyLength > 0 || ["POST", "PUT", "PATCH"].contains(request.method)
        let headBytes = HTTPSerializer.requestHead(
            method: request.method, target: request.target, headers: fields,
            contentLength: sendsLength ? bodyLength : nil)
        headBytes.withUnsafeBytes { raw in _ = evbuffer_add(output, raw.baseAddress, raw.count) }
        ByteBuffer.addCopy(of: request.body.evbuffer, to: output)
    }

    func becomeIdle() {
        state = .idle
        exchange = nil
        body = ByteBuffer()
    }

    /// The exchange timed out: close without completing it (the pool does).
    func abandon() {
        exchange = nil
        close()
    }

    /// Frees the bufferevent and tells the pool. Idempotent.
    func close() {
        guard state != .closed else { return }
        state = .closed
        if let bev { bufferevent_free(bev) }
        bev = nil
        exchange?.connection = nil
        pool?.connectionClosed(self)
        let retained = selfRetain
        selfRetain = nil
        retained?.release()
    }

    // MARK: Events

    fileprivate func readable() {
        guard let bev else { return }
        switch state {
        case .idle:
            close()  // bytes nobody asked for: the connection is out of step
            return
        case .closed:
            return
        case .busy:
            break
        }
        let input = bufferevent_get_input(bev)
        if evbuffer_get_length(input) > 0 { hasResponseBytes = true }
        while state == .busy, exchange != nil {
            let progressed = head == nil ? readHead(input) : readBody(input)
            if !progressed { return }
        }
    }

    fileprivate func event(_ events: Int16) {
        if events & Int16(BEV_EVENT_CONNECTED) != 0 {
            isConnected = true
            if let bev { _ = switchyard_set_nodelay(bufferevent_getfd(bev)) }
            return
        }
        guard events & Int16(BEV_EVENT_EOF | BEV_EVENT_ERROR) != 0 else { return }
        let errorText = events & Int16(BEV_EVENT_ERROR) != 0 ? System.lastErrorText() : nil
        if state == .busy { readable() }  // what arrived with the EOF
        guard state == .busy, let exchange else {
            close()
            return
        }
        if readsUntilClose, errorText == nil {
            complete(reusable: false)
            return
        }
        let error: UpstreamError
        var isRetryable = false
        if !isConnected {
            error = .connectFailed("connect to \(endpoint) failed: \(errorText ?? "connection closed")")
        } else if !hasResponseBytes {
            isRetryable = isReused  // a stale keep-alive connection: the backend never saw the request
            error = .badResponse(
                "upstream closed the connection without responding" + (errorText.map { " (\($0))" } ?? ""))
        } else {
            error = .badResponse("upstream closed the connection mid-response" + (errorText.map { " (\($0))" } ?? ""))
        }
        fail(exchange, error, isRetryable: isRetryable)
    }

    // MARK: Reading the response

    private func readHead(_ input: OpaquePointer?) -> Bool {
        guard let exchange else { return false }
        let available = evbuffer_get_length(input)
        guard available > 0 else { return false }
        let window = min(available, limits.maxHeaderBytes + 1)
        guard let start = evbuffer_pullup(input, window) else { return false }
        let bytes = UnsafeRawBufferPointer(start: start, count: window)
        if window <= limits.maxHeaderBytes && scannedHeadBytes < window
            && !bytes[scannedHeadBytes..<window].contains(0x0A)
        {
            scannedHeadBytes = window
            return false
        }
        switch ResponseHeadParser.parse(bytes, limits: limits, requestMethod: exchange.request.method) {
        case .incomplete:
            scannedHeadBytes = window
            return false
        case .failure(let error):
            fail(exchange, .badResponse(error.detail), isRetryable: false)
            return false
        case .complete(let head, let consumed):
            evbuffer_drain(input, consumed)
            scannedHeadBytes = 0
            if (100..<200).contains(head.status) {
                if head.status == 101 {
                    fail(exchange, .badResponse("upstream switched protocols (101)"), isRetryable: false)
                    return false
                }
                return true  // interim response: the real one follows
            }
            self.head = head
            switch head.framing {
            case .none:
                complete(reusable: head.keepAlive)
                return false
            case .contentLength(let length):
                guard length <= limits.maxBodyBytes else {
                    fail(exchange, .badResponse(overLimit), isRetryable: false)
                    return false
                }
                bodyRemaining = length
            case .chunked:
                chunkedDecoder = ChunkedDecoder(maxBodyBytes: limits.maxBodyBytes)
            case .untilClose:
                readsUntilClose = true
            }
            return true
        }
    }

    private var overLimit: String { "upstream response body exceeds the limit of \(limits.maxBodyBytes) bytes" }

    private func readBody(_ input: OpaquePointer?) -> Bool {
        guard let exchange, let head else { return false }
        let available = evbuffer_get_length(input)
        if readsUntilClose {
            if available > 0 { evbuffer_remove_buffer(input, body.evbuffer, available) }
            if body.count > limits.maxBodyBytes { fail(exchange, .badResponse(overLimit), isRetryable: false) }
            return false
        }
        if var decoder = chunkedDecoder {
            guard available > 0, let start = evbuffer_pullup(input, -1) else { return false }
            let result = decoder.decode(UnsafeRawBufferPointer(start: start, count: available))
            chunkedDecoder = decoder
            switch result {
            case .failure(let error):
                let detail = error.status == 413 ? overLimit : "upstream chunked body: \(error.detail)"
                fail(exchange, .badResponse(detail), isRetryable: false)
                return false
            case .success(let progress):
                var position = 0
                for range in progress.data {
                    evbuffer_drain(input, range.lowerBound - position)
                    evbuffer_remove_buffer(input, body.evbuffer, range.count)
                    position = range.upperBound
                }
                evbuffer_drain(input, progress.consumed - position)
                if progress.isComplete { complete(reusable: head.keepAlive) }
                return false
            }
        }
        let length = min(available, bodyRemaining)
        if length > 0 {
            evbuffer_remove_buffer(input, body.evbuffer, length)
            bodyRemaining -= length
        }
        if bodyRemaining == 0 { complete(reusable: head.keepAlive) }
        return false
    }

    private func complete(reusable: Bool) {
        guard let exchange, let head, let bev else { return }
        // Bytes after the response, or request bytes still unsent (an early answer), mean the
        // connection is out of step: do not reuse it.
        let isClean =
            evbuffer_get_length(bufferevent_get_input(bev)) == 0
            && evbuffer_get_length(bufferevent_get_output(bev)) == 0
        let response = UpstreamResponse(head: head, body: body, wasReadUntilClose: readsUntilClose)
        self.exchange = nil
        self.head = nil
        exchange.connection = nil
        let pool = exchange.pool
        pool.connection(self, finished: exchange, with: response, reusable: reusable && isClean && !readsUntilClose)
    }

    private func fail(_ exchange: Exchange, _ error: UpstreamError, isRetryable: Bool) {
        self.exchange = nil
        exchange.connection = nil
        close()
        exchange.pool.connection(failed: exchange, with: error, isRetryable: isRetryable)
    }
}

enum UpstreamCallbacks {
    static let read: bufferevent_data_cb = { _, arg in
        let connection = Unmanaged<UpstreamConnection>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(connection) { connection.readable() }
    }
    static let event: bufferevent_event_cb = { _, events, arg in
        let connection = Unmanaged<UpstreamConnection>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(connection) { connection.event(events) }
    }
}
