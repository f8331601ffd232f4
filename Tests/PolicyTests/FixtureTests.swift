import Foundation
import Testing

@testable import Policy

/// Fixtures live in `Fixtures/{valid,invalid}/NAME/` with `routes/` and `policies/` like a
/// real config directory. Each is loaded by its absolute path; rendered diagnostics then have
/// `FIXTURE_DIR/` stripped, so `expected.txt` reads `policies/churn.yaml:4:3: error: ...`, one
/// diagnostic per line, exactly as `switchyard validate` run inside that directory prints them.
///
/// A valid fixture's warnings are in `warnings.txt` the same way (no file: no warnings).
///
/// To rewrite every `expected.txt` after a deliberate wording change, run the tests with
/// `SWITCHYARD_RECORD_FIXTURES=1` and review the diff.
enum Fixtures {
    static let root: URL = {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            fatalError("The PolicyTests bundle has no Fixtures folder; check Package.swift's resources.")
        }
        return url
    }()

    static func names(_ kind: String) -> [String] {
        let dir = root.appendingPathComponent(kind)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted()
    }

    static func directory(_ kind: String, _ name: String) -> String {
        root.appendingPathComponent(kind).appendingPathComponent(name).path
    }

    /// The diagnostics as the user reads them, paths relative to the fixture directory.
    static func render(_ diagnostics: [Diagnostic], in directory: String) -> String {
        diagnostics.map { $0.description.replacingOccurrences(of: directory + "/", with: "") }
            .joined(separator: "\n")
    }

    static func load(_ kind: String, _ name: String) -> Result<Config, [Diagnostic]> {
        ConfigLoader.load(directory: directory(kind, name))
    }
}

@Test func everyInvalidClassHasAFixture() {
    #expect(Fixtures.names("invalid").count >= 40)
    #expect(Fixtures.names("valid") == ["full", "grpc", "llm", "minimal", "transports"])
}

@Test(arguments: Fixtures.names("invalid"))
func invalidFixture(name: String) throws {
    let directory = Fixtures.directory("invalid", name)
    guard case .failure(let diagnostics) = ConfigLoader.load(directory: directory) else {
        Issue.record("fixture \(name) loaded without a diagnostic")
        return
    }
    let actual = Fixtures.render(diagnostics, in: directory)
    let expectedURL = URL(fileURLWithPath: directory).appendingPathComponent("expected.txt")
    if ProcessInfo.processInfo.environment["SWITCHYARD_RECORD_FIXTURES"] == "1" {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/invalid/\(name)/expected.txt")
        try (actual + "\n").write(to: source, atomically: true, encoding: .utf8)
    }
    let expected = try String(contentsOf: expectedURL, encoding: .utf8)
    #expect(actual == expected.trimmingCharacters(in: .newlines))
}

/// A config with warnings and no error loads; its warnings are what `validate` prints.
@Test(arguments: Fixtures.names("valid"))
func validFixtureLoadsWithItsWarnings(name: String) throws {
    let directory = Fixtures.directory("valid", name)
    guard case .success(let config) = ConfigLoader.load(directory: directory) else {
        Issue.record("valid fixture \(name) did not load")
        return
    }
    #expect(config.warnings.allSatisfy { $0.severity == .warning })
    let expectedURL = URL(fileURLWithPath: directory).appendingPathComponent("warnings.txt")
    let expected = (try? String(contentsOf: expectedURL, encoding: .utf8)) ?? ""
    #expect(Fixtures.render(config.warnings, in: directory) == expected.trimmingCharacters(in: .newlines))
}
