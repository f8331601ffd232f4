internal import CLibevent

/// Bytes in a libevent `evbuffer`: request and response bodies move between sockets without
/// being copied into Swift arrays. A reference type (one evbuffer, shared by every holder of the
/// reference), unlike swift-nio's value-type `ByteBuffer`, hence its name. One owner; loop thread
/// only (not `Sendable`).
public final class EventBuffer {
    let evbuffer: OpaquePointer

    public init() {
        guard let evbuffer = evbuffer_new() else { preconditionFailure("evbuffer_new failed (out of memory).") }
        self.evbuffer = evbuffer
    }

    public convenience init(bytes: some Collection<UInt8>) {
        self.init()
        append(bytes)
    }

    deinit {
        evbuffer_free(evbuffer)
    }

    /// Number of readable bytes.
    public var count: Int { evbuffer_get_length(evbuffer) }

    public var isEmpty: Bool { count == 0 }

    public func append(_ bytes: some Collection<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { storage in
            if storage.count > 0 { evbuffer_add(evbuffer, storage.baseAddress, storage.count) }
        }
        if done == nil {
            let array = Array(bytes)
            array.withUnsafeBytes { raw in
                if raw.count > 0 { evbuffer_add(evbuffer, raw.baseAddress, raw.count) }
            }
        }
    }

    /// Appends the string's UTF-8 bytes.
    public func append(_ string: String) {
        var string = string
        string.withUTF8 { utf8 in
            if utf8.count > 0 { evbuffer_add(evbuffer, utf8.baseAddress, utf8.count) }
        }
    }

    /// Appends `other`'s bytes and leaves `other` as it was (the same body can go to a live and a
    /// shadow backend). Shares `other`'s memory by reference when libevent allows it, else copies.
    public func append(contentsOf other: EventBuffer) {
        EventBuffer.addCopy(of: other.evbuffer, to: evbuffer)
    }

    /// Calls `body` with the bytes made contiguous (`evbuffer_pullup`). The pointer is valid only
    /// inside `body`.
    public func withUnsafeReadableBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let length = count
        guard length > 0, let start = evbuffer_pullup(evbuffer, -1) else {
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        return try body(UnsafeRawBufferPointer(start: start, count: length))
    }

    /// A copy of the bytes.
    public var bytes: [UInt8] {
        let length = count
        return [UInt8](unsafeUninitializedCapacity: length) { storage, initialized in
            initialized = length > 0 ? max(0, evbuffer_copyout(evbuffer, storage.baseAddress, length)) : 0
        }
    }

    /// Appends a copy of the bytes to `out`.
    func appendBytes(to out: inout [UInt8]) {
        let length = count
        guard length > 0 else { return }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: length))
        out.withUnsafeMutableBytes { raw in _ = evbuffer_copyout(evbuffer, raw.baseAddress! + start, length) }
    }

    /// Removes every byte.
    public func removeAll() {
        evbuffer_drain(evbuffer, count)
    }

    /// Up to this many bytes, `addCopy` copies: into the spare room of the destination's last
    /// chain (a head was usually just written there) that costs a `memcpy`, where a reference costs
    /// a chain of its own and a reference count on the source.
    static let maxCopiedBytes = 2048

    /// Non-destructive append of `source` to `destination`: a copy when small, else by reference
    /// when possible (`evbuffer_add_buffer_reference` refuses sources that hold references
    /// themselves), else a copy of each segment.
    static func addCopy(of source: OpaquePointer, to destination: OpaquePointer) {
        let length = evbuffer_get_length(source)
        guard length > 0 else { return }
        if length <= maxCopiedBytes {
            // Segments on the stack: no array for the common one- or two-segment body.
            let copied = withUnsafeTemporaryAllocation(of: iovec.self, capacity: 4) { vectors -> Bool in
                // The length, not -1: with -1 libevent stops counting at the vectors given, so a
                // body in five or more segments looked like its first four (issue 9's cut answers).
                let segments = evbuffer_peek(source, length, nil, vectors.baseAddress, 4)
                guard segments > 0, segments <= 4 else { return false }
                for vector in vectors.prefix(Int(segments)) where vector.iov_len > 0 {
                    evbuffer_add(destination, vector.iov_base, vector.iov_len)
                }
                return true
            }
            if copied { return }
        }
        if evbuffer_add_buffer_reference(destination, source) == 0 { return }
        copySegments(of: source, to: destination)
    }

    /// Appends a real copy of every byte of `source` to `destination`, one `evbuffer_add` per
    /// segment (`source` may be drained or moved on right after).
    static func copySegments(of source: OpaquePointer, to destination: OpaquePointer) {
        let length = evbuffer_get_length(source)
        let segments = evbuffer_peek(source, length, nil, nil, 0)
        guard length > 0, segments > 0 else { return }
        withUnsafeTemporaryAllocation(of: iovec.self, capacity: Int(segments)) { vectors in
            let filled = evbuffer_peek(source, length, nil, vectors.baseAddress, segments)
            for vector in vectors.prefix(Int(filled)) where vector.iov_len > 0 {
                evbuffer_add(destination, vector.iov_base, vector.iov_len)
            }
        }
    }
}
