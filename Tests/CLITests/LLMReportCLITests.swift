import Foundation
import Testing

/// `switchyard report` on a comparison log of openai pairs, and `bench compare-text`, run as a
/// user runs them.
@Suite struct LLMReportCLITests {
    /// One LLM record of assistant/v7→v8: similarity `index / 10`, normalized-equal from 8 on.
    static func line(_ index: Int) -> String {
        let similarity = Double(index) / 10
        let normalized = index >= 8
        return #"{"ts":"2026-01-01T00:00:\#(String(format: "%02d", index)).000Z","request_id":"r\#(index)","#
            + #""model":"assistant","route":"chat","live":{"version":"v7","status":200,"latency_ms":500,"#
            + #""output":null,"text":"live \#(index)","finish_reason":"stop","tool_calls":[],"#
            + #""usage":{"prompt_tokens":10,"completion_tokens":5},"ttft_ms":\#(index * 10)},"#
            + #""shadow":{"version":"v8","status":200,"latency_ms":400,"output":null,"text":"shadow","#
            + #""finish_reason":"stop","tool_calls":[],"usage":{"prompt_tokens":10,"completion_tokens":6},"#
            + #""ttft_ms":20},"outcome":"\#(normalized ? "match" : "mismatch")","max_abs_diff":\#(1 - similarity),"#
            + #""flip":false,"text":{"exact":\#(index == 10),"normalized":\#(normalized),"#
            + #""similarity":\#(similarity),"finish_reason_agrees":true,"tool_calls_agree":true}}"#
    }

    static func log() throws -> String {
        let text = (1...10).map(line).joined(separator: "\n") + "\n"
        return try CLI.tempDirectory(files: ["compare.jsonl": text]) + "/compare.jsonl"
    }

    @Test func jsonTableAndGates() throws {
        let path = try Self.log()
        let json = try CLI.run(["report", path, "--format", "json", "--min-requests", "5"])
        #expect(json.status == 0)
        #expect(json.stderr == "")
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let pair = (object?["pairs"] as? [[String: Any]])?.first
        let text = try #require(pair?["text"] as? [String: Any])
        #expect((text["normalized"] as? [String: Double])?["rate"] == 0.3)
        #expect((text["similarity"] as? [String: Double]) == ["mean": 0.55, "p10": 0.19, "p50": 0.55])
        #expect(text["finish_reason_agreement"] as? Double == 1)
        #expect(
            (text["tokens"] as? [String: [String: Int]])
                == ["live": ["prompt": 100, "completion": 50], "shadow": ["prompt": 100, "completion": 60]]
        )

        let table = try CLI.run(["report", path, "--min-requests", "5"])
        #expect(table.stdout.contains("LLM answers: text agreement (95% Wilson intervals) and similarity"))

        let fails = try CLI.run(["report", path, "--min-requests", "5", "--fail-if", "similarity_p10<0.2"])
        #expect(fails.status == 1)
        #expect(fails.stderr == "gate failed: assistant/v7→v8: similarity_p10 0.19 < 0.2\n")
        let passes = try CLI.run(["report", path, "--min-requests", "5", "--fail-if", "normalized_agreement<0.3"])
        #expect(passes.status == 0)
        let thin = try CLI.run(["report", path, "--fail-if", "normalized_agreement<0.3"])
        #expect(thin.status == 3)

        let help = try CLI.run(["report", "--help"])
        let words = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(words.contains("similarity_p10"))
        #expect(words.contains("normalized_agreement"))
    }

    @Test func benchCompareTextPrintsTheMedian() throws {
        let result = try CLI.run(["bench", "compare-text", "--iterations", "20"])
        #expect(result.status == 0)
        #expect(result.stdout.hasPrefix("compare-text: 4097-byte texts, "))
        #expect(result.stdout.contains("us (outcome match, similarity 0.99"))
    }
}
