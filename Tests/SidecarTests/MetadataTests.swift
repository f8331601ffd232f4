import Foundation
import Testing

/// The metadata endpoints TF Serving and OIP clients call, on the repository's default config.
@Suite(.serialized) struct MetadataTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    @Test func oipAndTFServingMetadata() throws {
        let sidecar = try RunningSidecar(config: Self.root)
        defer { sidecar.stop() }
        let live = try #require(httpRequest(port: sidecar.port, "GET", "/v2/health/live"))
        #expect(live.status == 200)
        #expect(live.bodyText == #"{"live":true}"#)
        let ready = try #require(httpRequest(port: sidecar.port, "GET", "/v2/models/churn/ready"))
        #expect(ready.bodyText == #"{"name":"churn","ready":true}"#)

        let model = try #require(httpRequest(port: sidecar.port, "GET", "/v2/models/churn/versions/challenger"))
        #expect(model.status == 200)
        let json = try #require(model.json)
        #expect(json["name"] as? String == "churn")
        #expect(json["versions"] as? [String] == ["v3"])
        #expect(json["platform"] as? String == "xgboost")
        let inputs = try #require(json["inputs"] as? [[String: Any]])
        #expect(inputs.first?["shape"] as? [Int] == [-1, 4])
        #expect(json["outputs"] != nil)

        let status = try #require(httpRequest(port: sidecar.port, "GET", "/v1/models/churn"))
        let versions = try #require(status.json?["model_version_status"] as? [[String: Any]])
        #expect(versions.map { $0["version"] as? String } == ["v1", "v2", "v3", "v0"])
        let metadata = try #require(httpRequest(port: sidecar.port, "GET", "/v1/models/churn/metadata"))
        #expect((metadata.json?["model_spec"] as? [String: Any])?["version"] as? String == "v1")

        let unknown = try #require(httpRequest(port: sidecar.port, "GET", "/v2/models/nope"))
        #expect(unknown.status == 404)
        let unknownVersion = try #require(httpRequest(port: sidecar.port, "GET", "/v2/models/churn/versions/v9"))
        #expect(unknownVersion.status == 404)
        #expect(unknownVersion.json?["error"] as? String == "unknown_version")
    }
}
