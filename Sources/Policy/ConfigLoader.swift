import Foundation
import YAMLSource

// `Result` needs an `Error`; a list of diagnostics is what a failed load is.
extension Array: @retroactive Error where Element == Diagnostic {}

/// Loads and checks a config directory: `DIR/routes/*.yaml` then `DIR/policies/*.yaml`.
public enum ConfigLoader {
    /// Reads `directory/routes/*.{yaml,yml}` and `directory/policies/*.{yaml,yml}`, each set in
    /// lexical order (names starting with `.` skipped, as Kubernetes' `..data` is), and checks
    /// everything, model files included.
    ///
    /// Returns the config (with its warnings in `Config.warnings`), or, when there is any error,
    /// every diagnostic found, warnings included, sorted by file then position. Paths in
    /// diagnostics and in the model are `routes/x.yaml` when `directory` is `.`, otherwise
    /// `directory/routes/x.yaml` (a trailing `/` on `directory` dropped). Paths written inside
    /// a file (`file:`, `log:`) are joined to that file's directory, not normalized.
    ///
    /// `${NAME}` in a version's header values reads `environment` (SPEC §14): the process's
    /// environment as it is at this call by default, so that a reload reads it afresh.
    public static func load(
        directory: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Result<Config, [Diagnostic]> {
        let sink = DiagnosticSink()
        let base = normalize(directory)
        let routesDirectory = join(base, "routes")
        let policiesDirectory = join(base, "policies")
        var files: [ConfigFile] = []

        // Policies first: routes are checked against them.
        let policyFiles = list(policiesDirectory, what: "policies", sink: sink)
        var models: [String: PolicyInfo] = [:]
        var policies: [String: ModelPolicy] = [:]
        var hasUnreadablePolicy = policyFiles == nil
        for path in policyFiles ?? [] {
            guard let (root, checksum) = readFile(path, sink: sink) else {
                hasUnreadablePolicy = true
                continue
            }
            files.append(ConfigFile(path: path, checksum: checksum))
            guard let root else {
                sink.add(
                    SourceLocation(file: path, line: 0, column: 0),
                    "empty policy file; expected a mapping with 'model' and 'versions'"
                )
                continue
            }
            let scope = FileScope(path: path, directory: parent(path), sink: sink)
            guard let info = PolicyChecker(scope: scope, environment: environment).check(root) else { continue }
            if let first = models[info.model] {
                sink.add(info.location, "duplicate model '\(info.model)' (first at \(first.location))")
                continue
            }
            models[info.model] = info
            if let policy = info.policy { policies[info.model] = policy }
        }

        var routes: [Route] = []
        var routeCount = 0
        var names: [String: SourceLocation] = [:]
        var serving: [String: [ServingRoute]] = [:]
        // With a routes file unread, which routes serve a model is unknown.
        var routesKnown = false
        if let routeFiles = list(routesDirectory, what: "routes", sink: sink) {
            var hasUnreadableRoutes = false
            for path in routeFiles {
                guard let (root, checksum) = readFile(path, sink: sink) else {
                    hasUnreadableRoutes = true
                    continue
                }
                files.append(ConfigFile(path: path, checksum: checksum))
                guard let root else {
                    sink.add(
                        SourceLocation(file: path, line: 0, column: 0),
                        "empty route file; expected a mapping with 'routes'"
                    )
                    hasUnreadableRoutes = true
                    continue
                }
                let checker = RouteChecker(
                    scope: FileScope(path: path, directory: parent(path), sink: sink),
                    models: models,
                    policiesDirectory: policiesDirectory,
                    hasUnreadablePolicy: hasUnreadablePolicy
                )
                routes += checker.check(root, names: &names, routeCount: &routeCount, serving: &serving)
            }
            routesKnown = !hasUnreadableRoutes
            if routeCount == 0, !hasUnreadableRoutes {
                sink.add(
                    SourceLocation(file: routesDirectory, line: 0, column: 0),
                    "no routes defined; expected at least one route in \(routesDirectory)/*.yaml"
                )
            }
        }

        if routesKnown {
            ServingChecks(sink: sink).check(models: models, serving: serving, policies: &policies)
        }

        let diagnostics = sink.sorted
        guard sink.errorCount == 0 else { return .failure(diagnostics) }
        return .success(Config(routes: routes, models: policies, files: files, warnings: diagnostics))
    }

    // MARK: - Files

    static func normalize(_ directory: String) -> String {
        var d = directory
        while d.count > 1, d.hasSuffix("/") { d.removeLast() }
        return d.isEmpty ? "." : d
    }

    static func join(_ base: String, _ name: String) -> String {
        if base == "." { return name }
        return base.hasSuffix("/") ? base + name : base + "/" + name
    }

    private static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The YAML files of a directory in lexical order, or nil (reported) when it cannot be read.
    private static func list(_ directory: String, what: String, sink: DiagnosticSink) -> [String]? {
        guard let dir = opendir(directory) else {
            sink.add(
                SourceLocation(file: directory, line: 0, column: 0),
                "cannot read \(what) directory: \(String(cString: strerror(errno)))"
            )
            return nil
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard !name.hasPrefix("."), name.hasSuffix(".yaml") || name.hasSuffix(".yml") else { continue }
            var info = stat()
            let path = join(directory, name)
            // Follows symlinks (ConfigMap volumes link every file into `..data/`).
            guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            names.append(name)
        }
        return names.sorted().map { join(directory, $0) }
    }

    /// Reads and parses one file; reports read and YAML problems. Nil when it is unusable;
    /// a nil root for an empty file.
    private static func readFile(_ path: String, sink: DiagnosticSink) -> (YAMLNode?, String)? {
        let fileLocation = SourceLocation(file: path, line: 0, column: 0)
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            sink.add(fileLocation, "cannot read file: \(String(cString: strerror(errno)))")
            return nil
        }
        defer { close(fd) }
        // One byte past the limit is enough to know it is too large.
        let capacity = ConfigDefaults.maxFileBytes + 1
        var bytes = [UInt8](repeating: 0, count: capacity)
        var count = 0
        while count < capacity {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, capacity - count) }
            if n < 0 {
                if errno == EINTR { continue }
                sink.add(fileLocation, "cannot read file: \(String(cString: strerror(errno)))")
                return nil
            }
            if n == 0 { break }
            count += n
        }
        bytes.removeSubrange(count...)
        if bytes.count > ConfigDefaults.maxFileBytes {
            sink.add(
                fileLocation,
                "file is larger than 1 MiB (\(ConfigDefaults.maxFileBytes) bytes), the limit for a config file"
            )
            return nil
        }
        let document = YAMLParser.parse(
            bytes,
            limits: YAMLLimits(maxBytes: ConfigDefaults.maxFileBytes, maxDepth: ConfigDefaults.maxDepth)
        )
        guard document.errors.isEmpty else {
            for error in document.errors {
                sink.add(SourceLocation(file: path, line: error.mark.line, column: error.mark.column), error.message)
            }
            return nil
        }
        return (document.root, fnv1a64(bytes))
    }

    /// FNV-1a, 64 bits, as 16 lower-case hex digits.
    public static func fnv1a64(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
