import Protos
import SwiftProtobuf

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Open Inference Protocol gRPC messages (`inference.GRPCInferenceService`, protocol `v2-grpc`)
/// and the project's OIP representations: `OIPRequest` and `OIPTensor` in, `OIPTensor`s and
/// REST JSON out.
///
/// Tensors arrive typed (`contents`, one field per datatype: `bool_contents` for BOOL,
/// `int_contents` for INT8–INT32, `int64_contents`, `uint_contents` for UINT8–UINT32,
/// `uint64_contents`, `fp32_contents`, `fp64_contents`, `bytes_contents`) or raw
/// (`raw_input_contents`, one entry per input in order, little-endian packed, as tritonclient
/// sends them; FP16 is raw only). Requests are checked with the JSON codec's rules and messages
/// (`input 'x': shape [2, 4] has 8 elements but data has 6`), as `ModelError` 400s.
public enum GRPCOIPCodec {
    /// The service name in gRPC paths: `/inference.GRPCInferenceService/ModelInfer`.
    public static let serviceName = "inference.GRPCInferenceService"

    // MARK: Requests

    /// Decodes a `ModelInferRequest`; bytes that are not one are a 400.
    public static func decodeInferRequest(
        _ bytes: some SwiftProtobufContiguousBytes
    ) throws(ModelError) -> Inference_ModelInferRequest {
        try decodeMessage(bytes, as: Inference_ModelInferRequest.self)
    }

    /// Decodes any request message of the service (`ModelReadyRequest`, `ModelMetadataRequest`...).
    public static func decodeMessage<M: Message>(
        _ bytes: some SwiftProtobufContiguousBytes,
        as type: M.Type
    ) throws(ModelError) -> M {
        do {
            return try M(serializedBytes: bytes)
        } catch {
            throw .badRequest("request message is not a valid \(M.protoMessageName) (protobuf: \(error))")
        }
    }

    /// Whether the request's tensors are raw; its answer is written the same way.
    public static func encoding(of request: Inference_ModelInferRequest) -> GRPCTensorEncoding {
        request.rawInputContents.isEmpty ? .typed : .raw
    }

    /// The request as the JSON codec would have decoded its REST twin: inputs checked and read,
    /// requested output names, `id` (nil when empty) and `parameters` (nil when none).
    public static func oipRequest(_ message: Inference_ModelInferRequest) throws(ModelError) -> OIPRequest {
        guard !message.inputs.isEmpty else { throw .badRequest("'inputs' is empty; expected at least one tensor") }
        let raw = message.rawInputContents
        if !raw.isEmpty, raw.count != message.inputs.count {
            throw .badRequest(
                "raw_input_contents has \(raw.count) entries but the request has \(message.inputs.count) inputs;"
                    + " expected one per input, in order"
            )
        }
        var inputs: [OIPTensor] = []
        inputs.reserveCapacity(message.inputs.count)
        for (k, input) in message.inputs.enumerated() {
            let label = "input '\(input.name)'"
            if !raw.isEmpty, hasValues(input.contents) {
                throw .badRequest("\(label) has both contents and raw_input_contents; send one")
            }
            do {
                inputs.append(
                    try tensor(
                        name: input.name,
                        datatype: input.datatype,
                        shape: input.shape,
                        contents: input.contents,
                        raw: raw.isEmpty ? nil : raw[k],
                        label: label,
                        rawField: "raw_input_contents[\(k)]"
                    )
                )
            } catch {
                throw .badRequest(error.reason)
            }
        }
        return OIPRequest(
            id: message.id.isEmpty ? nil : message.id,
            parameters: parametersJSON(message.parameters),
            inputs: inputs,
            outputNames: message.outputs.isEmpty ? nil : message.outputs.map(\.name)
        )
    }

    /// The REST body of the request (`POST /v2/models/{m}/infer`), for a REST backend of
    /// protocol `v2`: `{"id"?, "parameters"?, "inputs": [...], "outputs"?: [{"name"}]}`.
    public static func restRequestBody(_ message: Inference_ModelInferRequest) throws(ModelError) -> [UInt8] {
        let request = try oipRequest(message)
        var output: [UInt8] = []
        output.reserveCapacity(64 + request.inputs.reduce(0) { $0 + $1.values.count * 12 })
        output.append(UInt8(ascii: "{"))
        if let id = request.id {
            output.append(contentsOf: "\"id\":".utf8)
            JSONWriter.writeString(id, to: &output)
            output.append(UInt8(ascii: ","))
        }
        if let parameters = request.parameters {
            output.append(contentsOf: "\"parameters\":".utf8)
            JSONWriter.write(parameters, to: &output)
            output.append(UInt8(ascii: ","))
        }
        output.append(contentsOf: "\"inputs\":[".utf8)
        for (k, input) in request.inputs.enumerated() {
            if k > 0 { output.append(UInt8(ascii: ",")) }
            OIPCodec.writeTensor(input, to: &output)
        }
        output.append(UInt8(ascii: "]"))
        if let names = request.outputNames {
            let outputs: JSON = .array(names.map { .object(["name": .string($0)]) })
            output.append(contentsOf: ",\"outputs\":".utf8)
            JSONWriter.write(outputs, to: &output)
        }
        output.append(UInt8(ascii: "}"))
        return output
    }

    // MARK: Responses

    /// A `ModelInferResponse` with the given outputs, typed or raw as `encoding` says. Every value
    /// must be representable in its tensor's datatype (a model error otherwise). FP16 has no typed
    /// field, so a response with an FP16 output is raw whatever `encoding` says (raw and typed
    /// cannot be mixed in one response).
    public static func inferResponse(
        outputs: [OIPTensor],
        modelName: String,
        modelVersion: String,
        id: String? = nil,
        encoding: GRPCTensorEncoding
    ) throws(ModelError) -> Inference_ModelInferResponse {
        do {
            return try response(outputs, modelName: modelName, modelVersion: modelVersion, id: id, encoding: encoding)
        } catch {
            throw .modelError(error.reason)
        }
    }

    /// The response of an embedded model: one output named `predict`, one prediction per instance
    /// (shape `[N]`, or `[N, K]` for lists of K), as `OIPCodec.encodeResponse` writes it in JSON.
    public static func inferResponse(
        predictions: [JSON],
        datatype: OIPDatatype = .fp64,
        modelName: String,
        modelVersion: String,
        id: String? = nil,
        encoding: GRPCTensorEncoding
    ) throws(ModelError) -> Inference_ModelInferResponse {
        let tensor: NumericTensor
        switch NumericTensor.fromNested(.array(predictions)) {
        case .success(let value): tensor = value
        case .failure(let error): throw .modelError("predictions are not a numeric tensor: \(error)")
        }
        return try inferResponse(
            outputs: [OIPTensor(name: OIPCodec.outputName, datatype: datatype, tensor: tensor)],
            modelName: modelName,
            modelVersion: modelVersion,
            id: id,
            encoding: encoding
        )
    }

    /// Decodes a backend's `ModelInferResponse`; bytes that are not one are a bad response.
    public static func decodeInferResponse(
        _ bytes: some SwiftProtobufContiguousBytes
    ) throws(UpstreamResponseError) -> Inference_ModelInferResponse {
        do {
            return try Inference_ModelInferResponse(serializedBytes: bytes)
        } catch {
            throw UpstreamResponseError(
                "response message is not a valid inference.ModelInferResponse (protobuf: \(error))"
            )
        }
    }

    /// The numeric output tensors of a response, typed or raw, checked against their shapes.
    public static func outputTensors(
        _ response: Inference_ModelInferResponse
    ) throws(UpstreamResponseError) -> [OIPTensor] {
        let raw = response.rawOutputContents
        if !raw.isEmpty, raw.count != response.outputs.count {
            throw UpstreamResponseError(
                "raw_output_contents has \(raw.count) entries but the response has \(response.outputs.count)"
                    + " outputs; expected one per output, in order"
            )
        }
        var outputs: [OIPTensor] = []
        for (k, output) in response.outputs.enumerated() {
            do {
                outputs.append(
                    try tensor(
                        name: output.name,
                        datatype: output.datatype,
                        shape: output.shape,
                        contents: output.contents,
                        raw: raw.isEmpty ? nil : raw[k],
                        label: "output '\(output.name)'",
                        rawField: "raw_output_contents[\(k)]"
                    )
                )
            } catch {
                throw UpstreamResponseError(error.reason)
            }
        }
        return outputs
    }

    /// The response as its REST twin renders it, for `compare.output` (`/outputs/0/data`) and
    /// for answering a REST client from a gRPC backend: `{"model_name", "model_version", "id"?,
    /// "outputs": [{"name", "datatype", "shape", "data"}]}` with flat data, FP32 as the shortest
    /// decimal, BOOL as booleans and BYTES as strings, as `OIPCodec.encodeResponse` writes it.
    public static func restRendering(of response: Inference_ModelInferResponse) throws(UpstreamResponseError) -> JSON {
        let raw = response.rawOutputContents
        if !raw.isEmpty, raw.count != response.outputs.count {
            throw UpstreamResponseError(
                "raw_output_contents has \(raw.count) entries but the response has \(response.outputs.count)"
                    + " outputs; expected one per output, in order"
            )
        }
        var outputs: [JSON] = []
        for (k, output) in response.outputs.enumerated() {
            let data: [JSON]
            do {
                data = try restData(output, raw: raw.isEmpty ? nil : raw[k], rawField: "raw_output_contents[\(k)]")
            } catch {
                throw UpstreamResponseError(error.reason)
            }
            outputs.append(
                .object([
                    "name": .string(output.name), "datatype": .string(output.datatype),
                    "shape": .array(output.shape.map { .number(Double($0)) }), "data": .array(data),
                ])
            )
        }
        var object: JSONObject = [
            "model_name": .string(response.modelName), "model_version": .string(response.modelVersion),
        ]
        if !response.id.isEmpty { object.set("id", .string(response.id)) }
        object.set("outputs", .array(outputs))
        return .object(object)
    }

    /// A REST backend's v2 answer (`{"model_name", "model_version", "id"?, "outputs": [...]}`) as
    /// the gRPC response, typed or raw as the request was. Numeric tensors only.
    public static func inferResponse(
        fromREST body: JSON,
        encoding: GRPCTensorEncoding
    ) throws(UpstreamResponseError) -> Inference_ModelInferResponse {
        guard case .object(let object) = body else {
            throw UpstreamResponseError(
                "v2 response body must be a JSON object with \"outputs\", got \(body.kindDescription)"
            )
        }
        guard case .array(let list)? = object["outputs"], !list.isEmpty else {
            throw UpstreamResponseError("v2 response has no \"outputs\" list of tensors")
        }
        var outputs: [OIPTensor] = []
        for (k, entry) in list.enumerated() {
            do {
                outputs.append(try OIPCodec.decodeTensor(entry, position: "outputs[\(k)]", role: "output"))
            } catch {
                throw UpstreamResponseError(error.detail)
            }
        }
        do {
            return try response(
                outputs,
                modelName: object["model_name"]?.stringValue ?? "",
                modelVersion: object["model_version"]?.stringValue ?? "",
                id: object["id"]?.stringValue,
                encoding: encoding
            )
        } catch {
            throw UpstreamResponseError(error.reason)
        }
    }

    // MARK: Metadata

    /// One input or output of `ModelMetadataResponse`; -1 in `shape` is a variable dimension.
    public struct TensorMetadata: Sendable, Hashable {
        public var name: String
        public var datatype: OIPDatatype
        public var shape: [Int]

        public init(name: String, datatype: OIPDatatype, shape: [Int]) {
            self.name = name
            self.datatype = datatype
            self.shape = shape
        }
    }

    /// `ModelMetadataResponse`, from the facts the REST twin (`GET /v2/models/{m}`) shows. The
    /// REST answer's `parameters` (feature names) have no field in the gRPC message.
    public static func modelMetadataResponse(
        name: String,
        versions: [String],
        platform: String,
        inputs: [TensorMetadata],
        outputs: [TensorMetadata]
    ) -> Inference_ModelMetadataResponse {
        func metadata(_ tensor: TensorMetadata) -> Inference_ModelMetadataResponse.TensorMetadata {
            var message = Inference_ModelMetadataResponse.TensorMetadata()
            message.name = tensor.name
            message.datatype = tensor.datatype.rawValue
            message.shape = tensor.shape.map(Int64.init)
            return message
        }
        var response = Inference_ModelMetadataResponse()
        response.name = name
        response.versions = versions
        response.platform = platform
        response.inputs = inputs.map(metadata)
        response.outputs = outputs.map(metadata)
        return response
    }

    // MARK: Helpers

    /// The flat `data` of one output as the REST twin writes it.
    private static func restData(
        _ output: Inference_ModelInferResponse.InferOutputTensor,
        raw: Data?,
        rawField: String
    ) throws(TensorDataError) -> [JSON] {
        let label = "output '\(output.name)'"
        guard output.datatype == OIPDatatype.bytes.rawValue else {
            let tensor = try tensor(
                name: output.name,
                datatype: output.datatype,
                shape: output.shape,
                contents: output.contents,
                raw: raw,
                label: label,
                rawField: rawField
            )
            return tensor.values.map { TensorData.restNumber($0, datatype: tensor.datatype) }
        }
        let shape = try checkedShape(output.shape, label: label)
        let count = TensorData.elementCount(shape) ?? 0
        guard let raw else {
            let elements = output.contents.bytesContents
            guard elements.count == count else {
                throw TensorDataError("\(label): shape \(shape) has \(count) elements but data has \(elements.count)")
            }
            return elements.map(TensorData.restString)
        }
        return try TensorData.unpackBytes(raw, count: count, label: label, field: rawField).map(TensorData.restString)
    }

    private static func checkedShape(_ dimensions: [Int64], label: String) throws(TensorDataError) -> [Int] {
        var shape: [Int] = []
        shape.reserveCapacity(dimensions.count)
        for dimension in dimensions {
            guard dimension >= 0, dimension < 1_000_000_000 else {
                throw TensorDataError("\(label): shape entry \(dimension) is not a non-negative integer")
            }
            shape.append(Int(dimension))
        }
        return shape
    }

    /// One numeric tensor from its typed contents or its raw bytes.
    private static func tensor(
        name: String,
        datatype typeName: String,
        shape dimensions: [Int64],
        contents: Inference_InferTensorContents,
        raw: Data?,
        label: String,
        rawField: String
    ) throws(TensorDataError) -> OIPTensor {
        let shape = try checkedShape(dimensions, label: label)
        let count = TensorData.elementCount(shape) ?? 0
        guard let datatype = OIPDatatype(rawValue: typeName) else {
            throw TensorDataError(
                "\(label): unknown datatype '\(typeName)'; expected one of "
                    + OIPDatatype.allCases.filter { $0 != .bytes }.map(\.rawValue).joined(separator: ", ")
            )
        }
        guard datatype != .bytes else {
            throw TensorDataError("\(label): datatype BYTES is not supported; expected a numeric datatype such as FP64")
        }
        let values: [Double]
        if let raw {
            values = try TensorData.unpack(
                raw,
                datatype: datatype,
                count: count,
                label: label,
                shape: shape,
                field: rawField
            )
        } else {
            values = try typedValues(contents, datatype: datatype, label: label)
            guard values.count == count else {
                throw TensorDataError("\(label): shape \(shape) has \(count) elements but data has \(values.count)")
            }
            try TensorData.checkRange(values, datatype: datatype, label: label)
        }
        return OIPTensor(name: name, datatype: datatype, tensor: NumericTensor(shape: shape, values: values))
    }

    private static func hasValues(_ contents: Inference_InferTensorContents) -> Bool {
        !(contents.boolContents.isEmpty && contents.intContents.isEmpty && contents.int64Contents.isEmpty
            && contents.uintContents.isEmpty && contents.uint64Contents.isEmpty && contents.fp32Contents.isEmpty
            && contents.fp64Contents.isEmpty && contents.bytesContents.isEmpty)
    }

    /// The field of `InferTensorContents` that holds a datatype's elements.
    private static func contentsField(_ datatype: OIPDatatype) -> String {
        switch datatype {
        case .bool: "bool_contents"
        case .int8, .int16, .int32: "int_contents"
        case .int64: "int64_contents"
        case .uint8, .uint16, .uint32: "uint_contents"
        case .uint64: "uint64_contents"
        case .fp32: "fp32_contents"
        case .fp64: "fp64_contents"
        case .bytes: "bytes_contents"
        case .fp16: "raw contents"
        }
    }

    /// The elements of typed contents, from the one field the datatype uses; values in another
    /// field are an error naming both.
    private static func typedValues(
        _ contents: Inference_InferTensorContents,
        datatype: OIPDatatype,
        label: String
    ) throws(TensorDataError) -> [Double] {
        let filled: [(String, Int)] = [
            ("bool_contents", contents.boolContents.count), ("int_contents", contents.intContents.count),
            ("int64_contents", contents.int64Contents.count), ("uint_contents", contents.uintContents.count),
            ("uint64_contents", contents.uint64Contents.count), ("fp32_contents", contents.fp32Contents.count),
            ("fp64_contents", contents.fp64Contents.count), ("bytes_contents", contents.bytesContents.count),
        ].filter { $0.1 > 0 }
        let expected = contentsField(datatype)
        if datatype == .fp16, !filled.isEmpty {
            throw TensorDataError("\(label): FP16 has no typed contents field; send it in raw_input_contents")
        }
        if let other = filled.first(where: { $0.0 != expected }) {
            throw TensorDataError(
                "\(label): datatype \(datatype.rawValue) takes \(expected), but the contents hold \(other.0)"
            )
        }
        switch datatype {
        case .bool: return contents.boolContents.map { $0 ? 1 : 0 }
        case .int8, .int16, .int32: return contents.intContents.map { Double($0) }
        case .int64: return contents.int64Contents.map { Double($0) }
        case .uint8, .uint16, .uint32: return contents.uintContents.map { Double($0) }
        case .uint64: return contents.uint64Contents.map { Double($0) }
        case .fp32: return contents.fp32Contents.map { Double($0) }
        case .fp64: return contents.fp64Contents
        case .fp16, .bytes: return []
        }
    }

    private static func response(
        _ outputs: [OIPTensor],
        modelName: String,
        modelVersion: String,
        id: String?,
        encoding: GRPCTensorEncoding
    ) throws(TensorDataError) -> Inference_ModelInferResponse {
        let isRaw = encoding == .raw || outputs.contains { $0.datatype == .fp16 }
        var response = Inference_ModelInferResponse()
        response.modelName = modelName
        response.modelVersion = modelVersion
        if let id { response.id = id }
        for output in outputs {
            let label = "output '\(output.name)'"
            var message = Inference_ModelInferResponse.InferOutputTensor()
            message.name = output.name
            message.datatype = output.datatype.rawValue
            message.shape = output.shape.map(Int64.init)
            if isRaw {
                response.rawOutputContents.append(
                    try TensorData.pack(output.values, datatype: output.datatype, label: label)
                )
            } else {
                message.contents = try typedContents(output, label: label)
            }
            response.outputs.append(message)
        }
        return response
    }

    private static func typedContents(
        _ tensor: OIPTensor,
        label: String
    ) throws(TensorDataError) -> Inference_InferTensorContents {
        var contents = Inference_InferTensorContents()
        let datatype = tensor.datatype
        for (index, value) in tensor.values.enumerated() {
            switch datatype {
            case .bool: contents.boolContents.append(try TensorData.boolean(value, index: index, label: label))
            case .int8:
                contents.intContents.append(
                    Int32(try TensorData.integer(value, as: Int8.self, datatype: datatype, index: index, label: label))
                )
            case .int16:
                contents.intContents.append(
                    Int32(try TensorData.integer(value, as: Int16.self, datatype: datatype, index: index, label: label))
                )
            case .int32:
                contents.intContents.append(
                    try TensorData.integer(value, as: Int32.self, datatype: datatype, index: index, label: label)
                )
            case .int64:
                contents.int64Contents.append(
                    try TensorData.integer(value, as: Int64.self, datatype: datatype, index: index, label: label)
                )
            case .uint8:
                contents.uintContents.append(
                    UInt32(
                        try TensorData.integer(value, as: UInt8.self, datatype: datatype, index: index, label: label)
                    )
                )
            case .uint16:
                contents.uintContents.append(
                    UInt32(
                        try TensorData.integer(value, as: UInt16.self, datatype: datatype, index: index, label: label)
                    )
                )
            case .uint32:
                contents.uintContents.append(
                    try TensorData.integer(value, as: UInt32.self, datatype: datatype, index: index, label: label)
                )
            case .uint64:
                contents.uint64Contents.append(
                    try TensorData.integer(value, as: UInt64.self, datatype: datatype, index: index, label: label)
                )
            case .fp32: contents.fp32Contents.append(Float(value))
            case .fp64: contents.fp64Contents.append(value)
            case .fp16, .bytes:
                throw TensorDataError("\(label): datatype \(datatype.rawValue) cannot be written as typed contents")
            }
        }
        return contents
    }

    /// Request parameters as the JSON object of the REST twin, keys sorted; nil when none.
    private static func parametersJSON(_ parameters: [String: Inference_InferParameter]) -> JSON? {
        guard !parameters.isEmpty else { return nil }
        var object = JSONObject()
        for key in parameters.keys.sorted() {
            switch parameters[key]?.parameterChoice {
            case .boolParam(let flag)?: object.set(key, .bool(flag))
            case .int64Param(let number)?: object.set(key, .number(Double(number)))
            case .stringParam(let text)?: object.set(key, .string(text))
            case nil: object.set(key, .null)
            }
        }
        return .object(object)
    }
}
