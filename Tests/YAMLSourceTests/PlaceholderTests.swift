import Testing

@Test func placeholderYAMLSourceTests() { #expect(Bool(true)) }
