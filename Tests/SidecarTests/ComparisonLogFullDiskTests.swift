import Foundation
import Logging
import Testing

@testable import Sidecar

#if canImport(Glibc)
import Glibc
#endif

/// The comparison log on a file system that fills: a small tmpfs mounted for the test (root only;
/// the file size limit case in CLITests runs everywhere).
@Suite struct ComparisonLogFullDiskTests {
    /// Runs a command; its exit status (-1 when it cannot start).
    static func run(_ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Writes zeros to a new file at `path` until `limit` bytes or the file system is full.
    static func fill(_ path: String, limit: Int = .max) -> Int {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        defer { close(descriptor) }
        let chunk = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while total < limit {
            let written = chunk.withUnsafeBytes { write(descriptor, $0.baseAddress, min($0.count, limit - total)) }
            if written <= 0 { break }
            total += written
        }
        return total
    }

    static func value(_ metrics: SidecarMetrics, _ name: String, reason: String) -> Int {
        let text = String(decoding: metrics.render(), as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("\(name){reason=\"\(reason)\"}") {
            return Int(line.split(separator: " ").last.flatMap { Double($0) } ?? 0)
        }
        return 0
    }

    @Test func aFullDiskLeavesOnlyWholeRecordsCountsEachLostOneAndTheLogResumesWhenSpaceReturns() throws {
        let directory = try ComparisonLogTests.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard Self.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", directory]) == 0 else {
            return  // not root (or no mount privilege in this container): CLITests covers RLIMIT_FSIZE
        }
        defer { _ = Self.run(["umount", directory]) }

        // Full but for two pages: a batch of 300 records (12.6 KB) stops after 8192 bytes, inside
        // the 196th record (42 bytes each).
        #expect(Self.fill(directory + "/room", limit: 8192) == 8192)
        #expect(Self.fill(directory + "/filler") > 0)
        try FileManager.default.removeItem(atPath: directory + "/room")

        let metrics = SidecarMetrics()
        let messages = LogLines()
        let log = ComparisonLog(
            metrics: metrics,
            logger: Logger(label: "test") { _ in CapturingHandler(messages) },
            flushIntervalSeconds: 0.05,
            maxFileBytes: 0
        )
        let path = directory + "/churn.jsonl"
        func dropped() -> Int {
            Self.value(metrics, "switchyard_comparison_records_dropped_total", reason: "write_failed")
        }
        func written() -> [String] { ComparisonLogTests.lines(in: path) }

        for index in 0..<300 { log.append(ComparisonLogTests.line(index), to: path) }
        #expect(eventually { !written().isEmpty && written().count + dropped() == 300 })
        let kept = written().count
        #expect(kept > 0 && kept < 300)
        #expect(written() == (0..<kept).map(ComparisonLogTests.text))
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int
        #expect(size == kept * ComparisonLogTests.line(0).count, "a partial record stays at the end")

        // Still full: these are lost too, and the streak is not logged again.
        for index in 300..<310 { log.append(ComparisonLogTests.line(index), to: path) }
        #expect(eventually { dropped() == 310 - kept })
        #expect(Self.value(metrics, "switchyard_comparison_log_errors_total", reason: "write_failed") >= 2)

        // Space returns: the log resumes by itself, the next record on a line of its own.
        try FileManager.default.removeItem(atPath: directory + "/filler")
        for index in 310..<320 { log.append(ComparisonLogTests.line(index), to: path) }
        #expect(eventually { written().count == kept + 10 })
        log.close()

        let lines = written()
        #expect(lines == (0..<kept).map(ComparisonLogTests.text) + (310..<320).map(ComparisonLogTests.text))
        for line in lines {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "unparseable: \(line)")
        }
        #expect(dropped() == 310 - kept)
        let logged = messages.all
        #expect(logged.filter { $0.contains("cannot write comparison log") }.count == 1)
        #expect(logged.filter { $0.contains("comparison log writable again") }.count == 1)
    }

    @Test func aFullQueueCountsEachRefusedRecord() throws {
        let directory = try ComparisonLogTests.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let metrics = SidecarMetrics()
        let lineBytes = ComparisonLogTests.line(0).count
        // A long flush interval: nothing leaves the queue while the test fills it.
        let log = ComparisonLog(
            metrics: metrics,
            logger: Logger(label: "test"),
            maxPendingBytes: lineBytes * 4,
            flushIntervalSeconds: 60
        )
        for index in 0..<10 { log.append(ComparisonLogTests.line(index), to: directory + "/churn.jsonl") }
        #expect(Self.value(metrics, "switchyard_comparison_records_dropped_total", reason: "queue_full") == 6)
        #expect(Self.value(metrics, "switchyard_comparison_log_errors_total", reason: "queue_full") == 6)
        log.close()
        #expect(ComparisonLogTests.lines(in: directory + "/churn.jsonl") == (0..<4).map(ComparisonLogTests.text))
    }
}
