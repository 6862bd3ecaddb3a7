/* Tests of redis+sentinel:// that the conformance suite does not reach: bad
 * URLs, no sentinel, a name no sentinel knows, a manual failover (SENTINEL
 * FAILOVER: the old primary becomes a replica while connected) and the
 * primary killed with 64 requests in flight (those in flight fail with a
 * connection error; writes resume on the promoted replica without
 * reopening; nothing acknowledged before the kill, once the replica had it,
 * is lost).
 *
 * Run under tests/servers/with-redis-sentinel.sh, which exports
 * KV_SENTINEL_SEEDS, KV_SENTINEL_PRIMARY_PORT / _PID,
 * KV_SENTINEL_REPLICA_PORT, KV_SENTINEL_PORTS and KV_REDIS_CLI. Both
 * failover tests change the primary: each runs in its own server set
 * (argument "kill" or "manual"). */
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

static const char *g_seeds, *g_cli;
static int g_primary, g_replica, g_primary_pid;

#include "redis-fixture.h"

static char *url_of(const char *rest) {
  static char buf[1024];
  snprintf(buf, sizeof buf, "redis+sentinel://%s%s", g_seeds, rest);
  return buf;
}

/* On the primary: a write, then WAIT 1 on the same connection: when it
 * returns 1, the replica has every write the primary made before the fence
 * (the replication stream is ordered). The WAIT's integer reply, or -1. */
static long long fence(fx_t *fx, int port) {
  kv_store_t *s;
  kv_redis_req_t r, w;
  const char *set_argv[] = {"SET", "kvio-fence", "1"};
  const char *wait_argv[] = {"WAIT", "1", "5000"};
  char url[64];
  long long n = -1;
  snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
  assert_int_equal(kv_open(&fx->loop, url, &s), 0);
  memset(&r, 0, sizeof r);
  memset(&w, 0, sizeof w);
  assert_int_equal(kv_redis_command(s, &w, 3, set_argv, NULL, raw_cb), 0);
  assert_int_equal(kv_redis_command(s, &r, 3, wait_argv, NULL, raw_cb), 0);
  g_done = 0;
  run_until(fx, 2);
  if (r.status == 0 && r.reply->type == KV_REDIS_REPLY_INTEGER)
    n = r.reply->integer;
  kv_redis_req_cleanup(&r);
  kv_redis_req_cleanup(&w);
  close_other(fx, s);
  return n;
}

/* ---- URLs and lookups
 * -------------------------------------------------------- */

static void test_bad_urls(void **state) {
  fx_t *fx = *state;
  static const char *const bad[] = {
      "redis+sentinel://127.0.0.1:26379",
      "redis+sentinel://127.0.0.1:26379/",
      "redis+sentinel://127.0.0.1:26379/a/b",
      "redis+sentinel://127.0.0.1:26379,127.0.0.1:x/name",
      "redis+sentinel://127.0.0.1:26379/name?db=-1",
      "redis+sentinel://127.0.0.1:26379/name?user=u",
      "redis+sentinel://127.0.0.1:26379/name?sentinel_user=u",
      "redis+sentinel://127.0.0.1:26379/name?slots=key",
      "redis+sentinel://127.0.0.1:26379/name?ca=/x",
  };
  expect_bad_urls(fx, bad, sizeof bad / sizeof *bad);
}

static void test_no_sentinel(void **state) {
  fx_t *fx = *state;
  kv_req_t r;
  fx_open(fx, "redis+sentinel://127.0.0.1:1,127.0.0.1:2/kvprimary");
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)),
                   KV_ECONN);
  assert_non_null(strstr(kv_req_errmsg(&r), "cannot find the primary"));
  kv_req_cleanup(&r);
  /* while backing off, at once with the same error */
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)),
                   KV_ECONN);
  kv_req_cleanup(&r);
}

static void test_unknown_name(void **state) {
  fx_t *fx = *state;
  kv_req_t r;
  fx_open(fx, url_of("/nosuchprimary"));
  assert_int_equal(
      RUN(fx, r, kv_put(fx->store, &r, "c", "k", "v", 1, 0, done_cb)),
      KV_ECONN);
  assert_non_null(strstr(kv_req_errmsg(&r), "does not know it"));
  kv_req_cleanup(&r);
}

static void test_lookup(void **state) {
  fx_t *fx = *state;
  kv_req_t r;
  kv_redis_sentinel_stats_t ss;
  char want[32];
  fx_open(fx, url_of("/kvprimary?db=2&prefix=t:"));
  assert_int_equal(
      RUN(fx, r, kv_put(fx->store, &r, "c", "k", "v", 1, 0, done_cb)), 0);
  kv_req_cleanup(&r);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_SENTINEL_STATS, &ss, sizeof ss), 0);
  snprintf(want, sizeof want, "127.0.0.1:%d", g_primary);
  assert_string_equal(ss.primary, want);
  assert_int_equal(ss.lookups, 1);
  assert_int_equal(ss.failovers, 0);
  assert_int_equal(RUN(fx, r, kv_destroy(fx->store, &r, done_cb)), 0);
  kv_req_cleanup(&r);
}

/* ---- Failover
 * ---------------------------------------------------------------- */

enum { INFLIGHT = 64, NKEYS = 2000 };

typedef struct {
  kv_req_t req;
  int key, calls;
  int phase; /* L.phase when it was submitted */
  char val[32];
} op_t;

static struct {
  fx_t *fx;
  op_t ops[INFLIGHT];
  int next, stop, submitted, completed, ok, failed, ok_streak;
  int *acked;    /* per key: value number acknowledged last, -1 none */
  int *window;   /* per key: that write was submitted between the
                    failover's start and the store's switch (the old
                    primary may have acknowledged it, and its demotion
                    then discarded it) */
  int phase;     /* 0 before the failover, 1 during, 2 after the switch */
  int *inflight; /* per key: a put is in flight */
  int first_err;
} L;

static void load_submit(op_t *op);

static void load_cb(kv_req_t *req) {
  op_t *op = req->data;
  if (++op->calls != 1) fail_msg("a callback ran %d times", op->calls);
  L.completed++;
  L.inflight[op->key] = 0;
  if (req->status == 0) {
    L.ok++;
    L.ok_streak++;
    L.acked[op->key] = atoi(op->val + 1);
    if (L.phase == 1) {
      kv_redis_sentinel_stats_t ss;
      kv_store_ctl(L.fx->store, KV_REDIS_CTL_SENTINEL_STATS, &ss, sizeof ss);
      if (ss.failovers > 0) L.phase = 2;
    }
    L.window[op->key] = op->phase == 1;
  } else {
    L.failed++;
    L.ok_streak = 0;
    /* in flight when the primary went away, or sent while it was gone */
    if (req->status != KV_ECONN && req->status != KV_ETIMEDOUT &&
        L.first_err == 0)
      L.first_err = req->status;
  }
  kv_req_cleanup(req);
  if (!L.stop) load_submit(op);
}

static void load_submit(op_t *op) {
  char key[16];
  int rc;
  do
    op->key = L.next++ % NKEYS;
  while (L.inflight[op->key]);
  L.inflight[op->key] = 1;
  L.submitted++;
  memset(&op->req, 0, sizeof op->req);
  op->req.data = op;
  op->calls = 0;
  op->phase = L.phase;
  snprintf(key, sizeof key, "k%d", op->key);
  snprintf(op->val, sizeof op->val, "v%d", L.next);
  rc = kv_put(L.fx->store, &op->req, "fo", key, op->val, strlen(op->val), 0,
              load_cb);
  if (rc != 0) fail_msg("submit: %s", kv_err_name(rc));
}

/* Put under load until `streak` writes in a row succeeded after the
 * primary changed; then check every acknowledged write. */
static void failover(fx_t *fx, int kill_it) {
  kv_redis_sentinel_stats_t ss;
  char want[32];
  memset(&L, 0, sizeof L);
  L.fx = fx;
  L.acked = malloc(NKEYS * sizeof *L.acked);
  L.inflight = calloc(NKEYS, sizeof *L.inflight);
  L.window = calloc(NKEYS, sizeof *L.window);
  assert_non_null(L.window);
  assert_non_null(L.acked);
  assert_non_null(L.inflight);
  for (int i = 0; i < NKEYS; i++)
    L.acked[i] = -1;
  fx_open(fx, url_of("/kvprimary?timeout=3"));
  for (int i = 0; i < INFLIGHT; i++)
    load_submit(&L.ops[i]);
  while (L.ok < 5000)
    uv_run(&fx->loop, UV_RUN_ONCE);
  /* Everything acknowledged so far reaches the replica before the
   * failover: Redis replicates asynchronously, and a write acknowledged
   * just before its primary dies may be lost (Redis's own limit). */
  L.stop = 1;
  while (L.completed < L.submitted)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_int_equal(fence(fx, g_primary), 1);
  L.stop = 0;
  L.phase = 1;
  for (int i = 0; i < INFLIGHT; i++)
    load_submit(&L.ops[i]);
  if (kill_it) {
    assert_int_equal(kill(g_primary_pid, SIGKILL), 0);
  } else {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "%s -p %s sentinel failover kvprimary >/dev/null",
             g_cli, strrchr(g_seeds, ':') + 1);
    assert_int_equal(system(cmd), 0);
  }
  L.ok_streak = 0;
  {
    uint64_t deadline = uv_hrtime() + 60 * (uint64_t)1000000000;
    for (;;) {
      uv_run(&fx->loop, UV_RUN_ONCE);
      kv_store_ctl(fx->store, KV_REDIS_CTL_SENTINEL_STATS, &ss, sizeof ss);
      if (ss.failovers >= 1 && L.ok_streak >= 5000) break;
      if (uv_hrtime() > deadline)
        fail_msg("no failover within 60 s (%d ok, %d failed, primary %s)", L.ok,
                 L.failed, ss.primary);
    }
  }
  L.stop = 1;
  while (L.completed < L.submitted)
    uv_run(&fx->loop, UV_RUN_ONCE);
  print_message("[   NOTE   ] %s: %d writes acknowledged, %d failed, %llu "
                "lookups\n",
                kill_it ? "primary killed" : "SENTINEL FAILOVER", L.ok,
                L.failed, (unsigned long long)ss.lookups);
  assert_int_equal(L.first_err, 0); /* only connection errors */
  for (int i = 0; i < INFLIGHT; i++)
    assert_int_equal(L.ops[i].calls, 1);
  assert_int_equal(L.phase, 2);
  snprintf(want, sizeof want, "127.0.0.1:%d", g_replica);
  assert_string_equal(ss.primary, want);
  assert_int_equal(ss.failovers, 1);
  if (kill_it) assert_true(L.failed > 0);
  /* every acknowledged write is there with its value */
  for (int i = 0; i < NKEYS; i++) {
    kv_req_t r;
    char key[16];
    if (L.acked[i] < 0 || L.window[i]) continue;
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "fo", key, done_cb)), 0);
    if (!r.found || atoi(r.value.base + 1) != L.acked[i])
      fail_msg("key %d: %s, expected v%d", i,
               r.found ? r.value.base : "missing", L.acked[i]);
    kv_req_cleanup(&r);
  }
  fx_close(fx);
  free(L.acked);
  free(L.inflight);
  free(L.window);
}

static void test_failover_kill(void **state) {
  failover(*state, 1);
}

static void test_failover_manual(void **state) {
  failover(*state, 0);
}

/* ---- TLS (with-redis-sentinel.sh --tls) --------------------------------- */

static const char *g_ca, *g_badca;

/* rediss+sentinel://: the sentinels and the primary speak TLS only. With
 * another CA the lookup fails at once with KV_EAUTH (every sentinel refused
 * the handshake: a configuration error, not an outage) and the sentinels'
 * certificate error in the message,
 * never a plain-text fallback; with the right CA the store reaches the
 * primary over TLS; plain text to the TLS sentinels fails, no hang. */
static void test_tls(void **state) {
  fx_t *fx = *state;
  kv_req_t r;
  kv_redis_sentinel_stats_t ss;
  char url[1024], want[32];
  int rc;
  snprintf(url, sizeof url, "rediss+sentinel://%s/kvprimary?ca=%s&timeout=5",
           g_seeds, g_badca);
  fx_open(fx, url);
  rc = RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb));
  if (rc != KV_EAUTH ||
      strstr(kv_req_errmsg(&r), "cannot find the primary") == NULL ||
      strstr(kv_req_errmsg(&r), "certificate verification failed") == NULL)
    fail_msg("wrong CA: %s (%s), expected KV_EAUTH with the certificate "
             "error",
             kv_err_name(rc), kv_req_errmsg(&r));
  kv_req_cleanup(&r);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_SENTINEL_STATS, &ss, sizeof ss), 0);
  assert_string_equal(ss.primary, "");
  fx_close(fx);

  snprintf(url, sizeof url, "rediss+sentinel://%s/kvprimary?ca=%s&db=4",
           g_seeds, g_ca);
  fx_open(fx, url);
  assert_int_equal(
      RUN(fx, r, kv_put(fx->store, &r, "c", "k", "v", 1, 0, done_cb)), 0);
  kv_req_cleanup(&r);
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)), 0);
  assert_true(r.found);
  assert_memory_equal(r.value.base, "v", 1);
  kv_req_cleanup(&r);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_SENTINEL_STATS, &ss, sizeof ss), 0);
  snprintf(want, sizeof want, "127.0.0.1:%d", g_primary);
  assert_string_equal(ss.primary, want);
  assert_int_equal(RUN(fx, r, kv_destroy(fx->store, &r, done_cb)), 0);
  kv_req_cleanup(&r);
  fx_close(fx);

  fx_open(fx, url_of("/kvprimary?timeout=5"));
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)),
                   KV_ECONN);
  assert_non_null(strstr(kv_req_errmsg(&r), "cannot find the primary"));
  kv_req_cleanup(&r);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_sentinel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_name, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
  };
  const struct CMUnitTest kill_tests[] = {
      cmocka_unit_test_setup_teardown(test_failover_kill, setup, teardown),
  };
  const struct CMUnitTest manual_tests[] = {
      cmocka_unit_test_setup_teardown(test_failover_manual, setup, teardown),
  };
  const struct CMUnitTest tls_tests[] = {
      cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
  };
  const char *p = getenv("KV_SENTINEL_PRIMARY_PORT");
  const char *r = getenv("KV_SENTINEL_REPLICA_PORT");
  const char *pid = getenv("KV_SENTINEL_PRIMARY_PID");
  g_seeds = getenv("KV_SENTINEL_SEEDS");
  g_cli = getenv("KV_REDIS_CLI");
  if (p == NULL || r == NULL || pid == NULL || g_seeds == NULL ||
      g_cli == NULL) {
    fprintf(stderr, "run under tests/servers/with-redis-sentinel.sh\n");
    return 77;
  }
  g_primary = atoi(p);
  g_replica = atoi(r);
  g_primary_pid = atoi(pid);
  signal(SIGPIPE, SIG_IGN);
  if (getenv("KV_SENTINEL_MODE") &&
      strcmp(getenv("KV_SENTINEL_MODE"), "tls") == 0) {
    g_ca = getenv("KV_SENTINEL_CA");
    g_badca = getenv("KV_SENTINEL_BADCA");
    return cmocka_run_group_tests(tls_tests, NULL, NULL);
  }
  if (argc > 1 && strcmp(argv[1], "kill") == 0)
    return cmocka_run_group_tests(kill_tests, NULL, NULL);
  if (argc > 1 && strcmp(argv[1], "manual") == 0)
    return cmocka_run_group_tests(manual_tests, NULL, NULL);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
