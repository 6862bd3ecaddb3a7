#!/usr/bin/env bash
# bench/memcached.sh [BUILD_DIR]: kvio's memcached:// store against a bare
# pipelined loop over the same protocol (bench-memcached-bare, 64 requests
# per write), on one throwaway memcached started for the run. Both clients
# are pinned to core 0 (taskset); the server is not pinned. Prints both JSON
# lines and the ratio for each op.
#
#   RUNS=3 REQ=200000 bench/memcached.sh build
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-3}
req=${REQ:-200000}
pin=(taskset -c 0)
command -v taskset >/dev/null || pin=()
exec "$here/tests/servers/with-memcached.sh" bash -c '
set -euo pipefail
build=$1 runs=$2 req=$3; shift 3; pin=("$@")
port=$KV_MEMCACHED_PORT
field() { grep -o "\"$1\": *[0-9.e+]*" | head -1 | sed "s/.*: *//"; }
median() { sort -g | awk "{a[NR]=\$1} END {print a[int((NR+1)/2)]}"; }
for op in get put; do
  k=() b=()
  for _ in $(seq "$runs"); do
    o=$("${pin[@]}" "$build/kvio" bench --store "memcached://127.0.0.1:$port" \
      --op $op --clients 64 --requests "$req" --size 100 --keys 10000 --json)
    echo "kvio: $o"
    k+=("$(echo "$o" | field ops_per_sec)")
    o=$("${pin[@]}" "$build/bench-memcached-bare" 127.0.0.1 "$port" $op \
      "$req" 100 10000 64)
    echo "bare: $o"
    b+=("$(echo "$o" | field ops_per_sec)")
  done
  mk=$(printf "%s\n" "${k[@]}" | median)
  mb=$(printf "%s\n" "${b[@]}" | median)
  awk -v k="$mk" -v b="$mb" -v op="$op" "BEGIN { printf \"%s: kvio %.0f ops/s, bare %.0f ops/s, kvio/bare %.2f (median of '"$runs"')\n\", op, k, b, k / b }"
done
' bench "$build" "$runs" "$req" "${pin[@]}"
