import HTTP1
@_exported import TestSupport

/// Which case of `HTTPParseError`, ignoring the detail text.
enum ErrorKind: Sendable, Hashable {
    case badRequest, headersTooLarge, bodyTooLarge, unsupportedTransferEncoding, unsupportedVersion,
        expectationFailed
}

extension HTTPParseError {
    var kind: ErrorKind {
        switch self {
        case .badRequest: return .badRequest
        case .headersTooLarge: return .headersTooLarge
        case .bodyTooLarge: return .bodyTooLarge
        case .unsupportedTransferEncoding: return .unsupportedTransferEncoding
        case .unsupportedVersion: return .unsupportedVersion
        case .expectationFailed: return .expectationFailed
        }
    }
}

/// `HeadParseResult` made comparable for tests.
enum Outcome<Head: Hashable & Sendable>: Hashable {
    case incomplete
    case complete(Head, consumed: Int)
    case failure(HTTPParseError)

    init(_ result: HeadParseResult<Head>) {
        switch result {
        case .incomplete: self = .incomplete
        case .complete(let head, let consumed): self = .complete(head, consumed: consumed)
        case .failure(let e): self = .failure(e)
        }
    }

    var head: Head? {
        if case .complete(let h, _) = self { return h }
        return nil
    }

    var consumed: Int? {
        if case .complete(_, let c) = self { return c }
        return nil
    }

    var errorKind: ErrorKind? {
        if case .failure(let e) = self { return e.kind }
        return nil
    }
}

func parseRequest(_ bytes: [UInt8], limits: HTTPLimits = HTTPLimits()) -> Outcome<RequestHead> {
    bytes.withUnsafeBytes { Outcome(RequestHeadParser.parse($0, limits: limits)) }
}

func parseRequest(_ text: String, limits: HTTPLimits = HTTPLimits()) -> Outcome<RequestHead> {
    parseRequest(Array(text.utf8), limits: limits)
}

func parseResponse(_ bytes: [UInt8], method: String = "GET", limits: HTTPLimits = HTTPLimits()) -> Outcome<ResponseHead>
{
    bytes.withUnsafeBytes { Outcome(ResponseHeadParser.parse($0, limits: limits, requestMethod: method)) }
}

func parseResponse(_ text: String, method: String = "GET", limits: HTTPLimits = HTTPLimits()) -> Outcome<ResponseHead> {
    parseResponse(Array(text.utf8), method: method, limits: limits)
}

/// Feeds `input` to a fresh decoder in pieces whose sizes `nextPiece` picks, draining what it
/// consumes like the connection layer does. Returns the payload, or the error.
func decodeChunked(
    _ input: [UInt8],
    maxBodyBytes: Int = 1 << 20,
    nextPiece: (Int) -> Int
) -> (payload: [UInt8], complete: Bool, consumed: Int, error: HTTPParseError?) {
    var decoder = ChunkedDecoder(maxBodyBytes: maxBodyBytes)
    var pending: [UInt8] = []
    var offset = 0
    var payload: [UInt8] = []
    var consumedTotal = 0
    while true {
        let left = input.count - offset
        let piece = left > 0 ? min(max(1, nextPiece(left)), left) : 0
        pending += input[offset..<(offset + piece)]
        offset += piece
        let result = pending.withUnsafeBytes { decoder.decode($0) }
        switch result {
        case .failure(let e):
            return (payload, false, consumedTotal, e)
        case .success(let progress):
            for range in progress.data { payload += pending[range] }
            consumedTotal += progress.consumed
            pending.removeFirst(progress.consumed)
            if progress.isComplete { return (payload, true, consumedTotal, nil) }
        }
        if offset == input.count && piece == 0 { return (payload, false, consumedTotal, nil) }
    }
}
