import ArgumentParser
import Foundation
import Sidecar

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load and check a config directory, model files included.",
        discussion: """
            Prints every problem, one per line (file:line:column: error: message), and exits 1 \
            if there is any error; otherwise prints the warnings (file:line:column: warning: message), \
            if any, then a one-line summary, and exits 0, like `nginx -t`.
            """
    )

    @Argument(help: ArgumentHelp("Config directory holding routes/ and policies/.", valueName: "DIR"))
    var directory = "."

    func run() throws {
        switch ConfigSnapshot.load(directory: directory) {
        case .success(let snapshot):
            // Warnings do not fail validation (like a compiler's): they are printed, then the summary.
            for w in snapshot.config.warnings { print(w.description) }
            print("\(directory): ok: \(snapshot.summary)")
        case .failure(let diagnostics):
            for d in diagnostics { print(d.description) }
            let errors = diagnostics.filter(\.isError).count
            let warnings = diagnostics.count - errors
            var counts = "\(errors) error\(errors == 1 ? "" : "s")"
            if warnings > 0 { counts += ", \(warnings) warning\(warnings == 1 ? "" : "s")" }
            FileHandle.standardError.write(Data("\(counts)\n".utf8))
            throw Exit.problem
        }
    }
}
