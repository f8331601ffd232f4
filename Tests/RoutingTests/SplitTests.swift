import Policy
import Routing
import Testing

func split(_ weights: [(String, Int)]) -> [SplitEntry] {
    weights.map { SplitEntry(version: $0.0, weight: $0.1) }
}

/// Weight sets down to the 0.01 % resolution, and zero weights.
let weightSets: [[Int]] = [
    [9000, 1000],
    [5000, 5000],
    [3333, 3333, 3334],
    [1, 9999],
    [1, 0, 9998, 1],
    [0, 10000],
    [2500, 2500, 2500, 2500],
]

func versions(_ weights: [Int]) -> [SplitEntry] {
    split(weights.enumerated().map { ("v\($0.offset + 1)", $0.element) })
}

// 200 000 draws each: four sets keep the debug-build run short.
@Test(arguments: [[9000, 1000], [3333, 3333, 3334], [1, 9999], [1, 0, 9998, 1]])
func randomSplitSharesConvergeToWeights(_ weights: [Int]) {
    let entries = versions(weights)
    // One route, so the time goes to the split rather than to matching.
    let config = sampleConfig(
        churnPolicy(split: entries, sticky: nil, shadows: []),
        routes: [route("all", .prefix("/"))]
    )
    var entropy = SplitMix64(seed: 0x5EED_0000 + UInt64(weights.count))
    let draws = 200_000
    var counts: [String: Int] = [:]
    var bucketsSeen = [Bool](repeating: false, count: 10_000)
    // Each version's cumulative range, in split order.
    var ranges: [String: Range<Int>] = [:]
    var lower = 0
    for entry in entries {
        ranges[entry.version] = lower..<lower + entry.weight
        lower += entry.weight
    }
    let facts = request("/churn")
    for _ in 0..<draws {
        guard let decision = decide(facts, config: config, using: &entropy).decision,
            case .randomSplit(let bucket, .noStickyConfigured) = decision.reason
        else {
            Issue.record("expected a random split")
            return
        }
        guard ranges[decision.version]!.contains(bucket) else {
            Issue.record("bucket \(bucket) went to \(decision.version), outside its range")
            return
        }
        counts[decision.version, default: 0] += 1
        bucketsSeen[bucket] = true
    }
    for entry in entries {
        let count = counts[entry.version, default: 0]
        #expect(
            withinFourSigma(count, of: draws, share: Double(entry.weight) / 10_000),
            "\(entry.version): \(count) of \(draws) for weight \(entry.weight)"
        )
    }
    // Uniform over 0..<10000: every bucket is hit (P(miss one) ≈ 1e-8 each), none outside.
    #expect(bucketsSeen.allSatisfy { $0 })
}

// Computed with the Python snippet in `stickyVersion`'s documentation.
@Test(
    arguments: [
        ("u123", [9000, 1000], "v1"), ("u3", [9000, 1000], "v2"), ("u11", [9000, 1000], "v2"),
        ("u7", [9000, 1000], "v1"),
        ("u123", [5000, 3000, 2000], "v3"), ("u7", [5000, 3000, 2000], "v2"), ("u6", [5000, 3000, 2000], "v1"),
        ("u11", [5000, 3000, 2000], "v2"), ("u12", [5000, 3000, 2000], "v1"),
    ] as [(String, [Int], String)]
)
func stickyAssignmentsMatchTheDocumentedAlgorithm(_ key: String, _ weights: [Int], _ expected: String) {
    #expect(stickyVersion(for: key, split: versions(weights)) == expected)
}

@Test func stickyAssignmentIgnoresEntryOrderAndRepetition() {
    let entries = versions([4000, 3500, 2000, 500])
    var shuffler = SplitMix64(seed: 42)
    let orders = [entries, entries.reversed()] + (0..<4).map { _ in entries.shuffled(using: &shuffler) }
    let config = sampleConfig(churnPolicy(split: entries, shadows: []))
    var entropy = TrappingGenerator()
    for index in 0..<2_000 {
        let key = "user-\(index)"
        let assigned = Set(orders.map { stickyVersion(for: key, split: $0) })
        #expect(assigned.count == 1, "\(key): \(assigned)")
        for _ in 0..<2 {
            let decided = decide(request("/churn", headers: [("x-user-id", key)]), config: config, using: &entropy)
            #expect(decided.decision?.version == assigned.first!, "\(key)")
        }
    }
    #expect(stickyVersion(for: "anyone", split: versions([0, 0])) == nil)
}

@Test(arguments: weightSets)
func stickySharesConvergeToWeights(_ weights: [Int]) {
    let entries = versions(weights)
    let keys = 100_000
    var counts: [String: Int] = [:]
    for index in 0..<keys {
        counts[stickyVersion(for: "customer-\(index)", split: entries)!, default: 0] += 1
    }
    for entry in entries {
        let count = counts[entry.version, default: 0]
        #expect(
            withinFourSigma(count, of: keys, share: Double(entry.weight) / 10_000),
            "\(entry.version): \(count) of \(keys) for weight \(entry.weight)"
        )
    }
}

@Test(
    arguments: [
        // The others keep their ratios: scores scale with weight, so only ratios matter.
        ([5000, 3000, 2000], [3750, 2250, 4000], "v3"),
        ([9000, 1000, 0], [7200, 800, 2000], "v3"),
        ([4000, 3000, 2000, 1000], [2000, 1500, 1000, 5500], "v4"),
        ([9990, 10], [9000, 1000], "v2"),
        ([9000, 1000], [0, 10000], "v2"),
    ] as [([Int], [Int], String)]
)
func raisingOneWeightOnlyMovesKeysToIt(_ before: [Int], _ after: [Int], _ raised: String) {
    let old = versions(before)
    let new = versions(after)
    let keys = 20_000
    var moved = 0
    for index in 0..<keys {
        let key = "k\(index)"
        let was = stickyVersion(for: key, split: old)!
        let now = stickyVersion(for: key, split: new)!
        if was != now {
            moved += 1
            #expect(now == raised, "\(key) moved \(was) → \(now)")
        }
    }
    // As many keys move as the raised share grows, so the property is not vacuous.
    let raisedIndex = new.firstIndex { $0.version == raised }!
    let gain = Double(new[raisedIndex].weight - old[raisedIndex].weight) / 10_000
    #expect(withinFourSigma(moved, of: keys, share: gain), "\(moved) of \(keys) moved, expected share \(gain)")
}

@Test(arguments: [true, false])
func removingAVersionOnlyMovesItsKeys(_ dropEntry: Bool) {
    // v2 goes; the others keep their 4 : 1 ratio.
    let old = versions([4000, 5000, 1000])
    let new =
        dropEntry
        ? split([("v1", 8000), ("v3", 2000)])
        : split([("v1", 8000), ("v2", 0), ("v3", 2000)])
    var moved = 0
    for index in 0..<20_000 {
        let key = "k\(index)"
        let was = stickyVersion(for: key, split: old)!
        let now = stickyVersion(for: key, split: new)!
        if was != now {
            moved += 1
            #expect(was == "v2", "\(key) moved \(was) → \(now)")
        } else {
            #expect(was != "v2")
        }
    }
    #expect(withinFourSigma(moved, of: 20_000, share: 0.5))
}

/// The split's bucket is exactly what `Int.random(in: 0..<10000)` draws from the same generator,
/// so a seeded worker replays the same assignments as before the draw was written out.
@Test func randomBucketDrawsLikeIntRandom() {
    let config = sampleConfig(
        churnPolicy(split: versions([3333, 3333, 3334]), sticky: nil, shadows: []),
        routes: [route("all", .prefix("/"))]
    )
    var entropy = SplitMix64(seed: 0xB0C4E7)
    var reference = SplitMix64(seed: 0xB0C4E7)
    for _ in 0..<10_000 {
        guard
            case .randomSplit(let bucket, _) = decide(request("/churn"), config: config, using: &entropy).decision?
                .reason
        else {
            Issue.record("expected a random split")
            return
        }
        let expected = Int.random(in: 0..<10_000, using: &reference)
        guard bucket == expected else {
            Issue.record("bucket \(bucket), Int.random drew \(expected)")
            return
        }
    }
    #expect(entropy.state == reference.state)
}
