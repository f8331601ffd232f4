/// A model and the (live, shadow) version pair of its comparisons.
public struct PairKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var model: String
    public var liveVersion: String
    public var shadowVersion: String

    public init(model: String, liveVersion: String, shadowVersion: String) {
        self.model = model
        self.liveVersion = liveVersion
        self.shadowVersion = shadowVersion
    }

    /// A shadow of the live version itself: its disagreement is the noise floor (Diffy).
    public var isNoiseFloor: Bool { liveVersion == shadowVersion }

    /// Model, then live version, then the noise pair, then shadow version.
    public static func < (lhs: PairKey, rhs: PairKey) -> Bool {
        if lhs.model != rhs.model { return lhs.model < rhs.model }
        if lhs.liveVersion != rhs.liveVersion { return lhs.liveVersion < rhs.liveVersion }
        if lhs.isNoiseFloor != rhs.isNoiseFloor { return lhs.isNoiseFloor }
        return lhs.shadowVersion < rhs.shadowVersion
    }

    /// `churn/v1→v2`.
    public var description: String { "\(model)/\(liveVersion)→\(shadowVersion)" }
}

/// Counts and samples of one pair's records, added one at a time.
public struct PairAccumulator: Sendable, Hashable {
    public let key: PairKey
    public private(set) var requests = 0
    public private(set) var matches = 0
    public private(set) var mismatches = 0
    /// Records with outcome `error`.
    public private(set) var errors = 0
    /// Records whose live side failed (`ComparisonRecord.liveFailed`).
    public private(set) var liveErrors = 0
    /// Records whose shadow side failed (`ComparisonRecord.shadowFailed`).
    public private(set) var shadowErrors = 0
    /// Compared records (not `error`) with labels on both sides: the trials of churn.
    public private(set) var labelled = 0
    /// Labelled records with `flip`.
    public private(set) var flips = 0
    /// live class → shadow class → rows, over labelled records with as many rows on each side.
    public private(set) var labelMatrix: [Int: [Int: Int]] = [:]
    /// `max_abs_diff` of each record that has one.
    public private(set) var absDiffs: [Double] = []
    /// Latency of every record's live and shadow side, errors included, in milliseconds.
    public private(set) var liveLatencies: [Double] = []
    public private(set) var shadowLatencies: [Double] = []

    public init(key: PairKey) { self.key = key }

    public mutating func add(_ record: ComparisonRecord) {
        requests += 1
        switch record.outcome {
        case .match: matches += 1
        case .mismatch: mismatches += 1
        case .error: errors += 1
        }
        if record.liveFailed { liveErrors += 1 }
        if record.shadowFailed { shadowErrors += 1 }
        if record.outcome != .error, let live = record.liveLabels, let shadow = record.shadowLabels {
            labelled += 1
            if record.flip { flips += 1 }
            if live.count == shadow.count {
                for (from, to) in zip(live, shadow) { labelMatrix[from, default: [:]][to, default: 0] += 1 }
            }
        }
        if let difference = record.maxAbsDiff, difference.isFinite { absDiffs.append(difference) }
        liveLatencies.append(record.live.latencyMilliseconds)
        shadowLatencies.append(record.shadow.latencyMilliseconds)
    }
}

/// The noise floor of a pair: the same model's shadow of its live version, side by side.
public struct NoiseFloor: Sendable, Hashable {
    /// The noise pair's shadow version (equal to its live version).
    public var version: String
    public var requests: Int
    public var agreement: Double?
    public var churn: Double?
    /// This pair's churn less the noise pair's (0 when the noise pair has none), floored at 0;
    /// nil when this pair has no churn.
    public var netChurn: Double?
}

/// Everything the report says about one pair.
public struct PairSummary: Sendable, Hashable {
    public var key: PairKey
    public var requests: Int
    public var matches: Int
    public var mismatches: Int
    public var liveErrors: Int
    public var shadowErrors: Int
    /// matches / (matches + mismatches): error records are left out (they count in `errors`).
    /// Nil when no record was compared.
    public var agreement: Proportion?
    /// flips / labelled records; nil when no record carries labels on both sides.
    public var churn: Proportion?
    /// Of the per-request `max_abs_diff`.
    public var absDiff: Distribution?
    public var labelMatrix: [Int: [Int: Int]]
    public var liveLatency: Distribution?
    public var shadowLatency: Distribution?
    /// Nil for the noise pair itself and for pairs whose live version has no noise pair.
    public var noise: NoiseFloor?
    /// Sorted samples, for charts.
    public var absDiffs: [Double]
    public var liveLatencies: [Double]
    public var shadowLatencies: [Double]

    public init(_ accumulator: PairAccumulator) {
        key = accumulator.key
        requests = accumulator.requests
        matches = accumulator.matches
        mismatches = accumulator.mismatches
        liveErrors = accumulator.liveErrors
        shadowErrors = accumulator.shadowErrors
        agreement = Proportion(successes: accumulator.matches, trials: accumulator.matches + accumulator.mismatches)
        churn = Proportion(successes: accumulator.flips, trials: accumulator.labelled)
        absDiffs = accumulator.absDiffs.sorted()
        absDiff = Distribution(absDiffs)
        labelMatrix = accumulator.labelMatrix
        liveLatencies = accumulator.liveLatencies.sorted()
        shadowLatencies = accumulator.shadowLatencies.sorted()
        liveLatency = Distribution(liveLatencies)
        shadowLatency = Distribution(shadowLatencies)
        noise = nil
    }

    /// The share of requests whose shadow failed, 0…1.
    public var shadowErrorRate: Double { requests == 0 ? 0 : Double(shadowErrors) / Double(requests) }

    /// Churn net of the noise floor: `noise.netChurn`, or the churn itself without a noise pair.
    public var netChurn: Double? {
        if let noise { return noise.netChurn }
        return churn?.rate
    }

    /// Shadow p50 latency minus live p50 latency, in milliseconds.
    public var latencyP50DeltaMilliseconds: Double? {
        guard let live = liveLatency, let shadow = shadowLatency else { return nil }
        return shadow.p50 - live.p50
    }

    /// Shadow p99 latency minus live p99 latency, in milliseconds.
    public var latencyP99DeltaMilliseconds: Double? {
        guard let live = liveLatency, let shadow = shadowLatency else { return nil }
        return shadow.p99 - live.p99
    }

    /// Class labels seen on either side, ascending.
    public var classes: [Int] {
        var seen = Set(labelMatrix.keys)
        for row in labelMatrix.values { seen.formUnion(row.keys) }
        return seen.sorted()
    }
}

/// A log line that could not be read: `file:line: message`.
public struct BadLine: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    /// 1-based.
    public var line: Int
    public var message: String

    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { "\(file):\(line): warning: skipped line: \(message)" }
}

/// The summary of comparison logs, pair by pair.
public struct Report: Sendable, Hashable {
    /// Ordered by `PairKey`'s order (a model's noise pair before its other pairs).
    public var pairs: [PairSummary]
    /// Records read.
    public var records: Int
    public var badLines: [BadLine]
    /// The smallest and largest `ts` (RFC 3339 UTC text compares in time order).
    public var firstTimestamp: String?
    public var lastTimestamp: String?
}

/// Builds a `Report` from records added one at a time.
public struct ReportBuilder: Sendable {
    private var accumulators: [PairKey: PairAccumulator] = [:]
    private var records = 0
    private var badLines: [BadLine] = []
    private var firstTimestamp: String?
    private var lastTimestamp: String?

    public init() {}

    public mutating func add(_ record: ComparisonRecord) {
        let key = PairKey(model: record.model, liveVersion: record.live.version, shadowVersion: record.shadow.version)
        accumulators[key, default: PairAccumulator(key: key)].add(record)
        records += 1
        if firstTimestamp == nil || record.timestamp < firstTimestamp! { firstTimestamp = record.timestamp }
        if lastTimestamp == nil || record.timestamp > lastTimestamp! { lastTimestamp = record.timestamp }
    }

    public mutating func addBadLine(_ badLine: BadLine) { badLines.append(badLine) }

    /// Reads JSONL text: one record per non-blank line; a line that is not a valid record
    /// becomes a `BadLine` and reading goes on.
    public mutating func addLines(of text: [UInt8], file: String) {
        var lineNumber = 0
        for line in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var bytes = Array(line)
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            do {
                add(try ComparisonRecord.parse(bytes))
            } catch {
                addBadLine(BadLine(file: file, line: lineNumber, message: error.message))
            }
        }
    }

    public func build() -> Report {
        var summaries = accumulators.values.map(PairSummary.init).sorted { $0.key < $1.key }
        var noisePairs: [PairKey: PairSummary] = [:]
        for summary in summaries where summary.key.isNoiseFloor {
            noisePairs[PairKey(model: summary.key.model, liveVersion: summary.key.liveVersion, shadowVersion: "")] =
                summary
        }
        for index in summaries.indices where !summaries[index].key.isNoiseFloor {
            let key = summaries[index].key
            guard let floor = noisePairs[PairKey(model: key.model, liveVersion: key.liveVersion, shadowVersion: "")]
            else { continue }
            let netChurn = summaries[index].churn.map { max(0, $0.rate - (floor.churn?.rate ?? 0)) }
            summaries[index].noise = NoiseFloor(
                version: floor.key.shadowVersion,
                requests: floor.requests,
                agreement: floor.agreement?.rate,
                churn: floor.churn?.rate,
                netChurn: netChurn
            )
        }
        return Report(
            pairs: summaries,
            records: records,
            badLines: badLines,
            firstTimestamp: firstTimestamp,
            lastTimestamp: lastTimestamp
        )
    }
}
