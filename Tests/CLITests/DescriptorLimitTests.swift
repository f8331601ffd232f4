import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 10: out of file descriptors, the sidecar must not spin. A child `switchyard serve` runs
/// with `ulimit -n 64` and is sent more idle connections than it has descriptors.
@Suite struct DescriptorLimitTests {
    /// A `switchyard serve` child started through `/bin/sh -c 'ulimit ...; exec switchyard ...'`
    /// (so its pid is the sidecar's) on kernel-chosen ports.
    final class Child {
        let serve: ServeProcess
        var process: Process { serve.process }
        var port: Int { serve.port }
        var admin: Int { serve.adminPort }

        init(ulimit: String, extraArguments: [String] = []) throws {
            serve = try ServeProcess(["--workers", "1"] + extraArguments, ulimit: ulimit)
        }

        var log: String { serve.stderr }

        /// Seconds of CPU (user + system) the child has used, from /proc/PID/stat.
        var cpuSeconds: Double {
            guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return .nan }
            // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return .nan }
            return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
        }

        /// CPU seconds used per wall-clock second over `seconds`.
        func cpuRate(over seconds: Double) -> Double {
            let before = cpuSeconds
            let start = Date()
            // The scenario: a measurement window, not a wait for an event.
            Thread.sleep(forTimeInterval: seconds)
            return (cpuSeconds - before) / Date().timeIntervalSince(start)
        }

        func stop() -> Int32 { serve.stop() ?? -1 }
    }

    /// A connected TCP socket that sends nothing (an idle keep-alive client); -1 on failure.
    static func idleConnection(port: Int) -> Int32 { Net.connect(port: port) }

    /// One GET with `Connection: close`: the status and body, or nil when no whole answer came
    /// within `timeoutSeconds`.
    static func get(port: Int, path: String, timeoutSeconds: Int = 3) -> (Int, String)? {
        let fd = idleConnection(port: port)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n"),
            let status = Int(text.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return (status, String(text[split.upperBound...]))
    }

    /// `switchyard_accept_errors_total{reason="<reason>"}` from the admin port's /metrics.
    static func acceptErrors(admin: Int, reason: String) -> Double? {
        guard let (status, text) = get(port: admin, path: "/metrics"), status == 200 else { return nil }
        let prefix = "switchyard_accept_errors_total{reason=\"\(reason)\"} "
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
        return Double(line.dropFirst(prefix.count))
    }

    @Test func outOfDescriptorsItPausesAcceptingTheAdminPortAnswersAndARequestIsServedOnceOneIsFree() throws {
        let child = try Child(
            ulimit: "-n 64",
            extraArguments: ["--idle-timeout-ms", "60000", "--config-poll-ms", "100"]
        )
        var clients: [Int32] = []
        defer {
            for fd in clients { close(fd) }
            _ = child.stop()
        }
        #expect(Self.get(port: child.admin, path: "/healthz")?.0 == 200, "\(child.log)")

        // The data port: 300 idle connections against 64 descriptors. The sidecar takes them up
        // to its reserve; the rest wait in the backlog and get in as the oldest are closed.
        for _ in 0..<300 {
            let fd = Self.idleConnection(port: child.port)
            if fd >= 0 { clients.append(fd) }
        }
        #expect(clients.count == 300)
        // The episode has begun once the sidecar says it paused accepting.
        #expect(eventually { child.log.contains("reason=reserve") }, "\(child.log)")
        let dataEpisodeCPU = child.cpuRate(over: 1)
        print("CPU while the data port is out of descriptors: \(dataEpisodeCPU) s/s")
        // The bug spun at ~1 s of CPU per second per worker.
        #expect(dataEpisodeCPU < 0.3)
        #expect(Self.get(port: child.admin, path: "/healthz")?.0 == 200)
        #expect((Self.acceptErrors(admin: child.admin, reason: "reserve") ?? 0) > 0)

        // The admin port, which keeps no reserve: 40 idle connections take the rest, and its
        // accept fails with EMFILE. It pauses, closes its oldest idle connection, and answers.
        for _ in 0..<40 {
            let fd = Self.idleConnection(port: child.admin)
            if fd >= 0 { clients.append(fd) }
        }
        #expect(eventually { child.log.contains("reason=emfile") }, "\(child.log)")
        let adminEpisodeCPU = child.cpuRate(over: 1)
        print("CPU while the admin port is out of descriptors: \(adminEpisodeCPU) s/s")
        #expect(adminEpisodeCPU < 0.3)
        var health: Int?
        for _ in 0..<5 where health != 200 { health = Self.get(port: child.admin, path: "/healthz")?.0 }
        #expect(health == 200)
        #expect((Self.acceptErrors(admin: child.admin, reason: "emfile") ?? 0) > 0)

        // Free some descriptors: a prediction is answered within a few seconds.
        for fd in clients.prefix(20) { close(fd) }
        clients.removeFirst(20)
        var answer: Int?
        let deadline = Date().addingTimeInterval(10)
        while answer != 200 && Date() < deadline {
            answer =
                DefaultConfigServeTests.post(
                    port: child.port,
                    path: "/v1/models/churn/versions/v1:predict",
                    body: #"{"instances": [[12, 73.36, 2, 1]]}"#
                )?.0
        }
        #expect(answer == 200)

        let log = child.log
        print(log)
        #expect(log.contains("the open-file limit is already at the hard limit, 64"))
        #expect(log.contains("out of file descriptors: accepting paused"))
        #expect(log.contains("reason=reserve"))
        #expect(log.contains("reason=emfile"))
        #expect(log.contains("open_file_limit=64"))
        // The config poller (every 100 ms here) retries a poll it cannot read; it never turns
        // one into a failed reload.
        #expect(!log.contains("reload failed"))
    }

    @Test func theSoftOpenFileLimitIsRaisedToTheHardOneAtStart() throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let hard = Int(limit.rlim_max)
        try #require(hard > 100 && limit.rlim_max != rlim_t.max, "the hard limit (\(hard)) leaves nothing to raise")
        // Started means "serving" was logged; the limit is logged before it.
        let child = try Child(ulimit: "-S -n 100")
        let log = child.log
        #expect(child.stop() == 0)
        #expect(log.contains("raised the open-file limit from 100 to \(hard)"), "\(log)")
    }
}
