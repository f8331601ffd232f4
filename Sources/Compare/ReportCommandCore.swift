import Foundation

/// `switchyard report FILE.jsonl... [--format F] [--output FILE] [--fail-if EXPR]...`, without
/// the argument parsing: reads comparison logs, renders the report, checks the gates.
public enum ReportRunner {
    /// Runs the report. Exit code 0: done, every gate passed; 1: a gate failed; 2: usage error
    /// (no file, an unreadable file, an unknown format, a bad `--fail-if`, an unwritable
    /// `--output`). Unreadable log lines are warnings on stderr (`file:line: warning: ...`),
    /// never fatal. With `output`, the report goes to that file and stdout stays empty; gate
    /// failures go to stderr, one per line, prefixed `gate failed: `.
    public static func run(
        files: [String],
        format: String,
        output: String?,
        failIf: [String]
    ) -> (
        exitCode: Int32, stdout: String, stderr: String
    ) {
        guard let reportFormat = ReportFormat(rawValue: format) else {
            return (
                2, "",
                "error: unknown format '\(format)'; expected one of "
                    + ReportFormat.allCases.map(\.rawValue).joined(separator: ", ") + "\n"
            )
        }
        var gates: [Gate] = []
        for text in failIf {
            do {
                gates += try Gate.parse(text)
            } catch {
                return (2, "", "error: \(error)\n")
            }
        }
        guard !files.isEmpty else { return (2, "", "error: no comparison log given; expected FILE.jsonl...\n") }

        var builder = ReportBuilder()
        var stderr = ""
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                return (2, "", "error: cannot read '\(file)'\n")
            }
            builder.addLines(of: [UInt8](data), file: file)
        }
        let report = builder.build()
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
                return (2, "", stderr + "error: cannot write '\(output)': \(error.localizedDescription)\n")
            }
        } else {
            stdout = text
        }

        let failures = Gate.evaluate(gates, on: report)
        for failure in failures { stderr += "gate failed: \(failure.message)\n" }
        return (failures.isEmpty ? 0 : 1, stdout, stderr)
    }
}
