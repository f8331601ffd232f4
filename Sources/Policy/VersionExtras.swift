import YAMLSource

/// `${NAME}` references in a version's header values (SPEC §14), replaced by the environment's
/// values when the config is loaded (and reloaded).
///
/// `$$` is a literal `$`. Any other `$` is an error rather than literal text, so that
/// `Bearer $OPENAI_API_KEY` (a shell habit) cannot send the variable's name as the key. Problems
/// are described without any part of the value: a value may hold a secret written inline.
public enum EnvironmentTemplate {
    /// Why a template cannot be resolved; `description` never quotes the template.
    public enum Problem: Error, Equatable, CustomStringConvertible {
        /// `${NAME}` references whose variables are not set, each name once, in order.
        case unset([String])
        /// A `$` that starts neither `${NAME}` nor `$$`, or a `${` with no valid name and `}`;
        /// the text says where (the character, counted from 1) and what is expected.
        case malformed(String)

        public var description: String {
            switch self {
            case .unset(let names):
                let list = names.joined(separator: ", ")
                return names.count == 1
                    ? "environment variable \(list) is not set" : "environment variables \(list) are not set"
            case .malformed(let why): return why
            }
        }
    }

    /// The template with every `${NAME}` replaced by `environment[NAME]` and `$$` by `$`.
    public static func resolve(_ template: String, environment: [String: String]) -> Result<String, Problem> {
        let bytes = Array(template.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var unset: [String] = []
        var i = 0
        // Characters, not bytes, so the position means something to the person reading it.
        func position(_ index: Int) -> Int { String(decoding: bytes[..<index], as: UTF8.self).count + 1 }
        while i < bytes.count {
            let c = bytes[i]
            guard c == UInt8(ascii: "$") else {
                out.append(c)
                i += 1
                continue
            }
            let next = i + 1 < bytes.count ? bytes[i + 1] : nil
            if next == UInt8(ascii: "$") {
                out.append(c)
                i += 2
                continue
            }
            guard next == UInt8(ascii: "{") else {
                return .failure(
                    .malformed(
                        "the '$' at character \(position(i)) starts no ${NAME}; write ${NAME} for an environment variable or $$ for a literal '$'"
                    )
                )
            }
            guard let close = bytes[(i + 2)...].firstIndex(of: UInt8(ascii: "}")) else {
                return .failure(
                    .malformed("the '${' at character \(position(i)) is not closed; expected ${NAME}")
                )
            }
            let name = String(decoding: bytes[(i + 2)..<close], as: UTF8.self)
            guard isVariableName(name) else {
                return .failure(
                    .malformed(
                        "the '${...}' at character \(position(i)) does not hold a variable name; expected ${NAME} with NAME matching [A-Za-z_][A-Za-z0-9_]*"
                    )
                )
            }
            if let value = environment[name] {
                out += value.utf8
            } else if !unset.contains(name) {
                unset.append(name)
            }
            i = close + 1
        }
        if !unset.isEmpty { return .failure(.unset(unset)) }
        return .success(String(decoding: out, as: UTF8.self))
    }

    /// `[A-Za-z_][A-Za-z0-9_]*`, the names POSIX shells export.
    static func isVariableName(_ s: String) -> Bool {
        guard let first = s.utf8.first, first < 0x30 || first > 0x39 else { return false }
        return s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
        }
    }
}

extension PolicyChecker {
    /// Header names a version may not set: hop-by-hop fields and the framing the sidecar writes
    /// itself for every upstream request (SPEC §4 "rebuilds each upstream request").
    static let reservedHeaderNames: [String] = [
        "connection", "content-length", "host", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    ]

    /// A remote version's `model_name:` and `headers:` (SPEC §14). `model_name` is checked here
    /// for its shape only: whether the version's model is served by an `openai` route is known
    /// once the routes are read (`ServingChecks`). Nil when either has an error (reported).
    func versionExtras(_ fields: Fields, url: Syntax.URLParts?) -> (modelName: String?, headers: [VersionHeader])? {
        let errorsBefore = scope.sink.errorCount
        var modelName: String?
        if let node = fields["model_name"], let text = scope.string(node, for: "'model_name'") {
            if text.isEmpty {
                scope.error(node, "model_name is empty; expected the model name the backend serves, e.g. llama-3.1-8b")
            } else {
                modelName = text
            }
        }
        var headers: [VersionHeader] = []
        if let node = fields["headers"] {
            if let url, url.isGRPC, let key = fields.keyNode("headers") {
                scope.error(
                    key,
                    "'headers' is only valid for http://, https:// and unix: versions; a grpc:// or grpcs:// version takes none"
                )
            }
            headers = versionHeaders(node)
        }
        guard scope.sink.errorCount == errorsBefore else { return nil }
        return (modelName, headers)
    }

    /// The `headers:` map: names lower-cased, checked and unique; values resolved against the
    /// environment. No message quotes a value, resolved or as written.
    private func versionHeaders(_ node: YAMLNode) -> [VersionHeader] {
        guard let entries = scope.namedEntries(node, for: "'headers'", context: "headers") else { return [] }
        var headers: [VersionHeader] = []
        var seen: [String: YAMLNode] = [:]
        for entry in entries {
            let name = entry.name.lowercased()
            guard Syntax.isToken(name) else {
                scope.error(entry.key, "header name '\(entry.name)' is not a token")
                continue
            }
            if Self.reservedHeaderNames.contains(name) {
                scope.error(
                    entry.key,
                    "header '\(name)' cannot be set by a version: the sidecar writes the connection's own framing and hop-by-hop fields (\(Self.reservedHeaderNames.joined(separator: ", ")))"
                )
                continue
            }
            if let first = seen[name] {
                scope.error(entry.key, "duplicate header '\(name)' (first at \(scope.location(first.mark)))")
                continue
            }
            seen[name] = entry.key
            // Not `scope.string`: its message quotes a wrong-typed value, which may be a secret.
            guard case .string(let template)? = entry.value.scalar?.value else {
                let found: String
                switch entry.value.scalar?.value {
                case nil: found = entry.value.sequence != nil ? "a sequence" : "a mapping"
                case .null?: found = "null"
                case .bool?: found = "a boolean (quote it)"
                default: found = "a number (quote it)"
                }
                scope.error(entry.value, "expected a string for the value of header '\(name)', found \(found)")
                continue
            }
            switch EnvironmentTemplate.resolve(template, environment: environment) {
            case .failure(let problem):
                scope.error(entry.value, "header '\(name)': \(problem)")
            case .success(let value):
                if value.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
                    scope.error(
                        entry.value,
                        "header '\(name)': its value contains a line break or another control character (after ${NAME} is replaced); a header value is one line"
                    )
                    continue
                }
                headers.append(VersionHeader(name: name, value: value, template: template))
            }
        }
        return headers
    }
}
