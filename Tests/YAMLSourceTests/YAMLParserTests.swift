import Testing
import YAMLSource

private func parse(_ text: String) -> YAMLDocument {
    YAMLParser.parse(Array(text.utf8))
}

private func rendered(_ document: YAMLDocument) -> [String] {
    document.errors.map(\.description)
}

@Test func marksAreOneBased() throws {
    let doc = parse("model: churn\nversions:\n  v1: { url: \"http://x\" }\n")
    #expect(doc.errors.isEmpty)
    let root = try #require(doc.root)
    #expect(root.mark == YAMLMark(line: 1, column: 1))
    let pairs = try #require(root.mapping)
    #expect(pairs.count == 2)
    #expect(pairs[0].key.scalar?.text == "model")
    #expect(pairs[0].value.mark == YAMLMark(line: 1, column: 8))
    #expect(pairs[1].key.mark == YAMLMark(line: 2, column: 1))
    let versions = try #require(pairs[1].value.mapping)
    #expect(versions[0].key.mark == YAMLMark(line: 3, column: 3))
    let v1 = try #require(versions[0].value.mapping)
    #expect(v1[0].value.scalar?.text == "http://x")
    #expect(v1[0].value.mark == YAMLMark(line: 3, column: 14))
}

@Test func quotedAndPlainScalarsAreDistinguished() throws {
    let doc = parse("a: no\nb: 'no'\nc: \"12\"\nd: !!str 12\ne: |\n  text\n")
    let pairs = try #require(doc.root?.mapping)
    #expect(pairs[0].value.scalar == YAMLScalar(text: "no", style: .plain))
    #expect(pairs[1].value.scalar == YAMLScalar(text: "no", style: .singleQuoted))
    #expect(pairs[2].value.scalar == YAMLScalar(text: "12", style: .doubleQuoted))
    #expect(pairs[3].value.scalar?.tag == "tag:yaml.org,2002:str")
    #expect(pairs[3].value.scalar?.isPlain == true)
    #expect(pairs[4].value.scalar == YAMLScalar(text: "text\n", style: .literal))
}

@Test func duplicateKeysAreKept() throws {
    let doc = parse("a: 1\na: 2\n")
    let pairs = try #require(doc.root?.mapping)
    #expect(pairs.map { $0.key.scalar?.text } == ["a", "a"])
    #expect(pairs[1].key.mark == YAMLMark(line: 2, column: 1))
}

@Test func sequencesKeepOrder() throws {
    let doc = parse("- a\n- [b, c]\n- {d: e}\n")
    let items = try #require(doc.root?.sequence)
    #expect(items.count == 3)
    #expect(items[1].sequence?.map { $0.scalar?.text } == ["b", "c"])
    #expect(items[2].mark == YAMLMark(line: 3, column: 3))
}

@Test func emptyInputHasNoRoot() {
    let doc = parse("# only a comment\n")
    #expect(doc.root == nil)
    #expect(doc.errors.isEmpty)
}

@Test func aliasesAndAnchorsAreRefused() {
    let doc = parse("base: &b { url: x }\nother: *b\n")
    #expect(rendered(doc) == ["1:7: YAML anchors are not allowed", "2:8: YAML aliases are not allowed"])
}

@Test func billionLaughsIsRefusedQuickly() {
    var text = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in 1...9 {
        let refs = Array(repeating: "*a\(i - 1)", count: 9).joined(separator: ", ")
        text += "a\(i): &a\(i) [\(refs)]\n"
    }
    let doc = parse(text)
    #expect(doc.errors.first?.description == "1:5: YAML anchors are not allowed")
    #expect(doc.errors.count <= YAMLLimits().maxErrors + 1)
    #expect(doc.errors.last?.message == "too many errors; stopped reading this file")
}

@Test(arguments: ["[", "- "])
func depthBombIsRefused(opener: String) {
    var text = ""
    for depth in 0..<(opener == "[" ? 100_000 : 1000) {
        text += opener == "[" ? "[" : String(repeating: "  ", count: depth) + "-\n"
    }
    let doc = parse(text)
    #expect(doc.errors.count == 1)
    #expect(doc.errors.first?.message == "nesting deeper than 64 levels")
}

@Test func sixtyFourLevelsAreAccepted() {
    let text = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
    let doc = parse(text)
    #expect(doc.errors.isEmpty)
    #expect(doc.root != nil)
}

@Test func moreThanOneDocumentIsRefused() {
    let doc = parse("a: 1\n---\nb: 2\n")
    #expect(rendered(doc) == ["2:1: more than one YAML document in the file; expected one"])
}

@Test func syntaxErrorsUseLibyamlsMark() {
    let doc = parse("a: 1\n b: 2\n")
    #expect(rendered(doc) == ["2:3: mapping values are not allowed in this context"])
    let unclosed = parse("a: [1, 2\n")
    #expect(unclosed.errors.count == 1)
    #expect(unclosed.errors.first?.message.hasPrefix("did not find expected ',' or ']'") == true)
}

/// libyaml says "found character that cannot start any token" for an indenting tab; the
/// message names the tab instead, at the tab's own line and column (after a multi-byte
/// character too: columns count characters).
@Test func aTabUsedForIndentationIsNamed() {
    let indentation = "tabs are not allowed for indentation; indent with spaces"
    #expect(rendered(parse("model: churn\nversions:\n\tv1: 1\n")) == ["3:1: \(indentation)"])
    #expect(rendered(parse("versions:\n  v1:\n  \turl: x\n")) == ["3:3: \(indentation)"])
    #expect(rendered(parse("é: x\nv: |\n\tabc\n")) == ["3:1: \(indentation)"])
    // Tabs where YAML allows them (after a value, inside flow collections) are still fine.
    #expect(parse("a: 1\t\nb: [1,\t2]\n").errors.isEmpty)
    // Other errors keep libyaml's words.
    #expect(rendered(parse("a: 1\n b: 2\n")) == ["2:3: mapping values are not allowed in this context"])
}

@Test func oversizedInputIsRefused() {
    let bytes = [UInt8](repeating: UInt8(ascii: "a"), count: (1 << 20) + 1)
    let doc = YAMLParser.parse(bytes)
    #expect(doc.root == nil)
    #expect(doc.errors.map(\.mark) == [YAMLMark(line: 0, column: 0)])
}

@Test func invalidUTF8IsAnErrorWithAPosition() {
    let doc = YAMLParser.parse(Array("a: b\nc: ".utf8) + [0xFF, 0xFE, 0x41])
    #expect(doc.errors.count == 1)
    #expect(doc.errors.first?.mark.line == 2)
}

/// Deterministic garbage (a linear congruential generator), so a failure can be replayed.
@Test func binaryGarbageNeverCrashes() {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    let alphabet = Array("{}[]:-,&*!|>'\"#%@` \n\tab1".utf8)
    for round in 0..<300 {
        var bytes: [UInt8] = []
        for _ in 0..<(round % 50 * 20 + 1) {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let r = UInt8(truncatingIfNeeded: state >> 33)
            bytes.append(round % 2 == 0 ? r : alphabet[Int(r) % alphabet.count])
        }
        let doc = YAMLParser.parse(bytes)
        // A tree or errors are both fine; a crash or hang is not, and errors point into the input.
        let lines = bytes.filter { $0 == 0x0A }.count + 1
        for error in doc.errors {
            #expect((1...lines).contains(error.mark.line), "\(error) for \(bytes)")
        }
    }
}
