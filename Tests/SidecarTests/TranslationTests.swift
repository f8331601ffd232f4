import Foundation
import Testing

/// A client speaking one protocol served by a backend speaking the other (SPEC §3 "Protocols").
@Suite(.serialized) struct TranslationTests {
    static func config(routeProtocol: String, versionProtocol: String, port: Int) throws -> TempConfig {
        try TempConfig(
            routes: """
                routes:
                  - { name: r, match: { prefix: /m }, model: m, protocol: \(routeProtocol) }
                """,
            policies: [
                "m":
                    "model: m\nversions:\n  v1: { url: \"http://127.0.0.1:\(port)/backend\", protocol: \(versionProtocol) }\n"
            ]
        )
    }

    @Test func aTFServingClientIsServedByAV2Backend() throws {
        let upstream = FakeUpstream(
            .json(
                #"{"model_name":"m","model_version":"1","outputs":[{"name":"predict","datatype":"FP64","shape":[2],"data":[0.25,0.75]}]}"#
            )
        )
        defer { upstream.stop() }
        let config = try Self.config(routeProtocol: "tfserving", versionProtocol: "v2", port: upstream.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let r = try #require(
            httpRequest(port: sidecar.port, "POST", "/m", body: #"{"instances": [[1, 2, 3], [4, 5, 6]]}"#)
        )
        #expect(r.status == 200)
        #expect(r.bodyText == #"{"predictions":[0.25,0.75]}"#)
        let seen = try #require(upstream.received.first)
        #expect(seen.requestLine == "POST /backend HTTP/1.1")
        let sent = try #require(try JSONSerialization.jsonObject(with: Data(seen.body)) as? [String: Any])
        let inputs = try #require(sent["inputs"] as? [[String: Any]])
        #expect(inputs.count == 1)
        #expect(inputs[0]["shape"] as? [Int] == [2, 3])
        #expect(inputs[0]["datatype"] as? String == "FP64")
        #expect(
            (inputs[0]["data"] as? [Double]) == [1, 2, 3, 4, 5, 6]
                || (inputs[0]["data"] as? [[Double]]) == [[1, 2, 3], [4, 5, 6]]
        )
        #expect(seen.header("content-length") == "\(seen.body.count)")
    }

    @Test func aV2ClientIsServedByATFServingBackend() throws {
        let upstream = FakeUpstream(.json(#"{"predictions":[[0.1,0.9]]}"#))
        defer { upstream.stop() }
        let config = try Self.config(routeProtocol: "v2", versionProtocol: "tfserving", port: upstream.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let r = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/m",
                body: #"{"id":"q7","inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#
            )
        )
        #expect(r.status == 200)
        let body = try #require(r.json)
        #expect(body["model_name"] as? String == "m")
        #expect(body["model_version"] as? String == "v1")
        #expect(body["id"] as? String == "q7")
        let outputs = try #require(body["outputs"] as? [[String: Any]])
        #expect(outputs.first?["shape"] as? [Int] == [1, 2])
        let sent = try #require(
            try JSONSerialization.jsonObject(with: Data(upstream.received.first?.body ?? [])) as? [String: Any]
        )
        #expect(sent["instances"] as? [[Double]] == [[1, 2, 3]])
    }

    @Test func anUntranslatableBackendAnswerIs502() throws {
        let upstream = FakeUpstream(.json(#"{"outputs":"nope"}"#))
        defer { upstream.stop() }
        let config = try Self.config(routeProtocol: "tfserving", versionProtocol: "v2", port: upstream.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let r = try #require(httpRequest(port: sidecar.port, "POST", "/m", body: #"{"instances": [[1]]}"#))
        #expect(r.status == 502)
        #expect(r.json?["error"] as? String == "upstream_bad_response")
        let bad = try #require(httpRequest(port: sidecar.port, "POST", "/m", body: #"{"instances": "x"}"#))
        #expect(bad.status == 400)
        #expect(upstream.received.count == 1)
    }
}
