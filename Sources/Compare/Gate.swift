import Models

/// A `--fail-if` condition such as `agreement<0.995`: the report fails when, for some pair
/// (noise pairs excepted) with enough data, `metric op number` holds.
public struct Gate: Sendable, Hashable, CustomStringConvertible {
    public enum Metric: String, Sendable, Hashable, CaseIterable {
        /// Agreement rate, 0…1.
        case agreement
        /// The lower / upper bound of agreement's 95 % Wilson interval: `agreement_low<0.99`
        /// fails unless the data show agreement above 0.99 with 95 % confidence.
        case agreementLow = "agreement_low"
        case agreementHigh = "agreement_high"
        /// Class-flip rate, 0…1.
        case churn
        /// The bounds of churn's 95 % Wilson interval: `churn_high>0.01` fails unless the data
        /// show churn below 1 % with 95 % confidence.
        case churnLow = "churn_low"
        case churnHigh = "churn_high"
        /// Churn less the noise pair's churn, floored at 0 (the churn itself without a noise pair).
        case netChurn = "net_churn"
        /// Shadow error rate (shadow errors / requests), 0…1.
        case errors
        case p99AbsDiff = "p99_abs_diff"
        case maxAbsDiff = "max_abs_diff"
        /// Shadow p99 latency minus live p99 latency, in milliseconds.
        case latencyP99DeltaMilliseconds = "latency_p99_delta_ms"
        /// An openai pair's 10th percentile of per-request similarity (token F1; cosine for
        /// embeddings): `similarity_p10<0.8` fails when more than a tenth of answers stray.
        case similarityP10 = "similarity_p10"
        /// An openai pair's share of answers equal after normalization (NFC, case folding,
        /// white space), 0…1.
        case normalizedAgreement = "normalized_agreement"
    }

    public enum Operator: String, Sendable, Hashable, CaseIterable {
        case less = "<"
        case lessOrEqual = "<="
        case greater = ">"
        case greaterOrEqual = ">="

        func holds(_ value: Double, _ threshold: Double) -> Bool {
            switch self {
            case .less: value < threshold
            case .lessOrEqual: value <= threshold
            case .greater: value > threshold
            case .greaterOrEqual: value >= threshold
            }
        }
    }

    public var metric: Metric
    public var op: Operator
    public var threshold: Double

    public init(metric: Metric, op: Operator, threshold: Double) {
        self.metric = metric
        self.op = op
        self.threshold = threshold
    }

    /// `agreement<0.995`.
    public var description: String { "\(metric.rawValue)\(op.rawValue)\(JSON.numberText(threshold))" }

    /// Parses `metric op number` conditions separated by commas; spaces are allowed around
    /// each part. Throws a `GateError` saying what was expected.
    public static func parse(_ text: String) throws(GateError) -> [Gate] {
        var gates: [Gate] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            gates.append(try parseOne(String(part), in: text))
        }
        return gates
    }

    private static func parseOne(_ part: String, in text: String) throws(GateError) -> Gate {
        let condition = part.trimmingSpaces()
        guard !condition.isEmpty else {
            throw GateError(text: text, message: "empty condition; expected 'metric op number', e.g. 'agreement<0.995'")
        }
        guard let opStart = condition.firstIndex(where: { $0 == "<" || $0 == ">" }) else {
            throw GateError(
                text: text,
                message: "'\(condition)' has no comparison; expected 'metric op number' with op one of < <= > >="
            )
        }
        let name = String(condition[..<opStart]).trimmingSpaces()
        var rest = condition[opStart...]
        var opText = String(rest.removeFirst())
        if rest.first == "=" { opText += String(rest.removeFirst()) }
        let numberText = String(rest).trimmingSpaces()
        guard let metric = Metric(rawValue: name) else {
            throw GateError(
                text: text,
                message: "unknown metric '\(name)'; expected one of "
                    + Metric.allCases.map(\.rawValue).joined(separator: ", ")
            )
        }
        let op = Operator(rawValue: opText)!
        guard let threshold = Double(numberText), threshold.isFinite,
            numberText.allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" || $0 == "+" || $0 == "e" || $0 == "E" })
        else {
            throw GateError(text: text, message: "'\(numberText)' after '\(name)\(opText)' is not a number")
        }
        return Gate(metric: metric, op: op, threshold: threshold)
    }

    /// The metric's value for a pair; nil when it is unknown (no compared record, no labels,
    /// no latencies).
    public func value(for pair: PairSummary) -> Double? {
        switch metric {
        case .agreement: pair.agreement?.rate
        case .agreementLow: pair.agreement?.low
        case .agreementHigh: pair.agreement?.high
        case .churn: pair.churn?.rate
        case .churnLow: pair.churn?.low
        case .churnHigh: pair.churn?.high
        case .netChurn: pair.netChurn
        case .errors: pair.requests == 0 ? nil : pair.shadowErrorRate
        case .p99AbsDiff: pair.absDiff?.p99
        case .maxAbsDiff: pair.absDiff?.max
        case .latencyP99DeltaMilliseconds: pair.latencyP99DeltaMilliseconds
        case .similarityP10: pair.text?.similarity?.p10
        case .normalizedAgreement: pair.text?.normalized?.rate
        }
    }

    /// Checks every gate on every pair but noise pairs. A pair with fewer compared requests
    /// than the report's `minRequests` is not checked: it is listed in `insufficient`, neither
    /// passing nor failing, and so is a report with no pair to check when there are gates. A
    /// gate whose metric is unknown for a pair with enough data (churn of a regression model,
    /// say) fails it: a CI gate must not pass on no evidence.
    public static func evaluate(_ gates: [Gate], on report: Report) -> GateEvaluation {
        guard !gates.isEmpty else { return GateEvaluation() }
        var evaluation = GateEvaluation()
        let checked = report.pairs.filter { !$0.key.isNoiseFloor }
        guard !checked.isEmpty else {
            evaluation.insufficient.append(
                InsufficientData(pair: nil, compared: 0, message: "no comparison pair to check the gates on")
            )
            return evaluation
        }
        for pair in checked {
            if pair.insufficientData {
                evaluation.insufficient.append(
                    InsufficientData(
                        pair: pair.key,
                        compared: pair.compared,
                        message: "\(pair.key): \(pair.compared) compared request\(pair.compared == 1 ? "" : "s"), "
                            + "fewer than --min-requests \(report.minRequests); its gates neither pass nor fail"
                    )
                )
                continue
            }
            for gate in gates {
                guard let value = gate.value(for: pair) else {
                    evaluation.failures.append(
                        GateFailure(
                            gate: gate,
                            pair: pair.key,
                            value: nil,
                            message:
                                "\(pair.key): \(gate.metric.rawValue) unknown (\(gate.unknownReason)), gate \(gate)"
                        )
                    )
                    continue
                }
                if gate.op.holds(value, gate.threshold) {
                    evaluation.failures.append(
                        GateFailure(
                            gate: gate,
                            pair: pair.key,
                            value: value,
                            message: "\(pair.key): \(gate.metric.rawValue) "
                                + "\(Format.gateValue(value, against: gate.threshold)) \(gate.op.rawValue) "
                                + JSON.numberText(gate.threshold)
                        )
                    )
                }
            }
        }
        return evaluation
    }

    private var unknownReason: String {
        switch metric {
        case .agreement, .agreementLow, .agreementHigh, .p99AbsDiff, .maxAbsDiff: "no compared request"
        case .churn, .churnLow, .churnHigh, .netChurn: "no labelled comparison"
        case .errors, .latencyP99DeltaMilliseconds: "no request"
        case .similarityP10: "no compared LLM answer"
        case .normalizedAgreement: "no compared LLM text"
        }
    }
}

/// What the gates found: failures, and pairs with too little data to judge.
public struct GateEvaluation: Sendable, Hashable {
    public var failures: [GateFailure] = []
    public var insufficient: [InsufficientData] = []

    public init() {}

    /// Every gate held on every pair with enough data, and no pair lacked data.
    public var passed: Bool { failures.isEmpty && insufficient.isEmpty }
}

/// A pair whose gates were not checked for lack of data, e.g. `churn/v1→v2: 42 compared
/// requests, fewer than --min-requests 100; its gates neither pass nor fail`.
public struct InsufficientData: Sendable, Hashable, CustomStringConvertible {
    /// Nil when there was no pair at all.
    public var pair: PairKey?
    public var compared: Int
    public var message: String
    public var description: String { message }
}

/// A gate that failed for a pair, e.g. `churn/v1→v2: agreement 0.9871 < 0.995`.
public struct GateFailure: Sendable, Hashable, CustomStringConvertible {
    public var gate: Gate
    public var pair: PairKey
    /// The metric's value; nil when unknown.
    public var value: Double?
    public var message: String
    public var description: String { message }
}

/// A `--fail-if` text that does not parse.
public struct GateError: Error, Sendable, Hashable, CustomStringConvertible {
    public var text: String
    public var message: String
    public var description: String { "invalid --fail-if '\(text)': \(message)" }
}

extension JSON {
    /// A number as JSON writes it: `0.995`, `5`.
    static func numberText(_ value: Double) -> String { JSON.number(value).description }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var text = Substring(self)
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return String(text)
    }
}
