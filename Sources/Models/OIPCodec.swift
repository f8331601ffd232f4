/// Open Inference Protocol (KServe v2) tensor datatypes.
public enum OIPDatatype: String, Sendable, Hashable, CaseIterable {
    case bool = "BOOL"
    case uint8 = "UINT8"
    case uint16 = "UINT16"
    case uint32 = "UINT32"
    case uint64 = "UINT64"
    case int8 = "INT8"
    case int16 = "INT16"
    case int32 = "INT32"
    case int64 = "INT64"
    case fp16 = "FP16"
    case fp32 = "FP32"
    case fp64 = "FP64"
    case bytes = "BYTES"

    /// Whether elements are floating point, so that `null` (a missing value, NaN) is allowed.
    public var isFloatingPoint: Bool { self == .fp16 || self == .fp32 || self == .fp64 }

    /// The values of an integer type, as a half-open range (so 64-bit bounds are exact); nil for
    /// the others.
    var integerRange: Range<Double>? {
        switch self {
        case .uint8: 0..<0x1p8
        case .uint16: 0..<0x1p16
        case .uint32: 0..<0x1p32
        case .uint64: 0..<0x1p64
        case .int8: -0x1p7..<0x1p7
        case .int16: -0x1p15..<0x1p15
        case .int32: -0x1p31..<0x1p31
        case .int64: -0x1p63..<0x1p63
        default: nil
        }
    }

    /// The largest finite magnitude of a floating-point type.
    var largestMagnitude: Double? {
        switch self {
        case .fp16: 65_504
        case .fp32: Double(Float.greatestFiniteMagnitude)
        case .fp64: .greatestFiniteMagnitude
        default: nil
        }
    }
}

/// One tensor of an Open Inference Protocol request or response.
public struct OIPTensor: Sendable, Hashable {
    public var name: String
    public var datatype: OIPDatatype
    /// Row-major values (`BOOL` as 1 and 0, a `null` of floating-point data as NaN) with their shape.
    public var tensor: NumericTensor

    public init(name: String, datatype: OIPDatatype, tensor: NumericTensor) {
        self.name = name
        self.datatype = datatype
        self.tensor = tensor
    }

    public var shape: [Int] { tensor.shape }
    public var values: [Double] { tensor.values }
}

/// A decoded Open Inference Protocol inference request. `parameters` are kept but never
/// interpreted (clients such as tritonclient send `binary_data_output`).
public struct OIPRequest: Sendable, Hashable {
    public var id: String?
    public var parameters: JSON?
    public var inputs: [OIPTensor]
    /// Names of the requested outputs, when the request lists them.
    public var outputNames: [String]?
}

/// Open Inference Protocol (KServe v2) REST bodies: `{"inputs": [...]}` in,
/// `{"model_name", "model_version", "outputs": [...]}` out.
///
/// Request: `{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data",
/// "parameters"?}], "outputs"?: [{"name", "parameters"?}]}`. `data` is flat or nested (read in
/// row-major order); its element count must equal the product of `shape`. Datatypes are
/// `BOOL`, `UINT8`–`UINT64`, `INT8`–`INT64`, `FP16`, `FP32`, `FP64` (`BYTES` is refused);
/// integers must be whole and in range; `null` is a missing value, allowed in floating-point
/// data only. Errors are 400s that name the input and what was expected.
public enum OIPCodec {
    /// The name of the single output of an embedded model's response.
    public static let outputName = "predict"

    /// Parses a request body; a body that is not JSON is a 400 saying where it went wrong.
    public static func parseBody(_ body: UnsafeRawBufferPointer) throws(ModelError) -> JSON {
        do {
            return try JSONParser.parse(body)
        } catch {
            throw .badRequest("request body is not JSON: \(error)")
        }
    }

    /// Decodes and checks a request.
    public static func decodeRequest(_ body: JSON) throws(ModelError) -> OIPRequest {
        guard case .object(let object) = body else {
            throw .badRequest("request body must be a JSON object with \"inputs\", got \(body.kindDescription)")
        }
        var request = OIPRequest(id: nil, parameters: nil, inputs: [], outputNames: nil)
        var inputList: [JSON]?
        for member in object.members {
            switch member.key {
            case "id":
                guard case .string(let id) = member.value else {
                    throw .badRequest("'id' must be a string, got \(member.value.kindDescription)")
                }
                request.id = id
            case "parameters":
                guard case .object = member.value else {
                    throw .badRequest("'parameters' must be an object, got \(member.value.kindDescription)")
                }
                request.parameters = member.value
            case "inputs":
                guard case .array(let list) = member.value else {
                    throw .badRequest("'inputs' must be a list of tensors, got \(member.value.kindDescription)")
                }
                inputList = list
            case "outputs":
                guard case .array(let list) = member.value else {
                    throw .badRequest(
                        "'outputs' must be a list of {\"name\": ...} objects, got \(member.value.kindDescription)"
                    )
                }
                var names: [String] = []
                for (k, entry) in list.enumerated() {
                    guard case .string(let name)? = entry["name"] else {
                        throw .badRequest("'outputs'[\(k)] must be an object with a string \"name\", got \(entry)")
                    }
                    names.append(name)
                }
                request.outputNames = names
            default:
                throw .badRequest(
                    "unexpected key '\(member.key)' in request body; expected \"inputs\""
                        + " (and optionally \"id\", \"parameters\", \"outputs\")"
                )
            }
        }
        guard let inputList else {
            throw .badRequest(
                "request body has no \"inputs\"; expected {\"inputs\": [{\"name\": ..., \"shape\": [N, F],"
                    + " \"datatype\": \"FP64\", \"data\": [...]}]}"
            )
        }
        guard !inputList.isEmpty else { throw .badRequest("'inputs' is empty; expected at least one tensor") }
        for (k, input) in inputList.enumerated() {
            request.inputs.append(try decodeTensor(input, position: "inputs[\(k)]"))
        }
        return request
    }

    /// Decodes one `{"name", "shape", "datatype", "data", "parameters"?}` tensor.
    static func decodeTensor(_ value: JSON, position: String, role: String = "input") throws(ModelError) -> OIPTensor {
        guard case .object(let object) = value else {
            throw .badRequest(
                "\(position) must be an object with name, shape, datatype and data, got \(value.kindDescription)"
            )
        }
        for key in object.keys where !["name", "shape", "datatype", "data", "parameters"].contains(key) {
            throw .badRequest("\(position): unexpected key '\(key)'; expected name, shape, datatype, data, parameters")
        }
        guard case .string(let name)? = object["name"] else {
            throw .badRequest("\(position) has no string \"name\"")
        }
        let label = "\(role) '\(name)'"
        guard case .array(let shapeList)? = object["shape"] else {
            throw .badRequest("\(label) has no \"shape\" list")
        }
        var shape: [Int] = []
        var elementCount = 1
        for dimension in shapeList {
            guard case .number(let number) = dimension, number >= 0, number.rounded() == number, number < 1e9 else {
                throw .badRequest("\(label): shape entry \(dimension) is not a non-negative integer")
            }
            shape.append(Int(number))
            elementCount =
                elementCount.multipliedReportingOverflow(by: Int(number)).overflow
                ? Int.max : elementCount * Int(number)
        }
        guard case .string(let typeName)? = object["datatype"] else {
            throw .badRequest("\(label) has no string \"datatype\"")
        }
        guard let datatype = OIPDatatype(rawValue: typeName) else {
            throw .badRequest(
                "\(label): unknown datatype '\(typeName)'; expected one of "
                    + OIPDatatype.allCases.filter { $0 != .bytes }.map(\.rawValue).joined(separator: ", ")
            )
        }
        guard datatype != .bytes else {
            throw .badRequest("\(label): datatype BYTES is not supported; expected a numeric datatype such as FP64")
        }
        if let parameters = object["parameters"], parameters.objectValue == nil {
            throw .badRequest("\(label): 'parameters' must be an object, got \(parameters.kindDescription)")
        }
        guard let data = object["data"] else { throw .badRequest("\(label) has no \"data\"") }
        var values: [Double] = []
        values.reserveCapacity(min(elementCount, 1 << 20))
        try flatten(data, into: &values, datatype: datatype, label: label, limit: elementCount)
        guard values.count == elementCount else {
            throw .badRequest(
                "\(label): shape \(shape) has \(elementCount) elements but data has \(values.count)"
            )
        }
        return OIPTensor(name: name, datatype: datatype, tensor: NumericTensor(shape: shape, values: values))
    }

    /// Appends the elements of flat or nested `data` in row-major order, checking each against
    /// the datatype; stops early once there are more than `limit`.
    private static func flatten(
        _ data: JSON,
        into values: inout [Double],
        datatype: OIPDatatype,
        label: String,
        limit: Int
    ) throws(ModelError) {
        guard case .array = data else {
            throw .badRequest("\(label): data must be a list, got \(data.kindDescription)")
        }
        var stack: [JSON] = [data]
        while let current = stack.popLast() {
            if values.count > limit { return }
            let index = values.count
            switch current {
            case .array(let elements):
                stack.append(contentsOf: elements.reversed())
            case .number(let number):
                if datatype == .bool {
                    guard number == 0 || number == 1 else {
                        throw .badRequest("\(label): element \(index) is \(current); expected true or false for BOOL")
                    }
                } else if let range = datatype.integerRange {
                    guard number.rounded() == number, range.contains(number) else {
                        throw .badRequest(
                            "\(label): element \(index) is \(current); expected a whole number in the \(datatype.rawValue) range"
                        )
                    }
                } else if let largest = datatype.largestMagnitude, abs(number) > largest {
                    throw .badRequest(
                        "\(label): element \(index) is \(current), outside the \(datatype.rawValue) range"
                    )
                }
                values.append(number)
            case .bool(let flag):
                guard datatype == .bool else {
                    throw .badRequest(
                        "\(label): element \(index) is a boolean; expected a number for \(datatype.rawValue)"
                    )
                }
                values.append(flag ? 1 : 0)
            case .null:
                guard datatype.isFloatingPoint else {
                    throw .badRequest(
                        "\(label): element \(index) is null; only FP16, FP32 and FP64 data may hold null (missing)"
                    )
                }
                values.append(.nan)
            case .string, .object:
                throw .badRequest(
                    "\(label): element \(index) is \(current.kindDescription); expected a number for \(datatype.rawValue)"
                )
            }
        }
    }

    /// Parses a request body and decodes its rows for a model of `featureCount` features.
    public static func decodeInstances(
        _ body: UnsafeRawBufferPointer,
        featureNames: [String]?,
        featureCount: Int
    ) throws(ModelError) -> FeatureMatrix {
        try decodeInstances(parseBody(body), featureNames: featureNames, featureCount: featureCount)
    }

    /// Decodes the rows of a parsed request body for a model of `featureCount` features.
    ///
    /// The model takes one input of shape `[N, F]`, or `[F]` for one row (`[N]` when F is 1).
    /// With feature names, F inputs named after the features, each of shape `[N]` or `[N, 1]`,
    /// are accepted too (the columnar form of pandas-based clients).
    public static func decodeInstances(
        _ body: JSON,
        featureNames: [String]?,
        featureCount: Int
    ) throws(ModelError)
        -> FeatureMatrix
    {
        try decodeInstances(decodeRequest(body), featureNames: featureNames, featureCount: featureCount)
    }

    /// The rows of a decoded request; see `decodeInstances(_:featureNames:featureCount:)`.
    public static func decodeInstances(
        _ request: OIPRequest,
        featureNames: [String]?,
        featureCount: Int
    )
        throws(ModelError) -> FeatureMatrix
    {
        precondition(
            featureNames == nil || featureNames!.count == featureCount,
            "OIPCodec.decodeInstances needs one feature name per feature."
        )
        if request.inputs.count == 1 {
            let input = request.inputs[0]
            let shape = input.shape
            let rows: Int
            switch shape.count {
            case 2:
                guard shape[1] == featureCount else {
                    throw .badRequest(
                        "input '\(input.name)': expected \(featureCount) features per instance, got \(shape[1])"
                            + " (shape \(shape); expected [N, \(featureCount)])"
                    )
                }
                rows = shape[0]
            case 1 where featureCount == 1:
                rows = shape[0]
            case 1:
                guard shape[0] == featureCount else {
                    throw .badRequest(
                        "input '\(input.name)': expected \(featureCount) features per instance, got \(shape[0])"
                            + " (shape \(shape); expected [N, \(featureCount)] or [\(featureCount)])"
                    )
                }
                rows = 1
            default:
                throw .badRequest(
                    "input '\(input.name)': shape \(shape) has \(shape.count) dimensions; expected [N, \(featureCount)]"
                )
            }
            guard rows > 0 else { throw .badRequest("input '\(input.name)' has no instances; expected N ≥ 1") }
            return FeatureMatrix(rows: rows, columns: featureCount, values: input.values)
        }
        guard let featureNames else {
            throw .badRequest(
                "request has \(request.inputs.count) inputs; this model takes one input of shape [N, \(featureCount)]"
            )
        }
        // Columnar: one input per feature, matched by name.
        var index: [String: Int] = [:]
        for (column, name) in featureNames.enumerated() { index[name] = column }
        let first = request.inputs[0]
        let rows = first.shape.first ?? 0
        guard rows > 0 else {
            throw .badRequest("input '\(first.name)' has no instances; expected shape [N] with N ≥ 1")
        }
        var values = [Double](repeating: .nan, count: rows * featureCount)
        var seen = Set<Int>()
        for input in request.inputs {
            guard let column = index[input.name] else {
                throw .badRequest(
                    "unknown input '\(input.name)'; expected one input of shape [N, \(featureCount)] or one input"
                        + " per feature named \(featureNames.prefix(20).joined(separator: ", "))"
                )
            }
            guard seen.insert(column).inserted else { throw .badRequest("input '\(input.name)' is given twice") }
            guard input.shape == [rows] || input.shape == [rows, 1] else {
                throw .badRequest(
                    "input '\(input.name)': shape \(input.shape); expected [\(rows)] or [\(rows), 1], like input '\(first.name)'"
                )
            }
            for row in 0..<rows { values[row * featureCount + column] = input.values[row] }
        }
        return FeatureMatrix(rows: rows, columns: featureCount, values: values)
    }

    /// `{"model_name", "model_version", "id"?, "outputs": [{"name": "predict", "datatype", "shape",
    /// "data"}]}` for one prediction per instance: shape `[N]` for numbers, `[N, K]` for lists of K.
    /// `FP32` data is written with float precision, `INT64` and `BOOL` as integers and booleans.
    public static func encodeResponse(
        _ predictions: [JSON],
        datatype: OIPDatatype = .fp64,
        modelName: String,
        modelVersion: String,
        id: String? = nil
    ) throws(ModelError) -> [UInt8] {
        let tensor: NumericTensor
        switch NumericTensor.fromNested(.array(predictions)) {
        case .success(let value): tensor = value
        case .failure(let error): throw .modelError("predictions are not a numeric tensor: \(error)")
        }
        return encodeResponse(
            outputs: [OIPTensor(name: outputName, datatype: datatype, tensor: tensor)],
            modelName: modelName,
            modelVersion: modelVersion,
            id: id
        )
    }

    /// A response body with the given output tensors.
    public static func encodeResponse(
        outputs: [OIPTensor],
        modelName: String,
        modelVersion: String,
        id: String? = nil
    )
        -> [UInt8]
    {
        var output: [UInt8] = []
        output.reserveCapacity(96 + outputs.reduce(0) { $0 + $1.values.count * 12 })
        output.append(contentsOf: "{\"model_name\":".utf8)
        JSONWriter.writeString(modelName, to: &output)
        output.append(contentsOf: ",\"model_version\":".utf8)
        JSONWriter.writeString(modelVersion, to: &output)
        if let id {
            output.append(contentsOf: ",\"id\":".utf8)
            JSONWriter.writeString(id, to: &output)
        }
        output.append(contentsOf: ",\"outputs\":[".utf8)
        for (k, tensor) in outputs.enumerated() {
            if k > 0 { output.append(UInt8(ascii: ",")) }
            writeTensor(tensor, to: &output)
        }
        output.append(contentsOf: "]}".utf8)
        return output
    }

    /// `{"name","datatype","shape","data"}` with flat data.
    static func writeTensor(_ tensor: OIPTensor, to output: inout [UInt8]) {
        output.append(contentsOf: "{\"name\":".utf8)
        JSONWriter.writeString(tensor.name, to: &output)
        output.append(contentsOf: ",\"datatype\":".utf8)
        JSONWriter.writeString(tensor.datatype.rawValue, to: &output)
        output.append(contentsOf: ",\"shape\":[".utf8)
        for (k, dimension) in tensor.shape.enumerated() {
            if k > 0 { output.append(UInt8(ascii: ",")) }
            JSONWriter.writeNumber(Double(dimension), to: &output)
        }
        output.append(contentsOf: "],\"data\":[".utf8)
        for (k, value) in tensor.values.enumerated() {
            if k > 0 { output.append(UInt8(ascii: ",")) }
            writeElement(value, datatype: tensor.datatype, to: &output)
        }
        output.append(contentsOf: "]}".utf8)
    }

    private static func writeElement(_ value: Double, datatype: OIPDatatype, to output: inout [UInt8]) {
        switch datatype {
        case .bool where !value.isNaN:
            output.append(contentsOf: (value != 0 ? "true" : "false").utf8)
        case .fp32, .fp16:
            let single = Float(value)
            if single.isFinite && single.rounded(.towardZero) != single {
                // The shortest text that reads back as the same float, as float32 servers print it.
                output.append(contentsOf: single.description.utf8)
            } else {
                JSONWriter.writeNumber(value, to: &output)
            }
        default:
            JSONWriter.writeNumber(value, to: &output)
        }
    }

    /// `{"error":"..."}`, the protocol's error body.
    public static func errorBody(_ message: String) -> [UInt8] {
        TFServingCodec.errorBody(message)
    }
}
