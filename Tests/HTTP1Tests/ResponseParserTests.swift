import HTTP1
import Testing

struct ResponseRow: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    var method = "GET"
    var framing: BodyFraming
    var keepAlive: Bool
    var testDescription: String { name }
}

let responseRows: [ResponseRow] = [
    ResponseRow(
        name: "Content-Length",
        raw: "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
        framing: .contentLength(12),
        keepAlive: true
    ),
    ResponseRow(
        name: "Content-Length 0",
        raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        framing: .contentLength(0),
        keepAlive: true
    ),
    ResponseRow(
        name: "repeated identical Content-Length",
        raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
        framing: .contentLength(3),
        keepAlive: true
    ),
    ResponseRow(
        name: "chunked",
        raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n",
        framing: .chunked,
        keepAlive: true
    ),
    ResponseRow(
        name: "until close",
        raw: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
        framing: .untilClose,
        keepAlive: false
    ),
    ResponseRow(
        name: "HEAD request",
        raw: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
        method: "HEAD",
        framing: .none,
        keepAlive: true
    ),
    ResponseRow(
        name: "HEAD without length",
        raw: "HTTP/1.1 200 OK\r\n\r\n",
        method: "HEAD",
        framing: .none,
        keepAlive: true
    ),
    ResponseRow(name: "100 Continue", raw: "HTTP/1.1 100 Continue\r\n\r\n", framing: .none, keepAlive: true),
    ResponseRow(
        name: "103 Early Hints",
        raw: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
        framing: .none,
        keepAlive: true
    ),
    ResponseRow(
        name: "101 Switching Protocols",
        raw: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        framing: .none,
        keepAlive: false
    ),
    ResponseRow(name: "204", raw: "HTTP/1.1 204 No Content\r\n\r\n", framing: .none, keepAlive: true),
    ResponseRow(
        name: "304",
        raw: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        framing: .none,
        keepAlive: true
    ),
    ResponseRow(
        name: "Connection close",
        raw: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
        framing: .contentLength(1),
        keepAlive: false
    ),
    ResponseRow(
        name: "HTTP/1.0 without keep-alive",
        raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
        framing: .contentLength(1),
        keepAlive: false
    ),
    ResponseRow(
        name: "HTTP/1.0 keep-alive",
        raw: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
        framing: .contentLength(1),
        keepAlive: true
    ),
    ResponseRow(
        name: "empty reason",
        raw: "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
        framing: .contentLength(0),
        keepAlive: true
    ),
    ResponseRow(
        name: "no SP after the code",
        raw: "HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n",
        framing: .contentLength(0),
        keepAlive: true
    ),
]

@Test(arguments: responseRows)
func decidesResponseFraming(_ row: ResponseRow) throws {
    let bytes = Array(row.raw.utf8)
    let outcome = parseResponse(bytes, method: row.method)
    let head = try #require(outcome.head, "\(outcome)")
    #expect(outcome.consumed == bytes.count)
    #expect(head.framing == row.framing)
    #expect(head.keepAlive == row.keepAlive)
    for n in 0..<bytes.count {
        #expect(parseResponse(Array(bytes[..<n]), method: row.method) == .incomplete, "prefix of \(n) bytes")
    }
}

@Test func statusLineFields() throws {
    let head = try #require(parseResponse("HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n\r\nbody").head)
    #expect(head.status == 503)
    #expect(head.reason == "Service Unavailable")
    #expect(head.version == .http10)
    #expect(head.headers.first(name: "retry-after") == "1")
    #expect(parseResponse("HTTP/1.1 500\r\n\r\n").head?.reason == "")
}

let badResponses: [(String, String)] = [
    ("TE and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
    ("TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
    ("two TE fields", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("TE on HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("differing CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
    ("CL list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
    ("CL +5", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"),
    ("CL over the limit", "HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n"),
    ("bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    ("bare LF in headers", "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n"),
    ("bare CR", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"),
    ("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
    ("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n"),
    ("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n"),
    ("two-digit status", "HTTP/1.1 20 OK\r\n\r\n"),
    ("four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"),
    ("status 099", "HTTP/1.1 099 Odd\r\n\r\n"),
    ("status 600", "HTTP/1.1 600 Odd\r\n\r\n"),
    ("garbage", "SSH-2.0-OpenSSH_9.2\r\n\r\n"),
    ("NUL in reason", "HTTP/1.1 200 O\u{0}K\r\n\r\n"),
    ("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"),
]

@Test func refusesBadResponsesAsBadRequest() {
    for (name, raw) in badResponses {
        let outcome = parseResponse(raw)
        #expect(outcome.errorKind == .badRequest, "\(name): \(outcome)")
        if case .failure(let e) = outcome { #expect(e.detail.hasPrefix("upstream response: "), "\(name)") }
        let bytes = Array(raw.utf8)
        for n in 0..<bytes.count {
            let prefix = parseResponse(Array(bytes[..<n]))
            #expect(prefix == .incomplete || prefix == outcome, "\(name), prefix of \(n) bytes: \(prefix)")
        }
    }
}

@Test func responseHeadLimitsAreBadRequests() {
    let many = "HTTP/1.1 200 OK\r\n" + (0..<5).map { "X-\($0): v\r\n" }.joined() + "\r\n"
    #expect(parseResponse(many, limits: HTTPLimits(maxHeaderCount: 4)).errorKind == .badRequest)
    #expect(parseResponse(many, limits: HTTPLimits(maxHeaderCount: 5)).head?.headers.count == 5)
    #expect(
        parseResponse(
            "HTTP/1.1 200 OK\r\nX: " + String(repeating: "y", count: 100),
            limits: HTTPLimits(maxHeaderBytes: 64)
        ).errorKind == .badRequest
    )
}
