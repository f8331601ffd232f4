import Compare
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
    }

    init(config: Config, embedded: [String: [String: LoadedModel]], generation: Int) {
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
            return ModelComparison(spec: spec, logPath: compare?.log, logSample: compare?.sample ?? 1)
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
    public static func load(directory: String, generation: Int = 1) -> Result<ConfigSnapshot, [Diagnostic]> {
        let config: Config
        switch ConfigLoader.load(directory: directory) {
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
        if !diagnostics.isEmpty { return .failure(Diagnostic.sorted(diagnostics + config.warnings)) }
        return .success(ConfigSnapshot(config: config, embedded: embedded, generation: generation))
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
