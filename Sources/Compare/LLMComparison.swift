import Foundation
import Models

/// What SPEC §14 compares between two OpenAI-compatible answers.
public struct TextComparison: Sendable, Hashable {
    public var live: LLMAnswer
    public var shadow: LLMAnswer
    /// The texts are the same, scalar for scalar. Embeddings: the vectors are equal.
    public var exact: Bool
    /// The texts are the same after `TextSimilarity.normalized` (NFC, case folding, whitespace).
    /// Embeddings: as `exact`.
    public var normalized: Bool
    /// Token-level F1 of the normalized texts (`TextSimilarity.f1`), 0…1. Embeddings: the lowest
    /// cosine similarity over the vector pairs, −1…1 (0 when the counts or lengths differ).
    public var similarity: Double
    /// Both `finish_reason`s are equal (both absent counts as equal). Always true for embeddings.
    public var finishReasonAgrees: Bool
    /// The same tool call function names in the same order. Always true for embeddings.
    public var toolCallsAgree: Bool
    public var isEmbedding: Bool

    public init(
        live: LLMAnswer,
        shadow: LLMAnswer,
        exact: Bool,
        normalized: Bool,
        similarity: Double,
        finishReasonAgrees: Bool,
        toolCallsAgree: Bool,
        isEmbedding: Bool
    ) {
        self.live = live
        self.shadow = shadow
        self.exact = exact
        self.normalized = normalized
        self.similarity = similarity
        self.finishReasonAgrees = finishReasonAgrees
        self.toolCallsAgree = toolCallsAgree
        self.isEmbedding = isEmbedding
    }
}

/// The default `similarity_threshold` of embeddings (SPEC §14): a cosine of at least 0.99 matches.
public let defaultEmbeddingSimilarityThreshold = 0.99

/// SPEC §14's comparison of two OpenAI-compatible answers (pure; off the live path).
///
/// Either side non-2xx or not an answer (`LLMAnswer.parse`) → `error`, with a reason. Texts
/// match by `normalized` equality when `similarityThreshold` is nil, else when `similarity >=
/// similarityThreshold`; in both cases the tool call names must also agree in order. A
/// different `finish_reason` is recorded but does not make a mismatch. Embeddings match when
/// they have as many vectors of the same lengths and the lowest cosine is at least the
/// threshold (default `defaultEmbeddingSimilarityThreshold`); an embeddings answer against any
/// other answer is a mismatch. `maxAbsDiff` and `meanAbsDiff` are `1 - similarity`, which the
/// `switchyard_shadow_abs_diff` metric observes; `flip` is false.
public func compareLLM(live: ResponseSide, shadow: ResponseSide, similarityThreshold: Double?) -> Comparison {
    let liveResult = llmAnswer(of: live, role: "live")
    let shadowResult = llmAnswer(of: shadow, role: "shadow")
    guard let liveAnswer = liveResult.answer, let shadowAnswer = shadowResult.answer else {
        var comparison = Comparison(
            outcome: .error,
            reason: [liveResult.failure, shadowResult.failure].compactMap { $0 }.joined(separator: "; "),
            liveFailed: liveResult.failure != nil,
            shadowFailed: shadowResult.failure != nil
        )
        comparison.isLLM = true
        comparison.liveAnswer = liveResult.answer
        comparison.shadowAnswer = shadowResult.answer
        return comparison
    }

    let text: TextComparison
    let matched: Bool
    var reason: String?
    if liveAnswer.isEmbedding || shadowAnswer.isEmbedding {
        let cosine = TextSimilarity.lowestCosine(liveAnswer.embeddings ?? [], shadowAnswer.embeddings ?? [])
        let same = liveAnswer.embeddings == shadowAnswer.embeddings
        text = TextComparison(
            live: liveAnswer,
            shadow: shadowAnswer,
            exact: same,
            normalized: same,
            similarity: cosine.value,
            finishReasonAgrees: true,
            toolCallsAgree: true,
            isEmbedding: true
        )
        let threshold = similarityThreshold ?? defaultEmbeddingSimilarityThreshold
        matched = cosine.difference == nil && cosine.value >= threshold
        if let difference = cosine.difference {
            reason = difference
        } else if !matched {
            reason =
                "lowest cosine similarity \(JSON.numberText(Format.significant(cosine.value, 4))) "
                + "< \(JSON.numberText(threshold))"
        }
    } else {
        let liveNormalized = TextSimilarity.normalized(liveAnswer.text)
        let shadowNormalized = TextSimilarity.normalized(shadowAnswer.text)
        let similarity = TextSimilarity.f1(normalizedLive: liveNormalized, normalizedShadow: shadowNormalized)
        text = TextComparison(
            live: liveAnswer,
            shadow: shadowAnswer,
            exact: liveAnswer.text.unicodeScalars.elementsEqual(shadowAnswer.text.unicodeScalars),
            normalized: liveNormalized == shadowNormalized,
            similarity: similarity,
            finishReasonAgrees: liveAnswer.finishReason == shadowAnswer.finishReason,
            toolCallsAgree: liveAnswer.toolCalls == shadowAnswer.toolCalls,
            isEmbedding: false
        )
        let textsAgree = similarityThreshold.map { similarity >= $0 } ?? text.normalized
        matched = textsAgree && text.toolCallsAgree
        var reasons: [String] = []
        if !textsAgree {
            let shown = JSON.numberText(Format.significant(similarity, 4))
            reasons.append(
                similarityThreshold.map { "similarity \(shown) < \(JSON.numberText($0))" }
                    ?? "texts differ after normalization (similarity \(shown))"
            )
        }
        if !text.toolCallsAgree {
            reasons.append(
                "tool calls differ: live [\(liveAnswer.toolCalls.joined(separator: ", "))], "
                    + "shadow [\(shadowAnswer.toolCalls.joined(separator: ", "))]"
            )
        }
        reason = reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }
    var comparison = Comparison(
        outcome: matched ? .match : .mismatch,
        reason: reason,
        liveFailed: false,
        shadowFailed: false,
        absDiff: 1 - text.similarity,
        rows: 1
    )
    comparison.isLLM = true
    comparison.text = text
    comparison.liveAnswer = liveAnswer
    comparison.shadowAnswer = shadowAnswer
    return comparison
}

/// One side's answer, or why it has none (`role` is live or shadow).
private func llmAnswer(of side: ResponseSide, role: String) -> (answer: LLMAnswer?, failure: String?) {
    guard side.isSuccess else { return (nil, "\(role) status \(side.status)") }
    let answer: LLMAnswer? =
        switch side.body {
        case .bytes(let bytes): LLMAnswer.parse(bytes)
        case .json(let json): LLMAnswer.parse(json)
        }
    guard let answer else { return (nil, "\(role) body is not an OpenAI-compatible answer") }
    return (answer, nil)
}

/// The text measures of SPEC §14.
public enum TextSimilarity {
    /// Unicode NFC, then full case folding (Foundation's `folding(options: .caseInsensitive)`,
    /// which on Linux folds `ß` to `ss` and final sigma like other sigmas), then NFC again (a fold
    /// may decompose, as `İ` does); runs of white space collapsed to one space, and trimmed.
    ///
    /// Both steps act within a run of non-space characters (nothing composes or folds across
    /// white space), so the text is taken run by run between ASCII white space: an ASCII run is
    /// lower-cased byte by byte, and only runs with other characters go through Foundation, which
    /// costs about ten times more.
    public static func normalized(_ text: String) -> String {
        var text = text
        return text.withUTF8 { bytes in
            var output: [UInt8] = []
            output.reserveCapacity(bytes.count)
            var index = 0
            let count = bytes.count
            while index < count {
                if isASCIISpace(bytes[index]) {
                    index += 1
                    continue
                }
                let start = index
                var isASCII = true
                while index < count, !isASCIISpace(bytes[index]) {
                    if bytes[index] >= 0x80 { isASCII = false }
                    index += 1
                }
                if isASCII {
                    if !output.isEmpty { output.append(0x20) }
                    for byte in bytes[start..<index] {
                        output.append((0x41...0x5A).contains(byte) ? byte + 0x20 : byte)
                    }
                } else {
                    let run = foundationNormalized(
                        String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                    )
                    // A run of non-ASCII white space only (a no-break space) normalizes to nothing.
                    guard !run.isEmpty else { continue }
                    if !output.isEmpty { output.append(0x20) }
                    output.append(contentsOf: run.utf8)
                }
            }
            return String(decoding: output, as: UTF8.self)
        }
    }

    private static func isASCIISpace(_ byte: UInt8) -> Bool { byte == 0x20 || (0x09...0x0D).contains(byte) }

    /// `normalized(_:)` through Foundation, whatever the text (the ASCII path must agree with it).
    static func foundationNormalized(_ text: String) -> String {
        let folded = text.precomposedStringWithCanonicalMapping.folding(options: .caseInsensitive, locale: nil)
            .precomposedStringWithCanonicalMapping
        var result = String.UnicodeScalarView()
        var pendingSpace = false
        for scalar in folded.unicodeScalars {
            if scalar.properties.isWhitespace {
                pendingSpace = !result.isEmpty
                continue
            }
            if pendingSpace {
                result.append(" ")
                pendingSpace = false
            }
            result.append(scalar)
        }
        return String(result)
    }

    /// The tokens of a normalized text: words are maximal runs of letters, combining marks and
    /// digits (any script); an ideograph (CJK, written without spaces) is a token of its own, and
    /// so is any other symbol (emoji, math, currency); white space and punctuation separate tokens
    /// and are not tokens. So `"Paris, France."` is `paris france` and `"don't"` is `don t`.
    public static func tokens(_ normalized: String) -> [Substring] {
        let bytes = Array(normalized.utf8)
        return tokenRanges(bytes).map { Substring(String(decoding: bytes[$0], as: UTF8.self)) }
    }

    /// `tokens(_:)` as ranges of the text's UTF-8 bytes (NFC text: equal bytes, equal tokens).
    static func tokenRanges(_ bytes: [UInt8]) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(bytes.count / 4)
        var wordStart = -1
        var index = 0
        let count = bytes.count
        while index < count {
            let lead = bytes[index]
            let kind: Kind
            var length = 1
            if lead < 0x80 {
                kind = asciiKinds[Int(lead)]
            } else {
                // A scalar of 2 to 4 bytes (the text came from a String: valid UTF-8).
                var value: UInt32
                if lead >= 0xF0 {
                    length = 4
                    value = UInt32(lead & 0x07)
                } else if lead >= 0xE0 {
                    length = 3
                    value = UInt32(lead & 0x0F)
                } else {
                    length = 2
                    value = UInt32(lead & 0x1F)
                }
                length = min(length, count - index)
                for offset in 1..<max(1, length) { value = value << 6 | UInt32(bytes[index + offset] & 0x3F) }
                kind = Unicode.Scalar(value).map(nonASCIIKind(of:)) ?? .separator
            }
            switch kind {
            case .word:
                if wordStart < 0 { wordStart = index }
            case .single:
                if wordStart >= 0 { ranges.append(wordStart..<index) }
                wordStart = -1
                ranges.append(index..<(index + length))
            case .separator:
                if wordStart >= 0 { ranges.append(wordStart..<index) }
                wordStart = -1
            }
            index += length
        }
        if wordStart >= 0 { ranges.append(wordStart..<count) }
        return ranges
    }

    private enum Kind { case word, single, separator }

    /// Letters and digits are word bytes; `$ + < = > ^ ` | ~` (symbols) are tokens of their own;
    /// the rest (white space, punctuation, controls) separate.
    private static let asciiKinds: [Kind] = (0..<128).map { value in
        if (0x30...0x39).contains(value) || (0x61...0x7A).contains(value) || (0x41...0x5A).contains(value) {
            return .word
        }
        return [0x24, 0x2B, 0x3C, 0x3D, 0x3E, 0x5E, 0x60, 0x7C, 0x7E].contains(value) ? .single : .separator
    }

    private static func nonASCIIKind(of scalar: Unicode.Scalar) -> Kind {
        let properties = scalar.properties
        if properties.isIdeographic { return .single }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter, .nonspacingMark,
            .spacingMark, .enclosingMark, .decimalNumber, .letterNumber, .otherNumber:
            return .word
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
            return .single
        default:
            return .separator
        }
    }

    /// Token-level F1 of two normalized texts (SQuAD's measure): with `common` the size of the
    /// multiset intersection of their `tokens`, `2·common / (live tokens + shadow tokens)`. Two
    /// texts without tokens score 1; one without tokens against one with, 0.
    public static func f1(normalizedLive: String, normalizedShadow: String) -> Double {
        let liveBytes = Array(normalizedLive.utf8)
        let shadowBytes = Array(normalizedShadow.utf8)
        let liveTokens = tokenRanges(liveBytes)
        let shadowTokens = tokenRanges(shadowBytes)
        if liveTokens.isEmpty && shadowTokens.isEmpty { return 1 }
        if liveTokens.isEmpty || shadowTokens.isEmpty { return 0 }
        var counts: [TokenKey: Int] = [:]
        counts.reserveCapacity(liveTokens.count)
        for range in liveTokens { counts[TokenKey(liveBytes[range]), default: 0] += 1 }
        var common = 0
        for range in shadowTokens {
            let token = TokenKey(shadowBytes[range])
            if let count = counts[token], count > 0 {
                counts[token] = count - 1
                common += 1
            }
        }
        return 2 * Double(common) / Double(liveTokens.count + shadowTokens.count)
    }

    /// A token's bytes with their FNV-1a hash worked out once: hashing and comparing whole byte
    /// slices through `Hashable` costs several times more.
    private struct TokenKey: Hashable {
        let bytes: ArraySlice<UInt8>
        let hash: UInt64

        init(_ bytes: ArraySlice<UInt8>) {
            self.bytes = bytes
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            bytes.withUnsafeBufferPointer { buffer in
                for byte in buffer { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
            }
            self.hash = hash
        }

        static func == (lhs: TokenKey, rhs: TokenKey) -> Bool {
            guard lhs.hash == rhs.hash, lhs.bytes.count == rhs.bytes.count else { return false }
            return lhs.bytes.withUnsafeBufferPointer { left in
                rhs.bytes.withUnsafeBufferPointer { right in
                    memcmp(left.baseAddress!, right.baseAddress!, left.count) == 0
                }
            }
        }

        func hash(into hasher: inout Hasher) { hasher.combine(hash) }
    }

    /// `f1` of two raw texts, each normalized first.
    public static func similarity(_ live: String, _ shadow: String) -> Double {
        f1(normalizedLive: normalized(live), normalizedShadow: normalized(shadow))
    }

    /// The cosine similarity of two vectors; 1 for two zero vectors, 0 for one. Nil when their
    /// lengths differ.
    public static func cosine(_ a: [Double], _ b: [Double]) -> Double? {
        guard a.count == b.count else { return nil }
        var dot = 0.0
        var normA = 0.0
        var normB = 0.0
        for index in a.indices {
            dot += a[index] * b[index]
            normA += a[index] * a[index]
            normB += b[index] * b[index]
        }
        if normA == 0 && normB == 0 { return 1 }
        if normA == 0 || normB == 0 { return 0 }
        return min(1, max(-1, dot / (normA.squareRoot() * normB.squareRoot())))
    }

    /// The lowest cosine over the vector pairs (1 when both have none), or 0 with what differs
    /// when the counts or a pair's lengths differ.
    static func lowestCosine(_ live: [[Double]], _ shadow: [[Double]]) -> (value: Double, difference: String?) {
        guard live.count == shadow.count else {
            return (0, "live has \(live.count) embeddings, shadow \(shadow.count)")
        }
        var lowest = 1.0
        for index in live.indices {
            guard let value = cosine(live[index], shadow[index]) else {
                return (
                    0, "embedding \(index): live has \(live[index].count) dimensions, shadow \(shadow[index].count)"
                )
            }
            lowest = min(lowest, value)
        }
        return (lowest, nil)
    }
}
