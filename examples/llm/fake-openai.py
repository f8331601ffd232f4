#!/usr/bin/env python3
"""A fake OpenAI-compatible model server for trying Switchyard's `openai` routes (SPEC §14).

Answers `POST /v1/chat/completions`, `/v1/completions` and `/v1/embeddings` the way vLLM and
the OpenAI API do, with no model and no network, so that canaries, shadows and comparisons of
LLM calls can be run and tested anywhere. Python 3 standard library only.

- The reply is `--reply TEXT`, or looked up in `--replies FILE`: a JSON object from the last
  user message (chat) or the prompt (completions) to the reply. A value is either the reply
  text or an object `{"text": ..., "finish_reason": ..., "tool_calls": ["name", ...]}`; a
  request with no entry gets `--reply`.
- Every answer's `model` field echoes the request body's `model` (so a test sees whether the
  sidecar rewrote it), and carries `usage` counted in words (prompt words, reply words).
- `"stream": true` answers are server-sent events over chunked transfer encoding, each event
  written and flushed on its own: a role delta, one event per word of the reply (spaces kept),
  tool calls as deltas, a last event with the finish reason, the usage event when the request
  asks for it (`stream_options.include_usage`), then `data: [DONE]`. `--first-delay-ms` is
  waited before the first event and `--delay-ms` between the others; a non-streamed answer
  waits `--first-delay-ms` only.
- Embeddings are deterministic unit vectors from a hash of each input; `--embedding-noise X`
  perturbs them (reproducibly) so that two servers agree closely but not exactly. The
  `encoding_format: "base64"` the official client asks for by default is honoured.
- `--record FILE` appends one JSON line per request: `{"path", "headers", "body"}`.
  `--require-auth TOKEN` answers 401 unless `authorization: Bearer TOKEN`.
- Bench mode (`--events N --interval-ms M`, used by bench/llm.sh): every streamed chat answer
  is N word events M ms apart (the request's `max_tokens` instead of N when it has one), each
  carrying `"x_sent_ns"`, `time.monotonic_ns()` read just before the event is written.

The first line on stdout is `listening on HOST:PORT` (or `listening on unix:PATH`), flushed,
so that a script can start it with `--port 0` and read the port it got.

    python3 examples/llm/fake-openai.py --port 9200 --reply "Paris is the capital of France."
    python3 examples/llm/fake-openai.py --port 0 --replies examples/llm/replies.json
    python3 examples/llm/fake-openai.py --tool-call get_weather --tool-call get_time
    python3 examples/llm/fake-openai.py --unix /tmp/llm.sock --delay-ms 50 --first-delay-ms 300

    curl -sN localhost:9200/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model": "assistant", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}'
"""

import argparse
import base64
import hashlib
import http.server
import json
import math
import os
import random
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid

DEFAULT_REPLY = "This is a fake answer from a model that is not there."
PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


def words(text):
    """The reply as stream pieces: each word with the whitespace before it, so that the pieces
    joined give the text back exactly (trailing whitespace rides on the last piece)."""
    pieces = re.findall(r"\s*\S+", text)
    rest = text[len("".join(pieces)) :]
    if rest:
        if pieces:
            pieces[-1] += rest
        else:
            pieces = [rest]
    return pieces


def word_count(text):
    return len(text.split())


def content_text(content):
    """A chat message's content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def prompt_text(prompt):
    """A completion request's prompt as text (a string, or the first of a list of strings)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        return prompt[0]
    return ""


def embedding(text, dims, noise):
    """A unit vector from SHA-256 of the text; with noise, a reproducible Gaussian perturbation
    (seeded by the text too) before normalising, so its cosine with the noiseless one is < 1."""
    values, counter = [], 0
    while len(values) < dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:dims]
    if noise:
        rng = random.Random(hashlib.sha256(b"noise:" + text.encode()).digest())
        values = [v + rng.gauss(0.0, noise) for v in values]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class Answer:
    """What the server says to one request: text, finish reason and tool-call names."""

    def __init__(self, text, finish_reason, tool_calls):
        self.text = text
        self.finish_reason = finish_reason
        self.tool_calls = tool_calls


def make_handler(args, replies, record_lock, record_file):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # each event leaves at once (the bench measures this)

        def setup(self):
            if self.request.family == socket.AF_UNIX:
                self.disable_nagle_algorithm = False  # TCP_NODELAY is refused on a Unix socket
            super().setup()

        # --- request plumbing -------------------------------------------------------------

        def read_body(self):
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                body = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return body
                    body += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""

        def record(self, path, raw):
            if record_file is None:
                return
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            line = json.dumps({"path": path, "headers": headers, "body": body}) + "\n"
            with record_lock:
                record_file.write(line)
                record_file.flush()

        def send_json(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, status, message, kind, code):
            self.send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})

        def not_found(self):
            raw = self.read_body()
            path = self.path.split("?")[0]
            self.record(path, raw)
            self.error(404, f"{self.command} {path} is not served here", "invalid_request_error", "unknown_url")

        do_GET = do_PUT = do_DELETE = do_PATCH = not_found

        def do_POST(self):
            raw = self.read_body()
            path = self.path.split("?")[0]
            self.record(path, raw)
            if args.require_auth is not None:
                if self.headers.get("authorization") != f"Bearer {args.require_auth}":
                    return self.error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            if path not in PATHS:
                return self.error(404, f"POST {path} is not served here", "invalid_request_error", "unknown_url")
            try:
                body = json.loads(raw or b"null")
            except ValueError as e:
                return self.error(400, f"the body is not JSON: {e}", "invalid_request_error", None)
            if not isinstance(body, dict):
                return self.error(400, "the body must be a JSON object", "invalid_request_error", None)
            if path == "/v1/embeddings":
                return self.embeddings(body)
            chat = path == "/v1/chat/completions"
            if chat and not isinstance(body.get("messages"), list):
                return self.error(400, "`messages` must be a list", "invalid_request_error", "messages")
            if body.get("stream") is True:
                if chat and args.events is not None:
                    return self.bench_stream(body)
                return self.stream(body, chat)
            self.complete(body, chat)

        # --- the answer -------------------------------------------------------------------

        def answer(self, body, chat):
            if chat:
                users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
                key = content_text(users[-1].get("content")) if users else ""
            else:
                key = prompt_text(body.get("prompt"))
            tools = list(args.tool_call) if chat else []
            scripted = replies.get(key)
            if isinstance(scripted, str):
                text, reason = scripted, None
            elif isinstance(scripted, dict):
                text = scripted.get("text", "")
                reason = scripted.get("finish_reason")
                tools = list(scripted.get("tool_calls", tools)) if chat else []
            else:
                # With tool calls and no reply asked for, the message has no text, as a model's
                # tool-calling turn usually has none.
                text = args.reply if args.reply is not None else ("" if tools else DEFAULT_REPLY)
                reason = None
            if reason is None:
                reason = "tool_calls" if tools else args.finish_reason
            return Answer(text, reason, tools)

        def prompt_words(self, body, chat):
            if chat:
                return sum(word_count(content_text(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
            return word_count(prompt_text(body.get("prompt")))

        def usage(self, body, chat, answer):
            prompt, completion = self.prompt_words(body, chat), word_count(answer.text)
            return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

        def tool_call_objects(self, answer, rid):
            return [
                {"id": f"call_{rid[:8]}_{i}", "type": "function", "function": {"name": name, "arguments": "{}"}}
                for i, name in enumerate(answer.tool_calls)
            ]

        def complete(self, body, chat):
            answer = self.answer(body, chat)
            time.sleep(args.first_delay_ms / 1000)
            rid = uuid.uuid4().hex
            if chat:
                message = {"role": "assistant", "content": answer.text if answer.text or not answer.tool_calls else None}
                if answer.tool_calls:
                    message["tool_calls"] = self.tool_call_objects(answer, rid)
                choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}
                obj, prefix = "chat.completion", "chatcmpl-"
            else:
                choice = {"index": 0, "text": answer.text, "logprobs": None, "finish_reason": answer.finish_reason}
                obj, prefix = "text_completion", "cmpl-"
            self.send_json(
                200,
                {
                    "id": prefix + rid,
                    "object": obj,
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [choice],
                    "usage": self.usage(body, chat, answer),
                },
            )

        # --- streams ----------------------------------------------------------------------

        def start_stream(self):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.flush()

        def write_event(self, data):
            """One SSE event as one HTTP chunk, in one write: it leaves on its own."""
            event = b"data: " + data + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()

        def end_stream(self):
            self.write_event(b"[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def stream(self, body, chat):
            answer = self.answer(body, chat)
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            rid = uuid.uuid4().hex
            base = {
                "id": ("chatcmpl-" if chat else "cmpl-") + rid,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()),
                "model": body.get("model"),
            }

            def chunk(choice_fields, finish_reason=None):
                choice = {"index": 0, **choice_fields, "logprobs": None, "finish_reason": finish_reason}
                event = {**base, "choices": [choice]}
                if include_usage:
                    event["usage"] = None  # as OpenAI does on every chunk but the usage one
                return json.dumps(event).encode()

            events = []
            if chat:
                events.append(chunk({"delta": {"role": "assistant", "content": ""}}))
                events += [chunk({"delta": {"content": w}}) for w in words(answer.text)]
                for i, call in enumerate(self.tool_call_objects(answer, rid)):
                    first = {"index": i, "id": call["id"], "type": "function",
                             "function": {"name": call["function"]["name"], "arguments": ""}}
                    events.append(chunk({"delta": {"tool_calls": [first]}}))
                    rest = {"index": i, "function": {"arguments": call["function"]["arguments"]}}
                    events.append(chunk({"delta": {"tool_calls": [rest]}}))
                events.append(chunk({"delta": {}}, answer.finish_reason))
            else:
                events += [chunk({"text": w}) for w in words(answer.text)]
                events.append(chunk({"text": ""}, answer.finish_reason))
            if include_usage:
                events.append(json.dumps({**base, "choices": [], "usage": self.usage(body, chat, answer)}).encode())

            self.start_stream()
            for i, data in enumerate(events):
                time.sleep((args.first_delay_ms if i == 0 else args.delay_ms) / 1000)
                self.write_event(data)
            self.end_stream()

        def bench_stream(self, body):
            """N word events on a fixed schedule, each stamped with the monotonic clock just
            before its write (the JSON is prepared beforehand; only the number is formatted)."""
            n = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else args.events
            model = json.dumps(body.get("model"))
            head = (
                '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":%d,"model":%s,'
                '"choices":[{"index":0,"delta":{"content":" tok"},"logprobs":null,"finish_reason":null}],'
                '"x_seq":' % (int(time.time()), model)
            ).encode()
            interval = args.interval_ms * 1_000_000
            self.start_stream()
            start = time.monotonic_ns()
            for i in range(n):
                wait = start + i * interval - time.monotonic_ns()
                if wait > 0:
                    time.sleep(wait / 1e9)
                sent = time.monotonic_ns()
                self.write_event(b'%s%d,"x_sent_ns":%d}' % (head, i, sent))
            last = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": body.get("model"),
                    "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]}
            self.write_event(json.dumps(last).encode())
            self.end_stream()

        # --- embeddings -------------------------------------------------------------------

        def embeddings(self, body):
            inputs = body.get("input")
            if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
                inputs = [inputs]  # one string, or one list of token ids
            if not isinstance(inputs, list) or not inputs:
                return self.error(400, "`input` must be a string or a non-empty list", "invalid_request_error", "input")
            time.sleep(args.first_delay_ms / 1000)
            as_base64 = body.get("encoding_format") == "base64"
            data, tokens = [], 0
            for i, item in enumerate(inputs):
                text = item if isinstance(item, str) else json.dumps(item)
                tokens += word_count(text) if isinstance(item, str) else len(item) if isinstance(item, list) else 1
                vector = embedding(text, args.embedding_dims, args.embedding_noise)
                if as_base64:  # little-endian float32, as the OpenAI API sends it
                    value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                else:
                    value = vector
                data.append({"object": "embedding", "index": i, "embedding": value})
            self.send_json(200, {"object": "list", "data": data, "model": body.get("model"),
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

        def log_message(self, format, *log_args):
            if not args.quiet:
                sys.stderr.write("fake-openai: " + (format % log_args) + "\n")

    return Handler


class ThreadingUnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        return request, ("unix", 0)  # BaseHTTPRequestHandler expects a (host, port) pair


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200, help="0: any free port (printed on the first line)")
    parser.add_argument("--unix", metavar="PATH", help="listen on this Unix socket instead of TCP")
    parser.add_argument("--reply", metavar="TEXT", help=f"the reply (default: {DEFAULT_REPLY!r})")
    parser.add_argument("--replies", metavar="FILE", help="JSON object: last user message or prompt -> reply")
    parser.add_argument("--finish-reason", default="stop")
    parser.add_argument("--tool-call", metavar="NAME", action="append", default=[],
                        help="chat answers call this function (repeatable; finish_reason tool_calls)")
    parser.add_argument("--delay-ms", type=float, default=20, help="between two streamed events")
    parser.add_argument("--first-delay-ms", type=float, default=0, help="before the first event or answer")
    parser.add_argument("--embedding-dims", type=int, default=16)
    parser.add_argument("--embedding-noise", type=float, default=0.0, metavar="X")
    parser.add_argument("--record", metavar="FILE", help="append one JSON line per request")
    parser.add_argument("--require-auth", metavar="TOKEN", help="401 unless `authorization: Bearer TOKEN`")
    parser.add_argument("--events", type=int, metavar="N", help="bench mode: streamed chat answers have N events")
    parser.add_argument("--interval-ms", type=float, default=2, help="bench mode: between two events")
    parser.add_argument("--quiet", action="store_true", help="no access log on stderr")
    args = parser.parse_args()

    replies = {}
    if args.replies:
        with open(args.replies, encoding="utf-8") as f:
            replies = json.load(f)
        if not isinstance(replies, dict):
            parser.error("--replies: the file must hold a JSON object")
    record_file = open(args.record, "a", encoding="utf-8") if args.record else None

    handler = make_handler(args, replies, threading.Lock(), record_file)
    if args.unix:
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        server = ThreadingUnixHTTPServer(args.unix, handler)
        where = f"unix:{args.unix}"
    else:
        server = http.server.ThreadingHTTPServer((args.host, args.port), handler)
        server.daemon_threads = True
        where = f"{args.host}:{server.server_address[1]}"
    print(f"listening on {where}", flush=True)
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
