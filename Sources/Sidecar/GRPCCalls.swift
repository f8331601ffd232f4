import EventHTTP
import HTTP1
import Models
import Policy
import Protos
import Routing
import SwiftProtobuf

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The gRPC methods the sidecar serves itself or routes (SPEC §13), named by a call's `:path`.
enum GRPCMethod: Sendable, Hashable {
    // `inference.GRPCInferenceService` (protocol `v2-grpc`)
    case serverLive
    case serverReady
    case serverMetadata
    case modelReady
    case modelMetadata
    case modelInfer
    // `tensorflow.serving.PredictionService` (protocol `tfserving-grpc`)
    case predict
    case getModelMetadata
    /// Any other method, of these services (TF Serving's `Classify`, `Regress`,
    /// `MultiInference`; Triton's `ModelConfig`...) or of another: UNIMPLEMENTED.
    case unimplemented

    init(path: Substring) {
        let v2 = "/" + GRPCOIPCodec.serviceName + "/"
        let tf = "/" + GRPCTFServingCodec.serviceName + "/"
        if path.hasPrefix(v2) {
            switch path.dropFirst(v2.count) {
            case "ServerLive": self = .serverLive
            case "ServerReady": self = .serverReady
            case "ServerMetadata": self = .serverMetadata
            case "ModelReady": self = .modelReady
            case "ModelMetadata": self = .modelMetadata
            case "ModelInfer": self = .modelInfer
            default: self = .unimplemented
            }
        } else if path.hasPrefix(tf) {
            switch path.dropFirst(tf.count) {
            case "Predict": self = .predict
            case "GetModelMetadata": self = .getModelMetadata
            default: self = .unimplemented
            }
        } else {
            self = .unimplemented
        }
    }

    /// The inference calls, which are routed to a version; the others are answered by the
    /// sidecar from its config, as their REST twins are (`Metadata`).
    var isInference: Bool { self == .modelInfer || self == .predict }
}

/// One decoded gRPC call: what routing reads of its message (`facts`), its REST twin (the body
/// its route's REST protocol would carry, which embedded models, key sources, REST versions and
/// comparisons read in place of a request body), and how its answer is written (`encoding`).
/// Loop thread only; made once per call.
final class GRPCCall: @unchecked Sendable {
    let method: GRPCMethod
    /// The call's `:path` (`/inference.GRPCInferenceService/ModelInfer`).
    let path: String
    /// `grpc-timeout` in milliseconds; nil when the call sets no deadline.
    let deadlineMilliseconds: Int?
    /// What routing reads: the message's model name and version (filled by `decode`).
    private(set) var facts = GRPCCallFacts(model: nil)
    /// Answers mirror the request: raw tensors for raw requests (SPEC §13).
    private(set) var encoding = GRPCTensorEncoding.typed
    /// The REST twin of the request: OIP `{"id"?, "inputs": [...]}` for `ModelInfer`, TF Serving
    /// `{"inputs": ...}` for `Predict` (a single input unnamed, read whatever its name).
    private(set) var twin: JSON = .null
    /// The bytes a REST version of the route's own twin protocol is sent (TF Serving inputs keep
    /// their names there).
    private var restBytes: [UInt8] = []
    /// The message's model name as the app wrote it (sent on to REST versions) and TF Serving's
    /// `signature_name`.
    private(set) var modelName = ""
    private(set) var signatureName = ""

    init(path: String, deadlineMilliseconds: Int?) {
        self.path = path
        self.method = GRPCMethod(path: path[...])
        self.deadlineMilliseconds = deadlineMilliseconds
    }

    /// The call's one request message (a unary call carries exactly one), or why not: framing
    /// errors keep their gRPC status (a compressed message: UNIMPLEMENTED or INTERNAL).
    static func message(
        _ body: EventBuffer,
        maxMessageBytes: Int,
        encoding: String?
    ) throws(SidecarError) -> [UInt8] {
        let bytes = body.bytes
        let split = bytes.withUnsafeBytes {
            GRPCFraming.messages(in: $0, maxMessageBytes: maxMessageBytes, encoding: encoding)
        }
        switch split {
        case .failure(let error):
            if case .messageTooLarge = error {
                throw SidecarError(status: 413, code: "body_too_large", detail: error.message)
            }
            throw SidecarError(status: 400, code: "bad_request", detail: error.message, grpc: error.status)
        case .success(let ranges):
            guard ranges.count == 1 else {
                throw SidecarError(
                    status: 400,
                    code: "bad_request",
                    detail: "a unary call carries exactly one request message; this one carries \(ranges.count)",
                    grpc: .internal
                )
            }
            return Array(bytes[ranges[0]])
        }
    }

    /// The call's framed message without the version it names, for a `grpc://` version when
    /// the route pins by the message (`version_from: message`): that version is the sidecar's
    /// name for the backend, not the backend's own (a REST version is asked without one too).
    /// Nil when the message names no version.
    private(set) var unversionedBody: EventBuffer?

    /// Decodes an inference call's message and fills `facts`, `encoding` and the REST twin.
    func decode(_ message: [UInt8]) throws(ModelError) {
        switch method {
        case .modelInfer:
            let request = try GRPCOIPCodec.decodeInferRequest(message)
            if !request.modelVersion.isEmpty {
                var unversioned = request
                unversioned.modelVersion = ""
                unversionedBody = try GRPCCall.framed(unversioned)
            }
            modelName = request.modelName
            facts = GRPCCallFacts(model: request.modelName, modelVersion: request.modelVersion)
            encoding = GRPCOIPCodec.encoding(of: request)
            restBytes = try GRPCOIPCodec.restRequestBody(request)
            do {
                twin = try JSONParser.parse(restBytes)
            } catch {
                throw .modelError("the request's REST rendering does not parse: \(error)")
            }
        case .predict:
            let request = try GRPCTFServingCodec.decodePredictRequest(message)
            let spec = request.modelSpec
            if spec.versionChoice != nil {
                var unversioned = request
                unversioned.modelSpec.versionChoice = nil
                unversionedBody = try GRPCCall.framed(unversioned)
            }
            modelName = spec.name
            signatureName = spec.signatureName
            facts = GRPCCallFacts(model: spec.name, modelVersion: GRPCCall.version(of: spec))
            encoding = GRPCTFServingCodec.encoding(of: request)
            let tensors = try GRPCTFServingCodec.inputTensors(request)
            var named = JSONObject()
            for tensor in tensors {
                named.set(tensor.name, tensor.tensor.nested(asBooleans: tensor.datatype == .bool))
            }
            twin = .object(["inputs": tensors.count == 1 ? named[tensors[0].name] ?? .null : .object(named)])
            var rest = JSONObject()
            if !signatureName.isEmpty { rest.set("signature_name", .string(signatureName)) }
            rest.set("inputs", .object(named))
            restBytes = JSON.object(rest).serialized()
        default:
            break
        }
    }

    /// `message` serialized and framed as one uncompressed gRPC message.
    static func framed(_ message: some SwiftProtobuf.Message) throws(ModelError) -> EventBuffer {
        let bytes: [UInt8]
        do {
            bytes = try message.serializedBytes()
        } catch {
            throw .modelError("the message could not be encoded again: \(error)")
        }
        let length = UInt32(bytes.count)
        var framed: [UInt8] = [
            0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF),
        ]
        framed += bytes
        return EventBuffer(bytes: framed)
    }

    /// TF Serving's `model_spec` version as text: the number, or the label; nil for neither.
    static func version(of spec: Tensorflow_Serving_ModelSpec) -> String? {
        switch spec.versionChoice {
        case .version(let number)?: return String(number.value)
        case .versionLabel(let label)?: return label.isEmpty ? nil : label
        case nil: return nil
        }
    }

    /// The request body for a REST version speaking `version` (the route's twin, or the other
    /// tensor protocol, translated).
    func restBody(for version: WireProtocol) throws(ModelError) -> [UInt8] {
        let own: WireProtocol = method == .predict ? .tfserving : .v2
        if version == own || version == .json { return restBytes }
        let named = try JSONParser.parseOrBadRequest(restBytes)
        return try Protocols.translateRequest(named, from: own, to: version)
    }

    /// The REST path for a version without a `path` of its own, naming the model as the app
    /// wrote it in the message.
    func restTarget(for version: WireProtocol) -> String {
        let name = modelName
        switch version {
        case .tfserving: return "/v1/models/\(name):predict"
        default: return "/v2/models/\(name)/infer"
        }
    }

    /// The metadata of a gRPC call sent on to a REST version: gRPC's own fields (`grpc-timeout`,
    /// `grpc-accept-encoding`, `te`) go, the body is JSON.
    static func restHeaders(_ headers: inout HTTPHeaders) {
        var kept = HTTPHeaders()
        for field in headers {
            let name = field.name.lowercased()
            if name.hasPrefix("grpc-") || name == "te" || name == "content-type" { continue }
            kept.add(name: field.name, value: field.value)
        }
        kept.add(name: "content-type", value: "application/json")
        headers = kept
    }

    /// The time left for a version whose own timeout is `timeout`: the shorter of that and what
    /// remains of the call's deadline (SPEC §13: `grpc-timeout` shortens, never lengthens); nil
    /// when the deadline has passed.
    func timeout(_ timeout: Int, startedAt start: UInt64) -> Int? {
        guard let deadlineMilliseconds else { return timeout }
        let elapsed = Int((Monotonic.nanoseconds() &- start) / 1_000_000)
        let remaining = deadlineMilliseconds - elapsed
        if remaining <= 0 { return nil }
        return min(timeout, remaining)
    }
}

extension JSONParser {
    /// Parses bytes the sidecar itself wrote; a failure is a model error.
    static func parseOrBadRequest(_ bytes: [UInt8]) throws(ModelError) -> JSON {
        do {
            return try JSONParser.parse(bytes)
        } catch {
            throw .badRequest("request body is not JSON: \(error)")
        }
    }
}

extension SidecarError {
    /// A gRPC call that no route takes: NOT_FOUND, naming the method and the model.
    static func noGRPCRoute(_ call: GRPCCall) -> SidecarError {
        let model = call.facts.model.map { " for model '\($0)'" } ?? ""
        return SidecarError(
            status: 404,
            code: "no_route",
            detail: "no route takes gRPC call \(call.path)\(model)"
        )
    }

    /// A method the sidecar does not serve.
    static func unimplemented(_ path: Substring) -> SidecarError {
        SidecarError(
            status: 501,
            code: "unimplemented",
            detail: "gRPC method \(path) is not served by this sidecar",
            grpc: .unimplemented
        )
    }

    /// The call's deadline passed before a version could be asked.
    static func deadlinePassed(_ version: String) -> SidecarError {
        SidecarError(
            status: 504,
            code: "upstream_timeout",
            detail: "the call's grpc-timeout passed before version '\(version)' was asked"
        )
    }
}
