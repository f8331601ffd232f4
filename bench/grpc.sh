#!/usr/bin/env bash
# gRPC unary ModelInfer through a proxy to a gRPC upstream (SPEC §13): Switchyard (a v2-grpc
# route to a grpc:// version) beside nginx (`grpc_pass`), one worker each pinned to CPU 0, the
# upstream and h2load on CPU 1, in one run: requests/s, mean latency, proxy CPU µs per request.
# The upstream is Switchyard itself answering from the embedded churn XGBoost model (1 worker):
# the same for both proxies; `direct` is h2load against it with no proxy.
#
#   bench/grpc.sh [-d SECONDS] [-c CONNECTIONS] [-r ROUNDS]
# Needs: apt-get install -y nginx nghttp2-client; python3 with grpcio-tools (scripts/test-venv
# makes /tmp/switchyard-test-venv, whose python builds the request message).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/common.sh
D=8; C=32; R=2
while getopts d:c:r: o; do case $o in d) D=$OPTARG;; c) C=$OPTARG;; r) R=$OPTARG;; *) exit 2;; esac; done
swift build -c release --product switchyard >&2
BIN=$PWD/.build/release/switchyard
scripts/test-venv >/dev/null
PY=/tmp/switchyard-test-venv/bin/python3
RUN=$(mktemp -d /tmp/sy-grpc.XXXXXX)
trap cleanup EXIT
UP=18801; SY=18802; NG=18803
MODEL=$PWD/examples/models/churn-xgb-v3.json
mkdir -p "$RUN/up/routes" "$RUN/up/policies" "$RUN/sy/routes" "$RUN/sy/policies" "$RUN/ng/logs"
ROUTE='routes:\n  - { name: infer, match: { grpc: inference.GRPCInferenceService/ModelInfer, model: churn }, model: churn, protocol: v2-grpc }\n'
printf "$ROUTE" > "$RUN/up/routes/r.yaml"; printf "$ROUTE" > "$RUN/sy/routes/r.yaml"
printf 'model: churn\nversions:\n  v3: { embedded: xgboost, file: %s }\n' "$MODEL" > "$RUN/up/policies/churn.yaml"
printf 'model: churn\nversions:\n  remote: { url: "grpc://127.0.0.1:%s" }\n' $UP > "$RUN/sy/policies/churn.yaml"
cat > "$RUN/ng/nginx.conf" <<NGINX
worker_processes 1;
error_log $RUN/ng/logs/error.log warn;
pid $RUN/ng/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  upstream model { server 127.0.0.1:$UP; keepalive 16; }
  server { listen 127.0.0.1:$NG http2; location / { grpc_pass grpc://model; } }
}
NGINX
# One ModelInferRequest (FP32 [1, 4]), framed: flag 0, 4-byte big-endian length.
"$PY" - "$RUN/request.bin" <<'PY'
import struct, sys
from tritonclient.grpc import service_pb2 as pb
t = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP32", shape=[1, 4])
t.contents.fp32_contents.extend([12, 73.36, 2, 1])
m = pb.ModelInferRequest(model_name="churn", inputs=[t]).SerializeToString()
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(m)) + m)
PY
start upstream 1 "$BIN" serve --config "$RUN/up" --listen 127.0.0.1:$UP --admin 127.0.0.1:$((UP + 100)) --workers 1 --log-level warning
start switchyard 0 "$BIN" serve --config "$RUN/sy" --listen 127.0.0.1:$SY --admin 127.0.0.1:$((SY + 100)) --workers 1 --log-level warning
start nginx 0 nginx -p "$RUN/ng" -c "$RUN/ng/nginx.conf" -g 'daemon off;'
wait_port $UP; wait_port $SY; wait_port $NG
cpu() {  # user+system ticks of a process and its threads/children
  awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"
}
load() {  # load PORT SECONDS -> "req/s succeeded failed mean"
  taskset -c 1 h2load -t1 -c"$C" -m1 -D"$2" -d "$RUN/request.bin" -H 'content-type: application/grpc' \
    -H 'te: trailers' "http://127.0.0.1:$1/inference.GRPCInferenceService/ModelInfer" | awk '
    /finished in/ { gsub(",", ""); rps = $4 }
    /^requests:/ { ok = $8; failed = $10 }
    /time for request:/ { mean = $5 }
    END { print rps, ok, failed, mean }'
}
TICK=$(getconf CLK_TCK)
printf '%-10s %-6s %10s %10s %8s %10s %14s\n' setup round req/s succeeded failed mean "proxy CPU us/req"
for r in $(seq 1 "$R"); do
  for s in direct switchyard nginx; do
    case $s in direct) port=$UP; pid=${MAINPID[upstream]};; switchyard) port=$SY; pid=${MAINPID[switchyard]};; nginx) port=$NG; pid=$(pgrep -P "${MAINPID[nginx]}" | head -1);; esac
    load $port 2 >/dev/null   # warm-up
    before=$(cpu "$pid")
    read -r rps ok failed mean <<<"$(load $port "$D")"
    after=$(cpu "$pid")
    us=$(awk -v a="$after" -v b="$before" -v n="$ok" -v t="$TICK" 'BEGIN { printf "%.1f", (a - b) / t * 1e6 / n }')
    printf '%-10s %-6s %10s %10s %8s %10s %14s\n' "$s" "$r" "$rps" "$ok" "$failed" "$mean" "$us"
  done
done
