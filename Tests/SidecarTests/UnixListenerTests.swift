import Dispatch
import EventHTTP
import Foundation
import HTTP1
import Logging
import Policy
import Testing

@testable import Sidecar

#if canImport(Glibc)
import Glibc
#endif

/// SPEC §12 at the sidecar: `--listen` on TCP and Unix sockets together, the admin listener on a
/// socket, socket files removed on exit, a taken socket refused, and Unix socket backends.
@Suite(.serialized) struct UnixListenerTests {
    @Test func tcpAndUnixListenersServeTheSameRoutesAndTheAdminAnswersOnASocket() throws {
        let upstream = FakeUpstream(.echo)
        defer { upstream.stop() }
        let config = try AdminAndLifecycleTests.oneVersion(port: upstream.port)
        defer { config.remove() }
        let directory = SocketDirectory()
        defer { directory.remove() }
        let data = directory.file("data.sock")
        let admin = directory.file("admin.sock")
        let sidecar = try RunningSidecar(config: config.path, workers: 2) { options in
            options.listen = [.tcp(host: "127.0.0.1", port: 0), .unix(path: data)]
            options.admin = .unix(path: admin)
            options.socketMode = 0o600
        }
        let stopped = Box(false)
        defer { if !stopped.value { sidecar.stop() } }
        #expect(sidecar.port > 0)
        #expect(sidecar.adminPort == 0)
        #expect(sidecar.sidecar.listenAddresses == [.tcp(host: "127.0.0.1", port: sidecar.port), .unix(path: data)])
        for path in [data, admin] {
            #expect(fileMode(path).map { $0 & 0o7777 } == 0o600, "mode of \(path)")
        }

        let overTCP = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
        #expect(overTCP.status == 200)
        // Several requests on the socket: both workers accept from it; each one is answered.
        for _ in 0..<6 {
            let overUnix = try #require(httpRequest(unixPath: data, "POST", "/v1/models/m:predict", body: "{}"))
            #expect(overUnix.status == 200)
            #expect(overUnix.header("x-switchyard-version") == "v1")
        }
        #expect(upstream.received.count == 7)
        #expect(upstream.received.last?.header("x-forwarded-for") == "127.0.0.1")

        // The admin API on its socket, reload included (a socket peer is local).
        #expect(httpRequest(unixPath: admin, "GET", "/healthz")?.status == 200)
        #expect(httpRequest(unixPath: admin, "GET", "/readyz")?.status == 200)
        let reload = try #require(httpRequest(unixPath: admin, "POST", "/reload"))
        #expect(reload.status == 200)
        #expect(reload.bodyText == #"{"generation":2}"#)
        // Neither data listener serves admin paths.
        #expect(httpRequest(unixPath: data, "GET", "/healthz")?.status == 404)

        #expect(sidecar.stop())
        stopped.value = true
        #expect(fileMode(data) == nil)
        #expect(fileMode(admin) == nil)
        #expect(Client(unixPath: data) == nil)
    }

    @Test func aSocketAnotherProcessListensOnIsAStartErrorAndStaysItsOwn() throws {
        let upstream = FakeUpstream(.json("{}"))
        defer { upstream.stop() }
        let config = try AdminAndLifecycleTests.oneVersion(port: upstream.port)
        defer { config.remove() }
        let directory = SocketDirectory()
        defer { directory.remove() }
        let data = directory.file("data.sock")
        let admin = directory.file("admin.sock")
        let first = try RunningSidecar(config: config.path, workers: 2) { options in
            options.listen = [.unix(path: data)]
            options.admin = .unix(path: admin)
        }
        defer { first.stop() }

        // The second start's own data socket (bound before its admin listener fails) goes with it.
        let own = directory.file("own.sock")
        for (listen, adminAddress, taken) in [
            (ListenAddress.unix(path: data), ListenAddress.tcp(host: "127.0.0.1", port: 0), data),
            (.unix(path: own), .unix(path: admin), admin),
        ] {
            var options = SidecarOptions()
            options.configDirectory = config.path
            options.listen = [listen]
            options.admin = adminAddress
            options.workers = 2
            options.configPollMilliseconds = 0
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            do {
                _ = try Sidecar(options: options, logger: logger)
                Issue.record("a second sidecar started on \(taken), where the first one listens")
            } catch let error as SidecarStartError {
                #expect(
                    "\(error)"
                        == "cannot listen on unix:\(taken): Address already in use (another process listens there)"
                )
            }
            // The failed start left the first one's file in place and removed its own.
            #expect(fileMode(taken) != nil)
            #expect(fileMode(own) == nil)
        }
        #expect(httpRequest(unixPath: data, "POST", "/v1/models/m:predict", body: "{}")?.status == 200)
        #expect(httpRequest(unixPath: admin, "GET", "/healthz")?.status == 200)
    }

    @Test func aFileThatIsNotASocketIsAStartErrorAndIsKept() throws {
        let upstream = FakeUpstream(.json("{}"))
        defer { upstream.stop() }
        let config = try AdminAndLifecycleTests.oneVersion(port: upstream.port)
        defer { config.remove() }
        let directory = SocketDirectory()
        defer { directory.remove() }
        let path = directory.file("app.sock")
        try "not a socket".write(toFile: path, atomically: false, encoding: .utf8)
        var options = SidecarOptions()
        options.configDirectory = config.path
        options.listen = [.tcp(host: "127.0.0.1", port: 0), .unix(path: path)]
        options.adminPort = 0
        options.configPollMilliseconds = 0
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        #expect {
            _ = try Sidecar(options: options, logger: logger)
        } throws: { error in
            "\(error)" == "cannot listen on unix:\(path): the path exists and is not a socket (it is left alone)"
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "not a socket")
    }

    @Test func theTCPShorthandsChangeTheFirstTCPListener() {
        var options = SidecarOptions()
        #expect(options.listen == [.tcp(host: "127.0.0.1", port: 8480)])
        options.listen = [.unix(path: "/run/a.sock")]
        options.listenPort = 0
        #expect(options.listen == [.tcp(host: "127.0.0.1", port: 0), .unix(path: "/run/a.sock")])
        options.listenHost = "::1"
        #expect(options.listen == [.tcp(host: "::1", port: 0), .unix(path: "/run/a.sock")])
        options.admin = .unix(path: "/run/admin.sock")
        options.adminPort = 9000
        #expect(options.admin == .tcp(host: "127.0.0.1", port: 9000))
    }

    /// `pool(for:)` gives a Unix socket backend its own pool, keyed by its path, that reaches the socket.
    @Test func aUnixSocketBackendGetsItsOwnPoolKeyedByPath() throws {
        let upstream = FakeUpstream(.json("{}"))
        defer { upstream.stop() }
        let config = try AdminAndLifecycleTests.oneVersion(port: upstream.port)
        defer { config.remove() }
        let directory = SocketDirectory()
        defer { directory.remove() }
        let snapshot = try ConfigSnapshot.load(directory: config.path).get()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let metrics = SidecarMetrics()
        let log = ComparisonLog(metrics: metrics, logger: logger)
        defer { log.close() }
        let worker = try Worker(
            index: 0,
            snapshot: snapshot,
            options: SidecarOptions(),
            logger: logger,
            metrics: metrics,
            comparisonLog: log,
            guardMonitor: GuardMonitor()
        )
        let finished = DispatchSemaphore(value: 0)
        Thread {
            worker.loop.run()
            finished.signal()
        }.start()
        defer {
            worker.loop.stop()
            finished.wait()
        }
        @Sendable func remote(_ socketPath: String?) -> RemoteBackend {
            RemoteBackend(
                host: "localhost",
                port: 0,
                path: nil,
                timeoutMilliseconds: 1000,
                maxConnections: 4,
                socketPath: socketPath
            )
        }
        let a = directory.file("a.sock")
        let b = directory.file("b.sock")
        #expect(Worker.poolKey(remote(a)) != Worker.poolKey(remote(b)))
        #expect(Worker.poolKey(remote(a)) != Worker.poolKey(remote(nil)))
        #expect(Worker.poolKey(remote(a)) == Worker.poolKey(remote(a)))

        let outcome = Box<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        let server = Box<HTTPServer?>(nil)
        worker.loop.execute {
            do {
                server.value = try HTTPServer(loop: worker.loop, address: .unix(path: a)) { request, writer in
                    let host = request.head.headers.first(name: "host") ?? "-"
                    writer.respond(status: 200, body: Array("\(host) \(request.head.target)".utf8))
                }
            } catch {
                outcome.value = "\(error)"
                done.signal()
                return
            }
            let pool = worker.pool(for: remote(a))
            let same = worker.pool(for: remote(a))
            let other = worker.pool(for: remote(b))
            guard pool === same, pool !== other, pool.socketPath == a, other.socketPath == b else {
                outcome.value = "pools: \(pool.socketPath ?? "nil") \(other.socketPath ?? "nil") same=\(pool === same)"
                done.signal()
                return
            }
            pool.send(UpstreamRequest(method: "GET", target: "/v1/models/m:predict"), timeoutMilliseconds: 1000) {
                result in
                switch result {
                case .success(let response): outcome.value = String(decoding: response.body.bytes, as: UTF8.self)
                case .failure(let error): outcome.value = "\(error)"
                }
                server.value = nil
                done.signal()
            }
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(outcome.value == "localhost /v1/models/m:predict")
    }
}

/// Shares a value with a loop thread; the test orders accesses with semaphores.
final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

@Suite struct IPv6ListenerTests {
    /// `--listen '[::1]:PORT'` binds the IPv6 loopback and serves there.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/proc/net/if_inet6")))
    func aBracketedIPv6AddressServes() throws {
        let config = try TempConfig(
            routes: "routes:\n  - { name: r, match: { path: /p }, model: m, protocol: tfserving }\n",
            policies: ["m": "model: m\nversions:\n  v1: { embedded: table, file: t.csv, key: \"header:k\" }\n"],
            extraFiles: ["policies/t.csv": "k,y\na,1\n"]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path) { options in
            options.listen = [try! #require(ListenAddress(parsing: "[::1]:0"))]
        }
        defer { sidecar.stop() }
        let bound = try #require(sidecar.sidecar.listenAddresses.first)
        guard case .tcp(let host, let port) = bound else {
            Issue.record("expected a TCP listener, got \(bound)")
            return
        }
        #expect(host == "::1")
        #expect(bound.description == "[::1]:\(port)")

        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = in_port_t(UInt16(port).bigEndian)
        address.sin6_addr = in6addr_loopback
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
        try #require(connected == 0)
        _ = sendAll(
            fd,
            Array(
                "POST /p HTTP/1.1\r\nHost: x\r\nk: a\r\nConnection: close\r\nContent-Length: 19\r\n\r\n{\"instances\":[[1]]}"
                    .utf8
            )
        )
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        let text = String(decoding: received, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200"))
        #expect(text.contains("x-switchyard-version: v1"))
    }
}
