public import HTTP1
public import Policy

/// What routing may know about a request: its head, and a way to read a key from its JSON body.
///
/// A gRPC call (SPEC §13) is described with the same fields: `method` `POST`, `path` its
/// `:path` (`/inference.GRPCInferenceService/ModelInfer`), `headers` its metadata, and `grpc`
/// what its decoded message says. Only calls with `grpc` set match gRPC routes, and only
/// requests without it match REST routes.
public struct RequestFacts {  // not Sendable: `bodyKey` reads the request it was made for, on its thread
    /// As sent (`POST`); compared upper-cased.
    public var method: String
    /// The request target's path, without the query; a gRPC call's `:path`.
    public var path: String
    /// The text after `?`, without it; nil when the target has none.
    public var query: String?
    /// In arrival order; names compare ASCII-case-insensitively. A parsed head's fields are read
    /// as bytes, a String made only for a value routing asks for.
    public var headers: HTTPHeaders
    /// Resolves a JSON pointer (RFC 6901) in the body to a key string; nil when the request has no
    /// JSON body. The sidecar supplies it and parses the body only if it is called.
    public var bodyKey: ((String) -> String?)?
    /// Set for a gRPC call, nil for a REST request (which costs nothing then).
    public var grpc: GRPCCallFacts?

    public init(
        method: String,
        path: String,
        query: String? = nil,
        headers: HTTPHeaders = HTTPHeaders(),
        bodyKey: ((String) -> String?)? = nil,
        grpc: GRPCCallFacts? = nil
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.bodyKey = bodyKey
        self.grpc = grpc
    }

    /// Facts with header fields given as name/value pairs (`explain`, tests).
    public init(
        method: String,
        path: String,
        query: String? = nil,
        headers: [(name: String, value: String)],
        bodyKey: ((String) -> String?)? = nil,
        grpc: GRPCCallFacts? = nil
    ) {
        self.init(method: method, path: path, query: query, headers: HTTPHeaders(headers), bodyKey: bodyKey, grpc: grpc)
    }

    /// The first value of the header `name` (any case), or nil when it is absent.
    public func header(_ name: String) -> String? {
        headers.first(name: name)
    }
}

/// What routing reads from a gRPC call's decoded request message: the model it names and the
/// version it asks for. The sidecar decodes the message before deciding, and fills these.
public struct GRPCCallFacts: Sendable, Hashable {
    /// `model_name` (OIP v2 `ModelInferRequest`, `ModelMetadataRequest.name`,
    /// `ModelReadyRequest.name`) or TF Serving's `model_spec.name`; nil for a call whose message
    /// names none (`ServerLive`, `ServerReady`), which `match.model` never matches.
    public var model: String?
    /// `model_version` (OIP v2, `version` in the metadata and ready requests), or TF Serving's
    /// `model_spec.version` (as decimal text) or `version_label`; nil or empty when the message
    /// asks for none. Read by `version_from: message`.
    public var modelVersion: String?

    public init(model: String?, modelVersion: String? = nil) {
        self.model = model
        self.modelVersion = modelVersion
    }
}

/// The key `source` names in `request`, or nil when the request does not carry it.
///
/// - `header:N`: the first `N` header's value.
/// - `cookie:N`: the first cookie `N` across the `cookie` headers (`a=b; c=d`); surrounding
///   double quotes are removed (RFC 6265).
/// - `query:N`: the first `N` parameter of the query (`k=v&k2=v2`), `+` and `%XX` decoded;
///   a parameter without `=` has the empty value.
/// - `body:/ptr`: what `RequestFacts.bodyKey` says, nil without a JSON body.
///
/// An empty value is returned as it is; `decide` treats an empty sticky key as missing.
public func keyValue(_ source: KeySource, in request: RequestFacts) -> String? {
    switch source {
    case .header(let name):
        return request.header(name)
    case .cookie(let name):
        return cookieValue(name, in: request.headers)
    case .query(let name):
        guard let query = request.query else { return nil }
        return queryValue(name, in: query)
    case .body(let pointer):
        return request.bodyKey?(pointer)
    }
}

func cookieValue(_ name: String, in headers: HTTPHeaders) -> String? {
    for index in 0..<headers.count where headers.withField(at: index, { n, _ in n.equalsIgnoringCase("cookie") }) {
        for pair in headers.value(at: index).split(separator: ";", omittingEmptySubsequences: true) {
            guard let equals = pair.firstIndex(of: "=") else { continue }
            let key = trimmingWhitespace(pair[..<equals])
            guard key == name else { continue }
            var value = trimmingWhitespace(pair[pair.index(after: equals)...])
            if value.count >= 2, value.first == "\"", value.last == "\"" {
                value = value.dropFirst().dropLast()
            }
            return String(value)
        }
    }
    return nil
}

func queryValue(_ name: String, in query: String) -> String? {
    for parameter in query.split(separator: "&", omittingEmptySubsequences: true) {
        let key: Substring
        let value: Substring
        if let equals = parameter.firstIndex(of: "=") {
            key = parameter[..<equals]
            value = parameter[parameter.index(after: equals)...]
        } else {
            key = parameter
            value = ""
        }
        if formDecoded(key) == name { return formDecoded(value) }
    }
    return nil
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; a malformed
/// escape stays as it is, and bytes that are not UTF-8 become U+FFFD.
func formDecoded(_ text: Substring) -> String {
    let utf8 = Array(text.utf8)
    guard utf8.contains(where: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "%") }) else {
        return String(text)
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(utf8.count)
    var index = 0
    while index < utf8.count {
        let byte = utf8[index]
        if byte == UInt8(ascii: "+") {
            bytes.append(UInt8(ascii: " "))
        } else if byte == UInt8(ascii: "%"), index + 2 < utf8.count,
            let high = hexValue(utf8[index + 1]), let low = hexValue(utf8[index + 2])
        {
            bytes.append(high << 4 | low)
            index += 2
        } else {
            bytes.append(byte)
        }
        index += 1
    }
    return String(decoding: bytes, as: UTF8.self)
}

func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

func trimmingWhitespace(_ text: Substring) -> Substring {
    var result = text
    while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
    while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
    return result
}

/// Header names are ASCII; comparing them must not depend on locale or Unicode folding.
func asciiCaseInsensitiveEquals(_ a: String, _ b: String) -> Bool {
    let a = a.utf8
    let b = b.utf8
    guard a.count == b.count else { return false }
    // Native strings are contiguous UTF-8: compare through pointers, not a zip of iterators.
    let fast: Bool? =
        a.withContiguousStorageIfAvailable { x in
            b.withContiguousStorageIfAvailable { y in
                for k in 0..<x.count where x[k] != y[k] && asciiLowercased(x[k]) != asciiLowercased(y[k]) {
                    return false
                }
                return true
            }
        } ?? nil
    if let fast { return fast }
    return zip(a, b).allSatisfy { asciiLowercased($0) == asciiLowercased($1) }
}

@inline(__always)
func asciiLowercased(_ byte: UInt8) -> UInt8 {
    byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
}

func asciiUppercased(_ text: String) -> String {
    guard text.utf8.contains(where: { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }) else { return text }
    return String(
        decoding: text.utf8.map { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") ? $0 & ~0x20 : $0 },
        as: UTF8.self
    )
}
