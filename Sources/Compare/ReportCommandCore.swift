import Foundation

/// The exit codes of `switchyard report` (sysexits.h numbers where one fits, as
/// swift-argument-parser uses 64 for its own usage errors).
public enum ReportExitCode {
    /// The report was written and every gate held on every pair (or there were no gates).
    public static let success: Int32 = 0
    /// A gate failed on a pair with enough data. Wins over `insufficientData`.
    public static let gateFailed: Int32 = 1
    /// No gate failed, but some pair the gates apply to had fewer compared requests than
    /// `--min-requests` (or there was no pair at all): the result is inconclusive, neither pass
    /// nor fail. Distinct from 1 so that a pipeline can wait for more traffic instead of rolling
    /// back; any non-zero exit still stops a pipeline that only tests for success.
    public static let insufficientData: Int32 = 3
    /// A usage error: no file, an unknown format, a bad `--fail-if` or `--min-requests` (EX_USAGE).
    public static let usage: Int32 = 64
    /// A comparison log cannot be read (EX_NOINPUT).
    public static let unreadableInput: Int32 = 66
    /// `--output` cannot be written (EX_CANTCREAT).
    public static let unwritableOutput: Int32 = 73
}

/// `switchyard report FILE.jsonl... [--format F] [--output FILE] [--fail-if EXPR]...
/// [--min-requests N]`, without the argument parsing: reads comparison logs, renders the report,
/// checks the gates.
public enum ReportRunner {
    /// Runs the report; the exit code is one of `ReportExitCode`. Unreadable log lines are
    /// warnings on stderr (`file:line: warning: ...`), never fatal. With `output`, the report goes
    /// to that file and stdout stays empty. Gate failures go to stderr, one per line, prefixed
    /// `gate failed: `; pairs with too little data to judge, prefixed `insufficient data: `.
    public static func run(
        files: [String],
        format: String,
        output: String?,
        failIf: [String],
        minRequests: Int = ReportBuilder.defaultMinRequests
    ) -> (
        exitCode: Int32, stdout: String, stderr: String
    ) {
        guard let reportFormat = ReportFormat(rawValue: format) else {
            return (
                ReportExitCode.usage, "",
                "error: unknown format '\(format)'; expected one of "
                    + ReportFormat.allCases.map(\.rawValue).joined(separator: ", ") + "\n"
            )
        }
        var gates: [Gate] = []
        for text in failIf {
            do {
                gates += try Gate.parse(text)
            } catch {
                return (ReportExitCode.usage, "", "error: \(error)\n")
            }
        }
        guard minRequests >= 0 else {
            return (ReportExitCode.usage, "", "error: --min-requests must be 0 or more, got \(minRequests)\n")
        }
        guard !files.isEmpty else {
            return (ReportExitCode.usage, "", "error: no comparison log given; expected FILE.jsonl...\n")
        }

        var builder = ReportBuilder()
        var stderr = ""
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                return (ReportExitCode.unreadableInput, "", "error: cannot read '\(file)'\n")
            }
            builder.addLines(of: [UInt8](data), file: file)
        }
        let report = builder.build(minRequests: minRequests)
        for badLine in report.badLines.prefix(100) { stderr += badLine.description + "\n" }
        if report.badLines.count > 100 {
            stderr += "warning: \(report.badLines.count - 100) more unreadable lines not shown\n"
        }

        let text = report.rendered(as: reportFormat)
        var stdout = ""
        if let output {
            do {
                try Data(text.utf8).write(to: URL(fileURLWithPath: output))
            } catch {
                return (
                    ReportExitCode.unwritableOutput, "",
                    stderr + "error: cannot write '\(output)': \(error.localizedDescription)\n"
                )
            }
        } else {
            stdout = text
        }

        let evaluation = Gate.evaluate(gates, on: report)
        for failure in evaluation.failures { stderr += "gate failed: \(failure.message)\n" }
        for insufficient in evaluation.insufficient { stderr += "insufficient data: \(insufficient.message)\n" }
        let exitCode =
            !evaluation.failures.isEmpty
            ? ReportExitCode.gateFailed
            : evaluation.insufficient.isEmpty ? ReportExitCode.success : ReportExitCode.insufficientData
        return (exitCode, stdout, stderr)
    }
}
