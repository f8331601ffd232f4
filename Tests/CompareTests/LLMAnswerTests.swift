import Foundation
import Models
import Testing

@testable import Compare

/// SSE text from `data:` payloads, one event each, ended by `[DONE]`.
private func stream(_ events: [String], lineEnd: String = "\n") -> [UInt8] {
    var text = ""
    for event in events + ["[DONE]"] { text += "data: " + event + lineEnd + lineEnd }
    return Array(text.utf8)
}

private func chunk(_ delta: String, finish: String? = nil, index: Int = 0) -> String {
    let reason = finish.map { "\"\($0)\"" } ?? "null"
    return
        #"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":\#(index),"delta":\#(delta),"finish_reason":\#(reason)}]}"#
}

struct LLMAnswerTests {
    @Test func chatCompletionJSON() throws {
        let body = #"""
            {"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",
            "content":"Paris is the capital."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,
            "completion_tokens":6,"total_tokens":18}}
            """#
        let answer = try #require(LLMAnswer.parse(Array(body.utf8)))
        #expect(
            answer
                == LLMAnswer(text: "Paris is the capital.", finishReason: "stop", promptTokens: 12, completionTokens: 6)
        )
    }

    @Test func chatToolCallsJSONAndCompletionJSON() throws {
        let chat = #"""
            {"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
            {"id":"a","type":"function","function":{"name":"get_weather","arguments":"{}"}},
            {"id":"b","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
            "finish_reason":"tool_calls"}]}
            """#
        let answer = try #require(LLMAnswer.parse(Array(chat.utf8)))
        #expect(answer.text == "")
        #expect(answer.toolCalls == ["get_weather", "get_time"])
        #expect(answer.finishReason == "tool_calls")
        let completion =
            #"{"choices":[{"index":1,"text":"no"},{"index":0,"text":" once upon","finish_reason":"length"}]}"#
        let text = try #require(LLMAnswer.parse(Array(completion.utf8)))
        #expect(text.text == " once upon")
        #expect(text.finishReason == "length")
    }

    @Test func embeddingsByIndexAndBase64() throws {
        let body = #"""
            {"object":"list","data":[{"object":"embedding","index":1,"embedding":[0,1]},
            {"object":"embedding","index":0,"embedding":[1,0.5]}],"usage":{"prompt_tokens":4,"total_tokens":4}}
            """#
        let answer = try #require(LLMAnswer.parse(Array(body.utf8)))
        #expect(answer.embeddings == [[1, 0.5], [0, 1]])
        #expect(answer.promptTokens == 4)
        #expect(answer.completionTokens == nil)
        // `encoding_format: base64` (the openai Python client's default): little-endian float32.
        var bytes: [UInt8] = []
        for value: Float in [1, -0.5, 0.25] {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
        }
        let encoded = Data(bytes).base64EncodedString()
        let base64 = #"{"data":[{"index":0,"embedding":"\#(encoded)"}]}"#
        #expect(LLMAnswer.parse(Array(base64.utf8))?.embeddings == [[1, -0.5, 0.25]])
    }

    @Test func notAnAnswer() {
        #expect(LLMAnswer.parse(Array(#"{"error":{"message":"overloaded"}}"#.utf8)) == nil)
        #expect(LLMAnswer.parse(Array(#"{"object":"list"}"#.utf8)) == nil)
        #expect(LLMAnswer.parse(Array("<html>bad gateway</html>".utf8)) == nil)
        #expect(LLMAnswer.parse(Array("   ".utf8)) == nil)
        #expect(LLMAnswer.parse(Array("data: {\"error\":{\"message\":\"x\"}}\n\n".utf8)) == nil)
        #expect(LLMAnswer.parse(Array("data: [DONE]\n\n".utf8)) == nil)
    }

    @Test func chatStreamAssemblesDeltasFinishReasonAndFinalUsage() throws {
        let body = stream([
            chunk(#"{"role":"assistant","content":""}"#),
            chunk(#"{"content":"Hel"}"#),
            chunk(#"{"content":"lo, "}"#),
            chunk(#"{"content":"wörld"}"#),
            chunk(#"{}"#, finish: "stop"),
            #"{"id":"c1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}"#,
        ])
        let answer = try #require(LLMAnswer.parse(body))
        #expect(answer == LLMAnswer(text: "Hello, wörld", finishReason: "stop", promptTokens: 9, completionTokens: 4))
    }

    @Test func completionStreamWithCRLFCommentsAndOtherFields() throws {
        let text =
            ": keep-alive\r\n\r\nevent: message\r\nid: 1\r\ndata: {\"choices\":[{\"index\":0,\"text\":\"one\"}]}\r\n\r\n"
            + "retry: 100\r\ndata:{\"choices\":[{\"index\":0,\"text\":\" two\",\"finish_reason\":\"length\"}]}\r\n\r\n"
            + "data: [DONE]\r\n\r\n"
        let answer = try #require(LLMAnswer.parse(Array(text.utf8)))
        #expect(answer.text == "one two")
        #expect(answer.finishReason == "length")
    }

    @Test func multiLineDataIsJoinedWithNewlines() throws {
        // One JSON event split over three data lines (the newlines fall between tokens).
        let text =
            "data: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"hi\"},\ndata: \"finish_reason\":\"stop\"}]}\n\n"
        let answer = try #require(LLMAnswer.parse(Array(text.utf8)))
        #expect(answer.text == "hi")
        #expect(answer.finishReason == "stop")
    }

    @Test func lastEventWithoutBlankLineAndLoneCRLineEnds() throws {
        let text =
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\r\rdata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}"
        #expect(LLMAnswer.parse(Array(text.utf8))?.text == "ab")
    }

    @Test func toolCallsAreAssembledAcrossDeltasByIndex() throws {
        let body = stream([
            chunk(
                #"{"role":"assistant","tool_calls":[{"index":1,"id":"b","type":"function","function":{"name":"get_","arguments":""}}]}"#
            ),
            chunk(
                #"{"tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"lookup","arguments":"{\"q"}}]}"#
            ),
            chunk(#"{"tool_calls":[{"index":1,"function":{"name":"time","arguments":"{}"}}]}"#),
            chunk(#"{"tool_calls":[{"index":0,"function":{"arguments":"\":1}"}}]}"#),
            chunk(#"{}"#, finish: "tool_calls"),
        ])
        let answer = try #require(LLMAnswer.parse(body))
        #expect(answer.toolCalls == ["lookup", "get_time"])
        #expect(answer.finishReason == "tool_calls")
        #expect(answer.text == "")
    }

    @Test func keepAlivesAndOtherObjectsArePassedOver() throws {
        let text =
            "data:\n\ndata: {\"object\":\"heartbeat\"}\n\n"
            + "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]}\n\ndata: [DONE]\n\n"
        #expect(LLMAnswer.parse(Array(text.utf8))?.text == "ok")
        #expect(LLMAnswer.parse(Array("data: {\"object\":\"heartbeat\"}\n\n".utf8)) == nil)
    }

    @Test func otherChoicesAndEventsAfterDoneAreIgnored() throws {
        var body = stream([chunk(#"{"content":"yes"}"#), chunk(#"{"content":"NO"}"#, index: 1)])
        body += Array("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"late\"}}]}\n\n".utf8)
        #expect(LLMAnswer.parse(body)?.text == "yes")
    }
}

struct LLMStreamScannerTests {
    static let body = stream([
        chunk(#"{"role":"assistant","content":""}"#),
        chunk(#"{"content":"The"}"#),
        chunk(#"{"content":" answer"}"#),
        chunk(#"{}"#, finish: "stop"),
        #"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}"#,
    ])

    /// Feeds `body` in pieces cut at `cuts`; returns the number of bytes fed when `feed` returned
    /// true, every time it did.
    private static func scan(
        _ body: [UInt8],
        cuts: [Int],
        maxEventBytes: Int = 1 << 20
    )
        -> (firsts: [Int], scanner: LLMStreamScanner)
    {
        var scanner = LLMStreamScanner(maxEventBytes: maxEventBytes)
        var firsts: [Int] = []
        var start = 0
        for end in (cuts + [body.count]).sorted() where end >= start {
            let flagged = body[start..<end].withUnsafeBytes { scanner.feed($0) }
            if flagged { firsts.append(end) }
            start = end
        }
        if scanner.finish() { firsts.append(body.count) }
        return (firsts, scanner)
    }

    @Test func wholeBodyFindsFirstTokenAndUsage() {
        let (firsts, scanner) = Self.scan(Self.body, cuts: [])
        #expect(firsts == [Self.body.count])
        #expect(scanner.promptTokens == 7)
        #expect(scanner.completionTokens == 2)
    }

    @Test func firstTokenIsFlaggedOnTheFeedThatCompletesItsEvent() throws {
        // The first event carries an empty content: no token yet. The second event's blank line
        // ends at its last byte.
        let text = String(decoding: Self.body, as: UTF8.self)
        let second = try #require(text.range(of: "\"The\""))
        let end = text.utf8.distance(
            from: text.startIndex,
            to: text[second.upperBound...].range(of: "\n\n")!.upperBound
        )
        let (firsts, _) = Self.scan(Self.body, cuts: [end - 1, end, end + 1])
        #expect(firsts == [end])
    }

    @Test func everySplitGivesTheSameResult() {
        for cut in 0...Self.body.count {
            let (firsts, scanner) = Self.scan(Self.body, cuts: [cut, min(Self.body.count, cut + 3)])
            #expect(firsts.count == 1, "cut at \(cut)")
            #expect(scanner.promptTokens == 7 && scanner.completionTokens == 2, "cut at \(cut)")
        }
        // Byte by byte, with CRLF line ends.
        let crlf = stream(
            [chunk(#"{"content":"x"}"#), #"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#],
            lineEnd: "\r\n"
        )
        let (firsts, scanner) = Self.scan(crlf, cuts: Array(0..<crlf.count))
        #expect(firsts.count == 1)
        #expect(scanner.completionTokens == 1)
    }

    @Test func toolCallDeltaIsAToken() {
        let body = stream([chunk(#"{"tool_calls":[{"index":0,"function":{"name":"f","arguments":""}}]}"#)])
        #expect(Self.scan(body, cuts: []).firsts == [body.count])
        let none = stream([chunk(#"{"role":"assistant"}"#), chunk(#"{}"#, finish: "stop")])
        #expect(Self.scan(none, cuts: []).firsts.isEmpty)
    }

    @Test func oversizedEventIsSkippedToTheNextEvent() {
        let big = chunk(#"{"content":""# + String(repeating: "x", count: 5000) + #""}"#)
        let body = stream([
            big, chunk(#"{"content":"ok"}"#), #"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        ])
        let (firsts, scanner) = Self.scan(body, cuts: [100, 2000, 4000], maxEventBytes: 1024)
        #expect(scanner.oversizedEvents == 1)
        // The big event's token is not seen; the next event's is.
        let bigEnd = big.utf8.count + 8
        #expect(firsts.count == 1)
        #expect(firsts[0] > bigEnd)
        #expect(scanner.promptTokens == 3)
    }

    @Test func nonStreamedJSONIsReadAtFinish() {
        let body = Array(
            #"{"choices":[{"index":0,"message":{"content":"hi"}}],"usage":{"prompt_tokens":2,"completion_tokens":1}}"#
                .utf8
        )
        var scanner = LLMStreamScanner()
        let flagged = body.withUnsafeBytes { scanner.feed($0) }
        #expect(!flagged)
        let finished = scanner.finish()
        #expect(finished)
        #expect(scanner.promptTokens == 2)
        #expect(scanner.completionTokens == 1)
    }
}
