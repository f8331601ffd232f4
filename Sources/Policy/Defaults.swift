/// Every default and every limit the config loader applies, in one place (SPEC §3, §4, §9).
public enum ConfigDefaults {
    /// A route's `protocol` when it says none: opaque JSON, forwarded as it is.
    public static let routeProtocol: WireProtocol = .json
    /// A remote version's `timeout_ms`: the whole exchange, connect included.
    public static let timeoutMilliseconds = 1000
    /// Accepted `timeout_ms` values.
    public static let timeoutMillisecondsRange = 1...600_000
    /// A remote version's `max_connections`, per worker.
    public static let maxConnections = 64
    /// Accepted `max_connections` values.
    public static let maxConnectionsRange = 1...4096
    /// A remote version's `idle_timeout_ms`: the longest silence between two reads of a streamed
    /// body (SPEC §10).
    public static let idleTimeoutMilliseconds = 30_000
    /// Accepted `idle_timeout_ms` values.
    public static let idleTimeoutMillisecondsRange = 1...600_000
    /// Port of an `http://` URL that names none.
    public static let httpPort = 80
    /// Port of an `https://` or `grpcs://` URL that names none. A `grpc://` URL must name its
    /// port: plaintext gRPC servers have no conventional one.
    public static let httpsPort = 443
    /// `compare.tolerance`: exact agreement.
    public static let compareTolerance = 0.0
    /// `compare.sample`: every comparison is logged.
    public static let compareSample = 1.0
    /// `guard.min_requests`: requests in the window before the guard may trip.
    public static let guardMinRequests = 100
    /// `guard.window_s`: length of the guard's sliding window, in seconds.
    public static let guardWindowSeconds = 60
    /// Largest config file accepted, in bytes (1 MiB).
    public static let maxFileBytes = 1 << 20
    /// Deepest nesting of YAML collections accepted.
    public static let maxDepth = 64
}
