import HTTP1
import Policy

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
    /// kept after one or two comparisons; the fields a `Connection` field names are dropped in
    /// the same pass (`forwardedClientFields`, shared with `appendUpstreamFields`). A client field the sidecar sets for this version (`accept-encoding` when it reads
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
        var kept: [(name: String, value: String)] = []
        kept.reserveCapacity(client.count + 4)
        let forwardedFor = forwardedClientFields(
            client,
            mustReadBody: mustReadBody,
            isShadow: isShadow,
            replacesTraceparent: traceparent != nil,
            overrides: []
        ) { index in kept.append((client.name(at: index), client.value(at: index))) }
        kept.append((name: "x-forwarded-for", value: forwardedFor.map { "\($0), \(peerAddress)" } ?? peerAddress))
        kept.append((name: "x-request-id", value: requestID))
        if mustReadBody { kept.append((name: "accept-encoding", value: "identity")) }
        if isShadow { kept.append((name: "x-switchyard-shadow", value: "1")) }
        if let traceparent { kept.append((name: "traceparent", value: traceparent)) }
        return HTTPHeaders(kept)
    }

    /// `upstreamHeaders` written straight into `lines` as field lines (`name: value\r\n` each),
    /// with no field list made in between: the client's fields a head parser has checked are
    /// copied without checking them again, the sidecar's own are constants or checked values
    /// (the request id by `acceptableRequestID`, the peer address by the socket, `overrides`
    /// by the config loader). `overrides` (a version's `headers:`) replace the client's fields of
    /// the same names, as `replaceOrAdd` would. The fields a `Connection` field names are dropped.
    static func appendUpstreamFields(
        _ client: HTTPHeaders,
        into lines: inout [UInt8],
        peerAddress: String,
        requestID: RequestID,
        mustReadBody: Bool,
        isShadow: Bool,
        traceparent: String?,
        overrides: [VersionHeader]
    ) {
        let forwardedFor = forwardedClientFields(
            client,
            mustReadBody: mustReadBody,
            isShadow: isShadow,
            replacesTraceparent: traceparent != nil,
            overrides: overrides
        ) { index in
            HTTPSerializer.appendField(&lines, at: index, of: client, droppingFraming: true)
        }
        // The sidecar's own fields, unless a version's `headers:` sets the same name.
        func isOverridden(_ name: String) -> Bool {
            !overrides.isEmpty && overrides.contains(where: { $0.name.asciiCaseInsensitiveEquals(name) })
        }
        func own(_ name: String, _ value: String) {
            if !isOverridden(name) { HTTPSerializer.appendCheckedField(&lines, name: name, value: value) }
        }
        if let forwardedFor {
            // The client's part is checked by the parser, but may hold a comma list: checked again.
            if !isOverridden("x-forwarded-for") {
                HTTPSerializer.appendField(
                    &lines,
                    name: "x-forwarded-for",
                    value: "\(forwardedFor), \(peerAddress)",
                    droppingFraming: false
                )
            }
        } else {
            own("x-forwarded-for", peerAddress)
        }
        if !isOverridden("x-request-id") {
            requestID.appendField(to: &lines)
        }
        // Constant lines are copied whole.
        if mustReadBody && !isOverridden("accept-encoding") {
            HTTPSerializer.appendLine(&lines, "accept-encoding: identity\r\n")
        }
        if isShadow && !isOverridden("x-switchyard-shadow") {
            HTTPSerializer.appendLine(&lines, "x-switchyard-shadow: 1\r\n")
        }
        if let traceparent { own("traceparent", traceparent) }
        for field in overrides { HTTPSerializer.appendCheckedField(&lines, name: field.name, value: field.value) }
    }

    /// `responseHeaders` written straight into `lines` as field lines, the backend's checked
    /// fields copied without checking them again.
    static func appendResponseFields(_ upstream: HTTPHeaders, into lines: inout [UInt8]) {
        let start = lines.count
        var hasConnection = false
        for index in 0..<upstream.count where responseFieldIsKept(upstream, at: index, hasConnection: &hasConnection) {
            HTTPSerializer.appendField(&lines, at: index, of: upstream, droppingFraming: true)
        }
        guard hasConnection, !HopByHop.connectionNamed(in: upstream).isEmpty else { return }
        // Rare: a `Connection` field names others. Written again without them.
        lines.removeSubrange(start...)
        for field in responseHeaders(upstream).fields {
            HTTPSerializer.appendField(&lines, name: field.name, value: field.value, droppingFraming: true)
        }
    }

    /// The client's fields that go upstream, in order, by index: hop-by-hop fields, those a
    /// `Connection` field names, the sidecar's own (`requestFieldRole`) and those `overrides` set
    /// are left out. Names are read as bytes (no String per field). Returns the client's
    /// `x-forwarded-for` values joined, if any.
    @inline(__always)
    private static func forwardedClientFields(
        _ client: HTTPHeaders,
        mustReadBody: Bool,
        isShadow: Bool,
        replacesTraceparent: Bool,
        overrides: [VersionHeader],
        _ body: (Int) -> Void
    ) -> String? {
        let named = HopByHop.connectionNamed(in: client)
        var forwardedFor: String?
        for index in 0..<client.count {
            let role = client.withField(at: index) { name, _ in
                let role = requestFieldRole(
                    name,
                    mustReadBody: mustReadBody,
                    isShadow: isShadow,
                    replacesTraceparent: replacesTraceparent
                )
                guard role == .endToEnd else { return role }
                if !named.isEmpty && named.contains(where: { name.equalsIgnoringCase(string: $0) }) { return .dropped }
                if !overrides.isEmpty && overrides.contains(where: { name.equalsIgnoringCase(string: $0.name) }) {
                    return .dropped
                }
                return .endToEnd
            }
            switch role {
            case .endToEnd:
                body(index)
            case .forwardedFor:
                let value = client.value(at: index)
                forwardedFor = forwardedFor.map { "\($0), \(value)" } ?? value
            case .connection, .dropped:
                continue
            }
        }
        return forwardedFor
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
        _ name: UnsafeBufferPointer<UInt8>,
        mustReadBody: Bool,
        isShadow: Bool,
        replacesTraceparent: Bool
    ) -> FieldRole {
        let dropped: Bool
        switch name.count {
        case 2: dropped = name.equalsIgnoringCase("te")
        case 4: dropped = name.equalsIgnoringCase("host")
        case 6: dropped = name.equalsIgnoringCase("expect")
        case 7: dropped = name.equalsIgnoringCase("trailer") || name.equalsIgnoringCase("upgrade")
        case 10:
            if name.equalsIgnoringCase("connection") { return .connection }
            dropped = name.equalsIgnoringCase("keep-alive")
        case 11: dropped = replacesTraceparent && name.equalsIgnoringCase("traceparent")
        case 12: dropped = name.equalsIgnoringCase("x-request-id")
        case 14: dropped = name.equalsIgnoringCase("content-length")
        case 15:
            if name.equalsIgnoringCase("x-forwarded-for") { return .forwardedFor }
            dropped = mustReadBody && name.equalsIgnoringCase("accept-encoding")
        case 16: dropped = name.equalsIgnoringCase("proxy-connection")
        case 17: dropped = name.equalsIgnoringCase("transfer-encoding")
        case 18: dropped = name.equalsIgnoringCase("proxy-authenticate")
        case 19:
            dropped =
                name.equalsIgnoringCase("proxy-authorization")
                || (isShadow && name.equalsIgnoringCase("x-switchyard-shadow"))
        default: dropped = false
        }
        return dropped ? .dropped : .endToEnd
    }

    /// The client response's fields from an upstream response: hop-by-hop fields, those the
    /// response's `Connection` field names and `responseOwned` ones are dropped (one pass, names
    /// classified by length first, like the request's).
    static func responseHeaders(_ upstream: HTTPHeaders) -> HTTPHeaders {
        var kept: [(name: String, value: String)] = []
        kept.reserveCapacity(upstream.count + 3)
        var hasConnection = false
        for index in 0..<upstream.count where responseFieldIsKept(upstream, at: index, hasConnection: &hasConnection) {
            kept.append((upstream.name(at: index), upstream.value(at: index)))
        }
        if hasConnection {
            let named = HopByHop.connectionNamed(in: upstream)
            if !named.isEmpty {
                kept.removeAll { field in named.contains { $0.asciiCaseInsensitiveEquals(field.name) } }
            }
        }
        return HTTPHeaders(kept)
    }

    /// Whether the backend's field at `index` goes to the client, before the names a `Connection`
    /// field lists are looked at; notes a `Connection` field in `hasConnection`.
    @inline(__always)
    private static func responseFieldIsKept(_ upstream: HTTPHeaders, at index: Int, hasConnection: inout Bool) -> Bool {
        upstream.withField(at: index) { name, _ in
            if HopByHop.isConnection(name) {
                hasConnection = true
                return false
            }
            return !responseFieldIsDropped(name)
        }
    }

    private static func responseFieldIsDropped(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        switch name.count {
        case 12: return name.equalsIgnoringCase("x-request-id")
        case 14: return name.equalsIgnoringCase("content-length")
        case 20: return name.equalsIgnoringCase("x-switchyard-version")
        case 21: return name.equalsIgnoringCase("x-switchyard-fallback")
        default: return HopByHop.isHopByHop(name)
        }
    }

    /// The client's first `x-request-id` value, if any, read without a String per field.
    static func clientRequestID(_ client: HTTPHeaders) -> String? {
        for index in 0..<client.count
        where client.withField(at: index, { name, _ in name.count == 12 && name.equalsIgnoringCase("x-request-id") }) {
            return client.value(at: index)
        }
        return nil
    }

    /// A client-supplied request id is kept when it is short printable ASCII; otherwise a new one is made.
    static func acceptableRequestID(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= 200 else { return nil }
        for b in value.utf8 where b < 0x21 || b > 0x7E { return nil }
        return value
    }
}
