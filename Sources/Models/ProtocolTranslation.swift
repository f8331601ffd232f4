/// An upstream response body that cannot be read as the protocol says; the sidecar answers 502
/// `upstream_bad_response`.
public struct UpstreamResponseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was found and what was expected.
    public var detail: String
    public init(_ detail: String) { self.detail = detail }
    public var description: String { detail }
}

/// Translation between TF Serving REST and Open Inference Protocol v2 bodies, for numeric
/// tensors, and the reading of any prediction response as one tensor.
///
/// The first dimension of a tensor is the batch: TF Serving's `instances` (and `predictions`)
/// are its rows. Booleans stay booleans (`BOOL`), other numbers are `FP64`; `null` (a missing
/// value) passes as `null`. Request errors are `ModelError` 400s; response errors are
/// `UpstreamResponseError`s.
public enum ProtocolTranslation {
    /// The name given to the single input made from TF Serving `instances`.
    public static let defaultInputName = "input-0"

    // MARK: Requests

    /// `{"instances": rows}` (or `{"inputs": ...}`) → `{"inputs": [...]}`.
    ///
    /// Rows of numbers or nested lists become one input named `inputName` of shape `[N, ...]`
    /// (`[N]` for scalars). Rows that are objects, and columnar `{"inputs": {name: values}}`,
    /// become one input per name, each of shape `[N, ...]`.
    public static func v2Request(
        fromTFServing body: JSON,
        inputName: String = defaultInputName
    ) throws(ModelError)
        -> JSON
    {
        var tensors: [OIPTensor] = []
        switch try TFServingCodec.requestPayload(body) {
        case .instances(let rows):
            guard case .array(let list) = rows, let first = list.first else {
                throw .badRequest("'instances' must be a non-empty list of instances, got \(rows)")
            }
            if case .object(let firstObject) = first {
                // Row format with named inputs: every instance has the same names.
                for name in firstObject.keys {
                    var column: [JSON] = []
                    for (k, row) in list.enumerated() {
                        guard case .object(let rowObject) = row, rowObject.count == firstObject.count,
                            let value = rowObject[name]
                        else {
                            throw .badRequest(
                                "instance \(k) does not have the same named inputs as instance 0 ("
                                    + firstObject.keys.joined(separator: ", ") + ")"
                            )
                        }
                        column.append(value)
                    }
                    tensors.append(try requestTensor(.array(column), name: name))
                }
            } else {
                tensors.append(try requestTensor(rows, name: inputName))
            }
        case .inputs(let columns):
            if case .object(let named) = columns {
                guard !named.isEmpty else { throw .badRequest("'inputs' is an empty object; expected named inputs") }
                for member in named.members { tensors.append(try requestTensor(member.value, name: member.key)) }
            } else {
                tensors.append(try requestTensor(columns, name: inputName))
            }
        }
        if tensors.count > 1 {
            let batch = tensors[0].shape.first
            for tensor in tensors where tensor.shape.first != batch {
                throw .badRequest(
                    "input '\(tensor.name)' has \(tensor.shape.first ?? 0) instances but input '\(tensors[0].name)'"
                        + " has \(batch ?? 0); every input needs one entry per instance"
                )
            }
        }
        return .object(["inputs": .array(tensors.map(tensorJSON))])
    }

    /// `{"inputs": [...]}` → `{"instances": rows}` for one input, or the columnar
    /// `{"inputs": {name: values}}` for several. Each tensor's first dimension is the batch.
    public static func tfServingRequest(fromV2 body: JSON) throws(ModelError) -> JSON {
        let request = try OIPCodec.decodeRequest(body)
        for input in request.inputs where input.shape.isEmpty {
            throw .badRequest("input '\(input.name)' is a scalar (shape []); TF Serving needs a batch dimension")
        }
        if request.inputs.count == 1 {
            let input = request.inputs[0]
            return .object(["instances": input.tensor.nested(asBooleans: input.datatype == .bool)])
        }
        var columns = JSONObject()
        for input in request.inputs {
            guard columns[input.name] == nil else { throw .badRequest("input '\(input.name)' is given twice") }
            columns.set(input.name, input.tensor.nested(asBooleans: input.datatype == .bool))
        }
        return .object(["inputs": .object(columns)])
    }

    // MARK: Responses

    /// `{"outputs": [...]}` → `{"predictions": ...}`: one output becomes nested lists following
    /// its shape; several (equal first dimension) become one object per row keyed by output name,
    /// as TF Serving writes multi-output models.
    public static func tfServingResponse(fromV2 body: JSON) throws(UpstreamResponseError) -> JSON {
        let outputs = try v2Outputs(body)
        if outputs.count == 1 {
            let output = outputs[0]
            guard !output.shape.isEmpty else {
                return .object(["predictions": .array([output.tensor.nested(asBooleans: output.datatype == .bool)])])
            }
            return .object(["predictions": output.tensor.nested(asBooleans: output.datatype == .bool)])
        }
        let rows = outputs[0].shape.first ?? 0
        var perOutput: [[JSON]] = []
        for output in outputs {
            guard output.shape.first == rows,
                case .array(let entries) = output.tensor.nested(asBooleans: output.datatype == .bool)
            else {
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

    /// `{"predictions": ...}` (or TF Serving's columnar `{"outputs": ...}`) → a v2 response with
    /// one output named `predict` (or one per name for per-row objects and named outputs).
    public static func v2Response(
        fromTFServing body: JSON,
        modelName: String,
        modelVersion: String,
        id: String? = nil
    ) throws(UpstreamResponseError) -> JSON {
        var outputs: [OIPTensor] = []
        for (name, value) in try tfServingOutputs(body) {
            outputs.append(try responseTensor(value, name: name))
        }
        var object: JSONObject = ["model_name": .string(modelName), "model_version": .string(modelVersion)]
        if let id { object.set("id", .string(id)) }
        object.set("outputs", .array(outputs.map(tensorJSON)))
        return .object(object)
    }

    /// Reads any prediction response body as one numeric tensor, for output comparison: TF Serving
    /// `predictions` (or columnar `outputs`), or a v2 `outputs` entry. `outputName` picks a named
    /// output (a v2 output, a key of per-row prediction objects, a columnar output); by default
    /// the first.
    public static func outputTensor(
        _ body: JSON,
        outputName: String? = nil
    ) throws(UpstreamResponseError)
        -> NumericTensor
    {
        if isV2Response(body) {
            let outputs = try v2Outputs(body)
            guard let outputName else { return outputs[0].tensor }
            guard let output = outputs.first(where: { $0.name == outputName }) else {
                throw UpstreamResponseError(
                    "response has no output '\(outputName)'; it has "
                        + outputs.map { "'\($0.name)'" }.joined(separator: ", ")
                )
            }
            return output.tensor
        }
        let outputs = try tfServingOutputs(body)
        let chosen: JSON
        if let outputName {
            guard let match = outputs.first(where: { $0.0 == outputName }) else {
                throw UpstreamResponseError(
                    "response has no output '\(outputName)'; it has "
                        + outputs.map { "'\($0.0)'" }.joined(separator: ", ")
                )
            }
            chosen = match.1
        } else {
            chosen = outputs[0].1
        }
        return try responseTensor(chosen, name: outputName ?? OIPCodec.outputName).tensor
    }

    // MARK: Helpers

    private static func isV2Response(_ body: JSON) -> Bool {
        guard case .array(let list)? = body["outputs"] else { return false }
        return list.first?["datatype"] != nil || list.first?["data"] != nil
    }

    /// The output tensors of a v2 response, checked.
    private static func v2Outputs(_ body: JSON) throws(UpstreamResponseError) -> [OIPTensor] {
        guard case .object = body else {
            throw UpstreamResponseError(
                "v2 response body must be a JSON object with \"outputs\", got \(body.kindDescription)"
            )
        }
        guard case .array(let list)? = body["outputs"], !list.isEmpty else {
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
        return outputs
    }

    /// The named values of a TF Serving response: `predictions` rows (one unnamed output, or one
    /// per key of per-row objects), or columnar `outputs` (a value, or an object of named values).
    private static func tfServingOutputs(_ body: JSON) throws(UpstreamResponseError) -> [(String, JSON)] {
        guard case .object(let object) = body else {
            throw UpstreamResponseError(
                "response body must be a JSON object with \"predictions\", got \(body.kindDescription)"
            )
        }
        if let predictions = object["predictions"] {
            guard case .array(let rows) = predictions else {
                throw UpstreamResponseError("'predictions' must be a list, got \(predictions.kindDescription)")
            }
            guard case .object(let firstObject)? = rows.first else { return [(OIPCodec.outputName, predictions)] }
            var outputs: [(String, JSON)] = []
            for name in firstObject.keys {
                var column: [JSON] = []
                for (k, row) in rows.enumerated() {
                    guard case .object(let rowObject) = row, rowObject.count == firstObject.count,
                        let value = rowObject[name]
                    else {
                        throw UpstreamResponseError("prediction \(k) does not have the same outputs as prediction 0")
                    }
                    column.append(value)
                }
                outputs.append((name, .array(column)))
            }
            guard !outputs.isEmpty else { throw UpstreamResponseError("prediction 0 is an empty object") }
            return outputs
        }
        if let columns = object["outputs"] {
            if case .object(let named) = columns {
                guard !named.isEmpty else { throw UpstreamResponseError("'outputs' is an empty object") }
                return named.members.map { ($0.key, $0.value) }
            }
            return [(OIPCodec.outputName, columns)]
        }
        if let error = object["error"] {
            throw UpstreamResponseError("response is an error: \(error)")
        }
        throw UpstreamResponseError("response has neither \"predictions\" nor \"outputs\"")
    }

    private static func requestTensor(_ value: JSON, name: String) throws(ModelError) -> OIPTensor {
        switch tensor(value, name: name) {
        case .success(let tensor): return tensor
        case .failure(let error): throw .badRequest(error.reason)
        }
    }

    private static func responseTensor(_ value: JSON, name: String) throws(UpstreamResponseError) -> OIPTensor {
        switch tensor(value, name: name) {
        case .success(let tensor): return tensor
        case .failure(let error): throw UpstreamResponseError(error.reason)
        }
    }

    /// A nest of lists as a tensor: `BOOL` when every leaf is a boolean, else `FP64`.
    private static func tensor(_ value: JSON, name: String) -> Result<OIPTensor, TensorShapeError> {
        switch NumericTensor.fromNested(value) {
        case .success(let tensor):
            let datatype: OIPDatatype = !tensor.values.isEmpty && allBooleans(value) ? .bool : .fp64
            return .success(OIPTensor(name: name, datatype: datatype, tensor: tensor))
        case .failure(let error):
            return .failure(TensorShapeError("'\(name)': \(error.reason); only numeric tensors can be translated"))
        }
    }

    private static func allBooleans(_ value: JSON) -> Bool {
        switch value {
        case .bool: true
        case .array(let elements): elements.allSatisfy(allBooleans)
        default: false
        }
    }

    /// A tensor as a v2 JSON object with flat data.
    private static func tensorJSON(_ tensor: OIPTensor) -> JSON {
        let data: [JSON] = tensor.values.map { value in
            if value.isNaN { return .null }
            return tensor.datatype == .bool ? .bool(value != 0) : .number(value)
        }
        return .object([
            "name": .string(tensor.name), "datatype": .string(tensor.datatype.rawValue),
            "shape": .array(tensor.shape.map { .number(Double($0)) }), "data": .array(data),
        ])
    }
}
