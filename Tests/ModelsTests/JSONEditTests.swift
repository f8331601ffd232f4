import Models
import Testing

/// `JSONEdit` rewrites top-level members and leaves every other byte as the client wrote it.
@Suite struct JSONEditTests {
    func edit(_ text: String, set: [(String, String)], remove: Set<String> = []) -> String? {
        JSONEdit.editTopLevel(
            Array(text.utf8),
            set: set.map { (key: $0.0, rawValue: Array($0.1.utf8)) },
            remove: remove
        ).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func replacesInPlaceAndKeepsOtherValuesByteForByte() {
        let body =
            #"{"model": "assistant", "seed": 12345678901234567890, "temperature": 0.70, "messages": [{"role":"user","content":"a \"quoted\" }, ] text"}]}"#
        let edited = edit(body, set: [("model", #""llama-v7""#)])
        #expect(
            edited
                == #"{"model": "llama-v7","seed": 12345678901234567890,"temperature": 0.70,"messages": [{"role":"user","content":"a \"quoted\" }, ] text"}]}"#
        )
    }

    @Test func appendsMissingMembersAndRemovesNamedOnes() {
        let body = #"{"stream":true,"stream_options":{"include_usage":true},"model":"m"}"#
        let edited = edit(body, set: [("stream", "false"), ("user", #""u""#)], remove: ["stream_options"])
        #expect(edited == #"{"stream":false,"model":"m","user":"u"}"#)
        #expect(edit("{}", set: [("model", #""x""#)]) == #"{"model":"x"}"#)
        #expect(edit(" { } ", set: []) == "{}")
    }

    @Test func escapedKeysAreMatchedUnescaped() {
        #expect(edit(#"{"mod\u0065l":"a","b":1}"#, set: [("model", #""z""#)]) == #"{"mod\u0065l":"z","b":1}"#)
    }

    @Test func refusesWhatIsNotOneObject() {
        for text in ["[1,2]", "\"model\"", "{\"a\":1", "{\"a\":1}}", "{\"a\" 1}", "", "{\"a\":}"] {
            #expect(edit(text, set: [("model", "1")]) == nil, "accepted \(text)")
        }
    }

    @Test func membersReportKeysAndValueRanges() throws {
        let bytes = Array(#"{"a": [1, {"b": "}"}], "c" :null}"#.utf8)
        let members = try #require(JSONEdit.members(bytes))
        #expect(members.map(\.key) == ["a", "c"])
        #expect(String(decoding: bytes[members[0].value], as: UTF8.self) == #"[1, {"b": "}"}]"#)
        #expect(String(decoding: bytes[members[1].value], as: UTF8.self) == "null")
    }
}
