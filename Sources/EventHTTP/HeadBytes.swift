internal import CLibevent
import HTTP1

/// The pieces of a message head that the connections write per message, with the bytes
/// `HTTPSerializer` would write and less work: no `String` per message, one append per piece.
enum HeadBytes {
    /// Appends `content-length: N\r\n` (when `contentLength` is not nil) and the blank line that
    /// ends the head, as `HTTPSerializer.appendEnd` does, with one append.
    static func appendEnd(_ out: inout [UInt8], contentLength: Int?) {
        guard let contentLength else {
            append(&out, "\r\n")
            return
        }
        precondition(contentLength >= 0, "HeadBytes needs a non-negative content length, got \(contentLength).")
        // Written backwards from the end of a stack buffer: "\r\n\r\n", the digits (at most 19),
        // then "content-length: " (16) in front of them; one append of the whole line.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { line in
            let base = line.baseAddress!
            var k = 36
            base[36] = 0x0D
            base[37] = 0x0A
            base[38] = 0x0D
            base[39] = 0x0A
            var value = contentLength
            repeat {
                k &-= 1
                base[k] = UInt8(truncatingIfNeeded: value % 10) &+ 0x30
                value /= 10
            } while value > 0
            let prefix: StaticString = "content-length: "
            k &-= prefix.utf8CodeUnitCount
            (base + k).update(from: prefix.utf8Start, count: prefix.utf8CodeUnitCount)
            out.append(contentsOf: UnsafeBufferPointer(start: base + k, count: 40 &- k))
        }
    }

    /// Adds a chunk-size line (the size in hex, then CRLF) to `buffer`, written on the stack: no
    /// array per chunk.
    static func addChunkSize(_ size: Int, to buffer: OpaquePointer) {
        precondition(size > 0, "HeadBytes.addChunkSize needs a positive size, got \(size).")
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 18) { line in
            let base = line.baseAddress!
            // Backwards from the end: CRLF, then the hex digits (at most 16).
            var k = 18
            k &-= 1
            base[k] = 0x0A
            k &-= 1
            base[k] = 0x0D
            var value = size
            repeat {
                let digit = UInt8(truncatingIfNeeded: value & 0xF)
                k &-= 1
                base[k] = digit < 10 ? 0x30 &+ digit : 0x61 &+ digit &- 10
                value >>= 4
            } while value > 0
            evbuffer_add(buffer, base + k, 18 &- k)
        }
    }

    /// Whether `bytes[from...]` holds a line feed; eight bytes per step.
    static func containsLineFeed(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        let count = bytes.count
        var k = start
        // A word holds 0x0A exactly when (w ^ 0x0A0A…) has a zero byte (the classic SWAR test).
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        while k &+ 8 <= count {
            let w = base.loadUnaligned(fromByteOffset: k, as: UInt64.self) ^ (ones &* 0x0A)
            if (w &- ones) & ~w & highs != 0 { return true }
            k &+= 8
        }
        while k < count {
            if base.load(fromByteOffset: k, as: UInt8.self) == 0x0A { return true }
            k &+= 1
        }
        return false
    }

    /// Appends constant text (no `String`, no allocation).
    @inline(__always)
    static func append(_ out: inout [UInt8], _ text: StaticString) {
        out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends a copy of `buffer`'s bytes (one `memcpy` per segment, no zero-fill first).
    static func appendBytes(of buffer: EventBuffer, to out: inout [UInt8]) {
        let length = buffer.count
        guard length > 0 else { return }
        let appended = withUnsafeTemporaryAllocation(of: iovec.self, capacity: 4) { vectors -> Bool in
            // The length, not -1: with -1 libevent stops counting at the vectors given and a body
            // in more segments than that would look whole after its first four.
            let segments = evbuffer_peek(buffer.evbuffer, length, nil, vectors.baseAddress, 4)
            guard segments > 0, segments <= 4 else { return false }
            for vector in vectors.prefix(Int(segments)) where vector.iov_len > 0 {
                out.append(contentsOf: UnsafeRawBufferPointer(start: vector.iov_base, count: vector.iov_len))
            }
            return true
        }
        if !appended { buffer.appendBytes(to: &out) }
    }
}

/// A reused buffer for message heads whose first bytes (a status line, or a request line and
/// `host`) depend only on a few inputs: when the next message has the same ones, those bytes
/// stay in place and only the rest is written again. Loop thread only (one per connection).
struct HeadScratch {
    /// The head being written; its capacity is kept between messages.
    var bytes: [UInt8] = []
    /// How many leading bytes of `bytes` hold the reusable prefix (0: none).
    private var prefixLength = 0

    /// Keeps the prefix when `isSamePrefix`, else empties the buffer (keeping its capacity) so the
    /// caller writes the prefix and then calls `markPrefix()`. Returns whether the prefix was kept.
    mutating func reset(keepingPrefix isSamePrefix: Bool) -> Bool {
        if isSamePrefix && prefixLength > 0 {
            bytes.removeSubrange(prefixLength..<bytes.count)
            return true
        }
        prefixLength = 0
        bytes.removeAll(keepingCapacity: true)
        return false
    }

    /// The bytes written so far are the prefix.
    mutating func markPrefix() {
        prefixLength = bytes.count
    }
}
