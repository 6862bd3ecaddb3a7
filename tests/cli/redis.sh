#!/usr/bin/env bash
# The CLI's Redis commands against a real server (run it under
# tests/servers/with-redis.sh): kvio publish, kvio subscribe [--pattern]
# [--count N] (fed by redis-cli PUBLISH from another process, output seen
# line by line through a pipe), kvio redis ARG... (printed as redis-cli
# prints when its output is not a terminal, compared with redis-cli's own
# output), error replies.
#   redis.sh PATH/TO/kvio [cluster|sentinel]
# cluster (under with-redis-cluster.sh): the store is redis+cluster:// and
# the reference redis-cli -c (it follows redirects); the keys share a hash
# tag, so MGET is legal; a subscriber sits on one primary, so the
# subscription counts add up every node's, and PUBLISH's reply (receivers
# on the node that got it) may be 0. sentinel (under
# with-redis-sentinel.sh): the store is redis+sentinel://, the reference
# redis-cli on the primary.
set -u
KVIO=$1
mode=${2:-plain}
case $mode in
cluster)
  S="redis+cluster://$KV_CLUSTER_SEEDS"
  ports=$KV_CLUSTER_PORTS
  cliargs=(-c -p "${ports%% *}")
  ;;
sentinel)
  S="redis+sentinel://$KV_SENTINEL_SEEDS/kvprimary"
  ports=$KV_SENTINEL_PRIMARY_PORT
  cliargs=(-p "$ports")
  ;;
*)
  S="redis://127.0.0.1:$KV_REDIS_PORT/0"
  ports=$KV_REDIS_PORT
  cliargs=(-p "$ports")
  ;;
esac
cli() { redis-cli -h 127.0.0.1 "${cliargs[@]}" "$@"; }
kvio() { "$KVIO" --store "$S" "$@"; }
# PUBSUB NUMSUB CHANNEL / NUMPAT, added up over the nodes
numsub() {
  local n=0 p
  for p in $ports; do
    n=$((n + $(redis-cli -p "$p" PUBSUB NUMSUB "$1" | tail -1)))
  done
  echo $n
}
numpat() {
  local n=0 p
  for p in $ports; do n=$((n + $(redis-cli -p "$p" PUBSUB NUMPAT))); done
  echo $n
}
fail=0
check() { # name expected actual
  if [ "$2" = "$3" ]; then echo "PASS $1"; else
    echo "FAIL $1"; diff <(printf '%s\n' "$2") <(printf '%s\n' "$3"); fail=1; fi
}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT

# kvio redis prints what redis-cli prints (not a terminal).
cli DEL '{kvcli}:h' '{kvcli}:s' '{kvcli}:n' >/dev/null
check "redis SET" "OK" "$(kvio redis SET '{kvcli}:s' hello)"
check "redis INCR" "1" "$(kvio redis INCR '{kvcli}:n')"
check "redis HSET" "2" "$(kvio redis HSET '{kvcli}:h' f1 v1 f2 v2)"
for cmd in "GET {kvcli}:s" "MGET {kvcli}:s {kvcli}:none {kvcli}:n" "HGETALL {kvcli}:h" \
  "GET {kvcli}:none" "PING" "LRANGE {kvcli}:none 0 -1" "TYPE {kvcli}:h" "EXISTS {kvcli}:s"; do
  # shellcheck disable=SC2086
  want=$(cli $cmd; echo "status $?")
  # shellcheck disable=SC2086
  got=$(kvio redis $cmd; echo "status $?")
  check "redis $cmd" "$want" "$got"
done
got=$(kvio redis NOSUCH 2>"$dir/err"; echo "status $?")
check "redis error reply: exit 3" "status 3" "$got"
check "redis error reply: stderr" "kvio: KV_EBACKEND: ERR unknown command 'NOSUCH', with args beginning with: " "$(cat "$dir/err")"
got=$(kvio redis SUBSCRIBE x 2>&1; echo "status $?")
check "redis SUBSCRIBE refused" "kvio: KV_EINVAL: kv_redis_command: 'SUBSCRIBE' changes the connection's state; use a subscriber (kv_redis_subscriber) or the URL's options
status 3" "$got"

# publish prints the number of receivers.
check "publish, nobody listening" "0" "$(kvio publish kvcli.none msg)"

# subscribe: one line per message, flushed, escaped; --count exits 0.
wait_subscribers() { # channel count
  for _ in $(seq 1 100); do
    [ "$(numsub "$1")" = "$2" ] && return 0; sleep 0.05
  done; echo "no subscriber on $1"; fail=1
}
"$KVIO" --store "$S" subscribe --count 3 kvcli.a kvcli.b >"$dir/out" 2>"$dir/err" &
pid=$!
wait_subscribers kvcli.b 1
got=$(kvio publish kvcli.a first)
if [ "$mode" = cluster ]; then
  case $got in 0 | 1) got=1 ;; esac # the node that got it may have none
fi
check "publish, one receiver" "1" "$got"
# each message received before the next is published: on a cluster two
# nodes' messages travel the bus on different links
wait_lines() {
  for _ in $(seq 1 100); do
    [ "$(wc -l <"$dir/out")" -ge "$1" ] && return 0; sleep 0.05
  done
}
wait_lines 1
cli PUBLISH kvcli.b $'tab\there' >/dev/null
wait_lines 2
cli PUBLISH kvcli.a $'line\nbreak' >/dev/null
wait $pid; st=$?
check "subscribe --count 3: status" 0 "$st"
check "subscribe: lines" "$(printf 'kvcli.a\tfirst\nkvcli.b\ttab\\there\nkvcli.a\tline\\nbreak')" "$(cat "$dir/out")"
check "subscribe: stderr" "" "$(cat "$dir/err")"

# --pattern: PATTERN<TAB>CHANNEL<TAB>PAYLOAD.
"$KVIO" --store "$S" subscribe --pattern --count 1 'kvcli.p.*' >"$dir/out" &
pid=$!
for _ in $(seq 1 100); do [ "$(numpat)" = 1 ] && break; sleep 0.05; done
cli PUBLISH kvcli.q nope >/dev/null
cli PUBLISH kvcli.p.x yes >/dev/null
wait $pid
check "subscribe --pattern" "$(printf 'kvcli.p.*\tkvcli.p.x\tyes')" "$(cat "$dir/out")"

# Each line reaches a pipe as it is published (flushed per message).
mkfifo "$dir/fifo"
"$KVIO" --store "$S" subscribe kvcli.live >"$dir/fifo" &
pid=$!
exec 3<"$dir/fifo"
wait_subscribers kvcli.live 1
cli PUBLISH kvcli.live one >/dev/null
IFS= read -r -t 5 line <&3
check "subscribe: flushed per line" "$(printf 'kvcli.live\tone')" "$line"
kill $pid; wait $pid 2>/dev/null; exec 3<&-

# A server that is not there: the error, exit 3.
got=$("$KVIO" --store redis://127.0.0.1:1/0 subscribe x 2>&1; echo "status $?")
check "subscribe, no server" "kvio: KV_ECONN: cannot connect to 127.0.0.1:1: connection refused
status 3" "$got"
cli DEL '{kvcli}:h' '{kvcli}:s' '{kvcli}:n' >/dev/null
[ $fail = 0 ] && echo "all passed"
exit $fail
