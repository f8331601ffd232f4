internal import CLibevent
import HTTP1

/// How an `HTTPServer` bounds each connection. The defaults are SPEC §8's and are documented only here.
public struct ServerOptions: Sendable {
    /// Header bytes (default 32 KiB, else 431), header fields (default 100, else 431) and body
    /// bytes (default 1 MiB, else 413) per request.
    public var limits: HTTPLimits
    /// From a request's first byte to the end of its head. Default 5000 ms. Missed: 408 `request_timeout`.
    public var headerTimeoutMilliseconds: Int
    /// From the end of a request's head to the end of its body. Default 10000 ms. Missed: 408 `request_timeout`.
    public var bodyTimeoutMilliseconds: Int
    /// Before a connection's first request and between keep-alive requests. Default 10000 ms.
    /// Missed: the connection closes silently.
    public var idleTimeoutMilliseconds: Int
    /// Response bytes waiting to be sent on one connection above which pipelined requests are not
    /// parsed until the client reads. Default 1 MiB.
    public var maxBufferedOutputBytes: Int
    /// After a connection-closing response, how long the server keeps reading (and discarding)
    /// what the client still sends, so the response is not lost to a TCP reset. Default 2000 ms.
    public var lingerMilliseconds: Int
    /// While response bytes wait for the client, the longest time without any of them being
    /// taken before the connection is closed (a reader that stopped reading). Default 30000 ms.
    public var sendTimeoutMilliseconds: Int
    /// Descriptors the server leaves to the rest of the process (upstream connections, another
    /// listener, file reads). A connection accepted into the last `reservedDescriptors` below
    /// the soft `RLIMIT_NOFILE` (read when the server starts) is an accept failure,
    /// `.descriptorReserve`. Default 0: accept until the kernel refuses (EMFILE).
    public var reservedDescriptors: Int
    /// HTTP/2: the largest gRPC message a request may carry (SPEC §13, default 4 MiB,
    /// `--max-grpc-message-bytes`); beyond it the stream is answered RESOURCE_EXHAUSTED.
    /// Non-gRPC HTTP/2 bodies are bounded by `limits.maxBodyBytes` as on HTTP/1.1.
    public var maxGRPCMessageBytes: Int
    /// HTTP/2: SETTINGS_MAX_CONCURRENT_STREAMS; a stream beyond it is refused (RST_STREAM
    /// REFUSED_STREAM). Default 128.
    public var http2MaxConcurrentStreams: Int

    public init(
        limits: HTTPLimits = HTTPLimits(),
        headerTimeoutMilliseconds: Int = 5000,
        bodyTimeoutMilliseconds: Int = 10000,
        idleTimeoutMilliseconds: Int = 10000,
        maxBufferedOutputBytes: Int = 1 << 20,
        lingerMilliseconds: Int = 2000,
        sendTimeoutMilliseconds: Int = 30_000,
        reservedDescriptors: Int = 0,
        maxGRPCMessageBytes: Int = GRPCFraming.defaultMaxMessageBytes,
        http2MaxConcurrentStreams: Int = 128
    ) {
        self.limits = limits
        self.headerTimeoutMilliseconds = headerTimeoutMilliseconds
        self.bodyTimeoutMilliseconds = bodyTimeoutMilliseconds
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        self.maxBufferedOutputBytes = maxBufferedOutputBytes
        self.lingerMilliseconds = lingerMilliseconds
        self.sendTimeoutMilliseconds = sendTimeoutMilliseconds
        self.reservedDescriptors = reservedDescriptors
        self.maxGRPCMessageBytes = maxGRPCMessageBytes
        self.http2MaxConcurrentStreams = http2MaxConcurrentStreams
    }
}

/// A whole request: head and de-chunked body.
/// A request the server refused itself (`HTTPServer.onRefused`).
public struct RefusedRequest {
    public var status: Int
    /// The error code answered (`bad_request`, `body_too_large`, `request_timeout`, ...).
    public var code: String
    public var requestID: String
    /// The request's head, when it was read whole.
    public var head: RequestHead?
    /// The error body's size.
    public var bodyBytes: Int
}

public struct ServerRequest {
    public var head: RequestHead
    /// The payload (after de-chunking), moved out of the connection's input.
    public var body: EventBuffer
    /// The client's IP address as text, e.g. `127.0.0.1` or `::1`; `127.0.0.1` for a client on a
    /// Unix socket (it is on this host, and what is passed on, as in `x-forwarded-for`, stays an
    /// IP address that consumers can parse).
    public var peerAddress: String
    /// The client connected from a loopback address or over a Unix socket.
    public var isPeerLoopback: Bool

    public init(head: RequestHead, body: EventBuffer, peerAddress: String, isPeerLoopback: Bool) {
        self.head = head
        self.body = body
        self.peerAddress = peerAddress
        self.isPeerLoopback = isPeerLoopback
    }

    /// The request came on an HTTP/2 stream (`head.version` is 2.0): its response may carry
    /// trailers, as gRPC's do.
    public var isHTTP2: Bool { head.version.major == 2 }
}

/// Answers one request, now or later, on the loop thread.
/// Byte buffers a handler keeps per connection (loop thread only). Arrays, so that a buffer
/// still held elsewhere (an HTTP/2 connection's streams overlap) is copied on write rather than
/// overwritten.
public final class ConnectionScratch {
    // Checked: leaving these and `UpstreamConnection.fieldStorage` unchecked saved 110
    // instructions a request, 0.34 % (bench/instructions.sh "": 32,326 checked, 32,216 not).
    /// The upstream request's field lines.
    public var upstreamFieldLines: [UInt8] = []
    /// The client response's field lines.
    public var responseFieldLines: [UInt8] = []

    init() {
        upstreamFieldLines.reserveCapacity(512)
        responseFieldLines.reserveCapacity(512)
    }
}

public final class ResponseWriter {
    // Strong: a connection is closed (socket and events freed) by `close()`, never by its release,
    // and a closed connection answers `isAwaitingResponse` with false, so a writer kept after the
    // close sees what a weak reference would; the strong one costs no weak load per request.
    // The connection's buffers are freed once its last writer goes.
    private let connection: ServerConnection
    /// The HTTP/2 stream this writer answers; nil for HTTP/1.x. HTTP/1.1 pays one nil check per
    /// call for it (no protocol witness, no enum switch), so its path stays as it was.
    let http2Stream: HTTP2Stream?
    // Reset when the connection reuses this writer for its next request (only once nothing else holds it).
    private var sequence: Int
    // Unchecked: checking it costs +198 instructions/request, 2 checks (bench/instructions.sh "", 33,815 -> 34,013).
    /// `respond` has been called.
    @exclusivity(unchecked) public private(set) var hasResponded = false

    init(connection: ServerConnection, sequence: Int) {
        self.connection = connection
        self.sequence = sequence
        self.http2Stream = nil
    }

    /// A writer for one HTTP/2 stream of `connection`.
    init(connection: ServerConnection, stream: HTTP2Stream) {
        self.connection = connection
        self.sequence = 0
        self.http2Stream = stream
    }

    /// Makes an unshared writer answer the connection's next request.
    fileprivate func reuse(sequence: Int) {
        self.sequence = sequence
        hasResponded = false
        onDrained = nil
        onClientGone = nil
    }

    /// The client is still connected and waiting for this response.
    public var isConnectionAlive: Bool {
        if let http2Stream { return http2Stream.isAwaitingResponse }
        return connection.isAwaitingResponse(sequence: sequence)
    }

    /// Sends the response. The server writes `content-length` and, when the connection will close,
    /// `connection: close`; any `content-length`, `transfer-encoding` or `connection` field in
    /// `headers` is replaced. `body` is left intact. A no-op if the client went away.
    ///
    /// `fieldLines` are more fields, already written as `name: value\r\n` lines, sent after
    /// `headers` as they are: the caller has checked them and left out `content-length`,
    /// `transfer-encoding` and `connection`. HTTP/1.x only (`isHTTP2` false).
    public func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), fieldLines: [UInt8] = [], body: EventBuffer)
    {
        connection.loop.assertInLoop()
        precondition(
            !hasResponded,
            "ResponseWriter.respond was called twice for one request; each request gets exactly one response."
        )
        precondition(
            (200...999).contains(status),
            "ResponseWriter.respond needs a final status (200...999), got \(status); "
                + "interim responses are the server's job."
        )
        hasResponded = true
        if let http2Stream {
            precondition(fieldLines.isEmpty, "ResponseWriter.respond takes field lines on HTTP/1.x only")
            http2Stream.session.respond(http2Stream, status: status, headers: headers, body: body, trailers: nil)
            return
        }
        guard connection.isAwaitingResponse(sequence: sequence) else { return }
        connection.respond(status: status, headers: headers, fieldLines: fieldLines, body: body)
    }

    /// This writer answers an HTTP/2 stream (field lines cannot be given, see `respond`).
    public var isHTTP2: Bool { http2Stream != nil }

    /// Buffers the handler keeps per connection, for the field lines it writes (their capacity
    /// stays from request to request: no allocation per request once warm).
    public var scratch: ConnectionScratch { connection.scratch }

    /// Sends a response that ends with trailer fields (gRPC's `grpc-status`, built with
    /// `GRPCFraming.statusTrailers`). On HTTP/2: HEADERS, DATA, then a trailing HEADERS frame. On
    /// HTTP/1.1 the body goes chunked with the trailers after the last chunk; an HTTP/1.0 client
    /// gets the body without them. `body` is left intact.
    public func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: EventBuffer, trailers: HTTPHeaders) {
        connection.loop.assertInLoop()
        if trailers.count == 0 {
            respond(status: status, headers: headers, body: body)
            return
        }
        precondition(
            !hasResponded,
            "ResponseWriter.respond was called twice for one request; each request gets exactly one response."
        )
        precondition((200...999).contains(status), "ResponseWriter.respond needs a final status, got \(status)")
        if let http2Stream {
            hasResponded = true
            http2Stream.session.respond(http2Stream, status: status, headers: headers, body: body, trailers: trailers)
            return
        }
        guard startStream(status: status, headers: headers, contentLength: nil) else { return }
        if body.count > 0 {
            let copy = EventBuffer()
            copy.append(contentsOf: body)
            streamBody(copy)
        }
        finishStream(trailers: trailers)
    }

    /// Sends the response with a body given as bytes.
    public func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        connection.loop.assertInLoop()
        respond(status: status, headers: headers, body: EventBuffer(bytes: body))
    }

    // MARK: Streamed responses (SPEC §10)

    /// The most response bytes a stream keeps unsent before its producer is told to pause
    /// (SPEC §10: 256 KiB). In practice it pauses sooner: as soon as the client's socket is full
    /// (the kernel's send buffer already holds what keeps the client busy), so a slow reader
    /// costs at most about one read of the upstream here, however many of them there are.
    public static let streamHighWaterBytes = 256 * 1024

    // Unchecked: checking these two costs +171 instructions/request, 2 checks (bench/instructions.sh "",
    // 33,815 -> 33,986; all three of this class +395).
    /// Called when a paused streamed response's unsent bytes have all gone to the client; loop
    /// thread.
    @exclusivity(unchecked) public var onDrained: (() -> Void)?
    /// Called once if the client goes away (or a write fails) before a streamed response ended.
    @exclusivity(unchecked) public var onClientGone: (() -> Void)?

    /// Sends the head of a response whose body follows in pieces (`streamBody`), then
    /// `finishStream()` or `cutStream()`. With `contentLength` the body is exactly that long
    /// and keeps it; without, it goes chunked to an HTTP/1.1 client and close-delimited to an
    /// HTTP/1.0 one. Returns false (and does nothing) if the client went away.
    @discardableResult
    public func startStream(
        status: Int,
        headers: HTTPHeaders = HTTPHeaders(),
        fieldLines: [UInt8] = [],
        contentLength: Int?
    ) -> Bool {
        connection.loop.assertInLoop()
        precondition(
            !hasResponded,
            "ResponseWriter.startStream was called after a response; each request gets exactly one response."
        )
        hasResponded = true
        if let http2Stream {
            precondition(fieldLines.isEmpty, "ResponseWriter.startStream takes field lines on HTTP/1.x only")
            guard http2Stream.isAwaitingResponse else { return false }
            http2Stream.session.startStream(http2Stream, status: status, headers: headers, contentLength: contentLength)
            return true
        }
        guard connection.isAwaitingResponse(sequence: sequence) else { return false }
        connection.startStream(
            status: status,
            headers: headers,
            fieldLines: fieldLines,
            contentLength: contentLength,
            writer: self
        )
        return true
    }

    /// Moves `bytes` (left empty) to the client as the next piece of a streamed body. Returns
    /// whether the producer should pause: the client's socket is full, or more than
    /// `streamHighWaterBytes` wait unsent (`onDrained` says when to go on).
    @discardableResult
    public func streamBody(_ bytes: EventBuffer) -> Bool {
        connection.loop.assertInLoop()
        if let http2Stream { return http2Stream.session.streamBody(http2Stream, bytes) }
        return connection.streamBody(bytes, sequence: sequence)
    }

    /// Ends a streamed body (the last chunk, when chunked); the connection goes on with the
    /// next request.
    public func finishStream() {
        connection.loop.assertInLoop()
        if let http2Stream {
            http2Stream.session.finishStream(http2Stream, trailers: nil)
            return
        }
        connection.finishStream(sequence: sequence, trailers: nil)
    }

    /// Ends a streamed body with trailer fields: a trailing HEADERS frame on HTTP/2, the fields
    /// after the last chunk on chunked HTTP/1.1 (dropped when the body is not chunked).
    public func finishStream(trailers: HTTPHeaders) {
        connection.loop.assertInLoop()
        if let http2Stream {
            http2Stream.session.finishStream(http2Stream, trailers: trailers)
            return
        }
        connection.finishStream(sequence: sequence, trailers: trailers)
    }

    /// Ends a streamed body abruptly: no last chunk, and the connection closes once what was
    /// queued has been sent, so the client sees that the body was cut (SPEC §10).
    public func cutStream() {
        connection.loop.assertInLoop()
        if let http2Stream {
            http2Stream.session.cutStream(http2Stream)
            return
        }
        connection.cutStream(sequence: sequence)
    }
}

/// Why a server could not take a connection (see `HTTPServer.onAcceptFailure`).
public enum AcceptFailure: Sendable, Equatable {
    /// EMFILE: the process holds as many descriptors as its soft `RLIMIT_NOFILE` allows.
    case processDescriptorLimit
    /// ENFILE: the system is out of file descriptors.
    case systemDescriptorLimit
    /// The connection was accepted into `ServerOptions.reservedDescriptors`: the process is that
    /// close to its limit.
    case descriptorReserve
    /// Any other error accept(2) returns (ENOBUFS, ENOMEM, EPERM...), with its errno.
    case other(Int32)
}

/// A run of accept failures, from the first to the end of the first quiet second after it.
public struct AcceptEpisode: Sendable {
    /// Failed accepts (each one paused accepting).
    public var failures = 0
    /// Idle keep-alive connections closed to make room.
    public var closedIdleConnections = 0
    /// From the first failure to the end of the episode.
    public var milliseconds: Int64 = 0
}

/// An HTTP/1.1 server on one `EventLoop`: accepts connections, parses requests strictly with
/// `HTTP1`, and calls `handler` on the loop thread once per whole request, in order per
/// connection. Loop thread only (create it before `run()` or on the loop thread).
public final class HTTPServer {
    public let loop: EventLoop
    public let options: ServerOptions
    /// The bound port (the one the kernel chose when `port` was 0); 0 on a Unix socket.
    public let port: Int
    /// Where the server listens, with the bound port.
    public let address: ListenAddress
    let handler: (ServerRequest, ResponseWriter) -> Void
    private var listener: OpaquePointer?
    /// The Unix socket this server bound itself (`init(loop:address:...)`); its file is removed
    /// when the server stops accepting.
    private var ownedSocket: UnixListeningSocket?
    /// Each open connection with its accept number (the oldest idle one is shed first).
    private var connections: [ObjectIdentifier: (connection: ServerConnection, number: Int)] = [:]
    private var drainCompletion: (() -> Void)?

    // Unchecked: checking it with the two below costs +353 instructions/request, 3 checks
    // (bench/instructions.sh "", 33,815 -> 34,168); those two alone cost +47 and +27, so they are checked.
    /// Requests handed to the handler and not yet answered (on live connections).
    @exclusivity(unchecked) public private(set) var activeRequests = 0
    /// Called on the loop thread each time `activeRequests` falls to zero.
    public var onNoActiveRequests: (() -> Void)?
    /// `drain` was called: every response now closes its connection.
    public private(set) var isDraining = false

    /// Called on the loop thread each time a connection is closed because its client took no
    /// response bytes for `sendTimeoutMilliseconds`.
    public var onSendTimeout: (() -> Void)?

    /// Called on the loop thread for each request the server answers itself with an error, never
    /// handing it to the handler (malformed, too large, too slow): what an access log needs of it.
    public var onRefused: ((RefusedRequest) -> Void)?

    /// Open client connections.
    public var openConnections: Int { connections.count }

    /// Connections with a request under way, from its first byte until the last byte of its
    /// response has been sent (and the close that follows it, when it closes): what a drain
    /// waits for.
    public var connectionsInFlight: Int {
        connections.values.reduce(0) { $0 + ($1.connection.isIdle ? 0 : 1) }
    }
    /// Connections accepted since the server started.
    public private(set) var connectionsAccepted = 0

    /// Called on the loop thread for each failed accept, after accepting paused;
    /// `startsEpisode` for the first failure since accepting last ran smoothly (log it once).
    public var onAcceptFailure: ((_ failure: AcceptFailure, _ startsEpisode: Bool) -> Void)?
    /// Called on the loop thread when an episode of accept failures ends: accepting has run a
    /// whole `acceptQuietMilliseconds` without failing.
    public var onAcceptResumed: ((AcceptEpisode) -> Void)?

    // Accept failures (EMFILE and the like; see `acceptFailed`). Loop thread.
    /// Descriptor numbers from here up are the reserve (`ServerOptions.reservedDescriptors`).
    private let descriptorCeiling: Int32
    private var acceptTimer: LoopTimer?
    private var acceptState = AcceptState.accepting
    private var acceptPauseMilliseconds = HTTPServer.firstAcceptPauseMilliseconds
    private var episode = AcceptEpisode()
    private var episodeStartMilliseconds: Int64 = 0

    private enum AcceptState {
        case accepting
        /// The listener is disabled until the timer fires.
        case paused
        /// The listener is enabled again; the episode ends if the timer fires before a failure.
        case probing
    }

    /// The first pause after a failed accept; each further failure doubles it, up to
    /// `maxAcceptPauseMilliseconds`, and a successful accept resets it.
    public static let firstAcceptPauseMilliseconds = 10
    public static let maxAcceptPauseMilliseconds = 1_000
    /// Accepting without a failure for this long ends an episode.
    public static let acceptQuietMilliseconds = 1_000

    /// Binds `host:port` (an IPv4 or IPv6 literal, or `localhost`) with `SO_REUSEADDR` and
    /// `SO_REUSEPORT`, so loops on several threads can listen on the same port, and listens.
    /// `exclusive` (for the first of them): fail when something already listens on the port,
    /// instead of joining it (`SO_REUSEPORT` would let a second process share it silently).
    public init(
        loop: EventLoop,
        host: String,
        port: Int,
        exclusive: Bool = false,
        options: ServerOptions = ServerOptions(),
        handler: @escaping (ServerRequest, ResponseWriter) -> Void
    ) throws {
        self.loop = loop
        self.options = options
        self.handler = handler
        self.descriptorCeiling = HTTPServer.descriptorCeiling(reserving: options.reservedDescriptors)
        var address = sockaddr_storage()
        let literal = host == "localhost" ? "127.0.0.1" : host
        let length = switchyard_make_sockaddr(literal, Int32(port), &address)
        guard length > 0 else {
            throw EventHTTPError("cannot listen on \"\(host)\": expected an IP address or localhost")
        }
        if exclusive && port != 0 {
            let taken = withUnsafePointer(to: &address) { storage in
                storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { switchyard_address_taken($0, length) }
            }
            if taken != 0 {
                throw EventHTTPError("\(System.errorText(taken)) (another process listens there)")
            }
        }
        let flags = UInt32(LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC)
        let created = withUnsafePointer(to: &address) { storage in
            storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                evconnlistener_new_bind(loop.base, nil, nil, flags, 1024, sa, length)
            }
        }
        guard let created else {
            throw EventHTTPError("cannot listen on \(host):\(port): \(System.lastErrorText())")
        }
        let bound = switchyard_bound_port(evconnlistener_get_fd(created))
        guard bound > 0 else {
            evconnlistener_free(created)
            throw EventHTTPError("cannot read back the port bound on \(host):\(port)")
        }
        self.port = Int(bound)
        self.address = .tcp(host: host, port: Int(bound))
        self.listener = created
        evconnlistener_set_cb(created, ServerCallbacks.accept, Unmanaged.passUnretained(self).toOpaque())
        evconnlistener_set_error_cb(created, ServerCallbacks.acceptError)
    }

    /// Listens on `address`: TCP as `init(loop:host:port:exclusive:options:handler:)` does; a Unix
    /// socket path is bound here (see `UnixListeningSocket`) with file mode `socketMode` (default
    /// `0o660`), and its file is removed when the server stops accepting. `exclusive` concerns TCP
    /// only: a Unix socket another process listens on is always an error.
    public convenience init(
        loop: EventLoop,
        address: ListenAddress,
        exclusive: Bool = false,
        socketMode: UInt32 = 0o660,
        options: ServerOptions = ServerOptions(),
        handler: @escaping (ServerRequest, ResponseWriter) -> Void
    ) throws {
        switch address {
        case .tcp(let host, let port):
            try self.init(loop: loop, host: host, port: port, exclusive: exclusive, options: options, handler: handler)
        case .unix(let path):
            let socket = try UnixListeningSocket(path: path, mode: socketMode)
            try self.init(loop: loop, socket: socket, options: options, handler: handler)
            ownedSocket = socket
        }
    }

    /// Accepts from a Unix socket that loops on other threads may accept from as well: this server
    /// takes its own `dup` of the descriptor (closed when it stops accepting); the socket and its
    /// file stay the caller's. Clients are reported as loopback peers (see `ServerRequest`).
    public init(
        loop: EventLoop,
        socket: UnixListeningSocket,
        options: ServerOptions = ServerOptions(),
        handler: @escaping (ServerRequest, ResponseWriter) -> Void
    ) throws {
        self.loop = loop
        self.options = options
        self.handler = handler
        self.descriptorCeiling = HTTPServer.descriptorCeiling(reserving: options.reservedDescriptors)
        self.port = 0
        self.address = .unix(path: socket.path)
        let fd = try socket.duplicateDescriptor()
        // Backlog 0: the socket listens already (`evconnlistener_new` then skips `listen`).
        let flags = UInt32(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC)
        guard let created = evconnlistener_new(loop.base, nil, nil, flags, 0, fd) else {
            System.close(fd)
            throw EventHTTPError("cannot listen on unix:\(socket.path): \(System.lastErrorText())")
        }
        self.listener = created
        evconnlistener_set_cb(created, ServerCallbacks.accept, Unmanaged.passUnretained(self).toOpaque())
        evconnlistener_set_error_cb(created, ServerCallbacks.acceptError)
    }

    deinit {
        stopAccepting()
        acceptTimer?.cancel()
        for entry in Array(connections.values) { entry.connection.close() }
    }

    /// Closes the listening socket (and removes the socket file of a Unix socket this server bound
    /// itself); open connections carry on.
    public func stopAccepting() {
        acceptTimer?.cancel()
        acceptState = .accepting
        if let listener { evconnlistener_free(listener) }
        listener = nil
        ownedSocket?.removeFile()
        ownedSocket = nil
    }

    /// Closes connections that wait for a next request with nothing received.
    public func closeIdleConnections() {
        for entry in Array(connections.values) where entry.connection.isIdle { entry.connection.close() }
    }

    /// Stops accepting, closes idle connections, answers the requests in progress with
    /// `connection: close`, and calls `completion` once no connection is left open (slow clients
    /// are bounded by the header and body deadlines).
    public func drain(completion: @escaping () -> Void) {
        isDraining = true
        stopAccepting()
        for entry in Array(connections.values) { entry.connection.startDrainingHTTP2() }
        closeIdleConnections()
        if connections.isEmpty {
            loop.runSoon(completion)
        } else {
            drainCompletion = completion
        }
    }

    fileprivate func accept(fd newFD: Int32, address: UnsafeMutablePointer<sockaddr>?) {
        loop.assertInLoop()
        var fd = newFD
        if fd >= descriptorCeiling {
            // Into the reserve: the new connection moves into the descriptor of the oldest idle
            // one (the lowest free number, which `dup` takes), so the reserve stays whole; with
            // none idle it is closed at once (the client sees the connection close).
            let moved = acceptFailed(.descriptorReserve) ? switchyard_dup(fd) : -1
            System.close(fd)
            guard moved >= 0, moved < descriptorCeiling else {
                if moved >= 0 { System.close(moved) }
                return
            }
            fd = moved
            // A connection got in: the next pause starts short again.
            acceptPauseMilliseconds = HTTPServer.firstAcceptPauseMilliseconds
        } else if acceptPauseMilliseconds != HTTPServer.firstAcceptPauseMilliseconds {
            acceptPauseMilliseconds = HTTPServer.firstAcceptPauseMilliseconds
        }
        if case .unix = self.address {
            // A Unix socket client is on this host: a loopback peer (admin `/reload` is allowed),
            // reported as 127.0.0.1 so that `x-forwarded-for` stays a list of IP addresses.
            accepted(fd: fd, peerAddress: "127.0.0.1", isPeerLoopback: true)
            return
        }
        var text = [CChar](repeating: 0, count: 64)
        let loopback = switchyard_peer_text(address, &text, text.count)
        let peer = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        _ = switchyard_set_nodelay(fd)
        accepted(fd: fd, peerAddress: peer, isPeerLoopback: loopback == 1)
    }

    private func accepted(fd: Int32, peerAddress: String, isPeerLoopback: Bool) {
        let connection = ServerConnection(
            server: self,
            fd: fd,
            peerAddress: peerAddress,
            isPeerLoopback: isPeerLoopback
        )
        connectionsAccepted += 1
        connections[ObjectIdentifier(connection)] = (connection, connectionsAccepted)
        connection.start()
    }

    // MARK: Accept failures

    // Out of descriptors, accept(2) fails at once for every connection waiting in the backlog, and
    // a listener left enabled is woken again at once: the loop spins (issue 10). So, per listener,
    // as nginx and HAProxy do: disable it, close the idle keep-alive connection accepted first
    // (standing in for the one idle longest: a connection keeps no idle-since time; the scan is
    // O(open connections), at most once per pause) so that one waiting client gets in, and enable
    // it again after a pause that starts at 10 ms and doubles to 1 s while accepts keep failing
    // (a connection that gets in resets it). The reserve (`ServerOptions.reservedDescriptors`) makes
    // the data listeners stop short of the limit, so that upstream connections, the admin
    // listener and config reads still get descriptors; a spare descriptor closed on EMFILE (the
    // libev recipe) would hand its one slot to whichever thread asks first, not to them.

    private static func descriptorCeiling(reserving reserved: Int) -> Int32 {
        let limit = switchyard_open_file_limit()
        guard reserved > 0, limit > 0 else { return Int32.max }
        return Int32(clamping: max(0, limit - Int64(reserved)))
    }

    fileprivate static func failure(errno code: Int32) -> AcceptFailure {
        switch switchyard_descriptor_error_kind(code) {
        case 1: return .processDescriptorLimit
        case 2: return .systemDescriptorLimit
        default: return .other(code)
        }
    }

    /// Pauses accepting after a failure and closes the oldest idle connection; returns whether
    /// one was closed.
    @discardableResult
    fileprivate func acceptFailed(_ failure: AcceptFailure) -> Bool {
        guard let listener else { return false }
        let startsEpisode = acceptState == .accepting
        if startsEpisode {
            episode = AcceptEpisode()
            episodeStartMilliseconds = loop.nowMilliseconds
        }
        episode.failures += 1
        evconnlistener_disable(listener)
        acceptState = .paused
        let closedIdle = closeOldestIdleConnection()
        if closedIdle { episode.closedIdleConnections += 1 }
        if acceptTimer == nil {
            acceptTimer = LoopTimer(loop: loop, isOneShot: false) { [unowned self] in self.acceptTimerFired() }
        }
        acceptTimer?.arm(milliseconds: acceptPauseMilliseconds)
        acceptPauseMilliseconds = min(acceptPauseMilliseconds * 2, HTTPServer.maxAcceptPauseMilliseconds)
        onAcceptFailure?(failure, startsEpisode)
        return closedIdle
    }

    private func acceptTimerFired() {
        guard let listener else { return }
        switch acceptState {
        case .accepting:
            break
        case .paused:
            acceptState = .probing
            evconnlistener_enable(listener)
            acceptTimer?.arm(milliseconds: HTTPServer.acceptQuietMilliseconds)
        case .probing:
            acceptState = .accepting
            episode.milliseconds = loop.nowMilliseconds - episodeStartMilliseconds
            onAcceptResumed?(episode)
        }
    }

    /// Closes the idle connection accepted first, if there is one.
    private func closeOldestIdleConnection() -> Bool {
        var oldest: (connection: ServerConnection, number: Int)?
        for entry in connections.values where entry.connection.isIdle {
            if oldest.map({ entry.number < $0.number }) ?? true { oldest = entry }
        }
        guard let oldest else { return false }
        oldest.connection.close()
        return true
    }

    func requestStarted() {
        activeRequests += 1
    }

    func requestFinished() {
        activeRequests -= 1
        if activeRequests == 0 { onNoActiveRequests?() }
    }

    func connectionClosed(_ connection: ServerConnection) {
        connections[ObjectIdentifier(connection)] = nil
        if connections.isEmpty, let completion = drainCompletion {
            drainCompletion = nil
            completion()
        }
    }
}

/// One client connection: the request-reading role over the shared connection core
/// (`ConnectionSocket`, `HeadReader`, `BodyReader`; see Connection.swift), driven by `HTTP1`.
/// Alive from accept until `close()`, which frees the events, closes the socket and releases the
/// retain held for libevent, exactly once.
final class ServerConnection {
    private enum State {
        /// Waiting for (the rest of) a request head.
        case awaitingHead
        /// Moving the body out of the input.
        case readingBody
        /// The handler has the request; further input stays buffered.
        case awaitingResponse
        /// A streamed response's head has been sent; its body follows piece by piece.
        case streaming
        /// A last response is being flushed.
        case closing
        /// Flushed and half-closed: discarding input until the client closes or the linger time ends.
        case lingering
        /// The connection opened with the HTTP/2 preface: `http2` drives it.
        case http2
        case closed
    }

    private enum Deadline {
        case idle, header, body, linger
    }

    // Properties marked `@exclusivity(unchecked)` are the ones the request path changes in place:
    // loop-thread state whose accesses never overlap (none spans a call that could reach it
    // again), so the runtime check (about 100 instructions per access) buys nothing.
    private(set) weak var server: HTTPServer?
    let loop: EventLoop
    private let options: ServerOptions
    let handler: (ServerRequest, ResponseWriter) -> Void
    let peerAddress: String
    let isPeerLoopback: Bool
    // Unchecked: checking it costs +1,068 instructions/request, 12 checks (bench/instructions.sh "", 33,815 -> 34,883).
    @exclusivity(unchecked) private(set) var socket: ConnectionSocket
    /// The HTTP/2 role, from the preface on (state `.http2`); kept until the connection goes,
    /// since its streams' writers reach it through this connection.
    private var http2: HTTP2ServerSession?
    /// Input beyond one maximal request (plus framing slack) is not read until the request is
    /// handled: a connection never buffers without bound.
    private let maxBufferedInputBytes: Int
    private var state = State.awaitingHead
    private var selfRetain: Unmanaged<ServerConnection>?
    private var timer: DeadlineTimer?
    private var deadline = Deadline.idle
    /// Armed while response bytes wait for the client (made when first needed: most responses
    /// leave in one write).
    private var sendTimer: DeadlineTimer?

    // The request being read. Its head goes to the handler; what its response depends on stays.
    private var head: RequestHead?
    private var requestKeepsAlive = false
    private var requestIsHTTP10 = false
    private var requestIsHEAD = false
    private var body: EventBuffer?
    /// The last request's body and writer, reused for the next request once the handler has let go
    /// of them (one allocation and one `evbuffer_new` less per request). Cleared by `close()`.
    private var spareBody: EventBuffer?
    private var spareWriter: ResponseWriter?
    // Unchecked: checking these costs +638 instructions/request, 5 checks (bench/instructions.sh "", 33,815 -> 34,453).
    @exclusivity(unchecked) private var headReader = HeadReader()
    @exclusivity(unchecked) private var bodyReader = BodyReader(framing: .none, maxBodyBytes: 0)
    private var hasRequestStarted = false
    /// The header (or body) deadline starts with this pass over the input and is armed only if
    /// the head (or body) is still incomplete at its end: most requests arrive whole.
    private var needsHeaderDeadline = false
    private var needsBodyDeadline = false
    private var sequence = 0
    private var isProcessing = false
    private var isInputClosed = false
    // Unchecked: checking it costs +510 instructions/request, 4 checks (bench/instructions.sh "", 33,815 -> 34,325).
    /// The response head being written, kept between responses for its capacity and status line.
    @exclusivity(unchecked) private var headScratch = HeadScratch()
    /// The handler's buffers for this connection (`ResponseWriter.scratch`), made on first use.
    var scratch: ConnectionScratch {
        if let made = handlerScratch { return made }
        let made = ConnectionScratch()
        handlerScratch = made
        return made
    }
    private var handlerScratch: ConnectionScratch?
    /// The last request head's field buffer, parsed into again once that head is gone.
    private var fieldStorage = FieldStorage()
    /// The status whose line starts `headScratch`.
    private var headScratchStatus = 0

    // The streamed response in progress (state `.streaming`).
    private var streamFraming = StreamFraming.contentLength
    /// The response closes the connection when it ends.
    private var streamWillClose = false
    /// The producer was told to pause and waits for `onDrained`.
    private var streamIsPaused = false
    /// The writer of the streamed response (its callbacks).
    private var streamWriter: ResponseWriter?

    init(server: HTTPServer, fd: Int32, peerAddress: String, isPeerLoopback: Bool) {
        self.server = server
        self.loop = server.loop
        self.options = server.options
        self.handler = server.handler
        self.socket = ConnectionSocket(fd: fd)
        self.peerAddress = peerAddress
        self.isPeerLoopback = isPeerLoopback
        maxBufferedInputBytes = options.limits.maxHeaderBytes + options.limits.maxBodyBytes + 64 * 1024
    }

    deinit {
        socket.close()
        socket.freeBuffers()
    }

    func start() {
        selfRetain = Unmanaged.passRetained(self)
        timer = DeadlineTimer(loop: loop) { [unowned self] in self.deadlineMissed() }
        socket.attach(
            fd: socket.fd,
            base: loop.base,
            callback: ServerCallbacks.io,
            owner: Unmanaged.passUnretained(self).toOpaque()
        )
        socket.startReading()
        setDeadline(.idle)
    }

    var isIdle: Bool {
        if state == .http2 { return http2?.isIdle ?? true }
        return state == .awaitingHead && !hasRequestStarted && socket.outputLength == 0
    }

    func isAwaitingResponse(sequence: Int) -> Bool {
        state == .awaitingResponse && self.sequence == sequence
    }

    private var outputLength: Int { socket.outputLength }

    // MARK: Events

    fileprivate func readable() {
        loop.assertInLoop()
        switch state {
        case .awaitingHead, .readingBody, .awaitingResponse, .streaming:
            let room = maxBufferedInputBytes - socket.inputLength
            guard room > 0 else {
                socket.stopReading()  // resumed by `updateReading` once the input is consumed
                return
            }
            switch socket.read(maxBytes: room, scratch: loop.readScratch) {
            case .bytes:
                if state == .awaitingResponse || state == .streaming {
                    updateReading()
                } else {
                    process()
                }
            case .wouldBlock:
                break
            case .endOfStream:
                inputEnded()
            case .failed:
                close()
            }
        case .lingering:
            let outcome = socket.read(scratch: loop.readScratch)
            evbuffer_drain(socket.input, socket.inputLength)
            switch outcome {
            case .bytes, .wouldBlock: break
            case .endOfStream, .failed: close()
            }
        case .http2:
            switch socket.read(maxBytes: SocketIO.readChunkBytes, scratch: loop.readScratch) {
            case .bytes: http2?.received()
            case .wouldBlock: break
            case .endOfStream, .failed: close()
            }
        case .closing:
            socket.stopReading()
        case .closed:
            break
        }
    }

    fileprivate func writable() {
        loop.assertInLoop()
        guard state != .closed else { return }
        let before = outputLength
        switch socket.flushOutcome() {
        case .pending:
            outputPending(progressed: outputLength < before)
            streamDrained()
            return
        case .failed:
            close()
            return
        case .drained:
            socket.stopWaitingToWrite()
            sendTimer?.clear()
        }
        switch state {
        case .closing: finishClosing()
        case .awaitingHead: process()  // output drained: pipelined requests may go on
        case .streaming: streamDrained()
        case .http2: http2?.writable()
        default: break
        }
    }

    /// The client closed its side (or half-closed it).
    private func inputEnded() {
        isInputClosed = true
        socket.stopReading()
        switch state {
        case .awaitingHead, .readingBody: process()  // answers complete buffered requests, then closes
        // Like nginx, treat EOF while the handler works as the client giving up (a half-closing
        // client loses its response): the writer reports `isConnectionAlive == false` at once,
        // and a streamed response's producer hears `onClientGone`.
        case .awaitingResponse, .streaming: close()
        case .lingering, .http2: close()
        case .closing, .closed: break
        }
    }

    private func deadlineMissed() {
        switch (deadline, state) {
        case (.header, .awaitingHead) where hasRequestStarted:
            sendError(
                status: 408,
                code: "request_timeout",
                detail: "the request head did not arrive within \(options.headerTimeoutMilliseconds) ms",
                request: nil
            )
        case (.body, .readingBody):
            sendError(
                status: 408,
                code: "request_timeout",
                detail: "the request body did not arrive within \(options.bodyTimeoutMilliseconds) ms",
                request: head
            )
        case (.linger, .closing), (.linger, .lingering), (.idle, .awaitingHead):
            close()
        default:
            break
        }
    }

    /// Sets the connection's one deadline, `deadline`'s duration from now.
    private func setDeadline(_ deadline: Deadline) {
        self.deadline = deadline
        let milliseconds: Int
        switch deadline {
        case .idle: milliseconds = options.idleTimeoutMilliseconds
        case .header: milliseconds = options.headerTimeoutMilliseconds
        case .body: milliseconds = options.bodyTimeoutMilliseconds
        case .linger: milliseconds = options.lingerMilliseconds
        }
        let now = System.monotonicMilliseconds()
        timer?.set(now + Int64(milliseconds))
    }

    /// Reads while the input is under its bound and the connection still wants requests.
    private func updateReading() {
        switch state {
        case .awaitingHead, .readingBody, .awaitingResponse, .streaming:
            guard !isInputClosed else { return }
            if socket.inputLength >= maxBufferedInputBytes {
                socket.stopReading()
            } else {
                socket.startReading()
            }
        case .closing, .lingering, .closed, .http2:
            break
        }
    }

    /// Sends what the socket takes now; waits for EV_WRITE for the rest. False when a socket
    /// error closed the connection.
    func flushOutput() -> Bool {
        let before = outputLength
        switch socket.flush() {
        case .failed:
            close()
            return false
        case .pending:
            outputPending(progressed: outputLength < before)
        case .drained:
            sendTimer?.clear()
        }
        return true
    }

    /// Bytes wait for the client: the send deadline runs from the last time it took some.
    private func outputPending(progressed: Bool) {
        if sendTimer == nil {
            sendTimer = DeadlineTimer(loop: loop) { [unowned self] in self.sendDeadlineMissed() }
        }
        guard let sendTimer, progressed || sendTimer.deadline == nil else { return }
        sendTimer.set(System.monotonicMilliseconds() + Int64(options.sendTimeoutMilliseconds))
    }

    /// The client took nothing for `sendTimeoutMilliseconds`: it is not reading, so the memory
    /// its response holds (and a stream's upstream) is let go.
    private func sendDeadlineMissed() {
        guard state != .closed, outputLength > 0 else { return }
        server?.onSendTimeout?()
        close()
    }

    // MARK: Reading requests

    /// Parses and dispatches as far as the buffered input allows, then sends what was answered
    /// (one write for every response of a pipelined batch). Not re-entrant: a handler that
    /// responds synchronously returns here and the loop goes on with the next buffered request.
    private func process() {
        guard !isProcessing else { return }
        isProcessing = true
        parse: while true {
            let progressed: Bool
            switch state {
            case .awaitingHead: progressed = readHead()
            case .readingBody: progressed = readBody()
            default: break parse
            }
            if !progressed { break }
        }
        isProcessing = false
        switch state {
        case .awaitingHead, .readingBody, .awaitingResponse, .streaming:
            // While EV_WRITE is awaited the socket is full: the write callback sends.
            if outputLength > 0 && !socket.isWaitingToWrite {
                guard flushOutput() else { return }
            }
            updateReading()
        case .closing, .lingering, .closed, .http2:
            break
        }
    }

    /// Returns whether the state moved on.
    private func readHead() -> Bool {
        if outputLength > options.maxBufferedOutputBytes {
            // Too much unsent: try to send it, else wait for `writable` before parsing more.
            if socket.isWaitingToWrite { return false }
            guard flushOutput(), outputLength <= options.maxBufferedOutputBytes else { return false }
        }
        if socket.inputLength == 0 {
            if isInputClosed { beginClosing() }
            return false
        }
        if !hasRequestStarted {
            hasRequestStarted = true
            needsHeaderDeadline = true
            headReader.reset()
        }
        let limits = options.limits
        guard let window = headReader.window(in: socket.input, maxHeaderBytes: limits.maxHeaderBytes) else {
            headIncomplete()
            return false
        }
        switch RequestHeadParser.parse(window, limits: limits, reusing: &fieldStorage) {
        case .incomplete:
            headReader.incomplete(window)
            headIncomplete()
            return false
        case .failure(let error):
            // The HTTP/2 preface fails the request line ("HTTP/2.0"): only then, and only before
            // the connection's first request, is the input compared with it (SPEC §13, h2c).
            if sequence == 0, let isWhole = http2PrefaceState(socket.input) {
                if isWhole {
                    switchToHTTP2()
                } else {
                    headIncomplete()
                }
                return false
            }
            sendError(status: error.status, code: error.code, detail: error.detail, request: nil)
            return false
        case .complete(let head, let consumed):
            headReader.consume(consumed, from: socket.input)
            return beginBody(head)
        }
    }

    /// Hands the connection to an HTTP/2 session, which reads the preface and what follows.
    private func switchToHTTP2() {
        state = .http2
        timer?.cancel()
        hasRequestStarted = false
        let session = HTTP2ServerSession(connection: self, options: options)
        http2 = session
        if isInputClosed {
            close()
            return
        }
        session.start(loop: loop)
    }

    /// The server drains: an HTTP/2 connection sends GOAWAY and closes once its streams are done.
    func startDrainingHTTP2() {
        if state == .http2 { http2?.startDraining() }
    }

    private func headIncomplete() {
        if isInputClosed {
            beginClosing()  // a request cut short: flush earlier answers, then close
        } else if needsHeaderDeadline {
            needsHeaderDeadline = false
            setDeadline(.header)
        }
    }

    private func beginBody(_ head: RequestHead) -> Bool {
        requestKeepsAlive = head.keepAlive
        requestIsHTTP10 = head.version == .http10
        requestIsHEAD = head.method == "HEAD"
        self.head = head
        body = reusableBody()
        let limits = options.limits
        switch head.framing {
        case .none, .contentLength(0):
            bodyReader = BodyReader(framing: .none, maxBodyBytes: 0)
            dispatch()
            return true
        case .contentLength(let length):
            guard length <= limits.maxBodyBytes else {
                sendError(
                    status: 413,
                    code: "body_too_large",
                    detail: "Content-Length \(length) exceeds the limit of \(limits.maxBodyBytes) bytes",
                    request: head
                )
                return false
            }
        case .chunked:
            break
        case .untilClose:
            sendError(
                status: 400,
                code: "bad_request",
                detail: "a request body cannot be delimited by closing the connection",
                request: head
            )
            return false
        }
        bodyReader = BodyReader(framing: head.framing, maxBodyBytes: limits.maxBodyBytes)
        if head.expectsContinue {
            evbuffer_add(socket.output, ServerConnection.continueLine, ServerConnection.continueLine.count)
        }
        state = .readingBody
        needsBodyDeadline = true
        return true
    }

    private static let continueLine: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    /// Bodies up to this size are kept for reuse after their request (larger ones are freed, so an
    /// idle connection holds at most this much).
    static let maxSpareBodyBytes = 16 * 1024

    /// The last request's body buffer, emptied, when nothing else holds it; else a new one.
    private func reusableBody() -> EventBuffer {
        if isKnownUniquelyReferenced(&spareBody), let spare = spareBody {
            spare.removeAll()
            return spare
        }
        let fresh = EventBuffer()
        spareBody = fresh
        return fresh
    }

    /// The last request's writer, when nothing else holds it; else a new one.
    private func reusableWriter(sequence: Int) -> ResponseWriter {
        if isKnownUniquelyReferenced(&spareWriter), let spare = spareWriter {
            spare.reuse(sequence: sequence)
            return spare
        }
        let fresh = ResponseWriter(connection: self, sequence: sequence)
        spareWriter = fresh
        return fresh
    }

    private func readBody() -> Bool {
        guard let body else { return false }
        switch bodyReader.read(from: socket.input, into: body.evbuffer) {
        case .failure(let error):
            sendError(
                status: error.status,
                code: error.code,
                detail: error.detail,
                request: head
            )
            return false
        case .success:
            if bodyReader.isComplete {
                dispatch()
                return true
            }
        }
        bodyIncomplete()
        return false
    }

    private func bodyIncomplete() {
        if isInputClosed {
            beginClosing()  // a request cut short: flush earlier answers, then close
        } else if needsBodyDeadline {
            needsBodyDeadline = false
            setDeadline(.body)
        }
    }

    private func dispatch() {
        guard let body, let server, let head = head.take() else { return }
        state = .awaitingResponse
        timer?.clear()
        sequence += 1
        server.requestStarted()
        let writer = reusableWriter(sequence: sequence)
        if body.count > ServerConnection.maxSpareBodyBytes { spareBody = nil }
        self.body = nil
        handler(ServerRequest(head: head, body: body, peerAddress: peerAddress, isPeerLoopback: isPeerLoopback), writer)
    }

    // MARK: Writing responses

    /// The handler's answer to the current request.
    func respond(status: Int, headers: HTTPHeaders, fieldLines: [UInt8], body: EventBuffer) {
        guard state == .awaitingResponse else { return }
        let willClose = write(status: status, headers: headers, fieldLines: fieldLines, body: body, forceClose: false)
        responseFinished(willClose: willClose)
    }

    /// The current response has been written whole (or queued): on to the next request.
    private func responseFinished(willClose: Bool) {
        requestKeepsAlive = false
        requestIsHTTP10 = false
        requestIsHEAD = false
        server?.requestFinished()
        if state == .closed { return }  // the finished-callback may have closed us
        if willClose {
            beginClosing()
            return
        }
        state = .awaitingHead
        hasRequestStarted = false
        setDeadline(.idle)
        process()  // sends the response, then goes on with pipelined requests
    }

    /// A JSON error (SPEC §8) that ends the connection.
    /// Answers an error the server finds itself; `request` is the head of the request refused,
    /// when it was read.
    private func sendError(status: Int, code: String, detail: String, request: RequestHead?) {
        let id = request?.headers.first(name: "x-request-id") ?? System.randomHexID()
        let json =
            "{\"error\":\"\(jsonEscaped(code))\",\"detail\":\"\(jsonEscaped(detail))\","
            + "\"request_id\":\"\(jsonEscaped(id))\"}"
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        _ = write(status: status, headers: headers, body: EventBuffer(bytes: Array(json.utf8)), forceClose: true)
        server?.onRefused?(
            RefusedRequest(status: status, code: code, requestID: id, head: request, bodyBytes: json.utf8.count)
        )
        beginClosing()
    }

    /// Writes the status line, the handler's fields minus the ones the server writes itself, then
    /// `connection` when needed, into `headScratch` (kept for its capacity; the status line stays
    /// from the last response when the status is the same). The caller ends the head.
    private func beginHead(status: Int, headers: HTTPHeaders, fieldLines: [UInt8], willClose: Bool) {
        if !headScratch.reset(keepingPrefix: status == headScratchStatus) {
            HTTPSerializer.appendStatusLine(&headScratch.bytes, status: status)
            headScratch.markPrefix()
            headScratchStatus = status
        }
        // `isFraming` has dropped `content-length` and `transfer-encoding`: no second check per field.
        // Fields a parser has checked are copied as they are.
        for index in 0..<headers.count where !headers.withField(at: index, { n, _ in ServerConnection.isFraming(n) }) {
            HTTPSerializer.appendField(&headScratch.bytes, at: index, of: headers, droppingFraming: false)
        }
        headScratch.bytes.append(contentsOf: fieldLines)
        if willClose {
            HeadBytes.append(&headScratch.bytes, "connection: close\r\n")
        } else if requestIsHTTP10 {
            HeadBytes.append(&headScratch.bytes, "connection: keep-alive\r\n")
        }
    }

    private var mustClose: Bool {
        !requestKeepsAlive || isInputClosed || (server?.isDraining ?? true)
    }

    /// Queues head and body (sent by the caller's flush); returns whether the connection closes
    /// after this response.
    private func write(
        status: Int,
        headers: HTTPHeaders,
        fieldLines: [UInt8] = [],
        body: EventBuffer,
        forceClose: Bool
    ) -> Bool {
        guard state != .closed else { return true }
        let willClose = forceClose || mustClose
        let hasNoBody = (100..<200).contains(status) || status == 204 || status == 304
        let contentLength = hasNoBody ? nil : body.count
        beginHead(status: status, headers: headers, fieldLines: fieldLines, willClose: willClose)
        HeadBytes.appendEnd(&headScratch.bytes, contentLength: contentLength)
        let sendsBody = !hasNoBody && !requestIsHEAD
        // A response given outside `process` (after an upstream answered) with nothing queued before
        // it goes out at once with a small body in the same buffer: no output chain when it all goes.
        // Inside `process`, responses are queued so a pipelined batch leaves in one write.
        if !isProcessing && outputLength == 0 && !socket.isWaitingToWrite
            && (!sendsBody || body.count <= EventBuffer.maxCopiedBytes)
        {
            if sendsBody { HeadBytes.appendBytes(of: body, to: &headScratch.bytes) }
            // Bytes the socket did not take stay queued; the caller's flush sends them or reports the error.
            _ = headScratch.bytes.withUnsafeBytes { raw in socket.sendOrQueue(raw) }
            return willClose
        }
        headScratch.bytes.withUnsafeBytes { raw in _ = evbuffer_add(socket.output, raw.baseAddress, raw.count) }
        if sendsBody {
            EventBuffer.addCopy(of: body.evbuffer, to: socket.output)
        }
        return willClose
    }

    /// Fields the server writes itself.
    private static func isFraming(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        switch name.count {
        case 10: return name.equalsIgnoringCase("connection") || name.equalsIgnoringCase("keep-alive")
        case 14: return name.equalsIgnoringCase("content-length")
        case 17: return name.equalsIgnoringCase("transfer-encoding")
        default: return false
        }
    }

    // MARK: Streamed responses

    func startStream(
        status: Int,
        headers: HTTPHeaders,
        fieldLines: [UInt8],
        contentLength: Int?,
        writer: ResponseWriter
    ) {
        guard state == .awaitingResponse else { return }
        let hasNoBody = (100..<200).contains(status) || status == 204 || status == 304
        if let contentLength {
            streamFraming = .contentLength
            streamWillClose = mustClose
            beginHead(status: status, headers: headers, fieldLines: fieldLines, willClose: streamWillClose)
            HeadBytes.appendEnd(&headScratch.bytes, contentLength: hasNoBody ? nil : contentLength)
        } else if requestIsHTTP10 {
            // No chunked coding for HTTP/1.0: the body ends when the connection closes.
            streamFraming = .untilClose
            streamWillClose = true
            beginHead(status: status, headers: headers, fieldLines: fieldLines, willClose: true)
            HeadBytes.append(&headScratch.bytes, "\r\n")
        } else {
            streamFraming = .chunked
            streamWillClose = mustClose
            beginHead(status: status, headers: headers, fieldLines: fieldLines, willClose: streamWillClose)
            HeadBytes.append(&headScratch.bytes, hasNoBody ? "\r\n" : "transfer-encoding: chunked\r\n\r\n")
        }
        if hasNoBody || requestIsHEAD { streamFraming = .contentLength }  // nothing of the body is sent
        headScratch.bytes.withUnsafeBytes { raw in _ = evbuffer_add(socket.output, raw.baseAddress, raw.count) }
        state = .streaming
        streamIsPaused = false
        streamWriter = writer
        sendStreamOutput()
    }

    /// Queues `bytes` as the next piece of the streamed body; returns whether the producer should pause.
    func streamBody(_ bytes: EventBuffer, sequence: Int) -> Bool {
        guard state == .streaming, self.sequence == sequence else {
            bytes.removeAll()
            return false
        }
        let length = bytes.count
        guard length > 0 else { return streamIsPaused }
        if requestIsHEAD {
            bytes.removeAll()
            return false
        }
        if streamFraming == .chunked {
            HeadBytes.addChunkSize(length, to: socket.output)
            bytes.moveAll(to: socket.output)
            evbuffer_add(socket.output, ServerConnection.crlf, 2)
        } else {
            bytes.moveAll(to: socket.output)
        }
        sendStreamOutput()
        guard state == .streaming else { return false }
        let unsent = outputLength
        if unsent > ResponseWriter.streamHighWaterBytes || (unsent > 0 && socket.isWaitingToWrite) {
            streamIsPaused = true
            return true
        }
        return false
    }

    private static let crlf: [UInt8] = [13, 10]
    private static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)

    /// Sends what the socket takes now unless EV_WRITE is awaited (its callback sends).
    private func sendStreamOutput() {
        if outputLength > 0 && !socket.isWaitingToWrite { _ = flushOutput() }
    }

    /// Output drained (wholly or partly) while streaming: once all of it has gone, a paused
    /// producer goes on.
    private func streamDrained() {
        guard state == .streaming, streamIsPaused, outputLength == 0 else { return }
        streamIsPaused = false
        streamWriter?.onDrained?()
    }

    func finishStream(sequence: Int, trailers: HTTPHeaders?) {
        guard state == .streaming, self.sequence == sequence else { return }
        if streamFraming == .chunked && !requestIsHEAD {
            if let trailers, trailers.count > 0 {
                // The last chunk, the trailer section, the blank line (RFC 9112 §7.1.2).
                var section: [UInt8] = Array("0\r\n".utf8)
                for index in 0..<trailers.count
                where !trailers.withField(at: index, { n, _ in ServerConnection.isFraming(n) }) {
                    HTTPSerializer.appendField(&section, at: index, of: trailers, droppingFraming: false)
                }
                section.append(contentsOf: [13, 10])
                evbuffer_add(socket.output, section, section.count)
            } else {
                evbuffer_add(socket.output, ServerConnection.lastChunk, ServerConnection.lastChunk.count)
            }
        }
        endStreamState()
        responseFinished(willClose: streamWillClose)
    }

    func cutStream(sequence: Int) {
        guard state == .streaming, self.sequence == sequence else { return }
        endStreamState()
        // What was queued still goes out; then the connection closes without a last chunk.
        requestKeepsAlive = false
        responseFinished(willClose: true)
    }

    private func endStreamState() {
        state = .awaitingResponse  // `responseFinished` moves on from here
        streamIsPaused = false
        let writer = streamWriter
        streamWriter = nil
        writer?.onDrained = nil
        writer?.onClientGone = nil
    }

    // MARK: Closing

    func beginClosing() {
        guard state != .closing, state != .lingering, state != .closed else { return }
        state = .closing
        socket.stopReading()
        setDeadline(.linger)
        if socket.isWaitingToWrite { return }  // the write callback finishes
        guard flushOutput() else { return }
        if outputLength == 0 { finishClosing() }
    }

    /// Output flushed: half-close and read what the client still sends, so our last response is
    /// not destroyed by a reset (nginx's lingering close).
    private func finishClosing() {
        guard state == .closing else { return }
        if isInputClosed {
            close()
            return
        }
        state = .lingering
        _ = switchyard_shutdown_write(socket.fd)
        evbuffer_drain(socket.input, socket.inputLength)
        socket.startReading()
    }

    /// Frees the events, closes the socket and releases libevent's retain. Idempotent.
    func close() {
        guard state != .closed else { return }
        let wasAwaitingResponse = state == .awaitingResponse || state == .streaming
        let goneWriter = state == .streaming ? streamWriter : nil
        let wasHTTP2 = state == .http2
        state = .closed
        if wasHTTP2 { http2?.teardown() }
        timer?.cancel()
        sendTimer?.cancel()
        socket.close()
        body = nil
        spareBody = nil
        spareWriter = nil  // it holds this connection
        streamWriter = nil
        if wasAwaitingResponse { server?.requestFinished() }
        if let goneWriter {
            let gone = goneWriter.onClientGone
            goneWriter.onDrained = nil
            goneWriter.onClientGone = nil
            gone?()
        }
        server?.connectionClosed(self)
        let retained = selfRetain
        selfRetain = nil
        retained?.release()
    }
}

/// JSON string escaping for error bodies.
func jsonEscaped(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out
}

enum ServerCallbacks {
    static let accept: evconnlistener_cb = { _, fd, address, _, arg in
        let server = Unmanaged<HTTPServer>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(server) { server.accept(fd: fd, address: address) }
    }
    // Accept errors other than EAGAIN, EINTR and ECONNABORTED (which libevent retries itself)
    // land here, errno still set: EMFILE, ENFILE, ENOBUFS...
    static let acceptError: evconnlistener_errorcb = { _, arg in
        let code = switchyard_errno()
        let server = Unmanaged<HTTPServer>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(server) { _ = server.acceptFailed(HTTPServer.failure(errno: code)) }
    }
    static let io: event_callback_fn = { _, what, arg in
        let connection = Unmanaged<ServerConnection>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(connection) {
            if what & Int16(EV_READ) != 0 { connection.readable() }
            if what & Int16(EV_WRITE) != 0 { connection.writable() }
        }
    }
}
