import HTTP1
import Testing

struct BadRequest: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    var expected: ErrorKind
    var limits = HTTPLimits()
    var testDescription: String { name }
}

private let host = "Host: a\r\n"

/// One row per way a request could be smuggled or misread; each must fail with exactly this case.
let smugglingCorpus: [BadRequest] = [
    // Framing
    BadRequest(
        name: "CL and TE",
        raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(
        name: "TE and CL",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(
        name: "TE xchunked",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: xchunked\r\n\r\n",
        expected: .unsupportedTransferEncoding
    ),
    BadRequest(
        name: "TE chunked, identity",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked, identity\r\n\r\n",
        expected: .unsupportedTransferEncoding
    ),
    BadRequest(
        name: "TE chunked, chunked",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked, chunked\r\n\r\n",
        expected: .unsupportedTransferEncoding
    ),
    BadRequest(
        name: "TE gzip, chunked",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip, chunked\r\n\r\n",
        expected: .unsupportedTransferEncoding
    ),
    BadRequest(
        name: "TE identity",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: identity\r\n\r\n",
        expected: .unsupportedTransferEncoding
    ),
    BadRequest(
        name: "TE gzip",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip\r\n\r\n",
        expected: .unsupportedTransferEncoding
    ),
    BadRequest(
        name: "TE chunked;x",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked;x\r\n\r\n",
        expected: .unsupportedTransferEncoding
    ),
    BadRequest(
        name: "TE empty",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding:\r\n\r\n",
        expected: .unsupportedTransferEncoding
    ),
    BadRequest(
        name: "two TE fields",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(
        name: "TE on HTTP/1.0",
        raw: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(name: "CL +5", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: +5\r\n\r\n", expected: .badRequest),
    BadRequest(name: "CL -1", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: -1\r\n\r\n", expected: .badRequest),
    BadRequest(name: "CL 0x5", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 0x5\r\n\r\n", expected: .badRequest),
    BadRequest(name: "CL 5 5", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 5 5\r\n\r\n", expected: .badRequest),
    BadRequest(name: "CL 5,5", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 5,5\r\n\r\n", expected: .badRequest),
    BadRequest(name: "CL empty", raw: "POST / HTTP/1.1\r\n\(host)Content-Length:\r\n\r\n", expected: .badRequest),
    BadRequest(
        name: "two CL fields, same value",
        raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(
        name: "two CL fields, different values",
        raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 5\r\ncontent-length: 6\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(
        name: "CL 19 digits",
        raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 1000000000000000000\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(
        name: "CL 19 digits with leading zeros",
        raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 0000000000000000005\r\n\r\n",
        expected: .badRequest
    ),
    // Request line
    BadRequest(
        name: "absolute-form target",
        raw: "GET http://evil.example/ HTTP/1.1\r\n\(host)\r\n",
        expected: .badRequest
    ),
    BadRequest(
        name: "authority-form target",
        raw: "CONNECT evil.example:443 HTTP/1.1\r\n\(host)\r\n",
        expected: .badRequest
    ),
    BadRequest(name: "asterisk-form target", raw: "OPTIONS * HTTP/1.1\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "two spaces after method", raw: "GET  / HTTP/1.1\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "two spaces before version", raw: "GET /  HTTP/1.1\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "tab as separator", raw: "GET\t/ HTTP/1.1\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "non-token method", raw: "G(T / HTTP/1.1\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "control byte in target", raw: "GET /a\u{7F}b HTTP/1.1\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "non-ASCII target", raw: "GET /caf\u{E9} HTTP/1.1\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "HTTP/2.0", raw: "GET / HTTP/2.0\r\n\(host)\r\n", expected: .unsupportedVersion),
    BadRequest(name: "HTTP/0.9", raw: "GET / HTTP/0.9\r\n\(host)\r\n", expected: .unsupportedVersion),
    BadRequest(name: "HTTP/1.2", raw: "GET / HTTP/1.2\r\n\(host)\r\n", expected: .unsupportedVersion),
    BadRequest(name: "HTTP/1.1x", raw: "GET / HTTP/1.1x\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "HTTP/1.10", raw: "GET / HTTP/1.10\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "lower-case http", raw: "GET / http/1.1\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "HTTP/2", raw: "GET / HTTP/2\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "no version", raw: "GET /\r\n\(host)\r\n", expected: .badRequest),
    // Line endings and bytes
    BadRequest(name: "bare LF line endings", raw: "GET / HTTP/1.1\nHost: a\n\n", expected: .badRequest),
    BadRequest(name: "bare LF after a header", raw: "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", expected: .badRequest),
    BadRequest(name: "bare LF blank line", raw: "GET / HTTP/1.1\r\nHost: a\r\n\n", expected: .badRequest),
    BadRequest(name: "bare LF before request line", raw: "\nGET / HTTP/1.1\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(name: "bare CR in value", raw: "GET / HTTP/1.1\r\n\(host)X: a\rb\r\n\r\n", expected: .badRequest),
    BadRequest(name: "bare CR ending request line", raw: "GET / HTTP/1.1\rHost: a\r\n\r\n", expected: .badRequest),
    BadRequest(name: "bare CR blank line", raw: "GET / HTTP/1.1\r\n\(host)\rX\r\n", expected: .badRequest),
    BadRequest(name: "obs-fold with space", raw: "GET / HTTP/1.1\r\n\(host)X: a\r\n b\r\n\r\n", expected: .badRequest),
    BadRequest(name: "obs-fold with tab", raw: "GET / HTTP/1.1\r\n\(host)X: a\r\n\tb\r\n\r\n", expected: .badRequest),
    BadRequest(
        name: "whitespace before first header",
        raw: "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(
        name: "space before colon",
        raw: "POST / HTTP/1.1\r\n\(host)Content-Length : 5\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(
        name: "tab before colon",
        raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding\t: chunked\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(name: "empty header name", raw: "GET / HTTP/1.1\r\n\(host): v\r\n\r\n", expected: .badRequest),
    BadRequest(name: "header without colon", raw: "GET / HTTP/1.1\r\n\(host)Oops\r\n\r\n", expected: .badRequest),
    BadRequest(name: "non-token header name", raw: "GET / HTTP/1.1\r\n\(host)X(Y): v\r\n\r\n", expected: .badRequest),
    BadRequest(name: "NUL in value", raw: "GET / HTTP/1.1\r\n\(host)X: a\u{0}b\r\n\r\n", expected: .badRequest),
    BadRequest(name: "NUL in name", raw: "GET / HTTP/1.1\r\n\(host)X\u{0}: b\r\n\r\n", expected: .badRequest),
    BadRequest(name: "NUL in target", raw: "GET /\u{0} HTTP/1.1\r\n\(host)\r\n", expected: .badRequest),
    BadRequest(
        name: "control byte in value",
        raw: "GET / HTTP/1.1\r\n\(host)X: a\u{1}b\r\n\r\n",
        expected: .badRequest
    ),
    BadRequest(name: "DEL in value", raw: "GET / HTTP/1.1\r\n\(host)X: a\u{7F}b\r\n\r\n", expected: .badRequest),
    // Host, Expect, limits
    BadRequest(name: "missing Host on HTTP/1.1", raw: "GET / HTTP/1.1\r\nX: y\r\n\r\n", expected: .badRequest),
    BadRequest(name: "two Host fields", raw: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", expected: .badRequest),
    BadRequest(
        name: "Expect other than 100-continue",
        raw: "POST / HTTP/1.1\r\n\(host)Expect: 200-ok\r\n\r\n",
        expected: .expectationFailed
    ),
    BadRequest(
        name: "Expect 100-continue with a parameter",
        raw: "POST / HTTP/1.1\r\n\(host)Expect: 100-continue; x=1\r\n\r\n",
        expected: .expectationFailed
    ),
    BadRequest(
        name: "too many headers",
        raw: "GET / HTTP/1.1\r\n\(host)" + (0..<5).map { "X-\($0): v\r\n" }.joined() + "\r\n",
        expected: .headersTooLarge,
        limits: HTTPLimits(maxHeaderCount: 5)
    ),
    BadRequest(
        name: "too many header bytes before the blank line",
        raw: "GET / HTTP/1.1\r\n\(host)X-Big: " + String(repeating: "x", count: 200),
        expected: .headersTooLarge,
        limits: HTTPLimits(maxHeaderBytes: 128)
    ),
    BadRequest(
        name: "Content-Length over the body limit",
        raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 1025\r\n\r\n",
        expected: .bodyTooLarge,
        limits: HTTPLimits(maxBodyBytes: 1024)
    ),
]

@Test(arguments: smugglingCorpus)
func refusesSmugglingCorpusRow(_ row: BadRequest) {
    let outcome = parseRequest(row.raw, limits: row.limits)
    #expect(outcome.errorKind == row.expected, "\(outcome)")
}

/// Every prefix of every corpus row is `.incomplete` or the same failure as the whole row.
@Test(arguments: smugglingCorpus)
func corpusRowFailsTheSameWayAtEverySplit(_ row: BadRequest) {
    let bytes = Array(row.raw.utf8)
    let whole = parseRequest(bytes, limits: row.limits)
    for n in 0..<bytes.count {
        let prefix = parseRequest(Array(bytes[..<n]), limits: row.limits)
        #expect(prefix == .incomplete || prefix == whole, "prefix of \(n) bytes: \(prefix), whole: \(whole)")
    }
}

/// Every prefix of a valid request is `.incomplete`; the whole gives the same head however it was split.
@Test(arguments: validRequests)
func validRequestIsIncompleteAtEverySplit(_ row: ValidRequest) {
    let bytes = Array(row.raw.utf8)
    for n in 0..<bytes.count {
        #expect(parseRequest(Array(bytes[..<n])) == .incomplete, "prefix of \(n) bytes")
    }
}
