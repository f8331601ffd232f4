import Protos
import SwiftProtobuf

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// TF Serving gRPC messages (`tensorflow.serving.PredictionService`, protocol `tfserving-grpc`)
/// and the project's TF Serving representations: REST request bodies (`{"inputs": ...}`),
/// feature matrices for embedded models, and `{"predictions": ...}` renderings.
///
/// A `TensorProto` is read from `tensor_content` (packed little-endian) or from the typed field of
/// its dtype (`float_val`, `double_val`, `int_val` for INT8/INT16/INT32/UINT8/UINT16,
/// `int64_val`, `uint32_val`, `uint64_val`, `bool_val`, `half_val`); a typed field with one
/// value fills the whole shape, as TensorFlow reads it. Answers are written the way the request
/// was: `tensor_content` if any input used it, typed fields otherwise.
public enum GRPCTFServingCodec {
    /// The service name in gRPC paths: `/tensorflow.serving.PredictionService/Predict`.
    public static let serviceName = "tensorflow.serving.PredictionService"
    /// The single output of an embedded model's answer (SPEC §13).
    public static let outputName = "predictions"

    // MARK: Requests

    /// Decodes a `PredictRequest`; bytes that are not one are a 400.
    public static func decodePredictRequest(
        _ bytes: some SwiftProtobufContiguousBytes
    ) throws(ModelError) -> Tensorflow_Serving_PredictRequest {
        try GRPCOIPCodec.decodeMessage(bytes, as: Tensorflow_Serving_PredictRequest.self)
    }

    /// Raw when any input carries `tensor_content`.
    public static func encoding(of request: Tensorflow_Serving_PredictRequest) -> GRPCTensorEncoding {
        request.inputs.values.contains { !$0.tensorContent.isEmpty } ? .raw : .typed
    }

    /// The request's inputs as tensors, sorted by name (a protobuf map has no order).
    public static func inputTensors(_ request: Tensorflow_Serving_PredictRequest) throws(ModelError) -> [OIPTensor] {
        guard !request.inputs.isEmpty else {
            throw .badRequest("request has no inputs; expected one tensor per input of the signature")
        }
        var tensors: [OIPTensor] = []
        for name in request.inputs.keys.sorted() {
            do {
                tensors.append(try tensor(request.inputs[name]!, name: name, label: "input '\(name)'"))
            } catch {
                throw .badRequest(error.reason)
            }
        }
        return tensors
    }

    /// The REST body of the request (`POST /v1/models/{m}:predict`), for a REST backend of protocol
    /// `tfserving`: columnar `{"signature_name"?, "inputs": {name: nested values, ...}}`.
    public static func restRequestBody(_ request: Tensorflow_Serving_PredictRequest) throws(ModelError) -> JSON {
        var inputs = JSONObject()
        for tensor in try inputTensors(request) {
            inputs.set(tensor.name, tensor.tensor.nested(asBooleans: tensor.datatype == .bool))
        }
        var body = JSONObject()
        if !request.modelSpec.signatureName.isEmpty {
            body.set("signature_name", .string(request.modelSpec.signatureName))
        }
        body.set("inputs", .object(inputs))
        return .object(body)
    }

    /// The rows of the request for an embedded model of `featureCount` features, with the REST
    /// codec's rules and errors. A single input is read whatever its name (SPEC §13), as
    /// `{"inputs": [[...], ...]}`; several are named columns, as `{"inputs": {name: [...]}}`.
    public static func decodeInstances(
        _ request: Tensorflow_Serving_PredictRequest,
        featureNames: [String]?,
        featureCount: Int,
        ignoring ignoredNames: Set<String> = []
    ) throws(ModelError) -> FeatureMatrix {
        let tensors = try inputTensors(request)
        let inputs: JSON
        if tensors.count == 1 {
            inputs = tensors[0].tensor.nested(asBooleans: tensors[0].datatype == .bool)
        } else {
            var named = JSONObject()
            for tensor in tensors { named.set(tensor.name, tensor.tensor.nested(asBooleans: tensor.datatype == .bool)) }
            inputs = .object(named)
        }
        return try TFServingCodec.decodeInstances(
            .object(["inputs": inputs]),
            featureNames: featureNames,
            featureCount: featureCount,
            ignoring: ignoredNames
        )
    }

    // MARK: Responses

    /// A `ModelSpec` for answers and metadata: a version name that is a whole number is `version`,
    /// any other (`blue`, `v2`) is `version_label`; empty sets neither.
    public static func modelSpec(
        name: String,
        version: String,
        signatureName: String = ""
    ) -> Tensorflow_Serving_ModelSpec {
        var spec = Tensorflow_Serving_ModelSpec()
        spec.name = name
        spec.signatureName = signatureName
        if let number = Int64(version) {
            spec.version = Google_Protobuf_Int64Value(number)
        } else if !version.isEmpty {
            spec.versionLabel = version
        }
        return spec
    }

    /// A `PredictResponse` with the given outputs, typed or in `tensor_content` as `encoding`
    /// says; every value must be representable in its tensor's datatype (a model error otherwise).
    public static func predictResponse(
        outputs: [OIPTensor],
        modelSpec: Tensorflow_Serving_ModelSpec,
        encoding: GRPCTensorEncoding
    ) throws(ModelError) -> Tensorflow_Serving_PredictResponse {
        do {
            return try response(outputs, modelSpec: modelSpec, encoding: encoding)
        } catch {
            throw .modelError(error.reason)
        }
    }

    /// An embedded model's answer: one output named `predictions`, one prediction per instance
    /// (shape `[N]`, or `[N, K]` for lists of K).
    public static func predictResponse(
        predictions: [JSON],
        datatype: OIPDatatype = .fp64,
        modelSpec: Tensorflow_Serving_ModelSpec,
        encoding: GRPCTensorEncoding
    ) throws(ModelError) -> Tensorflow_Serving_PredictResponse {
        let tensor: NumericTensor
        switch NumericTensor.fromNested(.array(predictions)) {
        case .success(let value): tensor = value
        case .failure(let error): throw .modelError("predictions are not a numeric tensor: \(error)")
        }
        return try predictResponse(
            outputs: [OIPTensor(name: outputName, datatype: datatype, tensor: tensor)],
            modelSpec: modelSpec,
            encoding: encoding
        )
    }

    /// Decodes a backend's `PredictResponse`; bytes that are not one are a bad response.
    public static func decodePredictResponse(
        _ bytes: some SwiftProtobufContiguousBytes
    ) throws(UpstreamResponseError) -> Tensorflow_Serving_PredictResponse {
        do {
            return try Tensorflow_Serving_PredictResponse(serializedBytes: bytes)
        } catch {
            throw UpstreamResponseError(
                "response message is not a valid tensorflow.serving.PredictResponse (protobuf: \(error))"
            )
        }
    }

    /// The response's outputs as tensors, sorted by name.
    public static func outputTensors(
        _ response: Tensorflow_Serving_PredictResponse
    ) throws(UpstreamResponseError) -> [OIPTensor] {
        guard !response.outputs.isEmpty else { throw UpstreamResponseError("response has no outputs") }
        var tensors: [OIPTensor] = []
        for name in response.outputs.keys.sorted() {
            do {
                tensors.append(try tensor(response.outputs[name]!, name: name, label: "output '\(name)'"))
            } catch {
                throw UpstreamResponseError(error.reason)
            }
        }
        return tensors
    }

    /// The response as its REST twin renders it, for `compare.output` (`/predictions`) and for
    /// answering a REST client: one output is `{"predictions": nested values}`; several (with
    /// the same first dimension) are one object per row keyed by output name, as TF Serving
    /// writes row-format answers. DT_FLOAT values are the shortest decimal of the float.
    public static func restRendering(
        of response: Tensorflow_Serving_PredictResponse
    ) throws(UpstreamResponseError) -> JSON {
        let outputs = try outputTensors(response)
        func nested(_ output: OIPTensor) -> JSON {
            var tensor = output.tensor
            if output.datatype == .fp32 || output.datatype == .fp16 {
                tensor.values = tensor.values.map { TensorData.restNumber($0, datatype: .fp32).doubleValue ?? .nan }
            }
            return tensor.nested(asBooleans: output.datatype == .bool)
        }
        if outputs.count == 1 {
            let value = nested(outputs[0])
            return .object(["predictions": outputs[0].shape.isEmpty ? .array([value]) : value])
        }
        let rows = outputs[0].shape.first ?? 0
        var perOutput: [[JSON]] = []
        for output in outputs {
            guard output.shape.first == rows, case .array(let entries) = nested(output) else {
                throw UpstreamResponseError(
                    "output '\(output.name)' has shape \(output.shape) but output '\(outputs[0].name)' has"
                        + " \(outputs[0].shape); outputs need the same number of rows"
                )
            }
            perOutput.append(entries)
        }
        var predictions: [JSON] = []
        predictions.reserveCapacity(rows)
        for row in 0..<rows {
            var object = JSONObject()
            for (k, output) in outputs.enumerated() { object.set(output.name, perOutput[k][row]) }
            predictions.append(.object(object))
        }
        return .object(["predictions": .array(predictions)])
    }

    /// A REST backend's TF Serving answer (`{"predictions": ...}` or columnar `{"outputs": ...}`) as
    /// the gRPC response. Unnamed predictions become the output `predictions`; per-row objects
    /// and named columnar outputs keep their names. Numbers are DT_DOUBLE, booleans DT_BOOL.
    public static func predictResponse(
        fromREST body: JSON,
        modelSpec: Tensorflow_Serving_ModelSpec,
        encoding: GRPCTensorEncoding
    ) throws(UpstreamResponseError) -> Tensorflow_Serving_PredictResponse {
        let v2 = try ProtocolTranslation.v2Response(fromTFServing: body, modelName: modelSpec.name, modelVersion: "")
        let isUnnamed = body["predictions"]?[0]?.objectValue == nil && body["outputs"]?.objectValue == nil
        var outputs: [OIPTensor] = []
        for (k, entry) in (v2["outputs"]?.arrayValue ?? []).enumerated() {
            do {
                var tensor = try OIPCodec.decodeTensor(entry, position: "outputs[\(k)]", role: "output")
                if isUnnamed { tensor.name = outputName }
                outputs.append(tensor)
            } catch {
                throw UpstreamResponseError(error.detail)
            }
        }
        do {
            return try response(outputs, modelSpec: modelSpec, encoding: encoding)
        } catch {
            throw UpstreamResponseError(error.reason)
        }
    }

    // MARK: Metadata

    /// `GetModelMetadataResponse` with the `signature_def` the REST twin
    /// (`GET /v1/models/{m}/metadata`) shows: `serving_default` taking `instances` (DT_DOUBLE,
    /// `[-1, featureCount]`, absent when the feature count is unknown) and giving `predictions`
    /// (`outputDatatype`), method `tensorflow/serving/predict`. The REST answer's
    /// `feature_names` have no place in the gRPC message.
    public static func getModelMetadataResponse(
        modelName: String,
        version: String,
        featureCount: Int?,
        outputDatatype: OIPDatatype
    ) throws(ModelError) -> Tensorflow_Serving_GetModelMetadataResponse {
        var signature = Tensorflow_SignatureDef()
        signature.methodName = "tensorflow/serving/predict"
        if let featureCount {
            var input = Tensorflow_TensorInfo()
            input.dtype = .dtDouble
            input.tensorShape = shapeProto([-1, featureCount])
            signature.inputs["instances"] = input
        }
        var output = Tensorflow_TensorInfo()
        output.dtype = dataType(outputDatatype)
        signature.outputs[outputName] = output
        var map = Tensorflow_Serving_SignatureDefMap()
        map.signatureDef["serving_default"] = signature
        var response = Tensorflow_Serving_GetModelMetadataResponse()
        response.modelSpec = modelSpec(name: modelName, version: version)
        do {
            response.metadata["signature_def"] = try Google_Protobuf_Any(message: map)
        } catch {
            throw .modelError("cannot pack the signature map: \(error)")
        }
        return response
    }

    // MARK: Helpers

    /// The TensorFlow dtype of an OIP datatype (BYTES is DT_STRING).
    static func dataType(_ datatype: OIPDatatype) -> Tensorflow_DataType {
        switch datatype {
        case .bool: .dtBool
        case .uint8: .dtUint8
        case .uint16: .dtUint16
        case .uint32: .dtUint32
        case .uint64: .dtUint64
        case .int8: .dtInt8
        case .int16: .dtInt16
        case .int32: .dtInt32
        case .int64: .dtInt64
        case .fp16: .dtHalf
        case .fp32: .dtFloat
        case .fp64: .dtDouble
        case .bytes: .dtString
        }
    }

    /// The OIP datatype of a numeric TensorFlow dtype; nil for the others.
    static func datatype(_ dtype: Tensorflow_DataType) -> OIPDatatype? {
        switch dtype {
        case .dtBool: .bool
        case .dtUint8: .uint8
        case .dtUint16: .uint16
        case .dtUint32: .uint32
        case .dtUint64: .uint64
        case .dtInt8: .int8
        case .dtInt16: .int16
        case .dtInt32: .int32
        case .dtInt64: .int64
        case .dtHalf: .fp16
        case .dtFloat: .fp32
        case .dtDouble: .fp64
        default: nil
        }
    }

    private static func shapeProto(_ shape: [Int]) -> Tensorflow_TensorShapeProto {
        var proto = Tensorflow_TensorShapeProto()
        proto.dim = shape.map { size in
            var dim = Tensorflow_TensorShapeProto.Dim()
            dim.size = Int64(size)
            return dim
        }
        return proto
    }

    /// One numeric tensor from `tensor_content` or its dtype's typed field.
    private static func tensor(
        _ proto: Tensorflow_TensorProto,
        name: String,
        label: String
    ) throws(TensorDataError) -> OIPTensor {
        guard let datatype = datatype(proto.dtype) else {
            throw TensorDataError(
                "\(label): dtype \(proto.dtype) is not supported; expected a numeric dtype such as DT_FLOAT or DT_DOUBLE"
            )
        }
        guard !proto.tensorShape.unknownRank else {
            throw TensorDataError("\(label): tensor_shape has unknown rank; expected its dimensions")
        }
        var shape: [Int] = []
        for dim in proto.tensorShape.dim {
            guard dim.size >= 0, dim.size < 1_000_000_000 else {
                throw TensorDataError("\(label): shape entry \(dim.size) is not a non-negative integer")
            }
            shape.append(Int(dim.size))
        }
        let count = TensorData.elementCount(shape) ?? 0
        if !proto.tensorContent.isEmpty {
            let values = try TensorData.unpack(
                proto.tensorContent,
                datatype: datatype,
                count: count,
                label: label,
                shape: shape,
                field: "tensor_content"
            )
            return OIPTensor(name: name, datatype: datatype, tensor: NumericTensor(shape: shape, values: values))
        }
        var values: [Double]
        let field: String
        switch datatype {
        case .fp32: (values, field) = (proto.floatVal.map { Double($0) }, "float_val")
        case .fp64: (values, field) = (proto.doubleVal, "double_val")
        case .int8, .int16, .int32, .uint8, .uint16: (values, field) = (proto.intVal.map { Double($0) }, "int_val")
        case .int64: (values, field) = (proto.int64Val.map { Double($0) }, "int64_val")
        case .uint32: (values, field) = (proto.uint32Val.map { Double($0) }, "uint32_val")
        case .uint64: (values, field) = (proto.uint64Val.map { Double($0) }, "uint64_val")
        case .bool: (values, field) = (proto.boolVal.map { $0 ? 1 : 0 }, "bool_val")
        case .fp16:
            (values, field) = (
                proto.halfVal.map { TensorData.halfToDouble(UInt16(truncatingIfNeeded: $0)) }, "half_val"
            )
        case .bytes: (values, field) = ([], "string_val")
        }
        if values.count == 1, count != 1 {
            // TensorFlow fills the shape with a single typed value.
            values = Array(repeating: values[0], count: count)
        }
        guard values.count == count else {
            throw TensorDataError("\(label): shape \(shape) has \(count) elements but \(field) has \(values.count)")
        }
        try TensorData.checkRange(values, datatype: datatype, label: label)
        return OIPTensor(name: name, datatype: datatype, tensor: NumericTensor(shape: shape, values: values))
    }

    private static func response(
        _ outputs: [OIPTensor],
        modelSpec: Tensorflow_Serving_ModelSpec,
        encoding: GRPCTensorEncoding
    ) throws(TensorDataError) -> Tensorflow_Serving_PredictResponse {
        var response = Tensorflow_Serving_PredictResponse()
        response.modelSpec = modelSpec
        for output in outputs {
            response.outputs[output.name] = try tensorProto(output, encoding: encoding)
        }
        return response
    }

    private static func tensorProto(
        _ tensor: OIPTensor,
        encoding: GRPCTensorEncoding
    ) throws(TensorDataError) -> Tensorflow_TensorProto {
        let label = "output '\(tensor.name)'"
        var proto = Tensorflow_TensorProto()
        let datatype = tensor.datatype
        proto.dtype = dataType(datatype)
        proto.tensorShape = shapeProto(tensor.shape)
        if encoding == .raw {
            proto.tensorContent = try TensorData.pack(tensor.values, datatype: datatype, label: label)
            return proto
        }
        for (index, value) in tensor.values.enumerated() {
            switch datatype {
            case .fp32: proto.floatVal.append(Float(value))
            case .fp64: proto.doubleVal.append(value)
            case .bool: proto.boolVal.append(try TensorData.boolean(value, index: index, label: label))
            case .int8:
                proto.intVal.append(
                    Int32(try TensorData.integer(value, as: Int8.self, datatype: datatype, index: index, label: label))
                )
            case .int16:
                proto.intVal.append(
                    Int32(try TensorData.integer(value, as: Int16.self, datatype: datatype, index: index, label: label))
                )
            case .int32:
                proto.intVal.append(
                    try TensorData.integer(value, as: Int32.self, datatype: datatype, index: index, label: label)
                )
            case .uint8:
                proto.intVal.append(
                    Int32(try TensorData.integer(value, as: UInt8.self, datatype: datatype, index: index, label: label))
                )
            case .uint16:
                proto.intVal.append(
                    Int32(
                        try TensorData.integer(value, as: UInt16.self, datatype: datatype, index: index, label: label)
                    )
                )
            case .int64:
                proto.int64Val.append(
                    try TensorData.integer(value, as: Int64.self, datatype: datatype, index: index, label: label)
                )
            case .uint32:
                proto.uint32Val.append(
                    try TensorData.integer(value, as: UInt32.self, datatype: datatype, index: index, label: label)
                )
            case .uint64:
                proto.uint64Val.append(
                    try TensorData.integer(value, as: UInt64.self, datatype: datatype, index: index, label: label)
                )
            case .fp16: proto.halfVal.append(Int32(TensorData.doubleToHalf(value)))
            case .bytes: throw TensorDataError("\(label): BYTES tensors cannot be written from numbers")
            }
        }
        return proto
    }
}
