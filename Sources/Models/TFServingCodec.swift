/// TF Serving REST bodies (`:predict`): rows in, `{"predictions": [...]}` out.
///
/// Accepted request shapes, for a model of F features (N instances):
/// - row format: `{"instances": [[f1, ..., fF], ...]}`, or objects keyed by the model's feature
///   names `{"instances": [{"tenure": 3, ...}, ...]}` (an absent feature is missing);
/// - columnar format: `{"inputs": [[f1, ..., fF], ...]}` or `{"inputs": {"tenure": [...], ...}}`
///   (each named input a list of N values, or of N one-element lists);
/// - when F is 1, an instance may be a bare value: `{"instances": [0.3, 0.7]}`;
/// - `signature_name` is accepted and ignored.
/// A value is a number, `null` (missing) or a boolean (`true` = 1, `false` = 0, as numpy and
/// XGBoost read boolean columns). Anything else is a 400 naming what was expected.
public enum TFServingCodec {
    /// Parses a request body and decodes its rows; a body that is not JSON is a 400.
    public static func decodeInstances(
        _ body: UnsafeRawBufferPointer,
        featureNames: [String]?,
        featureCount: Int,
        ignoring ignoredNames: Set<String> = []
    ) throws(ModelError) -> FeatureMatrix {
        try decodeInstances(
            parseBody(body),
            featureNames: featureNames,
            featureCount: featureCount,
            ignoring: ignoredNames
        )
    }

    /// Parses a request body; a body that is not JSON is a 400 saying where it went wrong.
    public static func parseBody(_ body: UnsafeRawBufferPointer) throws(ModelError) -> JSON {
        do {
            return try JSONParser.parse(body)
        } catch {
            throw .badRequest("request body is not JSON: \(error)")
        }
    }

    /// Decodes the rows of a parsed request body into a `rows × featureCount` matrix.
    ///
    /// `featureNames`, when given, has `featureCount` distinct entries and enables instance objects
    /// and named inputs. Names in `ignoredNames` (e.g. a table's key field, `customer_id`, when
    /// one policy mixes table and model versions) are skipped in instance objects and named
    /// inputs; any other unknown name is a 400.
    public static func decodeInstances(
        _ body: JSON,
        featureNames: [String]?,
        featureCount: Int,
        ignoring ignoredNames: Set<String> = []
    ) throws(ModelError) -> FeatureMatrix {
        precondition(
            featureNames == nil || featureNames!.count == featureCount,
            "TFServingCodec.decodeInstances needs one feature name per feature."
        )
        let shape = Shape(featureNames: featureNames, featureCount: featureCount, ignoredNames: ignoredNames)
        switch try requestPayload(body, example: shape.example) {
        case .instances(let rows):
            return try shape.decodeRows(rows, field: "instances")
        case .inputs(let tensor):
            if case .object(let columns) = tensor { return try shape.decodeColumns(columns) }
            return try shape.decodeRows(tensor, field: "inputs")
        }
    }

    /// What a TF Serving request body carries: its `instances` (row format) or its `inputs`
    /// (columnar format).
    public enum RequestPayload {
        case instances(JSON)
        case inputs(JSON)
    }

    /// The payload of a request body: exactly one of `instances` and `inputs`; `signature_name`
    /// (a string) is accepted and ignored; any other key is a 400. `example`, when given, is
    /// shown as the expected `instances` value when both are missing; it is evaluated only then.
    public static func requestPayload(
        _ body: JSON,
        example: @autoclosure () -> String? = nil
    ) throws(ModelError) -> RequestPayload {
        guard case .object(let object) = body else {
            throw .badRequest(
                "request body must be a JSON object with \"instances\" or \"inputs\", got \(body.kindDescription)"
            )
        }
        var instances: JSON?
        var inputs: JSON?
        for member in object.members {
            switch member.key {
            case "instances": instances = member.value
            case "inputs": inputs = member.value
            case "signature_name":
                guard case .string = member.value else {
                    throw .badRequest("'signature_name' must be a string, got \(member.value.kindDescription)")
                }
            default:
                throw .badRequest(
                    "unexpected key '\(member.key)' in request body; expected \"instances\" or \"inputs\""
                        + " (and optionally \"signature_name\")"
                )
            }
        }
        switch (instances, inputs) {
        case (nil, nil):
            throw .badRequest(
                "request body has neither \"instances\" nor \"inputs\""
                    + (example().map { "; expected {\"instances\": \($0)}" } ?? "")
            )
        case (.some, .some):
            throw .badRequest("request body has both \"instances\" and \"inputs\"; send only one")
        case (let rows?, nil):
            return .instances(rows)
        case (nil, let tensor?):
            return .inputs(tensor)
        }
    }

    /// `{"predictions":[...]}`, one entry per instance.
    public static func encodePredictions(_ values: [JSON]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(16 + values.count * 20)
        JSONWriter.appendLiteral("{\"predictions\":", to: &output)
        JSONWriter.write(.array(values), to: &output)
        output.append(UInt8(ascii: "}"))
        return output
    }

    /// The entries of a `{"predictions": [...]}` response body; nil for any other shape.
    public static func decodePredictions(_ body: JSON) -> [JSON]? {
        body["predictions"]?.arrayValue
    }

    /// `{"error":"..."}`, TF Serving's error body.
    public static func errorBody(_ message: String) -> [UInt8] {
        var output: [UInt8] = []
        JSONWriter.appendLiteral("{\"error\":", to: &output)
        JSONWriter.writeString(message, to: &output)
        output.append(UInt8(ascii: "}"))
        return output
    }
}

/// What a model takes, and the decoding of both TF Serving formats against it.
private struct Shape {
    let featureNames: [String]?
    let featureCount: Int
    let ignoredNames: Set<String>

    var example: String {
        if featureCount == 1 { return "[[x], ...]" }
        return "[[" + (1...max(featureCount, 1)).map { "f\($0)" }.joined(separator: ", ") + "], ...]"
    }

    func featureLabel(_ column: Int) -> String {
        if let featureNames { return "feature '\(featureNames[column])'" }
        return "feature \(column)"
    }

    func expectedNames() -> String {
        guard let featureNames else { return "" }
        let shown = featureNames.prefix(20).joined(separator: ", ")
        return featureNames.count > 20 ? shown + ", ..." : shown
    }

    /// Column of each feature name, for wide models (see `column(named:guess:index:)`).
    func nameIndex() -> [String: Int] {
        var index: [String: Int] = [:]
        for (column, name) in (featureNames ?? []).enumerated() { index[name] = column }
        return index
    }

    /// Models up to this many features find a name by comparing names, without a hash table:
    /// hashing a name costs more than comparing a few short ones.
    static let scanLimit = 32

    /// The column of the feature called `key`, or nil. `guess` is tried first: clients usually
    /// send an instance's features in the model's order, so the column after the previous
    /// member's is most often right. Wide models build `index` once, on the first miss.
    func column(named key: String, guess: Int, index: inout [String: Int]?) -> Int? {
        guard let featureNames else { return nil }
        if guess < featureNames.count && featureNames[guess] == key { return guess }
        if featureNames.count <= Shape.scanLimit { return featureNames.firstIndex(of: key) }
        if index == nil { index = nameIndex() }
        return index?[key]
    }

    /// One cell: a number, null (missing) or a boolean.
    func number(_ value: JSON, instance: Int, column: Int) throws(ModelError) -> Double {
        switch value {
        case .number(let number): return number
        case .null: return .nan
        case .bool(let flag): return flag ? 1 : 0
        default:
            throw .badRequest(
                "instance \(instance): \(featureLabel(column)) is \(value.kindDescription); expected a number or null"
            )
        }
    }

    enum RowFormat { case list, object, scalar }

    func decodeRows(_ value: JSON, field: String) throws(ModelError) -> FeatureMatrix {
        guard case .array(let rows) = value else {
            throw .badRequest("'\(field)' must be a list of instances such as \(example), got \(value.kindDescription)")
        }
        guard let first = rows.first else {
            throw .badRequest("'\(field)' is empty; expected at least one instance such as \(example)")
        }
        let format: RowFormat
        switch first {
        case .array: format = .list
        case .object:
            guard featureNames != nil else {
                throw .badRequest(
                    "instance 0 is an object, but this model has no feature names;"
                        + " expected a list of \(featureCount) numbers per instance"
                )
            }
            format = .object
        case .number, .null, .bool:
            guard featureCount == 1 else {
                throw .badRequest(
                    "'\(field)' is a flat list of \(rows.count) values, but this model takes \(featureCount) features"
                        + " per instance; expected a list of instances such as \(example)"
                )
            }
            format = .scalar
        case .string:
            throw .badRequest(
                "instance 0 is a string; expected a list of \(featureCount) numbers"
                    + (featureNames == nil ? "" : " or an object keyed by feature name")
            )
        }
        var values = [Double](repeating: .nan, count: rows.count * featureCount)
        var index: [String: Int]?
        for (instance, row) in rows.enumerated() {
            let base = instance * featureCount
            switch (format, row) {
            case (.list, .array(let cells)):
                guard cells.count == featureCount else {
                    throw .badRequest(
                        "instance \(instance): expected \(featureCount) features per instance, got \(cells.count)"
                    )
                }
                for (column, cell) in cells.enumerated() {
                    values[base + column] = try number(cell, instance: instance, column: column)
                }
            case (.object, .object(let object)):
                var guess = 0
                for member in object.members {
                    guard let column = column(named: member.key, guess: guess, index: &index) else {
                        if ignoredNames.contains(member.key) { continue }
                        throw .badRequest(
                            "instance \(instance): unknown feature '\(member.key)'; expected one of \(expectedNames())"
                        )
                    }
                    values[base + column] = try number(member.value, instance: instance, column: column)
                    guess = column + 1
                }
            case (.scalar, .number), (.scalar, .null), (.scalar, .bool):
                values[base] = try number(row, instance: instance, column: 0)
            default:
                let expected: String
                switch format {
                case .list: expected = "a list of \(featureCount) features"
                case .object: expected = "an object keyed by feature name"
                case .scalar: expected = "a number or null"
                }
                throw .badRequest(
                    "instance \(instance) is \(row.kindDescription); expected \(expected), like instance 0"
                )
            }
        }
        return FeatureMatrix(rows: rows.count, columns: featureCount, values: values)
    }

    /// `{"inputs": {"name": [v, ...], ...}}`: one list per named feature.
    func decodeColumns(_ columns: JSONObject) throws(ModelError) -> FeatureMatrix {
        guard featureNames != nil else {
            throw .badRequest(
                "named \"inputs\" need a model with feature names; this model takes"
                    + " {\"inputs\": \(example)}"
            )
        }
        guard let first = columns.members.first(where: { !ignoredNames.contains($0.key) }) else {
            throw .badRequest("'inputs' has no feature inputs; expected one list of values per feature")
        }
        var index: [String: Int]?
        guard case .array(let firstValues) = first.value else {
            throw .badRequest(
                "input '\(first.key)' is \(first.value.kindDescription); expected a list with one value per instance"
            )
        }
        let rowCount = firstValues.count
        guard rowCount > 0 else {
            throw .badRequest("input '\(first.key)' is empty; expected one value per instance")
        }
        var values = [Double](repeating: .nan, count: rowCount * featureCount)
        var guess = 0
        for member in columns.members {
            guard let column = column(named: member.key, guess: guess, index: &index) else {
                if ignoredNames.contains(member.key) { continue }
                throw .badRequest("unknown input '\(member.key)'; expected one of \(expectedNames())")
            }
            guard case .array(let cells) = member.value else {
                throw .badRequest(
                    "input '\(member.key)' is \(member.value.kindDescription);"
                        + " expected a list with one value per instance"
                )
            }
            guard cells.count == rowCount else {
                throw .badRequest(
                    "input '\(member.key)' has \(cells.count) values but input '\(first.key)' has \(rowCount);"
                        + " every input needs one value per instance"
                )
            }
            for (instance, cell) in cells.enumerated() {
                var cell = cell
                // Shape [N, 1] as well as [N].
                if case .array(let inner) = cell, inner.count == 1 { cell = inner[0] }
                values[instance * featureCount + column] = try number(cell, instance: instance, column: column)
            }
            guess = column + 1
        }
        return FeatureMatrix(rows: rowCount, columns: featureCount, values: values)
    }
}
