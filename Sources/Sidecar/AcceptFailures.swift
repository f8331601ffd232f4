import EventHTTP
import Foundation
import Logging

extension HTTPServer {
    /// Counts each failed accept in `switchyard_accept_errors_total` and logs each episode
    /// twice: a warning when accepting first pauses (with the open-file limit), and a notice
    /// when it runs again. `metadata` names the listener's owner (a worker, the admin). Loop
    /// thread, before `run`.
    func reportAcceptFailures(metrics: SidecarMetrics, logger: Logger, metadata: Logger.Metadata) {
        let counters = Dictionary(
            uniqueKeysWithValues: SidecarMetrics.acceptErrorReasons.map { ($0, metrics.acceptErrors(reason: $0)) }
        )
        let listener = "\(address)"
        let reserved = options.reservedDescriptors
        onAcceptFailure = { [unowned self] failure, startsEpisode in
            let reason = SidecarMetrics.acceptErrorReason(failure)
            counters[reason]?.increment()
            guard startsEpisode else { return }
            var details = metadata
            details["listen"] = "\(listener)"
            details["reason"] = "\(reason)"
            details["open_file_limit"] = "\(OpenFileLimit.current.map(String.init) ?? "unlimited")"
            details["reserved"] = "\(reserved)"
            details["connections"] = "\(self.openConnections)"
            if case .other(let code) = failure {
                details["error"] = "\(String(cString: strerror(code)))"
                logger.warning("accept failed: accepting paused, retried after 10 ms to 1 s", metadata: details)
            } else {
                logger.warning(
                    "out of file descriptors: accepting paused (10 ms to 1 s), oldest idle connections closed first",
                    metadata: details
                )
            }
        }
        onAcceptResumed = { episode in
            var details = metadata
            details["listen"] = "\(listener)"
            details["failures"] = "\(episode.failures)"
            details["idle_closed"] = "\(episode.closedIdleConnections)"
            details["episode_ms"] = "\(episode.milliseconds)"
            logger.notice("accepting again", metadata: details)
        }
    }
}
