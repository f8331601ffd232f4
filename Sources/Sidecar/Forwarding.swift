import HTTP1

/// Header rewriting for the remote path (SPEC §4): the sidecar rebuilds every upstream request
/// and every client response; framing and hop-by-hop fields never cross it.
enum Forwarding {
    /// Fields the sidecar sets itself on the upstream request, or that describe the client's
    /// framing (dropped from the client's fields by `requestFieldRole`).
    static let requestOwned = ["host", "content-length", "expect", "x-forwarded-for", "x-request-id"]
    /// Fields the sidecar sets itself on the client response (dropped from the backend's fields by
    /// `responseFieldIsDropped`).
    static let responseOwned = [
        "content-length", "x-request-id", "x-switchyard-version", "x-switchyard-fallback",
    ]

    /// The upstream request's fields: the client's end-to-end fields, `x-forwarded-for` with the
    /// peer appended, the request id, and `accept-encoding: identity` when the sidecar must read
    /// the response body (SPEC §9 "Encodings"), then `x-switchyard-shadow: 1` on a shadow copy and
    /// the downstream span's `traceparent` while tracing is on (off: the client's goes as it came).
    ///
    /// One pass over the client's fields: each name is classified by its length first, so most are
    /// kept after one or two comparisons; the fields a `Connection` field names are dropped
    /// afterwards. A client field the sidecar sets for this version (`accept-encoding` when it reads
    /// the body, `x-switchyard-shadow` on a shadow, `traceparent` when tracing gives one) is
    /// dropped in the same pass, so that the sidecar's own value is the only one and comes last,
    /// as `replaceOrAdd` would leave it.
    static func upstreamHeaders(
        _ client: HTTPHeaders,
        peerAddress: String,
        requestID: String,
        mustReadBody: Bool,
        isShadow: Bool = false,
        traceparent: String? = nil
    ) -> HTTPHeaders {
        var forwardedFor: String?
        var hasConnection = false
        let replacesTraceparent = traceparent != nil
        // The kept lines are copied as bytes: no `String` per field.
        var kept = client.filter { name, value in
            switch requestFieldRole(
                name,
                mustReadBody: mustReadBody,
                isShadow: isShadow,
                replacesTraceparent: replacesTraceparent
            ) {
            case .endToEnd:
                return true
            case .forwardedFor:
                let text = String(decoding: value, as: UTF8.self)
                forwardedFor = forwardedFor.map { "\($0), \(text)" } ?? text
                return false
            case .connection:
                hasConnection = true
                return false
            case .dropped:
                return false
            }
        }
        if hasConnection {
            let named = HopByHop.connectionNamed(in: client)
            if !named.isEmpty {
                kept = kept.filter { name, _ in !named.contains { HopByHop.named($0, equals: name) } }
            }
        }
        kept.add(name: "x-forwarded-for", value: forwardedFor.map { "\($0), \(peerAddress)" } ?? peerAddress)
        kept.add(name: "x-request-id", value: requestID)
        if mustReadBody { kept.add(name: "accept-encoding", value: "identity") }
        if isShadow { kept.add(name: "x-switchyard-shadow", value: "1") }
        if let traceparent { kept.add(name: "traceparent", value: traceparent) }
        return kept
    }

    private enum FieldRole {
        case endToEnd, forwardedFor, connection, dropped
    }

    /// What the sidecar does with a client's request field: hop-by-hop fields and
    /// `requestOwned` ones are dropped (`Connection` noted, for the fields it names), so are
    /// `accept-encoding` when `mustReadBody`, `x-switchyard-shadow` when `isShadow` and
    /// `traceparent` when `replacesTraceparent` (the sidecar sets them), `x-forwarded-for` is
    /// extended, every other field is forwarded.
    private static func requestFieldRole(
        _ name: UnsafeRawBufferPointer,
        mustReadBody: Bool,
        isShadow: Bool,
        replacesTraceparent: Bool
    ) -> FieldRole {
        let dropped: Bool
        switch name.count {
        case 2: dropped = equalsIgnoringCase(name, "te")
        case 4: dropped = equalsIgnoringCase(name, "host")
        case 6: dropped = equalsIgnoringCase(name, "expect")
        case 7: dropped = equalsIgnoringCase(name, "trailer") || equalsIgnoringCase(name, "upgrade")
        case 10:
            if equalsIgnoringCase(name, "connection") { return .connection }
            dropped = equalsIgnoringCase(name, "keep-alive")
        case 11: dropped = replacesTraceparent && equalsIgnoringCase(name, "traceparent")
        case 12: dropped = equalsIgnoringCase(name, "x-request-id")
        case 14: dropped = equalsIgnoringCase(name, "content-length")
        case 15:
            if equalsIgnoringCase(name, "x-forwarded-for") { return .forwardedFor }
            dropped = mustReadBody && equalsIgnoringCase(name, "accept-encoding")
        case 16: dropped = equalsIgnoringCase(name, "proxy-connection")
        case 17: dropped = equalsIgnoringCase(name, "transfer-encoding")
        case 18: dropped = equalsIgnoringCase(name, "proxy-authenticate")
        case 19:
            dropped =
                equalsIgnoringCase(name, "proxy-authorization")
                || (isShadow && equalsIgnoringCase(name, "x-switchyard-shadow"))
        default: dropped = false
        }
        return dropped ? .dropped : .endToEnd
    }

    /// The client response's fields from an upstream response: hop-by-hop fields, those the
    /// response's `Connection` field names and `responseOwned` ones are dropped (one pass, names
    /// classified by length first, like the request's; lines copied as bytes).
    static func responseHeaders(_ upstream: HTTPHeaders) -> HTTPHeaders {
        var hasConnection = false
        var kept = upstream.filter { name, _ in
            if name.count == 10 && equalsIgnoringCase(name, "connection") {
                hasConnection = true
                return false
            }
            return !responseFieldIsDropped(name)
        }
        if hasConnection {
            let named = HopByHop.connectionNamed(in: upstream)
            if !named.isEmpty {
                kept = kept.filter { name, _ in !named.contains { HopByHop.named($0, equals: name) } }
            }
        }
        return kept
    }

    private static func responseFieldIsDropped(_ name: UnsafeRawBufferPointer) -> Bool {
        switch name.count {
        case 12: return equalsIgnoringCase(name, "x-request-id")
        case 14: return equalsIgnoringCase(name, "content-length")
        case 20: return equalsIgnoringCase(name, "x-switchyard-version")
        case 21: return equalsIgnoringCase(name, "x-switchyard-fallback")
        default: return HopByHop.isHopByHop(name)
        }
    }

    /// The client's first `x-request-id` value, if any (`HTTPHeaders.first(name:)`, with the
    /// length compared before the name).
    static func clientRequestID(_ client: HTTPHeaders) -> String? {
        client.firstIndex(name: "x-request-id").map { client.value(at: $0) }
    }

    /// A client-supplied request id is kept when it is short printable ASCII; otherwise a new one is made.
    static func acceptableRequestID(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= 200 else { return nil }
        for b in value.utf8 where b < 0x21 || b > 0x7E { return nil }
        return value
    }
}
