// The codec's entry points. Signatures are fixed (EventHTTP codes against them);
// bodies are filled in by the HTTP1 work.

public enum RequestHeadParser {
    /// Parses a request head from the start of `bytes` (the bytes received so far).
    /// `.incomplete` when no blank line has arrived and nothing is wrong yet (including when
    /// the bytes so far are under `limits.maxHeaderBytes`); `.failure` as soon as something is.
    public static func parse(_ bytes: UnsafeRawBufferPointer, limits: HTTPLimits) -> HeadParseResult<RequestHead> {
        fatalError("RequestHeadParser.parse is not implemented yet")
    }
}

public enum ResponseHeadParser {
    /// Parses a response head. `requestMethod` decides framing for HEAD; 1xx heads other than
    /// 101 are returned like any other head (the caller skips them).
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, limits: HTTPLimits, requestMethod: String
    ) -> HeadParseResult<ResponseHead> {
        fatalError("ResponseHeadParser.parse is not implemented yet")
    }
}

/// Incremental decoder of a chunked body (RFC 9112 §7.1), trailers read and discarded.
public struct ChunkedDecoder: Sendable {
    public struct Progress: Sendable, Hashable {
        /// Bytes of the input that were used (the caller drains them).
        public var consumed: Int
        /// Payload ranges within the input, in order.
        public var data: [Range<Int>]
        /// The last chunk and the trailers have been read.
        public var isComplete: Bool

        public init(consumed: Int, data: [Range<Int>], isComplete: Bool) {
            self.consumed = consumed
            self.data = data
            self.isComplete = isComplete
        }
    }

    /// `maxBodyBytes` bounds the de-chunked payload (`.bodyTooLarge` past it).
    public init(maxBodyBytes: Int) {
        fatalError("ChunkedDecoder is not implemented yet")
    }

    /// Feeds the bytes received so far (after what was consumed before).
    public mutating func decode(_ bytes: UnsafeRawBufferPointer) -> Result<Progress, HTTPParseError> {
        fatalError("ChunkedDecoder.decode is not implemented yet")
    }
}

public enum HTTPSerializer {
    /// `HTTP/1.1 200 OK\r\n` + headers + `content-length` (when given) + `\r\n`.
    /// Header values containing CR, LF or NUL are dropped, never written.
    public static func responseHead(status: Int, headers: HTTPHeaders, contentLength: Int?) -> [UInt8] {
        fatalError("HTTPSerializer.responseHead is not implemented yet")
    }

    /// `METHOD target HTTP/1.1\r\n` + headers + `content-length` (when given) + `\r\n`.
    public static func requestHead(method: String, target: String, headers: HTTPHeaders, contentLength: Int?) -> [UInt8] {
        fatalError("HTTPSerializer.requestHead is not implemented yet")
    }

    /// The standard reason phrase (`Not Found`), or `Unknown`.
    public static func reasonPhrase(_ status: Int) -> String {
        fatalError("HTTPSerializer.reasonPhrase is not implemented yet")
    }
}

/// Hop-by-hop header names (RFC 9110 §7.6.1), lower-case, which a proxy never forwards,
/// plus those named in the message's own `Connection` header.
public enum HopByHop {
    public static let names: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]
}
