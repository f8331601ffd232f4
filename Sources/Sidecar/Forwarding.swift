import HTTP1

/// Header rewriting for the remote path (SPEC §4): the sidecar rebuilds every upstream request
/// and every client response; framing and hop-by-hop fields never cross it.
enum Forwarding {
    /// Fields the sidecar sets itself on the upstream request, or that describe the client's framing.
    private static let requestOwned = ["host", "content-length", "expect", "x-forwarded-for", "x-request-id"]
    /// Fields the sidecar sets itself on the client response.
    private static let responseOwned = [
        "content-length", "x-request-id", "x-switchyard-version", "x-switchyard-fallback",
    ]

    /// The end-to-end fields of `headers`: hop-by-hop fields and those the message's own
    /// `Connection` field names are dropped, as are `owned` ones. Compares without allocating.
    static func endToEnd(_ headers: HTTPHeaders, dropping owned: [String]) -> HTTPHeaders {
        let named = HopByHop.connectionNamed(in: headers)
        var out: [(name: String, value: String)] = []
        out.reserveCapacity(headers.count + 4)
        for field in headers.fields {
            let name = field.name
            let length = name.utf8.count
            if HopByHop.isHopByHop(name)
                || owned.contains(where: { $0.utf8.count == length && $0.asciiCaseInsensitiveEquals(name) })
                || named.contains(where: { $0.asciiCaseInsensitiveEquals(name) })
            {
                continue
            }
            out.append(field)
        }
        return HTTPHeaders(out)
    }

    /// The upstream request's fields: the client's end-to-end fields, `x-forwarded-for` with the
    /// peer appended, the request id, and `accept-encoding: identity` when the sidecar must read
    /// the response body (SPEC §9 "Encodings").
    static func upstreamHeaders(
        _ client: HTTPHeaders,
        peerAddress: String,
        requestID: String,
        mustReadBody: Bool,
        isShadow: Bool = false
    ) -> HTTPHeaders {
        var headers = upstreamBaseHeaders(client, peerAddress: peerAddress, requestID: requestID)
        finishUpstreamHeaders(&headers, mustReadBody: mustReadBody, isShadow: isShadow)
        return headers
    }

    /// The part of `upstreamHeaders` every version asked for the same request shares (computed
    /// once per request; the live request and its shadow copies each finish a copy).
    static func upstreamBaseHeaders(_ client: HTTPHeaders, peerAddress: String, requestID: String) -> HTTPHeaders {
        var headers = endToEnd(client, dropping: requestOwned)
        let prior = client.values(name: "x-forwarded-for")
        headers.add(
            name: "x-forwarded-for",
            value: prior.isEmpty ? peerAddress : (prior + [peerAddress]).joined(separator: ", ")
        )
        headers.add(name: "x-request-id", value: requestID)
        return headers
    }

    /// Adds what depends on the version asked: `accept-encoding: identity` when the sidecar reads
    /// the body, `x-switchyard-shadow: 1` on a shadow copy.
    static func finishUpstreamHeaders(_ headers: inout HTTPHeaders, mustReadBody: Bool, isShadow: Bool) {
        if mustReadBody { headers.replaceOrAdd(name: "accept-encoding", value: "identity") }
        if isShadow { headers.replaceOrAdd(name: "x-switchyard-shadow", value: "1") }
    }

    /// The client response's fields from an upstream response.
    static func responseHeaders(_ upstream: HTTPHeaders) -> HTTPHeaders {
        endToEnd(upstream, dropping: responseOwned)
    }

    /// A client-supplied request id is kept when it is short printable ASCII; otherwise a new one is made.
    static func acceptableRequestID(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= 200 else { return nil }
        for b in value.utf8 where b < 0x21 || b > 0x7E { return nil }
        return value
    }
}
