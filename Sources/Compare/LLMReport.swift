import Models

/// Counts and samples of an openai pair's LLM records (SPEC §14), added one at a time.
public struct TextAccumulator: Sendable, Hashable {
    /// Text records compared (not `error`, not embeddings), and those exact / normalized-equal.
    public private(set) var textCompared = 0
    public private(set) var exact = 0
    public private(set) var normalized = 0
    /// Compared records with a `finish_reason_agrees`, and those agreeing.
    public private(set) var finishReasonCompared = 0
    public private(set) var finishReasonAgreements = 0
    /// Each compared record's similarity (cosine for embeddings), in reading order.
    public private(set) var similarities: [Double] = []
    /// Token totals per side, over every record whose side carries `usage`.
    public private(set) var livePromptTokens = 0
    public private(set) var liveCompletionTokens = 0
    public private(set) var shadowPromptTokens = 0
    public private(set) var shadowCompletionTokens = 0
    /// `ttft_ms` of the records whose side carries one.
    public private(set) var liveFirstTokens: [Double] = []
    public private(set) var shadowFirstTokens: [Double] = []
    /// Some record compared embeddings.
    public private(set) var hasEmbeddings = false

    public init() {}

    /// Adds one LLM record (an `error` outcome adds its tokens and times, not its figures).
    public mutating func add(_ record: ComparisonRecord) {
        if let live = record.live.llm {
            livePromptTokens += live.promptTokens ?? 0
            liveCompletionTokens += live.completionTokens ?? 0
        }
        if let shadow = record.shadow.llm {
            shadowPromptTokens += shadow.promptTokens ?? 0
            shadowCompletionTokens += shadow.completionTokens ?? 0
        }
        if let ttft = record.live.firstTokenMilliseconds { liveFirstTokens.append(ttft) }
        if let ttft = record.shadow.firstTokenMilliseconds { shadowFirstTokens.append(ttft) }
        guard record.outcome != .error, let text = record.text else { return }
        if text.similarity.isFinite { similarities.append(text.similarity) }
        if text.isEmbedding {
            hasEmbeddings = true
            return
        }
        if let isExact = text.exact, let isNormalized = text.normalized {
            textCompared += 1
            if isExact { exact += 1 }
            if isNormalized { normalized += 1 }
        }
        if let agrees = text.finishReasonAgrees {
            finishReasonCompared += 1
            if agrees { finishReasonAgreements += 1 }
        }
    }

    func adding(_ record: ComparisonRecord) -> TextAccumulator {
        var copy = self
        copy.add(record)
        return copy
    }
}

/// What the report says about an openai pair's answers (SPEC §14 "Report").
public struct TextSummary: Sendable, Hashable {
    /// Exact and normalized text agreement with 95 % Wilson intervals; nil without a compared
    /// text (an embeddings-only pair).
    public var exact: Proportion?
    public var normalized: Proportion?
    /// Of the per-request similarity (token F1; cosine for embeddings); nil without a compared
    /// record.
    public var similarity: SimilarityDistribution?
    /// Share of compared texts whose `finish_reason`s agree; nil without a compared text.
    public var finishReasonAgreement: Proportion?
    /// Token totals per side.
    public var livePromptTokens: Int
    public var liveCompletionTokens: Int
    public var shadowPromptTokens: Int
    public var shadowCompletionTokens: Int
    /// Of `ttft_ms` per side; nil when no record carries it.
    public var liveFirstToken: Distribution?
    public var shadowFirstToken: Distribution?
    public var hasEmbeddings: Bool
    /// Sorted similarities, for the histogram.
    public var similarities: [Double]

    public init(_ accumulator: TextAccumulator) {
        exact = Proportion(successes: accumulator.exact, trials: accumulator.textCompared)
        normalized = Proportion(successes: accumulator.normalized, trials: accumulator.textCompared)
        similarities = accumulator.similarities.sorted()
        similarity = SimilarityDistribution(sorted: similarities)
        finishReasonAgreement = Proportion(
            successes: accumulator.finishReasonAgreements,
            trials: accumulator.finishReasonCompared
        )
        livePromptTokens = accumulator.livePromptTokens
        liveCompletionTokens = accumulator.liveCompletionTokens
        shadowPromptTokens = accumulator.shadowPromptTokens
        shadowCompletionTokens = accumulator.shadowCompletionTokens
        liveFirstToken = Distribution(accumulator.liveFirstTokens)
        shadowFirstToken = Distribution(accumulator.shadowFirstTokens)
        hasEmbeddings = accumulator.hasEmbeddings
    }
}

/// Mean, 10th percentile and median of per-request similarities: a candidate that agrees on
/// most answers but strays on a tenth of them shows in p10, not in the mean.
public struct SimilarityDistribution: Sendable, Hashable {
    public var count: Int
    public var mean: Double
    public var p10: Double
    public var p50: Double

    /// Nil when `sorted` is empty. `sorted` must be ascending.
    public init?(sorted: [Double]) {
        guard let mean = Statistics.mean(sorted) else { return nil }
        count = sorted.count
        self.mean = mean
        p10 = Statistics.quantile(sorted: sorted, 0.1)!
        p50 = Statistics.quantile(sorted: sorted, 0.5)!
    }
}

extension TextSummary {
    /// SPEC §14's `"text"` object of the JSON report.
    var json: JSON {
        func number(_ value: Double?) -> JSON { value.map { .number(Format.significant($0)) } ?? .null }
        func proportion(_ value: Proportion?) -> JSON {
            ["rate": number(value?.rate), "low": number(value?.low), "high": number(value?.high)]
        }
        func tokens(prompt: Int, completion: Int) -> JSON {
            ["prompt": .number(Double(prompt)), "completion": .number(Double(completion))]
        }
        return [
            "exact": proportion(exact),
            "normalized": proportion(normalized),
            "similarity": [
                "mean": number(similarity?.mean), "p10": number(similarity?.p10), "p50": number(similarity?.p50),
            ],
            "finish_reason_agreement": number(finishReasonAgreement?.rate),
            "tokens": [
                "live": tokens(prompt: livePromptTokens, completion: liveCompletionTokens),
                "shadow": tokens(prompt: shadowPromptTokens, completion: shadowCompletionTokens),
            ],
            "ttft_ms": [
                "live": ["p50": number(liveFirstToken?.p50), "p99": number(liveFirstToken?.p99)],
                "shadow": ["p50": number(shadowFirstToken?.p50), "p99": number(shadowFirstToken?.p99)],
            ],
        ]
    }
}

extension Report {
    /// The openai pairs' tables (nothing when there is none): text agreement and similarity;
    /// tokens and time to first token.
    var textTables: [TextTable] {
        let textPairs = pairs.filter { $0.text != nil }
        guard !textPairs.isEmpty else { return [] }
        var agreement = TextTable(
            title: "LLM answers: text agreement (95% Wilson intervals) and similarity",
            header: [
                "model", "live", "shadow", "exact", "95% CI", "normalized", "95% CI", "sim mean", "sim p10",
                "sim p50", "finish agrees",
            ],
            rightAligned: [false, false, false] + Array(repeating: true, count: 8)
        )
        var usage = TextTable(
            title: "LLM answers: tokens (totals) and time to first token (ms)",
            header: [
                "model", "live", "shadow", "live prompt", "live completion", "shadow prompt", "shadow completion",
                "live ttft p50", "live ttft p99", "shadow ttft p50", "shadow ttft p99",
            ],
            rightAligned: [false, false, false] + Array(repeating: true, count: 8)
        )
        for pair in textPairs {
            let text = pair.text!
            agreement.rows.append([
                pair.key.model, pair.key.liveVersion, pair.shadowLabel, Format.percent(text.exact?.rate),
                Format.interval(text.exact), Format.percent(text.normalized?.rate), Format.interval(text.normalized),
                Format.similarity(text.similarity?.mean), Format.similarity(text.similarity?.p10),
                Format.similarity(text.similarity?.p50), Format.percent(text.finishReasonAgreement?.rate),
            ])
            usage.rows.append([
                pair.key.model, pair.key.liveVersion, pair.shadowLabel, String(text.livePromptTokens),
                String(text.liveCompletionTokens), String(text.shadowPromptTokens),
                String(text.shadowCompletionTokens), Format.milliseconds(text.liveFirstToken?.p50),
                Format.milliseconds(text.liveFirstToken?.p99), Format.milliseconds(text.shadowFirstToken?.p50),
                Format.milliseconds(text.shadowFirstToken?.p99),
            ])
        }
        agreement.notes = [
            "exact: same text; normalized: same after NFC, case folding and collapsing white space; "
                + "sim: token-level F1 of the normalized texts (embeddings: lowest cosine)."
        ]
        return [agreement, usage]
    }
}
