import HTTP1
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
