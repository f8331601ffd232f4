import Foundation
import Testing

/// `switchyard schema`, `--version` and the completion scripts, run as a user runs them.
@Suite struct SchemaCommandTests {
    @Test func schemaPrintsTheCheckedInFiles() throws {
        for (arguments, path) in [
            (["schema", "routes"], "schema/routes.schema.json"),
            (["schema", "policy"], "schema/policy.schema.json"),
            (["schema", "--markdown"], "docs/configuration.md"),
        ] {
            let r = try CLI.run(arguments)
            #expect(r.status == 0, "\(arguments): \(r.stderr)")
            let checkedIn = try String(contentsOfFile: CLI.root + "/" + path, encoding: .utf8)
            #expect(r.stdout == checkedIn, "switchyard \(arguments.joined(separator: " ")) differs from \(path)")
        }
        let routes = try CLI.run(["schema", "routes"]).stdout
        #expect(routes.hasPrefix("{\n  \"$schema\": \"http://json-schema.org/draft-07/schema#\""))
    }

    @Test func schemaWithoutAKindIsAUsageError() throws {
        let r = try CLI.run(["schema"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("name the files: routes or policy"))
        #expect(try CLI.run(["schema", "routing"]).status == 64)
    }

    @Test func dashDashVersionPrintsWhatVersionPrints() throws {
        let flag = try CLI.run(["--version"])
        let command = try CLI.run(["version"])
        #expect(flag.status == 0)
        #expect(flag.stdout == command.stdout)
        #expect(flag.stdout.hasPrefix("switchyard 0."))
    }

    @Test(arguments: ["bash", "zsh", "fish"])
    func completionScriptsNameTheSubcommandsAndSchemaKinds(shell: String) throws {
        let r = try CLI.run(["--generate-completion-script", shell])
        #expect(r.status == 0)
        for word in ["validate", "schema", "routes", "policy", "markdown"] {
            #expect(r.stdout.contains(word), "\(shell) script lacks \(word)")
        }
    }

    /// A comparison log whose directory cannot be made (a path component is a regular file, which
    /// stops root too) is an error at the `log:` value; `validate` used to say ok.
    @Test func validateRefusesACompareLogThatCannotBeWritten() throws {
        let directory = try CLI.tempDirectory(files: [
            "routes/r.yaml": "routes:\n  - { name: churn, match: { path: /p }, model: churn }\n",
            "policies/p.yaml": """
            model: churn
            versions:
              v1: { url: "http://127.0.0.1:9001" }
              v2: { url: "http://127.0.0.1:9002" }
            split: { v1: 100 }
            shadow: [{ version: v2, percent: 100 }]
            compare:
              output: /predictions
              log: ../plain-file/logs/churn.jsonl
            """,
            "plain-file": "not a directory\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let r = try CLI.run(["validate", "."], in: directory)
        #expect(r.status == 1)
        #expect(
            r.stdout
                == "policies/p.yaml:9:8: error: cannot write compare log 'plain-file/logs/churn.jsonl': 'plain-file' is not a directory\n"
        )
    }
}
