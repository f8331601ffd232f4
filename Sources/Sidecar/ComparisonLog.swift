import Logging

/// The comparison log (SPEC §7): JSONL records appended off the event loop by a `LogFileWriter`,
/// which holds the queue bound, whole-record writes and rotation. Records lost are counted in
/// `switchyard_comparison_records_dropped_total`, failed attempts in
/// `switchyard_comparison_log_errors_total`.
final class ComparisonLog: Sendable {
    private let writer: LogFileWriter

    init(
        metrics: SidecarMetrics,
        logger: Logger,
        maxPendingBytes: Int = 16 << 20,
        flushIntervalSeconds: Double = 0.2,
        maxFileBytes: Int = SidecarOptions().comparisonLogMaxBytes,
        rotatedFiles: Int = SidecarOptions().comparisonLogRotatedFiles
    ) {
        writer = LogFileWriter(
            name: "comparison log",
            counters: LogFileWriter.Counters(
                recordsQueueFull: metrics.comparisonRecordsDropped(reason: "queue_full"),
                recordsWriteFailed: metrics.comparisonRecordsDropped(reason: "write_failed"),
                attemptsQueueFull: metrics.comparisonLogErrors(reason: "queue_full"),
                attemptsWriteFailed: metrics.comparisonLogErrors(reason: "write_failed")
            ),
            logger: logger,
            maxPendingBytes: maxPendingBytes,
            flushIntervalSeconds: flushIntervalSeconds,
            maxFileBytes: maxFileBytes,
            rotatedFiles: rotatedFiles
        )
    }

    /// Queues one record (a whole line, newline included). Any thread; never blocks on I/O.
    func append(_ line: [UInt8], to path: String) { writer.append(line, to: path) }

    /// Writes what is queued, closes the files and stops the writer thread. Blocks until done.
    func close() { writer.close() }
}
