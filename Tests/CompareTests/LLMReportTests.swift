import Foundation
import Models
import Testing

@testable import Compare

/// A scripted openai pair: 10 compared text records with similarities 0.1, 0.2, …, 1.0 (the
/// last exact, the last three normalized-equal), finish reasons agreeing on 8, tokens 10/5 live
/// and 10/6 shadow each, live TTFT 10…100 ms and shadow 20 ms; plus one shadow error.
private func llmLog() -> [ComparisonRecord] {
    var records: [ComparisonRecord] = []
    for index in 1...10 {
        let similarity = Double(index) / 10
        let normalized = index >= 8
        let live = ComparisonRecord.Side(
            version: "v7",
            status: 200,
            latencyMilliseconds: 500,
            output: nil,
            llm: .init(text: "live \(index)", finishReason: "stop", promptTokens: 10, completionTokens: 5),
            firstTokenMilliseconds: Double(index * 10)
        )
        let shadow = ComparisonRecord.Side(
            version: "v8",
            status: 200,
            latencyMilliseconds: 400,
            output: nil,
            llm: .init(
                text: "shadow \(index)",
                finishReason: index <= 8 ? "stop" : "length",
                promptTokens: 10,
                completionTokens: 6
            ),
            firstTokenMilliseconds: 20
        )
        records.append(
            ComparisonRecord(
                timestamp: "2026-01-01T00:00:\(index < 10 ? "0" : "")\(index).000Z",
                requestID: "r\(index)",
                model: "assistant",
                route: "chat",
                live: live,
                shadow: shadow,
                outcome: normalized ? .match : .mismatch,
                maxAbsDiff: 1 - similarity,
                flip: false,
                text: .init(
                    exact: index == 10,
                    normalized: normalized,
                    similarity: similarity,
                    finishReasonAgrees: index <= 8,
                    toolCallsAgree: true
                )
            )
        )
    }
    records.append(
        ComparisonRecord(
            timestamp: "2026-01-01T00:00:11.000Z",
            requestID: "r11",
            model: "assistant",
            route: "chat",
            live: .init(
                version: "v7",
                status: 200,
                latencyMilliseconds: 500,
                output: nil,
                llm: .init(text: "x", promptTokens: 10, completionTokens: 5)
            ),
            shadow: .init(version: "v8", status: 503, latencyMilliseconds: 3, output: nil),
            outcome: .error,
            maxAbsDiff: nil,
            flip: false,
            reason: "shadow status 503",
            isLLM: true
        )
    )
    return records
}

private func llmReport(minRequests: Int = 5) -> Report {
    var builder = ReportBuilder()
    // Through the log text, as `switchyard report` reads it.
    var text: [UInt8] = []
    for record in llmLog() { text += record.jsonLine() }
    builder.addLines(of: text, file: "compare.log")
    return builder.build(minRequests: minRequests)
}

struct LLMReportTests {
    @Test func figuresOfAScriptedLog() throws {
        let report = llmReport()
        #expect(report.badLines.isEmpty)
        let pair = try #require(report.pairs.first)
        #expect(pair.requests == 11 && pair.compared == 10 && pair.shadowErrors == 1 && pair.liveErrors == 0)
        let text = try #require(pair.text)
        let exact = try #require(text.exact)
        #expect(exact.successes == 1 && exact.trials == 10)
        let wilsonExact = try #require(Statistics.wilsonInterval(successes: 1, trials: 10))
        #expect(exact.low == wilsonExact.low && exact.high == wilsonExact.high)
        // Wilson 95 % for 1/10 and 3/10 (known values, 4 decimals).
        #expect(abs(exact.low - 0.0179) < 1e-4 && abs(exact.high - 0.4042) < 1e-4)
        let normalized = try #require(text.normalized)
        #expect(normalized.rate == 0.3)
        #expect(abs(normalized.low - 0.1078) < 1e-4 && abs(normalized.high - 0.6032) < 1e-4)
        let similarity = try #require(text.similarity)
        // Type 7 quantiles of 0.1…1.0: p10 at h = 0.9 → 0.19, p50 at h = 4.5 → 0.55.
        #expect(abs(similarity.p10 - 0.19) < 1e-12)
        #expect(abs(similarity.p50 - 0.55) < 1e-12)
        #expect(abs(similarity.mean - 0.55) < 1e-12)
        #expect(text.finishReasonAgreement?.rate == 0.8)
        #expect(text.livePromptTokens == 110 && text.liveCompletionTokens == 55)
        #expect(text.shadowPromptTokens == 100 && text.shadowCompletionTokens == 60)
        #expect(text.liveFirstToken?.p50 == 55)
        #expect(abs((text.liveFirstToken?.p99 ?? 0) - 99.1) < 1e-9)
        #expect(text.shadowFirstToken?.p50 == 20)
    }

    @Test func jsonCarriesTheSpecTextObject() throws {
        let json = try JSONParser.parse(llmReport().renderJSON())
        let text = try #require(json["pairs"]?[0]?["text"])
        #expect(
            text.objectValue?.keys == [
                "exact", "normalized", "similarity", "finish_reason_agreement", "tokens", "ttft_ms",
            ]
        )
        #expect(text["exact"]?.objectValue?.keys == ["rate", "low", "high"])
        #expect(text["normalized"]?["rate"] == 0.3)
        #expect(text["normalized"]?["low"] == .number(Format.significant(0.10779126740630093)))
        #expect(text["similarity"] == ["mean": 0.55, "p10": 0.19, "p50": 0.55])
        #expect(text["finish_reason_agreement"] == 0.8)
        #expect(
            text["tokens"]
                == ["live": ["prompt": 110, "completion": 55], "shadow": ["prompt": 100, "completion": 60]]
        )
        #expect(text["ttft_ms"] == ["live": ["p50": 55, "p99": 99.1], "shadow": ["p50": 20, "p99": 20]])
        // Pairs without LLM records carry no `text`.
        #expect(try JSONParser.parse(sampleReport().renderJSON())["pairs"]?[0]?["text"] == nil)
    }

    @Test func tableAndHTMLShowTheTextFigures() {
        let report = llmReport()
        let table = report.renderTable()
        #expect(table.contains("LLM answers: text agreement (95% Wilson intervals) and similarity"))
        #expect(table.contains("10.00%  [1.79%, 40.42%]"))
        #expect(table.contains("30.00%  [10.78%, 60.32%]"))
        #expect(table.contains("0.550    0.190    0.550         80.00%"))
        #expect(table.contains("110               55            100                 60           55.0           99.1"))
        #expect(table.contains("LLM answers: tokens (totals) and time to first token (ms)"))
        let html = report.renderHTML()
        #expect(wellFormednessProblem(html) == nil)
        #expect(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"sim-0\""))
        #expect(html.contains("Similarity per request (token F1 similarity)"))
        #expect(html.contains("<title>0.95–1.00: 1 requests</title>"))
        #expect(!sampleReport().renderHTML().contains("id=\"sim-"))
        #expect(!sampleReport().renderTable().contains("LLM answers"))
    }

    @Test func similarityAndNormalizedAgreementGates() throws {
        let gates = try Gate.parse("similarity_p10<0.2, normalized_agreement<0.25")
        #expect(gates.map(\.metric) == [.similarityP10, .normalizedAgreement])
        let failed = Gate.evaluate(gates, on: llmReport())
        #expect(failed.failures.map(\.message) == ["assistant/v7→v8: similarity_p10 0.19 < 0.2"])
        #expect(Gate.evaluate(try Gate.parse("normalized_agreement<0.31"), on: llmReport()).failures.count == 1)
        #expect(Gate.evaluate(try Gate.parse("similarity_p10<0.19"), on: llmReport()).passed)
        // Too few compared requests: neither pass nor fail.
        let thin = Gate.evaluate(gates, on: llmReport(minRequests: 11))
        #expect(thin.failures.isEmpty && thin.insufficient.count == 1)
        // A pair without LLM answers has no similarity: its gate fails on no evidence.
        let other = Gate.evaluate(try Gate.parse("similarity_p10<0.5"), on: sampleReport(minRequests: 0))
        #expect(other.failures.first?.message.contains("similarity_p10 unknown (no compared LLM answer)") == true)
    }
}
