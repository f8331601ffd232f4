import Foundation

/// A gradient-boosted tree ensemble from XGBoost's JSON model format (`Booster.save_model("m.json")`),
/// evaluated as XGBoost's CPU predictor does: 32-bit floats throughout, trees summed in file order
/// onto the base margin, then the objective's transform.
///
/// Supported: booster `gbtree` (including random forests, `num_parallel_tree` > 1); objectives
/// `reg:squarederror` (and its old name `reg:linear`), `reg:logistic`, `binary:logistic`,
/// `binary:logitraw`, `multi:softprob`, `multi:softmax`; numerical splits. A missing value (NaN)
/// follows each split's default direction. Files from XGBoost 1.0 to 3.x load, including a
/// `base_score` stored as a scalar (`"5E-1"`) or as a per-target array (`"[5E-1]"`,
/// `"[0E0,0E0,0E0]"`).
public struct XGBoostModel: EmbeddedModel {
    /// The learning objectives whose predictions this evaluator reproduces.
    public enum Objective: String, Sendable, Hashable, CaseIterable {
        case squaredError = "reg:squarederror"
        case regressionLogistic = "reg:logistic"
        case binaryLogistic = "binary:logistic"
        case binaryLogitRaw = "binary:logitraw"
        case multiSoftprob = "multi:softprob"
        case multiSoftmax = "multi:softmax"

        var isMulticlass: Bool { self == .multiSoftprob || self == .multiSoftmax }
    }

    public let objective: Objective
    public let featureNames: [String]?
    public let featureCount: Int
    /// Margins per row: the number of classes for `multi:*`, else 1.
    public let groupCount: Int
    /// The margin each group starts from: `base_score` after the objective's `ProbToMargin`.
    public let baseMargins: [Float]
    /// The XGBoost version that wrote the file, e.g. `[3, 2, 0]`; empty when the file does not say.
    public let writerVersion: [Int]

    /// Every tree's nodes, one after another; child indexes are absolute.
    let nodes: [XGBoostNode]
    /// Index in `nodes` of each tree's root, in file order.
    let treeRoots: [Int32]
    /// The output group (class) each tree adds to (`tree_info`).
    let treeGroups: [Int32]

    public var treeCount: Int { treeRoots.count }
    public var nodeCount: Int { nodes.count }

    /// Numbers per row in `predictOutputs` and `predict`: the class count for `multi:softprob`,
    /// else 1.
    public var outputWidth: Int { objective == .multiSoftprob ? groupCount : 1 }

    /// `INT64` for `multi:softmax` (class indexes), `FP32` otherwise (XGBoost predicts floats).
    public var outputDatatype: OIPDatatype { objective == .multiSoftmax ? .int64 : .fp32 }

    init(
        objective: Objective,
        featureNames: [String]?,
        featureCount: Int,
        groupCount: Int,
        baseMargins: [Float],
        writerVersion: [Int],
        nodes: [XGBoostNode],
        treeRoots: [Int32],
        treeGroups: [Int32]
    ) {
        precondition(baseMargins.count == groupCount, "XGBoostModel needs one base margin per output group.")
        precondition(treeRoots.count == treeGroups.count, "XGBoostModel needs one group per tree.")
        self.objective = objective
        self.featureNames = featureNames
        self.featureCount = featureCount
        self.groupCount = groupCount
        self.baseMargins = baseMargins
        self.writerVersion = writerVersion
        self.nodes = nodes
        self.treeRoots = treeRoots
        self.treeGroups = treeGroups
    }

    /// One prediction per row, as XGBoost's `Booster.predict` returns it: a number for regression
    /// and binary objectives, a probability list for `multi:softprob`, a class index for
    /// `multi:softmax`.
    public func predict(_ rows: FeatureMatrix) throws(ModelError) -> [JSON] {
        try check(rows)
        let width = outputWidth
        // The margins live on the machine stack for the usual few rows: a prediction allocates
        // only the array it returns.
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: max(rows.rows * groupCount, 1)) { margins in
            writeMargins(rows, into: margins.baseAddress!)
            transform(margins, rows: rows.rows)
            var predictions: [JSON] = []
            predictions.reserveCapacity(rows.rows)
            if width == 1 {
                for row in 0..<rows.rows { predictions.append(.number(Double(margins[row]))) }
            } else {
                for row in 0..<rows.rows {
                    let base = row * width
                    predictions.append(.array((base..<(base + width)).map { .number(Double(margins[$0])) }))
                }
            }
            return predictions
        }
    }

    /// Row-major `rows × outputWidth` outputs: probabilities, values or class indexes, as
    /// `Booster.predict` returns them.
    public func predictOutputs(_ rows: FeatureMatrix) throws(ModelError) -> [Float] {
        var outputs = try predictMargins(rows)
        outputs.withUnsafeMutableBufferPointer { transform($0, rows: rows.rows) }
        outputs.removeLast(outputs.count - rows.rows * outputWidth)
        return outputs
    }

    /// Row-major `rows × groupCount` margins (`output_margin=True`): base margin plus leaf values.
    public func predictMargins(_ rows: FeatureMatrix) throws(ModelError) -> [Float] {
        try check(rows)
        var margins = [Float](repeating: 0, count: rows.rows * groupCount)
        margins.withUnsafeMutableBufferPointer { margins in
            if let base = margins.baseAddress { writeMargins(rows, into: base) }
        }
        return margins
    }

    /// Refuses rows of the wrong width and values XGBoost cannot read.
    private func check(_ rows: FeatureMatrix) throws(ModelError) {
        guard rows.columns == featureCount else {
            throw .badRequest("expected \(featureCount) features per instance, got \(rows.columns)")
        }
        // XGBoost reads every input as a 32-bit float and refuses infinities.
        for (index, value) in rows.values.enumerated() where Float(value).isInfinite {
            throw .badRequest(
                "instance \(index / featureCount): \(featureLabel(index % featureCount)) is \(value),"
                    + " outside the 32-bit float range XGBoost reads"
            )
        }
    }

    /// Writes the `rows × groupCount` margins of checked rows to `out`, row-major.
    private func writeMargins(_ rows: FeatureMatrix, into out: UnsafeMutablePointer<Float>) {
        let groupCount = groupCount
        let featureCount = featureCount
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(featureCount, 1)) { features in
            rows.values.withUnsafeBufferPointer { values in
                for row in 0..<rows.rows {
                    let base = row * featureCount
                    for column in 0..<featureCount { features[column] = Float(values[base + column]) }
                    let margins = out + row * groupCount
                    for group in 0..<groupCount { margins[group] = baseMargins[group] }
                    accumulate(features: UnsafePointer(features.baseAddress!), into: margins)
                }
            }
        }
    }

    /// Turns `rows × groupCount` margins into the objective's outputs, in place: the first
    /// `rows × outputWidth` slots then hold `predictOutputs`.
    private func transform(_ margins: UnsafeMutableBufferPointer<Float>, rows: Int) {
        switch objective {
        case .squaredError, .binaryLogitRaw:
            break
        case .regressionLogistic, .binaryLogistic:
            for k in 0..<(rows * groupCount) { margins[k] = xgboostSigmoid(margins[k]) }
        case .multiSoftprob:
            for row in 0..<rows {
                xgboostSoftmax(
                    UnsafeMutableBufferPointer(rebasing: margins[(row * groupCount)..<((row + 1) * groupCount)])
                )
            }
        case .multiSoftmax:
            for row in 0..<rows {
                // The first largest margin, like std::max_element. Slot `row` is at or before this
                // row's margins, so writing it never overwrites a margin still to be read.
                let base = row * groupCount
                var best = 0
                for group in 1..<groupCount where margins[base + group] > margins[base + best] { best = group }
                margins[row] = Float(best)
            }
        }
    }

    private func featureLabel(_ column: Int) -> String {
        if let featureNames { return "feature '\(featureNames[column])'" }
        return "feature \(column)"
    }

    /// Adds every tree's leaf value for one row of features to `out` (one slot per group).
    @inline(__always)
    private func accumulate(features: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        nodes.withUnsafeBufferPointer { nodes in
            treeRoots.withUnsafeBufferPointer { roots in
                treeGroups.withUnsafeBufferPointer { groups in
                    let nodeBase = nodes.baseAddress!
                    for tree in 0..<roots.count {
                        // The loader checked that every reachable index is in range and that the
                        // reachable nodes form a tree, so this walk ends at a leaf.
                        var node = nodeBase + Int(roots[tree])
                        while node.pointee.left >= 0 {
                            let split = node.pointee
                            let value = features[Int(split.feature & XGBoostNode.featureMask)]
                            let next: Int32
                            if value.isNaN {
                                next = split.feature & XGBoostNode.defaultLeftBit != 0 ? split.left : split.right
                            } else {
                                next = value < split.value ? split.left : split.right
                            }
                            node = nodeBase + Int(next)
                        }
                        out[Int(groups[tree])] += node.pointee.value
                    }
                }
            }
        }
    }
}

/// One tree node, 16 bytes: a split (`left >= 0`) or a leaf (`left == -1`, `value` is the leaf value).
struct XGBoostNode: Sendable, Hashable {
    static let featureMask: UInt32 = 0x7FFF_FFFF
    static let defaultLeftBit: UInt32 = 0x8000_0000

    /// The split threshold (`x < value` goes left), or the leaf value.
    var value: Float
    /// The split's feature index, with `defaultLeftBit` set when a missing value goes left.
    var feature: UInt32
    /// Absolute index of the left child in the model's node array; -1 for a leaf.
    var left: Int32
    /// Absolute index of the right child; -1 for a leaf.
    var right: Int32
}

/// XGBoost's `common::Sigmoid` (src/common/math.h): float arithmetic, the exponent clamped so
/// `expf` never overflows.
@inline(__always)
func xgboostSigmoid(_ x: Float) -> Float {
    let exponent = min(-x, 88.7 as Float)
    return 1 / (expf(exponent) + 1 + 1e-16 as Float)
}

/// XGBoost's `common::Softmax`: shifted by the largest margin, `expf` per class, summed in double.
@inline(__always)
func xgboostSoftmax(_ values: UnsafeMutableBufferPointer<Float>) {
    guard var largest = values.first else { return }
    for value in values.dropFirst() { largest = fmaxf(value, largest) }
    var total = 0.0
    for k in values.indices {
        values[k] = expf(values[k] - largest)
        total += Double(values[k])
    }
    let divisor = Float(total)
    for k in values.indices { values[k] /= divisor }
}
