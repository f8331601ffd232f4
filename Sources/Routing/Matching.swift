public import Policy

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The index of the first route of `routes` that `request` matches, and the template's captures.
///
/// A route matches when its path matches, its method (if any) equals the request's upper-cased,
/// and every header it lists has that exact value in its first occurrence. A gRPC route
/// (`match.grpc`) matches only a gRPC call (`request.grpc` set), by its `:path` (the method, or
/// any method of the service for `Service/*`) and, with `match.model`, the message's model
/// name; a REST route matches only a request that is not a gRPC call.
func firstMatch(_ request: RequestFacts, in routes: [Route]) -> (index: Int, captures: [String: String])? {
    // By index: `enumerated()` would copy every Route it passes.
    for index in routes.indices {
        if let captures = matches(request, routes[index].match) {
            return (index, captures)
        }
    }
    return nil
}

/// The captures when `request` matches `match` (empty unless the path is a template), else nil.
func matches(_ request: RequestFacts, _ match: RouteMatch) -> [String: String]? {
    // A gRPC call and a gRPC route find each other only (one nil check on the REST path).
    if (match.grpc == nil) != (request.grpc == nil) { return nil }
    if let model = match.model, request.grpc?.model != model { return nil }
    if let method = match.method, asciiUppercased(request.method) != method { return nil }
    for wanted in match.headers {
        guard request.header(wanted.name) == wanted.value else { return nil }
    }
    switch match.path {
    case .exact(let path):
        return utf8HasPrefix(request.path, path, exactly: true) ? [:] : nil
    case .prefix(let prefix):
        return utf8HasPrefix(request.path, prefix, exactly: false) ? [:] : nil
    case .template(let template):
        return templateCaptures(template, path: request.path)
    }
}

/// Whether `text` starts with `prefix` (or, `exactly`, equals it), byte for byte: no Unicode
/// equivalence, as paths are compared. Contiguous strings compare with one `memcmp`-like pass.
func utf8HasPrefix(_ text: String, _ prefix: String, exactly: Bool) -> Bool {
    let a = text.utf8
    let b = prefix.utf8
    guard exactly ? a.count == b.count : a.count >= b.count else { return false }
    let fast: Bool? =
        a.withContiguousStorageIfAvailable { x in
            b.withContiguousStorageIfAvailable { y in
                // `elementsEqual` on buffers still walks an iterator byte by byte.
                y.isEmpty || memcmp(x.baseAddress!, y.baseAddress!, y.count) == 0
            }
        } ?? nil
    if let fast { return fast }
    return a.starts(with: b)
}

/// The captures of `template` in `path`, or nil when it does not match.
///
/// A capture takes one or more bytes other than `/`, the fewest for which the rest of the template
/// matches the rest of the path. Literals compare byte for byte (no percent-decoding).
public func templateCaptures(_ template: PathTemplate, path: String) -> [String: String]? {
    var captures: [String: String] = [:]
    let literals = template.segments.map { segment -> [UInt8] in
        if case .literal(let text) = segment { return Array(text.utf8) }
        return []
    }
    let bytes = Array(path.utf8)
    guard
        matchSegments(
            template.segments[...],
            literals: literals[...],
            path: bytes[...],
            captures: &captures
        )
    else { return nil }
    return captures
}

private func matchSegments(
    _ segments: ArraySlice<PathTemplate.Segment>,
    literals: ArraySlice<[UInt8]>,
    path: ArraySlice<UInt8>,
    captures: inout [String: String]
) -> Bool {
    guard let segment = segments.first else { return path.isEmpty }
    let restSegments = segments.dropFirst()
    let restLiterals = literals.dropFirst()
    switch segment {
    case .literal:
        let literal = literals.first!
        guard path.starts(with: literal) else { return false }
        return matchSegments(
            restSegments,
            literals: restLiterals,
            path: path.dropFirst(literal.count),
            captures: &captures
        )
    case .capture(let name):
        var end = path.startIndex
        while end < path.endIndex, path[end] != UInt8(ascii: "/") {
            end += 1
            if matchSegments(restSegments, literals: restLiterals, path: path[end...], captures: &captures) {
                captures[name] = String(decoding: path[path.startIndex..<end], as: UTF8.self)
                return true
            }
        }
        return false
    }
}
