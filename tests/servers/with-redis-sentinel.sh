#!/usr/bin/env bash
# with-redis-sentinel.sh [--tls] CMD ARGS...
#
# Start a throwaway Redis primary, one replica and three sentinels watching
# them (primary name "kvprimary", quorum 2, down-after 1000 ms) on loopback
# ports from a temporary directory, run CMD with placeholders in its
# arguments replaced, stop everything and exit with CMD's status. It waits
# until the replica is in sync and every sentinel knows the replica and the
# other sentinels, so that a failover can happen as soon as the test starts.
#
#   @SENTINELS@  "127.0.0.1:port,127.0.0.1:port,127.0.0.1:port"
#   @PORT@       the primary's port
#   @RTMP@       the temporary directory
#   @CA@         (--tls) the CA that signed the servers' certificate
#   @BADCA@      (--tls) another CA, which did not
#
# --tls: the primary, the replica and the sentinels speak TLS only (their
# ports are TLS ports), replication and the sentinels' links to the servers
# included, with a certificate for 127.0.0.1 signed by a throwaway CA
# (tests/servers/tls-certs.sh); clients need no certificate of their own.
#
# Exported: KV_SENTINEL_PRIMARY_PORT, KV_SENTINEL_PRIMARY_PID,
# KV_SENTINEL_REPLICA_PORT, KV_SENTINEL_PORTS (space-separated),
# KV_SENTINEL_SEEDS, KV_SENTINEL_DIR, KV_SENTINEL_MODE (plain or tls),
# KV_SENTINEL_CA and KV_SENTINEL_BADCA (--tls; empty otherwise),
# KV_REDIS_CLI (with --tls it needs `--tls --cacert "$KV_SENTINEL_CA"`).
# Each server's log is $KV_SENTINEL_DIR/NAME/*.log; their ends are printed
# when the set does not come up or CMD fails (exit status other than 0, 77).
#
# Without redis-server / redis-cli: exit 77 (skipped), or 1 when CI=true.
set -u
# shellcheck source-path=SCRIPTDIR source=tls-certs.sh
. "$(dirname "${BASH_SOURCE[0]}")/tls-certs.sh"

tls=0
if [ "${1:-}" = --tls ]; then
  tls=1
  shift
fi
if [ $# -lt 1 ]; then
  echo "usage: $0 [--tls] CMD ARGS..." >&2
  exit 2
fi
server=$(command -v redis-server || true)
cli=$(command -v redis-cli || true)
if [ -z "$server" ] || [ -z "$cli" ]; then
  echo "with-redis-sentinel: redis-server/redis-cli not found (apt-get install redis-server redis-tools)" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/kvio-rsentinel-XXXXXX")
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

# --tls: the options every server and sentinel gets (clients connect
# without a certificate; replication and the sentinels' links to the
# servers use TLS too), and redis-cli's
ca='' badca=''
clitls=()
if [ $tls = 1 ]; then
  tls_certs "$dir" with-redis-sentinel || exit $?
  ca=$dir/ca.crt
  badca=$dir/badca.crt
  clitls=(--tls --cacert "$ca")
fi
rcli() {
  "$cli" "${clitls[@]}" "$@"
}
# listen_conf PORT: the listening and TLS lines of a configuration file
listen_conf() {
  if [ $tls = 1 ]; then
    printf '%s\n' "port 0" "tls-port $1" "tls-cert-file $dir/server.crt" \
      "tls-key-file $dir/server.key" "tls-ca-cert-file $ca" \
      "tls-auth-clients no" "tls-replication yes"
  else
    printf 'port %s\n' "$1"
  fi
}

# show_logs: the end of every server's log on stderr
show_logs() {
  for f in "$dir"/*/*.log; do
    [ -f "$f" ] || continue
    echo "---- ${f#"$dir"/} (last 200 lines)" >&2
    tail -n 200 "$f" >&2
  done
}

port_free() {
  ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

next_port=$((20000 + RANDOM % 30000))
free_port() { # sets $port
  while :; do
    next_port=$((next_port + 1))
    [ $next_port -gt 60000 ] && next_port=20001
    port_free $next_port && break
  done
  port=$next_port
}

wait_ping() { # port pidfile
  for _ in $(seq 1 100); do
    kill -0 "$(cat "$2")" 2>/dev/null || return 1
    [ "$(rcli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  return 1
}

# start_redis NAME [args...]: on a free port (sets $port); another port
# when this one was taken meanwhile. Its configuration is
# $dir/NAME/redis.conf (listen_conf), the arguments come after it.
start_redis() {
  local name=$1
  shift
  mkdir -p "$dir/$name"
  for _ in $(seq 1 20); do
    free_port
    listen_conf "$port" >"$dir/$name/redis.conf"
    "$server" "$dir/$name/redis.conf" --bind 127.0.0.1 --save '' \
      --appendonly no --dir "$dir/$name" --daemonize no \
      --logfile "$dir/$name/redis.log" "$@" >/dev/null 2>&1 &
    echo $! >"$dir/$name.pid"
    disown $!
    wait_ping "$port" "$dir/$name.pid" && return 0
    kill "$(cat "$dir/$name.pid")" 2>/dev/null
  done
  echo "with-redis-sentinel: $name did not start; its log:" >&2
  cat "$dir/$name/redis.log" >&2
  exit 1
}

start_redis primary
primary=$port
start_redis replica --replicaof 127.0.0.1 "$primary"
replica=$port

sports=()
for i in 1 2 3; do
  mkdir -p "$dir/sentinel$i"
  started=0
  for _ in $(seq 1 20); do
    free_port
    {
      listen_conf "$port"
      cat <<CONF
bind 127.0.0.1
dir $dir/sentinel$i
logfile $dir/sentinel$i/sentinel.log
sentinel monitor kvprimary 127.0.0.1 $primary 2
sentinel down-after-milliseconds kvprimary 1000
sentinel failover-timeout kvprimary 5000
sentinel parallel-syncs kvprimary 1
CONF
    } >"$dir/sentinel$i/sentinel.conf"
    "$server" "$dir/sentinel$i/sentinel.conf" --sentinel >/dev/null 2>&1 &
    echo $! >"$dir/sentinel$i.pid"
    disown $!
    if wait_ping "$port" "$dir/sentinel$i.pid"; then
      started=1
      break
    fi
    kill "$(cat "$dir/sentinel$i.pid")" 2>/dev/null
  done
  if [ $started != 1 ]; then
    echo "with-redis-sentinel: sentinel $i did not start; its log:" >&2
    cat "$dir/sentinel$i/sentinel.log" >&2
    exit 1
  fi
  sports+=("$port")
done

ok=0
for _ in $(seq 1 300); do
  ok=1
  rcli -p "$replica" info replication | grep -q 'master_link_status:up' || ok=0
  for p in "${sports[@]}"; do
    n=$(rcli -p "$p" sentinel master kvprimary 2>/dev/null |
      awk 'prev=="num-slaves"{s=$0} prev=="num-other-sentinels"{o=$0} {prev=$0} END{print s+0, o+0}')
    [ "$n" = "1 2" ] || ok=0
  done
  [ $ok = 1 ] && break
  sleep 0.1
done
if [ $ok != 1 ]; then
  echo "with-redis-sentinel: the sentinels did not find the replica and each other; the logs:" >&2
  show_logs
  exit 1
fi

seeds=$(for p in "${sports[@]}"; do printf '127.0.0.1:%s,' "$p"; done)
seeds=${seeds%,}
export KV_SENTINEL_PRIMARY_PORT=$primary KV_SENTINEL_REPLICA_PORT=$replica
export KV_SENTINEL_PRIMARY_PID
KV_SENTINEL_PRIMARY_PID=$(cat "$dir/primary.pid")
export KV_SENTINEL_PORTS="${sports[*]}" KV_SENTINEL_SEEDS=$seeds
export KV_SENTINEL_DIR=$dir KV_REDIS_CLI=$cli
export KV_SENTINEL_MODE=plain KV_SENTINEL_CA=$ca KV_SENTINEL_BADCA=$badca
[ $tls = 1 ] && KV_SENTINEL_MODE=tls
cmd=()
for a in "$@"; do
  a=${a//@SENTINELS@/$seeds}
  a=${a//@PORT@/$primary}
  a=${a//@RTMP@/$dir}
  a=${a//@CA@/$ca}
  a=${a//@BADCA@/$badca}
  cmd+=("$a")
done
"${cmd[@]}"
status=$?
if [ $status != 0 ] && [ $status != 77 ]; then
  echo "with-redis-sentinel: $1 exited with status $status; the servers' logs:" >&2
  show_logs
fi
exit $status
