import YAMLSource

/// Checks one `routes/*.yaml` file against the policies found.
struct RouteChecker {
    let scope: FileScope
    let models: [String: PolicyInfo]
    /// Where the policies live, for the message about an empty policies directory.
    let policiesDirectory: String
    /// A policy file could not be read as YAML: its model is unknown, so say nothing about
    /// unknown models rather than guess.
    let hasUnreadablePolicy: Bool

    // Accepted keys come from the catalogue, which the schema and the reference are made from.
    static let fileKeys = ConfigCatalogue.routeFile.names
    static let keys = ConfigCatalogue.route.names
    static let matchKeys = ConfigCatalogue.match.names

    /// Returns the routes the file defines (nil entries for broken ones are dropped), and
    /// records route names in `names` to find duplicates across files.
    func check(_ root: YAMLNode, names: inout [String: SourceLocation], routeCount: inout Int) -> [Route] {
        guard let fields = scope.fields(root, for: "the route file", context: "route file", allowed: Self.fileKeys),
            let node = fields.required("routes"), let items = scope.sequence(node, for: "'routes'")
        else { return [] }
        routeCount += items.count
        return items.compactMap { checkRoute($0, names: &names) }
    }

    private func checkRoute(_ node: YAMLNode, names: inout [String: SourceLocation]) -> Route? {
        guard let fields = scope.fields(node, for: "a route", context: "route", allowed: Self.keys) else { return nil }
        let problemsBefore = scope.sink.errorCount

        var name: String?
        if let nameNode = fields.required("name"), let text = scope.string(nameNode, for: "'name'") {
            if !Syntax.isRouteName(text) {
                scope.error(nameNode, "route name '\(text)' is not valid; expected [a-z0-9_-]+")
            } else if let first = names[text] {
                scope.error(nameNode, "duplicate route name '\(text)' (first at \(first))")
            } else {
                names[text] = scope.location(nameNode.mark)
                name = text
            }
        }

        let match = fields.required("match").flatMap { checkMatch($0) }
        let modelNode = fields.required("model")
        let model = modelNode.flatMap { scope.name($0, for: "'model'") }
        let wireProtocol = fields["protocol"].map { checkProtocol($0, scope) } ?? ConfigDefaults.routeProtocol

        // How the route pins a version: at most one way.
        var pins: [(key: String, pin: VersionPin?, node: YAMLNode)] = []
        if case .template(let template)? = match?.path,
            let capture = template.segments.lazy.compactMap({ s -> String? in
                if case .capture(let c) = s { return c }
                return nil
            }).first, let matchNode = fields["match"]
        {
            pins.append(("{\(capture)}", .pathCapture(capture), matchNode))
        }
        if let versionNode = fields["version"] {
            let pin = scope.name(versionNode, for: "'version'").flatMap { version -> VersionPin? in
                checkReference(version, versionNode, model: model) ? .fixed(version) : nil
            }
            pins.append(("version", pin, fields.keyNode("version") ?? versionNode))
        }
        if let fromNode = fields["version_from"] {
            var pin: VersionPin?
            if let text = scope.string(fromNode, for: "'version_from'") {
                if case .header(let header)? = Syntax.keySource(text) {
                    pin = .header(header)
                } else {
                    scope.error(fromNode, "bad version_from '\(text)'; expected header:NAME")
                }
            }
            pins.append(("version_from", pin, fields.keyNode("version_from") ?? fromNode))
        }
        if pins.count > 1 {
            let ways = pins.map { $0.key.hasPrefix("{") ? "a template capture \($0.key)" : "'\($0.key)'" }
            scope.error(
                pins[1].node,
                "route pins its version in \(pins.count) ways (\(ways.joined(separator: ", "))); expected at most one"
            )
        }

        if let model, let modelNode, models[model] == nil, !hasUnreadablePolicy {
            if models.isEmpty {
                scope.error(modelNode, "unknown model '\(model)'; \(policiesDirectory)/ has no policy files")
            } else {
                scope.error(
                    modelNode,
                    "unknown model '\(model)'; expected one of: \(models.keys.sorted().joined(separator: ", "))"
                )
            }
        }

        guard scope.sink.errorCount == problemsBefore, let name, let match, let model, let wireProtocol else {
            return nil
        }
        return Route(
            name: name,
            match: match,
            model: model,
            wireProtocol: wireProtocol,
            pin: pins.first?.pin,
            location: scope.location(node.mark)
        )
    }

    /// Checks that a pinned version or label exists in the route's model.
    private func checkReference(_ name: String, _ node: YAMLNode, model: String?) -> Bool {
        guard let model, let info = models[model] else { return true }
        if info.lookup(name) == .unknown {
            scope.error(
                node,
                "unknown version or label '\(name)' of model '\(model)'; expected one of: \(info.knownNames)"
            )
            return false
        }
        return true
    }

    private func checkMatch(_ node: YAMLNode) -> RouteMatch? {
        guard let fields = scope.fields(node, for: "'match'", context: "match", allowed: Self.matchKeys) else {
            return nil
        }
        let given = ["path", "prefix", "template"].filter { fields[$0] != nil }
        var path: PathMatch?
        if given.isEmpty {
            scope.error(node, "match has none of path, prefix, template; expected exactly one")
        } else if given.count > 1 {
            scope.error(
                node,
                "match has several of path, prefix, template (\(given.joined(separator: ", "))); expected exactly one"
            )
        } else if let valueNode = fields[given[0]], let text = scope.string(valueNode, for: "'\(given[0])'") {
            if !text.hasPrefix("/") {
                scope.error(valueNode, "\(given[0]) '\(text)' does not start with '/'")
            } else if given[0] == "path" {
                path = .exact(text)
            } else if given[0] == "prefix" {
                path = .prefix(text)
            } else {
                switch Syntax.template(text) {
                case .success(let template): path = .template(template)
                case .failure(let error): scope.error(valueNode, error.message)
                }
            }
        }

        var method: String?
        if let methodNode = fields["method"], let text = scope.string(methodNode, for: "'method'") {
            if Syntax.isToken(text) {
                method = text.uppercased()
            } else {
                scope.error(methodNode, "method '\(text)' is not a token; expected a method such as GET or POST")
            }
        }

        var headers: [(name: String, value: String)] = []
        if let headersNode = fields["headers"],
            let entries = scope.namedEntries(headersNode, for: "'headers'", context: "headers")
        {
            var seen: [String: YAMLNode] = [:]
            for entry in entries {
                let name = entry.name.lowercased()
                if !Syntax.isToken(name) {
                    scope.error(entry.key, "header name '\(entry.name)' is not a token")
                    continue
                }
                if let first = seen[name] {
                    scope.error(entry.key, "duplicate header '\(name)' (first at \(scope.location(first.mark)))")
                    continue
                }
                seen[name] = entry.key
                if let value = scope.string(entry.value, for: "header '\(entry.name)'") {
                    headers.append((name, value))
                }
            }
        }
        guard let path else { return nil }
        return RouteMatch(path: path, method: method, headers: headers)
    }
}
