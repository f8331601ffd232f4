internal import CLibevent

/// Where an upstream pool connects (`UpstreamPool`, `HTTP2Pool`): an IP literal, a host name, or
/// a Unix socket path, as a `sockaddr`. A host name is resolved at creation, synchronously
/// (getaddrinfo blocks the loop: pools are made at startup or on reload), then again on a
/// background thread by `refresh` every 30 s, and every second while it does not resolve, so a
/// DNS record that appears late, or a Service re-created with a new address, is followed without
/// a restart. Loop thread only, but for the lookup itself.
final class BackendAddress {
    private var storage = sockaddr_storage()
    private var length: Int32 = 0
    /// Why no connection can be opened now (a name that does not resolve, a bad socket path);
    /// nil once there is an address.
    private(set) var failure: String?
    private let host: String
    private let port: Int
    /// `host` is a name (not an IP literal): `refresh` looks it up again.
    private let isName: Bool
    private(set) var lastResolvedMilliseconds: Int64 = 0
    private(set) var isResolving = false
    private let lookup: Lookup

    /// Fills `out` with an address for `host` and `port` and returns its length, 0 when the
    /// name does not resolve.
    typealias Lookup = @Sendable (_ host: String, _ port: Int32, _ out: UnsafeMutablePointer<sockaddr_storage>) -> Int32
    /// getaddrinfo, through libevent.
    static let systemLookup: Lookup = { switchyard_resolve($0, $1, $2) }

    /// `host` is an IPv4 or IPv6 literal, `localhost` (127.0.0.1), or a name to look up with
    /// `lookup` (tests pass their own, to play a name that starts resolving later).
    init(host: String, port: Int, lookup: @escaping Lookup = BackendAddress.systemLookup) {
        self.host = host
        self.port = port
        self.lookup = lookup
        let literal = host == "localhost" ? "127.0.0.1" : host
        length = switchyard_make_sockaddr(literal, Int32(port), &storage)
        isName = length == 0
        if isName {
            length = lookup(host, Int32(port), &storage)
            lastResolvedMilliseconds = System.monotonicMilliseconds()
        }
        if length == 0 { failure = "cannot resolve backend host \"\(host)\"" }
    }

    /// A Unix domain socket path: nothing to look up.
    init(socketPath: String) {
        host = "localhost"
        port = 0
        isName = false
        lookup = BackendAddress.systemLookup
        length = switchyard_make_unix_sockaddr(socketPath, &storage)
        if length == 0 {
            failure = "connect to unix:\(socketPath) failed: the path is empty or longer than 107 bytes"
        }
    }

    /// Calls `body` with the address as a `sockaddr` and its length.
    func withSockaddr<Result>(_ body: (UnsafePointer<sockaddr>, Int32) -> Result) -> Result {
        withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    /// Looks a host name up again on a background thread when the last lookup is old (30 s) or
    /// failed (1 s), and installs the result on `loop` (this address's loop). Does nothing for a
    /// literal or a socket path.
    func refresh(loop: EventLoop, now: Int64) {
        let age = now - lastResolvedMilliseconds
        guard isName, !isResolving, age >= (failure == nil ? 30_000 : 1_000) else { return }
        isResolving = true
        lastResolvedMilliseconds = now
        let host = self.host
        let port = Int32(self.port)
        let box = BackendAddressBox(self)
        let lookup = self.lookup
        let started = spawnDetachedThread {
            var storage = sockaddr_storage()
            let length = lookup(host, port, &storage)
            let result = ResolvedAddress(storage: storage, length: length)
            loop.execute {
                guard let address = box.address else { return }
                address.isResolving = false
                if result.length > 0 {
                    address.storage = result.storage
                    address.length = result.length
                    address.failure = nil
                } else if address.length == 0 {
                    address.failure = "cannot resolve backend host \"\(host)\""
                }
            }
        }
        if !started { isResolving = false }
    }
}

/// A resolved address crossing from the lookup thread to the loop (plain bytes).
private struct ResolvedAddress: @unchecked Sendable {
    var storage: sockaddr_storage
    var length: Int32
}

/// The address, reached from the lookup thread only through `loop.execute` (back on its loop);
/// weak, so a pool dropped meanwhile is not kept alive.
private final class BackendAddressBox: @unchecked Sendable {
    weak var address: BackendAddress?
    init(_ address: BackendAddress) { self.address = address }
}
