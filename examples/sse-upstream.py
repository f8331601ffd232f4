#!/usr/bin/env python3
"""A tiny server-sent events backend for trying Switchyard's streaming (README "Streaming").

Answers any GET or POST with `content-type: text/event-stream` and a few events
`data: {"token": "..."}`, one every --interval-ms, then ends the body properly:
with the last chunk (--framing chunked, the default) or by closing the connection
(--framing close). --cut-after N closes the connection after N events without
ending the body, the way a crashing backend would. Python 3 standard library only.

    python3 examples/sse-upstream.py                      # http://127.0.0.1:9100
    python3 examples/sse-upstream.py --unix /tmp/sse.sock  # on a Unix socket instead
"""

import argparse
import http.server
import json
import os
import socketserver
import sys
import time

TOKENS = ["Switchyard", " relays", " each", " event", " as", " it", " arrives", "."]


def make_handler(args):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.stream()

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            self.stream()

        def stream(self):
            chunked = args.framing == "chunked"
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            if chunked:
                self.send_header("transfer-encoding", "chunked")
            else:
                self.send_header("connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.flush()
            for i in range(args.events):
                if i > 0:
                    time.sleep(args.interval_ms / 1000)
                if args.cut_after is not None and i == args.cut_after:
                    self.close_connection = True
                    return  # no last chunk: the body is cut
                token = TOKENS[i % len(TOKENS)]
                event = f"data: {json.dumps({'token': token})}\n\n".encode()
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                else:
                    self.wfile.write(event)
                self.wfile.flush()
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        def log_message(self, format, *log_args):
            sys.stderr.write("sse-upstream: " + (format % log_args) + "\n")

    return Handler


class ThreadingUnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        return request, ("unix", 0)  # BaseHTTPRequestHandler expects a (host, port) pair


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--unix", metavar="PATH", help="listen on this Unix socket instead of TCP")
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--interval-ms", type=int, default=300)
    parser.add_argument("--framing", choices=["chunked", "close"], default="chunked")
    parser.add_argument("--cut-after", type=int, metavar="N", help="drop the connection after N events")
    args = parser.parse_args()

    handler = make_handler(args)
    if args.unix:
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        server = ThreadingUnixHTTPServer(args.unix, handler)
        where = f"unix:{args.unix}"
    else:
        server = http.server.ThreadingHTTPServer((args.host, args.port), handler)
        where = f"http://{args.host}:{args.port}"
    print(f"sse-upstream: listening on {where}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if args.unix and os.path.exists(args.unix):
            os.unlink(args.unix)


if __name__ == "__main__":
    main()
