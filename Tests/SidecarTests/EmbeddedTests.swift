import Foundation
import Testing

/// Embedded versions (linear, table) answered inside the sidecar, with fallback between them.
@Suite(.serialized) struct EmbeddedTests {
    static let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("examples/models").path

    static func config(remotePort: Int? = nil) throws -> TempConfig {
        let remote = remotePort.map { "  r1: { url: \"http://127.0.0.1:\($0)\" }\n" } ?? ""
        return try TempConfig(
            routes: """
                routes:
                  - name: pinned
                    match: { template: "/v1/models/churn/versions/{version}:predict" }
                    model: churn
                    protocol: tfserving
                """,
            policies: [
                "churn": """
                model: churn
                versions:
                  v1: { embedded: linear, file: \(models)/churn-linear-v1.json }
                  v0: { embedded: table, file: \(models)/churn-scores.csv, key: "body:/instances/0/customer_id" }
                  t2: { embedded: table, file: \(models)/churn-scores.csv, key: "header:x-customer" }
                \(remote)labels: { stable: v1 }
                split: { v1: 100 }
                fallback: \(remotePort == nil ? "stable" : "r1")
                """
            ]
        )
    }

    @Test func linearPredictionsMatchScikitLearn() throws {
        let config = try Self.config()
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        // Rows and predict_proba[:, 1] from examples/models/churn-linear-v1.expected.json.
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.models + "/churn-linear-v1.expected.json"))
        let expected = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let rows = try #require(expected["instances"] as? [[Double]])
        let body = String(decoding: try JSONSerialization.data(withJSONObject: ["instances": rows]), as: UTF8.self)
        let r = try #require(
            httpRequest(port: sidecar.port, "POST", "/v1/models/churn/versions/v1:predict", body: body)
        )
        #expect(r.status == 200)
        #expect(r.header("x-switchyard-version") == "v1")
        #expect(r.header("content-type") == "application/json")
        let predictions = try #require(r.json?["predictions"] as? [Double])
        let reference = try #require(expected["predict_proba_1"] as? [Double])
        #expect(predictions.count == rows.count)
        for (p, q) in zip(predictions, reference) {
            #expect(abs(p - q) <= 1e-9 * max(1, abs(q)))
        }
    }

    /// An embedded answer takes microseconds: the duration histogram starts at 25 µs.
    @Test func anEmbeddedAnswerLandsInASubMillisecondBucket() throws {
        let config = try Self.config()
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let client = try #require(Client(port: sidecar.port))
        for _ in 0..<20 {
            let r = try #require(
                client.request(
                    "POST",
                    "/v1/models/churn/versions/v1:predict",
                    body: #"{"instances":[[12.0, 73.36, 2.0, 1.0]]}"#
                )
            )
            #expect(r.status == 200)
        }
        let text = ShadowTests.metrics(sidecar)
        let series = #"switchyard_request_duration_seconds_bucket{model="churn",version="v1",role="live""#
        #expect(ShadowTests.metric(text, series + #",le="2.5e-05"}"#) != nil)
        #expect(ShadowTests.metric(text, series + #",le="0.0005"}"#) ?? 0 > 0)
        #expect(ShadowTests.metric(text, series + #",le="+Inf"}"#) == 20)
    }

    @Test func badInstancesAre400WithoutFallback() throws {
        let config = try Self.config()
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let cases = [
            (#"{"instances": [[1, 2, 3]]}"#, "expected 4 features"),
            ("not json", "not JSON"),
            (#"{"instances": [{"tenure_months": 1, "bogus": 2}]}"#, "bogus"),
        ]
        for (body, fragment) in cases {
            let r = try #require(
                httpRequest(port: sidecar.port, "POST", "/v1/models/churn/versions/v1:predict", body: body)
            )
            #expect(r.status == 400, "\(body)")
            #expect(r.json?["error"] as? String == "bad_request")
            #expect((r.json?["detail"] as? String)?.contains(fragment) == true, "\(r.bodyText)")
            #expect(r.header("x-switchyard-fallback") == nil)
        }
    }

    @Test func tablesAnswerByKeyAndMissesFallBack() throws {
        let upstream = FakeUpstream(.json(#"{"predictions":[0.5]}"#))
        defer { upstream.stop() }
        let config = try Self.config(remotePort: upstream.port)
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }

        let hit = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/v1/models/churn/versions/v0:predict",
                body: #"{"instances": [{"customer_id": 1001}]}"#
            )
        )
        #expect(hit.status == 200)
        #expect(hit.bodyText == #"{"predictions":[0.8906722628860125]}"#)
        #expect(hit.header("x-switchyard-version") == "v0")

        let byHeader = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/v1/models/churn/versions/t2:predict",
                headers: [("x-customer", "1002")],
                body: "{}"
            )
        )
        #expect(byHeader.bodyText == #"{"predictions":[0.0742785603340952]}"#)

        let miss = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/v1/models/churn/versions/v0:predict",
                body: #"{"instances": [{"customer_id": 42}]}"#
            )
        )
        #expect(miss.status == 200)
        #expect(miss.header("x-switchyard-version") == "r1")
        #expect(miss.header("x-switchyard-fallback") == "v0")
        #expect(miss.bodyText == #"{"predictions":[0.5]}"#)
        #expect(upstream.received.count == 1)
    }

    @Test func aTableMissWithoutFallbackIs404NoPrediction() throws {
        let config = try TempConfig(
            routes: "routes:\n  - { name: t, match: { path: /t }, model: t, protocol: tfserving }\n",
            policies: [
                "t":
                    "model: t\nversions:\n  v0: { embedded: table, file: \(Self.models)/churn-scores.csv, key: \"query:id\" }\n"
            ]
        )
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path)
        defer { sidecar.stop() }
        let miss = try #require(httpRequest(port: sidecar.port, "POST", "/t?id=7", body: "{}"))
        #expect(miss.status == 404)
        #expect(miss.json?["error"] as? String == "no_prediction")
        let hit = try #require(httpRequest(port: sidecar.port, "POST", "/t?id=1001", body: "{}"))
        #expect(hit.status == 200)
    }
}
