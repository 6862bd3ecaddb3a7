#!/usr/bin/env bash
# bench/redis-client.sh [BUILD_DIR]: the Redis client features against
# references measured in the same run, on one throwaway redis-server
# (pinned to core 1; every client pinned to core 0):
#
#  1. Pub/Sub: `redis-benchmark -P 64 -n MSGS PUBLISH ch <16 bytes>` while
#     one subscriber receives: `kvio subscribe --count MSGS` vs
#     `redis-cli subscribe` (its output read by `head`), one at a time.
#     messages/s = MSGS / (end of the subscriber - start of the publisher).
#     kvio must receive every message (it exits only after MSGS) and report
#     no gap (nothing on stderr).
#  2. The pool: `kvio bench --op get --clients 256` over ?connections=1 and
#     ?connections=4, back to back, beside `redis-benchmark -c 4 -P 64`
#     (4 connections, 256 in flight).
#
# RUNS times each (default 3), medians printed.
#   RUNS=3 MSGS=1000000 REQ=500000 bench/redis-client.sh build
set -euo pipefail
build=${1:-build}
kvio=$build/kvio
runs=${RUNS:-3}
msgs=${MSGS:-1000000}
req=${REQ:-500000}
server=$(command -v redis-server)
rb=$(command -v redis-benchmark)
cli=$(command -v redis-cli)
ncpu=$(nproc)
spin=(taskset -c $((ncpu > 1 ? 1 : 0)))
cpin=(taskset -c 0)
command -v taskset >/dev/null || { spin=(); cpin=(); }

dir=$(mktemp -d "${TMPDIR:-/tmp}/kvio-redis-client-bench.XXXXXX")
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
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
wait_sub() {
  for _ in $(seq 1 400); do
    [ "$("$cli" -p "$port" PUBSUB NUMSUB bench.ch | tail -1)" = 1 ] && return
    sleep 0.01
  done
  echo "no subscriber" >&2
  exit 1
}
publish() {
  "${cpin[@]}" "$rb" -p "$port" -P 64 -c 1 -n "$msgs" \
    PUBLISH bench.ch payload-16-bytes >/dev/null
}

# kvio subscribe: exits after exactly MSGS messages.
sub_kvio() {
  local t0 t1 p
  "${cpin[@]}" "$kvio" --store "$url" subscribe --count "$msgs" bench.ch \
    >/dev/null 2>"$dir/kvio.err" &
  p=$!
  wait_sub
  t0=$(now)
  publish
  wait $p
  t1=$(now)
  if [ -s "$dir/kvio.err" ]; then
    echo "kvio subscriber reported:" >&2
    cat "$dir/kvio.err" >&2
    exit 1
  fi
  rate "$msgs" "$t0" "$t1"
}

# redis-cli subscribe: 3 lines per message after the 3 of the
# confirmation; done when head has them all.
sub_cli() {
  local t0 t1 p
  rm -f "$dir/done"
  "${cpin[@]}" "$cli" -p "$port" subscribe bench.ch \
    > >(head -n $((3 + 3 * msgs)) >/dev/null; touch "$dir/done") &
  p=$!
  wait_sub
  t0=$(now)
  publish
  while [ ! -e "$dir/done" ]; do sleep 0.005; done
  t1=$(now)
  kill $p 2>/dev/null || true
  wait $p 2>/dev/null || true
  rate "$msgs" "$t0" "$t1"
}

field() { grep -o "\"$1\": *[0-9.e+]*" | head -1 | sed 's/.*: *//'; }
kvbench() { # CONNECTIONS
  "${cpin[@]}" "$kvio" bench --store "$url?connections=$1" --op get \
    --clients 256 --requests "$req" --size 100 --keys 10000 --json |
    field ops_per_sec
}
rbench() {
  "${cpin[@]}" "$rb" -p "$port" -d 100 -r 10000 --csv -c 4 -P 64 -t get \
    -n "$req" | awk -F'"' '$2 == "GET" { print $4 }'
}

echo "redis client features: $runs runs each, medians"
echo "$("$server" --version | cut -d' ' -f1-3), $ncpu cores: server on core" \
  "${spin[2]:-?}, clients on core ${cpin[2]:-?}; commit" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)"
echo
k=() c=()
for _ in $(seq "$runs"); do
  k+=("$(sub_kvio)")
  c+=("$(sub_cli)")
done
km=$(printf '%s\n' "${k[@]}" | median)
cm=$(printf '%s\n' "${c[@]}" | median)
echo "| subscriber, $msgs messages (redis-benchmark -P 64 PUBLISH) | messages/s |"
echo "|---|---:|"
echo "| redis-cli subscribe (reference) | $cm |"
echo "| kvio subscribe --count $msgs (none lost) | $km |"
echo "| ratio kvio / redis-cli | $(awk -v a="$cm" -v b="$km" 'BEGIN { printf "%.2fx", b / a }') |"
echo
p1=() p4=() r=() q=()
for _ in $(seq "$runs"); do
  r+=("$(rbench)")
  p1+=("$(kvbench 1)")
  p4+=("$(kvbench 4)")
  q+=("$(awk -v a="${p1[-1]}" -v b="${p4[-1]}" 'BEGIN { printf "%.3f", b / a }')")
done
echo "| get, 256 in flight, $req requests | ops/s |"
echo "|---|---:|"
echo "| redis-benchmark -c 4 -P 64 (reference) | $(printf '%s\n' "${r[@]}" | median) |"
echo "| kvio, connections=1 | $(printf '%s\n' "${p1[@]}" | median) |"
echo "| kvio, connections=4 | $(printf '%s\n' "${p4[@]}" | median) |"
echo "| ratio 4 / 1 (median of the per-run ratios) | $(printf '%s\n' "${q[@]}" | median)x |"
