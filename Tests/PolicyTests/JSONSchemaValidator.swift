import Foundation

@testable import Policy

/// A JSON Schema (draft-07) validator for the keywords the generated schemas use, so that CI
/// checks configs against them without Python or Node.
///
/// Supported: `type` (a name or a list; `integer` includes integral numbers), `enum`, `const`,
/// `pattern` (NSRegularExpression, unanchored as the spec says), `minLength` (code points),
/// `minimum`, `maximum`, `exclusiveMinimum` (a number), `properties`, `additionalProperties`
/// (boolean or schema), `propertyNames`, `minProperties`, `required`, `dependencies` (array
/// form), `items` (one schema), `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`.
/// Annotations (`$schema`, `title`, `description`, `default`, `examples`) are skipped. Any
/// other keyword is reported as an error, so a schema cannot use one this validator ignores.
struct JSONSchemaValidator {
    static let annotations: Set<String> = ["$schema", "title", "description", "default", "examples"]

    /// Every violation, each as `path: problem` (`/routes/0/match: ...`); empty when valid.
    static func errors(_ instance: OrderedJSON, against schema: OrderedJSON) -> [String] {
        var errors: [String] = []
        check(instance, schema, path: "", into: &errors)
        return errors
    }

    static func isValid(_ instance: OrderedJSON, _ schema: OrderedJSON) -> Bool {
        errors(instance, against: schema).isEmpty
    }

    private static func check(_ value: OrderedJSON, _ schema: OrderedJSON, path: String, into errors: inout [String]) {
        let at = path.isEmpty ? "/" : path
        switch schema {
        case .bool(true): return
        case .bool(false):
            errors.append("\(at): not allowed here")
            return
        case .object: break
        default:
            errors.append("\(at): the schema is not an object or boolean")
            return
        }
        guard case .object(let keywords) = schema else { return }
        for keyword in keywords {
            let k = keyword.value
            switch keyword.key {
            case _ where annotations.contains(keyword.key):
                continue
            case "type":
                let names: [String]
                switch k {
                case .string(let name): names = [name]
                case .array(let items): names = items.compactMap { if case .string(let s) = $0 { s } else { nil } }
                default: names = []
                }
                if !names.contains(where: { has(value, type: $0) }) {
                    errors.append("\(at): expected \(names.joined(separator: " or ")), found \(describe(value))")
                }
            case "enum":
                if case .array(let allowed) = k, !allowed.contains(where: { equal($0, value) }) {
                    errors.append("\(at): \(describe(value)) is not one of \(k.rendered())")
                }
            case "const":
                if !equal(k, value) { errors.append("\(at): expected \(k.rendered()), found \(describe(value))") }
            case "pattern":
                if case .string(let text) = value, case .string(let pattern) = k, !matches(text, pattern) {
                    errors.append("\(at): '\(text)' does not match \(pattern)")
                }
            case "minLength":
                if case .string(let text) = value, let n = integer(k), text.unicodeScalars.count < n {
                    errors.append("\(at): shorter than \(n) characters")
                }
            case "minimum", "maximum", "exclusiveMinimum":
                guard let x = number(value), let bound = number(k) else { continue }
                let fails =
                    keyword.key == "minimum" ? x < bound : keyword.key == "maximum" ? x > bound : x <= bound
                if fails { errors.append("\(at): \(describe(value)) is out of range (\(keyword.key) \(k.rendered()))") }
            case "required":
                if case .object(let members) = value, case .array(let names) = k {
                    for case .string(let name) in names where !members.contains(where: { $0.key == name }) {
                        errors.append("\(at): missing required key '\(name)'")
                    }
                }
            case "minProperties":
                if case .object(let members) = value, let n = integer(k), members.count < n {
                    errors.append("\(at): fewer than \(n) entries")
                }
            case "properties", "additionalProperties", "propertyNames":
                guard case .object(let members) = value else { continue }
                for member in members {
                    let memberPath = "\(path)/\(member.key)"
                    if keyword.key == "properties" {
                        if let sub = k[member.key] { check(member.value, sub, path: memberPath, into: &errors) }
                    } else if keyword.key == "propertyNames" {
                        check(.string(member.key), k, path: memberPath + " (key)", into: &errors)
                    } else if schema["properties"]?[member.key] == nil {
                        if case .bool(false) = k {
                            errors.append("\(memberPath): unknown key '\(member.key)'")
                        } else {
                            check(member.value, k, path: memberPath, into: &errors)
                        }
                    }
                }
            case "dependencies":
                guard case .object(let members) = value, case .object(let rules) = k else { continue }
                for rule in rules where members.contains(where: { $0.key == rule.key }) {
                    guard case .array(let needed) = rule.value else {
                        errors.append("\(at): only the array form of dependencies is supported")
                        continue
                    }
                    for case .string(let name) in needed where !members.contains(where: { $0.key == name }) {
                        errors.append("\(at): '\(rule.key)' needs '\(name)'")
                    }
                }
            case "items":
                if case .array(let items) = value {
                    for (i, item) in items.enumerated() { check(item, k, path: "\(path)/\(i)", into: &errors) }
                }
            case "allOf":
                if case .array(let subs) = k { for sub in subs { check(value, sub, path: path, into: &errors) } }
            case "anyOf", "oneOf":
                guard case .array(let subs) = k else { continue }
                let passing = subs.filter { isValid(value, $0) }.count
                if keyword.key == "anyOf", passing == 0 {
                    errors.append("\(at): matches none of anyOf \(k.rendered())")
                } else if keyword.key == "oneOf", passing != 1 {
                    errors.append("\(at): matches \(passing) of oneOf \(k.rendered()), expected exactly 1")
                }
            case "not":
                if isValid(value, k) { errors.append("\(at): must not match \(k.rendered())") }
            case "if":
                let branch = isValid(value, k) ? schema["then"] : schema["else"]
                if let branch { check(value, branch, path: path, into: &errors) }
            case "then", "else":
                continue  // applied by "if"
            default:
                errors.append("\(at): unsupported keyword '\(keyword.key)'")
            }
        }
    }

    private static func has(_ value: OrderedJSON, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object):
            return true
        case ("integer", .int), ("number", .int), ("number", .double): return true
        case ("integer", .double(let d)): return d == d.rounded()
        default: return false
        }
    }

    private static func number(_ value: OrderedJSON) -> Double? {
        switch value {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    private static func integer(_ value: OrderedJSON) -> Int? {
        if case .int(let i) = value { return i }
        return nil
    }

    private static func equal(_ a: OrderedJSON, _ b: OrderedJSON) -> Bool {
        if let x = number(a), let y = number(b) { return x == y }
        return a == b
    }

    private static func matches(_ text: String, _ pattern: String) -> Bool {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return false }
        return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    private static func describe(_ value: OrderedJSON) -> String {
        switch value {
        case .object: return "an object"
        case .array: return "an array"
        default: return value.rendered()
        }
    }
}
