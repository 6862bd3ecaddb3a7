#!/usr/bin/env bash
# The local stores' read and write paths (issue 11), each line beside its
# reference from the same run: the bare library loops (bench-*-bare) and,
# with BASE=path/to/an/older/kvio, the same kvio bench line on that build
# (run right after, alternating), so "no slower than before" is measured.
#
#   RUNS=3 REQ=100000 BASE=/var/tmp/base/build/kvio bench/local-engine.sh build > out.txt
#
# Prints one line per measurement: LABEL<TAB>ops/s (median)<TAB>p50 µs<TAB>p99 µs.
set -euo pipefail
build=${1:-build}
kvio=$build/kvio
base=${BASE:-}
runs=${RUNS:-3}
req=${REQ:-100000}
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/kvio-le.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pin=(taskset -c 0)
command -v taskset >/dev/null || pin=()

field() { grep -o "\"$1\": *[0-9.e+]*" | head -1 | sed 's/.*: *//'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# run LABEL CMD...: RUNS times on a fresh directory, the median.
run() {
  local label=$1; shift
  local ops=() p50=() p99=() out
  for _ in $(seq "$runs"); do
    rm -rf "$tmp/db" "$tmp/db.json" "$tmp/db.json.lock" "$tmp/kv.db"*
    out=$("${pin[@]}" "$@")
    ops+=("$(echo "$out" | field ops_per_sec)")
    p50+=("$(echo "$out" | field p50_us || true)")
    p99+=("$(echo "$out" | field p99_us || true)")
  done
  printf '%s\t%.0f\t%s\t%s\n' "$label" "$(printf '%s\n' "${ops[@]}" | median)" \
    "$(printf '%s\n' "${p50[@]}" | grep . | median || echo -)" \
    "$(printf '%s\n' "${p99[@]}" | grep . | median || echo -)"
}

# kv LABEL URL OP CLIENTS N: this build, then BASE's (when given).
kv() {
  local label=$1 url=$2 op=$3 c=$4 n=$5
  run "$label" "$kvio" bench --store "$url" --op "$op" --clients "$c" \
    --requests "$n" --size 100 --keys 10000 --json
  if [ -n "$base" ]; then
    run "$label [before]" "$base" bench --store "${url%%\?reads=*}" --op "$op" \
      --clients "$c" --requests "$n" --size 100 --keys 10000 --json
  fi
}

kv "disk:// get, 1 in flight" "disk://$tmp/db" get 1 "$req"
kv "disk:// get, 64 in flight" "disk://$tmp/db" get 64 $((req * 4))
run "disk:// get, 1 in flight, reads=pool" "$kvio" bench --store "disk://$tmp/db?reads=pool" --op get --clients 1 --requests "$req" --size 100 --keys 10000 --json
run "reference: bare LMDB get" "$build/bench-lmdb-bare" "$tmp/db" get $((req * 4)) 100
kv "disk:// put, sync=full, 64 in flight" "disk://$tmp/db" put 64 "$req"
run "reference: bare LMDB put, one synced txn per put" "$build/bench-lmdb-bare" "$tmp/db" put-sync 2000 100
kv "sqlite:// get, 1 in flight" "sqlite://$tmp/kv.db" get 1 "$req"
run "sqlite:// get, 1 in flight, reads=pool" "$kvio" bench --store "sqlite://$tmp/kv.db?reads=pool" --op get --clients 1 --requests "$req" --size 100 --keys 10000 --json
kv "sqlite:// get, 64 in flight" "sqlite://$tmp/kv.db" get 64 "$req"
run "sqlite:// get, 64 in flight, reads=pool" "$kvio" bench --store "sqlite://$tmp/kv.db?reads=pool" --op get --clients 64 --requests "$req" --size 100 --keys 10000 --json
run "reference: bare SQLite get" "$build/bench-sqlite-bare" "$tmp/kv.db" get "$req" 100
kv "sqlite:// put, sync=full, 64 in flight" "sqlite://$tmp/kv.db" put 64 20000
kv "rocksdb:// get, 1 in flight" "rocksdb://$tmp/db" get 1 "$req"
run "rocksdb:// get, 1 in flight, reads=pool" "$kvio" bench --store "rocksdb://$tmp/db?reads=pool" --op get --clients 1 --requests "$req" --size 100 --keys 10000 --json
kv "rocksdb:// get, 64 in flight" "rocksdb://$tmp/db" get 64 "$req"
run "reference: bare RocksDB get" "$build/bench-rocksdb-bare" "$tmp/db" get "$req" 100
kv "rocksdb:// put, sync=true, 64 in flight" "rocksdb://$tmp/db" put 64 20000
kv "file:// get, 1 in flight" "file://$tmp/db.json" get 1 "$req"
kv "file:// put, 64 in flight, 10,000" "file://$tmp/db.json" put 64 10000
