import Testing

@Test func placeholderHTTP1Tests() { #expect(Bool(true)) }
