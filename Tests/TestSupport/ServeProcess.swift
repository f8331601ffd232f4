import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A `switchyard serve` child process, as a user runs it. Unless the arguments name their own,
/// it listens on `--listen 127.0.0.1:0 --admin 127.0.0.1:0` and the ports the kernel gave are
/// read back from the startup log line (`serving ... admin=HOST:PORT listen=HOST:PORT`), so no
/// port is picked in advance for another process to take first. Standard output and standard
/// error are collected as they arrive.
public final class ServeProcess: @unchecked Sendable {
    /// The repository root (this file is Tests/TestSupport/ServeProcess.swift).
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The built `switchyard` executable: beside the test bundle, else in .build/debug.
    public static var binary: String {
        let products =
            Bundle.main.executableURL?.deletingLastPathComponent().path
            ?? CommandLine.arguments[0]
        for candidate in [products + "/switchyard", root + "/.build/debug/switchyard"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return products + "/switchyard"
    }

    public let process = Process()
    /// The first TCP data port, 0 when every data listener is a Unix socket.
    public private(set) var port = 0
    /// The admin port, 0 when the admin listener is a Unix socket.
    public private(set) var adminPort = 0
    private let lock = NSLock()
    private var output = Data()
    private var errors = Data()
    private var readers: [Thread] = []
    private let readersDone = DispatchGroup()

    public var pid: Int32 { process.processIdentifier }
    public var stdout: String { lock.withLock { String(decoding: output, as: UTF8.self) } }
    public var stderr: String { lock.withLock { String(decoding: errors, as: UTF8.self) } }

    /// Starts `switchyard serve` + `arguments` in `directory`. `ulimit` (such as `-n 64`) runs it
    /// through `/bin/sh -c 'ulimit ...; exec ...'`, so the pid is still the sidecar's. With
    /// `waitUntilServing`, returns once the "serving" line is logged (at most 30 s), and throws
    /// when the process ends or never gets there; the log level must let info lines through.
    public init(
        _ arguments: [String],
        directory: String = ServeProcess.root,
        environment: [String: String]? = nil,
        ulimit: String? = nil,
        waitUntilServing: Bool = true
    ) throws {
        var serve = ["serve"] + arguments
        if !arguments.contains("--listen") { serve += ["--listen", "127.0.0.1:0"] }
        if !arguments.contains("--admin") { serve += ["--admin", "127.0.0.1:0"] }
        if let ulimit {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit \(ulimit) && exec \"$@\"", "sh", Self.binary] + serve
        } else {
            process.executableURL = URL(fileURLWithPath: Self.binary)
            process.arguments = serve
        }
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        collect(out.fileHandleForReading, isError: false)
        collect(err.fileHandleForReading, isError: true)
        guard waitUntilServing else { return }
        let line = polled(within: 30) { () -> String? in
            let text = stderr
            if let line = text.split(separator: "\n").first(where: { $0.contains("serving") }) { return String(line) }
            if !process.isRunning { return "" }
            return nil
        }
        guard let line, !line.isEmpty else {
            kill()
            throw TestFailure("switchyard serve did not start serving: \(stderr)")
        }
        port = Self.port(after: "listen", in: line) ?? 0
        adminPort = Self.port(after: "admin", in: line) ?? 0
    }

    /// The port of the first `HOST:PORT` after the metadata key `key` (text or JSON log format).
    static func port(after key: String, in line: String) -> Int? {
        let pattern = "\"?\(key)\"?[=:]\\s*\"?[^\"\\s]*?(?:[0-9.]+|\\[[0-9a-fA-F:]+\\]):([0-9]+)"
        guard let regex = try? NSRegularExpression(pattern: pattern),
            let match = regex.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)),
            let range = Range(match.range(at: 1), in: line)
        else { return nil }
        return Int(line[range])
    }

    private func collect(_ handle: FileHandle, isError: Bool) {
        readersDone.enter()
        let thread = Thread { [self] in
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                lock.withLock {
                    if isError { errors.append(data) } else { output.append(data) }
                }
            }
            readersDone.leave()
        }
        thread.start()
    }

    /// Waits (at most `seconds`) for the process to exit; true when it has.
    @discardableResult
    public func waitForExit(within seconds: Double = 15) -> Bool {
        eventually(within: seconds) { !process.isRunning }
    }

    /// Sends SIGTERM and waits (at most 15 s) for the exit and the last of its output; returns
    /// the exit status, or nil when it did not exit (it is then killed).
    @discardableResult
    public func stop() -> Int32? {
        guard process.isRunning else { return finish() }
        Glibc.kill(pid, SIGTERM)
        guard waitForExit() else {
            kill()
            return nil
        }
        return finish()
    }

    /// SIGKILL, for cleanup after a failure (does nothing once it has exited).
    public func kill() {
        if process.isRunning { Glibc.kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    private func finish() -> Int32 {
        process.waitUntilExit()
        _ = readersDone.wait(timeout: .now() + 5)
        return process.terminationStatus
    }
}
