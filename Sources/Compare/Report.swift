import Models

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
    /// Latency (`latency_ms`, each version's own time) of every record's live and shadow side,
    /// errors included, in milliseconds.
    public private(set) var liveLatencies: [Double] = []
    public private(set) var shadowLatencies: [Double] = []
    /// The live side's end-to-end `total_ms`, of the records that carry it.
    public private(set) var liveTotals: [Double] = []
    /// Each compared record's time and outcome, in reading order (records whose `ts` does not
    /// read as RFC 3339 are left out): the agreement-over-time chart.
    public private(set) var timeline: [TimedOutcome] = []
    /// Live and shadow value of output rows, from compared records whose outputs are one number
    /// per row on both sides (as many rows each), in reading order: every `scatterStride`-th row,
    /// so that a long log keeps a bounded, evenly spread sample (at most `scatterKept` points).
    public private(set) var scatter: [ScatterPoint] = []
    /// Scalar rows seen in all (`scatter` holds a sample of them).
    public private(set) var scatterRows = 0
    private var scatterStride = 1
    /// Twice what a chart draws: halving it still leaves enough.
    static let scatterKept = 4096
    /// Some compared record had an output that is not one number per row (a probability vector,
    /// an object): the pair's outputs are not scalar, so it gets no scatter.
    public private(set) var hasNonScalarOutput = false
    /// The LLM figures of the pair's records that compared OpenAI-compatible answers; nil when
    /// none did.
    public private(set) var text: TextAccumulator?

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
        if let total = record.live.totalMilliseconds { liveTotals.append(total) }
        if record.isLLM { text = (text ?? TextAccumulator()).adding(record) }
        guard record.outcome != .error else { return }
        if let time = RFC3339.millisecondsSinceEpoch(record.timestamp) {
            timeline.append(TimedOutcome(milliseconds: time, matched: record.outcome == .match))
        }
        if let liveOutput = record.live.output, let shadowOutput = record.shadow.output {
            let live = Self.scalarRows(of: liveOutput)
            let shadow = Self.scalarRows(of: shadowOutput)
            if let live, let shadow {
                if live.count == shadow.count {
                    for (x, y) in zip(live, shadow) { addScatterPoint(ScatterPoint(live: x, shadow: y)) }
                }
            } else {
                hasNonScalarOutput = true
            }
        }
    }

    /// Keeps every `scatterStride`-th row; when that is too many, every other one of those.
    private mutating func addScatterPoint(_ point: ScatterPoint) {
        if scatterRows % scatterStride == 0 {
            if scatter.count == Self.scatterKept {
                scatter = stride(from: 0, to: scatter.count, by: 2).map { scatter[$0] }
                scatterStride *= 2
            }
            if scatterRows % scatterStride == 0 { scatter.append(point) }
        }
        scatterRows += 1
    }

    /// The rows of an output that holds one finite number per row: a number, or an array of
    /// numbers or of one-number arrays (`[0.7]`, `[[0.7], [0.2]]`); nil for anything else.
    static func scalarRows(of output: JSON) -> [Double]? {
        func finite(_ value: JSON) -> Double? {
            guard case .number(let number) = value, number.isFinite else { return nil }
            return number
        }
        switch output {
        case .number: return finite(output).map { [$0] }
        case .array(let rows) where !rows.isEmpty:
            var values: [Double] = []
            values.reserveCapacity(rows.count)
            for row in rows {
                if let value = finite(row) {
                    values.append(value)
                } else if case .array(let inner) = row, inner.count == 1, let value = finite(inner[0]) {
                    values.append(value)
                } else {
                    return nil
                }
            }
            return values
        default: return nil
        }
    }
}

/// When a compared record was written and whether it matched.
public struct TimedOutcome: Sendable, Hashable {
    /// Milliseconds since the Unix epoch, from the record's `ts`.
    public var milliseconds: Int64
    public var matched: Bool
}

/// One output row's live and shadow value.
public struct ScatterPoint: Sendable, Hashable {
    public var live: Double
    public var shadow: Double
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
    /// Of the live side's end-to-end `total_ms`; nil when no record carries it.
    public var liveTotalLatency: Distribution?
    /// Nil for the noise pair itself and for pairs whose live version has no noise pair.
    public var noise: NoiseFloor?
    /// Fewer compared requests (`compared`) than the report's minimum sample (`--min-requests`):
    /// the pair's figures are shown but its gates neither pass nor fail.
    public var insufficientData = false
    /// Sorted samples, for charts.
    public var absDiffs: [Double]
    public var liveLatencies: [Double]
    public var shadowLatencies: [Double]
    /// See `PairAccumulator`.
    public var timeline: [TimedOutcome]
    public var scatter: [ScatterPoint]
    /// Scalar rows seen, of which `scatter` is an evenly spread sample.
    public var scatterRows: Int
    /// Every compared output was one number per row (and there was one): the scatter applies.
    public var hasScalarOutput: Bool
    /// The LLM figures (SPEC §14) of an openai pair; nil for other pairs.
    public var text: TextSummary?

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
        liveTotalLatency = Distribution(accumulator.liveTotals)
        noise = nil
        timeline = accumulator.timeline
        scatter = accumulator.scatter
        scatterRows = accumulator.scatterRows
        hasScalarOutput = !accumulator.hasNonScalarOutput && !accumulator.scatter.isEmpty
        text = accumulator.text.map(TextSummary.init)
    }

    /// Requests compared (outcome `match` or `mismatch`): the sample `--min-requests` counts.
    public var compared: Int { matches + mismatches }

    /// Label rows that moved from class 0 to 1, from 1 to 0, and all labelled rows, when every
    /// class seen is 0 or 1 (a binary classifier); nil otherwise.
    public var binaryShift: (toPositive: Int, toNegative: Int, rows: Int)? {
        let classes = self.classes
        guard !classes.isEmpty, classes.allSatisfy({ $0 == 0 || $0 == 1 }) else { return nil }
        let rows = labelMatrix.values.reduce(0) { $0 + $1.values.reduce(0, +) }
        return (labelMatrix[0]?[1] ?? 0, labelMatrix[1]?[0] ?? 0, rows)
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
    /// The minimum sample: a pair with fewer compared requests has insufficient data.
    public var minRequests: Int
    /// Churn over every pair but noise pairs, and its direction.
    public var netChurn: NetChurn
}

/// The report-wide churn: how many predictions a switch to the shadows would change, net of
/// the noise floor, and which way.
///
/// An analyst weighing a candidate asks two things: how many answers change beyond the noise
/// the live version makes against itself (`rate`), and whether they move toward the positive
/// class or away from it (`direction`): a churn or fraud model that flags 3 % more cases costs
/// differently from one that flags 3 % fewer, at the same churn.
public struct NetChurn: Sendable, Hashable {
    /// Flips among labelled requests, pooled over every pair but noise pairs, with its Wilson
    /// interval; nil without labelled requests.
    public var churn: Proportion?
    /// Each such pair's net churn (its churn less its noise pair's, at least 0; the churn itself
    /// without a noise pair), averaged with weights equal to the pair's labelled requests; nil
    /// without labelled requests. Equals `churn.rate` when no pair has a noise pair.
    public var rate: Double?
    /// Over pairs whose classes are 0 and 1 only (noise pairs excepted): label rows that moved
    /// 0 → 1 and 1 → 0, and all labelled rows of those pairs.
    public var toPositive: Int
    public var toNegative: Int
    public var binaryRows: Int
    /// (toPositive − toNegative) / binaryRows, −1…1: the shadow's share of positive rows less
    /// the live version's; nil without binary rows.
    public var direction: Double? {
        binaryRows == 0 ? nil : Double(toPositive - toNegative) / Double(binaryRows)
    }

    init(pairs: [PairSummary]) {
        var flips = 0
        var labelled = 0
        var netSum = 0.0
        toPositive = 0
        toNegative = 0
        binaryRows = 0
        for pair in pairs where !pair.key.isNoiseFloor {
            guard let churn = pair.churn else { continue }
            flips += churn.successes
            labelled += churn.trials
            netSum += (pair.netChurn ?? churn.rate) * Double(churn.trials)
            if let shift = pair.binaryShift {
                toPositive += shift.toPositive
                toNegative += shift.toNegative
                binaryRows += shift.rows
            }
        }
        churn = Proportion(successes: flips, trials: labelled)
        rate = labelled == 0 ? nil : netSum / Double(labelled)
    }
}

/// Builds a `Report` from records added one at a time.
public struct ReportBuilder: Sendable {
    private var accumulators: [PairKey: PairAccumulator] = [:]
    private var records = 0
    private var badLines: [BadLine] = []
    private var firstTimestamp: String?
    private var lastTimestamp: String?

    /// `--min-requests`' default: below 100 compared requests a 95 % interval on agreement is
    /// still several points wide, too wide to gate a release on.
    public static let defaultMinRequests = 100

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

    /// The report; a pair with fewer than `minRequests` compared requests has insufficient data.
    public func build(minRequests: Int = ReportBuilder.defaultMinRequests) -> Report {
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
        for index in summaries.indices { summaries[index].insufficientData = summaries[index].compared < minRequests }
        return Report(
            pairs: summaries,
            records: records,
            badLines: badLines,
            firstTimestamp: firstTimestamp,
            lastTimestamp: lastTimestamp,
            minRequests: minRequests,
            netChurn: NetChurn(pairs: summaries)
        )
    }
}
