#!/usr/bin/env bash
# The kvio tool maps no module and none of the stores' libraries unless a
# store needs them: `kvio --version`, `kvio --store memory:// get k`,
# `kvio --store null://` and `kvio --store disk://DIR` are checked with the
# dynamic loader's own trace (LD_DEBUG=files lists every object it maps).
# As a control, sqlite:// maps its module and libsqlite3, and a wrapper of
# the crypto part maps crypto.so.
#   cli-maps.sh PATH/TO/kvio
set -uo pipefail
kvio=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
unset KVIO_MODULE_DIR

# The objects the loader maps for one run ("file=NAME" lines).
maps() {
  LD_DEBUG=files "$@" 2>&1 >/dev/null | sed -n 's/.*file=\([^ ]*\).*/\1/p' | sort -u
}

forbidden='kvio/modules/|libcrypto|librocksdb|libpq\.|libhiredis|libsqlite3|libssl\.|libzstd|liblz4|libz\.|libgnutls|libldap|libkrb5'
# RocksDB's libstdc++ too, unless a sanitizer runtime (UBSan's) brings it.
ldd "$kvio" | grep -E 'lib(a|ub|t)san' >/dev/null || forbidden="$forbidden|libstdc\+\+"
check_none() {
  local what=$1 out bad
  shift
  out=$(maps "$@")
  if ! grep -q 'libkvio' <<<"$out"; then
    echo "FAIL $what: the trace shows no libkvio (LD_DEBUG not working?)"
    failed=$((failed + 1))
    return
  fi
  bad=$(grep -E "$forbidden" <<<"$out" || true)
  if [ -n "$bad" ]; then
    echo "FAIL $what maps:" $bad
    failed=$((failed + 1))
  else
    echo "PASS $what maps no module ($(wc -l <<<"$out") objects)"
    passed=$((passed + 1))
  fi
}
check_some() {
  local what=$1 want=$2 out
  shift 2
  out=$(maps "$@")
  if grep -qE "$want" <<<"$out"; then
    echo "PASS $what maps $want"
    passed=$((passed + 1))
  else
    echo "FAIL $what does not map $want:" $out
    failed=$((failed + 1))
  fi
}

check_none "kvio --version" "$kvio" --version
check_none "kvio --store memory:// get k" "$kvio" --store memory:// get k
check_none "kvio --store null:// put k v" "$kvio" --store null:// put k v
"$kvio" --store "disk://$tmp/db" put k v >/dev/null
check_none "kvio --store disk://DIR get k" "$kvio" --store "disk://$tmp/db" get k
check_none "kvio --wrap retry --wrap statistics" "$kvio" --store memory:// \
  --wrap retry --wrap statistics get k
check_some "kvio --store sqlite://" 'kvio/modules/sqlite\.so' \
  "$kvio" --store "sqlite://$tmp/s.db" get k
check_some "kvio --store sqlite://" 'libsqlite3' \
  "$kvio" --store "sqlite://$tmp/s.db" get k
check_some "kvio --wrap compression" 'kvio/modules/crypto\.so' \
  "$kvio" --store memory:// --wrap compression get k

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
