import Foundation
import Logging
import Testing

@testable import Sidecar

/// The comparison log's files: size rotation, and rotation done from outside the sidecar.
@Suite struct ComparisonLogTests {
    static func line(_ index: Int) -> [UInt8] {
        Array(#"{"request_id":"r-\#(String(format: "%04d", index))","outcome":"match"}"#.utf8) + [0x0A]
    }

    static func lines(in path: String) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "switchyard-log-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func text(_ index: Int) -> String { String(decoding: line(index).dropLast(), as: UTF8.self) }

    /// Appends records one at a time, each waiting until it is in the file: one write each.
    static func append(_ log: ComparisonLog, _ range: Range<Int>, to path: String) {
        for index in range {
            log.append(line(index), to: path)
            eventually(every: 0.002) { lines(in: path).last == text(index) }
        }
    }

    @Test func rotatesBeforeAFileWouldPassItsSizeAndKeepsTheNewestFiles() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/churn.jsonl"
        let lineBytes = Self.line(0).count
        let log = ComparisonLog(
            metrics: SidecarMetrics(),
            logger: Logger(label: "test"),
            flushIntervalSeconds: 0.005,
            maxFileBytes: lineBytes * 3,
            rotatedFiles: 2
        )
        Self.append(log, 0..<10, to: path)
        log.close()

        // Nothing lost among the kept files, none over the limit, the oldest removed.
        let current = Self.lines(in: path)
        let first = Self.lines(in: path + ".1")
        let second = Self.lines(in: path + ".2")
        #expect(!FileManager.default.fileExists(atPath: path + ".3"))
        for file in [current, first, second] { #expect(file.count <= 3) }
        let kept = second + first + current
        // Lines 0-2, 3-5, 6-8 and 9 were four files; the first is gone, three are kept.
        #expect(kept == (3..<10).map(Self.text))
    }

    @Test func startsANewFileWhenTheOldOneIsRenamedOrTruncatedOutside() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/churn.jsonl"
        let log = ComparisonLog(
            metrics: SidecarMetrics(),
            logger: Logger(label: "test"),
            flushIntervalSeconds: 0.005,
            maxFileBytes: 0
        )
        Self.append(log, 0..<3, to: path)
        // logrotate's `create` mode: the file is renamed; later records go to a new file.
        try FileManager.default.moveItem(atPath: path, toPath: path + ".old")
        Self.append(log, 3..<5, to: path)
        #expect(Self.lines(in: path) == (3..<5).map(Self.text))
        // logrotate's `copytruncate`: the file is emptied in place; appends start at its new end.
        let truncated = try #require(FileHandle(forWritingAtPath: path))
        try truncated.truncate(atOffset: 0)
        try truncated.close()
        Self.append(log, 5..<6, to: path)
        log.close()

        #expect(Self.lines(in: path + ".old") == (0..<3).map(Self.text))
        let data = try #require(FileManager.default.contents(atPath: path))
        #expect(!data.contains(0), "appending after a truncation left a hole of zero bytes")
        #expect(Self.lines(in: path) == [Self.text(5)])
    }
}
