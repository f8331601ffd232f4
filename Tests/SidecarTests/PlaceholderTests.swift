import Testing

@Test func placeholderSidecarTests() { #expect(Bool(true)) }
