import Foundation
import YAMLSource

/// What routes need to know about a policy file, even one with errors, so that a broken
/// policy does not cascade into "unknown model" and "unknown version" noise.
struct PolicyInfo {
    var model: String
    var location: SourceLocation
    var versionNames: [String]
    /// Label → version, nil when the label's target is wrong (already reported).
    var labels: [(name: String, version: String?)]
    /// False when `versions` itself is missing or malformed: names cannot be checked then.
    var versionsKnown = true
    /// The checked policy; nil when the file had any problem.
    var policy: ModelPolicy?
    /// Versions that checked out, in file order: what routes check their protocol against
    /// (a `grpc://` version answers only gRPC routes, SPEC §13).
    var versionSpecs: [VersionSpec] = []
    /// Where keys whose validity depends on the routes serving the model were written, for
    /// `ServingChecks` (SPEC §14): by version, the `model_name` key and the `protocol` value.
    var modelNameLocations: [String: SourceLocation] = [:]
    var protocolLocations: [String: SourceLocation] = [:]
    /// The `compare` block when it has no `output` (required unless only openai routes serve it).
    var compareWithoutOutput: SourceLocation?
    /// The `output` key of `compare`, when given (ignored, with a warning, for an openai-only model).
    var compareOutput: SourceLocation?
    /// The `similarity_threshold` key of `compare` (only for a model that openai routes serve).
    var similarityThreshold: SourceLocation?

    enum Lookup: Equatable {
        case version(String)
        /// Cannot tell: a label whose target was already reported as wrong, or no usable
        /// `versions` at all.
        case unchecked
        case unknown
    }

    func lookup(_ name: String) -> Lookup {
        if versionNames.contains(name) { return .version(name) }
        if !versionsKnown { return .unchecked }
        if let label = labels.first(where: { $0.name == name }) {
            return label.version.map { .version($0) } ?? .unchecked
        }
        return .unknown
    }

    var knownNames: String {
        (versionNames + labels.map(\.name)).joined(separator: ", ")
    }
}

/// Checks one `policies/*.yaml` file.
struct PolicyChecker {
    let scope: FileScope
    /// What `${NAME}` in a version's header values reads (SPEC §14).
    var environment: [String: String] = [:]

    // Accepted keys come from the catalogue, which the schema and the reference are made from.
    static let keys = ConfigCatalogue.policy.names
    static let versionKeys = ConfigCatalogue.version.names
    /// Keys that only a remote version (`url:`) may have.
    static let remoteOnlyKeys = ConfigCatalogue.version.keys(requiring: "url")
    static let tlsKeys = ConfigCatalogue.tls.names
    static let shadowKeys = ConfigCatalogue.shadow.names
    static let compareKeys = ConfigCatalogue.compare.names
    static let guardKeys = ConfigCatalogue.guardBlock.names

    func check(_ root: YAMLNode) -> PolicyInfo? {
        let problemsBefore = scope.sink.errorCount
        guard let fields = scope.fields(root, for: "the policy file", context: "policy", allowed: Self.keys) else {
            return nil
        }
        let modelNode = fields.required("model")
        let model = modelNode.flatMap { scope.name($0, for: "'model'") }

        // Versions.
        var versionNames: [String] = []
        var versions: [String: VersionSpec] = [:]
        var versionsKnown = false
        var versionNodes: [(String, YAMLNode)] = []
        if let node = fields.required("versions"),
            let entries = scope.namedEntries(node, for: "'versions'", context: "versions")
        {
            versionsKnown = true
            if entries.isEmpty { scope.error(node, "no versions in 'versions'; expected at least one") }
            for entry in entries {
                versionNames.append(entry.name)
                versionNodes.append((entry.name, entry.value))
                if let spec = checkVersion(entry.name, entry.value) { versions[entry.name] = spec }
            }
        }

        // Labels.
        var labels: [(name: String, version: String?)] = []
        if let node = fields["labels"], let entries = scope.namedEntries(node, for: "'labels'", context: "labels") {
            for entry in entries {
                if versionNames.contains(entry.name) {
                    scope.error(entry.key, "label '\(entry.name)' has the same name as a version")
                }
                var target: String?
                if let version = scope.name(entry.value, for: "label '\(entry.name)'") {
                    if versionNames.contains(version) {
                        target = version
                    } else if entries.contains(where: { $0.name == version }) {
                        scope.error(
                            entry.value,
                            "label '\(entry.name)' refers to label '\(version)'; expected a version: \(versionNames.joined(separator: ", "))"
                        )
                    } else {
                        scope.error(
                            entry.value,
                            "label '\(entry.name)' refers to unknown version '\(version)'; expected one of: \(versionNames.joined(separator: ", "))"
                        )
                    }
                }
                labels.append((entry.name, target))
            }
        }

        var info = PolicyInfo(
            model: model ?? "",
            location: scope.location((modelNode ?? root).mark),
            versionNames: versionNames,
            labels: labels,
            versionsKnown: versionsKnown,
            policy: nil,
            versionSpecs: versionNames.compactMap { versions[$0] }
        )
        for (name, node) in versionNodes {
            guard let pairs = node.mapping else { continue }
            for pair in pairs {
                guard case .string(let key)? = pair.key.scalar?.value else { continue }
                if key == "model_name" { info.modelNameLocations[name] = scope.location(pair.key.mark) }
                if key == "protocol" { info.protocolLocations[name] = scope.location(pair.value.mark) }
            }
        }

        /// A version or label name, resolved to a version; reports unknown names.
        func resolve(_ node: YAMLNode, in what: String) -> String? {
            guard let name = scope.name(node, for: what) else { return nil }
            switch info.lookup(name) {
            case .version(let version): return version
            case .unchecked: return nil
            case .unknown:
                scope.error(node, "unknown version or label '\(name)' in \(what); expected one of: \(info.knownNames)")
                return nil
            }
        }

        // Split.
        var split: [SplitEntry] = []
        if let node = fields["split"] {
            split = checkSplit(node, key: fields.keyNode("split") ?? node, resolve: resolve)
        } else if versionNames.count == 1 {
            split = [SplitEntry(version: versionNames[0], weight: 10000)]
        } else if versionNames.count > 1 {
            // Required with several versions even when every route pins one: a policy is checked
            // on its own, before the routes. The example is the smallest valid split.
            let listed = versionNames.joined(separator: ", ")
            scope.error(
                root,
                "missing required key 'split' in policy: with \(versionNames.count) versions (\(listed)), requests that no route pins need weights summing to 100; e.g. split: { \(versionNames[0]): 100 } sends them all to \(versionNames[0])"
            )
        }

        var sticky: KeySource?
        if let node = fields["sticky"] { sticky = keySource(node, for: "'sticky'") }

        let fallback = fields["fallback"].flatMap { resolve($0, in: "'fallback'") }

        // Shadows.
        var shadows: [ShadowSpec] = []
        if let node = fields["shadow"], let items = scope.sequence(node, for: "'shadow'") {
            var seen: [String: YAMLNode] = [:]
            for item in items {
                guard let shadow = scope.fields(item, for: "a shadow", context: "shadow", allowed: Self.shadowKeys)
                else {
                    continue
                }
                let versionNode = shadow.required("version")
                let version = versionNode.flatMap { resolve($0, in: "shadow") }
                let percent = shadow.required("percent").flatMap { scope.number($0, for: "percent", in: 0...100) }
                if let version, let versionNode {
                    if let first = seen[version] {
                        scope.error(
                            versionNode,
                            "version '\(version)' is shadowed twice (first at \(scope.location(first.mark)))"
                        )
                    }
                    seen[version] = versionNode
                }
                if let version, let percent { shadows.append(ShadowSpec(version: version, percent: percent)) }
            }
        }

        // Compare.
        var compare: CompareSpec?
        if let node = fields["compare"],
            let c = scope.fields(node, for: "'compare'", context: "compare", allowed: Self.compareKeys)
        {
            var output: String?
            // Whether `output` may be left out depends on the routes (an openai-only model needs
            // none): `ServingChecks` decides once they are read.
            if c["output"] == nil { info.compareWithoutOutput = scope.location(c.node.mark) }
            if let outputNode = c["output"] {
                info.compareOutput = scope.location((c.keyNode("output") ?? outputNode).mark)
            }
            if let outputNode = c["output"], let text = scope.string(outputNode, for: "'output'") {
                if Syntax.isJSONPointer(text) {
                    output = text
                } else {
                    scope.error(
                        outputNode,
                        "compare output '\(text)' is not a JSON pointer; expected a path such as /predictions"
                    )
                }
            }
            let tolerance = c["tolerance"].flatMap { node -> Double? in
                guard let value = scope.number(node, for: "'tolerance'") else { return nil }
                if value < 0 { scope.error(node, "tolerance \(node.text) is negative; expected 0 or more") }
                return value
            }
            let threshold = c["threshold"].flatMap { scope.number($0, for: "threshold", in: 0...1) }
            let log = c["log"].flatMap { node -> String? in
                guard let text = scope.string(node, for: "'log'") else { return nil }
                let path = scope.resolve(text)
                if let problem = Self.writeProblem(path) {
                    scope.error(node, "cannot write compare log '\(path)': \(problem)")
                }
                return path
            }
            let sample = c["sample"].flatMap { scope.number($0, for: "sample", in: 0...1) }
            let similarity = c["similarity_threshold"].flatMap {
                scope.number($0, for: "similarity_threshold", in: 0...1)
            }
            if let node = c.keyNode("similarity_threshold") { info.similarityThreshold = scope.location(node.mark) }
            if output != nil || c["output"] == nil {
                compare = CompareSpec(
                    output: output,
                    tolerance: tolerance ?? ConfigDefaults.compareTolerance,
                    threshold: threshold,
                    log: log,
                    sample: sample ?? ConfigDefaults.compareSample,
                    similarityThreshold: similarity
                )
            }
        }

        // Guard.
        var guardSpec: GuardSpec?
        if let node = fields["guard"],
            let g = scope.fields(node, for: "'guard'", context: "guard", allowed: Self.guardKeys)
        {
            if fields["fallback"] == nil {
                scope.error(
                    fields.keyNode("guard") ?? node,
                    "guard needs a policy 'fallback' to send the guarded share to"
                )
            }
            let version = g.required("version").flatMap { resolve($0, in: "guard") }
            let errorRatio = g["max_error_ratio"].flatMap { scope.number($0, for: "max_error_ratio", in: 0...1) }
            let p99 = g["max_p99_ms"].flatMap { node -> Double? in
                guard let value = scope.number(node, for: "'max_p99_ms'") else { return nil }
                if value <= 0 { scope.error(node, "max_p99_ms \(node.text) is out of range; expected more than 0") }
                return value
            }
            if g["max_error_ratio"] == nil, g["max_p99_ms"] == nil {
                scope.error(node, "guard has neither 'max_error_ratio' nor 'max_p99_ms'; expected at least one")
            }
            let minRequests = g["min_requests"].flatMap { scope.integer($0, for: "min_requests", in: 1...Int.max) }
            let window = g["window_s"].flatMap { scope.integer($0, for: "window_s", in: 1...Int.max) }
            if let version {
                guardSpec = GuardSpec(
                    version: version,
                    maxErrorRatio: errorRatio,
                    maxP99Milliseconds: p99,
                    minRequests: minRequests ?? ConfigDefaults.guardMinRequests,
                    windowSeconds: window ?? ConfigDefaults.guardWindowSeconds
                )
            }
        }

        guard let model else { return nil }
        if scope.sink.errorCount == problemsBefore {
            info.policy = ModelPolicy(
                model: model,
                versions: versions,
                versionOrder: versionNames,
                labels: Dictionary(uniqueKeysWithValues: labels.compactMap { l in l.version.map { (l.name, $0) } }),
                split: split,
                sticky: sticky,
                fallback: fallback,
                shadows: shadows,
                compare: compare,
                guardSpec: guardSpec,
                location: info.location
            )
        }
        return info
    }

    // MARK: - Versions

    private func checkVersion(_ name: String, _ node: YAMLNode) -> VersionSpec? {
        let what = "version '\(name)'"
        guard let fields = scope.fields(node, for: what, context: what, allowed: Self.versionKeys) else { return nil }
        let wireProtocol = fields["protocol"].flatMap { checkProtocol($0, scope) }
        let backend: Backend?
        switch (fields["url"], fields["embedded"]) {
        case (nil, nil):
            scope.error(node, "\(what) has neither 'url' nor 'embedded'; expected exactly one")
            backend = nil
        case (.some, .some):
            scope.error(node, "\(what) has both 'url' and 'embedded'; expected exactly one")
            backend = nil
        case (let url?, nil):
            for key in ["file", "key"] {
                if let keyNode = fields.keyNode(key) {
                    scope.error(keyNode, "'\(key)' is only valid for embedded versions")
                }
            }
            backend = remote(url, fields).map { .remote($0) }
        case (nil, let kind?):
            for key in Self.remoteOnlyKeys {
                if let keyNode = fields.keyNode(key) {
                    scope.error(keyNode, "'\(key)' is only valid for remote versions (with 'url')")
                }
            }
            backend = embedded(kind, fields, what: what).map { .embedded($0) }
        }
        guard let backend else { return nil }
        if case .remote(let remote) = backend, let wireProtocol, let protocolNode = fields["protocol"],
            remote.isGRPC != wireProtocol.isGRPC
        {
            let grpcProtocols = WireProtocol.allCases.filter(\.isGRPC).map(\.rawValue).joined(separator: " or ")
            scope.error(
                protocolNode,
                remote.isGRPC
                    ? "\(what) has a gRPC url but protocol '\(wireProtocol.rawValue)'; a grpc:// or grpcs:// version speaks \(grpcProtocols)"
                    : "\(what) has protocol '\(wireProtocol.rawValue)', which needs a grpc:// or grpcs:// url; a REST version of a gRPC route speaks its REST twin (\(wireProtocol.restTwin.rawValue))"
            )
            return nil
        }
        return VersionSpec(
            name: name,
            backend: backend,
            wireProtocol: wireProtocol,
            location: scope.location(node.mark)
        )
    }

    private func remote(_ urlNode: YAMLNode, _ fields: Fields) -> RemoteBackend? {
        let timeout =
            fields["timeout_ms"].map {
                scope.integer($0, for: "timeout_ms", in: ConfigDefaults.timeoutMillisecondsRange)
            } ?? ConfigDefaults.timeoutMilliseconds
        let connections =
            fields["max_connections"].map {
                scope.integer($0, for: "max_connections", in: ConfigDefaults.maxConnectionsRange)
            } ?? ConfigDefaults.maxConnections
        let idleTimeout =
            fields["idle_timeout_ms"].map {
                scope.integer($0, for: "idle_timeout_ms", in: ConfigDefaults.idleTimeoutMillisecondsRange)
            } ?? ConfigDefaults.idleTimeoutMilliseconds
        let text = scope.string(urlNode, for: "'url'")
        var url: Syntax.URLParts?
        if let text {
            switch Syntax.url(text) {
            case .failure(let error): scope.error(urlNode, error.message)
            case .success(let parts): url = parts
            }
        }
        // The block is checked whatever the URL, so that every problem in it is reported at once.
        let tlsBlock = fields["tls"].flatMap { checkTLS($0) }
        if let url, !url.isTLS, let tlsKey = fields.keyNode("tls"), let text {
            scope.error(tlsKey, "'tls' is only valid with an https:// or grpcs:// url, not '\(text)'")
        }
        let extras = versionExtras(fields, url: url)
        guard let url, let text, let timeout, let connections, let idleTimeout, let extras else { return nil }
        var tls: TLSSpec?
        if url.isTLS {
            if let tlsBlock {
                warnAboutVerification(tlsBlock, url: text)
                tls = tlsBlock.spec
            } else if fields["tls"] == nil {
                tls = TLSSpec()
            } else {
                return nil
            }
        }
        return RemoteBackend(
            host: url.host,
            port: url.port,
            path: url.path,
            timeoutMilliseconds: timeout,
            maxConnections: connections,
            socketPath: url.socketPath,
            tls: tls,
            idleTimeoutMilliseconds: idleTimeout,
            isGRPC: url.isGRPC,
            modelName: extras.modelName,
            headers: extras.headers
        )
    }

    /// A checked `tls:` block and the nodes its warnings point at.
    private struct TLSBlock {
        var spec: TLSSpec
        var caFileNode: YAMLNode?
        var insecureNode: YAMLNode?
    }

    /// A version's `tls:` map (SPEC §11); nil when it has any error (each reported).
    private func checkTLS(_ node: YAMLNode) -> TLSBlock? {
        let errorsBefore = scope.sink.errorCount
        guard let fields = scope.fields(node, for: "'tls'", context: "tls", allowed: Self.tlsKeys) else { return nil }
        func file(_ key: String) -> String? {
            guard let fileNode = fields[key], let text = scope.string(fileNode, for: "'\(key)'") else { return nil }
            let path = scope.resolve(text)
            if let problem = Self.readProblem(path) {
                scope.error(fileNode, "cannot read \(key) '\(path)': \(problem)")
                return nil
            }
            return path
        }
        var spec = TLSSpec()
        spec.caFile = file("ca_file")
        spec.certFile = file("cert_file")
        spec.keyFile = file("key_file")
        switch (fields.keyNode("cert_file"), fields.keyNode("key_file")) {
        case (let cert?, nil):
            scope.error(cert, "'cert_file' is given without 'key_file'; a client certificate needs its private key")
        case (nil, let key?):
            scope.error(key, "'key_file' is given without 'cert_file'; a private key needs its client certificate")
        default: break
        }
        if let nameNode = fields["server_name"], let name = scope.string(nameNode, for: "'server_name'") {
            if Syntax.isServerName(name) {
                spec.serverName = name
            } else {
                scope.error(
                    nameNode,
                    "server_name '\(name)' is not a DNS name or IP address; expected a name such as model.svc"
                )
            }
        }
        if let insecureNode = fields["insecure_skip_verify"],
            let insecure = scope.boolean(insecureNode, for: "'insecure_skip_verify'")
        {
            spec.insecureSkipVerify = insecure
        }
        guard scope.sink.errorCount == errorsBefore else { return nil }
        return TLSBlock(spec: spec, caFileNode: fields["ca_file"], insecureNode: fields["insecure_skip_verify"])
    }

    /// `insecure_skip_verify: true` loads, with a warning; a `ca_file` beside it is ignored.
    private func warnAboutVerification(_ block: TLSBlock, url: String) {
        guard block.spec.insecureSkipVerify, let insecureNode = block.insecureNode else { return }
        scope.warning(
            insecureNode,
            "insecure_skip_verify is true: the certificate of '\(url)' is not verified, so anyone on the network path can pose as this backend"
        )
        if let caFile = block.spec.caFile, let caFileNode = block.caFileNode {
            scope.warning(
                caFileNode,
                "ca_file '\(caFile)' is ignored: insecure_skip_verify is true, so no certificate is checked against it"
            )
        }
    }

    private func embedded(_ kindNode: YAMLNode, _ fields: Fields, what: String) -> EmbeddedBackend? {
        var kind: EmbeddedKind?
        if let text = scope.string(kindNode, for: "'embedded'") {
            kind = EmbeddedKind(rawValue: text)
            if kind == nil {
                scope.error(
                    kindNode,
                    "unknown embedded kind '\(text)'; expected one of: \(ConfigCatalogue.embeddedKinds.joined(separator: ", "))"
                )
            }
        }
        var file: String?
        if let fileNode = fields.required("file"), let text = scope.string(fileNode, for: "'file'") {
            let path = scope.resolve(text)
            if let problem = Self.readProblem(path) {
                scope.error(fileNode, "cannot read model file '\(path)': \(problem)")
            } else {
                file = path
            }
        }
        var key: KeySource?
        if kind == .table {
            if let keyNode = fields["key"] {
                key = keySource(keyNode, for: "'key'")
            } else {
                scope.error(fields.node, "missing required key 'key' in \(what); a table is looked up by key")
            }
        } else if let kind, let keyNode = fields.keyNode("key") {
            scope.error(keyNode, "'key' is only valid for table versions, not \(kind.rawValue)")
        }
        guard let kind, let file, kind != .table || key != nil else { return nil }
        return EmbeddedBackend(kind: kind, file: file, key: key)
    }

    /// Why `path` cannot be read (strerror text), or nil when one byte can be read from it.
    static func readProblem(_ path: String) -> String? {
        // Non-blocking, so that a FIFO named by mistake cannot hang a load.
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        if fd < 0 { return String(cString: strerror(errno)) }
        defer { close(fd) }
        var byte: UInt8 = 0
        if read(fd, &byte, 1) < 0 { return String(cString: strerror(errno)) }
        return nil
    }

    /// Why a file cannot be written at `path` by this user, or nil when it can. The comparison
    /// log creates missing directories, so a path that does not exist yet is judged by its
    /// nearest existing ancestor: that must be a directory this user may write and search.
    static func writeProblem(_ path: String) -> String? {
        var status = stat()
        if stat(path, &status) == 0 {
            if (status.st_mode & S_IFMT) == S_IFDIR { return "it is a directory" }
            return access(path, W_OK) == 0 ? nil : String(cString: strerror(errno))
        }
        var ancestor = path
        var found = false
        repeat {
            ancestor = parentDirectory(ancestor)
            found = stat(ancestor, &status) == 0
        } while !found && ancestor != "/" && ancestor != "."
        if !found { return "cannot look up '\(ancestor)': \(String(cString: strerror(errno)))" }
        if (status.st_mode & S_IFMT) != S_IFDIR { return "'\(ancestor)' is not a directory" }
        if access(ancestor, W_OK | X_OK) != 0 {
            return "directory '\(ancestor)' is not writable: \(String(cString: strerror(errno)))"
        }
        return nil
    }

    /// `a/b/c` → `a/b`, `c` → `.`, `/c` → `/`.
    private static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    // MARK: - Split

    private func checkSplit(_ node: YAMLNode, key: YAMLNode, resolve: (YAMLNode, String) -> String?) -> [SplitEntry] {
        guard let entries = scope.namedEntries(node, for: "'split'", context: "split") else { return [] }
        var split: [SplitEntry] = []
        var firstName: [String: String] = [:]
        var total = 0
        var allWeightsRead = true
        for entry in entries {
            let version = resolve(entry.key, "split")
            let weight = self.weight(entry.value)
            if weight == nil { allWeightsRead = false }
            total += weight ?? 0
            guard let version else { continue }
            if let first = firstName[version] {
                scope.error(
                    entry.key,
                    "version '\(version)' appears twice in split (as '\(first)' and '\(entry.name)')"
                )
                continue
            }
            firstName[version] = entry.name
            if let weight { split.append(SplitEntry(version: version, weight: weight)) }
        }
        if allWeightsRead, total != 10000 {
            scope.error(key, "split weights sum to \(Self.percentText(total)), expected 100")
        }
        return split
    }

    /// A weight in hundredths of a percent.
    private func weight(_ node: YAMLNode) -> Int? {
        guard let value = scope.number(node, for: "a split weight") else { return nil }
        if value < 0 {
            scope.error(node, "weight \(node.text) is negative; expected 0...100")
            return nil
        }
        let hundredths = (value * 100).rounded()
        if abs(value * 100 - hundredths) > 1e-6 * max(1, hundredths) {
            scope.error(node, "weight \(node.text) has more than two decimals")
            return nil
        }
        if hundredths > 10000 {
            scope.error(node, "weight \(node.text) is out of range; expected 0...100")
            return nil
        }
        return Int(hundredths)
    }

    static func percentText(_ hundredths: Int) -> String {
        let whole = hundredths / 100
        let part = hundredths % 100
        if part == 0 { return "\(whole)" }
        return part % 10 == 0 ? "\(whole).\(part / 10)" : "\(whole).\(part < 10 ? "0" : "")\(part)"
    }

    // MARK: - Small values

    private func keySource(_ node: YAMLNode, for what: String) -> KeySource? {
        guard let text = scope.string(node, for: what) else { return nil }
        guard let source = Syntax.keySource(text) else {
            scope.error(node, "bad key source '\(text)'; expected \(Syntax.keySourceShape)")
            return nil
        }
        return source
    }
}

/// Shared with the route checker.
func checkProtocol(_ node: YAMLNode, _ scope: FileScope) -> WireProtocol? {
    guard let text = scope.string(node, for: "'protocol'") else { return nil }
    guard let value = WireProtocol(rawValue: text) else {
        scope.error(
            node,
            "unknown protocol '\(text)'; expected one of: \(ConfigCatalogue.protocols.joined(separator: ", "))"
        )
        return nil
    }
    return value
}
