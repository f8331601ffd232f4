#!/usr/bin/env python3
"""A do-nothing OTLP/HTTP collector for benchmarks: answers 200 to every POST (any path,
`/v1/traces` from Switchyard's exporter), reads and discards the body, and on exit (SIGINT or
SIGTERM) prints how many export requests and bytes it took. Binds 127.0.0.1 only.

    taskset -c 1 python3 bench/otlp-sink.py --port 4318 &   # beside the upstream on CPU 1
    ... --otlp-endpoint http://127.0.0.1:4318 ...
    kill %1
"""
import argparse
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
totals = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        with lock:
            totals["requests"] += 1
            totals["bytes"] += length
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4318)
    port = parser.parse_args().port
    server = ThreadingHTTPServer(("127.0.0.1", port), Sink)
    server.daemon_threads = True

    def stop(*_):
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"otlp-sink listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever()
    print(f"otlp-sink: {totals['requests']} export requests, {totals['bytes']} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
