#!/usr/bin/env bash
# The request path (issue "chained requests in one turn, wrappers without
# re-entry"): memory:// get at 1 and 64 in flight, async beside the blocking
# facade on the same store, and the five-wrapper stack beside the bare store.
# Each line runs RUNS times (default 5), median; pinned to one core.
#   bench/request-path.sh [BUILD_DIR]          RUNS=7 REQ=1000000 ...
set -euo pipefail
build=${1:-build}
kvio=${KVIO:-$build/kvio}
runs=${RUNS:-5}
req=${REQ:-1000000}
pin=(taskset -c 0)
command -v taskset >/dev/null || pin=()
field() { grep -o "\"$1\": *[0-9.e+]*" | head -1 | sed 's/.*: *//'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R
run() {
  local label=$1; shift
  local ops=() out
  for _ in $(seq "$runs"); do
    out=$("${pin[@]}" "$@")
    ops+=("$(echo "$out" | field ops_per_sec)")
  done
  R[$label]=$(printf '%s\n' "${ops[@]}" | median)
  printf '| %-58s | %12.0f |\n' "$label" "${R[$label]}"
}
stack=(--wrap prefix-keys:prefix=app --wrap statistics --wrap ttl-clamp:max=3600
       --wrap retry --wrap timeout:seconds=5)
c=(--size 100 --keys 10000 --json)
echo "request path: $runs runs each, median ops/s; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)"
printf '| %-58s | %12s |\n' what ops/s
printf '|%s|%s|\n' "$(printf -- '-%.0s' {1..60})" "--------------"
run "memory:// get, 1 in flight, async" "$kvio" bench --store memory:// --op get --clients 1 --requests "$req" "${c[@]}"
run "memory:// get, 1 in flight, blocking facade" "$kvio" bench --store memory:// --op get --sync --requests "$req" "${c[@]}"
run "memory:// get, 64 in flight" "$kvio" bench --store memory:// --op get --clients 64 --requests "$req" "${c[@]}"
run "5-wrapper stack over memory:// get, 1 in flight" "$kvio" "${stack[@]}" bench --store memory:// --op get --clients 1 --requests "$req" "${c[@]}"
run "5-wrapper stack over memory:// get, 64 in flight" "$kvio" "${stack[@]}" bench --store memory:// --op get --clients 64 --requests "$req" "${c[@]}"
ratio() { awk -v a="$2" -v b="$3" -v t="$1" 'BEGIN { printf "%s: %.2fx\n", t, a / b }'; }
echo
ratio "async / blocking facade, 1 in flight" "${R[memory:// get, 1 in flight, async]}" "${R[memory:// get, 1 in flight, blocking facade]}"
ratio "stack / bare, 1 in flight" "${R[5-wrapper stack over memory:// get, 1 in flight]}" "${R[memory:// get, 1 in flight, async]}"
ratio "stack / bare, 64 in flight" "${R[5-wrapper stack over memory:// get, 64 in flight]}" "${R[memory:// get, 64 in flight]}"
