#!/usr/bin/env bash
# nginx's user-space instructions per proxied request, counted the way bench/instructions.sh
# counts Switchyard's: one worker process (`master_process off`) under
# `valgrind --tool=callgrind --instr-atstart=no`, a 2 s warm-up, then instrumentation on around a
# 10 s load of bench/c/sockload.c (8 connections, the benchmark's request) to the same fast
# upstream, with shared/bench's nginx.conf (keep-alive to the upstream, access log off).
#
#   bench/instructions-nginx.sh          # PORT_BASE (default 18650) and LOAD as in bench/instructions.sh
# Needs: valgrind, gcc, nginx. nginx's own binary has no debug info; counts are whole-process.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib/common.sh
RUN=$(mktemp -d /tmp/sy-instr-nginx.XXXXXX)
trap cleanup EXIT
gcc -O2 -o "$RUN/sockload" bench/c/sockload.c
make -s -C ../shared/bench/c upstream_epoll >&2 || true
BASE=${PORT_BASE:-18650}
UP=$((BASE + 1)); PORT=$((BASE + 10))
start upstream 1 ../shared/bench/c/upstream_epoll $UP 1
mkdir -p "$RUN/nginx"
sed -e "s/@WORKERS@/1/; s/@PORT@/$PORT/g; s/@UPSTREAM@/$UP/; s/@SHADOW@/$UP/; s#@RUNDIR@#$RUN#g; s/@MIRROR@//" \
  -e "s/master_process on;/master_process off;/" ../shared/bench/conf/nginx.conf.tmpl >"$RUN/nginx.conf"
wait_port $UP
out="$RUN/callgrind.nginx.out"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
  nginx -p "$RUN/nginx" -e "$RUN/startup.log" -c "$RUN/nginx.conf" >"$RUN/nginx.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
LOAD=${LOAD:-}
# shellcheck disable=SC2086
"$RUN/sockload" -c 8 -d 2 $LOAD 127.0.0.1:$PORT >/dev/null
callgrind_control -i on $pid >/dev/null
# shellcheck disable=SC2086
line=$("$RUN/sockload" -c 8 -d 10 $LOAD 127.0.0.1:$PORT)
callgrind_control -i off $pid >/dev/null
kill -TERM $pid; wait $pid || true
requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
instr=$(callgrind_annotate "$out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
printf '%-75s requests=%-7s instructions/request=%s\n' "nginx (1 worker)" "$requests" "$(( instr / requests ))"
