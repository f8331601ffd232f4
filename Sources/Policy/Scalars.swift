import YAMLSource

/// A plain scalar resolved with the YAML 1.2 core schema; quoted scalars are strings.
enum ScalarValue: Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
}

extension YAMLScalar {
    /// Core schema: only `true`/`false` (any case form the schema lists) are booleans, so
    /// `yes`, `no`, `on`, `off` stay strings; `null`, `~` and the empty scalar are null;
    /// decimal integers; floats including `.inf` and `.nan`.
    var value: ScalarValue {
        if let tag, tag != "tag:yaml.org,2002:int", tag != "tag:yaml.org,2002:float",
            tag != "tag:yaml.org,2002:bool", tag != "tag:yaml.org,2002:null"
        {
            return .string(text)
        }
        guard isPlain else { return .string(text) }
        switch text {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .float(.infinity)
        case "-.inf", "-.Inf", "-.INF": return .float(-.infinity)
        case ".nan", ".NaN", ".NAN": return .float(.nan)
        default: break
        }
        if Self.isDecimalInteger(text) {
            if let int = Int(text.hasPrefix("+") ? String(text.dropFirst()) : text) { return .int(int) }
            return .float(Double(text) ?? .infinity)
        }
        if Self.isFloat(text), let double = Double(text) { return .float(double) }
        return .string(text)
    }

    private static func isDecimalInteger(_ text: String) -> Bool {
        var bytes = Substring(text).utf8[...]
        if let first = bytes.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            bytes = bytes.dropFirst()
        }
        return !bytes.isEmpty && bytes.allSatisfy { $0 >= 48 && $0 <= 57 }
    }

    /// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
    private static func isFloat(_ text: String) -> Bool {
        var s = Array(text.utf8)[...]
        func digits() -> Int {
            let n = s.prefix { $0 >= 48 && $0 <= 57 }.count
            s = s.dropFirst(n)
            return n
        }
        if let c = s.first, c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { s = s.dropFirst() }
        let whole = digits()
        var fraction = 0
        if s.first == UInt8(ascii: ".") {
            s = s.dropFirst()
            fraction = digits()
        } else if whole == 0 {
            return false
        }
        if whole == 0 && fraction == 0 { return false }
        if let c = s.first, c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            s = s.dropFirst()
            if let c = s.first, c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { s = s.dropFirst() }
            if digits() == 0 { return false }
        }
        return s.isEmpty
    }
}

extension YAMLNode {
    /// What a message says was found: `string 'abc'`, `integer 5`, `a mapping`...
    var found: String {
        switch kind {
        case .sequence: return "a sequence"
        case .mapping: return "a mapping"
        case .scalar(let scalar):
            switch scalar.value {
            case .null: return "null"
            case .bool(let b): return "boolean \(b)"
            case .int: return "integer \(scalar.text)"
            case .float: return "float \(scalar.text)"
            case .string(let s): return "string '\(s)'"
            }
        }
    }

    /// The scalar's text as written, for messages about its value.
    var text: String { scalar?.text ?? found }
}
