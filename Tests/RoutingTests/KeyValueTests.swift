import Policy
import Routing
import Testing

struct KeyCase: Sendable, CustomTestStringConvertible {
    var source: KeySource
    var query: String?
    var headers: [(name: String, value: String)]
    var expected: String?
    var testDescription: String { "\(source) in \(query ?? "-") / \(headers.map { "\($0.name): \($0.value)" })" }
}

let keyCases: [KeyCase] = [
    // Headers: any case, first occurrence.
    KeyCase(source: .header("x-user-id"), headers: [("X-User-ID", "u1"), ("x-user-id", "u2")], expected: "u1"),
    KeyCase(source: .header("x-user-id"), headers: [("x-user", "u1")], expected: nil),
    KeyCase(source: .header("x-user-id"), headers: [("x-user-id", "")], expected: ""),
    // Cookies: `a=b; c=d`, quotes removed, across several cookie headers, names exact.
    KeyCase(source: .cookie("uid"), headers: [("Cookie", "a=b; uid=u42; c=d")], expected: "u42"),
    KeyCase(source: .cookie("uid"), headers: [("cookie", "a=b;uid=\"u 42\"")], expected: "u 42"),
    KeyCase(source: .cookie("uid"), headers: [("cookie", "a=b"), ("cookie", "uid=u3; uid=u4")], expected: "u3"),
    KeyCase(source: .cookie("uid"), headers: [("cookie", "UID=u1; xuid=u2; uid")], expected: nil),
    KeyCase(source: .cookie("uid"), headers: [("x-cookie", "uid=u1")], expected: nil),
    KeyCase(source: .cookie("s"), headers: [("cookie", "s=a=b")], expected: "a=b"),
    // Query: `k=v&k2=v2`, `+` and `%XX` decoded in names and values, first occurrence.
    KeyCase(source: .query("uid"), query: "a=1&uid=u%2012+x&uid=second", headers: [], expected: "u 12 x"),
    KeyCase(source: .query("user id"), query: "user+id=7&user%20id=8", headers: [], expected: "7"),
    KeyCase(source: .query("uid"), query: "uid", headers: [], expected: ""),
    KeyCase(source: .query("uid"), query: "uid=%zz%4", headers: [], expected: "%zz%4"),
    KeyCase(source: .query("uid"), query: "uid=%C3%A9", headers: [], expected: "é"),
    KeyCase(source: .query("uid"), query: "xuid=1&&uidx=2", headers: [], expected: nil),
    KeyCase(source: .query("uid"), query: nil, headers: [("uid", "1")], expected: nil),
]

@Test(arguments: keyCases)
func keyValueReadsTheSource(_ testCase: KeyCase) {
    let facts = RequestFacts(method: "POST", path: "/p", query: testCase.query, headers: testCase.headers)
    #expect(keyValue(testCase.source, in: facts) == testCase.expected)
}

@Test func keyValueReadsTheBodyThroughTheSidecarsResolver() {
    let withBody = RequestFacts(
        method: "POST",
        path: "/p",
        bodyKey: { pointer in pointer == "/instances/0/customer_id" ? "c-17" : nil }
    )
    #expect(keyValue(.body("/instances/0/customer_id"), in: withBody) == "c-17")
    #expect(keyValue(.body("/instances/1/customer_id"), in: withBody) == nil)
    #expect(keyValue(.body("/instances/0/customer_id"), in: request("/p")) == nil)
}
