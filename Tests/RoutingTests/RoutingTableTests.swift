import Policy
import Routing
import Testing

/// Requests that reach every kind of outcome of the sample config: split (random and sticky),
/// pinned by path, header and route, unknown version, no route.
/// (Computed: `RequestFacts` is not `Sendable`, so it cannot be a stored global.)
var tableRequests: [RequestFacts] {
    [
        request("/v1/models/churn:predict", headers: [("x-tenant", "acme")]),
        request("/v1/models/churn:predict", headers: [("x-tenant", "acme"), ("x-user-id", "u42")]),
        request("/v1/models/churn/versions/v2:predict"),
        request("/v1/models/churn/versions/candidate:predict"),
        request("/v1/models/churn/versions/v9:predict"),
        request("/churn/x", headers: [("x-model-version", "stable")]),
        request("/churn/x"),
        request("/v2/churn/predict"),
        request("/v1/models/churn"),
        request("/elsewhere"),
    ]
}

/// Deciding through a `RoutingTable` gives what deciding on the config gives, draw for draw,
/// with and without a tripped guard.
@Test(arguments: [GuardState(), GuardState(tripped: ["churn": ["v2"]])])
func tableDecidesAsConfig(_ guards: GuardState) {
    let policy = churnPolicy(shadows: [ShadowSpec(version: "v3", percent: 50)])
    let config = sampleConfig(policy)
    let table = RoutingTable(config)
    var viaConfig = SplitMix64(seed: 7)
    var viaTable = SplitMix64(seed: 7)
    for round in 0..<50 {
        for facts in tableRequests {
            let expected = decide(facts, config: config, guards: guards, using: &viaConfig)
            let actual = decide(facts, table: table, guards: guards, using: &viaTable)
            #expect(actual.summary == expected.summary, "round \(round), \(facts.path)")
            #expect(actual.decision?.description == expected.decision?.description)
            #expect(actual.decision?.shadows == expected.decision?.shadows)
            #expect(actual.decision?.fallback == expected.decision?.fallback)
        }
    }
    #expect(viaTable.state == viaConfig.state)
}

@Test func tableFindsTheVersionOfTheRoutesModel() {
    let table = RoutingTable(sampleConfig())
    #expect(table.version("v3", routeIndex: 1)?.name == "v3")
    #expect(table.version("candidate", routeIndex: 0) == nil)  // labels are resolved by `decide`, not here
}
