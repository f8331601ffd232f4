import ArgumentParser
import Foundation
import Sidecar

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load and check a config directory, model files included.",
        discussion: """
            Prints every problem, one per line (file:line:column: error: message), and exits 1 \
            if there is any; otherwise prints a one-line summary and exits 0, like `nginx -t`.
            """
    )

    @Argument(help: ArgumentHelp("Config directory holding routes/ and policies/.", valueName: "DIR"))
    var directory = "."

    func run() throws {
        switch ConfigSnapshot.load(directory: directory) {
        case .success(let snapshot):
            print("\(directory): ok: \(snapshot.summary)")
        case .failure(let diagnostics):
            for d in diagnostics { print(d.description) }
            let count = diagnostics.count
            FileHandle.standardError.write(Data("\(count) error\(count == 1 ? "" : "s")\n".utf8))
            throw Exit.problem
        }
    }
}
