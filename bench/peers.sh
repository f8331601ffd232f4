#!/usr/bin/env bash
# Switchyard beside nginx and HAProxy, proxying the same fast upstream, in one run
# (../shared/bench/peers.sh starts the peers, the upstream and wrk, and prints the table).
#
#   bench/peers.sh                 # 2-worker setups, 32 and 128 connections, 3 rounds of 5 s
#   bench/peers.sh -p split -s "nginx1 haproxy1"   # 1 worker each, proxy pinned to CPU 0
#
# `floorN` is bench/floor/floor_proxy (N threads): bytes relayed with the same four system calls
# per request and no HTTP work, the kernel's share of any proxy's cost (see bench/floor/README.md).
# Extra arguments go to peers.sh. Needs: apt-get install -y nginx haproxy wrk gcc.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-../shared/bench/peers.sh}
[ -x "$PEERS" ] || { echo "peers.sh not found at $PEERS (set PEERS=...)" >&2; exit 2; }
swift build -c release --product switchyard >&2
BIN=$PWD/.build/release/switchyard
FLOOR=$PWD/.build/floor_proxy
gcc -O2 -Wall -o "$FLOOR" bench/floor/floor_proxy.c -lpthread
WORKERS=2
SETUPS="nginx2 haproxy2"
for a in "$@"; do [ "$a" = split ] && { WORKERS=1; SETUPS="nginx1 haproxy1"; }; done
exec "$PEERS" -d 5 -r 3 -c "32 128" -s "direct $SETUPS" \
  -e "mkdir -p @RUN@/cfg && cp -r $PWD/bench/proxy-config.tmpl/. @RUN@/cfg/ && sed -i s/UPSTREAM/@UPSTREAM@/ @RUN@/cfg/policies/m.yaml" \
  -x "floor$WORKERS=$FLOOR @PORT@ @UPSTREAM@ 0 $WORKERS" \
  -x "switchyard=$BIN serve --config @RUN@/cfg --listen 127.0.0.1:@PORT@ --admin 127.0.0.1:@ADMINPORT@ --workers $WORKERS --log-level warning" \
  "$@"
