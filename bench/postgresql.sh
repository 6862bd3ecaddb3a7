#!/usr/bin/env bash
# bench/postgresql.sh [BUILD_DIR]: the postgresql:// store against a bare
# libpq loop, side by side on the same throwaway server (started by
# tests/servers/with-postgres.sh, fsync on as a real server has it):
#
#   kvio bench, 64 requests in flight (pipelined: one round trip per turn)
#   kvio bench, 1 request in flight   (one statement per round trip)
#   bench-pg-bare                     (synchronous PQexecParams, one
#                                      statement per round trip)
#
# for get and put; each line is the median of RUNS runs (default 3).
#   REQ=20000 PUTREQ=5000 RUNS=3 bench/postgresql.sh build
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
if [ -z "${KV_PG_URL:-}" ]; then
  KV_PG_DURABLE=${KV_PG_DURABLE:-1} exec bash "$here/../tests/servers/with-postgres.sh" \
    bash "$here/postgresql.sh" "$build"
fi
kvio=$build/kvio
bare=$build/bench-pg-bare
runs=${RUNS:-3}
req=${REQ:-20000}
putreq=${PUTREQ:-5000}
url="$KV_PG_URL?table=kv_bench"
pin=(taskset -c 0)
command -v taskset >/dev/null || pin=()

field() { grep -o "\"$1\": *[0-9.e+]*" | head -1 | sed 's/.*: *//'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R
run() {
  local label=$1; shift
  local ops=() p99=() out
  for _ in $(seq "$runs"); do
    out=$("${pin[@]}" "$@")
    ops+=("$(echo "$out" | field ops_per_sec)")
    p99+=("$(echo "$out" | field p99_us)")
  done
  R[$label]=$(printf '%s\n' "${ops[@]}" | median)
  printf '| %-58s | %10.0f | %9s |\n' "$label" "${R[$label]}" \
    "$(printf '%s\n' "${p99[@]}" | median)"
}

echo "postgresql:// bench: $runs runs each, median; PostgreSQL $(psql --version 2>/dev/null | awk '{print $3}' || echo '?') on loopback, fsync on"
printf '| %-58s | %10s | %9s |\n' "what" "ops/s" "p99 µs"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..60})" "------------" "-----------"
common=(--size 100 --keys 10000 --json)
run "kvio get, 64 in flight (pipelined)" "$kvio" --store "$url" bench --op get --clients 64 --requests "$req" "${common[@]}"
run "kvio get, 1 in flight" "$kvio" --store "$url" bench --op get --clients 1 --requests "$req" "${common[@]}"
run "bare libpq get, one statement per round trip" "$bare" "$KV_PG_URL" kv_bench get "$req" 100 10000
run "kvio put, 64 in flight (pipelined)" "$kvio" --store "$url" bench --op put --clients 64 --requests "$putreq" "${common[@]}"
run "kvio put, 1 in flight" "$kvio" --store "$url" bench --op put --clients 1 --requests "$putreq" "${common[@]}"
run "bare libpq put, one statement (one commit) per round trip" "$bare" "$KV_PG_URL" kv_bench put "$putreq" 100 10000
echo
ratio() { awk -v a="$2" -v b="$3" -v t="$1" 'BEGIN { printf "%s: %.2fx\n", t, a / b }'; }
ratio "get: kvio 64 in flight / bare libpq" "${R[kvio get, 64 in flight (pipelined)]}" "${R[bare libpq get, one statement per round trip]}"
ratio "get: kvio 1 in flight / bare libpq" "${R[kvio get, 1 in flight]}" "${R[bare libpq get, one statement per round trip]}"
ratio "put: kvio 64 in flight / bare libpq" "${R[kvio put, 64 in flight (pipelined)]}" "${R[bare libpq put, one statement (one commit) per round trip]}"
ratio "put: kvio 1 in flight / bare libpq" "${R[kvio put, 1 in flight]}" "${R[bare libpq put, one statement (one commit) per round trip]}"
