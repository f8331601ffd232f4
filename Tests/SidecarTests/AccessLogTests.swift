import Foundation
import Logging
import Testing

@testable import Sidecar

/// The access log (`--access-log`): one line per request and per shadow copy, parsed back as a
/// log reader would, in both formats; rotation, drops, and nothing at all when it is off.
@Suite(.serialized) struct AccessLogTests {
    /// A temporary directory for one test's log files.
    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "switchyard-access-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func lines(in path: String) -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    /// Waits (up to 10 s) until the file has at least `count` lines; returns them.
    static func waitForLines(_ path: String, count: Int) -> [String] {
        var lines: [String] = []
        eventually {
            lines = Self.lines(in: path)
            return lines.count >= count
        }
        return lines
    }

    static func records(_ lines: [String]) throws -> [[String: Any]] {
        try lines.map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
        }
    }

    /// The one record with this request id and role.
    static func record(_ records: [[String: Any]], id: String, role: String = "live") throws -> [String: Any] {
        let found = records.filter { $0["request_id"] as? String == id && $0["role"] as? String == role }
        try #require(found.count == 1, "\(found.count) \(role) records for \(id) in \(records)")
        return found[0]
    }

    /// Starts a sidecar whose access log goes to `path`.
    static func sidecar(
        _ config: TempConfig,
        path: String,
        format: AccessLogFormat = .json,
        configure: (inout SidecarOptions) -> Void = { _ in }
    ) throws -> RunningSidecar {
        try RunningSidecar(config: config.path) {
            $0.accessLogPath = path
            $0.accessLogFormat = format
            $0.maxResponseBytes = 1 << 20
            configure(&$0)
        }
    }

    /// RFC 3339 UTC with milliseconds, as `2026-12-03T12:41:23.123Z`.
    static func isTimestamp(_ text: String?) -> Bool {
        guard let text else { return false }
        return text.wholeMatch(of: #/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/#) != nil
    }

    @Test func aLiveRequestAndItsShadowEachGetALine() throws {
        let live = FakeUpstream(.json(#"{"predictions":[0.5]}"#))
        let shadow = FakeUpstream(.json(#"{"predictions":[0.25, 1]}"#))
        defer {
            live.stop()
            shadow.stop()
        }
        let config = try ShadowTests.config(live: live.port, shadow: shadow.port)
        defer { config.remove() }
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/access.log"
        let sidecar = try Self.sidecar(config, path: path)
        defer { sidecar.stop() }

        let body = #"{"instances":[[1]]}"#
        let response = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/predict?api_key=s3cret",
                headers: [("x-request-id", "acc-1")],
                body: body
            )
        )
        #expect(response.status == 200)
        let records = try Self.records(Self.waitForLines(path, count: 2))
        #expect(records.count == 2)

        let line = try Self.record(records, id: "acc-1")
        #expect(Self.isTimestamp(line["time"] as? String))
        #expect(line["route"] as? String == "main")
        #expect(line["model"] as? String == "m")
        #expect(line["version"] as? String == "v1")
        #expect(line["method"] as? String == "POST")
        #expect(line["path"] as? String == "/predict")
        #expect(line["status"] as? Int == 200)
        #expect(line["error"] is NSNull)
        #expect(line["bytes_in"] as? Int == body.utf8.count)
        #expect(line["bytes_out"] as? Int == response.body.count)
        #expect(line["upstream"] as? String == "127.0.0.1:\(live.port)")
        #expect(line["fallback"] is NSNull)
        #expect(line["sticky_key"] as? Bool == false)
        let duration = try #require(line["duration_ms"] as? Double)
        let upstream = try #require(line["upstream_ms"] as? Double)
        #expect(duration > 0 && upstream > 0 && upstream <= duration)

        let copy = try Self.record(records, id: "acc-1", role: "shadow")
        #expect(copy["version"] as? String == "v2")
        #expect(copy["route"] as? String == "main")
        #expect(copy["status"] as? Int == 200)
        #expect(copy["bytes_in"] as? Int == body.utf8.count)
        #expect(copy["bytes_out"] as? Int == #"{"predictions":[0.25, 1]}"#.utf8.count)
        #expect(copy["upstream"] as? String == "127.0.0.1:\(shadow.port)")
        #expect(copy["upstream_ms"] is Double)

        // Never the bodies, never the query.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(!text.contains("s3cret"))
        #expect(!text.contains("instances") && !text.contains("predictions"))
    }

    @Test func aFallbackNamesTheVersionThatFailed() throws {
        let healthy = FakeUpstream(.json(#"{"predictions":[1]}"#))
        defer { healthy.stop() }
        let config = try ProxyTests.remoteConfig(
            versions: [
                ("v1", #"{ url: "http://127.0.0.1:\#(healthy.port)" }"#),
                ("v2", #"{ url: "http://127.0.0.1:\#(deadPort())", timeout_ms: 300 }"#),
            ],
            labels: "{ stable: v1, candidate: v2 }",
            split: "{ stable: 0, candidate: 100 }",
            fallback: "stable"
        )
        defer { config.remove() }
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/access.log"
        let sidecar = try Self.sidecar(config, path: path)
        defer { sidecar.stop() }

        let response = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/v1/models/m:predict",
                headers: [("x-request-id", "fb")],
                body: "{}"
            )
        )
        #expect(response.status == 200)
        let line = try Self.record(try Self.records(Self.waitForLines(path, count: 1)), id: "fb")
        #expect(line["version"] as? String == "v1")
        #expect(line["fallback"] as? String == "v2")
        #expect(line["error"] is NSNull)
        #expect(line["upstream"] as? String == "127.0.0.1:\(healthy.port)")
    }

    /// One request per sidecar error code (SPEC §8), and a backend's own 5xx, which is no code.
    @Test(arguments: [
        "no_route", "unknown_version", "upstream_connect_failed", "upstream_timeout", "upstream_bad_response",
        "backend_500",
    ])
    func eachErrorCodeIsLogged(code: String) throws {
        let upstream = FakeUpstream(
            code == "upstream_timeout"
                ? .slow(milliseconds: 1_500, body: "{}")
                : code == "upstream_bad_response"
                    ? .garbage : code == "backend_500" ? .status(500, #"{"error":"boom"}"#) : .json("{}")
        )
        defer { upstream.stop() }
        let port = code == "upstream_connect_failed" ? deadPort() : upstream.port
        let config = try ProxyTests.remoteConfig(
            versions: [("v1", #"{ url: "http://127.0.0.1:\#(port)", timeout_ms: 200 }"#)]
        )
        defer { config.remove() }
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/access.log"
        let sidecar = try Self.sidecar(config, path: path)
        defer { sidecar.stop() }

        let target =
            switch code {
            case "no_route": "/nowhere"
            case "unknown_version": "/v1/models/m/versions/v9:predict"
            default: "/v1/models/m:predict"
            }
        let response = try #require(
            httpRequest(port: sidecar.port, "POST", target, headers: [("x-request-id", "e-\(code)")], body: "{}")
        )
        let line = try Self.record(try Self.records(Self.waitForLines(path, count: 1)), id: "e-\(code)")
        #expect(line["status"] as? Int == response.status)
        #expect(line["bytes_out"] as? Int == response.body.count)
        if code == "backend_500" {
            #expect(response.status == 500)
            #expect(line["error"] is NSNull)
        } else {
            #expect(response.json?["error"] as? String == code)
            #expect(line["error"] as? String == code)
        }
        if code == "no_route" || code == "unknown_version" {
            #expect(line["version"] is NSNull)
            #expect(line["upstream"] is NSNull)
            #expect(line["upstream_ms"] is NSNull)
        } else {
            #expect(line["route"] as? String == "main")
            #expect(line["version"] as? String == "v1")
            #expect(line["upstream"] as? String == "127.0.0.1:\(port)")
            #expect(line["upstream_ms"] is Double)
        }
    }

    /// Requests the server refuses before a worker sees them: a chunked body over
    /// `--max-body-bytes` (its head was read: method and path are known) and a head that does
    /// not parse.
    @Test(arguments: ["body_too_large", "bad_request"])
    func aRequestRefusedBeforeRoutingIsLogged(code: String) throws {
        let config = try ProxyTests.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(deadPort())" }"#)])
        defer { config.remove() }
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/access.log"
        let sidecar = try Self.sidecar(config, path: path) { $0.requestLimits.maxBodyBytes = 100 }
        defer { sidecar.stop() }

        let client = try #require(Client(port: sidecar.port))
        if code == "body_too_large" {
            // Chunked: the head is read whole, then the body outgrows the limit.
            client.sendRaw(
                "POST /v1/models/m:predict?token=s3cret HTTP/1.1\r\nhost: x\r\nx-request-id: big\r\n"
                    + "transfer-encoding: chunked\r\n\r\nc8\r\n" + String(repeating: "7", count: 200) + "\r\n"
            )
        } else {
            client.sendRaw("POST /a b c HTTP/1.1\r\nhost: x\r\n\r\n")
        }
        let response = try #require(client.readResponse())
        #expect(response.json?["error"] as? String == code)
        let line = try #require(try Self.records(Self.waitForLines(path, count: 1)).first)
        #expect(line["error"] as? String == code)
        #expect(line["status"] as? Int == response.status)
        #expect(
            line["request_id"] as? String == response.header("x-request-id") ?? response.json?["request_id"] as? String
        )
        #expect(line["bytes_out"] as? Int == response.body.count)
        #expect(line["route"] is NSNull && line["version"] is NSNull && line["duration_ms"] is NSNull)
        if code == "body_too_large" {
            #expect(line["request_id"] as? String == "big")
            #expect(line["method"] as? String == "POST")
            #expect(line["path"] as? String == "/v1/models/m:predict")
        } else {
            #expect(line["method"] is NSNull && line["path"] is NSNull)
        }
    }

    /// An embedded model refusing a body that is not JSON: `bad_request`, no upstream address.
    @Test func anEmbeddedBadRequestIsLoggedWithoutAnUpstream() throws {
        let config = try EmbeddedTests.config()
        defer { config.remove() }
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/access.log"
        let sidecar = try Self.sidecar(config, path: path)
        defer { sidecar.stop() }

        let response = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/v1/models/churn/versions/v1:predict",
                headers: [("x-request-id", "bad")],
                body: "not json"
            )
        )
        #expect(response.status == 400)
        let line = try Self.record(try Self.records(Self.waitForLines(path, count: 1)), id: "bad")
        #expect(line["error"] as? String == "bad_request")
        #expect(line["version"] as? String == "v1")
        #expect(line["upstream"] is NSNull)
        #expect(line["upstream_ms"] is Double)
    }

    /// A streamed body's bytes are counted as they are relayed, chunked or not.
    @Test(arguments: [false, true])
    func aStreamedBodyCountsEveryByteSent(chunked: Bool) throws {
        let size = 3 << 20 + 17
        let upstream = PatternUpstream(size: size, chunked: chunked)
        defer { upstream.stop() }
        let config = try ProxyTests.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(upstream.port)" }"#)])
        defer { config.remove() }
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/access.log"
        let sidecar = try Self.sidecar(config, path: path)
        defer { sidecar.stop() }

        let fd = Net.connect(port: sidecar.port)
        defer { close(fd) }
        Net.send(fd, "POST /v1/models/m:predict HTTP/1.1\r\nhost: x\r\nx-request-id: s\r\ncontent-length: 2\r\n\r\n{}")
        let response = try #require(readFramedResponse(fd))
        #expect(response.status == 200)
        #expect(response.body.count == size)
        let line = try Self.record(try Self.records(Self.waitForLines(path, count: 1)), id: "s")
        #expect(line["bytes_out"] as? Int == size)
        #expect(line["bytes_in"] as? Int == 2)
    }

    @Test func theTextFormatHasItsFieldsInAFixedOrder() throws {
        let live = FakeUpstream(.json(#"{"predictions":[0.5]}"#))
        defer { live.stop() }
        let config = try ProxyTests.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(live.port)" }"#)])
        defer { config.remove() }
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/access.log"
        let sidecar = try Self.sidecar(config, path: path, format: .text)
        defer { sidecar.stop() }

        let ok = try #require(
            httpRequest(
                port: sidecar.port,
                "POST",
                "/v1/models/m:predict?x=1",
                headers: [("x-request-id", "t1")],
                body: "{}"
            )
        )
        _ = try #require(httpRequest(port: sidecar.port, "GET", "/no%20where", headers: [("x-request-id", "t2")]))
        let lines = Self.waitForLines(path, count: 2)
        #expect(lines.count == 2)
        let fields = lines.map { $0.split(separator: " ", omittingEmptySubsequences: false).map(String.init) }
        let first = try #require(fields.first { $0.count > 1 && $0[1] == "t1" })
        #expect(first.count == 17)
        #expect(Self.isTimestamp(first[0]))
        #expect(
            Array(first[1...12]) == [
                "t1", "live", "\"POST", "/v1/models/m:predict\"", "200", "-", "2", "\(ok.body.count)", "main", "m",
                "v1",
                "127.0.0.1:\(live.port)",
            ]
        )
        #expect(Double(first[13]) != nil && Double(first[14]) != nil)
        #expect(Array(first[15...]) == ["-", "false"])
        let second = try #require(fields.first { $0.count > 1 && $0[1] == "t2" })
        #expect(
            second.dropFirst() == [
                "t2", "live", "\"GET", "/no%20where\"", "404", "no_route", "0", second[8], "-", "-", "-", "-",
                second[13], "-", "-", "false",
            ]
        )
    }

    @Test func rotatesLikeTheComparisonLog() throws {
        let live = FakeUpstream(.json("{}"))
        defer { live.stop() }
        let config = try ProxyTests.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(live.port)" }"#)])
        defer { config.remove() }
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/access.log"
        let maxBytes = 1_000
        let sidecar = try Self.sidecar(config, path: path) {
            $0.accessLogMaxBytes = maxBytes
            $0.accessLogRotatedFiles = 2
        }
        defer { sidecar.stop() }

        // Each request waits for its line (one write each, as the flushes come): a line is
        // ~330 bytes, so three fit a file and 15 make five files, of which three are kept.
        let client = try #require(Client(port: sidecar.port))
        let total = 15
        for index in 0..<total {
            _ = try #require(
                client.request("POST", "/v1/models/m:predict", headers: [("x-request-id", "rot-\(index)")], body: "{}")
            )
            eventually { Self.lines(in: path).last?.contains("\"rot-\(index)\"") == true }
        }
        let files = [path + ".2", path + ".1", path]
        #expect(!FileManager.default.fileExists(atPath: path + ".3"))
        var ids: [String] = []
        for file in files {
            let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? nil
            #expect(size != nil && size! <= maxBytes, "\(file): \(String(describing: size)) bytes")
            for record in try Self.records(Self.lines(in: file)) { ids.append(record["request_id"] as? String ?? "") }
        }
        // The newest lines, in order, with nothing lost in between; the oldest were removed.
        #expect(ids.last == "rot-\(total - 1)")
        #expect(ids.count < total)
        #expect(ids == (total - ids.count..<total).map { "rot-\($0)" })
    }

    @Test func aLineThatCannotBeWrittenIsCounted() throws {
        let live = FakeUpstream(.json("{}"))
        defer { live.stop() }
        let config = try ProxyTests.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(live.port)" }"#)])
        defer { config.remove() }
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A regular file where the log's directory should be: every write fails.
        #expect(FileManager.default.createFile(atPath: directory + "/file", contents: Data()))
        let sidecar = try Self.sidecar(config, path: directory + "/file/access.log")
        defer { sidecar.stop() }

        let before = metricValue(
            ShadowTests.metrics(sidecar),
            "switchyard_access_log_records_dropped_total",
            ["reason": "write_failed"]
        )
        #expect(before == 0)
        for _ in 0..<3 { _ = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}")) }
        #expect(
            eventually {
                metricValue(
                    ShadowTests.metrics(sidecar),
                    "switchyard_access_log_records_dropped_total",
                    ["reason": "write_failed"]
                ) == 3
            }
        )
    }

    @Test func offByDefaultWithNoLoggerOnAnyWorker() throws {
        let live = FakeUpstream(.json("{}"))
        defer { live.stop() }
        let config = try ProxyTests.remoteConfig(versions: [("v1", #"{ url: "http://127.0.0.1:\#(live.port)" }"#)])
        defer { config.remove() }
        let sidecar = try RunningSidecar(config: config.path, workers: 2)
        defer { sidecar.stop() }
        _ = try #require(httpRequest(port: sidecar.port, "POST", "/v1/models/m:predict", body: "{}"))
        #expect(sidecar.sidecar.accessLog == nil)
        #expect(!ShadowTests.metrics(sidecar).contains("switchyard_access_log"))
    }

    /// Field values that need escaping: JSON escapes stay parseable, text fields never hold a space.
    @Test func escapesWhatWouldBreakALine() throws {
        let json = LineBuilder(bytes: [])
        json.append("{\"v\":")
        json.appendJSONString("a\"b\\c\u{1}d é")
        json.append("}")
        let parsed = try JSONSerialization.jsonObject(with: Data(json.bytes)) as? [String: String]
        #expect(parsed?["v"] == "a\"b\\c\u{1}d é")

        let text = LineBuilder(bytes: [])
        text.appendTextField("a b\"c\\é")
        text.append(0x20)
        text.appendTextField("")
        #expect(String(decoding: text.bytes, as: UTF8.self) == #"a\x20b\x22c\x5C\xC3\xA9 -"#)
    }
}
