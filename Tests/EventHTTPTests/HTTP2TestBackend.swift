import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A gRPC-over-HTTP/2 backend in Python (`h2`, from the venv `scripts/test-venv` makes) for the
/// HTTP/2 client tests: it answers by method, counts connections, and misbehaves on demand
/// (GOAWAY with a low last-stream-id, an abrupt close, a small stream limit). It prints its port,
/// then one line per event; the test reads them. It exits when its stdin closes.
final class HTTP2TestBackend: @unchecked Sendable {
    let port: Int
    private let process = Process()
    private let input = Pipe()
    private let lock = NSLock()
    private var lines: [String] = []

    enum Option {
        /// TLS with this certificate and key, ALPN `h2` only.
        case tls(cert: String, key: String)
        /// SETTINGS_MAX_CONCURRENT_STREAMS.
        case maxStreams(Int)
        /// On the first connection, once `n` requests have arrived: GOAWAY with the lowest of
        /// their stream ids as last-stream-id; that stream is answered, the others never are.
        case goawayAfter(Int)
        /// On the first connection, once `n` requests have arrived: close the socket, answering none.
        case closeAfter(Int)
    }

    convenience init(_ options: Option...) throws {
        var arguments: [String] = []
        for option in options {
            switch option {
            case .tls(let cert, let key): arguments += ["--tls", cert, key]
            case .maxStreams(let count): arguments += ["--max-streams", String(count)]
            case .goawayAfter(let count): arguments += ["--goaway-after", String(count)]
            case .closeAfter(let count): arguments += ["--close-after", String(count)]
            }
        }
        try self.init(name: "h2-backend", source: HTTP2TestBackend.source, arguments: arguments)
    }

    /// A real gRPC server (grpcio, a generic handler) instead: `/test.Echo/Echo` answers the
    /// request's message with initial metadata `x-seen-meta` (the request's `x-meta`) and `x-peer`
    /// (the client's address and port: one per connection); `/test.Echo/Fail` aborts NOT_FOUND
    /// with a non-ASCII message; other methods are UNIMPLEMENTED. `tls`: grpcs with that pair.
    /// `clientCA`: clients must present a certificate signed by it (mutual TLS).
    static func grpcio(tls: (cert: String, key: String)? = nil, clientCA: String? = nil) throws -> HTTP2TestBackend {
        try HTTP2TestBackend(
            name: "grpcio-backend",
            source: grpcioSource,
            arguments: (tls.map { [$0.cert, $0.key] } ?? []) + (clientCA.map { [$0] } ?? [])
        )
    }

    private init(name: String, source: String, arguments: [String]) throws {
        let python = try HTTP2TestBackend.python.get()
        let script = NSTemporaryDirectory() + "switchyard-\(name)-\(getpid()).py"
        try Data(source.utf8).write(to: URL(fileURLWithPath: script), options: .atomic)
        let arguments = [script] + arguments
        process.executableURL = URL(fileURLWithPath: python)
        // grpcio logs failed handshakes (expected in the mutual TLS test) to stderr otherwise.
        var environment = ProcessInfo.processInfo.environment
        environment["GRPC_VERBOSITY"] = "NONE"
        process.environment = environment
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = input
        try process.run()
        let reader = PipeLines(fd: output.fileHandleForReading.fileDescriptor)
        guard let first = reader.next(), let port = Int(first) else {
            process.terminate()
            process.waitUntilExit()
            throw TestFailure("the Python HTTP/2 backend did not start (exit \(process.terminationStatus))")
        }
        self.port = port
        let thread = Thread { [weak self] in
            withExtendedLifetime(output) {
                while let line = reader.next() {
                    guard let self else { return }
                    self.lock.withLock { self.lines.append(line) }
                }
            }
        }
        thread.start()
    }

    deinit { stop() }

    func stop() {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    /// Every event line so far ("connection 1", "request 1 3 /test.Echo/Echo", "reset 1 3 8",
    /// "closed 1", "alpn 1 h2", "goaway-sent 1 1", "killed 1").
    var events: [String] { lock.withLock { lines } }

    /// Event lines whose first word is `kind`, split into words.
    func events(_ kind: String) -> [[String]] {
        events.map { $0.split(separator: " ").map(String.init) }.filter { $0.first == kind }
    }

    var connections: Int { events("connection").count }

    /// Polls until `condition` holds (true) or `timeoutMilliseconds` pass (false).
    func eventually(timeoutMilliseconds: Int = 5000, _ condition: (HTTP2TestBackend) -> Bool) -> Bool {
        TestSupport.eventually(within: Double(timeoutMilliseconds) / 1000) { condition(self) }
    }

    /// The venv's python: `scripts/test-venv` (shared with the HTTP/2 server tests) makes it once.
    static let python: Result<String, Error> = Result {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [root.appendingPathComponent("scripts/test-venv").path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let path = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0, FileManager.default.isExecutableFile(atPath: path) else {
            throw TestFailure("scripts/test-venv failed (exit \(process.terminationStatus)); it needs python3 and pip")
        }
        return path
    }

    static let grpcioSource = #"""
        import sys
        from concurrent import futures

        import grpc


        def echo(request, context):
            metadata = dict(context.invocation_metadata())
            context.send_initial_metadata((("x-seen-meta", metadata.get("x-meta", "")), ("x-peer", context.peer())))
            return request


        def fail(request, context):
            context.abort(grpc.StatusCode.NOT_FOUND, "no model named \u00fcn\u00efcode")


        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                if details.method == "/test.Echo/Echo":
                    return grpc.unary_unary_rpc_method_handler(echo)
                if details.method == "/test.Echo/Fail":
                    return grpc.unary_unary_rpc_method_handler(fail)
                return None


        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers((Handler(),))
        if len(sys.argv) > 2:
            with open(sys.argv[1], "rb") as cert, open(sys.argv[2], "rb") as key:
                pair = [(key.read(), cert.read())]
            if len(sys.argv) > 3:
                with open(sys.argv[3], "rb") as ca:
                    credentials = grpc.ssl_server_credentials(pair, root_certificates=ca.read(), require_client_auth=True)
            else:
                credentials = grpc.ssl_server_credentials(pair)
            port = server.add_secure_port("127.0.0.1:0", credentials)
        else:
            port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        print(port, flush=True)
        sys.stdin.read()
        server.stop(0)
        """#

    static let source = #"""
        import os, select, socket, ssl, struct, sys, threading, time

        import h2.config, h2.connection, h2.events, h2.exceptions, h2.settings
        from h2.settings import SettingCodes
        from hyperframe.frame import GoAwayFrame

        args = sys.argv[1:]
        tls = max_streams = goaway_after = close_after = None
        i = 0
        while i < len(args):
            if args[i] == "--tls":
                tls = (args[i + 1], args[i + 2]); i += 3
            elif args[i] == "--max-streams":
                max_streams = int(args[i + 1]); i += 2
            elif args[i] == "--goaway-after":
                goaway_after = int(args[i + 1]); i += 2
            elif args[i] == "--close-after":
                close_after = int(args[i + 1]); i += 2
            else:
                raise SystemExit("unknown argument " + args[i])

        out_lock = threading.Lock()
        barrier_lock = threading.Lock()
        barrier_open = [0]


        def emit(*words):
            with out_lock:
                print(" ".join(str(w) for w in words), flush=True)


        class Stop(Exception):
            pass


        class Connection:
            def __init__(self, sock, number):
                self.sock, self.number = sock, number
                self.conn = h2.connection.H2Connection(
                    h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
                )
                if max_streams is not None:
                    self.conn.local_settings = h2.settings.Settings(
                        client=False,
                        initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: max_streams, SettingCodes.MAX_HEADER_LIST_SIZE: 65536},
                    )
                self.streams = {}
                self.timers = []  # (due, stream id)
                self.barrier = []  # (stream id, count wanted, give up at)
                self.arrived = []

            def flush(self):
                data = self.conn.data_to_send()
                if data:
                    self.sock.sendall(data)

            def run(self):
                self.conn.initiate_connection()
                self.flush()
                while True:
                    now = time.time()
                    wait = 0.5
                    if self.timers:
                        wait = max(0, min(wait, min(t[0] for t in self.timers) - now))
                    if self.barrier:
                        wait = min(wait, 0.01)
                    pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
                    readable = pending or select.select([self.sock], [], [], wait)[0]
                    if readable:
                        data = self.sock.recv(65536)
                        if not data:
                            return
                        for event in self.conn.receive_data(data):
                            self.handle(event)
                    self.run_timers()
                    self.flush()

            def handle(self, event):
                if isinstance(event, h2.events.RequestReceived):
                    headers = dict(event.headers)
                    self.streams[event.stream_id] = {"headers": headers, "data": bytearray()}
                    emit("request", self.number, event.stream_id, headers.get(":path", ""))
                elif isinstance(event, h2.events.DataReceived):
                    stream = self.streams.get(event.stream_id)
                    if stream is not None:
                        stream["data"] += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    self.request_done(event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    emit("reset", self.number, event.stream_id, int(event.error_code))
                    self.timers = [t for t in self.timers if t[1] != event.stream_id]
                    if any(b[0] == event.stream_id for b in self.barrier):
                        self.barrier = [b for b in self.barrier if b[0] != event.stream_id]
                        with barrier_lock:
                            barrier_open[0] -= 1
                elif isinstance(event, h2.events.ConnectionTerminated):
                    emit("goaway-received", self.number, int(event.error_code))

            def request_done(self, sid):
                self.arrived.append(sid)
                if self.number == 1 and goaway_after is not None:
                    if len(self.arrived) == goaway_after:
                        last = min(self.arrived)
                        self.flush()
                        frame = GoAwayFrame(0)
                        frame.last_stream_id = last
                        frame.error_code = 0
                        self.sock.sendall(frame.serialize())
                        emit("goaway-sent", self.number, last)
                        self.answer(last)
                    return
                if self.number == 1 and close_after is not None:
                    if len(self.arrived) == close_after:
                        self.flush()
                        self.sock.shutdown(socket.SHUT_RDWR)
                        emit("killed", self.number)
                        raise Stop()
                    return
                headers = self.streams[sid]["headers"]
                method = headers.get(":path", "").rsplit("/", 1)[-1]
                if method == "Echo":
                    self.answer(sid)
                elif method == "Slow":
                    self.timers.append((time.time() + int(headers.get("x-delay-ms", "300")) / 1000, sid))
                elif method == "Barrier":
                    with barrier_lock:
                        barrier_open[0] += 1
                    self.barrier.append((sid, int(headers.get("x-barrier", "1")), time.time() + 5))
                elif method == "Unavailable":
                    self.conn.send_headers(
                        sid,
                        [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "14"), ("grpc-message", "backend%20down")],
                        end_stream=True,
                    )
                elif method == "Big":
                    size = int(headers.get("x-size", "0"))
                    self.answer(sid, body=struct.pack(">BI", 0, size) + b"x" * size)
                elif method == "NoStatus":
                    self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                    self.conn.send_data(sid, bytes(self.streams[sid]["data"]), end_stream=True)
                elif method == "Http503":
                    self.conn.send_headers(sid, [(":status", "503"), ("content-type", "text/plain")], end_stream=True)
                # Hang, and anything else: never answered

            def run_timers(self):
                now = time.time()
                due = [t for t in self.timers if t[0] <= now]
                self.timers = [t for t in self.timers if t[0] > now]
                for _, sid in due:
                    self.answer(sid)
                if self.barrier:
                    with barrier_lock:
                        count = barrier_open[0]
                    keep = []
                    for sid, wanted, give_up in self.barrier:
                        if count >= wanted:
                            self.answer(sid)
                        elif now > give_up:
                            self.answer(sid, extra=[("x-barrier-timeout", "1")])
                        else:
                            keep.append((sid, wanted, give_up))
                    self.barrier = keep

            def answer(self, sid, body=None, extra=()):
                stream = self.streams.get(sid)
                if stream is None:
                    return
                h = stream["headers"]
                headers = [
                    (":status", "200"),
                    ("content-type", "application/grpc"),
                    ("x-connection", str(self.number)),
                    ("x-seen-timeout", h.get("grpc-timeout", "")),
                    ("x-seen-te", h.get("te", "")),
                    ("x-seen-content-type", h.get("content-type", "")),
                    ("x-seen-meta", h.get("x-meta", "")),
                    ("x-seen-authority", h.get(":authority", "")),
                    ("x-seen-scheme", h.get(":scheme", "")),
                    ("x-seen-host", h.get("host", "")),
                ] + list(extra)
                payload = bytes(stream["data"]) if body is None else body
                try:
                    self.conn.send_headers(sid, headers)
                    offset = 0
                    while offset < len(payload):
                        size = min(self.conn.max_outbound_frame_size, self.conn.local_flow_control_window(sid), len(payload) - offset)
                        if size <= 0:
                            break
                        self.conn.send_data(sid, payload[offset : offset + size])
                        offset += size
                    self.conn.send_headers(sid, [("grpc-status", "0"), ("grpc-message", "all%20good")], end_stream=True)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, h2.exceptions.FlowControlError):
                    pass


        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        print(listener.getsockname()[1], flush=True)

        context = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls[0], tls[1])
            context.set_alpn_protocols(["h2"])


        def serve(sock, number):
            try:
                if context is not None:
                    try:
                        sock = context.wrap_socket(sock, server_side=True)
                    except (ssl.SSLError, OSError) as error:
                        emit("handshake-failed", number, getattr(error, "reason", None) or "error")
                        return
                    emit("alpn", number, sock.selected_alpn_protocol() or "none")
                Connection(sock, number).run()
            except (Stop, OSError, h2.exceptions.ProtocolError):
                pass
            finally:
                try:
                    sock.close()
                except OSError:
                    pass
                emit("closed", number)


        def watch_stdin():
            sys.stdin.read()
            os._exit(0)


        threading.Thread(target=watch_stdin, daemon=True).start()
        count = 0
        while True:
            sock, _ = listener.accept()
            count += 1
            emit("connection", count)
            threading.Thread(target=serve, args=(sock, count), daemon=True).start()
        """#
}

/// Lines from a pipe, read with read(2).
private final class PipeLines: @unchecked Sendable {
    private let fd: Int32
    private var pending: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    func next() -> String? {
        var chunk = [UInt8](repeating: 0, count: 1024)
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return nil }
            pending += chunk[0..<got]
        }
    }
}
