#!/usr/bin/env bash
# `make bench`: the figures in BENCHMARKS.md. Each line runs RUNS times
# (default 5) and reports the median; kvio and its reference run side by
# side in the same invocation. One core: everything is pinned with taskset.
#
#   scripts/bench.sh [BUILD_DIR]        RUNS=5 REQ=200000 scripts/bench.sh
set -euo pipefail
build=${1:-build}
kvio=$build/kvio
bare=$build/bench-lmdb-bare
runs=${RUNS:-5}
req=${REQ:-200000}
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/kvio-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pin=(taskset -c 0)
command -v taskset >/dev/null || pin=()

field() { grep -o "\"$1\": *[0-9.e+]*" | head -1 | sed 's/.*: *//'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# run LABEL CMD... : runs CMD $runs times, prints the median ops/s and p99
run() {
  local label=$1; shift
  local ops=() p99=() out
  for _ in $(seq "$runs"); do
    rm -rf "$tmp/db"
    out=$("${pin[@]}" "$@")
    ops+=("$(echo "$out" | field ops_per_sec)")
    p99+=("$(echo "$out" | field p99_us || true)")
  done
  local mo mp
  mo=$(printf '%s\n' "${ops[@]}" | median)
  mp=$(printf '%s\n' "${p99[@]}" | grep . | median || true)
  printf '| %-48s | %12.0f | %8s |\n' "$label" "$mo" "${mp:--}"
  R[$label]=$mo
}
declare -A R

echo "kvio bench: $runs runs each, median; $(nproc) cores, pinned to core 0"
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F)"
echo
printf '| %-48s | %12s | %8s |\n' "what" "ops/s" "p99 µs"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..50})" "--------------" "----------"
common=(--clients 64 --requests "$req" --size 100 --keys 10000 --json)
run "memory:// get" "$kvio" bench --store memory:// --op get "${common[@]}"
run "memory:// put" "$kvio" bench --store memory:// --op put "${common[@]}"
run "memory:// get, blocking facade" "$kvio" bench --store memory:// --op get --sync "${common[@]}"
run "memory:// get, async depth 1" "$kvio" bench --store memory:// --op get --clients 1 --requests "$req" --size 100 --keys 10000 --json
run "disk:// get" "$kvio" bench --store "disk://$tmp/db" --op get "${common[@]}"
run "disk:// put (sync=full)" "$kvio" bench --store "disk://$tmp/db" --op put "${common[@]}"
run "disk:// put (sync=full), 256 in flight" "$kvio" bench --store "disk://$tmp/db" --op put --clients 256 --requests "$req" --size 100 --keys 10000 --json
run "disk:// put (sync=none)" "$kvio" bench --store "disk://$tmp/db?sync=none" --op put "${common[@]}"
run "disk:// get-many, requests of 100 keys" "$kvio" bench --store "disk://$tmp/db" --op get-many --clients 64 --requests $((req / 100)) --size 100 --keys 10000 --json
run "bare LMDB put, one synced txn per put" "$bare" "$tmp/db" put-sync 2000 100
run "bare LMDB put, 64 per synced txn" "$bare" "$tmp/db" put-batch "$req" 100 64
run "bare LMDB get" "$bare" "$tmp/db" get "$req" 100
echo
ratio() { awk -v a="$2" -v b="$3" -v t="$1" 'BEGIN { printf "%s: %.2fx\n", t, a / b }'; }
ratio "disk:// put / bare LMDB put with one synced txn per put" \
  "${R[disk:// put (sync=full)]}" "${R[bare LMDB put, one synced txn per put]}"
ratio "disk:// put / bare LMDB put with 64 puts per synced txn" \
  "${R[disk:// put (sync=full)]}" "${R[bare LMDB put, 64 per synced txn]}"
ratio "disk:// get / bare LMDB get" "${R[disk:// get]}" "${R[bare LMDB get]}"
ratio "cost per op, blocking facade / async (memory get)" \
  "${R[memory:// get]}" "${R[memory:// get, blocking facade]}"

echo
echo "Other local stores, and wrappers (same settings):"
echo
printf '| %-48s | %12s | %8s |\n' "what" "ops/s" "p99 µs"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..50})" "--------------" "----------"
small=(--clients 64 --size 100 --keys 10000 --json)
run "file:// put (10,000)" "$kvio" bench --store "file://$tmp/db" --op put --requests 10000 "${small[@]}"
run "file:// get" "$kvio" bench --store "file://$tmp/db" --op get --requests "$req" "${small[@]}"
run "bare file rewrite per put (as aiokv does)" "$build/bench-file-naive" "$tmp/db" 200
run "sqlite:// put (sync=full)" "$kvio" bench --store "sqlite://$tmp/db" --op put --requests 20000 "${small[@]}"
run "sqlite:// get" "$kvio" bench --store "sqlite://$tmp/db" --op get --requests "$req" "${small[@]}"
run "bare SQLite put, one synced txn per put" "$build/bench-sqlite-bare" "$tmp/db" put-sync 1000 100
run "bare SQLite put, 64 per synced txn" "$build/bench-sqlite-bare" "$tmp/db" put-batch 20000 100 64
run "rocksdb:// put (sync=true)" "$kvio" bench --store "rocksdb://$tmp/db" --op put --requests 20000 "${small[@]}"
run "rocksdb:// get" "$kvio" bench --store "rocksdb://$tmp/db" --op get --requests "$req" "${small[@]}"
run "bare RocksDB put, one synced write per put" "$build/bench-rocksdb-bare" "$tmp/db" put-sync 1000 100
run "bare RocksDB put, 64 per synced batch" "$build/bench-rocksdb-bare" "$tmp/db" put-batch 20000 100 64
stack=(--wrap prefix-keys:prefix=p --wrap statistics --wrap ttl-clamp:min=0,max=86400
       --wrap retry:max=3 --wrap timeout:seconds=5)
run "memory:// get, bare (wrapper reference)" "$kvio" bench --store memory:// --op get "${common[@]}"
run "memory:// get through 5 wrappers" "$kvio" "${stack[@]}" bench --store memory:// --op get "${common[@]}"
echo
ratio "file:// put / bare whole-file rewrite per put" "${R[file:// put (10,000)]}" "${R[bare file rewrite per put (as aiokv does)]}"
ratio "sqlite:// put / bare SQLite 64 per txn" "${R[sqlite:// put (sync=full)]}" "${R[bare SQLite put, 64 per synced txn]}"
ratio "sqlite:// put / bare SQLite txn per put" "${R[sqlite:// put (sync=full)]}" "${R[bare SQLite put, one synced txn per put]}"
ratio "rocksdb:// put / bare RocksDB 64 per batch" "${R[rocksdb:// put (sync=true)]}" "${R[bare RocksDB put, 64 per synced batch]}"
ratio "rocksdb:// put / bare RocksDB write per put" "${R[rocksdb:// put (sync=true)]}" "${R[bare RocksDB put, one synced write per put]}"
ratio "5-wrapper stack / bare memory get" "${R[memory:// get through 5 wrappers]}" "${R[memory:// get, bare (wrapper reference)]}"
echo
echo "Compression and encryption wrappers (bench-crypto):"
"${pin[@]}" "$build/bench-crypto" 1 || true

# Memory footprint: 1,000,000 entries of 16-byte keys and 100-byte values.
if [ -x "$build/bench-memory-rss" ]; then
  "$build/bench-memory-rss" 1000000 100
fi
