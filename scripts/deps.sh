#!/usr/bin/env bash
# Install the Debian packages kvio needs that are missing (as root, or with
# sudo). Usage: scripts/deps.sh build|check|demo
set -euo pipefail

build_pkgs=(cmake make gcc pkg-config libuv1-dev liblmdb-dev libssl-dev
            libjansson-dev libcmocka-dev nettle-dev)
# Tools the tests use whatever parts are built.
server_pkgs=(clang libclang-rt-14-dev)

# Each optional part lists its packages in scripts/deps/<part>.build (to
# build) and scripts/deps/<part>.check (for its tests: servers, tools).
here=$(cd "$(dirname "$0")" && pwd)
read_list() { [ -f "$1" ] && grep -v '^[[:space:]]*\(#\|$\)' "$1" || true; }
want=("${build_pkgs[@]}")
for f in "$here"/deps/*.build; do
  [ -e "$f" ] && mapfile -t -O "${#want[@]}" want < <(read_list "$f")
done
case "${1:-build}" in
  check)
    want+=("${server_pkgs[@]}")
    for f in "$here"/deps/*.check; do
      [ -e "$f" ] && mapfile -t -O "${#want[@]}" want < <(read_list "$f")
    done
    ;;
  build|demo) ;;
  *) echo "usage: $0 build|check|demo" >&2; exit 2 ;;
esac

# "pkg:command" installs pkg only when command is missing (node and npm
# may come from elsewhere, e.g. nodesource, whose nodejs conflicts with
# Debian's npm).
missing=()
for p in "${want[@]}"; do
  if [[ $p == *:* ]]; then
    command -v "${p#*:}" >/dev/null 2>&1 && continue
    p=${p%%:*}
  fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "kvio: missing packages: ${missing[*]} (run as root or install them)" >&2
  exit 1
fi
echo "kvio: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
