#!/usr/bin/env bash
# scripts/bench --quota: what the core's quotas and usage ledger cost.
# Builds quota_bench (release), starts a redis-server on a Unix socket in a
# temporary directory, and prints Markdown tables: the p50/p99 latency of
# one quota reservation (memory backend; Redis, one Lua script per step),
# and calls/s through an in-process core with 64 streams at once with the
# ledger off and with the SQLite ledger on. Not part of scripts/test.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v redis-server >/dev/null || { echo "quota bench: needs redis-server" >&2; exit 1; }
cargo build --release --locked -q -p vibectl-tests --bin quota_bench
tmp=$(mktemp -d)
redis-server --port 0 --save "" --appendonly no --unixsocket "$tmp/redis.sock" >/dev/null &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [ -S "$tmp/redis.sock" ] && break; sleep 0.05; done
target/release/quota_bench --redis "redis+unix://$tmp/redis.sock" "$@"
