import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SPEC §7 through the real binary: SIGTERM with requests in flight lets them all finish, then
/// exits 0.
@Suite struct SignalDrainTests {
    @Test func sigtermLetsRequestsInFlightFinish() throws {
        // Held by the upstream until the drain has begun: in flight across the SIGTERM for sure.
        let upstream = FakeUpstream(.gated(#"{"predictions":[1]}"#))
        defer { upstream.stop() }
        let config = try ProxyTests.remoteConfig(versions: [
            ("v1", #"{ url: "http://127.0.0.1:\#(upstream.port)", timeout_ms: 10000 }"#)
        ])
        defer { config.remove() }
        let serve = try ServeProcess(["--config", config.path, "--workers", "2"])
        defer { serve.kill() }
        let port = serve.port

        let results = ResultBox()
        let group = DispatchGroup()
        for _ in 0..<6 {
            group.enter()
            Thread {
                results.add(httpRequest(port: port, "POST", "/v1/models/m:predict", body: "{}")?.status ?? -1)
                group.leave()
            }.start()
        }
        #expect(eventually { upstream.received.count == 6 })
        kill(serve.pid, SIGTERM)
        #expect(eventually { serve.stderr.contains("draining") }, "\(serve.stderr)")
        upstream.release()
        #expect(group.wait(timeout: .now() + 10) == .success)
        #expect(results.values == [200, 200, 200, 200, 200, 200])
        #expect(serve.waitForExit())
        #expect(serve.process.terminationReason == .exit && serve.process.terminationStatus == 0)
        #expect(Client(port: port) == nil)
    }
}
