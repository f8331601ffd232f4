import Foundation

/// The kinds of embedded backend a policy can name (`embedded:`).
public enum ModelKind: String, Sendable, Hashable, CaseIterable {
    case linear, table, xgboost
}

/// A model file, loaded and checked, ready to serve.
public enum LoadedModel: Sendable {
    /// Evaluated on feature rows.
    case embedded(any EmbeddedModel)
    /// Looked up by key.
    case table(PredictionTable)
}

/// Reads and checks model files for `serve`, `validate` and reload.
public enum ModelLoader {
    /// Largest model file accepted: 256 MiB.
    public static let maxFileBytes = 256 << 20

    /// Loads the file at `path` as a model of `kind`.
    public static func load(kind: ModelKind, path: String) throws(ModelLoadError) -> LoadedModel {
        switch kind {
        case .linear:
            let bytes = try readFile(path)
            let json: JSON
            do {
                json = try JSONParser.parse(bytes)
            } catch {
                throw ModelLoadError(path: path, message: "linear model: file is not JSON: \(error)")
            }
            return .embedded(try LinearModel(json: json, path: path))
        case .table:
            return .table(try PredictionTable(csv: readFile(path), path: path))
        case .xgboost:
            let bytes = try readFile(path)
            let json: JSON
            do {
                json = try JSONParser.parse(bytes)
            } catch {
                let hint =
                    bytes.first == UInt8(ascii: "{")
                    ? ""
                    : " (save it with Booster.save_model(\"m.json\"); UBJSON and the old binary format are not read)"
                throw ModelLoadError(path: path, message: "xgboost model: file is not JSON: \(error)\(hint)")
            }
            return .embedded(try XGBoostModel(json: json, path: path))
        }
    }

    /// Loads the file at `path` as a model of the kind named `kind` (`linear`, `table`, `xgboost`).
    public static func load(kind: String, path: String) throws(ModelLoadError) -> LoadedModel {
        guard let parsed = ModelKind(rawValue: kind) else {
            throw ModelLoadError(path: path, message: "unknown model kind '\(kind)'; expected linear, table or xgboost")
        }
        return try load(kind: parsed, path: path)
    }

    /// The bytes of a regular file no larger than `maxBytes`.
    public static func readFile(_ path: String, maxBytes: Int = maxFileBytes) throws(ModelLoadError) -> [UInt8] {
        func fail(_ message: String) -> ModelLoadError { ModelLoadError(path: path, message: message) }
        func systemError(_ what: String) -> ModelLoadError {
            fail("cannot \(what): \(String(cString: strerror(errno)))")
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw systemError("open") }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw systemError("stat") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw fail("not a regular file") }
        guard Int(info.st_size) <= maxBytes else {
            throw fail("file is \(info.st_size) bytes; the limit is \(maxBytes)")
        }
        // Read to the end rather than trusting st_size, and never past the limit.
        var bytes = [UInt8](repeating: 0, count: min(Int(info.st_size), maxBytes) + 1)
        var filled = 0
        while true {
            if filled == bytes.count {
                guard bytes.count <= maxBytes else { throw fail("file is larger than the limit of \(maxBytes) bytes") }
                bytes.append(contentsOf: repeatElement(0, count: min(bytes.count, maxBytes + 1 - bytes.count)))
            }
            let result = bytes.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress! + filled, buffer.count - filled)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw systemError("read")
            }
            if result == 0 { break }
            filled += result
        }
        bytes.removeSubrange(filled...)
        return bytes
    }
}
