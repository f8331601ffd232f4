#!/usr/bin/env bash
# Relaying a streamed LLM completion (SPEC §14 with §10): the latency a proxy adds to each
# event. A fake OpenAI-compatible upstream in bench mode (examples/llm/fake-openai.py --events N
# --interval-ms M) streams a chat completion of N events M ms apart, each stamped with
# CLOCK_MONOTONIC just before its write; bench/llm_client.py reads them on a raw socket as they
# arrive and records arrival minus sent per event. In one run, one worker each:
#   direct      the client on the upstream itself (the floor: loopback and the two Pythons)
#   switchyard  release build, a `protocol: openai` route /v1/chat/completions -> one remote
#               version with `model_name:` (the body's `model` rewritten; checked by the client)
#   nginx       proxy_buffering off, HTTP/1.1 upstream keep-alive
#   haproxy     `option http-no-delay` (without it HAProxy sends with MSG_MORE, expecting more
#               data, and events sit ~100 ms in the kernel: p50 104 ms in a trial run)
# Prints per setup p50 / p99 / max µs over all rounds' events and the added p50 / p99 over
# direct (a difference of percentiles).
#
#   bench/llm.sh [-r ROUNDS] [-e EVENTS] [-i INTERVAL_MS] [-S "SETUPS"] [-b BASEPORT] [-m auto|yes|no] [-p]
#     -r rounds (default 1; the setups take turns within a round)   -e events (default 1000)
#     -i ms between events (default 2)   -S setups (default "direct switchyard nginx haproxy")
#     -m model_name in Switchyard's version: auto (default) keeps it if `switchyard validate`
#        accepts the config and drops it with a notice otherwise (a loader from before SPEC §14
#        rejects the key); yes: always; no: never
#     -p pin: each proxy on CPU 0, the upstream and the client on CPU 1 (default: unpinned)
# Needs: swift, python3, nginx, haproxy.  KEEP=1 keeps the scratch folder.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. bench/lib/common.sh
REPS=1; EVENTS=1000; INTERVAL=2; SETUPS="direct switchyard nginx haproxy"; BASE=18700; MODELNAME=auto; PIN=""
while getopts "r:e:i:S:b:m:ph" o; do
  case $o in
    r) REPS=$OPTARG;; e) EVENTS=$OPTARG;; i) INTERVAL=$OPTARG;; S) SETUPS=$OPTARG;; b) BASE=$OPTARG;;
    m) MODELNAME=$OPTARG;; p) PIN=1;;
    *) sed -n '2,25p' "$0"; exit 2;;
  esac
done
need python3 nginx haproxy swift
RUN=$(mktemp -d /tmp/bench-llm.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ " $SETUPS " == *" switchyard "* ]] || MODELNAME=n/a
[ "$MODELNAME" = n/a ] || swift build -c release --product switchyard >&2
BIN=$ROOT/.build/release/switchyard
UP=$((BASE + 1))
declare -A PORT=([direct]=$UP [switchyard]=$((BASE + 10)) [nginx]=$((BASE + 11)) [haproxy]=$((BASE + 12)))
ADMIN=$((BASE + 20))
PROXYCPU=""; SIDECPU=""; TASKSET=()
[ -n "$PIN" ] && { PROXYCPU=0; SIDECPU=1; TASKSET=(taskset -c 1); }

start upstream "$SIDECPU" python3 examples/llm/fake-openai.py --port "$UP" --events "$EVENTS" --interval-ms "$INTERVAL" --quiet

# Switchyard: an openai route for the chat API, one remote version that renames the model
mkdir -p "$RUN/sy/routes" "$RUN/sy/policies"
cat >"$RUN/sy/routes/llm.yaml" <<EOF
routes:
  - name: chat
    match: { path: /v1/chat/completions, method: POST }
    model: assistant
    protocol: openai
EOF
policy() {  # policy WITH_MODEL_NAME : the policy file, with or without model_name
  local extra=""
  [ "$1" = yes ] && extra=", model_name: llama-bench-v1"
  cat >"$RUN/sy/policies/assistant.yaml" <<EOF
model: assistant
versions:
  v1: { url: "http://127.0.0.1:$UP", timeout_ms: 5000, idle_timeout_ms: 30000$extra }
EOF
}
EXPECT=()
if [ "$MODELNAME" != n/a ]; then
  case $MODELNAME in
    yes) policy yes;;
    no) policy no;;
    auto)
      policy yes
      if ! "$BIN" validate "$RUN/sy" >"$RUN/validate.log" 2>&1; then
        echo "NOTE: this build's loader rejects model_name; Switchyard runs without it:" >&2
        sed 's/^/  /' "$RUN/validate.log" | head -5 >&2
        policy no; MODELNAME=no
      else
        MODELNAME=yes
      fi;;
    *) echo "-m: auto, yes or no" >&2; exit 2;;
  esac
  [ "$MODELNAME" = yes ] && EXPECT=(--expect-model llama-bench-v1)
  "$BIN" validate "$RUN/sy" >&2
  start switchyard "$PROXYCPU" "$BIN" serve --config "$RUN/sy" --listen "127.0.0.1:${PORT[switchyard]}" \
    --admin "127.0.0.1:$ADMIN" --workers 1 --log-level warning
fi

{ nginx_prelude nginx 1; cat <<EOF
    upstream llm { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:${PORT[nginx]};
        location / {
            proxy_pass http://llm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
} >"$RUN/nginx.conf"
[[ " $SETUPS " == *" nginx "* ]] && start nginx "$PROXYCPU" nginx -p "$RUN" -e "$RUN/nginx.startup.log" -c "$RUN/nginx.conf"

cat >"$RUN/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 1000
defaults
    mode http
    option http-keep-alive
    option http-no-delay
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend fe
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend be
backend be
    server s1 127.0.0.1:$UP
EOF
[[ " $SETUPS " == *" haproxy "* ]] && start haproxy "$PROXYCPU" haproxy -db -f "$RUN/haproxy.cfg"
for s in $SETUPS; do wait_port "${PORT[$s]}" || { for f in "$RUN"/*.log; do echo "== $f"; tail -n 5 "$f"; done >&2; exit 1; }; done

client() {  # client SETUP EVENTS OUT
  local s=$1 extra=()
  [ "$s" = switchyard ] && extra=(${EXPECT[@]+"${EXPECT[@]}"})
  ${TASKSET[@]+"${TASKSET[@]}"} python3 bench/llm_client.py run --port "${PORT[$s]}" --events "$2" --out "$3" --label "$s" ${extra[@]+"${extra[@]}"}
}

# warm-up (connections, pools, the Pythons' imports in the page cache)
for s in $SETUPS; do client "$s" 50 /dev/null 2>/dev/null; done

for ((rep = 0; rep < REPS; rep++)); do
  for s in $SETUPS; do
    printf "round %d " "$rep" >&2
    client "$s" "$EVENTS" "$RUN/$s.$rep.ns"
  done
done

echo
echo "## llm: a streamed chat completion of $EVENTS events ${INTERVAL} ms apart, $REPS round(s), 1 worker each${PIN:+, pinned} ($(date -u +%FT%H:%MZ); switchyard model_name: $MODELNAME)"
echo
FILES=()
for s in $SETUPS; do
  f=""; for ((rep = 0; rep < REPS; rep++)); do f+="${f:+,}$RUN/$s.$rep.ns"; done
  FILES+=("$s=$f")
done
python3 bench/llm_client.py summary "${FILES[@]}"
