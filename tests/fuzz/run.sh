#!/usr/bin/env bash
# Run one libFuzzer target over its seed corpus.
#   run.sh TARGET SEED_DIR RUNS|SECONDS [s]
# New inputs go to a temporary corpus (the seeds in the repo stay as they
# are); a crash leaves its input in tests/fuzz/found/ to be kept as a
# regression seed once fixed.
set -euo pipefail
target=$1 seeds=$2 amount=$3 unit=${4:-runs}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
found=$(dirname "$seeds")/../found
mkdir -p "$found"
if [ "$unit" = s ]; then limit=(-max_total_time="$amount")
else limit=(-runs="$amount"); fi
if "$target" "${limit[@]}" -timeout=10 -rss_limit_mb=2048 \
     -artifact_prefix="$found/$(basename "$target")-" "$work" "$seeds" \
     > "$work/log" 2>&1; then
  tail -1 "$work/log"
  echo "1 passed, 0 failed"
else
  tail -40 "$work/log"
  echo "0 passed, 1 failed"
  exit 1
fi
