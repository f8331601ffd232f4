import Foundation
import TestSupport
import Testing

@testable import HTTP1

struct ValidRequest: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    var method: String
    var target: String
    var version: HTTPVersion = .http11
    var framing: BodyFraming = .none
    var keepAlive = true
    var expectsContinue = false
    var headerCount: Int
    var testDescription: String { name }
}

let validRequests: [ValidRequest] = [
    ValidRequest(
        name: "GET without body",
        raw: "GET /v1/models/churn HTTP/1.1\r\nHost: localhost:8480\r\nAccept: */*\r\n\r\n",
        method: "GET",
        target: "/v1/models/churn",
        headerCount: 2
    ),
    ValidRequest(
        name: "POST with Content-Length",
        raw: "POST /v1/models/churn:predict?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            + "Content-Length: 42\r\n\r\n",
        method: "POST",
        target: "/v1/models/churn:predict?x=1",
        framing: .contentLength(42),
        headerCount: 3
    ),
    ValidRequest(
        name: "POST with Content-Length 0",
        raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        method: "POST",
        target: "/",
        framing: .contentLength(0),
        headerCount: 2
    ),
    ValidRequest(
        name: "chunked",
        raw: "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        method: "POST",
        target: "/p",
        framing: .chunked,
        headerCount: 2
    ),
    ValidRequest(
        name: "chunked, mixed case with OWS",
        raw: "POST /p HTTP/1.1\r\nHost: a\r\ntransfer-encoding: \t ChUnKeD \r\n\r\n",
        method: "POST",
        target: "/p",
        framing: .chunked,
        headerCount: 2
    ),
    ValidRequest(
        name: "HTTP/1.0 keep-alive",
        raw: "GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        method: "GET",
        target: "/x",
        version: .http10,
        headerCount: 1
    ),
    ValidRequest(
        name: "HTTP/1.0 without keep-alive",
        raw: "GET /x HTTP/1.0\r\n\r\n",
        method: "GET",
        target: "/x",
        version: .http10,
        keepAlive: false,
        headerCount: 0
    ),
    ValidRequest(
        name: "HTTP/1.1 Connection close in a list",
        raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, Close\r\n\r\n",
        method: "GET",
        target: "/",
        keepAlive: false,
        headerCount: 2
    ),
    ValidRequest(
        name: "Expect 100-continue",
        raw: "PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n",
        method: "PUT",
        target: "/u",
        framing: .contentLength(5),
        expectsContinue: true,
        headerCount: 3
    ),
    ValidRequest(
        name: "leading empty lines skipped",
        raw: "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        method: "GET",
        target: "/",
        headerCount: 1
    ),
    ValidRequest(
        name: "obs-text and empty value",
        raw: "GET /%C3%A9 HTTP/1.1\r\nHost: a\r\nX-Name: caf\u{E9}\r\nX-Empty:\r\n\r\n",
        method: "GET",
        target: "/%C3%A9",
        headerCount: 3
    ),
]

@Test(arguments: validRequests)
func parsesValidRequest(_ row: ValidRequest) throws {
    let bytes = Array(row.raw.utf8)
    let outcome = parseRequest(bytes)
    let head = try #require(outcome.head, "\(outcome)")
    #expect(outcome.consumed == bytes.count)
    #expect(head.method == row.method)
    #expect(head.target == row.target)
    #expect(head.version == row.version)
    #expect(head.framing == row.framing)
    #expect(head.keepAlive == row.keepAlive)
    #expect(head.expectsContinue == row.expectsContinue)
    #expect(head.headers.count == row.headerCount)
}

@Test func headerNamesKeepCaseAndValuesAreTrimmed() throws {
    let head = try #require(
        parseRequest("GET /a?b=c HTTP/1.1\r\nHost:  example \r\nX-Request-ID:\tabc def\t\r\n\r\n").head
    )
    #expect(head.headers.fields.map(\.name) == ["Host", "X-Request-ID"])
    #expect(head.headers.first(name: "host") == "example")
    #expect(head.headers.first(name: "x-request-id") == "abc def")
    #expect(head.path == "/a")
    #expect(head.query == "b=c")
}

@Test func obsTextValueIsKept() throws {
    let head = try #require(parseRequest("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\u{E9}\r\n\r\n").head)
    #expect(head.headers.first(name: "x-name") == "caf\u{E9}")
}

@Test func pipelinedBytesStopAtTheEndOfTheHead() throws {
    let first = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
    let rest = "helloGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
    let outcome = parseRequest(first + rest)
    #expect(outcome.consumed == first.utf8.count)
    #expect(outcome.head?.framing == .contentLength(5))

    let second = Array((first + rest).utf8)[(first.utf8.count + 5)...]
    let next = parseRequest(Array(second))
    #expect(next.head?.target == "/b")
    #expect(next.consumed == second.count)
}

@Test func leadingEmptyLinesAreBounded() {
    let tooMany =
        String(repeating: "\r\n", count: RequestHeadParser.maxLeadingEmptyLines + 1)
        + "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    #expect(parseRequest(tooMany).errorKind == .badRequest)
    #expect(parseRequest("\r\n") == .incomplete)
    #expect(parseRequest("") == .incomplete)
}

@Test func headerByteLimitCountsFromTheRequestLineThroughTheBlankLine() {
    let raw = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    let n = raw.utf8.count
    #expect(parseRequest(raw, limits: HTTPLimits(maxHeaderBytes: n)).consumed == n)
    #expect(parseRequest(raw, limits: HTTPLimits(maxHeaderBytes: n - 1)).errorKind == .headersTooLarge)
    // Leading empty lines are not part of the budget.
    #expect(parseRequest("\r\n" + raw, limits: HTTPLimits(maxHeaderBytes: n)).consumed == n + 2)
}

@Test func tooManyHeaderBytesFailBeforeTheBlankLineArrives() {
    let limits = HTTPLimits(maxHeaderBytes: 64)
    let start = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "
    let exactly = start + String(repeating: "x", count: 64 - start.utf8.count)
    #expect(parseRequest(exactly, limits: limits) == .incomplete)
    #expect(parseRequest(exactly + "x", limits: limits).errorKind == .headersTooLarge)
    // A head that keeps sending header lines without ever ending.
    let endless = "GET / HTTP/1.1\r\n" + String(repeating: "A: b\r\n", count: 20)
    #expect(parseRequest(endless, limits: limits).errorKind == .headersTooLarge)
}

@Test func headerCountLimit() {
    let fields = (0..<100).map { "X-\($0): v\r\n" }.joined()
    #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n").errorKind == .headersTooLarge)
    let ninetyNine = (0..<99).map { "X-\($0): v\r\n" }.joined()
    #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\n" + ninetyNine + "\r\n").head?.headers.count == 100)
    // The 101st field fails as soon as it starts, before its line or the blank line arrives.
    #expect(parseRequest("GET / HTTP/1.1\r\nHost: a\r\n" + fields + "X").errorKind == .headersTooLarge)
}

@Test func bodyLimitFromContentLength() {
    let limits = HTTPLimits(maxBodyBytes: 10)
    #expect(
        parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", limits: limits).head?.framing
            == .contentLength(10)
    )
    #expect(
        parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", limits: limits).errorKind
            == .bodyTooLarge
    )
    #expect(
        parseRequest("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n").errorKind
            == .bodyTooLarge
    )
}

@Test func errorsCarryStatusAndCode() {
    guard case .failure(let error) = parseRequest("GET / HTTP/2.0\r\nHost: a\r\n\r\n") else {
        Issue.record("expected a failure")
        return
    }
    #expect(error.status == 505)
    #expect(error.code == "unsupported_version")
    #expect(!error.detail.isEmpty)
}

/// A connection's `FieldStorage` carries the last head's fields and target into the next parse:
/// each head must still come out exactly as a parse with a fresh storage gives it.
@Suite struct ReusedStorageTests {
    static func parse(_ raw: String, _ storage: inout FieldStorage) -> RequestHead? {
        let bytes = Array(raw.utf8)
        return bytes.withUnsafeBytes { raw in
            Outcome(RequestHeadParser.parse(raw, limits: HTTPLimits(), reusing: &storage)).head
        }
    }

    static func parseFresh(_ raw: String) -> RequestHead? {
        let bytes = Array(raw.utf8)
        return bytes.withUnsafeBytes { raw in Outcome(RequestHeadParser.parse(raw, limits: HTTPLimits())).head }
    }

    @Test func headsParsedIntoOneStorageAreTheHeadsOfFreshParses() {
        let targets = [
            "/v1/models/m:predict", "/v1/models/m:predict", "/v1/models/m:predicT", "/v1/models/m:predict?x=1",
            "/short", "/v1/models/m:predict", "/v1/models/another-model-name:predict", "/v1/models/m:predict",
        ]
        var storage = FieldStorage()
        var kept: [RequestHead] = []
        for (n, target) in targets.enumerated() {
            let raw = "POST \(target) HTTP/1.1\r\nHost: x\r\nX-N: \(n)\r\nContent-Length: 0\r\n\r\n"
            let head = Self.parse(raw, &storage)
            #expect(head == Self.parseFresh(raw), "request \(n)")
            #expect(head?.target == target)
            if let head { kept.append(head) }
        }
        // Heads kept from earlier parses are untouched by later ones.
        for (n, head) in kept.enumerated() {
            #expect(head.target == targets[n])
            #expect(head.headers.first(name: "x-n") == "\(n)")
        }
    }
}

/// A head's fields are ranges into bytes its `FieldStorage` may reuse for the next head: reuse
/// must happen only when the last head is gone, and never change a head someone still holds.
@Suite struct ParsedFieldsReuseTests {
    static func randomHead(_ random: inout SplitMix64, _ n: Int) -> String {
        var raw = "POST /v1/models/m:predict HTTP/1.1\r\nHost: h\(n)\r\n"
        for k in 0..<Int.random(in: 0...24, using: &random) {
            let length = Int.random(in: 0...300, using: &random)
            let value = String((0..<length).map { _ in "abcdefghij-/ ;=,0123456789".randomElement(using: &random)! })
                .trimmingCharacters(in: .whitespaces)
            raw += "X-Field-\(k)-\(n): \(value)\r\n"
        }
        return raw + "Content-Length: 0\r\n\r\n"
    }

    @Test(arguments: [1, 2, 3]) func keptHeadsStayWhateverIsParsedNext(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var storage = FieldStorage()
        var kept: [(RequestHead, RequestHead)] = []
        for n in 0..<200 {
            let raw = Self.randomHead(&random, n)
            guard let head = ReusedStorageTests.parse(raw, &storage), let fresh = ReusedStorageTests.parseFresh(raw)
            else {
                Issue.record("head \(n) did not parse")
                return
            }
            #expect(head == fresh, "head \(n)")
            #expect(head.headers.first(name: "host") == "h\(n)")
            // Half are kept (their bytes must not change), half dropped (their storage is reused).
            if Bool.random(using: &random) { kept.append((head, fresh)) }
        }
        for (n, (head, fresh)) in kept.enumerated() {
            #expect(head == fresh, "kept head \(n)")
            #expect(head.headers.fields.map(\.name) == fresh.headers.fields.map(\.name))
        }
    }

    @Test func aDroppedHeadsStorageIsReusedAndAKeptOnesIsNot() {
        var storage = FieldStorage()
        let raw = "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n"
        let first = ReusedStorageTests.parse(raw, &storage)
        let firstID = first?.headers.parsed.map(ObjectIdentifier.init)
        let second = ReusedStorageTests.parse(raw, &storage)
        // `first` is still held: the second head has storage of its own.
        #expect(second?.headers.parsed.map(ObjectIdentifier.init) != firstID)
        let secondID = second?.headers.parsed.map(ObjectIdentifier.init)
        _ = consume second
        let third = ReusedStorageTests.parse("GET / HTTP/1.1\r\nHost: b\r\n\r\n", &storage)
        #expect(third?.headers.parsed.map(ObjectIdentifier.init) == secondID)
        #expect(third?.headers.first(name: "host") == "b")
        #expect(first?.headers.first(name: "x-a") == "1")
    }
}

/// Headers read from a parsed head (ranges into its bytes) behave as the same fields given as
/// Strings, and both as a plain list of pairs edited by hand, through any mix of lookups and edits.
@Suite struct ParsedHeadersBehaveAsFieldListsTests {
    static let names = ["Host", "x-a", "X-A", "content-type", "Cookie", "x-b", "Accept"]

    static func same(_ a: String, _ b: String) -> Bool { a.lowercased() == b.lowercased() }

    @Test(arguments: [7, 8, 9]) func editsAndLookupsAgree(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for _ in 0..<100 {
            var pairs: [(name: String, value: String)] = [("Host", "h")]
            for _ in 0..<Int.random(in: 0...8, using: &random) {
                // One Host only: a second would make the head a bad request.
                let name = Self.names.dropFirst().randomElement(using: &random)!
                pairs.append((name, "v\(Int.random(in: 0...99, using: &random))"))
            }
            let raw = "GET / HTTP/1.1\r\n" + pairs.map { "\($0.name): \($0.value)\r\n" }.joined() + "\r\n"
            var parsed = try #require(ReusedStorageTests.parseFresh(raw)).headers
            var list = HTTPHeaders(parsed: pairs)
            // The model: pairs edited by hand, and how many leading ones are still as parsed.
            var model = pairs
            var modelParsed = pairs.count
            #expect(parsed.parsed != nil)
            for _ in 0..<4 {
                let name = Self.names.randomElement(using: &random)!
                let op = Int.random(in: 0...2, using: &random)
                if op != 0, let first = model.firstIndex(where: { Self.same($0.name, name) }) {
                    model.removeAll { Self.same($0.name, name) }
                    modelParsed = min(modelParsed, first)
                }
                switch op {
                case 0:
                    parsed.add(name: name, value: "added")
                    list.add(name: name, value: "added")
                    model.append((name, "added"))
                case 1:
                    parsed.remove(name: name)
                    list.remove(name: name)
                default:
                    parsed.replaceOrAdd(name: name, value: "replaced")
                    list.replaceOrAdd(name: name, value: "replaced")
                    model.append((name, "replaced"))
                }
                for headers in [parsed, list] {
                    #expect(headers.fields.map(\.name) == model.map(\.name))
                    #expect(headers.fields.map(\.value) == model.map(\.value))
                    #expect(headers.parsedCount == modelParsed)
                    for wanted in Self.names {
                        #expect(headers.first(name: wanted) == model.first { Self.same($0.name, wanted) }?.value)
                        #expect(
                            headers.values(name: wanted) == model.filter { Self.same($0.name, wanted) }.map(\.value)
                        )
                    }
                }
                #expect(parsed == list)
                var hashA = Hasher()
                var hashB = Hasher()
                parsed.hash(into: &hashA)
                list.hash(into: &hashB)
                #expect(hashA.finalize() == hashB.finalize())
            }
        }
    }
}
