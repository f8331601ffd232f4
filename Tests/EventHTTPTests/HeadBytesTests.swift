import HTTP1
import Testing

@testable import EventHTTP

@Suite struct HeadBytesTests {
    @Test(arguments: [nil, 0, 7, 10, 99, 200, 1234, 1 << 20, Int.max] as [Int?])
    func endsAHeadAsTheSerializerDoes(contentLength: Int?) {
        var expected: [UInt8] = Array("x: y\r\n".utf8)
        var written = expected
        HTTPSerializer.appendEnd(&expected, contentLength: contentLength)
        HeadBytes.appendEnd(&written, contentLength: contentLength)
        #expect(String(decoding: written, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
    }

    @Test(arguments: [
        ("", 0, false), ("GET / HTTP/1.1", 0, false), ("GET / HTTP/1.1\r\n", 0, true),
        ("0123456789abcdef\n", 0, true), ("0123456789abcdef\n", 17, false), ("\nabcdefghijklmnop", 1, false),
        ("\nabcdefghijklmnop", 0, true), ("abcdefgh\nijklmnopq", 3, true), ("abcdefgh\u{8A}ijk", 0, false),
    ])
    func findsALineFeedFromAnOffset(text: String, from: Int, expected: Bool) {
        let found = Array(text.utf8).withUnsafeBytes { HeadBytes.containsLineFeed($0, from: from) }
        #expect(found == expected)
    }

    @Test func keepsThePrefixOnlyWhenAskedAndMarked() {
        var scratch = HeadScratch()
        var kept = scratch.reset(keepingPrefix: true)
        #expect(!kept)  // nothing marked yet
        scratch.bytes.append(contentsOf: Array("HTTP/1.1 200 OK\r\n".utf8))
        scratch.markPrefix()
        scratch.bytes.append(contentsOf: Array("a: b\r\n\r\n".utf8))
        kept = scratch.reset(keepingPrefix: true)
        #expect(kept)
        #expect(String(decoding: scratch.bytes, as: UTF8.self) == "HTTP/1.1 200 OK\r\n")
        kept = scratch.reset(keepingPrefix: false)
        #expect(!kept)
        #expect(scratch.bytes.isEmpty)
        kept = scratch.reset(keepingPrefix: true)
        #expect(!kept)  // the prefix was dropped with the bytes
    }
}
