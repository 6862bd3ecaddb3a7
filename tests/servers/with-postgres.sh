#!/usr/bin/env bash
# with-postgres.sh CMD ARGS... — run CMD against a throwaway PostgreSQL
# cluster, then remove it.
#
# The cluster lives in a temporary directory: initdb with password
# authentication (scram-sha-256; superuser "kv", password "kvpass"), a
# database "kvtest", a server on a free loopback port (127.0.0.1, random,
# retried when taken) with its Unix socket in the same directory. In ARGS:
#
#   @PORT@     the port
#   @URL@      postgresql://kv:kvpass@127.0.0.1:PORT/kvtest
#   @RESTART@  a script that restarts the server (pg_ctl restart -m fast -w)
#   @STOP@     a script that stops it (pg_ctl stop -m fast -w)
#   @START@    a script that starts it again after @STOP@ (waits until ready)
#   @DIR@      the temporary directory
#   @PID@      the postmaster's process id at start (a test that stops the
#              server, SIGSTOP, stops it and its children: the backends)
#
# The same values are exported as KV_PG_PORT, KV_PG_URL, KV_PG_RESTART,
# KV_PG_STOP, KV_PG_START, KV_PG_DIR, KV_PG_PID. PostgreSQL refuses to run as
# root: as root, the server runs as the system user "kvio-test" (created when
# missing; "nobody" when that cannot be done), and the command as the caller.
#
# Environment: PG_BINDIR (default: pg_config --bindir, then the newest
# /usr/lib/postgresql/*/bin), KV_PG_DURABLE=1 keeps fsync on (off by default:
# the tests never crash the machine, so durability only costs them time).
#
# Exit status: CMD's; 77 (skipped) when the PostgreSQL server binaries are
# missing, except with CI=true, where that is a failure (1).
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

missing() {
  if [ "${CI:-}" = "true" ]; then
    echo "with-postgres: $1 (required with CI=true)" >&2
    exit 1
  fi
  echo "with-postgres: $1; skipping" >&2
  exit 77
}

bindir=${PG_BINDIR:-}
if [ -z "$bindir" ] && command -v pg_config >/dev/null 2>&1; then
  bindir=$(pg_config --bindir 2>/dev/null || true)
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ]; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
fi
for tool in initdb postgres pg_ctl pg_isready createdb; do
  [ -n "$bindir" ] && [ -x "$bindir/$tool" ] ||
    missing "PostgreSQL server binary '$tool' not found (package postgresql)"
done

# Who runs the server.
as_user=()
pg_user=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  pg_user=kvio-test
  if ! id -u "$pg_user" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$pg_user" >/dev/null 2>&1 || pg_user=nobody
  fi
  command -v runuser >/dev/null 2>&1 ||
    missing "runuser not found (needed to run the server as '$pg_user')"
  as_user=(runuser -u "$pg_user" --)
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/kvio-pg.XXXXXX")
chmod 700 "$dir"
[ ${#as_user[@]} -eq 0 ] || chown "$pg_user" "$dir"
data=$dir/data
log=$dir/server.log

cleanup() {
  local rc=$?
  if [ -f "$data/postmaster.pid" ]; then
    # A test may have left the server stopped (SIGSTOP): wake it first.
    local spm
    spm=$(head -1 "$data/postmaster.pid" 2>/dev/null || true)
    if [ -n "$spm" ]; then
      # shellcheck disable=SC2046 # the list of child pids, split on purpose
      kill -CONT "$spm" $(ps -o pid= --ppid "$spm" 2>/dev/null) 2>/dev/null || true
    fi
  fi
  if [ -f "$data/postmaster.pid" ]; then
    (cd "$dir" && "${as_user[@]}" "$bindir/pg_ctl" -D "$data" stop -m immediate \
      >/dev/null 2>&1) || true
  fi
  # Still there (pg_ctl failed): end our own postmaster by its pid.
  if [ -f "$data/postmaster.pid" ]; then
    local pm
    pm=$(head -1 "$data/postmaster.pid" 2>/dev/null || true)
    [ -n "$pm" ] && kill -9 "$pm" 2>/dev/null || true
  fi
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_pg() { (cd "$dir" && "${as_user[@]}" "$@"); }

printf 'kvpass\n' >"$dir/pwfile"
[ ${#as_user[@]} -eq 0 ] || chown "$pg_user" "$dir/pwfile"
if ! run_pg "$bindir/initdb" -D "$data" -U kv --pwfile="$dir/pwfile" \
  --auth=scram-sha-256 -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
  cat "$dir/initdb.log" >&2
  echo "with-postgres: initdb failed" >&2
  exit 1
fi

fsync=off
[ "${KV_PG_DURABLE:-0}" = "1" ] && fsync=on
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
started=0
for attempt in $(seq 1 20); do
  port=$((20000 + RANDOM % 40000))
  port_in_use "$port" && continue
  opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=$fsync -c max_connections=50"
  if run_pg "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start -o "$opts" \
    >/dev/null 2>&1; then
    started=1
    break
  fi
  # Taken between the check and the bind: try another port.
  run_pg "$bindir/pg_ctl" -D "$data" stop -m immediate >/dev/null 2>&1 || true
done
if [ "$started" != 1 ]; then
  cat "$log" >&2 || true
  echo "with-postgres: the server did not start" >&2
  exit 1
fi
for _ in $(seq 1 100); do
  "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" && break
  sleep 0.1
done
PGPASSWORD=kvpass "$bindir/createdb" -h 127.0.0.1 -p "$port" -U kv kvtest

# Restart / stop / start scripts for tests that take the server away.
q() { printf '%q ' "$@"; }
cat >"$dir/restart.sh" <<EOF
#!/bin/sh
cd $(q "$dir") && exec $(q "${as_user[@]}" "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 restart -m fast) >/dev/null
EOF
cat >"$dir/stop.sh" <<EOF
#!/bin/sh
cd $(q "$dir") && exec $(q "${as_user[@]}" "$bindir/pg_ctl" -D "$data" -w -t 60 stop -m fast) >/dev/null
EOF
cat >"$dir/start.sh" <<EOF
#!/bin/sh
cd $(q "$dir") && exec $(q "${as_user[@]}" "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start -o "$opts") >/dev/null
EOF
chmod 755 "$dir/restart.sh" "$dir/stop.sh" "$dir/start.sh"

url="postgresql://kv:kvpass@127.0.0.1:$port/kvtest"
pgpid=$(head -1 "$data/postmaster.pid")
export KV_PG_PORT=$port KV_PG_URL=$url KV_PG_DIR=$dir KV_PG_PID=$pgpid
export KV_PG_RESTART=$dir/restart.sh KV_PG_STOP=$dir/stop.sh KV_PG_START=$dir/start.sh
args=()
for a in "$@"; do
  a=${a//@PORT@/$port}
  a=${a//@URL@/$url}
  a=${a//@RESTART@/$dir/restart.sh}
  a=${a//@STOP@/$dir/stop.sh}
  a=${a//@START@/$dir/start.sh}
  a=${a//@DIR@/$dir}
  a=${a//@PID@/$pgpid}
  args+=("$a")
done
set +e
"${args[@]}"
rc=$?
set -e
exit "$rc"
