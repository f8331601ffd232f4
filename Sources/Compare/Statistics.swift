/// The statistics of the report: Wilson intervals, quantiles, means.
public enum Statistics {
    /// The two-sided 95 % normal quantile, Φ⁻¹(0.975).
    public static let z95 = 1.959963984540054

    /// The Wilson score interval of a binomial proportion; nil when `trials` is 0.
    ///
    /// With p = successes / n: `(p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n)`, clamped to
    /// 0…1. Unlike the normal (Wald) interval it stays inside 0…1 and is not empty at p = 0 or 1.
    public static func wilsonInterval(successes: Int, trials: Int, z: Double = z95) -> (low: Double, high: Double)? {
        precondition(successes >= 0 && successes <= trials, "Wilson interval needs 0 <= successes <= trials.")
        guard trials > 0 else { return nil }
        let n = Double(trials)
        let p = Double(successes) / n
        let z2 = z * z
        let denominator = 1 + z2 / n
        let center = (p + z2 / (2 * n)) / denominator
        let halfWidth = z * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot() / denominator
        // At p = 0 or 1 the bound equals p exactly; rounding must not move it past p.
        let low = successes == 0 ? 0 : max(0, center - halfWidth)
        let high = successes == trials ? 1 : min(1, center + halfWidth)
        return (low, high)
    }

    /// The `probability` quantile (0…1) of ascending `sorted` values by linear interpolation
    /// between closest ranks (Hyndman & Fan type 7; numpy's and R's default): with h =
    /// (n − 1)·probability, `x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])` (0-based). Nil when empty.
    public static func quantile(sorted: [Double], _ probability: Double) -> Double? {
        precondition((0...1).contains(probability), "A quantile's probability must be within 0...1.")
        guard let first = sorted.first else { return nil }
        if sorted.count == 1 { return first }
        let h = Double(sorted.count - 1) * probability
        let lower = Int(h.rounded(.down))
        let upper = min(lower + 1, sorted.count - 1)
        let fraction = h - Double(lower)
        if fraction == 0 { return sorted[lower] }
        return sorted[lower] + fraction * (sorted[upper] - sorted[lower])
    }

    /// The arithmetic mean; nil when empty.
    public static func mean(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        return values.reduce(0, +) / Double(values.count)
    }
}

/// A share of trials with its 95 % Wilson interval.
public struct Proportion: Sendable, Hashable {
    public var successes: Int
    public var trials: Int
    /// successes / trials, 0…1.
    public var rate: Double
    public var low: Double
    public var high: Double

    /// Nil when there are no trials.
    public init?(successes: Int, trials: Int) {
        guard let interval = Statistics.wilsonInterval(successes: successes, trials: trials) else { return nil }
        self.successes = successes
        self.trials = trials
        self.rate = Double(successes) / Double(trials)
        self.low = interval.low
        self.high = interval.high
    }
}

/// Mean, median, 99th percentile and maximum of a sample.
public struct Distribution: Sendable, Hashable {
    public var count: Int
    public var mean: Double
    public var p50: Double
    public var p99: Double
    public var max: Double

    /// Nil when `values` is empty.
    public init?(_ values: [Double]) {
        let sorted = values.sorted()
        guard let mean = Statistics.mean(sorted) else { return nil }
        count = sorted.count
        self.mean = mean
        p50 = Statistics.quantile(sorted: sorted, 0.5)!
        p99 = Statistics.quantile(sorted: sorted, 0.99)!
        max = sorted.last!
    }
}
