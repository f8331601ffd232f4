import Foundation
import Logging
import Sidecar
@_exported import TestSupport
import Testing

/// A sidecar running in this process on free ports, stopped by `stop()`.
final class RunningSidecar: @unchecked Sendable {
    let sidecar: Sidecar
    private let finished = NSCondition()
    private var done = false

    var port: Int { sidecar.listenPort }
    var adminPort: Int { sidecar.adminPort }

    /// `logger`: where the sidecar logs (default: a `test` logger that drops all but critical).
    init(
        config: String,
        workers: Int = 1,
        logger: Logger? = nil,
        configure: (inout SidecarOptions) -> Void = { _ in }
    ) throws {
        var options = SidecarOptions()
        options.configDirectory = config
        options.listenPort = 0
        options.adminPort = 0
        options.workers = workers
        options.configPollMilliseconds = 0
        configure(&options)
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        sidecar = try Sidecar(options: options, logger: logger ?? quiet)
        let sidecar = self.sidecar
        let finished = self.finished
        let runner = Thread { [self] in
            sidecar.run()
            sidecar.waitForWorkers()
            finished.lock()
            self.done = true
            finished.broadcast()
            finished.unlock()
        }
        runner.start()
        eventually { sidecar.isReady }
    }

    /// Drains and waits (at most 15 s) for `run` to return; true if it did.
    @discardableResult
    func stop() -> Bool {
        sidecar.shutdown()
        finished.lock()
        defer { finished.unlock() }
        let deadline = Date().addingTimeInterval(15)
        while !done {
            if !finished.wait(until: deadline) { return false }
        }
        return true
    }
}
