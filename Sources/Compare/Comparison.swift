import Foundation
import Models

/// What to compare in two responses, from a policy's `compare:` block.
public struct ComparisonSpec: Sendable, Hashable {
    /// The JSON pointer read in both responses (see `OutputExtraction`).
    public var pointer: JSONPointer
    /// Two numbers agree when `|live - shadow| <= tolerance`.
    public var tolerance: Double
    /// Labels single probabilities: `p >= threshold` is class 1, else class 0. Nil: only
    /// probability vectors are labelled.
    public var threshold: Double?

    /// The pointer text, e.g. `/predictions`.
    public var output: String { pointer.description }

    public init(pointer: JSONPointer, tolerance: Double = 0, threshold: Double? = nil) {
        self.pointer = pointer
        self.tolerance = tolerance
        self.threshold = threshold
    }

    /// Parses the pointer text; an invalid pointer throws.
    public init(output: String, tolerance: Double = 0, threshold: Double? = nil) throws(JSONPointerError) {
        self.init(pointer: try JSONPointer(output), tolerance: tolerance, threshold: threshold)
    }
}

/// One side (live or shadow) of a compared request, as the sidecar saw it.
public struct ResponseSide: Sendable, Hashable {
    public enum Body: Sendable, Hashable {
        /// The raw response body; parsed by `compare`.
        case bytes([UInt8])
        /// A body already parsed (e.g. by an embedded model's codec).
        case json(JSON)
    }

    /// The version name that answered (never a label).
    public var version: String
    /// The HTTP status. When no response arrived, pass the status the sidecar answers in that
    /// case (502 for a connect error, 504 for a timeout).
    public var status: Int
    public var body: Body
    /// The version's own time, from asking it (sending the request, or starting an embedded
    /// evaluation) to the end of its answer, in milliseconds: the same measure for live and shadow.
    public var latencyMilliseconds: Double
    /// The live side's end-to-end time, from the request's arrival at the sidecar to the end of
    /// the answer sent (a fallback's detour included); nil for a shadow. Written as `total_ms`.
    public var totalMilliseconds: Double?
    /// An LLM answer's time to first token (SPEC §14), from asking the version to the event that
    /// carried its first token, in milliseconds; set by the sidecar, written as `ttft_ms`.
    public var firstTokenMilliseconds: Double?
    /// The body's output at one pointer, once `prepareOutput(at:)` has worked it out. Every
    /// comparison of this side (or of a copy of it) reads it there instead of parsing the body
    /// again: the live side of a request is parsed once however many shadows it is compared with.
    fileprivate var outputCache = OutputCache()

    public init(version: String, status: Int, body: [UInt8], latencyMilliseconds: Double) {
        self.init(version: version, status: status, body: .bytes(body), latencyMilliseconds: latencyMilliseconds)
    }

    public init(version: String, status: Int, json: JSON, latencyMilliseconds: Double) {
        self.init(version: version, status: status, body: .json(json), latencyMilliseconds: latencyMilliseconds)
    }

    public init(
        version: String,
        status: Int,
        body: Body,
        latencyMilliseconds: Double,
        totalMilliseconds: Double? = nil,
        firstTokenMilliseconds: Double? = nil
    ) {
        self.version = version
        self.status = status
        self.body = body
        self.latencyMilliseconds = latencyMilliseconds
        self.totalMilliseconds = totalMilliseconds
        self.firstTokenMilliseconds = firstTokenMilliseconds
    }

    /// Whether the status is 2xx.
    public var isSuccess: Bool { (200...299).contains(status) }

    /// Works out the body's output at `pointer` (parsing the body, unless it is JSON already) and
    /// keeps it in this value, so that `compare` and `compareSummary` with a spec of the same
    /// pointer read it instead of parsing again. A side compared with several shadows is prepared
    /// once and the prepared value handed to each comparison. Setting `body` afterwards is a
    /// mistake the cache does not notice: prepare the side once it is complete.
    public mutating func prepareOutput(at pointer: JSONPointer) {
        if let prepared = outputCache.prepared, prepared.pointer == pointer { return }
        outputCache.prepared = PreparedOutput(pointer: pointer, result: parsedOutput(of: self, pointer: pointer))
    }

    /// Whether `prepareOutput(at:)` has kept this side's output at `pointer`.
    public func hasPreparedOutput(at pointer: JSONPointer) -> Bool { outputCache.prepared?.pointer == pointer }
}

/// A side's output at a pointer, or why it has none. A class, so that `ResponseSide` grows by one
/// reference and its copies (several per comparison) stay as cheap as before; never changed once
/// made, so it is `Sendable` as it is.
private final class PreparedOutput: Sendable {
    let pointer: JSONPointer
    let result: Result<JSON, OutputFailure>

    init(pointer: JSONPointer, result: Result<JSON, OutputFailure>) {
        self.pointer = pointer
        self.result = result
    }
}

/// Where `ResponseSide` keeps its prepared output: derived from the other fields, so it takes no
/// part in equality or hashing (a prepared side equals the same side unprepared).
private struct OutputCache: Sendable, Hashable {
    var prepared: PreparedOutput?

    static func == (lhs: OutputCache, rhs: OutputCache) -> Bool { true }
    func hash(into hasher: inout Hasher) {}
}

#if DEBUG
/// How many times each response body has been parsed for a comparison, in debug builds only:
/// lets a test see that a live answer compared with several shadows was parsed once. Keyed
/// by the body's bytes, so tests that run at the same time keep apart by using bodies of
/// their own.
public enum ComparisonParseCounter {
    nonisolated(unsafe) private static var counts: [[UInt8]: Int] = [:]
    private static let lock = NSLock()

    /// How many times `body` has been parsed by `compare`/`compareSummary`/`prepareOutput`.
    public static func parses(of body: [UInt8]) -> Int {
        lock.withLock { counts[body] ?? 0 }
    }

    static func count(_ body: [UInt8]) {
        lock.withLock { counts[body, default: 0] += 1 }
    }
}
#endif

/// The result of comparing a shadow response with the live one.
public struct Comparison: Sendable, Hashable {
    public enum Outcome: String, Sendable, Hashable, CaseIterable {
        /// Same shape (or a `[p0, p1]` pair against `p`) and every number within tolerance.
        case match
        /// A number out of tolerance, a different non-numeric value, or a different shape.
        case mismatch
        /// Either side failed: non-2xx, a body that is not JSON, or no output at the pointer.
        case error
    }

    public var outcome: Outcome
    /// The largest `|live - shadow|` over every compared number; 0 when no number was compared;
    /// nil for an error or a shape difference.
    public var maxAbsDiff: Double?
    /// The mean of `|live - shadow|` over every compared number; nil like `maxAbsDiff`.
    public var meanAbsDiff: Double?
    /// How many number pairs were compared.
    public var comparedNumbers: Int
    /// Whether some row has a different label on each side (only when both sides have labels
    /// for the same number of rows).
    public var flip: Bool
    /// One class per row of the live output; nil when it is not a classifier output.
    public var liveLabels: [Int]?
    public var shadowLabels: [Int]?
    /// Rows in the live output (the elements of an array output; 1 for any other value); 0
    /// when the live side failed.
    public var rows: Int
    /// The extracted outputs; nil for a side that failed.
    public var liveOutput: JSON?
    public var shadowOutput: JSON?
    /// Why the outcome is `error` (e.g. `shadow status 500`), or where a shape differs
    /// (e.g. `shape differs at /2: live has 3 elements, shadow 2`); nil otherwise.
    public var reason: String?
    /// Whether each side failed; for an `error` outcome, at least one is true.
    public var liveFailed: Bool
    public var shadowFailed: Bool
    /// The text comparison of two OpenAI-compatible answers (`compareLLM`); nil for other
    /// comparisons and for an LLM comparison whose outcome is `error`.
    public var text: TextComparison?
    /// Each side's parsed answer in an LLM comparison (nil for a side that failed, and for other
    /// comparisons): what the log record writes, an `error` outcome included.
    public var liveAnswer: LLMAnswer?
    public var shadowAnswer: LLMAnswer?
    /// Whether this compared two OpenAI-compatible answers (`compareLLM`).
    public var isLLM = false

    public init(
        outcome: Outcome,
        maxAbsDiff: Double?,
        meanAbsDiff: Double?,
        comparedNumbers: Int,
        flip: Bool,
        liveLabels: [Int]?,
        shadowLabels: [Int]?,
        rows: Int,
        liveOutput: JSON?,
        shadowOutput: JSON?,
        reason: String?,
        liveFailed: Bool,
        shadowFailed: Bool
    ) {
        self.outcome = outcome
        self.maxAbsDiff = maxAbsDiff
        self.meanAbsDiff = meanAbsDiff
        self.comparedNumbers = comparedNumbers
        self.flip = flip
        self.liveLabels = liveLabels
        self.shadowLabels = shadowLabels
        self.rows = rows
        self.liveOutput = liveOutput
        self.shadowOutput = shadowOutput
        self.reason = reason
        self.liveFailed = liveFailed
        self.shadowFailed = shadowFailed
    }

    /// A comparison of no numbers and no labels (event streams compared by their bytes, LLM
    /// answers compared as texts, a side that failed): `absDiff` is both the max and the mean
    /// difference, when there is one.
    public init(
        outcome: Outcome,
        reason: String?,
        liveFailed: Bool,
        shadowFailed: Bool,
        absDiff: Double? = nil,
        rows: Int = 0
    ) {
        self.init(
            outcome: outcome,
            maxAbsDiff: absDiff,
            meanAbsDiff: absDiff,
            comparedNumbers: 0,
            flip: false,
            liveLabels: nil,
            shadowLabels: nil,
            rows: rows,
            liveOutput: nil,
            shadowOutput: nil,
            reason: reason,
            liveFailed: liveFailed,
            shadowFailed: shadowFailed
        )
    }
}

/// Compares a shadow response with the live one (SPEC §9 "Comparisons", "Shapes in comparisons").
///
/// Both outputs are extracted with `OutputExtraction`, then walked together element by
/// element. Where one side has a two-number array `[p0, p1]` and the other a number `p` (or a
/// one-number array `[p]`), `p1` is compared with `p`; a one-number array `[p]` also compares
/// with `p`. These rules apply inside rows, not to the row count: when both outputs are arrays
/// they must have the same number of rows. Any other difference of shape or of kind is a
/// `mismatch` with no difference value. Non-numeric values (strings, booleans, null) must be
/// equal. Labels: see `Labels.rowLabels`.
public func compare(live: ResponseSide, shadow: ResponseSide, spec: ComparisonSpec) -> Comparison {
    let liveOutcome = output(of: live, pointer: spec.pointer)
    // Byte-identical bodies of two 2xx sides have the same output: the shadow's is not parsed.
    let shadowOutcome =
        live.isSuccess && shadow.isSuccess && haveIdenticalBytes(live, shadow)
        ? liveOutcome : output(of: shadow, pointer: spec.pointer)
    let liveResult = describe(liveOutcome, role: "live", pointer: spec.pointer)
    let shadowResult = describe(shadowOutcome, role: "shadow", pointer: spec.pointer)
    let liveOutput = liveResult.output
    let shadowOutput = shadowResult.output
    let liveLabels = liveOutput.flatMap { Labels.rowLabels(of: $0, threshold: spec.threshold) }
    let shadowLabels = shadowOutput.flatMap { Labels.rowLabels(of: $0, threshold: spec.threshold) }
    let rows = liveOutput.map(Labels.rowCount(of:)) ?? 0

    guard let liveOutput, let shadowOutput else {
        let reason = [liveResult.failure, shadowResult.failure].compactMap { $0 }.joined(separator: "; ")
        return Comparison(
            outcome: .error,
            maxAbsDiff: nil,
            meanAbsDiff: nil,
            comparedNumbers: 0,
            flip: false,
            liveLabels: liveLabels,
            shadowLabels: shadowLabels,
            rows: rows,
            liveOutput: liveOutput,
            shadowOutput: shadowOutput,
            reason: reason,
            liveFailed: liveResult.failure != nil,
            shadowFailed: shadowResult.failure != nil
        )
    }

    var walk = OutputWalk(tolerance: spec.tolerance)
    walk.compare(liveOutput, shadowOutput, depth: 0)
    var flip = false
    if let liveLabels, let shadowLabels, liveLabels.count == shadowLabels.count {
        flip = zip(liveLabels, shadowLabels).contains { $0 != $1 }
    }
    let outcome: Comparison.Outcome = walk.shapeDifference == nil && walk.allAgree ? .match : .mismatch
    let hasDiff = walk.shapeDifference == nil
    return Comparison(
        outcome: outcome,
        maxAbsDiff: hasDiff ? walk.maxAbsDiff : nil,
        meanAbsDiff: hasDiff ? (walk.compared == 0 ? 0 : walk.sumAbsDiff / Double(walk.compared)) : nil,
        comparedNumbers: walk.compared,
        flip: flip,
        liveLabels: liveLabels,
        shadowLabels: shadowLabels,
        rows: rows,
        liveOutput: liveOutput,
        shadowOutput: shadowOutput,
        reason: walk.shapeDifference,
        liveFailed: false,
        shadowFailed: false
    )
}

/// What a comparison's metrics read: `compare(live:shadow:spec:)`'s outcome, flip and largest
/// difference, without the outputs, labels, row count or reason text the log record needs.
public struct ComparisonSummary: Sendable, Hashable {
    public var outcome: Comparison.Outcome
    public var flip: Bool
    public var maxAbsDiff: Double?

    public init(outcome: Comparison.Outcome, flip: Bool, maxAbsDiff: Double?) {
        self.outcome = outcome
        self.flip = flip
        self.maxAbsDiff = maxAbsDiff
    }

    /// The summary of a full comparison.
    public init(_ comparison: Comparison) {
        self.init(outcome: comparison.outcome, flip: comparison.flip, maxAbsDiff: comparison.maxAbsDiff)
    }
}

/// `ComparisonSummary(compare(live:shadow:spec:))`, for a caller that keeps no record: labels are
/// worked out only to find a flip, no failure text is built, and two byte-identical bodies are
/// parsed once (their outputs and labels are the same, so there is no flip).
public func compareSummary(live: ResponseSide, shadow: ResponseSide, spec: ComparisonSpec) -> ComparisonSummary {
    let error = ComparisonSummary(outcome: .error, flip: false, maxAbsDiff: nil)
    guard live.isSuccess, shadow.isSuccess else { return error }
    guard case .success(let liveOutput) = output(of: live, pointer: spec.pointer) else { return error }
    var walk = OutputWalk(tolerance: spec.tolerance, describesDifferences: false)
    if haveIdenticalBytes(live, shadow) {
        // One output on both sides: the same labels, so no flip.
        walk.compare(liveOutput, liveOutput, depth: 0)
        let hasDiff = walk.shapeDifference == nil
        return ComparisonSummary(
            outcome: hasDiff && walk.allAgree ? .match : .mismatch,
            flip: false,
            maxAbsDiff: hasDiff ? walk.maxAbsDiff : nil
        )
    }
    guard case .success(let shadowOutput) = output(of: shadow, pointer: spec.pointer) else { return error }
    walk.compare(liveOutput, shadowOutput, depth: 0)
    var flip = false
    if let liveLabels = Labels.rowLabels(of: liveOutput, threshold: spec.threshold),
        let shadowLabels = Labels.rowLabels(of: shadowOutput, threshold: spec.threshold),
        liveLabels.count == shadowLabels.count
    {
        flip = zip(liveLabels, shadowLabels).contains { $0 != $1 }
    }
    let hasDiff = walk.shapeDifference == nil
    return ComparisonSummary(
        outcome: hasDiff && walk.allAgree ? .match : .mismatch,
        flip: flip,
        maxAbsDiff: hasDiff ? walk.maxAbsDiff : nil
    )
}

/// Why a side has no output to compare.
private enum OutputFailure: Error, Sendable {
    case status(Int)
    case notJSON(JSONError)
    case noOutput
}

/// Whether both bodies are the same bytes (then they have the same output).
private func haveIdenticalBytes(_ live: ResponseSide, _ shadow: ResponseSide) -> Bool {
    guard case .bytes(let liveBytes) = live.body, case .bytes(let shadowBytes) = shadow.body else { return false }
    return liveBytes == shadowBytes
}

/// The output at `pointer` of one side: the one `prepareOutput(at:)` kept, else worked out now.
private func output(of side: ResponseSide, pointer: JSONPointer) -> Result<JSON, OutputFailure> {
    if let prepared = side.outputCache.prepared, prepared.pointer == pointer { return prepared.result }
    return parsedOutput(of: side, pointer: pointer)
}

/// The output at `pointer` of one side: its body parsed (unless it already is JSON) and read at
/// the pointer; a non-2xx side has none.
private func parsedOutput(of side: ResponseSide, pointer: JSONPointer) -> Result<JSON, OutputFailure> {
    guard side.isSuccess else { return .failure(.status(side.status)) }
    let body: JSON
    switch side.body {
    case .json(let json): body = json
    case .bytes(let bytes):
        #if DEBUG
        ComparisonParseCounter.count(bytes)
        #endif
        do {
            body = try JSONParser.parse(bytes)
        } catch {
            return .failure(.notJSON(error))
        }
    }
    guard let output = OutputExtraction.output(of: body, at: pointer) else { return .failure(.noOutput) }
    return .success(output)
}

/// A side's output, with the failure said for the log record (`role` is live or shadow).
private func describe(
    _ outcome: Result<JSON, OutputFailure>,
    role: String,
    pointer: JSONPointer
) -> (
    output: JSON?, failure: String?
) {
    switch outcome {
    case .success(let output): return (output, nil)
    case .failure(.status(let status)): return (nil, "\(role) status \(status)")
    case .failure(.notJSON(let error)): return (nil, "\(role) body is not JSON: \(error)")
    case .failure(.noOutput): return (nil, "\(role) response has no output at '\(pointer)'")
    }
}

/// Walks two outputs together, collecting differences.
private struct OutputWalk {
    /// One step of the pointer to where the walk is; turned into text only for a difference.
    enum Step {
        case index(Int)
        case key(String)
    }

    let tolerance: Double
    /// Whether `shapeDifference` says what differs and where; when false it is empty text, and
    /// the walk keeps no path.
    let describesDifferences: Bool
    var maxAbsDiff = 0.0
    var sumAbsDiff = 0.0
    var compared = 0
    var allAgree = true
    /// The first difference of shape or kind, with its pointer; the walk stops there.
    var shapeDifference: String?
    private var steps: [Step] = []

    init(tolerance: Double, describesDifferences: Bool = true) {
        self.tolerance = tolerance
        self.describesDifferences = describesDifferences
    }

    /// The JSON pointer to where the walk is, e.g. `/0/probabilities`.
    private var path: String {
        var text = ""
        for step in steps {
            switch step {
            case .index(let index): text += "/\(index)"
            case .key(let key): text += "/" + escape(key)
            }
        }
        return text
    }

    mutating func compare(_ live: JSON, _ shadow: JSON, depth: Int) {
        guard shapeDifference == nil else { return }
        switch (live, shadow) {
        case (.number(let left), .number(let right)):
            let difference = abs(left - right)
            maxAbsDiff = max(maxAbsDiff, difference)
            sumAbsDiff += difference
            compared += 1
            if !(difference <= tolerance) { allAgree = false }
        case (.array(let left), .array(let right)):
            if left.count == right.count {
                for index in left.indices {
                    if describesDifferences { steps.append(.index(index)) }
                    compare(left[index], right[index], depth: depth + 1)
                    if describesDifferences { steps.removeLast() }
                }
            } else if depth > 0, let (l, r) = probabilityPair(live, shadow) {
                compare(l, r, depth: depth + 1)
            } else {
                let what = depth == 0 ? "rows" : "elements"
                shapeDifference =
                    describesDifferences
                    ? "shape differs at '\(path)': live has \(left.count) \(what), shadow \(right.count)" : ""
            }
        case (.array, .number), (.number, .array):
            if let (l, r) = probabilityPair(live, shadow) {
                compare(l, r, depth: depth + 1)
            } else {
                shapeDifference =
                    describesDifferences
                    ? "shape differs at '\(path)': live has \(describe(live)), shadow \(describe(shadow))" : ""
            }
        case (.object(let left), .object(let right)):
            for member in left.members {
                guard let other = right[member.key] else {
                    shapeDifference =
                        describesDifferences ? "shape differs at '\(path)': shadow has no member '\(member.key)'" : ""
                    return
                }
                if describesDifferences { steps.append(.key(member.key)) }
                compare(member.value, other, depth: depth + 1)
                if describesDifferences { steps.removeLast() }
            }
            if shapeDifference == nil, let extra = right.members.first(where: { left[$0.key] == nil }) {
                shapeDifference =
                    describesDifferences ? "shape differs at '\(path)': live has no member '\(extra.key)'" : ""
            }
        case (.string, .string), (.bool, .bool), (.null, .null):
            if live != shadow { allAgree = false }
        default:
            shapeDifference =
                describesDifferences
                ? "shape differs at '\(path)': live has \(describe(live)), shadow \(describe(shadow))" : ""
        }
    }

    /// `([p0, p1], p)` → `(p1, p)`; `([p], p)` → `(p, p)`; `([p0, p1], [p])` → `(p1, p)`; and
    /// the mirror images. Nil for anything else.
    private func probabilityPair(_ live: JSON, _ shadow: JSON) -> (JSON, JSON)? {
        guard let left = singleProbability(live), let right = singleProbability(shadow) else { return nil }
        return (left, right)
    }

    private func singleProbability(_ value: JSON) -> JSON? {
        switch value {
        case .number: return value
        case .array(let elements) where elements.count == 1 && elements[0].doubleValue != nil: return elements[0]
        case .array(let elements) where elements.count == 2 && elements.allSatisfy({ $0.doubleValue != nil }):
            return elements[1]
        default: return nil
        }
    }

    private func describe(_ value: JSON) -> String {
        if case .array(let elements) = value { return "\(elements.count) elements" }
        return value.kindDescription
    }

    private func escape(_ key: String) -> String { JSONPointer(tokens: [key]).description.dropFirst().description }
}

/// Class labels of classifier outputs.
public enum Labels {
    /// Rows of an output: the elements of an array, or the value itself as one row.
    public static func rowCount(of output: JSON) -> Int {
        if case .array(let rows) = output { return rows.count }
        return 1
    }

    /// One class per row, or nil when some row has no label (or there are no rows).
    ///
    /// A row that is a number `p` or a one-number array `[p]` is a single probability: class 1
    /// when `p >= threshold`, else 0, and no label without a threshold. A two-number row
    /// `[p0, p1]` is labelled like `p1` when there is a threshold (so that it agrees with a
    /// single-probability side), else by argmax. A row of three or more numbers is labelled by
    /// argmax (the first index of the largest value). Anything else has no label, so
    /// regression outputs without a threshold, and class-index outputs, carry no labels.
    /// An output that is not an array is one row.
    public static func rowLabels(of output: JSON, threshold: Double?) -> [Int]? {
        let rows: [JSON]
        if case .array(let elements) = output { rows = elements } else { rows = [output] }
        guard !rows.isEmpty else { return nil }
        var labels: [Int] = []
        labels.reserveCapacity(rows.count)
        for row in rows {
            guard let label = label(of: row, threshold: threshold) else { return nil }
            labels.append(label)
        }
        return labels
    }

    static func label(of row: JSON, threshold: Double?) -> Int? {
        switch row {
        case .number(let probability):
            guard let threshold else { return nil }
            return probability >= threshold ? 1 : 0
        case .array(let elements):
            // One pass, no copy: the count, the first two values and the first index of the largest.
            guard !elements.isEmpty else { return nil }
            var first = 0.0
            var second = 0.0
            var best = 0
            var bestValue = -Double.infinity
            for (index, element) in elements.enumerated() {
                guard let value = element.doubleValue else { return nil }
                if index == 0 { first = value } else if index == 1 { second = value }
                if index == 0 || value > bestValue {
                    best = index
                    bestValue = value
                }
            }
            switch elements.count {
            case 1:
                guard let threshold else { return nil }
                return first >= threshold ? 1 : 0
            case 2 where threshold != nil:
                return second >= threshold! ? 1 : 0
            default:
                return best
            }
        default:
            return nil
        }
    }
}
