#!/usr/bin/env bash
# bench/redis.sh [BUILD_DIR]: the Redis store against redis-benchmark, side
# by side in one run, on one throwaway redis-server.
#
# The server is pinned to one core, every client (kvio bench and
# redis-benchmark alike) to the other; each line runs RUNS times (default 3)
# and the median is reported. 100-byte values, 10,000 keys.
#
#   RUNS=3 REQ=200000 bench/redis.sh build
set -euo pipefail
build=${1:-build}
kvio=$build/kvio
runs=${RUNS:-3}
req=${REQ:-200000}
server=$(command -v redis-server)
rb=$(command -v redis-benchmark)
cli=$(command -v redis-cli)
ncpu=$(nproc)
spin=(taskset -c $((ncpu > 1 ? 1 : 0)))
cpin=(taskset -c 0)
command -v taskset >/dev/null || { spin=(); cpin=(); }

dir=$(mktemp -d "${TMPDIR:-/tmp}/kvio-redis-bench.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 40000))
  "${spin[@]}" "$server" --port "$port" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$dir" --logfile "$dir/log" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    [ "$("$cli" -p "$port" ping 2>/dev/null)" = PONG ] && break 2
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
  done
  kill $pid 2>/dev/null || true
  pid=
done
[ -n "$pid" ] || { echo "cannot start redis-server" >&2; exit 1; }
url="redis://127.0.0.1:$port/0"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { grep -o "\"$1\": *[0-9.e+]*" | head -1 | sed 's/.*: *//'; }
# rb TEST ARGS...: redis-benchmark's requests/s for TEST (GET, SET)
rb() {
  local t=$1; shift
  "${cpin[@]}" "$rb" -p "$port" -d 100 -r 10000 --csv "$@" |
    awk -F'"' -v t="$t" '$2 == t { print $4 }'
}
# kv ARGS...: kvio bench's ops/s (KEYS=1: keys/s)
kv() {
  local f=ops_per_sec
  [ "${KEYS:-0}" = 1 ] && f=keys_per_sec
  "${cpin[@]}" "$kvio" bench --store "$url" --size 100 --keys 10000 --json \
    "$@" | field $f
}
# pair LABEL TARGET "REF ARGS" "KVIO ARGS": RUNS times the reference then
# kvio, back to back; medians of each and of the per-run ratios.
pair() {
  local label=$1 target=$2 ref=$3 mine=$4 a b r=() x=() y=()
  for _ in $(seq "$runs"); do
    # shellcheck disable=SC2086
    a=$(rb $ref)
    # shellcheck disable=SC2086
    b=$(kv $mine)
    x+=("$a") y+=("$b")
    r+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')")
  done
  printf '| %-44s | %10.0f | %10.0f | %6.2fx | %-7s |\n' "$label" \
    "$(printf '%s\n' "${x[@]}" | median)" \
    "$(printf '%s\n' "${y[@]}" | median)" \
    "$(printf '%s\n' "${r[@]}" | median)" "$target"
}
single() {
  local label=$1 v=()
  shift
  for _ in $(seq "$runs"); do v+=("$(kv "$@")"); done
  printf '| %-44s | %10s | %10.0f | %7s | %-7s |\n' "$label" - \
    "$(printf '%s\n' "${v[@]}" | median)" - -
}

echo "redis store vs redis-benchmark: $runs runs each, medians; ratio = median"
echo "of the per-run ratios (kvio / reference, measured back to back)"
echo "$("$server" --version | cut -d' ' -f1-3), $ncpu cores: server on core" \
  "${spin[2]:-?}, clients on core ${cpin[2]:-?}; commit" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)"
echo
printf '| %-44s | %10s | %10s | %7s | %-7s |\n' "kvio vs reference" \
  "ref ops/s" "kvio ops/s" ratio target
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" ------------ \
  ------------ --------- ---------
n=$req
pair "get, 1 in flight vs -c 1 -P 1" ">= 0.9" \
  "GET -c 1 -P 1 -t get -n $n" "--op get --clients 1 --requests $n"
pair "put, 1 in flight vs -c 1 -P 1 (SET)" ">= 0.9" \
  "SET -c 1 -P 1 -t set -n $n" "--op put --clients 1 --requests $n"
pair "get, 64 in flight vs -c 64 -P 1" ">= 5" \
  "GET -c 64 -P 1 -t get -n $n" "--op get --clients 64 --requests $((n * 5))"
pair "get, 64 in flight vs -c 1 -P 64" ">= 0.8" \
  "GET -c 1 -P 64 -t get -n $((n * 5))" \
  "--op get --clients 64 --requests $((n * 5))"
pair "put, 64 in flight vs -c 1 -P 64 (SET)" "-" \
  "SET -c 1 -P 64 -t set -n $((n * 5))" \
  "--op put --clients 64 --requests $((n * 5))"
KEYS=1 single "get-many of 100 keys, 1 in flight (keys/s)" --op get-many \
  --clients 1 --requests $((n / 100))
KEYS=1 single "get-many of 100 keys, 16 in flight (keys/s)" --op get-many \
  --clients 16 --requests $((n / 20))
