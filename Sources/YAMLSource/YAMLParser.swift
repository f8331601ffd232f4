internal import CYAML

/// Parses YAML text into a `YAMLNode` tree with libyaml's event API.
///
/// Refuses, each with an error: input over `limits.maxBytes`, anchors and aliases (no billion
/// laughs), nesting deeper than `limits.maxDepth`, and more than one document. A libyaml syntax
/// error becomes an error at libyaml's problem mark. Never traps on any input; libyaml always
/// advances, and the input size bounds the work.
public enum YAMLParser {
    public static func parse(_ bytes: [UInt8], limits: YAMLLimits = YAMLLimits()) -> YAMLDocument {
        if bytes.count > limits.maxBytes {
            return YAMLDocument(
                root: nil,
                errors: [
                    YAMLError(
                        mark: YAMLMark(line: 0, column: 0),
                        message: "file is larger than \(limits.maxBytes) bytes (the limit)"
                    )
                ]
            )
        }
        var builder = TreeBuilder(limits: limits)
        let parser = LibYAMLParser(bytes)
        parser.run { builder.handle($0) }
        if let failure = parser.failure {
            builder.errors.append(failure)
        }
        return YAMLDocument(root: builder.root, errors: builder.errors)
    }
}

/// One libyaml event, copied out of C memory.
enum Event {
    case documentStart(YAMLMark)
    case scalar(YAMLScalar, anchor: String?, YAMLMark)
    case alias(String, YAMLMark)
    case sequenceStart(anchor: String?, YAMLMark)
    case mappingStart(anchor: String?, YAMLMark)
    case collectionEnd
    case other
}

/// Owner of one `yaml_parser_t` and the input buffer it reads from.
final class LibYAMLParser {
    private let parser: UnsafeMutablePointer<yaml_parser_t>
    private let input: UnsafeMutableBufferPointer<UInt8>
    private let isInitialized: Bool
    /// The syntax (or memory) error that stopped parsing, if any.
    private(set) var failure: YAMLError?

    init(_ bytes: [UInt8]) {
        parser = .allocate(capacity: 1)
        // libyaml reads the input in place: keep a copy whose address is stable for our life.
        input = .allocate(capacity: max(bytes.count, 1))
        _ = input.initialize(from: bytes)
        isInitialized = yaml_parser_initialize(parser) == 1
        if isInitialized {
            yaml_parser_set_input_string(parser, input.baseAddress, bytes.count)
        } else {
            failure = YAMLError(mark: YAMLMark(line: 0, column: 0), message: "cannot initialize the YAML parser")
        }
    }

    deinit {
        if isInitialized { yaml_parser_delete(parser) }
        parser.deallocate()
        input.deallocate()
    }

    /// Feeds every event to `handle` until the stream ends, an error occurs, or `handle`
    /// returns false.
    func run(_ handle: (Event) -> Bool) {
        guard isInitialized else { return }
        var event = yaml_event_t()
        while true {
            guard yaml_parser_parse(parser, &event) == 1 else {
                failure = currentError()
                return
            }
            let type = event.type
            let copied = Self.copy(&event)
            yaml_event_delete(&event)
            if type == YAML_STREAM_END_EVENT || type == YAML_NO_EVENT { return }
            if !handle(copied) { return }
        }
    }

    private static func copy(_ event: inout yaml_event_t) -> Event {
        let mark = YAMLMark(line: event.start_mark.line + 1, column: event.start_mark.column + 1)
        switch event.type {
        case YAML_DOCUMENT_START_EVENT:
            return .documentStart(mark)
        case YAML_SCALAR_EVENT:
            let data = event.data.scalar
            let text: String
            if let value = data.value {
                text = String(decoding: UnsafeBufferPointer(start: value, count: data.length), as: UTF8.self)
            } else {
                text = ""
            }
            let style: YAMLScalar.Style
            switch data.style {
            case YAML_SINGLE_QUOTED_SCALAR_STYLE: style = .singleQuoted
            case YAML_DOUBLE_QUOTED_SCALAR_STYLE: style = .doubleQuoted
            case YAML_LITERAL_SCALAR_STYLE: style = .literal
            case YAML_FOLDED_SCALAR_STYLE: style = .folded
            default: style = .plain
            }
            return .scalar(
                YAMLScalar(text: text, style: style, tag: string(data.tag)),
                anchor: string(data.anchor),
                mark
            )
        case YAML_ALIAS_EVENT:
            return .alias(string(event.data.alias.anchor) ?? "", mark)
        case YAML_SEQUENCE_START_EVENT:
            return .sequenceStart(anchor: string(event.data.sequence_start.anchor), mark)
        case YAML_MAPPING_START_EVENT:
            return .mappingStart(anchor: string(event.data.mapping_start.anchor), mark)
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            return .collectionEnd
        default:
            return .other
        }
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        guard let pointer else { return nil }
        return String(cString: pointer)
    }

    private func currentError() -> YAMLError {
        let p = parser.pointee
        let problem = p.problem.map { String(cString: $0) } ?? "invalid YAML"
        if p.error == YAML_READER_ERROR {
            // Reader errors (bad encoding) carry a byte offset, not a mark.
            return YAMLError(mark: mark(atOffset: p.problem_offset), message: problem)
        }
        if p.error == YAML_MEMORY_ERROR {
            return YAMLError(mark: YAMLMark(line: 0, column: 0), message: "out of memory while parsing YAML")
        }
        let mark = YAMLMark(line: p.problem_mark.line + 1, column: p.problem_mark.column + 1)
        if let tab = tabProblem(problem, at: mark) { return YAMLError(mark: mark, message: tab) }
        var message = problem
        if let context = p.context.map({ String(cString: $0) }) {
            message += " (\(context) that starts at \(p.context_mark.line + 1):\(p.context_mark.column + 1))"
        }
        return YAMLError(mark: mark, message: message)
    }

    /// libyaml's words for a tab where YAML wants spaces ("found character that cannot start
    /// any token", pointing at the tab) do not say that the tab is the problem; this does.
    private func tabProblem(_ problem: String, at mark: YAMLMark) -> String? {
        let indentation = "tabs are not allowed for indentation; indent with spaces"
        if problem.contains("tab character") { return indentation }
        guard problem.contains("cannot start any token"), let line = line(mark.line) else { return nil }
        let before = line.prefix(mark.column - 1)
        guard before.count == mark.column - 1, line.dropFirst(mark.column - 1).first == "\t" else { return nil }
        return before.allSatisfy { $0 == " " || $0 == "\t" }
            ? indentation : "a tab cannot start a value or key here; use spaces"
    }

    /// The text of line `number` (from 1) of the input as Unicode scalars, which is what
    /// libyaml's columns count.
    private func line(_ number: Int) -> [Unicode.Scalar]? {
        var current = 1
        var start = 0
        for (offset, byte) in input.enumerated() where current < number && byte == UInt8(ascii: "\n") {
            current += 1
            start = offset + 1
        }
        guard current == number, start <= input.count else { return nil }
        let rest = input[start...]
        let end = rest.firstIndex(of: UInt8(ascii: "\n")) ?? input.count
        return Array(String(decoding: input[start..<end], as: UTF8.self).unicodeScalars)
    }

    private func mark(atOffset offset: Int) -> YAMLMark {
        var line = 1
        var column = 1
        for byte in input.prefix(min(max(offset, 0), input.count)) {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
        }
        return YAMLMark(line: line, column: column)
    }
}

/// Builds the tree from events; collects refusals without stopping where it can go on.
struct TreeBuilder {
    /// An open collection. Mutated in place through `stack[last]` so that appends stay O(1).
    private struct Frame {
        var isMapping: Bool
        var mark: YAMLMark
        var items: [YAMLNode] = []
        var pairs: [YAMLPair] = []
        var pendingKey: YAMLNode?
    }

    let limits: YAMLLimits
    var root: YAMLNode?
    var errors: [YAMLError] = []
    private var stack: [Frame] = []
    private var documents = 0

    init(limits: YAMLLimits) {
        self.limits = limits
    }

    /// Returns false to stop parsing.
    mutating func handle(_ event: Event) -> Bool {
        switch event {
        case .documentStart(let mark):
            documents += 1
            if documents > 1 {
                return fail(mark, "more than one YAML document in the file; expected one", stop: true)
            }
        case .scalar(let scalar, let anchor, let mark):
            if anchor != nil, !fail(mark, "YAML anchors are not allowed") { return false }
            add(YAMLNode(.scalar(scalar), mark: mark))
        case .alias(_, let mark):
            guard fail(mark, "YAML aliases are not allowed") else { return false }
            add(YAMLNode(.scalar(YAMLScalar(text: "", style: .plain)), mark: mark))
        case .sequenceStart(let anchor, let mark), .mappingStart(let anchor, let mark):
            if anchor != nil, !fail(mark, "YAML anchors are not allowed") { return false }
            if stack.count >= limits.maxDepth {
                return fail(mark, "nesting deeper than \(limits.maxDepth) levels", stop: true)
            }
            if case .sequenceStart = event {
                stack.append(Frame(isMapping: false, mark: mark))
            } else {
                stack.append(Frame(isMapping: true, mark: mark))
            }
        case .collectionEnd:
            guard let frame = stack.popLast() else { return true }
            add(YAMLNode(frame.isMapping ? .mapping(frame.pairs) : .sequence(frame.items), mark: frame.mark))
        case .other:
            break
        }
        return true
    }

    private mutating func add(_ node: YAMLNode) {
        let last = stack.count - 1
        guard last >= 0 else {
            if root == nil { root = node }
            return
        }
        if !stack[last].isMapping {
            stack[last].items.append(node)
        } else if let key = stack[last].pendingKey {
            stack[last].pairs.append(YAMLPair(key: key, value: node))
            stack[last].pendingKey = nil
        } else {
            stack[last].pendingKey = node
        }
    }

    /// Records an error; returns false when parsing must stop (asked, or too many errors).
    private mutating func fail(_ mark: YAMLMark, _ message: String, stop: Bool = false) -> Bool {
        errors.append(YAMLError(mark: mark, message: message))
        if errors.count >= limits.maxErrors {
            errors.append(YAMLError(mark: mark, message: "too many errors; stopped reading this file"))
            return false
        }
        return !stop
    }
}
