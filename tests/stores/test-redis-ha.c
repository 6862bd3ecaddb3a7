/* The Redis client's parts — raw commands, Pub/Sub and transactions — on
 * redis+cluster:// and redis+sentinel:// (src/stores/redis_ha.c and the
 * routing in redis_cluster.c / redis_sentinel.c), against real servers:
 *
 *   cluster            (with-redis-cluster.sh, 3 primaries) raw commands
 *                      routed by slot and redirected (MOVED after a slot
 *                      moved, a key that is not argv[1]), Pub/Sub through
 *                      every node, transactions in one slot (contended, a
 *                      slot moved under them), waiting for the first map,
 *                      closing with commands waiting;
 *   cluster-failover   (--replicas 1) the primary a subscriber is on is
 *                      killed: DOWN, GAP on another node, messages again;
 *                      transactions and raw commands go on;
 *   sentinel           (with-redis-sentinel.sh) the same on the primary;
 *   sentinel-kill      the primary killed under a subscriber, a
 *                      transaction and raw commands: each carries on with
 *                      the promoted replica without reopening;
 *   sentinel-switch    SENTINEL FAILOVER while the store only reads: the
 *                      +switch-master announcement moves it (the old
 *                      primary stays up, so nothing would fail on it).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvio.h"
#include "kvio/redis.h"
#include "kvio/redis_cluster.h"

#include "redis-fixture.h"

static const char *g_cli, *g_seeds, *g_ports, *g_dir;
static int g_sentinel, g_replica, g_primary_pid;

/* Another store on fx's loop. */
static kv_store_t *open_url(fx_t *fx, const char *url) {
  kv_store_t *s;
  char err[256] = "";
  int rc = kv_open_ex(&fx->loop, url, &s, err, sizeof err);
  if (rc != 0) fail_msg("kv_open(%s): %s: %s", url, kv_err_name(rc), err);
  return s;
}

static char *ha_url(const char *rest) {
  static char buf[1024];
  if (g_sentinel)
    snprintf(buf, sizeof buf, "redis+sentinel://%s/kvprimary%s", g_seeds, rest);
  else
    snprintf(buf, sizeof buf, "redis+cluster://%s%s", g_seeds, rest);
  return buf;
}

/* Every test starts with a store of the mode's URL. */
static int ha_setup(void **state) {
  fx_t *fx;
  if (setup(state) != 0) return -1;
  fx = *state;
  fx_open(fx, ha_url("?timeout=3"));
  return 0;
}

/* The reply's string (STRING or STATUS), or "" */
static const char *str_of(const kv_redis_req_t *r) {
  if (r->status != 0 || r->reply == NULL) return "";
  if (r->reply->type == KV_REDIS_REPLY_NIL) return "(nil)";
  return r->reply->str ? r->reply->str : "";
}

/* A redis:// store on one node, for checking from outside the cluster. */
static long long node_int(fx_t *fx, int port, int argc, const char **argv) {
  kv_store_t *s;
  kv_redis_req_t r;
  char url[64];
  long long n = -1;
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
  s = open_url(fx, url);
  if (raw_on(fx, s, &r, argc, argv) == 0 &&
      r.reply->type == KV_REDIS_REPLY_INTEGER)
    n = r.reply->integer;
  else if (r.status == 0 && r.reply->type == KV_REDIS_REPLY_ARRAY &&
           r.reply->elements == 2 &&
           r.reply->element[1]->type == KV_REDIS_REPLY_INTEGER)
    n = r.reply->element[1]->integer; /* PUBSUB NUMSUB ch -> [ch, n] */
  kv_redis_req_cleanup(&r);
  close_other(fx, s);
  return n;
}

static int port_at(int i) {
  return nth_port(g_ports, i);
}

static int pid_of_port(int port) {
  char path[512];
  FILE *f;
  int pid = -1;
  snprintf(path, sizeof path, "%s/%d.pid", g_dir, port);
  f = fopen(path, "r");
  if (f == NULL) return -1;
  if (fscanf(f, "%d", &pid) != 1) pid = -1;
  fclose(f);
  return pid;
}

/* The store's slot function (src/stores/redis_cluster.c). */
unsigned kv__rcl_slot(const char *key, size_t len);

/* ---- Raw commands -------------------------------------------------------- */

enum { NRAW = 100 };

static void test_raw(void **state) {
  fx_t *fx = *state;
  kv_redis_req_t reqs[NRAW], r;
  char keys[NRAW][16], vals[NRAW][16];
  const char *ping[] = {"PING"};
  const char *sub[] = {"SUBSCRIBE", "x"};
  kv_redis_conn_t *conn;
  /* submitted before the slot map / the primary is known: they wait */
  g_done = 0;
  for (int i = 0; i < NRAW; i++) {
    const char *argv[3] = {"SET", keys[i], vals[i]};
    snprintf(keys[i], sizeof keys[i], "rk%d", i);
    snprintf(vals[i], sizeof vals[i], "v%d", i);
    memset(&reqs[i], 0, sizeof reqs[i]);
    assert_int_equal(
        kv_redis_command(fx->store, &reqs[i], 3, argv, NULL, raw_cb), 0);
  }
  run_until(fx, NRAW);
  for (int i = 0; i < NRAW; i++) {
    assert_int_equal(reqs[i].status, 0);
    assert_string_equal(str_of(&reqs[i]), "OK");
    assert_ptr_equal(reqs[i].store, fx->store);
    kv_redis_req_cleanup(&reqs[i]);
  }
  for (int i = 0; i < NRAW; i++) {
    const char *argv[2] = {"GET", keys[i]};
    assert_int_equal(raw(fx, &r, 2, argv), 0);
    assert_string_equal(str_of(&r), vals[i]);
    kv_redis_req_cleanup(&r);
  }
  if (!g_sentinel) { /* they are spread over every primary */
    const char *dbsize[] = {"DBSIZE"};
    for (int i = 0; i < 3; i++)
      assert_true(node_int(fx, port_at(i), 1, dbsize) > 0);
  }
  assert_int_equal(raw(fx, &r, 1, ping), 0);
  assert_string_equal(str_of(&r), "PONG");
  kv_redis_req_cleanup(&r);
  /* refused: a subscription on the shared connections; a lease */
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_redis_command(fx->store, &r, 2, sub, NULL, raw_cb),
                   KV_EINVAL);
  kv_redis_req_cleanup(&r);
  assert_int_equal(kv_redis_lease(fx->store, &conn), KV_ENOTSUP);
  assert_null(conn);
}

/* A key that is not argv[1] (EVAL): the command goes to argv[1]'s node and
 * is redirected (MOVED) to the key's. */
static void test_raw_redirect(void **state) {
  fx_t *fx = *state;
  kv_redis_req_t r;
  kv_redis_cluster_stats_t cs;
  static const char script[] = "return redis.call('GET', KEYS[1])";
  char key[16], val[16];
  for (int i = 0; i < 20; i++) {
    const char *set[] = {"SET", key, val};
    const char *eval[] = {"EVAL", script, "1", key};
    snprintf(key, sizeof key, "ek%d", i);
    snprintf(val, sizeof val, "e%d", i);
    assert_int_equal(raw(fx, &r, 3, set), 0);
    kv_redis_req_cleanup(&r);
    assert_int_equal(raw(fx, &r, 4, eval), 0);
    assert_string_equal(str_of(&r), val);
    kv_redis_req_cleanup(&r);
  }
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_CLUSTER_STATS, &cs, sizeof cs), 0);
  /* the script's slot is fixed, the keys' slots spread: 2 in 3 are on
   * another primary */
  assert_true(cs.moved > 0);
}

/* ---- Pub/Sub ------------------------------------------------------------- */

enum { NCHAN = 10, NMSG = 20 };

static struct {
  int subscribed, down, gap, closed, messages;
  int floor, counted; /* messages numbered floor or more */
  int next[NCHAN];    /* per channel: the next message number expected */
  int bad;
  char badmsg[256];
} S;

static void on_msg(kv_redis_sub_t *sub, const kv_redis_msg_t *m) {
  (void)sub;
  switch (m->event) {
  case KV_REDIS_SUB_SUBSCRIBED:
    S.subscribed++;
    break;
  case KV_REDIS_SUB_DOWN:
    S.down++;
    break;
  case KV_REDIS_SUB_GAP:
    S.gap++;
    break;
  case KV_REDIS_SUB_CLOSED:
    S.closed++;
    g_done++;
    break;
  case KV_REDIS_SUB_MESSAGE: {
    int ch = atoi(m->channel + 2), n = atoi(m->payload);
    S.messages++;
    if (ch < 0 || ch >= NCHAN || n < S.next[ch]) {
      S.bad++;
      snprintf(S.badmsg, sizeof S.badmsg, "%s: %s after %d", m->channel,
               m->payload, ch >= 0 && ch < NCHAN ? S.next[ch] : -1);
    } else {
      S.next[ch] = n + 1;
      if (n >= S.floor) S.counted++;
    }
    break;
  }
  default:
    break;
  }
}

/* The reply counts the receivers on the node that got the PUBLISH: on a
 * cluster the subscriber may be on another one (the message reaches it over
 * the cluster bus). */
static void pub_cb(kv_redis_req_t *req) {
  if (req->status != 0 || req->reply->type != KV_REDIS_REPLY_INTEGER ||
      req->reply->integer < (g_sentinel ? 1 : 0)) {
    S.bad++;
    snprintf(S.badmsg, sizeof S.badmsg, "publish: %s",
             kv_redis_req_errmsg(req));
  }
  kv_redis_req_cleanup(req);
  free(req);
  g_done++;
}

/* Publish NMSG messages numbered from `from` on every channel through s. */
static void publish_all(fx_t *fx, kv_store_t *s, int from) {
  g_done = 0;
  for (int n = 0; n < NMSG; n++)
    for (int c = 0; c < NCHAN; c++) {
      kv_redis_req_t *r = calloc(1, sizeof *r);
      char ch[16], msg[16];
      assert_non_null(r);
      snprintf(ch, sizeof ch, "ch%d", c);
      snprintf(msg, sizeof msg, "%d", from + n);
      /* refused at once while the connection to its node backs off */
      if (kv_redis_publish(s, r, ch, msg, strlen(msg), pub_cb) != 0) {
        S.bad++;
        snprintf(S.badmsg, sizeof S.badmsg, "publish: %s",
                 kv_redis_req_errmsg(r));
        kv_redis_req_cleanup(r);
        free(r);
        g_done++;
      }
    }
  run_until(fx, NMSG * NCHAN);
}

static void on_tick(uv_timer_t *t) {
  (void)t;
}

/* Wait (at most 20 s) until n messages numbered S.floor or more came. */
static void wait_messages(fx_t *fx, int n) {
  uint64_t deadline = uv_hrtime() + 20 * (uint64_t)1000000000;
  uv_timer_t tick; /* wakes the loop to look at the clock */
  uv_timer_init(&fx->loop, &tick);
  uv_timer_start(&tick, on_tick, 100, 100);
  while (S.counted < n && uv_hrtime() < deadline)
    uv_run(&fx->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  if (S.bad) fail_msg("%s", S.badmsg);
  assert_int_equal(S.counted, n);
}

static kv_redis_sub_t *subscribe_all(fx_t *fx) {
  kv_redis_sub_t *sub;
  const char *chans[NCHAN];
  char names[NCHAN][16];
  memset(&S, 0, sizeof S);
  for (int c = 0; c < NCHAN; c++) {
    snprintf(names[c], sizeof names[c], "ch%d", c);
    chans[c] = names[c];
  }
  assert_int_equal(kv_redis_subscriber(fx->store, on_msg, NULL, &sub), 0);
  assert_int_equal(kv_redis_sub_subscribe(sub, NCHAN, chans), 0);
  while (S.subscribed < NCHAN)
    uv_run(&fx->loop, UV_RUN_ONCE);
  return sub;
}

static void close_sub(fx_t *fx, kv_redis_sub_t *sub) {
  g_done = 0;
  assert_int_equal(kv_redis_sub_close(sub), 0);
  run_until(fx, 1);
  assert_int_equal(S.closed, 1);
}

static void test_pubsub(void **state) {
  fx_t *fx = *state;
  kv_redis_sub_t *sub = subscribe_all(fx);
  /* through the store (each channel's slot picks the node) */
  publish_all(fx, fx->store, 0);
  wait_messages(fx, NMSG * NCHAN);
  if (!g_sentinel) { /* through each node directly: the cluster bus */
    for (int i = 0; i < 3; i++) {
      char url[64];
      kv_store_t *node;
      snprintf(url, sizeof url, "redis://127.0.0.1:%d", port_at(i));
      node = open_url(fx, url);
      publish_all(fx, node, NMSG * (i + 1));
      close_other(fx, node);
      /* in order per publishing node; two nodes' messages travel the
       * cluster bus on different links, so wait before the next node */
      wait_messages(fx, (i + 2) * NMSG * NCHAN);
    }
  }
  assert_int_equal(S.down, 0);
  close_sub(fx, sub);
}

/* A subscriber still open when the store closes gets CLOSED first. */
static void test_pubsub_store_close(void **state) {
  fx_t *fx = *state;
  kv_redis_sub_t *sub;
  memset(&S, 0, sizeof S);
  assert_int_equal(kv_redis_subscriber(fx->store, on_msg, NULL, &sub), 0);
  g_done = 0;
  assert_int_equal(kv_store_close(fx->store, close_cb), 0);
  fx->store = NULL;
  run_until(fx, 2); /* CLOSED, then the store's callback */
  assert_int_equal(S.closed, 1);
}

/* ---- Transactions -------------------------------------------------------- */

typedef struct {
  kv_redis_tx_t tx;
  const char *keys[2];
  int left; /* increments still to make */
  int err;
  int conflicts;
  fx_t *fx;
} incr_t;

static int incr_fn(kv_redis_tx_t *tx, const kv_redis_reply_t *const *v) {
  incr_t *in = tx->data;
  for (int i = 0; i < 2; i++) {
    char num[32];
    const char *argv[3] = {"SET", in->keys[i], num};
    long long n = v[i]->type == KV_REDIS_REPLY_STRING ? atoll(v[i]->str) : 0;
    snprintf(num, sizeof num, "%lld", n + 1);
    if (kv_redis_tx_queue(tx, 3, argv, NULL) != 0) return KV_EINVAL;
  }
  return 0;
}

static void incr_start(incr_t *in);

static void incr_cb(kv_redis_tx_t *tx) {
  incr_t *in = tx->data;
  if (tx->status != 0 && in->err == 0) in->err = tx->status;
  if (tx->status != 0)
    print_message("[   NOTE   ] transaction: %s\n", kv_redis_tx_errmsg(tx));
  in->conflicts += tx->attempts - 1;
  kv_redis_tx_cleanup(tx);
  if (tx->status == 0 && --in->left > 0) {
    incr_start(in);
    return;
  }
  g_done++;
}

static void incr_start(incr_t *in) {
  int rc;
  memset(&in->tx, 0, sizeof in->tx);
  in->tx.data = in;
  rc = kv_redis_transaction(in->fx->store, &in->tx, 2, in->keys, 100, incr_fn,
                            incr_cb);
  if (rc != 0) fail_msg("kv_redis_transaction: %s", kv_err_name(rc));
}

static long long get_int(fx_t *fx, const char *key) {
  kv_redis_req_t r;
  const char *argv[] = {"GET", key};
  long long n;
  assert_int_equal(raw(fx, &r, 2, argv), 0);
  n = atoll(str_of(&r));
  kv_redis_req_cleanup(&r);
  return n;
}

/* Run `chains` chains of n increments of {t}:a and {t}:b at once. */
static void run_incr(fx_t *fx, const char *a, const char *b, int chains,
                     int n) {
  incr_t in[8];
  int conflicts = 0;
  g_done = 0;
  for (int i = 0; i < chains; i++) {
    memset(&in[i], 0, sizeof in[i]);
    in[i].keys[0] = a;
    in[i].keys[1] = b;
    in[i].left = n;
    in[i].fx = fx;
    incr_start(&in[i]);
  }
  run_until(fx, chains);
  for (int i = 0; i < chains; i++) {
    assert_int_equal(in[i].err, 0);
    conflicts += in[i].conflicts;
  }
  print_message("[   NOTE   ] %d x %d increments, %d conflicts retried\n",
                chains, n, conflicts);
}

static void test_tx(void **state) {
  fx_t *fx = *state;
  kv_redis_req_t r;
  kv_redis_tx_t tx;
  const char *del[] = {"DEL", "{t}:a", "{t}:b"};
  const char *cross[] = {"ta", "tb"};
  /* the first request of the store: it waits for the map / primary */
  run_incr(fx, "{t}:a", "{t}:b", 4, 10);
  assert_int_equal(get_int(fx, "{t}:a"), 40);
  assert_int_equal(get_int(fx, "{t}:b"), 40);
  assert_int_equal(raw(fx, &r, 3, del), 0);
  kv_redis_req_cleanup(&r);
  if (!g_sentinel) { /* keys of two slots cannot be watched together */
    assert_true(kv__rcl_slot("ta", 2) != kv__rcl_slot("tb", 2));
    memset(&tx, 0, sizeof tx);
    assert_int_equal(
        kv_redis_transaction(fx->store, &tx, 2, cross, 0, incr_fn, incr_cb),
        KV_EINVAL);
    assert_non_null(strstr(kv_redis_tx_errmsg(&tx), "one slot"));
    kv_redis_tx_cleanup(&tx);
  }
}

/* ---- A slot moved under the store (cluster) ------------------------------ */

/* Move `slot` from the node on port `from` to the node on port `to`, with
 * its keys, as redis-cli --cluster reshard does (CLUSTER SETSLOT
 * IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE on every primary). */
static void move_slot(int slot, int from, int to) {
  char c[2048];
  snprintf(c, sizeof c,
           "set -e; cli=%s; f=%d; t=%d; s=%d; "
           "fid=$($cli -p $f cluster myid); tid=$($cli -p $t cluster myid); "
           "$cli -p $t cluster setslot $s importing $fid >/dev/null; "
           "$cli -p $f cluster setslot $s migrating $tid >/dev/null; "
           "for k in $($cli -p $f cluster getkeysinslot $s 1000); do "
           "$cli -p $f migrate 127.0.0.1 $t $k 0 5000 >/dev/null; done; "
           "for p in %s; do $cli -p $p cluster setslot $s node $tid "
           ">/dev/null 2>&1 || true; done",
           g_cli, from, to, slot, g_ports);
  assert_int_equal(system(c), 0);
}

/* A key whose slot is served by the node on port `port`, and that slot. */
static int key_on(fx_t *fx, int port, char *key, size_t cap) {
  const char *slots[] = {"CLUSTER", "SLOTS"};
  kv_redis_req_t r;
  int slot = -1;
  /* the first slot of the node's first range */
  assert_int_equal(raw(fx, &r, 2, slots), 0);
  for (size_t i = 0; i < r.reply->elements && slot < 0; i++) {
    kv_redis_reply_t *e = r.reply->element[i];
    if (e->element[2]->element[1]->integer == port)
      slot = (int)e->element[0]->integer;
  }
  kv_redis_req_cleanup(&r);
  assert_true(slot >= 0);
  for (int i = 0;; i++) {
    snprintf(key, cap, "{m%d}:x", i);
    if ((int)kv__rcl_slot(key, strlen(key)) == slot) return slot;
  }
}

static void test_slot_moved(void **state) {
  fx_t *fx = *state;
  kv_redis_req_t r;
  kv_redis_cluster_stats_t before, after;
  char key[32], other[32];
  const char *set[] = {"SET", key, "0"};
  const char *get[] = {"GET", key};
  int p0 = port_at(0), p1 = port_at(1), slot;
  slot = key_on(fx, p0, key, sizeof key);
  snprintf(other, sizeof other, "%s", key);
  other[strlen(other) - 1] = 'y'; /* same hash tag, same slot */
  assert_int_equal(raw(fx, &r, 3, set), 0);
  kv_redis_req_cleanup(&r);
  assert_int_equal(kv_store_ctl(fx->store, KV_REDIS_CTL_CLUSTER_STATS, &before,
                                sizeof before),
                   0);
  /* the store's map still says p0: the transaction's WATCH gets MOVED, and
   * it starts again on p1 */
  move_slot(slot, p0, p1);
  run_incr(fx, key, other, 1, 3);
  assert_int_equal(get_int(fx, key), 3);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_CLUSTER_STATS, &after, sizeof after),
      0);
  assert_true(after.moved > before.moved);
  /* and back: a raw command on the stale map is redirected */
  move_slot(slot, p1, p0);
  assert_int_equal(raw(fx, &r, 2, get), 0);
  assert_string_equal(str_of(&r), "3");
  kv_redis_req_cleanup(&r);
  before = after;
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_CLUSTER_STATS, &after, sizeof after),
      0);
  assert_true(after.moved > before.moved);
}

/* ---- Closing ------------------------------------------------------------- */

/* Closing with raw commands waiting for the route and a blocking one in
 * flight: every callback runs, before the close callback. */
static void test_close_waiting(void **state) {
  fx_t *fx = *state;
  kv_redis_req_t r[4], blk;
  const char *ping[] = {"PING"};
  const char *blpop[] = {"BLPOP", "kvio-never", "0"};
  kv_store_t *s = open_url(fx, ha_url(""));
  assert_int_equal(raw(fx, &blk, 1, ping), 0); /* route known */
  kv_redis_req_cleanup(&blk);
  memset(&blk, 0, sizeof blk);
  assert_int_equal(kv_redis_command(fx->store, &blk, 3, blpop, NULL, raw_cb),
                   0);
  sleep_ms(fx, 100);            /* sent */
  for (int i = 0; i < 4; i++) { /* s has no route yet */
    memset(&r[i], 0, sizeof r[i]);
    assert_int_equal(kv_redis_command(s, &r[i], 1, ping, NULL, raw_cb), 0);
  }
  g_done = 0;
  assert_int_equal(kv_store_close(s, close_cb), 0);
  assert_int_equal(kv_store_close(fx->store, close_cb), 0);
  fx->store = NULL;
  assert_int_equal(g_done, 0); /* nothing from inside the calls */
  run_until(fx, 7);
  for (int i = 0; i < 4; i++) {
    assert_true(r[i].status == KV_ECANCELED || r[i].status == 0);
    kv_redis_req_cleanup(&r[i]);
  }
  assert_int_equal(blk.status, KV_ECANCELED);
  kv_redis_req_cleanup(&blk);
}

/* ---- Failovers ----------------------------------------------------------- */

/* The port of the node the subscriber's connection is on. */
static int sub_port(fx_t *fx) {
  const char *numsub[] = {"PUBSUB", "NUMSUB", "ch0"};
  for (int i = 0; i < 6; i++) {
    int port = port_at(i);
    if (port > 0 && node_int(fx, port, 3, numsub) == 1) return port;
  }
  return -1;
}

/* Kill the node the subscriber is on (cluster: that primary; sentinel: the
 * primary); wait for DOWN and GAP; publish again: every message arrives.
 * A transaction and raw commands carry on without reopening. */
static void failover_under_sub(fx_t *fx, int manual) {
  kv_redis_sub_t *sub = subscribe_all(fx);
  uint64_t deadline;
  int pid, published = 0;
  publish_all(fx, fx->store, 0);
  wait_messages(fx, NMSG * NCHAN);
  if (g_sentinel) {
    pid = g_primary_pid;
  } else {
    int port = sub_port(fx);
    assert_true(port > 0);
    pid = pid_of_port(port);
  }
  assert_true(pid > 0);
  if (manual) { /* SENTINEL FAILOVER: the old primary stays up */
    char c[256];
    snprintf(c, sizeof c, "%s -p %s sentinel failover kvprimary >/dev/null",
             g_cli, strrchr(g_seeds, ':') + 1);
    assert_int_equal(system(c), 0);
  } else {
    assert_int_equal(kill(pid, SIGKILL), 0);
  }
  deadline = uv_hrtime() + 60 * (uint64_t)1000000000;
  while (S.gap < 1) {
    uv_run(&fx->loop, UV_RUN_ONCE);
    if (uv_hrtime() > deadline) fail_msg("no GAP within 60 s");
  }
  assert_int_equal(S.down, 1);
  /* Publishing to a slot of the dead primary fails (KV_ECONN) until its
   * replica is promoted and the map reloaded: rounds until one goes
   * through whole; then every message of it arrives. */
  for (int round = 1; round < 200 && !published; round++) {
    S.bad = 0;
    S.floor = round * 1000;
    S.counted = 0;
    publish_all(fx, fx->store, S.floor);
    if (S.bad == 0) {
      published = 1;
      wait_messages(fx, NMSG * NCHAN);
    } else {
      sleep_ms(fx, 200);
    }
  }
  assert_true(published);
  run_incr(fx, "{f}:a", "{f}:b", 2, 5);
  assert_int_equal(get_int(fx, "{f}:a"), 10);
  close_sub(fx, sub);
}

static void test_cluster_failover(void **state) {
  failover_under_sub(*state, 0);
}

static void test_sentinel_kill(void **state) {
  kv_redis_sentinel_stats_t ss;
  fx_t *fx = *state;
  failover_under_sub(fx, 0);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_SENTINEL_STATS, &ss, sizeof ss), 0);
  assert_int_equal(ss.failovers, 1);
}

/* SENTINEL FAILOVER while the store only reads: no request fails on the
 * old primary (it is up, a replica now), so only the +switch-master
 * announcement can move the store; then the subscriber moves too. */
static void blk_cb(kv_redis_req_t *req) {
  (*(int *)req->data)++; /* not g_done: RUN waits for other requests */
}

static void test_sentinel_switch(void **state) {
  fx_t *fx = *state;
  kv_redis_sentinel_stats_t ss;
  kv_req_t r;
  kv_redis_req_t blk;
  const char *blpop[] = {"BLPOP", "kvio-never", "0"};
  const char *ping[] = {"PING"};
  kv_store_t *s2 = open_url(fx, ha_url(""));
  char want[32], c[256];
  uint64_t deadline;
  int blk_calls = 0;
  assert_int_equal(
      RUN(fx, r, kv_put(fx->store, &r, "c", "k", "v", 1, 0, done_cb)), 0);
  kv_req_cleanup(&r);
  /* a command that blocks on the old primary for ever, on a store of its
   * own (it holds its connection's pipeline): that store's switch must not
   * wait for it, nor its close */
  assert_int_equal(raw_on(fx, s2, &blk, 1, ping), 0);
  kv_redis_req_cleanup(&blk);
  memset(&blk, 0, sizeof blk);
  blk.data = &blk_calls;
  assert_int_equal(kv_redis_command(s2, &blk, 3, blpop, NULL, blk_cb), 0);
  snprintf(c, sizeof c, "%s -p %s sentinel failover kvprimary >/dev/null",
           g_cli, strrchr(g_seeds, ':') + 1);
  sleep_ms(fx, 300); /* the store's watch on the sentinel is subscribed */
  assert_int_equal(system(c), 0);
  deadline = uv_hrtime() + 60 * (uint64_t)1000000000;
  for (;;) {
    /* reads never fail */
    assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)), 0);
    kv_req_cleanup(&r);
    kv_store_ctl(fx->store, KV_REDIS_CTL_SENTINEL_STATS, &ss, sizeof ss);
    if (ss.failovers >= 1) break;
    if (uv_hrtime() > deadline) fail_msg("no switch within 60 s");
    sleep_ms(fx, 50);
  }
  snprintf(want, sizeof want, "127.0.0.1:%d", g_replica);
  assert_string_equal(ss.primary, want);
  assert_true(ss.announcements >= 1);
  while (blk_calls == 0)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_int_equal(blk_calls, 1);
  assert_int_equal(blk.status, KV_ECONN);
  assert_non_null(strstr(kv_redis_req_errmsg(&blk), "primary changed"));
  kv_redis_req_cleanup(&blk);
  close_other(fx, s2);
  print_message("[   NOTE   ] switched after %llu announcement(s), %llu "
                "lookups\n",
                (unsigned long long)ss.announcements,
                (unsigned long long)ss.lookups);
  /* writes go to the new primary */
  assert_int_equal(
      RUN(fx, r, kv_put(fx->store, &r, "c", "k", "w", 1, 0, done_cb)), 0);
  kv_req_cleanup(&r);
}

static void test_sentinel_switch_sub(void **state) {
  failover_under_sub(*state, 1);
}

int main(int argc, char **argv) {
  const struct CMUnitTest cluster[] = {
      cmocka_unit_test_setup_teardown(test_raw, ha_setup, teardown),
      cmocka_unit_test_setup_teardown(test_raw_redirect, ha_setup, teardown),
      cmocka_unit_test_setup_teardown(test_pubsub, ha_setup, teardown),
      cmocka_unit_test_setup_teardown(test_pubsub_store_close, ha_setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tx, ha_setup, teardown),
      cmocka_unit_test_setup_teardown(test_slot_moved, ha_setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_waiting, ha_setup, teardown),
  };
  const struct CMUnitTest cluster_failover[] = {
      cmocka_unit_test_setup_teardown(test_cluster_failover, ha_setup,
                                      teardown),
  };
  const struct CMUnitTest sentinel[] = {
      cmocka_unit_test_setup_teardown(test_raw, ha_setup, teardown),
      cmocka_unit_test_setup_teardown(test_pubsub, ha_setup, teardown),
      cmocka_unit_test_setup_teardown(test_pubsub_store_close, ha_setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tx, ha_setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_waiting, ha_setup, teardown),
  };
  const struct CMUnitTest sentinel_kill[] = {
      cmocka_unit_test_setup_teardown(test_sentinel_kill, ha_setup, teardown),
  };
  const struct CMUnitTest sentinel_switch[] = {
      cmocka_unit_test_setup_teardown(test_sentinel_switch, ha_setup, teardown),
  };
  const struct CMUnitTest sentinel_switch_sub[] = {
      cmocka_unit_test_setup_teardown(test_sentinel_switch_sub, ha_setup,
                                      teardown),
  };
  const char *mode = argc > 1 ? argv[1] : "";
  g_cli = getenv("KV_REDIS_CLI");
  signal(SIGPIPE, SIG_IGN);
  if (strncmp(mode, "sentinel", 8) == 0) {
    const char *p = getenv("KV_SENTINEL_PRIMARY_PORT");
    const char *r = getenv("KV_SENTINEL_REPLICA_PORT");
    const char *pid = getenv("KV_SENTINEL_PRIMARY_PID");
    g_seeds = getenv("KV_SENTINEL_SEEDS");
    if (p == NULL || r == NULL || pid == NULL || g_seeds == NULL ||
        g_cli == NULL) {
      fprintf(stderr, "run under tests/servers/with-redis-sentinel.sh\n");
      return 77;
    }
    g_sentinel = 1;
    g_replica = atoi(r);
    g_primary_pid = atoi(pid);
    if (strcmp(mode, "sentinel-kill") == 0)
      return cmocka_run_group_tests(sentinel_kill, NULL, NULL);
    if (strcmp(mode, "sentinel-switch") == 0)
      return cmocka_run_group_tests(sentinel_switch, NULL, NULL);
    if (strcmp(mode, "sentinel-switch-sub") == 0)
      return cmocka_run_group_tests(sentinel_switch_sub, NULL, NULL);
    return cmocka_run_group_tests(sentinel, NULL, NULL);
  }
  g_seeds = getenv("KV_CLUSTER_SEEDS");
  g_ports = getenv("KV_CLUSTER_PORTS");
  g_dir = getenv("KV_CLUSTER_DIR");
  if (g_seeds == NULL || g_ports == NULL || g_dir == NULL || g_cli == NULL) {
    fprintf(stderr, "run under tests/servers/with-redis-cluster.sh\n");
    return 77;
  }
  if (strcmp(mode, "cluster-failover") == 0)
    return cmocka_run_group_tests(cluster_failover, NULL, NULL);
  return cmocka_run_group_tests(cluster, NULL, NULL);
}
