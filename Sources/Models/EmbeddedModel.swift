import Foundation

/// A model evaluated inside the proxy, on the worker's loop thread.
public protocol EmbeddedModel: Sendable {
    /// Feature names in column order, when the model file has them; enables instance objects.
    var featureNames: [String]? { get }
    /// Columns the model expects.
    var featureCount: Int { get }
    /// One prediction per row, as the framework's own `predict` returns it: a number for a
    /// single output, an array for several.
    func predict(_ rows: FeatureMatrix) throws(ModelError) -> [JSON]
    /// The Open Inference Protocol datatype of the predictions; `FP64` unless a model says otherwise.
    var outputDatatype: OIPDatatype { get }
}

/// A linear model: `link(coef · x + intercept)` per output.
///
/// File format (JSON): `{"coef": [...] | [[...], ...], "intercept": x | [...],
/// "link": "identity" | "logistic" | "softmax", "feature_names": [...], "metadata": {...}}`.
/// `coef` 1-D is one output; 2-D is outputs × features. `intercept` defaults to 0, `link` to
/// `identity`; `feature_names` and `metadata` (free-form, ignored) are optional. A single
/// output predicts a number; several predict an array (`logistic` applies per output,
/// `softmax` across outputs). Every feature must be present.
public struct LinearModel: EmbeddedModel {
    public enum Link: String, Sendable, Hashable, CaseIterable {
        case identity, logistic, softmax
    }

    /// Row-major outputs × features.
    public let coefficients: [Double]
    public let intercepts: [Double]
    public let link: Link
    public let featureNames: [String]?
    public let featureCount: Int

    public var outputCount: Int { intercepts.count }

    /// A model from coefficient rows (outputs × features). Traps on inconsistent sizes: use
    /// `init(json:path:)` for untrusted input.
    public init(coefficients rows: [[Double]], intercepts: [Double], link: Link, featureNames: [String]? = nil) {
        precondition(!rows.isEmpty && rows.count == intercepts.count, "LinearModel needs one intercept per output.")
        let featureCount = rows[0].count
        precondition(rows.allSatisfy { $0.count == featureCount }, "LinearModel coefficient rows must match.")
        precondition(
            featureNames == nil || featureNames!.count == featureCount,
            "LinearModel needs one name per feature."
        )
        precondition(link != .softmax || rows.count >= 2, "LinearModel softmax needs two or more outputs.")
        self.coefficients = rows.flatMap { $0 }
        self.intercepts = intercepts
        self.link = link
        self.featureNames = featureNames
        self.featureCount = featureCount
    }

    /// Decodes the JSON file format; errors name the key at fault.
    public init(json: JSON, path: String) throws(ModelLoadError) {
        func fail(_ message: String) -> ModelLoadError {
            ModelLoadError(path: path, message: "linear model: \(message)")
        }
        guard case .object(let object) = json else {
            throw fail("expected a JSON object with 'coef', got \(json.kindDescription)")
        }
        for key in object.keys where !["coef", "intercept", "link", "feature_names", "metadata"].contains(key) {
            throw fail("unknown key '\(key)'; expected coef, intercept, link, feature_names or metadata")
        }
        func finite(_ value: JSON, _ name: String) throws(ModelLoadError) -> Double {
            guard case .number(let number) = value, number.isFinite else {
                throw fail("\(name) must be a number, got \(value.kindDescription)")
            }
            return number
        }
        guard let coef = object["coef"] else { throw fail("missing 'coef'") }
        guard case .array(let coefList) = coef, let firstCoef = coefList.first else {
            throw fail("'coef' must be a non-empty list of numbers or of lists of numbers")
        }
        var rows: [[Double]] = []
        let isTwoDimensional: Bool
        if case .array = firstCoef {
            isTwoDimensional = true
            for (r, entry) in coefList.enumerated() {
                guard case .array(let cells) = entry, !cells.isEmpty else {
                    throw fail("'coef' row \(r) must be a non-empty list of numbers, got \(entry.kindDescription)")
                }
                var row: [Double] = []
                for (c, cell) in cells.enumerated() { row.append(try finite(cell, "'coef'[\(r)][\(c)]")) }
                if let width = rows.first?.count, width != row.count {
                    throw fail("'coef' row \(r) has \(row.count) entries but row 0 has \(width)")
                }
                rows.append(row)
            }
        } else {
            isTwoDimensional = false
            var row: [Double] = []
            for (c, cell) in coefList.enumerated() { row.append(try finite(cell, "'coef'[\(c)]")) }
            rows = [row]
        }
        let featureCount = rows[0].count
        var intercepts = [Double](repeating: 0, count: rows.count)
        switch object["intercept"] {
        case nil: break
        case .number(let value)?:
            guard rows.count == 1 else {
                throw fail(
                    "'intercept' is one number but 'coef' has \(rows.count) output rows; expected a list of \(rows.count)"
                )
            }
            intercepts[0] = try finite(.number(value), "'intercept'")
        case .array(let list)?:
            guard list.count == rows.count else {
                throw fail("'intercept' has \(list.count) entries but 'coef' has \(rows.count) output rows")
            }
            for (k, cell) in list.enumerated() { intercepts[k] = try finite(cell, "'intercept'[\(k)]") }
        case let other?:
            throw fail("'intercept' must be a number or a list of numbers, got \(other.kindDescription)")
        }
        var link = Link.identity
        if let value = object["link"] {
            guard case .string(let name) = value, let parsed = Link(rawValue: name) else {
                throw fail("'link' must be \"identity\", \"logistic\" or \"softmax\", got \(value)")
            }
            link = parsed
        }
        if link == .softmax && rows.count < 2 {
            throw fail("'link' softmax needs 2 or more outputs, but 'coef' has \(rows.count)")
        }
        var names: [String]?
        if let value = object["feature_names"] {
            guard case .array(let list) = value else {
                throw fail("'feature_names' must be a list of strings, got \(value.kindDescription)")
            }
            var collected: [String] = []
            for (k, entry) in list.enumerated() {
                guard case .string(let name) = entry, !name.isEmpty else {
                    throw fail("'feature_names'[\(k)] must be a non-empty string, got \(entry)")
                }
                if collected.contains(name) { throw fail("'feature_names' has '\(name)' twice") }
                collected.append(name)
            }
            guard collected.count == featureCount else {
                let what = isTwoDimensional ? "rows of \(featureCount) entries" : "\(featureCount) entries"
                throw fail("'coef' has \(what) but 'feature_names' has \(collected.count)")
            }
            names = collected
        }
        self.init(coefficients: rows, intercepts: intercepts, link: link, featureNames: names)
    }

    public func predict(_ rows: FeatureMatrix) throws(ModelError) -> [JSON] {
        guard rows.columns == featureCount else {
            throw .badRequest("expected \(featureCount) features per instance, got \(rows.columns)")
        }
        var predictions: [JSON] = []
        predictions.reserveCapacity(rows.rows)
        var outputs = [Double](repeating: 0, count: outputCount)
        for row in 0..<rows.rows {
            let base = row * featureCount
            for column in 0..<featureCount where rows.values[base + column].isNaN {
                let label = featureNames.map { "feature '\($0[column])'" } ?? "feature \(column)"
                throw .badRequest("instance \(row): \(label) is missing; linear models need every feature")
            }
            for output in 0..<outputCount {
                var sum = intercepts[output]
                let coefBase = output * featureCount
                for column in 0..<featureCount {
                    sum += coefficients[coefBase + column] * rows.values[base + column]
                }
                outputs[output] = sum
            }
            switch link {
            case .identity: break
            case .logistic: for k in outputs.indices { outputs[k] = logistic(outputs[k]) }
            case .softmax: softmax(&outputs)
            }
            guard outputs.allSatisfy(\.isFinite) else {
                throw .badRequest("instance \(row): prediction is not finite; feature values are out of range")
            }
            predictions.append(outputCount == 1 ? .number(outputs[0]) : .array(outputs.map { .number($0) }))
        }
        return predictions
    }
}

/// 1 / (1 + e^-x), without overflow for large |x|.
func logistic(_ x: Double) -> Double {
    if x >= 0 { return 1 / (1 + exp(-x)) }
    let e = exp(x)
    return e / (1 + e)
}

/// In-place softmax, shifted by the maximum so exp never overflows.
func softmax(_ values: inout [Double]) {
    guard let maximum = values.max() else { return }
    var total = 0.0
    for k in values.indices {
        values[k] = exp(values[k] - maximum)
        total += values[k]
    }
    for k in values.indices { values[k] /= total }
}

extension EmbeddedModel {
    public var outputDatatype: OIPDatatype { .fp64 }
}
