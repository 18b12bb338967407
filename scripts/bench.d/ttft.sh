# shellcheck shell=bash
# shellcheck disable=SC2034,SC2153 # sourced: its variables come from and go to scripts/bench
# Sourced by scripts/bench: ttft_round, the time-to-first-token step of one
# round, on cores started for it.
#
# The core that has just served every unary round adds more to the first
# token than a fresh one (session 12, Intel VM: 1,043 µs on it against 840 µs
# on the fresh baseline core beside it; two fresh cores side by side, 710 and
# 715 µs), so a before/after or a target judged on it would measure the
# unary rounds' leftovers. Each round therefore starts, with the benchmark's
# configuration (its own metrics port) and each its own state directory (an
# empty ledger):
#   - this build's core on loopback TCP, for the core path (h2c straight to it);
#   - this build's core behind a fresh edge (all features on) reaching it the
#     way the headline edge does (--transport), for the whole-proxy path;
#   - with --compare, the baseline's core on loopback TCP, for its core path;
# and stops them after the round's calls. The paced fake provider is the
# one started at the beginning (it keeps no state between calls).
ttft_round() {
  local dir=$WORK/ttft.$ROUND p_core p_edge p_base="" addr
  mkdir -p "$dir"
  write_config "$dir/core.toml" true
  write_config "$dir/edge_core.toml" true
  p_core=$(free_port) p_edge=$(free_port)
  start ttft_core env VIBECTL_PROXY_HOME="$dir/core" \
    "$CORE_BIN" serve --config "$dir/core.toml" --listen "127.0.0.1:$p_core" --log-level warn
  if [ "$TRANSPORT" = unix ]; then addr=unix:$dir/edge_core.sock; else addr=127.0.0.1:$(free_port); fi
  start ttft_edge_core env VIBECTL_PROXY_HOME="$dir/edge_core" \
    "$CORE_BIN" serve --config "$dir/edge_core.toml" --listen "$addr" --log-level warn
  if [ -n "$BASELINE_CORE_BIN" ]; then
    write_config "$dir/core_baseline.toml" true
    p_base=$(free_port)
    start ttft_core_baseline env VIBECTL_PROXY_HOME="$dir/core_baseline" \
      "$BASELINE_CORE_BIN" serve --config "$dir/core_baseline.toml" --listen "127.0.0.1:$p_base" --log-level warn
    wait_port ttft_core_baseline "$p_base"
  fi
  wait_port ttft_core "$p_core"
  if [ "$TRANSPORT" = unix ]; then wait_sock ttft_edge_core "${addr#unix:}"; else wait_port ttft_edge_core "${addr##*:}"; fi
  start ttft_edge "$EDGE_BIN" --config "$WORK/auth.toml" --log-level warn serve-custom --cert-file "$CERT" --key-file "$KEY" \
    --listen "127.0.0.1:$p_edge" --admin-listen "127.0.0.1:$(free_port)" --core "$addr"
  wait_port ttft_edge "$p_edge"

  # The paced provider direct, against the same streamed call through each
  # path, one call at a time, the order rotating per call.
  local paths=(--through "core=http://127.0.0.1:$p_core" --through "edge=https://127.0.0.1:$p_edge")
  [ -z "$p_base" ] || paths+=(--through "core_baseline=http://127.0.0.1:$p_base")
  local cmd=("${PIN_LOAD[@]}" "$TTFT" --provider "$PACED_URL" --model paced --rounds "$TTFT_CALLS" --warmup 2
    --ca-file "$CA" --token-file "$WORK/bench.jwt" "${paths[@]}")
  [ "$ROUND" != 1 ] || shell_quote "${cmd[@]}" >>"$WORK/commands.txt"
  echo "$(date +%T.%3N) $ROUND.ttft" >>"$WORK/timeline.txt"
  timeout 300 "${cmd[@]}" >"$WORK/results/$ROUND.ttft.paths.json" 2>"$WORK/logs/ttft.$ROUND.err" \
    || { cat "$WORK/logs/ttft.$ROUND.err" >&2; die "ttft failed"; }
  stop ttft_edge
  stop ttft_edge_core
  stop ttft_core
  [ -z "$p_base" ] || stop ttft_core_baseline
}
