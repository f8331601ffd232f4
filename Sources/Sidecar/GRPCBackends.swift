import EventHTTP
import HTTP1
import Models
import Policy
import SwiftProtobuf

/// A worker's HTTP/2 pools to its remote gRPC versions (`grpc://`, `grpcs://`; SPEC §13
/// "Backends"), keyed as the HTTP/1.1 pools are (`Worker.PoolKey`: host, port, connection cap and
/// TLS context, the context of a `grpcs://` version being its ALPN `h2` one). A class so that the
/// worker holds it in one stored property; loop thread only.
final class GRPCPools {
    var pools: [Worker.PoolKey: HTTP2Pool] = [:]
    /// The longest `timeout_ms` of the versions using each pool: a pool dropped by a reload
    /// closes only after that, so calls begun on the old config finish.
    var timeouts: [Worker.PoolKey: Int] = [:]
}

extension Worker {
    /// This worker's pool to a remote gRPC version, made on first use (`maxConnections` is the
    /// version's `max_connections`, the queue `--max-queued-per-backend`).
    func grpcPool(for remote: RemoteBackend) -> HTTP2Pool {
        let key = Worker.poolKey(remote, contexts: snapshot.grpcTLSContexts)
        let state = grpcPools
        state.timeouts[key] = max(remote.timeoutMilliseconds, state.timeouts[key, default: 0])
        if let pool = state.pools[key] { return pool }
        let pool = HTTP2Pool(
            loop: loop,
            host: remote.host,
            port: remote.port,
            maxConnections: remote.maxConnections,
            maxQueued: options.maxQueuedPerBackend,
            // A unary answer is one message: the gRPC message limit bounds it as it bounds a
            // request's (SPEC §13, `--max-grpc-message-bytes`), plus its prefix.
            maxResponseBytes: options.maxGRPCMessageBytes + GRPCFraming.prefixLength,
            tls: remote.tls.flatMap { snapshot.grpcTLSContexts[$0] }
        )
        state.pools[key] = pool
        return pool
    }

    /// After a reload: pools whose backend is gone (or changed host, cap or TLS files) close once
    /// the longest timeout of their versions has passed, as the HTTP/1.1 pools do.
    func retireGRPCPools(keeping next: ConfigSnapshot) {
        let state = grpcPools
        guard !state.pools.isEmpty else { return }
        let wanted = Set(
            Worker.remoteBackends(next.config).filter(\.isGRPC).map {
                Worker.poolKey($0, contexts: next.grpcTLSContexts)
            }
        )
        for (key, pool) in state.pools where !wanted.contains(key) {
            state.pools[key] = nil
            let timeout = state.timeouts.removeValue(forKey: key) ?? 1_000
            loop.scheduleTimer(afterMilliseconds: timeout + 1_000) { pool.close() }
        }
    }

    /// Asks a remote gRPC version: the call's framed message as the app sent it, to its own
    /// `:path`, with the client's metadata (hop-by-hop fields dropped; `x-forwarded-for`,
    /// `x-request-id`, `x-switchyard-shadow` and `traceparent` as on the REST path) and a
    /// `grpc-timeout` of what is left of the version's `timeout_ms` shortened by the call's own
    /// deadline. The result goes to `shadowFinished` for a shadow copy, else to `conclude`.
    func forwardGRPC(
        _ exchange: Exchange,
        version: String,
        spec: VersionSpec,
        remote: RemoteBackend,
        shadow: ShadowRun?
    ) {
        func deliver(_ result: VersionResult) {
            if let shadow {
                shadowFinished(exchange, shadow, result: result)
            } else {
                conclude(exchange, version: version, result: result)
            }
        }
        guard let call = exchange.grpc else {
            // `validate` gives grpc:// versions only to gRPC routes.
            deliver(.failed(.badResponse(version, "a gRPC version cannot answer a REST request"), reply: nil))
            return
        }
        guard let timeout = call.timeout(remote.timeoutMilliseconds, startedAt: exchange.startNanoseconds) else {
            deliver(.failed(.deadlinePassed(version), reply: nil))
            return
        }
        let pool = grpcPool(for: remote)
        if let shadow, !pool.hasFreeStream {
            // Every stream the backend allows is busy: the copy is dropped, not queued.
            shadowDropped(exchange, shadow)
            return
        }
        let isShadow = shadow != nil
        // The answer is read (rendered as REST JSON) only for a comparison.
        let readsAnswer = isShadow || exchange.hasShadows
        var span = ChildSpan()
        let traceparent = exchange.trace == nil ? nil : beginClientSpan(exchange, &span)
        var metadata = Forwarding.upstreamHeaders(
            exchange.request.head.headers,
            peerAddress: exchange.request.peerAddress,
            requestID: exchange.requestID,
            mustReadBody: false,
            isShadow: isShadow,
            traceparent: traceparent
        )
        // An answer the sidecar reads must come uncompressed (the codecs read plain messages).
        if readsAnswer { metadata.remove(name: "grpc-accept-encoding") }
        // A version the message named for the sidecar's pinning is not the backend's to read.
        var body = exchange.request.body
        if let unversioned = call.unversionedBody,
            exchange.snapshot.config.routes[exchange.routeIndex].pin == .message
        {
            body = unversioned
        }
        let request = GRPCRequest(path: call.path, metadata: metadata, body: body)
        let model = exchange.model
        let childSpan = span
        pool.call(request, timeoutMilliseconds: timeout) { [self] result in
            if case .success(let response) = result {
                metricCache.firstByte(metrics, model: model, version: version, role: isShadow ? .shadow : .live)
                    .record(Double(response.firstByteNanoseconds) / 1e9)
            }
            let outcome = grpcVersionResult(
                result,
                call: call,
                version: version,
                timeout: timeout,
                readsAnswer: readsAnswer,
                isShadow: isShadow
            )
            if childSpan.isRecording {
                endChildSpan(exchange, childSpan, version: version, isShadow: isShadow, isRemote: true, result: outcome)
            }
            deliver(outcome)
        }
    }

    /// What a gRPC version's answer means (SPEC §13): OK is an answer; UNAVAILABLE, INTERNAL,
    /// UNKNOWN, DATA_LOSS and DEADLINE_EXCEEDED are failures that `fallback` catches and guards
    /// count, the backend's reply kept so that without a fallback the client gets its own status
    /// and message; any other status is the client's own mistake, answered as it is.
    private func grpcVersionResult(
        _ result: Result<GRPCResponse, UpstreamError>,
        call: GRPCCall,
        version: String,
        timeout: Int,
        readsAnswer: Bool,
        isShadow: Bool
    ) -> VersionResult {
        var response: GRPCResponse
        switch result {
        case .failure(let error):
            return .failed(sidecarError(error, version: version, timeout: timeout), reply: nil)
        case .success(let answer):
            response = answer
        }
        if response.httpStatus != 200 {
            // Not a gRPC answer: its status (gRPC's reading of the HTTP status) in a reply of ours.
            let message = response.message ?? "version '\(version)' answered HTTP \(response.httpStatus)"
            response = GRPCResponse(
                httpStatus: 200,
                headers: HTTPHeaders(),
                body: EventBuffer(),
                trailers: GRPCFraming.trailersOnlyHeaders(response.status, message: message),
                isTrailersOnly: true,
                status: response.status,
                message: message,
                firstByteNanoseconds: response.firstByteNanoseconds
            )
        }
        let reply = Reply(
            status: Worker.httpStatus(grpc: response.status),
            headers: HTTPHeaders(),
            body: EventBuffer()
        )
        reply.grpcResponse = response
        switch response.status {
        case .ok:
            guard readsAnswer else { return .answered(reply) }
            do throws(UpstreamResponseError) {
                reply.body = EventBuffer(bytes: try Worker.restRendering(response, call: call).serialized())
            } catch {
                // A live answer goes to the client as it came (the comparison reports the error);
                // a shadow's is compared only, and is a bad response.
                if isShadow { return .failed(.badResponse(version, error.detail), reply: nil) }
            }
            return .answered(reply)
        case .unavailable, .internal, .unknown, .dataLoss, .deadlineExceeded:
            var detail = "version '\(version)' answered \(Worker.name(response.status))"
            if let message = response.message { detail += ": \(message)" }
            return .failed(
                SidecarError(status: reply.status, code: "upstream_error", detail: detail, grpc: response.status),
                reply: reply
            )
        default:
            return .answered(reply)
        }
    }

    /// The HTTP status a backend's gRPC status pairs with, for metrics and comparisons: the
    /// reverse of `SidecarError.grpcStatus(httpStatus:)` (UNAVAILABLE 503, INTERNAL 500,
    /// DEADLINE_EXCEEDED 504, NOT_FOUND 404...), as `google.rpc.Code` documents the pairs.
    static func httpStatus(grpc status: GRPCStatus) -> Int {
        switch status {
        case .ok: return 200
        case .cancelled: return 499
        case .invalidArgument, .failedPrecondition, .outOfRange: return 400
        case .unauthenticated: return 401
        case .permissionDenied: return 403
        case .notFound: return 404
        case .alreadyExists, .aborted: return 409
        case .resourceExhausted: return 429
        case .unimplemented: return 501
        case .unavailable: return 503
        case .deadlineExceeded: return 504
        case .unknown, .internal, .dataLoss: return 500
        }
    }

    /// A status as gRPC spells it (`DEADLINE_EXCEEDED`), for details and logs.
    static func name(_ status: GRPCStatus) -> String {
        var name = ""
        for character in String(describing: status) {
            if character.isUppercase { name += "_" }
            name += character.uppercased()
        }
        return name
    }

    /// A gRPC answer's one response message as its REST twin renders it (what `compare.output`
    /// points into: `/outputs/0/data` for `ModelInfer`, `/predictions` for `Predict`).
    static func restRendering(_ response: GRPCResponse, call: GRPCCall) throws(UpstreamResponseError) -> JSON {
        let bytes = response.body.bytes
        let split = bytes.withUnsafeBytes {
            GRPCFraming.messages(
                in: $0,
                maxMessageBytes: Int.max,
                encoding: response.headers.first(name: "grpc-encoding")
            )
        }
        let ranges: [Range<Int>]
        switch split {
        case .failure(let error): throw UpstreamResponseError(error.message)
        case .success(let found): ranges = found
        }
        guard ranges.count == 1 else {
            throw UpstreamResponseError("a unary answer carries one message; this one carries \(ranges.count)")
        }
        let message = Array(bytes[ranges[0]])
        switch call.method {
        case .predict:
            return try GRPCTFServingCodec.restRendering(of: GRPCTFServingCodec.decodePredictResponse(message))
        default:
            return try GRPCOIPCodec.restRendering(of: GRPCOIPCodec.decodeInferResponse(message))
        }
    }

    /// Writes a gRPC version's answer as it came: its initial metadata, messages and trailers
    /// (hop-by-hop fields and the sidecar's own dropped), with the sidecar's `x-switchyard-version`,
    /// `x-switchyard-fallback` and `x-request-id` added to the initial metadata.
    func writeGRPCPassthrough(
        _ exchange: Exchange,
        _ response: GRPCResponse,
        version: String?,
        failedVersion: String?
    ) {
        var headers = Forwarding.responseHeaders(response.isTrailersOnly ? response.trailers : response.headers)
        if headers.first(name: "content-type") == nil { headers.add(name: "content-type", value: "application/grpc") }
        if let version { headers.add(name: "x-switchyard-version", value: version) }
        if let failedVersion { headers.add(name: "x-switchyard-fallback", value: failedVersion) }
        headers.add(name: "x-request-id", value: exchange.requestID)
        if response.status != .ok, exchange.trace?.isSampled == true, exchange.trace?.errorType == nil {
            exchange.trace?.errorType = "grpc_\(response.status.rawValue)"
        }
        if response.isTrailersOnly {
            if headers.first(name: "grpc-status") == nil {
                for field in GRPCFraming.statusTrailers(response.status, message: response.message) {
                    headers.add(name: field.name, value: field.value)
                }
            }
            exchange.bytesOut = 0
            exchange.writer.respond(status: 200, headers: headers, body: EventBuffer())
            return
        }
        var trailers = Forwarding.responseHeaders(response.trailers)
        if trailers.first(name: "grpc-status") == nil {
            trailers = GRPCFraming.statusTrailers(response.status, message: response.message)
        }
        exchange.bytesOut = response.body.count
        exchange.writer.respond(status: 200, headers: headers, body: response.body, trailers: trailers)
    }
}
