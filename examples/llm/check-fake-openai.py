#!/usr/bin/env python3
"""Checks fake-openai.py answers the way the tests and the benchmark rely on (run by hand).

Starts the fake on a free port (and once on a Unix socket), talks to it with the standard
library and, when the `openai` package imports (the test venv: `$(bash scripts/test-venv)`),
with the official client too, and exits 1 on the first answer that is not what it should be.

    python3 examples/llm/check-fake-openai.py
    $(bash scripts/test-venv) examples/llm/check-fake-openai.py
"""

import atexit
import base64
import http.client
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake-openai.py")
REPLIES = {
    "What is the capital of France?": "Paris is the capital of France.",
    "weather?": {"text": "", "tool_calls": ["get_weather", "get_time"]},
    "cut": {"text": "It was cut", "finish_reason": "length"},
}


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def start(*extra):
    proc = subprocess.Popen([sys.executable, FAKE, "--quiet", *extra], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        sys.exit(f"FAIL: first line {line!r}")
    return proc, line[len("listening on ") :]


def post(port, path, body, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, json.dumps(body), {"content-type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    return resp, conn


def events(resp):
    """(arrival seconds, data) per SSE event, read as the events come."""
    out, buf = [], b""
    while True:
        data = resp.read1(65536)
        if not data:
            return out
        now = time.monotonic()
        buf += data
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            out.append((now, event[len(b"data: ") :].decode()))


def main():
    tmp = tempfile.mkdtemp(prefix="fake-openai-check.")
    atexit.register(shutil.rmtree, tmp, True)
    replies, record = os.path.join(tmp, "replies.json"), os.path.join(tmp, "record.jsonl")
    with open(replies, "w") as f:
        json.dump(REPLIES, f)
    proc, where = start("--port", "0", "--replies", replies, "--record", record, "--delay-ms", "40",
                        "--require-auth", "sk-x", "--embedding-noise", "0.05")
    port = int(where.rsplit(":", 1)[1])
    auth = {"authorization": "Bearer sk-x"}
    try:
        chat = {"model": "assistant", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
        resp, _ = post(port, "/v1/chat/completions", chat)
        check(resp.status == 401, "401 without the bearer token")
        resp, _ = post(port, "/v1/chat/completions", chat, auth)
        body = json.loads(resp.read())
        check(body["model"] == "assistant" and body["object"] == "chat.completion", "model echoed, chat.completion")
        check(body["choices"][0]["message"]["content"] == "Paris is the capital of France.", "scripted reply")
        check(body["usage"] == {"prompt_tokens": 6, "completion_tokens": 6, "total_tokens": 12}, "usage in words")

        t0 = time.monotonic()
        resp, _ = post(port, "/v1/chat/completions",
                       {**chat, "model": "v8", "stream": True, "stream_options": {"include_usage": True}}, auth)
        check(resp.getheader("content-type") == "text/event-stream", "stream: text/event-stream")
        check(resp.getheader("transfer-encoding") == "chunked", "stream: chunked")
        evs = events(resp)
        check(evs[-1][1] == "[DONE]", "stream ends with [DONE]")
        chunks = [json.loads(d) for _, d in evs[:-1]]
        check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "role delta first")
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        check(text == "Paris is the capital of France.", "word deltas join to the reply")
        check(chunks[-2]["choices"][0]["finish_reason"] == "stop", "finish_reason on the last choice event")
        check(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6, "usage event")
        check(all(c["model"] == "v8" for c in chunks), "every chunk echoes the model")
        # 9 events 40 ms apart: the first must arrive long before the last is written
        check(evs[1][0] - t0 < 0.2 and evs[-1][0] - evs[1][0] > 0.2, "events arrive as they are written")

        resp, _ = post(port, "/v1/chat/completions", {**chat, "stream": True,
                       "messages": [{"role": "user", "content": "weather?"}]}, auth)
        chunks = [json.loads(d) for _, d in events(resp)[:-1]]
        names = [tc["function"]["name"] for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])
                 if "name" in tc.get("function", {})]
        check(names == ["get_weather", "get_time"], "streamed tool-call names in order")
        check(chunks[-1]["choices"][0]["finish_reason"] == "tool_calls", "finish_reason tool_calls")

        resp, _ = post(port, "/v1/completions", {"model": "base", "prompt": "cut"}, auth)
        body = json.loads(resp.read())
        check(body["object"] == "text_completion" and body["choices"][0]["text"] == "It was cut"
              and body["choices"][0]["finish_reason"] == "length", "completion with scripted finish_reason")

        resp, _ = post(port, "/v1/embeddings", {"model": "e", "input": ["a b", "c"]}, auth)
        floats = json.loads(resp.read())["data"]
        resp, _ = post(port, "/v1/embeddings", {"model": "e", "input": "a b", "encoding_format": "base64"}, auth)
        raw = base64.b64decode(json.loads(resp.read())["data"][0]["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        check(len(floats) == 2 and len(decoded) == 16, "two float vectors, 16 dims")
        check(max(abs(a - b) for a, b in zip(decoded, floats[0]["embedding"])) < 1e-6, "base64 = float")
        check(abs(math.sqrt(sum(x * x for x in decoded)) - 1) < 1e-5, "unit vector")

        resp, _ = post(port, "/v1/models", {}, auth)
        check(resp.status == 404 and "error" in json.loads(resp.read()), "404 JSON error elsewhere")
        lines = [json.loads(line) for line in open(record)]
        check(lines[1]["headers"]["authorization"] == "Bearer sk-x" and lines[1]["body"]["model"] == "assistant",
              "record: headers and body")

        try:
            import openai
        except ImportError:
            print("(openai not importable here: the official client's checks are skipped)")
        else:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x", max_retries=0)
            stream = client.chat.completions.create(model="m", messages=chat["messages"], stream=True,
                                                    stream_options={"include_usage": True})
            parts, usage = [], None
            for c in stream:
                parts += [c.choices[0].delta.content or ""] if c.choices else []
                usage = c.usage or usage
            check("".join(parts) == "Paris is the capital of France." and usage.total_tokens == 12,
                  "openai client: stream and usage")
            e = client.embeddings.create(model="e", input="a b")  # base64 by default
            check(max(abs(a - b) for a, b in zip(e.data[0].embedding, floats[0]["embedding"])) < 1e-6,
                  "openai client: embeddings")
    finally:
        proc.terminate()
        proc.wait()

    # noise: same input, cosine high but below 1
    proc, where = start("--port", "0")
    port2 = int(where.rsplit(":", 1)[1])
    try:
        resp, _ = post(port2, "/v1/embeddings", {"model": "e", "input": "a b"})
        clean = json.loads(resp.read())["data"][0]["embedding"]
        cos = sum(a * b for a, b in zip(clean, floats[0]["embedding"]))
        check(0.95 < cos < 0.9999, f"--embedding-noise 0.05: cosine {cos:.4f}")
    finally:
        proc.terminate()
        proc.wait()

    path = os.path.join(tmp, "llm.sock")
    proc, where = start("--unix", path, "--delay-ms", "1")
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        body = b'{"model": "u", "prompt": "hi"}'
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        check(sock.recv(65536).startswith(b"HTTP/1.1 200"), f"answers on {where}")
        sock.close()
    finally:
        proc.terminate()
        proc.wait()
    print("all checks passed")


if __name__ == "__main__":
    main()
