#!/usr/bin/env bash
# Process start: median wall time of RUNS (default 20) runs of
#   kvio --store memory:// get k
#   kvio --store disk://DIR get k          (DIR holds k)
#   kvio --version
# beside the reference, Debian's `sqlite3 :memory: 'select 1'`, all measured
# by one hyperfine invocation (one command after the other, 3 warm-up runs
# each), pinned to one core; then once more interleaved, one run of each
# per round. The raw figures go to files first; the tables are parsed from
# them afterwards.
#
#   bench/startup.sh [BUILD_DIR] [KVIO]      RUNS=20 bench/startup.sh build
# KVIO defaults to BUILD_DIR/kvio. KVIO_BASE=OTHER/kvio adds another build's
# memory:// and --version lines to the same hyperfine run (before/after).
set -euo pipefail
# Pin this script (and so everything it starts) to core 0.
if [ -z "${KV_STARTUP_PINNED:-}" ] && command -v taskset >/dev/null; then
  KV_STARTUP_PINNED=1 exec taskset -c 0 bash "$0" "$@"
fi
build=${1:-build}
kvio=${2:-$build/kvio}
runs=${RUNS:-20}
for t in hyperfine sqlite3 jq; do
  command -v "$t" >/dev/null || { echo "startup.sh needs $t" >&2; exit 77; }
done
[ -x "$kvio" ] || { echo "no kvio at $kvio" >&2; exit 77; }
kvio=$(cd "$(dirname "$kvio")" && pwd)/$(basename "$kvio")
base=${KVIO_BASE:-}
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/kvio-startup.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$kvio" --store "disk://$tmp/db" put k v >/dev/null
unset KVIO_MODULE_DIR

# memory:// has no k in a fresh process: `get` exits 1 (-i).
hyperfine -N -i --warmup 3 --runs "$runs" --export-json "$tmp/out.json" \
  -n "sqlite3 :memory: 'select 1'" "sqlite3 :memory: 'select 1'" \
  -n "kvio --store memory:// get k" "$kvio --store memory:// get k" \
  -n "kvio --store disk://DIR get k" "$kvio --store disk://$tmp/db get k" \
  -n "kvio --version" "$kvio --version" \
  ${base:+-n "base: kvio --store memory:// get k" "$base --store memory:// get k"} \
  ${base:+-n "base: kvio --version" "$base --version"} \
  >"$tmp/hyperfine.txt" 2>&1

# The same commands again, interleaved (one of each per round, so a busy
# moment of a shared machine hits them all alike), timed with bash's
# EPOCHREALTIME around fork+exec+wait.
: >"$tmp/rounds.txt"
cmds=("sqlite3 :memory: 'select 1'" "kvio --store memory:// get k"
  "kvio --store disk://DIR get k" "kvio --version")
for r in $(seq "$runs"); do
  for i in 0 1 2 3; do
    case $i in
      0) argv=(sqlite3 :memory: 'select 1') ;;
      1) argv=("$kvio" --store memory:// get k) ;;
      2) argv=("$kvio" --store "disk://$tmp/db" get k) ;;
      3) argv=("$kvio" --version) ;;
    esac
    t0=$EPOCHREALTIME
    "${argv[@]}" >/dev/null 2>&1 || true
    t1=$EPOCHREALTIME
    echo "$i ${t0/./} ${t1/./}" >>"$tmp/rounds.txt"
  done
done

echo "process start: median wall of $runs runs (hyperfine -N, 3 warm-up), pinned to core 0"
echo "commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%F), $(nproc --all) cores"
echo
echo "| command | median ms | mean ± σ ms | × sqlite3 |"
echo "|---|---:|---:|---:|"
ref=$(jq '.results[0].median' "$tmp/out.json")
jq -r --argjson ref "$ref" '.results[] |
  "| `\(.command)` | \(.median * 1000 | . * 100 | round / 100) | \(.mean * 1000 | . * 100 | round / 100) ± \(.stddev * 1000 | . * 100 | round / 100) | \(.median / $ref | . * 100 | round / 100) |"' \
  "$tmp/out.json"

echo
echo "interleaved ($runs rounds, EPOCHREALTIME around each command):"
echo
echo "| command | median ms | × sqlite3 |"
echo "|---|---:|---:|"
awk -v names="$(printf '%s|' "${cmds[@]}")" '
  { d[$1, ++n[$1]] = ($3 - $2) / 1000 }
  function median(i,   k, m, a, j, t) {
    m = n[i]; for (k = 1; k <= m; k++) a[k] = d[i, k]
    for (k = 2; k <= m; k++) { t = a[k]; for (j = k - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    split(names, nm, "|"); ref = median(0)
    for (i = 0; i < 4; i++) printf "| `%s` | %.2f | %.2f |\n", nm[i + 1], median(i), median(i) / ref
  }' "$tmp/rounds.txt"
