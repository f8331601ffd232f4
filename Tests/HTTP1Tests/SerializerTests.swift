import HTTP1
import Testing

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@Test func responseHeadExactBytes() {
    let headers = HTTPHeaders([("Content-Type", "application/json"), ("x-switchyard-version", "v1")])
    #expect(
        text(HTTPSerializer.responseHead(status: 200, headers: headers, contentLength: 27))
            == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-switchyard-version: v1\r\ncontent-length: 27\r\n\r\n"
    )
    #expect(
        text(HTTPSerializer.responseHead(status: 204, headers: HTTPHeaders(), contentLength: nil))
            == "HTTP/1.1 204 No Content\r\n\r\n"
    )
    #expect(
        text(HTTPSerializer.responseHead(status: 799, headers: HTTPHeaders(), contentLength: 0))
            == "HTTP/1.1 799 Unknown\r\ncontent-length: 0\r\n\r\n"
    )
    #expect(
        text(HTTPSerializer.responseHead(status: 413, headers: HTTPHeaders(), contentLength: 1_234_567_890))
            == "HTTP/1.1 413 Content Too Large\r\ncontent-length: 1234567890\r\n\r\n"
    )
}

@Test func requestHeadExactBytes() {
    let headers = HTTPHeaders([("Host", "127.0.0.1:9001"), ("x-request-id", "r1")])
    #expect(
        text(
            HTTPSerializer.requestHead(
                method: "POST",
                target: "/v1/models/churn:predict",
                headers: headers,
                contentLength: 5
            )
        )
            == "POST /v1/models/churn:predict HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nx-request-id: r1\r\ncontent-length: 5\r\n\r\n"
    )
    #expect(
        text(HTTPSerializer.requestHead(method: "GET", target: "/a b\r\n", headers: HTTPHeaders(), contentLength: nil))
            == "GET /a%20b%0D%0A HTTP/1.1\r\n\r\n"
    )
}

@Test func headerInjectionIsDropped() {
    let headers = HTTPHeaders([
        ("X-Ok", "fine"),
        ("X-Evil", "a\r\nSet-Cookie: pwned=1"),
        ("X-Lf", "a\nb"),
        ("X-Cr", "a\rb"),
        ("X-Nul", "a\u{0}b"),
        ("Bad Name", "v"),
        ("Bad:Name", "v"),
        ("", "v"),
        ("X-Last", "caf\u{E9}"),
    ])
    #expect(
        text(HTTPSerializer.responseHead(status: 200, headers: headers, contentLength: nil))
            == "HTTP/1.1 200 OK\r\nX-Ok: fine\r\nX-Last: caf\u{E9}\r\n\r\n"
    )
}

@Test func explicitContentLengthReplacesFramingHeaders() {
    let headers = HTTPHeaders([("Content-Length", "99"), ("Transfer-Encoding", "chunked"), ("X", "y")])
    #expect(
        text(HTTPSerializer.responseHead(status: 200, headers: headers, contentLength: 3))
            == "HTTP/1.1 200 OK\r\nX: y\r\ncontent-length: 3\r\n\r\n"
    )
    #expect(
        text(HTTPSerializer.responseHead(status: 200, headers: headers, contentLength: nil))
            == "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n"
    )
}

@Test(arguments: [
    100, 101, 200, 201, 202, 203, 204, 205, 206, 301, 302, 303, 304, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417,
    421, 422, 423, 424, 425, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505,
])
func commonStatusesHaveReasonPhrases(_ status: Int) {
    #expect(HTTPSerializer.reasonPhrase(status) != "Unknown")
}

@Test func reasonPhraseSamples() {
    #expect(HTTPSerializer.reasonPhrase(404) == "Not Found")
    #expect(HTTPSerializer.reasonPhrase(431) == "Request Header Fields Too Large")
    #expect(HTTPSerializer.reasonPhrase(505) == "HTTP Version Not Supported")
    #expect(HTTPSerializer.reasonPhrase(299) == "Unknown")
}

@Test func serializedHeadParsesBack() throws {
    let headers = HTTPHeaders([("Host", "a"), ("X-A", "1")])
    let bytes = HTTPSerializer.requestHead(method: "PUT", target: "/x?y=1", headers: headers, contentLength: 7)
    let head = try #require(parseRequest(bytes).head)
    #expect(head.method == "PUT")
    #expect(head.target == "/x?y=1")
    #expect(head.framing == .contentLength(7))
    let response = HTTPSerializer.responseHead(status: 502, headers: headers, contentLength: 0)
    let parsed = try #require(parseResponse(response).head)
    #expect(parsed.status == 502)
    #expect(parsed.reason == "Bad Gateway")
    #expect(parsed.framing == .contentLength(0))
}

@Test func hopByHopHeadersAreRemoved() {
    let headers = HTTPHeaders([
        ("Host", "a"), ("Connection", "keep-alive, X-Secret"), ("Keep-Alive", "timeout=5"), ("x-secret", "1"),
        ("TE", "trailers"), ("Transfer-Encoding", "chunked"), ("X-Keep", "yes"),
    ])
    #expect(HopByHop.removing(from: headers) == HTTPHeaders([("Host", "a"), ("X-Keep", "yes")]))
    #expect(HopByHop.isHopByHop("Proxy-Connection"))
    #expect(!HopByHop.isHopByHop("content-length"))
}

/// The length-dispatched check must agree with the documented set, in any case, and refuse
/// names that only share a length or differ by a non-letter byte.
@Test(arguments: [
    "connection", "Keep-Alive", "PROXY-CONNECTION", "te", "Trailer", "transfer-encoding", "Upgrade",
    "proxy-authenticate", "Proxy-Authorization", "content-length", "host", "tf", "trailers", "upgradE ",
    "keep_alive", "connectioN", "x-request-id", "",
])
func hopByHopAgreesWithItsNameSet(name: String) {
    let lowered = String(decoding: name.utf8.map { $0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0 }, as: UTF8.self)
    let expected = HopByHop.names.contains(lowered)
    #expect(HopByHop.isHopByHop(name) == expected)
}

@Test func asciiCaseInsensitiveEqualityFoldsOnlyLetters() {
    #expect("Content-Length".asciiCaseInsensitiveEquals("content-length"))
    #expect("X-Request-ID".asciiCaseInsensitiveEquals("x-request-id"))
    #expect(!"keep\ralive".asciiCaseInsensitiveEquals("keep-alive"))  // '\r' | 0x20 is '-': no fold
    #expect(!"a@".asciiCaseInsensitiveEquals("a`"))  // 0x40 and 0x60 differ only in bit 0x20
    #expect(!"abc".asciiCaseInsensitiveEquals("abcd"))
    #expect("".asciiCaseInsensitiveEquals(""))
    // Heap strings (over 15 bytes) and inline small strings both compare through their bytes.
    let long = String(repeating: "Ab", count: 40)
    #expect(long.asciiCaseInsensitiveEquals(String(repeating: "aB", count: 40)))
    #expect("é".asciiCaseInsensitiveEquals("é") && !"É".asciiCaseInsensitiveEquals("é"))
}

@Test func headPiecesMatchTheWholeHead() {
    let headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "9"), ("bad name", "x")])
    var out: [UInt8] = []
    HTTPSerializer.appendStatusLine(&out, status: 404)
    for field in headers {
        HTTPSerializer.appendField(&out, name: field.name, value: field.value, droppingFraming: true)
    }
    HTTPSerializer.appendEnd(&out, contentLength: 3)
    #expect(out == HTTPSerializer.responseHead(status: 404, headers: headers, contentLength: 3))
    out.removeAll()
    HTTPSerializer.appendRequestLine(&out, method: "GET", target: "/a?b=c d")
    HTTPSerializer.appendEnd(&out, contentLength: nil)
    #expect(text(out) == "GET /a?b=c%20d HTTP/1.1\r\n\r\n")
}

/// Every byte is a token byte exactly when RFC 9110 §5.6.2 lists it (the check is a bitmap).
@Test func tokenBytesAreExactlyTheRFCsTchars() {
    let tchars = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
    for byte in UInt8(0)...0x7F {
        let name = String(decoding: [byte], as: UTF8.self)
        #expect(HTTPSerializer.isToken(name) == tchars.contains(byte), "byte \(byte)")
    }
}

/// A CR, LF or NUL anywhere in a long value (the check reads eight bytes at a time) drops the field.
@Test(arguments: [UInt8(0x0D), 0x0A, 0x00])
func unsafeByteAnywhereInALongValueDropsTheField(_ bad: UInt8) {
    for position in 0..<20 {
        var value = Array("abcdefghijklmnopqrst".utf8)
        value[position] = bad
        var out: [UInt8] = []
        HTTPSerializer.appendField(
            &out,
            name: "x-test",
            value: String(decoding: value, as: UTF8.self),
            droppingFraming: false
        )
        #expect(out.isEmpty, "position \(position)")
    }
    var out: [UInt8] = []
    HTTPSerializer.appendField(&out, name: "x-test", value: "abcdefghijklmnopqrst\t1", droppingFraming: false)
    #expect(String(decoding: out, as: UTF8.self) == "x-test: abcdefghijklmnopqrst\t1\r\n")
}
