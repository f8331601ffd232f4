#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind (all threads of the proxy:
# workers, the access log's writer, the trace exporter): a figure that the load of a shared
# machine does not move, to read beside the CPU µs of bench/observability.sh.
#
#   bench/instructions.sh                      # the five setups of bench/observability.sh
#   bench/instructions.sh "" "--access-log /tmp/a.log"    # or any list of extra `serve` flags
#
# Environment: PORT_BASE (default 18600; ports PORT_BASE+1.. are used, so that two runs can go
# side by side), CONFIG (a config folder to copy instead of bench/proxy-config.tmpl; UPSTREAM and
# SHADOW in its policies are replaced by the two fast upstreams' ports), LOAD (extra sockload
# flags: `-p PATH -b BODY` for another request).
#
# For each setup: the release binary runs under `valgrind --tool=callgrind --instr-atstart=no`
# (a `strip --strip-debug` copy; 1 worker), a warm-up of 2 s fills the pools, then instrumentation is switched on for a fixed
# 10 s load from bench/c/sockload.c (8 connections) and off again; instructions / requests.
# Needs: valgrind, gcc, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/common.sh
swift build -c release --product switchyard >&2
RUN=$(mktemp -d /tmp/sy-instr.XXXXXX)
trap cleanup EXIT
gcc -O2 -o "$RUN/sockload" bench/c/sockload.c
# Valgrind 3.19 cannot read Swift 6's DWARF 5: a copy without debug info, symbols kept.
cp .build/release/switchyard "$RUN/switchyard" && strip --strip-debug "$RUN/switchyard"
make -s -C ../shared/bench/c upstream_epoll >&2 || true
BASE=${PORT_BASE:-18600}
UP=$((BASE + 1)); SINK=$((BASE + 2)); SHADOW=$((BASE + 3)); PORT=$((BASE + 10)); ADMIN=$((BASE + 11))
CONFIG=${CONFIG:-bench/proxy-config.tmpl}
LOAD=${LOAD:-}
start upstream 1 ../shared/bench/c/upstream_epoll $UP 1
start shadow-upstream 1 ../shared/bench/c/upstream_epoll $SHADOW 1
start sink 1 python3 bench/otlp-sink.py --port $SINK
mkdir -p "$RUN/cfg" && cp -r "$CONFIG"/. "$RUN/cfg/"
find "$RUN/cfg" -name '*.yaml' -exec sed -i "s/UPSTREAM/$UP/; s/SHADOW/$SHADOW/" {} +
wait_port $UP; wait_port $SINK; wait_port $SHADOW
if [ $# -eq 0 ]; then
  set -- "" "--access-log $RUN/access.json" "--access-log $RUN/access.text --access-log-format text" \
    "--otlp-endpoint http://127.0.0.1:$SINK --trace-sample-ratio 0.01" \
    "--otlp-endpoint http://127.0.0.1:$SINK --trace-sample-ratio 1"
fi
for flags in "$@"; do
  out="$RUN/callgrind.$PORT.out"
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$RUN/switchyard" serve --config "$RUN/cfg" --listen 127.0.0.1:$PORT --admin 127.0.0.1:$ADMIN \
    --workers 1 --log-level warning --config-poll-ms 0 $flags >"$RUN/sy.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
  # shellcheck disable=SC2086
  "$RUN/sockload" -c 8 -d 2 $LOAD 127.0.0.1:$PORT >/dev/null
  callgrind_control -i on $pid >/dev/null
  # shellcheck disable=SC2086
  line=$("$RUN/sockload" -c 8 -d 10 $LOAD 127.0.0.1:$PORT)
  callgrind_control -i off $pid >/dev/null
  sleep 1   # the exporter's and the log writer's last batch of the measured requests
  kill -TERM $pid; wait $pid || true
  requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
  instr=$(callgrind_annotate "$out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
  printf '%-75s requests=%-7s instructions/request=%s\n' "serve ${flags:-(no flags)}" "$requests" \
    "$(( instr / requests ))"
  PORT=$((PORT + 2)); ADMIN=$((ADMIN + 2))
done
