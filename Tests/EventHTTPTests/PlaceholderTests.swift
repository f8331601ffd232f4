import Testing

@Test func placeholderEventHTTPTests() { #expect(Bool(true)) }
