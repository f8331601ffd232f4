import Foundation
import Models
import Testing

@testable import Compare

/// A chat completion answer as an upstream sends it.
func chatBody(_ text: String, finish: String? = "stop", tools: [String] = [], usage: (Int, Int)? = nil) -> [UInt8] {
    var message: JSONObject = ["role": "assistant", "content": .string(text)]
    if !tools.isEmpty {
        message.set(
            "tool_calls",
            .array(tools.map { ["type": "function", "function": ["name": .string($0), "arguments": "{}"]] })
        )
    }
    var answer: JSONObject = [
        "object": "chat.completion",
        "choices": [["index": 0, "message": .object(message), "finish_reason": finish.map(JSON.string) ?? .null]],
    ]
    if let usage {
        answer.set("usage", ["prompt_tokens": .number(Double(usage.0)), "completion_tokens": .number(Double(usage.1))])
    }
    return JSON.object(answer).serialized()
}

func embeddingBody(_ vectors: [[Double]]) -> [UInt8] {
    let data: [JSON] = vectors.enumerated().map { index, vector in
        ["object": "embedding", "index": .number(Double(index)), "embedding": .array(vector.map(JSON.number))]
    }
    return JSON.object(["object": "list", "data": .array(data)]).serialized()
}

func llmSide(_ body: [UInt8], status: Int = 200, version: String = "v1", ttft: Double? = nil) -> ResponseSide {
    ResponseSide(
        version: version,
        status: status,
        body: .bytes(body),
        latencyMilliseconds: 100,
        firstTokenMilliseconds: ttft
    )
}

private func compareTexts(
    _ live: [UInt8],
    _ shadow: [UInt8],
    threshold: Double? = nil
) -> Comparison {
    compareLLM(live: llmSide(live), shadow: llmSide(shadow, version: "v2"), similarityThreshold: threshold)
}

struct LLMComparisonTests {
    @Test func sameTextIsAnExactMatch() throws {
        let comparison = compareTexts(chatBody("Paris."), chatBody("Paris."))
        #expect(comparison.outcome == .match)
        let text = try #require(comparison.text)
        #expect(text.exact && text.normalized && text.finishReasonAgrees && text.toolCallsAgree && !text.isEmbedding)
        #expect(text.similarity == 1)
        #expect(comparison.maxAbsDiff == 0)
        #expect(!comparison.flip)
        #expect(ComparisonSummary(comparison) == ComparisonSummary(outcome: .match, flip: false, maxAbsDiff: 0))
    }

    @Test(arguments: [
        ("The answer is Paris.", "the  ANSWER is\nParis. "),
        ("Caf\u{E9} au lait", "Cafe\u{301} au lait"),
        ("STRASSE", "straße"),
    ])
    func normalizedOnlyMatchesByDefault(live: String, shadow: String) throws {
        let comparison = compareTexts(chatBody(live), chatBody(shadow))
        let text = try #require(comparison.text)
        #expect(!text.exact)
        #expect(text.normalized)
        #expect(text.similarity == 1)
        #expect(comparison.outcome == .match)
    }

    @Test func differentWordsMismatchWithoutThresholdAndMatchAboveIt() throws {
        // 5 tokens each, 4 in common: F1 = 8/10.
        let live = chatBody("The capital is Paris, France.")
        let shadow = chatBody("The capital is Lyon, France.")
        let strict = compareTexts(live, shadow)
        #expect(strict.outcome == .mismatch)
        #expect(strict.text?.similarity == 0.8)
        #expect(strict.reason == "texts differ after normalization (similarity 0.8)")
        let maxAbsDiff = try #require(strict.maxAbsDiff)
        #expect(abs(maxAbsDiff - 0.2) < 1e-12)
        #expect(compareTexts(live, shadow, threshold: 0.8).outcome == .match)
        let below = compareTexts(live, shadow, threshold: 0.81)
        #expect(below.outcome == .mismatch)
        #expect(below.reason == "similarity 0.8 < 0.81")
    }

    @Test func finishReasonIsRecordedButDoesNotDecide() throws {
        let comparison = compareTexts(chatBody("Hi", finish: "stop"), chatBody("Hi", finish: "length"))
        #expect(comparison.outcome == .match)
        #expect(comparison.text?.finishReasonAgrees == false)
    }

    @Test func toolCallNamesMustAgreeInOrder() throws {
        let same = compareTexts(chatBody("", tools: ["a", "b"]), chatBody("", tools: ["a", "b"]))
        #expect(same.outcome == .match)
        let other = compareTexts(chatBody("", tools: ["a", "b"]), chatBody("", tools: ["a", "c"]), threshold: 0.5)
        #expect(other.outcome == .mismatch)
        #expect(other.text?.toolCallsAgree == false)
        #expect(other.reason == "tool calls differ: live [a, b], shadow [a, c]")
        let order = compareTexts(chatBody("ok", tools: ["a", "b"]), chatBody("ok", tools: ["b", "a"]))
        #expect(order.outcome == .mismatch)
        #expect(order.text?.normalized == true)
    }

    @Test func streamedLiveComparesWithJSONShadow() throws {
        let live =
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello \"}}]}\n\n"
            + "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"World\"},\"finish_reason\":\"stop\"}]}\n\n"
            + "data: [DONE]\n\n"
        let comparison = compareTexts(Array(live.utf8), chatBody("hello world"))
        #expect(comparison.outcome == .match)
        #expect(comparison.text?.exact == false)
        #expect(comparison.liveAnswer?.text == "Hello World")
    }

    @Test func embeddingsCompareByLowestCosine() throws {
        let live = embeddingBody([[1, 0, 0], [0, 1, 0]])
        let close = embeddingBody([[1, 0.01, 0], [0, 1, 0]])
        let far = embeddingBody([[1, 0, 0], [0, 1, 1]])
        let above = compareTexts(live, close)
        #expect(above.outcome == .match)
        let text = try #require(above.text)
        #expect(text.isEmbedding)
        #expect(abs(text.similarity - 1 / (1.0001).squareRoot()) < 1e-12)
        let below = compareTexts(live, far)
        #expect(below.outcome == .mismatch)
        #expect(abs((below.text?.similarity ?? 0) - 1 / 2.0.squareRoot()) < 1e-12)
        #expect(compareTexts(live, far, threshold: 0.7).outcome == .match)
        let fewer = compareTexts(live, embeddingBody([[1, 0, 0]]))
        #expect(fewer.outcome == .mismatch)
        #expect(fewer.reason == "live has 2 embeddings, shadow 1")
        #expect(compareTexts(live, chatBody("x")).outcome == .mismatch)
    }

    @Test func failedSidesAreErrors() throws {
        let status = compareLLM(
            live: llmSide(chatBody("a")),
            shadow: llmSide(Array("overloaded".utf8), status: 503, version: "v2"),
            similarityThreshold: nil
        )
        #expect(status.outcome == .error)
        #expect(status.reason == "shadow status 503")
        #expect(!status.liveFailed && status.shadowFailed)
        #expect(status.isLLM && status.text == nil && status.liveAnswer?.text == "a")
        #expect(status.maxAbsDiff == nil)
        let garbage = compareTexts(Array("<html/>".utf8), chatBody("a"))
        #expect(garbage.outcome == .error)
        #expect(garbage.reason == "live body is not an OpenAI-compatible answer")
        #expect(garbage.liveFailed && !garbage.shadowFailed)
    }

    @Test func tokenizationAndF1() {
        #expect(TextSimilarity.normalized("  A\tb\n\n C  ") == "a b c")
        #expect(TextSimilarity.tokens("paris, france. don't").map(String.init) == ["paris", "france", "don", "t"])
        #expect(TextSimilarity.tokens("東京は 1+1=2 👍").map(String.init) == ["東", "京", "は", "1", "+", "1", "=", "2", "👍"])
        #expect(TextSimilarity.similarity("", "") == 1)
        #expect(TextSimilarity.similarity("...", "!") == 1)
        #expect(TextSimilarity.similarity("", "word") == 0)
        // Repeated tokens count as a multiset: "a a b" vs "a b b" share a and b: 2·2 / 6.
        #expect(abs(TextSimilarity.similarity("a a b", "a b b") - 4.0 / 6) < 1e-12)
        #expect(TextSimilarity.cosine([1, 0], [0, 0]) == 0)
        #expect(TextSimilarity.cosine([0, 0], [0, 0]) == 1)
        #expect(TextSimilarity.cosine([1], [1, 2]) == nil)
    }

    @Test func runByRunNormalizationAgreesWithFoundationOnTheWholeText() {
        // Printable ASCII, white space (ASCII and not), and characters that compose, fold to
        // several, or decompose when folded; in pseudo-random texts.
        let alphabet =
            Array(" \t\n\r\u{0B}\u{0C}\u{A0}\u{2003}") + (0x20...0x7E).map { Character(Unicode.Scalar($0)!) }
            + [
                "\u{E9}", "e", "\u{301}", "\u{DF}", "\u{3A3}", "\u{3C2}", "\u{130}", "\u{6771}", "\u{1F44D}",
                "\u{212B}",
            ]
        var state: UInt64 = 42
        for _ in 0..<500 {
            var text = ""
            for _ in 0..<30 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                text.unicodeScalars.append(contentsOf: alphabet[Int(state >> 33) % alphabet.count].unicodeScalars)
            }
            #expect(
                TextSimilarity.normalized(text) == TextSimilarity.foundationNormalized(text),
                "\(text.debugDescription)"
            )
        }
        #expect(TextSimilarity.normalized("\u{C9}T\u{C9} \u{2003} Fin \u{A0}") == "\u{E9}t\u{E9} fin")
    }

    @Test func bodiesAlreadyParsedAreAccepted() throws {
        let json = try JSONParser.parse(chatBody("same"))
        let comparison = compareLLM(
            live: ResponseSide(version: "v1", status: 200, json: json, latencyMilliseconds: 1),
            shadow: llmSide(chatBody("Same")),
            similarityThreshold: nil
        )
        #expect(comparison.outcome == .match)
    }
}
