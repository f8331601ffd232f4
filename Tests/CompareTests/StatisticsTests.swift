import Testing

@testable import Compare

struct StatisticsTests {
    // Expected bounds from scipy.stats.binomtest(k, n).proportion_ci(method="wilson").
    @Test(arguments: [
        (95, 100, 0.8882495307680809, 0.978456320845632),
        (0, 10, 0.0, 0.27753279986288926),
        (10, 10, 0.7224672001371109, 1.0),
        (990, 1000, 0.9816905311296852, 0.9945592455544706),
        (3, 400, 0.0025538891952499396, 0.021815720724032123),
        (2, 3, 0.20765960080204782, 0.9385080552796038),
        (1, 3, 0.06149194472039626, 0.7923403991979523),
    ])
    func wilsonInterval(successes: Int, trials: Int, low: Double, high: Double) throws {
        let interval = try #require(Statistics.wilsonInterval(successes: successes, trials: trials))
        #expect(abs(interval.low - low) < 1e-12)
        #expect(abs(interval.high - high) < 1e-12)
    }

    @Test func wilsonIntervalOfNoTrialsIsUnknown() {
        #expect(Statistics.wilsonInterval(successes: 0, trials: 0) == nil)
        #expect(Proportion(successes: 0, trials: 0) == nil)
    }

    @Test func proportion() throws {
        let proportion = try #require(Proportion(successes: 95, trials: 100))
        #expect(proportion.rate == 0.95)
        #expect(abs(proportion.low - 0.88825) < 1e-5)
        #expect(abs(proportion.high - 0.97846) < 1e-5)
    }

    // Expected values from numpy.percentile (linear interpolation).
    @Test(arguments: [
        ([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5, 5.5),
        ([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.99, 9.91),
        ([1.0, 2, 3, 10], 0.5, 2.5),
        ([1.0, 2, 3, 10], 0.99, 9.79),
        ([0.5], 0.99, 0.5),
        ([1.0, 2, 3], 0, 1),
        ([1.0, 2, 3], 1, 3),
    ])
    func quantile(values: [Double], probability: Double, expected: Double) throws {
        let value = try #require(Statistics.quantile(sorted: values, probability))
        #expect(abs(value - expected) < 1e-12)
    }

    @Test func emptySamples() {
        #expect(Statistics.quantile(sorted: [], 0.5) == nil)
        #expect(Statistics.mean([]) == nil)
        #expect(Distribution([]) == nil)
    }

    @Test func distributionSortsItsInput() throws {
        let distribution = try #require(Distribution([10, 1, 3, 2]))
        #expect(distribution.count == 4)
        #expect(distribution.mean == 4)
        #expect(distribution.p50 == 2.5)
        #expect(abs(distribution.p99 - 9.79) < 1e-12)
        #expect(distribution.max == 10)
    }
}
