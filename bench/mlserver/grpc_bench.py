#!/usr/bin/env python3
"""gRPC ModelInfer of one XGBoost model, embedded in Switchyard (a `v2-grpc` route) against
MLServer's own gRPC port serving the same model file: the same framed ModelInferRequest sent by
the same `h2load` load, in the same run. Loopback only; every process it starts it stops.

    python3 -m venv /tmp/mlserver-venv && /tmp/mlserver-venv/bin/pip install mlserver mlserver-xgboost "uvloop<0.22"
    apt-get install -y nghttp2-client            # h2load
    swift build -c release --product switchyard
    /tmp/mlserver-venv/bin/python bench/mlserver/grpc_bench.py [--duration 10] [--connections 32] [--streams 1]

Run it with the venv's python: the request is built with MLServer's own generated classes, and
one call to each server is checked (through grpcio) before the load. Prints requests/s, mean
latency and CPU time per request (the server's processes, children included), and the ratio.
"""
import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import MODEL, ROOT, tree_cpu_seconds, wait_port  # noqa: E402

import grpc  # noqa: E402
from mlserver.grpc import dataplane_pb2 as pb  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def request_bytes():
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend([12, 73.36, 2, 1])
    return pb.ModelInferRequest(model_name="churn", inputs=[tensor]).SerializeToString()


def check(port, message):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=pb.ModelInferResponse.FromString)
        answer = call(message, timeout=10)
    return list(answer.outputs[0].contents.fp32_contents or answer.outputs[0].contents.fp64_contents) or answer.raw_output_contents


def run_h2load(port, body_file, duration, connections, streams):
    out = subprocess.run(
        ["h2load", "-t1", f"-c{connections}", f"-m{streams}", f"-D{duration}", "-d", body_file,
         "-H", "content-type: application/grpc", "-H", "te: trailers", f"http://127.0.0.1:{port}{METHOD}"],
        capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out).group(1)
    return rps, int(done.group(2)), int(done.group(3)), mean


def measure(name, pid, port, body_file, args):
    run_h2load(port, body_file, 2, args.connections, args.streams)  # warm-up
    before = tree_cpu_seconds(pid)
    rps, ok, failed, mean = run_h2load(port, body_file, args.duration, args.connections, args.streams)
    cpu = tree_cpu_seconds(pid) - before
    print(f"{name:12} {rps:10.0f} req/s  mean {mean:>9}  CPU {1e6 * cpu / max(ok, 1):8.1f} us/req  failed {failed}")
    return rps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mlserver", default=os.path.join(os.path.dirname(sys.executable), "mlserver"))
    parser.add_argument("--switchyard", default=os.path.join(ROOT, ".build", "release", "switchyard"))
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--streams", type=int, default=1, help="concurrent streams per connection (h2load -m)")
    parser.add_argument("--workers", type=int, default=1, help="Switchyard workers and MLServer parallel workers")
    parser.add_argument("--port", type=int, default=18750)
    args = parser.parse_args()
    for tool in [args.mlserver, args.switchyard, shutil.which("h2load") or "h2load"]:
        if not os.path.exists(tool):
            sys.exit(f"missing {tool}; see this script's docstring")

    scratch = tempfile.mkdtemp(prefix="bench-mlserver-grpc-")
    message = request_bytes()
    body_file = os.path.join(scratch, "request.bin")
    with open(body_file, "wb") as f:
        f.write(b"\x00" + struct.pack(">I", len(message)) + message)
    cfg = os.path.join(scratch, "sy")
    os.makedirs(os.path.join(cfg, "routes"))
    os.makedirs(os.path.join(cfg, "policies"))
    with open(os.path.join(cfg, "routes", "r.yaml"), "w") as f:
        f.write("routes:\n  - { name: infer, match: { grpc: inference.GRPCInferenceService/ModelInfer, model: churn },"
                " model: churn, protocol: v2-grpc }\n")
    with open(os.path.join(cfg, "policies", "churn.yaml"), "w") as f:
        f.write(f"model: churn\nversions:\n  v3: {{ embedded: xgboost, file: {MODEL} }}\n")
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
        print("switchyard answers", check(args.port, request_bytes()))
        results["switchyard"] = measure("switchyard", sy.pid, args.port, body_file, args)
        sy.send_signal(signal.SIGTERM)
        sy.wait(timeout=20)

        mls = subprocess.Popen([args.mlserver, "start", ml], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        started.append(mls)
        if not wait_port(args.port + 2, timeout=120):
            sys.exit("mlserver did not start")
        time.sleep(3)  # model load
        print("mlserver answers  ", check(args.port + 2, request_bytes()))
        results["mlserver"] = measure("mlserver", mls.pid, args.port + 2, body_file, args)
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
