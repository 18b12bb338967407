#!/usr/bin/env bash
# The core's CPU per streamed call, before/after: each core binary given
# serves the benchmark configuration's `paced` model (an OpenAI-compatible
# provider: target/release/fake_provider streaming TOKENS content chunks,
# GAP apart) to loadgen's StreamExecute calls, over h2c, no auth; the runs
# interleave over rounds. Prints one line per run with the core's CPU per
# call (loadgen --watch-pid), then each binary's mean.
#
#   scripts/bench.d/stream_ab.sh [--gap 0ms] [--tokens 64] [--concurrency 4]
#                                [--rounds 4] [--seconds 3] CORE_BIN...
#
# --gap 0ms sends every chunk at once (they reach the core in bursts);
# --gap 2ms --concurrency 32 paces them like a fast model server. loadgen and
# fake_provider come from target/release (BIN_DIR to override). Pinned like
# scripts/bench: load and provider on CPU 0, the cores on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
GAP=0ms TOKENS=64 CONC=4 ROUNDS=4 SECS=3 CORES=()
while [ $# -gt 0 ]; do
  case $1 in
    --gap) GAP=$2; shift ;;
    --tokens) TOKENS=$2; shift ;;
    --concurrency) CONC=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    *) CORES+=("$1") ;;
  esac
  shift
done
[ ${#CORES[@]} -gt 0 ] || { echo "usage: see the header of $0" >&2; exit 2; }
NICE=()
[ "$(id -u)" -ne 0 ] || NICE=(nice -n -10)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
echo "dummy-key" >"$WORK/key"
"${NICE[@]}" taskset -c 0 "$BIN_DIR/fake_provider" --tokens "$TOKENS" --first-token 0ms --token-gap "$GAP" \
  --end-gap 0ms --addr-file "$WORK/url" >"$WORK/provider.log" 2>&1 &
for _ in $(seq 100); do [ -s "$WORK/url" ] && break; sleep 0.1; done
URL=$(cat "$WORK/url")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=() PORTS=()
for i in "${!CORES[@]}"; do
  port=$(free_port)
  sed -e "s|@CORE@|$port|g" -e "s|@AUTH@|false|g" -e "s|@[A-Z]*_URL@|$URL|g" -e "s|@METRICS@|false|g" \
      -e "s|@METRICS_PORT@|$(free_port)|g" -e "s|@KEY@|$WORK/key|g" \
      "$ROOT/scripts/bench.d/config.toml.in" >"$WORK/core$i.toml"
  "${NICE[@]}" taskset -c 1 "${CORES[$i]}" serve --config "$WORK/core$i.toml" --listen "127.0.0.1:$port" \
    --log-level warn >"$WORK/core$i.log" 2>&1 &
  PIDS+=($!) PORTS+=("$port")
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done
for _ in $(seq "$ROUNDS"); do
  for i in "${!CORES[@]}"; do
    "${NICE[@]}" taskset -c 0 "$BIN_DIR/loadgen" --target "http://127.0.0.1:${PORTS[$i]}" --method stream \
      --model paced --concurrency "$CONC" --duration "${SECS}s" --warmup 1 --watch-pid "core=${PIDS[$i]}" --json |
      python3 -c 'import json,sys; r=json.load(sys.stdin)
print(sys.argv[1], r["ok"], "calls,", round(r["procs"]["core"]["cpu_us_per_call"], 1), "us core CPU per call")' "${CORES[$i]}"
  done
done | tee "$WORK/runs.txt"
awk '{s[$1] += $4; n[$1]++} END {for (k in s) printf "mean %s %.1f us core CPU per call\n", k, s[k] / n[k]}' "$WORK/runs.txt"
