import Policy
import Routing
import Testing

struct MatchCase: Sendable, CustomTestStringConvertible {
    var method: String
    var path: String
    var headers: [(name: String, value: String)] = []
    /// `RoutingOutcome.summary` for the sample config.
    var expected: String
    var testDescription: String { "\(method) \(path) \(headers.map { "\($0.name): \($0.value)" }) → \(expected)" }
}

let matchCases: [MatchCase] = [
    // Exact path, method and header: the first route.
    MatchCase(method: "POST", path: "/v1/models/churn:predict", headers: [("X-Tenant", "acme")], expected: "churn v1"),
    MatchCase(method: "post", path: "/v1/models/churn:predict", headers: [("x-tenant", "acme")], expected: "churn v1"),
    // Wrong method, wrong header value, header value case, missing header: on to the catch-all.
    MatchCase(
        method: "GET",
        path: "/v1/models/churn:predict",
        headers: [("x-tenant", "acme")],
        expected: "churn-any v1"
    ),
    MatchCase(
        method: "POST",
        path: "/v1/models/churn:predict",
        headers: [("x-tenant", "ACME")],
        expected: "churn-any v1"
    ),
    MatchCase(
        method: "POST",
        path: "/v1/models/churn:predict",
        headers: [("x-tenant", "globex")],
        expected: "churn-any v1"
    ),
    MatchCase(method: "POST", path: "/v1/models/churn:predict", expected: "churn-any v1"),
    // Exact means exact: a trailing slash is another path.
    MatchCase(method: "POST", path: "/v2/churn/predict/", expected: "no route"),
    MatchCase(method: "POST", path: "/v2/churn/predict", expected: "churn-api-v2 v2"),
    // Templates: one capture, stopping where the rest matches; never empty, never across `/`.
    MatchCase(method: "POST", path: "/v1/models/churn/versions/v3:predict", expected: "churn-pinned v3"),
    MatchCase(method: "POST", path: "/v1/models/churn/versions/stable:predict", expected: "churn-pinned v1"),
    MatchCase(method: "POST", path: "/v1/models/churn/versions/:predict", expected: "churn-any v1"),
    MatchCase(method: "POST", path: "/v1/models/churn/versions/v3/x:predict", expected: "churn-any v1"),
    MatchCase(method: "POST", path: "/v1/models/churn/versions/v3:predictx", expected: "churn-any v1"),
    // Prefix: plain string prefix.
    MatchCase(method: "GET", path: "/churn", headers: [("x-model-version", "v3")], expected: "churn-by-header v3"),
    MatchCase(method: "GET", path: "/churnx/y", headers: [("x-model-version", "v3")], expected: "churn-by-header v3"),
    MatchCase(method: "GET", path: "/chur", expected: "no route"),
    MatchCase(method: "GET", path: "/", expected: "no route"),
    MatchCase(method: "GET", path: "", expected: "no route"),
]

@Test(arguments: matchCases)
func routesMatchInOrder(_ testCase: MatchCase) {
    // Sticky on x-user-id, so every unpinned case here gets the same answer: u123 → v1.
    var headers = testCase.headers
    headers.append(("x-user-id", "u123"))
    var entropy = TrappingGenerator()
    let outcome = decide(
        RequestFacts(method: testCase.method, path: testCase.path, headers: headers),
        config: sampleConfig(),
        using: &entropy
    )
    #expect(outcome.summary == testCase.expected)
}

@Test func theFirstMatchingRouteWinsOverLaterOnes() {
    let routes = [
        route("first", .prefix("/a")),
        route("second", .exact("/a/b")),
    ]
    var entropy = SplitMix64(seed: 1)
    let outcome = decide(request("/a/b"), config: sampleConfig(routes: routes), using: &entropy)
    #expect(outcome.decision?.route.name == "first")
    #expect(outcome.decision?.routeIndex == 0)
    let reversed = decide(request("/a/b"), config: sampleConfig(routes: routes.reversed()), using: &entropy)
    #expect(reversed.decision?.route.name == "second")
}

@Test func noRoutesMeansNoRoute() {
    var entropy = TrappingGenerator()
    #expect(decide(request("/x"), config: sampleConfig(routes: []), using: &entropy).summary == "no route")
}

@Test(
    arguments: [
        ("/m/{model}/v/{version}", "/m/churn/v/v2", ["model": "churn", "version": "v2"]),
        ("/v/{version}:predict", "/v/a:b:predict", ["version": "a:b"]),
        ("/v/{version}:predict", "/v/a:predict:predict", ["version": "a:predict"]),
        ("/v/{version}", "/v/é", ["version": "é"]),
        ("/v/{version}", "/v/", nil),
        ("/v/{version}", "/v/a/", nil),
        ("/v/{version}", "/w/a", nil),
        ("{label}", "stable", ["label": "stable"]),
    ] as [(String, String, [String: String]?)]
)
func templatesCaptureTheFewestCharacters(_ source: String, _ path: String, _ expected: [String: String]?) {
    #expect(templateCaptures(parseTemplate(source), path: path) == expected)
}

/// A test-only template parser: `{name}` captures, everything else literal.
func parseTemplate(_ source: String) -> PathTemplate {
    var segments: [PathTemplate.Segment] = []
    var rest = Substring(source)
    while !rest.isEmpty {
        if rest.first == "{", let close = rest.firstIndex(of: "}") {
            segments.append(.capture(String(rest[rest.index(after: rest.startIndex)..<close])))
            rest = rest[rest.index(after: close)...]
        } else {
            let end = rest.firstIndex(of: "{") ?? rest.endIndex
            segments.append(.literal(String(rest[..<end])))
            rest = rest[end...]
        }
    }
    return PathTemplate(source: source, segments: segments)
}
