/// A route as far as its model's checks care: its name and the protocol its clients speak
/// (nil when the route's protocol could not be told; its problem is already reported).
struct ServingRoute {
    var name: String?
    var wireProtocol: WireProtocol?

    var label: String { name.map { "route '\($0)'" } ?? "a route" }
}

/// Checks of a policy that depend on the routes serving its model, run once every file is
/// read (SPEC §14): an `openai` route's versions are remote HTTP servers speaking `openai`;
/// `model_name` and `compare.similarity_threshold` mean something only behind `openai`
/// routes; `compare.output` is needed unless only `openai` routes serve the model (their
/// answers are compared as text), and is ignored, with a warning, when only they do.
struct ServingChecks {
    let sink: DiagnosticSink

    /// `serving` lists, by model, every route that names it. A model with a route whose protocol
    /// is unknown is skipped: what it would be told depends on that protocol.
    func check(models: [String: PolicyInfo], serving: [String: [ServingRoute]], policies: inout [String: ModelPolicy]) {
        for model in models.keys.sorted() {
            let info = models[model]!
            let routes = serving[model] ?? []
            guard routes.allSatisfy({ $0.wireProtocol != nil }) else { continue }
            let openai = routes.filter { $0.wireProtocol == .openai }
            // REST routes speaking something else; gRPC routes check their versions themselves.
            let rest = routes.filter { $0.wireProtocol != .openai && $0.wireProtocol?.isGRPC == false }
            let openaiOnly = !routes.isEmpty && openai.count == routes.count

            for spec in info.versionSpecs {
                checkVersion(spec, model: model, info: info, openai: openai.first, rest: rest.first)
            }

            if let location = info.similarityThreshold, openai.isEmpty {
                sink.add(
                    location,
                    "similarity_threshold applies to models served by openai routes (their answers compare as text); no openai route serves model '\(model)'"
                )
            }
            if let location = info.compareWithoutOutput, !openaiOnly {
                sink.add(location, "missing required key 'output' in compare")
            }
            if let location = info.compareOutput, openaiOnly {
                sink.add(
                    location,
                    "compare output is ignored: only openai routes serve model '\(model)', and their answers are compared as text or embeddings (SPEC §14)",
                    severity: .warning
                )
                policies[model]?.compare?.output = nil
            }
        }
    }

    private func checkVersion(
        _ spec: VersionSpec,
        model: String,
        info: PolicyInfo,
        openai: ServingRoute?,
        rest: ServingRoute?
    ) {
        let version = "version '\(spec.name)' of model '\(model)'"
        if let openai {
            let served = "\(openai.label) speaks openai"
            switch spec.backend {
            case .embedded:
                sink.add(
                    spec.location,
                    "\(version) is embedded, but \(served); an openai version is a remote OpenAI-compatible server (an http://, https:// or unix: url)"
                )
                return
            case .remote(let remote) where remote.isGRPC:
                sink.add(
                    spec.location,
                    "\(version) is a gRPC backend, but \(served); an openai version is a remote OpenAI-compatible server (an http://, https:// or unix: url)"
                )
                return
            case .remote:
                break
            }
            if let own = spec.wireProtocol, own != .openai {
                sink.add(
                    info.protocolLocations[spec.name] ?? spec.location,
                    "\(version) has protocol '\(own.rawValue)', but \(served); versions of an openai route speak openai (leave 'protocol' out to inherit it)"
                )
            }
        } else if let location = info.modelNameLocations[spec.name] {
            sink.add(
                location,
                "model_name applies to versions of openai routes; no openai route serves model '\(model)'"
            )
        }
        if let rest, spec.wireProtocol == .openai {
            sink.add(
                info.protocolLocations[spec.name] ?? spec.location,
                "\(version) has protocol 'openai', but \(rest.label) speaks \(rest.wireProtocol!.rawValue); an openai version answers only openai routes"
            )
        }
    }
}
