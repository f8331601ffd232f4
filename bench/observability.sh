#!/usr/bin/env bash
# What the access log and tracing cost per request (issue: at most 10 % more CPU each), in one
# run beside plain Switchyard: bench/peers.sh -p split (1 worker, proxy pinned to CPU 0, the
# upstream and wrk on CPU 1) with five Switchyard setups:
#   switchyard           no access log, no tracing
#   sy-access-json       --access-log FILE (JSON lines, written by the log's own thread)
#   sy-access-text       --access-log FILE --access-log-format text
#   sy-trace1            --otlp-endpoint to bench/otlp-sink.py, --trace-sample-ratio 0.01
#   sy-trace100          the same, every request sampled
# The do-nothing OTLP collector runs on CPU 1 so that its work is not counted as the proxy's;
# the exporter thread is the proxy's own, so encoding and sending are counted.
#
#   bench/observability.sh                 # 3 rounds of 5 s at 32 connections
#   bench/observability.sh -r 5 -d 8       # extra arguments go to peers.sh
# Needs: apt-get install -y nginx haproxy wrk gcc; python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-../shared/bench/peers.sh}
[ -x "$PEERS" ] || { echo "peers.sh not found at $PEERS (set PEERS=...)" >&2; exit 2; }
swift build -c release --product switchyard >&2
BIN=$PWD/.build/release/switchyard
SINK_PORT=${SINK_PORT:-4318}
taskset -c 1 python3 bench/otlp-sink.py --port "$SINK_PORT" &
SINK=$!
trap 'kill -INT $SINK 2>/dev/null || true; wait $SINK 2>/dev/null || true' EXIT
S="$BIN serve --config @RUN@/cfg --listen 127.0.0.1:@PORT@ --admin 127.0.0.1:@ADMINPORT@ --workers 1 --log-level warning"
T="$S --otlp-endpoint http://127.0.0.1:$SINK_PORT"
"$PEERS" -p split -d 5 -r 3 -c 32 -s "direct" \
  -e "mkdir -p @RUN@/cfg && cp -r $PWD/bench/proxy-config.tmpl/. @RUN@/cfg/ && sed -i s/UPSTREAM/@UPSTREAM@/ @RUN@/cfg/policies/m.yaml" \
  -x "switchyard=$S" \
  -x "sy-access-json=$S --access-log @RUN@/access.json.log" \
  -x "sy-access-text=$S --access-log @RUN@/access.text.log --access-log-format text" \
  -x "sy-trace1=$T --trace-sample-ratio 0.01" \
  -x "sy-trace100=$T --trace-sample-ratio 1" \
  "$@"
