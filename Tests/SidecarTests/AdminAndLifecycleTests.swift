import Foundation
import Logging
import Sidecar
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct AdminAndLifecycleTests {
    static func oneVersion(port: Int) throws -> TempConfig {
        try ProxyTests.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(port)" }"#)])
    }

    @Test func healthReadinessAndConfig() throws {
        let upstream = FakeUpstream(.json("{}"))
        defer { upstream.stop() }
        let config = try Self.oneVersion(port: upstream.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }

        let health = try #require(httpRequest(port: sidecar.adminPort, "GET", "/healthz"))
        #expect(health.status == 200)
        let ready = try #require(httpRequest(port: sidecar.adminPort, "GET", "/readyz"))
        #expect(ready.status == 200)
        let document = try #require(httpRequest(port: sidecar.adminPort, "GET", "/config"))
        #expect(document.status == 200)
        let json = try #require(document.json)
        #expect(json["generation"] as? Int == 1)
        let files = try #require(json["files"] as? [[String: Any]])
        #expect(files.count == 2)
        #expect(files.allSatisfy { ($0["checksum"] as? String)?.count == 16 })
        let routes = try #require(json["routes"] as? [[String: Any]])
        #expect(routes.map { $0["name"] as? String } == ["pinned", "labelled", "by-header", "main"])

        // The data port never serves admin paths.
        let onData = try #require(httpRequest(port: sidecar.port, "GET", "/healthz"))
        #expect(onData.status == 404)
        #expect(onData.json?["error"] as? String == "no_route")
        let unknown = try #require(httpRequest(port: sidecar.adminPort, "GET", "/nothing"))
        #expect(unknown.status == 404)
    }

    /// Process series (Prometheus client conventions) and build info, read when scraped.
    @Test func metricsCarryProcessFiguresAndBuildInfo() throws {
        let upstream = FakeUpstream(.json("{}"))
        defer { upstream.stop() }
        let config = try Self.oneVersion(port: upstream.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }

        let response = try #require(httpRequest(port: sidecar.adminPort, "GET", "/metrics"))
        #expect(response.status == 200)
        let text = response.bodyText
        let cpu = try #require(ShadowTests.metric(text, "process_cpu_seconds_total"))
        #expect(cpu >= 0)
        #expect(text.contains("# TYPE process_cpu_seconds_total counter"))
        let resident = try #require(ShadowTests.metric(text, "process_resident_memory_bytes"))
        #expect(resident > 1024 * 1024)
        let open = try #require(ShadowTests.metric(text, "process_open_fds"))
        #expect(open > 3)
        if let max = ShadowTests.metric(text, "process_max_fds") {
            #expect(max >= open)
        }
        let start = try #require(ShadowTests.metric(text, "process_start_time_seconds"))
        let now = Date().timeIntervalSince1970
        #expect(start <= now + 1)  // btime is whole seconds
        #expect(start > now - 3600)

        let buildInfo =
            #"switchyard_build_info{version="\#(SwitchyardVersion.current)",libevent="\#(SwitchyardVersion.libevent)","#
            + #"libyaml="\#(SwitchyardVersion.libyaml)"}"#
        #expect(ShadowTests.metric(text, buildInfo) == 1)
    }

    /// Workers share their port with SO_REUSEPORT; a second sidecar must not silently join it.
    @Test func aSecondSidecarOnATakenPortFailsInsteadOfSharingIt() throws {
        let upstream = FakeUpstream(.json("{}"))
        defer { upstream.stop() }
        let config = try Self.oneVersion(port: upstream.port)
        defer { config.remove() }
        let first = try RunningSidecar(config: config.path, workers: 2)
        defer { first.stop() }

        for (data, admin) in [(first.port, 0), (0, first.adminPort)] {
            var options = SidecarOptions()
            options.configDirectory = config.path
            options.listenPort = data
            options.adminPort = admin
            options.workers = 2
            options.configPollMilliseconds = 0
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            do {
                _ = try Sidecar(options: options, logger: logger)
                Issue.record("a second sidecar started on a port the first one listens on")
            } catch let error as SidecarStartError {
                let taken = data != 0 ? data : admin
                #expect("\(error)".contains("cannot listen on 127.0.0.1:\(taken)"))
                #expect("\(error)".contains("in use"))
            }
        }
        // The first one still answers on its port.
        let health = try #require(httpRequest(port: first.adminPort, "GET", "/healthz"))
        #expect(health.status == 200)
    }

    @Test func reloadSwapsTheConfigAndKeepsTheOldOneWhenInvalid() throws {
        let one = FakeUpstream(.json(#"{"from":1}"#))
        let two = FakeUpstream(.json(#"{"from":2}"#))
        defer {
            one.stop()
            two.stop()
        }
        let config = try Self.oneVersion(port: one.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, workers: 2)
        defer { sidecar.stop() }

        let before = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
        #expect(before.bodyText == #"{"from":1}"#)

        try config.write("policies/m.yaml", "model: m\nversions:\n  v2: { url: \"http://127.0.0.1:\(two.port)\" }\n")
        let reload = try #require(httpRequest(port: sidecar.adminPort, "POST", "/reload"))
        #expect(reload.status == 200)
        #expect(reload.bodyText == #"{"generation":2}"#)
        // Workers install the new snapshot through their loops: poll until one answers from it.
        let after = polled {
            httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}").flatMap {
                $0.bodyText == #"{"from":2}"# ? $0 : nil
            }
        }
        #expect(after?.bodyText == #"{"from":2}"#)
        #expect(after?.header("x-switchyard-version") == "v2")

        try config.write("policies/m.yaml", "model: m\nversions:\n  v3: { url: \"ftp://nowhere\" }\n")
        let bad = try #require(httpRequest(port: sidecar.adminPort, "POST", "/reload"))
        #expect(bad.status == 422)
        #expect(bad.json?["error"] as? String == "invalid_config")
        let diagnostics = try #require(bad.json?["diagnostics"] as? [String])
        #expect(diagnostics.contains { $0.contains("policies/m.yaml:3:") })
        let still = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
        #expect(still.bodyText == #"{"from":2}"#)
        #expect(sidecar.sidecar.snapshot.generation == 2)
    }

    @Test func aFileChangeIsPickedUpByPolling() throws {
        let one = FakeUpstream(.json(#"{"from":1}"#))
        let two = FakeUpstream(.json(#"{"from":2}"#))
        defer {
            one.stop()
            two.stop()
        }
        let config = try Self.oneVersion(port: one.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { $0.configPollMilliseconds = 50 }
        defer { sidecar.stop() }
        try config.write("policies/m.yaml", "model: m\nversions:\n  v2: { url: \"http://127.0.0.1:\(two.port)\" }\n")
        let after = polled {
            httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}").flatMap {
                $0.bodyText == #"{"from":2}"# ? $0 : nil
            }
        }
        #expect(after?.bodyText == #"{"from":2}"#)
    }

    @Test func drainLetsRequestsInFlightFinishAndReadyzAnswers503Meanwhile() throws {
        // Held by the upstream until the test has seen the drain: in flight throughout it.
        let upstream = FakeUpstream(.gated(#"{"slow":true}"#))
        defer { upstream.stop() }
        let config = try ProxyTests.remoteConfig(versions: [
            ("v1", #"{ url: "http://127.0.0.1:\#(upstream.port)", timeout_ms: 10000 }"#)
        ])
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, workers: 2)
        defer { upstream.release() }

        let results = ResultBox()
        let closing = ResultBox()
        let group = DispatchGroup()
        for _ in 0..<4 {
            group.enter()
            Thread {
                let r = httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}")
                results.add(r?.status ?? -1)
                // Answered during the drain: the client is told not to reuse the connection.
                closing.add(r?.header("connection")?.lowercased() == "close" ? 1 : 0)
                group.leave()
            }.start()
        }
        // Every request reached the upstream, then stop.
        #expect(eventually { upstream.received.count == 4 })
        #expect(sidecar.sidecar.isReady)
        #expect(httpRequest(port: sidecar.adminPort, "GET", "/readyz")?.status == 200)
        sidecar.sidecar.shutdown()
        #expect(eventually { !sidecar.sidecar.isReady })
        // The admin listener stays up while requests drain, and says the sidecar is not ready.
        let readyz = httpRequest(port: sidecar.adminPort, "GET", "/readyz")
        #expect(readyz?.status == 503)
        upstream.release()
        #expect(group.wait(timeout: .now() + 10) == .success)
        #expect(results.values == [200, 200, 200, 200])
        #expect(closing.values == [1, 1, 1, 1])
        #expect(sidecar.stop())
        // The listener is closed: new connections are refused.
        #expect(Client(port: sidecar.port) == nil)
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _values: [Int] = []
    func add(_ v: Int) { lock.withLock { _values.append(v) } }
    var values: [Int] { lock.withLock { _values } }
}
