#!/usr/bin/env bash
# with-memcached.sh [--servers N] [--item-max SIZE] CMD ARGS...
#
# Start N (default 1) throwaway memcached processes on free loopback ports,
# run CMD with placeholders in its arguments replaced, stop the servers and
# exit with CMD's status.
#
#   @PORT@    the first server's port
#   @PORTS@   every server as a comma list: 127.0.0.1:P1,127.0.0.1:P2,...
#   @PORT1@.. @PORTn@   each server's port
#   @PID@     the first server's process id (for tests that stop it)
#
# The same values are exported as KV_MEMCACHED_PORT, KV_MEMCACHED_PORTS and
# KV_MEMCACHED_PORT1..n, KV_MEMCACHED_PID, plus KV_MEMCACHED_SERVER (the
# memcached binary) and KV_MEMCACHED_ARGS (the options used), for tests that
# stop and restart a server themselves. Each server is started as
#   memcached -l 127.0.0.1 -p PORT -U 0 -m 64 -I 32m [-u root]
# (-I 32m lets the 16 MiB value of conformance case 18 through).
#
# Without memcached: exit 77 (skipped), or 1 when CI=true.
set -u

n=1
itemmax=32m
while [ $# -gt 0 ]; do
  case "$1" in
  --servers) n=$2; shift 2 ;;
  --item-max) itemmax=$2; shift 2 ;;
  *) break ;;
  esac
done
if [ $# -lt 1 ]; then
  echo "usage: $0 [--servers N] [--item-max SIZE] CMD ARGS..." >&2
  exit 2
fi

server=$(command -v memcached || true)
if [ -z "$server" ]; then
  echo "with-memcached: memcached not found (apt-get install memcached)" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/kvio-memcached-XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill -CONT "$p" 2>/dev/null # a test may have left it stopped
    kill "$p" 2>/dev/null
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null
  done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

common=(-l 127.0.0.1 -U 0 -m 64 -I "$itemmax")
[ "$(id -u)" = 0 ] && common+=(-u root)

# Is something answering on 127.0.0.1:$1? (bash's /dev/tcp, no tools needed)
answers() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ports=()
for i in $(seq 1 "$n"); do
  started=
  for attempt in $(seq 1 30); do
    port=$((20000 + RANDOM % 40000))
    answers "$port" && continue # taken
    "$server" "${common[@]}" -p "$port" >"$dir/memcached-$i.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
      if answers "$port"; then
        started=1
        break
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    if [ -n "$started" ]; then
      pids+=("$pid")
      ports+=("$port")
      break
    fi
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [ -z "$started" ]; then
    echo "with-memcached: could not start memcached:" >&2
    cat "$dir/memcached-$i.log" >&2
    exit 1
  fi
done

list=
for p in "${ports[@]}"; do
  list="${list:+$list,}127.0.0.1:$p"
done
export KV_MEMCACHED_PORT=${ports[0]} KV_MEMCACHED_PORTS=$list
export KV_MEMCACHED_SERVER=$server KV_MEMCACHED_PID=${pids[0]}
export KV_MEMCACHED_ARGS="${common[*]}"
args=()
for a in "$@"; do
  a=${a//@PORTS@/$list}
  for i in $(seq "$n" -1 1); do
    a=${a//@PORT$i@/${ports[$((i - 1))]}}
  done
  a=${a//@PORT@/${ports[0]}}
  a=${a//@PID@/${pids[0]}}
  args+=("$a")
done
for i in $(seq 1 "$n"); do
  export "KV_MEMCACHED_PORT$i=${ports[$((i - 1))]}"
done

"${args[@]}"
exit $?
