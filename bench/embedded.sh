#!/usr/bin/env bash
# An embedded prediction end to end against the cheapest possible answer (issue 14 item 3: at
# most 1.3x its CPU per request), in one bench/peers.sh -p split run (proxy pinned to CPU 0, the
# upstream and wrk to CPU 1):
#   direct       shared/bench's C upstream_epoll answered by wrk itself: a fixed answer after
#                one recv and one send, no work at all (peers.sh reports the upstream's CPU)
#   sy-tfserving Switchyard (1 worker) answering a TF Serving `:predict` body from the churn
#                XGBoost model evaluated in the sidecar (bench/embedded-config.tmpl)
#   sy-v2        the same model for an Open Inference Protocol v2 `/infer` body
# One row each (4 named features, the model's own), the bodies below. Prints peers.sh's table,
# then req/s, CPU µs per request and the ratio to direct's CPU (medians of clean rounds).
#
#   bench/embedded.sh                 # 3 rounds of 5 s at 32 connections
#   bench/embedded.sh -r 5 -d 8       # extra arguments go to peers.sh
# Needs: apt-get install -y nginx haproxy wrk gcc; python3.
#
# peers.sh always drives wrk with its own post.lua (a body for a proxied `m` model). To send the
# model's bodies, `wrk` is found first on PATH in a scratch folder: a wrapper that swaps the
# `-s` script for the one belonging to the target port and runs the real wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-../shared/bench/peers.sh}
[ -x "$PEERS" ] || { echo "peers.sh not found at $PEERS (set PEERS=...)" >&2; exit 2; }
T=$PWD/bench/embedded-config.tmpl
cmp -s "$T/models/churn-xgb-v3.json" examples/models/churn-xgb-v3.json ||
  { echo "$T/models/churn-xgb-v3.json differs from examples/models/churn-xgb-v3.json: copy it again" >&2; exit 2; }
REAL_WRK=$(command -v wrk) || { echo "missing wrk: apt-get install -y wrk" >&2; exit 2; }
swift build -c release --product switchyard >&2
BIN=$PWD/.build/release/switchyard

TF_PATH=/v1/models/churn:predict
TF_BODY='{"instances":[{"tenure_months":12,"monthly_charges":73.36,"support_calls":2,"contract_months":1}]}'
V2_PATH=/v2/models/churn/infer
V2_BODY='{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","data":[12,73.36,2,1]}]}'

# peers.sh's ports: BASE (-b, default 18080) + 20, 21, ... for the -x setups in order.
BASE=18080
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = -b ] && BASE=${args[$((i + 1))]}
done
TF_PORT=$((BASE + 20)); V2_PORT=$((BASE + 21))

W=$(mktemp -d /tmp/bench-embedded.XXXXXX)
trap '[ -z "${KEEP:-}" ] && rm -rf "$W"' EXIT
lua() {  # lua PATH BODY : a wrk script posting BODY to PATH
  printf 'wrk.method = "POST"\nwrk.path = "%s"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[%s]]\n' "$1" "$2"
}
lua "$TF_PATH" "$TF_BODY" >"$W/tfserving.lua"
lua "$V2_PATH" "$V2_BODY" >"$W/v2.lua"
# direct (and any other port) gets the TF Serving body: the upstream reads and drops it.
cat >"$W/wrk" <<EOF
#!/usr/bin/env bash
a=("\$@")
case "\${a[\$((\${#a[@]} - 1))]}" in
  *:$V2_PORT/*) s=$W/v2.lua;;
  *) s=$W/tfserving.lua;;
esac
for ((i = 0; i < \${#a[@]}; i++)); do [ "\${a[\$i]}" = -s ] && a[\$((i + 1))]=\$s; done
exec $REAL_WRK "\${a[@]}"
EOF
chmod +x "$W/wrk"

# Every setup must answer the model's prediction before anything is measured.
check() {  # check PORT PATH BODY
  local out
  out=$(curl -s -m 5 -H 'Content-Type: application/json' -d "$3" "http://127.0.0.1:$1$2") || true
  grep -q '"predictions"\|"outputs"' <<<"$out" || { echo "setup on port $1 answered: $out" >&2; return 1; }
}

S="$BIN serve --config @RUN@/cfg --listen 127.0.0.1:@PORT@ --admin 127.0.0.1:@ADMINPORT@ --workers 1 --log-level warning --config-poll-ms 0"
OUT=$W/results
mkdir -p "$OUT"
PATH="$W:$PATH" "$PEERS" -p split -d 5 -r 3 -c 32 -s "direct" -o "$OUT" \
  -e "mkdir -p @RUN@/cfg && cp -r $T/. @RUN@/cfg/" \
  -x "sy-tfserving=$S" \
  -x "sy-v2=$S" \
  "$@" &
PEERS_PID=$!
# Check both Switchyard setups while peers.sh warms up (its own wait gives them time to listen).
for _ in $(seq 1 200); do
  (exec 3<>/dev/tcp/127.0.0.1/$V2_PORT) 2>/dev/null && break
  sleep 0.1
done
check $TF_PORT $TF_PATH "$TF_BODY" && check $V2_PORT $V2_PATH "$V2_BODY" || { kill $PEERS_PID; exit 1; }
wait $PEERS_PID

echo
echo "## embedded prediction against the fixed-answer upstream (CPU per request, same run)"
python3 - "$OUT/runs.tsv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
order, by = [], {}
for r in rows:
    key = (r["setup"], r["conns"])
    if key not in by:
        order.append(key)
        by[key] = []
    by[key].append(r)
def med(rs, col):
    clean = [r for r in rs if r["noisy"] == "0"] or rs
    return statistics.median(float(r[col]) for r in clean)
print("| setup | conns | req/s | p99 ms | CPU µs/req | vs direct |")
print("|---|---:|---:|---:|---:|---:|")
for setup, conns in order:
    rs = by[(setup, conns)]
    base = by.get(("direct", conns))
    cpu = med(rs, "proxy_us_per_req")
    ratio = f"{cpu / med(base, 'proxy_us_per_req'):.2f}x" if base else "—"
    print(f"| {setup} | {conns} | {med(rs, 'rps'):.0f} | {med(rs, 'p99_ms'):.2f} | {cpu:.2f} | {ratio} |")
EOF
