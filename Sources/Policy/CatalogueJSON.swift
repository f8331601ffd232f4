import YAMLSource

/// A JSON value whose objects keep their members in the order they were written.
///
/// The schema files are read by people as well as by editors, so `description` comes before
/// `properties` and keys appear in the order the reference documents them; Foundation's
/// serializer would sort or shuffle them. Also what a YAML config becomes for checking it
/// against the schema (`init(yaml:)`).
public indirect enum OrderedJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([OrderedJSON])
    case object([Member])

    public struct Member: Sendable, Equatable {
        public var key: String
        public var value: OrderedJSON

        public init(_ key: String, _ value: OrderedJSON) {
            self.key = key
            self.value = value
        }
    }

    /// The member named `key`, if this is an object that has one.
    public subscript(_ key: String) -> OrderedJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    /// Indented by two spaces; arrays of scalars on one line; ends without a newline.
    public func rendered() -> String {
        var out = ""
        render(into: &out, indent: "")
        return out
    }

    private func render(into out: inout String, indent: String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += Self.number(d)
        case .string(let s): out += Self.quoted(s)
        case .array(let items):
            if items.isEmpty {
                out += "[]"
            } else if items.allSatisfy(\.isScalar) {
                out += "[" + items.map { $0.rendered() }.joined(separator: ", ") + "]"
            } else {
                let inner = indent + "  "
                out += "[\n"
                for (i, item) in items.enumerated() {
                    out += inner
                    item.render(into: &out, indent: inner)
                    out += i == items.count - 1 ? "\n" : ",\n"
                }
                out += indent + "]"
            }
        case .object(let members):
            if members.isEmpty {
                out += "{}"
                return
            }
            let inner = indent + "  "
            out += "{\n"
            for (i, member) in members.enumerated() {
                out += inner + Self.quoted(member.key) + ": "
                member.value.render(into: &out, indent: inner)
                out += i == members.count - 1 ? "\n" : ",\n"
            }
            out += indent + "}"
        }
    }

    private var isScalar: Bool {
        switch self {
        case .array, .object: return false
        default: return true
        }
    }

    /// Integral values without a fraction (`100`, not `100.0`), as a person would write them.
    static func number(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e15 { return String(Int(d)) }
        return String(d)
    }

    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

extension OrderedJSON {
    /// A YAML tree as the loader reads it: plain scalars resolved with the YAML 1.2 core schema
    /// (`Scalars.swift`), quoted ones strings, mapping keys as written (an integer key `1`
    /// becomes `"1"`, as a version name does). Non-finite floats have no JSON form and become
    /// strings, so a schema refuses them as numbers, like the loader does.
    public init(yaml node: YAMLNode) {
        switch node.kind {
        case .scalar(let scalar):
            switch scalar.value {
            case .null: self = .null
            case .bool(let b): self = .bool(b)
            case .int(let i): self = .int(i)
            case .float(let d): self = d.isFinite ? .double(d) : .string(scalar.text)
            case .string(let s): self = .string(s)
            }
        case .sequence(let items):
            self = .array(items.map { OrderedJSON(yaml: $0) })
        case .mapping(let pairs):
            self = .object(pairs.map { Member($0.key.scalar?.text ?? $0.key.found, OrderedJSON(yaml: $0.value)) })
        }
    }

    /// Parses YAML text (a key's example in the catalogue) into JSON; nil when it is not YAML.
    static func parse(yaml text: String) -> OrderedJSON? {
        let document = YAMLParser.parse(Array(text.utf8))
        guard document.errors.isEmpty, let root = document.root else { return nil }
        return OrderedJSON(yaml: root)
    }
}
