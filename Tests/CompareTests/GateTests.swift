import Foundation
import Models
import Testing

@testable import Compare

struct GateTests {
    @Test func parsesCommaSeparatedConditions() throws {
        let gates = try Gate.parse("agreement<0.995, churn >= 0.01,latency_p99_delta_ms > 5,errors<=0")
        #expect(
            gates == [
                Gate(metric: .agreement, op: .less, threshold: 0.995),
                Gate(metric: .churn, op: .greaterOrEqual, threshold: 0.01),
                Gate(metric: .latencyP99DeltaMilliseconds, op: .greater, threshold: 5),
                Gate(metric: .errors, op: .lessOrEqual, threshold: 0),
            ]
        )
        #expect(gates.map(\.description) == ["agreement<0.995", "churn>=0.01", "latency_p99_delta_ms>5", "errors<=0"])
        #expect(try Gate.parse("net_churn>1e-3") == [Gate(metric: .netChurn, op: .greater, threshold: 0.001)])
        #expect(try Gate.parse("p99_abs_diff>0.01,max_abs_diff>0.5").map(\.metric) == [.p99AbsDiff, .maxAbsDiff])
    }

    @Test(arguments: [
        (
            "agreement",
            "invalid --fail-if 'agreement': 'agreement' has no comparison; expected 'metric op number' with op one of < <= > >="
        ),
        (
            "accuracy<0.9",
            "invalid --fail-if 'accuracy<0.9': unknown metric 'accuracy'; expected one of agreement, agreement_low, "
                + "agreement_high, churn, churn_low, churn_high, net_churn, errors, p99_abs_diff, max_abs_diff, "
                + "latency_p99_delta_ms, similarity_p10, normalized_agreement"
        ),
        ("churn>", "invalid --fail-if 'churn>': '' after 'churn>' is not a number"),
        ("churn>>1", "invalid --fail-if 'churn>>1': '>1' after 'churn>' is not a number"),
        ("churn>nan", "invalid --fail-if 'churn>nan': 'nan' after 'churn>' is not a number"),
        (
            "churn=0.1",
            "invalid --fail-if 'churn=0.1': 'churn=0.1' has no comparison; expected 'metric op number' with op one of < <= > >="
        ),
        (
            "agreement<0.9,",
            "invalid --fail-if 'agreement<0.9,': empty condition; expected 'metric op number', e.g. 'agreement<0.995'"
        ),
    ])
    func parseErrorsSayWhatWasExpected(text: String, message: String) {
        #expect(throws: (any Error).self) { try Gate.parse(text) }
        do {
            _ = try Gate.parse(text)
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func evaluationSkipsTheNoisePairAndNamesEachFailure() throws {
        let report = sampleReport()
        let failures = Gate.evaluate(
            try Gate.parse("agreement<0.995,churn>0.2,net_churn>0.04,errors>0.1"),
            on: report
        ).failures
        #expect(
            failures.map(\.message) == [
                "churn/v1→v2: agreement 0.5 < 0.995",
                "churn/v1→v2: churn 0.25 > 0.2",
                "churn/v1→v2: net_churn 0.05 > 0.04",
                "churn/v1→v2: errors 0.2 > 0.1",
                "fraud/v3→v4: churn unknown (no labelled comparison), gate churn>0.2",
                "fraud/v3→v4: net_churn unknown (no labelled comparison), gate net_churn>0.04",
            ]
        )
    }

    @Test func passingGatesReportNothing() throws {
        let failures = Gate.evaluate(
            try Gate.parse("max_abs_diff>0.5, p99_abs_diff>0.5, latency_p99_delta_ms>=10.5"),
            on: sampleReport()
        )
        #expect(failures.passed)
        let p99Delta = Gate.evaluate(try Gate.parse("latency_p99_delta_ms>=10"), on: sampleReport()).failures
        #expect(p99Delta.map(\.message) == ["churn/v1→v2: latency_p99_delta_ms 10 >= 10"])
    }

    @Test func valuesNearTheThresholdShowEnoughDigits() {
        #expect(Format.gateValue(0.99499, against: 0.995) == "0.99499")
        #expect(Format.gateValue(0.9871, against: 0.995) == "0.9871")
        #expect(Format.gateValue(0.98712345, against: 0.995) == "0.9871")
    }

    @Test func noPairToCheckIsInsufficientData() throws {
        var builder = ReportBuilder()
        builder.add(record(shadow: "v1", outcome: .match, diff: 0, latency: (1, 1)))
        let evaluation = Gate.evaluate(try Gate.parse("agreement<0.9"), on: builder.build(minRequests: 1))
        #expect(evaluation.failures.isEmpty)
        #expect(evaluation.insufficient.map(\.message) == ["no comparison pair to check the gates on"])
        #expect(!evaluation.passed)
        #expect(Gate.evaluate([], on: builder.build()).passed)
    }
}

struct ReportRunnerTests {
    private func temporaryFile(_ name: String, _ contents: String) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "compare-tests-\(ProcessInfo.processInfo.processIdentifier)"
        )
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(name).path
        try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func sampleLog() -> String {
        sampleRecords().map { String(decoding: $0.jsonLine(), as: UTF8.self) }.joined()
    }

    @Test func printsTheReportAndPassesGates() throws {
        let path = try temporaryFile("pass.jsonl", sampleLog())
        let result = ReportRunner.run(
            files: [path],
            format: "json",
            output: nil,
            failIf: ["errors>0.5"],
            minRequests: 1
        )
        #expect(result.exitCode == 0)
        #expect(result.stderr == "")
        #expect(try JSONParser.parse(result.stdout) == sampleReport().json)
    }

    @Test func failedGateExitsOneWithMessages() throws {
        let path = try temporaryFile("fail.jsonl", sampleLog() + "oops\n")
        let result = ReportRunner.run(
            files: [path],
            format: "table",
            output: nil,
            failIf: ["agreement<0.995", "max_abs_diff>0.4"],
            minRequests: 1
        )
        #expect(result.exitCode == 1)
        #expect(result.stdout.hasPrefix("Switchyard comparison report: 11 comparison records"))
        #expect(
            result.stderr == """
                \(path):12: warning: skipped line: not JSON: unexpected character 'o' at byte 0; expected a value
                gate failed: churn/v1→v2: agreement 0.5 < 0.995
                gate failed: churn/v1→v2: max_abs_diff 0.5 > 0.4

                """
        )
    }

    @Test func writesTheOutputFile() throws {
        let path = try temporaryFile("out.jsonl", sampleLog())
        let output = path + ".html"
        let result = ReportRunner.run(files: [path, path], format: "html", output: output, failIf: [])
        #expect(result.exitCode == 0)
        #expect(result.stdout == "")
        let html = try String(contentsOfFile: output, encoding: .utf8)
        #expect(html.contains("22 comparison records"))
        #expect(wellFormednessProblem(html) == nil)
    }

    @Test func usageErrorsExit64AndIOErrorsTheirSysexitsCodes() throws {
        let path = try temporaryFile("usage.jsonl", sampleLog())
        let badGate = ReportRunner.run(files: [path], format: "table", output: nil, failIf: ["agreement=1"])
        #expect(badGate.exitCode == 64)
        #expect(badGate.stdout == "")
        #expect(badGate.stderr.hasPrefix("error: invalid --fail-if 'agreement=1': "))
        let badFormat = ReportRunner.run(files: [path], format: "pdf", output: nil, failIf: [])
        #expect(badFormat == (64, "", "error: unknown format 'pdf'; expected one of table, markdown, json, html\n"))
        let badMinimum = ReportRunner.run(files: [path], format: "table", output: nil, failIf: [], minRequests: -1)
        #expect(badMinimum == (64, "", "error: --min-requests must be 0 or more, got -1\n"))
        let none = ReportRunner.run(files: [], format: "table", output: nil, failIf: [])
        #expect(none.exitCode == 64)
        let missing = ReportRunner.run(files: ["/nonexistent/log.jsonl"], format: "table", output: nil, failIf: [])
        #expect(missing == (66, "", "error: cannot read '/nonexistent/log.jsonl'\n"))
        let unwritable = ReportRunner.run(
            files: [path],
            format: "table",
            output: "/nonexistent/dir/report.txt",
            failIf: []
        )
        #expect(unwritable.exitCode == 73)
        #expect(unwritable.stderr.hasPrefix("error: cannot write '/nonexistent/dir/report.txt'"))
    }

    @Test func insufficientDataExitsThreeUnlessAGateFails() throws {
        let path = try temporaryFile("small.jsonl", sampleLog())
        // 4 and 1 compared requests: below the default minimum of 100.
        let inconclusive = ReportRunner.run(files: [path], format: "json", output: nil, failIf: ["agreement<0.995"])
        #expect(inconclusive.exitCode == 3)
        #expect(
            inconclusive.stderr == """
                insufficient data: churn/v1→v2: 4 compared requests, fewer than --min-requests 100; \
                its gates neither pass nor fail
                insufficient data: fraud/v3→v4: 1 compared request, fewer than --min-requests 100; \
                its gates neither pass nor fail

                """
        )
        // With a minimum of 2, churn/v1→v2 is judged (and fails) while fraud stays insufficient:
        // the failure decides the exit code.
        let failed = ReportRunner.run(
            files: [path],
            format: "json",
            output: nil,
            failIf: ["agreement<0.995"],
            minRequests: 2
        )
        #expect(failed.exitCode == 1)
        #expect(failed.stderr.hasPrefix("gate failed: churn/v1→v2: agreement 0.5 < 0.995\n"))
        #expect(failed.stderr.contains("insufficient data: fraud/v3→v4: 1 compared request, fewer"))
        // Without gates, too little data is no error.
        #expect(ReportRunner.run(files: [path], format: "table", output: nil, failIf: []).exitCode == 0)
    }
}
