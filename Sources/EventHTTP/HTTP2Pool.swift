internal import CLibevent
import HTTP1

// Remote gRPC backends (SPEC §13 "Backends", §4): `grpc://` (h2c with prior knowledge) and
// `grpcs://` (TLS, ALPN h2). One `HTTP2Pool` per backend and worker loop holds a few HTTP/2
// connections and multiplexes many unary calls over each: one connection while it has room, a
// further one only when every open connection carries as many streams as its server allows
// (SETTINGS_MAX_CONCURRENT_STREAMS), at most `maxConnections`. Calls beyond that wait in a
// bounded queue. Failures are the `UpstreamError` kinds the HTTP/1.1 pool reports, so fallback
// and guards treat both alike.

/// One unary gRPC call for a backend.
public struct GRPCRequest {
    /// `/package.Service/Method`.
    public var path: String
    /// Custom metadata (and `content-type` when it names a gRPC subtype, `application/grpc+proto`).
    /// The pool writes the pseudo-fields, `te: trailers`, `grpc-timeout` and `content-type`
    /// itself; hop-by-hop fields, `host`, `content-length`, `grpc-timeout` and fields whose value
    /// holds CR, LF or NUL are dropped. Names go out lowercased.
    public var metadata: HTTPHeaders
    /// The request body: one length-prefixed gRPC message (`GRPCFraming.appendMessage`). Sent as
    /// it is and left intact (the same buffer may go to a shadow, or be retried).
    public var body: EventBuffer

    public init(path: String, metadata: HTTPHeaders = HTTPHeaders(), body: EventBuffer) {
        self.path = path
        self.metadata = metadata
        self.body = body
    }
}

/// A backend's whole answer to a unary call.
public struct GRPCResponse {
    /// The HTTP `:status` (200 for every real gRPC answer).
    public var httpStatus: Int
    /// The response's initial metadata, pseudo-fields left out; empty for a trailers-only answer.
    public var headers: HTTPHeaders
    /// The response body as it came: length-prefixed gRPC messages (checked to be whole).
    public var body: EventBuffer
    /// The fields that ended the stream: the trailers, or for a trailers-only answer (an error
    /// status without a message) every field of its one HEADERS frame.
    public var trailers: HTTPHeaders
    /// The answer was a single HEADERS frame carrying the status.
    public var isTrailersOnly: Bool
    /// `grpc-status`; for a non-200 answer without one, what gRPC infers from the HTTP status
    /// (`GRPCStatus.fromHTTPStatus`). A code outside gRPC's list is `.unknown`, as gRPC says.
    public var status: GRPCStatus
    /// `grpc-message`, percent-decoded; nil when absent or empty.
    public var message: String?
    /// From the request's HEADERS handed to nghttp2 to the response's first HEADERS (nanoseconds).
    public var firstByteNanoseconds: UInt64

    public init(
        httpStatus: Int,
        headers: HTTPHeaders,
        body: EventBuffer,
        trailers: HTTPHeaders,
        isTrailersOnly: Bool,
        status: GRPCStatus,
        message: String?,
        firstByteNanoseconds: UInt64 = 0
    ) {
        self.httpStatus = httpStatus
        self.headers = headers
        self.body = body
        self.trailers = trailers
        self.isTrailersOnly = isTrailersOnly
        self.status = status
        self.message = message
        self.firstByteNanoseconds = firstByteNanoseconds
    }
}

/// Pooled, multiplexed HTTP/2 connections to one gRPC backend, owned by one `EventLoop`. Loop
/// thread only.
public final class HTTP2Pool {
    public let loop: EventLoop
    public let host: String
    public let port: Int
    /// At most this many connections carry new streams at once (the version's `max_connections`).
    /// A connection the server sent GOAWAY on is not counted: it only finishes its streams.
    public let maxConnections: Int
    /// Calls that may wait for room on a connection; beyond, `.overloaded`.
    public let maxQueued: Int
    /// The largest response body (all DATA of one call); beyond, `.badResponse`.
    public let maxResponseBytes: Int
    /// The largest response header list (and each trailer list), as SETTINGS_MAX_HEADER_LIST_SIZE
    /// advertises it; beyond, `.badResponse`.
    public let maxHeaderListBytes: Int
    /// A connection without streams for this long is closed (GOAWAY, then close).
    public let idleTimeoutMilliseconds: Int
    /// Set for `grpcs://`: every connection speaks TLS with this context, which must offer ALPN
    /// `h2` (`TLSClientContext(options:alpnProtocols: ["h2"])`); a server that does not choose
    /// `h2` is a TLS failure.
    public let tls: TLSClientContext?

    /// Connections that take new streams: connecting, handshaking or ready.
    public var openConnections: Int { connections.count }
    /// Connections opened since the pool was made.
    public private(set) var connectionsOpened = 0
    /// Calls waiting for room on a connection.
    public var queuedRequests: Int { waiting.count }
    /// Streams open on every connection (those draining after GOAWAY included).
    public var activeStreams: Int { (connections + retiring).reduce(0) { $0 + $1.load } }

    /// `host:port`, as errors name the backend.
    let endpoint: String
    /// `:authority`.
    let authority: String
    let scheme: String

    /// Where connections go; a host name is looked up again now and then.
    private let address: BackendAddress

    private var connections: [HTTP2ClientConnection] = []
    /// Connections that got GOAWAY: their streams finish, nothing new starts on them.
    private var retiring: [HTTP2ClientConnection] = []
    private var waiting: [HTTP2Call] = []
    /// `close()` was called: connections close as soon as their streams are done.
    private(set) var isClosed = false
    private var isDispatching = false

    /// `host` is an IP literal or `localhost`; another name is looked up here (blocking: make
    /// pools at startup or reload), then again in the background every 30 s, every second while
    /// it does not resolve (as `UpstreamPool` does).
    public init(
        loop: EventLoop,
        host: String,
        port: Int,
        maxConnections: Int = 64,
        maxQueued: Int = 1024,
        maxResponseBytes: Int = 8 << 20,
        maxHeaderListBytes: Int = 32 << 10,
        idleTimeoutMilliseconds: Int = 60_000,
        tls: TLSClientContext? = nil
    ) {
        precondition(maxConnections > 0, "HTTP2Pool needs maxConnections of at least 1, got \(maxConnections).")
        self.loop = loop
        self.host = host
        self.port = port
        self.maxConnections = maxConnections
        self.maxQueued = max(0, maxQueued)
        self.maxResponseBytes = maxResponseBytes
        self.maxHeaderListBytes = maxHeaderListBytes
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        self.tls = tls
        self.scheme = tls == nil ? "http" : "https"
        self.endpoint = "\(host):\(port)"
        self.authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        self.address = BackendAddress(host: host, port: port)
    }

    deinit {
        // Calls in flight keep the pool alive: only connections without streams are left here.
        for connection in connections + retiring { connection.close(error: .closed) }
    }

    /// Starts a unary call and calls `completion` exactly once, on the loop thread, never inside
    /// `call`. `timeoutMilliseconds` covers the whole exchange: the queue, connecting, the TLS
    /// handshake, sending and the whole response. When it passes on a stream, the stream is reset
    /// (RST_STREAM CANCEL) and the connection goes on serving the others. The request carries
    /// `grpc-timeout` set to what remains of it when its stream starts.
    public func call(
        _ request: GRPCRequest,
        timeoutMilliseconds: Int,
        completion: @escaping (Result<GRPCResponse, UpstreamError>) -> Void
    ) {
        loop.assertInLoop()
        let now = System.monotonicMilliseconds()
        let call = HTTP2Call(
            pool: self,
            request: request,
            deadline: now + Int64(max(0, timeoutMilliseconds)),
            completion: completion
        )
        if isClosed {
            finishSoon(call, .failure(.closed))
            return
        }
        address.refresh(loop: loop, now: now)
        if let failure = address.failure {
            finishSoon(call, .failure(.connectFailed(failure)))
            return
        }
        call.timer = loop.scheduleTimer(afterMilliseconds: max(0, timeoutMilliseconds)) { [weak call] in
            call?.timedOut()
        }
        waiting.append(call)
        dispatch()
        if call.isQueued && waiting.count > maxQueued {
            waiting.removeAll { $0 === call }
            finishSoon(call, .failure(.overloaded))
        }
    }

    /// Whether a call would start on a stream at once (a shadow copy is dropped rather than
    /// queued behind a backend that cannot keep up).
    public var hasFreeStream: Bool {
        connections.contains { $0.hasRoom } || connections.count < maxConnections
    }

    /// Fails queued calls with `.closed` and closes connections without streams; calls in flight
    /// finish, then their connections close. Later calls fail with `.closed`.
    public func close() {
        isClosed = true
        let queued = waiting
        waiting = []
        for call in queued { call.finish(.failure(.closed)) }
        for connection in connections + retiring where connection.load == 0 { connection.close(error: .closed) }
    }

    // MARK: Internals (loop thread)

    private func finishSoon(_ call: HTTP2Call, _ result: Result<GRPCResponse, UpstreamError>) {
        call.isQueued = false
        loop.runSoon { call.finish(result) }
    }

    /// Starts waiting calls on connections with room (the oldest first, so load stays on few
    /// connections), opening a connection when none has room and the cap allows.
    func dispatch() {
        guard !isDispatching else { return }
        isDispatching = true
        defer { isDispatching = false }
        while !waiting.isEmpty && !isClosed {
            var target = connections.first { $0.hasRoom }
            if target == nil && connections.count < maxConnections {
                target = openConnection()
                if target == nil { return }  // failed at once: the waiting calls have been failed
            }
            guard let connection = target else { return }
            let call = waiting.removeFirst()
            call.isQueued = false
            connection.start(call)
        }
    }

    private func openConnection() -> HTTP2ClientConnection? {
        connectionsOpened += 1
        let connection = HTTP2ClientConnection(pool: self)
        let failure = address.withSockaddr { sa, length in connection.connect(address: sa, length: length) }
        if let failure {
            failWaiting(.connectFailed(failure))
            return nil
        }
        connections.append(connection)
        return connection
    }

    /// The backend cannot be reached: every queued call fails like the connection did (each
    /// would only try the same address again).
    private func failWaiting(_ error: UpstreamError) {
        let queued = waiting
        waiting = []
        for call in queued { finishSoon(call, .failure(error)) }
    }

    /// Puts calls the server refused before processing them (GOAWAY, REFUSED_STREAM) back at the
    /// front of the queue, to go out on another connection.
    func retry(_ calls: [HTTP2Call]) {
        guard !calls.isEmpty else { return }
        for call in calls { call.isQueued = true }
        waiting.insert(contentsOf: calls, at: 0)
        if isClosed {
            let queued = waiting
            waiting = []
            for call in queued { call.finish(.failure(.closed)) }
            return
        }
        dispatch()
    }

    /// A queued call's deadline passed.
    func removeQueued(_ call: HTTP2Call) {
        waiting.removeAll { $0 === call }
    }

    /// The connection could not be made (connect, TLS): its calls have failed with `error`; the
    /// queue fails with it.
    func connectionFailedToConnect(_ connection: HTTP2ClientConnection, error: UpstreamError) {
        failWaiting(error)
    }

    /// Streams ended or the server raised its limit: room for queued calls.
    func roomChanged() {
        if !waiting.isEmpty { dispatch() }
    }

    /// The server sent GOAWAY: no new streams on `connection`.
    func connectionRetiring(_ connection: HTTP2ClientConnection) {
        guard let index = connections.firstIndex(where: { $0 === connection }) else { return }
        connections.remove(at: index)
        retiring.append(connection)
        if !waiting.isEmpty { dispatch() }
    }

    /// Every connection calls this once, from `close`.
    func connectionClosed(_ connection: HTTP2ClientConnection) {
        connections.removeAll { $0 === connection }
        retiring.removeAll { $0 === connection }
        if !waiting.isEmpty { dispatch() }
    }
}

/// One `HTTP2Pool.call`: the request, its completion, its deadline and where it is now.
final class HTTP2Call {
    /// Strong: a pool with calls in flight stays alive until they finish.
    let pool: HTTP2Pool
    let request: GRPCRequest
    /// Monotonic milliseconds.
    let deadline: Int64
    var completion: ((Result<GRPCResponse, UpstreamError>) -> Void)?
    var timer: LoopTimer?
    /// In the pool's queue.
    var isQueued = true
    /// The connection it was given to (connecting, or carrying its stream).
    weak var connection: HTTP2ClientConnection?
    /// Times the server refused it unprocessed and it went back to the queue.
    var retries = 0

    init(
        pool: HTTP2Pool,
        request: GRPCRequest,
        deadline: Int64,
        completion: @escaping (Result<GRPCResponse, UpstreamError>) -> Void
    ) {
        self.pool = pool
        self.request = request
        self.deadline = deadline
        self.completion = completion
    }

    var isFinished: Bool { completion == nil }

    /// Calls the completion if it has not been called yet.
    func finish(_ result: Result<GRPCResponse, UpstreamError>) {
        guard let completion else { return }
        self.completion = nil
        timer?.cancel()
        timer = nil
        connection = nil
        completion(result)
    }

    /// The whole-exchange deadline passed: leave the queue, or cancel the stream.
    func timedOut() {
        guard !isFinished else { return }
        if isQueued {
            pool.removeQueued(self)
            isQueued = false
        } else if let connection {
            connection.cancel(self)
        }
        finish(.failure(.timeout))
    }
}
