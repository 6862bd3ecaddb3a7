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
run() { echo "\$ kvio $*"; "$kvio" "$@"; echo; }
run -c users put alice '{"name":"Alice"}' -t 3600
run -c users get alice
run -c users ttl alice
run -c users put bob '{"name":"Bob"}'
run -c users keys
run collections
run -c counters incr visits
run -c counters incr visits 10
run -c users delete bob
run -c users get-many alice bob --json
echo "\$ kvio -c users get bob   # missing: exit status 1"
"$kvio" -c users get bob || echo "(exit $?)"
