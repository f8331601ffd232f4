import ArgumentParser
import Foundation
import Models
import Sidecar

struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the decision for one request (route, version and why, fallback, shadows); sends nothing.",
        discussion:
            "Exits 0 when the request would reach a version, 1 when the sidecar would refuse it (404 / 503) or the config is invalid."
    )

    @Option(name: .long, help: ArgumentHelp("Config directory holding routes/ and policies/.", valueName: "DIR"))
    var config = "."

    @Option(
        name: [.customShort("H"), .long],
        help: ArgumentHelp("A request header, 'Name: value' (repeatable).", valueName: "HEADER")
    )
    var header: [String] = []

    @Option(name: .long, help: ArgumentHelp("A file holding the request body (for body: keys).", valueName: "FILE"))
    var body: String?

    @Flag(name: .long, help: "Print the decision as one JSON object.")
    var json = false

    @Argument(help: "The request method, e.g. POST.")
    var method: String

    @Argument(help: "The request path, e.g. /v1/models/churn:predict.")
    var path: String

    func validate() throws {
        for h in header {
            guard let colon = h.firstIndex(of: ":"), colon > h.startIndex else {
                throw ValidationError("-H expects 'Name: value', got '\(h)'")
            }
        }
        guard path.hasPrefix("/") else { throw ValidationError("PATH must start with '/', got '\(path)'") }
    }

    func run() throws {
        let snapshot: ConfigSnapshot
        switch ConfigSnapshot.load(directory: config) {
        case .success(let s): snapshot = s
        case .failure(let diagnostics):
            for d in diagnostics { FileHandle.standardError.write(Data("\(d)\n".utf8)) }
            throw Exit.problem
        }
        var bodyBytes: [UInt8]?
        if let body {
            guard let data = FileManager.default.contents(atPath: body) else {
                throw ValidationError("cannot read --body file '\(body)'")
            }
            bodyBytes = [UInt8](data)
        }
        let headers: [(name: String, value: String)] = header.map { h in
            let colon = h.firstIndex(of: ":")!
            let value = h[h.index(after: colon)...].drop(while: { $0 == " " || $0 == "\t" })
            return (String(h[..<colon]), String(value))
        }
        let explanation = Explanation.explain(
            snapshot: snapshot,
            method: method,
            target: path,
            headers: headers,
            body: bodyBytes
        )
        if json {
            print(String(decoding: explanation.json.serialized(), as: UTF8.self))
        } else {
            print(explanation.text)
        }
        if !explanation.isRouted { throw Exit.problem }
    }
}
