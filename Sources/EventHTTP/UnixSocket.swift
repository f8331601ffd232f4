internal import CLibevent

/// Where a server listens: a TCP address or a Unix domain socket path (SPEC §12).
public enum ListenAddress: Hashable, Sendable, CustomStringConvertible {
    /// An IPv4 or IPv6 literal, or `localhost`, and a port (0: the kernel picks one).
    case tcp(host: String, port: Int)
    /// A filesystem path for a socket file.
    case unix(path: String)

    /// Reads `unix:/path`, `HOST:PORT` or `[IPV6]:PORT` (port 0...65535); nil for anything else.
    public init?(parsing text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            guard !path.isEmpty else { return nil }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":"), colon > text.startIndex,
            let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
        else { return nil }
        var host = text[..<colon]
        // `[::1]:8480`, as URLs write an IPv6 literal; `::1:8480` is read too (the port is after
        // the last colon).
        if host.first == "[" {
            guard host.count > 2, host.last == "]" else { return nil }
            host = host.dropFirst().dropLast()
            guard host.contains(":") else { return nil }
        } else if host.contains("[") || host.contains("]") {
            return nil
        }
        self = .tcp(host: String(host), port: port)
    }

    /// `HOST:PORT` or `unix:/path`, as the command line takes it.
    public var description: String {
        switch self {
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }
}

/// A listening Unix domain socket bound to a path, which loops on several threads may accept from:
/// `HTTPServer(loop:socket:)` takes its own `dup` of the descriptor (`SO_REUSEPORT` does not
/// spread connections over Unix sockets the way it does over TCP ones, so there is one socket).
///
/// Binding replaces a socket file nobody listens on (a leftover of a process that did not exit
/// cleanly), refuses one that another process listens on, and never removes a file that is not a
/// socket. `removeFile()` (and `deinit`) removes the file only if it is still the one bound here.
/// Used from one thread at a time.
public final class UnixListeningSocket: @unchecked Sendable {
    /// The socket file's path.
    public let path: String
    /// The file's permission bits, e.g. `0o660`.
    public let mode: UInt32
    /// The listening descriptor; -1 once closed.
    private(set) var fd: Int32
    private let device: UInt64
    private let inode: UInt64
    private var isFileRemoved = false

    /// Binds and listens on `path`, then sets the file's mode to `mode` (default `0o660`) before
    /// any connection can be accepted. Throws `EventHTTPError`, e.g.
    /// `cannot listen on unix:/run/s.sock: Address already in use (another process listens there)`.
    public init(path: String, mode: UInt32 = 0o660) throws {
        self.path = path
        self.mode = mode
        var device: UInt64 = 0
        var inode: UInt64 = 0
        var failure: Int32 = 0
        var error: Int32 = 0
        let fd = switchyard_unix_listen(path, mode, 1024, &device, &inode, &failure, &error)
        guard fd >= 0 else {
            let why: String
            switch UInt32(failure) {
            case SWITCHYARD_UNIX_TAKEN.rawValue:
                why = "\(System.errorText(EADDRINUSE)) (another process listens there)"
            case SWITCHYARD_UNIX_NOT_SOCKET.rawValue:
                why = "the path exists and is not a socket (it is left alone)"
            case SWITCHYARD_UNIX_TOO_LONG.rawValue:
                why = "the path is empty or longer than 107 bytes"
            default:
                why = System.errorText(error)
            }
            throw EventHTTPError("cannot listen on unix:\(path): \(why)")
        }
        self.fd = fd
        self.device = device
        self.inode = inode
    }

    deinit {
        removeFile()
    }

    /// Closes this descriptor: once every server accepting from a `dup` of it has stopped too,
    /// connecting is refused. Idempotent.
    public func close() {
        guard fd >= 0 else { return }
        System.close(fd)
        fd = -1
    }

    /// Closes, then removes the socket file if it is still the one bound here (same device and
    /// inode: a file another process has bound at the path since is left alone). Idempotent.
    public func removeFile() {
        close()
        guard !isFileRemoved else { return }
        isFileRemoved = true
        _ = switchyard_unlink_if_same(path, device, inode)
    }

    /// A close-on-exec duplicate of the listening descriptor for one more loop.
    func duplicateDescriptor() throws -> Int32 {
        guard fd >= 0 else { throw EventHTTPError("cannot listen on unix:\(path): the socket is closed") }
        let copy = switchyard_dup(fd)
        guard copy >= 0 else { throw EventHTTPError("cannot listen on unix:\(path): \(System.lastErrorText())") }
        return copy
    }
}
