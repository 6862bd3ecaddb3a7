#!/usr/bin/env bash
# with-redis.sh [--tls|--unix|--acl] CMD ARGS...
#
# Start a throwaway redis-server on a free loopback port, from a temporary
# directory, run CMD with placeholders in its arguments replaced, stop the
# server and exit with CMD's status.
#
#   @PORT@    the server's port (the TLS port with --tls)
#   @SOCK@    its unix socket (always created)
#   @RTMP@    the temporary directory
#   @CA@      (--tls) the CA that signed the server's certificate
#   @BADCA@   (--tls) another CA, which did not
#   @PID@     the server's process id (for tests that stop it: SIGSTOP)
#
# The same values are exported as KV_REDIS_PORT, KV_REDIS_SOCK, KV_REDIS_DIR,
# KV_REDIS_CA, KV_REDIS_BADCA, KV_REDIS_PID, plus KV_REDIS_MODE (plain, tls,
# unix, acl) and KV_REDIS_SERVER (the redis-server binary), for tests that
# start servers of their own. --acl adds the user kvuser (password kvpass)
# and gives the default user the password "defaultpass".
#
# Without redis-server: exit 77 (skipped), or 1 when CI=true.
set -u
# shellcheck source-path=SCRIPTDIR source=tls-certs.sh
. "$(dirname "${BASH_SOURCE[0]}")/tls-certs.sh"

mode=plain
case "${1:-}" in
--tls) mode=tls; shift ;;
--unix) mode=unix; shift ;;
--acl) mode=acl; shift ;;
esac
if [ $# -lt 1 ]; then
  echo "usage: $0 [--tls|--unix|--acl] CMD ARGS..." >&2
  exit 2
fi

server=$(command -v redis-server || true)
cli=$(command -v redis-cli || true)
if [ -z "$server" ] || [ -z "$cli" ]; then
  echo "with-redis: redis-server/redis-cli not found (apt-get install redis-server redis-tools)" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/kvio-redis-XXXXXX")
pid=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [ -n "$pid" ]; then
    kill -CONT "$pid" 2>/dev/null # a test may have left it stopped
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ca='' badca=''
if [ "$mode" = tls ]; then
  tls_certs "$dir" with-redis || exit $?
  ca=$dir/ca.crt
  badca=$dir/badca.crt
fi

sock=$dir/redis.sock
port=
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 40000))
  args=(--bind 127.0.0.1 --save '' --appendonly no --dir "$dir"
    --unixsocket "$sock" --unixsocketperm 700 --daemonize no
    --logfile "$dir/redis.log")
  ping=("$cli" -h 127.0.0.1)
  case $mode in
  tls)
    args+=(--port 0 --tls-port "$port" --tls-cert-file "$dir/server.crt"
      --tls-key-file "$dir/server.key" --tls-ca-cert-file "$ca"
      --tls-auth-clients no)
    ping+=(-p "$port" --tls --cacert "$ca")
    ;;
  acl)
    args+=(--port "$port" --requirepass defaultpass
      --user kvuser on '>kvpass' '~*' '&*' '+@all')
    ping+=(-p "$port" --user kvuser --pass kvpass --no-auth-warning)
    ;;
  *)
    args+=(--port "$port")
    ping+=(-p "$port")
    ;;
  esac
  "$server" "${args[@]}" >/dev/null 2>&1 &
  pid=$!
  up=0
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if [ "$("${ping[@]}" ping 2>/dev/null)" = PONG ]; then
      up=1
      break
    fi
    sleep 0.05
  done
  [ $up = 1 ] && break
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=
done
if [ -z "$pid" ]; then
  echo "with-redis: could not start redis-server; its log:" >&2
  cat "$dir/redis.log" >&2 2>/dev/null
  exit 1
fi

export KV_REDIS_PORT=$port KV_REDIS_SOCK=$sock KV_REDIS_DIR=$dir
export KV_REDIS_CA=$ca KV_REDIS_BADCA=$badca KV_REDIS_MODE=$mode
export KV_REDIS_SERVER=$server KV_REDIS_PID=$pid
cmd=()
for a in "$@"; do
  a=${a//@PORT@/$port}
  a=${a//@SOCK@/$sock}
  a=${a//@RTMP@/$dir}
  a=${a//@CA@/$ca}
  a=${a//@BADCA@/$badca}
  a=${a//@PID@/$pid}
  cmd+=("$a")
done
"${cmd[@]}"
status=$?
exit $status
