#!/usr/bin/env bash
# Unix domain socket listeners (SPEC §12), in one run: the same fast plain upstream
# (shared/bench's upstream_epoll, TCP) behind
#   sy-tcp, sy-unix        one Switchyard process listening on both (--listen 127.0.0.1:P
#                          --listen unix:SOCK), driven once over each
#   nginx-tcp, nginx-unix  one nginx process with `listen 127.0.0.1:P` and `listen unix:SOCK`
#   floor-tcp              bench/floor/floor_proxy over TCP (the kernel's share, no HTTP work)
#   direct-tcp             the upstream itself
# 1 worker each. wrk cannot open unix: sockets, so every setup is driven by bench/c/sockload
# (one thread, epoll, N keep-alive connections, the same ~200-byte JSON POST as wrk/post.lua,
# compiled by this script). Per setup: req/s, p50/p99 and the server's CPU µs per request
# (utime+stime from /proc over the run / requests), setups in rotating order per round.
#
#   bench/unix.sh [-d SECS] [-c CONNS] [-r REPS] [-p split|none] [-S "SETUPS"] [-b BASEPORT]
#     defaults: -d 5 -c 32 -r 2 -p split (proxy on CPU 0, upstream and the client on CPU 1)
# Needs: swift, gcc, nginx.  KEEP=1 keeps the scratch folder.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/lib/common.sh
DUR=5; CONNS=32; REPS=2; PIN=split; BASE=18500
SETUPS="direct-tcp floor-tcp sy-tcp sy-unix nginx-tcp nginx-unix"
while getopts "d:c:r:p:S:b:h" o; do
  case $o in
    d) DUR=$OPTARG;; c) CONNS=$OPTARG;; r) REPS=$OPTARG;; p) PIN=$OPTARG;; S) SETUPS=$OPTARG;; b) BASE=$OPTARG;;
    *) sed -n '2,17p' "$0"; exit 2;;
  esac
done
need gcc nginx swift python3
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench}
[ -r "$PEERS_DIR/c/upstream_epoll.c" ] || { echo "missing $PEERS_DIR/c/upstream_epoll.c (set PEERS_DIR=...)" >&2; exit 2; }
PROXY_CPUS=""; UP_CPUS=""; CLIENT_CPUS=""
case $PIN in none) ;; split) PROXY_CPUS=0; UP_CPUS=1; CLIENT_CPUS=1;; *) echo "bad -p" >&2; exit 2;; esac
RUN=$(mktemp -d /tmp/bench-unix.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM

swift build -c release --product switchyard >&2
BIN=$ROOT/.build/release/switchyard
mkdir -p .build/bench
gcc -O2 -Wall -o .build/bench/sockload bench/c/sockload.c
gcc -O2 -Wall -o .build/bench/upstream_epoll "$PEERS_DIR/c/upstream_epoll.c" -lpthread
gcc -O2 -Wall -o .build/floor_proxy bench/floor/floor_proxy.c -lpthread
LOAD=$ROOT/.build/bench/sockload

UP=$((BASE + 1))
SY_TCP=$((BASE + 10)); NGX_TCP=$((BASE + 11)); FLOOR_TCP=$((BASE + 12))
SY_SOCK=$RUN/sy.sock; NGX_SOCK=$RUN/nginx.sock
declare -A TARGET=([direct-tcp]=127.0.0.1:$UP [floor-tcp]=127.0.0.1:$FLOOR_TCP [sy-tcp]=127.0.0.1:$SY_TCP
  [sy-unix]=unix:$SY_SOCK [nginx-tcp]=127.0.0.1:$NGX_TCP [nginx-unix]=unix:$NGX_SOCK)

start upstream "$UP_CPUS" .build/bench/upstream_epoll "$UP" 1
wait_port "$UP"

mkdir -p "$RUN/sy"
cp -r bench/proxy-config.tmpl/. "$RUN/sy/"
sed -i "s/UPSTREAM/$UP/" "$RUN/sy/policies/m.yaml"
start switchyard "$PROXY_CPUS" "$BIN" serve --config "$RUN/sy" --listen "127.0.0.1:$SY_TCP" --listen "unix:$SY_SOCK" \
  --admin "127.0.0.1:$((SY_TCP + 100))" --workers 1 --log-level warning

{ nginx_prelude nginx 1; cat <<EOF
    upstream model { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NGX_TCP;
        listen unix:$NGX_SOCK;
        location / {
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$RUN/nginx.conf"
start nginx "$PROXY_CPUS" nginx -p "$RUN" -e "$RUN/nginx.startup.log" -c "$RUN/nginx.conf"
start floor "$PROXY_CPUS" .build/floor_proxy "$FLOOR_TCP" "$UP" 0 1
declare -A PID_OF=([direct-tcp]=upstream [floor-tcp]=floor [sy-tcp]=switchyard [sy-unix]=switchyard
  [nginx-tcp]=nginx [nginx-unix]=nginx)
for p in $SY_TCP $NGX_TCP $FLOOR_TCP; do wait_port "$p" || { for f in "$RUN"/*.log; do echo "== $f"; tail -n 5 "$f"; done >&2; exit 1; }; done
wait_sock "$SY_SOCK"; wait_sock "$NGX_SOCK"

pin() { local cpus=$1; shift; if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi; }

for s in $SETUPS; do  # warm-up, and every setup must answer 200 without errors
  out=$(pin "$CLIENT_CPUS" "$LOAD" -c "$CONNS" -d 1 "${TARGET[$s]}")
  [[ $out == *" errors=0 non2xx=0" && $out != requests=0* ]] || { echo "$s: $out" >&2; exit 1; }
done

TSV=$RUN/unix.tsv
: >"$TSV"
read -r -a arr <<<"$SETUPS"; n=${#arr[@]}
for ((rep = 0; rep < REPS; rep++)); do
  for ((i = 0; i < n; i++)); do
    s=${arr[$(((i + rep) % n))]}
    pid=${MAINPID[${PID_OF[$s]}]}
    c0=$(cpu_ticks "$pid")
    out=$(pin "$CLIENT_CPUS" "$LOAD" -c "$CONNS" -d "$DUR" "${TARGET[$s]}")
    c1=$(cpu_ticks "$pid")
    eval "$(tr ' ' '\n' <<<"$out" | sed 's/^/L_/')"
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$s" "$rep" "$L_rps" "$L_p50_ms" "$L_p99_ms" "$((L_errors + L_non2xx))" "$L_requests" "$((c1 - c0))" >>"$TSV"
    printf "rep%d %-11s %s cpu=%s ticks\n" "$rep" "$s" "$out" "$((c1 - c0))" >&2
  done
done

echo
echo "## unix: sockload -c$CONNS -d${DUR}s, $REPS round(s), medians, $PIN pinning, 1 worker each ($(date -u +%F))"
echo
python3 - "$TSV" <<'EOF'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
order, by = [], {}
for s, rep, rps, p50, p99, errs, reqs, ticks in rows:
    if s not in by: by[s] = []; order.append(s)
    us = int(ticks) * 10000 / int(reqs) if int(reqs) else float("nan")
    by[s].append((float(rps), float(p50), float(p99), us, int(errs)))
print("| setup | req/s | p50 ms | p99 ms | CPU µs/req | errors |")
print("|---|---:|---:|---:|---:|---:|")
for s in order:
    v = by[s]
    med = lambda i: st.median(x[i] for x in v)
    what = " (upstream's own)" if s.startswith("direct") else ""
    print(f"| {s} | {med(0):.0f} | {med(1):.2f} | {med(2):.2f} | {med(3):.1f}{what} | {sum(x[4] for x in v)} |")
EOF
