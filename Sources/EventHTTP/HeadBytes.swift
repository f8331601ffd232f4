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
        // "content-length: " (16) + at most 19 digits + "\r\n\r\n" (4).
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { line in
            let prefix: StaticString = "content-length: "
            let start = line.baseAddress!
            start.update(from: prefix.utf8Start, count: prefix.utf8CodeUnitCount)
            var end = prefix.utf8CodeUnitCount
            var digits = 0
            var value = contentLength
            repeat {
                digits &+= 1
                value /= 10
            } while value > 0
            value = contentLength
            var k = end &+ digits
            repeat {
                k &-= 1
                start[k] = UInt8(truncatingIfNeeded: value % 10) &+ 0x30
                value /= 10
            } while value > 0
            end &+= digits
            start[end] = 0x0D
            start[end &+ 1] = 0x0A
            start[end &+ 2] = 0x0D
            start[end &+ 3] = 0x0A
            out.append(contentsOf: UnsafeBufferPointer(start: start, count: end &+ 4))
        }
    }

    /// Appends constant text (no `String`, no allocation).
    @inline(__always)
    static func append(_ out: inout [UInt8], _ text: StaticString) {
        out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends a copy of `buffer`'s bytes (one `memcpy` per segment, no zero-fill first).
    static func appendBytes(of buffer: ByteBuffer, to out: inout [UInt8]) {
        let length = buffer.count
        guard length > 0 else { return }
        let appended = withUnsafeTemporaryAllocation(of: iovec.self, capacity: 4) { vectors -> Bool in
            let segments = evbuffer_peek(buffer.evbuffer, -1, nil, vectors.baseAddress, 4)
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
