#!/usr/bin/env bash
# Memory with many readers that stop reading (issue "Overload and slow peers"): N clients each
# ask for a large answer (5 MB by default) through Switchyard and never read it. Prints the
# sidecar's RSS idle, while the clients hold their answers, and after they have gone.
#
#   bench/slowpeers.sh                 # 1000 readers, 5 MB answers, json route (streamed)
#   bench/slowpeers.sh -n 200 -b 5000000 -p tfserving   # a typed route reads answers whole
#
# Needs gcc and python3. Binds 127.0.0.1 only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
READERS=1000
BYTES=5000000
PROTOCOL=json
HOLD=5
while getopts "n:b:p:t:" opt; do
  case $opt in
    n) READERS=$OPTARG ;;
    b) BYTES=$OPTARG ;;
    p) PROTOCOL=$OPTARG ;;
    t) HOLD=$OPTARG ;;
    *) exit 2 ;;
  esac
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
swift build -c release --product switchyard >&2
BIN=$PWD/.build/release/switchyard
RUN=$(mktemp -d /tmp/bench-slowpeers.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT
gcc -O2 -o "$RUN/big_upstream" bench/c/big_upstream.c -lpthread
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port)
PORT=$(free_port)
ADMIN=$(free_port)
"$RUN/big_upstream" "$UP" "$BYTES" >/dev/null 2>&1 &
PIDS+=($!)
mkdir -p "$RUN/cfg/routes" "$RUN/cfg/policies"
cat > "$RUN/cfg/routes/r.yaml" <<YAML
routes:
  - name: big
    match: { prefix: /big }
    model: m
    protocol: $PROTOCOL
YAML
cat > "$RUN/cfg/policies/m.yaml" <<YAML
model: m
versions:
  v1: { url: "http://127.0.0.1:$UP", timeout_ms: 30000, max_connections: 4096 }
YAML
"$BIN" serve --config "$RUN/cfg" --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" --workers 1 \
  --send-timeout-ms 600000 --max-response-bytes $((BYTES + 1024)) --log-level warning &
SY=$!
PIDS+=($SY)
for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$ADMIN/readyz" && break; sleep 0.1; done
rss() { awk '/VmRSS/ { print $2 }' "/proc/$SY/status"; }
IDLE=$(rss)
python3 - "$PORT" "$READERS" "$HOLD" "$SY" <<'PY' > "$RUN/during"
import socket, sys, time
port, readers, hold, pid = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1])
conns = []
for i in range(readers):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
    conns.append(s)
peak = 0
end = time.time() + hold
while time.time() < end:
    peak = max(peak, rss()); time.sleep(0.1)
print(peak)
for s in conns: s.close()
PY
sleep 3
AFTER=$(rss)
DURING=$(cat "$RUN/during")
CUT=$(curl -s "127.0.0.1:$ADMIN/metrics" | awk '/^switchyard_streams_cut_total/ { s += $2 } END { print s + 0 }')
printf '| readers | answer | route | RSS idle | RSS while held (max) | RSS 3 s after they left | streams cut |\n'
printf '|---|---|---|---|---|---|---|\n'
printf '| %s | %s B | %s | %.1f MiB | %.1f MiB (+%.1f) | %.1f MiB | %s |\n' "$READERS" "$BYTES" "$PROTOCOL" \
  "$(echo "$IDLE/1024" | bc -l)" "$(echo "$DURING/1024" | bc -l)" "$(echo "($DURING-$IDLE)/1024" | bc -l)" \
  "$(echo "$AFTER/1024" | bc -l)" "$CUT"
