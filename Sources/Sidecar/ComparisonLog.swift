import Foundation
import Logging

/// Appends comparison records (JSONL) to their files from one background thread, so a worker
/// never blocks on disk. Records queue in memory up to `maxPendingBytes`; past that they are
/// dropped and counted. A file that cannot be opened or written is logged once per failure
/// streak and counted, never fatal. `close()` flushes everything (drain).
///
/// Files are bounded: before a write would take a file past `maxFileBytes`, it is renamed
/// `NAME.1` (an older `NAME.1` becomes `NAME.2`, and so on; beyond `rotatedFiles` the oldest is
/// removed) and a new file is started. Files are opened for appending and the path is checked
/// before each write, so outside rotation works too: `logrotate` with `copytruncate`, or a
/// rename (`create`), after which the next write starts a new file at the path.
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
    /// A file is rotated before a write would take it past this size (0: never).
    private let maxFileBytes: Int
    /// Rotated files kept beside the current one.
    private let rotatedFiles: Int
    private var files: [String: OpenFile] = [:]
    private var failing: Set<String> = []

    /// An open log file and the identity of what it was opened as.
    private struct OpenFile {
        var descriptor: Int32
        var device: UInt64
        var inode: UInt64
    }

    init(
        metrics: SidecarMetrics,
        logger: Logger,
        maxPendingBytes: Int = 16 << 20,
        flushIntervalSeconds: Double = 0.2,
        maxFileBytes: Int = SidecarOptions().comparisonLogMaxBytes,
        rotatedFiles: Int = SidecarOptions().comparisonLogRotatedFiles
    ) {
        self.metrics = metrics
        self.logger = logger
        self.maxPendingBytes = maxPendingBytes
        self.flushIntervalSeconds = flushIntervalSeconds
        self.maxFileBytes = max(0, maxFileBytes)
        self.rotatedFiles = max(0, rotatedFiles)
        // The thread holds the log until `close()` ends its loop: a log dropped without `close()`
        // (a sidecar whose start failed before it could) is never read after it is freed.
        let thread = Thread { [self] in self.writerLoop() }
        thread.name = "switchyard-comparison-log"
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
                for file in files.values { Glibc.close(file.descriptor) }
                files = [:]
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
            var file = try self.file(for: path)
            if maxFileBytes > 0, let size = fileSize(file), size > 0, size + bytes.count > maxFileBytes {
                try rotate(path)
                file = try self.file(for: path)
            }
            try writeAll(bytes, to: file.descriptor, path: path)
            if failing.remove(path) != nil {
                logger.info("comparison log writable again", metadata: ["path": "\(path)"])
            }
        } catch {
            if let file = files.removeValue(forKey: path) { Glibc.close(file.descriptor) }
            metrics.comparisonLogErrors(reason: "write_failed").increment()
            if failing.insert(path).inserted {
                logger.error(
                    "cannot write comparison log; records are dropped",
                    metadata: ["path": "\(path)", "error": "\(error)"]
                )
            }
        }
    }

    /// The open file at `path`; opened again when the path now names another file or none
    /// (renamed or removed by an outside rotation).
    private func file(for path: String) throws -> OpenFile {
        if let file = files[path] {
            var status = stat()
            if stat(path, &status) == 0, UInt64(status.st_dev) == file.device, UInt64(status.st_ino) == file.inode {
                return file
            }
            Glibc.close(file.descriptor)
            files[path] = nil
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw LogFileError(path: path, operation: "open", code: errno) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw LogFileError(path: path, operation: "stat", code: code)
        }
        let file = OpenFile(descriptor: descriptor, device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
        files[path] = file
        return file
    }

    private func fileSize(_ file: OpenFile) -> Int? {
        var status = stat()
        return fstat(file.descriptor, &status) == 0 ? Int(status.st_size) : nil
    }

    /// `path` → `path.1` → … → `path.N`; the oldest beyond `rotatedFiles` is removed.
    private func rotate(_ path: String) throws {
        if let file = files.removeValue(forKey: path) { Glibc.close(file.descriptor) }
        guard rotatedFiles > 0 else {
            guard unlink(path) == 0 || errno == ENOENT else {
                throw LogFileError(path: path, operation: "remove", code: errno)
            }
            return
        }
        unlink("\(path).\(rotatedFiles)")
        for index in stride(from: rotatedFiles - 1, through: 1, by: -1) {
            Glibc.rename("\(path).\(index)", "\(path).\(index + 1)")  // a missing one is fine
        }
        guard Glibc.rename(path, "\(path).1") == 0 || errno == ENOENT else {
            throw LogFileError(path: path, operation: "rename", code: errno)
        }
        logger.info("comparison log rotated", metadata: ["path": "\(path)", "kept": "\(rotatedFiles)"])
    }

    private func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Glibc.write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw LogFileError(path: path, operation: "write", code: errno)
                }
                offset += written
            }
        }
    }
}

/// A comparison log file operation that failed, with the system's reason.
struct LogFileError: Error, CustomStringConvertible {
    var path: String
    var operation: String
    var code: Int32

    var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

#if canImport(Glibc)
import Glibc
#endif
