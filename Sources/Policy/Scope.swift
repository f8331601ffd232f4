import YAMLSource

/// Collects diagnostics from every file of one load.
final class DiagnosticSink {
    private(set) var diagnostics: [Diagnostic] = []
    /// Errors so far; warnings do not count (a checker builds its part of the model when its
    /// count did not change).
    private(set) var errorCount = 0

    func add(_ location: SourceLocation, _ message: String, severity: Diagnostic.Severity = .error) {
        diagnostics.append(Diagnostic(location, message, severity: severity))
        if severity == .error { errorCount += 1 }
    }

    /// Sorted by file, then line, then column; ties keep the order they were found in.
    var sorted: [Diagnostic] { Diagnostic.sorted(diagnostics) }
}

/// One YAML file being checked: its rendered path, its directory (for relative paths inside
/// it) and the sink its problems go to. Every typed read reports its own problem and returns
/// nil, so checking goes on and every problem is found in one pass.
struct FileScope {
    let path: String
    let directory: String
    let sink: DiagnosticSink

    func location(_ mark: YAMLMark) -> SourceLocation {
        SourceLocation(file: path, line: mark.line, column: mark.column)
    }

    func error(_ node: YAMLNode, _ message: String) {
        sink.add(location(node.mark), message)
    }

    func error(_ mark: YAMLMark, _ message: String) {
        sink.add(location(mark), message)
    }

    /// A problem that does not stop the config from loading.
    func warning(_ node: YAMLNode, _ message: String) {
        sink.add(location(node.mark), message, severity: .warning)
    }

    /// A path written inside this file, made usable from the process's working directory:
    /// joined to the file's directory and normalized lexically (`a/policies/../m.json` becomes
    /// `a/m.json`). Lexically, not by the file system: in a Kubernetes ConfigMap volume
    /// `policies` is a symlink into the hidden `..data` snapshot, and `..` must mean the config
    /// directory the user sees, not the snapshot.
    func resolve(_ relative: String) -> String {
        let joined =
            relative.hasPrefix("/") || directory.isEmpty || directory == "." ? relative : directory + "/" + relative
        return Self.normalize(joined)
    }

    /// Removes `.` segments, empty segments and `name/..` pairs; keeps leading `..` of a
    /// relative path.
    static func normalize(_ path: String) -> String {
        let isAbsolute = path.hasPrefix("/")
        var out: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            if segment == "." { continue }
            if segment == "..", let last = out.last, last != ".." {
                out.removeLast()
                continue
            }
            if segment == "..", isAbsolute, out.isEmpty { continue }
            out.append(segment)
        }
        let body = out.joined(separator: "/")
        if isAbsolute { return "/" + body }
        return body.isEmpty ? "." : body
    }

    // MARK: Typed reads

    /// The keys of a mapping, checked: unknown keys, duplicates and non-string keys reported.
    func fields(_ node: YAMLNode, for what: String, context: String, allowed: [String]) -> Fields? {
        guard let pairs = mapping(node, for: what) else { return nil }
        var fields = Fields(node: node, context: context, scope: self)
        for pair in pairs {
            guard let key = key(pair.key, in: context) else { continue }
            if let first = fields.keys[key] {
                error(pair.key, "duplicate key '\(key)' (first at \(location(first.mark)))")
                continue
            }
            fields.keys[key] = pair.key
            guard allowed.contains(key) else {
                error(
                    pair.key,
                    "unknown key '\(key)' in \(context); expected one of: \(allowed.joined(separator: ", "))"
                )
                continue
            }
            fields.values[key] = pair.value
        }
        return fields
    }

    /// The pairs of a mapping whose keys are names chosen by the user (versions, labels,
    /// split, headers): duplicates and non-name keys reported, first occurrence kept.
    func namedEntries(
        _ node: YAMLNode,
        for what: String,
        context: String
    ) -> [(name: String, key: YAMLNode, value: YAMLNode)]? {
        guard let pairs = mapping(node, for: what) else { return nil }
        var seen: [String: YAMLNode] = [:]
        var entries: [(name: String, key: YAMLNode, value: YAMLNode)] = []
        for pair in pairs {
            guard let name = key(pair.key, in: context) else { continue }
            if let first = seen[name] {
                error(pair.key, "duplicate key '\(name)' (first at \(location(first.mark)))")
                continue
            }
            seen[name] = pair.key
            entries.append((name, pair.key, pair.value))
        }
        return entries
    }

    private func key(_ node: YAMLNode, in context: String) -> String? {
        guard let scalar = node.scalar else {
            error(node, "expected a name as key in \(context), found \(node.found)")
            return nil
        }
        switch scalar.value {
        case .string(let s): return s
        case .int: return scalar.text
        default:
            error(node, "expected a name as key in \(context), found \(node.found)")
            return nil
        }
    }

    func mapping(_ node: YAMLNode, for what: String) -> [YAMLPair]? {
        if let pairs = node.mapping { return pairs }
        error(node, "expected a mapping for \(what), found \(node.found)")
        return nil
    }

    func sequence(_ node: YAMLNode, for what: String) -> [YAMLNode]? {
        if let items = node.sequence { return items }
        error(node, "expected a sequence for \(what), found \(node.found)")
        return nil
    }

    func string(_ node: YAMLNode, for what: String) -> String? {
        if case .string(let s)? = node.scalar?.value { return s }
        error(node, "expected a string for \(what), found \(node.found)")
        return nil
    }

    /// A version, label, model or route name: a string, or an integer as written (TF Serving
    /// numbers its versions).
    func name(_ node: YAMLNode, for what: String) -> String? {
        if let scalar = node.scalar {
            switch scalar.value {
            case .string(let s) where !s.isEmpty: return s
            case .int: return scalar.text
            default: break
            }
        }
        error(node, "expected a name for \(what), found \(node.found)")
        return nil
    }

    /// `true` or `false` (YAML 1.2 core schema: `yes` and `on` are strings).
    func boolean(_ node: YAMLNode, for what: String) -> Bool? {
        if case .bool(let b)? = node.scalar?.value { return b }
        error(node, "expected a boolean (true or false) for \(what), found \(node.found)")
        return nil
    }

    func integer(_ node: YAMLNode, for what: String) -> Int? {
        if case .int(let i)? = node.scalar?.value { return i }
        error(node, "expected an integer for \(what), found \(node.found)")
        return nil
    }

    func integer(_ node: YAMLNode, for key: String, in range: ClosedRange<Int>) -> Int? {
        guard let value = integer(node, for: "'\(key)'") else { return nil }
        guard range.contains(value) else {
            let expected =
                range.upperBound == Int.max
                ? "\(range.lowerBound) or more" : "\(range.lowerBound)...\(range.upperBound)"
            error(node, "\(key) \(node.text) is out of range; expected \(expected)")
            return nil
        }
        return value
    }

    /// A finite number: an integer or a float other than `.inf` / `.nan`.
    func number(_ node: YAMLNode, for what: String) -> Double? {
        switch node.scalar?.value {
        case .int(let i)?: return Double(i)
        case .float(let d)? where d.isFinite: return d
        case .float?:
            error(node, "expected a finite number for \(what), found \(node.found)")
            return nil
        default:
            error(node, "expected a number for \(what), found \(node.found)")
            return nil
        }
    }

    func number(_ node: YAMLNode, for key: String, in range: ClosedRange<Double>) -> Double? {
        guard let value = number(node, for: "'\(key)'") else { return nil }
        guard range.contains(value) else {
            error(
                node,
                "\(key) \(node.text) is out of range; expected \(format(range.lowerBound))...\(format(range.upperBound))"
            )
            return nil
        }
        return value
    }

    private func format(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)
    }
}

/// The checked keys of one mapping.
struct Fields {
    let node: YAMLNode
    let context: String
    let scope: FileScope
    /// Every string key seen, at its first occurrence.
    var keys: [String: YAMLNode] = [:]
    /// Values of the allowed keys.
    var values: [String: YAMLNode] = [:]

    subscript(_ key: String) -> YAMLNode? { values[key] }

    /// The key node itself, for problems about the entry as a whole.
    func keyNode(_ key: String) -> YAMLNode? { values[key] == nil ? nil : keys[key] }

    func required(_ key: String) -> YAMLNode? {
        if let value = values[key] { return value }
        if keys[key] == nil {
            scope.error(node, "missing required key '\(key)' in \(context)")
        }
        return nil
    }
}
