#!/usr/bin/env bash
# scripts/bench --quota: what the core's quotas and usage ledger cost.
# Builds quota_bench (release), starts a redis-server on TCP loopback
# (127.0.0.1, a free port) in a temporary directory, and prints Markdown
# tables: the p50/p99 latency of one quota reservation (memory backend;
# Redis, one EVALSHA per reservation; Redis with per-replica leases, the
# default, where most reservations are taken from the lease in memory)
# beside the floor of this machine's
# Redis (`redis-benchmark -t ping -c 1` p50, a PING and an empty EVALSHA
# through the core's own connections, and a PING through the redis crate's
# multiplexed connection, the one the core used before 2026-12-06 s8:
# a driver task and channels between the caller and the socket), the client commands and
# connections Redis saw for the reservations (INFO), Redis' own time per
# script (INFO commandstats), and calls/s through an in-process core with
# 64 streams at once, ledger off and SQLite ledger on, in interleaved
# rounds (the order alternates; each ledger-on run on an empty file, and
# each run timed from after a first call, so the core's start is not in
# it), with the CPU time per call beside calls/s. With --instructions, also the
# instructions per call with the ledger off and on (valgrind
# --tool=callgrind over two fixed call counts, the difference divided by
# the difference: start-up cancels out; QUOTA_LEDGER_RUNS runs per build,
# default 3, alternating with --baseline-bin's, and their medians: one
# run moves by +-700 with how the calls fall into the writer's batches), and
# the instructions per quota reservation and its settlement (memory,
# Redis, Redis with leases; also of the --baseline-bin build).
# Not part of scripts/test.
#
#   scripts/bench --quota [--rounds N] [--instructions] [--baseline-bin PATH] [quota_bench args…]
#
# --baseline-bin runs an earlier build of quota_bench in every round too,
# interleaved with this one (the order alternates), for before/after on a
# busy machine; Redis is flushed before each run. This build's timed loops
# run on a runtime worker, as the core's calls do; with --baseline-bin it
# also runs with `--on main` (the thread blocking on the runtime, where
# builds before the leases measured), to tell the two effects apart.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=1 BASELINE="" INSTRUCTIONS=""
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
    --baseline-bin) BASELINE=${2:?--baseline-bin needs a path}; shift ;;
    --instructions) INSTRUCTIONS=1 ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
for c in redis-server redis-cli redis-benchmark; do
  command -v "$c" >/dev/null || { echo "quota bench: needs $c (Debian: redis-server, redis-tools)" >&2; exit 1; }
done
[ -z "$INSTRUCTIONS" ] || command -v valgrind >/dev/null ||
  { echo "quota bench: --instructions needs valgrind (Debian: valgrind)" >&2; exit 1; }
[ -n "${QUOTA_NO_BUILD:-}" ] || cargo build --release --locked -q -p vibectl-tests --bin quota_bench
BIN=target/release/quota_bench
tmp=$(mktemp -d)
port=""
for p in $(shuf -i 20000-60000 -n 50); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "quota bench: no free port" >&2; exit 1; }
redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
rcli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
# Redis' own microseconds per call of each script command in the last run.
script_usec() {
  rcli info commandstats | tr -d '\r' | grep -E '^cmdstat_(evalsha|eval):' |
    sed -E 's/^cmdstat_([a-z]+):calls=([0-9]+),usec=[0-9]+,usec_per_call=([0-9.]+).*/\1: \2 calls, \3 µs each (Redis CPU)/'
}
run() { # NAME BIN [ARGS…]
  local name=$1 bin=$2
  shift 2
  rcli flushall >/dev/null
  rcli config resetstat >/dev/null
  echo "### $name"
  "$bin" --redis "redis://127.0.0.1:$port/" "$@" "${ARGS[@]}"
  echo
  script_usec
  echo
}
# Instructions of N calls through the core, ledger on|off (callgrind's total).
instructions() { # BIN N on|off
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" --fixed-calls "$2" --ledger "$3" 2>&1 |
    sed -nE 's/.*Collected : ([0-9]+).*/\1/p'
}
for round in $(seq "$ROUNDS"); do
  echo "## round $round"
  echo
  echo "Redis floor (redis-benchmark, C client): $(redis-benchmark -h 127.0.0.1 -p "$port" -t ping -c 1 -n 20000 -q 2>/dev/null | tr '\r' '\n' | grep -E 'p50' | tail -1)"
  echo
  if [ -n "$BASELINE" ] && [ $((round % 2)) -eq 1 ]; then run baseline "$BASELINE"; fi
  run current "$BIN"
  if [ -n "$BASELINE" ]; then run "current, --on main" "$BIN" --on main; fi
  if [ -n "$BASELINE" ] && [ $((round % 2)) -eq 0 ]; then run baseline "$BASELINE"; fi
done
# Instructions of quota_bench's two reservation loops over N calls (each
# call: one reservation held to the loop's end, one settled at once; both
# settled) with BACKEND memory | redis (no lease) | leases (16 calls).
reserve_instructions() { # BIN BACKEND N
  local bin=$1 backend=$2 n=$3 url="redis://127.0.0.1:$port/"
  local args=(--calls "$n")
  case $backend in
    memory) args+=(--ledger-rounds 0) ;;
    redis) args+=(--redis "$url" --redis-reserves-only --lease-calls 0) ;;
    leases) args+=(--redis "$url" --redis-reserves-only --lease-calls 16) ;;
  esac
  rcli flushall >/dev/null
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "${args[@]}" 2>&1 |
    sed -nE 's/.*Collected : ([0-9]+).*/\1/p'
}
if [ -n "$INSTRUCTIONS" ]; then
  rs=${QUOTA_RESERVES_SMALL:-500} rl=${QUOTA_RESERVES_LARGE:-2500}
  echo "## instructions per reservation and its settlement (callgrind, $rs and $rl calls of two reservations each)"
  echo
  echo "| build | memory | Redis, no lease | Redis, leases of 16 calls |"
  echo "| --- | --- | --- | --- |"
  builds=("$BIN")
  [ -z "$BASELINE" ] || builds+=("$BASELINE")
  for bin in "${builds[@]}"; do
    row="| $bin |"
    for backend in memory redis leases; do
      a=$(reserve_instructions "$bin" "$backend" "$rs") b=$(reserve_instructions "$bin" "$backend" "$rl")
      row="$row $(( (b - a) / (2 * (rl - rs)) )) |"
    done
    echo "$row"
  done
  echo
  small=${QUOTA_CALLS_SMALL:-400} large=${QUOTA_CALLS_LARGE:-1600}
  # One run moves by +-700 instructions with how the calls fall into the
  # writer's batches: several runs, the builds alternating, and medians.
  runs=${QUOTA_LEDGER_RUNS:-3}
  echo "## instructions per call (callgrind, $small and $large calls, 64 streams, $runs runs per build)"
  echo
  echo "| build | run | ledger off | ledger on | the ledger costs |"
  echo "| --- | --- | --- | --- | --- |"
  declare -A costs ons
  for run in $(seq "$runs"); do
    builds=("$BIN")
    [ -z "$BASELINE" ] || { [ $((run % 2)) -eq 1 ] && builds=("$BASELINE" "$BIN") || builds+=("$BASELINE"); }
    for bin in "${builds[@]}"; do
      declare -A per
      for mode in off on; do
        a=$(instructions "$bin" "$small" "$mode") b=$(instructions "$bin" "$large" "$mode")
        per[$mode]=$(( (b - a) / (large - small) ))
      done
      cost=$(( per[on] - per[off] ))
      costs[$bin]="${costs[$bin]:-} $cost" ons[$bin]="${ons[$bin]:-} ${per[on]}"
      echo "| $bin | $run | ${per[off]} | ${per[on]} | $cost ($(awk -v on="${per[on]}" -v off="${per[off]}" 'BEGIN { printf "%+.1f", (on / off - 1) * 100 }') %) |"
    done
  done
  median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  echo
  for bin in "$BIN" ${BASELINE:+"$BASELINE"}; do
    echo "$bin: the ledger costs $(echo "${costs[$bin]}" | median) instructions per call (median of$(echo "${costs[$bin]}" | tr ' ' ',' | sed 's/^,/ /')); a call with it: $(echo "${ons[$bin]}" | median)."
  done
fi
