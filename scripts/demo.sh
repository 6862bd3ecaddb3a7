#!/usr/bin/env bash
# `make demo`: the quickstart on memory:// and disk://, then a short CLI
# session on the default store (disk://./kvio-data).
set -euo pipefail
build=${1:-build}
kvio=$build/kvio
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== quickstart on memory://"
"$build/example-quickstart" memory://
echo
echo "== quickstart on disk://$tmp/quickstart"
"$build/example-quickstart" "disk://$tmp/quickstart"
echo
echo "== framework example (any store) on disk://$tmp/framework"
"$build/example-framework" "disk://$tmp/framework"
echo
echo "== CLI session on the default store (disk://./kvio-data)"
# Show each command as typed, its output, and its exit status when it is not
# 0 (1 means "missing" or "nothing deleted": part of the contract).
run() {
  local rc=0
  printf '$ kvio'
  for a in "$@"; do
    case $a in
      *[!A-Za-z0-9_./:=-]*) printf " '%s'" "$a" ;;
      *) printf ' %s' "$a" ;;
    esac
  done
  echo
  "$kvio" "$@" || rc=$?
  [ "$rc" -eq 0 ] || echo "(exit status $rc)"
  [ "$rc" -le 1 ] || exit "$rc"
}
run -c users put alice '{"name":"Alice"}' -t 3600
run -c users get alice
echo
run -c users ttl alice
run -c users put bob '{"name":"Bob"}'
run -c users keys
run collections
run -c counters incr visits
run -c counters incr visits 10
run -c users delete bob
run -c users get-many alice bob --json
run -c users get bob
echo
echo "(the default store is ./kvio-data; remove it with: rm -rf ./kvio-data)"
