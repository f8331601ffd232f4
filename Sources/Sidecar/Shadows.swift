import Compare
import EventHTTP
import Foundation
import Models
import Policy
import Routing

/// One shadow copy of a live request: sent to its version, never answered to the client, and
/// compared with the live answer once both exist (SPEC §3 "Shadow", §6).
final class ShadowRun: UpstreamExchange {
    let version: String
    let spec: VersionSpec
    // Checked access: leaving it unchecked saved nothing measurable (bench/instructions.sh with
    // CONFIG=bench/shadow-config.tmpl: 69.0k instructions per request checked, 69.3k unchecked).
    /// When the copy went out; for an embedded shadow, when its evaluation began.
    var startNanoseconds: UInt64 = 0
    var result: ResponseSide?
    /// Embedded shadows wait until the live response has been written.
    var isDeferred = false
    var isCompared = false
    /// An `openai` shadow's time to first token: its whole answer's (SPEC §14).
    var firstTokenMilliseconds: Double?
    /// While a remote copy is out: the exchange it belongs to (kept alive until the answer is
    /// back, then let go, so the exchange and its shadows do not hold each other) and the attempt.
    /// The run itself is the pool's exchange for the copy (`UpstreamExchange`): no closure and
    /// no object of the pool's per copy.
    private var sentFrom: Exchange?
    private var sentAttempt: Worker.Attempt?

    init(version: String, spec: VersionSpec) {
        self.version = version
        self.spec = spec
        super.init()
    }

    /// Notes the exchange and attempt a remote copy is sent for, before `UpstreamPool.send`.
    func sending(from exchange: Exchange, attempt: Worker.Attempt) {
        sentFrom = exchange
        sentAttempt = attempt
    }

    /// The remote copy's result (`Worker.forward`), heard exactly once.
    override func upstreamFinished(_ result: Result<UpstreamResponse, UpstreamError>) {
        guard let exchange = sentFrom, let attempt = sentAttempt else {
            preconditionFailure("a shadow's result came back for a copy that was not sent")
        }
        sentFrom = nil
        sentAttempt = nil
        exchange.worker.remoteFinished(result, exchange, version: version, attempt: attempt, shadow: self)
    }
}

extension Worker {
    /// Registers the request's shadow copies before the live version is asked (so a live answer
    /// that comes back at once still finds them); copies beyond the worker's in-flight bound, or
    /// during a drain, are dropped and counted. `sendShadows` sends the remote ones after the
    /// live request has gone out; embedded ones run after the live response is written (so
    /// evaluating them never delays it).
    func registerShadows(_ exchange: Exchange, decision: Decision) {
        // The route's policy is the decision's model's: looked up by route index, no policy copied.
        for version in decision.shadows {
            guard let spec = exchange.snapshot.routing.version(version, routeIndex: exchange.routeIndex) else {
                continue
            }
            if isDraining || shadowsInFlight >= options.maxShadowsInFlight {
                let reason = isDraining ? "draining" : "overloaded"
                metricCache.shadowDropped(metrics, model: decision.model, version: version, reason: reason).increment()
                continue
            }
            shadowsInFlight += 1
            let run = ShadowRun(version: version, spec: spec)
            if case .embedded = spec.backend { run.isDeferred = true }
            exchange.shadows.append(run)
        }
    }

    /// Sends the remote shadow copies `registerShadows` kept, in parallel with the live request.
    func sendShadows(_ exchange: Exchange) {
        for run in exchange.shadows {
            guard case .remote(let remote) = run.spec.backend else { continue }
            run.startNanoseconds = Monotonic.nanoseconds()
            forward(exchange, version: run.version, spec: run.spec, remote: remote, shadow: run)
        }
    }

    /// The live side is known (its response was handed to the connection): start the deferred
    /// embedded shadows on a later loop turn, and compare what is already back.
    func liveAnswered(
        _ exchange: Exchange,
        status: Int,
        version: String,
        body: [UInt8],
        latencyMilliseconds: Double,
        totalMilliseconds: Double
    ) {
        exchange.live = ResponseSide(
            version: version,
            status: status,
            body: .bytes(body),
            latencyMilliseconds: latencyMilliseconds,
            totalMilliseconds: totalMilliseconds,
            firstTokenMilliseconds: exchange.liveFirstTokenMilliseconds
        )
        for run in exchange.shadows where run.isDeferred {
            run.isDeferred = false
            loop.scheduleTimer(afterMilliseconds: 0) { [self] in
                guard exchange.isRouted, case .embedded(let backend) = run.spec.backend else { return }
                run.startNanoseconds = Monotonic.nanoseconds()
                var span = ChildSpan()
                if exchange.trace?.isSampled == true { self.beginChildSpan(exchange, &span) }
                let result = self.evaluate(exchange, model: exchange.model, version: run.version, backend: backend)
                if span.isRecording {
                    self.endChildSpan(
                        exchange,
                        span,
                        version: run.version,
                        isShadow: true,
                        isRemote: false,
                        result: result
                    )
                }
                self.shadowFinished(exchange, run, result: result)
            }
        }
        compareReady(exchange)
    }

    /// A registered copy that was not sent after all (every connection to its version busy):
    /// counted as dropped, never compared.
    func shadowDropped(_ exchange: Exchange, _ run: ShadowRun) {
        shadowsInFlight -= 1
        run.isCompared = true
        metricCache.shadowDropped(metrics, model: exchange.model, version: run.version, reason: "overloaded")
            .increment()
    }

    func shadowFinished(_ exchange: Exchange, _ run: ShadowRun, result: VersionResult) {
        shadowsInFlight -= 1
        let elapsed = Monotonic.nanoseconds() &- run.startNanoseconds
        let status: Int
        var body: [UInt8] = []
        switch result {
        case .answered(let reply):
            status = reply.status
            body = bytes(of: reply.body, sharingWith: exchange.live?.body)
        case .failed(let error, let reply):
            status = reply?.status ?? error.status
            if let reply { body = bytes(of: reply.body, sharingWith: exchange.live?.body) }
        }
        run.result = ResponseSide(
            version: run.version,
            status: status,
            body: .bytes(body),
            latencyMilliseconds: Double(elapsed) / 1e6,
            firstTokenMilliseconds: run.firstTokenMilliseconds
        )
        if exchange.isRouted {
            metricCache.count(
                metrics,
                route: exchange.routeName,
                model: exchange.model,
                version: run.version,
                role: .shadow,
                code: status,
                seconds: Double(elapsed) / 1e9
            )
        }
        accessLog?.shadow(exchange, run, status: status, bytesOut: body.count, result: result)
        compareReady(exchange)
    }

    /// A shadow's answer as bytes to compare. When the live answer is already back with the same
    /// bytes (a shadow that agrees, the common case), the live copy is shared rather than a second
    /// one made; the comparison then finds the two identical without reading them.
    private func bytes(of buffer: EventBuffer, sharingWith live: ResponseSide.Body?) -> [UInt8] {
        if case .bytes(let liveBytes)? = live, liveBytes.count == buffer.count {
            let same = buffer.withUnsafeReadableBytes { shadow in
                liveBytes.withUnsafeBytes { live in
                    live.count == 0 || memcmp(live.baseAddress!, shadow.baseAddress!, live.count) == 0
                }
            }
            if same { return liveBytes }
        }
        return buffer.bytes
    }

    /// Compares every shadow whose answer is back with the live answer, once each. Without a
    /// comparison log only what the metrics read is worked out (`compareSummary`). An `openai`
    /// pair is compared off the loop (`compareLLMOffLoop`).
    ///
    /// The live side is parsed once per request, however many shadows: before the first
    /// comparison that reads its output while other shadows are still to compare,
    /// `exchange.live` keeps that output (`ResponseSide.prepareOutput`), and every comparison
    /// after it gets that prepared value.
    private func compareReady(_ exchange: Exchange) {
        // One copy of the live side per call (a copy shares its bytes and its prepared output).
        guard exchange.isRouted, var live = exchange.live else { return }
        for run in exchange.shadows where !run.isCompared {
            guard let shadow = run.result else { continue }
            run.isCompared = true
            let setup = exchange.snapshot.comparison(for: exchange.model)
            if !exchange.liveCopyTooLarge && !exchange.liveIsEventStream && exchange.wireProtocol != .openai
                && (shadow.isSuccess || setup.logPath != nil) && !live.hasPreparedOutput(at: setup.spec.pointer)
                && exchange.shadows.contains(where: { !$0.isCompared })
            {
                // Kept on the exchange for the shadows still to compare (the last one, and a
                // request's only one, parse the live answer once without keeping it).
                live.prepareOutput(at: setup.spec.pointer)
                exchange.live = live
            }
            let comparison: Comparison?
            let summary: ComparisonSummary
            if exchange.wireProtocol == .openai && !exchange.liveCopyTooLarge {
                compareLLMOffLoop(exchange, live: live, shadow: shadow, setup: setup)
                continue
            } else if let streamed = streamedComparison(exchange, live: live, shadow: shadow) {
                comparison = streamed
                summary = ComparisonSummary(streamed)
            } else if setup.logPath != nil {
                let full = compare(live: live, shadow: shadow, spec: setup.spec)
                comparison = full
                summary = ComparisonSummary(full)
            } else {
                comparison = nil
                summary = compareSummary(live: live, shadow: shadow, spec: setup.spec)
            }
            settle(exchange, live: live, shadow: shadow, setup: setup, summary: summary, comparison: comparison)
        }
    }

    /// SPEC §14: two LLM answers are compared as texts (or embeddings), streamed or not. Parsing
    /// two answers and comparing their texts takes ~0.1 ms for 4 KiB of ASCII and ~0.5 ms with
    /// accents (`switchyard bench compare-text`), too long to hold the worker's loop, so it runs
    /// on a background queue and the result comes back to the loop for the metrics and the log.
    /// At most `maxQueuedLLMComparisons` per worker wait there; beyond, the loop compares itself
    /// (slower answers for its other clients, but no comparison lost). The exchange stays on its
    /// loop, in `pendingLLMComparisons`: the queue gets only the two answers and a ticket.
    private func compareLLMOffLoop(
        _ exchange: Exchange,
        live: ResponseSide,
        shadow: ResponseSide,
        setup: ConfigSnapshot.ModelComparison
    ) {
        let threshold = setup.similarityThreshold
        guard pendingLLMComparisons.count < Worker.maxQueuedLLMComparisons else {
            let comparison = compareLLM(live: live, shadow: shadow, similarityThreshold: threshold)
            settle(
                exchange,
                live: live,
                shadow: shadow,
                setup: setup,
                summary: ComparisonSummary(comparison),
                comparison: comparison
            )
            return
        }
        nextLLMTicket &+= 1
        let ticket = nextLLMTicket
        pendingLLMComparisons[ticket] = PendingLLMComparison(exchange: exchange, setup: setup)
        Worker.comparisonQueue.async { [self] in
            let comparison = compareLLM(live: live, shadow: shadow, similarityThreshold: threshold)
            loop.execute { [self] in
                guard let pending = pendingLLMComparisons.removeValue(forKey: ticket) else { return }
                settle(
                    pending.exchange,
                    live: live,
                    shadow: shadow,
                    setup: pending.setup,
                    summary: ComparisonSummary(comparison),
                    comparison: comparison
                )
            }
        }
    }

    /// Counts a comparison in the pair's metrics and hands its record to the log (sampled).
    private func settle(
        _ exchange: Exchange,
        live: ResponseSide,
        shadow: ResponseSide,
        setup: ConfigSnapshot.ModelComparison,
        summary: ComparisonSummary,
        comparison: Comparison?
    ) {
        let handles = metricCache.pair(metrics, model: exchange.model, live: live.version, shadow: shadow.version)
        switch summary.outcome {
        case .match: handles.match.increment()
        case .mismatch: handles.mismatch.increment()
        case .error: handles.error.increment()
        }
        if summary.flip { handles.flips.increment() }
        if let diff = summary.maxAbsDiff { handles.absDiff.record(diff) }
        if let comparison, let path = setup.logPath {
            record(exchange, path: path, sample: setup.logSample, live: live, shadow: shadow, comparison: comparison)
        }
    }

    /// The comparison of a streamed live answer that is not compared by `compare.output`
    /// (SPEC §10): one longer than the copy kept is an `error` (`too_large`); server-sent events
    /// match when the bytes are equal. Nil for every other answer.
    private func streamedComparison(_ exchange: Exchange, live: ResponseSide, shadow: ResponseSide) -> Comparison? {
        guard exchange.liveCopyTooLarge || exchange.liveIsEventStream else { return nil }
        var outcome = Comparison.Outcome.error
        var reason: String?
        if exchange.liveCopyTooLarge {
            reason =
                "too_large: the streamed live answer is longer than --max-response-bytes (\(options.maxResponseBytes))"
        } else if !live.isSuccess {
            reason = "live status \(live.status)"
        } else if !shadow.isSuccess {
            reason = "shadow status \(shadow.status)"
        } else if case .bytes(let liveBytes) = live.body, case .bytes(let shadowBytes) = shadow.body {
            outcome = liveBytes == shadowBytes ? .match : .mismatch
            if outcome == .mismatch { reason = "event streams differ" }
        }
        let liveFailed = exchange.liveCopyTooLarge || !live.isSuccess
        // No number is compared in an event stream or an answer that was not kept.
        return Comparison(
            outcome: outcome,
            reason: reason,
            liveFailed: liveFailed,
            shadowFailed: !liveFailed && !shadow.isSuccess
        )
    }

    /// Writes the comparison log record to `path` when the sample picks it.
    private func record(
        _ exchange: Exchange,
        path: String,
        sample: Double,
        live: ResponseSide,
        shadow: ResponseSide,
        comparison: Comparison
    ) {
        if sample < 1, Double(random.next() >> 11) / Double(1 << 53) >= sample { return }
        let milliseconds = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        var record = ComparisonRecord(
            timestamp: RFC3339.format(millisecondsSinceEpoch: milliseconds),
            requestID: exchange.requestID,
            model: exchange.model,
            route: exchange.routeName,
            live: live,
            shadow: shadow,
            comparison: comparison
        )
        if exchange.liveCopyTooLarge { record.error = "too_large" }
        let line = record.jsonLine()
        comparisonLog.append(line, to: path)
    }
}
