#!/usr/bin/env bash
# Install the Debian packages kvio needs that are missing (as root, or with
# sudo). Usage: scripts/deps.sh build|check|demo
set -euo pipefail

build_pkgs=(cmake make gcc pkg-config libuv1-dev liblmdb-dev libssl-dev
            libjansson-dev libcmocka-dev)
# Servers the tests start on loopback (none yet: the network stores land
# with their own issues and add their server packages here).
server_pkgs=()

want=("${build_pkgs[@]}")
case "${1:-build}" in
  check) want+=("${server_pkgs[@]}") ;;
  build|demo) ;;
  *) echo "usage: $0 build|check|demo" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
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
