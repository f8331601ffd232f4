import Foundation
import Models

/// One OpenAI-compatible answer (chat completion, completion or embeddings), from a whole JSON
/// body or an SSE body: what SPEC §14 compares.
public struct LLMAnswer: Sendable, Hashable {
    /// Choice index 0's text: a chat answer's `message.content` (text parts joined when it is an
    /// array), a completion's `text`; a stream's deltas joined in order. Empty when there is none.
    public var text: String
    /// Choice 0's `finish_reason` (in a stream, the last non-null one).
    public var finishReason: String?
    /// Choice 0's tool call function names, in order (a stream's are assembled by tool call
    /// `index`, name fragments joined). A legacy `function_call` counts as one tool call.
    public var toolCalls: [String]
    /// An embeddings answer's vectors, `data[].embedding` ordered by `index` (float arrays, or
    /// base64 little-endian float32 as `encoding_format: base64` returns); nil for other answers.
    public var embeddings: [[Double]]?
    /// From `usage` (the last event of a stream that carries one).
    public var promptTokens: Int?
    public var completionTokens: Int?

    public init(
        text: String = "",
        finishReason: String? = nil,
        toolCalls: [String] = [],
        embeddings: [[Double]]? = nil,
        promptTokens: Int? = nil,
        completionTokens: Int? = nil
    ) {
        self.text = text
        self.finishReason = finishReason
        self.toolCalls = toolCalls
        self.embeddings = embeddings
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }

    /// Whether this is an embeddings answer.
    public var isEmbedding: Bool { embeddings != nil }

    /// Parses either form: a body whose first non-blank byte is `{` is JSON; otherwise it is read
    /// as server-sent events (`data: {...}` events, `data: [DONE]` ends). Nil when neither parses:
    /// a JSON body needs a `choices` or `data` array, a stream at least one such event; a body or
    /// event carrying `error` is no answer.
    public static func parse(_ body: [UInt8]) -> LLMAnswer? {
        guard let first = body.firstIndex(where: { !isBlank($0) }) else { return nil }
        if body[first] == UInt8(ascii: "{") {
            guard let json = try? JSONParser.parse(body) else { return nil }
            return parse(json)
        }
        var assembler = StreamAssembler()
        var splitter = SSEEventSplitter(maxEventBytes: Int.max)
        var failed = false
        body.withUnsafeBytes { buffer in
            splitter.feed(buffer) { event in
                guard !failed, case .data(let data) = event else { return }
                if !assembler.add(data) { failed = true }
            }
            splitter.finish { event in
                guard !failed, case .data(let data) = event else { return }
                if !assembler.add(data) { failed = true }
            }
        }
        guard !failed else { return nil }
        return assembler.answer
    }

    /// An answer from a parsed JSON body (`ResponseSide.Body.json`); nil as in `parse(_:)`.
    public static func parse(_ json: JSON) -> LLMAnswer? {
        guard case .object(let object) = json, object["error"] == nil || object["error"]!.isNull else { return nil }
        var answer = LLMAnswer()
        (answer.promptTokens, answer.completionTokens) = usage(of: object)
        if case .array(let data)? = object["data"], object["choices"] == nil {
            var indexed: [(Int, [Double])] = []
            for (position, item) in data.enumerated() {
                guard let vector = embedding(item["embedding"]) else { return nil }
                let index = item["index"]?.doubleValue.map { Int($0) } ?? position
                indexed.append((index, vector))
            }
            answer.embeddings = indexed.sorted { $0.0 < $1.0 }.map(\.1)
            return answer
        }
        guard case .array(let choices)? = object["choices"] else { return nil }
        guard let choice = firstChoice(choices) else { return answer }
        if let message = choice["message"] {
            answer.text = content(message["content"])
            if case .array(let calls)? = message["tool_calls"] {
                answer.toolCalls = calls.map { $0["function"]?["name"]?.stringValue ?? "" }
            }
            if let name = message["function_call"]?["name"]?.stringValue { answer.toolCalls.append(name) }
        } else {
            answer.text = choice["text"]?.stringValue ?? ""
        }
        answer.finishReason = choice["finish_reason"]?.stringValue
        return answer
    }

    /// The choice whose `index` is 0 (or the first one without an `index`).
    static func firstChoice(_ choices: [JSON]) -> JSON? {
        choices.first { choice in
            guard let index = choice["index"] else { return true }
            return index.doubleValue == 0
        }
    }

    /// A message's `content`: a string, or the `text` of each part of an array, joined.
    static func content(_ value: JSON?) -> String {
        switch value {
        case .string(let text)?: return text
        case .array(let parts)?: return parts.compactMap { $0["text"]?.stringValue }.joined()
        default: return ""
        }
    }

    /// `usage.prompt_tokens` and `usage.completion_tokens`, each nil when absent.
    static func usage(of object: JSONObject) -> (Int?, Int?) {
        guard case .object(let usage)? = object["usage"] else { return (nil, nil) }
        func count(_ key: String) -> Int? {
            guard let value = usage[key]?.doubleValue, value >= 0, value < 1e15 else { return nil }
            return Int(value)
        }
        return (count("prompt_tokens"), count("completion_tokens"))
    }

    /// An embedding: an array of numbers, or base64 of little-endian float32 values.
    static func embedding(_ value: JSON?) -> [Double]? {
        switch value {
        case .array(let elements)?:
            var vector: [Double] = []
            vector.reserveCapacity(elements.count)
            for element in elements {
                guard let number = element.doubleValue else { return nil }
                vector.append(number)
            }
            return vector
        case .string(let text)?:
            guard let data = Data(base64Encoded: text), data.count % 4 == 0 else { return nil }
            var vector: [Double] = []
            vector.reserveCapacity(data.count / 4)
            data.withUnsafeBytes { raw in
                for offset in stride(from: 0, to: raw.count, by: 4) {
                    let bits = raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
                    vector.append(Double(Float(bitPattern: UInt32(littleEndian: bits))))
                }
            }
            return vector
        default:
            return nil
        }
    }

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }
}

/// Builds an `LLMAnswer` from a stream's `data` payloads, one event at a time.
struct StreamAssembler {
    private var text = ""
    private var finishReason: String?
    /// Tool call index → name fragments joined.
    private var toolCalls: [Int: String] = [:]
    private var legacyFunction: String?
    private var promptTokens: Int?
    private var completionTokens: Int?
    private var answers = 0
    private var done = false

    /// Adds one event's data; false when it is an error event (the stream is no answer). Events
    /// after `[DONE]`, events that are not JSON objects (an empty keep-alive `data:`) and objects
    /// that are not chunks are passed over.
    mutating func add(_ data: ArraySlice<UInt8>) -> Bool {
        guard !done else { return true }
        if isDone(data) {
            done = true
            return true
        }
        guard let json = try? data.withUnsafeBytes({ try JSONParser.parse($0) }), case .object(let object) = json
        else { return true }
        if let error = object["error"], !error.isNull { return false }
        let (prompt, completion) = LLMAnswer.usage(of: object)
        if prompt != nil || completion != nil {
            promptTokens = prompt ?? promptTokens
            completionTokens = completion ?? completionTokens
        }
        guard case .array(let choices)? = object["choices"] else { return true }
        answers += 1
        guard let choice = LLMAnswer.firstChoice(choices) else { return true }
        if let delta = choice["delta"] {
            if case .string(let piece)? = delta["content"] { text += piece }
            if case .array(let calls)? = delta["tool_calls"] {
                for (position, call) in calls.enumerated() {
                    let index = call["index"]?.doubleValue.map { Int($0) } ?? position
                    let name = call["function"]?["name"]?.stringValue ?? ""
                    toolCalls[index, default: ""] += name
                }
            }
            if let name = delta["function_call"]?["name"]?.stringValue {
                legacyFunction = (legacyFunction ?? "") + name
            }
        } else if let message = choice["message"] {
            text += LLMAnswer.content(message["content"])
        } else if case .string(let piece)? = choice["text"] {
            text += piece
        }
        if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
        return true
    }

    /// The assembled answer; nil when no event was a chunk.
    var answer: LLMAnswer? {
        guard answers > 0 else { return nil }
        var calls = toolCalls.keys.sorted().map { toolCalls[$0]! }
        if let legacyFunction { calls.append(legacyFunction) }
        return LLMAnswer(
            text: text,
            finishReason: finishReason,
            toolCalls: calls,
            promptTokens: promptTokens,
            completionTokens: completionTokens
        )
    }
}

/// Whether an event's data is `[DONE]` (surrounding blanks allowed).
func isDone(_ data: ArraySlice<UInt8>) -> Bool {
    var slice = data
    while let first = slice.first, first == 0x20 || first == 0x09 { slice.removeFirst() }
    while let last = slice.last, last == 0x20 || last == 0x09 { slice.removeLast() }
    return slice.elementsEqual("[DONE]".utf8)
}

/// Splits server-sent events (WHATWG HTML "event stream" syntax) fed in pieces of any size.
///
/// Lines end with CRLF, LF or CR; a line starting with `:` is a comment; `data:` lines (one
/// leading space dropped) of one event are joined with `\n`; other fields (`event`, `id`,
/// `retry`) are ignored; a blank line ends the event. An event whose data grows beyond
/// `maxEventBytes` is reported as `.oversized` and its bytes dropped up to the next blank line.
struct SSEEventSplitter {
    enum Event {
        /// The joined `data` lines of one event (never empty of lines: an event without data
        /// lines is not reported).
        case data(ArraySlice<UInt8>)
        case oversized
    }

    let maxEventBytes: Int
    /// The current line, up to its end (only kept while it may be a `data:` line).
    private var line: [UInt8] = []
    /// The current line is longer than can be kept, or is not a data line: its bytes are dropped.
    private var skippingLine = false
    /// Whether the current line has had any byte (a blank line ends the event).
    private var lineHasBytes = false
    private var data: [UInt8] = []
    private var hasData = false
    private var oversized = false
    private var lastWasCR = false

    init(maxEventBytes: Int) {
        self.maxEventBytes = maxEventBytes
    }

    /// Feeds bytes; `emit` is called for each event completed by them.
    mutating func feed(_ bytes: UnsafeRawBufferPointer, _ emit: (Event) -> Void) {
        var start = 0
        let count = bytes.count
        while start < count {
            var end = start
            while end < count {
                let byte = bytes[end]
                if byte == 0x0A || byte == 0x0D { break }
                end += 1
            }
            if end > start {
                lastWasCR = false
                append(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
            }
            guard end < count else { return }
            let terminator = bytes[end]
            start = end + 1
            if terminator == 0x0A && lastWasCR {
                // The LF of a CRLF: the line already ended at the CR.
                lastWasCR = false
                continue
            }
            lastWasCR = terminator == 0x0D
            endLine(emit)
        }
    }

    /// Ends the body: a last line and event without their blank line are still reported.
    mutating func finish(_ emit: (Event) -> Void) {
        if lineHasBytes { endLine(emit) }
        endEvent(emit)
    }

    private mutating func append(_ piece: UnsafeRawBufferPointer) {
        if !lineHasBytes {
            lineHasBytes = true
            // Only `data` lines are kept; the field name decides on the line's first bytes.
            skippingLine = oversized || piece.first == UInt8(ascii: ":")
        }
        guard !skippingLine else { return }
        var rest = piece[...]
        if line.count < 5 {
            let needed = min(5 - line.count, rest.count)
            line.append(contentsOf: rest.prefix(needed))
            rest = rest.dropFirst(needed)
            guard isDataLinePrefix else {
                skippingLine = true
                line.removeAll(keepingCapacity: true)
                return
            }
        }
        if line.count - 5 + rest.count > maxEventBytes {
            skippingLine = true
            line.removeAll(keepingCapacity: true)
            markOversized()
            return
        }
        line.append(contentsOf: rest)
    }

    /// Whether the kept line starts like a `data` field: its first bytes (up to five) are those
    /// of `data:`.
    private var isDataLinePrefix: Bool {
        line.prefix(5).elementsEqual("data:".utf8.prefix(min(5, line.count)))
    }

    private mutating func markOversized() {
        oversized = true
        data.removeAll(keepingCapacity: true)
        hasData = false
    }

    private mutating func endLine(_ emit: (Event) -> Void) {
        defer {
            line.removeAll(keepingCapacity: true)
            lineHasBytes = false
            skippingLine = false
        }
        guard lineHasBytes else {
            endEvent(emit)
            return
        }
        guard !skippingLine, !oversized else { return }
        var value: ArraySlice<UInt8>
        if line.elementsEqual("data".utf8) {
            value = []
        } else if line.count >= 5, line.starts(with: "data:".utf8) {
            value = line[5...]
            if value.first == 0x20 { value = value.dropFirst() }
        } else {
            return
        }
        if hasData { data.append(0x0A) }
        if data.count + value.count > maxEventBytes {
            markOversized()
            return
        }
        data.append(contentsOf: value)
        hasData = true
    }

    private mutating func endEvent(_ emit: (Event) -> Void) {
        if oversized {
            emit(.oversized)
        } else if hasData {
            emit(.data(data[...]))
        }
        data.removeAll(keepingCapacity: true)
        hasData = false
        oversized = false
    }
}

/// Fed the bytes of a streamed answer as they arrive (the live path): finds the time to first
/// token and the token usage, keeping no text. Memory is bounded: an event whose data passes
/// `maxEventBytes` is skipped to the next event boundary.
///
/// A body whose first non-blank byte is `{` (an answer that was not streamed) is kept up to
/// `maxEventBytes` and read by `finish()`.
public struct LLMStreamScanner: Sendable {
    private var splitter: SSEEventSplitter
    private var sawToken = false
    private var reported = false
    private var done = false
    /// Nil until the first non-blank byte says which form the body has.
    private var isJSON: Bool?
    private var jsonBody: [UInt8] = []
    private var jsonTooLarge = false
    /// Prompt and completion tokens from the last `usage` seen.
    public private(set) var promptTokens: Int?
    public private(set) var completionTokens: Int?
    /// Events skipped for passing `maxEventBytes`.
    public private(set) var oversizedEvents = 0

    public init(maxEventBytes: Int = 1 << 20) {
        splitter = SSEEventSplitter(maxEventBytes: maxEventBytes)
    }

    /// Returns true exactly once: on the feed that completes the first event carrying a token
    /// (a non-empty content or text delta, or a tool call delta, in any choice): the time to
    /// first token.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if isJSON == nil {
            guard let first = bytes.firstIndex(where: { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D) })
            else { return false }
            isJSON = bytes[first] == UInt8(ascii: "{")
        }
        if isJSON == true {
            if !jsonTooLarge {
                if jsonBody.count + bytes.count > splitter.maxEventBytes {
                    jsonTooLarge = true
                    jsonBody = []
                } else {
                    jsonBody.append(contentsOf: bytes)
                }
            }
            return false
        }
        // The splitter is moved out while it calls back into `self` (no exclusive-access overlap,
        // no copy of its buffers).
        var splitter = SSEEventSplitter(maxEventBytes: self.splitter.maxEventBytes)
        swap(&splitter, &self.splitter)
        splitter.feed(bytes) { event in handle(event) }
        swap(&splitter, &self.splitter)
        return report()
    }

    /// Ends the body: reads a last event that had no blank line after it, or a JSON answer.
    /// Returns true when that completes the first token (as `feed` does).
    public mutating func finish() -> Bool {
        if isJSON == true {
            if !jsonTooLarge, let answer = LLMAnswer.parse(jsonBody) {
                promptTokens = answer.promptTokens
                completionTokens = answer.completionTokens
                sawToken = !answer.text.isEmpty || !answer.toolCalls.isEmpty || answer.embeddings != nil
            }
            jsonBody = []
        } else {
            var splitter = SSEEventSplitter(maxEventBytes: self.splitter.maxEventBytes)
            swap(&splitter, &self.splitter)
            splitter.finish { event in handle(event) }
            swap(&splitter, &self.splitter)
        }
        return report()
    }

    private mutating func report() -> Bool {
        guard sawToken, !reported else { return false }
        reported = true
        return true
    }

    private mutating func handle(_ event: SSEEventSplitter.Event) {
        guard !done else { return }
        switch event {
        case .oversized:
            oversizedEvents += 1
        case .data(let data):
            if isDone(data) {
                done = true
                return
            }
            // After the first token only `usage` matters: most events are left unparsed.
            if sawToken && !contains(data, "\"usage\"") { return }
            guard let json = try? data.withUnsafeBytes({ try JSONParser.parse($0) }), case .object(let object) = json
            else { return }
            let (prompt, completion) = LLMAnswer.usage(of: object)
            if prompt != nil || completion != nil {
                promptTokens = prompt ?? promptTokens
                completionTokens = completion ?? completionTokens
            }
            if !sawToken, case .array(let choices)? = object["choices"] {
                sawToken = choices.contains(where: Self.carriesToken)
            }
        }
    }

    /// A chunk's choice with a non-empty content or text delta, or a tool call delta.
    private static func carriesToken(_ choice: JSON) -> Bool {
        if let delta = choice["delta"] {
            if case .string(let text)? = delta["content"], !text.isEmpty { return true }
            if case .array(let calls)? = delta["tool_calls"], !calls.isEmpty { return true }
            if delta["function_call"]?.objectValue != nil { return true }
            return false
        }
        if case .string(let text)? = choice["text"], !text.isEmpty { return true }
        if let message = choice["message"] { return !LLMAnswer.content(message["content"]).isEmpty }
        return false
    }

    private func contains(_ data: ArraySlice<UInt8>, _ needle: String) -> Bool {
        let pattern = Array(needle.utf8)
        guard data.count >= pattern.count else { return false }
        var index = data.startIndex
        let last = data.endIndex - pattern.count
        while index <= last {
            if data[index] == pattern[0] && data[index..<(index + pattern.count)].elementsEqual(pattern) { return true }
            index += 1
        }
        return false
    }
}
