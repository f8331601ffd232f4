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
        let value = next()
        // Written in place: one allocation for the String, none for digits or scratch arrays.
        return String(unsafeUninitializedCapacity: 16) { out in
            for i in 0..<16 {
                let nibble = UInt8(truncatingIfNeeded: (value >> UInt64(60 - 4 * i)) & 0xF)
                out[i] = nibble < 10 ? 0x30 &+ nibble : 0x57 &+ nibble
            }
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
