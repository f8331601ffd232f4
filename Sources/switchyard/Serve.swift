import ArgumentParser
import EventHTTP
import Foundation
import Logging
import Sidecar

struct Serve: ParsableCommand {
    /// The option defaults: `SidecarOptions`' own, written once there.
    static let defaults = SidecarOptions()

    static let configuration = CommandConfiguration(
        abstract: "Run the sidecar.",
        discussion:
            "Reads DIR/routes/*.yaml and DIR/policies/*.yaml, serves predictions on --listen and the admin API on --admin."
    )

    @Option(name: .long, help: ArgumentHelp("Config directory holding routes/ and policies/.", valueName: "DIR"))
    var config = "."

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Data listener address or Unix socket path; repeat it to listen on several (all serve the same routes).",
            valueName: "HOST:PORT|unix:PATH"
        )
    )
    var listen = ["127.0.0.1:8480"]

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Admin listener address or Unix socket path (/metrics, /healthz, /readyz, /config, /reload).",
            valueName: "HOST:PORT|unix:PATH"
        )
    )
    var admin = "127.0.0.1:8481"

    @Option(
        name: .long,
        help: ArgumentHelp("Permission bits of the Unix socket files made, in octal.", valueName: "MODE")
    )
    var socketMode = "0660"

    // Optional so that the help names the default once, in words: the count depends on the machine.
    @Option(
        name: .long,
        help:
            "Worker threads, each with its own event loop (default: the CPU cores this process may use, capped by a container's CPU quota)."
    )
    var workers: Int?

    @Option(name: .long, help: "Log format: text or json.")
    var logFormat: LogFormat = .text

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Largest request body in bytes (413 beyond).")
    var maxBodyBytes = Serve.defaults.requestLimits.maxBodyBytes

    @Option(name: .long, help: "Largest request head in bytes (431 beyond).")
    var maxHeaderBytes = Serve.defaults.requestLimits.maxHeaderBytes

    @Option(name: .long, help: "Most request header fields (431 beyond).")
    var maxHeaders = Serve.defaults.requestLimits.maxHeaderCount

    @Option(name: .long, help: "Milliseconds from a request's first byte to the end of its head (408 beyond).")
    var headerTimeoutMs = Serve.defaults.headerTimeoutMilliseconds

    @Option(name: .long, help: "Milliseconds from the end of a request's head to the end of its body (408 beyond).")
    var bodyTimeoutMs = Serve.defaults.bodyTimeoutMilliseconds

    @Option(name: .long, help: "Milliseconds an idle keep-alive connection stays open.")
    var idleTimeoutMs = Serve.defaults.idleTimeoutMilliseconds

    @Option(
        name: .long,
        help: "Milliseconds a client may take no response bytes while some wait for it before it is cut off."
    )
    var sendTimeoutMs = Serve.defaults.sendTimeoutMilliseconds

    @Option(name: .long, help: "Largest backend response body in bytes (502 beyond).")
    var maxResponseBytes = Serve.defaults.maxResponseBytes

    @Option(name: .long, help: "Largest gRPC request message in bytes (RESOURCE_EXHAUSTED beyond).")
    var maxGrpcMessageBytes = Serve.defaults.maxGRPCMessageBytes

    @Option(name: .long, help: "Shadow copies in flight per worker; more are dropped and counted.")
    var maxShadowsInFlight = Serve.defaults.maxShadowsInFlight

    @Option(
        name: .long,
        help: "Comparison log file size in bytes at which it is rotated to NAME.1 (0: never; for outside rotation)."
    )
    var comparisonLogMaxBytes = Serve.defaults.comparisonLogMaxBytes

    @Option(name: .long, help: "Rotated comparison log files kept (NAME.1 ... NAME.N); older ones are removed.")
    var comparisonLogFiles = Serve.defaults.comparisonLogRotatedFiles

    @Option(name: .long, help: "Access log: one line per request and per shadow copy; a file path, or - for stdout.")
    var accessLog: String?

    @Option(name: .long, help: "Access log line format: json or text.")
    var accessLogFormat = AccessLogFormat.json

    @Option(name: .long, help: "Access log file size in bytes at which it is rotated to NAME.1 (0: never).")
    var accessLogMaxBytes = Serve.defaults.accessLogMaxBytes

    @Option(name: .long, help: "Rotated access log files kept (NAME.1 ... NAME.N); older ones are removed.")
    var accessLogFiles = Serve.defaults.accessLogRotatedFiles

    @Option(name: .long, help: "Seconds SIGTERM waits for in-flight requests.")
    var drainTimeout = Double(Serve.defaults.drainTimeoutMilliseconds) / 1000

    @Option(name: .long, help: "Milliseconds between checks of the config directory for changes (0: off).")
    var configPollMs = Serve.defaults.configPollMilliseconds

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Export traces, OTLP over HTTP/protobuf, to this collector (http://host:port posts to /v1/traces; a URL with a path is used as is). Default: tracing off.",
            valueName: "URL"
        )
    )
    var otlpEndpoint: String?

    @Option(name: .long, help: "The service.name of the exported spans.")
    var otlpServiceName = Serve.defaults.tracing.serviceName

    @Option(
        name: .long,
        help:
            "Share of requests recorded when the caller sent no valid traceparent, 0 to 1 (a caller's sampled flag decides for its own)."
    )
    var traceSampleRatio = Serve.defaults.tracing.sampleRatio

    func validate() throws {
        for address in listen { _ = try parseListenAddress(address, option: "--listen") }
        _ = try parseListenAddress(admin, option: "--admin")
        _ = try parseSocketMode(socketMode)
        if let workers, !(1...256).contains(workers) { throw ValidationError("--workers must be between 1 and 256") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("unknown --log-level '\(logLevel)'")
        }
        for (name, value) in [
            ("--max-body-bytes", maxBodyBytes), ("--max-header-bytes", maxHeaderBytes), ("--max-headers", maxHeaders),
            ("--header-timeout-ms", headerTimeoutMs), ("--body-timeout-ms", bodyTimeoutMs),
            ("--idle-timeout-ms", idleTimeoutMs), ("--send-timeout-ms", sendTimeoutMs),
            ("--max-response-bytes", maxResponseBytes), ("--max-grpc-message-bytes", maxGrpcMessageBytes),
            ("--max-shadows-in-flight", maxShadowsInFlight),
        ] where value < 1 {
            throw ValidationError("\(name) must be at least 1")
        }
        guard comparisonLogMaxBytes >= 0 else { throw ValidationError("--comparison-log-max-bytes must be ≥ 0") }
        guard comparisonLogFiles >= 0, comparisonLogFiles <= 1_000 else {
            throw ValidationError("--comparison-log-files must be between 0 and 1000")
        }
        guard accessLogMaxBytes >= 0 else { throw ValidationError("--access-log-max-bytes must be ≥ 0") }
        guard accessLogFiles >= 0, accessLogFiles <= 1_000 else {
            throw ValidationError("--access-log-files must be between 0 and 1000")
        }
        guard accessLog?.isEmpty != true else { throw ValidationError("--access-log expects a path or -") }
        guard drainTimeout >= 0, drainTimeout.isFinite else { throw ValidationError("--drain-timeout must be ≥ 0") }
        guard configPollMs >= 0 else { throw ValidationError("--config-poll-ms must be ≥ 0") }
        if let otlpEndpoint, case .failure(let error) = OTLPEndpoint.parse(otlpEndpoint) {
            throw ValidationError("--otlp-endpoint \(error)")
        }
        guard traceSampleRatio >= 0, traceSampleRatio <= 1 else {
            throw ValidationError("--trace-sample-ratio must be between 0 and 1")
        }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let format = logFormat
        LoggingSystem.bootstrap { label in
            var handler: LogHandler =
                format == .json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "switchyard")

        var options = SidecarOptions()
        options.configDirectory = config
        options.listen = try listen.map { try parseListenAddress($0, option: "--listen") }
        options.admin = try parseListenAddress(admin, option: "--admin")
        options.socketMode = try parseSocketMode(socketMode)
        options.workers = workers ?? SidecarOptions.defaultWorkerCount
        options.requestLimits.maxBodyBytes = maxBodyBytes
        options.requestLimits.maxHeaderBytes = maxHeaderBytes
        options.requestLimits.maxHeaderCount = maxHeaders
        options.headerTimeoutMilliseconds = headerTimeoutMs
        options.bodyTimeoutMilliseconds = bodyTimeoutMs
        options.idleTimeoutMilliseconds = idleTimeoutMs
        options.sendTimeoutMilliseconds = sendTimeoutMs
        options.maxResponseBytes = maxResponseBytes
        options.maxGRPCMessageBytes = maxGrpcMessageBytes
        options.maxShadowsInFlight = maxShadowsInFlight
        options.comparisonLogMaxBytes = comparisonLogMaxBytes
        options.comparisonLogRotatedFiles = comparisonLogFiles
        options.accessLogPath = accessLog
        options.accessLogFormat = accessLogFormat
        options.accessLogMaxBytes = accessLogMaxBytes
        options.accessLogRotatedFiles = accessLogFiles
        options.drainTimeoutMilliseconds = Int(drainTimeout * 1000)
        options.configPollMilliseconds = configPollMs
        options.tracing.otlpEndpoint = otlpEndpoint
        options.tracing.serviceName = otlpServiceName
        options.tracing.sampleRatio = traceSampleRatio

        let sidecar: Sidecar
        do {
            sidecar = try Sidecar(options: options, logger: logger)
        } catch let error as SidecarStartError {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw Exit.problem
        }
        sidecar.run()
        sidecar.waitForWorkers()
    }
}

extension AccessLogFormat: ExpressibleByArgument {}

enum LogFormat: String, ExpressibleByArgument {
    case text, json
}

/// `HOST:PORT`, `[IPV6]:PORT` (port 0...65535) or `unix:/path` (SPEC §12).
func parseListenAddress(_ text: String, option: String) throws -> ListenAddress {
    guard let address = ListenAddress(parsing: text) else {
        throw ValidationError("\(option) expects HOST:PORT, [IPV6]:PORT or unix:PATH, got '\(text)'")
    }
    return address
}

/// Octal permission bits such as `0660` or `600`, at most `0777`.
func parseSocketMode(_ text: String) throws -> UInt32 {
    guard !text.isEmpty, text.count <= 4, text.allSatisfy({ ("0"..."7").contains($0) }),
        let mode = UInt32(text, radix: 8), mode <= 0o777
    else {
        throw ValidationError("--socket-mode expects octal permission bits such as 0660, got '\(text)'")
    }
    return mode
}
