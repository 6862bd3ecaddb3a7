#!/usr/bin/env bash
# Two processes write to one store at once; afterwards both sets are complete.
#
#   bash tests/crash/two-proc.sh PATH/TO/crash-tool URL COUNT
#
# @TMP@ in URL becomes a fresh temporary directory. Starts
# `crash-tool write URL a COUNT` and `crash-tool write URL b COUNT` together
# (64 puts in flight each, keys a-<n> and b-<n>), waits for both to exit 0
# with COUNT acknowledgements each, then checks with a third process that the
# store holds exactly the 2 x COUNT keys with their values. Exits 0, 1 on a
# failure, 77 if crash-tool is missing.
set -u

TOOL=${1:-}
URL=${2:-}
COUNT=${3:-2000}
if [ -z "$TOOL" ] || [ ! -x "$TOOL" ] || [ -z "$URL" ]; then
  echo "usage: two-proc.sh PATH/TO/crash-tool URL COUNT (tool '$TOOL' not found)" >&2
  exit 77
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kvio-twoproc.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/store"
url=${URL//@TMP@/$TMP/store}

start=$(date +%s.%N)
"$TOOL" write "$url" a "$COUNT" >"$TMP/ack-a" 2>"$TMP/err-a" &
pa=$!
"$TOOL" write "$url" b "$COUNT" >"$TMP/ack-b" 2>"$TMP/err-b" &
pb=$!
fail=0
wait "$pa" || { echo "FAIL: writer a exited with status $?:"; sed 's/^/    /' "$TMP/err-a"; fail=1; }
wait "$pb" || { echo "FAIL: writer b exited with status $?:"; sed 's/^/    /' "$TMP/err-b"; fail=1; }
end=$(date +%s.%N)
for w in a b; do
  n=$(grep -c '' "$TMP/ack-$w" || true)
  if [ "$n" -ne "$COUNT" ]; then
    echo "FAIL: writer $w acknowledged $n of $COUNT keys"
    fail=1
  fi
done
if "$TOOL" check --exact "$url" "$TMP/ack-a" "$TMP/ack-b" >"$TMP/check.out" 2>&1; then
  echo "two writers, $COUNT keys each, $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }') s; $(tail -n 1 "$TMP/check.out")"
else
  echo "FAIL: check:"
  sed 's/^/    /' "$TMP/check.out"
  fail=1
fi
exit "$fail"
