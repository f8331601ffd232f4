import ArgumentParser
import Foundation
import Models
import Sidecar

struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the decision for one request (route, version and why, fallback, shadows); sends nothing.",
        usage: """
            switchyard explain [--config DIR] [-H 'Name: value']... [--body FILE] [--json] METHOD PATH
            switchyard explain [--config DIR] [-H 'name: value']... [--json] --grpc SERVICE/METHOD [--model NAME] [--model-version VERSION]
            """,
        discussion:
            "A REST request is METHOD PATH; a gRPC call is --grpc with the model and version its message names, and -H for its metadata. Exits 0 when the request would reach a version, 1 when the sidecar would refuse it (404 / 503, or the gRPC status) or the config is invalid."
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

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Explain a gRPC call to this method instead of a REST request, e.g. inference.GRPCInferenceService/ModelInfer.",
            valueName: "SERVICE/METHOD"
        )
    )
    var grpc: String?

    @Option(
        name: .long,
        help: ArgumentHelp("With --grpc: the model name in the call's message.", valueName: "NAME")
    )
    var model: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "With --grpc: the version in the call's message (model_version, or TF Serving's model_spec version or version_label).",
            valueName: "VERSION"
        )
    )
    var modelVersion: String?

    @Argument(help: "The request method, e.g. POST (not with --grpc).")
    var method: String?

    @Argument(help: "The request path, e.g. /v1/models/churn:predict (not with --grpc).")
    var path: String?

    func validate() throws {
        for h in header {
            guard let colon = h.firstIndex(of: ":"), colon > h.startIndex else {
                throw ValidationError("-H expects 'Name: value', got '\(h)'")
            }
        }
        if let grpc {
            if method != nil { throw ValidationError("--grpc explains a gRPC call; give no METHOD PATH with it") }
            if body != nil { throw ValidationError("--body is for REST requests; a gRPC call's keys come from -H") }
            let parts = grpc.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, !parts[0].hasPrefix("/") else {
                throw ValidationError("--grpc expects package.Service/Method, got '\(grpc)'")
            }
            return
        }
        if model != nil || modelVersion != nil {
            throw ValidationError("--model and --model-version describe a gRPC message; use them with --grpc")
        }
        guard method != nil, let path else {
            throw ValidationError("Missing expected argument '<method> <path>' (or --grpc SERVICE/METHOD)")
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
        let explanation: Explanation
        if let grpc {
            explanation = Explanation.explainGRPC(
                snapshot: snapshot,
                method: grpc,
                model: model,
                modelVersion: modelVersion,
                headers: headers
            )
        } else {
            explanation = Explanation.explain(
                snapshot: snapshot,
                method: method!,
                target: path!,
                headers: headers,
                body: bodyBytes
            )
        }
        if json {
            print(String(decoding: explanation.json.serialized(), as: UTF8.self))
        } else {
            print(explanation.text)
        }
        if !explanation.isRouted { throw Exit.problem }
    }
}
