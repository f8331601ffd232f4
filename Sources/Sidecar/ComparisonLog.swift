import Foundation
import Logging

/// Appends comparison records (JSONL) to their files from one background thread, so a worker
/// never blocks on disk. Records queue in memory up to `maxPendingBytes`; past that they are
/// dropped and counted. A file that cannot be opened or written is logged once per failure
/// streak and counted, never fatal. `close()` flushes everything (drain).
final class ComparisonLog: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending: [String: [UInt8]] = [:]
    private var pendingBytes = 0
    private var closed = false
    private var finished = false
    private let maxPendingBytes: Int
    private let flushIntervalSeconds: Double
    private let metrics: SidecarMetrics
    private let logger: Logger
    private var handles: [String: FileHandle] = [:]
    private var failing: Set<String> = []
    private var thread: Thread?

    init(metrics: SidecarMetrics, logger: Logger, maxPendingBytes: Int = 16 << 20, flushIntervalSeconds: Double = 0.2) {
        self.metrics = metrics
        self.logger = logger
        self.maxPendingBytes = maxPendingBytes
        self.flushIntervalSeconds = flushIntervalSeconds
        let thread = Thread { [unowned self] in self.writerLoop() }
        thread.name = "switchyard-comparison-log"
        self.thread = thread
        thread.start()
    }

    /// Queues one record (a whole line, newline included). Any thread; never blocks on I/O.
    func append(_ line: [UInt8], to path: String) {
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { return }
        if pendingBytes + line.count > maxPendingBytes {
            metrics.comparisonLogErrors(reason: "queue_full").increment()
            return
        }
        pending[path, default: []].append(contentsOf: line)
        pendingBytes += line.count
    }

    /// Writes what is queued, closes the files and stops the thread. Blocks until done.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func writerLoop() {
        while true {
            condition.lock()
            if !closed { _ = condition.wait(until: Date().addingTimeInterval(flushIntervalSeconds)) }
            let batch = pending
            let isClosing = closed
            pending = [:]
            pendingBytes = 0
            condition.unlock()
            for (path, bytes) in batch.sorted(by: { $0.key < $1.key }) { write(bytes, to: path) }
            if isClosing {
                for handle in handles.values { try? handle.close() }
                handles = [:]
                condition.lock()
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
        }
    }

    private func write(_ bytes: [UInt8], to path: String) {
        do {
            let handle = try self.handle(for: path)
            try handle.write(contentsOf: bytes)
            if failing.remove(path) != nil {
                logger.info("comparison log writable again", metadata: ["path": "\(path)"])
            }
        } catch {
            handles[path] = nil
            metrics.comparisonLogErrors(reason: "write_failed").increment()
            if failing.insert(path).inserted {
                logger.error(
                    "cannot write comparison log; records are dropped",
                    metadata: ["path": "\(path)", "error": "\(error)"]
                )
            }
        }
    }

    private func handle(for path: String) throws -> FileHandle {
        if let handle = handles[path] { return handle }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
            }
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        handles[path] = handle
        return handle
    }
}
