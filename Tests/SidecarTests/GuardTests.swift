import Foundation
import Testing

/// A guard trips on a failing canary, moves its share to the fallback, and reopens after its
/// cool-down (SPEC §3 `guard:`; reset rules in Guards.swift and the README).
@Suite(.serialized) struct GuardTests {
    @Test func aFailingCanaryTripsItsGuardAndReopensAfterTheCoolDown() throws {
        let stable = FakeUpstream(.json(#"{"predictions":[1]}"#))
        let canary = FakeUpstream(.status(500, #"{"error":"boom"}"#))
        defer {
            stable.stop()
            canary.stop()
        }
        let config = try TempConfig(
            routes: """
                routes:
                  - { name: pinned, match: { template: "/m/{version}" }, model: m }
                  - { name: main, match: { path: /m }, model: m }
                """,
            policies: [
                "m": """
                model: m
                versions:
                  v1: { url: "http://127.0.0.1:\(stable.port)" }
                  v2: { url: "http://127.0.0.1:\(canary.port)" }
                labels: { stable: v1, canary: v2 }
                split: { stable: 50, canary: 50 }
                fallback: stable
                guard: { version: canary, max_error_ratio: 0.2, min_requests: 5, window_s: 2 }
                """
            ]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let client = try #require(Client(port: sidecar.port))

        // Before the guard trips: the canary's requests fail and the fallback rescues them.
        var rescued = 0
        for _ in 0..<40 {
            let r = try #require(client.request("POST", "/m", body: "{}"))
            #expect(r.status == 200)
            if r.header("x-switchyard-fallback") == "v2" { rescued += 1 }
        }
        #expect(rescued > 5)

        // Within about a second the guard trips (polled with a generous deadline).
        func guards() -> [[String: Any]] {
            let body = httpRequest(port: sidecar.adminPort, "GET", "/guards")?.body ?? []
            return (try? JSONSerialization.jsonObject(with: Data(body)) as? [[String: Any]]) ?? []
        }
        let trippedGuard = polled { guards().first.flatMap { $0["tripped"] as? Bool == true ? $0 : nil } }
        let tripped = trippedGuard != nil
        if let trippedGuard {
            #expect(trippedGuard["model"] as? String == "m")
            #expect(trippedGuard["version"] as? String == "v2")
            #expect((trippedGuard["reason"] as? String)?.contains("error ratio") == true)
            #expect(trippedGuard["since"] as? String != nil)
        }
        #expect(tripped)
        let metrics = ShadowTests.metrics(sidecar)
        #expect(ShadowTests.metric(metrics, #"switchyard_guard_tripped{model="m",version="v2"}"#) == 1)
        #expect(ShadowTests.metric(metrics, #"switchyard_split_weight_ratio{model="m",version="v2"}"#) == 0)
        #expect(ShadowTests.metric(metrics, #"switchyard_split_weight_ratio{model="m",version="v1"}"#) == 1)
        #expect(
            (ShadowTests.metric(metrics, #"switchyard_fallbacks_total{model="m",from_version="v2",to_version="v1"}"#)
                ?? 0) >= 5
        )

        // While tripped: no request reaches the canary; pinning it is 503 guard_open.
        let canaryBefore = canary.received.count
        for _ in 0..<20 {
            let r = try #require(client.request("POST", "/m", body: "{}"))
            #expect(r.header("x-switchyard-version") == "v1")
            #expect(r.header("x-switchyard-fallback") == nil)
        }
        #expect(canary.received.count == canaryBefore)
        let pinned = try #require(client.request("POST", "/m/canary", body: "{}"))
        #expect(pinned.status == 503)
        #expect(pinned.json?["error"] as? String == "guard_open")

        // After the cool-down (window_s = 2 s) the guard reopens and the canary gets traffic again.
        let reopened = eventually(within: 15) { guards().first?["tripped"] as? Bool == false }
        #expect(reopened)
        canary.behavior = .json(#"{"predictions":[2]}"#)
        var sawCanary = false
        for _ in 0..<40 where !sawCanary {
            sawCanary = client.request("POST", "/m", body: "{}")?.header("x-switchyard-version") == "v2"
        }
        #expect(sawCanary)
    }
}
