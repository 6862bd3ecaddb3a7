#!/usr/bin/env bash
# Process start: median wall time of RUNS (default 20) runs of
#   kvio --store memory:// get k
#   kvio --store disk://DIR get k          (DIR holds k)
#   kvio --version
# beside the reference, Debian's `sqlite3 :memory: 'select 1'`, all measured
# by one hyperfine invocation (one command after the other, 3 warm-up runs
# each), pinned to one core. The raw figures go to a JSON file first; the
# table is parsed from it afterwards.
#
#   bench/startup.sh [BUILD_DIR] [KVIO]      RUNS=20 bench/startup.sh build
# KVIO defaults to BUILD_DIR/kvio; give another binary to compare builds.
set -euo pipefail
build=${1:-build}
kvio=${2:-$build/kvio}
runs=${RUNS:-20}
for t in hyperfine sqlite3 jq; do
  command -v "$t" >/dev/null || { echo "startup.sh needs $t" >&2; exit 77; }
done
[ -x "$kvio" ] || { echo "no kvio at $kvio" >&2; exit 77; }
kvio=$(cd "$(dirname "$kvio")" && pwd)/$(basename "$kvio")
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/kvio-startup.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pin=(taskset -c 0)
command -v taskset >/dev/null || pin=()
"$kvio" --store "disk://$tmp/db" put k v >/dev/null
unset KVIO_MODULE_DIR

# memory:// has no k in a fresh process: `get` exits 1 (-i).
"${pin[@]}" hyperfine -N -i --warmup 3 --runs "$runs" --export-json "$tmp/out.json" \
  -n "sqlite3 :memory: 'select 1'" "sqlite3 :memory: 'select 1'" \
  -n "kvio --store memory:// get k" "$kvio --store memory:// get k" \
  -n "kvio --store disk://DIR get k" "$kvio --store disk://$tmp/db get k" \
  -n "kvio --version" "$kvio --version" >"$tmp/hyperfine.txt" 2>&1

echo "process start: median wall of $runs runs (hyperfine -N, 3 warm-up), pinned to core 0"
echo "commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F), $(nproc) cores"
echo
echo "| command | median ms | mean ± σ ms | × sqlite3 |"
echo "|---|---:|---:|---:|"
ref=$(jq '.results[0].median' "$tmp/out.json")
jq -r --argjson ref "$ref" '.results[] |
  "| `\(.command)` | \(.median * 1000 | . * 100 | round / 100) | \(.mean * 1000 | . * 100 | round / 100) ± \(.stddev * 1000 | . * 100 | round / 100) | \(.median / $ref | . * 100 | round / 100) |"' \
  "$tmp/out.json"
