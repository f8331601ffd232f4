import Foundation
import Logging
import Models

/// One JSON object per line on standard error: `ts`, `level`, `msg`, then the metadata.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields: [(String, JSON)] = [
            ("ts", .string(ISO8601DateFormatter().string(from: Date()))),
            ("level", .string(event.level.rawValue)),
            ("msg", .string(event.message.description)),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() {
            fields.append((key, .string("\(merged[key]!)")))
        }
        var line = JSON.fields(fields).serialized()
        line.append(0x0A)
        FileHandle.standardError.write(Data(line))
    }
}
