/// Input rows for an embedded model: `rows × columns` values, row-major; NaN marks a missing
/// value (JSON `null` or a feature absent from an instance object).
public struct FeatureMatrix: Sendable {
    public let rows: Int
    public let columns: Int
    /// Row-major values; `values[row * columns + column]`.
    public let values: [Double]

    public init(rows: Int, columns: Int, values: [Double]) {
        precondition(rows >= 0 && columns >= 0, "FeatureMatrix needs non-negative dimensions.")
        precondition(values.count == rows * columns, "FeatureMatrix needs rows * columns values.")
        self.rows = rows
        self.columns = columns
        self.values = values
    }

    /// Builds a matrix from equal-length rows (for tests and tools).
    public init(_ rowList: [[Double]]) {
        let columns = rowList.first?.count ?? 0
        precondition(rowList.allSatisfy { $0.count == columns }, "FeatureMatrix rows must have equal length.")
        self.init(rows: rowList.count, columns: columns, values: rowList.flatMap { $0 })
    }

    public subscript(row: Int, column: Int) -> Double { values[row * columns + column] }

    /// The values of one row.
    public func row(_ row: Int) -> ArraySlice<Double> { values[(row * columns)..<((row + 1) * columns)] }
}
