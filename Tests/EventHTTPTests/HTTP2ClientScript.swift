import Foundation

/// The Python HTTP/2 client the HTTP/2 server tests drive (python `h2` for raw frames, `grpcio`
/// as a real gRPC client), one scenario per run: `python3 script SCENARIO PORT`. It prints one
/// JSON object with what it saw; the Swift test asserts on it. Written to a temporary file at
/// test time (kept as a string so the test target holds no resource files).
enum HTTP2ClientScript {
    static let source = #"""
        import json, socket, struct, sys, time

        import h2.config, h2.connection, h2.events, h2.settings
        from h2.settings import SettingCodes

        PORT = int(sys.argv[2])
        PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


        def grpc_frame(payload, declared=None):
            return struct.pack(">BI", 0, len(payload) if declared is None else declared) + payload


        def connect():
            sock = socket.create_connection(("127.0.0.1", PORT), timeout=5)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            return sock, conn


        def request_headers(path, grpc=False, extra=()):
            headers = [(":method", "POST" if grpc else "GET"), (":scheme", "http"), (":authority", "test"), (":path", path)]
            if grpc:
                headers += [("content-type", "application/grpc"), ("te", "trailers")]
            return headers + list(extra)


        class Streams:
            """Collects what each stream received, reading until a condition holds."""

            def __init__(self, sock, conn):
                self.sock, self.conn = sock, conn
                self.streams = {}
                self.goaway = None
                self.closed = False
                self.settings = {}

            def of(self, sid):
                return self.streams.setdefault(sid, {"headers": {}, "data": b"", "trailers": {}, "ended": False, "reset": None})

            def read(self, until, timeout=8):
                deadline = time.time() + timeout
                while not until(self) and time.time() < deadline and not self.closed:
                    try:
                        self.sock.settimeout(max(0.01, min(5, deadline - time.time())))
                        data = self.sock.recv(1 << 20)
                    except socket.timeout:
                        break
                    except ConnectionResetError:
                        self.closed = True
                        break
                    if not data:
                        self.closed = True
                        break
                    try:
                        events = self.conn.receive_data(data)
                    except Exception as error:  # a frame h2 refuses (after a GOAWAY, say)
                        self.closed = True
                        self.error = repr(error)
                        break
                    for event in events:
                        self.handle(event)
                    out = self.conn.data_to_send()
                    if out:
                        try:
                            self.sock.sendall(out)
                        except OSError:
                            pass
                return until(self)

            def handle(self, event):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    for code, change in event.changed_settings.items():
                        self.settings[int(code)] = change.new_value
                elif isinstance(event, h2.events.ResponseReceived):
                    self.of(event.stream_id)["headers"] = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    self.of(event.stream_id)["data"] += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    self.of(event.stream_id)["trailers"] = dict(event.headers)
                elif isinstance(event, h2.events.StreamEnded):
                    self.of(event.stream_id)["ended"] = True
                elif isinstance(event, h2.events.StreamReset):
                    self.of(event.stream_id)["reset"] = int(event.error_code)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.goaway = int(event.error_code)

            def done(self, sid):
                s = self.streams.get(sid)
                return s is not None and (s["ended"] or s["reset"] is not None)

            def summary(self, sid):
                s = self.of(sid)
                return {"status": s["headers"].get(":status"), "headers": s["headers"], "data": s["data"].hex(),
                        "trailers": s["trailers"], "ended": s["ended"], "reset": s["reset"]}


        def unary(streams, path, payload, extra=()):
            sid = streams.conn.get_next_available_stream_id()
            streams.conn.send_headers(sid, request_headers(path, grpc=True, extra=extra))
            streams.conn.send_data(sid, grpc_frame(payload), end_stream=True)
            streams.sock.sendall(streams.conn.data_to_send())
            return sid


        def raw_frames(sock, timeout=5):
            """Reads raw frames until EOF: a list of (type, flags, stream, payload)."""
            sock.settimeout(timeout)
            data = b""
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except (socket.timeout, ConnectionResetError):
                pass
            frames, offset = [], 0
            while offset + 9 <= len(data):
                length = int.from_bytes(data[offset:offset + 3], "big")
                ftype, flags = data[offset + 3], data[offset + 4]
                sid = int.from_bytes(data[offset + 5:offset + 9], "big") & 0x7FFFFFFF
                frames.append((ftype, flags, sid, data[offset + 9:offset + 9 + length]))
                offset += 9 + length
            return frames


        def goaway_of(frames):
            for ftype, _, _, payload in frames:
                if ftype == 7:
                    return int.from_bytes(payload[4:8], "big")
            return None


        def http1_get(path):
            sock = socket.create_connection(("127.0.0.1", PORT), timeout=5)
            sock.sendall(("GET %s HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n" % path).encode())
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            sock.close()
            return data.decode("latin-1")


        def scenario_unary():
            sock, conn = connect()
            streams = Streams(sock, conn)
            sid = unary(streams, "/test.Echo/Echo", b"hello", extra=[("grpc-timeout", "250m")])
            streams.read(lambda s: s.done(sid))
            plain = conn.get_next_available_stream_id()
            conn.send_headers(plain, request_headers("/plain?x=1"), end_stream=True)
            sock.sendall(conn.data_to_send())
            streams.read(lambda s: s.done(plain))
            return {"echo": streams.summary(sid), "plain": streams.summary(plain),
                    "max_concurrent_streams": streams.settings.get(int(SettingCodes.MAX_CONCURRENT_STREAMS)),
                    "max_header_list_size": streams.settings.get(int(SettingCodes.MAX_HEADER_LIST_SIZE))}


        def scenario_mixed():
            sock, conn = connect()
            streams = Streams(sock, conn)
            first = unary(streams, "/test.Echo/Echo", b"one")
            http1 = http1_get("/plain")  # while the HTTP/2 connection is open, on the same port
            second = unary(streams, "/test.Echo/Echo", b"two")
            streams.read(lambda s: s.done(first) and s.done(second))
            return {"http1": http1, "first": streams.summary(first), "second": streams.summary(second)}


        def scenario_concurrent():
            sock, conn = connect()
            streams = Streams(sock, conn)
            streams.read(lambda s: int(SettingCodes.MAX_CONCURRENT_STREAMS) in s.settings)
            # Go past the advertised limit on purpose: h2 would otherwise refuse locally.
            conn.remote_settings.update({SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
            conn.remote_settings.acknowledge()
            held = []
            for _ in range(128):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, request_headers("/hold"), end_stream=True)
                held.append(sid)
            # The 129th HEADERS follows the 128 on the same connection: the server reads them in
            # order, so no wait is needed for it to count all 128 first.
            sock.sendall(conn.data_to_send())
            extra = conn.get_next_available_stream_id()
            conn.send_headers(extra, request_headers("/hold"), end_stream=True)
            sock.sendall(conn.data_to_send())
            streams.read(lambda s: s.done(extra))
            # A second connection releases the held requests.
            other, other_conn = connect()
            others = Streams(other, other_conn)
            rid = other_conn.get_next_available_stream_id()
            other_conn.send_headers(rid, request_headers("/release"), end_stream=True)
            other.sendall(other_conn.data_to_send())
            others.read(lambda s: s.done(rid))
            streams.read(lambda s: all(s.done(sid) for sid in held))
            statuses = [streams.summary(sid)["status"] for sid in held]
            return {"extra": streams.summary(extra), "answered": statuses.count("200"), "goaway": streams.goaway,
                    "release": others.summary(rid)["status"]}


        def scenario_oversized():
            sock, conn = connect()
            streams = Streams(sock, conn)
            big = conn.get_next_available_stream_id()
            conn.send_headers(big, request_headers("/test.Echo/Echo", grpc=True))
            # Declares 5 MiB; the server answers once it has read the prefix.
            conn.send_data(big, grpc_frame(b"x" * 1000, declared=5 * 1024 * 1024))
            small = unary(streams, "/test.Echo/Echo", b"still fine")
            sock.sendall(conn.data_to_send())
            streams.read(lambda s: s.done(big) and s.done(small))
            # A body that grows past the limit without declaring it: 4 MiB + 6 bytes, sent within
            # the flow-control windows.
            sneaky = conn.get_next_available_stream_id()
            conn.send_headers(sneaky, request_headers("/test.Echo/Echo", grpc=True))
            body = grpc_frame(b"y" * (4 * 1024 * 1024 + 1), declared=100)
            offset = 0
            deadline = time.time() + 10
            while offset < len(body) and not streams.done(sneaky) and time.time() < deadline:
                window = min(conn.local_flow_control_window(sneaky), conn.max_outbound_frame_size)
                if window <= 0:
                    streams.read(lambda s: conn.local_flow_control_window(sneaky) > 0 or s.done(sneaky), timeout=2)
                    continue
                piece = body[offset:offset + window]
                conn.send_data(sneaky, piece)
                offset += len(piece)
                sock.sendall(conn.data_to_send())
            streams.read(lambda s: s.done(sneaky))
            after = unary(streams, "/test.Echo/Echo", b"after")
            streams.read(lambda s: s.done(after))
            return {"big": streams.summary(big), "small": streams.summary(small),
                    "sneaky": streams.summary(sneaky), "after": streams.summary(after), "goaway": streams.goaway}


        def scenario_budget():
            sock, conn = connect()
            streams = Streams(sock, conn)
            ids = []
            for _ in range(20):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, request_headers("/test.Echo/Echo", grpc=True))
                conn.send_data(sid, grpc_frame(b"q" * 985))
                ids.append(sid)
            sock.sendall(conn.data_to_send())
            streams.read(lambda s: sum(1 for sid in ids if s.done(sid)) >= 4, timeout=5)
            for sid in ids:
                try:
                    conn.end_stream(sid)
                except Exception:
                    pass  # already answered and reset
            sock.sendall(conn.data_to_send())
            streams.read(lambda s: all(s.done(sid) for sid in ids))
            answers = [streams.summary(sid) for sid in ids]
            return {"echoed": sum(1 for a in answers if a["trailers"].get("grpc-status") == "0"),
                    "exhausted": [i for i, a in enumerate(answers) if a["headers"].get("grpc-status") == "8"],
                    "goaway": streams.goaway}


        def scenario_rapid_reset():
            bystander, bystander_conn = connect()
            others = Streams(bystander, bystander_conn)
            sock, conn = connect()
            streams = Streams(sock, conn)
            streams.read(lambda s: len(s.settings) > 0)
            sent = 0
            try:
                for batch in range(50):
                    for _ in range(20):
                        sid = conn.get_next_available_stream_id()
                        conn.send_headers(sid, request_headers("/hold"), end_stream=True)
                        conn.reset_stream(sid, error_code=8)
                        sent += 1
                    sock.sendall(conn.data_to_send())
                    if streams.read(lambda s: s.goaway is not None or s.closed, timeout=0.05):
                        break
            except OSError:
                pass  # the server closed the connection mid-batch
            streams.read(lambda s: s.goaway is not None or s.closed, timeout=5)
            sid = unary(others, "/test.Echo/Echo", b"unaffected")
            others.read(lambda s: s.done(sid))
            return {"goaway": streams.goaway, "sent": sent, "bystander": others.summary(sid), "bystander_goaway": others.goaway}


        def scenario_continuation_flood():
            import hpack
            sock = socket.create_connection(("127.0.0.1", PORT), timeout=5)
            sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # preface, empty SETTINGS
            block = hpack.Encoder().encode(request_headers("/plain") + [("x-filler-%d" % i, "v" * 20) for i in range(40)])
            pieces = [block[i:i + 30] for i in range(0, len(block), 30)]
            frames = struct.pack(">I", len(pieces[0]))[1:] + bytes([1, 0]) + struct.pack(">I", 1) + pieces[0]  # HEADERS, no END_HEADERS
            for piece in pieces[1:-1]:
                frames += struct.pack(">I", len(piece))[1:] + bytes([9, 0]) + struct.pack(">I", 1) + piece
            sock.sendall(frames)
            received = raw_frames(sock)
            return {"continuations": len(pieces) - 2, "goaway": goaway_of(received), "frames": [f[0] for f in received]}


        def scenario_large_headers():
            sock, conn = connect()
            streams = Streams(sock, conn)
            plain = conn.get_next_available_stream_id()
            conn.send_headers(plain, request_headers("/plain", extra=[("x-big", "a" * 40000)]), end_stream=True)
            grpc = conn.get_next_available_stream_id()
            conn.send_headers(grpc, request_headers("/test.Echo/Echo", grpc=True, extra=[("x-big", "b" * 40000)]))
            conn.send_data(grpc, grpc_frame(b"z"), end_stream=True)
            sock.sendall(conn.data_to_send())
            streams.read(lambda s: s.done(plain) and s.done(grpc))
            after = unary(streams, "/test.Echo/Echo", b"after")
            streams.read(lambda s: s.done(after))
            return {"plain": streams.summary(plain), "grpc": streams.summary(grpc), "after": streams.summary(after), "goaway": streams.goaway}


        def scenario_garbage():
            sock = socket.create_connection(("127.0.0.1", PORT), timeout=5)
            sock.sendall(PREFACE + b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello")
            received = raw_frames(sock)
            return {"goaway": goaway_of(received), "frames": [f[0] for f in received], "http1_after": http1_get("/plain")}


        def scenario_idle():
            sock, conn = connect()
            start = time.time()
            received = raw_frames(sock, timeout=10)
            return {"goaway": goaway_of(received), "seconds": time.time() - start}


        def scenario_drain():
            # Raw frames: python h2 treats any GOAWAY as the end of the connection, and a graceful
            # one is followed by the answers to the streams it lets finish.
            sock, conn = connect()
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, request_headers("/hold"), end_stream=True)
            sock.sendall(conn.data_to_send())
            received = raw_frames(sock, timeout=10)
            kinds = [f[0] for f in received]
            data = b"".join(f[3] for f in received if f[0] == 0 and f[2] == sid)
            ended = any(f[0] == 0 and f[2] == sid and f[1] & 1 for f in received)
            goaway_at = kinds.index(7) if 7 in kinds else None
            data_at = kinds.index(0) if 0 in kinds else None
            return {"goaway": goaway_of(received), "data": data.hex(), "ended": ended,
                    "goaway_before_data": goaway_at is not None and data_at is not None and goaway_at < data_at}


        def scenario_stream():
            sock, conn = connect()
            streams = Streams(sock, conn)
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, request_headers("/stream"), end_stream=True)
            sock.sendall(conn.data_to_send())
            streams.read(lambda s: s.done(sid))
            return {"stream": streams.summary(sid)}


        def scenario_grpcio():
            import grpc
            channel = grpc.insecure_channel("127.0.0.1:%d" % PORT)
            echo = channel.unary_unary("/test.Echo/Echo")
            answer, call = echo.with_call(b"\x01\x02 interop", timeout=5)
            metadata = dict(call.initial_metadata())
            fail = channel.unary_unary("/test.Echo/Fail")
            try:
                fail(b"", timeout=5)
                failure = None
            except grpc.RpcError as error:
                failure = {"code": error.code().name, "details": error.details()}
            channel.close()
            return {"answer": answer.hex(), "timeout_ms": metadata.get("x-timeout-ms"), "failure": failure}


        print(json.dumps(globals()["scenario_" + sys.argv[1]]()))
        """#
}
