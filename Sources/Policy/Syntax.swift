/// Small grammars the config uses: tokens, URLs, key sources, JSON pointers, path templates.
enum Syntax {
    static let urlShape = "http://host[:port][/path]"
    static let keySourceShape = "header:NAME, cookie:NAME, query:NAME or body:/json/pointer"

    /// An HTTP token (RFC 9110 `tchar`): method and header names.
    static func isToken(_ s: String) -> Bool {
        !s.isEmpty
            && s.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                    || "!#$%&'*+-.^_`|~".utf8.contains(c)
            }
    }

    /// `[a-z0-9_-]+`
    static func isRouteName(_ s: String) -> Bool {
        !s.isEmpty
            && s.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
            }
    }

    /// RFC 6901: empty, or `/`-separated tokens where `~` is followed by `0` or `1`.
    static func isJSONPointer(_ s: String) -> Bool {
        if s.isEmpty { return true }
        guard s.hasPrefix("/") else { return false }
        let bytes = Array(s.utf8)
        for (i, c) in bytes.enumerated() where c == UInt8(ascii: "~") {
            guard i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "0") || bytes[i + 1] == UInt8(ascii: "1") else {
                return false
            }
        }
        return true
    }

    static func keySource(_ s: String) -> KeySource? {
        guard let colon = s.firstIndex(of: ":") else { return nil }
        let kind = s[..<colon]
        let name = String(s[s.index(after: colon)...])
        let plain = !name.isEmpty && !name.contains(where: { $0.isWhitespace || $0 == ";" || $0 == "=" || $0 == "&" })
        switch kind {
        case "header": return isToken(name) ? .header(name.lowercased()) : nil
        case "cookie": return plain ? .cookie(name) : nil
        case "query": return plain ? .query(name) : nil
        case "body": return name.hasPrefix("/") && isJSONPointer(name) ? .body(name) : nil
        default: return nil
        }
    }

    struct URLParts {
        var host: String
        var port: Int
        var path: String?
    }

    /// `http://host[:port][/path]`; the error says what is wrong.
    static func url(_ s: String) -> Result<URLParts, SyntaxError> {
        func bad(_ why: String) -> Result<URLParts, SyntaxError> {
            .failure(SyntaxError("bad url '\(s)': \(why); expected \(urlShape)"))
        }
        let lower = s.lowercased()
        if lower.hasPrefix("https://") {
            return .failure(SyntaxError("https is not supported (url '\(s)'); expected \(urlShape)"))
        }
        guard lower.hasPrefix("http://") else { return bad("the scheme must be http") }
        let rest = s.dropFirst("http://".count)
        if rest.contains("?") { return bad("a query is not allowed") }
        if rest.contains("#") { return bad("a fragment is not allowed") }
        if rest.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7F } == true }) {
            return bad("spaces and control characters are not allowed")
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        let path = String(rest[slash...])
        if authority.contains("@") { return bad("user information is not allowed") }
        var host = Substring(authority)
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return bad("unterminated IPv6 address") }
            host = authority[...close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return bad("unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.firstIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        }
        if host.isEmpty { return bad("the host is missing") }
        if !authority.hasPrefix("["),
            !host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_") })
        {
            return bad("host '\(host)' is not a host name or address")
        }
        var port = ConfigDefaults.httpPort
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                let p = Int(portText), (1...65535).contains(p)
            else {
                return bad("port '\(portText)' is not a number in 1...65535")
            }
            port = p
        }
        return .success(URLParts(host: String(host), port: port, path: path.isEmpty || path == "/" ? nil : path))
    }

    /// `/v1/models/churn/versions/{version}:predict`: exactly one capture, `{version}` or `{label}`.
    static func template(_ s: String) -> Result<PathTemplate, SyntaxError> {
        var segments: [PathTemplate.Segment] = []
        var literal = ""
        var captures: [String] = []
        var rest = Substring(s)
        while let c = rest.first {
            rest = rest.dropFirst()
            if c == "}" { return .failure(SyntaxError("template '\(s)' has a '}' without '{'")) }
            guard c == "{" else {
                literal.append(c)
                continue
            }
            guard let close = rest.firstIndex(of: "}") else {
                return .failure(SyntaxError("template '\(s)' has a '{' without '}'"))
            }
            let name = String(rest[..<close])
            rest = rest[rest.index(after: close)...]
            guard name == "version" || name == "label" else {
                return .failure(
                    SyntaxError("template capture '{\(name)}' is not allowed; expected {version} or {label}")
                )
            }
            if !literal.isEmpty { segments.append(.literal(literal)) }
            literal = ""
            segments.append(.capture(name))
            captures.append(name)
        }
        if !literal.isEmpty { segments.append(.literal(literal)) }
        if captures.count > 1 {
            return .failure(
                SyntaxError(
                    "template '\(s)' has \(captures.count) captures; expected exactly one, {version} or {label}"
                )
            )
        }
        if captures.isEmpty {
            return .failure(
                SyntaxError(
                    "template '\(s)' has no capture; expected {version} or {label} (use 'path' for a fixed path)"
                )
            )
        }
        return .success(PathTemplate(source: s, segments: segments))
    }
}

struct SyntaxError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}
