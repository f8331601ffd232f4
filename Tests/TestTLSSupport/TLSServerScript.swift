/// The Python TLS server of `TLSTestServer`, written next to the certificates by `TestPKI`.
/// It prints its port, then one line per event: `connection`, `handshake resumed=0|1 <version>`,
/// `handshake-failed <reason>`, `request`.
let tlsServerScript = #"""
    # A TLS test server for Switchyard's tests (written to a temp dir by Tests/TestTLSSupport).
    import argparse, os, socket, ssl, sys, threading, warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # TLS 1.0/1.1 on purpose
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client-ca")
    parser.add_argument("--max-tls11", action="store_true")
    parser.add_argument("--chunked-bytes", type=int)
    parser.add_argument("--close-after", type=int)
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["http/1.1"])
    if args.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(args.client_ca)
    if args.max_tls11:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1

    BODY = b"hello over tls"
    BLOCK = bytes(range(251))
    # Chunk sizes in turn: tiny, odd, several TLS records, more than one read.
    CHUNK_SIZES = [1, 4093, 65536, 16384, 777, 100000]
    output = threading.Lock()

    def report(line):
        with output:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def send_response(conn, closing):
        connection = b"connection: close\r\n" if closing else b""
        if args.chunked_bytes is None:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n%s"
                % (len(BODY), connection, BODY)
            )
            return
        body = (BLOCK * (args.chunked_bytes // len(BLOCK) + 1))[: args.chunked_bytes]
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n%s\r\n"
            % connection
        )
        offset, turn = 0, 0
        while offset < len(body):
            piece = body[offset : offset + CHUNK_SIZES[turn % len(CHUNK_SIZES)]]
            offset, turn = offset + len(piece), turn + 1
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.sendall(b"0\r\n\r\n")

    def content_length(head):
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return int(value.strip())
        return 0

    def serve(raw):
        report("connection")
        try:
            conn = context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as error:
            report("handshake-failed %s" % (getattr(error, "reason", None) or error))
            raw.close()
            return
        report("handshake resumed=%d %s" % (conn.session_reused, conn.version()))
        try:
            with conn:
                pending, served = b"", 0
                while True:
                    while b"\r\n\r\n" not in pending:
                        data = conn.recv(65536)
                        if not data:
                            return
                        pending += data
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    length = content_length(head)
                    while len(pending) < length:
                        data = conn.recv(65536)
                        if not data:
                            return
                        pending += data
                    pending = pending[length:]
                    served += 1
                    report("request")
                    closing = args.close_after is not None and served >= args.close_after
                    send_response(conn, closing)
                    if closing:
                        return
        except (ssl.SSLError, OSError):
            pass

    def watch_stdin():
        sys.stdin.read()  # the test closed its end, or died
        os._exit(0)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    threading.Thread(target=watch_stdin, daemon=True).start()
    report(str(listener.getsockname()[1]))
    while True:
        raw, _ = listener.accept()
        threading.Thread(target=serve, args=(raw,), daemon=True).start()
    """#
