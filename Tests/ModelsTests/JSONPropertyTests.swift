@_exported import TestSupport
import Testing

@testable import Models

private func randomDouble(_ rng: inout SplitMix64) -> Double {
    switch rng.next() % 6 {
    case 0: return Double(Int64.random(in: -1_000_000...1_000_000, using: &rng))
    case 1: return Double(Int64.random(in: -(1 << 53)...(1 << 53), using: &rng))
    case 2: return Double.random(in: -1...1, using: &rng)
    case 3: return Double(Int.random(in: -99_999...99_999, using: &rng)) / 100
    default:
        // Any finite bit pattern: subnormals, huge and tiny exponents.
        while true {
            let value = Double(bitPattern: rng.next())
            if value.isFinite { return value }
        }
    }
}

private func randomString(_ rng: inout SplitMix64) -> String {
    let pool: [Unicode.Scalar] = [
        "a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{0}", "\u{1F}", "\u{7F}", "é", "€",
        "\u{FFFF}", "😀", "\u{10FFFF}", "\u{2028}",
    ]
    var scalars = String.UnicodeScalarView()
    for _ in 0..<Int.random(in: 0...12, using: &rng) {
        scalars.append(pool[Int.random(in: 0..<pool.count, using: &rng)])
    }
    return String(scalars)
}

private func randomJSON(_ rng: inout SplitMix64, depth: Int) -> JSON {
    let kind = depth >= 5 ? rng.next() % 4 : rng.next() % 6
    switch kind {
    case 0: return .null
    case 1: return .bool(rng.next() & 1 == 0)
    case 2: return .number(randomDouble(&rng))
    case 3: return .string(randomString(&rng))
    case 4: return .array((0..<Int.random(in: 0...5, using: &rng)).map { _ in randomJSON(&rng, depth: depth + 1) })
    default:
        var object = JSONObject()
        for k in 0..<Int.random(in: 0...5, using: &rng) {
            object.members.append((key: randomString(&rng) + "#\(k)", value: randomJSON(&rng, depth: depth + 1)))
        }
        return .object(object)
    }
}

struct JSONPropertyTests {
    @Test func serializeThenParseIsIdentity() throws {
        var rng = SplitMix64(seed: 0x5157_C4A2_D00D)
        for _ in 0..<3000 {
            let value = randomJSON(&rng, depth: 0)
            let text = value.serialized()
            let parsed = try JSONParser.parse(text)
            #expect(parsed == value, "\(value)")
            // Byte-stable: the same value always serializes the same way.
            #expect(parsed.serialized() == text)
        }
    }

    @Test func numbersRoundTripBitForBit() throws {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<20_000 {
            let number = randomDouble(&rng)
            let parsed = try JSONParser.parse(JSON.number(number).serialized())
            #expect(parsed.doubleValue?.bitPattern == number.bitPattern, "\(number)")
        }
    }

    @Test func randomBytesNeverCrash() {
        var rng = SplitMix64(seed: 7)
        let alphabet =
            Array("{}[],:\"\\ -+.0123456789eEtrufalsn\u{0}".utf8) + [0xC3, 0xA9, 0xED, 0xF0, 0x9F, 0x80, 0xFF]
        var accepted = 0
        for round in 0..<20_000 {
            let length = Int.random(in: 0...40, using: &rng)
            let bytes: [UInt8] = (0..<length).map { _ in
                round % 2 == 0
                    ? UInt8.random(in: 0...255, using: &rng) : alphabet[Int.random(in: 0..<alphabet.count, using: &rng)]
            }
            if let value = try? JSONParser.parse(bytes) {
                accepted += 1
                #expect((try? JSONParser.parse(value.serialized())) == value)
            }
        }
        #expect(accepted > 0)
    }

    @Test func mutatedValidTextNeverCrashes() {
        var rng = SplitMix64(seed: 99)
        for _ in 0..<2000 {
            var bytes = randomJSON(&rng, depth: 0).serialized()
            guard !bytes.isEmpty else { continue }
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { bytes.removeLast(Int.random(in: 0...bytes.count, using: &rng)) }
            if let value = try? JSONParser.parse(bytes) {
                #expect((try? JSONParser.parse(value.serialized())) == value)
            } else {
                #expect(throws: JSONError.self) { try JSONParser.parse(bytes) }
            }
        }
    }
}

struct JSONSerializationTests {
    @Test(
        arguments: [
            (JSON.number(1), "1"),
            (.number(-0.0), "-0"),
            (.number(3.0), "3"),
            (.number(-42), "-42"),
            (.number(0.1), "0.1"),
            (.number(1e-7), "1e-07"),
            (.number(9_007_199_254_740_991), "9007199254740991"),
            (.number(9_007_199_254_740_992), "9007199254740992.0"),
            (.number(1e16), "1e+16"),
            (.number(1e300), "1e+300"),
            (.number(.nan), "null"),
            (.number(.infinity), "null"),
            (.number(-.infinity), "null"),
            (.string("a\"b\\c\n\r\t\u{8}\u{1}\u{1F}é/"), #""a\"b\\c\n\r\t\u0008\u0001\u001Fé/""#),
            ([1, "x", .null, true, ["k": [:]]], #"[1,"x",null,true,{"k":{}}]"#),
            (["b": 1, "a": 2], #"{"b":1,"a":2}"#),
        ] as [(JSON, String)]
    )
    func serializes(_ value: JSON, _ text: String) {
        #expect(String(decoding: value.serialized(), as: UTF8.self) == text)
        #expect(value.description == text)
    }
}

struct JSONPointerTests {
    // The example document of RFC 6901 section 5.
    let document: JSON = [
        "foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8,
    ]

    @Test(
        arguments: [
            ("", nil), ("/foo", ["bar", "baz"]), ("/foo/0", "bar"), ("/", 0), ("/a~1b", 1), ("/c%d", 2), ("/e^f", 3),
            ("/g|h", 4), ("/i\\j", 5), ("/k\"l", 6), ("/ ", 7), ("/m~0n", 8),
        ] as [(String, JSON?)]
    )
    func resolvesRFCExamples(_ pointer: String, _ expected: JSON?) {
        #expect(document.value(atPointer: pointer) == (expected ?? document))
    }

    @Test(arguments: ["/foo/2", "/foo/-", "/foo/01", "/foo/+1", "/foo/bar", "/nope", "/foo/0/x", "nope", "/~2", "/a~"])
    func leadsNowhere(_ pointer: String) {
        #expect(document.value(atPointer: pointer) == nil)
    }

    @Test func checksPointerText() throws {
        #expect(throws: JSONPointerError.self) { try JSONPointer("instances") }
        #expect(throws: JSONPointerError.self) { try JSONPointer("/a~2") }
        let pointer = try JSONPointer("/instances/0/customer_id")
        #expect(pointer.tokens == ["instances", "0", "customer_id"])
        let escaped = try JSONPointer("/a~1b/m~0n")
        #expect(escaped.tokens == ["a/b", "m~n"])
        #expect(escaped.description == "/a~1b/m~0n")
        do {
            _ = try JSONPointer("/x~")
        } catch {
            #expect(error.description == "invalid JSON pointer '/x~': '~' must be followed by '0' or '1'")
        }
        let body = try JSONParser.parse(#"{"instances": [{"customer_id": 1001}]}"#)
        #expect(body.value(at: pointer) == 1001)
    }
}
