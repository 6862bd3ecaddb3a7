#!/usr/bin/env bash
# bench/cloud.sh [BUILD_DIR]: s3:// and dynamodb:// against a bare libcurl
# easy-handle loop (bench-cloud-bare: one connection, one request at a time,
# signed by curl the same way), side by side on the same throwaway local
# server (s3rver / dynalite, started by tests/servers/with-cloud.sh and
# pinned to core 1; the clients are pinned to core 0):
#
#   s3:       kvio get, 1 and 64 in flight   vs bare GET loop
#   dynamodb: kvio put, 1 and 64 in flight   vs bare PutItem loop
#             kvio get-many of 100 keys (one BatchGetItem), keys/s
#
# Each line is the median of RUNS runs (default 3).
#   REQ=2000 RUNS=3 bench/cloud.sh build
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
if [ -z "${KV_CLOUD_ENDPOINT:-}" ]; then
  pin_server=(taskset -c 1)
  command -v taskset >/dev/null || pin_server=()
  "${pin_server[@]}" bash "$here/../tests/servers/with-cloud.sh" s3 \
    bash "$here/cloud.sh" "$build" s3
  "${pin_server[@]}" bash "$here/../tests/servers/with-cloud.sh" dynamodb \
    bash "$here/cloud.sh" "$build" dynamodb
  exit 0
fi
kind=${2:-s3}
kvio=$build/kvio
bare=$build/bench-cloud-bare
runs=${RUNS:-3}
req=${REQ:-2000}
keys=${KEYS:-1000}
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
  printf '| %-52s | %10.0f | %9s |\n' "$label" "${R[$label]}" \
    "$(printf '%s\n' "${p99[@]}" | median)"
}
ratio() { awk -v a="$2" -v b="$3" -v t="$1" 'BEGIN { printf "%s: %.2fx\n", t, a / b }'; }

common=(--size 100 --keys "$keys" --json)
printf '| %-52s | %10s | %9s |\n' "$kind: what" "ops/s" "p99 µs"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..54})" "------------" "-----------"
if [ "$kind" = s3 ]; then
  url="s3://kvio-bench?endpoint=$KV_CLOUD_ENDPOINT&create=1"
  "$kvio" --store "$url" put warmup x >/dev/null  # creates the bucket
  run "kvio get, 1 in flight" "$kvio" --store "$url" bench --op get --clients 1 --requests "$req" "${common[@]}"
  run "kvio get, 64 in flight" "$kvio" --store "$url" bench --op get --clients 64 --requests $((req * 4)) "${common[@]}"
  run "bare libcurl GET loop" "$bare" s3 "$KV_CLOUD_ENDPOINT" kvio-bench get "$req" 100 "$keys"
  echo
  ratio "s3 get: kvio 1 in flight / bare libcurl" "${R[kvio get, 1 in flight]}" "${R[bare libcurl GET loop]}"
  ratio "s3 get: kvio 64 in flight / kvio 1 in flight" "${R[kvio get, 64 in flight]}" "${R[kvio get, 1 in flight]}"
else
  url="dynamodb://kvio_bench?endpoint=$KV_CLOUD_ENDPOINT&create=1"
  "$kvio" --store "$url" put warmup x >/dev/null  # creates the table
  run "kvio put, 1 in flight" "$kvio" --store "$url" bench --op put --clients 1 --requests "$req" "${common[@]}"
  run "kvio put, 64 in flight" "$kvio" --store "$url" bench --op put --clients 64 --requests $((req * 4)) "${common[@]}"
  run "bare libcurl PutItem loop" "$bare" dynamodb "$KV_CLOUD_ENDPOINT" kvio_bench put "$req" 100 "$keys"
  run "bare libcurl PutItem loop, ReturnValues=ALL_OLD" env BARE_ALL_OLD=1 "$bare" dynamodb "$KV_CLOUD_ENDPOINT" kvio_bench put "$req" 100 "$keys"
  run "kvio get-many (100 keys per request), 1 in flight" "$kvio" --store "$url" bench --op get-many --clients 1 --requests $((req / 10)) "${common[@]}"
  echo
  ratio "dynamodb put: kvio 1 in flight / bare libcurl" "${R[kvio put, 1 in flight]}" "${R[bare libcurl PutItem loop]}"
  ratio "dynamodb put: kvio 1 in flight / bare libcurl with ALL_OLD" "${R[kvio put, 1 in flight]}" "${R[bare libcurl PutItem loop, ReturnValues=ALL_OLD]}"
  ratio "dynamodb put: kvio 64 in flight / kvio 1 in flight" "${R[kvio put, 64 in flight]}" "${R[kvio put, 1 in flight]}"
  awk -v r="${R[kvio get-many (100 keys per request), 1 in flight]}" \
    'BEGIN { printf "dynamodb get-many: %.0f keys/s (one BatchGetItem of 100 keys per request)\n", r * 100 }'
fi
