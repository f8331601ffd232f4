# Helpers shared by bench/stream.sh, bench/tls.sh and bench/unix.sh (sourced, not run).
# Every process started with `start` is remembered by PID and stopped by `cleanup`, which the
# scripts install as their EXIT trap together with removing their scratch folder.

STARTED=()
declare -A MAINPID=()
RUN=""

# start NAME CPUS CMD... : run CMD in the background (pinned to CPUS unless empty), log to
# $RUN/NAME.log, remember its PID as MAINPID[NAME].
start() {
  local name=$1 cpus=$2; shift 2
  if [ -n "$cpus" ]; then taskset -c "$cpus" "$@" >"$RUN/$name.log" 2>&1 &
  else "$@" >"$RUN/$name.log" 2>&1 & fi
  STARTED+=("$!"); MAINPID[$name]=$!
}

cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${STARTED[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  [ -n "$RUN" ] && [ -d "$RUN" ] && [ -z "${KEEP:-}" ] && rm -rf "$RUN"
  return 0
}

wait_port() {  # wait_port PORT : until 127.0.0.1:PORT accepts
  local _
  for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "port $1 did not open" >&2; return 1
}

wait_sock() {  # wait_sock PATH : until the unix socket file exists
  local _
  for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.05; done
  echo "socket $1 did not appear" >&2; return 1
}

# cpu_ticks PID : utime+stime (clock ticks, 1/100 s) of PID and its direct children (nginx
# workers); threads are included in a process's figures.
cpu_ticks() {
  local t=0 pid
  for pid in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    [ -r "/proc/$pid/stat" ] || continue
    # field 2 (comm) has no spaces for the programs measured here
    t=$((t + $(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}

# rss_kib PID : VmRSS (KiB) of PID plus its direct children.
rss_kib() {
  local t=0 pid v
  for pid in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
    t=$((t + ${v:-0}))
  done
  echo $t
}

need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y nginx haproxy wrk gcc curl openssl" >&2; exit 2; }
  done
}

# nginx_prelude NAME WORKERS : the top of an nginx config that keeps every file in $RUN.
nginx_prelude() {
  local n=$1 w=$2
  cat <<EOF
worker_processes $w;
daemon off;
master_process on;
pid $RUN/$n.pid;
error_log $RUN/$n.error.log warn;
events { worker_connections 8192; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $RUN/$n-body;
    proxy_temp_path $RUN/$n-proxy;
    fastcgi_temp_path $RUN/$n-fcgi;
    uwsgi_temp_path $RUN/$n-uwsgi;
    scgi_temp_path $RUN/$n-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    tcp_nodelay on;
EOF
}
