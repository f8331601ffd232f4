/// Edits the top-level members of a JSON object body without re-serializing it: every value the
/// edit does not touch keeps its bytes as the client wrote them (a 20-digit `seed` stays exact,
/// `0.70` stays `0.70`). The sidecar uses it to rewrite an OpenAI request's `model` and, for a
/// shadow copy, `stream` (SPEC §14).
public enum JSONEdit {
    /// One top-level member: its key (unescaped) and the byte ranges of the whole member (key
    /// through value) and of its value.
    public struct Member: Sendable, Hashable {
        public var key: String
        public var member: Range<Int>
        public var value: Range<Int>
    }

    /// The top-level members of `bytes`, which must hold one JSON object (whitespace around it
    /// allowed); nil when they do not. Values are skipped, not checked: pass bytes `JSONParser`
    /// has accepted.
    public static func members(_ bytes: [UInt8]) -> [Member]? {
        var scanner = Scanner(bytes: bytes)
        scanner.skipSpace()
        guard scanner.take(UInt8(ascii: "{")) else { return nil }
        var members: [Member] = []
        scanner.skipSpace()
        if scanner.take(UInt8(ascii: "}")) {
            scanner.skipSpace()
            return scanner.atEnd ? members : nil
        }
        while true {
            scanner.skipSpace()
            let start = scanner.index
            guard let key = scanner.string() else { return nil }
            scanner.skipSpace()
            guard scanner.take(UInt8(ascii: ":")) else { return nil }
            scanner.skipSpace()
            let valueStart = scanner.index
            guard scanner.skipValue() else { return nil }
            members.append(Member(key: key, member: start..<scanner.index, value: valueStart..<scanner.index))
            scanner.skipSpace()
            if scanner.take(UInt8(ascii: ",")) { continue }
            guard scanner.take(UInt8(ascii: "}")) else { return nil }
            scanner.skipSpace()
            return scanner.atEnd ? members : nil
        }
    }

    /// `bytes` (one JSON object) with the top-level members named in `set` given the raw JSON
    /// values there (appended when absent) and those named in `remove` left out; every other
    /// member keeps its bytes and its place. Nil when `bytes` is not one JSON object.
    public static func editTopLevel(
        _ bytes: [UInt8],
        set: [(key: String, rawValue: [UInt8])],
        remove: Set<String> = []
    ) -> [UInt8]? {
        guard let members = members(bytes) else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count + set.reduce(0) { $0 + $1.key.utf8.count + $1.rawValue.count + 4 })
        output.append(UInt8(ascii: "{"))
        var written = Set<String>()
        var first = true
        func separator() {
            if !first { output.append(UInt8(ascii: ",")) }
            first = false
        }
        for member in members {
            if remove.contains(member.key) { continue }
            if let replacement = set.first(where: { $0.key == member.key }) {
                // A duplicate key keeps only its first occurrence's replacement.
                if written.contains(member.key) { continue }
                written.insert(member.key)
                separator()
                output.append(contentsOf: bytes[member.member.lowerBound..<member.value.lowerBound])
                output.append(contentsOf: replacement.rawValue)
            } else {
                separator()
                output.append(contentsOf: bytes[member.member])
            }
        }
        for replacement in set where !written.contains(replacement.key) && !remove.contains(replacement.key) {
            written.insert(replacement.key)
            separator()
            output.append(contentsOf: JSON.string(replacement.key).serialized())
            output.append(UInt8(ascii: ":"))
            output.append(contentsOf: replacement.rawValue)
        }
        output.append(UInt8(ascii: "}"))
        return output
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        var atEnd: Bool { index == bytes.count }

        mutating func skipSpace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        /// A string at `index`, unescaped; nil when there is none.
        mutating func string() -> String? {
            let start = index
            guard skipString() else { return nil }
            // The parser's own unescaping: keys are short, and most have no escape at all.
            let slice = bytes[start..<index]
            if !slice.contains(UInt8(ascii: "\\")) {
                return String(decoding: slice.dropFirst().dropLast(), as: UTF8.self)
            }
            guard case .string(let text)? = try? JSONParser.parse(Array(slice)) else { return nil }
            return text
        }

        /// Moves past the string at `index` (quotes included).
        mutating func skipString() -> Bool {
            guard take(UInt8(ascii: "\"")) else { return false }
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                if byte == UInt8(ascii: "\\") {
                    index += 1
                } else if byte == UInt8(ascii: "\"") {
                    return true
                }
            }
            return false
        }

        /// Moves past one value: a string, or anything up to the `,` `}` or `]` that ends it at
        /// this depth (nested objects and arrays counted, strings inside them skipped whole).
        mutating func skipValue() -> Bool {
            guard index < bytes.count else { return false }
            if bytes[index] == UInt8(ascii: "\"") { return skipString() }
            var depth = 0
            let start = index
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    guard skipString() else { return false }
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    if depth == 0 { return index > start }
                    depth -= 1
                    if depth == 0 {
                        index += 1
                        return true
                    }
                case UInt8(ascii: ","):
                    if depth == 0 { return index > start }
                case 0x20, 0x09, 0x0A, 0x0D:
                    if depth == 0 { return index > start }
                default:
                    break
                }
                index += 1
            }
            return depth == 0 && index > start
        }
    }
}
