#!/usr/bin/env bash
# with-redis-cluster.sh [--tls] [--primaries N] [--replicas R] CMD ARGS...
#
# Start a throwaway Redis Cluster on loopback — N primaries (default 3), each
# with R replicas (default 0) — from a temporary directory, run CMD with
# placeholders in its arguments replaced, stop every node and exit with
# CMD's status. The cluster is built with `redis-cli --cluster create` and
# waited for until every node reports cluster_state:ok.
#
#   @PORT@    the first node's port
#   @SEEDS@   every node as "127.0.0.1:port,127.0.0.1:port,..."
#   @RTMP@    the temporary directory
#   @CA@      (--tls) the CA that signed the nodes' certificate
#
# --tls: every node speaks TLS only (clients, cluster bus, replication),
# with a certificate for 127.0.0.1 signed by a throwaway CA.
#
# Exported for tests that reshard, kill or restart nodes: KV_CLUSTER_PORTS
# (space-separated, primaries first as created), KV_CLUSTER_PIDS (same
# order), KV_CLUSTER_DIR, KV_CLUSTER_SEEDS, KV_CLUSTER_CA (--tls),
# KV_REDIS_SERVER, KV_REDIS_CLI.
# Node i's process id is also in $KV_CLUSTER_DIR/<port>.pid and its log in
# $KV_CLUSTER_DIR/<port>/redis.log. cluster-node-timeout is 1000 ms so that
# a killed primary's replica takes over within a few seconds.
#
# Without redis-server / redis-cli: exit 77 (skipped), or 1 when CI=true.
set -u
# shellcheck source-path=SCRIPTDIR source=tls-certs.sh
. "$(dirname "${BASH_SOURCE[0]}")/tls-certs.sh"

primaries=3
replicas=0
tls=0
while [ $# -gt 0 ]; do
  case $1 in
  --tls) tls=1; shift ;;
  --primaries) primaries=$2; shift 2 ;;
  --replicas) replicas=$2; shift 2 ;;
  *) break ;;
  esac
done
if [ $# -lt 1 ]; then
  echo "usage: $0 [--tls] [--primaries N] [--replicas R] CMD ARGS..." >&2
  exit 2
fi

server=$(command -v redis-server || true)
cli=$(command -v redis-cli || true)
if [ -z "$server" ] || [ -z "$cli" ]; then
  echo "with-redis-cluster: redis-server/redis-cli not found (apt-get install redis-server redis-tools)" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/kvio-rcluster-XXXXXX")
ports=()
pids=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  for f in "$dir"/*.pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    kill -CONT "$p" 2>/dev/null
    kill "$p" 2>/dev/null
  done
  for f in "$dir"/*.pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    for _ in $(seq 1 100); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.05
    done
    kill -9 "$p" 2>/dev/null
  done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ca=''
tlsargs=()
clitls=()
if [ $tls = 1 ]; then
  tls_certs "$dir" with-redis-cluster || exit $?
  ca=$dir/ca.crt
  clitls=(--tls --cacert "$ca")
fi

port_free() { # a port and its cluster bus port (+10000) both unused
  ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null &&
    ! (echo >"/dev/tcp/127.0.0.1/$(($1 + 10000))") 2>/dev/null
}

start_node() { # port
  local p=$1
  mkdir -p "$dir/$p"
  if [ $tls = 1 ]; then
    tlsargs=(--port 0 --tls-port "$p" --tls-cert-file "$dir/server.crt"
      --tls-key-file "$dir/server.key" --tls-ca-cert-file "$ca"
      --tls-auth-clients no --tls-cluster yes --tls-replication yes)
  else
    tlsargs=(--port "$p")
  fi
  "$server" --bind 127.0.0.1 "${tlsargs[@]}" --save '' --appendonly no \
    --dir "$dir/$p" --daemonize no --logfile "$dir/$p/redis.log" \
    --cluster-enabled yes --cluster-config-file "$dir/$p/nodes.conf" \
    --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
    >/dev/null 2>&1 &
  echo $! >"$dir/$p.pid"
  disown $! # a test may kill it: no "Killed" notice from this shell
  for _ in $(seq 1 100); do
    kill -0 "$(cat "$dir/$p.pid")" 2>/dev/null || return 1
    [ "$("$cli" "${clitls[@]}" -p "$p" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  return 1
}

total=$((primaries * (1 + replicas)))
base=$((20000 + RANDOM % 30000))
p=$base
while [ ${#ports[@]} -lt "$total" ]; do
  p=$((p + 1))
  [ $p -gt 55000 ] && p=20001
  port_free $p || continue
  if ! start_node $p; then
    echo "with-redis-cluster: redis-server on port $p did not start; its log:" >&2
    cat "$dir/$p/redis.log" >&2 2>/dev/null
    kill "$(cat "$dir/$p.pid")" 2>/dev/null
    rm -f "$dir/$p.pid"
    continue
  fi
  ports+=("$p")
  pids+=("$(cat "$dir/$p.pid")")
done

nodes=()
for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
if ! "$cli" "${clitls[@]}" --cluster create "${nodes[@]}" --cluster-replicas "$replicas" \
  --cluster-yes >"$dir/create.log" 2>&1; then
  echo "with-redis-cluster: cluster create failed:" >&2
  cat "$dir/create.log" >&2
  exit 1
fi
# Every node must agree that the cluster is up (and every replica must have
# its primary) before the test starts.
ok=0
for _ in $(seq 1 200); do
  ok=1
  for p in "${ports[@]}"; do
    "$cli" "${clitls[@]}" -p "$p" cluster info 2>/dev/null |
      grep -q 'cluster_state:ok' || ok=0
  done
  # replicas: attached to their primary and in sync
  if [ $ok = 1 ] && [ "$replicas" -gt 0 ]; then
    up=$(for p in "${ports[@]}"; do "$cli" "${clitls[@]}" -p "$p" info replication; done |
      grep -c 'master_link_status:up')
    [ "$up" -ge $((primaries * replicas)) ] || ok=0
  fi
  [ $ok = 1 ] && break
  sleep 0.1
done
if [ $ok != 1 ]; then
  echo "with-redis-cluster: the cluster did not come up" >&2
  exit 1
fi

seeds=$(IFS=,; echo "${nodes[*]}")
export KV_CLUSTER_PORTS="${ports[*]}" KV_CLUSTER_PIDS="${pids[*]}"
export KV_CLUSTER_DIR=$dir KV_CLUSTER_SEEDS=$seeds
export KV_REDIS_SERVER=$server KV_REDIS_CLI=$cli KV_CLUSTER_CA=$ca
cmd=()
for a in "$@"; do
  a=${a//@PORT@/${ports[0]}}
  a=${a//@SEEDS@/$seeds}
  a=${a//@RTMP@/$dir}
  a=${a//@CA@/$ca}
  cmd+=("$a")
done
"${cmd[@]}"
exit $?
