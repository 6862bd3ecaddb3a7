#!/usr/bin/env bash
# Crash test of a persistent store: nothing acknowledged is ever lost, and a
# store killed at any moment opens again.
#
#   bash tests/crash/run.sh PATH/TO/crash-tool URL ROUNDS
#
# @TMP@ in URL becomes a fresh temporary directory (one for the whole run:
# every round writes to the same store). Each round starts
# `crash-tool write URL r<round>` (64 puts in flight, each key printed when
# acknowledged), kills it with SIGKILL after a random 50-500 ms, then runs
# `crash-tool check URL ACKFILES...` over the acknowledgements of this round
# and every earlier one: a lost acknowledged key, a half-written value or a
# store that cannot be opened, read or listed fails the round. Prints one
# line per round and "N passed, M failed"; exits 1 if a round failed (or no
# write was ever acknowledged), 77 if crash-tool is missing.
set -u

TOOL=${1:-}
URL=${2:-}
ROUNDS=${3:-5}
if [ -z "$TOOL" ] || [ ! -x "$TOOL" ] || [ -z "$URL" ]; then
  echo "usage: run.sh PATH/TO/crash-tool URL ROUNDS (tool '$TOOL' not found)" >&2
  exit 77
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kvio-crash.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/store" "$TMP/acks"
url=${URL//@TMP@/$TMP/store}

passed=0
failed=0
total=0
for round in $(seq 1 "$ROUNDS"); do
  ack=$TMP/acks/round-$round
  "$TOOL" write "$url" "r$round" >"$ack" 2>"$TMP/writer.err" &
  pid=$!
  delay=$((50 + RANDOM % 451))
  sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
  if ! kill -9 "$pid" 2>/dev/null; then
    wait "$pid"
    echo "round $round: FAIL: the writer ended before the kill (status $?):"
    sed 's/^/    /' "$TMP/writer.err"
    failed=$((failed + 1))
    continue
  fi
  wait "$pid" 2>/dev/null
  n=$(grep -c '' "$ack" || true)
  total=$((total + n))
  if "$TOOL" check "$url" "$TMP"/acks/round-* >"$TMP/check.out" 2>&1; then
    echo "round $round: ok: killed after $delay ms, $n acknowledged this round;" \
      "$(tail -n 1 "$TMP/check.out")"
    passed=$((passed + 1))
  else
    echo "round $round: FAIL: killed after $delay ms, $n acknowledged this round:"
    sed 's/^/    /' "$TMP/check.out"
    failed=$((failed + 1))
  fi
done
if [ "$total" -eq 0 ]; then
  echo "FAIL: no write was acknowledged in $ROUNDS rounds: nothing was tested"
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
