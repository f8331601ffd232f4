import EventHTTP
import HTTP1
import Models
import Policy
import Protos
import Routing
import SwiftProtobuf

/// The gRPC path of a worker (SPEC §13). A call is decoded into a `GRPCCall` whose REST twin
/// stands in for the request body, routed and answered by the same code as REST (`dispatch`,
/// `answer`, `evaluate`, `forward`, `conclude`, shadows and comparisons, all reading REST JSON),
/// and turned into a gRPC response only when it is written (`respondGRPC`): the answer's REST
/// rendering becomes the response message, mirroring the request's typed or raw tensors, and a
/// failure becomes a trailers-only response with `grpc-status` and `grpc-message`.
extension Worker {
    func handleGRPC(_ request: ServerRequest, _ writer: ResponseWriter) {
        let headers = request.head.headers
        let call = GRPCCall(
            path: String(request.head.path),
            deadlineMilliseconds: headers.first(name: "grpc-timeout").flatMap(GRPCFraming.parseTimeout)
        )
        let exchange = Exchange(
            request: request,
            writer: writer,
            snapshot: snapshot,
            requestID: RequestID(
                client: Forwarding.acceptableRequestID(Forwarding.clientRequestID(headers)),
                random: &random
            ),
            // A `body:` key reads the call's REST twin.
            readsBodyKeys: snapshotReadsBodyKeys,
            grpc: call,
            worker: self
        )
        if let tracer { beginTrace(exchange, tracer: tracer) }
        if call.method == .unimplemented {
            respond(exchange, error: .unimplemented(request.head.path), version: nil)
            return
        }
        let message: [UInt8]
        do throws(SidecarError) {
            message = try GRPCCall.message(
                request.body,
                maxMessageBytes: options.maxGRPCMessageBytes,
                encoding: headers.first(name: "grpc-encoding")
            )
        } catch {
            respond(exchange, error: error, version: nil)
            return
        }
        guard call.method.isInference else {
            answerGRPCMetadata(exchange, call: call, message: message)
            return
        }
        do throws(ModelError) {
            try call.decode(message)
        } catch {
            respond(exchange, error: SidecarError(error), version: nil)
            return
        }
        dispatch(exchange)
    }

    /// Writes the answer to a gRPC call. `reply` is what the REST path made: a 2xx REST twin
    /// answer becomes the response message; the sidecar's own errors keep their status (SPEC §13's
    /// mapping) and `detail`; a REST version's other 4xx/5xx becomes the status its HTTP status
    /// means; a `grpc://` version's answer (`reply.grpcResponse`) goes through as it came.
    /// Metrics and comparisons see the reply's HTTP status and REST body, as for REST.
    func respondGRPC(_ exchange: Exchange, call: GRPCCall, reply: Reply, version: String?, failedVersion: String?) {
        if let response = reply.grpcResponse {
            // A gRPC version's own answer (GRPCBackends.swift): passed through as it came.
            exchange.errorCode = nil
            writeGRPCPassthrough(exchange, response, version: version, failedVersion: failedVersion)
            finishLive(exchange, status: reply.status, version: version, body: reply.body.bytes)
            return
        }
        var status = reply.status
        var outcome: Result<[UInt8], GRPCFailure>
        exchange.errorCode = reply.errorCode
        if let code = reply.errorCode {
            outcome = .failure(GRPCFailure(status: reply.grpcStatus ?? .unknown, message: reply.errorDetail ?? code))
        } else if !(200..<300).contains(reply.status) {
            outcome = .failure(
                GRPCFailure(
                    status: SidecarError.grpcStatus(httpStatus: reply.status),
                    message: Worker.backendMessage(reply, version: version)
                )
            )
        } else {
            do {
                outcome = .success(try grpcAnswer(exchange, call: call, body: reply.body, version: version))
            } catch {
                // The version answered something the call's message cannot carry.
                let failure = SidecarError.badResponse(version ?? "", "its answer is not a gRPC response: \(error)")
                status = failure.status
                exchange.errorCode = failure.code
                outcome = .failure(GRPCFailure(status: failure.grpcStatus, message: failure.detail))
            }
        }
        writeGRPC(exchange, outcome, version: version, failedVersion: failedVersion)
        finishLive(exchange, status: status, version: version, body: reply.body.bytes)
    }

    /// A gRPC status with its `grpc-message`.
    struct GRPCFailure: Error {
        var status: GRPCStatus
        var message: String
    }

    /// Sends one response message with `grpc-status: 0`, or a trailers-only error; the sidecar's
    /// fields travel as initial metadata (in the one HEADERS frame of a trailers-only response).
    func writeGRPC(
        _ exchange: Exchange,
        _ outcome: Result<[UInt8], GRPCFailure>,
        version: String?,
        failedVersion: String?
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/grpc")
        if let version { headers.add(name: "x-switchyard-version", value: version) }
        if let failedVersion { headers.add(name: "x-switchyard-fallback", value: failedVersion) }
        headers.add(name: "x-request-id", value: exchange.requestID)
        switch outcome {
        case .success(let message):
            var framed: [UInt8] = []
            framed.reserveCapacity(message.count + GRPCFraming.prefixLength)
            GRPCFraming.appendMessage(message, to: &framed)
            exchange.bytesOut = framed.count
            exchange.writer.respond(
                status: 200,
                headers: headers,
                body: EventBuffer(bytes: framed),
                trailers: GRPCFraming.statusTrailers(.ok)
            )
        case .failure(let failure):
            if exchange.trace?.isSampled == true, exchange.trace?.errorType == nil {
                exchange.trace?.errorType = "grpc_\(failure.status.rawValue)"
            }
            for field in GRPCFraming.statusTrailers(failure.status, message: failure.message) {
                headers.add(name: field.name, value: field.value)
            }
            exchange.bytesOut = 0
            exchange.writer.respond(status: 200, headers: headers, body: EventBuffer())
        }
    }

    /// The response message for a version's REST twin answer (`body`).
    private func grpcAnswer(_ exchange: Exchange, call: GRPCCall, body: EventBuffer, version: String?) throws -> [UInt8]
    {
        let json = try JSONParser.parse(body.bytes)
        switch call.method {
        case .predict:
            let spec = GRPCTFServingCodec.modelSpec(
                name: call.modelName,
                version: version ?? "",
                signatureName: call.signatureName
            )
            // An embedded version's datatype is known (its REST twin writes bare numbers).
            if let version, let datatype = embeddedDatatype(exchange, version: version),
                let predictions = json["predictions"]?.arrayValue
            {
                return try GRPCTFServingCodec.predictResponse(
                    predictions: predictions,
                    datatype: datatype,
                    modelSpec: spec,
                    encoding: call.encoding
                ).serializedBytes()
            }
            return try GRPCTFServingCodec.predictResponse(fromREST: json, modelSpec: spec, encoding: call.encoding)
                .serializedBytes()
        default:
            return try GRPCOIPCodec.inferResponse(fromREST: json, encoding: call.encoding).serializedBytes()
        }
    }

    /// The output datatype of an embedded version of the exchange's model; nil for a remote one.
    private func embeddedDatatype(_ exchange: Exchange, version: String) -> OIPDatatype? {
        guard exchange.isRouted, let spec = exchange.snapshot.routing.version(version, routeIndex: exchange.routeIndex),
            case .embedded = spec.backend
        else { return nil }
        switch exchange.snapshot.model(exchange.model, version: version) {
        case .embedded(let model)?: return model.outputDatatype
        case .table?: return .fp64
        case nil: return nil
        }
    }

    /// `grpc-message` for a REST version's own error answer: its status and its `error` field.
    static func backendMessage(_ reply: Reply, version: String?) -> String {
        var text = "version '\(version ?? "")' answered \(reply.status)"
        if let body = try? JSONParser.parse(reply.body.bytes) {
            if let error = body["error"]?.stringValue {
                text += ": \(error)"
                if let detail = body["detail"]?.stringValue { text += ": \(detail)" }
            }
        }
        return text
    }

    // MARK: Health and metadata

    /// Answers `ServerLive`, `ServerReady`, `ServerMetadata`, `ModelReady`, `ModelMetadata` and
    /// TF Serving's `GetModelMetadata` from the config, as their REST twins are (`Metadata`).
    /// A model is one behind a gRPC route of the method's protocol, by the name its calls carry.
    func answerGRPCMetadata(_ exchange: Exchange, call: GRPCCall, message: [UInt8]) {
        let snapshot = exchange.snapshot
        let isReady = !isDraining
        do {
            let response: any SwiftProtobuf.Message
            switch call.method {
            case .serverLive:
                _ = try GRPCOIPCodec.decodeMessage(message, as: Inference_ServerLiveRequest.self)
                var answer = Inference_ServerLiveResponse()
                answer.live = true
                response = answer
            case .serverReady:
                _ = try GRPCOIPCodec.decodeMessage(message, as: Inference_ServerReadyRequest.self)
                var answer = Inference_ServerReadyResponse()
                answer.ready = isReady
                response = answer
            case .serverMetadata:
                _ = try GRPCOIPCodec.decodeMessage(message, as: Inference_ServerMetadataRequest.self)
                var answer = Inference_ServerMetadataResponse()
                answer.name = "switchyard"
                answer.version = SwitchyardVersion.current
                response = answer
            case .modelReady:
                let request = try GRPCOIPCodec.decodeMessage(message, as: Inference_ModelReadyRequest.self)
                _ = try Worker.grpcModel(request.name, version: request.version, of: .v2GRPC, in: snapshot)
                var answer = Inference_ModelReadyResponse()
                answer.ready = isReady
                response = answer
            case .modelMetadata:
                let request = try GRPCOIPCodec.decodeMessage(message, as: Inference_ModelMetadataRequest.self)
                let (policy, version) = try Worker.grpcModel(
                    request.name,
                    version: request.version,
                    of: .v2GRPC,
                    in: snapshot
                )
                let shape = Metadata.shape(policy, version: version ?? Metadata.primary(policy), snapshot: snapshot)
                response = GRPCOIPCodec.modelMetadataResponse(
                    name: policy.model,
                    versions: version.map { [$0] } ?? policy.versionOrder,
                    platform: shape.platform,
                    inputs: shape.featureCount.map {
                        [GRPCOIPCodec.TensorMetadata(name: "input-0", datatype: .fp64, shape: [-1, $0])]
                    } ?? [],
                    outputs: [
                        GRPCOIPCodec.TensorMetadata(
                            name: OIPCodec.outputName,
                            datatype: shape.datatype,
                            shape: shape.outputWidth > 1 ? [-1, shape.outputWidth] : [-1]
                        )
                    ]
                )
            case .getModelMetadata:
                let request = try GRPCOIPCodec.decodeMessage(
                    message,
                    as: Tensorflow_Serving_GetModelMetadataRequest.self
                )
                if let field = request.metadataField.first(where: { $0 != "signature_def" }) {
                    throw SidecarError(
                        status: 400,
                        code: "bad_request",
                        detail: "metadata field '\(field)' is not supported; ask for 'signature_def'"
                    )
                }
                let (policy, version) = try Worker.grpcModel(
                    request.modelSpec.name,
                    version: GRPCCall.version(of: request.modelSpec) ?? "",
                    of: .tfservingGRPC,
                    in: snapshot
                )
                let described = version ?? Metadata.primary(policy)
                let shape = Metadata.shape(policy, version: described, snapshot: snapshot)
                response = try GRPCTFServingCodec.getModelMetadataResponse(
                    modelName: policy.model,
                    version: described,
                    featureCount: shape.featureCount,
                    outputDatatype: shape.datatype
                )
            default:
                throw SidecarError.unimplemented(call.path[...])
            }
            let bytes: [UInt8] = try response.serializedBytes()
            writeGRPC(exchange, .success(bytes), version: nil, failedVersion: nil)
            finishLive(exchange, status: 200, version: nil, body: [])
        } catch let error as SidecarError {
            respond(exchange, error: error, version: nil)
        } catch let error as ModelError {
            respond(exchange, error: SidecarError(error), version: nil)
        } catch {
            respond(exchange, error: SidecarError(status: 500, code: "model_error", detail: "\(error)"), version: nil)
        }
    }

    /// The policy behind the gRPC routes of `wireProtocol` whose calls name model `name` (a
    /// route's `match.model`, or its policy's name when it matches any model), and the version
    /// `version` resolves to (nil when empty).
    static func grpcModel(
        _ name: String,
        version: String,
        of wireProtocol: WireProtocol,
        in snapshot: ConfigSnapshot
    ) throws(SidecarError) -> (ModelPolicy, String?) {
        for route in snapshot.config.routes where route.wireProtocol == wireProtocol && route.match.grpc != nil {
            guard route.match.model.map({ $0 == name }) ?? (route.model == name),
                let policy = snapshot.config.models[route.model]
            else { continue }
            if version.isEmpty { return (policy, nil) }
            guard let resolved = policy.resolve(version) else {
                throw .unknownVersion(model: policy.model, name: version)
            }
            return (policy, resolved)
        }
        throw SidecarError(
            status: 404,
            code: "no_route",
            detail: "no \(wireProtocol.rawValue) route serves model '\(name)'"
        )
    }
}
