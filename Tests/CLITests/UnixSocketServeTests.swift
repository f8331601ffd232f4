import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `switchyard serve` on Unix sockets (SPEC §12), run as a user would.
@Suite struct UnixSocketServeTests {
    /// A fresh short directory under /tmp (sun_path holds 107 bytes).
    static func socketDirectory() -> String { SocketDirectory().path }

    /// A listening Unix socket at `path` (this process plays the one that holds it).
    static func listen(unixPath path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        precondition(bound == 0 && Glibc.listen(fd, 16) == 0, "could not listen on \(path)")
        return fd
    }

    /// One request with `Connection: close` over the socket; (status line, whole response text).
    static func request(unixPath: String, _ method: String, _ target: String, body: String = "") -> (Int, String)? {
        let fd = Net.connect(unixPath: unixPath)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let text =
            "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        _ = Array(text.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
        }
        let response = String(decoding: received, as: UTF8.self)
        let parts = response.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        return (status, response)
    }

    static func mode(_ path: String) -> mode_t? {
        fileMode(path).map { $0 & 0o7777 }
    }

    /// Starts `serve` with `arguments` in the repository root (its default config).
    static func start(_ arguments: [String]) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLI.binary)
        process.arguments = ["serve"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: CLI.root)
        let err = Pipe()
        process.standardError = err
        process.standardOutput = Pipe()
        try process.run()
        return (process, err)
    }

    /// Waits (at most 15 s) for the process to exit; false if it is still running.
    static func waitForExit(_ process: Process) -> Bool {
        eventually(within: 15) { !process.isRunning }
    }

    @Test func servesOnTCPAndAUnixSocketWithTheAdminOnASocketAndRemovesTheFilesOnSIGTERM() throws {
        let directory = Self.socketDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let data = directory + "/data.sock"
        let admin = directory + "/admin.sock"
        let serve = try ServeProcess([
            "--listen", "127.0.0.1:0", "--listen", "unix:\(data)", "--admin", "unix:\(admin)",
            "--socket-mode", "0600", "--workers", "2",
        ])
        defer { serve.kill() }
        let process = serve.process
        let port = serve.port
        #expect(port > 0, "\(serve.stderr)")

        let health = polled { Self.request(unixPath: admin, "GET", "/healthz") }
        #expect(health?.0 == 200)
        #expect(Self.mode(data) == 0o600)
        #expect(Self.mode(admin) == 0o600)

        let body = #"{"instances": [[12, 73.36, 2, 1]]}"#
        let overUnix = try #require(
            Self.request(unixPath: data, "POST", "/v1/models/churn/versions/v1:predict", body: body)
        )
        #expect(overUnix.0 == 200)
        #expect(overUnix.1.lowercased().contains("x-switchyard-version: v1"))
        let overTCP = try #require(
            DefaultConfigServeTests.post(port: port, path: "/v1/models/churn/versions/v1:predict", body: body)
        )
        #expect(overTCP.0 == 200)

        kill(process.processIdentifier, SIGTERM)
        #expect(Self.waitForExit(process))
        #expect(process.terminationStatus == 0)
        #expect(Self.mode(data) == nil)
        #expect(Self.mode(admin) == nil)
    }

    @Test func aSocketAnotherProcessListensOnIsAStartErrorExit1() throws {
        let directory = Self.socketDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/taken.sock"
        let holder = Self.listen(unixPath: path)
        defer { close(holder) }

        let (process, err) = try Self.start(["--listen", "unix:\(path)", "--admin", "127.0.0.1:0", "--workers", "1"])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        #expect(Self.waitForExit(process))
        #expect(process.terminationStatus == 1)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(stderr == "cannot listen on unix:\(path): Address already in use (another process listens there)\n")
        #expect(Self.mode(path) != nil, "the holder's socket file is left in place")
    }

    @Test(arguments: ["0999", "rw-rw----", "", "07777", "0x1b0"])
    func aBadSocketModeIsAUsageError(mode: String) throws {
        let r = try CLI.run(["serve", "--socket-mode", mode])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--socket-mode expects octal permission bits such as 0660, got '\(mode)'"))
    }

    @Test func aBadListenAddressNamesEveryForm() throws {
        let r = try CLI.run(["serve", "--listen", "127.0.0.1:8480", "--listen", "unix:"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--listen expects HOST:PORT, [IPV6]:PORT or unix:PATH, got 'unix:'"))
    }
}
