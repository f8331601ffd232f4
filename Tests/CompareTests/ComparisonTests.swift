import Models
import Testing

@testable import Compare

private func side(_ body: String, status: Int = 200, version: String = "v1", latency: Double = 5) -> ResponseSide {
    ResponseSide(version: version, status: status, body: Array(body.utf8), latencyMilliseconds: latency)
}

private func spec(
    _ output: String = "/predictions",
    tolerance: Double = 0.0001,
    threshold: Double? = 0.5
)
    -> ComparisonSpec
{
    try! ComparisonSpec(output: output, tolerance: tolerance, threshold: threshold)
}

private let labelCases: [(JSON, Double?, Int?)] = [
    ([0.2, 0.7, 0.1], nil, 1),
    ([0.5, 0.5, 0.1], nil, 0),
    ([0.3, 0.7], nil, 1),
    ([0.45, 0.55], 0.6, 0),
    ([0.55], 0.5, 1),
    (0.5, 0.5, 1),
    (0.49, 0.5, 0),
    (0.9, nil, nil),
    ([0.9], nil, nil),
    (["a", "b"], 0.5, nil),
]

struct ComparisonTests {
    @Test func identicalTFServingBodiesMatch() {
        let result = compare(
            live: side(#"{"predictions": [0.8, 0.1]}"#),
            shadow: side(#"{"predictions": [0.8, 0.1]}"#),
            spec: spec()
        )
        #expect(result.outcome == .match)
        #expect(result.maxAbsDiff == 0)
        #expect(result.meanAbsDiff == 0)
        #expect(result.flip == false)
        #expect(result.rows == 2)
        #expect(result.liveLabels == [1, 0])
        #expect(result.shadowLabels == [1, 0])
        #expect(result.reason == nil)
    }

    @Test func withinToleranceMatchesAndBeyondMismatches() {
        let close = compare(
            live: side(#"{"predictions": [0.8, 0.1]}"#),
            shadow: side(#"{"predictions": [0.80005, 0.1]}"#),
            spec: spec()
        )
        #expect(close.outcome == .match)
        #expect(abs(close.maxAbsDiff! - 0.00005) < 1e-12)
        let far = compare(
            live: side(#"{"predictions": [0.8, 0.1]}"#),
            shadow: side(#"{"predictions": [0.7, 0.1]}"#),
            spec: spec()
        )
        #expect(far.outcome == .mismatch)
        #expect(abs(far.maxAbsDiff! - 0.1) < 1e-12)
        #expect(abs(far.meanAbsDiff! - 0.05) < 1e-12)
        #expect(far.comparedNumbers == 2)
        #expect(far.flip == false)
    }

    @Test func thresholdCrossingIsAFlip() {
        let result = compare(
            live: side(#"{"predictions": [0.8, 0.55]}"#),
            shadow: side(#"{"predictions": [0.8, 0.45]}"#),
            spec: spec()
        )
        #expect(result.outcome == .mismatch)
        #expect(result.flip)
        #expect(result.liveLabels == [1, 1])
        #expect(result.shadowLabels == [1, 0])
    }

    @Test func v2ShadowComparesWithTFServingLive() {
        let live = side(#"{"predictions": [[0.1, 0.9], [0.7, 0.3]]}"#)
        let shadow = side(
            #"{"model_name": "churn", "model_version": "2", "outputs": [{"name": "probabilities", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.9, 0.6, 0.4]}]}"#,
            version: "v2"
        )
        let result = compare(live: live, shadow: shadow, spec: spec(threshold: nil))
        #expect(result.outcome == .mismatch)
        #expect(abs(result.maxAbsDiff! - 0.1) < 1e-12)
        #expect(result.comparedNumbers == 4)
        #expect(result.liveLabels == [1, 0])
        #expect(result.shadowLabels == [1, 0])
        #expect(result.flip == false)
        #expect(result.shadowOutput == [[0.1, 0.9], [0.6, 0.4]])
    }

    @Test func v2OutputIsChosenByName() {
        let body =
            #"{"outputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 0]}, {"name": "probability", "shape": [2, 1], "datatype": "FP64", "data": [0.9, 0.2]}]}"#
        let view = try! JSONParser.parse(body)
        #expect(OutputExtraction.output(of: view, at: try! JSONPointer("/predictions")) == [1, 0])
        #expect(OutputExtraction.output(of: view, at: try! JSONPointer("/probability")) == [[0.9], [0.2]])
        #expect(OutputExtraction.output(of: view, at: try! JSONPointer("/probability/1/0")) == 0.2)
        #expect(OutputExtraction.output(of: view, at: try! JSONPointer("/outputs/1/data")) == [0.9, 0.2])
        #expect(OutputExtraction.output(of: view, at: try! JSONPointer("/scores")) == nil)
    }

    @Test func v2ShapeThatDisagreesWithDataIsAnError() {
        let shadow = side(#"{"outputs": [{"name": "p", "shape": [3], "datatype": "FP32", "data": [0.1, 0.9]}]}"#)
        let result = compare(live: side(#"{"predictions": [0.1, 0.9]}"#), shadow: shadow, spec: spec())
        #expect(result.outcome == .error)
        #expect(result.reason == "shadow response has no output at '/predictions'")
        #expect(result.shadowFailed && !result.liveFailed)
    }

    @Test func probabilityPairComparesWithSingleProbabilityThroughP1() {
        let live = side(#"{"predictions": [[0.2, 0.8], [0.6, 0.4]]}"#)
        let shadow = side(#"{"predictions": [0.8, 0.45]}"#)
        let result = compare(live: live, shadow: shadow, spec: spec())
        #expect(result.outcome == .mismatch)
        #expect(result.comparedNumbers == 2)
        #expect(abs(result.maxAbsDiff! - 0.05) < 1e-12)
        #expect(result.liveLabels == [1, 0])
        #expect(result.shadowLabels == [1, 0])
        #expect(result.flip == false)

        let matching = compare(
            live: side(#"{"predictions": [[0.2, 0.8]]}"#),
            shadow: side(#"{"predictions": [[0.8]]}"#),
            spec: spec()
        )
        #expect(matching.outcome == .match)
        #expect(matching.maxAbsDiff == 0)

        let flipped = compare(
            live: side(#"{"predictions": [[0.45, 0.55]]}"#),
            shadow: side(#"{"predictions": [0.49]}"#),
            spec: spec()
        )
        #expect(flipped.flip)
        #expect(flipped.liveLabels == [1])
        #expect(flipped.shadowLabels == [0])
    }

    @Test(arguments: [
        (
            #"{"predictions": [0.1, 0.2, 0.3]}"#, #"{"predictions": [0.1, 0.2]}"#,
            "shape differs at '': live has 3 rows, shadow 2"
        ),
        (
            #"{"predictions": [[0.1, 0.2, 0.7]]}"#, #"{"predictions": [0.7]}"#,
            "shape differs at '/0': live has 3 elements, shadow a number"
        ),
        (
            #"{"predictions": [[0.1, 0.2, 0.7]]}"#, #"{"predictions": [[0.2, 0.8]]}"#,
            "shape differs at '/0': live has 3 elements, shadow 2"
        ),
        (
            #"{"predictions": [0.3, 0.7]}"#, #"{"predictions": [0.7]}"#,
            "shape differs at '': live has 2 rows, shadow 1"
        ),
        (
            #"{"predictions": [{"a": 1}]}"#, #"{"predictions": [{"b": 1}]}"#,
            "shape differs at '/0': shadow has no member 'a'"
        ),
        (
            #"{"predictions": ["a"]}"#, #"{"predictions": [1]}"#,
            "shape differs at '/0': live has a string, shadow a number"
        ),
    ])
    func otherShapeDifferencesMismatch(live: String, shadow: String, reason: String) {
        let result = compare(live: side(live), shadow: side(shadow), spec: spec())
        #expect(result.outcome == .mismatch)
        #expect(result.maxAbsDiff == nil)
        #expect(result.reason == reason)
    }

    @Test func shadowServerErrorIsAnError() {
        let result = compare(
            live: side(#"{"predictions": [0.8]}"#),
            shadow: side(#"{"error": "boom"}"#, status: 500),
            spec: spec()
        )
        #expect(result.outcome == .error)
        #expect(result.reason == "shadow status 500")
        #expect(result.maxAbsDiff == nil)
        #expect(result.flip == false)
        #expect(result.liveOutput == [0.8])
        #expect(result.shadowOutput == nil)
        #expect(result.liveLabels == [1])
        #expect(result.shadowLabels == nil)
    }

    @Test func nonJSONShadowIsAnError() {
        let result = compare(live: side(#"{"predictions": [0.8]}"#), shadow: side("<html>oops</html>"), spec: spec())
        #expect(result.outcome == .error)
        #expect(result.reason?.hasPrefix("shadow body is not JSON: ") == true)
        #expect(result.shadowFailed)
        #expect(!result.liveFailed)
    }

    @Test func failedLiveIsAnErrorToo() {
        let result = compare(
            live: side("", status: 504),
            shadow: side(#"{"nothing": 1}"#),
            spec: spec()
        )
        #expect(result.outcome == .error)
        #expect(result.reason == "live status 504; shadow response has no output at '/predictions'")
        #expect(result.liveFailed && result.shadowFailed)
        #expect(result.rows == 0)
    }

    @Test func parsedBodiesAreAccepted() {
        let live = ResponseSide(version: "v1", status: 200, json: ["predictions": [1.5, 2.5]], latencyMilliseconds: 1)
        let shadow = ResponseSide(
            version: "v3",
            status: 200,
            json: ["predictions": [1.5, 2.0]],
            latencyMilliseconds: 1
        )
        let result = compare(live: live, shadow: shadow, spec: spec(threshold: nil))
        #expect(result.outcome == .mismatch)
        #expect(result.maxAbsDiff == 0.5)
        #expect(result.meanAbsDiff == 0.25)
        // Regression output without a threshold: no labels, no flips.
        #expect(result.liveLabels == nil)
        #expect(result.flip == false)
    }

    @Test func opaqueJSONComparesNonNumbersByEquality() {
        let result = compare(
            live: side(#"{"result": {"label": "churn", "score": 0.91}}"#),
            shadow: side(#"{"result": {"score": 0.91, "label": "stay"}}"#),
            spec: spec("/result", threshold: nil)
        )
        #expect(result.outcome == .mismatch)
        #expect(result.maxAbsDiff == 0)
        #expect(result.reason == nil)
    }

    @Test(arguments: labelCases)
    func rowLabels(row: JSON, threshold: Double?, label: Int?) {
        #expect(Labels.label(of: row, threshold: threshold) == label)
    }

    @Test func tfServingColumnarOutputsAreReadAsPredictions() {
        let body = try! JSONParser.parse(#"{"outputs": [[0.1, 0.9]]}"#)
        #expect(OutputExtraction.output(of: body, at: try! JSONPointer("/predictions")) == [[0.1, 0.9]])
        let named = try! JSONParser.parse(#"{"outputs": {"scores": [0.3]}}"#)
        #expect(OutputExtraction.output(of: named, at: try! JSONPointer("/predictions")) == [0.3])
        #expect(OutputExtraction.output(of: named, at: try! JSONPointer("/scores/0")) == 0.3)
    }

    @Test func v2ScalarAndNestedData() {
        #expect(OutputExtraction.reshapedData(of: ["name": "x", "shape": [], "data": [4]]) == 4)
        #expect(OutputExtraction.reshapedData(of: ["shape": [2, 1], "data": [[1], [2]]]) == [[1], [2]])
        #expect(
            OutputExtraction.reshapedData(of: ["shape": [1, 2, 2], "data": [1, 2, 3, 4]]) == [[[1, 2], [3, 4]]]
        )
        #expect(OutputExtraction.reshapedData(of: ["shape": [2, -1], "data": [1, 2]]) == nil)
    }
}

/// Live body and status, shadow body and status, and the spec: what `compareSummary` must
/// summarise exactly as `compare` decides.
private let summaryCases: [(String, Int, String, Int, ComparisonSpec)] = [
    (#"{"predictions": [0.8, 0.1]}"#, 200, #"{"predictions": [0.8, 0.1]}"#, 200, spec()),
    (#"{"predictions": [0.8, 0.1]}"#, 200, #"{"predictions": [0.80005, 0.1]}"#, 200, spec()),
    (#"{"predictions": [0.8, 0.1]}"#, 200, #"{"predictions": [0.3, 0.1]}"#, 200, spec()),
    (#"{"predictions": [[0.1, 0.9]]}"#, 200, #"{"predictions": [0.2]}"#, 200, spec()),
    (#"{"predictions": [1, 2, 3]}"#, 200, #"{"predictions": [1, 2]}"#, 200, spec()),
    (#"{"predictions": ["a"]}"#, 200, #"{"predictions": ["b"]}"#, 200, spec()),
    (#"{"predictions": [0.8]}"#, 200, "<html>oops</html>", 200, spec()),
    ("<html>oops</html>", 200, "<html>oops</html>", 200, spec()),
    (#"{"outputs": [0.8]}"#, 200, #"{"outputs": [0.8]}"#, 200, spec()),
    (#"{"predictions": [0.8]}"#, 500, #"{"predictions": [0.8]}"#, 200, spec()),
    (#"{"predictions": [0.8]}"#, 200, #"{"predictions": [0.8]}"#, 503, spec()),
    (#"{"predictions": [0.8]}"#, 200, #"{"predictions": [0.8]}"#, 200, spec(tolerance: -1)),
    (#"{"predictions": [[0.2, 0.7, 0.1]]}"#, 200, #"{"predictions": [[0.7, 0.2, 0.1]]}"#, 200, spec(threshold: nil)),
    (#"{"a": {"b": [1, 2]}}"#, 200, #"{"a": {"b": [1, 2], "c": 3}}"#, 200, spec("")),
]

struct ComparisonSummaryTests {
    @Test(arguments: summaryCases.indices)
    func summaryAgreesWithTheFullComparison(index: Int) {
        let (liveBody, liveStatus, shadowBody, shadowStatus, spec) = summaryCases[index]
        let live = side(liveBody, status: liveStatus)
        let shadow = side(shadowBody, status: shadowStatus, version: "v2")
        #expect(
            compareSummary(live: live, shadow: shadow, spec: spec)
                == ComparisonSummary(compare(live: live, shadow: shadow, spec: spec))
        )
    }

    @Test func summaryOfAFlipCountsIt() {
        let summary = compareSummary(
            live: side(#"{"predictions": [[0.1, 0.9]]}"#),
            shadow: side(#"{"predictions": [0.2]}"#),
            spec: spec()
        )
        #expect(summary.outcome == .mismatch)
        #expect(summary.flip)
        #expect(abs(summary.maxAbsDiff! - 0.7) < 1e-12)
    }

    @Test func summaryOfParsedBodiesAgreesWithTheFullComparison() {
        let live = ResponseSide(version: "v1", status: 200, json: ["predictions": [0.8, 0.1]], latencyMilliseconds: 1)
        let shadow = side(#"{"predictions": [0.8, 0.2]}"#, version: "v2")
        #expect(
            compareSummary(live: live, shadow: shadow, spec: spec())
                == ComparisonSummary(compare(live: live, shadow: shadow, spec: spec()))
        )
    }
}

/// A live side compared with several shadows is parsed once (`ResponseSide.prepareOutput`).
struct PreparedLiveOutputTests {
    /// Three shadows against one prepared live side: byte-identical (a match, not parsed), other
    /// numbers (a mismatch) and no output at the pointer (an error), each through both the
    /// summary and the full comparison, with the live body parsed once in all.
    #if DEBUG
    @Test func aPreparedLiveSideIsParsedOnceForEveryShadow() throws {
        let liveBody = #"{"predictions":[0.5],"id":"prepared-\#(UInt64.random(in: 0...UInt64.max))"}"#
        let spec = spec()
        let shadows: [(ResponseSide, Comparison.Outcome)] = [
            (side(liveBody, version: "v2"), .match),
            (side(#"{"predictions":[0.9]}"#, version: "v3"), .mismatch),
            (side(#"{"other":1}"#, version: "v4"), .error),
        ]
        // What each comparison gives without a prepared side (one live parse each).
        let unprepared = shadows.map { compare(live: side(liveBody), shadow: $0.0, spec: spec) }
        let before = ComparisonParseCounter.parses(of: Array(liveBody.utf8))
        #expect(before == shadows.count)
        var live = side(liveBody)
        live.prepareOutput(at: spec.pointer)
        live.prepareOutput(at: spec.pointer)
        #expect(live.hasPreparedOutput(at: spec.pointer))
        // The kept output takes no part in equality.
        #expect(live == side(liveBody))
        for ((shadow, outcome), expected) in zip(shadows, unprepared) {
            #expect(compareSummary(live: live, shadow: shadow, spec: spec).outcome == outcome)
            let full = compare(live: live, shadow: shadow, spec: spec)
            #expect(full.outcome == outcome)
            #expect(full == expected)
        }
        #expect(ComparisonParseCounter.parses(of: Array(liveBody.utf8)) == before + 1)
    }
    #endif

    /// A side prepared at one pointer and compared at another is read at the other.
    @Test func aSideComparedAtAnotherPointerIsReadAtThatPointer() throws {
        var live = side(#"{"predictions":[0.5],"scores":[0.1]}"#)
        live.prepareOutput(at: try JSONPointer("/predictions"))
        let shadow = side(#"{"predictions":[0.5],"scores":[0.3]}"#)
        #expect(compareSummary(live: live, shadow: shadow, spec: spec("/predictions")).outcome == .match)
        #expect(compareSummary(live: live, shadow: shadow, spec: spec("/scores")).outcome == .mismatch)
        #expect(compare(live: live, shadow: shadow, spec: spec("/scores")).maxAbsDiff ?? 0 > 0.19)
    }
}
