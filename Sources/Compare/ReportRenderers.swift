import Models

/// The output formats of `switchyard report`.
public enum ReportFormat: String, Sendable, CaseIterable {
    case table, markdown, json, html
}

extension Report {
    /// The report in `format`, as text.
    public func rendered(as format: ReportFormat) -> String {
        switch format {
        case .table: return renderTable()
        case .markdown: return renderMarkdown()
        case .json: return renderJSON()
        case .html: return renderHTML()
        }
    }

    // MARK: JSON

    /// SPEC §9 "Report JSON", pretty-printed. Numbers are rounded to 6 significant digits;
    /// unknown values (no compared record, no labels) are null.
    ///
    /// At the top level, before `pairs`: `records` (records read), `time_range` (`first` and
    /// `last` `ts`, or null without records), `min_requests`, and `net_churn` (see `NetChurn`):
    /// `rate`, `churn` (`flips`, `requests`, `rate`, `low`, `high`) and `direction`
    /// (`to_positive`, `to_negative`, `rows`, `rate`; null without a binary classifier pair).
    ///
    /// Extra members per pair: `latency_ms.delta` (shadow − live) and `latency_ms.live_total`
    /// (the live end-to-end `total_ms`; p50 and p99 null for logs without it), `matches`,
    /// `mismatches`, `insufficient_data` (fewer than `min_requests` compared requests),
    /// `noise_floor` (whether this is the shadow of the live version itself) and `noise` (the
    /// noise pair beside this one).
    public func renderJSON() -> String {
        var text = ""
        PrettyJSON.write(json, to: &text, indent: 0)
        return text + "\n"
    }

    /// The JSON report as a value.
    public var json: JSON {
        func number(_ value: Double?) -> JSON { value.map { .number(Format.significant($0)) } ?? .null }
        let timeRange: JSON =
            if let firstTimestamp, let lastTimestamp {
                ["first": .string(firstTimestamp), "last": .string(lastTimestamp)]
            } else {
                .null
            }
        let churn = netChurn.churn
        let direction: JSON =
            netChurn.binaryRows == 0
            ? .null
            : [
                "to_positive": .number(Double(netChurn.toPositive)),
                "to_negative": .number(Double(netChurn.toNegative)),
                "rows": .number(Double(netChurn.binaryRows)), "rate": number(netChurn.direction),
            ]
        return [
            "records": .number(Double(records)),
            "time_range": timeRange,
            "min_requests": .number(Double(minRequests)),
            "net_churn": [
                "rate": number(netChurn.rate),
                "churn": [
                    "flips": .number(Double(churn?.successes ?? 0)), "requests": .number(Double(churn?.trials ?? 0)),
                    "rate": number(churn?.rate), "low": number(churn?.low), "high": number(churn?.high),
                ],
                "direction": direction,
            ],
            "pairs": .array(pairs.map(\.json)),
        ]
    }
}

extension PairSummary {
    var json: JSON {
        func number(_ value: Double?) -> JSON { value.map { .number(Format.significant($0)) } ?? .null }
        func proportion(_ value: Proportion?) -> JSON {
            ["rate": number(value?.rate), "low": number(value?.low), "high": number(value?.high)]
        }
        var labels = JSONObject()
        for live in labelMatrix.keys.sorted() {
            var row = JSONObject()
            for shadow in labelMatrix[live]!.keys.sorted() {
                row.set(String(shadow), .number(Double(labelMatrix[live]![shadow]!)))
            }
            labels.set(String(live), .object(row))
        }
        let noiseJSON: JSON =
            noise.map {
                [
                    "version": .string($0.version), "requests": .number(Double($0.requests)),
                    "agreement": number($0.agreement), "churn": number($0.churn), "net_churn": number($0.netChurn),
                ]
            } ?? .null
        var object: JSONObject = [
            "model": .string(key.model),
            "live_version": .string(key.liveVersion),
            "shadow_version": .string(key.shadowVersion),
            "requests": .number(Double(requests)),
            "agreement": proportion(agreement),
            "churn": proportion(churn),
            "abs_diff": [
                "mean": number(absDiff?.mean), "p50": number(absDiff?.p50), "p99": number(absDiff?.p99),
                "max": number(absDiff?.max),
            ],
            "labels": .object(labels),
            "latency_ms": [
                "live": ["p50": number(liveLatency?.p50), "p99": number(liveLatency?.p99)],
                "shadow": ["p50": number(shadowLatency?.p50), "p99": number(shadowLatency?.p99)],
                "delta": ["p50": number(latencyP50DeltaMilliseconds), "p99": number(latencyP99DeltaMilliseconds)],
                "live_total": ["p50": number(liveTotalLatency?.p50), "p99": number(liveTotalLatency?.p99)],
            ],
            "errors": ["live": .number(Double(liveErrors)), "shadow": .number(Double(shadowErrors))],
            "matches": .number(Double(matches)),
            "mismatches": .number(Double(mismatches)),
            "insufficient_data": .bool(insufficientData),
            "noise_floor": .bool(key.isNoiseFloor),
            "noise": noiseJSON,
        ]
        if let text { object.set("text", text.json) }
        return .object(object)
    }
}

/// Indented JSON; an array or object holding only scalars stays on one line.
enum PrettyJSON {
    static func write(_ value: JSON, to text: inout String, indent: Int) {
        switch value {
        case .array(let elements):
            if elements.isEmpty {
                text += "[]"
            } else if elements.allSatisfy(\.isScalar) {
                text += "[" + elements.map(\.description).joined(separator: ", ") + "]"
            } else {
                text += "[\n"
                for (index, element) in elements.enumerated() {
                    text += String(repeating: " ", count: indent + 2)
                    write(element, to: &text, indent: indent + 2)
                    text += index == elements.count - 1 ? "\n" : ",\n"
                }
                text += String(repeating: " ", count: indent) + "]"
            }
        case .object(let object):
            if object.members.isEmpty {
                text += "{}"
            } else if object.members.allSatisfy(\.value.isScalar) {
                text +=
                    "{"
                    + object.members.map { key(of: $0.key) + ": " + $0.value.description }
                    .joined(separator: ", ") + "}"
            } else {
                text += "{\n"
                for (index, member) in object.members.enumerated() {
                    text += String(repeating: " ", count: indent + 2) + key(of: member.key) + ": "
                    write(member.value, to: &text, indent: indent + 2)
                    text += index == object.members.count - 1 ? "\n" : ",\n"
                }
                text += String(repeating: " ", count: indent) + "}"
            }
        default:
            text += value.description
        }
    }

    private static func key(of name: String) -> String { JSON.string(name).description }
}

extension JSON {
    fileprivate var isScalar: Bool {
        switch self {
        case .array, .object: false
        default: true
        }
    }
}

// MARK: Table and Markdown

/// A table with a title, a header row, and a right-aligned flag per column.
struct TextTable {
    var title: String
    var header: [String]
    var rightAligned: [Bool]
    var rows: [[String]] = []
    /// Lines printed under the table.
    var notes: [String] = []

    /// Columns padded to their widest cell, two spaces apart, a rule under the header.
    func plainText() -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (column, cell) in row.enumerated() { widths[column] = max(widths[column], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var parts: [String] = []
            for (column, cell) in cells.enumerated() {
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                parts.append(rightAligned[column] ? padding + cell : cell + padding)
            }
            return trimmedRight(parts.joined(separator: "  "))
        }
        var lines = [title, line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
        lines += rows.map(line)
        lines += notes
        return lines.joined(separator: "\n") + "\n"
    }

    /// A GitHub-flavoured Markdown table under a `###` heading.
    func markdown() -> String {
        func line(_ cells: [String]) -> String {
            "| " + cells.map { $0.replacingPipes() }.joined(separator: " | ") + " |"
        }
        var lines = ["### " + title, "", line(header)]
        lines.append("|" + rightAligned.map { $0 ? " ---: |" : " --- |" }.joined())
        lines += rows.map(line)
        if !notes.isEmpty { lines += [""] + notes }
        return lines.joined(separator: "\n") + "\n"
    }

    private func trimmedRight(_ text: String) -> String {
        var text = text
        while text.last == " " { text.removeLast() }
        return text
    }
}

extension String {
    fileprivate func replacingPipes() -> String {
        var result = ""
        for character in self {
            if character == "|" { result += "\\|" } else { result.append(character) }
        }
        return result
    }
}

extension PairSummary {
    /// The shadow version as shown in tables: `v1 (noise)` for the noise pair.
    var shadowLabel: String { key.isNoiseFloor ? key.shadowVersion + " (noise)" : key.shadowVersion }
}

extension Report {
    /// The tables shared by the table, markdown and HTML formats.
    var tables: [TextTable] {
        var agreementTable = TextTable(
            title: "Agreement and churn (95% Wilson intervals)",
            header: [
                "model", "live", "shadow", "requests", "sample", "agreement", "95% CI", "churn", "95% CI",
                "noise churn", "net churn", "live errors", "shadow errors",
            ],
            rightAligned: [false, false, false, true, false, true, true, true, true, true, true, true, true]
        )
        var differenceTable = TextTable(
            title: "Absolute difference (per request max) and latency (ms)",
            header: [
                "model", "live", "shadow", "diff mean", "diff p50", "diff p99", "diff max", "live p50", "live p99",
                "shadow p50", "shadow p99", "Δ p50", "Δ p99",
            ],
            rightAligned: [false, false, false] + Array(repeating: true, count: 10)
        )
        for pair in pairs {
            agreementTable.rows.append([
                pair.key.model, pair.key.liveVersion, pair.shadowLabel, String(pair.requests), pair.sampleVerdict,
                Format.percent(pair.agreement?.rate), Format.interval(pair.agreement), Format.percent(pair.churn?.rate),
                Format.interval(pair.churn), pair.noise.map { Format.percent($0.churn) } ?? "-",
                pair.key.isNoiseFloor ? "-" : Format.percent(pair.netChurn), String(pair.liveErrors),
                String(pair.shadowErrors),
            ])
            differenceTable.rows.append([
                pair.key.model, pair.key.liveVersion, pair.shadowLabel, Format.difference(pair.absDiff?.mean),
                Format.difference(pair.absDiff?.p50), Format.difference(pair.absDiff?.p99),
                Format.difference(pair.absDiff?.max), Format.milliseconds(pair.liveLatency?.p50),
                Format.milliseconds(pair.liveLatency?.p99), Format.milliseconds(pair.shadowLatency?.p50),
                Format.milliseconds(pair.shadowLatency?.p99), Format.delta(pair.latencyP50DeltaMilliseconds),
                Format.delta(pair.latencyP99DeltaMilliseconds),
            ])
        }
        agreementTable.notes = [sampleNote]
        differenceTable.notes = [Report.latencyNote]
        var tables = [agreementTable, differenceTable] + textTables
        for pair in pairs where !pair.labelMatrix.isEmpty {
            tables.append(pair.labelTable)
        }
        return tables
    }

    /// Says what "insufficient data" means in the `sample` column.
    var sampleNote: String {
        "sample: \"insufficient data\" when a pair has fewer than \(minRequests) compared requests "
            + "(--min-requests); its figures are shown, but its gates neither pass nor fail."
    }

    /// Says which latency the tables show.
    static let latencyNote =
        "latency: each version's own time, from being asked to its answer (an embedded model's evaluation), "
        + "so live and shadow compare like with like; the live end-to-end time is total_ms in the log."

    /// The report-wide churn in one line, or nil without labelled requests.
    var netChurnLine: String? {
        guard let churn = netChurn.churn else { return nil }
        var text =
            "Net churn over all candidate pairs: \(Format.percent(netChurn.rate)) (churn "
            + "\(Format.percent(churn.rate)) \(Format.interval(churn)) of \(churn.trials) labelled requests, "
            + "less each pair's noise floor)"
        if let direction = netChurn.direction {
            text +=
                "; direction \(Format.signedPercent(direction)) of rows toward class 1 "
                + "(0→1: \(netChurn.toPositive), 1→0: \(netChurn.toNegative), of \(netChurn.binaryRows) rows)"
        }
        return text
    }

    /// One line: records, pairs, time span and skipped lines.
    var headline: String {
        var text =
            "\(records) comparison record\(records == 1 ? "" : "s"), \(pairs.count) pair\(pairs.count == 1 ? "" : "s")"
        if let firstTimestamp, let lastTimestamp { text += ", \(firstTimestamp) – \(lastTimestamp)" }
        if !badLines.isEmpty { text += ", \(badLines.count) unreadable line\(badLines.count == 1 ? "" : "s") skipped" }
        return text
    }

    /// Aligned plain text for a terminal.
    public func renderTable() -> String {
        var text = "Switchyard comparison report: " + headline + "\n"
        if let netChurnLine { text += netChurnLine + "\n" }
        for table in tables { text += "\n" + table.plainText() }
        return text
    }

    /// GitHub-flavoured Markdown.
    public func renderMarkdown() -> String {
        var text = "## Switchyard comparison report\n\n" + headline + "\n"
        if let netChurnLine { text += "\n" + netChurnLine + "\n" }
        for table in tables { text += "\n" + table.markdown() }
        return text
    }
}

extension PairSummary {
    /// Rows: live class; columns: shadow class; cells: rows of output.
    var labelTable: TextTable {
        let classes = self.classes
        var table = TextTable(
            title: "Labels \(key.model)/\(key.liveVersion)→\(shadowLabel) (rows: live class, columns: shadow class)",
            header: ["live \\ shadow"] + classes.map(String.init),
            rightAligned: [false] + classes.map { _ in true }
        )
        for live in classes {
            let total = labelMatrix[live]?.values.reduce(0, +) ?? 0
            table.rows.append(
                [String(live)] + classes.map { Self.countWithShare(labelMatrix[live]?[$0] ?? 0, of: total) }
            )
        }
        table.notes = ["cells: rows of output, and in parentheses their share of the live class's rows."]
        return table
    }

    /// `12 (80.0%)`; the bare count when the row is empty.
    static func countWithShare(_ count: Int, of total: Int) -> String {
        guard total > 0 else { return String(count) }
        return "\(count) (" + String(format: "%.1f%%", Double(count) / Double(total) * 100) + ")"
    }

    /// `ok`, or `insufficient data` below the minimum sample.
    var sampleVerdict: String { insufficientData ? "insufficient data" : "ok" }
}
