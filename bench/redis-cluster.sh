#!/usr/bin/env bash
# bench/redis-cluster.sh [BUILD_DIR]: redis+cluster:// beside redis://, in
# one run. Every server is pinned to core 1, every client to core 0; each
# line runs RUNS times (default 3), alternating the two URLs, and the
# medians and the median of the per-run ratios are reported. 100-byte
# values, 10,000 keys.
#
#   1. routing cost: a one-primary cluster (every slot on one node) against
#      a plain redis-server, both started with the same options;
#   2. three primaries (redis-cli --cluster create) against the plain
#      server: get and put at 64 and 192 in flight (slots=key, so that the
#      bench's one collection spreads over the primaries), get-many of 100 keys
#      (slots=collection: one MGET on one node; slots=key: the keys spread
#      over every primary, one MGET per slot).
#   3. Pub/Sub through the cluster store: `kvio subscribe --count MSGS` on
#      the one-primary node through redis:// and through redis+cluster://
#      while `redis-benchmark -P 64` publishes MSGS messages on that node.
#
#   RUNS=3 REQ=200000 MSGS=500000 bench/redis-cluster.sh build
#   ONLY=routing ...   the one-primary lines only
set -euo pipefail
build=${1:-build}
kvio=$build/kvio
runs=${RUNS:-3}
req=${REQ:-200000}
msgs=${MSGS:-500000}
server=$(command -v redis-server)
rb=$(command -v redis-benchmark)
cli=$(command -v redis-cli)
ncpu=$(nproc)
spin=(taskset -c $((ncpu > 1 ? 1 : 0)))
cpin=(taskset -c 0)
command -v taskset >/dev/null || { spin=(); cpin=(); }

dir=$(mktemp -d "${TMPDIR:-/tmp}/kvio-rcluster-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

next=$((20000 + RANDOM % 30000))
start() { # NAME [ARGS...] → sets $port (another port if this one is taken)
  local name=$1
  shift
  mkdir -p "$dir/$name"
  for _ in $(seq 1 10); do
    while (echo >"/dev/tcp/127.0.0.1/$next") 2>/dev/null ||
      (echo >"/dev/tcp/127.0.0.1/$((next + 10000))") 2>/dev/null; do
      next=$((next + 1))
    done
    port=$next
    next=$((next + 1))
    "${spin[@]}" "$server" --port "$port" --bind 127.0.0.1 --save '' \
      --appendonly no --dir "$dir/$name" --logfile "$dir/$name/log" "$@" \
      >/dev/null 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
      [ "$("$cli" -p "$port" ping 2>/dev/null)" = PONG ] && return 0
      kill -0 "${pids[-1]}" 2>/dev/null || break
      sleep 0.05
    done
  done
  echo "cannot start redis-server $name" >&2
  exit 1
}
cluster_ok() { # PORT...
  for _ in $(seq 1 200); do
    local ok=1
    for p in "$@"; do
      "$cli" -p "$p" cluster info | grep -q cluster_state:ok || ok=0
    done
    [ $ok = 1 ] && return 0
    sleep 0.1
  done
  echo "cluster not ok" >&2
  exit 1
}

start plain
plain="redis://127.0.0.1:$port/0"
start one --cluster-enabled yes --cluster-config-file "$dir/one/nodes.conf"
"$cli" -p "$port" cluster addslotsrange 0 16383 >/dev/null
cluster_ok "$port"
one="redis+cluster://127.0.0.1:$port"
one_plain="redis://127.0.0.1:$port/0?prefix=%7Bb%7D:" # one slot: no CROSSSLOT
three=()
for i in 1 2 3; do
  start "n$i" --cluster-enabled yes --cluster-config-file "$dir/n$i/nodes.conf"
  three+=("$port")
done
"$cli" --cluster create "${three[@]/#/127.0.0.1:}" --cluster-yes \
  >"$dir/create.log" 2>&1
cluster_ok "${three[@]}"
three_url="redis+cluster://127.0.0.1:${three[0]},127.0.0.1:${three[1]}"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { grep -o "\"$1\": *[0-9.e+]*" | head -1 | sed 's/.*: *//'; }
# kv URL ARGS... → ops/s (KEYS=1: keys/s); the client's CPU time (user +
# system, s) goes to $dir/cpu
kv() {
  local url=$1 f=ops_per_sec
  shift
  [ "${KEYS:-0}" = 1 ] && f=keys_per_sec
  /usr/bin/time -f '%U %S' -o "$dir/time" "${cpin[@]}" "$kvio" bench \
    --store "$url" --size 100 --keys 10000 --json "$@" >"$dir/out"
  awk '{ print $1 + $2 }' "$dir/time" >"$dir/cpu"
  field $f <"$dir/out"
}
# pair LABEL TARGET REF_URL URL ARGS...: RUNS times each, back to back;
# the last column is the client's CPU time per request (per key with
# KEYS=1), plain / cluster, in microseconds (medians)
pair() {
  local label=$1 target=$2 ref=$3 url=$4 a b r=() x=() y=() ca=() cb=() n
  shift 4
  n=$(printf '%s\n' "$@" | awk 'p { print; exit } /--requests/ { p = 1 }')
  [ "${KEYS:-0}" = 1 ] && n=$((n * 100))
  for _ in $(seq "$runs"); do
    a=$(kv "$ref" "$@")
    ca+=("$(awk -v n="$n" '{ printf "%.2f", $1 * 1e6 / n }' "$dir/cpu")")
    b=$(kv "$url" "$@")
    cb+=("$(awk -v n="$n" '{ printf "%.2f", $1 * 1e6 / n }' "$dir/cpu")")
    x+=("$a") y+=("$b")
    r+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')")
  done
  printf '| %-50s | %10.0f | %10.0f | %6.2fx | %-7s | %5.2f / %5.2f |\n' \
    "$label" "$(printf '%s\n' "${x[@]}" | median)" \
    "$(printf '%s\n' "${y[@]}" | median)" \
    "$(printf '%s\n' "${r[@]}" | median)" "$target" \
    "$(printf '%s\n' "${ca[@]}" | median)" \
    "$(printf '%s\n' "${cb[@]}" | median)"
}

echo "redis+cluster:// vs redis:// ($runs runs each, medians; ratio = median"
echo "of the per-run ratios, cluster / plain, measured back to back)"
echo "$("$server" --version | cut -d' ' -f1-3), $ncpu cores: servers on core" \
  "${spin[2]:-?}, client on core ${cpin[2]:-?}; commit" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| %-50s | %10s | %10s | %7s | %-7s | %s |\n' \
  "cluster vs one plain server" "redis://" "cluster" ratio target \
  "client CPU µs/op"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..52})" ------------ \
  ------------ --------- --------- -----------------
n=$req
pair "get, 64 in flight, one-primary cluster" ">= 0.9" "$plain" "$one" \
  --op get --clients 64 --requests $((n * 5))
pair "put, 64 in flight, one-primary cluster" ">= 0.9" "$plain" "$one" \
  --op put --clients 64 --requests $((n * 5))
# routing alone: the same cluster node through redis:// and redis+cluster://
pair "get, 64 in flight, same node: redis:// vs cluster" ">= 0.9" \
  "$one_plain" "$one" --op get --clients 64 --requests $((n * 5))
KEYS=1 pair "get-many of 100 keys, 16 in flight, same node" "-" \
  "$one_plain" "$one" --op get-many --clients 16 --requests $((n / 20))

# sub URL → messages/s: kvio subscribe exits after exactly MSGS messages
# (anything on its stderr, a DOWN or a GAP, fails the bench)
one_port=${one##*:}
sub() {
  local t0 t1 p
  "${cpin[@]}" "$kvio" --store "$1" subscribe --count "$msgs" bench.ch \
    >/dev/null 2>"$dir/sub.err" &
  p=$!
  for _ in $(seq 1 400); do
    [ "$("$cli" -p "$one_port" PUBSUB NUMSUB bench.ch | tail -1)" = 1 ] && break
    sleep 0.01
  done
  t0=$(date +%s.%N)
  "${cpin[@]}" "$rb" -p "$one_port" -P 64 -c 1 -n "$msgs" \
    PUBLISH bench.ch payload-16-bytes >/dev/null
  wait $p
  t1=$(date +%s.%N)
  if [ -s "$dir/sub.err" ]; then
    echo "kvio subscriber reported:" >&2
    cat "$dir/sub.err" >&2
    exit 1
  fi
  awk -v n="$msgs" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }'
}
x=() y=() r=()
for _ in $(seq "$runs"); do
  x+=("$(sub "redis://127.0.0.1:$one_port/0")")
  y+=("$(sub "$one")")
  r+=("$(awk -v a="${x[-1]}" -v b="${y[-1]}" 'BEGIN { printf "%.3f", b / a }')")
done
printf '| %-50s | %10.0f | %10.0f | %6.2fx | %-7s | %13s |\n' \
  "subscriber, $msgs messages/s, same node" \
  "$(printf '%s\n' "${x[@]}" | median)" "$(printf '%s\n' "${y[@]}" | median)" \
  "$(printf '%s\n' "${r[@]}" | median)" "-" "-"
[ "${ONLY:-}" = routing ] && exit 0
# kvio bench uses one collection: with slots=collection it lives on one
# primary, so the 3-primary lines spread the keys (slots=key)
for c in 64 192; do
  pair "get, $c in flight, 3 primaries, slots=key" "-" "$plain" \
    "$three_url?slots=key" --op get --clients $c --requests $((n * 5))
  pair "put, $c in flight, 3 primaries, slots=key" "-" "$plain" \
    "$three_url?slots=key" --op put --clients $c --requests $((n * 5))
done
KEYS=1 pair "get-many of 100 keys, 16 in flight, 3 primaries (keys/s)" "-" \
  "$plain" "$three_url" --op get-many --clients 16 --requests $((n / 20))
KEYS=1 pair "same, slots=key: spread over 3 primaries (keys/s)" "-" \
  "$plain" "$three_url?slots=key" --op get-many --clients 16 \
  --requests $((n / 20))
