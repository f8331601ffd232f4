import Foundation
import Models
import Testing

@testable import Compare

struct LLMRecordTests {
    private func record(_ comparison: Comparison, live: ResponseSide, shadow: ResponseSide) -> ComparisonRecord {
        ComparisonRecord(
            timestamp: "2026-01-02T03:04:05.678Z",
            requestID: "r1",
            model: "assistant",
            route: "chat",
            live: live,
            shadow: shadow,
            comparison: comparison
        )
    }

    @Test func textRecordIsWrittenAndReadBack() throws {
        let live = llmSide(chatBody("Hello there", usage: (12, 3)), ttft: 95.25)
        let shadow = llmSide(
            chatBody("hello  there", finish: "length", tools: ["lookup"], usage: (12, 4)),
            version: "v2",
            ttft: 40
        )
        let comparison = compareLLM(live: live, shadow: shadow, similarityThreshold: nil)
        let written = record(comparison, live: live, shadow: shadow)
        let line = String(decoding: written.jsonLine(), as: UTF8.self)
        #expect(
            line
                == #"{"ts":"2026-01-02T03:04:05.678Z","request_id":"r1","model":"assistant","route":"chat","#
                + #""live":{"version":"v1","status":200,"latency_ms":100,"output":null,"text":"Hello there","#
                + #""finish_reason":"stop","tool_calls":[],"usage":{"prompt_tokens":12,"completion_tokens":3},"#
                + #""ttft_ms":95.25},"shadow":{"version":"v2","status":200,"latency_ms":100,"output":null,"#
                + #""text":"hello  there","finish_reason":"length","tool_calls":["lookup"],"#
                + #""usage":{"prompt_tokens":12,"completion_tokens":4},"ttft_ms":40},"outcome":"mismatch","#
                + #""max_abs_diff":0,"flip":false,"reason":"tool calls differ: live [], shadow [lookup]","#
                + #""text":{"exact":false,"normalized":true,"similarity":1,"finish_reason_agrees":false,"#
                + #""tool_calls_agree":false}}"# + "\n"
        )
        let read = try ComparisonRecord.parse(Array(line.utf8.dropLast()))
        #expect(read == written)
        #expect(read.isLLM)
        #expect(read.live.llm?.promptTokens == 12)
        #expect(read.shadow.firstTokenMilliseconds == 40)
        #expect(read.text?.normalized == true)
    }

    @Test func textIsCutAt4KiBOnACharacterBoundary() throws {
        // 4095 ASCII bytes, then "é" (2 bytes): the cut falls inside it, so it is dropped whole.
        let long = String(repeating: "a", count: 4095) + "\u{E9}" + "tail"
        let live = llmSide(chatBody(long))
        let shadow = llmSide(chatBody("short"), version: "v2")
        let comparison = compareLLM(live: live, shadow: shadow, similarityThreshold: nil)
        let written = record(comparison, live: live, shadow: shadow)
        let read = try ComparisonRecord.parse(Array(written.jsonLine().dropLast()))
        let side = try #require(read.live.llm)
        #expect(side.truncated)
        #expect(side.text == String(repeating: "a", count: 4095))
        #expect(read.shadow.llm?.truncated == false)
        #expect(String(decoding: written.jsonLine(), as: UTF8.self).contains(#""truncated":true"#))
        // A text of exactly 4 KiB is kept whole.
        let (exact, cut) = ComparisonRecord.LLMSide.cut(String(repeating: "\u{E9}", count: 2048), toBytes: 4096)
        #expect(!cut && exact.utf8.count == 4096)
        let (three, cutThree) = ComparisonRecord.LLMSide.cut("a€€", toBytes: 5)
        #expect(cutThree && three == "a€")
    }

    @Test func errorAndEmbeddingRecords() throws {
        let live = llmSide(chatBody("x"))
        let shadow = llmSide(Array("busy".utf8), status: 503, version: "v2")
        let error = record(compareLLM(live: live, shadow: shadow, similarityThreshold: nil), live: live, shadow: shadow)
        let errorLine = String(decoding: error.jsonLine(), as: UTF8.self)
        #expect(
            errorLine.hasSuffix(
                #""outcome":"error","max_abs_diff":null,"flip":false,"reason":"shadow status 503","text":null}"# + "\n"
            )
        )
        let readError = try ComparisonRecord.parse(Array(error.jsonLine().dropLast()))
        #expect(readError == error)
        #expect(readError.isLLM && readError.text == nil)
        #expect(!readError.liveFailed && readError.shadowFailed)

        let a = llmSide(embeddingBody([[1, 0]]))
        let b = llmSide(embeddingBody([[0.6, 0.8]]), version: "v2")
        let embedding = record(compareLLM(live: a, shadow: b, similarityThreshold: nil), live: a, shadow: b)
        let line = String(decoding: embedding.jsonLine(), as: UTF8.self)
        #expect(line.contains(#""output":null,"embeddings":1,"usage":{"prompt_tokens":null,"completion_tokens":null}"#))
        #expect(line.hasSuffix(#""text":{"cosine":0.6}}"# + "\n"))
        let read = try ComparisonRecord.parse(Array(embedding.jsonLine().dropLast()))
        #expect(read == embedding)
        #expect(read.text?.isEmbedding == true)
    }

    @Test func otherRecordsAreUnchanged() throws {
        let line =
            #"{"ts":"t","request_id":"r","model":"m","route":"m","live":{"version":"a","status":200,"latency_ms":1,"output":[1]},"shadow":{"version":"b","status":200,"latency_ms":2,"output":[1]},"outcome":"match","max_abs_diff":0,"flip":false}"#
        let read = try ComparisonRecord.parse(Array(line.utf8))
        #expect(!read.isLLM && read.live.llm == nil && read.text == nil)
        #expect(String(decoding: read.jsonLine(), as: UTF8.self) == line + "\n")
    }
}
