import HTTP1
import Policy
import TestSupport
import Testing

@testable import Sidecar

/// The upstream request's fields, field by field (the proxy tests check the same end to end).
@Suite struct ForwardingTests {
    /// Every name the sidecar must not forward: hop-by-hop fields and the ones it owns.
    static let droppedNames = Array(HopByHop.names) + Forwarding.requestOwned.filter { $0 != "x-forwarded-for" }

    @Test(arguments: droppedNames)
    func dropsHopByHopAndOwnedFieldsInAnyCase(name: String) {
        for spelling in [name, name.uppercased(), String(name.prefix(1)).uppercased() + name.dropFirst()] {
            let client = HTTPHeaders([("accept", "application/json"), (spelling, "x"), ("x-trace", "7")])
            let headers = Forwarding.upstreamHeaders(
                client,
                peerAddress: "10.0.0.9",
                requestID: "r-1",
                mustReadBody: false
            )
            #expect(
                headers.fields.map(\.name) == ["accept", "x-trace", "x-forwarded-for", "x-request-id"],
                "\(spelling) was forwarded"
            )
        }
    }

    @Test func keepsEndToEndFieldsInOrderAndAddsItsOwn() {
        let client = HTTPHeaders([
            ("Host", "127.0.0.1:8480"), ("Content-Type", "application/json"), ("X-User-Id", "u-1"),
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("Content-Length", "12"),
        ])
        let headers = Forwarding.upstreamHeaders(client, peerAddress: "10.0.0.9", requestID: "r-1", mustReadBody: true)
        #expect(
            headers.fields.map(\.name) == [
                "Content-Type", "X-User-Id", "traceparent", "x-forwarded-for", "x-request-id", "accept-encoding",
            ]
        )
        #expect(headers.first(name: "x-forwarded-for") == "10.0.0.9")
        #expect(headers.first(name: "x-request-id") == "r-1")
        #expect(headers.first(name: "accept-encoding") == "identity")
    }

    @Test func extendsEveryPriorForwardedForField() {
        let client = HTTPHeaders([("X-Forwarded-For", "1.1.1.1, 2.2.2.2"), ("x-forwarded-for", "3.3.3.3")])
        let headers = Forwarding.upstreamHeaders(client, peerAddress: "10.0.0.9", requestID: "r", mustReadBody: false)
        #expect(headers.values(name: "x-forwarded-for") == ["1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"])
    }

    @Test func dropsTheFieldsConnectionNames() {
        let client = HTTPHeaders([
            ("Connection", "keep-alive, X-Secret ,  x-debug"), ("x-secret", "s"), ("X-Debug", "1"), ("x-kept", "k"),
        ])
        let headers = Forwarding.upstreamHeaders(client, peerAddress: "p", requestID: "r", mustReadBody: false)
        #expect(headers.fields.map(\.name) == ["x-kept", "x-forwarded-for", "x-request-id"])
    }

    @Test func marksShadowCopies() {
        let client = HTTPHeaders([("x-switchyard-shadow", "0"), ("accept-encoding", "gzip")])
        let headers = Forwarding.upstreamHeaders(
            client,
            peerAddress: "p",
            requestID: "r",
            mustReadBody: true,
            isShadow: true
        )
        #expect(headers.values(name: "x-switchyard-shadow") == ["1"])
        #expect(headers.values(name: "accept-encoding") == ["identity"])
    }
}

@Suite struct ResponseForwardingTests {
    static let droppedNames = Array(HopByHop.names) + Forwarding.responseOwned

    @Test(arguments: droppedNames)
    func dropsHopByHopAndOwnedFieldsInAnyCase(name: String) {
        for spelling in [name, name.uppercased()] {
            let upstream = HTTPHeaders([("content-type", "application/json"), (spelling, "x"), ("server", "tfs")])
            #expect(
                Forwarding.responseHeaders(upstream).fields.map(\.name) == ["content-type", "server"],
                "\(spelling) was passed to the client"
            )
        }
    }

    @Test func dropsTheFieldsConnectionNames() {
        let upstream = HTTPHeaders([("connection", "x-internal"), ("X-Internal", "1"), ("etag", "\"a\"")])
        #expect(Forwarding.responseHeaders(upstream).fields.map(\.name) == ["etag"])
    }
}

/// The field lines written straight into a buffer (`appendUpstreamFields`,
/// `appendResponseFields`) are the lines the field lists (`upstreamHeaders`, `responseHeaders`)
/// give, for field lists drawn at random from the names that matter.
@Suite struct ForwardingFieldLinesTests {
    static let names = [
        "accept", "x-trace", "Content-Type", "x-forwarded-for", "X-Forwarded-For", "x-request-id", "Connection",
        "keep-alive", "TE", "upgrade", "host", "content-length", "Transfer-Encoding", "expect", "accept-encoding",
        "x-switchyard-shadow", "traceparent", "authorization", "X-Api-Key", "x-switchyard-version",
        "x-switchyard-fallback", "proxy-authorization", "x-secret",
    ]
    static let values = ["1", "gzip", "x-secret, x-trace", "a b", "10.0.0.1", "keep-alive", "Bearer t", ""]

    static func lines(_ headers: HTTPHeaders) -> [UInt8] {
        var out: [UInt8] = []
        for field in headers.fields {
            HTTPSerializer.appendField(&out, name: field.name, value: field.value, droppingFraming: true)
        }
        return out
    }

    static func randomHeaders(_ random: inout TestSupport.SplitMix64) -> HTTPHeaders {
        var fields: [(name: String, value: String)] = []
        for _ in 0..<Int.random(in: 0...8, using: &random) {
            fields.append((names.randomElement(using: &random)!, values.randomElement(using: &random)!))
        }
        // Parsed fields (checked by the parser), or fields a caller made (checked when written).
        return Bool.random(using: &random) ? HTTPHeaders(parsed: fields) : HTTPHeaders(fields)
    }

    @Test func upstreamLinesAreTheFieldListsLines() {
        var random = TestSupport.SplitMix64(seed: 14)
        var made = TestSupport.SplitMix64(seed: 7)
        for _ in 0..<3000 {
            let client = Self.randomHeaders(&random)
            let mustRead = Bool.random(using: &random)
            let isShadow = Bool.random(using: &random)
            let traceparent: String? = Bool.random(using: &random) ? "00-1-2-01" : nil
            var overrides: [VersionHeader] = []
            for name in ["authorization", "x-api-key", "x-request-id", "accept-encoding", "x-forwarded-for"]
            where Int.random(in: 0..<4, using: &random) == 0 {
                overrides.append(VersionHeader(name: name, value: "v-\(name)", template: "v-\(name)"))
            }
            // The client's id, or one made here (written as hex digits without a String).
            let id = Bool.random(using: &random) ? RequestID("r-1") : RequestID(generated: made.next())
            var expected = Forwarding.upstreamHeaders(
                client,
                peerAddress: "10.0.0.9",
                requestID: id.string,
                mustReadBody: mustRead,
                isShadow: isShadow,
                traceparent: traceparent
            )
            for field in overrides { expected.replaceOrAdd(name: field.name, value: field.value) }
            var lines: [UInt8] = []
            Forwarding.appendUpstreamFields(
                client,
                into: &lines,
                peerAddress: "10.0.0.9",
                requestID: id,
                mustReadBody: mustRead,
                isShadow: isShadow,
                traceparent: traceparent,
                overrides: overrides
            )
            #expect(
                String(decoding: lines, as: UTF8.self) == String(decoding: Self.lines(expected), as: UTF8.self),
                "client fields \(client.fields), overrides \(overrides.map(\.name))"
            )
        }
    }

    @Test func responseLinesAreTheFieldListsLines() {
        var random = TestSupport.SplitMix64(seed: 41)
        for _ in 0..<3000 {
            let upstream = Self.randomHeaders(&random)
            var lines: [UInt8] = Array("kept: 1\r\n".utf8)
            Forwarding.appendResponseFields(upstream, into: &lines)
            let expected = Array("kept: 1\r\n".utf8) + Self.lines(Forwarding.responseHeaders(upstream))
            #expect(
                String(decoding: lines, as: UTF8.self) == String(decoding: expected, as: UTF8.self),
                "backend fields \(upstream.fields)"
            )
        }
    }

    @Test func aRemovedFieldMovesTheRestOutOfTheParsedRun() {
        var headers = HTTPHeaders(parsed: [("a", "1"), ("b", "2"), ("c", "3")])
        #expect(headers.parsedCount == 3)
        headers.add(name: "d", value: "4")
        #expect(headers.parsedCount == 3)
        headers.remove(name: "B")
        #expect(headers.parsedCount == 1)
        #expect(headers.fields.map(\.name) == ["a", "c", "d"])
    }
}
