import EventHTTP
import Foundation
import HTTP1

/// Everything `switchyard serve` can be told, with SPEC §2 and §8 defaults. The CLI fills it;
/// tests build it directly.
public struct SidecarOptions: Sendable {
    /// The config directory holding `routes/` and `policies/`.
    public var configDirectory: String = "."
    /// Data listeners, all serving the same routes (SPEC §2, §12): TCP addresses and Unix socket
    /// paths. Default: one, `127.0.0.1:8480`; port 0 picks a free port (tests).
    public var listen: [ListenAddress] = [.tcp(host: "127.0.0.1", port: 8480)]
    /// Admin listener (SPEC §5, §12). Default `127.0.0.1:8481`; port 0 picks a free port.
    public var admin: ListenAddress = .tcp(host: "127.0.0.1", port: 8481)
    /// The permission bits of every socket file the sidecar makes (SPEC §12). Default `0o660`.
    public var socketMode: UInt32 = 0o660

    /// The first TCP data listener's host. Setting it (or `listenPort`) changes that listener, or
    /// adds one (`127.0.0.1:8480` but for what is set) before the others when there is none.
    public var listenHost: String {
        get { firstTCPListener.host }
        set { firstTCPListener.host = newValue }
    }
    /// The first TCP data listener's port.
    public var listenPort: Int {
        get { firstTCPListener.port }
        set { firstTCPListener.port = newValue }
    }
    /// The admin listener's host; setting it (or `adminPort`) makes the admin listener TCP.
    public var adminHost: String {
        get { if case .tcp(let host, _) = admin { host } else { "127.0.0.1" } }
        set { admin = .tcp(host: newValue, port: adminPort) }
    }
    /// The admin listener's port (8481 when it is a Unix socket).
    public var adminPort: Int {
        get { if case .tcp(_, let port) = admin { port } else { 8481 } }
        set { admin = .tcp(host: adminHost, port: newValue) }
    }

    private var firstTCPListener: (host: String, port: Int) {
        get {
            for case .tcp(let host, let port) in listen { return (host, port) }
            return ("127.0.0.1", 8480)
        }
        set {
            let address = ListenAddress.tcp(host: newValue.host, port: newValue.port)
            if let index = listen.firstIndex(where: { if case .tcp = $0 { true } else { false } }) {
                listen[index] = address
            } else {
                listen.insert(address, at: 0)
            }
        }
    }
    /// Worker threads, each with its own event loop; default: the number of cores.
    public var workers: Int = SidecarOptions.defaultWorkerCount

    /// Request head and body limits and deadlines: `ServerOptions`' defaults (the one place they
    /// are written): 32 KiB / 100 header fields, 1 MiB body, 5 s head, 10 s body, 10 s idle.
    public var requestLimits = ServerOptions().limits
    /// From a request's first byte to the end of its head.
    public var headerTimeoutMilliseconds = ServerOptions().headerTimeoutMilliseconds
    /// From the end of a request's head to the end of its body.
    public var bodyTimeoutMilliseconds = ServerOptions().bodyTimeoutMilliseconds
    /// Between requests on a keep-alive connection.
    public var idleTimeoutMilliseconds = ServerOptions().idleTimeoutMilliseconds
    /// The longest a client may take no response bytes while some wait for it. Default 30 s.
    public var sendTimeoutMilliseconds = ServerOptions().sendTimeoutMilliseconds
    /// The largest backend response body accepted. Default 8 MiB.
    public var maxResponseBytes = 8 << 20
    /// The largest gRPC request message (RESOURCE_EXHAUSTED beyond, SPEC §13). Default 4 MiB.
    public var maxGRPCMessageBytes = ServerOptions().maxGRPCMessageBytes
    /// Requests that may wait for a backend connection, per backend and worker. Default 1024.
    public var maxQueuedPerBackend = 1_024
    /// Shadow copies in flight per worker; more are dropped and counted. Default 256.
    public var maxShadowsInFlight = 256
    /// A comparison log file is rotated before a write would take it past this size (0: never,
    /// for outside rotation only). Default 256 MiB.
    public var comparisonLogMaxBytes = 256 << 20
    /// Rotated comparison log files kept beside the current one (`NAME.1` … `NAME.N`). Default 4.
    public var comparisonLogRotatedFiles = 4
    /// The access log: a file path, `-` for standard output, nil (the default) for none.
    public var accessLogPath: String?
    /// How each access log line is written. Default JSON.
    public var accessLogFormat = AccessLogFormat.json
    /// An access log file is rotated before a write would take it past this size (0: never).
    /// Default 256 MiB.
    public var accessLogMaxBytes = 256 << 20
    /// Rotated access log files kept beside the current one. Default 4.
    public var accessLogRotatedFiles = 4
    /// How long SIGTERM waits for in-flight requests. Default 10 s.
    public var drainTimeoutMilliseconds = 10_000
    /// How often the config directory is checked for changes (0 turns polling off). Default 2 s.
    public var configPollMilliseconds = 2_000
    /// Tracing with OpenTelemetry (`TracingOptions`); off unless an OTLP endpoint is set.
    public var tracing = TracingOptions()

    public init() {}

    /// The cores this process may use: online CPUs, capped by a cgroup CPU quota (a container's
    /// CPU limit), at least 1.
    public static var defaultWorkerCount: Int {
        var cores = 1
        #if canImport(Glibc)
        cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #endif
        if let quota = cgroupCPUQuota() { cores = min(cores, Int(quota.rounded(.up))) }
        return max(1, cores)
    }

    /// CPUs allowed by the cgroup quota (v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`).
    static func cgroupCPUQuota() -> Double? {
        func read(_ path: String) -> String? {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let v2 = read("/sys/fs/cgroup/cpu.max") {
            let parts = v2.split(separator: " ")
            if parts.count == 2, let quota = Double(parts[0]), let period = Double(parts[1]), quota > 0, period > 0 {
                return quota / period
            }
            return nil
        }
        if let q = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").flatMap(Double.init),
            let p = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us").flatMap(Double.init), q > 0, p > 0
        {
            return q / p
        }
        return nil
    }
}

#if canImport(Glibc)
import Glibc
#endif
