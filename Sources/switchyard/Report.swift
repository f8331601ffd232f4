import ArgumentParser
import Compare
import Foundation

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarize shadow comparison logs (JSONL) per model and (live, shadow) pair.",
        discussion: """
            Agreement and class-flip (churn) rates with 95 % Wilson intervals, absolute differences, \
            the label matrix, latencies and errors per side; a shadow of the live version itself \
            is the noise floor. For openai (LLM) pairs: exact and normalized text agreement with \
            Wilson intervals, similarity mean / p10 / p50, finish-reason agreement, token totals \
            and time to first token per side. Latencies are each version's own time, from being asked to its \
            answer, so live and shadow compare like with like (the live end-to-end time is \
            total_ms in the log).

            A pair with fewer compared requests (match or mismatch) than --min-requests has \
            "insufficient data": its figures are shown, but its gates neither pass nor fail.

            --fail-if gates (e.g. 'agreement<0.995', 'agreement_low<0.99', 'net_churn>0.01') \
            fail when any pair with enough data meets them. Metrics: agreement, agreement_low, \
            agreement_high, churn, churn_low, churn_high (the _low/_high forms are the 95 % \
            Wilson bounds), net_churn, errors, p99_abs_diff, max_abs_diff, latency_p99_delta_ms; \
            for openai (LLM) pairs, similarity_p10 (10th percentile of the per-request token F1, \
            or cosine for embeddings) and normalized_agreement (share of answers equal after NFC, \
            case folding and white space). A metric a pair does not have fails its gate.

            Exit codes: 0 report written and every gate passed; 1 a gate failed; 3 no gate \
            failed but a gated pair had insufficient data (or there was no pair): inconclusive; \
            64 usage error (bad --format, --fail-if or --min-requests, no file); 66 a log \
            cannot be read; 73 --output cannot be written.
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

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Compared requests a pair needs before its gates pass or fail.",
            valueName: "N"
        )
    )
    var minRequests: Int = ReportBuilder.defaultMinRequests

    func run() throws {
        // Every usage error is checked by the runner, so each one exits 64 with one message style.
        let result = ReportRunner.run(
            files: files,
            format: format,
            output: output,
            failIf: failIf,
            minRequests: minRequests
        )
        if !result.stdout.isEmpty { FileHandle.standardOutput.write(Data(result.stdout.utf8)) }
        if !result.stderr.isEmpty { FileHandle.standardError.write(Data(result.stderr.utf8)) }
        if result.exitCode != 0 { throw ExitCode(result.exitCode) }
    }
}
