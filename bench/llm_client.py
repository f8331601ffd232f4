#!/usr/bin/env python3
"""The client of bench/llm.sh: how late each event of a streamed chat completion arrives.

`run` posts one streaming chat request (`max_tokens` = the number of events) to a fake
upstream in bench mode (examples/llm/fake-openai.py --events N), directly or through a
proxy, on a raw socket with no buffering: each `recv` is followed at once by a read of the
monotonic clock, and every event that the read completes gets that arrival time. The upstream
stamped each event with `x_sent_ns` (CLOCK_MONOTONIC, shared by all processes) just before
writing it, so arrival minus sent is the event's time in flight: the kernel's loopback and,
through a proxy, the proxy's relaying. The differences (ns) are appended to --out, one a line.

`summary LABEL=FILE[,FILE...] ...` (one file per round) prints a Markdown table: per setup the
events measured and the p50, p99 and max in µs (all rounds pooled), and for every setup but
`direct` the added p50 and p99: its percentile minus direct's (events are not paired across
setups, so this is a difference of percentiles, not a percentile of differences), and the
added p50 of each round against the same round's direct run.

    python3 bench/llm_client.py run --port 18701 --events 1000 --out /tmp/direct.ns
    python3 bench/llm_client.py summary direct=/tmp/d1.ns,/tmp/d2.ns switchyard=/tmp/s1.ns,/tmp/s2.ns
"""

import argparse
import json
import socket
import sys
import time

STAMP = b'"x_sent_ns":'


class Dechunker:
    """Incremental decoding of a chunked body: feed bytes, get the payload read so far."""

    def __init__(self):
        self.raw = bytearray()
        self.left = 0  # bytes still to read of the current chunk; 0: a size line is next
        self.crlf = False  # the CRLF that ends a chunk's data is still to skip
        self.done = False

    def feed(self, data):
        self.raw += data
        out = bytearray()
        while not self.done:
            if self.crlf:
                if len(self.raw) < 2:
                    break
                del self.raw[:2]
                self.crlf = False
            if self.left == 0:
                end = self.raw.find(b"\r\n")
                if end < 0:
                    break
                size = int(bytes(self.raw[:end]).split(b";")[0], 16)
                del self.raw[: end + 2]
                if size == 0:
                    self.done = True  # trailers, if any, are not read
                    break
                self.left = size
            take = min(self.left, len(self.raw))
            if take == 0:
                break
            out += self.raw[:take]
            del self.raw[:take]
            self.left -= take
            self.crlf = self.left == 0
        return bytes(out)


def run(args):
    body = json.dumps(
        {
            "model": "assistant",
            "stream": True,
            "max_tokens": args.events,
            "messages": [{"role": "user", "content": "Count to a thousand."}],
        }
    ).encode()
    request = (
        f"POST {args.path} HTTP/1.1\r\nhost: {args.host}:{args.port}\r\ncontent-type: application/json\r\n"
        f"accept: text/event-stream\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = socket.create_connection((args.host, args.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(request)

    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(65536)
        if not data:
            sys.exit(f"llm_client: {args.host}:{args.port} closed before the response head")
        head += data
    head, rest = head.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0]
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    if " 200" not in status:
        sys.exit(f"llm_client: {status}\n{rest[:500].decode(errors='replace')}")
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    dechunk = Dechunker() if chunked else None

    deltas, model, done, sse = [], None, False, bytearray()
    data, arrival = rest, time.monotonic_ns()
    while True:
        sse += dechunk.feed(data) if dechunk else data
        while True:
            end = sse.find(b"\n\n")
            if end < 0:
                break
            event = bytes(sse[:end])
            del sse[: end + 2]
            at = event.find(STAMP)
            if at >= 0:
                stop = event.index(b"}", at)
                deltas.append(arrival - int(event[at + len(STAMP) : stop]))
                if model is None:
                    model = json.loads(event[len(b"data: ") :]).get("model")
            elif event == b"data: [DONE]":
                done = True
        if done or (dechunk and dechunk.done):
            break
        data = sock.recv(65536)
        arrival = time.monotonic_ns()
        if not data:
            break
    sock.close()

    if args.out:
        with open(args.out, "a") as f:
            f.write("".join(f"{d}\n" for d in deltas))
    ok = len(deltas) == args.events and done
    us = sorted(d / 1000 for d in deltas) or [float("nan")]
    print(
        f"{args.label or args.port}: {len(deltas)}/{args.events} events{'' if done else ', no [DONE]'}, "
        f"model {model!r}, p50 {us[len(us) // 2]:.0f} µs, max {us[-1]:.0f} µs, framing {'chunked' if chunked else 'raw'}",
        file=sys.stderr,
    )
    if args.expect_model and model != args.expect_model:
        sys.exit(f"llm_client: expected the upstream to see model {args.expect_model!r}, it saw {model!r}")
    sys.exit(0 if ok else 1)


def percentile(sorted_values, q):
    """Nearest-rank percentile of a sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def load(path):
    with open(path) as f:
        return [int(line) / 1000 for line in f if line.strip()]


def summary(args):
    rows = []  # (label, [per-round sorted µs lists])
    for item in args.files:
        label, paths = item.split("=", 1)
        rows.append((label, [sorted(load(p)) for p in paths.split(",")]))
    by_label = dict(rows)
    direct = by_label.get("direct")
    print("| setup | events | p50 µs | p99 µs | max µs | added p50 µs | added p99 µs | added p50 by round |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    pooled_direct = sorted(v for r in direct for v in r) if direct else None
    for label, rounds in rows:
        values = sorted(v for r in rounds for v in r)
        p50, p99 = percentile(values, 50), percentile(values, 99)
        top = values[-1] if values else float("nan")
        if direct and label != "direct":
            added = f"{p50 - percentile(pooled_direct, 50):.0f} | {p99 - percentile(pooled_direct, 99):.0f}"
            # the same round's direct p50: rounds take turns, so a slow spell hits both sides
            by_round = ", ".join(f"{percentile(r, 50) - percentile(d, 50):.0f}" for r, d in zip(rounds, direct))
        else:
            added, by_round = "— | —", "—"
        name = f"**{label}**" if label == "switchyard" else label
        print(f"| {name} | {len(values)} | {p50:.0f} | {p99:.0f} | {top:.0f} | {added} | {by_round} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="one streamed request; append the per-event delays (ns) to --out")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--path", default="/v1/chat/completions")
    r.add_argument("--events", type=int, default=1000)
    r.add_argument("--out", help="append one delay (ns) per event to this file")
    r.add_argument("--label", help="the setup's name in the progress line")
    r.add_argument("--expect-model", help="fail unless the upstream saw this `model` (a proxy's rewrite)")
    s = sub.add_parser("summary", help="the Markdown table of LABEL=FILE[,FILE...] results (a file per round)")
    s.add_argument("files", nargs="+", metavar="LABEL=FILE[,FILE...]")
    args = parser.parse_args()
    run(args) if args.command == "run" else summary(args)


if __name__ == "__main__":
    main()
