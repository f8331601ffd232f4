import Models

/// How a response body becomes the output that `compare` looks at.
///
/// The `compare.output` pointer is applied to the body as it is first; when it leads nowhere,
/// it is applied to a *tensor view* of the body, so that one pointer (`/predictions`) reads
/// every protocol:
/// - Open Inference Protocol v2, `{"outputs": [{"name", "shape", "datatype", "data"}, ...]}`:
///   the view is an object with one member per output, named by the output's `name`, whose value
///   is `data` (flattened if it came nested) reshaped row-major by `shape` into nested arrays
///   (`shape: [2, 2], data: [a, b, c, d]` → `[[a, b], [c, d]]`; `shape: []` → the one value).
///   Unless an output is itself named `predictions`, `predictions` names the first output. So
///   `/predictions` reads the first output, `/probabilities` the output of that name, and
///   `/predictions/0` the first row of the first output.
/// - TF Serving columnar responses, `{"outputs": tensor}` or `{"outputs": {"name": tensor}}`:
///   `predictions` names the single tensor, and each named tensor is a member of the view.
/// A v2 output whose `shape` does not match the number of values in `data` makes the body
/// unreadable (the side is an error).
public enum OutputExtraction {
    /// The output of `body` at `pointer`, or nil when the pointer leads nowhere in the body or
    /// in its tensor view.
    public static func output(of body: JSON, at pointer: JSONPointer) -> JSON? {
        if let direct = body.value(at: pointer) { return direct }
        guard let view = tensorView(of: body) else { return nil }
        return view.value(at: pointer)
    }

    /// The tensor view of a v2 or TF Serving columnar body (see the type's summary); nil for
    /// any other body.
    public static func tensorView(of body: JSON) -> JSON? {
        guard case .object(let object) = body, let outputs = object["outputs"] else { return nil }
        switch outputs {
        case .array(let list) where !list.isEmpty && list.allSatisfy({ $0["data"] != nil }):
            var view = JSONObject()
            var first: JSON?
            for output in list {
                guard let tensor = reshapedData(of: output) else { return nil }
                if first == nil { first = tensor }
                if let name = output["name"]?.stringValue, view[name] == nil { view.set(name, tensor) }
            }
            if view["predictions"] == nil, let first { view.set("predictions", first) }
            return .object(view)
        case .object(let named):
            var view = named
            if named.count == 1, view["predictions"] == nil { view.set("predictions", named[0].value) }
            return .object(view)
        default:
            return .object(["predictions": outputs])
        }
    }

    /// A v2 output's `data` as nested arrays of its `shape`; nil when they disagree.
    static func reshapedData(of output: JSON) -> JSON? {
        guard let data = output["data"] else { return nil }
        var flat: [JSON] = []
        flatten(data, into: &flat)
        guard let shapeValues = output["shape"]?.arrayValue else { return .array(flat) }
        var shape: [Int] = []
        for value in shapeValues {
            guard let number = value.doubleValue, number >= 0, number == number.rounded(), number < 1e9 else {
                return nil
            }
            shape.append(Int(number))
        }
        guard shape.reduce(1, { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }) == flat.count
        else { return nil }
        if shape.isEmpty { return flat[0] }
        var offset = 0
        return nest(flat, shape: shape[...], offset: &offset)
    }

    private static func flatten(_ value: JSON, into flat: inout [JSON]) {
        if case .array(let elements) = value {
            for element in elements { flatten(element, into: &flat) }
        } else {
            flat.append(value)
        }
    }

    private static func nest(_ flat: [JSON], shape: ArraySlice<Int>, offset: inout Int) -> JSON {
        let count = shape.first!
        var elements: [JSON] = []
        elements.reserveCapacity(count)
        if shape.count == 1 {
            elements.append(contentsOf: flat[offset..<offset + count])
            offset += count
        } else {
            for _ in 0..<count { elements.append(nest(flat, shape: shape.dropFirst(), offset: &offset)) }
        }
        return .array(elements)
    }
}
