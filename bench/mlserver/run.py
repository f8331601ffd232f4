#!/usr/bin/env python3
"""End-to-end predictions/s of one XGBoost model, embedded in Switchyard against MLServer
(mlserver-xgboost) serving the same model file, with the same Open Inference Protocol v2
request, the same wrk load and the same run. Loopback only; every process it starts it stops.

    python3 -m venv /tmp/mlserver-venv && /tmp/mlserver-venv/bin/pip install mlserver mlserver-xgboost "uvloop<0.22"
    (mlserver 1.7.1 worker processes fail to start with uvloop 0.23: "no current event loop")
    swift build -c release --product switchyard
    python3 bench/mlserver/run.py [--mlserver /tmp/mlserver-venv/bin/mlserver] [--duration 10] [--connections 32]

Prints requests/s, p50/p99 latency and CPU time per request (the server's processes, children
included) for each, and the ratio.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "examples", "models", "churn-xgb-v3.json")
BODY = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [12, 73.36, 2, 1]}]})
TICKS = os.sysconf("SC_CLK_TCK")


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def tree_cpu_seconds(pid):
    """user+system CPU of pid and its descendants, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except OSError:
            pass
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return total


def run_wrk(port, duration, connections, lua):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", lua,
         f"http://127.0.0.1:{port}/v2/models/churn/infer"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return rps, total, pct(50), pct(99), int(non2xx.group(1)) if non2xx else 0


def measure(name, pid, port, args, lua):
    run_wrk(port, 2, args.connections, lua)  # warm-up
    before = tree_cpu_seconds(pid)
    rps, total, p50, p99, bad = run_wrk(port, args.duration, args.connections, lua)
    cpu = tree_cpu_seconds(pid) - before
    print(f"{name:12} {rps:10.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
          f"CPU {1e6 * cpu / max(total, 1):8.1f} us/req  non-2xx {bad}")
    return rps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mlserver", default="/tmp/mlserver-venv/bin/mlserver")
    parser.add_argument("--switchyard", default=os.path.join(ROOT, ".build", "release", "switchyard"))
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="Switchyard workers and MLServer parallel workers")
    parser.add_argument("--port", type=int, default=18700)
    args = parser.parse_args()
    for tool in [args.mlserver, args.switchyard]:
        if not os.path.exists(tool):
            sys.exit(f"missing {tool}; see this script's docstring")
    if not shutil.which("wrk"):
        sys.exit("missing wrk: apt-get install -y wrk")

    scratch = tempfile.mkdtemp(prefix="bench-mlserver-")
    lua = os.path.join(scratch, "post.lua")
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = {json.dumps(BODY)}\n")
    # Switchyard: the model embedded, an OIP v2 route.
    cfg = os.path.join(scratch, "sy")
    os.makedirs(os.path.join(cfg, "routes"))
    os.makedirs(os.path.join(cfg, "policies"))
    with open(os.path.join(cfg, "routes", "r.yaml"), "w") as f:
        f.write("routes:\n  - { name: infer, match: { path: /v2/models/churn/infer, method: POST }, model: churn, protocol: v2 }\n")
    with open(os.path.join(cfg, "policies", "churn.yaml"), "w") as f:
        f.write(f"model: churn\nversions:\n  v3: {{ embedded: xgboost, file: {MODEL} }}\n")
    # MLServer: the same file through mlserver-xgboost.
    ml = os.path.join(scratch, "ml")
    os.makedirs(os.path.join(ml, "churn"))
    shutil.copy(MODEL, os.path.join(ml, "churn", "model.json"))
    with open(os.path.join(ml, "settings.json"), "w") as f:
        json.dump({"http_port": args.port + 1, "grpc_port": args.port + 2, "metrics_port": args.port + 3,
                   "parallel_workers": args.workers, "debug": False}, f)
    with open(os.path.join(ml, "churn", "model-settings.json"), "w") as f:
        json.dump({"name": "churn", "implementation": "mlserver_xgboost.XGBoostModel",
                   "parameters": {"uri": "./model.json"}}, f)

    results = {}
    started = []
    try:
        sy = subprocess.Popen([args.switchyard, "serve", "--config", cfg, "--listen", f"127.0.0.1:{args.port}",
                               "--admin", f"127.0.0.1:{args.port + 10}", "--workers", str(args.workers),
                               "--log-level", "warning"])
        started.append(sy)
        if not wait_port(args.port):
            sys.exit("switchyard did not start")
        results["switchyard"] = measure("switchyard", sy.pid, args.port, args, lua)
        sy.send_signal(signal.SIGTERM)
        sy.wait(timeout=20)

        mls = subprocess.Popen([args.mlserver, "start", ml], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        started.append(mls)
        if not wait_port(args.port + 1, timeout=120):
            sys.exit("mlserver did not start")
        time.sleep(3)  # model load
        results["mlserver"] = measure("mlserver", mls.pid, args.port + 1, args, lua)
    finally:
        for p in started:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM) if p is not started[0] else p.send_signal(signal.SIGTERM)
                    p.wait(timeout=20)
                except Exception:
                    p.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    if len(results) == 2:
        print(f"ratio switchyard / mlserver: {results['switchyard'] / results['mlserver']:.1f}x")


if __name__ == "__main__":
    main()
