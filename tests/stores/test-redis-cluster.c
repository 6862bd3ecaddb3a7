/* Tests of redis+cluster:// that the conformance suite does not reach: bad
 * URLs; keys of one and of many collections placed on several primaries
 * (slots=collection and slots=key); bulk operations split per slot and
 * merged in order; enumeration over every primary; the store's slots equal
 * CLUSTER KEYSLOT; slots resharded while 64 requests (puts, gets,
 * get_many) are in flight (every request completes once, no acknowledged
 * write is lost, MOVED/ASK/TRYAGAIN were followed); a primary killed and its
 * replica promoted (the store carries on without reopening).
 *
 * Run under tests/servers/with-redis-cluster.sh (3 primaries), which
 * exports KV_CLUSTER_SEEDS / KV_CLUSTER_PORTS / KV_CLUSTER_PIDS /
 * KV_REDIS_CLI. With the argument "failover" (under --replicas 1) only the
 * failover test runs. */
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

static const char *g_seeds, *g_ports, *g_pids, *g_cli;

#include "redis-fixture.h"

static char *url_of(const char *opts) {
  static char buf[1024];
  snprintf(buf, sizeof buf, "redis+cluster://%s%s", g_seeds, opts);
  return buf;
}

/* The port of primary i (0-based) in KV_CLUSTER_PORTS. */
static int port_at(int i) {
  return nth_port(g_ports, i);
}

/* Keys in the database of one node (DBSIZE over a plain redis:// store). */
static long long dbsize(fx_t *fx, int port) {
  kv_store_t *s;
  kv_redis_req_t r;
  const char *argv[] = {"DBSIZE"};
  char url[64];
  long long n = -1;
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
  assert_int_equal(kv_open(&fx->loop, url, &s), 0);
  if (raw_on(fx, s, &r, 1, argv) == 0 &&
      r.reply->type == KV_REDIS_REPLY_INTEGER)
    n = r.reply->integer;
  kv_redis_req_cleanup(&r);
  close_other(fx, s);
  return n;
}

/* ---- Slots ------------------------------------------------------------------
 */

/* The store's slot function (src/stores/redis_cluster.c, in libkvio). */
unsigned kv__rcl_slot(const char *key, size_t len);

/* The store computes the slot of every key as the server does
 * (CLUSTER KEYSLOT), hash tags included. */
static void test_key_slots(void **state) {
  fx_t *fx = *state;
  static const char *const keys[] = {"123456789",
                                     "foo",
                                     "somekey",
                                     "{user1000}.following",
                                     "{user1000}.followers",
                                     "foo{}{bar}",
                                     "foo{{bar}}zap",
                                     "{}",
                                     "{",
                                     "a}{b",
                                     "{%3Ax}:k",
                                     "x",
                                     "\xc3\xa9t\xc3\xa9",
                                     "p1:{c}:k"};
  kv_store_t *s;
  char url[64];
  assert_int_equal(kv__rcl_slot("123456789", 9), 0x31C3 & 16383);
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port_at(0));
  assert_int_equal(kv_open(&fx->loop, url, &s), 0);
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    kv_redis_req_t r;
    const char *argv[] = {"CLUSTER", "KEYSLOT", keys[i]};
    assert_int_equal(raw_on(fx, s, &r, 3, argv), 0);
    assert_int_equal(r.reply->type, KV_REDIS_REPLY_INTEGER);
    if ((unsigned)r.reply->integer != kv__rcl_slot(keys[i], strlen(keys[i])))
      fail_msg("'%s': server %lld, store %u", keys[i], r.reply->integer,
               kv__rcl_slot(keys[i], strlen(keys[i])));
    kv_redis_req_cleanup(&r);
  }
  close_other(fx, s);
}

/* ---- URLs ------------------------------------------------------------------
 */

static void test_bad_urls(void **state) {
  fx_t *fx = *state;
  static const char *const bad[] = {
      "redis+cluster://127.0.0.1:7000?slots=bogus",
      "redis+cluster://127.0.0.1:7000/1",
      "redis+cluster://127.0.0.1:7000?db=2",
      "redis+cluster://127.0.0.1:7000?prefix=%7Bapp%7D:",
      "redis+cluster://127.0.0.1:7000,127.0.0.1:notaport",
      "redis+cluster://127.0.0.1:7000,,127.0.0.1:7001",
      "redis+cluster://127.0.0.1:7000?nonsense=1",
      "redis+cluster://127.0.0.1:7000?ca=/x",
      "rediss+cluster://127.0.0.1:7000?ca=/nonexistent/ca.pem",
  };
  expect_bad_urls(fx, bad, sizeof bad / sizeof *bad);
  /* A brace in the prefix is fine when every key is its own slot. */
  fx_open(fx, "valkey+cluster://127.0.0.1:7000?slots=key&prefix=%7Bapp%7D:");
  fx_close(fx);
}

/* Nothing listens: opening works (no network), the first request fails
 * with KV_ECONN and a detail. */
static void test_no_server(void **state) {
  fx_t *fx = *state;
  kv_req_t r;
  fx_open(fx, "redis+cluster://127.0.0.1:1,127.0.0.1:2?timeout=2");
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)),
                   KV_ECONN);
  assert_non_null(strstr(kv_req_errmsg(&r), "slot map"));
  kv_req_cleanup(&r);
}

/* ---- Placement and split operations ------------------------------------- */

static void placement(fx_t *fx, const char *opts, int spread) {
  enum { NC = 20, NK = 30 };
  kv_req_t r;
  kv_redis_cluster_stats_t cs;
  kv_redis_stats_t rs;
  const char *keys[NK];
  kv_buf_t vals[NK];
  char kbuf[NK][16], vbuf[NK][16], coll[16];
  fx_open(fx, url_of(opts));
  destroy_all(fx);
  for (int i = 0; i < NK; i++) {
    snprintf(kbuf[i], sizeof kbuf[i], "k%d", i);
    snprintf(vbuf[i], sizeof vbuf[i], "v%d", i);
    keys[i] = kbuf[i];
    vals[i].base = vbuf[i];
    vals[i].len = strlen(vbuf[i]);
  }
  for (int c = 0; c < NC; c++) {
    snprintf(coll, sizeof coll, "coll%d", c);
    assert_int_equal(
        RUN(fx, r,
            kv_put_many(fx->store, &r, coll, keys, vals, NK, 0, done_cb)),
        0);
    kv_req_cleanup(&r);
  }
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_CLUSTER_STATS, &cs, sizeof cs), 0);
  assert_int_equal(cs.primaries, 3);
  /* every primary holds some of the 600 keys */
  for (int i = 0; i < 3; i++) {
    long long n = dbsize(fx, port_at(i));
    if (n <= 0) fail_msg("primary %d holds %lld keys", port_at(i), n);
  }
  if (spread) { /* one collection alone spreads too */
    kv_req_t d;
    assert_int_equal(RUN(fx, d, kv_destroy(fx->store, &d, done_cb)), 0);
    kv_req_cleanup(&d);
    assert_int_equal(
        RUN(fx, r,
            kv_put_many(fx->store, &r, "one", keys, vals, NK, 0, done_cb)),
        0);
    kv_req_cleanup(&r);
    for (int i = 0; i < 3; i++)
      assert_true(dbsize(fx, port_at(i)) > 0);
  }
  /* get_many: results in the caller's order, misses included; one MGET per
   * slot (one in all with slots=collection) */
  {
    const char *ask[NK + 1];
    memcpy(ask, keys, sizeof keys);
    ask[NK] = "missing";
    kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &rs, sizeof rs);
    uint64_t before = rs.commands;
    assert_int_equal(RUN(fx, r,
                         kv_get_many(fx->store, &r, spread ? "one" : "coll3",
                                     ask, NK + 1, done_cb)),
                     0);
    assert_int_equal(r.nresults, NK + 1);
    for (int i = 0; i < NK; i++) {
      assert_true(r.results[i].found);
      assert_string_equal(r.results[i].value.base, vbuf[i]);
    }
    assert_false(r.results[NK].found);
    kv_req_cleanup(&r);
    kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &rs, sizeof rs);
    if (!spread)
      assert_int_equal(rs.commands - before, 1);
    else
      assert_true(rs.commands - before > 3);
  }
  /* keys(): every key, over every primary, paged */
  {
    size_t total = 0;
    char *cursor = NULL;
    int pages = 0;
    do {
      assert_int_equal(RUN(fx, r,
                           kv_keys(fx->store, &r, spread ? "one" : "coll3",
                                   cursor, 7, done_cb)),
                       0);
      free(cursor);
      cursor = r.cursor ? strdup(r.cursor) : NULL;
      assert_true(r.nnames <= 7);
      total += r.nnames;
      pages++;
      kv_req_cleanup(&r);
    } while (cursor != NULL && pages < 100);
    assert_int_equal(total, NK);
  }
  if (spread) { /* a cursor past the last primary ends the listing; a
                   malformed one is refused */
    assert_int_equal(
        RUN(fx, r, kv_keys(fx->store, &r, "one", "@zzz:1@", 7, done_cb)), 0);
    assert_int_equal(r.nnames, 0);
    assert_null(r.cursor);
    kv_req_cleanup(&r);
    memset(&r, 0, sizeof r);
    assert_int_equal(kv_keys(fx->store, &r, "one", "bogus", 7, done_cb),
                     KV_EINVAL);
    kv_req_cleanup(&r);
  }
  /* delete_many across slots counts what it removed */
  {
    const char *del[] = {"k1", "k2", "k3", "nope", "k29"};
    assert_int_equal(RUN(fx, r,
                         kv_delete_many(fx->store, &r, spread ? "one" : "coll3",
                                        del, 5, done_cb)),
                     0);
    assert_int_equal(r.count, 4);
    kv_req_cleanup(&r);
  }
  destroy_all(fx);
  for (int i = 0; i < 3; i++)
    assert_int_equal(dbsize(fx, port_at(i)), 0);
  fx_close(fx);
}

static void test_placement_collection_slots(void **state) {
  placement(*state, "", 0);
}

static void test_placement_key_slots(void **state) {
  placement(*state, "?slots=key", 1);
}

/* slots=key: one put_many of 300 keys with a TTL falls in ~300 slots on 3
 * primaries; the first part's expiry goes to every other part, and one
 * ttl_many reads every part against the first part's clock: one TTL. */
static void test_batch_ttl_key_slots(void **state) {
  fx_t *fx = *state;
  fx_open(fx, url_of("?slots=key"));
  destroy_all(fx);
  batch_ttl_one_expiry(fx, 300);
  destroy_all(fx);
}

/* ---- Resharding under load ------------------------------------------------
 */

enum { INFLIGHT = 64, NKEYS = 4000 };

typedef struct {
  kv_req_t req;
  int key;
  int calls;
  int put; /* 1: a put, 0: a get, 2: a get_many of 3 keys of one
              collection (TRYAGAIN while its slot migrates) */
  char val[32];
} op_t;

typedef struct {
  fx_t *fx;
  op_t ops[INFLIGHT];
  int next; /* next key to write */
  int stop;
  int completed, failed;
  int *acked;   /* per key: the value number last acknowledged, -1 none */
  int *pending; /* per key: requests in flight for it */
  char failmsg[512];
} load_t;

static load_t g_load;

static void load_submit(op_t *op);

static void load_cb(kv_req_t *req) {
  op_t *op = req->data;
  load_t *l = &g_load;
  op->calls++;
  if (op->calls != 1) fail_msg("a callback ran %d times", op->calls);
  l->completed++;
  if (op->put != 2) l->pending[op->key]--;
  if (req->status != 0) {
    l->failed++;
    snprintf(l->failmsg, sizeof l->failmsg, "%s: %s", kv_err_name(req->status),
             kv_req_errmsg(req));
  } else if (op->put == 2) {
    if (req->nresults != 3)
      snprintf(l->failmsg, sizeof l->failmsg, "get_many: %zu results",
               req->nresults);
  } else if (op->put) {
    l->acked[op->key] = atoi(op->val + 1);
  } else if (l->acked[op->key] >= 0) {
    /* a get must see the last acknowledged value (or a later one) */
    if (!req->found || atoi(req->value.base + 1) < l->acked[op->key])
      snprintf(l->failmsg, sizeof l->failmsg,
               "key %d: read %s after value %d was acknowledged", op->key,
               req->found ? req->value.base : "(missing)", l->acked[op->key]);
  }
  kv_req_cleanup(req);
  if (!l->stop) load_submit(op);
}

static void load_submit(op_t *op) {
  load_t *l = &g_load;
  char coll[16], key[16];
  int rc;
  memset(&op->req, 0, sizeof op->req);
  op->req.data = op;
  op->calls = 0;
  op->key = l->next % NKEYS;
  /* one put per key at a time; reads in between; every 8th a get_many */
  op->put = l->pending[op->key] == 0 &&
            (l->acked[op->key] < 0 || (l->next / NKEYS) % 2 == 0);
  if (l->next % 8 == 0) op->put = 2;
  snprintf(coll, sizeof coll, "c%d", op->key % 500);
  snprintf(key, sizeof key, "k%d", op->key);
  snprintf(op->val, sizeof op->val, "v%d", l->next);
  l->next++;
  if (op->put == 2) {
    char k3[3][16];
    const char *keys[3];
    for (int j = 0; j < 3; j++) {
      snprintf(k3[j], sizeof k3[j], "k%d", (op->key + 500 * j) % NKEYS);
      keys[j] = k3[j];
    }
    rc = kv_get_many(l->fx->store, &op->req, coll, keys, 3, load_cb);
    if (rc != 0) fail_msg("submit: %s", kv_err_name(rc));
    return;
  }
  l->pending[op->key]++;
  rc = op->put ? kv_put(l->fx->store, &op->req, coll, key, op->val,
                        strlen(op->val), 0, load_cb)
               : kv_get(l->fx->store, &op->req, coll, key, load_cb);
  if (rc != 0) fail_msg("submit: %s", kv_err_name(rc));
}

static int g_exited, g_exit_status;

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  g_exit_status = (int)status + sig;
  g_exited = 1;
  uv_close((uv_handle_t *)p, NULL);
}

static int spawn_sh(fx_t *fx, uv_process_t *proc, const char *cmd) {
  uv_process_options_t o;
  static char sh[] = "/bin/sh", dash_c[] = "-c";
  char *args[] = {sh, dash_c, (char *)cmd, NULL};
  memset(&o, 0, sizeof o);
  o.file = "/bin/sh";
  o.args = args;
  o.exit_cb = on_exit_cb;
  g_exited = 0;
  return uv_spawn(&fx->loop, proc, &o);
}

static void reshard(fx_t *fx, const char *opts) {
  load_t *l = &g_load;
  kv_redis_cluster_stats_t cs;
  uv_process_t proc;
  char cmd[1024];
  int p0 = port_at(0), p1 = port_at(1);
  memset(l, 0, sizeof *l);
  l->fx = fx;
  l->acked = malloc(NKEYS * sizeof *l->acked);
  l->pending = calloc(NKEYS, sizeof *l->pending);
  assert_non_null(l->acked);
  assert_non_null(l->pending);
  for (int i = 0; i < NKEYS; i++)
    l->acked[i] = -1;
  fx_open(fx, url_of(opts));
  destroy_all(fx);
  /* move 1000 slots of the first primary to the second while loaded; the
   * next run moves them back */
  snprintf(cmd, sizeof cmd,
           "%s --cluster reshard 127.0.0.1:%d --cluster-from $(%s -p %d "
           "cluster myid) --cluster-to $(%s -p %d cluster myid) "
           "--cluster-slots 1000 --cluster-yes --cluster-pipeline 20 "
           ">/dev/null 2>&1 || exit 1; "
           "%s --cluster reshard 127.0.0.1:%d --cluster-from $(%s -p %d "
           "cluster myid) --cluster-to $(%s -p %d cluster myid) "
           "--cluster-slots 1000 --cluster-yes --cluster-pipeline 20 "
           ">/dev/null 2>&1",
           g_cli, p0, g_cli, p0, g_cli, p1, g_cli, p0, g_cli, p1, g_cli, p0);
  for (int i = 0; i < INFLIGHT; i++)
    load_submit(&l->ops[i]);
  assert_int_equal(spawn_sh(fx, &proc, cmd), 0);
  while (!g_exited)
    uv_run(&fx->loop, UV_RUN_ONCE);
  l->stop = 1;
  while (l->completed < l->next)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_int_equal(g_exit_status, 0);
  print_message("[   NOTE   ] %s: %d requests during the resharding, %d "
                "failed\n",
                opts, l->completed, l->failed);
  if (l->failed != 0 || l->failmsg[0]) fail_msg("%s", l->failmsg);
  for (int i = 0; i < INFLIGHT; i++)
    assert_int_equal(l->ops[i].calls, 1);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_CLUSTER_STATS, &cs, sizeof cs), 0);
  print_message("[   NOTE   ] MOVED %llu, ASK %llu, TRYAGAIN %llu, maps %llu\n",
                (unsigned long long)cs.moved, (unsigned long long)cs.ask,
                (unsigned long long)cs.tryagain,
                (unsigned long long)cs.map_loads);
  assert_true(cs.moved + cs.ask > 0);
  /* every acknowledged write is there, with its last value */
  for (int i = 0; i < NKEYS; i++) {
    kv_req_t r;
    char coll[16], key[16];
    if (l->acked[i] < 0) continue;
    snprintf(coll, sizeof coll, "c%d", i % 500);
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, coll, key, done_cb)), 0);
    if (!r.found || atoi(r.value.base + 1) != l->acked[i])
      fail_msg("key %d: %s, expected v%d", i,
               r.found ? r.value.base : "missing", l->acked[i]);
    kv_req_cleanup(&r);
  }
  destroy_all(fx);
  fx_close(fx);
  free(l->acked);
  free(l->pending);
}

static void test_reshard_collection_slots(void **state) {
  reshard(*state, "");
}

static void test_reshard_key_slots(void **state) {
  reshard(*state, "?slots=key");
}

/* ---- Failover (under --replicas 1) ----------------------------------------
 */

static void test_failover(void **state) {
  fx_t *fx = *state;
  kv_req_t r;
  char key[16], coll[16], role[64] = "", cmd[256];
  int pid = atoi(g_pids), ok = 0, errors = 0;
  kv_redis_cluster_stats_t cs;
  FILE *f;
  enum { N = 300 };
  fx_open(fx, url_of("?timeout=2"));
  destroy_all(fx);
  /* 30 collections: some of them on the primary that is killed */
  for (int i = 0; i < N; i++) {
    snprintf(coll, sizeof coll, "fo%d", i % 30);
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(
        RUN(fx, r,
            kv_put(fx->store, &r, coll, key, key, strlen(key), 0, done_cb)),
        0);
    kv_req_cleanup(&r);
  }
  snprintf(cmd, sizeof cmd, "%s -p %d role", g_cli, port_at(0));
  f = popen(cmd, "r");
  assert_non_null(f);
  if (fgets(role, sizeof role, f) == NULL) role[0] = '\0';
  pclose(f);
  assert_non_null(strstr(role, "master"));
  assert_true(dbsize(fx, port_at(0)) > 0);
  sleep_ms(fx, 500); /* replication is asynchronous: let replicas catch up */
  assert_int_equal(kill(pid, SIGKILL), 0);
  /* requests fail for a while (the node is gone, its replica not yet
   * promoted); then they succeed, on every key, without reopening */
  for (int t = 0; t < 300 && ok < N; t++) {
    ok = 0;
    for (int i = 0; i < N; i++) {
      snprintf(coll, sizeof coll, "fo%d", i % 30);
      snprintf(key, sizeof key, "k%d", i);
      if (RUN(fx, r, kv_get(fx->store, &r, coll, key, done_cb)) == 0 &&
          r.found && strcmp(r.value.base, key) == 0)
        ok++;
      else
        errors++;
      kv_req_cleanup(&r);
    }
    if (ok < N) sleep_ms(fx, 100);
  }
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_CLUSTER_STATS, &cs, sizeof cs), 0);
  print_message("[   NOTE   ] %d failed reads while failing over, %llu maps "
                "loaded\n",
                errors, (unsigned long long)cs.map_loads);
  assert_true(errors > 0); /* the kill was noticed */
  assert_int_equal(ok, N); /* nothing acknowledged before it is lost */
  assert_int_equal(cs.primaries, 3);
  for (int i = 0; i < N; i++) { /* writes go on */
    snprintf(coll, sizeof coll, "fo%d", i % 30);
    assert_int_equal(
        RUN(fx, r, kv_put(fx->store, &r, coll, "after", "x", 1, 0, done_cb)),
        0);
    kv_req_cleanup(&r);
  }
  fx_close(fx);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_key_slots, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_server, setup, teardown),
      cmocka_unit_test_setup_teardown(test_placement_collection_slots, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_placement_key_slots, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_batch_ttl_key_slots, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_reshard_collection_slots, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_reshard_key_slots, setup, teardown),
  };
  const struct CMUnitTest failover[] = {
      cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
  };
  g_seeds = getenv("KV_CLUSTER_SEEDS");
  g_ports = getenv("KV_CLUSTER_PORTS");
  g_pids = getenv("KV_CLUSTER_PIDS");
  g_cli = getenv("KV_REDIS_CLI");
  if (g_seeds == NULL || g_ports == NULL || g_pids == NULL || g_cli == NULL) {
    fprintf(stderr, "run under tests/servers/with-redis-cluster.sh\n");
    return 77;
  }
  signal(SIGPIPE, SIG_IGN);
  if (argc > 1 && strcmp(argv[1], "failover") == 0)
    return cmocka_run_group_tests(failover, NULL, NULL);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
