import Foundation

/// The JSON Schemas generated from the catalogue (`schema/routes.schema.json`,
/// `schema/policy.schema.json`).
///
/// Draft-07: the YAML language server (redhat yaml-language-server, behind VS Code's YAML
/// extension and many other editors) validates with draft-07 and does not support 2019-09 or
/// 2020-12 yet. Keywords used: `$schema`, `title`, `description`, `type`, `enum`,
/// `pattern`, `minLength`, `minimum`, `maximum`, `exclusiveMinimum` (a number, as draft-07
/// has it), `properties`, `additionalProperties`, `propertyNames`, `minProperties`,
/// `required`, `dependencies` (the array form), `items`, `oneOf`, `anyOf`, `allOf`, `not`,
/// `if`/`then`, `const`, `default`, `examples`.
extension ConfigCatalogue {
    public static let schemaDialect = "http://json-schema.org/draft-07/schema#"

    /// The schema of one kind of file.
    public static func schema(_ kind: ConfigFileKind) -> OrderedJSON {
        var members: [OrderedJSON.Member] = [
            .init("$schema", .string(schemaDialect)),
            .init("title", .string("Switchyard \(kind.glob)")),
        ]
        guard case .object(let root) = objectSchema(kind.root) else { return .object(members) }
        members += root
        return .object(members)
    }

    /// `schema(kind)` as the file holds it: rendered, with a final newline.
    public static func schemaText(_ kind: ConfigFileKind) -> String {
        schema(kind).rendered() + "\n"
    }

    static func objectSchema(_ object: ConfigObject) -> OrderedJSON {
        var members: [OrderedJSON.Member] = [
            .init("description", .string(plain(object.summary))),
            .init("type", .string("object")),
        ]
        let required = object.keys.filter(\.isRequired).map { OrderedJSON.string($0.name) }
        if !required.isEmpty { members.append(.init("required", .array(required))) }
        members.append(.init("properties", .object(object.keys.map { .init($0.name, keySchema($0)) })))
        members.append(.init("additionalProperties", .bool(false)))

        var dependencies: [OrderedJSON.Member] = []
        var all: [OrderedJSON] = []
        for rule in object.rules {
            switch rule {
            case .exactlyOne(let keys):
                all.append(.object([.init("oneOf", .array(keys.map(requiring)))]))
            case .atLeastOne(let keys):
                all.append(.object([.init("anyOf", .array(keys.map(requiring)))]))
            case .atMostOne(let keys):
                for (i, a) in keys.enumerated() {
                    for b in keys[(i + 1)...] {
                        all.append(.object([.init("not", requiring([a, b]))]))
                    }
                }
            case .requires(let key, let others):
                dependencies.append(.init(key, .array(others.map { .string($0) })))
            case .requiredWhen(let key, let other, let value):
                all.append(
                    .object([
                        .init(
                            "if",
                            .object([
                                .init("properties", .object([.init(other, .object([.init("const", .string(value))]))])),
                                .init("required", .array([.string(other)])),
                            ])
                        ),
                        .init("then", requiring(key)),
                    ])
                )
            case .onlyWhen(let key, let other, let pattern, _):
                all.append(
                    .object([
                        .init("if", requiring(key)),
                        .init(
                            "then",
                            .object([
                                .init(
                                    "properties",
                                    .object([.init(other, .object([.init("pattern", .string(pattern))]))])
                                )
                            ])
                        ),
                    ])
                )
            case .requiredWhenEntries(let key, let map, let entries):
                all.append(
                    .object([
                        .init(
                            "if",
                            .object([
                                .init(
                                    "properties",
                                    .object([.init(map, .object([.init("minProperties", .int(entries))]))])
                                ),
                                .init("required", .array([.string(map)])),
                            ])
                        ),
                        .init("then", requiring(key)),
                    ])
                )
            }
        }
        if !dependencies.isEmpty { members.append(.init("dependencies", .object(dependencies))) }
        if !all.isEmpty { members.append(.init("allOf", .array(all))) }
        return .object(members)
    }

    private static func requiring(_ key: String) -> OrderedJSON {
        requiring([key])
    }

    private static func requiring(_ keys: [String]) -> OrderedJSON {
        .object([.init("required", .array(keys.map { .string($0) }))])
    }

    static func keySchema(_ key: ConfigKey) -> OrderedJSON {
        var members: [OrderedJSON.Member] = [.init("description", .string(plain(key.summary)))]
        if case .object(let body) = typeSchema(key.type) {
            // The block's own description says what the block is; the key's says more.
            members += body.filter { $0.key != "description" }
        }
        switch key.defaultValue {
        case .int(let i)?: members.append(.init("default", .int(i)))
        case .number(let d)?: members.append(.init("default", d == d.rounded() ? .int(Int(d)) : .double(d)))
        case .string(let s)?: members.append(.init("default", .string(s)))
        case .bool(let b)?: members.append(.init("default", .bool(b)))
        case .text?, nil: break
        }
        if let example = key.exampleValue { members.append(.init("examples", .array([example]))) }
        return .object(members)
    }

    static func typeSchema(_ type: ConfigValueType) -> OrderedJSON {
        switch type {
        case .string(let pattern, _):
            var members: [OrderedJSON.Member] = [.init("type", .string("string"))]
            if let pattern { members.append(.init("pattern", .string(pattern))) }
            return .object(members)
        case .choice(let values):
            return .object([.init("type", .string("string")), .init("enum", .array(values.map { .string($0) }))])
        case .integer(let range):
            var members: [OrderedJSON.Member] = [
                .init("type", .string("integer")), .init("minimum", .int(range.lowerBound)),
            ]
            if range.upperBound != Int.max { members.append(.init("maximum", .int(range.upperBound))) }
            return .object(members)
        case .number(let minimum, let maximum, let exclusive):
            var members: [OrderedJSON.Member] = [.init("type", .string("number"))]
            members.append(.init(exclusive ? "exclusiveMinimum" : "minimum", number(minimum)))
            if let maximum { members.append(.init("maximum", number(maximum))) }
            return .object(members)
        case .boolean:
            return .object([.init("type", .string("boolean"))])
        case .name:
            return .object([
                .init("type", .array([.string("string"), .string("integer")])), .init("minLength", .int(1)),
            ])
        case .object(let object):
            return objectSchema(object)
        case .map(let keys, let keyPattern, let value, let minEntries):
            var members: [OrderedJSON.Member] = [.init("type", .string("object"))]
            if minEntries > 0 { members.append(.init("minProperties", .int(minEntries))) }
            var names: [OrderedJSON.Member] = [.init("minLength", .int(1))]
            if let keyPattern { names.append(.init("pattern", .string(keyPattern))) }
            members.append(.init("propertyNames", .object(names)))
            var valueSchema = typeSchema(value)
            if case .object(let body) = valueSchema, body.first?.key != "description" {
                valueSchema = .object([.init("description", .string("One entry; keys are \(keys)."))] + body)
            }
            members.append(.init("additionalProperties", valueSchema))
            return .object(members)
        case .list(let item):
            return .object([.init("type", .string("array")), .init("items", typeSchema(item))])
        }
    }

    private static func number(_ d: Double) -> OrderedJSON {
        d == d.rounded() && abs(d) < 1e15 ? .int(Int(d)) : .double(d)
    }

    /// Markdown backquotes dropped: an editor shows `description` as plain text.
    static func plain(_ markdown: String) -> String {
        markdown.replacingOccurrences(of: "`", with: "")
    }
}

extension ConfigKey {
    /// The example as a YAML fragment: `name: value`, or `name:` and the indented block.
    public var exampleYAML: String {
        example.hasPrefix(" ") ? "\(name):\n\(example)" : "\(name): \(example)"
    }

    /// The example's value as JSON, as the loader would read it.
    public var exampleValue: OrderedJSON? {
        OrderedJSON.parse(yaml: exampleYAML)?[name]
    }
}
