#!/usr/bin/env bash
# Shadow traffic cost, in one run: Switchyard without a shadow, with a 100 % shadow to a fast
# second upstream, and with a 100 % shadow to an upstream that answers after 2 s, beside nginx
# with its `mirror` module copying every request to the same fast shadow upstream, and beside
# bench/floor/floor_proxy with and without a shadow copy (the system calls alone, no HTTP work).
# Proxies pinned to CPU 0, upstreams and wrk to CPU 1 (1 worker each): CPU per request and
# p99 are the figures to read.
#
#   bench/shadow.sh [-r 3] [-d 5]        (extra arguments go to ../shared/bench/peers.sh)
# Needs: apt-get install -y nginx haproxy wrk gcc; python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-../shared/bench/peers.sh}
[ -x "$PEERS" ] || { echo "peers.sh not found at $PEERS (set PEERS=...)" >&2; exit 2; }
swift build -c release --product switchyard >&2
BIN=$PWD/.build/release/switchyard
FLOOR=$PWD/.build/floor_proxy
gcc -O2 -Wall -o "$FLOOR" bench/floor/floor_proxy.c -lpthread
SLOW_PORT=${SLOW_PORT:-18095}
python3 bench/slow_upstream.py "$SLOW_PORT" 2 &
SLOW_PID=$!
trap 'kill $SLOW_PID 2>/dev/null' EXIT
T=$PWD/bench
"$PEERS" -p split -d 5 -r 3 -c "32" -s "nginx1 nginx1-mirror" \
  -e "mkdir -p @RUN@/plain @RUN@/shadow @RUN@/slow && cp -r $T/proxy-config.tmpl/. @RUN@/plain/ && cp -r $T/shadow-config.tmpl/. @RUN@/shadow/ && cp -r $T/shadow-config.tmpl/. @RUN@/slow/ && sed -i s/UPSTREAM/@UPSTREAM@/ @RUN@/plain/policies/m.yaml @RUN@/shadow/policies/m.yaml @RUN@/slow/policies/m.yaml && sed -i s/SHADOW/@SHADOW@/ @RUN@/shadow/policies/m.yaml && sed -i s/SHADOW/$SLOW_PORT/ @RUN@/slow/policies/m.yaml" \
  -x "floor1=$FLOOR @PORT@ @UPSTREAM@ 0 1" \
  -x "floor1-shadow=$FLOOR @PORT@ @UPSTREAM@ @SHADOW@ 1" \
  -x "sy-noshadow=$BIN serve --config @RUN@/plain --listen 127.0.0.1:@PORT@ --admin 127.0.0.1:@ADMINPORT@ --workers 1 --log-level warning" \
  -x "sy-shadow=$BIN serve --config @RUN@/shadow --listen 127.0.0.1:@PORT@ --admin 127.0.0.1:@ADMINPORT@ --workers 1 --log-level warning" \
  -x "sy-slowshadow=$BIN serve --config @RUN@/slow --listen 127.0.0.1:@PORT@ --admin 127.0.0.1:@ADMINPORT@ --workers 1 --log-level warning" \
  "$@"
