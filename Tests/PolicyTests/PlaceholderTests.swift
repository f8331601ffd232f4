import Testing

@Test func placeholderPolicyTests() { #expect(Bool(true)) }
