import Models
import Testing

@testable import Compare

struct RecordTests {
    @Test func recordLineHasTheSpecMembersInOrder() throws {
        let live = ResponseSide(
            version: "v1",
            status: 200,
            body: Array(#"{"predictions": [0.8]}"#.utf8),
            latencyMilliseconds: 3.2000004
        )
        let shadow = ResponseSide(
            version: "v2",
            status: 200,
            body: Array(#"{"predictions": [0.3]}"#.utf8),
            latencyMilliseconds: 4.1
        )
        let comparison = compare(
            live: live,
            shadow: shadow,
            spec: try ComparisonSpec(output: "/predictions", tolerance: 0.001, threshold: 0.5)
        )
        let record = ComparisonRecord(
            timestamp: RFC3339.format(millisecondsSinceEpoch: 1_746_100_800_123),
            requestID: "r1",
            model: "churn",
            route: "churn",
            live: live,
            shadow: shadow,
            comparison: comparison
        )
        let line = String(decoding: record.jsonLine(), as: UTF8.self)
        #expect(
            line
                == #"{"ts":"2025-05-01T12:00:00.123Z","request_id":"r1","model":"churn","route":"churn","live":{"version":"v1","status":200,"latency_ms":3.2,"output":[0.8]},"shadow":{"version":"v2","status":200,"latency_ms":4.1,"output":[0.3]},"outcome":"mismatch","max_abs_diff":0.5,"flip":true,"live_label":1,"shadow_label":0}"#
                + "\n"
        )
    }

    @Test func errorRecordHasNullOutputAndReason() throws {
        let record = ComparisonRecord(
            timestamp: "2025-05-01T12:00:00.000Z",
            requestID: "r2",
            model: "m",
            route: "r",
            live: .init(version: "v1", status: 200, latencyMilliseconds: 1, output: [[0.1, 0.9], [0.8, 0.2]]),
            shadow: .init(version: "v2", status: 503, latencyMilliseconds: 2, output: nil),
            outcome: .error,
            maxAbsDiff: nil,
            flip: false,
            liveLabels: [1, 0],
            shadowLabels: nil,
            reason: "shadow status 503"
        )
        let line = String(decoding: record.jsonLine(), as: UTF8.self)
        #expect(
            line
                == #"{"ts":"2025-05-01T12:00:00.000Z","request_id":"r2","model":"m","route":"r","live":{"version":"v1","status":200,"latency_ms":1,"output":[[0.1,0.9],[0.8,0.2]]},"shadow":{"version":"v2","status":503,"latency_ms":2,"output":null},"outcome":"error","max_abs_diff":null,"flip":false,"live_label":[1,0],"reason":"shadow status 503"}"#
                + "\n"
        )
        #expect(try ComparisonRecord.parse(record.jsonLine()) == record)
        #expect(record.shadowFailed && !record.liveFailed)
    }

    @Test func roundTrip() throws {
        let records = [
            ComparisonRecord(
                timestamp: "2025-05-01T12:00:00.001Z",
                requestID: "a",
                model: "churn",
                route: "churn",
                live: .init(version: "v1", status: 200, latencyMilliseconds: 0.25, output: [0.7]),
                shadow: .init(version: "v3", status: 200, latencyMilliseconds: 0.125, output: [[0.3, 0.7]]),
                outcome: .match,
                maxAbsDiff: 0,
                flip: false,
                liveLabels: [1],
                shadowLabels: [1]
            ),
            ComparisonRecord(
                timestamp: "2025-05-01T12:00:00.002Z",
                requestID: "b \"quoted\"",
                model: "price",
                route: "price-v2",
                live: .init(version: "v1", status: 200, latencyMilliseconds: 12, output: ["total": 10.5]),
                shadow: .init(version: "v2", status: 200, latencyMilliseconds: 14, output: ["total": 11]),
                outcome: .mismatch,
                maxAbsDiff: 0.5,
                flip: false
            ),
        ]
        for record in records {
            #expect(try ComparisonRecord.parse(record.jsonLine()) == record)
        }
    }

    @Test func parserIgnoresUnknownMembers() throws {
        let line =
            #"{"extra": {"x": 1}, "ts":"t","request_id":"r","model":"m","route":"r","live":{"version":"v1","status":200,"latency_ms":1,"output":1,"host":"a"},"shadow":{"version":"v2","status":200,"latency_ms":2,"output":1},"outcome":"match","max_abs_diff":0,"flip":false}"#
        let record = try ComparisonRecord.parse(Array(line.utf8))
        #expect(record.live.output == 1)
        #expect(record.liveLabels == nil)
    }

    @Test(arguments: [
        ("[1]", "expected a JSON object, got an array"),
        ("{", "not JSON: unexpected end of input at byte 1; expected a string key"),
        (
            #"{"ts":"t","request_id":"r","model":"m","route":"r","live":{"version":"v1","status":200,"latency_ms":1,"output":1},"shadow":{"version":"v2","status":200,"latency_ms":2,"output":1},"outcome":"same","max_abs_diff":0,"flip":false}"#,
            "'outcome' must be match, mismatch or error, got 'same'"
        ),
        (
            #"{"ts":"t","request_id":"r","model":"m","route":"r","live":{"version":"v1","status":200,"latency_ms":1,"output":1},"shadow":{"version":"v2","status":200,"latency_ms":2},"outcome":"match","max_abs_diff":0,"flip":false}"#,
            "missing 'shadow.output'"
        ),
        (
            #"{"ts":"t","request_id":"r","model":"m","route":"r","live":{"version":"v1","status":"200","latency_ms":1,"output":1},"shadow":{"version":"v2","status":200,"latency_ms":2,"output":1},"outcome":"match","max_abs_diff":0,"flip":false}"#,
            "'live.status' must be a number, got a string"
        ),
        (
            #"{"ts":"t","request_id":"r","route":"r","live":{"version":"v1","status":200,"latency_ms":1,"output":1},"shadow":{"version":"v2","status":200,"latency_ms":2,"output":1},"outcome":"match","max_abs_diff":0,"flip":false}"#,
            "missing 'model'"
        ),
        (
            #"{"ts":"t","request_id":"r","model":"m","route":"r","live":{"version":"v1","status":200,"latency_ms":1,"output":1},"shadow":{"version":"v2","status":200,"latency_ms":2,"output":1},"outcome":"match","flip":false}"#,
            "missing 'max_abs_diff'"
        ),
        (
            #"{"ts":"t","request_id":"r","model":"m","route":"r","live":{"version":"v1","status":200,"latency_ms":1,"output":1},"shadow":{"version":"v2","status":200,"latency_ms":2,"output":1},"outcome":"match","max_abs_diff":0,"flip":"no"}"#,
            "'flip' must be a boolean, got a string"
        ),
        (
            #"{"ts":"t","request_id":"r","model":"m","route":"r","live":{"version":"v1","status":200,"latency_ms":1,"output":1},"shadow":{"version":"v2","status":200,"latency_ms":2,"output":1},"outcome":"match","max_abs_diff":0,"flip":false,"live_label":"yes"}"#,
            "'live_label' must be an integer class or an array of them, got \"yes\""
        ),
    ])
    func parserNamesWhatIsWrong(line: String, message: String) {
        #expect(throws: RecordError(message)) { try ComparisonRecord.parse(Array(line.utf8)) }
    }

    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000Z"),
        (1_746_100_800_123, "2025-05-01T12:00:00.123Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (253_402_300_799_000, "9999-12-31T23:59:59.000Z"),
    ])
    func rfc3339(milliseconds: Int64, text: String) {
        #expect(RFC3339.format(millisecondsSinceEpoch: milliseconds) == text)
    }
}
