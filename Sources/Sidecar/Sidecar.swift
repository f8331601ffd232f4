import EventHTTP
import Foundation
import HTTP1
import Logging
import Policy
import Routing

/// The running sidecar: worker threads serving the data port, and the admin loop (on the
/// thread that calls `run`) serving the admin port, signals, reloads and the drain.
public final class Sidecar: @unchecked Sendable {
    public let options: SidecarOptions
    let logger: Logger
    let adminLoop: EventLoop
    private var workers: [Worker] = []
    private var threads: [Thread] = []
    private var admin: AdminServer?
    private let state = SharedState()
    let metrics = SidecarMetrics()
    let guardMonitor = GuardMonitor()
    /// The tripped set the workers last received (admin loop).
    private var publishedGuards = GuardState()
    let comparisonLog: ComparisonLog
    /// Nil while tracing is off (no `--otlp-endpoint`); each worker has a `Tracer` sending to it.
    let traceExporter: OTLPExporter?
    /// Nil when `--access-log` is not given.
    let accessLog: AccessLog?

    /// The first TCP data listener's port actually bound (useful with port 0); 0 when every data
    /// listener is a Unix socket.
    public private(set) var listenPort = 0
    /// The admin port actually bound; 0 when the admin listener is a Unix socket.
    public private(set) var adminPort = 0
    /// The admin listener as bound (its TCP port as bound).
    public private(set) var adminAddress = ListenAddress.tcp(host: "127.0.0.1", port: 0)
    /// The data listeners as bound, in `options.listen` order (TCP ports as bound).
    public private(set) var listenAddresses: [ListenAddress] = []
    /// The data listeners' Unix sockets, each shared by every worker; closed when the drain
    /// starts, their files removed when `run` returns.
    private var unixSockets: [UnixListeningSocket] = []

    /// Loads the config (every problem reported at once) and binds both listeners.
    /// Throws `SidecarStartError`.
    public init(options: SidecarOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        // A write past a file size limit (`ulimit -f`, RLIMIT_FSIZE) raises SIGXFSZ, which by
        // default kills the process; ignored, the write fails with EFBIG and the comparison log
        // drops and counts those records like on a full disk.
        signal(SIGXFSZ, SIG_IGN)
        let comparisonLog = ComparisonLog(
            metrics: metrics,
            logger: logger,
            maxFileBytes: options.comparisonLogMaxBytes,
            rotatedFiles: options.comparisonLogRotatedFiles
        )
        self.comparisonLog = comparisonLog
        // A start that fails below stops the log's writer thread; a started sidecar closes it
        // when it drains.
        let accessLog = AccessLog(options: options, metrics: metrics, logger: logger)
        self.accessLog = accessLog
        var started = false
        defer {
            if !started {
                comparisonLog.close()
                accessLog?.close()
            }
        }
        let traceExporter: OTLPExporter?
        switch options.tracing.otlpEndpoint.map(OTLPEndpoint.parse) {
        case nil:
            traceExporter = nil
        case .success(let endpoint)?:
            traceExporter = OTLPExporter(endpoint: endpoint, options: options.tracing, metrics: metrics, logger: logger)
        case .failure(let error)?:
            throw SidecarStartError.invalidOption("--otlp-endpoint \(error)")
        }
        self.traceExporter = traceExporter
        defer { if !started { traceExporter?.close() } }
        let snapshot: ConfigSnapshot
        switch ConfigSnapshot.load(directory: options.configDirectory) {
        case .success(let s): snapshot = s
        case .failure(let diagnostics): throw SidecarStartError.invalidConfig(diagnostics)
        }
        state.install(snapshot)
        let guards = guardMonitor.install(snapshot.config)
        // Raised before anything is bound (the reserve is computed from it); logged once the
        // start has succeeded, so that a failed start prints only its error.
        let openFileLimit = OpenFileLimit.raiseToHardLimit()
        adminLoop = try EventLoop()

        for index in 0..<max(1, options.workers) {
            let worker = try Worker(
                index: index,
                snapshot: snapshot,
                options: options,
                logger: logger,
                metrics: metrics,
                comparisonLog: comparisonLog,
                guardMonitor: guardMonitor,
                tracer: traceExporter.map { Tracer(options: options.tracing, exporter: $0) }
            )
            worker.guards = guards
            worker.accessLog = accessLog.map { AccessLogger(log: $0, loop: worker.loop) }
            workers.append(worker)
        }
        for address in options.listen {
            switch address {
            case .tcp(let host, let port):
                var bound = port
                for worker in workers {
                    do {
                        bound = try worker.listen(host: host, port: bound, exclusive: worker.index == 0)
                    } catch {
                        throw SidecarStartError.bindFailed("\(host):\(port)", "\(error)")
                    }
                }
                listenAddresses.append(.tcp(host: host, port: bound))
                if listenPort == 0 { listenPort = bound }
            case .unix(let path):
                // One socket for all workers, each accepting from its own dup of it.
                do {
                    let socket = try UnixListeningSocket(path: path, mode: options.socketMode)
                    unixSockets.append(socket)
                    for worker in workers { try worker.listen(on: socket) }
                } catch {
                    throw SidecarStartError.listenFailed("\(error)")
                }
                listenAddresses.append(address)
            }
        }
        let admin = AdminServer(sidecar: self)
        do {
            adminPort = try admin.listen(loop: adminLoop, address: options.admin, socketMode: options.socketMode)
            if case .tcp(let host, _) = options.admin {
                adminAddress = .tcp(host: host, port: adminPort)
            } else {
                adminAddress = options.admin
            }
        } catch {
            if case .tcp(let host, let port) = options.admin {
                throw SidecarStartError.bindFailed("\(host):\(port)", "\(error)")
            }
            throw SidecarStartError.listenFailed("\(error)")
        }
        self.admin = admin
        publishGauges(snapshot, previous: nil, guards: guards)
        Sidecar.log(openFileLimit, logger: logger)
        logger.info(
            "config loaded",
            metadata: ["generation": .stringConvertible(snapshot.generation), "summary": "\(snapshot.summary)"]
        )
        logWarnings(snapshot)
        started = true
    }

    /// Says how the open-file limit was raised, with the descriptors the data listeners leave to
    /// the rest (see `OpenFileLimit.reserve`).
    private static func log(_ openFileLimit: OpenFileLimit.Outcome, logger: Logger) {
        switch openFileLimit {
        case .raised(let from, let to):
            logger.info(
                "raised the open-file limit from \(from) to \(to)",
                metadata: ["reserved": .stringConvertible(OpenFileLimit.reserve(forLimit: to))]
            )
        case .alreadyAtHardLimit(let limit):
            logger.info(
                "the open-file limit is already at the hard limit, \(limit)",
                metadata: ["reserved": .stringConvertible(OpenFileLimit.reserve(forLimit: limit))]
            )
        case .failed(let why):
            logger.warning("could not raise the open-file limit", metadata: ["error": "\(why)"])
        }
    }

    /// Serves until SIGTERM or SIGINT, then drains and returns (exit 0).
    public func run() {
        // A parent may have started us with these blocked (some process launchers do);
        // the drain and reload depend on receiving them.
        var signals = sigset_t()
        sigemptyset(&signals)
        for signo in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, signo) }
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
        for worker in workers {
            let thread = Thread { worker.loop.run() }
            thread.name = "switchyard-worker-\(worker.index)"
            thread.stackSize = 1 << 20
            threads.append(thread)
            thread.start()
        }
        signal(SIGPIPE, SIG_IGN)
        // The admin loop's state belongs to the thread running it (`EventLoop.assertInLoop`), which
        // need not be the one that made this sidecar (the tests run it on another): its signals
        // and timers are set up in its first callback, and the sidecar is ready once they are.
        adminLoop.execute { [self] in
            adminLoop.onSignal(SIGTERM) { [unowned self] in self.beginDrain(signal: "SIGTERM") }
            adminLoop.onSignal(SIGINT) { [unowned self] in self.beginDrain(signal: "SIGINT") }
            adminLoop.onSignal(SIGHUP) { [unowned self] in _ = self.reload(trigger: "SIGHUP") }
            scheduleGuardChecks()
            if options.configPollMilliseconds > 0 {
                watcher = ConfigWatcher(directory: options.configDirectory) { [unowned self] in
                    self.snapshot.watchedFiles
                }
                schedulePoll()
            }
            state.setReady(true)
        }
        logger.info(
            "serving",
            metadata: [
                "listen": "\(listenAddresses.map(\.description).joined(separator: ", "))",
                "admin": "\(adminAddress)",
                "workers": .stringConvertible(workers.count),
            ]
        )
        adminLoop.run()
        // A clean exit: the socket files go (each only if it is still the one bound here).
        admin?.stop()
        for socket in unixSockets { socket.removeFile() }
        comparisonLog.close()
        traceExporter?.close()
        accessLog?.close()
        logger.info("stopped")
    }

    // MARK: - Reload

    private var watcher: ConfigWatcher?

    private func schedulePoll() {
        _ = adminLoop.scheduleTimer(afterMilliseconds: options.configPollMilliseconds) { [weak self] in
            guard let self, !self.state.isDraining else { return }
            let wasFailing = self.watcher?.isFailing ?? false
            if self.watcher?.hasChanged() == true { _ = self.reload(trigger: "file change") }
            let isFailing = self.watcher?.isFailing ?? false
            if isFailing && !wasFailing {
                self.logger.warning(
                    "config poll could not read the config directory; retrying every poll",
                    metadata: ["directory": "\(self.options.configDirectory)"]
                )
            } else if wasFailing && !isFailing {
                self.logger.notice("config poll reads the config directory again")
            }
            self.schedulePoll()
        }
    }

    /// The current snapshot (any thread).
    public var snapshot: ConfigSnapshot { state.snapshot }
    public var isReady: Bool { state.isReady }

    /// Loads and checks the config directory again and, if it is valid, swaps it into every
    /// worker. On failure the old config keeps serving. Admin loop thread.
    func reload(trigger: String) -> Result<Int, [Diagnostic]> {
        let next = state.snapshot.generation + 1
        switch ConfigSnapshot.load(directory: options.configDirectory, generation: next) {
        case .failure(let diagnostics):
            metrics.configReloads(success: false).increment()
            logger.error(
                "reload failed; the previous config keeps serving",
                metadata: [
                    "trigger": "\(trigger)", "diagnostics": "\(diagnostics.map(\.description).joined(separator: "\n"))",
                ]
            )
            return .failure(diagnostics)
        case .success(let snapshot):
            let previous = state.snapshot
            state.install(snapshot)
            metrics.configReloads(success: true).increment()
            let guards = guardMonitor.install(snapshot.config)
            publishedGuards = guards
            publishGauges(snapshot, previous: previous, guards: guards)
            watcher?.remember()
            for worker in workers {
                worker.loop.execute {
                    worker.install(snapshot)
                    worker.guards = guards
                }
            }
            logger.info(
                "config reloaded",
                metadata: ["trigger": "\(trigger)", "generation": .stringConvertible(snapshot.generation)]
            )
            logWarnings(snapshot)
            return .success(snapshot.generation)
        }
    }

    /// One `.warning` line per config warning (`insecure_skip_verify: true`...), at start and
    /// on every reload, so that a warning is not seen once and forgotten.
    private func logWarnings(_ snapshot: ConfigSnapshot) {
        for warning in snapshot.config.warnings {
            logger.warning("config warning", metadata: ["diagnostic": "\(warning)"])
        }
    }

    /// The config gauges: generation and effective split weights (versions that left the
    /// config are set to 0).
    private func publishGauges(_ snapshot: ConfigSnapshot, previous: ConfigSnapshot?, guards: GuardState) {
        metrics.configGeneration.set(to: Double(snapshot.generation))
        _ = metrics.configReloads(success: true)
        _ = metrics.configReloads(success: false)
        var current: Set<String> = []
        for (name, policy) in snapshot.config.models {
            for entry in effectiveSplit(policy, guards: guards) {
                current.insert(name + "\u{0}" + entry.version)
                metrics.splitWeightRatio(model: name, version: entry.version).set(to: Double(entry.weight) / 10_000)
            }
            // Series that count events exist from the start at 0, so `increase()` sees the first one.
            for version in policy.versionOrder where version != policy.fallback {
                if let fallback = policy.fallback { _ = metrics.fallbacks(model: name, from: version, to: fallback) }
            }
            for shadow in policy.shadows {
                for reason in ["overloaded", "draining"] {
                    _ = metrics.shadowDropped(model: name, version: shadow.version, reason: reason)
                }
                for live in policy.split where live.weight > 0 {
                    for outcome in ["match", "mismatch", "error"] {
                        _ = metrics.comparisons(
                            model: name,
                            live: live.version,
                            shadow: shadow.version,
                            outcome: outcome
                        )
                    }
                    _ = metrics.flips(model: name, live: live.version, shadow: shadow.version)
                }
            }
            if let guarded = policy.guardSpec?.version {
                let tripped = guards.isTripped(model: name, version: guarded)
                metrics.guardTripped(model: name, version: guarded).set(to: tripped ? 1.0 : 0.0)
            }
        }
        for (name, policy) in previous?.config.models ?? [:] {
            for entry in policy.split where !current.contains(name + "\u{0}" + entry.version) {
                metrics.splitWeightRatio(model: name, version: entry.version).set(to: 0.0)
            }
        }
    }

    // MARK: - Guards

    private func scheduleGuardChecks() {
        _ = adminLoop.scheduleTimer(afterMilliseconds: 1_000) { [weak self] in
            guard let self, !self.state.isDraining else { return }
            self.checkGuards()
            self.scheduleGuardChecks()
        }
    }

    /// Trips and reopens guards (admin loop, once a second) and tells the workers.
    func checkGuards() {
        let now = Int64(Monotonic.nanoseconds() / 1_000_000)
        guard let guards = guardMonitor.evaluate(nowMilliseconds: now) else { return }
        let snapshot = state.snapshot
        publishGauges(snapshot, previous: nil, guards: guards)
        // Log what changed, once: a guard that tripped, or one that reopened.
        for status in guardMonitor.statuses(nowMilliseconds: now, epochOffsetMilliseconds: 0) {
            let wasTripped = publishedGuards.isTripped(model: status.model, version: status.version)
            let metadata: Logger.Metadata = ["model": "\(status.model)", "version": "\(status.version)"]
            if status.tripped && !wasTripped {
                logger.warning(
                    "guard tripped: live share goes to the fallback",
                    metadata: metadata.merging(["reason": "\(status.reason ?? "")"]) { $1 }
                )
            } else if !status.tripped && wasTripped {
                logger.info("guard reopened (half-open): the version gets its share again", metadata: metadata)
            }
        }
        publishedGuards = guards
        for worker in workers {
            worker.loop.execute { worker.guards = guards }
        }
    }

    /// `/guards`: every guard, tripped or not, with why and since when.
    func guardStatuses() -> [GuardMonitor.Status] {
        let monotonic = Int64(Monotonic.nanoseconds() / 1_000_000)
        let epoch = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        return guardMonitor.statuses(nowMilliseconds: monotonic, epochOffsetMilliseconds: epoch - monotonic)
    }

    // MARK: - Drain

    private func beginDrain(signal name: String) {
        guard !state.isDraining else { return }
        state.setDraining()
        logger.info(
            "draining",
            metadata: ["signal": "\(name)", "timeout_ms": .stringConvertible(options.drainTimeoutMilliseconds)]
        )
        // The workers stop accepting on their own dups of the Unix sockets; closing the shared
        // descriptors as well makes new connections fail at once instead of waiting in the backlog.
        for socket in unixSockets { socket.close() }
        let remaining = CountDown(workers.count)
        let adminLoop = self.adminLoop
        let logger = self.logger
        for worker in workers {
            worker.loop.execute {
                worker.drain(deadlineMilliseconds: self.options.drainTimeoutMilliseconds) { unfinished in
                    if unfinished > 0 {
                        worker.metrics.drainCut().increment(by: Int64(unfinished))
                        logger.warning(
                            "drain deadline passed: requests cut",
                            metadata: [
                                "worker": .stringConvertible(worker.index), "cut": .stringConvertible(unfinished),
                            ]
                        )
                    }
                    worker.tracer?.flush()
                    worker.accessLog?.flush()
                    worker.loop.stop()
                    if remaining.decrement() == 0 {
                        adminLoop.execute { adminLoop.stop() }
                    }
                }
            }
        }
    }

    /// Starts the same drain as SIGTERM (any thread); `run` returns when it is done.
    public func shutdown() {
        adminLoop.execute { [self] in self.beginDrain(signal: "shutdown") }
    }

    /// Blocks until every worker thread has returned from its loop (after a drain).
    public func waitForWorkers() {
        while threads.contains(where: { $0.isExecuting }) { usleep(1_000) }
    }
}

public enum SidecarStartError: Error, CustomStringConvertible {
    case invalidConfig([Diagnostic])
    case bindFailed(String, String)
    /// A listener could not be set up; the message names it (`cannot listen on unix:/path: why`).
    case listenFailed(String)
    /// An option's value cannot be used; the message names the option.
    case invalidOption(String)

    public var description: String {
        switch self {
        case .invalidConfig(let d): return d.map(\.description).joined(separator: "\n")
        case .bindFailed(let address, let why): return "cannot listen on \(address): \(why)"
        case .listenFailed(let message), .invalidOption(let message): return message
        }
    }
}

/// State read from several threads: the current snapshot and readiness.
final class SharedState: @unchecked Sendable {
    private let lock = NSLock()
    private var _snapshot: ConfigSnapshot?
    private var _ready = false
    private var _draining = false

    var snapshot: ConfigSnapshot { lock.withLock { _snapshot! } }
    var isReady: Bool { lock.withLock { _ready && !_draining } }
    var isDraining: Bool { lock.withLock { _draining } }

    func install(_ s: ConfigSnapshot) { lock.withLock { _snapshot = s } }
    func setReady(_ r: Bool) { lock.withLock { _ready = r } }
    func setDraining() { lock.withLock { _draining = true } }
}

final class CountDown: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int
    init(_ value: Int) { self.value = value }
    func decrement() -> Int {
        lock.withLock {
            value -= 1
            return value
        }
    }
}
