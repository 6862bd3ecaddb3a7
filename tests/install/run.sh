#!/usr/bin/env bash
# Install test: `cmake --install` into a temporary prefix, then MOVE the
# tree elsewhere (a relocated install), build the quickstart against the
# moved headers, pkg-config file and libraries (shared and static), run
# both, run the moved kvio tool on stores and a wrapper that live in
# modules (LIBDIR/kvio/modules, found relative to the moved libkvio), and
# check that the shared library exports nothing but the public kv_ API and
# the documented kv__ helpers modules use (docs/design.md).
#   run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }

unset KVIO_MODULE_DIR LD_LIBRARY_PATH
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
mv "$tmp/prefix" "$tmp/moved"
libdir=$(find "$tmp/moved" -name kvio.pc -printf '%h\n' | head -1)
[ -n "$libdir" ] || fail "kvio.pc was not installed"
export PKG_CONFIG_PATH=$libdir
[ "$(pkg-config --modversion kvio)" = "0.1.0" ] || fail "pkg-config version"
for h in kvio.h kvio/backend.h kvio/errno.h kvio/version.h kvio/disk.h \
    kvio/module.h; do
  [ -f "$tmp/moved/include/$h" ] || fail "header $h not installed"
done
kvio=$tmp/moved/bin/kvio
[ -x "$kvio" ] || fail "the kvio tool was not installed"
mods=$(dirname "$libdir")/kvio/modules
# What this build has: its parts (the known schemes and wrapper names; with
# -DKV_REQUIRE_ALL=ON, make check, that is all of them) and whether they
# are modules (-DKV_MODULES=ON, the default).
known=$("$kvio" --store nosuch:// get k 2>&1 || true)
known="$known $("$kvio" --store memory:// --wrap nosuch get k 2>&1 || true)"
has() { [[ $known == *" $1,"* || $known == *" $1)"* ]]; }
modules=0
grep -q '^KV_MODULES:BOOL=ON' "$build/CMakeCache.txt" && modules=1
urls=()
has sqlite && urls+=("sqlite://$tmp/s.db")
has rocksdb && urls+=("rocksdb://$tmp/r")
has compression && urls+=("disk://$tmp/c?default_collection=c")
if grep -q '^KV_REQUIRE_ALL:BOOL=ON' "$build/CMakeCache.txt"; then
  [ ${#urls[@]} -eq 3 ] || fail "sqlite, rocksdb or compression missing: $known"
fi
if [ $modules = 1 ]; then
  for u in "${urls[@]}"; do
    case $u in sqlite*) m=sqlite ;; rocksdb*) m=rocksdb ;; *) m=crypto ;; esac
    [ -f "$mods/$m.so" ] || fail "module $m.so not installed in $mods"
  done
fi

# The moved tool, with no environment help: libkvio through its RPATH, the
# modules relative to libkvio.
"$kvio" --store memory:// put k v >/dev/null 2>&1 || fail "moved kvio on memory://"
for url in "${urls[@]}"; do
  wrap=()
  case $url in disk*) wrap=(--wrap compression:min_size=1) ;; esac
  "$kvio" --store "$url" "${wrap[@]}" put k value-of-k >/dev/null 2>"$tmp/err" ||
    fail "moved kvio put on $url: $(cat "$tmp/err")"
  got=$("$kvio" --store "$url" "${wrap[@]}" get k 2>"$tmp/err") ||
    fail "moved kvio get on $url: $(cat "$tmp/err")"
  [ "$got" = "value-of-k" ] || fail "moved kvio get on $url: '$got'"
done
if has compression; then
  # The compressed value is an envelope, not the text.
  "$kvio" --store "disk://$tmp/c?default_collection=c" get k >"$tmp/raw" 2>/dev/null
  printf 'value-of-k\n' | cmp -s - "$tmp/raw" && fail "compression wrapper stored plain text"
fi
if [ $modules = 1 ] && has sqlite; then
  # ... and the modules came from the moved tree.
  LD_DEBUG=files "$kvio" --store "sqlite://$tmp/s.db" get k 2>"$tmp/trace" >/dev/null || true
  grep -q "file=$tmp/moved/[^ ]*kvio/modules/sqlite.so" "$tmp/trace" ||
    fail "sqlite.so not loaded from the moved tree"
  LD_DEBUG=files "$kvio" --store memory:// get k 2>"$tmp/trace" >/dev/null || true
  grep -q "libkvio" "$tmp/trace" || fail "no loader trace"
  grep -q "kvio/modules" "$tmp/trace" && fail "memory:// loaded a module"
fi

# Shared: build with pkg-config, run with the installed library.
cc -Wall -Wextra -Werror -o "$tmp/qs-shared" \
  "$src/examples/quickstart.c" $(pkg-config --cflags --libs kvio)
LD_LIBRARY_PATH=$(dirname "$libdir") "$tmp/qs-shared" memory:// >/dev/null ||
  fail "quickstart against the shared library"
if has sqlite; then
  LD_LIBRARY_PATH=$(dirname "$libdir") "$tmp/qs-shared" "sqlite://$tmp/qs.db" \
    >/dev/null || fail "quickstart against the shared library on sqlite://"
fi
# Static.
cc -Wall -Wextra -Werror -o "$tmp/qs-static" \
  "$src/examples/quickstart.c" $(pkg-config --cflags kvio) \
  "$(dirname "$libdir")/libkvio.a" $(pkg-config --libs --static kvio | sed 's/-lkvio//')
"$tmp/qs-static" "disk://$tmp/db" >/dev/null || fail "quickstart against the static library"

# Hidden visibility: only kv_ symbols are exported, and of the internal
# kv__ ones exactly those modules need (docs/design.md, "Parts and modules").
so=$(ls "$(dirname "$libdir")"/libkvio.so.* | head -1)
bad=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^kv_' | grep -v '^_' || true)
[ -z "$bad" ] || fail "symbols exported outside kv_: $bad"
internal=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -E '^kv__|^kv_part_' | sort | tr '\n' ' ')
# Exactly the internals declared KV__MODULE_API in the sources.
allowed=$(grep -rh 'KV__MODULE_API' "$src/src" --include='*.h' |
  perl -ne 'print "$1\n" if /KV__MODULE_API.*?\b(kv__\w+)\s*[(\[]/' |
  sort -u | tr '\n' ' ')
[ -n "$allowed" ] || fail "no KV__MODULE_API declaration found"
[ "$internal" = "$allowed" ] ||
  fail "internal symbols exported: $internal"
nm -D --defined-only "$so" | awk '{print $3}' | grep -q '^kv_open$' || fail "kv_open not exported"
echo "PASS install (relocated: pkg-config, shared + static quickstart, kvio on sqlite/rocksdb/compression modules, exports)"
echo "1 passed, 0 failed"
