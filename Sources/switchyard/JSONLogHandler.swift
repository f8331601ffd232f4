import Compare
import Foundation
import Logging
import Models

/// One JSON object per line on standard error: `ts` (RFC 3339 UTC with milliseconds), `level`,
/// `msg`, then the metadata in key order.
///
/// Metadata keeps the type it was logged with: `.stringConvertible` of an integer or a
/// floating-point number is written as a JSON number, of a `Bool` as a boolean; arrays and
/// dictionaries as JSON arrays and objects; a `.string` (what `"\(x)"` makes) always as a string.
/// Strings are never guessed at: a request id or a version name that happens to be all digits
/// stays a string, so each field has one JSON type on every line (what log pipelines index by).
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let milliseconds = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        var line = Self.line(event: event, metadata: metadata, millisecondsSinceEpoch: milliseconds)
        line.append(0x0A)
        FileHandle.standardError.write(Data(line))
    }

    /// The line for `event` (no newline), with `metadata` under the event's own.
    static func line(event: LogEvent, metadata: Logger.Metadata, millisecondsSinceEpoch: Int64) -> [UInt8] {
        var fields: [(String, JSON)] = [
            ("ts", .string(RFC3339.format(millisecondsSinceEpoch: millisecondsSinceEpoch))),
            ("level", .string(event.level.rawValue)),
            ("msg", .string(event.message.description)),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() {
            fields.append((key, json(merged[key]!)))
        }
        return JSON.fields(fields).serialized()
    }

    /// A metadata value as JSON, typed as it was logged.
    static func json(_ value: Logger.Metadata.Value) -> JSON {
        switch value {
        case .string(let text):
            return .string(text)
        case .stringConvertible(let convertible):
            switch convertible {
            case let flag as Bool: return .bool(flag)
            case let integer as any BinaryInteger: return .number(Double(integer))
            case let number as any BinaryFloatingPoint: return .number(Double(number))
            default: return .string(convertible.description)
            }
        case .array(let values):
            return .array(values.map(json))
        case .dictionary(let values):
            return .fields(values.keys.sorted().map { ($0, json(values[$0]!)) })
        }
    }
}
