import Testing

@testable import Models

private func parse(_ text: String, maxDepth: Int = JSONParser.defaultMaxDepth) throws(JSONError) -> JSON {
    try JSONParser.parse(Array(text.utf8), maxDepth: maxDepth)
}

private func parseError(_ bytes: [UInt8]) -> JSONError? {
    do {
        _ = try JSONParser.parse(bytes)
        return nil
    } catch {
        return error
    }
}

struct JSONParserTests {
    @Test(
        arguments: [
            ("null", JSON.null),
            ("true", true),
            (" \t\r\nfalse \n", false),
            ("0", 0),
            ("-0", 0),
            ("1E-7", 1e-7),
            ("1e308", 1e308),
            ("1.5e+3", 1500),
            ("-12.25", -12.25),
            ("0.1", 0.1),
            ("123456789012345678901234567890", 1.2345678901234568e29),
            ("9007199254740993", 9_007_199_254_740_992),
            ("2.2250738585072014e-308", 2.2250738585072014e-308),
            ("5e-324", .number(.leastNonzeroMagnitude)),
            ("1e-400", 0),
            ("1.7976931348623157e308", 1.7976931348623157e308),
            ("0.30000000000000004", 0.30000000000000004),
            ("123456789012345678", 123_456_789_012_345_678),
            ("1234567890123456789", 1_234_567_890_123_456_789),
            ("0.123456789012345678", 0.123456789012345678),
            ("-98765.4321098765432e-3", -98.7654321098765432),
            ("0.136986", 0.136986),
            ("\"\"", ""),
            ("\"abcdefghijklmno\"", "abcdefghijklmno"),
            ("\"abcdefghijklmnop\"", "abcdefghijklmnop"),
            ("{\"\": \"\"}", ["": ""]),
            (#""a\"b\\c\/d\b\f\n\r\t""#, "a\"b\\c/d\u{8}\u{c}\n\r\t"),
            (#""\u0041\u00e9\u20AC""#, "Aé€"),
            (#""\u0000""#, "\u{0}"),
            (#""\uD83D\uDE00""#, "😀"),
            ("\"é😀\"", "é😀"),
            ("[]", []),
            ("{}", [:]),
            ("[1, [2, [3]], {\"a\": null}]", [1, [2, [3]], ["a": .null]]),
            ("{ \"b\" : 1 , \"a\" : [ true , false ] }", ["b": 1, "a": [true, false]]),
        ] as [(String, JSON)]
    )
    func acceptsValidText(_ text: String, _ expected: JSON) throws {
        #expect(try parse(text) == expected)
    }

    @Test func negativeZeroKeepsItsSign() throws {
        #expect(try parse("-0").doubleValue?.sign == .minus)
        #expect(try parse("-0.0e5").doubleValue?.sign == .minus)
    }

    @Test func objectsKeepDocumentOrder() throws {
        let value = try parse(#"{"z": 1, "a": 2, "m": 3}"#)
        #expect(value.objectValue?.keys == ["z", "a", "m"])
        #expect(value["a"] == 2)
        #expect(value["missing"] == nil)
    }

    @Test(arguments: [
        ("", "empty input at byte 0; expected a JSON value"),
        ("   ", "unexpected end of input at byte 3; expected a value"),
        ("{\"a\": x}", "unexpected character 'x' at byte 6; expected a value"),
        ("[1,]", "unexpected character ']' at byte 3; expected a value"),
        ("{\"a\":1,}", "unexpected character '}' at byte 7; expected a string key"),
        ("[1 2]", "unexpected character '2' at byte 3; expected ',' or ']'"),
        ("{\"a\" 1}", "unexpected character '1' at byte 5; expected ':'"),
        ("{1:2}", "unexpected character '1' at byte 1; expected a string key"),
        ("[1", "unexpected end of input at byte 2; expected ',' or ']'"),
        ("{\"a\":1", "unexpected end of input at byte 6; expected ',' or '}'"),
        ("01", "leading zeros are not allowed in numbers at byte 0"),
        ("-01", "leading zeros are not allowed in numbers at byte 0"),
        ("-", "unexpected end of input at byte 1; expected a digit after '-'"),
        ("1.", "unexpected end of input at byte 2; expected a digit after '.'"),
        ("1.e3", "unexpected character 'e' at byte 2; expected a digit after '.'"),
        ("1e", "unexpected end of input at byte 2; expected a digit in the exponent"),
        ("1e+", "unexpected end of input at byte 3; expected a digit in the exponent"),
        (".5", "unexpected character '.' at byte 0; expected a value"),
        ("+1", "unexpected character '+' at byte 0; expected a value"),
        ("NaN", "unexpected character 'N' (NaN and Infinity are not JSON) at byte 0; expected a value"),
        ("Infinity", "unexpected character 'I' (NaN and Infinity are not JSON) at byte 0; expected a value"),
        ("-Infinity", "unexpected character 'I' at byte 1; expected a digit after '-'"),
        ("1e400", "number 1e400 is out of range for a 64-bit float at byte 0"),
        ("tru", "unexpected end of input at byte 3; expected 'true'"),
        ("nul!", "unexpected character '!' at byte 3; expected 'null'"),
        ("True", "unexpected character 'T' at byte 0; expected a value"),
        ("'a'", "unexpected character ''' at byte 0; expected a value"),
        ("1 2", "unexpected character '2' after the JSON value at byte 2; expected end of input"),
        ("{} x", "unexpected character 'x' after the JSON value at byte 3; expected end of input"),
        ("\"abc", "unterminated string at byte 0; expected '\"' before the end of input"),
        ("\"a\\x\"", "invalid escape '\\x' at byte 2; expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX"),
        ("\"\\u12G4\"", "invalid character 'G' in \\u escape at byte 5; expected 4 hex digits"),
        ("\"\\u12", "unexpected end of input in \\u escape at byte 5; expected 4 hex digits"),
        (
            "\"\\uD83D\"",
            "lone high surrogate in \\u escape at byte 1; expected a low surrogate \\uDC00-\\uDFFF to follow"
        ),
        (
            "\"\\uD83Dx\"",
            "lone high surrogate in \\u escape at byte 1; expected a low surrogate \\uDC00-\\uDFFF to follow"
        ),
        (
            "\"\\uD83D\\u0041\"",
            "high surrogate followed by a non-low-surrogate escape at byte 7; expected a low surrogate \\uDC00-\\uDFFF"
        ),
        ("\"\\uDE00\"", "lone low surrogate in \\u escape at byte 1"),
        ("\"a\tb\"", "control character 0x09 in a string at byte 2; expected an escape such as \\n or \\u0009"),
        ("\"a\nb\"", "control character 0x0A in a string at byte 2; expected an escape such as \\n or \\u000A"),
        ("{\"a\":1,\"a\":2}", "duplicate key 'a' at byte 7"),
        ("\u{FEFF}{}", "byte order mark is not allowed at byte 0; expected a JSON value"),
        ("\u{A0}1", "unexpected byte 0xC2 at byte 0; expected a value"),
        ("[1]\u{0}", "unexpected byte 0x00 after the JSON value at byte 3; expected end of input"),
    ])
    func refusesInvalidText(_ text: String, _ message: String) {
        #expect(parseError(Array(text.utf8))?.description == message)
    }

    @Test(
        arguments: [
            ([0x22, 0xC0, 0xAF, 0x22], "invalid UTF-8 byte 0xC0 at byte 1"),  // overlong '/'
            ([0x22, 0xE0, 0x80, 0xAF, 0x22], "invalid UTF-8 byte 0x80 at byte 2"),  // overlong 3-byte
            ([0x22, 0xED, 0xA0, 0x80, 0x22], "invalid UTF-8 byte 0xA0 at byte 2"),  // encoded surrogate
            ([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], "invalid UTF-8 byte 0x90 at byte 2"),  // above U+10FFFF
            ([0x22, 0xF5, 0x80, 0x80, 0x80, 0x22], "invalid UTF-8 byte 0xF5 at byte 1"),
            ([0x22, 0x80, 0x22], "invalid UTF-8 byte 0x80 at byte 1"),  // lone continuation
            ([0x22, 0xE2, 0x82, 0x22], "invalid UTF-8 byte 0x22 at byte 3"),  // truncated by the quote
            ([0x22, 0xE2, 0x82], "truncated UTF-8 sequence at byte 1"),
            ([0x22, 0x5C, 0x6E, 0xC3, 0x28, 0x22], "invalid UTF-8 byte 0x28 at byte 4"),  // after an escape
        ] as [([UInt8], String)]
    )
    func refusesInvalidUTF8(_ bytes: [UInt8], _ message: String) {
        #expect(parseError(bytes)?.description == message)
    }

    @Test func duplicateKeysInLargeObjectsAreRefused() {
        let members = (0..<40).map { "\"k\($0)\": \($0)" } + ["\"k7\": 0"]
        let error = parseError(Array(("{" + members.joined(separator: ",") + "}").utf8))
        #expect(error?.reason == "duplicate key 'k7'")
    }

    @Test func duplicateKeysAreRefusedAlikeInSmallAndLargeObjects() {
        // Small objects compare keys pairwise and large ones hash them: both report the first key
        // that repeats an earlier one, and compare keys as Swift strings do.
        let filler = (0..<20).map { "\"k\($0)\":0," }.joined()
        for prefix in ["", filler] {
            let offset = prefix.utf8.count
            #expect(
                parseError(Array(("{" + prefix + #""a":1,"b":2,"b":3,"a":4}"#).utf8))?.description
                    == "duplicate key 'b' at byte \(offset + 13)"
            )
            #expect(
                parseError(Array(("{" + prefix + #""a":1,"\u0061":2}"#).utf8))?.description
                    == "duplicate key 'a' at byte \(offset + 7)"
            )
            #expect(
                parseError(Array(("{" + prefix + "\"\u{E9}\":1,\"e\u{301}\":2}").utf8))?.description
                    == "duplicate key 'e\u{301}' at byte \(offset + 8)"
            )
        }
    }

    @Test func documentsOutgrowingTheFirstStacksParse() throws {
        // More values, keys and open containers than the parser's first, on-stack storage holds.
        let numbers = (0..<100).map { Double($0) / 4 }
        let members = (0..<40).map { "\"key\($0)\": [\($0), \"v\($0)\"]" }
        let text =
            "{" + members.joined(separator: ", ") + ", \"numbers\": ["
            + numbers.map { "\($0)" }.joined(separator: ",") + "]}"
        let value = try parse(text)
        #expect(value.objectValue?.count == 41)
        #expect(value["key0"] == [0, "v0"])
        #expect(value["key39"] == [39, "v39"])
        #expect(value["numbers"] == .array(numbers.map { .number($0) }))

        let deep = String(repeating: #"{"a":["#, count: 30) + "1" + String(repeating: "]}", count: 30)
        var expected: JSON = 1
        for _ in 0..<30 { expected = ["a": [expected]] }
        #expect(try parse(deep) == expected)

        let long = (0..<10_000).map { JSON.number(Double($0)) }
        #expect(try parse("[" + (0..<10_000).map { "\($0)" }.joined(separator: ",") + "]") == .array(long))

        // An error after the stacks moved to the heap reports the same place.
        let broken = "[" + (0..<100).map { "\"s\($0)\"" }.joined(separator: ",") + ",]"
        #expect(
            parseError(Array(broken.utf8))?.description
                == "unexpected character ']' at byte \(broken.utf8.count - 1); expected a value"
        )
    }

    @Test func nestingIsLimited() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try parse(ok) }
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(parseError(Array(deep.utf8))?.description == "nesting deeper than 64 levels at byte 64")
        let objects = String(repeating: "{\"a\":", count: 65) + "1" + String(repeating: "}", count: 65)
        #expect(parseError(Array(objects.utf8))?.reason == "nesting deeper than 64 levels")
        #expect(throws: JSONError.self) { try parse("[[1]]", maxDepth: 1) }
        #expect(try parse("[[1]]", maxDepth: 2) == [[1]])
        // Deep input is refused without recursion, however deep it is.
        let hostile = Array(repeating: UInt8(ascii: "["), count: 1_000_000)
        #expect(parseError(hostile)?.offset == 64)
        let allowed = String(repeating: "[", count: 1_000) + String(repeating: "]", count: 1_000)
        #expect(throws: Never.self) { try parse(allowed, maxDepth: 1_000) }
    }

    @Test func parsesFromRawBufferAndString() throws {
        let bytes: [UInt8] = Array(#"{"instances": [[1, 2.5, null]]}"#.utf8)
        let fromBuffer = try bytes.withUnsafeBytes { buffer in try JSONParser.parse(buffer) }
        #expect(fromBuffer == ["instances": [[1, 2.5, .null]]])
        #expect(try JSONParser.parse("[1]") == [1])
    }

    @Test func equalityIgnoresMemberOrder() {
        let a: JSON = ["a": 1, "b": [1, 2]]
        let b: JSON = ["b": [1, 2], "a": 1]
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(a != ["a": 1, "b": [2, 1]])
        #expect(a != ["a": 1])
    }
}
