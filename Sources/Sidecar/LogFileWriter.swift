import Foundation
import Logging
import Prometheus

/// Appends log records (whole lines: JSONL or text) to their files from one background thread,
/// so a worker never blocks on disk. The comparison log and the access log each own one.
/// Records queue in memory up to `maxPendingBytes`; past that they are dropped and counted. A
/// file that cannot be opened or written is logged once per failure streak and counted, never
/// fatal; writing resumes by itself once it can (space returns). `close()` flushes everything
/// (drain).
///
/// Records are written whole or not at all: a write that stops part-way (a full disk, a file
/// size limit, an I/O error) is cut back to the end of the last whole record, so every line of
/// a file parses. Each record lost is counted in `counters`.
///
/// Files are bounded: before a write would take a file past `maxFileBytes`, it is renamed
/// `NAME.1` (an older `NAME.1` becomes `NAME.2`, and so on; beyond `rotatedFiles` the oldest is
/// removed) and a new file is started. Files are opened for appending and the path is checked
/// before each write, so outside rotation works too: `logrotate` with `copytruncate`, or a
/// rename (`create`), after which the next write starts a new file at the path.
///
/// The path `-` is standard output: never opened, rotated or cut back.
final class LogFileWriter: @unchecked Sendable {
    /// The path that means standard output.
    static let standardOutput = "-"

    /// Where lost records are counted. `records…` add one per record lost; `attempts…`, when
    /// set, add one per record refused by the queue and one per batch not written whole.
    struct Counters: Sendable {
        var recordsQueueFull: Counter
        var recordsWriteFailed: Counter
        var attemptsQueueFull: Counter?
        var attemptsWriteFailed: Counter?
    }

    private let condition = NSCondition()
    private var pending: [String: Batch] = [:]
    private var pendingBytes = 0
    private var closed = false
    private var finished = false
    private let maxPendingBytes: Int
    private let flushIntervalSeconds: Double
    /// What the log is called in its own messages (`comparison log`).
    private let name: String
    private let counters: Counters
    private let logger: Logger
    /// A file is rotated before a write would take it past this size (0: never).
    private let maxFileBytes: Int
    /// Rotated files kept beside the current one.
    private let rotatedFiles: Int
    private var files: [String: OpenFile] = [:]
    /// The batches written last, emptied: the next flush swaps them in for `pending`, so that a
    /// busy log fills buffers that have grown already instead of growing new ones each time
    /// (writer thread; handed over under the lock).
    private var spareBatches: [String: Batch] = [:]
    /// A spare buffer is kept up to this size (a busy access log's flush; bursts are freed).
    private static let spareCapacityBytes = 4 << 20
    private var failing: Set<String> = []
    /// Files left ending in part of a record because cutting it off failed too: the bytes to
    /// cut before the next write to the path (writer thread).
    private var unfinished: [String: UnfinishedFile] = [:]

    /// Records queued for one file: whole lines back to back, and how many.
    private struct Batch {
        var bytes: [UInt8] = []
        var records = 0

        mutating func append(_ line: [UInt8]) {
            bytes.append(contentsOf: line)
            records += 1
        }

        mutating func append(_ chunk: UnsafeBufferPointer<UInt8>, records count: Int) {
            bytes.append(contentsOf: chunk)
            records += count
        }

        /// No records; the buffer is kept if it holds at most `limit` bytes.
        mutating func empty(keepingUpTo limit: Int) {
            if bytes.capacity <= limit { bytes.removeAll(keepingCapacity: true) } else { bytes = [] }
            records = 0
        }
    }

    /// A file whose last `tailBytes` are an unfinished record.
    private struct UnfinishedFile {
        var device: UInt64
        var inode: UInt64
        var tailBytes: Int
    }

    /// A batch written in part: how many of its records are whole in the file, and why it stopped.
    private struct PartialWrite: Error {
        var recordsWritten: Int
        var error: LogFileError
    }

    /// An open log file and the identity of what it was opened as.
    private struct OpenFile {
        var descriptor: Int32
        var device: UInt64
        var inode: UInt64
    }

    /// `name` names the log in messages and its writer thread; `maxFileBytes` 0: never rotated.
    init(
        name: String,
        counters: Counters,
        logger: Logger,
        maxPendingBytes: Int = 16 << 20,
        flushIntervalSeconds: Double = 0.2,
        maxFileBytes: Int,
        rotatedFiles: Int
    ) {
        self.name = name
        self.counters = counters
        self.logger = logger
        self.maxPendingBytes = maxPendingBytes
        self.flushIntervalSeconds = flushIntervalSeconds
        self.maxFileBytes = max(0, maxFileBytes)
        self.rotatedFiles = max(0, rotatedFiles)
        // The thread holds the log until `close()` ends its loop: a log dropped without `close()`
        // (a sidecar whose start failed before it could) is never read after it is freed.
        let thread = Thread { [self] in self.writerLoop() }
        thread.name = "switchyard-" + name.replacingOccurrences(of: " ", with: "-")
        thread.start()
    }

    /// Queues one record (a whole line, newline included). Any thread; never blocks on I/O.
    func append(_ line: [UInt8], to path: String) {
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { return }
        if pendingBytes + line.count > maxPendingBytes {
            counters.attemptsQueueFull?.increment()
            counters.recordsQueueFull.increment()
            return
        }
        pending[path, default: Batch()].append(line)
        pendingBytes += line.count
    }

    /// Queues `records` whole records written back to back in `bytes` (a worker's chunk of
    /// lines): one lock and one copy for all of them. A chunk that does not fit in the queue is
    /// dropped whole, each of its records counted. Any thread; never blocks on I/O.
    func append(_ bytes: UnsafeBufferPointer<UInt8>, records: Int, to path: String) {
        guard records > 0 else { return }
        condition.lock()
        defer { condition.unlock() }
        guard !closed else { return }
        if pendingBytes + bytes.count > maxPendingBytes {
            counters.attemptsQueueFull?.increment(by: Int64(records))
            counters.recordsQueueFull.increment(by: Int64(records))
            return
        }
        pending[path, default: Batch()].append(bytes, records: records)
        pendingBytes += bytes.count
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
            var batch = pending
            let isClosing = closed
            pending = spareBatches
            pendingBytes = 0
            condition.unlock()
            for (path, queued) in batch.sorted(by: { $0.key < $1.key }) where queued.records > 0 {
                write(queued, to: path)
            }
            for path in batch.keys { batch[path]?.empty(keepingUpTo: Self.spareCapacityBytes) }
            spareBatches = batch
            if isClosing {
                for (path, file) in files where path != Self.standardOutput { Glibc.close(file.descriptor) }
                files = [:]
                condition.lock()
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
        }
    }

    private func write(_ batch: Batch, to path: String) {
        var recordsWritten = 0
        do {
            var file = try self.file(for: path)
            try finish(file, path: path)
            if maxFileBytes > 0, path != Self.standardOutput, let size = fileSize(file), size > 0,
                size + batch.bytes.count > maxFileBytes
            {
                try rotate(path)
                file = try self.file(for: path)
            }
            try writeWhole(batch.bytes, to: file, path: path)
            if failing.remove(path) != nil {
                logger.info("\(name) writable again", metadata: ["path": "\(path)"])
            }
        } catch {
            var error: any Error = error
            if let partial = error as? PartialWrite {
                recordsWritten = partial.recordsWritten
                error = partial.error
            }
            if let file = files.removeValue(forKey: path), path != Self.standardOutput {
                Glibc.close(file.descriptor)
            }
            counters.attemptsWriteFailed?.increment()
            let dropped = batch.records - recordsWritten
            if dropped > 0 { counters.recordsWriteFailed.increment(by: Int64(dropped)) }
            if failing.insert(path).inserted {
                logger.error(
                    "cannot write \(name); records are dropped",
                    metadata: ["path": "\(path)", "error": "\(error)"]
                )
            }
        }
    }

    /// The open file at `path`; opened again when the path now names another file or none
    /// (renamed or removed by an outside rotation).
    private func file(for path: String) throws -> OpenFile {
        if path == Self.standardOutput { return OpenFile(descriptor: STDOUT_FILENO, device: 0, inode: 0) }
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
        logger.info("\(name) rotated", metadata: ["path": "\(path)", "kept": .stringConvertible(rotatedFiles)])
    }

    /// Appends `bytes` (whole records). When a write fails part-way, the unfinished record is cut
    /// off the end of the file and `PartialWrite` says how many records made it whole.
    private func writeWhole(_ bytes: [UInt8], to file: OpenFile, path: String) throws {
        var offset = 0
        var failure: LogFileError?
        bytes.withUnsafeBytes { raw in
            while offset < raw.count {
                let written = Glibc.write(file.descriptor, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = LogFileError(path: path, operation: "write", code: errno)
                    return
                }
                offset += written
            }
        }
        guard let failure else { return }
        let wholeBytes = bytes[..<offset].lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
        let recordsWritten = bytes[..<wholeBytes].reduce(0) { $1 == 0x0A ? $0 + 1 : $0 }
        let tailBytes = offset - wholeBytes
        // Standard output (often a pipe) cannot be cut back: its reader sees the partial line.
        if tailBytes > 0, path != Self.standardOutput {
            unfinished[path] = UnfinishedFile(device: file.device, inode: file.inode, tailBytes: tailBytes)
            do { try finish(file, path: path) } catch {
                logger.error(
                    "cannot cut an unfinished record off the \(name); retried before the next write",
                    metadata: ["path": "\(path)", "error": "\(error)"]
                )
            }
        }
        throw PartialWrite(recordsWritten: recordsWritten, error: failure)
    }

    /// Cuts an unfinished record (left by a failed write) off the end of `file`, if it has one.
    ///
    /// The cut is counted from the end, not from the size before the batch: the file is opened
    /// for appending and only this thread writes it, so its last `tailBytes` are the part of the
    /// record that made it, even if the file was truncated outside (`copytruncate`) meanwhile
    /// (then less is left, and the cut stops at 0). A file renamed away since is left as it is.
    private func finish(_ file: OpenFile, path: String) throws {
        guard let cut = unfinished[path] else { return }
        guard cut.device == file.device, cut.inode == file.inode else {
            unfinished[path] = nil
            return
        }
        var status = stat()
        guard fstat(file.descriptor, &status) == 0 else {
            throw LogFileError(path: path, operation: "stat", code: errno)
        }
        let length = max(0, Int(status.st_size) - cut.tailBytes)
        while ftruncate(file.descriptor, off_t(length)) != 0 {
            if errno == EINTR { continue }
            throw LogFileError(path: path, operation: "truncate", code: errno)
        }
        unfinished[path] = nil
    }
}

/// A log file operation that failed, with the system's reason.
struct LogFileError: Error, CustomStringConvertible {
    var path: String
    var operation: String
    var code: Int32

    var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

#if canImport(Glibc)
import Glibc
#endif
