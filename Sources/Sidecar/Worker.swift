import Compare
import EventHTTP
import Foundation
import HTTP1
import Logging
import Models
import Policy
import Routing

/// One worker thread: its event loop, its share of the data listener, its upstream pools and
/// its copy of the current config snapshot. Everything here runs on the worker's own loop
/// thread; other threads reach it only through `loop.execute`.
final class Worker: @unchecked Sendable {
    let index: Int
    let loop: EventLoop
    let options: SidecarOptions
    let logger: Logger
    /// One server per data listener, in `options.listen` order.
    private(set) var servers: [HTTPServer] = []
    private(set) var snapshot: ConfigSnapshot
    /// `snapshot.readsBodyKeys`, computed once per snapshot.
    private(set) var snapshotReadsBodyKeys: Bool
    private var pools: [PoolKey: UpstreamPool] = [:]
    /// The longest `timeout_ms` of the versions using each pool.
    private var poolTimeouts: [PoolKey: Int] = [:]
    /// HTTP/2 pools to `grpc://` and `grpcs://` versions (GRPCBackends.swift).
    let grpcPools = GRPCPools()
    /// The pool `pool(for:)` returned last, its key and its recorded timeout: most requests go where
    /// the one before went, and comparing two keys costs less than hashing one twice.
    private var lastPool: (key: PoolKey, timeoutMilliseconds: Int, pool: UpstreamPool)?
    /// The same for shadow copies, which alternate with live requests to another pool.
    private var lastShadowPool: (key: PoolKey, timeoutMilliseconds: Int, pool: UpstreamPool)?
    // Unchecked (loop thread only, no overlapping access): checking it costs +259 instructions/request,
    // 2 checks (bench/instructions.sh "", 33,815 -> 34,074).
    @exclusivity(unchecked) var random: SplitMix64
    private(set) var isDraining = false
    let metrics: SidecarMetrics
    let comparisonLog: ComparisonLog
    // Unchecked (loop thread only, no overlapping access): checking it costs +331 instructions/request,
    // 2 checks (bench/instructions.sh "", 33,815 -> 34,146).
    @exclusivity(unchecked) var metricCache = MetricCache()
    let guardMonitor: GuardMonitor
    /// Versions whose guard has tripped, as the admin loop last published them.
    var guards = GuardState()
    /// Shadow exchanges in flight on this worker, bounded by `options.maxShadowsInFlight`.
    var shadowsInFlight = 0
    /// `openai` comparisons this worker has queued on `comparisonQueue` (SPEC §14), by ticket:
    /// what their result needs on the loop when it comes back.
    var pendingLLMComparisons: [Int: PendingLLMComparison] = [:]
    var nextLLMTicket = 0
    static let maxQueuedLLMComparisons = 256
    /// Where LLM answers are compared, off every worker's loop (`Shadows.swift`).
    static let comparisonQueue = DispatchQueue(label: "switchyard.llm-compare", qos: .utility, attributes: .concurrent)
    /// Nil while tracing is off: the request path then checks only this.
    let tracer: Tracer?
    /// This worker's access log lines; nil when the log is off.
    var accessLog: AccessLogger?

    struct PoolKey: Hashable {
        var host: String
        var port: Int
        /// A Unix socket backend's path (its host and port are `localhost` and 0).
        var socketPath: String?
        var maxConnections: Int
        /// An `https://` backend's TLS context: a reload that changes its files makes a new
        /// context, and so a new pool (SPEC §11).
        var tls: ObjectIdentifier?
    }

    init(
        index: Int,
        snapshot: ConfigSnapshot,
        options: SidecarOptions,
        logger: Logger,
        metrics: SidecarMetrics,
        comparisonLog: ComparisonLog,
        guardMonitor: GuardMonitor,
        tracer: Tracer? = nil
    ) throws {
        self.index = index
        self.tracer = tracer
        self.guardMonitor = guardMonitor
        self.metrics = metrics
        self.comparisonLog = comparisonLog
        self.loop = try EventLoop()
        self.options = options
        self.snapshot = snapshot
        self.snapshotReadsBodyKeys = snapshot.readsBodyKeys
        self.logger = logger
        var seed = SystemRandomNumberGenerator()
        self.random = SplitMix64(seed: seed.next())
    }

    /// Binds this worker's listener on a TCP address (on the loop thread, before `run`). Every
    /// worker binds the same port with `SO_REUSEPORT`; the kernel spreads connections among them.
    /// `exclusive` for the first worker: a port another process listens on is an error, not
    /// shared.
    func listen(host: String, port: Int, exclusive: Bool = false) throws -> Int {
        let server = try HTTPServer(loop: loop, host: host, port: port, exclusive: exclusive, options: serverOptions) {
            [unowned self] request, writer in
            self.handle(request, writer)
        }
        server.reportAcceptFailures(metrics: metrics, logger: logger, metadata: ["worker": .stringConvertible(index)])
        adopt(server)
        return server.port
    }

    /// Keeps a listener of this worker and counts its clients cut off for not reading.
    private func adopt(_ server: HTTPServer) {
        let counter = metrics.sendTimeouts()
        server.onSendTimeout = { counter.increment() }
        if let accessLog { server.onRefused = { accessLog.refused($0) } }
        servers.append(server)
    }

    /// Accepts from a Unix socket that every worker accepts from (its own `dup` of it; Unix
    /// sockets have no `SO_REUSEPORT` spreading). Loop thread, before `run`.
    func listen(on socket: UnixListeningSocket) throws {
        let server = try HTTPServer(loop: loop, socket: socket, options: serverOptions) {
            [unowned self] request, writer in
            self.handle(request, writer)
        }
        server.reportAcceptFailures(metrics: metrics, logger: logger, metadata: ["worker": .stringConvertible(index)])
        adopt(server)
    }

    private var serverOptions: ServerOptions {
        var serverOptions = ServerOptions()
        serverOptions.limits = options.requestLimits
        serverOptions.headerTimeoutMilliseconds = options.headerTimeoutMilliseconds
        serverOptions.bodyTimeoutMilliseconds = options.bodyTimeoutMilliseconds
        serverOptions.idleTimeoutMilliseconds = options.idleTimeoutMilliseconds
        serverOptions.sendTimeoutMilliseconds = options.sendTimeoutMilliseconds
        serverOptions.maxGRPCMessageBytes = options.maxGRPCMessageBytes
        // Data listeners stop short of the open-file limit (read now: `Sidecar` has raised it).
        serverOptions.reservedDescriptors = OpenFileLimit.reserve(forLimit: OpenFileLimit.current)
        return serverOptions
    }

    /// Replaces the snapshot (loop thread). Pools of backends that remain are kept; the others
    /// close once their in-flight requests are done.
    func install(_ next: ConfigSnapshot) {
        snapshot = next
        snapshotReadsBodyKeys = next.readsBodyKeys
        metricCache = MetricCache()
        lastPool = nil
        lastShadowPool = nil
        let wanted = Set(Worker.remoteBackends(next.config).map { Worker.poolKey($0, contexts: next.tlsContexts) })
        for (key, pool) in pools where !wanted.contains(key) {
            // Requests that started on the old config may still be queued on this pool; its
            // timeout bounds them, so it closes only after that.
            pools[key] = nil
            let timeout = poolTimeouts.removeValue(forKey: key) ?? 1_000
            loop.scheduleTimer(afterMilliseconds: timeout + 1_000) { pool.close() }
        }
        retireGRPCPools(keeping: next)
    }

    /// Stops accepting; in-flight requests finish. Calls `done` (loop thread) when none remain
    /// or the deadline passes.
    func drain(deadlineMilliseconds: Int, done: @escaping @Sendable (_ unfinished: Int) -> Void) {
        isDraining = true
        // Stop accepting and answer what is in progress with `connection: close`; the worker is
        // done when no request is under way — from its first byte (a body still arriving) to the
        // last byte of its response sent (to a slow reader) — and idle keep-alive connections are
        // closed as they appear.
        for server in servers { server.drain {} }
        let start = loop.nowMilliseconds
        func check() {
            var active = 0
            for server in servers {
                server.closeIdleConnections()
                active += server.connectionsInFlight
            }
            if active == 0 || Int(loop.nowMilliseconds - start) >= deadlineMilliseconds {
                done(active)
                return
            }
            _ = loop.scheduleTimer(afterMilliseconds: 20) { check() }
        }
        check()
    }

    // MARK: - Requests

    func handle(_ request: ServerRequest, _ writer: ResponseWriter) {
        loop.assertInLoop()
        // A gRPC call (SPEC §13) is decoded first (GRPCCalls.swift), then routed as below.
        if request.isHTTP2, let type = request.head.headers.first(name: "content-type"),
            GRPCFraming.isGRPC(contentType: type)
        {
            handleGRPC(request, writer)
            return
        }
        let exchange = Exchange(
            request: request,
            writer: writer,
            snapshot: snapshot,
            requestID: RequestID(
                client: Forwarding.acceptableRequestID(Forwarding.clientRequestID(request.head.headers)),
                random: &random
            ),
            readsBodyKeys: snapshotReadsBodyKeys,
            worker: self
        )
        if let tracer { beginTrace(exchange, tracer: tracer) }
        dispatch(exchange)
    }

    /// Routes a request (a REST one, or a decoded gRPC call) and asks the chosen version.
    func dispatch(_ exchange: Exchange) {
        loop.assertInLoop()
        let request = exchange.request
        let outcome = decide(exchange.facts(), table: exchange.snapshot.routing, guards: guards, using: &random)
        switch outcome {
        case .noRoute:
            if let call = exchange.grpc {
                respond(exchange, error: .noGRPCRoute(call), version: nil)
                return
            }
            if let answer = Metadata.answer(
                method: request.head.method,
                path: request.head.path,
                snapshot: exchange.snapshot,
                isReady: !isDraining
            ) {
                var headers = HTTPHeaders()
                headers.add(name: "content-type", value: "application/json")
                let reply = Reply(
                    status: answer.status,
                    headers: headers,
                    body: EventBuffer(bytes: answer.body.serialized())
                )
                respond(exchange, reply: reply, version: nil, failedVersion: nil)
                return
            }
            respond(exchange, error: .noRoute(request.head.method, request.head.path), version: nil)
        case .unknownVersion(let route, let name):
            exchange.refuse(route: route)
            respond(exchange, error: .unknownVersion(model: route.model, name: name), version: nil)
        case .guardOpen(let route, let version):
            exchange.refuse(route: route)
            respond(exchange, error: .guardOpen(model: route.model, version: version), version: nil)
        case .routed(let decision):
            exchange.route(decision, isGuarded: !exchange.snapshot.guardedVersion.isEmpty)
            if exchange.trace?.isSampled == true { exchange.trace?.reason = decision.reason }
            if case .randomSplit(_, .stickyKeyMissing) = decision.reason {
                metricCache.stickyMissing(metrics, model: decision.model).increment()
            }
            if decision.shadows.isEmpty {
                answer(exchange, version: exchange.version)
            } else {
                // Live goes out first; the shadow copies follow it in the same loop turn.
                registerShadows(exchange, decision: decision)
                answer(exchange, version: exchange.version)
                sendShadows(exchange)
            }
        }
    }

    /// What one version did with the request.
    enum VersionResult {
        /// A response to send as it is (a success, or the client's own mistake).
        case answered(Reply)
        /// The version failed (connect error, timeout, 5xx, bad response, embedded error, table
        /// miss): `fallback` may answer instead. `reply` is the backend's own 5xx, if it sent one.
        case failed(SidecarError, reply: Reply?)
    }

    /// The worker's last live remote `Reply`, reused for the next one when nothing else holds it
    /// (`reusableReply`).
    private var spareReply: Reply?
    /// What a written reply holds instead of its body: an empty buffer of this worker's (an
    /// evbuffer is not shared between threads), never written to.
    private let writtenBody = EventBuffer()

    /// A reply for a live remote answer: the worker's last one when nothing holds it any more
    /// (the request it answered is written), else a new one kept for next time. One allocation
    /// less per proxied request.
    func reusableReply(status: Int, headers: HTTPHeaders, body: EventBuffer) -> Reply {
        if isKnownUniquelyReferenced(&spareReply), let spare = spareReply {
            spare.reuse(status: status, headers: headers, body: body)
            return spare
        }
        let fresh = Reply(status: status, headers: headers, body: body)
        spareReply = fresh
        return fresh
    }

    /// A response to send. A class so that the answering path adds its fields to the one header
    /// list it owns instead of copying it (loop thread only).
    final class Reply {
        var status: Int
        // Unchecked (loop thread only, each access one statement): checking it costs +229
        // instructions/request, 2 checks (bench/instructions.sh "", 33,815 -> 34,044).
        @exclusivity(unchecked) var headers: HTTPHeaders
        var body: EventBuffer
        /// A remote answer whose body is relayed as it arrives (SPEC §10); `body` is then empty.
        var stream: UpstreamStream?
        /// The streamed body's Content-Length, kept toward the client; nil: chunked or close-delimited.
        var streamLength: Int?
        /// The streamed body is server-sent events.
        var isEventStream = false
        /// The sidecar's own error code when it made this reply (`errorReply`), for the access log.
        var errorCode: String?
        /// With `errorCode`: the error's detail and gRPC status, for a gRPC call's trailers.
        var errorDetail: String?
        var grpcStatus: GRPCStatus?
        /// A `grpc://` version's answer, passed through to the client as it came (its `status`
        /// is the HTTP status its gRPC status pairs with; `body` its REST rendering when read).
        var grpcResponse: GRPCResponse?
        /// `headers` are a remote version's fields as they came: hop-by-hop fields and those the
        /// sidecar sets are dropped when the response is written (`Worker.clientFields`), not
        /// before, so that no filtered copy is made.
        var isFromBackend = false

        init(status: Int, headers: HTTPHeaders, body: EventBuffer) {
            self.status = status
            self.headers = headers
            self.body = body
        }

        /// Makes a reply nothing else holds answer anew, as a new one would.
        func reuse(status: Int, headers: HTTPHeaders, body: EventBuffer) {
            self.status = status
            self.headers = headers
            self.body = body
            stream = nil
            streamLength = nil
            isEventStream = false
            errorCode = nil
            errorDetail = nil
            grpcStatus = nil
            grpcResponse = nil
            isFromBackend = false
        }

    }

    func conclude(_ exchange: Exchange, version: String, result: VersionResult) {
        if exchange.isGuarded, exchange.snapshot.guardedVersion[exchange.model] == version {
            let now = Monotonic.nanoseconds()
            var failed = false
            if case .failed = result { failed = true }
            guardMonitor.record(
                model: exchange.model,
                version: version,
                failed: failed,
                latencyMilliseconds: Double(now &- exchange.attemptStartNanoseconds) / 1e6,
                nowMilliseconds: Int64(now / 1_000_000)
            )
        }
        switch result {
        case .answered(let reply):
            respond(exchange, reply: reply, version: version, failedVersion: exchange.failedVersion)
        case .failed(let error, let reply):
            if exchange.failedVersion == nil, let fallback = exchange.fallback, fallback != version {
                exchange.failedVersion = version
                metricCache.fallback(metrics, model: exchange.model, from: version, to: fallback).increment()
                logger.debug(
                    "falling back",
                    metadata: [
                        "request_id": "\(exchange.requestID)", "from": "\(version)", "to": "\(fallback)",
                        "reason": "\(error.code)",
                    ]
                )
                answer(exchange, version: fallback)
                return
            }
            if let reply {
                respond(exchange, reply: reply, version: version, failedVersion: exchange.failedVersion)
            } else {
                respond(exchange, error: error, version: version)
            }
        }
    }

    /// Asks `version` for the live answer; its result goes to `conclude`.
    func answer(_ exchange: Exchange, version: String) {
        guard exchange.isRouted, let spec = exchange.snapshot.routing.version(version, routeIndex: exchange.routeIndex)
        else {
            preconditionFailure("a routing decision named a version that the checked config does not have")
        }
        // Only a guard, a comparison and the access log read the attempt's latency: no clock read
        // otherwise.
        if exchange.isGuarded || exchange.hasShadows || accessLog != nil || exchange.wireProtocol == .openai {
            exchange.attemptStartNanoseconds = Monotonic.nanoseconds()
        }
        switch spec.backend {
        case .remote(let remote):
            forward(exchange, version: version, spec: spec, remote: remote, shadow: nil)
        case .embedded(let embedded):
            var span = ChildSpan()
            if exchange.trace?.isSampled == true { beginChildSpan(exchange, &span) }
            let result = evaluate(exchange, model: exchange.model, version: version, backend: embedded)
            if span.isRecording {
                endChildSpan(exchange, span, version: version, isShadow: false, isRemote: false, result: result)
            }
            conclude(exchange, version: version, result: result)
        }
    }

    /// Hands `result` to `shadowFinished` for a shadow copy, or to `conclude` (the live path).
    @inline(__always)
    private func deliver(_ result: VersionResult, _ exchange: Exchange, version: String, shadow: ShadowRun?) {
        if let shadow {
            shadowFinished(exchange, shadow, result: result)
        } else {
            conclude(exchange, version: version, result: result)
        }
    }

    /// How one version is asked, as the response handling needs it (no reference-counted fields:
    /// the exchange or shadow run that keeps it copies it for free).
    struct Attempt {
        var timeoutMilliseconds: Int
        var mustRead: Bool
        var translate: Bool
        var routeProtocol: WireProtocol
        var versionProtocol: WireProtocol
        var isShadow: Bool
        /// The trace span of this exchange with the version (ids 0 while tracing is off).
        var span = ChildSpan()
    }

    // MARK: Remote

    /// Sends the request to a remote version. The result goes to `shadowFinished` for a shadow
    /// copy (`shadow` non-nil), else to `conclude`.
    func forward(
        _ exchange: Exchange,
        version: String,
        spec: VersionSpec,
        remote: RemoteBackend,
        shadow: ShadowRun?
    ) {
        let head = exchange.request.head
        guard exchange.isRouted else { preconditionFailure("forward runs only for routed requests") }
        let isShadow = shadow != nil
        if remote.isGRPC {
            forwardGRPC(exchange, version: version, spec: spec, remote: remote, shadow: shadow)
            return
        }
        let call = exchange.grpc
        var timeoutMilliseconds = remote.timeoutMilliseconds
        if let call {
            // `grpc-timeout` shortens the version's timeout, never lengthens it (SPEC §13).
            guard let remaining = call.timeout(remote.timeoutMilliseconds, startedAt: exchange.startNanoseconds) else {
                deliver(.failed(.deadlinePassed(version), reply: nil), exchange, version: version, shadow: shadow)
                return
            }
            timeoutMilliseconds = remaining
        }
        let pool = pool(for: remote, isShadow: isShadow)
        if let shadow, !pool.hasFreeConnection {
            // Every connection to the shadow is busy: drop the copy now rather than queue it
            // behind a backend that cannot keep up (queued copies only time out in bursts).
            shadowDropped(exchange, shadow)
            return
        }
        // A gRPC call reaches a REST version as its route's REST twin would (GRPCCalls.swift).
        let routeProtocol = exchange.wireProtocol.restTwin
        let versionProtocol = Protocols.versionProtocol(spec, route: exchange.wireProtocol)
        let translate =
            call != nil || Protocols.needsTranslation(route: routeProtocol, version: versionProtocol)
        // A shadow's body is compared, never sent on: it is not checked here. An `openai` answer
        // is passed on as it came, like a `json` one.
        let isLLM = routeProtocol == .openai
        let mustRead = routeProtocol != .json && !isLLM && !isShadow
        var body = exchange.request.body
        var span = ChildSpan()
        let traceparent = exchange.trace == nil ? nil : beginClientSpan(exchange, &span)
        /// The body cannot go to this version (not the JSON its protocol needs): the client's own
        /// 400, answered without asking the version.
        func refuseBody(_ error: ModelError) {
            deliver(
                .answered(errorReply(SidecarError(error), requestID: exchange.requestID)),
                exchange,
                version: version,
                shadow: shadow
            )
        }
        // Fields edited by name below (a gRPC call's, a translated body's) go as a field list;
        // every other request's are written straight into field lines, with no list between.
        let editsFields = call != nil || (translate && !isLLM)
        var headers = HTTPHeaders()
        var fieldLines: [UInt8] = []
        if editsFields {
            headers = Forwarding.upstreamHeaders(
                head.headers,
                peerAddress: exchange.request.peerAddress,
                requestID: exchange.requestID,
                mustReadBody: mustRead || isShadow,
                isShadow: isShadow,
                traceparent: traceparent
            )
        } else {
            // The live attempt's lines in the connection's buffer (its capacity kept from request
            // to request); a shadow's in its own.
            let write = { (lines: inout [UInt8]) in
                lines.removeAll(keepingCapacity: true)
                Forwarding.appendUpstreamFields(
                    head.headers,
                    into: &lines,
                    peerAddress: exchange.request.peerAddress,
                    requestID: exchange.id,
                    mustReadBody: mustRead || isShadow,
                    isShadow: isShadow,
                    traceparent: traceparent,
                    overrides: remote.headers
                )
            }
            if isShadow {
                // Room for the usual head at once: growing from empty cost three reallocations.
                fieldLines.reserveCapacity(512)
                write(&fieldLines)
            } else {
                let scratch = exchange.writer.scratch
                write(&scratch.upstreamFieldLines)
                fieldLines = scratch.upstreamFieldLines
            }
        }
        if let call {
            do throws(ModelError) {
                body = EventBuffer(bytes: try call.restBody(for: versionProtocol))
                GRPCCall.restHeaders(&headers)
            } catch {
                refuseBody(error)
                return
            }
        } else if isLLM {
            // SPEC §14: the version's `model_name:` replaces the body's `model`; a shadow copy
            // never streams (its answer is compared whole).
            do throws(ModelError) {
                if let edited = try Worker.llmRequestBody(body, modelName: remote.modelName, isShadow: isShadow) {
                    body = edited
                }
            } catch {
                refuseBody(error)
                return
            }
        } else if translate {
            do throws(ModelError) {
                let translated = try Protocols.translateRequest(
                    exchange.bodyJSON(),
                    from: routeProtocol,
                    to: versionProtocol
                )
                body = EventBuffer(bytes: translated)
                headers.replaceOrAdd(name: "content-type", value: "application/json")
            } catch {
                refuseBody(error)
                return
            }
        }
        // A version's `headers:` replace the client's fields of the same names (SPEC §14).
        if editsFields {
            for field in remote.headers { headers.replaceOrAdd(name: field.name, value: field.value) }
        }
        let target: String
        if let call, remote.path == nil {
            target = call.restTarget(for: versionProtocol)
        } else if let path = remote.path {
            target = head.query.map { "\(path)?\($0)" } ?? path
        } else {
            target = head.target
        }
        // `Forwarding.upstreamHeaders` has dropped what the pool would drop (hop-by-hop fields,
        // those named by `Connection`, `host`, `content-length`): the pool does not filter again.
        let upstream = UpstreamRequest(
            method: head.method,
            target: target,
            headers: headers,
            fieldLines: fieldLines,
            body: body,
            headersAreEndToEnd: true
        )
        // The closure captures the timeout, not the whole `RemoteBackend` (two strings to retain),
        // and the flags in one trivial struct.
        let attempt = Attempt(
            timeoutMilliseconds: timeoutMilliseconds,
            mustRead: mustRead,
            translate: translate,
            routeProtocol: routeProtocol,
            versionProtocol: versionProtocol,
            isShadow: isShadow,
            span: span
        )
        // SPEC §10: the live answer is relayed as it arrives when nothing here must read it
        // whole — on `json` routes whose request has no shadow to compare with, and for every
        // server-sent event stream — unless it is a 5xx (the fallback may replace it) or the
        // body is translated. Shadow copies are always read whole.
        let disposition: ((ResponseHead) -> BodyDisposition)?
        if isShadow || translate {
            disposition = nil
        } else if routeProtocol == .json && !exchange.hasShadows {
            // `openai` answers are read whole unless they are event streams: their usage is read.
            disposition = Worker.streamsAnyBody
        } else {
            disposition = Worker.streamsEventStreams
        }
        guard let shadow else {
            // The live attempt: the exchange hears the result itself (no closure made per request).
            exchange.liveAttempt = attempt
            exchange.liveAttemptVersion = version
            pool.send(
                upstream,
                timeoutMilliseconds: attempt.timeoutMilliseconds,
                idleTimeoutMilliseconds: remote.idleTimeoutMilliseconds,
                disposition: disposition,
                exchange: exchange
            )
            return
        }
        // A shadow copy: its run hears the result (no closure made per copy either).
        shadow.sending(from: exchange, attempt: attempt)
        pool.send(
            upstream,
            timeoutMilliseconds: attempt.timeoutMilliseconds,
            idleTimeoutMilliseconds: remote.idleTimeoutMilliseconds,
            disposition: disposition,
            exchange: shadow
        )
    }

    /// A remote version's response (or failure) is back: metrics, then `versionResult`, then to
    /// `shadowFinished` for a shadow copy, else `conclude`.
    func remoteFinished(
        _ result: Result<UpstreamResponse, UpstreamError>,
        _ exchange: Exchange,
        version: String,
        attempt: Attempt,
        shadow: ShadowRun?
    ) {
        let isShadow = shadow != nil
        if case .success(let response) = result {
            metricCache.firstByte(metrics, model: exchange.model, version: version, role: isShadow ? .shadow : .live)
                .record(Double(response.firstByteNanoseconds) / 1e9)
            if attempt.routeProtocol == .openai, response.stream == nil, (200..<300).contains(response.head.status) {
                // Read whole: a shadow's answer, or a live one that was not streamed.
                let firstToken = llmAnsweredWhole(
                    exchange,
                    version: version,
                    role: isShadow ? .shadow : .live,
                    body: response.body,
                    startNanoseconds: shadow?.startNanoseconds ?? exchange.attemptStartNanoseconds
                )
                if let shadow {
                    shadow.firstTokenMilliseconds = firstToken
                } else {
                    exchange.liveFirstTokenMilliseconds = firstToken
                }
            }
        }
        let outcome = versionResult(result, exchange, version: version, attempt: attempt)
        if attempt.span.isRecording {
            endChildSpan(exchange, attempt.span, version: version, isShadow: isShadow, isRemote: true, result: outcome)
        }
        deliver(outcome, exchange, version: version, shadow: shadow)
    }

    /// What a remote version's response (or failure) means for the request.
    private func versionResult(
        _ result: Result<UpstreamResponse, UpstreamError>,
        _ exchange: Exchange,
        version: String,
        attempt: Attempt
    ) -> VersionResult {
        switch result {
        case .success(let response):
            // A shadow's reply is compared, never sent: its fields are not rewritten for a client.
            // A shadow's reply is compared, never sent: its fields are not kept.
            let reply: Reply
            if attempt.isShadow {
                reply = Reply(status: response.head.status, headers: HTTPHeaders(), body: response.body)
            } else {
                reply = reusableReply(status: response.head.status, headers: response.head.headers, body: response.body)
                reply.isFromBackend = true
            }
            if let stream = response.stream {
                // Relayed as it arrives (see `forward`): nothing here reads it.
                reply.stream = stream
                reply.isEventStream = Worker.isEventStream(response.head.headers)
                if case .contentLength(let length) = response.head.framing { reply.streamLength = length }
                return .answered(reply)
            }
            if response.wasStreamable {
                // A stream that had all arrived with its head: passed on whole, unread, the same.
                // Only a comparison asks whether it was an event stream.
                if exchange.hasShadows { reply.isEventStream = Worker.isEventStream(response.head.headers) }
                return .answered(reply)
            }
            if response.head.status >= 500 {
                return .failed(
                    SidecarError(
                        status: 502,
                        code: "upstream_error",
                        detail: "version '\(version)' answered \(response.head.status)"
                    ),
                    reply: reply
                )
            }
            guard attempt.mustRead else {
                return .answered(reply)
            }
            if response.wasReadUntilClose {
                return .failed(
                    .badResponse(version, "response had no length; only opaque json routes read until close"),
                    reply: nil
                )
            }
            let parsed = response.body.withUnsafeReadableBytes { bytes in try? JSONParser.parse(bytes) }
            guard let parsed else {
                return .failed(.badResponse(version, "response body is not JSON"), reply: nil)
            }
            if attempt.translate && (200..<300).contains(response.head.status) {
                do throws(UpstreamResponseError) {
                    let id = attempt.routeProtocol == .v2 ? Protocols.requestID(try? exchange.bodyJSON()) : nil
                    let bytes = try Protocols.translateResponse(
                        parsed,
                        from: attempt.versionProtocol,
                        to: attempt.routeProtocol,
                        model: exchange.model,
                        versionName: version,
                        id: id
                    )
                    reply.body = EventBuffer(bytes: bytes)
                    reply.headers.remove(name: "content-encoding")
                    reply.headers.replaceOrAdd(name: "content-type", value: "application/json")
                } catch {
                    return .failed(.badResponse(version, error.detail), reply: nil)
                }
            }
            return .answered(reply)
        case .failure(let error):
            return .failed(sidecarError(error, version: version, timeout: attempt.timeoutMilliseconds), reply: nil)
        }
    }

    func sidecarError(_ error: UpstreamError, version: String, timeout: Int) -> SidecarError {
        switch error {
        case .connectFailed(let why): return .connectFailed(version, why)
        case .timeout: return .timeout(version, timeout)
        case .badResponse(let why): return .badResponse(version, why)
        case .tlsFailed(let why): return .tlsFailed(version, why)
        case .overloaded: return .overloaded(version)
        case .closed: return .draining
        }
    }

    func pool(for remote: RemoteBackend, isShadow: Bool = false) -> UpstreamPool {
        let key = Worker.poolKey(remote, contexts: snapshot.tlsContexts)
        if let last = isShadow ? lastShadowPool : lastPool, remote.timeoutMilliseconds <= last.timeoutMilliseconds,
            last.key == key
        {
            return last.pool
        }
        let timeout = max(remote.timeoutMilliseconds, poolTimeouts[key, default: 0])
        poolTimeouts[key] = timeout
        let pool: UpstreamPool
        if let known = pools[key] {
            pool = known
        } else {
            var limits = HTTPLimits()
            limits.maxBodyBytes = options.maxResponseBytes
            if let socketPath = remote.socketPath {
                pool = UpstreamPool(
                    loop: loop,
                    socketPath: socketPath,
                    maxConnections: remote.maxConnections,
                    maxQueued: options.maxQueuedPerBackend,
                    limits: limits
                )
            } else {
                pool = UpstreamPool(
                    loop: loop,
                    host: remote.host,
                    port: remote.port,
                    maxConnections: remote.maxConnections,
                    maxQueued: options.maxQueuedPerBackend,
                    limits: limits,
                    tls: remote.tls.flatMap { snapshot.tlsContexts[$0] }
                )
            }
            pools[key] = pool
        }
        if isShadow { lastShadowPool = (key, timeout, pool) } else { lastPool = (key, timeout, pool) }
        return pool
    }

    static func poolKey(_ remote: RemoteBackend, contexts: [TLSSpec: TLSClientContext] = [:]) -> PoolKey {
        PoolKey(
            host: remote.host,
            port: remote.port,
            socketPath: remote.socketPath,
            maxConnections: remote.maxConnections,
            tls: remote.tls.flatMap { contexts[$0] }.map(ObjectIdentifier.init)
        )
    }

    static func remoteBackends(_ config: Config) -> [RemoteBackend] {
        config.models.values.flatMap { policy in
            policy.versions.values.compactMap { spec -> RemoteBackend? in
                if case .remote(let r) = spec.backend { return r }
                return nil
            }
        }
    }

    // MARK: Embedded

    func evaluate(_ exchange: Exchange, model: String, version: String, backend: EmbeddedBackend) -> VersionResult {
        guard exchange.isRouted, let loaded = exchange.snapshot.model(model, version: version) else {
            preconditionFailure("an embedded version was checked but its model was not loaded")
        }
        let route = exchange.wireProtocol
        do throws(ModelError) {
            let predictions: [JSON]
            var datatype = OIPDatatype.fp64
            switch loaded {
            case .table(let table):
                guard let source = backend.key else {
                    preconditionFailure("a table version was checked without its key")
                }
                guard let key = keyValue(source, in: exchange.facts()) else {
                    throw ModelError.noPrediction("version '\(version)': the request has no \(source) key")
                }
                guard let value = table.lookup(key) else {
                    throw ModelError.noPrediction("version '\(version)': no prediction for key '\(key)'")
                }
                predictions = [value]
            case .embedded(let evaluator):
                // Only TF Serving instances can carry a table version's key field: a v2 body
                // skips looking the model's key fields up.
                let rows = try Protocols.rows(
                    exchange.bodyJSON(),
                    route: route,
                    model: evaluator,
                    ignoring: route.restTwin == .v2 ? [] : exchange.snapshot.tableKeyFields[model] ?? []
                )
                predictions = try evaluator.predict(rows)
                datatype = evaluator.outputDatatype
            }
            let id = route.restTwin == .v2 ? Protocols.requestID(try? exchange.bodyJSON()) : nil
            let bytes = try Protocols.encode(
                predictions,
                route: route,
                datatype: datatype,
                model: model,
                version: version,
                id: id
            )
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: "application/json")
            return .answered(Reply(status: 200, headers: headers, body: EventBuffer(bytes: bytes)))
        } catch {
            let sidecarError = SidecarError(error)
            // A table miss or a model failure is the version's; a bad request is the client's.
            if error.status >= 500 || error.status == 404 {
                return .failed(sidecarError, reply: nil)
            }
            return .answered(errorReply(sidecarError, requestID: exchange.requestID))
        }
    }

    // MARK: Responses

    func errorReply(_ error: SidecarError, requestID: String) -> Reply {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        let reply = Reply(
            status: error.status,
            headers: headers,
            body: EventBuffer(bytes: error.body(requestID: requestID))
        )
        reply.errorCode = error.code
        reply.errorDetail = error.detail
        reply.grpcStatus = error.grpcStatus
        return reply
    }

    func respond(_ exchange: Exchange, error: SidecarError, version: String?) {
        loop.assertInLoop()
        if exchange.trace?.isSampled == true { exchange.trace?.errorType = error.code }
        respond(
            exchange,
            reply: errorReply(error, requestID: exchange.requestID),
            version: version,
            failedVersion: exchange.failedVersion
        )
    }

    func respond(_ exchange: Exchange, reply: Reply, version: String?, failedVersion: String?) {
        loop.assertInLoop()
        // The body is an upstream connection's buffer, which it reuses only when nothing else holds
        // it: a reply kept for reuse (`reusableReply`) lets it go once it has been written.
        defer { reply.body = writtenBody }
        if let call = exchange.grpc {
            respondGRPC(exchange, call: call, reply: reply, version: version, failedVersion: failedVersion)
            return
        }
        clientFields(exchange, reply, version: version, failedVersion: failedVersion)
        exchange.errorCode = reply.errorCode
        if let stream = reply.stream {
            relay(exchange, reply: reply, stream: stream, version: version ?? exchange.version)
            return
        }
        if reply.isEventStream { exchange.liveIsEventStream = true }
        exchange.writer.respond(
            status: reply.status,
            headers: reply.headers,
            fieldLines: exchange.writer.scratch.responseFieldLines,
            body: reply.body
        )
        exchange.bytesOut = reply.body.count
        finishLive(exchange, status: reply.status, version: version, body: reply.body.bytes)
    }
}

extension Worker {
    // Functions, not closures: passing one allocates nothing per request.
    /// Streams every body but a 5xx's (the fallback may replace that one).
    static func streamsAnyBody(_ head: ResponseHead) -> BodyDisposition {
        head.status < 500 ? .stream : .collect
    }
    /// Streams server-sent events (but a 5xx's); reads every other body whole.
    static func streamsEventStreams(_ head: ResponseHead) -> BodyDisposition {
        head.status < 500 && isEventStream(head.headers) ? .stream : .collect
    }

    /// Makes the client response's fields for `reply`: a backend's fields without the hop-by-hop
    /// ones and those the sidecar sets (SPEC §4), then `x-switchyard-version`,
    /// `x-switchyard-fallback` and `x-request-id`. Over HTTP/1.x they are written straight into
    /// the connection's `scratch.responseFieldLines` (and `reply.headers` left empty for a
    /// backend's reply), over
    /// HTTP/2 into `reply.headers`.
    func clientFields(_ exchange: Exchange, _ reply: Reply, version: String?, failedVersion: String?) {
        let scratch = exchange.writer.scratch
        scratch.responseFieldLines.removeAll(keepingCapacity: true)
        if exchange.writer.isHTTP2 {
            if reply.isFromBackend {
                reply.headers = Forwarding.responseHeaders(reply.headers)
                reply.isFromBackend = false
            }
            if let version { reply.headers.add(name: "x-switchyard-version", value: version) }
            if let failedVersion { reply.headers.add(name: "x-switchyard-fallback", value: failedVersion) }
            reply.headers.add(name: "x-request-id", value: exchange.requestID)
            return
        }
        if reply.isFromBackend {
            Forwarding.appendResponseFields(reply.headers, into: &scratch.responseFieldLines)
            reply.headers = HTTPHeaders()
            reply.isFromBackend = false
        }
        // Version names are the policy's own keys: checked like any field value.
        if let version {
            HTTPSerializer.appendField(
                &scratch.responseFieldLines,
                name: "x-switchyard-version",
                value: version,
                droppingFraming: false
            )
        }
        if let failedVersion {
            HTTPSerializer.appendField(
                &scratch.responseFieldLines,
                name: "x-switchyard-fallback",
                value: failedVersion,
                droppingFraming: false
            )
        }
        // Printable ASCII (`Forwarding.acceptableRequestID`) or made here.
        exchange.id.appendField(to: &scratch.responseFieldLines)
    }

    /// Whether a response's `content-type` is `text/event-stream` (parameters ignored): a byte
    /// scan of the field, no String made.
    static func isEventStream(_ headers: HTTPHeaders) -> Bool {
        guard let index = headers.firstIndex(name: "content-type") else { return false }
        return headers.withField(at: index) { _, bytes in
            var start = 0
            var end = bytes.firstIndex(of: UInt8(ascii: ";")) ?? bytes.count
            // The media type: up to `;`, without the spaces and tabs around it.
            while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
            while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
            return UnsafeBufferPointer(rebasing: bytes[start..<end]).equalsIgnoringCase("text/event-stream")
        }
    }

    /// Relays a streamed answer to the client read by read (SPEC §10): the upstream is paused
    /// while the client has more than 256 KiB unsent, a client that goes away closes the
    /// upstream, and a stream cut short ends the client's response abruptly and is counted.
    /// With shadows, a copy of up to `--max-response-bytes` is kept for the comparison.
    func relay(_ exchange: Exchange, reply: Reply, stream: UpstreamStream, version: String) {
        loop.assertInLoop()
        let writer = exchange.writer
        let status = reply.status
        guard
            writer.startStream(
                status: status,
                headers: reply.headers,
                fieldLines: exchange.writer.scratch.responseFieldLines,
                contentLength: reply.streamLength
            )
        else {
            stream.cancel()
            metricCache.streamCut(metrics, model: exchange.model, version: version, reason: "client_closed").increment()
            finishLive(exchange, status: status, version: version, body: [])
            return
        }
        writer.onDrained = { stream.resume() }
        writer.onClientGone = { stream.cancel() }
        let copyLimit = options.maxResponseBytes
        let copy: EventBuffer? = exchange.hasShadows ? EventBuffer() : nil
        exchange.liveIsEventStream = reply.isEventStream
        // SPEC §14: a streamed `openai` answer's first token and final usage are read as it passes.
        let meter: LLMStreamMeter? =
            exchange.wireProtocol == .openai && (200..<300).contains(status)
            ? LLMStreamMeter(
                handles: metricCache.llm(metrics, model: exchange.model, version: version, role: .live),
                startNanoseconds: exchange.attemptStartNanoseconds
            ) : nil
        stream.start(
            onData: { bytes in
                meter?.feed(bytes)
                if let copy, !exchange.liveCopyTooLarge, !copy.appendCopy(of: bytes, limit: copyLimit) {
                    exchange.liveCopyTooLarge = true
                    copy.removeAll()
                }
                exchange.bytesOut += bytes.count
                if writer.streamBody(bytes) { stream.pause() }
            },
            onEnd: { [self] end in
                if let meter {
                    // Before `finishLive`, which hands the live side to the comparisons.
                    meter.finish()
                    exchange.liveFirstTokenMilliseconds = meter.firstTokenMilliseconds
                }
                switch end {
                case .complete:
                    writer.finishStream()
                case .cut(let reason):
                    // Counted before the client can see the cut.
                    metricCache.streamCut(metrics, model: exchange.model, version: version, reason: reason.rawValue)
                        .increment()
                    writer.cutStream()
                    logger.debug(
                        "stream cut",
                        metadata: [
                            "request_id": "\(exchange.requestID)", "version": "\(version)",
                            "reason": "\(reason.rawValue)",
                        ]
                    )
                }
                finishLive(exchange, status: status, version: version, body: copy?.bytes ?? [])
            }
        )
    }

    /// Counts a live answer that has ended and hands it to the shadow comparisons (`body` is
    /// read only then). `version` nil: the sidecar answered before a version was chosen.
    func finishLive(_ exchange: Exchange, status: Int, version: String?, body: @autoclosure () -> [UInt8]) {
        let now = Monotonic.nanoseconds()
        let elapsed = now &- exchange.startNanoseconds
        metricCache.count(
            metrics,
            route: exchange.routeName,
            model: exchange.model,
            version: version ?? "",
            role: .live,
            code: status,
            seconds: Double(elapsed) / 1e9
        )
        if exchange.trace?.isSampled == true {
            endServerSpan(exchange, status: status, endNanoseconds: exchange.startNanoseconds &+ elapsed)
        }
        accessLog?.live(exchange, status: status, version: version)
        if exchange.hasShadows {
            liveAnswered(
                exchange,
                status: status,
                version: version ?? exchange.version,
                body: body(),
                // The answering version's own time, measured as a shadow's is; end to end beside it.
                latencyMilliseconds: Double(now &- exchange.attemptStartNanoseconds) / 1e6,
                totalMilliseconds: Double(elapsed) / 1e6
            )
        }
    }
}

/// An LLM comparison running off the loop: the exchange and setup its result is settled with.
struct PendingLLMComparison {
    let exchange: Exchange
    let setup: ConfigSnapshot.ModelComparison
}

/// One request on its way through a worker. It is also the live attempt's `UpstreamExchange`:
/// the pool carries the send on this object (no object of its own, no closure, per request).
final class Exchange: UpstreamExchange {  // confined to its worker's loop thread
    let request: ServerRequest
    let writer: ResponseWriter
    let snapshot: ConfigSnapshot
    /// The request's id, as the sidecar writes it into field lines (`id.appendField`).
    let id: RequestID
    /// The request's id as a String, made on first use (a made id is 16 bytes: one allocation).
    var requestID: String {
        if let made = requestIDString { return made }
        let made = id.string
        requestIDString = made
        return made
    }
    private var requestIDString: String?
    /// The decoded gRPC call, for a gRPC request (SPEC §13); nil for REST. Its REST twin body
    /// stands in for the request body everywhere the REST path reads one.
    let grpc: GRPCCall?
    /// Routing chose a version (`route(_:isGuarded:)` has run). The fields below are what the
    /// request path reads of the decision, copied once so that it keeps no `Decision`; until
    /// routing has chosen, the names are empty and `fallback` nil.
    private(set) var isRouted = false
    private(set) var model = ""
    /// The version routing chose (not the fallback).
    private(set) var version = ""
    private(set) var routeName = ""
    /// The route's position in `Config.routes`.
    private(set) var routeIndex = 0
    private(set) var wireProtocol = WireProtocol.json
    /// The model has a guard (only then is `guardedVersion` looked up).
    private(set) var isGuarded = false
    /// The version that answers if the chosen one fails.
    private(set) var fallback: String?
    /// Set once the chosen version failed and the fallback was asked.
    var failedVersion: String?
    let startNanoseconds: UInt64
    /// When the current version (the chosen one, then the fallback) was asked.
    var attemptStartNanoseconds: UInt64 = 0
    // Unchecked (loop thread only, no overlapping access): checking `shadows` costs +357
    // instructions/request, 4 checks (bench/instructions.sh "", 33,815 -> 34,172, with `live` and `trace`,
    // which alone cost no check).
    /// Shadow copies of this request, and the live side once it has answered.
    @exclusivity(unchecked) var shadows: [ShadowRun] = []
    var live: ResponseSide?
    /// The request's trace while tracing is on (`Worker.beginTrace`).
    var trace: RequestTrace?
    /// The live answer was streamed as server-sent events (compared byte for byte, SPEC §10).
    var liveIsEventStream = false
    /// An `openai` live answer's time to first token (SPEC §14), for the comparison log.
    var liveFirstTokenMilliseconds: Double?
    /// The streamed live answer outgrew the copy kept for comparisons (outcome `error`, `too_large`).
    var liveCopyTooLarge = false
    /// For the access log: the sidecar's error code if it answered itself, the response body
    /// bytes handed to the client (streamed ones counted as they go), and whether the split was
    /// assigned by the request's sticky key.
    var errorCode: String?
    var bytesOut = 0
    /// How the live version (the chosen one, then the fallback) is being asked, for
    /// `upstreamFinished`.
    var liveAttempt = Worker.Attempt(
        timeoutMilliseconds: 0,
        mustRead: false,
        translate: false,
        routeProtocol: .json,
        versionProtocol: .json,
        isShadow: false
    )
    var liveAttemptVersion = ""
    /// The worker whose loop this exchange is confined to (it outlives every exchange).
    let worker: Worker
    private(set) var hasStickyKey = false
    var hasShadows: Bool { !shadows.isEmpty }
    private var parsedBody: Result<JSON, ModelError>?

    /// Some key source of `snapshot` reads the body (see `ConfigSnapshot.readsBodyKeys`).
    let readsBodyKeys: Bool

    init(
        request: ServerRequest,
        writer: ResponseWriter,
        snapshot: ConfigSnapshot,
        requestID: RequestID,
        readsBodyKeys: Bool = true,
        grpc: GRPCCall? = nil,
        worker: Worker
    ) {
        self.worker = worker
        self.grpc = grpc
        self.request = request
        self.writer = writer
        self.snapshot = snapshot
        self.id = requestID
        self.readsBodyKeys = readsBodyKeys
        self.startNanoseconds = Monotonic.nanoseconds()
        super.init()
    }

    /// The live attempt's result (`Worker.forward`).
    override func upstreamFinished(_ result: Result<UpstreamResponse, UpstreamError>) {
        worker.remoteFinished(result, self, version: liveAttemptVersion, attempt: liveAttempt, shadow: nil)
    }

    /// Records what routing decided.
    func route(_ decision: Decision, isGuarded: Bool) {
        isRouted = true
        model = decision.model
        version = decision.version
        // From the snapshot's own route list (the one `snapshot.routing` was built from):
        // `decision.route` would copy the whole route to read its name.
        routeName = snapshot.config.routes[decision.routeIndex].name
        routeIndex = decision.routeIndex
        wireProtocol = decision.wireProtocol
        fallback = decision.fallback
        if case .stickySplit = decision.reason { hasStickyKey = true }
        self.isGuarded = isGuarded
    }

    /// Records the route that matched a request refused before a version was chosen (an unknown
    /// version, an open guard), so that its metrics carry the route and model.
    func refuse(route: Route) {
        routeName = route.name
        model = route.model
    }

    /// The request body as JSON, parsed once, on first use.
    func bodyJSON() throws(ModelError) -> JSON {
        if let grpc { return grpc.twin }
        if let parsedBody { return try parsedBody.get() }
        let result: Result<JSON, ModelError> = request.body.withUnsafeReadableBytes { bytes in
            do throws(ModelError) {
                return .success(try TFServingCodec.parseBody(bytes))
            } catch {
                return .failure(error)
            }
        }
        parsedBody = result
        return try result.get()
    }

    /// What routing and key sources read of the request. Made when asked (once for routing,
    /// again only for a table key), not kept: most requests never need it after routing.
    func facts() -> RequestFacts {
        // Fields are read through `request.head`: binding the head to a local would copy all of it.
        // Without a query the target is the path as it is, not a copy.
        let path: String
        var query: String?
        let split = request.head.pathAndQuery
        if let rest = split.query {
            path = String(split.path)
            query = String(rest)
        } else {
            path = request.head.target
        }
        // The closure is made only when a key may need it.
        var bodyKey: ((String) -> String?)?
        if readsBodyKeys {
            bodyKey = { [unowned self] pointer in
                guard let body = try? self.bodyJSON(), let value = body.value(atPointer: pointer) else { return nil }
                return value.keyString
            }
        }
        return RequestFacts(
            method: request.head.method,
            path: path,
            query: query,
            headers: request.head.headers,
            bodyKey: bodyKey,
            grpc: grpc?.facts
        )
    }
}

extension ConfigSnapshot {
    /// Whether any sticky key or table key reads the request body (`body:` source): only then does
    /// a request's `RequestFacts` carry a body reader.
    var readsBodyKeys: Bool {
        config.models.values.contains { policy in
            if case .body? = policy.sticky { return true }
            return policy.versions.values.contains { spec in
                if case .embedded(let embedded) = spec.backend, case .body? = embedded.key { return true }
                return false
            }
        }
    }
}
