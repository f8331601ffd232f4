import HTTP1
import Testing

/// Bytes that matter to the grammar, so mutations hit interesting paths more often than chance.
private let interestingBytes: [UInt8] =
    Array("\r\n :;,=\"\\/\t0123456789abcdefABCDEF-+xHTP.".utf8) + [0, 0x7F, 0x80, 0xFF, 0x01]

private func mutate(_ input: [UInt8], using rng: inout SplitMix64) -> [UInt8] {
    var bytes = input
    let edits = Int.random(in: 1...4, using: &rng)
    for _ in 0..<edits {
        let pick = Int.random(in: 0..<5, using: &rng)
        let at = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
        let byte =
            Bool.random(using: &rng)
            ? interestingBytes.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
        switch pick {
        case 0 where !bytes.isEmpty: bytes[at] = byte
        case 1: bytes.insert(byte, at: at)
        case 2 where !bytes.isEmpty: bytes.remove(at: at)
        case 3 where !bytes.isEmpty:  // duplicate a slice, e.g. a header line
            let end = min(bytes.count, at + Int.random(in: 1...24, using: &rng))
            bytes.insert(contentsOf: bytes[at..<end], at: at)
        default:
            if !bytes.isEmpty { bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...8, using: &rng))) }
        }
    }
    return bytes
}

private let requestSeeds: [[UInt8]] =
    (validRequests.map(\.raw) + smugglingCorpus.map(\.raw)).map { Array($0.utf8) }

private let responseSeeds: [[UInt8]] = (responseRows.map(\.raw) + badResponses.map(\.1)).map { Array($0.utf8) }

/// Checks the laws every request parse must obey, for one input.
private func checkRequestLaws(_ bytes: [UInt8], limits: HTTPLimits, rng: inout SplitMix64) {
    let whole = parseRequest(bytes, limits: limits)
    switch whole {
    case .complete(let head, let consumed):
        #expect(consumed > 0 && consumed <= bytes.count)
        // The head alone parses to the same head.
        #expect(parseRequest(Array(bytes[..<consumed]), limits: limits) == whole)
        // What the parser accepted, written back out, parses to the same request.
        let again = parseRequest(
            HTTPSerializer.requestHead(
                method: head.method,
                target: head.target,
                headers: head.headers,
                contentLength: nil
            ),
            limits: HTTPLimits(maxHeaderBytes: .max, maxHeaderCount: .max, maxBodyBytes: limits.maxBodyBytes)
        )
        if head.version == .http11 {
            let reparsed = again.head
            #expect(reparsed?.method == head.method)
            #expect(reparsed?.target == head.target)
            #expect(reparsed?.headers == head.headers)
            #expect(reparsed?.framing == head.framing)
            #expect(reparsed?.keepAlive == head.keepAlive)
        }
    case .failure, .incomplete:
        break
    }
    // A few split points: a prefix is incomplete, or fails as the whole does.
    for _ in 0..<4 where !bytes.isEmpty {
        let n = Int.random(in: 0..<bytes.count, using: &rng)
        let prefix = parseRequest(Array(bytes[..<n]), limits: limits)
        if let consumed = whole.consumed, n >= consumed {
            #expect(prefix == whole, "prefix \(n) of \(bytes)")
        } else {
            #expect(prefix == .incomplete || prefix == whole, "prefix \(n) of \(bytes)")
        }
    }
}

@Test func mutatedRequestsNeverCrashAndStayConsistent() {
    var rng = SplitMix64(seed: 0x5EED_0001)
    let limits = [HTTPLimits(), HTTPLimits(maxHeaderBytes: 96, maxHeaderCount: 4, maxBodyBytes: 100)]
    for round in 0..<3000 {
        let seed = requestSeeds[round % requestSeeds.count]
        let input = mutate(seed, using: &rng)
        checkRequestLaws(input, limits: limits[round % limits.count], rng: &rng)
    }
}

@Test func randomBytesNeverCrashTheParsers() {
    var rng = SplitMix64(seed: 0x5EED_0002)
    var decoder = ChunkedDecoder(maxBodyBytes: 1 << 20)
    for _ in 0..<2000 {
        let count = Int.random(in: 0...120, using: &rng)
        let alphabetOnly = Bool.random(using: &rng)
        let bytes = (0..<count).map { _ in
            alphabetOnly ? interestingBytes.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
        }
        checkRequestLaws(bytes, limits: HTTPLimits(), rng: &rng)
        _ = parseResponse(bytes)
        if case .failure = bytes.withUnsafeBytes({ decoder.decode($0) }) {
            decoder = ChunkedDecoder(maxBodyBytes: 1 << 20)
        }
    }
}

@Test func mutatedResponsesNeverCrashAndStayConsistent() {
    var rng = SplitMix64(seed: 0x5EED_0003)
    for round in 0..<2000 {
        let input = mutate(responseSeeds[round % responseSeeds.count], using: &rng)
        let method = round % 5 == 0 ? "HEAD" : "GET"
        let whole = parseResponse(input, method: method)
        if case .failure(let e) = whole { #expect(e.kind == .badRequest) }
        if let consumed = whole.consumed {
            #expect(parseResponse(Array(input[..<consumed]), method: method) == whole)
        }
        for _ in 0..<3 where !input.isEmpty {
            let n = Int.random(in: 0..<input.count, using: &rng)
            let prefix = parseResponse(Array(input[..<n]), method: method)
            if let consumed = whole.consumed, n >= consumed {
                #expect(prefix == whole)
            } else {
                #expect(prefix == .incomplete || prefix == whole, "prefix \(n) of \(input)")
            }
        }
    }
}

@Test func mutatedChunkedBodiesDecodeTheSameWhateverTheSplits() {
    var rng = SplitMix64(seed: 0x5EED_0004)
    let seeds = (validChunked.map(\.raw) + badChunked.map(\.raw).filter { $0.utf8.count < 200 }).map { Array($0.utf8) }
    for round in 0..<2000 {
        let input = mutate(seeds[round % seeds.count], using: &rng)
        let whole = decodeChunked(input, maxBodyBytes: 64) { $0 }
        let pieces = decodeChunked(input, maxBodyBytes: 64) { left in
            Int.random(in: 1...max(1, min(left, 5)), using: &rng)
        }
        #expect(pieces.error == whole.error, "\(input)")
        #expect(pieces.complete == whole.complete)
        if whole.error == nil {
            #expect(pieces.consumed == whole.consumed)
            #expect(pieces.payload == whole.payload)
        }
        #expect(whole.payload.count <= 64)
    }
}

/// Structured random requests: random header names, values and framing headers.
@Test func generatedRequestsRoundTrip() throws {
    var rng = SplitMix64(seed: 0x5EED_0005)
    let tchars = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~".utf8)
    let valueBytes = Array(" \tabcXYZ019,;=:/\"'()<>@[]{}?~".utf8) + [0x80, 0xC3, 0xA9]
    for _ in 0..<1000 {
        var fields: [(String, String)] = [("Host", "h")]
        for _ in 0..<Int.random(in: 0...12, using: &rng) {
            let name = String(
                decoding: (0..<Int.random(in: 1...12, using: &rng)).map { _ in tchars.randomElement(using: &rng)! },
                as: UTF8.self
            )
            if ["host", "content-length", "transfer-encoding", "expect", "connection"].contains(name.lowercased()) {
                continue
            }
            var value = (0..<Int.random(in: 0...20, using: &rng)).map { _ in valueBytes.randomElement(using: &rng)! }
            while let f = value.first, f == 0x20 || f == 0x09 { value.removeFirst() }
            while let l = value.last, l == 0x20 || l == 0x09 { value.removeLast() }
            fields.append((name, String(decoding: value, as: UTF8.self)))
        }
        let length: Int? = Bool.random(using: &rng) ? Int.random(in: 0...5000, using: &rng) : nil
        let raw = HTTPSerializer.requestHead(
            method: "POST",
            target: "/m?q=1",
            headers: HTTPHeaders(fields),
            contentLength: length
        )
        let outcome = parseRequest(raw)
        let head = try #require(outcome.head, "\(String(decoding: raw, as: UTF8.self))")
        #expect(outcome.consumed == raw.count)
        #expect(head.headers.count == fields.count + (length == nil ? 0 : 1))
        #expect(head.framing == (length.map { .contentLength($0) } ?? BodyFraming.none))
        for (k, field) in fields.enumerated() {
            #expect(head.headers.fields[k].name == field.0)
            #expect(head.headers.fields[k].value == field.1)
        }
    }
}
