#!/usr/bin/env bash
# with-cloud.sh s3|dynamodb [--proxy] CMD ARGS... — run CMD against a
# throwaway local S3 (s3rver) or DynamoDB (dynalite) server, then stop it.
#
# The servers are the npm packages pinned by tests/servers/node/
# package-lock.json; a missing node_modules is installed with `npm ci`
# (scripts/deps/cloud.check installs node and npm when they are missing).
# The server runs on a free loopback port with its data in a temporary
# directory. With --proxy, tests/servers/throttle-proxy.js runs in front of
# it: it answers every third request with the service's throttling error
# (S3 503 SlowDown, DynamoDB ThrottlingException) and forwards the others;
# while the file @DIR@/throttle-all exists it throttles every request.
# In ARGS:
#
#   @PORT@      the server's port
#   @ENDPOINT@  http://127.0.0.1:PORT (the proxy's address with --proxy)
#   @STOP@      a script that stops the server (SIGSTOP-free: it is killed)
#   @START@     a script that starts it again on the same port and data
#   @DIR@       the temporary directory
#
# Credentials: s3rver accepts S3RVER / S3RVER; exported as AWS_ACCESS_KEY_ID
# and AWS_SECRET_ACCESS_KEY (any pair works with dynalite).
#
# Exit status: CMD's; 77 (skipped) when node or the packages are missing and
# cannot be installed, except with CI=true, where that is a failure (1).
set -euo pipefail

kind=${1:-}
shift || true
case "$kind" in
  s3|dynamodb) ;;
  *) echo "usage: $0 s3|dynamodb [--proxy] CMD [ARGS...]" >&2; exit 2 ;;
esac
proxy=0
if [ "${1:-}" = "--proxy" ]; then proxy=1; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 s3|dynamodb [--proxy] CMD [ARGS...]" >&2; exit 2; }

missing() {
  if [ "${CI:-}" = "true" ]; then
    echo "with-cloud: $1 (required with CI=true)" >&2
    exit 1
  fi
  echo "with-cloud: $1; skipping" >&2
  exit 77
}

here=$(cd "$(dirname "$0")" && pwd)
nodedir=$here/node
command -v node >/dev/null 2>&1 || missing "node not found (scripts/deps.sh check)"
if [ ! -x "$nodedir/node_modules/.bin/s3rver" ] ||
  [ ! -x "$nodedir/node_modules/.bin/dynalite" ]; then
  command -v npm >/dev/null 2>&1 || missing "npm not found"
  # One installer at a time (ctest runs tests in parallel).
  (
    flock 9
    if [ ! -x "$nodedir/node_modules/.bin/dynalite" ]; then
      (cd "$nodedir" && npm ci --no-audit --no-fund --loglevel=error) >&2 ||
        missing "npm ci failed in $nodedir"
    fi
  ) 9>"$nodedir/.install.lock"
  [ -x "$nodedir/node_modules/.bin/s3rver" ] || missing "s3rver not installed"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/kvio-cloud.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  [ -f "$dir/server.pid" ] && kill "$(cat "$dir/server.pid")" 2>/dev/null || true
  [ -f "$dir/proxy.pid" ] && kill "$(cat "$dir/proxy.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# owns_port PID PORT: the live process PID holds the socket listening on
# PORT (/proc/net/tcp*: local port in hex, state 0A; the socket's inode
# among the process's file descriptors). Someone else answering on a port
# our server then fails to take (EADDRINUSE) is not our server.
owns_port() {
  local hex inodes p i
  hex=$(printf ':%04X' "$2")
  inodes=$(awk -v h="$hex" '$4 == "0A" && substr($2, length($2) - 4) == h {
    print $10 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
  [ -n "$inodes" ] || return 1
  for p in /proc/"$1"/fd/*; do
    for i in $inodes; do
      [ "$(readlink "$p" 2>/dev/null)" = "socket:[$i]" ] && return 0
    done
  done
  return 1
}
wait_port() {
  for _ in $(seq 1 150); do
    port_in_use "$1" && return 0
    sleep 0.1
  done
  return 1
}
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  return 1
}

mkdir -p "$dir/data"
# A free port can be taken between the check and the listen (by another
# test's server or a client's ephemeral port): try a few ports, and keep
# one only when our own server is the one listening on it.
started=0
for attempt in 1 2 3 4 5; do
port=$(free_port)
if [ "$kind" = s3 ]; then
  # s3rver encrypts its continuation tokens with DES: OpenSSL 3 has it only
  # in the legacy provider.
  cmd=(node --openssl-legacy-provider "$here/s3rver.js" "$dir/data" "$port")
else
  cmd=(node "$nodedir/node_modules/.bin/dynalite" --port "$port" --path
       "$dir/data" --createTableMs 0 --deleteTableMs 0 --updateTableMs 0)
fi
q() { printf '%q ' "$@"; }
cat >"$dir/start.sh" <<EOS
#!/bin/sh
$(q "${cmd[@]}") >>$(q "$dir/server.log") 2>&1 &
echo \$! >$(q "$dir/server.pid")
for i in \$(seq 1 150); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && exit 0
  sleep 0.1
done
exit 1
EOS
sed -i '1s|.*|#!/usr/bin/env bash|' "$dir/start.sh"
cat >"$dir/stop.sh" <<EOS
#!/bin/sh
pid=\$(cat $(q "$dir/server.pid"))
kill \$pid 2>/dev/null
while kill -0 \$pid 2>/dev/null; do sleep 0.05; done
exit 0
EOS
chmod 755 "$dir/start.sh" "$dir/stop.sh"
if "$dir/start.sh" && sleep 0.5 && owns_port "$(cat "$dir/server.pid")" "$port"; then
  started=1
  break
fi
kill "$(cat "$dir/server.pid" 2>/dev/null)" 2>/dev/null || true
echo "with-cloud: port $port: the $kind server did not start (attempt $attempt)" >&2
done
if [ "$started" != 1 ]; then
  cat "$dir/server.log" >&2 || true
  echo "with-cloud: the $kind server did not start" >&2
  exit 1
fi
endpoint=http://127.0.0.1:$port
if [ "$proxy" = 1 ]; then
  # As for the server: the port may be taken before the proxy listens (it
  # then exits with EADDRINUSE while someone else answers on the port), so
  # the proxy must still be running once the port answers.
  pstarted=0
  for attempt in 1 2 3 4 5; do
    pport=$(free_port)
    node "$here/throttle-proxy.js" "$kind" "$pport" "$port" "$dir/throttle-all" \
      >"$dir/proxy.log" 2>&1 &
    echo $! >"$dir/proxy.pid"
    if wait_port "$pport" && sleep 0.3 &&
      owns_port "$(cat "$dir/proxy.pid")" "$pport"; then
      pstarted=1
      break
    fi
    kill "$(cat "$dir/proxy.pid")" 2>/dev/null || true
    echo "with-cloud: port $pport: the proxy did not start (attempt $attempt)" >&2
  done
  if [ "$pstarted" != 1 ]; then
    cat "$dir/proxy.log" >&2
    echo "with-cloud: proxy did not start" >&2
    exit 1
  fi
  endpoint=http://127.0.0.1:$pport
fi

export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_DEFAULT_REGION
export KV_CLOUD_PORT=$port KV_CLOUD_ENDPOINT=$endpoint KV_CLOUD_DIR=$dir
export KV_CLOUD_STOP=$dir/stop.sh KV_CLOUD_START=$dir/start.sh
args=()
for a in "$@"; do
  a=${a//@PORT@/$port}
  a=${a//@ENDPOINT@/$endpoint}
  a=${a//@STOP@/$dir/stop.sh}
  a=${a//@START@/$dir/start.sh}
  a=${a//@DIR@/$dir}
  args+=("$a")
done
set +e
"${args[@]}"
rc=$?
set -e
if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -s "$dir/server.log" ]; then
  echo "with-cloud: the last lines of the $kind server's log:" >&2
  tail -30 "$dir/server.log" >&2
fi
exit "$rc"
