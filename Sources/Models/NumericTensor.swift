/// A numeric tensor: row-major values and a shape. NaN stands for a JSON `null` (missing value).
public struct NumericTensor: Sendable, Hashable, CustomStringConvertible {
    /// Dimensions, outermost first; `[]` for a scalar.
    public var shape: [Int]
    /// Row-major values; `values.count` is the product of `shape`.
    public var values: [Double]

    public init(shape: [Int], values: [Double]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "NumericTensor dimensions must be non-negative.")
        precondition(shape.reduce(1, *) == values.count, "NumericTensor needs as many values as its shape holds.")
        self.shape = shape
        self.values = values
    }

    /// Reads a rectangular nest of JSON arrays whose leaves are numbers, booleans (1, 0) or null
    /// (NaN); the shape comes from the nesting. Returns a reason instead for anything else.
    public static func fromNested(_ value: JSON) -> Result<NumericTensor, TensorShapeError> {
        var shape: [Int] = []
        var probe = value
        while case .array(let elements) = probe {
            shape.append(elements.count)
            guard let first = elements.first else { break }
            probe = first
        }
        var values: [Double] = []
        values.reserveCapacity(shape.reduce(1) { $0 * max($1, 1) })
        // Walk the nest depth first with an explicit stack of (value, depth, index in its list).
        // `path` holds the indexes of the current value's enclosing lists: a depth-first walk
        // leaves there exactly the ancestors of what it pops. Positions are written out only for
        // an error message.
        var stack: [(JSON, Int, Int)] = [(value, 0, -1)]
        var path: [Int] = []
        while let (current, depth, index) = stack.popLast() {
            if depth > 0 {
                path.removeLast(path.count - (depth - 1))
                path.append(index)
            }
            if depth < shape.count {
                guard case .array(let elements) = current else {
                    let place = position(path)
                    return .failure(
                        TensorShapeError(
                            "value at \(place.isEmpty ? "the top" : place) is \(current.kindDescription);"
                                + " expected a list of \(shape[depth]), like the first"
                        )
                    )
                }
                guard elements.count == shape[depth] else {
                    let place = position(path)
                    return .failure(
                        TensorShapeError(
                            "list at \(place.isEmpty ? "the top" : place) has \(elements.count) entries;"
                                + " expected \(shape[depth]), like the first (the tensor must be rectangular)"
                        )
                    )
                }
                for (index, element) in elements.enumerated().reversed() {
                    stack.append((element, depth + 1, index))
                }
                continue
            }
            switch current {
            case .number(let number): values.append(number)
            case .bool(let flag): values.append(flag ? 1 : 0)
            case .null: values.append(.nan)
            case .array:
                return .failure(
                    TensorShapeError(
                        "value at \(position(path)) is a list; expected a number, like the first (not rectangular)"
                    )
                )
            default:
                let place = position(path)
                return .failure(
                    TensorShapeError(
                        "value at \(place.isEmpty ? "the top" : place) is \(current.kindDescription);"
                            + " expected a number"
                    )
                )
            }
        }
        return .success(NumericTensor(shape: shape, values: values))
    }

    /// `[0][2]`: where a value sits, by its list indexes from the top.
    private static func position(_ path: [Int]) -> String { path.map { "[\($0)]" }.joined() }

    /// The values as nested JSON arrays following `shape` (a scalar for `[]`); NaN becomes null.
    public func nested(asBooleans: Bool = false) -> JSON {
        func leaf(_ value: Double) -> JSON {
            if value.isNaN { return .null }
            return asBooleans ? .bool(value != 0) : .number(value)
        }
        func build(_ depth: Int, _ start: Int, _ stride: Int) -> JSON {
            if depth == shape.count { return leaf(values[start]) }
            let inner = stride / max(shape[depth], 1)
            return .array((0..<shape[depth]).map { build(depth + 1, start + $0 * inner, inner) })
        }
        return build(0, 0, values.count == 0 ? 0 : values.count)
    }

    public var description: String { "tensor \(shape) \(values)" }
}

/// Why a nest of JSON arrays is not a numeric tensor.
public struct TensorShapeError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
