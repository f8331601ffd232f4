import ArgumentParser
import Compare
import Foundation

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarize shadow comparison logs (JSONL) per model and (live, shadow) pair.",
        discussion: """
            Agreement and class-flip (churn) rates with 95 % Wilson intervals, absolute differences, \
            the label matrix, latencies and errors per side; a shadow of the live version itself \
            is the noise floor. --fail-if gates (e.g. 'agreement<0.995', 'net_churn>0.01') exit 1 \
            when any pair fails them: metrics agreement, churn, net_churn, errors, p99_abs_diff, \
            max_abs_diff, latency_p99_delta_ms. Exit 2 on unreadable files or a bad gate.
            """
    )

    @Argument(help: ArgumentHelp("Comparison logs written by `serve` (compare.log).", valueName: "FILE.jsonl"))
    var files: [String]

    @Option(name: .long, help: "Output format: table, markdown, json or html.")
    var format: String = "table"

    @Option(name: .long, help: ArgumentHelp("Write the report here instead of standard output.", valueName: "FILE"))
    var output: String?

    @Option(
        name: .long,
        help: ArgumentHelp("A gate such as 'agreement<0.995' (repeatable, or comma-separated).", valueName: "EXPR")
    )
    var failIf: [String] = []

    func validate() throws {
        guard ["table", "markdown", "json", "html"].contains(format) else {
            throw ValidationError("--format must be table, markdown, json or html, got '\(format)'")
        }
    }

    func run() throws {
        let result = ReportRunner.run(files: files, format: format, output: output, failIf: failIf)
        if !result.stdout.isEmpty { FileHandle.standardOutput.write(Data(result.stdout.utf8)) }
        if !result.stderr.isEmpty { FileHandle.standardError.write(Data(result.stderr.utf8)) }
        if result.exitCode != 0 { throw ExitCode(result.exitCode) }
    }
}
