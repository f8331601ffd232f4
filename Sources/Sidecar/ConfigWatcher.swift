import Foundation
import Policy

/// Notices changes under a config directory by polling: the YAML files' resolved paths and
/// contents, and the model and TLS files' resolved paths, sizes and modification times. Resolving
/// paths catches the Kubernetes ConfigMap `..data` symlink swap, where no file is written in
/// place. Admin loop thread only.
final class ConfigWatcher {
    let directory: String
    /// The files the current config names besides its YAML: models and TLS files.
    private let files: () -> [String]
    private var last: [String: String] = [:]
    /// The last poll could not read a file or directory that is there (EMFILE...).
    private(set) var isFailing = false

    init(directory: String, files: @escaping () -> [String]) {
        self.directory = directory
        self.files = files
        last = fingerprint() ?? [:]
    }

    /// Records the current state as seen (after a reload attempt).
    func remember() {
        if let now = fingerprint() { last = now }
    }

    /// Whether anything changed since the last check; the new state becomes the reference,
    /// so a broken edit is reported once, not every poll. A poll that cannot read what is there
    /// (out of descriptors) reports no change and keeps the reference: the next poll retries.
    func hasChanged() -> Bool {
        guard let now = fingerprint() else {
            isFailing = true
            return false
        }
        isFailing = false
        defer { last = now }
        return now != last
    }

    /// The state of every watched file, or nil when something that exists could not be read.
    private func fingerprint() -> [String: String]? {
        var out: [String: String] = [:]
        let fm = FileManager.default
        for sub in ["routes", "policies"] {
            let dir = (directory as NSString).appendingPathComponent(sub)
            out[dir] = (dir as NSString).resolvingSymlinksInPath
            guard let names = try? fm.contentsOfDirectory(atPath: dir) else {
                if fm.fileExists(atPath: dir) { return nil }
                continue
            }
            for name in names where name.hasSuffix(".yaml") || name.hasSuffix(".yml") {
                let path = (dir as NSString).appendingPathComponent(name)
                let resolved = (path as NSString).resolvingSymlinksInPath
                guard let bytes = fm.contents(atPath: resolved) ?? (fm.fileExists(atPath: resolved) ? nil : Data())
                else { return nil }
                out[path] = "\(resolved) \(ConfigLoader.fnv1a64([UInt8](bytes)))"
            }
        }
        for file in files() {
            let resolved = (file as NSString).resolvingSymlinksInPath
            let attributes = try? fm.attributesOfItem(atPath: resolved)
            let size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
            let mtime = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            out[file] = "\(resolved) \(size) \(mtime)"
        }
        return out
    }
}
