import Foundation

/// Small grammars the config uses: tokens, URLs, key sources, JSON pointers, path templates.
enum Syntax {
    static let httpShape = "http://host[:port][/path]"
    static let httpsShape = "https://host[:port][/path]"
    static let unixShape = "unix:/abs/path.sock[:/path]"
    static let grpcShape = "grpc://host:port"
    static let grpcsShape = "grpcs://host[:port]"
    /// Every accepted URL shape, for a URL whose scheme is not one of them.
    static let urlShape = "\(httpShape), \(httpsShape), \(unixShape), \(grpcShape) or \(grpcsShape)"
    static let keySourceShape = "header:NAME, cookie:NAME, query:NAME or body:/json/pointer"

    /// An HTTP token (RFC 9110 `tchar`): method and header names.
    static func isToken(_ s: String) -> Bool {
        !s.isEmpty
            && s.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                    || "!#$%&'*+-.^_`|~".utf8.contains(c)
            }
    }

    static let grpcMethodShape = "package.Service/Method or package.Service/*"

    /// `package.Service/Method` or `package.Service/*`: dot-separated protobuf identifiers
    /// (`[A-Za-z_][A-Za-z0-9_]*`), a `/`, then an identifier or `*`. Nil when it has another shape.
    static func grpcMethod(_ s: String) -> GRPCMethodMatch? {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let names = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard names.allSatisfy(isIdentifier) else { return nil }
        if parts[1] == "*" { return GRPCMethodMatch(service: String(parts[0]), method: nil) }
        guard isIdentifier(parts[1]) else { return nil }
        return GRPCMethodMatch(service: String(parts[0]), method: String(parts[1]))
    }

    /// A protobuf identifier: `[A-Za-z_][A-Za-z0-9_]*`.
    private static func isIdentifier(_ s: Substring) -> Bool {
        guard let first = s.utf8.first, first < 0x30 || first > 0x39 else { return false }
        return s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
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

    struct URLParts: Equatable {
        var host: String
        var port: Int
        var path: String?
        /// `unix:` URLs: the socket's absolute path; host is `localhost` and port 0 then.
        var socketPath: String?
        /// `https://` and `grpcs://` URLs.
        var isTLS = false
        /// `grpc://` and `grpcs://` URLs (SPEC §13).
        var isGRPC = false
    }

    /// `http://host[:port][/path]`, `https://host[:port][/path]`, `unix:/abs/path.sock`,
    /// `unix:/abs/path.sock:/path`, `grpc://host:port` or `grpcs://host[:port]`; the error says
    /// what is wrong.
    ///
    /// A `grpc://` URL must name its port: plaintext gRPC has no conventional one (Triton
    /// listens on 8001, TF Serving on 8500, MLServer on 8081), so a default would be wrong more
    /// often than right. `grpcs://` defaults to 443, as gRPC's own resolver and `https://` do.
    /// Neither takes a path: a call keeps its `/package.Service/Method`.
    static func url(_ s: String) -> Result<URLParts, SyntaxError> {
        let lower = s.lowercased()
        if lower.hasPrefix("unix:") { return unixURL(s) }
        let scheme: (name: String, isTLS: Bool, isGRPC: Bool, shape: String)
        if lower.hasPrefix("https://") {
            scheme = ("https://", true, false, httpsShape)
        } else if lower.hasPrefix("http://") {
            scheme = ("http://", false, false, httpShape)
        } else if lower.hasPrefix("grpcs://") {
            scheme = ("grpcs://", true, true, grpcsShape)
        } else if lower.hasPrefix("grpc://") {
            scheme = ("grpc://", false, true, grpcShape)
        } else {
            return .failure(
                SyntaxError(
                    "bad url '\(s)': the scheme must be http, https, unix, grpc or grpcs; expected \(urlShape)"
                )
            )
        }
        let isTLS = scheme.isTLS
        // Once the scheme is known, a message names that scheme's shape only.
        let shape = scheme.shape
        func bad(_ why: String) -> Result<URLParts, SyntaxError> {
            .failure(SyntaxError("bad url '\(s)': \(why); expected \(shape)"))
        }
        let rest = s.dropFirst(scheme.name.count)
        if rest.contains("?") { return bad("a query is not allowed") }
        if rest.contains("#") { return bad("a fragment is not allowed") }
        if rest.contains(where: isSpaceOrControl) { return bad("spaces and control characters are not allowed") }
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
        if scheme.isGRPC, !path.isEmpty, path != "/" {
            return bad("a path is not allowed; a gRPC call keeps its /package.Service/Method")
        }
        if scheme.isGRPC, !isTLS, portText == nil {
            return bad("the port is missing; plaintext gRPC has no default port")
        }
        var port = isTLS ? ConfigDefaults.httpsPort : ConfigDefaults.httpPort
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                let p = Int(portText), (1...65535).contains(p)
            else {
                return bad("port '\(portText)' is not a number in 1...65535")
            }
            port = p
        }
        return .success(
            URLParts(
                host: String(host),
                port: port,
                path: path.isEmpty || path == "/" ? nil : path,
                socketPath: nil,
                isTLS: isTLS,
                isGRPC: scheme.isGRPC
            )
        )
    }

    /// `unix:/abs/path.sock` (request path kept) or `unix:/abs/path.sock:/path` (the text after
    /// the second `:` replaces the request's path, as a URL's path does), SPEC §12.
    private static func unixURL(_ s: String) -> Result<URLParts, SyntaxError> {
        func bad(_ why: String) -> Result<URLParts, SyntaxError> {
            .failure(SyntaxError("bad url '\(s)': \(why); expected \(unixShape)"))
        }
        let rest = s.dropFirst("unix:".count)
        if rest.contains("?") { return bad("a query is not allowed") }
        if rest.contains("#") { return bad("a fragment is not allowed") }
        if rest.contains(where: isSpaceOrControl) { return bad("spaces and control characters are not allowed") }
        let colon = rest.firstIndex(of: ":")
        let socketPath = String(rest[..<(colon ?? rest.endIndex)])
        if socketPath.isEmpty { return bad("the socket path is missing") }
        if socketPath.hasPrefix("//") {
            let oneSlash = "unix:/" + s.dropFirst("unix:".count).drop { $0 == "/" }
            return bad(
                "the socket path '\(socketPath)' starts with '//'; write one '/' after 'unix:', as in '\(oneSlash)'"
            )
        }
        guard socketPath.hasPrefix("/") else {
            return bad("the socket path '\(socketPath)' must be absolute (start with '/')")
        }
        if socketPath.utf8.count > maxSocketPathBytes {
            return bad(
                "the socket path is \(socketPath.utf8.count) bytes long; a Unix socket path holds at most \(maxSocketPathBytes)"
            )
        }
        var path: String?
        if let colon {
            let text = String(rest[rest.index(after: colon)...])
            guard text.hasPrefix("/") else {
                let found = text.isEmpty ? "nothing" : "'\(text)'"
                return bad("the path after the socket path must start with '/', found \(found)")
            }
            path = text == "/" ? nil : text
        }
        return .success(URLParts(host: "localhost", port: 0, path: path, socketPath: socketPath, isTLS: false))
    }

    /// A TLS `server_name`: a DNS name (labels of letters, digits and inner hyphens, at most 63
    /// bytes each, 253 in all, an optional final dot), or an IPv4 or IPv6 literal (no brackets).
    static func isServerName(_ s: String) -> Bool {
        if isIPv4(s) { return true }
        if s.contains(":") { return isIPv6(s) }
        var name = Substring(s)
        if name.hasSuffix(".") { name = name.dropLast() }
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        // All-numeric dotted text that is not a valid IPv4 address (`999.1.1.1`) is a typo.
        if labels.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) { return false }
        return labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }

    static func isIPv4(_ s: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, s, &address) == 1
    }

    static func isIPv6(_ s: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, s, &address) == 1
    }

    /// `sun_path` holds 108 bytes on Linux, the last one the terminating NUL.
    static let maxSocketPathBytes = 107

    private static func isSpaceOrControl(_ c: Character) -> Bool {
        c.isWhitespace || c.asciiValue.map { $0 < 0x20 || $0 == 0x7F } == true
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
