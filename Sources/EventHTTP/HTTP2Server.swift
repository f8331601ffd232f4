internal import CLibevent
internal import CNGHTTP2
import HTTP1

// HTTP/2 on the data port (SPEC §13): h2c with prior knowledge. A `ServerConnection` whose first
// bytes are the HTTP/2 preface hands its socket to an `HTTP2ServerSession`, an nghttp2 server
// session driven by the same loop events: what the socket reads is fed to
// `nghttp2_session_mem_recv`, and what nghttp2 sends lands in the connection's output buffer
// through its send callbacks (DATA payloads are moved there from the response's buffer, not
// copied). nghttp2 runs no loop of its own. Each stream becomes a `ServerRequest` for the same
// handler HTTP/1.1 requests go to, answered through the same `ResponseWriter`.

/// The first 24 bytes an HTTP/2 client sends (RFC 9113 §3.4).
let http2Preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

/// What the start of a connection's input says about HTTP/2, asked only once the HTTP/1.1
/// parser has refused it (so the HTTP/1.1 path pays nothing): `nil` when it is not the HTTP/2
/// preface, `false` while it is a proper prefix of it, `true` once all 24 bytes are there.
func http2PrefaceState(_ input: OpaquePointer) -> Bool? {
    let available = min(evbuffer_get_length(input), http2Preface.count)
    guard available > 0, let start = evbuffer_pullup(input, available) else { return nil }
    for index in 0..<available where start[index] != http2Preface[index] { return nil }
    return available == http2Preface.count
}

/// One HTTP/2 request stream: what arrived of its request, then the state of its response.
final class HTTP2Stream {
    let id: Int32
    unowned let session: HTTP2ServerSession
    /// When its HEADERS began (monotonic milliseconds): the request must be whole within the
    /// header and body deadlines from here.
    let startedAt: Int64

    // The request.
    var method = ""
    var path = ""
    var authority: String?
    var headers = HTTPHeaders()
    /// Header list size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (name + value + 32 per field).
    var headerListBytes = 0
    var headersTooLarge = false
    var isGRPC = false
    var grpcEncoding: String?
    /// The first gRPC message prefix has been checked against the limit.
    var grpcPrefixChecked = false
    let body = EventBuffer()
    /// Body bytes counted in the session's `bufferedRequestBytes`.
    var accountedBytes = 0
    /// Refused (over the concurrency limit) or answered early (a limit): nothing more of the
    /// request is kept.
    var isRejected = false
    /// Counts against the concurrency limit (every stream not refused), until it closes.
    var isActive = false
    var requestComplete = false
    var isDispatched = false
    /// The handler's request counts in `HTTPServer.activeRequests` (until answered or gone).
    var isCounted = false
    /// The client reset the stream.
    var resetByClient = false
    var isClosed = false

    // The response.
    var hasResponded = false
    /// The response's last frame has been queued (END_STREAM, trailers or RST_STREAM).
    var responseEnded = false
    /// The body still to go out (moved into the socket's output frame by frame).
    var outBody: EventBuffer?
    /// No more body will be added (a whole response, or a finished stream).
    var outFinished = false
    var trailers: HTTPHeaders?
    var isStreaming = false
    var isPaused = false
    weak var writer: ResponseWriter?

    init(id: Int32, session: HTTP2ServerSession, startedAt: Int64) {
        self.id = id
        self.session = session
        self.startedAt = startedAt
    }

    /// The handler may still answer: the stream and its connection are open.
    var isAwaitingResponse: Bool { !isClosed && !responseEnded && session.isOpen }
}

/// The HTTP/2 role of one client connection, over the connection's `ConnectionSocket`. Loop
/// thread only; owned by its `ServerConnection` from the preface on.
final class HTTP2ServerSession {
    /// SETTINGS_MAX_CONCURRENT_STREAMS as advertised. nghttp2 is told twice as much (and that
    /// value is rewritten to this one in the SETTINGS frame on the wire): nghttp2 1.52 treats a
    /// stream over its own limit as a connection error, where the server refuses just that
    /// stream (RST_STREAM REFUSED_STREAM) at this limit. A client that opens twice the limit at
    /// once still gets nghttp2's GOAWAY.
    let maxConcurrentStreams: Int
    /// Streams the client reset before their response ended, within one window, beyond which
    /// the connection gets GOAWAY ENHANCE_YOUR_CALM (CVE-2023-44487, "rapid reset") — when they
    /// also outnumber the streams that completed in that window.
    static let rapidResetThreshold = 100
    static let rapidResetWindowMilliseconds: Int64 = 10_000
    /// CONTINUATION frames allowed after one HEADERS frame (nghttp2's option, from Debian's
    /// CVE-2024-28182 patch); more is a flood: GOAWAY ENHANCE_YOUR_CALM.
    static let maxContinuations = 8
    /// Request body bytes one connection may hold for requests not yet handed to the handler, as a
    /// multiple of the larger per-request limit: 128 streams of 4 MiB would otherwise pin 512 MiB
    /// per connection. A stream whose data would go past it is refused as too large.
    static let bufferedBodyFactor = 16
    /// Connection output above which nghttp2 is asked to wait (its send callbacks return
    /// WOULDBLOCK) until the socket takes some.
    static let outputHighWaterBytes = 256 * 1024

    private unowned let connection: ServerConnection
    private var session: OpaquePointer?
    private let options: ServerOptions
    private var streams: [Int32: HTTP2Stream] = [:]
    /// Streams counted against `maxConcurrentStreams`: opened and not closed, not refused.
    private var activeStreams = 0
    /// Body bytes held for streams not yet dispatched (see `bufferedBodyFactor`).
    private var bufferedRequestBytes = 0
    private let bufferedRequestLimit: Int
    /// Streams whose request is whole, to hand to the handler once nghttp2 has returned.
    private var ready: [HTTP2Stream] = []
    private var paused: [HTTP2Stream] = []
    private var isPumping = false
    private var needsPump = false
    private var isDraining = false
    /// Set by a callback that found abuse; the receive loop stops and the connection ends with
    /// GOAWAY and this code.
    private var abortCode: UInt32?
    private var isAborted = false
    /// The SETTINGS frame's MAX_CONCURRENT_STREAMS value is still to be rewritten (see above).
    private var rewriteSettings = true
    private var timer: DeadlineTimer?
    private var idleSince: Int64?

    // Rapid reset accounting.
    private var windowStart: Int64 = 0
    private var resetsInWindow = 0
    private var completedInWindow = 0

    // Response header scratch, kept for its capacity.
    private var nvBytes: [UInt8] = []
    private var nvSpans: [(name: Int, nameLength: Int, value: Int, valueLength: Int)] = []

    init(connection: ServerConnection, options: ServerOptions) {
        self.connection = connection
        self.options = options
        self.maxConcurrentStreams = options.http2MaxConcurrentStreams
        let perRequest = max(options.maxGRPCMessageBytes + GRPCFraming.prefixLength, options.limits.maxBodyBytes)
        self.bufferedRequestLimit = HTTP2ServerSession.bufferedBodyFactor * perRequest
    }

    /// The session exists and has not been torn down.
    var isOpen: Bool { session != nil && !isAborted }

    /// No stream is open and nothing waits to be sent.
    var isIdle: Bool { streams.isEmpty }

    /// Creates the nghttp2 session, queues the server's SETTINGS and processes the input that
    /// has arrived (the preface and whatever followed it).
    func start(loop: EventLoop) {
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else {
            connection.close()
            return
        }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_send_callback(callbacks, HTTP2Callbacks.send)
        nghttp2_session_callbacks_set_send_data_callback(callbacks, HTTP2Callbacks.sendData)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, HTTP2Callbacks.beginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, HTTP2Callbacks.header)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, HTTP2Callbacks.dataChunk)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, HTTP2Callbacks.frameReceived)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, HTTP2Callbacks.frameSent)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, HTTP2Callbacks.streamClosed)

        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0, let option else {
            connection.close()
            return
        }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_max_continuations(option, HTTP2ServerSession.maxContinuations)
        // nghttp2's own token bucket on RST_STREAM stays as a backstop behind the count above.
        nghttp2_option_set_stream_reset_rate_limit(option, 1000, 33)
        nghttp2_option_set_no_closed_streams(option, 1)

        var created: OpaquePointer?
        let me = Unmanaged.passUnretained(self).toOpaque()
        guard nghttp2_session_server_new2(&created, callbacks, me, option) == 0, let created else {
            connection.close()
            return
        }
        session = created
        let headerList = UInt32(clamping: options.limits.maxHeaderBytes)
        var settings: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                value: UInt32(maxConcurrentStreams * 2)
            ),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                value: headerList
            ),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        _ = nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        timer = DeadlineTimer(loop: loop) { [unowned self] in self.deadlineMissed() }
        received()
    }

    // MARK: Input

    /// Feeds what the connection has read to nghttp2, hands whole requests to the handler, and
    /// sends what that produced.
    func received() {
        guard let session, !isAborted else { return }
        let input = connection.socket.input
        var failure: Int = 0
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
        if failure != 0 || abortCode != nil {
            abort(errorCode: abortCode ?? HTTP2ServerSession.goawayCode(forFatal: failure))
            return
        }
        dispatchReady()
        pump()
    }

    /// The GOAWAY code for a fatal error `nghttp2_session_mem_recv` returned.
    private static func goawayCode(forFatal error: Int) -> UInt32 {
        switch Int32(error) {
        case NGHTTP2_ERR_FLOODED.rawValue, NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue:
            return NGHTTP2_ENHANCE_YOUR_CALM.rawValue
        case NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue:
            return NGHTTP2_PROTOCOL_ERROR.rawValue
        default:
            return NGHTTP2_INTERNAL_ERROR.rawValue
        }
    }

    private func dispatchReady() {
        guard !ready.isEmpty else { return }
        let batch = ready
        ready.removeAll(keepingCapacity: true)
        for stream in batch where !stream.isClosed && !stream.isRejected && isOpen {
            dispatch(stream)
        }
    }

    private func dispatch(_ stream: HTTP2Stream) {
        guard let server = connection.server else { return }
        stream.isDispatched = true
        release(stream)
        var headers = stream.headers
        if let authority = stream.authority, !headers.contains(name: "host") {
            headers = HTTPHeaders([("host", authority)] + headers.fields)
        }
        let length = stream.body.count
        let head = RequestHead(
            method: stream.method,
            target: stream.path,
            version: HTTPVersion(major: 2, minor: 0),
            headers: headers,
            framing: length > 0 ? .contentLength(length) : .none,
            keepAlive: true
        )
        stream.isCounted = true
        server.requestStarted()
        let writer = ResponseWriter(connection: connection, stream: stream)
        stream.writer = writer
        connection.handler(
            ServerRequest(
                head: head,
                body: stream.body,
                peerAddress: connection.peerAddress,
                isPeerLoopback: connection.isPeerLoopback
            ),
            writer
        )
    }

    // MARK: Callbacks (from inside nghttp2_session_mem_recv)

    fileprivate func beginHeaders(streamID: Int32, category: Int) -> Int32 {
        guard category == Int(NGHTTP2_HCAT_REQUEST.rawValue) else { return 0 }
        let stream = HTTP2Stream(id: streamID, session: self, startedAt: System.monotonicMilliseconds())
        streams[streamID] = stream
        idleSince = nil
        if activeStreams >= maxConcurrentStreams || isDraining {
            stream.isRejected = true
            stream.responseEnded = true
            if let session {
                _ = nghttp2_submit_rst_stream(
                    session,
                    UInt8(NGHTTP2_FLAG_NONE.rawValue),
                    streamID,
                    NGHTTP2_REFUSED_STREAM.rawValue
                )
            }
            return 0
        }
        activeStreams += 1
        stream.isActive = true
        return 0
    }

    fileprivate func header(
        streamID: Int32,
        category: Int,
        name: UnsafeRawBufferPointer,
        value: UnsafeRawBufferPointer
    ) -> Int32 {
        guard category == Int(NGHTTP2_HCAT_REQUEST.rawValue), let stream = streams[streamID], !stream.isRejected else {
            return 0  // trailers of a request, and fields of refused streams, are not kept
        }
        stream.headerListBytes += name.count + value.count + 32
        if stream.headerListBytes > options.limits.maxHeaderBytes
            || stream.headers.count >= options.limits.maxHeaderCount
        {
            stream.headersTooLarge = true
        }
        if name.first == UInt8(ascii: ":") {
            let text = String(decoding: value, as: UTF8.self)
            switch name.count {
            case 5 where HTTP2ServerSession.equals(name, ":path"): stream.path = text
            case 7 where HTTP2ServerSession.equals(name, ":method"): stream.method = text
            case 10 where HTTP2ServerSession.equals(name, ":authority"): stream.authority = text
            default: break  // :scheme (and :protocol) are not passed on
            }
            return 0
        }
        if stream.headersTooLarge { return 0 }
        let nameText = String(decoding: name, as: UTF8.self)
        let valueText = String(decoding: value, as: UTF8.self)
        if name.count == 12 && HTTP2ServerSession.equals(name, "content-type") {
            stream.isGRPC = GRPCFraming.isGRPC(contentType: valueText)
        } else if name.count == 13 && HTTP2ServerSession.equals(name, "grpc-encoding") {
            stream.grpcEncoding = valueText
        }
        stream.headers.add(name: nameText, value: valueText)
        return 0
    }

    private static func equals(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
        guard bytes.count == text.utf8CodeUnitCount, let base = bytes.baseAddress else { return false }
        return memcmp(base, text.utf8Start, bytes.count) == 0
    }

    fileprivate func dataChunk(streamID: Int32, data: UnsafeRawBufferPointer) -> Int32 {
        guard let stream = streams[streamID], !stream.isRejected, !stream.isDispatched else { return 0 }
        let limit =
            stream.isGRPC
            ? options.maxGRPCMessageBytes + GRPCFraming.prefixLength : options.limits.maxBodyBytes
        if stream.body.count + data.count > limit {
            if stream.isGRPC {
                // The first prefix may not have been read yet when a single chunk is this large.
                let declared = max(stream.body.count + data.count - GRPCFraming.prefixLength, limit)
                reject(stream, grpc: .messageTooLarge(declared: declared, limit: options.maxGRPCMessageBytes))
            } else {
                rejectHTTP(
                    stream,
                    status: 413,
                    code: "body_too_large",
                    detail: "the request body exceeds the limit of \(options.limits.maxBodyBytes) bytes"
                )
            }
            return 0
        }
        if bufferedRequestBytes + data.count > bufferedRequestLimit {
            let detail = "the connection's unanswered request bodies exceed \(bufferedRequestLimit) bytes"
            if stream.isGRPC {
                reject(stream, status: .resourceExhausted, message: detail)
            } else {
                rejectHTTP(stream, status: 413, code: "body_too_large", detail: detail)
            }
            return 0
        }
        bufferedRequestBytes += data.count
        stream.accountedBytes += data.count
        evbuffer_add(stream.body.evbuffer, data.baseAddress, data.count)
        if stream.isGRPC && !stream.grpcPrefixChecked && stream.body.count >= GRPCFraming.prefixLength {
            stream.grpcPrefixChecked = true
            var prefix = [UInt8](repeating: 0, count: GRPCFraming.prefixLength)
            _ = evbuffer_copyout(stream.body.evbuffer, &prefix, prefix.count)
            let outcome = prefix.withUnsafeBytes { GRPCFraming.readPrefix($0) }
            switch outcome {
            case .failure(let error)?:
                reject(stream, grpc: error)
            case .success(let (compressed, length))?:
                if let error = GRPCFraming.check(
                    compressed: compressed,
                    length: length,
                    maxMessageBytes: options.maxGRPCMessageBytes,
                    encoding: stream.grpcEncoding
                ) {
                    reject(stream, grpc: error)
                }
            case nil:
                break
            }
        }
        return 0
    }

    fileprivate func frameReceived(
        type: UInt8,
        flags: UInt8,
        streamID: Int32,
        frame: UnsafePointer<nghttp2_frame>
    ) -> Int32 {
        switch UInt32(type) {
        case NGHTTP2_HEADERS.rawValue, NGHTTP2_DATA.rawValue:
            guard let stream = streams[streamID] else { return 0 }
            if UInt32(type) == NGHTTP2_HEADERS.rawValue && stream.headersTooLarge && !stream.isRejected {
                let detail = "the request's header list exceeds \(options.limits.maxHeaderBytes) bytes"
                if stream.isGRPC {
                    reject(stream, status: .resourceExhausted, message: detail)
                } else {
                    rejectHTTP(stream, status: 431, code: "headers_too_large", detail: detail)
                }
            }
            if flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 {
                stream.requestComplete = true
                if !stream.isRejected && !stream.isDispatched {
                    if stream.method == "CONNECT" {
                        rejectHTTP(
                            stream,
                            status: 400,
                            code: "bad_request",
                            detail: "CONNECT is not supported"
                        )
                    } else {
                        ready.append(stream)
                    }
                }
            }
        case NGHTTP2_RST_STREAM.rawValue:
            guard let stream = streams[streamID] else { return 0 }
            stream.resetByClient = true
            if !stream.responseEnded || !stream.requestComplete { return countReset() }
        default:
            break
        }
        return 0
    }

    /// A stream reset by the client before its exchange ended: beyond the rapid-reset threshold
    /// the connection is torn down (the callback fails, so nghttp2 stops at once).
    private func countReset() -> Int32 {
        rollWindow()
        resetsInWindow += 1
        if resetsInWindow > HTTP2ServerSession.rapidResetThreshold && resetsInWindow > completedInWindow {
            abortCode = NGHTTP2_ENHANCE_YOUR_CALM.rawValue
            return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
        }
        return 0
    }

    private func rollWindow() {
        let now = System.monotonicMilliseconds()
        if now - windowStart > HTTP2ServerSession.rapidResetWindowMilliseconds {
            windowStart = now
            resetsInWindow = 0
            completedInWindow = 0
        }
    }

    fileprivate func frameSent(type: UInt8, flags: UInt8, streamID: Int32) {
        // A response that ended before its request did (a limit answered early): tell the client to
        // stop sending the rest (RFC 9113 §8.1), now that the response has gone out first.
        guard flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0, let stream = streams[streamID],
            !stream.requestComplete, let session
        else { return }
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_NO_ERROR.rawValue)
    }

    fileprivate func streamClosed(streamID: Int32, errorCode: UInt32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        stream.isClosed = true
        release(stream)
        if stream.isActive {
            stream.isActive = false
            activeStreams -= 1
        }
        if stream.responseEnded && errorCode == NGHTTP2_NO_ERROR.rawValue {
            rollWindow()
            completedInWindow += 1
        }
        streamGone(stream)
        stream.outBody = nil
        if streams.isEmpty { idleSince = System.monotonicMilliseconds() }
    }

    /// The stream's body no longer counts in `bufferedRequestBytes` (handed on, refused or gone).
    private func release(_ stream: HTTP2Stream) {
        bufferedRequestBytes -= stream.accountedBytes
        stream.accountedBytes = 0
    }

    /// The stream closed or the connection went: a handler still holding it hears so.
    private func streamGone(_ stream: HTTP2Stream) {
        let writer = stream.writer
        let wasStreaming = stream.isStreaming && !stream.outFinished
        if stream.isCounted {
            stream.isCounted = false
            connection.server?.requestFinished()
        }
        if wasStreaming, let writer {
            let gone = writer.onClientGone
            writer.onDrained = nil
            writer.onClientGone = nil
            gone?()
        }
    }

    // MARK: Early answers (limits)

    private func reject(_ stream: HTTP2Stream, grpc error: GRPCFramingError) {
        reject(stream, status: error.status, message: error.message)
    }

    /// A trailers-only gRPC answer for a request refused by a limit.
    private func reject(_ stream: HTTP2Stream, status: GRPCStatus, message: String) {
        guard !stream.isRejected else { return }
        stream.isRejected = true
        release(stream)
        stream.body.removeAll()
        submit(
            stream,
            status: 200,
            headers: GRPCFraming.trailersOnlyHeaders(status, message: message),
            body: nil,
            trailers: nil
        )
    }

    /// SPEC §8's JSON error for a request refused by a limit.
    private func rejectHTTP(_ stream: HTTP2Stream, status: Int, code: String, detail: String) {
        guard !stream.isRejected else { return }
        stream.isRejected = true
        release(stream)
        stream.body.removeAll()
        let id = stream.headers.first(name: "x-request-id") ?? System.randomHexID()
        let json =
            "{\"error\":\"\(jsonEscaped(code))\",\"detail\":\"\(jsonEscaped(detail))\","
            + "\"request_id\":\"\(jsonEscaped(id))\"}"
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        submit(stream, status: status, headers: headers, body: EventBuffer(bytes: Array(json.utf8)), trailers: nil)
    }

    // MARK: Responses (from the handler, through ResponseWriter)

    func respond(_ stream: HTTP2Stream, status: Int, headers: HTTPHeaders, body: EventBuffer, trailers: HTTPHeaders?) {
        guard stream.isAwaitingResponse else { return }
        let copy = EventBuffer()
        if stream.method != "HEAD" { EventBuffer.addCopy(of: body.evbuffer, to: copy.evbuffer) }
        submit(stream, status: status, headers: headers, body: copy, trailers: trailers, contentLength: body.count)
        finishCounting(stream)
        pump()
    }

    func startStream(_ stream: HTTP2Stream, status: Int, headers: HTTPHeaders, contentLength: Int?) {
        guard stream.isAwaitingResponse, let session else { return }
        stream.hasResponded = true
        stream.isStreaming = true
        stream.outBody = EventBuffer()
        let submitted = withNameValues(status: status, headers: headers, contentLength: contentLength) { nva, count in
            var provider = dataProvider(for: stream)
            return nghttp2_submit_response(session, stream.id, nva, count, &provider)
        }
        if submitted != 0 { resetStream(stream, code: NGHTTP2_INTERNAL_ERROR.rawValue) }
        pump()
    }

    /// Queues a piece of a streamed body; returns whether the producer should pause.
    func streamBody(_ stream: HTTP2Stream, _ bytes: EventBuffer) -> Bool {
        guard stream.isStreaming, !stream.outFinished, stream.isAwaitingResponse || !stream.responseEnded,
            let session, let out = stream.outBody
        else {
            bytes.removeAll()
            return false
        }
        if stream.method == "HEAD" {
            bytes.removeAll()
            return false
        }
        out.moveAll(from: bytes)
        _ = nghttp2_session_resume_data(session, stream.id)
        pump()
        guard let pending = stream.outBody?.count, pending > 0, !stream.isClosed else { return false }
        if pending > ResponseWriter.streamHighWaterBytes || connection.socket.isWaitingToWrite {
            if !stream.isPaused {
                stream.isPaused = true
                paused.append(stream)
            }
            return true
        }
        return false
    }

    func finishStream(_ stream: HTTP2Stream, trailers: HTTPHeaders?) {
        guard stream.isStreaming, !stream.outFinished, let session else { return }
        stream.outFinished = true
        stream.trailers = trailers.flatMap { $0.count > 0 ? $0 : nil }
        stream.isPaused = false
        stream.writer?.onDrained = nil
        stream.writer?.onClientGone = nil
        _ = nghttp2_session_resume_data(session, stream.id)
        finishCounting(stream)
        pump()
    }

    func cutStream(_ stream: HTTP2Stream) {
        guard stream.isStreaming, !stream.outFinished else { return }
        stream.outFinished = true
        stream.writer?.onDrained = nil
        stream.writer?.onClientGone = nil
        resetStream(stream, code: NGHTTP2_INTERNAL_ERROR.rawValue)
        finishCounting(stream)
        pump()
    }

    private func finishCounting(_ stream: HTTP2Stream) {
        if stream.isCounted {
            stream.isCounted = false
            connection.server?.requestFinished()
        }
    }

    private func resetStream(_ stream: HTTP2Stream, code: UInt32) {
        stream.responseEnded = true
        guard let session else { return }
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, code)
    }

    /// Submits a whole response: HEADERS (with END_STREAM when there is neither body nor
    /// trailers), then DATA from `body`, then the trailers.
    private func submit(
        _ stream: HTTP2Stream,
        status: Int,
        headers: HTTPHeaders,
        body: EventBuffer?,
        trailers: HTTPHeaders?,
        contentLength: Int? = nil
    ) {
        guard let session else { return }
        stream.hasResponded = true
        stream.outFinished = true
        let hasTrailers = (trailers?.count ?? 0) > 0
        stream.trailers = hasTrailers ? trailers : nil
        let hasBody = (body?.count ?? 0) > 0
        stream.outBody = hasBody ? body : nil
        // gRPC answers end with trailers and carry no content-length; others get theirs.
        let length = hasTrailers ? nil : (contentLength ?? body?.count ?? 0)
        let result = withNameValues(status: status, headers: headers, contentLength: length) { nva, count in
            if !hasBody && !hasTrailers {
                stream.responseEnded = true
                return nghttp2_submit_response(session, stream.id, nva, count, nil)
            }
            var provider = dataProvider(for: stream)
            return nghttp2_submit_response(session, stream.id, nva, count, &provider)
        }
        if result != 0 { resetStream(stream, code: NGHTTP2_INTERNAL_ERROR.rawValue) }
    }

    private func dataProvider(for stream: HTTP2Stream) -> nghttp2_data_provider {
        var source = nghttp2_data_source()
        source.ptr = Unmanaged.passUnretained(stream).toOpaque()
        return nghttp2_data_provider(source: source, read_callback: HTTP2Callbacks.read)
    }

    /// nghttp2 asks how much of `stream`'s body the next DATA frame carries (at most `length`);
    /// the bytes themselves are moved in `sendData`.
    fileprivate func readBody(_ stream: HTTP2Stream, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        let available = stream.outBody?.count ?? 0
        if available == 0 && !stream.outFinished { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
        let taking = min(length, available)
        if taking > 0 { flags.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue }
        if taking == available && stream.outFinished {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            stream.responseEnded = true
            if let trailers = stream.trailers, let session {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                let submitted = withNameValues(status: nil, headers: trailers, contentLength: nil) { nva, count in
                    nghttp2_submit_trailer(session, stream.id, nva, count)
                }
                if submitted != 0 { flags.pointee &= ~NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue }
            }
        }
        return taking
    }

    /// Writes a DATA frame: nghttp2's 9-byte header, then `length` bytes moved from the body.
    fileprivate func sendData(_ stream: HTTP2Stream, header: UnsafePointer<UInt8>, length: Int) -> Int32 {
        let output = connection.socket.output
        if evbuffer_get_length(output) > HTTP2ServerSession.outputHighWaterBytes {
            return NGHTTP2_ERR_WOULDBLOCK.rawValue
        }
        evbuffer_add(output, header, 9)
        if length > 0, let out = stream.outBody { evbuffer_remove_buffer(out.evbuffer, output, length) }
        return 0
    }

    /// Copies a serialized frame (anything but DATA) into the connection's output.
    fileprivate func send(_ data: UnsafePointer<UInt8>, length: Int) -> Int {
        let output = connection.socket.output
        if evbuffer_get_length(output) > HTTP2ServerSession.outputHighWaterBytes {
            return Int(NGHTTP2_ERR_WOULDBLOCK.rawValue)
        }
        if rewriteSettings {
            rewriteSettings = false
            if rewriteConcurrency(data, length: length) { return length }
        }
        evbuffer_add(output, data, length)
        return length
    }

    /// The first frame a server session sends is its SETTINGS; its MAX_CONCURRENT_STREAMS entry
    /// goes out as `maxConcurrentStreams` (see there). Returns whether it wrote the frame.
    private func rewriteConcurrency(_ data: UnsafePointer<UInt8>, length: Int) -> Bool {
        guard length >= 15, data[3] == UInt8(NGHTTP2_SETTINGS.rawValue), data[4] & 1 == 0 else { return false }
        var frame = Array(UnsafeBufferPointer(start: data, count: length))
        var offset = 9
        while offset + 6 <= length {
            let id = Int(frame[offset]) << 8 | Int(frame[offset + 1])
            if id == Int(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue) {
                let value = UInt32(maxConcurrentStreams)
                frame[offset + 2] = UInt8(truncatingIfNeeded: value >> 24)
                frame[offset + 3] = UInt8(truncatingIfNeeded: value >> 16)
                frame[offset + 4] = UInt8(truncatingIfNeeded: value >> 8)
                frame[offset + 5] = UInt8(truncatingIfNeeded: value)
            }
            offset += 6
        }
        evbuffer_add(connection.socket.output, frame, frame.count)
        return true
    }

    /// Lays out `:status` (when given) and `headers` as nghttp2 name/value pairs in reused
    /// scratch (nghttp2 copies them on submit). Names are lowercased; connection-specific fields
    /// (RFC 9113 §8.2.2), pseudo-fields and framing the server writes itself are left out.
    private func withNameValues(
        status: Int?,
        headers: HTTPHeaders,
        contentLength: Int?,
        _ body: (UnsafePointer<nghttp2_nv>, Int) -> Int32
    ) -> Int32 {
        nvBytes.removeAll(keepingCapacity: true)
        nvSpans.removeAll(keepingCapacity: true)
        func add(_ name: String, _ value: String, lowercase: Bool) {
            let nameStart = nvBytes.count
            for byte in name.utf8 { nvBytes.append(lowercase && byte >= 65 && byte <= 90 ? byte | 0x20 : byte) }
            let valueStart = nvBytes.count
            nvBytes.append(contentsOf: value.utf8)
            nvSpans.append((nameStart, valueStart - nameStart, valueStart, nvBytes.count - valueStart))
        }
        if let status { add(":status", String(status), lowercase: false) }
        for field in headers.fields where !HTTP2ServerSession.isDropped(field.name) {
            add(field.name, field.value, lowercase: true)
        }
        if let contentLength { add("content-length", String(contentLength), lowercase: false) }
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

    /// Fields not sent on HTTP/2: connection-specific ones, pseudo-fields from a handler, and
    /// `content-length` (written by the server).
    private static func isDropped(_ name: String) -> Bool {
        if name.utf8.first == UInt8(ascii: ":") { return true }
        switch name.utf8.count {
        case 2: return name.asciiCaseInsensitiveEquals("te")
        case 7: return name.asciiCaseInsensitiveEquals("upgrade")
        case 10: return name.asciiCaseInsensitiveEquals("connection") || name.asciiCaseInsensitiveEquals("keep-alive")
        case 14: return name.asciiCaseInsensitiveEquals("content-length")
        case 16: return name.asciiCaseInsensitiveEquals("proxy-connection")
        case 17: return name.asciiCaseInsensitiveEquals("transfer-encoding")
        default: return false
        }
    }

    // MARK: Output

    /// Lets nghttp2 write what it has queued into the connection's output, sends what the socket
    /// takes, then wakes paused producers whose bytes have gone and closes a finished session.
    func pump() {
        if isPumping {
            needsPump = true
            return
        }
        isPumping = true
        defer { isPumping = false }
        repeat {
            needsPump = false
            guard let session, !isAborted else { return }
            let result = nghttp2_session_send(session)
            if result != 0 {
                abort(errorCode: NGHTTP2_INTERNAL_ERROR.rawValue)
                return
            }
            if connection.socket.outputLength > 0 && !connection.socket.isWaitingToWrite {
                guard connection.flushOutput() else { return }  // a socket error closed the connection
            }
            guard self.session != nil else { return }
            wakePaused()
            if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
                finish()
                return
            }
            if isDraining && streams.isEmpty {
                finish()
                return
            }
        } while needsPump
        updateTimer()
    }

    /// The socket took output: let nghttp2 go on (it may have been told to wait).
    func writable() {
        pump()
    }

    private func wakePaused() {
        guard !paused.isEmpty else { return }
        var index = 0
        while index < paused.count {
            let stream = paused[index]
            if stream.isClosed || !stream.isPaused {
                paused.remove(at: index)
                continue
            }
            if (stream.outBody?.count ?? 0) == 0 && !connection.socket.isWaitingToWrite {
                stream.isPaused = false
                paused.remove(at: index)
                stream.writer?.onDrained?()
                continue
            }
            index += 1
        }
    }

    // MARK: Deadlines, drain, teardown

    /// Arms the connection's one timer: the idle timeout while no stream is open; else the
    /// header-plus-body deadline of the oldest stream whose request is still arriving.
    private func updateTimer() {
        guard let timer else { return }
        if streams.isEmpty {
            let since = idleSince ?? System.monotonicMilliseconds()
            idleSince = since
            timer.set(since + Int64(options.idleTimeoutMilliseconds))
            return
        }
        var oldest: Int64?
        for stream in streams.values where !stream.requestComplete && !stream.isRejected {
            if oldest.map({ stream.startedAt < $0 }) ?? true { oldest = stream.startedAt }
        }
        if let oldest {
            timer.set(oldest + Int64(options.headerTimeoutMilliseconds + options.bodyTimeoutMilliseconds))
        } else {
            timer.clear()
        }
    }

    private func deadlineMissed() {
        guard isOpen else { return }
        if streams.isEmpty {
            // Idle for --idle-timeout-ms: GOAWAY, then close.
            abort(errorCode: NGHTTP2_NO_ERROR.rawValue)
            return
        }
        let now = System.monotonicMilliseconds()
        let allowed = Int64(options.headerTimeoutMilliseconds + options.bodyTimeoutMilliseconds)
        for stream in Array(streams.values) where !stream.requestComplete && !stream.isRejected {
            if now - stream.startedAt >= allowed {
                stream.isRejected = true
                resetStream(stream, code: NGHTTP2_CANCEL.rawValue)
            }
        }
        pump()
    }

    /// A graceful GOAWAY (the server drains): streams already opened finish, new ones are
    /// refused, and the connection closes once none is left.
    func startDraining() {
        guard let session, !isDraining, !isAborted else { return }
        isDraining = true
        _ = nghttp2_submit_goaway(
            session,
            UInt8(NGHTTP2_FLAG_NONE.rawValue),
            nghttp2_session_get_last_proc_stream_id(session),
            NGHTTP2_NO_ERROR.rawValue,
            nil,
            0
        )
        pump()
    }

    /// Ends the connection at once with GOAWAY `errorCode` (abuse, a fatal protocol error, or an
    /// idle timeout): written directly after the whole frames already queued, so it does not
    /// depend on the state nghttp2 is left in.
    private func abort(errorCode: UInt32) {
        guard !isAborted else { return }
        isAborted = true
        let last = session.map { nghttp2_session_get_last_proc_stream_id($0) } ?? 0
        var frame: [UInt8] = [0, 0, 8, 7, 0, 0, 0, 0, 0]
        for shift in stride(from: 24, through: 0, by: -8) {
            frame.append(UInt8(truncatingIfNeeded: last >> Int32(shift)))
        }
        for shift in stride(from: 24, through: 0, by: -8) {
            frame.append(UInt8(truncatingIfNeeded: errorCode >> UInt32(shift)))
        }
        evbuffer_add(connection.socket.output, frame, frame.count)
        teardown()
        connection.beginClosing()
    }

    /// nghttp2 has nothing left to do (a GOAWAY exchanged, or a drain done): flush and close.
    private func finish() {
        guard !isAborted else { return }
        isAborted = true
        teardown()
        connection.beginClosing()
    }

    /// Tells every handler still holding a stream that it is gone, and frees the session.
    func teardown() {
        isAborted = true  // a handler told of its stream's end here finds the session closed
        timer?.cancel()
        let open = Array(streams.values)
        streams.removeAll()
        ready.removeAll()
        paused.removeAll()
        for stream in open {
            stream.isClosed = true
            streamGone(stream)
            stream.outBody = nil
        }
        if let session { nghttp2_session_del(session) }
        session = nil
        isAborted = true
    }
}

/// nghttp2's callbacks: each finds its `HTTP2ServerSession` in `user_data`.
enum HTTP2Callbacks {
    @inline(__always)
    static func owner(_ pointer: UnsafeMutableRawPointer?) -> HTTP2ServerSession {
        Unmanaged<HTTP2ServerSession>.fromOpaque(pointer!).takeUnretainedValue()
    }

    static let send: nghttp2_send_callback = { _, data, length, _, user in
        owner(user).send(data!, length: length)
    }

    static let sendData: nghttp2_send_data_callback = { _, _, header, length, source, user in
        let stream = Unmanaged<HTTP2Stream>.fromOpaque(source!.pointee.ptr).takeUnretainedValue()
        return owner(user).sendData(stream, header: header!, length: length)
    }

    static let read: nghttp2_data_source_read_callback = { _, _, _, length, flags, source, user in
        let stream = Unmanaged<HTTP2Stream>.fromOpaque(source!.pointee.ptr).takeUnretainedValue()
        return owner(user).readBody(stream, length: length, flags: flags!)
    }

    static let beginHeaders: nghttp2_on_begin_headers_callback = { _, frame, user in
        owner(user).beginHeaders(
            streamID: switchyard_h2_frame_stream(frame),
            category: Int(switchyard_h2_headers_category(frame))
        )
    }

    static let header: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, user in
        owner(user).header(
            streamID: switchyard_h2_frame_stream(frame),
            category: Int(switchyard_h2_headers_category(frame)),
            name: UnsafeRawBufferPointer(start: name, count: nameLength),
            value: UnsafeRawBufferPointer(start: value, count: valueLength)
        )
    }

    static let dataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, user in
        owner(user).dataChunk(streamID: streamID, data: UnsafeRawBufferPointer(start: data, count: length))
    }

    static let frameReceived: nghttp2_on_frame_recv_callback = { _, frame, user in
        owner(user).frameReceived(
            type: switchyard_h2_frame_type(frame),
            flags: switchyard_h2_frame_flags(frame),
            streamID: switchyard_h2_frame_stream(frame),
            frame: frame!
        )
    }

    static let frameSent: nghttp2_on_frame_send_callback = { _, frame, user in
        owner(user).frameSent(
            type: switchyard_h2_frame_type(frame),
            flags: switchyard_h2_frame_flags(frame),
            streamID: switchyard_h2_frame_stream(frame)
        )
        return 0
    }

    static let streamClosed: nghttp2_on_stream_close_callback = { _, streamID, errorCode, user in
        owner(user).streamClosed(streamID: streamID, errorCode: errorCode)
        return 0
    }
}
