internal import CLibevent
internal import CNGHTTP2
import HTTP1

// The client side of HTTP/2, for `HTTP2Pool`: an nghttp2 client session over the connection
// core's `ConnectionSocket`, driven by the loop's events as the server session is. What the
// socket reads goes to `nghttp2_session_mem_recv`; what nghttp2 sends lands in the socket's
// output buffer through the send callback. nghttp2 callbacks only record what happened; calls
// complete, and the pool hears of room or failure, once nghttp2 has returned, so no completion
// or new stream runs inside nghttp2.

/// One request stream of a client connection: the call it carries and what arrived of its answer.
final class HTTP2ClientStream {
    var id: Int32 = 0
    /// Nil once the call has completed or given up (timed out): the stream is then only waited
    /// out until nghttp2 closes it.
    var call: HTTP2Call?
    /// The request body still to send (a copy: the caller's buffer is left intact).
    let requestBody = EventBuffer()
    var status: Int?
    var headers = HTTPHeaders()
    var trailers = HTTPHeaders()
    /// The response's first HEADERS frame ended the stream.
    var isTrailersOnly = false
    var hasHeaders = false
    let body = EventBuffer()
    var headerListBytes = 0
    /// Why the answer is unusable, found by a callback (too large, malformed).
    var failure: UpstreamError?
    /// END_STREAM arrived: the answer is whole.
    var isComplete = false
    var startedNanoseconds: UInt64 = 0
    var firstByteNanoseconds: UInt64 = 0
    /// Any frame of the answer arrived (a stream the server saw, so never retried).
    var hasResponseBytes = false
}

/// One HTTP/2 connection to a gRPC backend. Owned by its `HTTP2Pool` (strongly, in its lists)
/// from `connect` until `close`, which frees the events, closes the socket and frees the session.
final class HTTP2ClientConnection {
    enum State {
        /// TCP connect, TLS handshake, or waiting for the server's first SETTINGS (which says how
        /// many streams it takes, as gRPC clients wait for it): calls given to it wait in `pending`.
        case connecting
        case ready
        /// GOAWAY received: the streams it allowed finish, nothing new starts.
        case draining
        case closed
    }

    /// Connection output above which nghttp2 is asked to wait until the socket takes some.
    static let outputHighWaterBytes = 256 * 1024
    /// Per-stream and connection receive windows: a 4 MiB message arrives without a round trip
    /// per 64 KiB.
    static let streamWindowBytes: UInt32 = 4 << 20
    static let connectionWindowBytes: Int32 = 16 << 20
    /// Times a call the server refused unprocessed is retried on another connection.
    static let maxRetries = 2

    private weak var pool: HTTP2Pool?
    private let loop: EventLoop
    private let endpoint: String
    private let host: String
    private let port: Int
    private let authority: String
    private let scheme: String
    private let maxResponseBytes: Int
    private let maxHeaderListBytes: Int
    private let idleTimeoutMilliseconds: Int
    private let tlsContext: TLSClientContext?

    private var socket = ConnectionSocket(fd: -1)
    private(set) var state = State.connecting
    private var session: OpaquePointer?
    private var handshake: TLSSession?
    private var isTCPConnected = false
    private var timer: DeadlineTimer?

    private var streams: [Int32: HTTP2ClientStream] = [:]
    /// Calls given to the connection before it was ready.
    private var pending: [HTTP2Call] = []
    /// Results found inside nghttp2 callbacks, delivered once it has returned.
    private var results: [(HTTP2Call, Result<GRPCResponse, UpstreamError>)] = []
    /// Calls the server refused unprocessed (GOAWAY, REFUSED_STREAM), to go back to the pool.
    private var refused: [HTTP2Call] = []
    private var roomChanged = false
    /// The server's first SETTINGS frame has arrived: `capacity` is what it allows.
    private var peerSettingsReceived = false
    private var goawayReceived = false
    private var isPumping = false
    private var needsPump = false
    private var isDelivering = false

    // Request header scratch, kept for its capacity.
    private var nvBytes: [UInt8] = []
    private var nvSpans: [(name: Int, nameLength: Int, value: Int, valueLength: Int)] = []

    init(pool: HTTP2Pool) {
        self.pool = pool
        self.loop = pool.loop
        self.endpoint = pool.endpoint
        self.host = pool.host
        self.port = pool.port
        self.authority = pool.authority
        self.scheme = pool.scheme
        self.maxResponseBytes = pool.maxResponseBytes
        self.maxHeaderListBytes = pool.maxHeaderListBytes
        self.idleTimeoutMilliseconds = pool.idleTimeoutMilliseconds
        self.tlsContext = pool.tls
    }

    deinit {
        socket.close()
        socket.freeBuffers()
        if let session { nghttp2_session_del(session) }
    }

    /// Streams open or calls waiting to open one.
    var load: Int { streams.count + pending.count }

    /// The most streams the server allows at once (100 until its SETTINGS say, as nghttp2 assumes).
    var capacity: Int {
        guard let session else { return 100 }
        let value = nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
        return Int(min(value, 1 << 20))
    }

    private var isOpenForStreams: Bool { state == .connecting || state == .ready }

    /// May take another call now.
    var hasRoom: Bool { (state == .connecting || state == .ready) && load < capacity }

    // MARK: Connecting

    /// Starts a non-blocking connect; returns why it failed at once, or nil.
    func connect(address: UnsafePointer<sockaddr>, length: Int32) -> String? {
        var inProgress: Int32 = 0
        var error: Int32 = 0
        let fd = switchyard_connect(address, length, &inProgress, &error)
        guard fd >= 0 else {
            state = .closed
            return "connect to \(endpoint) failed: \(System.errorText(error))"
        }
        timer = DeadlineTimer(loop: loop) { [unowned self] in self.idleDeadlinePassed() }
        socket.attach(
            fd: fd,
            base: loop.base,
            callback: HTTP2ClientCallbacks.io,
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

    private func socketConnected() {
        isTCPConnected = true
        guard let tlsContext else {
            becomeReady()
            return
        }
        handshake = TLSSession(context: tlsContext, fd: socket.fd, host: host, port: port)
        socket.waitToWrite()
    }

    private func continueHandshake() {
        guard let tls = handshake else { return }
        switch tls.handshake() {
        case .done:
            handshake = nil
            socket.stopWaitingToWrite()
            guard tls.negotiatedProtocol == "h2" else {
                let chosen = tls.negotiatedProtocol.map { "chose ALPN \"\($0)\"" } ?? "chose no ALPN protocol"
                failToConnect(.tlsFailed("the backend does not speak HTTP/2 over TLS: it \(chosen), not \"h2\""))
                return
            }
            socket.tls = tls
            becomeReady()
            // Bytes OpenSSL read past the handshake (the server's SETTINGS) would not wake the loop.
            if tls.hasBufferedInput { socket.activateRead() }
        case .wantRead:
            socket.stopWaitingToWrite()
        case .wantWrite:
            socket.waitToWrite()
        case .failed(let detail):
            handshake = nil
            failToConnect(.tlsFailed(detail))
        }
    }

    /// Makes the nghttp2 session and sends the preface and our SETTINGS; streams start once the
    /// server's SETTINGS arrive (`deliver`).
    private func becomeReady() {
        guard state == .connecting, session == nil else { return }
        guard makeSession() else {
            failToConnect(.connectFailed("connect to \(endpoint) failed: cannot create an HTTP/2 session"))
            return
        }
        pump()
    }

    /// The server's SETTINGS arrived: the waiting calls start, as many as it allows; the rest go
    /// back to the pool (for another connection).
    private func startPending() {
        state = .ready
        let waiting = pending
        pending = []
        let room = capacity
        var overflow: [HTTP2Call] = []
        for call in waiting where !call.isFinished {
            if streams.count < room {
                submit(call)
            } else {
                call.connection = nil
                overflow.append(call)
            }
        }
        if !overflow.isEmpty { pool?.retry(overflow) }
        pump()
    }

    private func makeSession() -> Bool {
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { return false }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_send_callback(callbacks, HTTP2ClientCallbacks.send)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, HTTP2ClientCallbacks.beginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, HTTP2ClientCallbacks.header)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, HTTP2ClientCallbacks.dataChunk)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, HTTP2ClientCallbacks.frameReceived)
        nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, HTTP2ClientCallbacks.frameNotSent)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, HTTP2ClientCallbacks.streamClosed)

        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0, let option else { return false }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_closed_streams(option, 1)

        var created: OpaquePointer?
        let me = Unmanaged.passUnretained(self).toOpaque()
        guard nghttp2_session_client_new2(&created, callbacks, me, option) == 0, let created else { return false }
        session = created
        var settings: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                value: HTTP2ClientConnection.streamWindowBytes
            ),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                value: UInt32(clamping: maxHeaderListBytes)
            ),
        ]
        _ = nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        _ = nghttp2_session_set_local_window_size(
            created,
            UInt8(NGHTTP2_FLAG_NONE.rawValue),
            0,
            HTTP2ClientConnection.connectionWindowBytes
        )
        return true
    }

    /// Connect or TLS failed: every call given to the connection fails with `error`.
    private func failToConnect(_ error: UpstreamError) {
        let calls = pending
        pending = []
        // The queue fails first: closing lets the pool dispatch it, to the same dead address.
        pool?.connectionFailedToConnect(self, error: error)
        close(error: error)
        for call in calls { results.append((call, .failure(error))) }
        deliver()
    }

    // MARK: Calls

    /// Opens a stream for `call` now, or once connected.
    func start(_ call: HTTP2Call) {
        loop.assertInLoop()
        call.connection = self
        switch state {
        case .connecting:
            pending.append(call)
        case .ready:
            submit(call)
            pump()
            deliver()
        case .draining, .closed:
            pool?.retry([call])
        }
    }

    private func submit(_ call: HTTP2Call) {
        guard let session else { return }
        let remaining = call.deadline - System.monotonicMilliseconds()
        let stream = HTTP2ClientStream()
        stream.call = call
        EventBuffer.addCopy(of: call.request.body.evbuffer, to: stream.requestBody.evbuffer)
        stream.startedNanoseconds = System.monotonicNanoseconds()
        let timeout = GRPCFraming.timeoutValue(milliseconds: Int(max(1, remaining)))
        let id = withRequestFields(call.request, timeout: timeout) { nva, count -> Int32 in
            var source = nghttp2_data_source()
            source.ptr = Unmanaged.passUnretained(stream).toOpaque()
            var provider = nghttp2_data_provider(source: source, read_callback: HTTP2ClientCallbacks.read)
            return nghttp2_submit_request(session, nil, nva, count, &provider, nil)
        }
        guard id > 0 else {
            if id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE.rawValue {
                // 2^30 streams used up on this connection: retire it, the call goes on another.
                goawayReceived = true
                refused.append(call)
                return
            }
            // Never completes inside `HTTP2Pool.call`, which may have led here.
            let error = UpstreamError.badResponse("cannot start an HTTP/2 stream to \(endpoint): nghttp2 error \(id)")
            loop.runSoon { call.finish(.failure(error)) }
            return
        }
        stream.id = id
        streams[id] = stream
        timer?.clear()
    }

    /// The call timed out: reset its stream (CANCEL); the connection goes on.
    func cancel(_ call: HTTP2Call) {
        if let index = pending.firstIndex(where: { $0 === call }) {
            pending.remove(at: index)
            // Nobody waits for a connection that has not come up in time any more.
            if pending.isEmpty && state == .connecting { close(error: .timeout) }
            return
        }
        guard let stream = streams.values.first(where: { $0.call === call }) else { return }
        stream.call = nil
        if let session {
            _ = nghttp2_submit_rst_stream(
                session,
                UInt8(NGHTTP2_FLAG_NONE.rawValue),
                stream.id,
                NGHTTP2_CANCEL.rawValue
            )
        }
        pump()
    }

    /// Lays out the request's fields as nghttp2 name/value pairs in reused scratch (nghttp2 copies
    /// them on submit).
    private func withRequestFields(
        _ request: GRPCRequest,
        timeout: String,
        _ body: (UnsafePointer<nghttp2_nv>, Int) -> Int32
    ) -> Int32 {
        nvBytes.removeAll(keepingCapacity: true)
        nvSpans.removeAll(keepingCapacity: true)
        func add(_ name: String, _ value: String) {
            let nameStart = nvBytes.count
            for byte in name.utf8 { nvBytes.append(byte >= 65 && byte <= 90 ? byte | 0x20 : byte) }
            let valueStart = nvBytes.count
            nvBytes.append(contentsOf: value.utf8)
            nvSpans.append((nameStart, valueStart - nameStart, valueStart, nvBytes.count - valueStart))
        }
        add(":method", "POST")
        add(":scheme", scheme)
        add(":path", request.path)
        add(":authority", authority)
        let contentType = request.metadata.first(name: "content-type").flatMap {
            GRPCFraming.isGRPC(contentType: $0) ? $0 : nil
        }
        add("content-type", contentType ?? "application/grpc")
        add("te", "trailers")
        add("grpc-timeout", timeout)
        for field in request.metadata.fields where HTTP2ClientConnection.isSent(field.name, field.value) {
            add(field.name, field.value)
        }
        let spans = nvSpans
        return nvBytes.withUnsafeMutableBufferPointer { bytes in
            withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(spans.count, 1)) { nva in
                let base = bytes.baseAddress ?? UnsafeMutablePointer<UInt8>(bitPattern: 1)!
                for (index, span) in spans.enumerated() {
                    nva[index] = nghttp2_nv(
                        name: base + span.name,
                        value: base + span.value,
                        namelen: span.nameLength,
                        valuelen: span.valueLength,
                        flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)
                    )
                }
                return body(UnsafePointer(nva.baseAddress!), spans.count)
            }
        }
    }

    /// Whether a metadata field goes to the backend: not a pseudo-field, not one the pool writes,
    /// not connection-specific (RFC 9113 §8.2.2), and with a value that holds no CR, LF or NUL.
    static func isSent(_ name: String, _ value: String) -> Bool {
        guard let first = name.utf8.first, first != UInt8(ascii: ":") else { return false }
        for byte in value.utf8 where byte == 0 || byte == 10 || byte == 13 { return false }
        for byte in name.utf8 where byte <= 32 || byte >= 127 { return false }
        switch name.utf8.count {
        case 2: return !name.asciiCaseInsensitiveEquals("te")
        case 4: return !name.asciiCaseInsensitiveEquals("host")
        case 7: return !name.asciiCaseInsensitiveEquals("upgrade")
        case 10:
            return !(name.asciiCaseInsensitiveEquals("connection") || name.asciiCaseInsensitiveEquals("keep-alive"))
        case 12:
            return !(name.asciiCaseInsensitiveEquals("content-type") || name.asciiCaseInsensitiveEquals("grpc-timeout"))
        case 14: return !name.asciiCaseInsensitiveEquals("content-length")
        case 16: return !name.asciiCaseInsensitiveEquals("proxy-connection")
        case 17: return !name.asciiCaseInsensitiveEquals("transfer-encoding")
        default: return true
        }
    }

    // MARK: nghttp2 callbacks

    fileprivate func readBody(
        _ stream: HTTP2ClientStream,
        into buffer: UnsafeMutablePointer<UInt8>,
        length: Int,
        flags: UnsafeMutablePointer<UInt32>
    ) -> Int {
        let taken = Int(evbuffer_remove(stream.requestBody.evbuffer, buffer, length))
        if stream.requestBody.count == 0 { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        return max(0, taken)
    }

    fileprivate func send(_ data: UnsafePointer<UInt8>, length: Int) -> Int {
        let output = socket.output
        if evbuffer_get_length(output) > HTTP2ClientConnection.outputHighWaterBytes {
            return Int(NGHTTP2_ERR_WOULDBLOCK.rawValue)
        }
        evbuffer_add(output, data, length)
        return length
    }

    fileprivate func beginHeaders(streamID: Int32) -> Int32 {
        guard let stream = streams[streamID] else { return 0 }
        stream.hasResponseBytes = true
        if stream.firstByteNanoseconds == 0 {
            stream.firstByteNanoseconds = System.monotonicNanoseconds() &- stream.startedNanoseconds
        }
        stream.headerListBytes = 0
        return 0
    }

    fileprivate func header(streamID: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Int32 {
        guard let stream = streams[streamID], stream.failure == nil else { return 0 }
        stream.headerListBytes += name.count + value.count + 32
        if stream.headerListBytes > maxHeaderListBytes {
            stream.failure = .badResponse(
                "upstream response header list exceeds the limit of \(maxHeaderListBytes) bytes"
            )
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
        }
        let nameText = String(decoding: name, as: UTF8.self)
        let valueText = String(decoding: value, as: UTF8.self)
        if nameText == ":status" {
            if stream.hasHeaders { return 0 }  // trailers carry no :status (nghttp2 refuses them)
            let status = Int(valueText) ?? 0
            if status < 200 {
                stream.headers = HTTPHeaders()  // an interim response: the real one follows
                return 0
            }
            stream.status = status
            return 0
        }
        if nameText.utf8.first == UInt8(ascii: ":") { return 0 }
        if stream.hasHeaders {
            stream.trailers.add(name: nameText, value: valueText)
        } else {
            stream.headers.add(name: nameText, value: valueText)
        }
        return 0
    }

    fileprivate func dataChunk(streamID: Int32, data: UnsafeRawBufferPointer) -> Int32 {
        guard let stream = streams[streamID], stream.failure == nil, stream.call != nil else { return 0 }
        stream.hasResponseBytes = true
        if stream.body.count + data.count > maxResponseBytes {
            stream.failure = .badResponse("upstream response body exceeds the limit of \(maxResponseBytes) bytes")
            stream.body.removeAll()
            if let session {
                _ = nghttp2_submit_rst_stream(
                    session,
                    UInt8(NGHTTP2_FLAG_NONE.rawValue),
                    streamID,
                    NGHTTP2_CANCEL.rawValue
                )
            }
            return 0
        }
        evbuffer_add(stream.body.evbuffer, data.baseAddress, data.count)
        return 0
    }

    fileprivate func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let header = frame.pointee.hd
        let endsStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch UInt32(header.type) {
        case NGHTTP2_HEADERS.rawValue:
            guard let stream = streams[header.stream_id] else { return 0 }
            if stream.status != nil && !stream.hasHeaders {
                stream.hasHeaders = true
                if endsStream {
                    stream.isTrailersOnly = true
                    stream.trailers = stream.headers
                    stream.headers = HTTPHeaders()
                }
            }
            if endsStream { complete(stream) }
        case NGHTTP2_DATA.rawValue:
            guard endsStream, let stream = streams[header.stream_id] else { return 0 }
            complete(stream)
        case NGHTTP2_SETTINGS.rawValue:
            if header.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 { peerSettingsReceived = true }
            roomChanged = true
        case NGHTTP2_GOAWAY.rawValue:
            goawayReceived = true
        default:
            break
        }
        return 0
    }

    fileprivate func frameNotSent(_ frame: UnsafePointer<nghttp2_frame>, error: Int32) -> Int32 {
        // A request's HEADERS nghttp2 would not send (after GOAWAY, the stream is not allowed):
        // the server never saw it.
        guard UInt32(frame.pointee.hd.type) == NGHTTP2_HEADERS.rawValue,
            let stream = streams.removeValue(forKey: frame.pointee.hd.stream_id), let call = stream.call
        else { return 0 }
        stream.call = nil
        refuse(call, detail: "nghttp2 error \(error)")
        return 0
    }

    fileprivate func streamClosed(streamID: Int32, errorCode: UInt32) {
        roomChanged = true
        guard let stream = streams.removeValue(forKey: streamID), let call = stream.call else { return }
        stream.call = nil
        if let failure = stream.failure {
            results.append((call, .failure(failure)))
        } else if errorCode == NGHTTP2_REFUSED_STREAM.rawValue && !stream.hasResponseBytes {
            refuse(call, detail: "REFUSED_STREAM")
        } else if errorCode == NGHTTP2_NO_ERROR.rawValue && stream.isComplete {
            results.append((call, answer(stream)))
        } else {
            let reason = nghttp2_http2_strerror(errorCode).map { String(cString: $0) } ?? "code \(errorCode)"
            results.append((call, .failure(.badResponse("upstream reset the HTTP/2 stream (\(reason))"))))
        }
    }

    /// END_STREAM arrived: the call completes now (its stream may stay open a moment, until our
    /// own side ends or is reset).
    private func complete(_ stream: HTTP2ClientStream) {
        stream.isComplete = true
        guard let call = stream.call else { return }
        if let failure = stream.failure {
            stream.call = nil
            results.append((call, .failure(failure)))
            return
        }
        stream.call = nil
        results.append((call, answer(stream)))
        // The answer came before our request ended (an early error): stop sending it.
        if let session, nghttp2_session_get_stream_local_close(session, stream.id) == 0 {
            _ = nghttp2_submit_rst_stream(
                session,
                UInt8(NGHTTP2_FLAG_NONE.rawValue),
                stream.id,
                NGHTTP2_NO_ERROR.rawValue
            )
        }
    }

    /// A call the server did not process: back to the pool, unless it was refused too often.
    private func refuse(_ call: HTTP2Call, detail: String) {
        if call.retries < HTTP2ClientConnection.maxRetries {
            call.retries += 1
            refused.append(call)
        } else {
            results.append((call, .failure(.connectFailed("\(endpoint) refused the stream (\(detail))"))))
        }
    }

    /// A whole answer as the caller sees it, or why it is not a gRPC answer.
    private func answer(_ stream: HTTP2ClientStream) -> Result<GRPCResponse, UpstreamError> {
        guard let status = stream.status else {
            return .failure(.badResponse("upstream HTTP/2 response has no :status"))
        }
        let fields = stream.isTrailersOnly ? stream.trailers : stream.headers
        let grpcStatusText = stream.trailers.first(name: "grpc-status")
        let message = stream.trailers.first(name: "grpc-message").map(GRPCFraming.percentDecode)
        let grpcStatus: GRPCStatus
        if let grpcStatusText {
            guard let code = Int(grpcStatusText) else {
                return .failure(.badResponse("upstream grpc-status \"\(grpcStatusText)\" is not a number"))
            }
            grpcStatus = GRPCStatus(rawValue: code) ?? .unknown
        } else if status != 200 {
            grpcStatus = GRPCStatus.fromHTTPStatus(status)
        } else {
            return .failure(.badResponse("upstream gRPC response ended without grpc-status"))
        }
        if status == 200 {
            let contentType = fields.first(name: "content-type") ?? ""
            guard GRPCFraming.isGRPC(contentType: contentType) else {
                return .failure(.badResponse("upstream answered content-type \"\(contentType)\", not application/grpc"))
            }
            if stream.body.count > 0 {
                let framing = stream.body.withUnsafeReadableBytes {
                    GRPCFraming.messages(in: $0, maxMessageBytes: .max, encoding: fields.first(name: "grpc-encoding"))
                }
                if case .failure(let error) = framing {
                    return .failure(.badResponse("upstream gRPC response body: \(error.message)"))
                }
            }
        }
        return .success(
            GRPCResponse(
                httpStatus: status,
                headers: stream.headers,
                body: stream.body,
                trailers: stream.trailers,
                isTrailersOnly: stream.isTrailersOnly,
                status: grpcStatus,
                message: message.flatMap { $0.isEmpty ? nil : $0 },
                firstByteNanoseconds: stream.firstByteNanoseconds
            )
        )
    }

    // MARK: Events

    fileprivate func readable() {
        if handshake != nil {
            continueHandshake()
            return
        }
        guard session != nil, state != .closed else {
            if state == .connecting && !isTCPConnected { writable() }
            return
        }
        let outcome = socket.read(scratch: loop.readScratch)
        if let tls = socket.tls {
            if tls.hasBufferedInput { socket.activateRead() }
            if tls.needsWritableToRead { socket.waitToWrite() }
        }
        switch outcome {
        case .bytes:
            received()
        case .wouldBlock:
            break
        case .endOfStream:
            if socket.inputLength > 0 { received() }
            if state == .connecting, let tls = socket.tls {
                // A server that refuses the client's certificate (or its absence) may close
                // without an alert we can still read.
                failToConnect(
                    .tlsFailed(
                        tls.failureDetail
                            ?? "the backend closed the connection right after the TLS handshake, before any HTTP/2 frame (does it require a client certificate?)"
                    )
                )
                return
            }
            lost("upstream closed the HTTP/2 connection")
        case .failed(let error):
            // TLS 1.3 refuses a missing client certificate after the handshake, on the first
            // read: before the server's SETTINGS, a TLS failure like one in the handshake.
            if state == .connecting, let detail = socket.tls?.failureDetail {
                failToConnect(.tlsFailed(detail))
                return
            }
            lost("upstream HTTP/2 connection failed: \(socket.tls?.failureDetail ?? System.errorText(error))")
        }
    }

    fileprivate func writable() {
        guard state != .closed else { return }
        if handshake != nil {
            continueHandshake()
            return
        }
        if !isTCPConnected {
            let error = switchyard_socket_error(socket.fd)
            if error != 0 {
                failToConnect(.connectFailed("connect to \(endpoint) failed: \(System.errorText(error))"))
                return
            }
            socket.stopWaitingToWrite()
            socketConnected()
            return
        }
        if socket.tls?.needsWritableToRead ?? false {
            socket.stopWaitingToWrite()
            readable()
            return
        }
        pump()
        deliver()
    }

    /// Feeds what the socket read to nghttp2, then sends what that produced and delivers results.
    private func received() {
        guard let session, state != .closed else { return }
        let input = socket.input
        var failure = 0
        withUnsafeTemporaryAllocation(of: iovec.self, capacity: 8) { vectors in
            while failure == 0 && evbuffer_get_length(input) > 0 {
                let count = Int(evbuffer_peek(input, -1, nil, vectors.baseAddress, 8))
                var consumed = 0
                for vector in vectors.prefix(min(count, 8)) where vector.iov_len > 0 {
                    let result = nghttp2_session_mem_recv(
                        session,
                        vector.iov_base.assumingMemoryBound(to: UInt8.self),
                        vector.iov_len
                    )
                    if result < 0 {
                        failure = result
                        break
                    }
                    consumed += result
                }
                evbuffer_drain(input, consumed)
                if count <= 0 { break }
            }
        }
        if failure != 0 {
            let reason = nghttp2_strerror(Int32(failure)).map { String(cString: $0) } ?? "error \(failure)"
            lost("upstream HTTP/2 protocol error: \(reason)")
            return
        }
        pump()
        deliver()
    }

    /// Lets nghttp2 write what it has queued, sends what the socket takes, and closes a session
    /// with nothing left to do.
    private func pump() {
        if isPumping {
            needsPump = true
            return
        }
        isPumping = true
        defer { isPumping = false }
        repeat {
            needsPump = false
            guard let session, state != .closed else { return }
            if nghttp2_session_send(session) != 0 {
                lost("HTTP/2 session to \(endpoint) failed to send")
                return
            }
            if socket.outputLength > 0 && !socket.isWaitingToWrite {
                if case .failed(let error) = socket.flush() {
                    lost("upstream HTTP/2 connection failed: \(socket.tls?.failureDetail ?? System.errorText(error))")
                    return
                }
            }
        } while needsPump
    }

    /// Completes calls and tells the pool what changed, outside nghttp2's callbacks.
    private func deliver() {
        guard !isDelivering else { return }
        isDelivering = true
        defer { isDelivering = false }
        while !results.isEmpty || !refused.isEmpty || roomChanged || (goawayReceived && isOpenForStreams) {
            if goawayReceived && isOpenForStreams {
                state = .draining
                for call in pending where !call.isFinished { refuse(call, detail: "GOAWAY") }
                pending = []
                pool?.connectionRetiring(self)
            } else if state == .connecting && peerSettingsReceived {
                startPending()
            }
            let done = results
            results = []
            for (call, result) in done { call.finish(result) }
            let again = refused
            refused = []
            if !again.isEmpty {
                for call in again { call.connection = nil }
                pool?.retry(again.filter { !$0.isFinished })
            }
            if roomChanged {
                roomChanged = false
                pool?.roomChanged()
            }
        }
        guard state == .ready || state == .draining else { return }
        if streams.isEmpty {
            if state == .draining || pool?.isClosed ?? true {
                close(error: .closed)
                return
            }
            timer?.set(System.monotonicMilliseconds() + Int64(idleTimeoutMilliseconds))
        }
    }

    private func idleDeadlinePassed() {
        guard state == .ready, streams.isEmpty, pending.isEmpty else { return }
        if let session {
            _ = nghttp2_session_terminate_session(session, NGHTTP2_NO_ERROR.rawValue)
            _ = nghttp2_session_send(session)
            _ = socket.flush()
        }
        close(error: .closed)
    }

    /// The connection broke: every call on it fails (those the server never saw are retried).
    private func lost(_ detail: String) {
        guard state != .closed else { return }
        let open = Array(streams.values)
        streams.removeAll()
        for stream in open {
            guard let call = stream.call else { continue }
            stream.call = nil
            if let failure = stream.failure {
                results.append((call, .failure(failure)))
            } else {
                results.append((call, .failure(.badResponse("\(detail) before the response ended"))))
            }
        }
        close(error: .badResponse(detail))
        deliver()
    }

    /// Frees the events, closes the socket, frees the session and tells the pool. Calls still
    /// pending fail with `error`. Idempotent.
    func close(error: UpstreamError) {
        guard state != .closed else { return }
        state = .closed
        timer?.cancel()
        socket.close()
        if let session { nghttp2_session_del(session) }
        session = nil
        let calls = pending
        pending = []
        for call in calls { results.append((call, .failure(error))) }
        pool?.connectionClosed(self)
    }
}

/// nghttp2's and libevent's callbacks: each finds its `HTTP2ClientConnection` in its argument.
enum HTTP2ClientCallbacks {
    @inline(__always)
    static func owner(_ pointer: UnsafeMutableRawPointer?) -> HTTP2ClientConnection {
        Unmanaged<HTTP2ClientConnection>.fromOpaque(pointer!).takeUnretainedValue()
    }

    static let io: event_callback_fn = { _, what, arg in
        let connection = owner(arg)
        withExtendedLifetime(connection) {
            if what & Int16(EV_READ) != 0 { connection.readable() }
            if what & Int16(EV_WRITE) != 0 { connection.writable() }
        }
    }

    static let send: nghttp2_send_callback = { _, data, length, _, user in
        owner(user).send(data!, length: length)
    }

    static let read: nghttp2_data_source_read_callback = { _, _, buffer, length, flags, source, user in
        let stream = Unmanaged<HTTP2ClientStream>.fromOpaque(source!.pointee.ptr).takeUnretainedValue()
        return owner(user).readBody(stream, into: buffer!, length: length, flags: flags!)
    }

    static let beginHeaders: nghttp2_on_begin_headers_callback = { _, frame, user in
        owner(user).beginHeaders(streamID: frame!.pointee.hd.stream_id)
    }

    static let header: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, user in
        owner(user).header(
            streamID: frame!.pointee.hd.stream_id,
            name: UnsafeRawBufferPointer(start: name, count: nameLength),
            value: UnsafeRawBufferPointer(start: value, count: valueLength)
        )
    }

    static let dataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, user in
        owner(user).dataChunk(streamID: streamID, data: UnsafeRawBufferPointer(start: data, count: length))
    }

    static let frameReceived: nghttp2_on_frame_recv_callback = { _, frame, user in
        owner(user).frameReceived(frame!)
    }

    static let frameNotSent: nghttp2_on_frame_not_send_callback = { _, frame, error, user in
        owner(user).frameNotSent(frame!, error: error)
    }

    static let streamClosed: nghttp2_on_stream_close_callback = { _, streamID, errorCode, user in
        owner(user).streamClosed(streamID: streamID, errorCode: errorCode)
        return 0
    }
}
