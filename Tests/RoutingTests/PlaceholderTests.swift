import Testing

@Test func placeholderRoutingTests() { #expect(Bool(true)) }
