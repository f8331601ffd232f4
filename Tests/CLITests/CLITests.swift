import Foundation
@_exported import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The built `switchyard` binary, run as a user would: output and exit codes.
enum CLI {
    static var root: String { ServeProcess.root }
    static var binary: String { ServeProcess.binary }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ arguments: [String], in directory: String = root, timeout: TimeInterval = 30) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        if !eventually(within: timeout, { !process.isRunning }) { process.terminate() }
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self)
        )
    }

    static func tempDirectory(files: [String: String]) throws -> String {
        try temporaryDirectory(files: files, prefix: "switchyard-cli-")
    }
}

@Suite struct CLITests {
    @Test func versionNamesTheLibrariesLinked() throws {
        let r = try CLI.run(["version"])
        #expect(r.status == 0)
        #expect(r.stdout.hasPrefix("switchyard "))
        #expect(r.stdout.contains("libevent 2."))
        #expect(r.stdout.contains("libyaml 0."))
    }

    @Test func validateAcceptsTheDefaultConfig() throws {
        let r = try CLI.run(["validate", "."])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.hasPrefix(".: ok: 9 routes, 1 model, 4 versions (4 embedded), 2 files"))
    }

    @Test func validatePrintsEveryProblemAndExits1() throws {
        let dir = try CLI.tempDirectory(files: [
            "routes/r.yaml": """
            routes:
              - name: r
                match: { path: /p, methd: POST }
                model: nosuch
            """,
            "policies/m.yaml": """
            model: m
            versions:
              v1: { url: "http://127.0.0.1:9001" }
              v2: { url: "http://127.0.0.1:9002" }
            split: { v1: 60, v2: 30 }
            """,
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["validate", "."], in: dir)
        #expect(r.status == 1)
        #expect(
            r.stdout == """
                policies/m.yaml:5:1: error: split weights sum to 90, expected 100
                routes/r.yaml:3:24: error: unknown key 'methd' in match; expected one of: path, prefix, template, grpc, method, headers, model
                routes/r.yaml:4:12: error: unknown model 'nosuch'; expected one of: m

                """
        )
        #expect(r.stderr == "3 errors\n")
    }

    @Test func validateReportsAMissingModelFile() throws {
        let dir = try CLI.tempDirectory(files: [
            "routes/r.yaml": "routes:\n  - { name: r, match: { path: /p }, model: m }\n",
            "policies/m.yaml": "model: m\nversions:\n  v1: { embedded: linear, file: missing.json }\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["validate", dir])
        #expect(r.status == 1)
        #expect(r.stdout.contains("policies/m.yaml:3:"))
        #expect(r.stdout.contains("missing.json"))
        #expect(r.stdout.contains("No such file or directory"))
    }

    @Test func validateReportsAModelFileThatDoesNotLoad() throws {
        let dir = try CLI.tempDirectory(files: [
            "routes/r.yaml": "routes:\n  - { name: r, match: { path: /p }, model: m }\n",
            "policies/m.yaml": "model: m\nversions:\n  v1: { embedded: linear, file: bad.json }\n",
            "policies/bad.json": "{\"coef\": [1, 2], \"intercept\": 0, \"link\": \"cubic\"}",
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["validate", dir])
        #expect(r.status == 1)
        #expect(r.stdout.hasPrefix("\(dir)/policies/m.yaml:3:7: error: version 'v1': "), "\(r.stdout)")
        #expect(r.stdout.contains("cubic"))
    }

    /// A warning alone (SPEC §11: `insecure_skip_verify: true`, validate warns) is printed like
    /// an error but does not fail validation.
    @Test func validatePrintsWarningsAndStillExits0() throws {
        let dir = try CLI.tempDirectory(files: [
            "routes/r.yaml": "routes:\n  - { name: r, match: { path: /p }, model: m }\n",
            "policies/m.yaml": """
            model: m
            versions:
              v1:
                url: "https://models.internal:8443"
                tls: { insecure_skip_verify: true }
            """,
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["validate", "."], in: dir)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(
            r.stdout == """
                policies/m.yaml:5:34: warning: insecure_skip_verify is true: the certificate of 'https://models.internal:8443' is not verified, so anyone on the network path can pose as this backend
                .: ok: 1 route, 1 model, 1 version (0 embedded), 2 files

                """
        )
        #expect(r.stderr == "")
    }

    @Test func validateWithErrorsPrintsWarningsTooAndCountsBoth() throws {
        let dir = try CLI.tempDirectory(files: [
            "routes/r.yaml": "routes:\n  - { name: r, match: { path: /p }, model: m }\n",
            "policies/m.yaml": """
            model: m
            versions:
              v1: { url: "https://models.internal", tls: { ca_file: ca.pem, insecure_skip_verify: true } }
              v2: { url: "unix:run/model.sock" }
            split: { v1: 100 }
            """,
            "policies/ca.pem": "placeholder",
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["validate", "."], in: dir)
        #expect(r.status == 1)
        #expect(
            r.stdout == """
                policies/m.yaml:3:57: warning: ca_file 'policies/ca.pem' is ignored: insecure_skip_verify is true, so no certificate is checked against it
                policies/m.yaml:3:87: warning: insecure_skip_verify is true: the certificate of 'https://models.internal' is not verified, so anyone on the network path can pose as this backend
                policies/m.yaml:4:14: error: bad url 'unix:run/model.sock': the socket path 'run/model.sock' must be absolute (start with '/'); expected unix:/abs/path.sock[:/path]

                """
        )
        #expect(r.stderr == "1 error, 2 warnings\n")
    }

    @Test func explainPrintsRouteAndVersion() throws {
        let pinned = try CLI.run(["explain", "POST", "/v1/models/churn/labels/candidate:predict"])
        #expect(pinned.status == 0, "\(pinned.stderr)")
        #expect(pinned.stdout.contains("route: churn-labelled (routes/churn.yaml:"))
        #expect(pinned.stdout.contains("version: v2\n"))
        #expect(pinned.stdout.contains("fallback: v1"))

        let byHeader = try CLI.run(["explain", "POST", "/churn/predict", "-H", "x-model-version: v1"])
        #expect(byHeader.stdout.contains("route: churn-by-header"))
        #expect(byHeader.stdout.contains("version: v1\n"))
        #expect(byHeader.stdout.contains("fallback: none"))

        let sticky1 = try CLI.run(["explain", "--json", "POST", "/v1/models/churn:predict", "-H", "x-user-id: u-42"])
        let sticky2 = try CLI.run(["explain", "--json", "POST", "/v1/models/churn:predict", "-H", "x-user-id: u-42"])
        #expect(sticky1.status == 0)
        let decision = try #require(
            try JSONSerialization.jsonObject(with: Data(sticky1.stdout.utf8)) as? [String: Any]
        )
        #expect(decision["route"] as? String == "churn")
        #expect(["v1", "v2"].contains(decision["version"] as? String))
        #expect(sticky1.stdout == sticky2.stdout)
    }

    @Test func explainExits1WhenTheRequestWouldBeRefused() throws {
        let unknown = try CLI.run(["explain", "POST", "/v1/models/churn/versions/v9:predict"])
        #expect(unknown.status == 1)
        #expect(unknown.stdout.contains("response: 404 unknown_version"))
        let none = try CLI.run(["explain", "GET", "/nowhere"])
        #expect(none.status == 1)
        #expect(none.stdout.contains("route: none"))
        #expect(none.stdout.contains("404 no_route"))
    }

    @Test func explainReadsBodyKeys() throws {
        let dir = try CLI.tempDirectory(files: ["body.json": #"{"instances": [{"customer_id": 1001}]}"#])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run([
            "explain", "--body", dir + "/body.json", "POST", "/v1/models/churn/labels/precomputed:predict",
        ])
        #expect(r.status == 0)
        #expect(r.stdout.contains("version: v0\n"))
        #expect(r.stdout.contains("keyed by body:/instances/0/customer_id"))
    }

    @Test func badUsageExits64() throws {
        let r = try CLI.run(["serve", "--listen", "nonsense"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--listen expects HOST:PORT"))
    }
}

/// The README's run command: the default config answering real predictions, then SIGTERM.
@Suite struct DefaultConfigServeTests {
    /// Sends `request` on a fresh connection to 127.0.0.1:`port` and reads the answer to EOF (5 s
    /// receive timeout); nil when the connection is refused.
    static func roundTrip(port: Int, _ request: String) -> [UInt8]? {
        let fd = Net.connect(port: port, timeoutSeconds: 5)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += chunk[0..<n]
        }
        return received
    }

    /// One POST on a fresh connection (`Connection: close`), read to EOF.
    static func post(
        port: Int,
        path: String,
        body: String,
        headers: [String: String] = [:]
    ) -> (Int, [String: String], String)? {
        let extra = headers.map { "\($0.key): \($0.value)\r\n" }.joined()
        guard
            let received = roundTrip(
                port: port,
                "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\(extra)"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
            )
        else { return nil }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { return nil }
        var lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let status = Int(lines.removeFirst().split(separator: " ")[1]) ?? 0
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces
            )
        }
        return (status, headers, String(text[split.upperBound...]))
    }

    @Test func theDefaultConfigServesPredictionsAndStopsOnSIGTERM() throws {
        // Ports 0: the kernel picks them and the "serving" line says which.
        let serve = try ServeProcess(["--workers", "2"])
        defer { serve.kill() }
        let port = serve.port
        #expect(port > 0 && serve.adminPort > 0 && port != serve.adminPort, "\(serve.stderr)")
        #expect(Net.canConnect(port: serve.adminPort))

        let r = try #require(
            Self.post(
                port: port,
                path: "/v1/models/churn/versions/v1:predict",
                body: #"{"instances": [[12, 73.36, 2, 1]]}"#
            )
        )
        #expect(r.0 == 200)
        #expect(r.1["x-switchyard-version"] == "v1")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.2.utf8)) as? [String: Any])
        let predictions = try #require(json["predictions"] as? [Double])
        #expect(predictions.count == 1)
        #expect(predictions[0] > 0 && predictions[0] < 1)

        let table = try #require(
            Self.post(
                port: port,
                path: "/v1/models/churn/labels/precomputed:predict",
                body: #"{"instances": [{"customer_id": 1001}]}"#
            )
        )
        #expect(table.0 == 200)
        #expect(table.1["x-switchyard-version"] == "v0")

        let split = try #require(
            Self.post(port: port, path: "/v1/models/churn:predict", body: #"{"instances": [[1, 2, 3, 4]]}"#)
        )
        #expect(split.0 == 200)
        #expect(["v1", "v2"].contains(split.1["x-switchyard-version"] ?? ""))

        #expect(serve.stop() == 0)
    }
}

/// Sticky assignment agrees across separate processes and moves keys only toward a raised weight.
@Suite struct StickyAcrossProcessesTests {
    static func config(v1: Int, v2: Int) throws -> String {
        let models = CLI.root + "/examples/models"
        return try CLI.tempDirectory(files: [
            "routes/r.yaml": "routes:\n  - { name: r, match: { path: /p }, model: m, protocol: tfserving }\n",
            "policies/m.yaml": """
            model: m
            versions:
              v1: { embedded: linear, file: \(models)/churn-linear-v1.json }
              v2: { embedded: linear, file: \(models)/churn-linear-v2.json }
            split: { v1: \(v1), v2: \(v2) }
            sticky: header:x-user-id
            """,
        ])
    }

    final class Server {
        let serve: ServeProcess
        var port: Int { serve.port }
        init(config: String) throws {
            serve = try ServeProcess(["--config", config, "--workers", "1"])
        }
        func stop() { serve.stop() }
        func version(for user: String) -> String? {
            DefaultConfigServeTests.post(
                port: port,
                path: "/p",
                body: #"{"instances": [[1, 2, 3, 4]]}"#,
                headers: ["x-user-id": user]
            )?.1["x-switchyard-version"]
        }
    }

    @Test func twoProcessesAssignEveryKeyAlikeAndARaisedWeightOnlyGainsKeys() throws {
        let before = try Self.config(v1: 70, v2: 30)
        let after = try Self.config(v1: 50, v2: 50)
        defer { for d in [before, after] { try? FileManager.default.removeItem(atPath: d) } }
        let a = try Server(config: before)
        let b = try Server(config: before)
        let c = try Server(config: after)
        defer {
            a.stop()
            b.stop()
            c.stop()
        }
        let users = (0..<150).map { "user-\($0)" }
        let fromA = users.map { a.version(for: $0) }
        let fromB = users.map { b.version(for: $0) }
        let fromC = users.map { c.version(for: $0) }
        #expect(fromA.allSatisfy { $0 == "v1" || $0 == "v2" })
        #expect(fromA == fromB)
        let moved = zip(fromA, fromC).filter { $0 != $1 }
        #expect(!moved.isEmpty)
        #expect(moved.allSatisfy { $0.0 == "v1" && $0.1 == "v2" })
        let v2Share = Double(fromC.filter { $0 == "v2" }.count) / Double(users.count)
        #expect(v2Share > 0.35 && v2Share < 0.65)
    }
}

/// The README's samples say what the commands print.
@Suite struct ReadmeSampleTests {
    /// The `explain` sample in "A five-minute tour" is the command's output, line numbers included.
    @Test func theExplainSampleIsWhatExplainPrints() throws {
        let readme = try String(contentsOfFile: CLI.root + "/README.md", encoding: .utf8)
        let command = "    swift run switchyard explain POST /v1/models/churn:predict -H 'x-user-id: u-42'\n\n"
        let start = try #require(readme.range(of: command)).upperBound
        // The sample: the indented lines after the command, up to the first blank line.
        let sample = readme[start...].components(separatedBy: "\n\n")[0]
            .split(separator: "\n").map { $0.hasPrefix("    ") ? String($0.dropFirst(4)) : String($0) }
        let r = try CLI.run(["explain", "POST", "/v1/models/churn:predict", "-H", "x-user-id: u-42"])
        #expect(r.status == 0)
        #expect(r.stdout.split(separator: "\n").map(String.init) == sample)
    }
}
