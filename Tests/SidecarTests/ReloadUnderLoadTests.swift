import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SPEC §7: a reload never fails a request, and the Kubernetes ConfigMap symlink swap is seen.
@Suite(.serialized) struct ReloadUnderLoadTests {
    static func policy(_ versions: [(String, Int, Int)]) -> String {
        // (name, port, weight)
        var text = "model: m\nversions:\n"
        for (name, port, _) in versions { text += "  \(name): { url: \"http://127.0.0.1:\(port)\" }\n" }
        text += "split: { " + versions.map { "\($0.0): \($0.2)" }.joined(separator: ", ") + " }\n"
        return text
    }

    @Test func reloadingEvery200msUnderLoadFailsNothing() throws {
        let upstreams = [
            FakeUpstream(.json(#"{"v":1}"#)), FakeUpstream(.json(#"{"v":2}"#)), FakeUpstream(.json(#"{"v":3}"#)),
        ]
        defer { for upstream in upstreams { upstream.stop() } }
        let ports = upstreams.map(\.port)
        let config = try TempConfig(
            routes: "routes:\n  - { name: main, match: { path: /m }, model: m }\n",
            policies: ["m": Self.policy([("v1", ports[0], 50), ("v2", ports[1], 50)])]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, workers: 2)
        defer { sidecar.stop() }

        // Versions added and removed, weights changing: every shape shares no state with the last.
        let shapes: [[(String, Int, Int)]] = [
            [("v1", ports[0], 90), ("v2", ports[1], 10)],
            [("v1", ports[0], 20), ("v3", ports[2], 80)],
            [("v3", ports[2], 100)],
            [("v2", ports[1], 40), ("v3", ports[2], 60)],
            [("v1", ports[0], 50), ("v2", ports[1], 25), ("v3", ports[2], 25)],
        ]
        let stop = ResultBox()
        let statuses = ResultBox()
        let clients = 4
        let group = DispatchGroup()
        for _ in 0..<clients {
            group.enter()
            Thread {
                defer { group.leave() }
                var client = Client(port: sidecar.port)
                while stop.values.isEmpty {
                    guard let c = client else {
                        statuses.add(-1)
                        return
                    }
                    if let r = c.request("POST", "/m", body: "{}") {
                        statuses.add(r.status)
                        if r.header("connection")?.lowercased() == "close" { client = Client(port: sidecar.port) }
                    } else {
                        statuses.add(-2)
                        client = Client(port: sidecar.port)
                    }
                }
            }.start()
        }
        var generations = 1
        for i in 0..<15 {
            // Each reload lands while requests flow: wait until some more have been answered.
            let answered = statuses.values.count
            #expect(eventually { statuses.values.count >= answered + 5 })
            try config.write("policies/m.yaml", Self.policy(shapes[i % shapes.count]))
            let reload = httpRequest(port: sidecar.adminPort, "POST", "/reload")
            #expect(reload?.status == 200)
            if reload?.status == 200 { generations += 1 }
        }
        let answered = statuses.values.count
        #expect(eventually { statuses.values.count >= answered + 5 })
        stop.add(1)
        #expect(group.wait(timeout: .now() + 10) == .success)

        let all = statuses.values
        #expect(all.count > 100)
        #expect(
            all.allSatisfy { $0 == 200 },
            "non-2xx: \(Dictionary(grouping: all.filter { $0 != 200 }) { $0 }.mapValues(\.count))"
        )
        // Every answered request reached exactly one upstream.
        let reached = upstreams.reduce(0) { $0 + $1.received.count }
        #expect(reached == all.count)
        #expect(sidecar.sidecar.snapshot.generation == generations)
    }

    @Test func aConfigMapSymlinkSwapIsPickedUp() throws {
        let one = FakeUpstream(.json(#"{"from":1}"#))
        let two = FakeUpstream(.json(#"{"from":2}"#))
        defer {
            one.stop()
            two.stop()
        }
        // The layout a ConfigMap volume has: DIR/..data -> ..2026_1; DIR/routes -> ..data/routes.
        let root = NSTemporaryDirectory() + "switchyard-cm-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fm = FileManager.default
        func writeGeneration(_ name: String, port: Int) throws {
            try fm.createDirectory(atPath: "\(root)/\(name)/routes", withIntermediateDirectories: true)
            try fm.createDirectory(atPath: "\(root)/\(name)/policies", withIntermediateDirectories: true)
            try "routes:\n  - { name: main, match: { path: /m }, model: m }\n".write(
                toFile: "\(root)/\(name)/routes/r.yaml",
                atomically: true,
                encoding: .utf8
            )
            try "model: m\nversions:\n  v1: { url: \"http://127.0.0.1:\(port)\" }\n".write(
                toFile: "\(root)/\(name)/policies/m.yaml",
                atomically: true,
                encoding: .utf8
            )
        }
        try writeGeneration("..2026_1", port: one.port)
        try fm.createSymbolicLink(atPath: "\(root)/..data", withDestinationPath: "..2026_1")
        try fm.createSymbolicLink(atPath: "\(root)/routes", withDestinationPath: "..data/routes")
        try fm.createSymbolicLink(atPath: "\(root)/policies", withDestinationPath: "..data/policies")

        let sidecar = try RunningSidecar(config: root) { $0.configPollMilliseconds = 50 }
        defer { sidecar.stop() }
        #expect(httpRequest(port: sidecar.port, "POST", "/m", body: "{}")?.bodyText == #"{"from":1}"#)

        // The kubelet writes a new timestamped folder, then renames a new ..data link over the old.
        try writeGeneration("..2026_2", port: two.port)
        try fm.createSymbolicLink(atPath: "\(root)/..data_tmp", withDestinationPath: "..2026_2")
        #expect(rename("\(root)/..data_tmp", "\(root)/..data") == 0)
        try fm.removeItem(atPath: "\(root)/..2026_1")

        let answer = polled {
            let text = httpRequest(port: sidecar.port, "POST", "/m", body: "{}")?.bodyText
            return text == #"{"from":2}"# ? text : nil
        }
        #expect(answer == #"{"from":2}"#)
        #expect(sidecar.sidecar.snapshot.generation == 2)
    }
}
