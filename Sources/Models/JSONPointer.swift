/// An RFC 6901 JSON pointer such as `/instances/0/customer_id`, checked once and reused.
public struct JSONPointer: Sendable, Hashable, CustomStringConvertible {
    /// Reference tokens with `~1` and `~0` already decoded; empty for the whole document.
    public let tokens: [String]

    /// Parses pointer text: empty (the whole document) or `/`-separated tokens where `~0`
    /// means `~` and `~1` means `/`.
    public init(_ text: String) throws(JSONPointerError) {
        if text.isEmpty {
            tokens = []
            return
        }
        guard text.hasPrefix("/") else {
            throw JSONPointerError(pointer: text, reason: "must be empty or start with '/'")
        }
        var decoded: [String] = []
        for raw in text.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst() {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(raw.count)
            var iterator = raw.makeIterator()
            while let byte = iterator.next() {
                guard byte == UInt8(ascii: "~") else {
                    bytes.append(byte)
                    continue
                }
                switch iterator.next() {
                case UInt8(ascii: "0"): bytes.append(UInt8(ascii: "~"))
                case UInt8(ascii: "1"): bytes.append(UInt8(ascii: "/"))
                default: throw JSONPointerError(pointer: text, reason: "'~' must be followed by '0' or '1'")
                }
            }
            decoded.append(String(decoding: bytes, as: UTF8.self))
        }
        tokens = decoded
    }

    public init(tokens: [String]) { self.tokens = tokens }

    /// The pointer text, escaped.
    public var description: String {
        tokens.map { "/" + $0.replacingAll("~", with: "~0").replacingAll("/", with: "~1") }.joined()
    }
}

/// A pointer that is not valid RFC 6901 text.
public struct JSONPointerError: Error, Sendable, Hashable, CustomStringConvertible {
    public var pointer: String
    public var reason: String
    public var description: String { "invalid JSON pointer '\(pointer)': \(reason)" }
}

extension JSON {
    /// The value `pointer` refers to, or nil when it leads nowhere. Array tokens must be
    /// decimal indexes without leading zeros; `-` (past the end) leads nowhere.
    public func value(at pointer: JSONPointer) -> JSON? {
        var current = self
        for token in pointer.tokens {
            switch current {
            case .object(let object):
                guard let next = object[token] else { return nil }
                current = next
            case .array(let array):
                guard let index = arrayIndex(token), index < array.count else { return nil }
                current = array[index]
            default:
                return nil
            }
        }
        return current
    }

    /// The value at pointer text such as `/instances/0/customer_id`; nil when the text is not a
    /// valid pointer or leads nowhere.
    public func value(atPointer pointer: String) -> JSON? {
        guard let parsed = try? JSONPointer(pointer) else { return nil }
        return value(at: parsed)
    }
}

private func arrayIndex(_ token: String) -> Int? {
    let bytes = Array(token.utf8)
    guard !bytes.isEmpty, bytes.count <= 18, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
    if bytes.count > 1 && bytes[0] == 0x30 { return nil }
    return Int(token)
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self {
            if character == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}
