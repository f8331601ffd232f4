import Foundation
import Testing

/// `switchyard report` run as a user runs it: the formats, the minimum sample, the Wilson-bound
/// gates and every exit code.
@Suite struct ReportCLITests {
    /// One comparison log line of churn/v1→v2, `second` seconds after 12:00, scalar outputs.
    static func line(second: Int, match: Bool, liveLabel: Int = 1, shadowLabel: Int = 1) -> String {
        let minute = second / 60
        let ts = String(format: "2025-05-01T12:%02d:%02d.000Z", minute, second % 60)
        let live = 0.25 + Double(second % 50) / 100
        let shadow = match ? live : live + 0.2
        return #"{"ts":"\#(ts)","request_id":"r\#(second)","model":"churn","route":"churn","#
            + #""live":{"version":"v1","status":200,"latency_ms":1.5,"total_ms":2.5,"output":[\#(live)]},"#
            + #""shadow":{"version":"v2","status":200,"latency_ms":0.1,"output":[\#(shadow)]},"#
            + #""outcome":"\#(match ? "match" : "mismatch")","max_abs_diff":\#(match ? 0 : 0.2),"#
            + #""flip":\#(liveLabel != shadowLabel),"live_label":\#(liveLabel),"shadow_label":\#(shadowLabel)}"#
    }

    /// A log of `matches` then `mismatches` records, one a second; returns its path.
    static func log(matches: Int, mismatches: Int) throws -> String {
        var lines: [String] = []
        for second in 0..<(matches + mismatches) { lines.append(line(second: second, match: second < matches)) }
        let directory = try CLI.tempDirectory(files: ["compare.jsonl": lines.joined(separator: "\n") + "\n"])
        return directory + "/compare.jsonl"
    }

    @Test func insufficientDataShowsInEveryFormat() throws {
        let path = try Self.log(matches: 40, mismatches: 2)
        let table = try CLI.run(["report", path])
        #expect(table.status == 0)
        #expect(table.stdout.contains("churn  v1    v2            42  insufficient data"))
        let markdown = try CLI.run(["report", path, "--format", "markdown"])
        #expect(markdown.stdout.contains("| churn | v1 | v2 | 42 | insufficient data |"))
        let json = try CLI.run(["report", path, "--format", "json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let pair = try #require((object["pairs"] as? [[String: Any]])?.first)
        #expect(pair["insufficient_data"] as? Bool == true)
        #expect(object["min_requests"] as? Int == 100)
        let html = try CLI.run(["report", path, "--format", "html"])
        #expect(
            html.stdout.contains("<p class=\"insufficient\">insufficient data: 42 compared requests, fewer than 100")
        )
        // Lowered to 42, the pair has enough data.
        let enough = try CLI.run(["report", path, "--min-requests", "42"])
        #expect(enough.stdout.contains("churn  v1    v2            42  ok"))
    }

    @Test func theMinimumIsReachedAtExactlyMinRequests() throws {
        let below = try CLI.run(["report", try Self.log(matches: 99, mismatches: 0), "--fail-if", "agreement<0.9"])
        #expect(below.status == 3)
        #expect(
            below.stderr
                == "insufficient data: churn/v1→v2: 99 compared requests, fewer than --min-requests 100; "
                + "its gates neither pass nor fail\n"
        )
        let at = try CLI.run(["report", try Self.log(matches: 100, mismatches: 0), "--fail-if", "agreement<0.9"])
        #expect(at.status == 0)
        #expect(at.stderr == "")
    }

    @Test func agreementLowGatesOnTheWilsonBound() throws {
        // 199 of 200 agree: rate 0.995; Wilson lower bound by hand with z = 1.959964:
        // (p + z²/2n − z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n) = 0.972226…
        let z = 1.959963984540054
        let n = 200.0
        let p = 199.0 / n
        let low = (p + z * z / (2 * n) - z * (p * (1 - p) / n + z * z / (4 * n * n)).squareRoot()) / (1 + z * z / n)
        #expect(abs(low - 0.972226) < 1e-6)
        let path = try Self.log(matches: 199, mismatches: 1)
        let fails = try CLI.run(["report", path, "--fail-if", "agreement_low<0.99"])
        #expect(fails.status == 1)
        #expect(fails.stderr == "gate failed: churn/v1→v2: agreement_low 0.9722 < 0.99\n")
        let passes = try CLI.run(["report", path, "--fail-if", "agreement_low<0.97", "--fail-if", "agreement<0.99"])
        #expect(passes.status == 0)
        #expect(passes.stderr == "")
        let high = try CLI.run(["report", path, "--fail-if", "agreement_high<0.999"])
        #expect(high.status == 0)  // the upper bound is 0.99912…
        let json = try CLI.run(["report", path, "--format", "json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["records"] as? Int == 200)
        #expect(
            object["time_range"] as? [String: String] == [
                "first": "2025-05-01T12:00:00.000Z", "last": "2025-05-01T12:03:19.000Z",
            ]
        )
        let pair = try #require((object["pairs"] as? [[String: Any]])?.first)
        let agreement = try #require(pair["agreement"] as? [String: Double])
        #expect(abs(agreement["low"]! - low) < 1e-6)
    }

    @Test func htmlHasTheTimeChartAndOneScatterPointPerRow() throws {
        let path = try Self.log(matches: 120, mismatches: 30)
        let output = (path as NSString).deletingLastPathComponent + "/report.html"
        let result = try CLI.run(["report", path, "--format", "html", "--output", output])
        #expect(result.status == 0)
        #expect(result.stdout == "")
        let html = try String(contentsOfFile: output, encoding: .utf8)
        #expect(html.contains("id=\"time-0\""))
        #expect(html.contains("Agreement over time (per 5 s bucket, UTC)"))
        let scatterStart = try #require(html.range(of: "id=\"scatter-0\""))
        let scatterEnd = try #require(html.range(of: "</svg>", range: scatterStart.upperBound..<html.endIndex))
        let scatter = html[scatterStart.upperBound..<scatterEnd.lowerBound]
        #expect(scatter.components(separatedBy: "<circle").count - 1 == 150)
    }

    @Test func exitCodes() throws {
        let path = try Self.log(matches: 100, mismatches: 0)
        #expect(try CLI.run(["report", path]).status == 0)
        #expect(try CLI.run(["report", path, "--fail-if", "agreement<1.5"]).status == 1)
        #expect(
            try CLI.run(["report", try Self.log(matches: 5, mismatches: 0), "--fail-if", "agreement<0.5"]).status == 3
        )
        // Gates on no pair at all are inconclusive too.
        let empty = try CLI.tempDirectory(files: ["empty.jsonl": ""]) + "/empty.jsonl"
        let none = try CLI.run(["report", empty, "--fail-if", "agreement<0.5"])
        #expect(none.status == 3)
        #expect(none.stderr == "insufficient data: no comparison pair to check the gates on\n")

        let badFormat = try CLI.run(["report", path, "--format", "pdf"])
        #expect(badFormat.status == 64)
        #expect(badFormat.stderr == "error: unknown format 'pdf'; expected one of table, markdown, json, html\n")
        let badGate = try CLI.run(["report", path, "--fail-if", "agreement=1"])
        #expect(badGate.status == 64)
        #expect(badGate.stderr.hasPrefix("error: invalid --fail-if 'agreement=1': "))
        #expect(try CLI.run(["report", path, "--min-requests", "many"]).status == 64)
        #expect(try CLI.run(["report", path, "--min-requests", "-1"]).status == 64)
        #expect(try CLI.run(["report"]).status == 64)
        let missing = try CLI.run(["report", "/nonexistent/compare.jsonl"])
        #expect(missing.status == 66)
        #expect(missing.stderr == "error: cannot read '/nonexistent/compare.jsonl'\n")
        let unwritable = try CLI.run(["report", path, "--output", "/nonexistent/dir/report.html"])
        #expect(unwritable.status == 73)
        #expect(unwritable.stderr.hasPrefix("error: cannot write '/nonexistent/dir/report.html'"))

        let help = try CLI.run(["report", "--help"])
        #expect(help.status == 0)
        let words = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(words.contains("Exit codes: 0 report written and every gate passed; 1 a gate failed; 3 no gate failed"))
        #expect(words.contains("64 usage error"))
        #expect(words.contains("66 a log cannot be read; 73 --output cannot be written"))
    }
}
