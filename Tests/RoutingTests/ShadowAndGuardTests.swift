import Policy
import Routing
import Testing

@Test func keylessShadowsAreSampledAtTheirPercent() {
    let shadows = [ShadowSpec(version: "v3", percent: 25), ShadowSpec(version: "v4", percent: 0.5)]
    let config = sampleConfig(churnPolicy(sticky: nil, shadows: shadows))
    var entropy = SplitMix64(seed: 99)
    let draws = 100_000
    var counts: [String: Int] = [:]
    for _ in 0..<draws {
        for shadow in decide(request("/churn"), config: config, using: &entropy).decision!.shadows {
            counts[shadow, default: 0] += 1
        }
    }
    #expect(withinFourSigma(counts["v3", default: 0], of: draws, share: 0.25), "v3: \(counts)")
    #expect(withinFourSigma(counts["v4", default: 0], of: draws, share: 0.005), "v4: \(counts)")
}

@Test func keyedShadowsAreSampledByTheKeyWithoutDrawing() {
    let shadows = [ShadowSpec(version: "v3", percent: 25), ShadowSpec(version: "v4", percent: 10)]
    let config = sampleConfig(churnPolicy(shadows: shadows))
    var entropy = TrappingGenerator()
    let keys = 50_000
    var counts: [String: Int] = [:]
    for index in 0..<keys {
        let facts = request("/churn", headers: [("x-user-id", "u\(index)")])
        let first = decide(facts, config: config, using: &entropy).decision!.shadows
        #expect(decide(facts, config: config, using: &entropy).decision!.shadows == first)
        for shadow in first { counts[shadow, default: 0] += 1 }
    }
    #expect(withinFourSigma(counts["v3", default: 0], of: keys, share: 0.25), "v3: \(counts)")
    #expect(withinFourSigma(counts["v4", default: 0], of: keys, share: 0.10), "v4: \(counts)")

    // Python: u = ((xxh64(b"u1\x00shadow\x00v3") >> 11) + 0.5) / 2**53 is 0.0801, for u2 0.1700.
    let tenPercent = sampleConfig(churnPolicy(shadows: [ShadowSpec(version: "v3", percent: 10)]))
    #expect(
        decide(request("/churn", headers: [("x-user-id", "u1")]), config: tenPercent, using: &entropy)
            .decision?.shadows == ["v3"]
    )
    #expect(
        decide(request("/churn", headers: [("x-user-id", "u2")]), config: tenPercent, using: &entropy)
            .decision?.shadows == []
    )
}

@Test func fullAndEmptyShadowsDrawNothing() {
    let shadows = [
        ShadowSpec(version: "v3", percent: 100), ShadowSpec(version: "v4", percent: 0),
        ShadowSpec(version: "v2", percent: 100),
    ]
    // Keyless: the split's draw is the only one.
    var baseline = CountingGenerator(seed: 3)
    var counted = CountingGenerator(seed: 3)
    let plain = sampleConfig(churnPolicy(sticky: nil, shadows: []))
    let shadowed = sampleConfig(churnPolicy(sticky: nil, shadows: shadows))
    for _ in 0..<1_000 {
        let expected = decide(request("/churn"), config: plain, using: &baseline).decision!
        let decision = decide(request("/churn"), config: shadowed, using: &counted).decision!
        #expect(decision.version == expected.version)
        #expect(decision.shadows == ["v3", "v2"])
    }
    #expect(counted.draws == baseline.draws)
    #expect(baseline.draws >= 1_000)
}

@Test func aShadowOfTheLiveVersionIsKept() {
    let config = sampleConfig(churnPolicy(shadows: [ShadowSpec(version: "v1", percent: 100)]))
    var entropy = TrappingGenerator()
    let decision = decide(request("/churn", headers: [("x-user-id", "u123")]), config: config, using: &entropy)
    #expect(decision.decision?.version == "v1")
    #expect(decision.decision?.shadows == ["v1"])
}

// MARK: - Guards

let candidateTripped = GuardState(tripped: ["churn": ["v2"]])

struct EffectiveSplitCase: Sendable, CustomTestStringConvertible {
    var name: String
    var policy: ModelPolicy
    var guards: GuardState
    var expected: [(String, Int)]
    var testDescription: String { name }
}

let effectiveSplitCases: [EffectiveSplitCase] = [
    EffectiveSplitCase(
        name: "tripped weight moves to the fallback",
        policy: churnPolicy(),
        guards: candidateTripped,
        expected: [("v1", 10000), ("v2", 0)]
    ),
    EffectiveSplitCase(
        name: "a fallback outside the split is appended",
        policy: churnPolicy(split: split([("v2", 3000), ("v3", 7000)])),
        guards: candidateTripped,
        expected: [("v2", 0), ("v3", 7000), ("v1", 3000)]
    ),
    EffectiveSplitCase(
        name: "several tripped versions",
        policy: churnPolicy(split: split([("v2", 3000), ("v3", 6000), ("v1", 1000)])),
        guards: GuardState(tripped: ["churn": ["v2", "v3"]]),
        expected: [("v2", 0), ("v3", 0), ("v1", 10000)]
    ),
    EffectiveSplitCase(
        name: "nothing tripped",
        policy: churnPolicy(),
        guards: GuardState(),
        expected: [("v1", 9000), ("v2", 1000)]
    ),
    EffectiveSplitCase(
        name: "another model tripped",
        policy: churnPolicy(),
        guards: GuardState(tripped: ["fraud": ["v2"]]),
        expected: [("v1", 9000), ("v2", 1000)]
    ),
    EffectiveSplitCase(
        name: "no fallback",
        policy: churnPolicy(fallback: nil),
        guards: candidateTripped,
        expected: [("v1", 9000), ("v2", 1000)]
    ),
    EffectiveSplitCase(
        name: "fallback tripped too",
        policy: churnPolicy(),
        guards: GuardState(tripped: ["churn": ["v1", "v2"]]),
        expected: [("v1", 9000), ("v2", 1000)]
    ),
]

@Test(arguments: effectiveSplitCases)
func effectiveSplitMovesTrippedWeightToTheFallback(_ testCase: EffectiveSplitCase) {
    #expect(effectiveSplit(testCase.policy, guards: testCase.guards) == split(testCase.expected))
}

@Test func aTrippedSplitChoiceGoesToTheFallback() {
    let config = sampleConfig(churnPolicy(sticky: nil, shadows: []))
    var entropy = SplitMix64(seed: 11)
    var redirected = 0
    let draws = 20_000
    for _ in 0..<draws {
        let decision = decide(request("/churn"), config: config, guards: candidateTripped, using: &entropy).decision!
        #expect(decision.version == "v1")
        #expect(decision.fallback == nil)
        if let tripped = decision.guardRedirect {
            redirected += 1
            #expect(tripped == "v2")
            #expect(decision.explanation.hasSuffix("→ v2, guard open → fallback v1"))
        }
    }
    #expect(withinFourSigma(redirected, of: draws, share: 0.1))
}

@Test func stickyKeysOfATrippedVersionGoToTheFallbackAndComeBack() {
    let config = sampleConfig(churnPolicy(shadows: []))
    var entropy = TrappingGenerator()
    var redirected = 0
    for index in 0..<5_000 {
        let facts = request("/churn", headers: [("x-user-id", "u\(index)")])
        let healthy = decide(facts, config: config, using: &entropy).decision!
        let guarded = decide(facts, config: config, guards: candidateTripped, using: &entropy).decision!
        #expect(guarded.version == "v1")
        #expect(guarded.guardRedirect == (healthy.version == "v2" ? "v2" : nil))
        if healthy.version == "v2" { redirected += 1 }
    }
    #expect(withinFourSigma(redirected, of: 5_000, share: 0.1))
}

@Test func aRequestPinnedToATrippedVersionGetsGuardOpen() {
    var entropy = TrappingGenerator()
    let config = sampleConfig()
    #expect(
        decide(request("/v2/churn/predict"), config: config, guards: candidateTripped, using: &entropy)
            .summary == "guard open churn-api-v2 v2"
    )
    #expect(
        decide(
            request("/churn", headers: [("x-model-version", "candidate")]),
            config: config,
            guards: candidateTripped,
            using: &entropy
        ).summary == "guard open churn-by-header v2"
    )
    #expect(
        decide(
            request("/v1/models/churn/versions/v1:predict"),
            config: config,
            guards: candidateTripped,
            using: &entropy
        ).summary == "churn-pinned v1"
    )
}

@Test func aTrippedChoiceWithoutAUsableFallbackGetsGuardOpen() {
    var entropy = TrappingGenerator()
    let facts = request("/churn", headers: [("x-user-id", "u3")])  // u3 → v2
    let noFallback = sampleConfig(churnPolicy(fallback: nil))
    #expect(
        decide(facts, config: noFallback, guards: candidateTripped, using: &entropy).summary
            == "guard open churn-by-header v2"
    )
    let bothTripped = GuardState(tripped: ["churn": ["v1", "v2"]])
    #expect(
        decide(facts, config: sampleConfig(), guards: bothTripped, using: &entropy).summary
            == "guard open churn-by-header v2"
    )
}
