import Foundation
import Policy
import Routing

/// Automatic guards (SPEC §3 `guard:`): a sliding window of the guarded version's own outcomes
/// (its failures count even when `fallback` rescued the request), evaluated once a second.
///
/// When the window holds at least `min_requests` and the error ratio exceeds `max_error_ratio`
/// or the p99 latency exceeds `max_p99_ms`, the guard trips: the version's live share goes to
/// `fallback` and requests pinned to it get 503 `guard_open`.
///
/// Reset, as Envoy's outlier detection does it: a tripped guard holds for a cool-down of
/// `window_s` seconds, then turns half-open (traffic returns, the window starts empty). A guard
/// that trips again within one window of reopening holds twice as long as the time before, up
/// to 8 × `window_s`; a full healthy window forgets past trips. A reload that leaves a guard's
/// spec as it was keeps its state; a changed or new guard starts closed.
final class GuardMonitor: @unchecked Sendable {
    struct Key: Hashable, Sendable {
        var model: String
        var version: String
    }

    /// What `/guards` shows for one guard.
    struct Status: Sendable {
        var model: String
        var version: String
        var tripped: Bool
        var reason: String?
        /// Milliseconds since the epoch when it tripped (or last reopened).
        var sinceEpochMilliseconds: Int64?
        var untilEpochMilliseconds: Int64?
        var requests: Int
        var errors: Int
        var p99Milliseconds: Double?
    }

    private final class Guard {
        let spec: GuardSpec
        var window: Window
        var isTripped = false
        var reason: String?
        var since: Int64?
        var until: Int64?
        var consecutiveTrips = 0
        var reopenedAt: Int64?

        init(spec: GuardSpec) {
            self.spec = spec
            self.window = Window(seconds: spec.windowSeconds)
        }
    }

    private let lock = NSLock()
    private var guards: [Key: Guard] = [:]

    /// Installs the guards of a (re)loaded config. Returns the tripped set for the workers.
    func install(_ config: Config) -> GuardState {
        lock.withLock {
            var next: [Key: Guard] = [:]
            for (model, policy) in config.models {
                guard let spec = policy.guardSpec else { continue }
                let key = Key(model: model, version: spec.version)
                if let existing = guards[key], existing.spec == spec {
                    next[key] = existing
                } else {
                    next[key] = Guard(spec: spec)
                }
            }
            guards = next
            return trippedState()
        }
    }

    /// One outcome of the guarded version. Any thread.
    func record(model: String, version: String, failed: Bool, latencyMilliseconds: Double, nowMilliseconds: Int64) {
        lock.withLock {
            guard let g = guards[Key(model: model, version: version)] else { return }
            g.window.add(failed: failed, latencyMilliseconds: latencyMilliseconds, nowMilliseconds: nowMilliseconds)
        }
    }

    /// Trips and reopens guards; returns the new tripped set when it changed.
    func evaluate(nowMilliseconds now: Int64) -> GuardState? {
        lock.withLock {
            var changed = false
            for (_, g) in guards {
                let windowMilliseconds = Int64(g.spec.windowSeconds) * 1000
                if g.isTripped {
                    if let until = g.until, now >= until {
                        g.isTripped = false
                        g.reason = nil
                        g.since = now
                        g.until = nil
                        g.reopenedAt = now
                        g.window.clear()
                        changed = true
                    }
                    continue
                }
                if let reopened = g.reopenedAt, now - reopened >= windowMilliseconds {
                    g.consecutiveTrips = 0
                    g.reopenedAt = nil
                }
                let totals = g.window.totals(nowMilliseconds: now)
                guard totals.requests >= g.spec.minRequests, totals.requests > 0 else { continue }
                var reason: String?
                let ratio = Double(totals.errors) / Double(totals.requests)
                if let max = g.spec.maxErrorRatio, ratio > max {
                    reason = String(
                        format: "error ratio %.4f over %d requests exceeds %g",
                        ratio,
                        totals.requests,
                        max
                    )
                } else if let max = g.spec.maxP99Milliseconds, let p99 = totals.p99Milliseconds, p99 > max {
                    reason = String(format: "p99 %.1f ms over %d requests exceeds %g ms", p99, totals.requests, max)
                }
                guard let reason else { continue }
                g.consecutiveTrips += 1
                let multiplier = Int64(min(1 << (g.consecutiveTrips - 1), 8))
                g.isTripped = true
                g.reason = reason
                g.since = now
                g.until = now + windowMilliseconds * multiplier
                g.reopenedAt = nil
                changed = true
            }
            return changed ? trippedState() : nil
        }
    }

    /// Every guard's state, sorted by model then version.
    func statuses(nowMilliseconds now: Int64, epochOffsetMilliseconds offset: Int64) -> [Status] {
        lock.withLock {
            guards.sorted { ($0.key.model, $0.key.version) < ($1.key.model, $1.key.version) }.map { key, g in
                let totals = g.window.totals(nowMilliseconds: now)
                return Status(
                    model: key.model,
                    version: key.version,
                    tripped: g.isTripped,
                    reason: g.reason,
                    sinceEpochMilliseconds: g.since.map { $0 + offset },
                    untilEpochMilliseconds: g.until.map { $0 + offset },
                    requests: totals.requests,
                    errors: totals.errors,
                    p99Milliseconds: totals.p99Milliseconds
                )
            }
        }
    }

    private func trippedState() -> GuardState {
        var tripped: [String: Set<String>] = [:]
        for (key, g) in guards where g.isTripped { tripped[key.model, default: []].insert(key.version) }
        return GuardState(tripped: tripped)
    }
}

/// Per-second buckets over the last `seconds` seconds: requests, errors and a latency
/// histogram with buckets 10 % apart (p99 read as the upper edge of its bucket).
struct Window {
    private struct Bucket {
        var second: Int64 = -1
        var requests = 0
        var errors = 0
        var latency: [UInt32] = []
    }

    /// Upper edges in milliseconds: 0.05 ms × 1.1^i, up to about 10 minutes.
    static let edges: [Double] = {
        var edges: [Double] = []
        var edge = 0.05
        while edge < 600_000 {
            edges.append(edge)
            edge *= 1.1
        }
        return edges
    }()

    private var buckets: [Bucket]

    init(seconds: Int) {
        buckets = Array(repeating: Bucket(), count: max(1, seconds))
    }

    mutating func clear() {
        buckets = Array(repeating: Bucket(), count: buckets.count)
    }

    mutating func add(failed: Bool, latencyMilliseconds: Double, nowMilliseconds: Int64) {
        let second = nowMilliseconds / 1000
        let index = Int(second % Int64(buckets.count))
        if buckets[index].second != second {
            buckets[index] = Bucket(
                second: second,
                requests: 0,
                errors: 0,
                latency: Array(repeating: 0, count: Self.edges.count + 1)
            )
        }
        buckets[index].requests += 1
        if failed { buckets[index].errors += 1 }
        let slot = Self.edges.firstIndex { latencyMilliseconds <= $0 } ?? Self.edges.count
        buckets[index].latency[slot] += 1
    }

    func totals(nowMilliseconds: Int64) -> (requests: Int, errors: Int, p99Milliseconds: Double?) {
        let second = nowMilliseconds / 1000
        var requests = 0
        var errors = 0
        var latency = Array(repeating: 0, count: Self.edges.count + 1)
        for bucket in buckets where bucket.second >= 0 && second - bucket.second < Int64(buckets.count) {
            requests += bucket.requests
            errors += bucket.errors
            for (i, n) in bucket.latency.enumerated() { latency[i] += Int(n) }
        }
        guard requests > 0 else { return (0, 0, nil) }
        let rank = Int((Double(requests) * 0.99).rounded(.up))
        var seen = 0
        for (i, n) in latency.enumerated() {
            seen += n
            if seen >= rank { return (requests, errors, i < Self.edges.count ? Self.edges[i] : .infinity) }
        }
        return (requests, errors, nil)
    }
}
