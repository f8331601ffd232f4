import Compare
import EventHTTP
import HTTP1
import Models
import Policy

/// The admin listener (SPEC §5), on the admin loop: health, readiness, the effective config
/// and reload. The data port never serves these. Requests that change state are accepted only
/// from loopback peers, even when the listener binds a pod address.
final class AdminServer {
    unowned let sidecar: Sidecar
    private var server: HTTPServer?

    init(sidecar: Sidecar) {
        self.sidecar = sidecar
    }

    /// Binds `address` (a Unix socket file gets `socketMode`); returns the bound port (0 for a
    /// Unix socket).
    func listen(loop: EventLoop, address: ListenAddress, socketMode: UInt32) throws -> Int {
        let server = try HTTPServer(
            loop: loop,
            address: address,
            exclusive: true,
            socketMode: socketMode,
            options: ServerOptions()
        ) {
            [unowned self] request, writer in
            self.handle(request, writer)
        }
        // No reserve: the admin listener may use what the data listeners leave.
        server.reportAcceptFailures(
            metrics: sidecar.metrics,
            logger: sidecar.logger,
            metadata: ["listener": "admin"]
        )
        self.server = server
        return server.port
    }

    /// Closes the listener (a Unix socket's file is removed). Admin loop thread.
    func stop() {
        server?.stopAccepting()
    }

    private func handle(_ request: ServerRequest, _ writer: ResponseWriter) {
        let (status, body) = route(request)
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: status.contentType)
        writer.respond(status: status.code, headers: headers, body: EventBuffer(bytes: body))
    }

    private struct Status {
        var code: Int
        var contentType = "application/json"
    }

    private func route(_ request: ServerRequest) -> (Status, [UInt8]) {
        let method = request.head.method
        let path = request.head.path
        switch (method, path) {
        case ("GET", "/healthz"), ("HEAD", "/healthz"):
            return (Status(code: 200), JSON.fields([("status", .string("ok"))]).serialized())
        case ("GET", "/readyz"), ("HEAD", "/readyz"):
            if sidecar.isReady {
                return (Status(code: 200), JSON.fields([("status", .string("ready"))]).serialized())
            }
            return (Status(code: 503), JSON.fields([("status", .string("not_ready"))]).serialized())
        case ("GET", "/metrics"):
            return (
                Status(code: 200, contentType: "text/plain; version=0.0.4; charset=utf-8"), sidecar.metrics.render()
            )
        case ("GET", "/guards"):
            return (Status(code: 200), Self.guardsDocument(sidecar.guardStatuses()).serialized())
        case ("GET", "/config"):
            return (Status(code: 200), ConfigDocument.render(sidecar.snapshot).serialized())
        case ("POST", "/reload"):
            guard request.isPeerLoopback else {
                return (Status(code: 403), error("forbidden", "reload is accepted only from loopback peers"))
            }
            switch sidecar.reload(trigger: "POST /reload") {
            case .success(let generation):
                return (Status(code: 200), JSON.fields([("generation", .number(Double(generation)))]).serialized())
            case .failure(let diagnostics):
                return (
                    Status(code: 422),
                    JSON.fields([
                        ("error", .string("invalid_config")),
                        ("diagnostics", .array(diagnostics.map { .string($0.description) })),
                    ]).serialized()
                )
            }
        case (_, "/healthz"), (_, "/readyz"), (_, "/config"), (_, "/reload"), (_, "/metrics"), (_, "/guards"):
            return (Status(code: 405), error("method_not_allowed", "\(method) is not allowed on \(path)"))
        default:
            return (Status(code: 404), error("not_found", "no admin endpoint \(path)"))
        }
    }

    /// A JSON list of `{model, version, tripped, reason, since}` (SPEC §9), `since` in RFC 3339,
    /// plus the window's `requests`, `errors`, `p99_ms` and, while tripped, `until`.
    static func guardsDocument(_ statuses: [GuardMonitor.Status]) -> JSON {
        .array(
            statuses.map { s in
                var fields: [(String, JSON)] = [
                    ("model", .string(s.model)), ("version", .string(s.version)), ("tripped", .bool(s.tripped)),
                    ("reason", s.reason.map(JSON.string) ?? .null),
                    (
                        "since",
                        s.sinceEpochMilliseconds.map { .string(RFC3339.format(millisecondsSinceEpoch: $0)) } ?? .null
                    ),
                ]
                if let until = s.untilEpochMilliseconds {
                    fields.append(("until", .string(RFC3339.format(millisecondsSinceEpoch: until))))
                }
                fields.append(("requests", .number(Double(s.requests))))
                fields.append(("errors", .number(Double(s.errors))))
                fields.append(("p99_ms", s.p99Milliseconds.flatMap { $0.isFinite ? JSON.number($0) : nil } ?? .null))
                return .fields(fields)
            }
        )
    }

    private func error(_ code: String, _ detail: String) -> [UInt8] {
        JSON.error(code, detail).serialized()
    }
}

/// `GET /config`: the effective config as JSON, its generation and file checksums.
enum ConfigDocument {
    /// A version's `tls` block as it is used: resolved file paths, and `insecure_skip_verify`
    /// always (false is the default worth seeing).
    static func tlsDocument(_ tls: TLSSpec) -> JSON {
        var fields: [(String, JSON)] = []
        if let caFile = tls.caFile { fields.append(("ca_file", .string(caFile))) }
        if let certFile = tls.certFile { fields.append(("cert_file", .string(certFile))) }
        if let keyFile = tls.keyFile { fields.append(("key_file", .string(keyFile))) }
        if let serverName = tls.serverName { fields.append(("server_name", .string(serverName))) }
        fields.append(("insecure_skip_verify", .bool(tls.insecureSkipVerify)))
        return .fields(fields)
    }

    static func render(_ snapshot: ConfigSnapshot) -> JSON {
        let config = snapshot.config
        let routes: [JSON] = config.routes.map { route in
            var fields: [(String, JSON)] = [("name", .string(route.name))]
            switch route.match.path {
            case _ where route.match.grpc != nil: fields.append(("grpc", .string("\(route.match.grpc!)")))
            case .exact(let p): fields.append(("path", .string(p)))
            case .prefix(let p): fields.append(("prefix", .string(p)))
            case .template(let t): fields.append(("template", .string(t.source)))
            }
            if let method = route.match.method { fields.append(("method", .string(method))) }
            if let name = route.match.model { fields.append(("match_model", .string(name))) }
            if !route.match.headers.isEmpty {
                fields.append(("headers", .fields(route.match.headers.map { ($0.name, .string($0.value)) })))
            }
            fields.append(("model", .string(route.model)))
            fields.append(("protocol", .string(route.wireProtocol.rawValue)))
            switch route.pin {
            case .fixed(let v): fields.append(("version", .string(v)))
            case .pathCapture(let c): fields.append(("version_from", .string("path:\(c)")))
            case .header(let h): fields.append(("version_from", .string("header:\(h)")))
            case .message: fields.append(("version_from", .string("message")))
            case nil: break
            }
            return .fields(fields)
        }
        let models: [(String, JSON)] = config.models.keys.sorted().map { name in
            let policy = config.models[name]!
            var versions: [(String, JSON)] = []
            for v in policy.versionOrder {
                guard let spec = policy.versions[v] else { continue }
                var fields: [(String, JSON)] = []
                switch spec.backend {
                case .remote(let r):
                    if let socketPath = r.socketPath {
                        fields.append(("url", .string("unix:\(socketPath)\(r.path.map { ":" + $0 } ?? "")")))
                        fields.append(("socket_path", .string(socketPath)))
                    } else {
                        let scheme = r.tls == nil ? "http" : "https"
                        fields.append(("url", .string("\(scheme)://\(r.host):\(r.port)\(r.path ?? "")")))
                    }
                    fields.append(("timeout_ms", .number(Double(r.timeoutMilliseconds))))
                    fields.append(("idle_timeout_ms", .number(Double(r.idleTimeoutMilliseconds))))
                    fields.append(("max_connections", .number(Double(r.maxConnections))))
                    if let tls = r.tls { fields.append(("tls", tlsDocument(tls))) }
                    // SPEC §14: header values are secrets; their names show, each value as `***`.
                    if let modelName = r.modelName { fields.append(("model_name", .string(modelName))) }
                    if !r.headers.isEmpty {
                        fields.append(
                            ("headers", .fields(r.headers.map { ($0.name, .string(VersionHeader.redacted)) }))
                        )
                    }
                case .embedded(let e):
                    fields.append(("embedded", .string(e.kind.rawValue)))
                    fields.append(("file", .string(e.file)))
                    if let key = e.key { fields.append(("key", .string(key.description))) }
                }
                if let p = spec.wireProtocol { fields.append(("protocol", .string(p.rawValue))) }
                versions.append((v, .fields(fields)))
            }
            var fields: [(String, JSON)] = [
                ("versions", .fields(versions)),
                ("labels", .fields(policy.labels.keys.sorted().map { ($0, .string(policy.labels[$0]!)) })),
                ("split", .fields(policy.split.map { ($0.version, .number(Double($0.weight) / 100)) })),
            ]
            if let sticky = policy.sticky { fields.append(("sticky", .string(sticky.description))) }
            if let fallback = policy.fallback { fields.append(("fallback", .string(fallback))) }
            if !policy.shadows.isEmpty {
                fields.append(
                    (
                        "shadow",
                        .array(
                            policy.shadows.map {
                                .fields([("version", .string($0.version)), ("percent", .number($0.percent))])
                            }
                        )
                    )
                )
            }
            return (name, .fields(fields))
        }
        return .fields([
            ("generation", .number(Double(snapshot.generation))),
            (
                "files",
                .array(config.files.map { .fields([("path", .string($0.path)), ("checksum", .string($0.checksum))]) })
            ),
            ("routes", .array(routes)),
            ("models", .fields(models)),
        ])
    }
}
