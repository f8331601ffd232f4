/// Precomputed predictions from a CSV file, looked up by key (pattern 1).
///
/// CSV per RFC 4180: a header row, then one row per key; the first column is the key, the
/// others are outputs. Fields may be quoted (`"a, b"`, `""` for a quote; quoted fields may
/// span lines); lines end in CRLF or LF; blank lines and a UTF-8 byte order mark are skipped.
/// An unquoted cell that is a JSON number is a number, an empty unquoted cell is `null`, and
/// every other cell (quoted ones included) is a string. Keys are the cells' text as written.
public struct PredictionTable: Sendable {
    /// Name of the key column (the header's first cell).
    public let keyColumn: String
    /// Names of the output columns, in file order.
    public let outputColumns: [String]
    private let rowByKey: [String: Int]
    private let outputs: [JSON]

    /// Number of keys.
    public var count: Int { outputs.count }

    /// The prediction for `key`: a number (or string/null) for one output column, an array for
    /// several; nil when the table has no such key.
    public func lookup(_ key: String) -> JSON? {
        guard let row = rowByKey[key] else { return nil }
        return outputs[row]
    }

    /// Predictions for several keys, in order; a miss is a 404 `no_prediction`.
    public func predict(keys: [String]) throws(ModelError) -> [JSON] {
        var predictions: [JSON] = []
        predictions.reserveCapacity(keys.count)
        for key in keys {
            guard let value = lookup(key) else {
                throw .noPrediction("no prediction for key '\(key)' in column '\(keyColumn)'")
            }
            predictions.append(value)
        }
        return predictions
    }

    /// The table key for a value read from a request: a string as it is, a number as its JSON
    /// text (`1001`, not `1001.0`), a boolean as `true`/`false`; nil for null, arrays, objects.
    public static func key(for value: JSON) -> String? {
        switch value {
        case .string(let text): text
        case .number, .bool: value.description
        case .null, .array, .object: nil
        }
    }

    /// Parses CSV bytes; `path` only names the file in errors.
    public init(csv bytes: [UInt8], path: String) throws(ModelLoadError) {
        var reader = CSVReader(bytes: bytes)
        func fail(_ line: Int, _ message: String) -> ModelLoadError {
            ModelLoadError(path: path, message: "table: line \(line): \(message)")
        }
        func text(_ field: CSVReader.Field, line: Int) throws(ModelLoadError) -> String {
            guard let string = String(validating: field.bytes, as: UTF8.self) else {
                throw fail(line, "invalid UTF-8")
            }
            return string
        }
        let headerRecord: CSVReader.Record?
        do { headerRecord = try reader.next() } catch { throw fail(error.line, error.message) }
        guard let header = headerRecord else {
            throw ModelLoadError(path: path, message: "table: file is empty; expected a header row")
        }
        guard header.fields.count >= 2 else {
            throw fail(
                header.line,
                "the header has \(header.fields.count) column; expected a key column and one or more outputs"
            )
        }
        var headerNames: [String] = []
        for field in header.fields { headerNames.append(try text(field, line: header.line)) }
        keyColumn = headerNames[0]
        outputColumns = Array(headerNames.dropFirst())

        var rowByKey: [String: Int] = [:]
        var lineByKey: [String: Int] = [:]
        var outputs: [JSON] = []
        while true {
            let record: CSVReader.Record
            do {
                guard let next = try reader.next() else { break }
                record = next
            } catch {
                throw fail(error.line, error.message)
            }
            guard record.fields.count == header.fields.count else {
                throw fail(
                    record.line,
                    "expected \(header.fields.count) fields like the header, got \(record.fields.count)"
                )
            }
            let key = try text(record.fields[0], line: record.line)
            guard !key.isEmpty else { throw fail(record.line, "empty key") }
            if let first = lineByKey[key] {
                throw fail(record.line, "duplicate key '\(key)' (first on line \(first))")
            }
            var cells: [JSON] = []
            cells.reserveCapacity(record.fields.count - 1)
            for field in record.fields.dropFirst() {
                if !field.isQuoted {
                    if field.bytes.isEmpty {
                        cells.append(.null)
                        continue
                    }
                    if let number = csvNumber(field.bytes) {
                        cells.append(.number(number))
                        continue
                    }
                }
                cells.append(.string(try text(field, line: record.line)))
            }
            rowByKey[key] = outputs.count
            lineByKey[key] = record.line
            outputs.append(cells.count == 1 ? cells[0] : .array(cells))
        }
        self.rowByKey = rowByKey
        self.outputs = outputs
    }

    /// Parses CSV bytes; `path` only names the file in errors.
    public init(csv bytes: UnsafeRawBufferPointer, path: String) throws(ModelLoadError) {
        try self.init(csv: Array(bytes), path: path)
    }
}

/// A cell that is exactly a JSON number (no spaces, no `+`, no `nan`).
private func csvNumber(_ bytes: ArraySlice<UInt8>) -> Double? {
    guard let first = bytes.first, let last = bytes.last,
        first == UInt8(ascii: "-") || (first >= 0x30 && first <= 0x39), last >= 0x30 && last <= 0x39
    else { return nil }
    guard case .number(let value)? = try? JSONParser.parse(Array(bytes)) else { return nil }
    return value
}

/// A strict RFC 4180 record reader over bytes.
private struct CSVReader {
    struct Field {
        var bytes: ArraySlice<UInt8>
        var isQuoted: Bool
    }

    struct Record {
        var fields: [Field]
        /// Line on which the record starts (1-based).
        var line: Int
    }

    struct Failure: Error {
        var line: Int
        var message: String
    }

    let bytes: [UInt8]
    var position = 0
    var line = 1

    init(bytes: [UInt8]) {
        self.bytes = bytes
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
    }

    /// The next non-blank record, or nil at the end.
    mutating func next() throws(Failure) -> Record? {
        while position < bytes.count {
            let startLine = line
            var fields: [Field] = []
            recordLoop: while true {
                let field = try readField(recordLine: startLine)
                fields.append(field)
                guard position < bytes.count else { break }
                switch bytes[position] {
                case UInt8(ascii: ","):
                    position += 1
                case 0x0D:
                    guard position + 1 < bytes.count, bytes[position + 1] == 0x0A else {
                        throw Failure(line: line, message: "carriage return without a line feed")
                    }
                    position += 2
                    line += 1
                    break recordLoop
                case 0x0A:
                    position += 1
                    line += 1
                    break recordLoop
                default:
                    throw Failure(
                        line: line,
                        message: "unexpected \(describeByte(bytes[position])) after a quoted field"
                    )
                }
            }
            if fields.count == 1 && fields[0].bytes.isEmpty && !fields[0].isQuoted { continue }
            return Record(fields: fields, line: startLine)
        }
        return nil
    }

    mutating func readField(recordLine: Int) throws(Failure) -> Field {
        if position < bytes.count && bytes[position] == UInt8(ascii: "\"") {
            let quoteLine = line
            position += 1
            var content: [UInt8] = []
            while true {
                guard position < bytes.count else {
                    throw Failure(line: quoteLine, message: "unterminated quoted field")
                }
                let byte = bytes[position]
                if byte == UInt8(ascii: "\"") {
                    if position + 1 < bytes.count && bytes[position + 1] == UInt8(ascii: "\"") {
                        content.append(byte)
                        position += 2
                        continue
                    }
                    position += 1
                    return Field(bytes: content[...], isQuoted: true)
                }
                if byte == 0x0A { line += 1 }
                content.append(byte)
                position += 1
            }
        }
        let start = position
        while position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: ","), 0x0D, 0x0A:
                return Field(bytes: bytes[start..<position], isQuoted: false)
            case UInt8(ascii: "\""):
                throw Failure(
                    line: line,
                    message: "quote inside an unquoted field; quote the whole field and double the quote"
                )
            default:
                position += 1
            }
        }
        return Field(bytes: bytes[start..<position], isQuoted: false)
    }
}
