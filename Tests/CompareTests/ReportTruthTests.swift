import Foundation
import Models
import Testing

@testable import Compare

/// A record at `second` seconds after 2025-05-01T12:00:00Z with the given outputs.
func timedRecord(
    model: String = "m",
    live: String = "v1",
    shadow: String = "v2",
    second: Int,
    outcome: Comparison.Outcome = .match,
    liveOutput: JSON = [0.5],
    shadowOutput: JSON = [0.5],
    labels: (Int, Int)? = nil,
    latency: (Double, Double) = (1, 1),
    total: Double? = nil
) -> ComparisonRecord {
    ComparisonRecord(
        timestamp: RFC3339.format(millisecondsSinceEpoch: 1_746_100_800_000 + Int64(second) * 1000),
        requestID: "r\(second)",
        model: model,
        route: model,
        live: .init(
            version: live,
            status: 200,
            latencyMilliseconds: latency.0,
            totalMilliseconds: total,
            output: liveOutput
        ),
        shadow: .init(
            version: shadow,
            status: outcome == .error ? 500 : 200,
            latencyMilliseconds: latency.1,
            output: outcome == .error ? nil : shadowOutput
        ),
        outcome: outcome,
        maxAbsDiff: outcome == .error ? nil : 0,
        flip: labels.map { $0.0 != $0.1 } ?? false,
        liveLabels: labels.map { [$0.0] },
        shadowLabels: outcome == .error ? nil : labels.map { [$0.1] }
    )
}

/// `matches` matching and `mismatches` mismatching records of m/v1→v2, one a second.
func agreementReport(matches: Int, mismatches: Int, errors: Int = 0, minRequests: Int = 100) -> Report {
    var builder = ReportBuilder()
    var second = 0
    for (count, outcome) in [(matches, Comparison.Outcome.match), (mismatches, .mismatch), (errors, .error)] {
        for _ in 0..<count {
            builder.add(timedRecord(second: second, outcome: outcome))
            second += 1
        }
    }
    return builder.build(minRequests: minRequests)
}

/// The 95 % Wilson interval's lower bound, written out: (p + z²/2n − z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n).
func wilsonLow(_ successes: Int, _ trials: Int) -> Double {
    let z = 1.959963984540054
    let n = Double(trials)
    let p = Double(successes) / n
    return (p + z * z / (2 * n) - z * (p * (1 - p) / n + z * z / (4 * n * n)).squareRoot()) / (1 + z * z / n)
}

struct InsufficientDataTests {
    @Test func everyFormatSaysInsufficientData() throws {
        let report = sampleReport(minRequests: 100)
        #expect(report.pairs.allSatisfy { $0.insufficientData })

        let table = report.renderTable()
        let rows = table.split(separator: "\n").filter { $0.hasPrefix("churn ") || $0.hasPrefix("fraud ") }
        #expect(rows.filter { $0.contains("insufficient data") }.count == 3)
        #expect(table.contains("fewer than 100 compared requests (--min-requests)"))

        let markdown = report.renderMarkdown()
        #expect(markdown.contains("| churn | v1 | v2 | 5 | insufficient data | 50.00% |"))
        #expect(markdown.contains("| fraud | v3 | v4 | 1 | insufficient data |"))

        let json = try JSONParser.parse(report.renderJSON())
        #expect(json["min_requests"] == 100)
        let pairs = try #require(json["pairs"]?.arrayValue)
        #expect(pairs.map { $0["insufficient_data"] } == [true, true, true])
        // The figures are still there.
        #expect(pairs[1]["agreement"]?["rate"] == 0.5)

        let html = report.renderHTML()
        #expect(wellFormednessProblem(html) == nil)
        #expect(html.components(separatedBy: "<p class=\"insufficient\">insufficient data: ").count - 1 == 3)
        #expect(html.contains("insufficient data: 4 compared requests, fewer than 100 (--min-requests)"))
        #expect(html.contains("insufficient data: 1 compared request, fewer than 100"))

        // With enough data none of it shows.
        let enough = sampleReport(minRequests: 1)
        #expect(!enough.renderHTML().contains("<p class=\"insufficient\">"))
        #expect(
            !enough.renderTable().split(separator: "\n").contains {
                $0.hasPrefix("churn") && $0.contains("insufficient")
            }
        )
    }

    @Test func theMinimumCountsComparedRequestsAndIsInclusive() throws {
        // 99 compared (errors do not count) against 100.
        let below = agreementReport(matches: 98, mismatches: 1, errors: 5)
        let at = agreementReport(matches: 99, mismatches: 1)
        #expect(below.pairs[0].compared == 99)
        #expect(below.pairs[0].insufficientData)
        #expect(!at.pairs[0].insufficientData)

        let gates = try Gate.parse("agreement<0.5")
        let belowEvaluation = Gate.evaluate(gates, on: below)
        #expect(belowEvaluation.failures.isEmpty)
        #expect(
            belowEvaluation.insufficient.map(\.message) == [
                "m/v1→v2: 99 compared requests, fewer than --min-requests 100; its gates neither pass nor fail"
            ]
        )
        #expect(!belowEvaluation.passed)
        #expect(Gate.evaluate(gates, on: at).passed)
        // A gate that would fail is not checked below the minimum either.
        #expect(Gate.evaluate(try Gate.parse("agreement<0.999"), on: below).failures.isEmpty)
        #expect(Gate.evaluate(try Gate.parse("agreement<0.999"), on: at).failures.count == 1)
    }
}

struct WilsonGateTests {
    @Test func agreementLowGatesOnTheLowerBound() throws {
        // 99 of 100 agree: the rate clears 0.99 but its lower bound, 0.94551…, does not.
        let report = agreementReport(matches: 99, mismatches: 1)
        let low = wilsonLow(99, 100)
        #expect(abs(low - 0.945514) < 1e-6)
        #expect(abs((report.pairs[0].agreement?.low ?? 0) - low) < 1e-12)
        let gate = try Gate.parse("agreement_low<0.99")
        #expect(gate == [Gate(metric: .agreementLow, op: .less, threshold: 0.99)])
        #expect(Gate.evaluate(try Gate.parse("agreement<0.99"), on: report).passed)
        #expect(Gate.evaluate(gate, on: report).failures.map(\.message) == ["m/v1→v2: agreement_low 0.9455 < 0.99"])
        #expect(Gate.evaluate(try Gate.parse("agreement_low<0.945"), on: report).passed)
        #expect(Gate.evaluate(try Gate.parse("agreement_low<0.946"), on: report).failures.count == 1)

        // 995 of 1000: the lower bound 0.98835… passes 0.988 and fails 0.99.
        let large = agreementReport(matches: 995, mismatches: 5)
        #expect(abs(wilsonLow(995, 1000) - 0.988349) < 1e-6)
        #expect(Gate.evaluate(try Gate.parse("agreement_low<0.988"), on: large).passed)
        #expect(Gate.evaluate(gate, on: large).failures.map(\.message) == ["m/v1→v2: agreement_low 0.9883 < 0.99"])
    }

    @Test func otherBoundsReadTheirSideOfTheInterval() throws {
        var builder = ReportBuilder()
        for second in 0..<100 {
            builder.add(timedRecord(second: second, labels: (1, second == 0 ? 0 : 1)))
        }
        let report = builder.build()
        let pair = report.pairs[0]
        // 1 flip in 100: churn 0.01, Wilson [0.00177, 0.05449].
        #expect(abs((pair.churn?.low ?? 0) - 0.0017674) < 1e-6)
        #expect(abs((pair.churn?.high ?? 0) - 0.0544862) < 1e-6)
        for (text, fails) in [
            ("churn_high>0.05", true), ("churn_high>0.06", false), ("churn_low>0.001", true),
            ("churn_low>0.002", false), ("agreement_high<1", false), ("agreement_low<0.97", true),
        ] {
            #expect(Gate.evaluate(try Gate.parse(text), on: report).failures.count == (fails ? 1 : 0), "\(text)")
        }
    }
}

struct TopLevelJSONTests {
    @Test func recordsTimeRangeAndNetChurn() throws {
        var builder = ReportBuilder()
        // Noise pair v1→v1: 1 flip in 10 (churn 0.1).
        for second in 0..<10 {
            builder.add(timedRecord(shadow: "v1", second: second, labels: (1, second == 0 ? 0 : 1)))
        }
        // Candidate v1→v2: 20 labelled requests, 3 flips 0→1 and 1 flip 1→0 (churn 0.2, net 0.1).
        for second in 10..<30 {
            let labels: (Int, Int) =
                switch second {
                case 10, 11, 12: (0, 1)
                case 13: (1, 0)
                case 14..<20: (0, 0)
                default: (1, 1)
                }
            builder.add(timedRecord(second: second, outcome: labels.0 == labels.1 ? .match : .mismatch, labels: labels))
        }
        // A regression pair without labels adds records but no churn; its error record counts too.
        builder.add(timedRecord(model: "r", live: "a", shadow: "b", second: 75))
        builder.add(timedRecord(model: "r", live: "a", shadow: "b", second: 5, outcome: .error))
        let json = try JSONParser.parse(builder.build().renderJSON())
        #expect(json["records"] == 32)
        #expect(json["time_range"] == ["first": "2025-05-01T12:00:00.000Z", "last": "2025-05-01T12:01:15.000Z"])
        // churn 4/20 = 0.2 with Wilson [0.0806, 0.4160]; net of the noise floor 0.2 − 0.1 = 0.1;
        // direction (3 − 1) / 20 = +0.1 toward class 1.
        let netChurn = try #require(json["net_churn"])
        #expect(netChurn["rate"] == 0.1)
        #expect(netChurn["churn"]?["flips"] == 4)
        #expect(netChurn["churn"]?["requests"] == 20)
        #expect(netChurn["churn"]?["rate"] == 0.2)
        #expect(netChurn["churn"]?["low"] == .number(Format.significant(0.0806577)))
        #expect(netChurn["churn"]?["high"] == .number(Format.significant(0.416017)))
        #expect(netChurn["direction"] == ["to_positive": 3, "to_negative": 1, "rows": 20, "rate": 0.1])
        let table = builder.build().renderTable()
        #expect(
            table.contains(
                "Net churn over all candidate pairs: 10.00% (churn 20.00% [8.07%, 41.60%] of 20 labelled requests, "
                    + "less each pair's noise floor); direction +10.00% of rows toward class 1 (0→1: 3, 1→0: 1, of 20 rows)"
            )
        )
    }

    @Test func directionIsNullWithoutABinaryClassifier() throws {
        var builder = ReportBuilder()
        builder.add(timedRecord(second: 0, labels: (2, 1)))
        let json = try JSONParser.parse(builder.build().renderJSON())
        #expect(json["net_churn"]?["direction"] == .null)
        #expect(json["net_churn"]?["rate"] == 1)
    }
}

struct HTMLChartTests {
    /// The markup of the `<svg>` with this id, or nil.
    func svg(_ id: String, in html: String) -> String? {
        guard let start = html.range(of: "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"\(id)\"") else { return nil }
        guard let end = html.range(of: "</svg>", range: start.upperBound..<html.endIndex) else { return nil }
        return String(html[start.lowerBound..<end.upperBound])
    }

    func count(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

    @Test func agreementOverTimeHasADotPerBucketWithItsRate() throws {
        var builder = ReportBuilder()
        // Three minutes, a record a second; the middle minute agrees half the time.
        for second in 0..<180 {
            let mismatch = second >= 60 && second < 120 && second % 2 == 0
            builder.add(timedRecord(second: second, outcome: mismatch ? .mismatch : .match))
        }
        let html = builder.build().renderHTML()
        #expect(wellFormednessProblem(html) == nil)
        let chart = try #require(svg("time-0", in: html))
        // 179 s of span: 5 s buckets (the smallest width with fewer than 40 buckets), 36 of them.
        #expect(chart.contains("Agreement over time (per 5 s bucket, UTC)"))
        #expect(count("<circle", in: chart) == 36)
        #expect(chart.contains("<title>12:00:00: 100.00% of 5 compared</title>"))
        #expect(chart.contains("<title>12:01:00: 40.00% of 5 compared</title>"))
        #expect(chart.contains("<title>12:01:05: 60.00% of 5 compared</title>"))
        #expect(chart.contains("overall 83.33%"))
        #expect(count("<polyline", in: chart) == 1)
    }

    @Test func scatterDrawsEveryScalarRowUpToTheCap() throws {
        var small = ReportBuilder()
        for second in 0..<150 {
            small.add(
                timedRecord(
                    second: second,
                    liveOutput: [.number(Double(second))],
                    shadowOutput: [.number(Double(second) + 0.5)]
                )
            )
        }
        // Two rows per request, as `[[x], [y]]`: each row is a point.
        small.add(timedRecord(second: 150, liveOutput: [[1.0], [2.0]], shadowOutput: [[1.5], [2.5]]))
        let html = small.build().renderHTML()
        #expect(wellFormednessProblem(html) == nil)
        let chart = try #require(svg("scatter-0", in: html))
        #expect(count("<circle", in: chart) == 152)
        #expect(chart.contains("Live vs shadow output per row</text>"))

        var large = ReportBuilder()
        for second in 0..<5000 {
            large.add(timedRecord(second: second, liveOutput: .number(Double(second)), shadowOutput: .number(1)))
        }
        let largeChart = try #require(svg("scatter-0", in: large.build().renderHTML()))
        #expect(count("<circle", in: largeChart) == Chart.maxScatterPoints)
        #expect(largeChart.contains("(2000 of 5000 rows)"))
        // The builder keeps a bounded, evenly spread sample: every other row here.
        let pair = large.build().pairs[0]
        #expect(pair.scatterRows == 5000)
        #expect(pair.scatter.count == 2500)
        #expect(pair.scatter.prefix(3).map(\.live) == [0, 2, 4])
    }

    @Test func vectorOutputsGetNoScatter() throws {
        var builder = ReportBuilder()
        for second in 0..<20 {
            builder.add(
                timedRecord(second: second, liveOutput: [[0.2, 0.8]], shadowOutput: [[0.3, 0.7]], labels: (1, 1))
            )
        }
        let html = builder.build().renderHTML()
        #expect(wellFormednessProblem(html) == nil)
        #expect(svg("scatter-0", in: html) == nil)
        #expect(svg("time-0", in: html) != nil)
        #expect(!html.contains("Live vs shadow output per row"))
    }

    @Test func labelMatrixShowsRowShares() throws {
        let html = sampleReport().renderHTML()
        // churn v1→v2: live class 1 went to 0 once and stayed 1 twice.
        #expect(html.contains("<td class=\"num off\">1 <span class=\"pct\">(33.3%)</span></td>"))
        #expect(html.contains("<td class=\"num diag\">2 <span class=\"pct\">(66.7%)</span></td>"))
        #expect(html.contains("<td class=\"num diag\">2 <span class=\"pct\">(100.0%)</span></td>"))
        // An empty row has no share.
        #expect(html.contains("<tr><th>0</th><td class=\"num diag\">0</td><td class=\"num \">0</td>"))
        #expect(sampleReport().renderTable().contains("1               1 (33.3%)  2 (66.7%)"))
    }

    @Test func latencyIsLabelledAsEachVersionsOwnTime() throws {
        var builder = ReportBuilder()
        builder.add(timedRecord(second: 0, latency: (2, 3), total: 5))
        builder.add(timedRecord(second: 1, latency: (4, 3), total: 9))
        let report = builder.build(minRequests: 1)
        #expect(report.renderTable().contains("latency: each version's own time, from being asked to its answer"))
        #expect(report.renderMarkdown().contains("latency: each version's own time"))
        let html = report.renderHTML()
        #expect(html.contains("live end to end p50 / p99<b>7.00 / 8.96 ms</b>"))
        let json = try JSONParser.parse(report.renderJSON())
        #expect(json["pairs"]?[0]?["latency_ms"]?["live"] == ["p50": 3, "p99": 3.98])
        #expect(json["pairs"]?[0]?["latency_ms"]?["live_total"] == ["p50": 7, "p99": 8.96])
    }
}

struct TimestampAndRecordTests {
    @Test(arguments: [
        ("2025-05-01T12:00:00.123Z", Int64(1_746_100_800_123)),
        ("2025-05-01T12:00:00Z", Int64(1_746_100_800_000)),
        ("2025-05-01T14:00:00.5+02:00", Int64(1_746_100_800_500)),
        ("2025-05-01t12:00:00.123456z", Int64(1_746_100_800_123)),
        ("1970-01-01T00:00:00.000Z", Int64(0)),
        ("1969-12-31T23:59:59.999Z", Int64(-1)),
        ("2024-02-29T00:00:00Z", Int64(1_709_164_800_000)),
    ])
    func rfc3339Reads(text: String, milliseconds: Int64) {
        #expect(RFC3339.millisecondsSinceEpoch(text) == milliseconds)
    }

    @Test(arguments: ["", "2025-05-01", "2025-13-01T00:00:00Z", "2025-05-01T12:00:00", "2025-05-01T12:00:00.Z", "x"])
    func rfc3339Refuses(text: String) {
        #expect(RFC3339.millisecondsSinceEpoch(text) == nil)
    }

    @Test func formatAndReadRoundTrip() {
        for milliseconds: Int64 in [0, 1, 999, 1_746_100_800_123, 253_402_300_799_999, -86_400_000] {
            #expect(
                RFC3339.millisecondsSinceEpoch(RFC3339.format(millisecondsSinceEpoch: milliseconds)) == milliseconds
            )
        }
    }

    @Test func totalMillisecondsIsWrittenForTheLiveSideAndReadBack() throws {
        let record = timedRecord(second: 0, latency: (1.5, 2), total: 3.25)
        let line = String(decoding: record.jsonLine(), as: UTF8.self)
        #expect(line.contains(#""live":{"version":"v1","status":200,"latency_ms":1.5,"total_ms":3.25,"output":[0.5]}"#))
        #expect(line.contains(#""shadow":{"version":"v2","status":200,"latency_ms":2,"output":[0.5]}"#))
        #expect(try ComparisonRecord.parse(record.jsonLine()) == record)
        #expect(throws: RecordError.self) {
            try ComparisonRecord.parse(Array(line.replacingOccurrences(of: "3.25", with: "-1").utf8))
        }
    }
}
