import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `switchyard serve` under a file size limit (`ulimit -f`, RLIMIT_FSIZE): the comparison log
/// stops at the limit with only whole records in it, counts every record it loses, survives
/// SIGXFSZ, and resumes when the file has room again. The limit is per process, so the sidecar
/// runs as a child started through `/bin/sh -c 'ulimit -f N; exec switchyard serve ...'`.
@Suite struct ComparisonLogFileSizeLimitTests {
    /// dash counts `ulimit -f` in 512-byte blocks: 32 blocks are 16 KiB.
    static let limitBlocks = 32
    static let limitBytes = limitBlocks * 512

    /// A policy whose live version and 100 % shadow are both embedded: one record per request.
    static func config(log: String) throws -> String {
        let models = CLI.root + "/examples/models"
        return try CLI.tempDirectory(files: [
            "routes/r.yaml": "routes:\n  - { name: r, match: { path: /p }, model: m, protocol: tfserving }\n",
            "policies/m.yaml": """
            model: m
            versions:
              v1: { embedded: linear, file: \(models)/churn-linear-v1.json }
              v2: { embedded: linear, file: \(models)/churn-linear-v2.json }
            split: { v1: 100 }
            shadow:
              - { version: v2, percent: 100 }
            compare:
              output: /predictions
              tolerance: 0.1
              log: \(log)
            """,
        ])
    }

    /// The admin `/metrics` text (HTTP/1.0, read to EOF), or "" when it cannot be read.
    static func metrics(admin: Int) -> String {
        let received = DefaultConfigServeTests.roundTrip(
            port: admin,
            "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        )
        return String(decoding: received ?? [], as: UTF8.self)
    }

    /// A counter's value summed over the series carrying every `labels` pair.
    static func value(_ text: String, _ name: String, _ labels: [String: String]) -> Int {
        var total = 0.0
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
            let matches = labels.allSatisfy { line.contains("\($0.key)=\"\($0.value)\"") }
            if matches, let value = line.split(separator: " ").last.flatMap({ Double($0) }) { total += value }
        }
        return Int(total)
    }

    static func dropped(admin: Int) -> Int {
        value(metrics(admin: admin), "switchyard_comparison_records_dropped_total", ["reason": "write_failed"])
    }

    /// The log's lines; with `checked`, each must be a JSON object and the file must end with a
    /// whole record (a torn line fails the test with its text). Unchecked while polling: a write
    /// cut short by the limit leaves part of a record until the sidecar trims it back, and a
    /// reader can catch that moment; only the settled file must hold whole records.
    static func parsedLines(_ path: String, checked: Bool = true) -> [[String: Any]] {
        let data = FileManager.default.contents(atPath: path) ?? Data()
        if checked && !data.isEmpty { #expect(data.last == 0x0A, "the log ends inside a record") }
        return data.split(separator: 0x0A, omittingEmptySubsequences: false).dropLast().compactMap { line in
            let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
            if checked { #expect(object != nil, "an unparseable line: \(String(decoding: line, as: UTF8.self))") }
            return object
        }
    }

    /// A signal mask line (`SigIgn`, `SigBlk`) of process `pid`, from /proc.
    static func signalMask(_ field: String, pid: Int32) -> UInt64? {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return UInt64(line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces), radix: 16)
        }
        return nil
    }

    /// Sends `count` predictions, each answered before the next.
    static func predict(port: Int, count: Int) {
        for index in 0..<count {
            let response = DefaultConfigServeTests.post(
                port: port,
                path: "/p",
                body: #"{"instances": [[\#(index % 50), 73.36, 2, 1]]}"#
            )
            #expect(response?.0 == 200)
        }
    }

    @Test func aFileSizeLimitLeavesOnlyWholeRecordsCountsEachLostOneAndTheLogResumes() throws {
        let directory = try CLI.tempDirectory(files: [:])
        let log = directory + "/comparisons.jsonl"
        let config = try Self.config(log: log)
        defer { for path in [directory, config] { try? FileManager.default.removeItem(atPath: path) } }
        let serve = try ServeProcess(["--config", config, "--workers", "1"], ulimit: "-f \(Self.limitBlocks)")
        defer { serve.kill() }
        let port = serve.port
        let admin = serve.adminPort
        let process = serve.process
        // The sidecar ignores SIGXFSZ, so a write past the limit fails (EFBIG) instead of killing
        // it. Checked here too because a launcher may start the child with the signal blocked,
        // which also keeps it alive (and would hide a sidecar that does not ignore it).
        let ignored = Self.signalMask("SigIgn", pid: process.processIdentifier) ?? 0
        let blocked = Self.signalMask("SigBlk", pid: process.processIdentifier) ?? 0
        #expect(ignored & (1 << (UInt64(SIGXFSZ) - 1)) != 0, "SIGXFSZ not ignored; blocked: \(blocked != 0)")

        // Some 200-byte records are many times the limit; the writer batches what arrives in one
        // flush, so most failed writes stop inside a batch and, unrepaired, inside a record.
        let requests = 400
        Self.predict(port: port, count: requests)
        var lines = 0
        let settled = eventually(within: 20) {
            lines = Self.parsedLines(log, checked: false).count
            return lines > 0 && lines + Self.dropped(admin: admin) == requests
        }
        #expect(settled, "lines \(lines) + dropped \(Self.dropped(admin: admin)) != requests \(requests)")
        // Settled: every record is whole.
        lines = Self.parsedLines(log).count
        let size = (try? FileManager.default.attributesOfItem(atPath: log)[.size] as? Int) ?? -1
        #expect(size > 0 && size <= Self.limitBytes)
        #expect(lines < requests, "the limit was never reached: \(size) bytes")
        #expect(Self.dropped(admin: admin) == requests - lines)
        let errors = Self.value(
            Self.metrics(admin: admin),
            "switchyard_comparison_log_errors_total",
            ["reason": "write_failed"]
        )
        #expect(errors >= 1)

        // Emptied in place (logrotate's copytruncate), the file has room again: logging resumes.
        let handle = try #require(FileHandle(forWritingAtPath: log))
        try handle.truncate(atOffset: 0)
        try handle.close()
        Self.predict(port: port, count: 5)
        #expect(eventually(within: 20) { Self.parsedLines(log, checked: false).count == 5 })
        #expect(Self.parsedLines(log).allSatisfy { ($0["request_id"] as? String)?.isEmpty == false })

        #expect(serve.stop() == 0)
        // Killed by SIGXFSZ, the reason would be `.uncaughtSignal`.
        #expect(process.terminationReason == .exit)
        let stderr = serve.stderr
        let failures = stderr.components(separatedBy: "cannot write comparison log").count - 1
        #expect(failures == 1, "the failure streak is logged once: \(stderr)")
        #expect(stderr.contains("comparison log writable again"))
    }
}
