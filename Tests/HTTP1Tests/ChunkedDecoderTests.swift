import HTTP1
import Testing

struct ChunkedRow: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    var payload: String
    var testDescription: String { name }
}

let validChunked: [ChunkedRow] = [
    ChunkedRow(name: "one chunk", raw: "5\r\nhello\r\n0\r\n\r\n", payload: "hello"),
    ChunkedRow(
        name: "two chunks, hex sizes",
        raw: "a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n",
        payload: "0123456789abcdefghijk"
    ),
    ChunkedRow(name: "empty body", raw: "0\r\n\r\n", payload: ""),
    ChunkedRow(name: "leading zeros", raw: "0003\r\nabc\r\n000\r\n\r\n", payload: "abc"),
    ChunkedRow(
        name: "extensions",
        raw: "3;a=1;b\r\nabc\r\n2 ; c = \"q\\\"x\" ;d=tok\r\nde\r\n0;last\r\n\r\n",
        payload: "abcde"
    ),
    ChunkedRow(name: "trailers", raw: "3\r\nabc\r\n0\r\nX-Checksum: 123\r\nX-Other:  v \r\n\r\n", payload: "abc"),
    ChunkedRow(name: "data containing CRLF", raw: "4\r\n\r\n\r\n\r\n0\r\n\r\n", payload: "\r\n\r\n"),
]

@Test(arguments: validChunked)
func decodesChunkedBodyWhateverTheSplits(_ row: ChunkedRow) {
    let input = Array(row.raw.utf8)
    let expected = Array(row.payload.utf8)
    let whole = decodeChunked(input) { $0 }
    #expect(whole.error == nil)
    #expect(whole.complete)
    #expect(whole.payload == expected)
    #expect(whole.consumed == input.count)

    let byteByByte = decodeChunked(input) { _ in 1 }
    #expect(byteByByte.payload == expected)
    #expect(byteByByte.complete)
    #expect(byteByByte.consumed == input.count)

    var rng = SplitMix64(seed: 42)
    for _ in 0..<50 {
        let random = decodeChunked(input) { left in Int.random(in: 1...max(1, min(left, 7)), using: &rng) }
        #expect(random.payload == expected)
        #expect(random.complete)
    }
}

@Test func stopsAtTheEndOfTheBody() throws {
    let input = Array("3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n".utf8)
    var decoder = ChunkedDecoder(maxBodyBytes: 100)
    let progress = try input.withUnsafeBytes { try decoder.decode($0).get() }
    #expect(progress.isComplete)
    #expect(progress.consumed == 13)
    #expect(progress.data == [3..<6])
    #expect(decoder.isComplete)
    #expect(decoder.bodyBytes == 3)
    let again = try input.withUnsafeBytes { try decoder.decode(UnsafeRawBufferPointer(rebasing: $0[13...])).get() }
    #expect(again == ChunkedDecoder.Progress(consumed: 0, data: [], isComplete: true))
}

@Test func incompleteInputIsConsumedWithoutPayloadLoss() throws {
    var decoder = ChunkedDecoder(maxBodyBytes: 100)
    let first = Array("5\r\nhel".utf8)
    let p1 = try first.withUnsafeBytes { try decoder.decode($0).get() }
    #expect(p1 == ChunkedDecoder.Progress(consumed: 6, data: [3..<6], isComplete: false))
    let second = Array("lo\r\n0\r\n\r\n".utf8)
    let p2 = try second.withUnsafeBytes { try decoder.decode($0).get() }
    #expect(p2 == ChunkedDecoder.Progress(consumed: second.count, data: [0..<2], isComplete: true))
}

struct BadChunked: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    var expected: ErrorKind
    var maxBodyBytes = 1 << 20
    var testDescription: String { name }
}

let badChunked: [BadChunked] = [
    BadChunked(name: "no size", raw: "\r\nabc\r\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "not hex", raw: "g\r\n", expected: .badRequest),
    BadChunked(name: "sign", raw: "+3\r\nabc\r\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "0x prefix", raw: "0x3\r\nabc\r\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "17 hex digits", raw: "00000000000000003\r\nabc\r\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "16 hex digits over the limit", raw: "ffffffffffffffff\r\n", expected: .bodyTooLarge),
    BadChunked(name: "bare LF after size", raw: "3\nabc\r\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "bare CR after size", raw: "3\rabc\r\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "trailing space after size", raw: "3 \r\nabc\r\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "data longer than size", raw: "3\r\nabcd\r\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "bare CR after data", raw: "3\r\nabc\r0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "bare LF after data", raw: "3\r\nabc\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "LF in extension", raw: "3;a\nb\r\nabc\r\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "extension without name", raw: "3;=x\r\nabc\r\n0\r\n\r\n", expected: .badRequest),
    BadChunked(name: "unterminated quoted extension", raw: "3;a=\"x\r\nabc\r\n", expected: .badRequest),
    BadChunked(
        name: "extension line too long",
        raw: "3;a=" + String(repeating: "x", count: 1100) + "\r\n",
        expected: .badRequest
    ),
    BadChunked(name: "obs-fold trailer", raw: "0\r\nX: a\r\n b\r\n\r\n", expected: .badRequest),
    BadChunked(name: "trailer without colon", raw: "0\r\nOops\r\n\r\n", expected: .badRequest),
    BadChunked(name: "bare LF at the end", raw: "0\r\n\n", expected: .badRequest),
    BadChunked(
        name: "trailers too large",
        raw: "0\r\n" + String(repeating: "X-T: 0123456789\r\n", count: 600),
        expected: .badRequest
    ),
    BadChunked(
        name: "payload over the limit",
        raw: "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n",
        expected: .bodyTooLarge,
        maxBodyBytes: 10
    ),
]

@Test(arguments: badChunked)
func refusesMalformedChunkedBody(_ row: BadChunked) {
    let input = Array(row.raw.utf8)
    let whole = decodeChunked(input, maxBodyBytes: row.maxBodyBytes) { $0 }
    #expect(whole.error?.kind == row.expected, "\(String(describing: whole.error))")
    let byteByByte = decodeChunked(input, maxBodyBytes: row.maxBodyBytes) { _ in 1 }
    #expect(byteByByte.error == whole.error)
}

@Test func exactlyTheBodyLimitIsAccepted() {
    let result = decodeChunked(Array("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n".utf8), maxBodyBytes: 10) { $0 }
    #expect(result.complete)
    #expect(result.payload == Array("helloworld".utf8))
}

@Test func failureIsSticky() {
    var decoder = ChunkedDecoder(maxBodyBytes: 100)
    let bad = Array("zz".utf8)
    let good = Array("0\r\n\r\n".utf8)
    let first = bad.withUnsafeBytes { decoder.decode($0) }
    let second = good.withUnsafeBytes { decoder.decode($0) }
    #expect(throws: HTTPParseError.self) { try first.get() }
    #expect(throws: HTTPParseError.self) { try second.get() }
}
