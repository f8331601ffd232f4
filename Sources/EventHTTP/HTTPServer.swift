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

    public init(
        limits: HTTPLimits = HTTPLimits(),
        headerTimeoutMilliseconds: Int = 5000,
        bodyTimeoutMilliseconds: Int = 10000,
        idleTimeoutMilliseconds: Int = 10000,
        maxBufferedOutputBytes: Int = 1 << 20,
        lingerMilliseconds: Int = 2000
    ) {
        self.limits = limits
        self.headerTimeoutMilliseconds = headerTimeoutMilliseconds
        self.bodyTimeoutMilliseconds = bodyTimeoutMilliseconds
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        self.maxBufferedOutputBytes = maxBufferedOutputBytes
        self.lingerMilliseconds = lingerMilliseconds
    }
}

/// A whole request: head and de-chunked body.
public struct ServerRequest {
    public var head: RequestHead
    /// The payload (after de-chunking), moved out of the connection's input.
    public var body: ByteBuffer
    /// The client's IP address as text, e.g. `127.0.0.1` or `::1`; `127.0.0.1` for a client on a
    /// Unix socket (it is on this host, and what is passed on, as in `x-forwarded-for`, stays an
    /// IP address that consumers can parse).
    public var peerAddress: String
    /// The client connected from a loopback address or over a Unix socket.
    public var isPeerLoopback: Bool

    public init(head: RequestHead, body: ByteBuffer, peerAddress: String, isPeerLoopback: Bool) {
        self.head = head
        self.body = body
        self.peerAddress = peerAddress
        self.isPeerLoopback = isPeerLoopback
    }
}

/// Answers one request, now or later, on the loop thread.
public final class ResponseWriter {
    // Strong: a connection is closed (socket and events freed) by `close()`, never by its release,
    // and a closed connection answers `isAwaitingResponse` with false, so a writer kept after the
    // close sees what a weak reference would; the strong one costs no weak load per request.
    // The connection's buffers are freed once its last writer goes.
    private let connection: ServerConnection
    // Reset when the connection reuses this writer for its next request (only once nothing else holds it).
    private var sequence: Int
    // Unchecked: loop thread only, and no access overlaps another (see `ServerConnection`).
    /// `respond` has been called.
    @exclusivity(unchecked) public private(set) var hasResponded = false

    init(connection: ServerConnection, sequence: Int) {
        self.connection = connection
        self.sequence = sequence
    }

    /// Makes an unshared writer answer the connection's next request.
    fileprivate func reuse(sequence: Int) {
        self.sequence = sequence
        hasResponded = false
    }

    /// The client is still connected and waiting for this response.
    public var isConnectionAlive: Bool {
        connection.isAwaitingResponse(sequence: sequence)
    }

    /// Sends the response. The server writes `content-length` and, when the connection will close,
    /// `connection: close`; any `content-length`, `transfer-encoding` or `connection` field in
    /// `headers` is replaced. `body` is left intact. A no-op if the client went away.
    public func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: ByteBuffer) {
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
        guard connection.isAwaitingResponse(sequence: sequence) else { return }
        connection.respond(status: status, headers: headers, body: body)
    }

    /// Sends the response with a body given as bytes.
    public func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        respond(status: status, headers: headers, body: ByteBuffer(bytes: body))
    }
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
    private var connections: [ObjectIdentifier: ServerConnection] = [:]
    private var drainCompletion: (() -> Void)?

    // `@exclusivity(unchecked)`: read and changed once per request, on the loop thread, and no
    // access overlaps another (see `ServerConnection`).
    /// Requests handed to the handler and not yet answered (on live connections).
    @exclusivity(unchecked) public private(set) var activeRequests = 0
    /// Called on the loop thread each time `activeRequests` falls to zero.
    @exclusivity(unchecked) public var onNoActiveRequests: (() -> Void)?
    /// `drain` was called: every response now closes its connection.
    @exclusivity(unchecked) public private(set) var isDraining = false

    /// Open client connections.
    public var openConnections: Int { connections.count }
    /// Connections accepted since the server started.
    public private(set) var connectionsAccepted = 0

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
        for connection in Array(connections.values) { connection.close() }
    }

    /// Closes the listening socket (and removes the socket file of a Unix socket this server bound
    /// itself); open connections carry on.
    public func stopAccepting() {
        if let listener { evconnlistener_free(listener) }
        listener = nil
        ownedSocket?.removeFile()
        ownedSocket = nil
    }

    /// Closes connections that wait for a next request with nothing received.
    public func closeIdleConnections() {
        for connection in Array(connections.values) where connection.isIdle { connection.close() }
    }

    /// Stops accepting, closes idle connections, answers the requests in progress with
    /// `connection: close`, and calls `completion` once no connection is left open (slow clients
    /// are bounded by the header and body deadlines).
    public func drain(completion: @escaping () -> Void) {
        isDraining = true
        stopAccepting()
        closeIdleConnections()
        if connections.isEmpty {
            loop.runSoon(completion)
        } else {
            drainCompletion = completion
        }
    }

    fileprivate func accept(fd: Int32, address: UnsafeMutablePointer<sockaddr>?) {
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
        connections[ObjectIdentifier(connection)] = connection
        connectionsAccepted += 1
        connection.start()
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

/// One client connection on a socket with a persistent read event (see `SocketIO.swift`), driven
/// by `HTTP1`. Alive from accept until `close()`, which frees the events, closes the socket and
/// releases the retain held for libevent, exactly once.
final class ServerConnection {
    private enum State {
        /// Waiting for (the rest of) a request head.
        case awaitingHead
        /// Moving the body out of the input.
        case readingBody
        /// The handler has the request; further input stays buffered.
        case awaitingResponse
        /// A last response is being flushed.
        case closing
        /// Flushed and half-closed: discarding input until the client closes or the linger time ends.
        case lingering
        case closed
    }

    private enum Deadline {
        case idle, header, body, linger
    }

    // Properties marked `@exclusivity(unchecked)` are the ones the request path changes in place:
    // loop-thread state whose accesses never overlap (none spans a call that could reach it
    // again), so the runtime check (about 100 instructions per access) buys nothing.
    private weak var server: HTTPServer?
    private let loop: EventLoop
    private let options: ServerOptions
    private let handler: (ServerRequest, ResponseWriter) -> Void
    private let peerAddress: String
    private let isPeerLoopback: Bool
    private var fd: Int32
    private let input: OpaquePointer
    private let output: OpaquePointer
    @exclusivity(unchecked) private var events: SocketEvents?
    /// Input beyond one maximal request (plus framing slack) is not read until the request is
    /// handled: a connection never buffers without bound.
    private let maxBufferedInputBytes: Int
    private var state = State.awaitingHead
    private var selfRetain: Unmanaged<ServerConnection>?
    private var timer: DeadlineTimer?
    private var deadline = Deadline.idle

    // The request being read. Its head goes to the handler; what its response depends on stays.
    @exclusivity(unchecked) private var head: RequestHead?
    private var requestKeepsAlive = false
    private var requestIsHTTP10 = false
    private var requestIsHEAD = false
    @exclusivity(unchecked) private var body: ByteBuffer?
    /// The last request's body and writer, reused for the next request once the handler has let go
    /// of them (one allocation and one `evbuffer_new` less per request). Cleared by `close()`.
    @exclusivity(unchecked) private var spareBody: ByteBuffer?
    @exclusivity(unchecked) private var spareWriter: ResponseWriter?
    private var bodyRemaining = 0
    private var chunkedDecoder: ChunkedDecoder?
    private var hasRequestStarted = false
    /// The header (or body) deadline starts with this pass over the input and is armed only if
    /// the head (or body) is still incomplete at its end: most requests arrive whole.
    private var needsHeaderDeadline = false
    private var needsBodyDeadline = false
    /// Head bytes already looked at without finding a complete head (parse again only after a new line).
    private var scannedHeadBytes = 0
    private var sequence = 0
    private var isProcessing = false
    private var isInputClosed = false
    /// The response head being written, kept between responses for its capacity and status line.
    @exclusivity(unchecked) private var headScratch = HeadScratch()
    /// The status whose line starts `headScratch`.
    private var headScratchStatus = 0

    init(server: HTTPServer, fd: Int32, peerAddress: String, isPeerLoopback: Bool) {
        self.server = server
        self.loop = server.loop
        self.options = server.options
        self.handler = server.handler
        self.fd = fd
        self.peerAddress = peerAddress
        self.isPeerLoopback = isPeerLoopback
        guard let input = evbuffer_new(), let output = evbuffer_new() else {
            preconditionFailure("evbuffer_new failed (out of memory).")
        }
        self.input = input
        self.output = output
        maxBufferedInputBytes = options.limits.maxHeaderBytes + options.limits.maxBodyBytes + 64 * 1024
    }

    deinit {
        events?.free()
        evbuffer_free(input)
        evbuffer_free(output)
    }

    func start() {
        selfRetain = Unmanaged.passRetained(self)
        timer = DeadlineTimer(loop: loop) { [unowned self] in self.deadlineMissed() }
        events = SocketEvents(
            base: loop.base,
            fd: fd,
            callback: ServerCallbacks.io,
            owner: Unmanaged.passUnretained(self).toOpaque()
        )
        events?.startReading()
        setDeadline(.idle)
    }

    var isIdle: Bool {
        state == .awaitingHead && !hasRequestStarted && evbuffer_get_length(output) == 0
    }

    func isAwaitingResponse(sequence: Int) -> Bool {
        state == .awaitingResponse && self.sequence == sequence
    }

    private var outputLength: Int { evbuffer_get_length(output) }

    // MARK: Events

    fileprivate func readable() {
        switch state {
        case .awaitingHead, .readingBody, .awaitingResponse:
            let room = maxBufferedInputBytes - evbuffer_get_length(input)
            guard room > 0 else {
                events?.stopReading()  // resumed by `updateReading` once the input is consumed
                return
            }
            switch SocketIO.read(fd, into: input, maxBytes: room, scratch: loop.readScratch) {
            case .bytes:
                if state == .awaitingResponse {
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
            let outcome = SocketIO.read(fd, into: input, scratch: loop.readScratch)
            evbuffer_drain(input, evbuffer_get_length(input))
            switch outcome {
            case .bytes, .wouldBlock: break
            case .endOfStream, .failed: close()
            }
        case .closing:
            events?.stopReading()
        case .closed:
            break
        }
    }

    fileprivate func writable() {
        guard state != .closed else { return }
        switch SocketIO.flush(fd, from: output) {
        case .pending:
            return
        case .failed:
            close()
            return
        case .drained:
            events?.stopWaitingToWrite()
        }
        switch state {
        case .closing: finishClosing()
        case .awaitingHead: process()  // output drained: pipelined requests may go on
        default: break
        }
    }

    /// The client closed its side (or half-closed it).
    private func inputEnded() {
        isInputClosed = true
        events?.stopReading()
        switch state {
        case .awaitingHead, .readingBody: process()  // answers complete buffered requests, then closes
        // Like nginx, treat EOF while the handler works as the client giving up (a half-closing
        // client loses its response): the writer reports `isConnectionAlive == false` at once.
        case .awaitingResponse: close()
        case .lingering: close()
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
                requestID: nil
            )
        case (.body, .readingBody):
            sendError(
                status: 408,
                code: "request_timeout",
                detail: "the request body did not arrive within \(options.bodyTimeoutMilliseconds) ms",
                requestID: head?.headers.first(name: "x-request-id")
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
        case .awaitingHead, .readingBody, .awaitingResponse:
            guard !isInputClosed else { return }
            if evbuffer_get_length(input) >= maxBufferedInputBytes {
                events?.stopReading()
            } else {
                events?.startReading()
            }
        case .closing, .lingering, .closed:
            break
        }
    }

    /// Sends what the socket takes now; waits for EV_WRITE for the rest. False when a socket
    /// error closed the connection.
    private func flushOutput() -> Bool {
        switch SocketIO.flush(fd, from: output) {
        case .drained:
            events?.stopWaitingToWrite()
            return true
        case .pending:
            events?.waitToWrite()
            return true
        case .failed:
            close()
            return false
        }
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
        case .awaitingHead, .readingBody, .awaitingResponse:
            // While EV_WRITE is awaited the socket is full: the write callback sends.
            if outputLength > 0 && !(events?.isWaitingToWrite ?? true) {
                guard flushOutput() else { return }
            }
            updateReading()
        case .closing, .lingering, .closed:
            break
        }
    }

    /// Returns whether the state moved on.
    private func readHead() -> Bool {
        if outputLength > options.maxBufferedOutputBytes {
            // Too much unsent: try to send it, else wait for `writable` before parsing more.
            if events?.isWaitingToWrite ?? true { return false }
            guard flushOutput(), outputLength <= options.maxBufferedOutputBytes else { return false }
        }
        let available = evbuffer_get_length(input)
        if available == 0 {
            if isInputClosed { beginClosing() }
            return false
        }
        if !hasRequestStarted {
            hasRequestStarted = true
            needsHeaderDeadline = true
            scannedHeadBytes = 0
        }
        let limits = options.limits
        let window = min(available, limits.maxHeaderBytes + 1)
        guard let start = evbuffer_pullup(input, window) else { return false }
        let bytes = UnsafeRawBufferPointer(start: start, count: window)
        // A head can only complete or fail at a line end, or when the window is full.
        if window <= limits.maxHeaderBytes && scannedHeadBytes < window
            && !HeadBytes.containsLineFeed(bytes, from: scannedHeadBytes)
        {
            scannedHeadBytes = window
            headIncomplete()
            return false
        }
        switch RequestHeadParser.parse(bytes, limits: limits) {
        case .incomplete:
            scannedHeadBytes = window
            headIncomplete()
            return false
        case .failure(let error):
            sendError(status: error.status, code: error.code, detail: error.detail, requestID: nil)
            return false
        case .complete(let head, let consumed):
            evbuffer_drain(input, consumed)
            return beginBody(head)
        }
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
        chunkedDecoder = nil
        bodyRemaining = 0
        let limits = options.limits
        switch head.framing {
        case .none, .contentLength(0):
            dispatch()
            return true
        case .contentLength(let length):
            guard length <= limits.maxBodyBytes else {
                sendError(
                    status: 413,
                    code: "body_too_large",
                    detail: "Content-Length \(length) exceeds the limit of \(limits.maxBodyBytes) bytes",
                    requestID: head.headers.first(name: "x-request-id")
                )
                return false
            }
            bodyRemaining = length
        case .chunked:
            chunkedDecoder = ChunkedDecoder(maxBodyBytes: limits.maxBodyBytes)
        case .untilClose:
            sendError(
                status: 400,
                code: "bad_request",
                detail: "a request body cannot be delimited by closing the connection",
                requestID: head.headers.first(name: "x-request-id")
            )
            return false
        }
        if head.expectsContinue {
            evbuffer_add(output, ServerConnection.continueLine, ServerConnection.continueLine.count)
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
    private func reusableBody() -> ByteBuffer {
        if isKnownUniquelyReferenced(&spareBody), let spare = spareBody {
            spare.removeAll()
            return spare
        }
        let fresh = ByteBuffer()
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
        let available = evbuffer_get_length(input)
        if var decoder = chunkedDecoder {
            guard available > 0, let start = evbuffer_pullup(input, -1) else {
                bodyIncomplete()
                return false
            }
            let result = decoder.decode(UnsafeRawBufferPointer(start: start, count: available))
            chunkedDecoder = decoder
            switch result {
            case .failure(let error):
                sendError(
                    status: error.status,
                    code: error.code,
                    detail: error.detail,
                    requestID: head?.headers.first(name: "x-request-id")
                )
                return false
            case .success(let progress):
                // Move the payload ranges out (no copy) and drop the chunk framing between them.
                var position = 0
                for range in progress.data {
                    evbuffer_drain(input, range.lowerBound - position)
                    evbuffer_remove_buffer(input, body.evbuffer, range.count)
                    position = range.upperBound
                }
                evbuffer_drain(input, progress.consumed - position)
                if progress.isComplete {
                    dispatch()
                    return true
                }
            }
        } else {
            let length = min(available, bodyRemaining)
            if length > 0 {
                evbuffer_remove_buffer(input, body.evbuffer, length)
                bodyRemaining -= length
            }
            if bodyRemaining == 0 {
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
    func respond(status: Int, headers: HTTPHeaders, body: ByteBuffer) {
        guard state == .awaitingResponse else { return }
        let willClose = write(status: status, headers: headers, body: body, forceClose: false)
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
    private func sendError(status: Int, code: String, detail: String, requestID: String?) {
        let id = requestID ?? System.randomHexID()
        let json =
            "{\"error\":\"\(jsonEscaped(code))\",\"detail\":\"\(jsonEscaped(detail))\","
            + "\"request_id\":\"\(jsonEscaped(id))\"}"
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        _ = write(status: status, headers: headers, body: ByteBuffer(bytes: Array(json.utf8)), forceClose: true)
        beginClosing()
    }

    /// Queues head and body (sent by the caller's flush); returns whether the connection closes
    /// after this response.
    private func write(status: Int, headers: HTTPHeaders, body: ByteBuffer, forceClose: Bool) -> Bool {
        guard state != .closed else { return true }
        let willClose = forceClose || !requestKeepsAlive || isInputClosed || (server?.isDraining ?? true)
        let hasNoBody = (100..<200).contains(status) || status == 204 || status == 304
        let contentLength = hasNoBody ? nil : body.count
        // The handler's fields minus the ones the server writes itself, then `connection`, straight
        // into a buffer kept for its capacity; the status line stays from the last response when
        // the status is the same.
        if !headScratch.reset(keepingPrefix: status == headScratchStatus) {
            HTTPSerializer.appendStatusLine(&headScratch.bytes, status: status)
            headScratch.markPrefix()
            headScratchStatus = status
        }
        // `isFraming` has dropped `content-length` and `transfer-encoding`: no second check per field.
        for field in headers.fields where !ServerConnection.isFraming(field.name) {
            HTTPSerializer.appendField(&headScratch.bytes, name: field.name, value: field.value, droppingFraming: false)
        }
        if willClose {
            HeadBytes.append(&headScratch.bytes, "connection: close\r\n")
        } else if requestIsHTTP10 {
            HeadBytes.append(&headScratch.bytes, "connection: keep-alive\r\n")
        }
        HeadBytes.appendEnd(&headScratch.bytes, contentLength: contentLength)
        let sendsBody = !hasNoBody && !requestIsHEAD
        // A response given outside `process` (after an upstream answered) with nothing queued before
        // it goes out at once with a small body in the same buffer: no output chain when it all goes.
        // Inside `process`, responses are queued so a pipelined batch leaves in one write.
        if !isProcessing && outputLength == 0 && !(events?.isWaitingToWrite ?? true)
            && (!sendsBody || body.count <= ByteBuffer.maxCopiedBytes)
        {
            if sendsBody { HeadBytes.appendBytes(of: body, to: &headScratch.bytes) }
            // Bytes the socket did not take stay queued; the caller's flush sends them or reports the error.
            _ = headScratch.bytes.withUnsafeBytes { raw in SocketIO.sendOrQueue(fd, raw, output: output) }
            return willClose
        }
        headScratch.bytes.withUnsafeBytes { raw in _ = evbuffer_add(output, raw.baseAddress, raw.count) }
        if sendsBody {
            ByteBuffer.addCopy(of: body.evbuffer, to: output)
        }
        return willClose
    }

    /// Fields the server writes itself.
    private static func isFraming(_ name: String) -> Bool {
        switch name.utf8.count {
        case 10: return name.asciiCaseInsensitiveEquals("connection") || name.asciiCaseInsensitiveEquals("keep-alive")
        case 14: return name.asciiCaseInsensitiveEquals("content-length")
        case 17: return name.asciiCaseInsensitiveEquals("transfer-encoding")
        default: return false
        }
    }

    // MARK: Closing

    private func beginClosing() {
        guard state != .closing, state != .lingering, state != .closed else { return }
        state = .closing
        events?.stopReading()
        setDeadline(.linger)
        if events?.isWaitingToWrite ?? false { return }  // the write callback finishes
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
        _ = switchyard_shutdown_write(fd)
        evbuffer_drain(input, evbuffer_get_length(input))
        events?.startReading()
    }

    /// Frees the events, closes the socket and releases libevent's retain. Idempotent.
    func close() {
        guard state != .closed else { return }
        let wasAwaitingResponse = state == .awaitingResponse
        state = .closed
        timer?.cancel()
        events?.free()
        evutil_closesocket(fd)
        fd = -1
        body = nil
        spareBody = nil
        spareWriter = nil  // it holds this connection
        if wasAwaitingResponse { server?.requestFinished() }
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
    // Accept errors (EMFILE, ENFILE) land here; the listener stays enabled and the next accept
    // may succeed once descriptors are freed.
    static let acceptError: evconnlistener_errorcb = { _, _ in }
    static let io: event_callback_fn = { _, what, arg in
        let connection = Unmanaged<ServerConnection>.fromOpaque(arg!).takeUnretainedValue()
        withExtendedLifetime(connection) {
            if what & Int16(EV_READ) != 0 { connection.readable() }
            if what & Int16(EV_WRITE) != 0 { connection.writable() }
        }
    }
}
