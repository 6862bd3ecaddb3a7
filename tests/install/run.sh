#!/usr/bin/env bash
# Install test: `cmake --install` into a temporary prefix, then build the
# quickstart against the installed headers, pkg-config file and libraries
# (shared and static), run both, and check that the shared library exports
# nothing but the public kv_ API.
#   run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(find "$tmp/prefix" -name kvio.pc -printf '%h\n' | head -1)
[ -n "$libdir" ] || fail "kvio.pc was not installed"
export PKG_CONFIG_PATH=$libdir
[ "$(pkg-config --modversion kvio)" = "0.1.0" ] || fail "pkg-config version"
for h in kvio.h kvio/backend.h kvio/errno.h kvio/version.h kvio/disk.h; do
  [ -f "$tmp/prefix/include/$h" ] || fail "header $h not installed"
done
[ -x "$tmp/prefix/bin/kvio" ] || fail "the kvio tool was not installed"

# Shared: build with pkg-config, run with the installed library.
cc -Wall -Wextra -Werror -o "$tmp/qs-shared" \
  "$src/examples/quickstart.c" $(pkg-config --cflags --libs kvio)
LD_LIBRARY_PATH=$(dirname "$libdir") "$tmp/qs-shared" memory:// >/dev/null ||
  fail "quickstart against the shared library"
# Static.
cc -Wall -Wextra -Werror -o "$tmp/qs-static" \
  "$src/examples/quickstart.c" $(pkg-config --cflags kvio) \
  "$(dirname "$libdir")/libkvio.a" $(pkg-config --libs --static kvio | sed 's/-lkvio//')
"$tmp/qs-static" "disk://$tmp/db" >/dev/null || fail "quickstart against the static library"

# Hidden visibility: only kv_ symbols are exported.
so=$(ls "$(dirname "$libdir")"/libkvio.so.* | head -1)
bad=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^kv_' | grep -v '^_' || true)
[ -z "$bad" ] || fail "symbols exported outside kv_: $bad"
nm -D --defined-only "$so" | awk '{print $3}' | grep -q '^kv_open$' || fail "kv_open not exported"
echo "PASS install (pkg-config, shared + static quickstart, exports)"
echo "1 passed, 0 failed"
