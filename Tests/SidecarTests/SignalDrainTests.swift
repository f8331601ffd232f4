import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SPEC §7 through the real binary: SIGTERM with slow requests in flight lets them all finish,
/// then exits 0.
@Suite(.serialized) struct SignalDrainTests {
    static var binary: String {
        let products = Bundle.main.executableURL?.deletingLastPathComponent().path ?? ""
        return products + "/switchyard"
    }

    static func freePort() -> Int {
        let (fd, port) = Net.listenSocket()
        close(fd)
        return port
    }

    @Test func sigtermLetsSlowRequestsFinish() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "build the switchyard product first")
        let upstream = FakeUpstream(.slow(milliseconds: 800, body: #"{"predictions":[1]}"#))
        defer { upstream.stop() }
        let config = try ProxyTests.remoteConfig(versions: [
            ("v1", #"{ url: "http://127.0.0.1:\#(upstream.port)", timeout_ms: 5000 }"#)
        ])
        defer { config.remove() }
        let port = Self.freePort()
        let admin = Self.freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = [
            "serve", "--config", config.path, "--listen", "127.0.0.1:\(port)", "--admin", "127.0.0.1:\(admin)",
            "--workers", "2", "--log-level", "warning",
        ]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        for _ in 0..<200 where Client(port: admin) == nil { usleep(25_000) }

        let results = ResultBox()
        let group = DispatchGroup()
        for _ in 0..<6 {
            group.enter()
            Thread {
                results.add(httpRequest(port: port, "POST", "/v1/models/m:predict", body: "{}")?.status ?? -1)
                group.leave()
            }.start()
        }
        for _ in 0..<100 where upstream.received.count < 6 { usleep(10_000) }
        #expect(upstream.received.count == 6)
        kill(process.processIdentifier, SIGTERM)
        #expect(group.wait(timeout: .now() + 10) == .success)
        #expect(results.values == [200, 200, 200, 200, 200, 200])
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        #expect(!process.isRunning)
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
        #expect(Client(port: port) == nil)
    }
}
