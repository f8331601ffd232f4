#!/usr/bin/env bash
# TLS to backends (SPEC §11), in one run: a TLS "model server" (nginx, 1 worker, HTTPS on a
# loopback port with a certificate signed by a CA the script makes with the openssl CLI;
# `return 200` of a small fixed JSON body; the same server also listens in plain HTTP) and in
# front of it, 1 worker each:
#   sy-https     Switchyard, version url "https://127.0.0.1:PORT", tls: { ca_file: CA }
#   nginx-https  nginx, proxy_pass https:// to an `upstream { keepalive 64; }`,
#                proxy_ssl_session_reuse on, proxy_ssl_verify on (same CA), HTTP/1.1, Connection ""
#   sy-http, nginx-http   the same two proxies to the same server's plain-HTTP port (what TLS adds)
#   direct-https `wrk` to the TLS server itself (its own cost, for reference)
# `wrk -t1` with shared/bench's ~200-byte JSON POST, same connections and duration for every
# setup, setups in rotating order per round; per setup: req/s, p50/p99 and the proxy's CPU µs per
# request (utime+stime of its processes from /proc over the run / requests).
#
#   bench/tls.sh [-d SECS] [-c CONNS] [-r REPS] [-p split|none] [-S "SETUPS"] [-b BASEPORT]
#     defaults: -d 5 -c 32 -r 2 -p split (proxy on CPU 0, TLS server and wrk on CPU 1)
# Needs: swift, gcc, nginx, wrk, openssl.  KEEP=1 keeps the scratch folder.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/lib/common.sh
DUR=5; CONNS=32; REPS=2; PIN=split; BASE=18400
SETUPS="direct-https sy-https nginx-https sy-http nginx-http"
while getopts "d:c:r:p:S:b:h" o; do
  case $o in
    d) DUR=$OPTARG;; c) CONNS=$OPTARG;; r) REPS=$OPTARG;; p) PIN=$OPTARG;; S) SETUPS=$OPTARG;; b) BASE=$OPTARG;;
    *) sed -n '2,18p' "$0"; exit 2;;
  esac
done
need nginx wrk openssl swift python3
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench}
LUA=$PEERS_DIR/wrk/post.lua
[ -r "$LUA" ] || { echo "missing $LUA (set PEERS_DIR=...)" >&2; exit 2; }
PROXY_CPUS=""; UP_CPUS=""; WRK_CPUS=""
case $PIN in none) ;; split) PROXY_CPUS=0; UP_CPUS=1; WRK_CPUS=1;; *) echo "bad -p" >&2; exit 2;; esac
RUN=$(mktemp -d /tmp/bench-tls.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM

swift build -c release --product switchyard >&2
BIN=$ROOT/.build/release/switchyard

# A CA and a server certificate for 127.0.0.1 / localhost, signed by it (EC P-256).
(
  cd "$RUN"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr 2>/dev/null
  printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" >ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
    -out server.pem 2>/dev/null
)

UP_TLS=$((BASE + 1)); UP_HTTP=$((BASE + 2))
declare -A PORT=([direct-https]=$UP_TLS [sy-https]=$((BASE + 10)) [nginx-https]=$((BASE + 11))
  [sy-http]=$((BASE + 12)) [nginx-http]=$((BASE + 13)))
declare -A SCHEME=([direct-https]=https)

# The TLS model server.
{ nginx_prelude upstream 1; cat <<EOF
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:up:10m;
    server {
        listen 127.0.0.1:$UP_TLS ssl reuseport;
        listen 127.0.0.1:$UP_HTTP reuseport;
        ssl_certificate $RUN/server.pem;
        ssl_certificate_key $RUN/server.key;
        location / {
            default_type application/json;
            return 200 '{"predictions":[[0.1,0.9]]}';
        }
    }
}
EOF
} >"$RUN/upstream.conf"
start upstream "$UP_CPUS" nginx -p "$RUN" -e "$RUN/upstream.startup.log" -c "$RUN/upstream.conf"
MAINPID[direct-https]=${MAINPID[upstream]}

# Switchyard, once per scheme.
for s in sy-https sy-http; do
  mkdir -p "$RUN/$s/routes" "$RUN/$s/policies"
  cat >"$RUN/$s/routes/bench.yaml" <<EOF
routes:
  - name: bench
    match: { path: /v1/models/m:predict, method: POST }
    model: m
EOF
  if [ $s = sy-https ]; then
    echo "model: m
versions:
  v1: { url: \"https://127.0.0.1:$UP_TLS\", timeout_ms: 1000, tls: { ca_file: $RUN/ca.pem } }" >"$RUN/$s/policies/m.yaml"
  else
    echo "model: m
versions:
  v1: { url: \"http://127.0.0.1:$UP_HTTP\", timeout_ms: 1000 }" >"$RUN/$s/policies/m.yaml"
  fi
  "$BIN" validate "$RUN/$s" >&2
  start "$s" "$PROXY_CPUS" "$BIN" serve --config "$RUN/$s" --listen "127.0.0.1:${PORT[$s]}" \
    --admin "127.0.0.1:$((${PORT[$s]} + 100))" --workers 1 --log-level warning
done

# nginx, once per scheme (separate processes, so CPU is counted per setup).
for s in nginx-https nginx-http; do
  if [ $s = nginx-https ]; then
    ups="server 127.0.0.1:$UP_TLS;"
    pass="proxy_pass https://model;
            proxy_ssl_session_reuse on;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $RUN/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;"
  else
    ups="server 127.0.0.1:$UP_HTTP;"
    pass="proxy_pass http://model;"
  fi
  { nginx_prelude "$s" 1; cat <<EOF
    upstream model { $ups keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:${PORT[$s]} reuseport;
        location / {
            $pass
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  } >"$RUN/$s.conf"
  start "$s" "$PROXY_CPUS" nginx -p "$RUN" -e "$RUN/$s.startup.log" -c "$RUN/$s.conf"
done
for s in $SETUPS; do wait_port "${PORT[$s]}" || { for f in "$RUN"/*.log; do echo "== $f"; tail -n 5 "$f"; done >&2; exit 1; }; done
wait_port "$UP_HTTP"

pin() { local cpus=$1; shift; if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi; }
url() { echo "${SCHEME[$1]:-http}://127.0.0.1:${PORT[$1]}/v1/models/m:predict"; }

# Every proxy must answer 200 with the upstream's body before anything is measured.
for s in $SETUPS; do
  got=$(curl -sk -X POST -H 'content-type: application/json' --data '{}' -w ' %{http_code}' "$(url "$s")")
  [ "$got" = '{"predictions":[[0.1,0.9]]} 200' ] || { echo "$s answered: $got" >&2; tail -n 5 "$RUN"/*.log >&2; exit 1; }
done
for s in $SETUPS; do  # warm-up: fills the pools (TLS handshakes happen here)
  pin "$WRK_CPUS" wrk -t1 -c"$CONNS" -d1s -s "$LUA" "$(url "$s")" >/dev/null 2>&1
done

TSV=$RUN/tls.tsv
: >"$TSV"
read -r -a arr <<<"$SETUPS"; n=${#arr[@]}
for ((rep = 0; rep < REPS; rep++)); do
  for ((i = 0; i < n; i++)); do
    s=${arr[$(((i + rep) % n))]}
    pid=${MAINPID[$s]}
    c0=$(cpu_ticks "$pid")
    pin "$WRK_CPUS" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s "$LUA" "$(url "$s")" >"$RUN/wrk-$s-$rep.txt" 2>&1
    c1=$(cpu_ticks "$pid")
    read -r rps p50 p99 err non2xx reqs <<<"$(python3 "$PEERS_DIR/lib/wrkstat.py" parse "$RUN/wrk-$s-$rep.txt")"
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$s" "$rep" "$rps" "$p50" "$p99" "$err" "$non2xx" "$reqs" "$((c1 - c0))" >>"$TSV"
    printf "rep%d %-13s %8s req/s p50=%sms p99=%sms err=%s non2xx=%s cpu=%s ticks\n" \
      "$rep" "$s" "$rps" "$p50" "$p99" "$err" "$non2xx" "$((c1 - c0))" >&2
  done
done

echo
echo "## tls: wrk -t1 -c$CONNS -d${DUR}s, $REPS round(s), medians, $PIN pinning, 1 worker each ($(date -u +%F))"
echo
python3 - "$TSV" <<'EOF'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
order, by = [], {}
for s, rep, rps, p50, p99, err, non2xx, reqs, ticks in rows:
    if s not in by: by[s] = []; order.append(s)
    us = int(ticks) * 10000 / int(reqs) if int(reqs) else float("nan")
    by[s].append((float(rps), float(p50), float(p99), us, int(err) + int(non2xx)))
print("| setup | req/s | p50 ms | p99 ms | CPU µs/req | errors |")
print("|---|---:|---:|---:|---:|---:|")
for s in order:
    v = by[s]
    med = lambda i: st.median(x[i] for x in v)
    what = " (TLS server's own)" if s.startswith("direct") else ""
    print(f"| {s} | {med(0):.0f} | {med(1):.2f} | {med(2):.2f} | {med(3):.1f}{what} | {sum(x[4] for x in v)} |")
EOF
