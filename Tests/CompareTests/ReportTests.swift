import Foundation
import Models
import Testing

@testable import Compare

struct ReportTests {
    @Test func reportJSONOfKnownRecords() throws {
        // Rates and bounds: scipy.stats.binomtest(k, n).proportion_ci(method="wilson"); quantiles:
        // numpy.percentile; both rounded to 6 significant digits.
        let expected = """
            {"records": 11,
             "time_range": {"first": "2025-05-01T12:00:00.000Z", "last": "2025-05-01T12:00:20.000Z"},
             "min_requests": 1,
             "net_churn": {"rate": 0.05,
                           "churn": {"flips": 1, "requests": 4, "rate": 0.25, "low": 0.0455873, "high": 0.699358},
                           "direction": {"to_positive": 0, "to_negative": 1, "rows": 5, "rate": -0.2}},
             "pairs": [
              {"model": "churn", "live_version": "v1", "shadow_version": "v1", "requests": 5,
               "agreement": {"rate": 1, "low": 0.565518, "high": 1},
               "churn": {"rate": 0.2, "low": 0.0362241, "high": 0.624465},
               "abs_diff": {"mean": 0, "p50": 0, "p99": 0, "max": 0},
               "labels": {"1": {"0": 1, "1": 4}},
               "latency_ms": {"live": {"p50": 10, "p99": 10}, "shadow": {"p50": 11, "p99": 11},
                              "delta": {"p50": 1, "p99": 1}, "live_total": {"p50": null, "p99": null}},
               "errors": {"live": 0, "shadow": 0},
               "matches": 5, "mismatches": 0, "insufficient_data": false, "noise_floor": true, "noise": null},
              {"model": "churn", "live_version": "v1", "shadow_version": "v2", "requests": 5,
               "agreement": {"rate": 0.5, "low": 0.150039, "high": 0.849961},
               "churn": {"rate": 0.25, "low": 0.0455873, "high": 0.699358},
               "abs_diff": {"mean": 0.175025, "p50": 0.10005, "p99": 0.491, "max": 0.5},
               "labels": {"0": {"0": 2}, "1": {"0": 1, "1": 2}},
               "latency_ms": {"live": {"p50": 30, "p99": 49.6}, "shadow": {"p50": 30, "p99": 59.6},
                              "delta": {"p50": 0, "p99": 10}, "live_total": {"p50": null, "p99": null}},
               "errors": {"live": 0, "shadow": 1},
               "matches": 2, "mismatches": 2, "insufficient_data": false, "noise_floor": false,
               "noise": {"version": "v1", "requests": 5, "agreement": 1, "churn": 0.2, "net_churn": 0.05}},
              {"model": "fraud", "live_version": "v3", "shadow_version": "v4", "requests": 1,
               "agreement": {"rate": 1, "low": 0.206549, "high": 1},
               "churn": {"rate": null, "low": null, "high": null},
               "abs_diff": {"mean": 0.001, "p50": 0.001, "p99": 0.001, "max": 0.001},
               "labels": {},
               "latency_ms": {"live": {"p50": 2, "p99": 2}, "shadow": {"p50": 3, "p99": 3},
                              "delta": {"p50": 1, "p99": 1}, "live_total": {"p50": null, "p99": null}},
               "errors": {"live": 0, "shadow": 0},
               "matches": 1, "mismatches": 0, "insufficient_data": false, "noise_floor": false, "noise": null}
            ]}
            """
        let rendered = sampleReport().renderJSON()
        let actual = try JSONParser.parse(rendered)
        #expect(actual == (try JSONParser.parse(expected)))
        // Key order follows SPEC §9.
        #expect(
            actual.objectValue?.keys == ["records", "time_range", "min_requests", "net_churn", "pairs"]
        )
        let first = try #require(actual["pairs"]?[0]?.objectValue)
        #expect(
            first.keys == [
                "model", "live_version", "shadow_version", "requests", "agreement", "churn", "abs_diff", "labels",
                "latency_ms", "errors", "matches", "mismatches", "insufficient_data", "noise_floor", "noise",
            ]
        )
        #expect(first["agreement"]?.objectValue?.keys == ["rate", "low", "high"])
        #expect(first["abs_diff"]?.objectValue?.keys == ["mean", "p50", "p99", "max"])
        #expect(first["latency_ms"]?.objectValue?.keys == ["live", "shadow", "delta", "live_total"])
        #expect(first["errors"]?.objectValue?.keys == ["live", "shadow"])
    }

    @Test func emptyReportJSON() throws {
        let expected = """
            {"records": 0, "time_range": null, "min_requests": 100,
             "net_churn": {"rate": null,
                           "churn": {"flips": 0, "requests": 0, "rate": null, "low": null, "high": null},
                           "direction": null},
             "pairs": []}
            """
        #expect(try JSONParser.parse(ReportBuilder().build().renderJSON()) == (try JSONParser.parse(expected)))
    }

    @Test func badLinesAreCountedWithFileAndLine() {
        var builder = ReportBuilder()
        var text = String(decoding: sampleRecords()[0].jsonLine(), as: UTF8.self)
        text += "\n{\"ts\": 1}\r\nnot json\n"
        text += String(decoding: sampleRecords()[1].jsonLine(), as: UTF8.self)
        builder.addLines(of: Array(text.utf8), file: "logs/churn.jsonl")
        let report = builder.build()
        #expect(report.records == 2)
        #expect(
            report.badLines.map(\.description) == [
                "logs/churn.jsonl:3: warning: skipped line: 'ts' must be a string, got a number",
                "logs/churn.jsonl:4: warning: skipped line: not JSON: unexpected character 'o' at byte 1; expected 'null'",
            ]
        )
    }

    @Test func tableSnapshot() {
        let expected = """
            Switchyard comparison report: 11 comparison records, 3 pairs, 2025-05-01T12:00:00.000Z – 2025-05-01T12:00:20.000Z
            Net churn over all candidate pairs: 5.00% (churn 25.00% [4.56%, 69.94%] of 4 labelled requests, less each pair's noise floor); direction -20.00% of rows toward class 1 (0→1: 0, 1→0: 1, of 5 rows)

            Agreement and churn (95% Wilson intervals)
            model  live  shadow      requests  sample  agreement             95% CI   churn           95% CI  noise churn  net churn  live errors  shadow errors
            -----  ----  ----------  --------  ------  ---------  -----------------  ------  ---------------  -----------  ---------  -----------  -------------
            churn  v1    v1 (noise)         5  ok        100.00%  [56.55%, 100.00%]  20.00%  [3.62%, 62.45%]            -          -            0              0
            churn  v1    v2                 5  ok         50.00%   [15.00%, 85.00%]  25.00%  [4.56%, 69.94%]       20.00%      5.00%            0              1
            fraud  v3    v4                 1  ok        100.00%  [20.65%, 100.00%]     n/a              n/a            -        n/a            0              0
            sample: "insufficient data" when a pair has fewer than 1 compared requests (--min-requests); its figures are shown, but its gates neither pass nor fail.

            Absolute difference (per request max) and latency (ms)
            model  live  shadow      diff mean  diff p50  diff p99  diff max  live p50  live p99  shadow p50  shadow p99  Δ p50  Δ p99
            -----  ----  ----------  ---------  --------  --------  --------  --------  --------  ----------  ----------  -----  -----
            churn  v1    v1 (noise)          0         0         0         0      10.0      10.0        11.0        11.0  +1.00  +1.00
            churn  v1    v2              0.175       0.1     0.491       0.5      30.0      49.6        30.0        59.6      0  +10.0
            fraud  v3    v4              0.001     0.001     0.001     0.001      2.00      2.00        3.00        3.00  +1.00  +1.00
            latency: each version's own time, from being asked to its answer (an embedded model's evaluation), so live and shadow compare like with like; the live end-to-end time is total_ms in the log.

            Labels churn/v1→v1 (noise) (rows: live class, columns: shadow class)
            live \\ shadow          0          1
            -------------  ---------  ---------
            0                      0          0
            1              1 (20.0%)  4 (80.0%)
            cells: rows of output, and in parentheses their share of the live class's rows.

            Labels churn/v1→v2 (rows: live class, columns: shadow class)
            live \\ shadow           0          1
            -------------  ----------  ---------
            0              2 (100.0%)   0 (0.0%)
            1               1 (33.3%)  2 (66.7%)
            cells: rows of output, and in parentheses their share of the live class's rows.

            """
        #expect(sampleReport().renderTable() == expected)
    }

    @Test func markdownSnapshot() {
        let expected = """
            ## Switchyard comparison report

            11 comparison records, 3 pairs, 2025-05-01T12:00:00.000Z – 2025-05-01T12:00:20.000Z

            Net churn over all candidate pairs: 5.00% (churn 25.00% [4.56%, 69.94%] of 4 labelled requests, less each pair's noise floor); direction -20.00% of rows toward class 1 (0→1: 0, 1→0: 1, of 5 rows)

            ### Agreement and churn (95% Wilson intervals)

            | model | live | shadow | requests | sample | agreement | 95% CI | churn | 95% CI | noise churn | net churn | live errors | shadow errors |
            | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
            | churn | v1 | v1 (noise) | 5 | ok | 100.00% | [56.55%, 100.00%] | 20.00% | [3.62%, 62.45%] | - | - | 0 | 0 |
            | churn | v1 | v2 | 5 | ok | 50.00% | [15.00%, 85.00%] | 25.00% | [4.56%, 69.94%] | 20.00% | 5.00% | 0 | 1 |
            | fraud | v3 | v4 | 1 | ok | 100.00% | [20.65%, 100.00%] | n/a | n/a | - | n/a | 0 | 0 |

            sample: "insufficient data" when a pair has fewer than 1 compared requests (--min-requests); its figures are shown, but its gates neither pass nor fail.

            ### Absolute difference (per request max) and latency (ms)

            | model | live | shadow | diff mean | diff p50 | diff p99 | diff max | live p50 | live p99 | shadow p50 | shadow p99 | Δ p50 | Δ p99 |
            | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
            | churn | v1 | v1 (noise) | 0 | 0 | 0 | 0 | 10.0 | 10.0 | 11.0 | 11.0 | +1.00 | +1.00 |
            | churn | v1 | v2 | 0.175 | 0.1 | 0.491 | 0.5 | 30.0 | 49.6 | 30.0 | 59.6 | 0 | +10.0 |
            | fraud | v3 | v4 | 0.001 | 0.001 | 0.001 | 0.001 | 2.00 | 2.00 | 3.00 | 3.00 | +1.00 | +1.00 |

            latency: each version's own time, from being asked to its answer (an embedded model's evaluation), so live and shadow compare like with like; the live end-to-end time is total_ms in the log.

            ### Labels churn/v1→v1 (noise) (rows: live class, columns: shadow class)

            | live \\ shadow | 0 | 1 |
            | --- | ---: | ---: |
            | 0 | 0 | 0 |
            | 1 | 1 (20.0%) | 4 (80.0%) |

            cells: rows of output, and in parentheses their share of the live class's rows.

            ### Labels churn/v1→v2 (rows: live class, columns: shadow class)

            | live \\ shadow | 0 | 1 |
            | --- | ---: | ---: |
            | 0 | 2 (100.0%) | 0 (0.0%) |
            | 1 | 1 (33.3%) | 2 (66.7%) |

            cells: rows of output, and in parentheses their share of the live class's rows.

            """
        #expect(sampleReport().renderMarkdown() == expected)
    }

    @Test func htmlIsWellFormedAndHasBothCharts() throws {
        let html = sampleReport().renderHTML()
        #expect(wellFormednessProblem(html) == nil)
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        for id in ["diff-0", "lat-0", "diff-1", "lat-1", "diff-2", "lat-2"] {
            #expect(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"\(id)\""))
        }
        #expect(html.contains("Absolute difference per request"))
        #expect(html.contains("Latency distribution (cumulative), live vs shadow"))
        #expect(html.contains("live v1: p50 30.0, p99 49.6 ms"))
        #expect(html.contains("<table class=\"matrix\">"))
        // Self-contained: nothing loaded from elsewhere, no script.
        #expect(!html.contains("<script"))
        #expect(!html.contains("src="))
        #expect(!html.contains("<link"))
        #expect(!html.contains("@import"))
    }

    @Test func htmlEscapesNames() {
        var builder = ReportBuilder()
        builder.add(record(model: "a<b>&\"c", shadow: "v2", outcome: .match, diff: 0, latency: (1, 1)))
        let html = builder.build().renderHTML()
        #expect(wellFormednessProblem(html) == nil)
        #expect(html.contains("a&lt;b&gt;&amp;&quot;c"))
    }

    @Test func checkerCatchesBrokenMarkup() {
        #expect(wellFormednessProblem("<p><b>x</p></b>") == "</p> closes <b>")
        #expect(wellFormednessProblem("<p>a & b</p>") == "bare '&' at byte 5")
        #expect(wellFormednessProblem("<div><br></div>") == "</div> closes <br>")
        #expect(wellFormednessProblem("<svg width=3></svg>") == "unquoted attribute value in <svg at byte 11")
        #expect(wellFormednessProblem("<p>") == "unclosed <p>")
        #expect(wellFormednessProblem("<p>&nbsp;</p>") == "unknown entity '&nbsp;' at byte 3")
    }

    @Test func noisePairsSortFirstAndNetChurnIsFloored() {
        var builder = ReportBuilder()
        builder.add(record(shadow: "v0", outcome: .match, diff: 0, labels: ([1], [1]), latency: (1, 1)))
        builder.add(record(shadow: "v1", outcome: .match, diff: 0, flip: true, labels: ([1], [0]), latency: (1, 1)))
        let report = builder.build()
        #expect(report.pairs.map(\.key.description) == ["churn/v1→v1", "churn/v1→v0"])
        #expect(report.pairs[1].noise?.netChurn == 0)
        #expect(report.pairs[1].netChurn == 0)
        #expect(report.pairs[0].noise == nil)
    }

    @Test func latencyChartCutsOutliers() {
        var builder = ReportBuilder()
        for index in 0..<1000 {
            builder.add(
                record(
                    shadow: "v2",
                    outcome: .match,
                    diff: Double(index) * 1e-7,
                    latency: (Double(index % 50) + 1, index == 999 ? 5000 : Double(index % 50) + 3)
                )
            )
        }
        let html = builder.build().renderHTML()
        #expect(wellFormednessProblem(html) == nil)
        #expect(html.contains("axis cut at p99.5; max 5000"))
    }
}
