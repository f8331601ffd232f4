import Models

@testable import Compare

/// A record with the members the report reads; the rest fixed.
func record(
    model: String = "churn",
    live: String = "v1",
    shadow: String,
    outcome: Comparison.Outcome,
    diff: Double?,
    flip: Bool = false,
    labels: ([Int], [Int])? = nil,
    latency: (Double, Double),
    shadowStatus: Int = 200,
    second: Int = 0
) -> ComparisonRecord {
    ComparisonRecord(
        timestamp: "2025-05-01T12:00:\(second < 10 ? "0" : "")\(second).000Z",
        requestID: "r\(second)",
        model: model,
        route: model,
        live: .init(version: live, status: 200, latencyMilliseconds: latency.0, output: [0.5]),
        shadow: .init(
            version: shadow,
            status: shadowStatus,
            latencyMilliseconds: latency.1,
            output: outcome == .error ? nil : [0.5]
        ),
        outcome: outcome,
        maxAbsDiff: diff,
        flip: flip,
        liveLabels: labels?.0,
        shadowLabels: outcome == .error ? nil : labels?.1,
        reason: outcome == .error ? "shadow status 500" : nil
    )
}

/// Two models: churn with a noise pair (v1→v1) and a candidate (v1→v2); fraud, a regression
/// model without labels (v3→v4).
func sampleRecords() -> [ComparisonRecord] {
    var records: [ComparisonRecord] = []
    for index in 0..<5 {
        records.append(
            record(
                shadow: "v1",
                outcome: .match,
                diff: 0,
                flip: index == 4,
                labels: ([1], [index == 4 ? 0 : 1]),
                latency: (10, 11),
                second: index
            )
        )
    }
    records += [
        record(shadow: "v2", outcome: .match, diff: 0, labels: ([1], [1]), latency: (10, 12), second: 10),
        record(
            shadow: "v2",
            outcome: .mismatch,
            diff: 0.5,
            flip: true,
            labels: ([1], [0]),
            latency: (20, 30),
            second: 11
        ),
        record(shadow: "v2", outcome: .match, diff: 0.0001, labels: ([0], [0]), latency: (30, 20), second: 12),
        record(
            shadow: "v2",
            outcome: .error,
            diff: nil,
            labels: ([0], []),
            latency: (40, 50),
            shadowStatus: 500,
            second: 13
        ),
        record(shadow: "v2", outcome: .mismatch, diff: 0.2, labels: ([0, 1], [0, 1]), latency: (50, 60), second: 14),
        record(model: "fraud", live: "v3", shadow: "v4", outcome: .match, diff: 0.001, latency: (2, 3), second: 20),
    ]
    return records
}

/// The sample records' report; `minRequests` 1 by default, so that every pair has enough data.
func sampleReport(minRequests: Int = 1) -> Report {
    var builder = ReportBuilder()
    for record in sampleRecords() { builder.add(record) }
    return builder.build(minRequests: minRequests)
}

/// Checks that markup is well-formed XML-ish: tags balance and nest, attributes are quoted,
/// entities are XML's (or numeric). Returns the first problem, or nil.
func wellFormednessProblem(_ markup: String) -> String? {
    let bytes = Array(markup.utf8)
    var stack: [String] = []
    var index = 0
    func isNameByte(_ byte: UInt8) -> Bool {
        (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
            || byte == 0x2D || byte == 0x3A || byte == 0x5F
    }
    while index < bytes.count {
        let byte = bytes[index]
        if byte == UInt8(ascii: "&") {
            guard let end = bytes[index...].firstIndex(of: UInt8(ascii: ";")), end - index <= 10 else {
                return "bare '&' at byte \(index)"
            }
            let entity = String(decoding: bytes[(index + 1)..<end], as: UTF8.self)
            let known = ["amp", "lt", "gt", "quot", "apos"].contains(entity)
            let numeric = entity.hasPrefix("#") && entity.dropFirst().allSatisfy(\.isNumber) && entity.count > 1
            guard known || numeric else { return "unknown entity '&\(entity);' at byte \(index)" }
            index = end + 1
            continue
        }
        guard byte == UInt8(ascii: "<") else {
            if byte == UInt8(ascii: ">") { return "bare '>' at byte \(index)" }
            index += 1
            continue
        }
        if bytes[index...].starts(with: Array("<!--".utf8)) {
            guard let end = find("-->", in: bytes, from: index) else { return "unclosed comment" }
            index = end + 3
            continue
        }
        if bytes[index...].starts(with: Array("<!".utf8)) {
            guard let end = bytes[index...].firstIndex(of: UInt8(ascii: ">")) else { return "unclosed declaration" }
            index = end + 1
            continue
        }
        // A tag: find its end, honouring quoted attribute values.
        var cursor = index + 1
        let closing = bytes[cursor] == UInt8(ascii: "/")
        if closing { cursor += 1 }
        let nameStart = cursor
        while cursor < bytes.count && isNameByte(bytes[cursor]) { cursor += 1 }
        guard cursor > nameStart else { return "'<' without a tag name at byte \(index)" }
        let name = String(decoding: bytes[nameStart..<cursor], as: UTF8.self)
        var selfClosing = false
        while true {
            guard cursor < bytes.count else { return "unterminated tag <\(name) at byte \(index)" }
            let current = bytes[cursor]
            if current == UInt8(ascii: ">") { break }
            if current == UInt8(ascii: "/") && cursor + 1 < bytes.count && bytes[cursor + 1] == UInt8(ascii: ">") {
                selfClosing = true
                cursor += 1
                break
            }
            if current == UInt8(ascii: "=") {
                cursor += 1
                guard cursor < bytes.count, bytes[cursor] == UInt8(ascii: "\"") else {
                    return "unquoted attribute value in <\(name) at byte \(cursor)"
                }
                guard let end = bytes[(cursor + 1)...].firstIndex(of: UInt8(ascii: "\"")) else {
                    return "unterminated attribute value in <\(name)"
                }
                if bytes[(cursor + 1)..<end].contains(UInt8(ascii: "<")) { return "'<' in an attribute of <\(name)" }
                cursor = end
            }
            cursor += 1
        }
        if closing {
            guard let open = stack.popLast() else { return "</\(name)> closes nothing" }
            guard open == name else { return "</\(name)> closes <\(open)>" }
        } else if !selfClosing {
            stack.append(name)
        }
        index = cursor + 1
        // Style text may hold '>' (CSS selectors): skip to its end tag.
        if !closing && !selfClosing && (name == "style" || name == "script") {
            guard let end = find("</\(name)>", in: bytes, from: index) else { return "unclosed <\(name)>" }
            index = end
        }
    }
    return stack.isEmpty ? nil : "unclosed <\(stack.last!)>"
}

private func find(_ needle: String, in bytes: [UInt8], from start: Int) -> Int? {
    let pattern = Array(needle.utf8)
    guard bytes.count >= pattern.count else { return nil }
    var index = start
    while index + pattern.count <= bytes.count {
        if bytes[index..<(index + pattern.count)].elementsEqual(pattern) { return index }
        index += 1
    }
    return nil
}
