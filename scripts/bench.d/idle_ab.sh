#!/usr/bin/env bash
# Idle TLS connections, before/after: the scale section's idle-connection
# measurement of scripts/bench (a fresh edge, one call, then `idle_conns`
# opens N TLS + HTTP/2 connections, one call on each, and reads the edge's
# VmRSS before and after), run for each edge binary given, interleaved over
# rounds, against one core. Prints one line per run with
# (RSS_after - RSS_before) / connections.
#
#   scripts/bench.d/idle_ab.sh [--connections N] [--rounds R] [--stage S] EDGE_BIN...
#
# --stage call (default) is the benchmark's measurement; tcp, tls and h2 hold
# the connections at an earlier stage instead (idle_stage.py: accepted with no
# TLS byte; TLS done with no HTTP/2 byte; HTTP/2 preface and SETTINGS
# exchanged with no request), with the edge's handshake and first-request
# timeouts and keepalive PING interval raised (idle_stage.py answers no PING)
# so that none is closed while they are counted.
#
# The core, loadgen and idle_conns come from target/release (BIN_DIR to
# override). Pinned like scripts/bench (load on CPU 0, edge and core on 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD HERE=$ROOT/scripts/bench.d
CONNS=10000 ROUNDS=3 STAGE=call EDGES=()
while [ $# -gt 0 ]; do
  case $1 in
    --connections) CONNS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --stage) STAGE=$2; shift ;;
    *) EDGES+=("$1") ;;
  esac
  shift
done
[ ${#EDGES[@]} -gt 0 ] || { echo "usage: $0 [--connections N] [--rounds R] EDGE_BIN..." >&2; exit 64; }
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
ulimit -n $(( CONNS + 4096 ))
PIN_LOAD=(taskset -c 0) PIN_SUT=(taskset -c 1)
WORK=$(mktemp -d /tmp/idle_ab.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

export VIBECTL_PROXY_HOME=$WORK/home
VIBECTL_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export VIBECTL_JWT_SECRET
unset RUST_LOG VIBECTL_PROXY_CONFIG || true
echo dummy >"$WORK/key"
CORE=$(free_port)
sed -e "s|@CORE@|$CORE|g" -e "s|@AUTH@|true|g" -e "s|@FAKE_URL@|http://127.0.0.1:9|g" \
    -e "s|@PACED_URL@|http://127.0.0.1:9|g" -e "s|@LONG_URL@|http://127.0.0.1:9|g" \
    -e "s|@METRICS@|true|g" -e "s|@METRICS_PORT@|$(free_port)|g" -e "s|@KEY@|$WORK/key|g" \
    "$HERE/config.toml.in" >"$WORK/scale.toml"
printf '\n[connections]\naccept_rate_per_address = 0\nmax_handshakes_per_address = 0\nmax_total = %d\nmax_per_address = %d\n' \
  $(( 2 * CONNS + 1000 )) $(( 2 * CONNS + 1000 )) >>"$WORK/scale.toml"
[ "$STAGE" = call ] || printf 'first_request_timeout = "300s"\nkeepalive_interval = "300s"\n[tls]\nhandshake_timeout = "300s"\n' >>"$WORK/scale.toml"
"${EDGES[0]}" --config "$WORK/scale.toml" generate-certs >/dev/null 2>&1
CERT=$WORK/home/certs/server.crt KEY=$WORK/home/certs/server.key CA=$WORK/home/certs/ca-bundle.crt
"${EDGES[0]}" --config "$WORK/scale.toml" generate-token bench --expires-in 1d --output "$WORK/bench.jwt" >/dev/null 2>&1
"${PIN_SUT[@]}" "$BIN_DIR/vibectl-core" serve --config "$WORK/scale.toml" --listen "127.0.0.1:$CORE" --log-level warn \
  >"$WORK/core.log" 2>&1 &
PIDS+=($!)
wait_port "$CORE"

for round in $(seq "$ROUNDS"); do
  for i in "${!EDGES[@]}"; do
    edge=${EDGES[$i]} port=$(free_port)
    "${PIN_SUT[@]}" "$edge" --config "$WORK/scale.toml" --log-level warn serve-custom --cert-file "$CERT" --key-file "$KEY" \
      --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$(free_port)" --core "127.0.0.1:$CORE" >"$WORK/edge.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    "${PIN_LOAD[@]}" "$BIN_DIR/loadgen" --target "https://127.0.0.1:$port" --ca-file "$CA" --token-file "$WORK/bench.jwt" \
      --json --method execute --requests 1 --warmup 0 >/dev/null
    sleep 0.5
    idle=$(rss_kib "$pid")
    if [ "$STAGE" = call ]; then
      out=$("${PIN_LOAD[@]}" timeout 300 "$BIN_DIR/idle_conns" --target "127.0.0.1:$port" --ca-file "$CA" \
        --token-file "$WORK/bench.jwt" --connections "$CONNS" --watch-pid "$pid" --hold-for 1s --timeout 240s)
    else
      out=$("${PIN_LOAD[@]}" timeout 300 python3 "$HERE/idle_stage.py" "$STAGE" "$port" "$CA" "$CONNS" "$pid")
    fi
    echo "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
b, a, n, r = d["rss_before_kib"], d["rss_kib"], d["still_open"], d["requested"]
print(f"round {sys.argv[1]} stage {sys.argv[5]} edge {sys.argv[2]} {sys.argv[3]}: idle {sys.argv[4]} KiB, "
      f"open {n}/{r}, RSS {b} -> {a} KiB, per connection {(a - b) / max(n, 1):.2f} KiB", flush=True)
' "$round" "$i" "$edge" "$idle" "$STAGE"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  done
done
