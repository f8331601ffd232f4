#!/usr/bin/env python3
"""An HTTPS backend for trying README "TLS to backends": answers every POST or GET with a fixed
JSON prediction, over TLS with examples/tls/certs/server.pem (run make-certs.sh first).
--mtls also asks for a client certificate signed by certs/ca.pem. Python 3 standard library only.

    python3 examples/tls/https-upstream.py            # https://127.0.0.1:9443
    python3 examples/tls/https-upstream.py --mtls     # clients must present a certificate
"""

import argparse
import http.server
import os
import ssl
import sys

CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "certs")
BODY = b'{"predictions": [0.87]}'


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.answer()

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.answer()

    def answer(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format, *args):
        sys.stderr.write("https-upstream: " + (format % args) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9443)
    parser.add_argument("--mtls", action="store_true", help="require a client certificate signed by certs/ca.pem")
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(CERTS, "server.pem"), os.path.join(CERTS, "server.key"))
    if args.mtls:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(os.path.join(CERTS, "ca.pem"))
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"https-upstream: listening on https://{args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
