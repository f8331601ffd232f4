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
    /// records route names in `names` to find duplicates across files, and in `serving`, by
    /// model, every route naming one, broken or not (for `ServingChecks`).
    func check(
        _ root: YAMLNode,
        names: inout [String: SourceLocation],
        routeCount: inout Int,
        serving: inout [String: [ServingRoute]]
    ) -> [Route] {
        guard let fields = scope.fields(root, for: "the route file", context: "route file", allowed: Self.fileKeys),
            let node = fields.required("routes"), let items = scope.sequence(node, for: "'routes'")
        else { return [] }
        routeCount += items.count
        return items.compactMap { checkRoute($0, names: &names, serving: &serving) }
    }

    private func checkRoute(
        _ node: YAMLNode,
        names: inout [String: SourceLocation],
        serving: inout [String: [ServingRoute]]
    ) -> Route? {
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

        let checked = fields.required("match").map { checkMatch($0) }
        let match = checked?.match
        let modelNode = fields.required("model")
        let model = modelNode.flatMap { scope.name($0, for: "'model'") }
        var wireProtocol = fields["protocol"].map { checkProtocol($0, scope) } ?? ConfigDefaults.routeProtocol
        let isGRPCRoute = checked?.grpcNode != nil
        if let checked {
            wireProtocol = checkGRPC(checked, protocolNode: fields["protocol"], wireProtocol: wireProtocol)
        }

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
                if text == "message" {
                    if isGRPCRoute {
                        pin = .message
                    } else {
                        scope.error(
                            fromNode,
                            "version_from 'message' needs a gRPC route (match.grpc); a REST route reads header:NAME"
                        )
                    }
                } else if case .header(let header)? = Syntax.keySource(text) {
                    pin = .header(header)
                } else {
                    scope.error(fromNode, "bad version_from '\(text)'; expected header:NAME or message")
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

        if let model { serving[model, default: []].append(ServingRoute(name: name, wireProtocol: wireProtocol)) }
        // An openai route's versions are checked with the model's other openai keys (ServingChecks).
        if let wireProtocol, wireProtocol != .openai, let model, let info = models[model] {
            let at = fields.keyNode("protocol") ?? modelNode ?? node
            for spec in info.versionSpecs {
                checkVersionProtocol(spec, route: name, speaking: wireProtocol, model: model, at: at)
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

    /// A checked `match:` and the nodes its gRPC checks point at.
    private struct CheckedMatch {
        var match: RouteMatch?
        /// The `grpc` value, when the match has that key (a gRPC route, even if its value is bad).
        var grpcNode: YAMLNode?
        var modelNode: YAMLNode?
    }

    private func checkMatch(_ node: YAMLNode) -> CheckedMatch {
        guard let fields = scope.fields(node, for: "'match'", context: "match", allowed: Self.matchKeys) else {
            return CheckedMatch()
        }
        let given = ["path", "prefix", "template", "grpc"].filter { fields[$0] != nil }
        var path: PathMatch?
        var grpc: GRPCMethodMatch?
        if given.isEmpty {
            scope.error(node, "match has none of path, prefix, template, grpc; expected exactly one")
        } else if given.count > 1 {
            scope.error(
                node,
                "match has several of path, prefix, template, grpc (\(given.joined(separator: ", "))); expected exactly one"
            )
        } else if let valueNode = fields[given[0]], let text = scope.string(valueNode, for: "'\(given[0])'") {
            if given[0] == "grpc" {
                if let method = Syntax.grpcMethod(text) {
                    grpc = method
                    path = method.pathMatch
                } else {
                    scope.error(valueNode, "bad grpc method '\(text)'; expected \(Syntax.grpcMethodShape)")
                }
            } else if !text.hasPrefix("/") {
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
        if let methodNode = fields["method"], fields["grpc"] != nil {
            scope.error(
                fields.keyNode("method") ?? methodNode,
                "'method' is not valid with 'grpc'; every gRPC call is a POST, matched by its gRPC method"
            )
        } else if let methodNode = fields["method"], let text = scope.string(methodNode, for: "'method'") {
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
        var model: String?
        if let modelNode = fields["model"] {
            if fields["grpc"] == nil {
                scope.error(
                    fields.keyNode("model") ?? modelNode,
                    "'model' is only valid with 'grpc'; it matches the model name inside a gRPC message"
                )
            } else {
                model = scope.name(modelNode, for: "'model'")
            }
        }
        let match = path.map { RouteMatch(path: $0, method: method, headers: headers, grpc: grpc, model: model) }
        return CheckedMatch(match: match, grpcNode: fields["grpc"], modelNode: fields["model"])
    }

    /// The route's protocol once `match.grpc` is taken into account: a gRPC route speaks its
    /// service's protocol (the default when it names none), a REST route a REST protocol.
    /// Reports a mismatch, an unknown service or method, and `match.model` on a method whose
    /// requests carry no model name.
    private func checkGRPC(
        _ checked: CheckedMatch,
        protocolNode: YAMLNode?,
        wireProtocol: WireProtocol?
    ) -> WireProtocol? {
        let grpcProtocols = WireProtocol.allCases.filter(\.isGRPC)
        guard let grpcNode = checked.grpcNode else {
            if let wireProtocol, wireProtocol.isGRPC, let protocolNode {
                scope.error(
                    protocolNode,
                    "protocol '\(wireProtocol.rawValue)' needs match.grpc; gRPC calls are matched by method (\(Syntax.grpcMethodShape)), not by path"
                )
            }
            return wireProtocol
        }
        // A bad `grpc` value (reported): the protocol is unknown unless written, so that versions
        // are not checked against the REST default.
        guard let grpc = checked.match?.grpc else { return wireProtocol?.isGRPC == true ? wireProtocol : nil }
        let served = WireProtocol.grpc(service: grpc.service)
        let route: WireProtocol
        if let protocolNode {
            guard let wireProtocol else { return nil }
            guard wireProtocol.isGRPC else {
                scope.error(
                    protocolNode,
                    "protocol '\(wireProtocol.rawValue)' cannot serve match.grpc; expected one of: \(grpcProtocols.map(\.rawValue).joined(separator: ", "))"
                )
                return nil
            }
            route = wireProtocol
        } else {
            guard let served else {
                let known = grpcProtocols.map { "\($0.grpcService!) (\($0.rawValue))" }
                scope.error(
                    grpcNode,
                    "unknown gRPC service '\(grpc.service)'; expected \(known.joined(separator: " or "))"
                )
                return nil
            }
            route = served
        }
        let service = route.grpcService!
        guard served == route else {
            scope.error(
                grpcNode,
                "gRPC service '\(grpc.service)' is not served by protocol '\(route.rawValue)'; expected \(service)/METHOD or \(service)/*"
            )
            return nil
        }
        guard let method = grpc.method else { return route }
        if route.grpcMethodsNotServed.contains(method) {
            scope.error(
                grpcNode,
                "\(grpc) is not answered by the sidecar; expected one of: \(route.grpcMethods.joined(separator: ", ")) (or *)"
            )
        } else if !route.grpcMethods.contains(method) {
            scope.error(
                grpcNode,
                "unknown method '\(method)' of \(service); expected one of: \(route.grpcMethods.joined(separator: ", ")) (or *)"
            )
        } else if route.grpcMethodsWithoutModel.contains(method), let modelNode = checked.modelNode {
            scope.error(
                modelNode,
                "match.model never matches \(grpc): its requests name no model"
            )
        }
        return route
    }

    /// Reports a version of the route's model that cannot answer a route speaking `route`
    /// (SPEC §13): a `grpc://` version answers only gRPC routes of its own protocol; a REST
    /// version of a gRPC route speaks that protocol's REST twin, translated both ways.
    private func checkVersionProtocol(
        _ spec: VersionSpec,
        route routeName: String?,
        speaking route: WireProtocol,
        model: String,
        at node: YAMLNode
    ) {
        guard case .remote(let remote) = spec.backend else { return }
        let speaks = spec.wireProtocol(onRoute: route)
        let who = routeName.map { "route '\($0)'" } ?? "the route"
        let version = "version '\(spec.name)' of model '\(model)' (\(spec.location))"
        if !route.isGRPC {
            guard remote.isGRPC else { return }
            scope.error(
                node,
                "\(who) speaks \(route.rawValue), but \(version) is a gRPC backend; a grpc:// or grpcs:// version answers only v2-grpc and tfserving-grpc routes"
            )
        } else if remote.isGRPC, speaks != route {
            scope.error(
                node,
                "\(who) speaks \(route.rawValue), but \(version) speaks \(speaks.rawValue); a gRPC version speaks its route's protocol"
            )
        } else if !remote.isGRPC, speaks != route.restTwin {
            scope.error(
                node,
                "\(who) speaks \(route.rawValue), but \(version) speaks \(speaks.rawValue); a REST version of a \(route.rawValue) route speaks \(route.restTwin.rawValue), translated both ways"
            )
        }
    }
}
