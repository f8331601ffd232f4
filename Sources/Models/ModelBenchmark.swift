import Foundation

/// Times an embedded model's `predict`, for a CLI or a bench script to report. Not used on the
/// request path.
public enum ModelBenchmark {
    /// The median time of one `model.predict(rows)` call over `iterations` calls (after a few
    /// warm-up calls), divided by the number of rows: nanoseconds per row, on the calling thread,
    /// measured with `CLOCK_MONOTONIC`.
    public static func run(
        model: any EmbeddedModel,
        rows: FeatureMatrix,
        iterations: Int
    ) throws(ModelError)
        -> Double
    {
        precondition(iterations > 0 && rows.rows > 0, "ModelBenchmark.run needs iterations and rows.")
        for _ in 0..<min(iterations, 16) { _ = try model.predict(rows) }
        var samples: [UInt64] = []
        samples.reserveCapacity(iterations)
        for _ in 0..<iterations {
            let start = monotonicNanoseconds()
            let predictions = try model.predict(rows)
            let end = monotonicNanoseconds()
            precondition(predictions.count == rows.rows, "An embedded model must predict one entry per row.")
            samples.append(end - start)
        }
        samples.sort()
        let middle = samples.count / 2
        let median =
            samples.count % 2 == 1 ? Double(samples[middle]) : Double(samples[middle - 1] + samples[middle]) / 2
        return median / Double(rows.rows)
    }

    static func monotonicNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
