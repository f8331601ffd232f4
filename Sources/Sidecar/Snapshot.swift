import Compare
import EventHTTP
import Foundation
import Models
import Policy
import Routing

/// One loaded, checked configuration with its embedded models, shared read-only by every
/// worker. A reload builds a new snapshot away from the workers and swaps it in whole, so a
/// request runs start to end on the snapshot it started with.
public final class ConfigSnapshot: Sendable {
    public let config: Config
    /// `config`'s policies by route index, for deciding and for finding the version a decision names.
    let routing: RoutingTable
    /// Embedded models by model name, then version name.
    let embedded: [String: [String: LoadedModel]]
    /// Increases by one on every successful reload; the first load is 1.
    public let generation: Int
    /// Per model: instance fields that its table versions read keys from (not features).
    let tableKeyFields: [String: Set<String>]

    /// Per model: the version its guard watches.
    let guardedVersion: [String: String]
    /// Per model: how its shadows are compared with live (the whole body when `compare` is absent)
    /// and where the comparisons are logged.
    private let comparisons: [String: ModelComparison]

    /// How one model's shadows are compared and logged, looked up once per comparison.
    struct ModelComparison {
        var spec: ComparisonSpec
        /// The comparison log's path; nil when the policy names none.
        var logPath: String?
        /// Share of comparisons written to the log, 0...1.
        var logSample: Double
        /// `compare.similarity_threshold` of an `openai` model (SPEC §14).
        var similarityThreshold: Double? = nil
    }

    /// One TLS context per distinct `tls` setting of an `https://` version (SPEC §11).
    let tlsContexts: [TLSSpec: TLSClientContext]
    /// The same for `grpcs://` versions: contexts offering ALPN `h2` (SPEC §13), never shared
    /// with an `https://` version's (ALPN `http/1.1`) even for the same settings.
    let grpcTLSContexts: [TLSSpec: TLSClientContext]

    init(
        config: Config,
        embedded: [String: [String: LoadedModel]],
        generation: Int,
        tlsContexts: [TLSSpec: TLSClientContext] = [:],
        grpcTLSContexts: [TLSSpec: TLSClientContext] = [:]
    ) {
        self.tlsContexts = tlsContexts
        self.grpcTLSContexts = grpcTLSContexts
        self.config = config
        self.routing = RoutingTable(config)
        self.embedded = embedded
        self.generation = generation
        self.tableKeyFields = config.models.mapValues(Protocols.tableKeyFields)
        self.guardedVersion = config.models.compactMapValues { $0.guardSpec?.version }
        self.comparisons = config.models.mapValues { policy in
            let compare = policy.compare
            // The loader checked the pointer; an empty pointer (the whole body) is the default.
            let spec =
                (try? ComparisonSpec(
                    output: compare?.output ?? "",
                    tolerance: compare?.tolerance ?? 0,
                    threshold: compare?.threshold
                ))
                ?? ComparisonSpec(pointer: JSONPointer(tokens: []))
            return ModelComparison(
                spec: spec,
                logPath: compare?.log,
                logSample: compare?.sample ?? 1,
                similarityThreshold: compare?.similarityThreshold
            )
        }
    }

    /// How `model`'s shadows are compared and logged (the whole body, no log, for a model
    /// without a policy).
    func comparison(for model: String) -> ModelComparison {
        comparisons[model]
            ?? ModelComparison(spec: ComparisonSpec(pointer: JSONPointer(tokens: [])), logPath: nil, logSample: 1)
    }

    func model(_ model: String, version: String) -> LoadedModel? {
        embedded[model]?[version]
    }

    /// Loads the config directory and every model file it names; returns every problem found,
    /// models included, as compiler-style diagnostics (warnings included). A loaded snapshot's
    /// warnings are `config.warnings`.
    /// `${NAME}` in version headers reads `environment`: the process's, read afresh at each call.
    public static func load(
        directory: String,
        generation: Int = 1,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Result<ConfigSnapshot, [Diagnostic]> {
        let config: Config
        switch ConfigLoader.load(directory: directory, environment: environment) {
        case .success(let c): config = c
        case .failure(let diagnostics): return .failure(diagnostics)
        }
        var diagnostics: [Diagnostic] = []
        var embedded: [String: [String: LoadedModel]] = [:]
        for name in config.models.keys.sorted() {
            let policy = config.models[name]!
            for versionName in policy.versionOrder {
                guard let spec = policy.versions[versionName], case .embedded(let e) = spec.backend else { continue }
                do {
                    let model = try ModelLoader.load(kind: e.kind.rawValue, path: e.file)
                    embedded[name, default: [:]][versionName] = model
                } catch {
                    diagnostics.append(Diagnostic(spec.location, "version '\(versionName)': \(error)"))
                }
            }
        }
        let tls = TLSContextCache.shared.contexts(for: config, diagnostics: &diagnostics)
        if !diagnostics.isEmpty { return .failure(Diagnostic.sorted(diagnostics + config.warnings)) }
        return .success(
            ConfigSnapshot(
                config: config,
                embedded: embedded,
                generation: generation,
                tlsContexts: tls.http,
                grpcTLSContexts: tls.grpc
            )
        )
    }

    /// Every file the config names besides its YAML: embedded model files and TLS files
    /// (`ca_file`, `cert_file`, `key_file`), so that a reload picks up a changed one.
    var watchedFiles: [String] {
        let models = config.models.values.flatMap { policy in
            policy.versions.values.compactMap { spec -> String? in
                if case .embedded(let e) = spec.backend { return e.file }
                return nil
            }
        }
        return models + config.tlsFiles
    }

    /// One line for `validate` and the start-up log: what was loaded.
    public var summary: String {
        let versions = config.models.values.reduce(0) { $0 + $1.versions.count }
        let embeddedCount = embedded.values.reduce(0) { $0 + $1.count }
        func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
        return "\(plural(config.routes.count, "route")), \(plural(config.models.count, "model")), "
            + "\(plural(versions, "version")) (\(embeddedCount) embedded), \(plural(config.files.count, "file"))"
    }
}

/// TLS contexts kept from one load to the next while a version's `tls` settings and the files
/// they name are unchanged, so a reload keeps the backends' pooled connections and cached
/// sessions; a changed certificate, key or CA file (size, time or inode) makes a new context,
/// which is how a rotated certificate is picked up (SPEC §11).
final class TLSContextCache: @unchecked Sendable {
    static let shared = TLSContextCache()

    private struct Key: Hashable {
        var spec: TLSSpec
        var fingerprints: [String]
        /// `http/1.1` for `https://`, `h2` for `grpcs://`: the ALPN a context offers is part of it.
        var alpn: String
    }

    /// A load's contexts: `https://` versions' (ALPN `http/1.1`) and `grpcs://` versions' (`h2`).
    struct Contexts {
        var http: [TLSSpec: TLSClientContext] = [:]
        var grpc: [TLSSpec: TLSClientContext] = [:]
    }

    private let lock = NSLock()
    private var contexts: [Key: TLSClientContext] = [:]

    /// A context for every distinct `tls` setting in `config`, one per ALPN (an `https://` and a
    /// `grpcs://` version with the same settings get two); a file that OpenSSL refuses is a
    /// diagnostic at the version that names it.
    func contexts(for config: Config, diagnostics: inout [Diagnostic]) -> Contexts {
        var made = Contexts()
        var kept: [Key: TLSClientContext] = [:]
        var failed: Set<TLSSpec> = []
        for name in config.models.keys.sorted() {
            let policy = config.models[name]!
            for versionName in policy.versionOrder {
                guard let spec = policy.versions[versionName], case .remote(let remote) = spec.backend,
                    let tls = remote.tls
                else { continue }
                let alpn = remote.isGRPC ? "h2" : "http/1.1"
                if (remote.isGRPC ? made.grpc[tls] : made.http[tls]) != nil { continue }
                if failed.contains(tls) {
                    continue
                }
                let key = Key(spec: tls, fingerprints: Self.fingerprints(tls), alpn: alpn)
                var context = lock.withLock { contexts[key] }
                if context == nil {
                    do throws(TLSConfigurationError) {
                        context = try TLSClientContext(options: Self.options(tls), alpnProtocols: [alpn])
                    } catch {
                        failed.insert(tls)
                        diagnostics.append(Diagnostic(spec.location, "version '\(versionName)': tls: \(error)"))
                        continue
                    }
                }
                kept[key] = context
                if remote.isGRPC { made.grpc[tls] = context } else { made.http[tls] = context }
            }
        }
        if diagnostics.isEmpty { lock.withLock { contexts = kept } }
        return made
    }

    static func options(_ spec: TLSSpec) -> TLSClientOptions {
        TLSClientOptions(
            caFile: spec.caFile,
            certFile: spec.certFile,
            keyFile: spec.keyFile,
            serverName: spec.serverName,
            insecureSkipVerify: spec.insecureSkipVerify
        )
    }

    private static func fingerprints(_ spec: TLSSpec) -> [String] {
        [spec.caFile, spec.certFile, spec.keyFile].map { path in
            guard let path, let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
                return "-"
            }
            let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
            let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            let inode = (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
            return "\(size):\(modified):\(inode)"
        }
    }
}
