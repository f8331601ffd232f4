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

    /// The datatype named `name`, or nil. The float types clients send most are compared first:
    /// the synthesized `init(rawValue:)` tries every name in turn through a generic table.
    static func named(_ name: String) -> OIPDatatype? {
        if name == "FP32" { return .fp32 }
        if name == "FP64" { return .fp64 }
        return OIPDatatype(rawValue: name)
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
        request.inputs.reserveCapacity(inputList.count)
        for (k, input) in inputList.enumerated() {
            request.inputs.append(try decodeTensor(input, position: "inputs[\(k)]"))
        }
        return request
    }

    /// Decodes one `{"name", "shape", "datatype", "data", "parameters"?}` tensor. `position`
    /// (e.g. `inputs[0]`) is made only for an error message.
    static func decodeTensor(
        _ value: JSON,
        position: @autoclosure () -> String,
        role: String = "input"
    ) throws(ModelError) -> OIPTensor {
        guard case .object(let object) = value else {
            throw .badRequest(
                "\(position()) must be an object with name, shape, datatype and data, got \(value.kindDescription)"
            )
        }
        // One pass over the members: the tensor's fields (the first of a name, as a lookup would
        // find), and any other key refused.
        var nameValue: JSON?
        var shapeValue: JSON?
        var datatypeValue: JSON?
        var data: JSON?
        var parameters: JSON?
        for member in object.members {
            switch member.key {
            case "name": if nameValue == nil { nameValue = member.value }
            case "shape": if shapeValue == nil { shapeValue = member.value }
            case "datatype": if datatypeValue == nil { datatypeValue = member.value }
            case "data": if data == nil { data = member.value }
            case "parameters": if parameters == nil { parameters = member.value }
            default:
                throw .badRequest(
                    "\(position()): unexpected key '\(member.key)'; expected name, shape, datatype, data, parameters"
                )
            }
        }
        guard case .string(let name)? = nameValue else {
            throw .badRequest("\(position()) has no string \"name\"")
        }
        // What error messages call the tensor; made only for one.
        var label: String { "\(role) '\(name)'" }
        guard case .array(let shapeList)? = shapeValue else {
            throw .badRequest("\(label) has no \"shape\" list")
        }
        var shape: [Int] = []
        shape.reserveCapacity(shapeList.count)
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
        guard case .string(let typeName)? = datatypeValue else {
            throw .badRequest("\(label) has no string \"datatype\"")
        }
        guard let datatype = OIPDatatype.named(typeName) else {
            throw .badRequest(
                "\(label): unknown datatype '\(typeName)'; expected one of "
                    + OIPDatatype.allCases.filter { $0 != .bytes }.map(\.rawValue).joined(separator: ", ")
            )
        }
        guard datatype != .bytes else {
            throw .badRequest("\(label): datatype BYTES is not supported; expected a numeric datatype such as FP64")
        }
        if let parameters, parameters.objectValue == nil {
            throw .badRequest("\(label): 'parameters' must be an object, got \(parameters.kindDescription)")
        }
        guard let data else { throw .badRequest("\(label) has no \"data\"") }
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
    /// the datatype; stops early once there are more than `limit`. `label` is made only for an
    /// error message.
    private static func flatten(
        _ data: JSON,
        into values: inout [Double],
        datatype: OIPDatatype,
        label: @autoclosure () -> String,
        limit: Int
    ) throws(ModelError) {
        guard case .array(let top) = data else {
            throw .badRequest("\(label()): data must be a list, got \(data.kindDescription)")
        }
        // Flat data (the usual form) needs no stack; a nested list hands the rest to one.
        for (k, element) in top.enumerated() {
            if values.count > limit { return }
            if case .array = element {
                try flattenNested(
                    Array(top[k...]),
                    into: &values,
                    datatype: datatype,
                    label: label(),
                    limit: limit
                )
                return
            }
            try appendElement(element, to: &values, datatype: datatype, label: label())
        }
    }

    /// `flatten` for `elements` that hold nested lists: depth first, with an explicit stack.
    private static func flattenNested(
        _ elements: [JSON],
        into values: inout [Double],
        datatype: OIPDatatype,
        label: @autoclosure () -> String,
        limit: Int
    ) throws(ModelError) {
        var stack: [JSON] = elements.reversed()
        while let current = stack.popLast() {
            if values.count > limit { return }
            if case .array(let inner) = current {
                stack.append(contentsOf: inner.reversed())
            } else {
                try appendElement(current, to: &values, datatype: datatype, label: label())
            }
        }
    }

    /// Checks one element of `data` (not a list) against the datatype and appends its value; a
    /// refused element is thrown as a 400 for the tensor `label` names. The check itself takes no
    /// label, so that an accepted element costs no retain of the label's parts.
    @inline(__always)
    private static func appendElement(
        _ current: JSON,
        to values: inout [Double],
        datatype: OIPDatatype,
        label: @autoclosure () -> String
    ) throws(ModelError) {
        if let reason = append(current, to: &values, datatype: datatype) {
            throw .badRequest("\(label()): \(reason)")
        }
    }

    /// `appendElement` without the label: nil when the element was appended, else why not.
    private static func append(_ current: JSON, to values: inout [Double], datatype: OIPDatatype) -> String? {
        let index = values.count
        switch current {
        case .array:
            preconditionFailure("OIPCodec.appendElement takes no lists; flatten unrolls them.")
        case .number(let number):
            if datatype == .bool {
                guard number == 0 || number == 1 else {
                    return "element \(index) is \(current); expected true or false for BOOL"
                }
            } else if let range = datatype.integerRange {
                guard number.rounded() == number, range.contains(number) else {
                    return "element \(index) is \(current); expected a whole number in the \(datatype.rawValue) range"
                }
            } else if let largest = datatype.largestMagnitude, abs(number) > largest {
                return "element \(index) is \(current), outside the \(datatype.rawValue) range"
            }
            values.append(number)
            return nil
        case .bool(let flag):
            guard datatype == .bool else {
                return "element \(index) is a boolean; expected a number for \(datatype.rawValue)"
            }
            values.append(flag ? 1 : 0)
            return nil
        case .null:
            guard datatype.isFloatingPoint else {
                return "element \(index) is null; only FP16, FP32 and FP64 data may hold null (missing)"
            }
            values.append(.nan)
            return nil
        case .string, .object:
            return "element \(index) is \(current.kindDescription); expected a number for \(datatype.rawValue)"
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
        if let numbers = flatNumbers(predictions) {
            tensor = NumericTensor(shape: [predictions.count], values: numbers)
        } else {
            switch NumericTensor.fromNested(.array(predictions)) {
            case .success(let value): tensor = value
            case .failure(let error): throw .modelError("predictions are not a numeric tensor: \(error)")
            }
        }
        return encodeResponse(
            outputs: [OIPTensor(name: outputName, datatype: datatype, tensor: tensor)],
            modelName: modelName,
            modelVersion: modelVersion,
            id: id
        )
    }

    /// The values of predictions that are all numbers (one output per row, the usual case), as
    /// `NumericTensor.fromNested` would read them; nil for anything else.
    static func flatNumbers(_ predictions: [JSON]) -> [Double]? {
        guard !predictions.isEmpty else { return nil }
        var values: [Double] = []
        values.reserveCapacity(predictions.count)
        for prediction in predictions {
            guard case .number(let number) = prediction else { return nil }
            values.append(number)
        }
        return values
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
        JSONWriter.appendLiteral("{\"model_name\":", to: &output)
        JSONWriter.writeString(modelName, to: &output)
        JSONWriter.appendLiteral(",\"model_version\":", to: &output)
        JSONWriter.writeString(modelVersion, to: &output)
        if let id {
            JSONWriter.appendLiteral(",\"id\":", to: &output)
            JSONWriter.writeString(id, to: &output)
        }
        JSONWriter.appendLiteral(",\"outputs\":[", to: &output)
        for (k, tensor) in outputs.enumerated() {
            if k > 0 { output.append(UInt8(ascii: ",")) }
            writeTensor(tensor, to: &output)
        }
        JSONWriter.appendLiteral("]}", to: &output)
        return output
    }

    /// `{"name","datatype","shape","data"}` with flat data.
    static func writeTensor(_ tensor: OIPTensor, to output: inout [UInt8]) {
        JSONWriter.appendLiteral("{\"name\":", to: &output)
        JSONWriter.writeString(tensor.name, to: &output)
        JSONWriter.appendLiteral(",\"datatype\":", to: &output)
        JSONWriter.writeString(tensor.datatype.rawValue, to: &output)
        JSONWriter.appendLiteral(",\"shape\":[", to: &output)
        for (k, dimension) in tensor.shape.enumerated() {
            if k > 0 { output.append(UInt8(ascii: ",")) }
            JSONWriter.writeNumber(Double(dimension), to: &output)
        }
        JSONWriter.appendLiteral("],\"data\":[", to: &output)
        for (k, value) in tensor.values.enumerated() {
            if k > 0 { output.append(UInt8(ascii: ",")) }
            writeElement(value, datatype: tensor.datatype, to: &output)
        }
        JSONWriter.appendLiteral("]}", to: &output)
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
