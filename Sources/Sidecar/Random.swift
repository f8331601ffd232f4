import HTTP1
import Models

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast generator for per-worker entropy
/// (split draws, shadow sampling, request ids). Seeded once per worker from the system.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 16 lower-case hex digits.
    mutating func requestID() -> String {
        RequestID.hex(next())
    }
}

/// A request's id: the client's own `x-request-id` (when acceptable) or one made here from 64
/// random bits. A made one is written as 16 lower-case hex digits straight into field lines
/// (`appendField`); its `String` (a 16-byte one is allocated) is made only when something asks
/// for it (a log line, an error body, a comparison record).
struct RequestID {
    let client: String?
    let generated: UInt64

    init(client: String?, random: inout SplitMix64) {
        self.client = client
        self.generated = client == nil ? random.next() : 0
    }

    init(_ client: String) {
        self.client = client
        self.generated = 0
    }

    var string: String { client ?? RequestID.hex(generated) }

    /// A made id, for tests.
    init(generated: UInt64) {
        self.client = nil
        self.generated = generated
    }

    /// `x-request-id: id\r\n`, the id checked already (`Forwarding.acceptableRequestID`) or
    /// made here.
    func appendField(to lines: inout [UInt8]) {
        if let client {
            HTTPSerializer.appendCheckedField(&lines, name: "x-request-id", value: client)
            return
        }
        // The whole 32-byte line in a stack buffer, appended at once (one capacity check).
        var line: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &line) { raw in
            let prefix: StaticString = "x-request-id: "
            raw.baseAddress!.copyMemory(from: prefix.utf8Start, byteCount: 14)
            for i in 0..<16 { raw[14 &+ i] = RequestID.hexDigit(generated, i) }
            raw[30] = 0x0D
            raw[31] = 0x0A
        }
        withUnsafeBytes(of: &line) { raw in lines.append(contentsOf: raw) }
    }

    @inline(__always)
    static func hexDigit(_ value: UInt64, _ i: Int) -> UInt8 {
        let nibble = UInt8(truncatingIfNeeded: (value >> UInt64(60 - 4 * i)) & 0xF)
        return nibble < 10 ? 0x30 &+ nibble : 0x57 &+ nibble
    }

    static func hex(_ value: UInt64) -> String {
        // Written in place: one allocation for the String, none for digits or scratch arrays.
        String(unsafeUninitializedCapacity: 16) { out in
            for i in 0..<16 { out[i] = hexDigit(value, i) }
            return 16
        }
    }
}

extension JSON {
    /// The text a key source compares: a string as it is, an integral number without `.0`,
    /// other scalars as JSON. Arrays and objects are not keys.
    var keyString: String? {
        switch self {
        case .string(let s): return s
        case .number, .bool: return String(decoding: serialized(), as: UTF8.self)
        default: return nil
        }
    }
}

extension JSON {
    /// The sidecar's error body (SPEC §8): `{"error": code, "detail": ..., "request_id": ...}`,
    /// the id only where a data-port request has one.
    static func error(_ code: String, _ detail: String, requestID: String? = nil) -> JSON {
        var fields: [(String, JSON)] = [("error", .string(code)), ("detail", .string(detail))]
        if let requestID { fields.append(("request_id", .string(requestID))) }
        return .fields(fields)
    }

    /// An object from ordered (key, value) pairs.
    public static func fields(_ pairs: [(String, JSON)]) -> JSON {
        .object(JSONObject(pairs.map { (key: $0.0, value: $0.1) }))
    }
}
