import Foundation

extension Report {
    /// One self-contained HTML page (inline CSS and SVG, no script, no external resource): the
    /// summary tables, then per pair its figures, label matrix (counts and row shares), a
    /// histogram of absolute differences (log-scaled bins), the latency CDFs of live and shadow,
    /// agreement over time, and for scalar outputs a live-vs-shadow scatter; for openai (LLM)
    /// pairs, their text figures and a histogram of per-request similarity. The markup is
    /// well-formed XML (every element closed, only XML entities), so XML tools can read it too.
    public func renderHTML() -> String {
        var html = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8"/>
            <title>Switchyard comparison report</title>
            <style>\(HTML.style)</style>
            </head>
            <body>
            <h1>Switchyard comparison report</h1>

            """
        html += "<p class=\"headline\">\(HTML.escape(headline))</p>\n"
        if let netChurnLine { html += "<p class=\"headline\">\(HTML.escape(netChurnLine))</p>\n" }
        if !badLines.isEmpty {
            html += "<details><summary>Unreadable lines</summary><ul>"
            for badLine in badLines.prefix(50) { html += "<li><code>\(HTML.escape(badLine.description))</code></li>" }
            if badLines.count > 50 { html += "<li>… and \(badLines.count - 50) more</li>" }
            html += "</ul></details>\n"
        }
        if pairs.isEmpty {
            html += "<p>No comparison records.</p>\n"
        } else {
            let overview = tables
            html += HTML.table(overview[0]) + HTML.table(overview[1])
            for table in textTables { html += HTML.table(table) }
            html += """
                <p class="note">Agreement: matching requests among those compared (errors excluded). Churn: requests \
                whose class label differs on some row, among labelled requests. A pair marked (noise) shadows the \
                live version itself: its disagreement is the noise floor, and net churn is churn less that floor \
                (at least 0). Quantiles interpolate linearly between ranks.</p>

                """
        }
        let times = pairs.flatMap { [$0.timeline.first?.milliseconds, $0.timeline.last?.milliseconds] }
            .compactMap { $0 }
        let timeRange = times.min().map { ($0, times.max()!) }
        for (index, pair) in pairs.enumerated() {
            html += HTML.section(for: pair, index: index, timeRange: timeRange, minRequests: minRequests)
        }
        html += "</body>\n</html>\n"
        return html
    }
}

enum HTML {
    static let liveColor = "#1f63b4"
    static let shadowColor = "#e0700b"

    static let style = """
        body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px 32px;color:#1d2330;\
        max-width:1200px}
        h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-top:1px solid #d5d9e0;\
        padding-top:16px}h3{font-size:14px;margin:16px 0 6px;color:#4a5263}
        .headline,.note{color:#4a5263;font-size:13px}
        table{border-collapse:collapse;font-size:13px;margin:8px 0 16px}.scroll{overflow-x:auto}
        th,td{padding:4px 10px;border-bottom:1px solid #e3e6eb;text-align:left;white-space:nowrap}
        th{background:#f3f5f8;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
        .figures{display:flex;flex-wrap:wrap;gap:8px 28px;font-size:13px;margin:4px 0 8px}
        .figures div{min-width:128px}.figures b{display:block;font-size:18px;font-weight:600}
        .charts{display:flex;flex-wrap:wrap;gap:16px}
        svg{background:#fff;border:1px solid #e3e6eb}svg text{font-family:inherit;font-size:11px;fill:#1d2330}
        .matrix td.diag{background:#e8f1e4}.matrix td.off{background:#fbe9e7}.pct{color:#6b7385;font-size:11px}
        .insufficient{display:inline-block;background:#fff4d6;border:1px solid #e8c463;border-radius:3px;\
        padding:2px 8px;font-size:13px;margin:4px 0}
        """

    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }

    static func table(_ table: TextTable, className: String? = nil) -> String {
        var html = "<h3>\(escape(table.title))</h3>\n<div class=\"scroll\"><table"
        html += "\(className.map { " class=\"\($0)\"" } ?? "")><thead><tr>"
        for (column, cell) in table.header.enumerated() {
            html += table.rightAligned[column] ? "<th class=\"num\">" : "<th>"
            html += escape(cell) + "</th>"
        }
        html += "</tr></thead><tbody>\n"
        for row in table.rows {
            html += "<tr>"
            for (column, cell) in row.enumerated() {
                html += (table.rightAligned[column] ? "<td class=\"num\">" : "<td>") + escape(cell) + "</td>"
            }
            html += "</tr>\n"
        }
        html += "</tbody></table></div>\n"
        for note in table.notes { html += "<p class=\"note\">\(escape(note))</p>\n" }
        return html
    }

    static func section(
        for pair: PairSummary,
        index: Int,
        timeRange: (first: Int64, last: Int64)?,
        minRequests: Int
    ) -> String {
        let key = pair.key
        var html = "<section id=\"pair-\(index)\">\n<h2>\(escape(key.model)): \(escape(key.liveVersion)) → "
        html += escape(pair.shadowLabel) + "</h2>\n"
        if pair.insufficientData {
            html += "<p class=\"insufficient\">insufficient data: \(pair.compared) compared request"
            html += "\(pair.compared == 1 ? "" : "s"), fewer than "
            html += "\(minRequests) (--min-requests); gates neither pass nor fail on this pair</p>\n"
        }
        html += "<div class=\"figures\">"
        func figure(_ label: String, _ value: String, _ detail: String = "") {
            html += "<div>\(escape(label))<b>\(escape(value))</b>"
            if !detail.isEmpty { html += "<span class=\"note\">\(escape(detail))</span>" }
            html += "</div>"
        }
        figure("requests", String(pair.requests), "\(pair.matches) match, \(pair.mismatches) mismatch")
        figure("agreement", Format.percent(pair.agreement?.rate), "95% CI " + Format.interval(pair.agreement))
        figure("churn", Format.percent(pair.churn?.rate), "95% CI " + Format.interval(pair.churn))
        if let noise = pair.noise {
            figure(
                "net churn",
                Format.percent(noise.netChurn),
                "noise floor (\(noise.version)→\(noise.version)) churn \(Format.percent(noise.churn)), agreement "
                    + Format.percent(noise.agreement)
            )
        }
        figure("errors", "\(pair.liveErrors) live / \(pair.shadowErrors) shadow")
        figure(
            "abs diff p99",
            Format.difference(pair.absDiff?.p99),
            "mean \(Format.difference(pair.absDiff?.mean)), max \(Format.difference(pair.absDiff?.max))"
        )
        figure(
            "latency Δ p50 / p99",
            Format.delta(pair.latencyP50DeltaMilliseconds) + " / "
                + Format.delta(pair.latencyP99DeltaMilliseconds) + " ms",
            "each version's own time"
        )
        if let total = pair.liveTotalLatency {
            figure(
                "live end to end p50 / p99",
                Format.milliseconds(total.p50) + " / " + Format.milliseconds(total.p99) + " ms",
                "arrival to answer (total_ms)"
            )
        }
        if let text = pair.text {
            if let normalized = text.normalized {
                figure("normalized agreement", Format.percent(normalized.rate), "95% CI " + Format.interval(normalized))
                figure("exact agreement", Format.percent(text.exact?.rate), "95% CI " + Format.interval(text.exact))
            }
            figure(
                "similarity p10 / p50",
                Format.similarity(text.similarity?.p10) + " / " + Format.similarity(text.similarity?.p50),
                "mean " + Format.similarity(text.similarity?.mean)
            )
            figure(
                "time to first token p50",
                Format.milliseconds(text.liveFirstToken?.p50) + " / " + Format.milliseconds(text.shadowFirstToken?.p50)
                    + " ms",
                "live / shadow"
            )
        }
        html += "</div>\n<div class=\"charts\">\n"
        if let text = pair.text {
            html += Chart.similarityHistogram(text.similarities, isEmbedding: text.hasEmbeddings, id: "sim-\(index)")
        }
        html += Chart.differenceHistogram(pair.absDiffs, id: "diff-\(index)")
        html += Chart.latencyCDF(live: pair.liveLatencies, shadow: pair.shadowLatencies, pair: key, id: "lat-\(index)")
        html += Chart.agreementOverTime(
            pair.timeline,
            range: timeRange,
            overall: pair.agreement?.rate,
            id: "time-\(index)"
        )
        if pair.hasScalarOutput {
            html += Chart.scatter(pair.scatter, rows: pair.scatterRows, pair: key, id: "scatter-\(index)")
        }
        html += "</div>\n"
        if !pair.labelMatrix.isEmpty { html += matrix(pair) }
        return html + "</section>\n"
    }

    static func matrix(_ pair: PairSummary) -> String {
        let classes = pair.classes
        var html = "<h3>Labels: rows live \(escape(pair.key.liveVersion)), columns shadow "
        html += escape(pair.key.shadowVersion) + " (rows of output; share of the live class's rows)</h3>\n"
        html += "<table class=\"matrix\"><thead><tr>"
        html += "<th>live \\ shadow</th>"
        for shadow in classes { html += "<th class=\"num\">\(shadow)</th>" }
        html += "<th class=\"num\">total</th></tr></thead><tbody>\n"
        for live in classes {
            html += "<tr><th>\(live)</th>"
            let total = pair.labelMatrix[live]?.values.reduce(0, +) ?? 0
            for shadow in classes {
                let count = pair.labelMatrix[live]?[shadow] ?? 0
                let kind = live == shadow ? "diag" : (count > 0 ? "off" : "")
                html += "<td class=\"num \(kind)\">\(count)"
                if total > 0 {
                    html += " <span class=\"pct\">(" + String(format: "%.1f%%", Double(count) / Double(total) * 100)
                    html += ")</span>"
                }
                html += "</td>"
            }
            html += "<td class=\"num\">\(total)</td></tr>\n"
        }
        return html + "</tbody></table>\n"
    }
}

/// Inline SVG charts.
enum Chart {
    static let width = 560.0
    static let height = 300.0
    static let left = 58.0
    static let right = 16.0
    static let top = 30.0
    static let bottom = 48.0
    static var plotWidth: Double { width - left - right }
    static var plotHeight: Double { height - top - bottom }

    /// Histogram of per-request absolute differences: exact zeros in their own bar, the rest in
    /// logarithmic bins (1 to 4 per decade, about 16 bars in all).
    static func differenceHistogram(_ sorted: [Double], id: String) -> String {
        var svg = open(id: id, title: "Absolute difference per request (max over the output), log-scaled bins")
        let zeros = sorted.prefix { $0 == 0 }.count
        let positive = sorted.dropFirst(zeros)
        guard !sorted.isEmpty else { return svg + empty("no compared requests") + "</svg>\n" }
        var bars: [(label: String, count: Int)] = [("0", zeros)]
        var tickLabels: [(position: Int, text: String)] = [(0, "0")]
        if let smallest = positive.first, let largest = positive.last {
            var low = log10(smallest).rounded(.down)
            var high = log10(largest).rounded(.up)
            if high <= low { high = low + 1 }
            low = max(low, high - 12)
            let decades = Int(high - low)
            let perDecade = max(1, min(4, 16 / decades))
            let binCount = decades * perDecade
            var counts = Array(repeating: 0, count: binCount)
            for value in positive {
                let position = (log10(value) - low) * Double(perDecade)
                counts[min(binCount - 1, max(0, Int(position.rounded(.down))))] += 1
            }
            for bin in 0..<binCount {
                bars.append(("", counts[bin]))
                if bin % perDecade == 0 { tickLabels.append((bin + 1, exponentLabel(Int(low) + bin / perDecade))) }
            }
            tickLabels.append((binCount + 1, exponentLabel(Int(high))))
        }
        let maxCount = max(1, bars.map(\.count).max()!)
        let yTicks = niceTicks(upTo: Double(maxCount), minimumStep: 1)
        let yMax = max(Double(maxCount), yTicks.last!)
        // One slot per bar plus half a slot of gap after the zero bar.
        let barWidth = plotWidth / (Double(bars.count) + 0.5)
        func slotX(_ index: Int) -> Double { left + (Double(index) + (index > 0 ? 0.5 : 0)) * barWidth }
        svg += yAxis(ticks: yTicks, maximum: yMax, format: { String(Int($0)) })
        for (index, bar) in bars.enumerated() where bar.count > 0 {
            let barHeight = Double(bar.count) / yMax * plotHeight
            let x = slotX(index) + 1
            svg += "<rect x=\"\(f(x))\" y=\"\(f(top + plotHeight - barHeight))\" width=\"\(f(barWidth - 2))\" "
            svg += "height=\"\(f(barHeight))\" fill=\"\(index == 0 ? "#8a94a6" : "#4c8c4a")\">"
            svg += "<title>\(index == 0 ? "exactly 0" : "bin \(index)"): \(bar.count) requests</title></rect>\n"
        }
        for tick in tickLabels {
            // The zero bar is labelled at its centre; log-bin labels sit on bin edges.
            let x = tick.position == 0 ? left + barWidth / 2 : slotX(tick.position)
            svg +=
                "<line x1=\"\(f(x))\" y1=\"\(f(top + plotHeight))\" x2=\"\(f(x))\" y2=\"\(f(top + plotHeight + 4))\" "
            svg += "stroke=\"#1d2330\"/>"
            svg += "<text x=\"\(f(x))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">\(tick.text)</text>\n"
        }
        svg += axisTitles(x: "absolute difference |live − shadow| (log scale)", y: "requests")
        return svg + "</svg>\n"
    }

    /// Histogram of per-request similarity in 20 bins of 0.05 from 0 to 1 (the last bin includes
    /// 1); a negative cosine counts in the first bin.
    static func similarityHistogram(_ sorted: [Double], isEmbedding: Bool, id: String) -> String {
        let measure = isEmbedding ? "cosine similarity" : "token F1 similarity"
        var svg = open(id: id, title: "Similarity per request (\(measure))")
        guard !sorted.isEmpty else { return svg + empty("no compared answers") + "</svg>\n" }
        let binCount = 20
        var counts = Array(repeating: 0, count: binCount)
        for value in sorted {
            counts[min(binCount - 1, max(0, Int((value * Double(binCount)).rounded(.down))))] += 1
        }
        let maxCount = max(1, counts.max()!)
        let yTicks = niceTicks(upTo: Double(maxCount), minimumStep: 1)
        let yMax = max(Double(maxCount), yTicks.last!)
        let barWidth = plotWidth / Double(binCount)
        svg += yAxis(ticks: yTicks, maximum: yMax, format: { String(Int($0)) })
        for (bin, count) in counts.enumerated() where count > 0 {
            let barHeight = Double(count) / yMax * plotHeight
            let low = Double(bin) / Double(binCount)
            svg += "<rect x=\"\(f(left + Double(bin) * barWidth + 1))\" y=\"\(f(top + plotHeight - barHeight))\" "
            svg += "width=\"\(f(barWidth - 2))\" height=\"\(f(barHeight))\" fill=\"#4c8c4a\">"
            svg += "<title>" + String(format: "%.2f–%.2f", low, low + 1 / Double(binCount))
            svg += ": \(count) requests</title></rect>\n"
        }
        for tick in stride(from: 0, through: binCount, by: 4) {
            let x = left + Double(tick) * barWidth
            svg +=
                "<line x1=\"\(f(x))\" y1=\"\(f(top + plotHeight))\" x2=\"\(f(x))\" y2=\"\(f(top + plotHeight + 4))\" "
            svg += "stroke=\"#1d2330\"/>"
            svg += "<text x=\"\(f(x))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">"
            svg += String(format: "%.1f", Double(tick) / Double(binCount)) + "</text>\n"
        }
        svg += axisTitles(x: measure + " (live vs shadow)", y: "requests")
        return svg + "</svg>\n"
    }

    /// The cumulative distributions of live and shadow latencies. The x axis is linear and stops
    /// at the larger p99.5, so that a few outliers do not flatten the curves, unless that p99.5 is
    /// over 20 times the smaller median (timeouts, say): then it is logarithmic and shows all.
    static func latencyCDF(live: [Double], shadow: [Double], pair: PairKey, id: String) -> String {
        var svg = open(id: id, title: "Latency distribution (cumulative), live vs shadow")
        guard !live.isEmpty || !shadow.isEmpty else { return svg + empty("no requests") + "</svg>\n" }
        let cut = max(
            Statistics.quantile(sorted: live, 0.995) ?? 0,
            Statistics.quantile(sorted: shadow, 0.995) ?? 0
        )
        let smallest = min(live.first ?? .infinity, shadow.first ?? .infinity)
        let largest = max(live.last ?? 0, shadow.last ?? 0)
        let median = min(
            Statistics.quantile(sorted: live, 0.5) ?? .infinity,
            Statistics.quantile(sorted: shadow, 0.5) ?? .infinity
        )
        let scale: AxisScale
        var xTitle = "latency (ms)"
        if smallest > 0 && cut > 20 * median {
            scale = .logarithmic(
                low: pow(10, log10(smallest).rounded(.down)),
                high: pow(10, log10(largest).rounded(.up))
            )
            xTitle += ", log scale"
        } else {
            scale = .linear(high: niceTicks(upTo: cut > 0 ? cut : 1).last!)
            if largest > scale.high { xTitle += ", axis cut at p99.5; max \(Format.milliseconds(largest))" }
        }
        svg += yAxis(ticks: [0, 0.25, 0.5, 0.75, 1.0], maximum: 1, format: { String(format: "%.2f", $0) })
        let y99 = top + plotHeight * (1 - 0.99)
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(y99))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y99))\" "
        svg += "stroke=\"#b0b6c0\" stroke-dasharray=\"4 3\"/>"
        svg += "<text x=\"\(f(left + 4))\" y=\"\(f(y99 - 3))\" fill=\"#6b7385\">p99</text>\n"
        for tick in scale.ticks {
            let x = left + scale.position(tick) * plotWidth
            svg += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotHeight + 4))\" "
            svg += "stroke=\"#e3e6eb\"/>"
            svg += "<text x=\"\(f(x))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">"
            svg += "\(String(format: "%g", tick))</text>\n"
        }
        for (values, color) in [(live, HTML.liveColor), (shadow, HTML.shadowColor)] where !values.isEmpty {
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\""
            svg += cdfPoints(values, scale: scale) + "\"/>\n"
        }
        // The legend sits bottom right, where a CDF rising to the right leaves room.
        let legend = [
            (HTML.liveColor, "live \(pair.liveVersion)", live),
            (HTML.shadowColor, "shadow \(pair.shadowVersion)", shadow),
        ]
        let legendX = left + plotWidth - 232
        let legendY = top + plotHeight - 44
        svg += "<rect x=\"\(f(legendX - 8))\" y=\"\(f(legendY - 4))\" width=\"236\" height=\"42\" fill=\"#fff\" "
        svg += "stroke=\"#e3e6eb\"/>\n"
        for (index, item) in legend.enumerated() {
            let y = legendY + 12 + Double(index) * 17
            svg += "<line x1=\"\(f(legendX))\" y1=\"\(f(y - 4))\" x2=\"\(f(legendX + 18))\" y2=\"\(f(y - 4))\" "
            svg += "stroke=\"\(item.0)\" stroke-width=\"3\"/>"
            let p50 = Format.milliseconds(Statistics.quantile(sorted: item.2, 0.5))
            let p99 = Format.milliseconds(Statistics.quantile(sorted: item.2, 0.99))
            svg +=
                "<text x=\"\(f(legendX + 24))\" y=\"\(f(y))\">\(HTML.escape(item.1)): p50 \(p50), p99 \(p99) ms</text>\n"
        }
        svg += axisTitles(x: xTitle, y: "share of requests ≤ x")
        return svg + "</svg>\n"
    }

    /// Bucket widths the agreement-over-time chart chooses from, in milliseconds.
    static let bucketWidths: [Int64] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800,
        604_800,
    ].map { Int64($0) * 1000 }

    /// At most this many buckets across the time range.
    static let maxBuckets: Int64 = 40

    /// Agreement per time bucket (matches / compared requests in it) as a line, one dot per
    /// non-empty bucket with its count in a tooltip, and the pair's overall agreement dashed.
    /// All pairs share `range` (the report's first and last compared record), so their charts
    /// line up; buckets are round widths (1 s … 1 week) in UTC.
    static func agreementOverTime(
        _ timeline: [TimedOutcome],
        range: (first: Int64, last: Int64)?,
        overall: Double?,
        id: String
    ) -> String {
        guard let range, !timeline.isEmpty else {
            return open(id: id, title: "Agreement over time") + empty("no compared requests") + "</svg>\n"
        }
        let span = max(1, range.last - range.first)
        let width = bucketWidths.first { span / $0 < maxBuckets } ?? bucketWidths.last!
        let start = range.first - floorRemainder(range.first, width)
        let count = Int((range.last - start) / width) + 1
        var matched = Array(repeating: 0, count: count)
        var compared = Array(repeating: 0, count: count)
        for outcome in timeline {
            let bucket = min(count - 1, max(0, Int((outcome.milliseconds - start) / width)))
            compared[bucket] += 1
            if outcome.matched { matched[bucket] += 1 }
        }
        var svg = open(id: id, title: "Agreement over time (per \(durationLabel(width)) bucket, UTC)")
        let rates = (0..<count).compactMap { compared[$0] > 0 ? Double(matched[$0]) / Double(compared[$0]) : nil }
        let lowest = rates.min()!
        // The axis starts at a round share below the lowest bucket, so that 99.2 % and 99.8 % do
        // not sit on one line; each start has a round tick step.
        let scales: [(low: Double, step: Double)] = [
            (0.99, 0.002), (0.98, 0.005), (0.95, 0.01), (0.9, 0.02), (0.8, 0.05), (0.5, 0.1), (0, 0.2),
        ]
        let (low, step) = scales.first { $0.low <= lowest - 0.001 } ?? (0, 0.2)
        func y(_ rate: Double) -> Double { top + plotHeight * (1 - (rate - low) / (1 - low)) }
        func x(_ bucket: Int) -> Double { left + (Double(bucket) + 0.5) / Double(count) * plotWidth }
        let ticks = (0...Int(((1 - low) / step).rounded())).map { low + Double($0) * step }
        for tick in ticks {
            svg +=
                "<line x1=\"\(f(left - 4))\" y1=\"\(f(y(tick)))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y(tick)))\" "
            svg += "stroke=\"\(tick == low ? "#1d2330" : "#e3e6eb")\"/>"
            svg += "<text x=\"\(f(left - 7))\" y=\"\(f(y(tick) + 4))\" text-anchor=\"end\">"
            svg += "\(String(format: low >= 0.9 ? "%.1f%%" : "%.0f%%", tick * 100))</text>\n"
        }
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotHeight))\" "
        svg += "stroke=\"#1d2330\"/>\n"
        let labelEvery = max(1, (count + 4) / 5)
        for bucket in stride(from: 0, to: count, by: labelEvery) {
            let edge = left + Double(bucket) / Double(count) * plotWidth
            svg += "<line x1=\"\(f(edge))\" y1=\"\(f(top + plotHeight))\" x2=\"\(f(edge))\" "
            svg += "y2=\"\(f(top + plotHeight + 4))\" stroke=\"#1d2330\"/>"
            svg += "<text x=\"\(f(edge))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">"
            svg += "\(timeLabel(start + Int64(bucket) * width, span: span, width: width))</text>\n"
        }
        if let overall, overall >= low {
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y(overall)))\" x2=\"\(f(left + plotWidth))\" "
            svg += "y2=\"\(f(y(overall)))\" stroke=\"#b0b6c0\" stroke-dasharray=\"4 3\"/>"
            svg += "<text x=\"\(f(left + plotWidth - 4))\" y=\"\(f(y(overall) - 4))\" text-anchor=\"end\" "
            svg += "fill=\"#6b7385\">overall \(Format.percent(overall))</text>\n"
        }
        let filled = (0..<count).filter { compared[$0] > 0 }
        svg += "<polyline fill=\"none\" stroke=\"\(HTML.liveColor)\" stroke-width=\"2\" points=\""
        svg += filled.map { "\(f(x($0))),\(f(y(Double(matched[$0]) / Double(compared[$0]))))" }.joined(separator: " ")
        svg += "\"/>\n"
        for bucket in filled {
            let rate = Double(matched[bucket]) / Double(compared[bucket])
            svg += "<circle cx=\"\(f(x(bucket)))\" cy=\"\(f(y(rate)))\" r=\"3\" fill=\"\(HTML.liveColor)\">"
            svg += "<title>\(timeLabel(start + Int64(bucket) * width, span: span, width: width)): "
            svg += "\(Format.percent(rate)) of \(compared[bucket]) compared</title></circle>\n"
        }
        svg += axisTitles(x: "time (UTC)", y: "agreement")
        return svg + "</svg>\n"
    }

    /// The most points a scatter draws: more would make the page heavy without showing more.
    static let maxScatterPoints = 2000

    /// Live against shadow value per output row, with the y = x diagonal (where agreeing rows
    /// lie). Above `maxScatterPoints` rows, an evenly spaced subset in reading order is drawn.
    static func scatter(_ points: [ScatterPoint], rows: Int, pair: PairKey, id: String) -> String {
        let shown: [ScatterPoint] =
            points.count <= maxScatterPoints
            ? points : (0..<maxScatterPoints).map { points[$0 * points.count / maxScatterPoints] }
        var title = "Live vs shadow output per row"
        if shown.count < rows { title += " (\(shown.count) of \(rows) rows)" }
        var svg = open(id: id, title: title)
        guard !shown.isEmpty else { return svg + empty("no scalar outputs") + "</svg>\n" }
        var lowest = shown.map { min($0.live, $0.shadow) }.min()!
        var highest = shown.map { max($0.live, $0.shadow) }.max()!
        if highest <= lowest {
            lowest -= 0.5
            highest += 0.5
        }
        let ticks = rangeTicks(from: lowest, to: highest)
        let low = ticks.first!
        let high = ticks.last!
        // A square plot: the same scale on both axes, so the diagonal is at 45°.
        let side = plotHeight
        func x(_ value: Double) -> Double { left + (value - low) / (high - low) * side }
        func y(_ value: Double) -> Double { top + plotHeight - (value - low) / (high - low) * side }
        for tick in ticks {
            let label = String(format: "%g", Format.significant(tick, 4))
            svg += "<line x1=\"\(f(left - 4))\" y1=\"\(f(y(tick)))\" x2=\"\(f(left + side))\" y2=\"\(f(y(tick)))\" "
            svg += "stroke=\"#e3e6eb\"/><text x=\"\(f(left - 7))\" y=\"\(f(y(tick) + 4))\" text-anchor=\"end\">"
            svg += "\(label)</text>\n"
            svg += "<line x1=\"\(f(x(tick)))\" y1=\"\(f(top))\" x2=\"\(f(x(tick)))\" y2=\"\(f(top + plotHeight + 4))\" "
            svg += "stroke=\"#e3e6eb\"/><text x=\"\(f(x(tick)))\" y=\"\(f(top + plotHeight + 16))\" "
            svg += "text-anchor=\"middle\">\(label)</text>\n"
        }
        svg += "<line x1=\"\(f(x(low)))\" y1=\"\(f(y(low)))\" x2=\"\(f(x(high)))\" y2=\"\(f(y(high)))\" "
        svg += "stroke=\"#b0b6c0\" stroke-dasharray=\"4 3\"/>\n<g fill=\"\(HTML.shadowColor)\" fill-opacity=\"0.55\">\n"
        for point in shown {
            svg += "<circle cx=\"\(f(x(point.live)))\" cy=\"\(f(y(point.shadow)))\" r=\"2.2\"/>\n"
        }
        svg +=
            "</g>\n<text x=\"\(f(left + side + 12))\" y=\"\(f(top + 14))\" fill=\"#6b7385\">dashed: shadow = live</text>\n"
        svg += axisTitles(x: "live \(pair.liveVersion) output", y: "shadow \(pair.shadowVersion) output")
        return svg + "</svg>\n"
    }

    /// Round ticks (1, 2 or 5 × 10ⁿ apart, about five) from at or below `low` to at or above `high`.
    static func rangeTicks(from low: Double, to high: Double) -> [Double] {
        let raw = (high - low) / 5
        let magnitude = pow(10, log10(raw).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        let first = (low / step).rounded(.down)
        let last = (high / step).rounded(.up)
        return stride(from: first, through: last, by: 1).map { $0 * step }
    }

    /// `5 min`, `30 s`, `1 h`, `1 d`.
    static func durationLabel(_ milliseconds: Int64) -> String {
        let seconds = milliseconds / 1000
        if seconds % 86_400 == 0 { return "\(seconds / 86_400) d" }
        if seconds % 3600 == 0 { return "\(seconds / 3600) h" }
        if seconds % 60 == 0 { return "\(seconds / 60) min" }
        return "\(seconds) s"
    }

    /// A bucket's start in UTC: `12:05:30` below minute buckets, `12:05` within two days,
    /// `05-01 12:05` beyond.
    static func timeLabel(_ milliseconds: Int64, span: Int64, width: Int64) -> String {
        let text = RFC3339.format(millisecondsSinceEpoch: milliseconds)  // 2025-05-01T12:05:30.000Z
        let characters = Array(text)
        let clock = String(characters[11..<(width < 60_000 ? 19 : 16)])
        return span > 2 * 86_400_000 ? String(characters[5..<10]) + " " + clock : clock
    }

    /// A chart's x axis: position 0…1 of a value.
    enum AxisScale {
        case linear(high: Double)
        case logarithmic(low: Double, high: Double)

        var high: Double {
            switch self {
            case .linear(let high), .logarithmic(_, let high): high
            }
        }

        func position(_ value: Double) -> Double {
            switch self {
            case .linear(let high): min(1, max(0, value / high))
            case .logarithmic(let low, let high):
                min(1, max(0, (log10(max(value, low)) - log10(low)) / (log10(high) - log10(low))))
            }
        }

        var ticks: [Double] {
            switch self {
            case .linear(let high): return niceTicks(upTo: high)
            case .logarithmic(let low, let high):
                let decades = Int((log10(high) - log10(low)).rounded())
                let multiples: [Double] = decades <= 3 ? [1, 2, 5] : [1]
                var ticks: [Double] = []
                for decade in 0...decades {
                    for multiple in multiples {
                        let tick = low * pow(10, Double(decade)) * multiple
                        if tick <= high * 1.000001 { ticks.append(tick) }
                    }
                }
                return ticks
            }
        }
    }

    /// Step-curve points of the empirical CDF, at most about 400, clipped at the axis end.
    private static func cdfPoints(_ sorted: [Double], scale: AxisScale) -> String {
        let n = sorted.count
        let step = max(1, n / 400)
        var points: [String] = ["\(f(left)),\(f(top + plotHeight))"]
        var previousY = 0.0
        var index = 0
        while index < n {
            let last = min(n - 1, index + step - 1)
            let x = left + scale.position(sorted[last]) * plotWidth
            let share = Double(last + 1) / Double(n)
            points.append("\(f(x)),\(f(top + plotHeight * (1 - previousY)))")
            points.append("\(f(x)),\(f(top + plotHeight * (1 - share)))")
            previousY = share
            if sorted[last] > scale.high { break }
            index = last + 1
        }
        if sorted.last! <= scale.high { points.append("\(f(left + plotWidth)),\(f(top))") }
        return points.joined(separator: " ")
    }

    private static func open(id: String, title: String) -> String {
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"\(id)\" width=\"\(Int(width))\" "
        svg += "height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" "
        svg += "aria-label=\"\(HTML.escape(title))\">\n"
        svg += "<text x=\"\(f(left))\" y=\"18\" style=\"font-size:12px;font-weight:600\">\(HTML.escape(title))</text>\n"
        return svg
    }

    private static func empty(_ message: String) -> String {
        "<text x=\"\(f(width / 2))\" y=\"\(f(height / 2))\" text-anchor=\"middle\" fill=\"#6b7385\">\(message)</text>\n"
    }

    private static func yAxis(ticks: [Double], maximum: Double, format: (Double) -> String) -> String {
        var svg = ""
        for tick in ticks {
            let y = top + plotHeight * (1 - tick / maximum)
            svg += "<line x1=\"\(f(left - 4))\" y1=\"\(f(y))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y))\" "
            svg += "stroke=\"\(tick == 0 ? "#1d2330" : "#e3e6eb")\"/>"
            svg += "<text x=\"\(f(left - 7))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(format(tick))</text>\n"
        }
        svg +=
            "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotHeight))\" stroke=\"#1d2330\"/>\n"
        return svg
    }

    private static func axisTitles(x: String, y: String) -> String {
        var svg = "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 10))\" text-anchor=\"middle\">"
        svg += "\(HTML.escape(x))</text>\n"
        svg += "<text transform=\"translate(14 \(f(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">"
        svg += "\(HTML.escape(y))</text>\n"
        return svg
    }

    /// `10⁻³` for -3.
    private static func exponentLabel(_ exponent: Int) -> String {
        let superscripts: [Character: Character] = [
            "-": "⁻", "0": "⁰", "1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵", "6": "⁶", "7": "⁷", "8": "⁸",
            "9": "⁹",
        ]
        return "10" + String(String(exponent).map { superscripts[$0]! })
    }

    /// 0 and about five round steps (1, 2 or 5 × 10ⁿ) up to at least `maximum`.
    static func niceTicks(upTo maximum: Double, minimumStep: Double = 0) -> [Double] {
        let raw = max(maximum / 5, minimumStep)
        let magnitude = pow(10, log10(raw).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var ticks: [Double] = [0]
        while ticks.last! < maximum - step * 1e-9 { ticks.append(Double(ticks.count) * step) }
        return ticks
    }

    private static func f(_ value: Double) -> String { String(format: "%.1f", value) }
}

/// Euclidean remainder: never negative for a positive divisor.
private func floorRemainder(_ lhs: Int64, _ rhs: Int64) -> Int64 {
    let remainder = lhs % rhs
    return remainder < 0 ? remainder + rhs : remainder
}
