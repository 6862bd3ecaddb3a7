#!/usr/bin/env bash
# CPU time per get (perf stat task-clock), for when the machine is too
# loaded for throughput to mean anything: a loop that never sleeps is
# scheduled less than one that waits on the threadpool, so ops/s then
# measures the scheduler; CPU time per op measures the code. Each line:
# the task-clock of N*11 gets minus that of N gets (which includes the
# populate phase), divided by 10N. BASE as in bench/local-engine.sh.
#
#   N=50000 BASE=/var/tmp/base/build/kvio bench/local-engine-cpu.sh build
set -euo pipefail
build=${1:-build}
base=${BASE:-}
n=${N:-50000}
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/kvio-lecpu.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cpu_ms() { # BIN URL CLIENTS REQUESTS
  rm -rf "$tmp"/d*
  taskset -c 0 perf stat -x, -e task-clock "$1" bench --store "$2" --op get \
    --clients "$3" --requests "$4" --size 100 --keys 10000 --json 2>&1 >/dev/null |
    grep task-clock | cut -d, -f1
}
per_op() { # LABEL BIN URL CLIENTS
  local a b
  a=$(cpu_ms "$2" "$3" "$4" "$n")
  b=$(cpu_ms "$2" "$3" "$4" $((n * 11)))
  awk -v l="$1" -v a="$a" -v b="$b" -v n="$n" \
    'BEGIN { printf "%s\t%.3f µs CPU per get\n", l, (b - a) * 1000 / (10 * n) }'
}
for c in 1 64; do
  for s in "disk://$tmp/d" "sqlite://$tmp/d.db" "rocksdb://$tmp/d" "file://$tmp/d.json"; do
    per_op "${s%%:*} c=$c" "$build/kvio" "$s" "$c"
    [ -n "$base" ] && per_op "${s%%:*} c=$c [before]" "$base" "$s" "$c"
    case $s in file*) ;; *) per_op "${s%%:*} c=$c reads=pool" "$build/kvio" "$s?reads=pool" "$c" ;; esac
  done
done
