/// gRPC over HTTP/2, the parts that are framing and not transport (gRPC's "PROTOCOL-HTTP2"
/// document): the 5-byte length-prefixed message, `grpc-timeout`, and the `grpc-status` /
/// `grpc-message` trailers. Pure: no socket, no clock, no C type, so the sidecar's gRPC path and
/// the HTTP/2 server share one definition and the tests drive it directly.

/// gRPC status codes (the `grpc-status` trailer).
public enum GRPCStatus: Int, Sendable, Hashable, CaseIterable {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    /// The status a gRPC client infers from an HTTP status when a response carries no
    /// `grpc-status` (gRPC's "HTTP to gRPC Status Code Mapping").
    public static func fromHTTPStatus(_ status: Int) -> GRPCStatus {
        switch status {
        case 200: return .unknown  // a 200 without grpc-status is malformed
        case 400: return .internal
        case 401: return .unauthenticated
        case 403: return .permissionDenied
        case 404: return .unimplemented
        case 429, 502, 503, 504: return .unavailable
        default: return .unknown
        }
    }
}

/// Why a request body is not a sequence of well-formed gRPC messages.
public enum GRPCFramingError: Error, Sendable, Hashable {
    /// A message declares more than the limit: RESOURCE_EXHAUSTED.
    case messageTooLarge(declared: Int, limit: Int)
    /// The compressed flag is set and `grpc-encoding` names an algorithm this server does not
    /// implement: UNIMPLEMENTED (gRPC's compression document).
    case unsupportedCompression(String)
    /// The compressed flag is set without a `grpc-encoding` (or with `identity`), the flag byte is
    /// neither 0 nor 1, or the body ends inside a message: INTERNAL (a protocol violation).
    case malformed(String)

    /// The status the server answers with.
    public var status: GRPCStatus {
        switch self {
        case .messageTooLarge: return .resourceExhausted
        case .unsupportedCompression: return .unimplemented
        case .malformed: return .internal
        }
    }

    /// Words for `grpc-message`.
    public var message: String {
        switch self {
        case .messageTooLarge(let declared, let limit):
            return "gRPC message of \(declared) bytes exceeds the limit of \(limit) bytes"
        case .unsupportedCompression(let encoding):
            return "grpc-encoding \(encoding) is not supported; send uncompressed messages"
        case .malformed(let detail):
            return detail
        }
    }
}

public enum GRPCFraming {
    /// The compressed flag (1 byte) and the big-endian message length (4 bytes).
    public static let prefixLength = 5

    /// gRPC's default largest message, 4 MiB (SPEC §13).
    public static let defaultMaxMessageBytes = 4 * 1024 * 1024

    /// Whether a `content-type` is gRPC's (`application/grpc`, or `application/grpc+proto` and the
    /// like; gRPC's document allows `+` and `;` suffixes).
    public static func isGRPC(contentType: String) -> Bool {
        let utf8 = contentType.utf8
        let base = "application/grpc".utf8
        guard utf8.count >= base.count else { return false }
        var index = utf8.startIndex
        for expected in base {
            var byte = utf8[index]
            if byte >= 65 && byte <= 90 { byte |= 0x20 }
            guard byte == expected else { return false }
            index = utf8.index(after: index)
        }
        guard index != utf8.endIndex else { return true }
        let next = utf8[index]
        return next == UInt8(ascii: "+") || next == UInt8(ascii: ";")
    }

    /// Appends `payload` as one uncompressed message (prefix, then the bytes) to `out`.
    public static func appendMessage(_ payload: some Collection<UInt8>, to out: inout [UInt8]) {
        appendPrefix(length: payload.count, to: &out)
        out.append(contentsOf: payload)
    }

    /// Appends the 5-byte prefix of an uncompressed message of `length` bytes.
    public static func appendPrefix(length: Int, to out: inout [UInt8]) {
        precondition(length >= 0 && length <= Int(UInt32.max), "a gRPC message is at most 4 GiB - 1 bytes")
        let value = UInt32(length)
        out.append(0)
        out.append(UInt8(truncatingIfNeeded: value >> 24))
        out.append(UInt8(truncatingIfNeeded: value >> 16))
        out.append(UInt8(truncatingIfNeeded: value >> 8))
        out.append(UInt8(truncatingIfNeeded: value))
    }

    /// What a message prefix at the front of `bytes` says: nil while fewer than 5 bytes are there,
    /// else the compressed flag and the declared length (an invalid flag byte is `.malformed`).
    public static func readPrefix(_ bytes: UnsafeRawBufferPointer) -> Result<(compressed: Bool, length: Int), GRPCFramingError>? {
        guard bytes.count >= prefixLength else { return nil }
        let flag = bytes[0]
        guard flag <= 1 else {
            return .failure(.malformed("gRPC message has compressed flag \(flag), expected 0 or 1"))
        }
        let length = Int(bytes[1]) << 24 | Int(bytes[2]) << 16 | Int(bytes[3]) << 8 | Int(bytes[4])
        return .success((flag == 1, length))
    }

    /// Checks one message prefix against the limit and the request's `grpc-encoding` (nil or
    /// `identity`: no compression is in use). Returns nil when the message may be read.
    public static func check(
        compressed: Bool,
        length: Int,
        maxMessageBytes: Int,
        encoding: String?
    ) -> GRPCFramingError? {
        if length > maxMessageBytes { return .messageTooLarge(declared: length, limit: maxMessageBytes) }
        if compressed {
            if let encoding, !encoding.isEmpty, !encoding.asciiCaseInsensitiveEquals("identity") {
                return .unsupportedCompression(encoding)
            }
            return .malformed("gRPC message is marked compressed but the request names no grpc-encoding")
        }
        return nil
    }

    /// Splits a whole request body into its messages (byte ranges of `bytes`, prefixes excluded).
    /// An empty body is no message; a body that ends inside a prefix or a message is `.malformed`.
    public static func messages(
        in bytes: UnsafeRawBufferPointer,
        maxMessageBytes: Int = defaultMaxMessageBytes,
        encoding: String? = nil
    ) -> Result<[Range<Int>], GRPCFramingError> {
        var ranges: [Range<Int>] = []
        var offset = 0
        while offset < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            guard let prefix = readPrefix(rest) else {
                return .failure(.malformed("gRPC body ends inside a message prefix"))
            }
            let (compressed, length): (Bool, Int)
            switch prefix {
            case .failure(let error): return .failure(error)
            case .success(let value): (compressed, length) = value
            }
            if let error = check(
                compressed: compressed,
                length: length,
                maxMessageBytes: maxMessageBytes,
                encoding: encoding
            ) {
                return .failure(error)
            }
            let start = offset + prefixLength
            guard length <= bytes.count - start else {
                return .failure(
                    .malformed("gRPC body ends inside a message: \(length) bytes declared, \(bytes.count - start) sent")
                )
            }
            ranges.append(start..<(start + length))
            offset = start + length
        }
        return .success(ranges)
    }

    // MARK: grpc-timeout

    /// Parses a `grpc-timeout` value (`TimeoutValue TimeoutUnit`: 1 to 8 ASCII digits, then one of
    /// `H` hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds)
    /// into milliseconds, rounding sub-millisecond remainders up (a deadline of 5 µs is 1 ms, not
    /// none). Nil for anything else, which the caller ignores as gRPC servers do.
    public static func parseTimeout(_ value: String) -> Int? {
        let utf8 = Array(value.utf8)
        guard utf8.count >= 2, utf8.count <= 9 else { return nil }
        var amount = 0
        for byte in utf8.dropLast() {
            guard byte >= 48 && byte <= 57 else { return nil }
            amount = amount * 10 + Int(byte - 48)
        }
        switch utf8[utf8.count - 1] {
        case UInt8(ascii: "H"): return amount * 3_600_000
        case UInt8(ascii: "M"): return amount * 60_000
        case UInt8(ascii: "S"): return amount * 1_000
        case UInt8(ascii: "m"): return amount
        case UInt8(ascii: "u"): return (amount + 999) / 1_000
        case UInt8(ascii: "n"): return (amount + 999_999) / 1_000_000
        default: return nil
        }
    }

    /// Renders milliseconds as a `grpc-timeout` value (for a request the sidecar forwards): the
    /// finest unit whose value fits the 8 digits.
    public static func timeoutValue(milliseconds: Int) -> String {
        let value = max(0, milliseconds)
        if value <= 99_999_999 { return "\(value)m" }
        if value / 1_000 <= 99_999_999 { return "\((value + 999) / 1_000)S" }
        if value / 60_000 <= 99_999_999 { return "\((value + 59_999) / 60_000)M" }
        return "\(min(99_999_999, (value + 3_599_999) / 3_600_000))H"
    }

    // MARK: Status trailers

    /// Percent-encodes a `grpc-message` value as gRPC's document says: UTF-8, with every byte
    /// outside the printable ASCII range 0x20...0x7E, and `%` itself, written as `%XX`.
    public static func percentEncode(_ message: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(message.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in message.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes a `grpc-message` value. A `%` not followed by two hex digits is kept as it is (the
    /// document asks receivers to be lenient), and bytes that are not UTF-8 become U+FFFD.
    public static func percentDecode(_ value: String) -> String {
        let bytes = Array(value.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
            {
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 48...57: return byte - 48
        case 65...70: return byte - 55
        case 97...102: return byte - 87
        default: return nil
        }
    }

    /// The trailers that end a gRPC response: `grpc-status`, and `grpc-message` (percent-encoded)
    /// when there is one.
    public static func statusTrailers(_ status: GRPCStatus, message: String? = nil) -> HTTPHeaders {
        var trailers = HTTPHeaders()
        trailers.add(name: "grpc-status", value: String(status.rawValue))
        if let message, !message.isEmpty {
            trailers.add(name: "grpc-message", value: percentEncode(message))
        }
        return trailers
    }

    /// The headers of a trailers-only response (an error with no message): HTTP status 200,
    /// `content-type: application/grpc`, then the status fields, all in the one HEADERS frame.
    public static func trailersOnlyHeaders(_ status: GRPCStatus, message: String? = nil) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/grpc")
        for field in statusTrailers(status, message: message) { headers.add(name: field.name, value: field.value) }
        return headers
    }
}
