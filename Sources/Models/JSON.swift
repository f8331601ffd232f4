/// A JSON value (RFC 8259), as parsed by `JSONParser` and written by `serialized()`.
///
/// Numbers are `Double`s. Objects keep their members in document order. Equality compares
/// objects as JSON does (member order does not matter) and numbers as `Double`s (so `-0 == 0`).
public enum JSON: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)
}

/// The members of a JSON object, in document order, with lookup by key.
///
/// Lookup is a linear scan, which beats hashing for the small objects of prediction requests;
/// callers that look up many keys in one large object should iterate `members` once instead.
public struct JSONObject: Sendable, Hashable, RandomAccessCollection, ExpressibleByDictionaryLiteral {
    public typealias Member = (key: String, value: JSON)

    /// Members in document order. `JSONParser` never produces duplicate keys.
    public var members: [Member]

    public init(_ members: [Member] = []) { self.members = members }

    public init(dictionaryLiteral elements: (String, JSON)...) {
        members = elements.map { (key: $0.0, value: $0.1) }
    }

    public var startIndex: Int { members.startIndex }
    public var endIndex: Int { members.endIndex }
    public subscript(position: Int) -> Member { members[position] }

    /// The value of the first member named `key`, or nil.
    public subscript(key: String) -> JSON? {
        for member in members where member.key == key { return member.value }
        return nil
    }

    /// Member names in document order.
    public var keys: [String] { members.map(\.key) }

    /// Sets the first member named `key`, or appends one.
    public mutating func set(_ key: String, _ value: JSON) {
        if let index = members.firstIndex(where: { $0.key == key }) {
            members[index].value = value
        } else {
            members.append((key: key, value: value))
        }
    }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else { return false }
        // Fast path: same key order (the common case for outputs of one model).
        if zip(lhs.members, rhs.members).allSatisfy({ $0.key == $1.key }) {
            return zip(lhs.members, rhs.members).allSatisfy { $0.value == $1.value }
        }
        let left = lhs.members.enumerated().sorted { ($0.element.key, $0.offset) < ($1.element.key, $1.offset) }
        let right = rhs.members.enumerated().sorted { ($0.element.key, $0.offset) < ($1.element.key, $1.offset) }
        return zip(left, right).allSatisfy { $0.element.key == $1.element.key && $0.element.value == $1.element.value }
    }

    public func hash(into hasher: inout Hasher) {
        // Order-independent, to agree with `==`: a commutative sum of per-member hashes.
        var sum = 0
        for member in members {
            var inner = Hasher()
            inner.combine(member.key)
            inner.combine(member.value)
            sum &+= inner.finalize()
        }
        hasher.combine(members.count)
        hasher.combine(sum)
    }
}

extension JSON {
    /// The number, or nil for any other kind of value.
    public var doubleValue: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSON]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The member named `key` of an object; nil for a missing key or a non-object.
    public subscript(key: String) -> JSON? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// The element at `index` of an array; nil when out of range or not an array.
    public subscript(index: Int) -> JSON? {
        if case .array(let array) = self, array.indices.contains(index) { return array[index] }
        return nil
    }

    /// A short name of the value's kind for error messages: `a number`, `an object`, ...
    public var kindDescription: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

extension JSON: ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self = .object(JSONObject(elements.map { (key: $0.0, value: $0.1) }))
    }
}

extension JSON: CustomStringConvertible {
    /// The compact serialization, as text.
    public var description: String { String(decoding: serialized(), as: UTF8.self) }
}
