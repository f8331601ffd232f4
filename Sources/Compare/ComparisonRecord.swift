import Models

/// One line of the comparison log (SPEC §6), as written by the sidecar and read by the report.
///
/// ```json
/// {"ts":"2025-05-01T12:00:00.123Z","request_id":"r1","model":"churn","route":"churn",
///  "live":{"version":"v1","status":200,"latency_ms":3.2,"total_ms":3.4,"output":[0.8]},
///  "shadow":{"version":"v2","status":200,"latency_ms":4.1,"output":[0.3]},
///  "outcome":"mismatch","max_abs_diff":0.5,"flip":true,"live_label":1,"shadow_label":0}
/// ```
/// `live_label` and `shadow_label` are present for classifier outputs: a number for a
/// one-row output, an array for several rows. `max_abs_diff` is null for an error or a shape
/// difference. A `reason` member (a string) says why, for those outcomes. Readers ignore
/// members they do not know. Each side's `latency_ms` is that version's own time, from being
/// asked to its answer, so live and shadow compare like with like; the live side's `total_ms`
/// is the end-to-end time its client saw (absent from older logs).
///
/// A record of two OpenAI-compatible answers (SPEC §14, `compareLLM`) has `output` null on both
/// sides, and carries `text` (see `TextFigures`; null for an `error` outcome) and, on each side
/// that parsed, the answer (see `LLMSide`) and `ttft_ms`:
/// ```json
/// {..., "live":{"version":"v7","status":200,"latency_ms":812.5,"output":null,"text":"Paris.",
///  "finish_reason":"stop","tool_calls":[],"usage":{"prompt_tokens":12,"completion_tokens":3},
///  "ttft_ms":95.2}, ..., "outcome":"match","max_abs_diff":0,"flip":false,
///  "text":{"exact":true,"normalized":true,"similarity":1,"finish_reason_agrees":true,
///  "tool_calls_agree":true}}
/// ```
public struct ComparisonRecord: Sendable, Hashable {
    /// What the log keeps of one side's OpenAI-compatible answer.
    public struct LLMSide: Sendable, Hashable {
        /// The answer's text, cut to `maxTextBytes` of UTF-8 at a character boundary; nil for an
        /// embeddings answer.
        public var text: String?
        /// Whether `text` was cut; written as `"truncated": true` only then.
        public var truncated: Bool
        public var finishReason: String?
        /// Tool call function names, in order.
        public var toolCalls: [String]
        /// Written as `usage: {"prompt_tokens", "completion_tokens"}`.
        public var promptTokens: Int?
        public var completionTokens: Int?
        /// An embeddings answer's vector count (the vectors are not logged); nil otherwise.
        public var embeddings: Int?

        /// The most of a text the log keeps, in UTF-8 bytes (SPEC §14: 4 KiB).
        public static let maxTextBytes = 4096

        public init(
            text: String?,
            truncated: Bool = false,
            finishReason: String? = nil,
            toolCalls: [String] = [],
            promptTokens: Int? = nil,
            completionTokens: Int? = nil,
            embeddings: Int? = nil
        ) {
            self.text = text
            self.truncated = truncated
            self.finishReason = finishReason
            self.toolCalls = toolCalls
            self.promptTokens = promptTokens
            self.completionTokens = completionTokens
            self.embeddings = embeddings
        }

        /// What the log keeps of `answer`: its text cut to `maxTextBytes`.
        public init(_ answer: LLMAnswer) {
            if let embeddings = answer.embeddings {
                self.init(
                    text: nil,
                    promptTokens: answer.promptTokens,
                    completionTokens: answer.completionTokens,
                    embeddings: embeddings.count
                )
            } else {
                let (text, truncated) = Self.cut(answer.text, toBytes: Self.maxTextBytes)
                self.init(
                    text: text,
                    truncated: truncated,
                    finishReason: answer.finishReason,
                    toolCalls: answer.toolCalls,
                    promptTokens: answer.promptTokens,
                    completionTokens: answer.completionTokens
                )
            }
        }

        /// The longest prefix of `text` of at most `limit` UTF-8 bytes that ends on a scalar
        /// boundary, and whether it is shorter than `text`.
        public static func cut(_ text: String, toBytes limit: Int) -> (String, Bool) {
            let utf8 = text.utf8
            guard utf8.count > limit else { return (text, false) }
            var end = utf8.index(utf8.startIndex, offsetBy: limit)
            // Back up over continuation bytes (10xxxxxx) to the start of the cut scalar.
            while end > utf8.startIndex, utf8[end] & 0xC0 == 0x80 { end = utf8.index(before: end) }
            return (String(decoding: utf8[utf8.startIndex..<end], as: UTF8.self), true)
        }
    }

    /// The record's `text` member: the figures of one LLM comparison.
    public struct TextFigures: Sendable, Hashable {
        /// Nil for embeddings (they are written with `cosine` only).
        public var exact: Bool?
        public var normalized: Bool?
        /// Token F1; for embeddings the lowest cosine (written `cosine`).
        public var similarity: Double
        public var finishReasonAgrees: Bool?
        public var toolCallsAgree: Bool?
        public var isEmbedding: Bool

        public init(
            exact: Bool?,
            normalized: Bool?,
            similarity: Double,
            finishReasonAgrees: Bool?,
            toolCallsAgree: Bool?,
            isEmbedding: Bool = false
        ) {
            self.exact = exact
            self.normalized = normalized
            self.similarity = similarity
            self.finishReasonAgrees = finishReasonAgrees
            self.toolCallsAgree = toolCallsAgree
            self.isEmbedding = isEmbedding
        }

        /// The figures of a text comparison.
        public init(_ text: TextComparison) {
            if text.isEmbedding {
                self.init(
                    exact: nil,
                    normalized: nil,
                    similarity: text.similarity,
                    finishReasonAgrees: nil,
                    toolCallsAgree: nil,
                    isEmbedding: true
                )
            } else {
                self.init(
                    exact: text.exact,
                    normalized: text.normalized,
                    similarity: text.similarity,
                    finishReasonAgrees: text.finishReasonAgrees,
                    toolCallsAgree: text.toolCallsAgree
                )
            }
        }
    }

    public struct Side: Sendable, Hashable {
        public var version: String
        public var status: Int
        /// `latency_ms`: the version's own time, from being asked to its answer (see
        /// `ResponseSide.latencyMilliseconds`). Logs written before `total_ms` existed hold the
        /// live end-to-end time here.
        public var latencyMilliseconds: Double
        /// `total_ms`, live side only: the end-to-end time the client saw, arrival to answer.
        public var totalMilliseconds: Double?
        /// The extracted output; nil (JSON null) for a side that failed, and for LLM answers.
        public var output: JSON?
        /// An LLM answer as logged; nil for a side that failed and for other comparisons.
        public var llm: LLMSide?
        /// `ttft_ms`: an LLM answer's time to first token (`ResponseSide.firstTokenMilliseconds`).
        public var firstTokenMilliseconds: Double?

        public init(
            version: String,
            status: Int,
            latencyMilliseconds: Double,
            totalMilliseconds: Double? = nil,
            output: JSON?,
            llm: LLMSide? = nil,
            firstTokenMilliseconds: Double? = nil
        ) {
            self.version = version
            self.status = status
            self.latencyMilliseconds = latencyMilliseconds
            self.totalMilliseconds = totalMilliseconds
            self.output = output
            self.llm = llm
            self.firstTokenMilliseconds = firstTokenMilliseconds
        }

        /// Whether the status is 2xx.
        public var isSuccess: Bool { (200...299).contains(status) }
    }

    /// RFC 3339 UTC time with milliseconds, e.g. `2025-05-01T12:00:00.123Z`.
    public var timestamp: String
    public var requestID: String
    public var model: String
    public var route: String
    public var live: Side
    public var shadow: Side
    public var outcome: Comparison.Outcome
    public var maxAbsDiff: Double?
    public var flip: Bool
    /// One class per row; nil when the output has no labels.
    public var liveLabels: [Int]?
    public var shadowLabels: [Int]?
    /// Why an `error` or a shape `mismatch`; written as `reason`.
    public var reason: String?
    /// A machine-readable cause of an `error` outcome, e.g. `too_large` for a streamed live answer
    /// longer than the copy kept for comparisons (SPEC §10); written as `error`.
    public var error: String?
    /// Whether this compared two OpenAI-compatible answers: written as a `text` member (null for
    /// an `error` outcome).
    public var isLLM: Bool
    /// The figures of an LLM comparison; nil for an `error` outcome and other comparisons.
    public var text: TextFigures?

    public init(
        timestamp: String,
        requestID: String,
        model: String,
        route: String,
        live: Side,
        shadow: Side,
        outcome: Comparison.Outcome,
        maxAbsDiff: Double?,
        flip: Bool,
        liveLabels: [Int]? = nil,
        shadowLabels: [Int]? = nil,
        reason: String? = nil,
        error: String? = nil,
        isLLM: Bool = false,
        text: TextFigures? = nil
    ) {
        self.timestamp = timestamp
        self.requestID = requestID
        self.model = model
        self.route = route
        self.live = live
        self.shadow = shadow
        self.outcome = outcome
        self.maxAbsDiff = maxAbsDiff
        self.flip = flip
        self.liveLabels = liveLabels
        self.shadowLabels = shadowLabels
        self.reason = reason
        self.error = error
        self.isLLM = isLLM || text != nil
        self.text = text
    }

    /// The record of one comparison; `timestamp` is `RFC3339.format(millisecondsSinceEpoch:)` of
    /// the time the caller chooses (when the live response was sent, say).
    public init(
        timestamp: String,
        requestID: String,
        model: String,
        route: String,
        live: ResponseSide,
        shadow: ResponseSide,
        comparison: Comparison
    ) {
        self.init(
            timestamp: timestamp,
            requestID: requestID,
            model: model,
            route: route,
            live: Side(
                version: live.version,
                status: live.status,
                latencyMilliseconds: live.latencyMilliseconds,
                totalMilliseconds: live.totalMilliseconds,
                output: comparison.liveOutput,
                llm: comparison.liveAnswer.map(LLMSide.init),
                firstTokenMilliseconds: live.firstTokenMilliseconds
            ),
            shadow: Side(
                version: shadow.version,
                status: shadow.status,
                latencyMilliseconds: shadow.latencyMilliseconds,
                output: comparison.shadowOutput,
                llm: comparison.shadowAnswer.map(LLMSide.init),
                firstTokenMilliseconds: shadow.firstTokenMilliseconds
            ),
            outcome: comparison.outcome,
            maxAbsDiff: comparison.maxAbsDiff,
            flip: comparison.flip,
            liveLabels: comparison.liveLabels,
            shadowLabels: comparison.shadowLabels,
            reason: comparison.reason,
            isLLM: comparison.isLLM,
            text: comparison.text.map(TextFigures.init)
        )
    }

    /// Whether the live side failed: a non-2xx status, or an `error` record without a live output.
    /// (An LLM record: without a live answer.)
    public var liveFailed: Bool { !live.isSuccess || (outcome == .error && !Self.hasAnswer(live, isLLM: isLLM)) }
    /// Whether the shadow side failed: a non-2xx status, or an `error` record without a shadow output.
    /// (An LLM record: without a shadow answer.)
    public var shadowFailed: Bool {
        !shadow.isSuccess || (outcome == .error && !Self.hasAnswer(shadow, isLLM: isLLM))
    }

    private static func hasAnswer(_ side: Side, isLLM: Bool) -> Bool { isLLM ? side.llm != nil : side.output != nil }

    /// The record as one line of compact JSON, ending with `\n`. Latencies are rounded to the
    /// microsecond.
    public func jsonLine() -> [UInt8] {
        var object = JSONObject()
        object.set("ts", .string(timestamp))
        object.set("request_id", .string(requestID))
        object.set("model", .string(model))
        object.set("route", .string(route))
        object.set("live", Self.json(of: live))
        object.set("shadow", Self.json(of: shadow))
        object.set("outcome", .string(outcome.rawValue))
        object.set("max_abs_diff", maxAbsDiff.map(JSON.number) ?? .null)
        object.set("flip", .bool(flip))
        if let liveLabels { object.set("live_label", Self.json(ofLabels: liveLabels)) }
        if let shadowLabels { object.set("shadow_label", Self.json(ofLabels: shadowLabels)) }
        if let reason { object.set("reason", .string(reason)) }
        if let error { object.set("error", .string(error)) }
        if isLLM { object.set("text", text.map(Self.json(of:)) ?? .null) }
        var line = JSON.object(object).serialized()
        line.append(UInt8(ascii: "\n"))
        return line
    }

    private static func json(of side: Side) -> JSON {
        var object = JSONObject()
        object.set("version", .string(side.version))
        object.set("status", .number(Double(side.status)))
        object.set("latency_ms", .number((side.latencyMilliseconds * 1000).rounded() / 1000))
        if let total = side.totalMilliseconds { object.set("total_ms", .number((total * 1000).rounded() / 1000)) }
        object.set("output", side.output ?? .null)
        if let llm = side.llm {
            if let text = llm.text {
                object.set("text", .string(text))
                if llm.truncated { object.set("truncated", .bool(true)) }
                object.set("finish_reason", llm.finishReason.map(JSON.string) ?? .null)
                object.set("tool_calls", .array(llm.toolCalls.map(JSON.string)))
            }
            if let embeddings = llm.embeddings { object.set("embeddings", .number(Double(embeddings))) }
            object.set(
                "usage",
                [
                    "prompt_tokens": llm.promptTokens.map { .number(Double($0)) } ?? .null,
                    "completion_tokens": llm.completionTokens.map { .number(Double($0)) } ?? .null,
                ]
            )
        }
        if let ttft = side.firstTokenMilliseconds { object.set("ttft_ms", .number((ttft * 1000).rounded() / 1000)) }
        return .object(object)
    }

    private static func json(of text: TextFigures) -> JSON {
        let similarity = JSON.number((text.similarity * 1_000_000).rounded() / 1_000_000)
        if text.isEmbedding { return ["cosine": similarity] }
        var object = JSONObject()
        if let exact = text.exact { object.set("exact", .bool(exact)) }
        if let normalized = text.normalized { object.set("normalized", .bool(normalized)) }
        object.set("similarity", similarity)
        if let agrees = text.finishReasonAgrees { object.set("finish_reason_agrees", .bool(agrees)) }
        if let agrees = text.toolCallsAgree { object.set("tool_calls_agree", .bool(agrees)) }
        return .object(object)
    }

    private static func json(ofLabels labels: [Int]) -> JSON {
        labels.count == 1 ? .number(Double(labels[0])) : .array(labels.map { .number(Double($0)) })
    }

    /// Reads one log line. Unknown members are ignored; a missing or mistyped required member
    /// throws, naming it.
    public static func parse(_ line: [UInt8]) throws(RecordError) -> ComparisonRecord {
        let json: JSON
        do {
            json = try JSONParser.parse(line)
        } catch {
            throw RecordError("not JSON: \(error)")
        }
        guard case .object(let object) = json else {
            throw RecordError("expected a JSON object, got \(json.kindDescription)")
        }
        let timestamp = try string(object, "ts")
        let requestID = try string(object, "request_id")
        let model = try string(object, "model")
        let route = try string(object, "route")
        let live = try side(object, "live")
        let shadow = try side(object, "shadow")
        let outcomeText = try string(object, "outcome")
        guard let outcome = Comparison.Outcome(rawValue: outcomeText) else {
            throw RecordError("'outcome' must be match, mismatch or error, got '\(outcomeText)'")
        }
        let maxAbsDiff: Double?
        switch object["max_abs_diff"] {
        case .number(let value)?: maxAbsDiff = value
        case .null?: maxAbsDiff = nil
        case let other?: throw RecordError("'max_abs_diff' must be a number or null, got \(other.kindDescription)")
        case nil: throw RecordError("missing 'max_abs_diff'")
        }
        guard let flipValue = object["flip"] else { throw RecordError("missing 'flip'") }
        guard let flip = flipValue.boolValue else {
            throw RecordError("'flip' must be a boolean, got \(flipValue.kindDescription)")
        }
        let text: TextFigures?
        switch object["text"] {
        case nil, .null?: text = nil
        case .object(let figures)?: text = try textFigures(figures)
        case let other?: throw RecordError("'text' must be an object or null, got \(other.kindDescription)")
        }
        return ComparisonRecord(
            timestamp: timestamp,
            requestID: requestID,
            model: model,
            route: route,
            live: live,
            shadow: shadow,
            outcome: outcome,
            maxAbsDiff: maxAbsDiff,
            flip: flip,
            liveLabels: try labels(object, "live_label"),
            shadowLabels: try labels(object, "shadow_label"),
            reason: object["reason"]?.stringValue,
            error: object["error"]?.stringValue,
            isLLM: object["text"] != nil,
            text: text
        )
    }

    private static func textFigures(_ object: JSONObject) throws(RecordError) -> TextFigures {
        func flag(_ key: String) throws(RecordError) -> Bool? {
            guard let value = object[key], !value.isNull else { return nil }
            guard let flag = value.boolValue else {
                throw RecordError("'text.\(key)' must be a boolean, got \(value.kindDescription)")
            }
            return flag
        }
        if object["cosine"] != nil {
            return TextFigures(
                exact: nil,
                normalized: nil,
                similarity: try number(object, "cosine", in: "text."),
                finishReasonAgrees: nil,
                toolCallsAgree: nil,
                isEmbedding: true
            )
        }
        return TextFigures(
            exact: try flag("exact"),
            normalized: try flag("normalized"),
            similarity: try number(object, "similarity", in: "text."),
            finishReasonAgrees: try flag("finish_reason_agrees"),
            toolCallsAgree: try flag("tool_calls_agree")
        )
    }

    private static func llmSide(_ side: JSONObject, in parent: String) throws(RecordError) -> LLMSide? {
        let textValue = side["text"]
        let embeddings = side["embeddings"]?.doubleValue
        guard textValue != nil || embeddings != nil || side["usage"] != nil else { return nil }
        var text: String?
        if let textValue, !textValue.isNull {
            guard let string = textValue.stringValue else {
                throw RecordError("'\(parent)text' must be a string, got \(textValue.kindDescription)")
            }
            text = string
        }
        var toolCalls: [String] = []
        if case .array(let names)? = side["tool_calls"] { toolCalls = names.compactMap(\.stringValue) }
        func count(_ key: String) -> Int? {
            guard let value = side["usage"]?[key]?.doubleValue, value >= 0, value < 1e15 else { return nil }
            return Int(value)
        }
        return LLMSide(
            text: text,
            truncated: side["truncated"]?.boolValue ?? false,
            finishReason: side["finish_reason"]?.stringValue,
            toolCalls: toolCalls,
            promptTokens: count("prompt_tokens"),
            completionTokens: count("completion_tokens"),
            embeddings: embeddings.map { Int(max(0, min($0, 1e15))) }
        )
    }

    private static func string(
        _ object: JSONObject,
        _ key: String,
        in parent: String = ""
    ) throws(RecordError)
        -> String
    {
        guard let value = object[key] else { throw RecordError("missing '\(parent)\(key)'") }
        guard let text = value.stringValue else {
            throw RecordError("'\(parent)\(key)' must be a string, got \(value.kindDescription)")
        }
        return text
    }

    private static func number(_ object: JSONObject, _ key: String, in parent: String) throws(RecordError) -> Double {
        guard let value = object[key] else { throw RecordError("missing '\(parent)\(key)'") }
        guard let number = value.doubleValue else {
            throw RecordError("'\(parent)\(key)' must be a number, got \(value.kindDescription)")
        }
        return number
    }

    private static func side(_ object: JSONObject, _ key: String) throws(RecordError) -> Side {
        guard let value = object[key] else { throw RecordError("missing '\(key)'") }
        guard case .object(let side) = value else {
            throw RecordError("'\(key)' must be an object, got \(value.kindDescription)")
        }
        let parent = key + "."
        let status = try number(side, "status", in: parent)
        guard status == status.rounded(), status >= 0, status < 1000 else {
            throw RecordError("'\(parent)status' must be an HTTP status code, got \(JSON.number(status))")
        }
        let latency = try number(side, "latency_ms", in: parent)
        guard latency >= 0 else { throw RecordError("'\(parent)latency_ms' must not be negative") }
        var total: Double?
        if side["total_ms"] != nil {
            let value = try number(side, "total_ms", in: parent)
            guard value >= 0 else { throw RecordError("'\(parent)total_ms' must not be negative") }
            total = value
        }
        guard let output = side["output"] else { throw RecordError("missing '\(parent)output'") }
        var ttft: Double?
        if side["ttft_ms"] != nil {
            let value = try number(side, "ttft_ms", in: parent)
            guard value >= 0 else { throw RecordError("'\(parent)ttft_ms' must not be negative") }
            ttft = value
        }
        return Side(
            version: try string(side, "version", in: parent),
            status: Int(status),
            latencyMilliseconds: latency,
            totalMilliseconds: total,
            output: output.isNull ? nil : output,
            llm: try llmSide(side, in: parent),
            firstTokenMilliseconds: ttft
        )
    }

    private static func labels(_ object: JSONObject, _ key: String) throws(RecordError) -> [Int]? {
        func label(_ value: JSON) throws(RecordError) -> Int {
            guard let number = value.doubleValue, number == number.rounded(), abs(number) < 1e15 else {
                throw RecordError("'\(key)' must be an integer class or an array of them, got \(value)")
            }
            return Int(number)
        }
        switch object[key] {
        case nil, .null?: return nil
        case .array(let elements)?:
            var labels: [Int] = []
            for element in elements { labels.append(try label(element)) }
            return labels
        case let value?: return [try label(value)]
        }
    }
}

/// Why a comparison log line was refused.
public struct RecordError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// RFC 3339 timestamps computed from a time the caller passes in (no clock is read here).
public enum RFC3339 {
    /// `2025-05-01T12:00:00.123Z` for milliseconds since 1970-01-01T00:00:00Z (UTC, proleptic
    /// Gregorian calendar; years 0000–9999).
    public static func format(millisecondsSinceEpoch: Int64) -> String {
        let milliseconds = Int(floorRemainder(millisecondsSinceEpoch, 1000))
        let seconds = (millisecondsSinceEpoch - Int64(milliseconds)) / 1000
        let secondOfDay = Int(floorRemainder(seconds, 86_400))
        let days = (seconds - Int64(secondOfDay)) / 86_400
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T" + pad(secondOfDay / 3600, 2) + ":"
            + pad(secondOfDay / 60 % 60, 2) + ":" + pad(secondOfDay % 60, 2) + "." + pad(milliseconds, 3) + "Z"
    }

    /// Milliseconds since 1970-01-01T00:00:00Z of `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`
    /// (`t` or a space for `T`, `z` for `Z`; fraction digits beyond the millisecond are dropped);
    /// nil for any other text.
    public static func millisecondsSinceEpoch(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        var index = 0
        func digits(_ count: Int) -> Int? {
            guard index + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[index..<(index + count)] {
                guard byte >= 0x30 && byte <= 0x39 else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            index += count
            return value
        }
        func expect(_ allowed: String) -> Bool {
            guard index < bytes.count, allowed.utf8.contains(bytes[index]) else { return false }
            index += 1
            return true
        }
        guard let year = digits(4), expect("-"), let month = digits(2), expect("-"), let day = digits(2),
            expect("Tt "), let hour = digits(2), expect(":"), let minute = digits(2), expect(":"),
            let second = digits(2), (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60,
            second <= 60
        else { return nil }
        var milliseconds = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 100
            let start = index
            while index < bytes.count, bytes[index] >= 0x30 && bytes[index] <= 0x39 {
                milliseconds += Int(bytes[index] - 0x30) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        var offsetMinutes = 0
        if expect("Zz") {
        } else if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            index += 1
            guard let offsetHours = digits(2), expect(":"), let offsetMinute = digits(2) else { return nil }
            offsetMinutes = sign * (offsetHours * 60 + offsetMinute)
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offsetMinutes * 60)
        return seconds * 1000 + Int64(milliseconds)
    }

    /// Howard Hinnant's `days_from_civil`.
    private static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let shiftedMonth = Int64(month > 2 ? month - 3 : month + 9)
        let dayOfYear = (153 * shiftedMonth + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// Howard Hinnant's `civil_from_days`.
    private static func civilDate(daysSinceEpoch: Int64) -> (year: Int, month: Int, day: Int) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}

/// Euclidean remainder: never negative for a positive divisor.
private func floorRemainder(_ lhs: Int64, _ rhs: Int64) -> Int64 {
    let remainder = lhs % rhs
    return remainder < 0 ? remainder + rhs : remainder
}
