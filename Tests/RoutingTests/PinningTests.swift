import Policy
import Routing
import Testing

struct PinCase: Sendable, CustomTestStringConvertible {
    var path: String
    var headers: [(name: String, value: String)] = []
    var expected: String
    var requested: String?
    var reason: Decision.Reason?
    var explanation: String?
    var fallback: String?
    var testDescription: String { "\(path) \(headers.map { "\($0.name): \($0.value)" }) → \(expected)" }
}

let pinCases: [PinCase] = [
    PinCase(
        path: "/v2/churn/predict",
        expected: "churn-api-v2 v2",
        requested: "candidate",
        reason: .pinnedByRoute("candidate"),
        explanation: "pinned by route: candidate → v2",
        fallback: "v1"
    ),
    PinCase(
        path: "/v1/models/churn/versions/v3:predict",
        expected: "churn-pinned v3",
        requested: "v3",
        reason: .pinnedByPath("v3"),
        explanation: "pinned by path: v3",
        fallback: "v1"
    ),
    PinCase(
        path: "/v1/models/churn/versions/stable:predict",
        expected: "churn-pinned v1",
        requested: "stable",
        reason: .pinnedByPath("stable"),
        explanation: "pinned by path: stable → v1",
        fallback: nil
    ),
    PinCase(
        path: "/churn/predict",
        headers: [("X-Model-Version", "candidate")],
        expected: "churn-by-header v2",
        requested: "candidate",
        reason: .pinnedByHeader(header: "x-model-version", value: "candidate"),
        explanation: "pinned by header x-model-version: candidate → v2",
        fallback: "v1"
    ),
    // The first header wins, the sticky key is ignored when pinned.
    PinCase(
        path: "/churn/predict",
        headers: [("x-model-version", "v4"), ("x-model-version", "v2"), ("x-user-id", "u3")],
        expected: "churn-by-header v4",
        requested: "v4",
        reason: .pinnedByHeader(header: "x-model-version", value: "v4"),
        explanation: "pinned by header x-model-version: v4",
        fallback: "v1"
    ),
    // Unknown names are a 404, never the split.
    PinCase(path: "/v1/models/churn/versions/v9:predict", expected: "unknown churn-pinned v9"),
    PinCase(path: "/v1/models/churn/versions/Stable:predict", expected: "unknown churn-pinned Stable"),
    PinCase(path: "/churn", headers: [("x-model-version", "nightly")], expected: "unknown churn-by-header nightly"),
    PinCase(path: "/churn", headers: [("x-model-version", "")], expected: "unknown churn-by-header "),
]

@Test(arguments: pinCases)
func pinnedRequestsGoToTheNamedVersionWithoutDrawing(_ testCase: PinCase) {
    // Shadows copy pinned traffic too; at 100 % and 0 % they are decided without a draw.
    let policy = churnPolicy(
        sticky: nil,
        shadows: [ShadowSpec(version: "v3", percent: 100), ShadowSpec(version: "v1", percent: 0)]
    )
    var entropy = TrappingGenerator()
    let outcome = decide(
        RequestFacts(method: "POST", path: testCase.path, headers: testCase.headers),
        config: sampleConfig(policy),
        using: &entropy
    )
    #expect(outcome.summary == testCase.expected)
    guard let decision = outcome.decision else { return }
    #expect(decision.requested == testCase.requested)
    #expect(decision.reason == testCase.reason)
    #expect(decision.reason.isPinned)
    #expect(decision.explanation == testCase.explanation)
    #expect(decision.fallback == testCase.fallback)
    #expect(decision.shadows == ["v3"])
    #expect(decision.guardRedirect == nil)
    #expect(decision.model == "churn")
}

@Test func aPinnedRequestSamplesShadowsByItsStickyKeyWithoutDrawing() {
    let policy = churnPolicy(sticky: .header("x-user-id"), shadows: [ShadowSpec(version: "v3", percent: 50)])
    var entropy = TrappingGenerator()
    var sampled = 0
    for i in 0..<400 {
        let decision = decide(
            RequestFacts(method: "POST", path: "/v2/churn/predict", headers: [("x-user-id", "user-\(i)")]),
            config: sampleConfig(policy),
            using: &entropy
        ).decision
        if decision?.shadows == ["v3"] { sampled += 1 }
    }
    // Binomial(400, 0.5): sd 10; allow 5 sd.
    #expect(abs(sampled - 200) <= 50)
}

@Test func aPinnedRouteKeepsItsWireProtocol() {
    var entropy = TrappingGenerator()
    let decision = decide(request("/v2/churn/predict"), config: sampleConfig(), using: &entropy).decision
    #expect(decision?.wireProtocol == .v2)
    #expect(decision?.description == "route churn-api-v2 → churn/v2: pinned by route: candidate → v2")
}

@Test func withoutTheVersionHeaderTheRequestFollowsTheSplit() {
    var entropy = SplitMix64(seed: 7)
    let sticky = decide(
        request("/churn/predict", headers: [("x-user-id", "u3")]),
        config: sampleConfig(),
        using: &entropy
    )
    #expect(sticky.summary == "churn-by-header v2")
    #expect(sticky.decision?.requested == nil)
    #expect(sticky.decision?.reason == .stickySplit(key: "u3", source: .header("x-user-id")))
    #expect(sticky.decision?.explanation == "split: sticky key 'u3' (header:x-user-id) by weighted rendezvous → v2")
    #expect(sticky.decision?.shadows == ["v3"])
    #expect(sticky.decision?.wireProtocol == .json)

    let random = decide(request("/churn/predict"), config: sampleConfig(), using: &entropy).decision
    guard case .randomSplit(let bucket, let why) = random?.reason else {
        Issue.record("expected a random split, got \(String(describing: random?.reason))")
        return
    }
    #expect(why == .stickyKeyMissing(.header("x-user-id")))
    #expect(
        random?.reason.description == "split: random bucket \(bucket) of 10000 (sticky key header:x-user-id missing)"
    )
}

@Test func anEmptyStickyKeyCountsAsMissing() {
    var entropy = SplitMix64(seed: 7)
    let decision = decide(
        request("/churn/predict", headers: [("x-user-id", "")]),
        config: sampleConfig(),
        using: &entropy
    ).decision
    guard case .randomSplit(_, let why) = decision?.reason else {
        Issue.record("expected a random split, got \(String(describing: decision?.reason))")
        return
    }
    #expect(why == .stickyKeyMissing(.header("x-user-id")))
}

@Test func withoutStickyTheSplitIsRandomAndSaysWhy() {
    var entropy = SplitMix64(seed: 7)
    let decision = decide(
        request("/churn/predict", headers: [("x-user-id", "u3")]),
        config: sampleConfig(churnPolicy(sticky: nil)),
        using: &entropy
    ).decision
    guard case .randomSplit(let bucket, .noStickyConfigured) = decision?.reason else {
        Issue.record("expected a random split without sticky, got \(String(describing: decision?.reason))")
        return
    }
    #expect(
        decision?.explanation
            == "split: random bucket \(bucket) of 10000 (no sticky key configured) → \(decision?.version ?? "?")"
    )
}

@Test func theFallbackIsOmittedWhenItIsTheChosenVersion() {
    var entropy = TrappingGenerator()
    let config = sampleConfig()
    let toV1 = decide(request("/churn", headers: [("x-user-id", "u123")]), config: config, using: &entropy)
    #expect(toV1.decision?.version == "v1")
    #expect(toV1.decision?.fallback == nil)
    let toV2 = decide(request("/churn", headers: [("x-user-id", "u3")]), config: config, using: &entropy)
    #expect(toV2.decision?.version == "v2")
    #expect(toV2.decision?.fallback == "v1")
    let noFallback = sampleConfig(churnPolicy(fallback: nil))
    #expect(
        decide(request("/churn", headers: [("x-user-id", "u3")]), config: noFallback, using: &entropy)
            .decision?.fallback == nil
    )
}
