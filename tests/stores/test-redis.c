/* Tests of the Redis store that the conformance suite does not reach:
 * authentication, a server that is down, killed and restarted, timeouts,
 * pipelining (one write per loop turn), millisecond TTLs, the key layout
 * and glob characters, prefixes, 16 MiB values, 10,000 requests in flight,
 * raw commands, TLS failures.
 *
 * Run under tests/servers/with-redis.sh, which starts the shared server and
 * exports KV_REDIS_PORT / KV_REDIS_MODE / KV_REDIS_SERVER / ...; tests that
 * kill a server start their own redis-server on another port. Under
 * `with-redis.sh --tls` only the TLS tests run. */
#include <setjmp.h>
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

static const char *g_port;   /* the shared server */
static const char *g_dir;    /* its temporary directory */
static const char *g_server; /* redis-server binary */
static const char *g_ca, *g_badca;

#include "redis-fixture.h"

/* ---- Requests that must succeed ------------------------------------------ */

static void put_ok(fx_t *fx, const char *c, const char *k, const char *v,
                   double ttl) {
  kv_req_t r;
  int rc = RUN(fx, r, kv_put(fx->store, &r, c, k, v, strlen(v), ttl, done_cb));
  if (rc != 0)
    fail_msg("put(%s, %s): %s: %s", c, k, kv_err_name(rc), kv_req_errmsg(&r));
  kv_req_cleanup(&r);
}

static void expect_val(fx_t *fx, const char *c, const char *k, const char *v) {
  kv_req_t r;
  int rc = RUN(fx, r, kv_get(fx->store, &r, c, k, done_cb));
  if (rc != 0)
    fail_msg("get(%s, %s): %s: %s", c, k, kv_err_name(rc), kv_req_errmsg(&r));
  if (v == NULL) {
    assert_int_equal(r.found, 0);
  } else {
    assert_int_equal(r.found, 1);
    assert_int_equal(r.value.len, strlen(v));
    assert_memory_equal(r.value.base, v, r.value.len);
  }
  kv_req_cleanup(&r);
}

/* ---- Tests: plain server ------------------------------------------------- */

static void test_bad_urls(void **state) {
  fx_t *fx = *state;
  static const char *const bad[] = {
      "redis://127.0.0.1:6379/x",
      "redis://127.0.0.1:6379/-1",
      "redis://127.0.0.1:6379/1?db=2",
      "redis://127.0.0.1:6379/0?ca=/etc/ssl/x.pem",
      "redis://user@127.0.0.1:6379/0",
      "redis://127.0.0.1:6379/0?timeout=-1",
      "redis://127.0.0.1:6379/0?colour=blue",
      "redis+unix://host/tmp/x.sock",
      "redis+unix://",
      "rediss://127.0.0.1:6379/0?ca=/nonexistent/ca.pem",
      "rediss://127.0.0.1:6379/0?cert=/nonexistent/c.pem",
      "rediss://127.0.0.1:6379/0?verify_name=maybe",
  };
  expect_bad_urls(fx, bad, sizeof bad / sizeof bad[0]);
}

static void test_open_needs_no_server(void **state) {
  fx_t *fx = *state;
  /* Every scheme opens without a server; closing without a request leaves
   * nothing on the loop. */
  static const char *const urls[] = {
      "redis://127.0.0.1:1/0",
      "valkey://127.0.0.1:1/3",
      "redis+unix:///nonexistent.sock?db=2",
      "valkey+unix:///nonexistent.sock",
      "redis://:pw@127.0.0.1:1",
      "redis://u:p@[::1]:1/0",
      "redis://localhost/0?prefix=x:&timeout=0.5",
      "rediss://127.0.0.1:1/0",
      "valkeys://127.0.0.1:1/0?verify_name=0"};
  for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
    fx_open(fx, urls[i]);
    assert_string_equal(kv_store_name(fx->store), "redis");
    fx_close(fx);
  }
}

static void test_wrong_password(void **state) {
  fx_t *fx = *state;
  kv_redis_req_t rr;
  kv_req_t r;
  char url[256];
  const char *setuser[] = {"ACL",     "SETUSER", "kvtest", "on",
                           ">secret", "~*",      "&*",     "+@all"};
  const char *deluser[] = {"ACL", "DELUSER", "kvtest"};
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  assert_int_equal(raw(fx, &rr, 8, setuser), 0);
  kv_redis_req_cleanup(&rr);
  fx_close(fx);

  format_url(url, sizeof url, "redis://kvtest:wrong@127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)),
                   KV_EAUTH);
  assert_non_null(strstr(kv_req_errmsg(&r), "WRONGPASS"));
  kv_req_cleanup(&r);
  /* Backing off: the next request fails at once with the same error. */
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)),
                   KV_EAUTH);
  kv_req_cleanup(&r);
  fx_close(fx);

  format_url(url, sizeof url, "redis://:wrong@127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)),
                   KV_EAUTH);
  kv_req_cleanup(&r);
  fx_close(fx);

  format_url(url, sizeof url, "redis://kvtest:secret@127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  put_ok(fx, "auth", "k", "v", 0);
  expect_val(fx, "auth", "k", "v");
  destroy_all(fx);
  /* Deleting the user drops its connections: the store fails over to a
   * clear error, not a hang. */
  assert_int_equal(raw(fx, &rr, 3, deluser), 0);
  kv_redis_req_cleanup(&rr);
  {
    int rc = RUN(fx, r, kv_get(fx->store, &r, "auth", "k", done_cb));
    assert_true(rc == KV_ECONN || rc == KV_EAUTH);
    kv_req_cleanup(&r);
  }
}

static void test_server_down_then_up(void **state) {
  fx_t *fx = *state;
  int port = free_port();
  char url[128];
  kv_req_t r;
  pid_t pid;
  int rc = KV_ECONN;
  format_url(url, sizeof url, "redis://127.0.0.1:%d/0?timeout=2", port);
  fx_open(fx, url);
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)),
                   KV_ECONN);
  assert_non_null(strstr(kv_req_errmsg(&r), "refused"));
  kv_req_cleanup(&r);
  /* While backing off, requests fail at once (no hang). */
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "c", "k", done_cb)),
                   KV_ECONN);
  kv_req_cleanup(&r);
  pid = server_start(g_server, g_dir, port);
  /* The store works once the server is up, without reopening: the backoff
   * is capped at 1 s. */
  for (int i = 0; i < 60 && rc != 0; i++) {
    rc = RUN(fx, r, kv_put(fx->store, &r, "c", "k", "v", 1, 0, done_cb));
    if (rc != 0) {
      assert_int_equal(rc, KV_ECONN);
      sleep_ms(fx, 50);
    }
    kv_req_cleanup(&r);
  }
  assert_int_equal(rc, 0);
  expect_val(fx, "c", "k", "v");
  fx_close(fx);
  server_kill(pid);
}

static void test_server_killed_mid_run(void **state) {
  fx_t *fx = *state;
  int port = free_port();
  char url[128];
  kv_req_t r, gets[5];
  kv_redis_req_t blk;
  kv_redis_stats_t stats;
  const char *blpop[] = {"BLPOP", "kvtest-never", "10"};
  pid_t pid = server_start(g_server, g_dir, port);
  int rc = KV_ECONN;
  format_url(url, sizeof url, "redis://127.0.0.1:%d/0?timeout=20", port);
  fx_open(fx, url);
  put_ok(fx, "c", "k", "v", 0);
  /* A blocking command holds the connection: the gets behind it are in
   * flight when the server dies. */
  memset(&blk, 0, sizeof blk);
  assert_int_equal(kv_redis_command(fx->store, &blk, 3, blpop, NULL, raw_cb),
                   0);
  memset(gets, 0, sizeof gets);
  for (int i = 0; i < 5; i++)
    assert_int_equal(kv_get(fx->store, &gets[i], "c", "k", done_cb), 0);
  g_done = 0;
  sleep_ms(fx, 100);
  assert_int_equal(g_done, 0);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &stats, sizeof stats), 0);
  assert_int_equal(stats.in_flight, 6);
  server_kill(pid);
  run_until(fx, 6);
  assert_int_equal(g_done, 6);
  assert_int_equal(blk.status, KV_ECONN);
  assert_null(blk.reply);
  kv_redis_req_cleanup(&blk);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(gets[i].status, KV_ECONN);
    kv_req_cleanup(&gets[i]);
  }
  pid = server_start(g_server, g_dir, port);
  for (int i = 0; i < 60 && rc != 0; i++) {
    rc = RUN(fx, r, kv_put(fx->store, &r, "c", "k", "v2", 2, 0, done_cb));
    if (rc != 0) sleep_ms(fx, 50);
    kv_req_cleanup(&r);
  }
  assert_int_equal(rc, 0);
  expect_val(fx, "c", "k", "v2");
  fx_close(fx);
  server_kill(pid);
}

static void test_timeout(void **state) {
  fx_t *fx = *state;
  char url[128];
  kv_redis_req_t blk;
  kv_req_t r;
  const char *blpop[] = {"BLPOP", "kvtest-never", "3"};
  uint64_t t0;
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0?timeout=0.3", g_port);
  fx_open(fx, url);
  put_ok(fx, "c", "k", "v", 0);
  t0 = uv_hrtime();
  assert_int_equal(raw(fx, &blk, 3, blpop), KV_ETIMEDOUT);
  assert_true(uv_hrtime() - t0 < 2500000000u);
  assert_non_null(strstr(kv_redis_req_errmsg(&blk), "no reply"));
  kv_redis_req_cleanup(&blk);
  /* The connection was reset; the next request reconnects. */
  expect_val(fx, "c", "k", "v");
  destroy_all(fx);
  (void)r;
}

/* The blocking facade runs its loop only inside calls: a deadline taken
 * from the loop's (stale) clock would expire at once after a pause. */
static void test_sync_facade_after_pause(void **state) {
  char url[128];
  kv_sync_t *db;
  kv_req_t r;
  char err[256];
  (void)state;
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0?timeout=0.5", g_port);
  assert_int_equal(kv_sync_open(url, &db, err, sizeof err), 0);
  assert_int_equal(kv_sync_put(db, &r, "sync", "k", "v", 1, 0), 0);
  kv_req_cleanup(&r);
  usleep(800000);
  assert_int_equal(kv_sync_get(db, &r, "sync", "k"), 0);
  assert_int_equal(r.found, 1);
  kv_req_cleanup(&r);
  assert_int_equal(kv_sync_destroy(db, &r), 0);
  kv_req_cleanup(&r);
  assert_int_equal(kv_sync_close(db), 0);
}

static void test_pipelining_one_write(void **state) {
  fx_t *fx = *state;
  char url[128];
  kv_req_t reqs[100], r;
  kv_redis_stats_t s0, s1;
  const char *keys[100];
  char names[100][8];
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  put_ok(fx, "pipe", "k", "v", 0); /* connected */
  assert_int_equal(kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &s0, sizeof s0),
                   0);
  memset(reqs, 0, sizeof reqs);
  for (int i = 0; i < 100; i++)
    assert_int_equal(kv_get(fx->store, &reqs[i], "pipe", "k", done_cb), 0);
  g_done = 0;
  run_until(fx, 100);
  assert_int_equal(kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &s1, sizeof s1),
                   0);
  assert_int_equal(s1.commands - s0.commands, 100);
  assert_int_equal(s1.replies - s0.replies, 100);
  assert_int_equal(s1.writes - s0.writes, 1); /* one write for the turn */
  for (int i = 0; i < 100; i++) {
    assert_int_equal(reqs[i].status, 0);
    assert_int_equal(reqs[i].found, 1);
    kv_req_cleanup(&reqs[i]);
  }
  /* get_many of 100 keys: one MGET, one write. */
  for (int i = 0; i < 100; i++) {
    snprintf(names[i], sizeof names[i], "k%d", i % 7);
    keys[i] = names[i];
  }
  s0 = s1;
  assert_int_equal(
      RUN(fx, r, kv_get_many(fx->store, &r, "pipe", keys, 100, done_cb)), 0);
  assert_int_equal(kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &s1, sizeof s1),
                   0);
  assert_int_equal(s1.commands - s0.commands, 1);
  assert_int_equal(s1.writes - s0.writes, 1);
  assert_int_equal(r.nresults, 100);
  kv_req_cleanup(&r);
  /* Unknown ctl ops are refused. */
  assert_int_equal(kv_store_ctl(fx->store, 0x7777, NULL, 0), KV_ENOTSUP);
  destroy_all(fx);
}

/* put_many of 2,500 keys with a TTL: three script calls (1,000 keys
 * each), one expiry: the first call's, given to the other two. */
static void test_put_many_one_expiry(void **state) {
  fx_t *fx = *state;
  char url[128];
  format_url(url, sizeof url, "redis://127.0.0.1:%s/5", g_port);
  fx_open(fx, url);
  destroy_all(fx);
  batch_ttl_one_expiry(fx, 2500);
  destroy_all(fx);
}

static void test_ten_thousand_in_flight(void **state) {
  fx_t *fx = *state;
  enum { N = 10000 };
  char url[128];
  kv_req_t *reqs = calloc(N, sizeof *reqs);
  int *calls = calloc(N, sizeof *calls);
  char key[32];
  assert_non_null(reqs);
  assert_non_null(calls);
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  for (int i = 0; i < N; i++) {
    reqs[i].data = &calls[i];
    snprintf(key, sizeof key, "k%d", i % 500);
    if (i % 2)
      assert_int_equal(kv_put(fx->store, &reqs[i], "many", key, key,
                              strlen(key), 0, done_cb),
                       0);
    else
      assert_int_equal(kv_get(fx->store, &reqs[i], "many", key, done_cb), 0);
  }
  g_done = 0;
  run_until(fx, N);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  assert_int_equal(g_done, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(reqs[i].status, 0);
    kv_req_cleanup(&reqs[i]);
  }
  destroy_all(fx);
  free(reqs);
  free(calls);
}

static void test_sixteen_mib(void **state) {
  fx_t *fx = *state;
  size_t n = 16u << 20;
  char url[128];
  char *v = malloc(n);
  kv_req_t r;
  assert_non_null(v);
  for (size_t i = 0; i < n; i++)
    v[i] = (char)(i * 7 + (i >> 13));
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  assert_int_equal(
      RUN(fx, r, kv_put(fx->store, &r, "big", "v", v, n, 0, done_cb)), 0);
  kv_req_cleanup(&r);
  assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "big", "v", done_cb)), 0);
  assert_int_equal(r.found, 1);
  assert_int_equal(r.value.len, n);
  assert_memory_equal(r.value.base, v, n);
  assert_int_equal(r.value.base[n], '\0');
  kv_req_cleanup(&r);
  destroy_all(fx);
  free(v);
}

static void list_keys(fx_t *fx, const char *c, char ***out, size_t *n) {
  char *cursor = NULL;
  *out = NULL;
  *n = 0;
  do {
    kv_req_t r;
    assert_int_equal(RUN(fx, r, kv_keys(fx->store, &r, c, cursor, 2, done_cb)),
                     0);
    free(cursor);
    cursor = r.cursor ? strdup(r.cursor) : NULL;
    for (size_t i = 0; i < r.nnames; i++) {
      *out = realloc(*out, (*n + 1) * sizeof **out);
      (*out)[(*n)++] = strdup(r.names[i].base);
    }
    kv_req_cleanup(&r);
  } while (cursor != NULL);
}

static int has_name(char **v, size_t n, const char *s) {
  int c = 0;
  for (size_t i = 0; i < n; i++)
    c += strcmp(v[i], s) == 0;
  return c;
}

static void free_names(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static void test_glob_characters(void **state) {
  fx_t *fx = *state;
  char url[128];
  char **names;
  size_t n;
  kv_req_t r;
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  /* Collections whose names are patterns must not match others. */
  put_ok(fx, "c*", "one", "1", 0);
  put_ok(fx, "cx", "two", "2", 0);
  put_ok(fx, "c?", "three", "3", 0);
  put_ok(fx, "[c]", "four", "4", 0);
  put_ok(fx, "c", "five", "5", 0);
  put_ok(fx, "c\\", "six", "6", 0);
  list_keys(fx, "c*", &names, &n);
  assert_int_equal(n, 1);
  assert_int_equal(has_name(names, n, "one"), 1);
  free_names(names, n);
  list_keys(fx, "c?", &names, &n);
  assert_int_equal(n, 1);
  assert_int_equal(has_name(names, n, "three"), 1);
  free_names(names, n);
  list_keys(fx, "[c]", &names, &n);
  assert_int_equal(n, 1);
  assert_int_equal(has_name(names, n, "four"), 1);
  free_names(names, n);
  list_keys(fx, "c\\", &names, &n);
  assert_int_equal(n, 1);
  free_names(names, n);
  /* Keys with glob characters are data. */
  put_ok(fx, "g", "a*", "1", 0);
  put_ok(fx, "g", "a?", "2", 0);
  put_ok(fx, "g", "[ab]", "3", 0);
  put_ok(fx, "g", "ab", "4", 0);
  list_keys(fx, "g", &names, &n);
  assert_int_equal(n, 4);
  assert_int_equal(has_name(names, n, "[ab]"), 1);
  assert_int_equal(has_name(names, n, "a*"), 1);
  free_names(names, n);
  /* destroy_collection of a pattern-named collection removes only it. */
  assert_int_equal(
      RUN(fx, r, kv_destroy_collection(fx->store, &r, "c*", done_cb)), 0);
  kv_req_cleanup(&r);
  expect_val(fx, "c*", "one", NULL);
  expect_val(fx, "cx", "two", "2");
  expect_val(fx, "c?", "three", "3");
  expect_val(fx, "c", "five", "5");
  destroy_all(fx);
  expect_val(fx, "cx", "two", NULL);
}

static void test_layout_readable(void **state) {
  fx_t *fx = *state;
  char url[128];
  kv_redis_req_t rr;
  const char *get1[] = {"GET", "users:alice"};
  const char *get2[] = {"GET", "a%3Ab%25:c:d"};
  const char *set3[] = {"SET", "ext:k", "from-outside"};
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  put_ok(fx, "users", "alice", "{\"n\":1}", 0);
  assert_int_equal(raw(fx, &rr, 2, get1), 0);
  assert_int_equal(rr.reply->type, KV_REDIS_REPLY_STRING);
  assert_string_equal(rr.reply->str, "{\"n\":1}"); /* the bytes, no envelope */
  kv_redis_req_cleanup(&rr);
  put_ok(fx, "a:b%", "c:d", "x", 0);
  assert_int_equal(raw(fx, &rr, 2, get2), 0);
  assert_string_equal(rr.reply->str, "x");
  kv_redis_req_cleanup(&rr);
  /* ... and the other way round. */
  assert_int_equal(raw(fx, &rr, 3, set3), 0);
  kv_redis_req_cleanup(&rr);
  expect_val(fx, "ext", "k", "from-outside");
  destroy_all(fx);
}

static void test_prefixes(void **state) {
  fx_t *fx = *state;
  fx_t other;
  char url[128];
  char **names;
  size_t n;
  kv_req_t r;
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0?prefix=a:", g_port);
  fx_open(fx, url);
  memset(&other, 0, sizeof other);
  other.loop = fx->loop; /* not used: the second store shares fx's loop */
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0?prefix=b:", g_port);
  {
    char err[256];
    assert_int_equal(kv_open_ex(&fx->loop, url, &other.store, err, sizeof err),
                     0);
  }
  put_ok(fx, "c", "k", "from-a", 0);
  {
    kv_store_t *a = fx->store;
    fx->store = other.store;
    put_ok(fx, "c", "k", "from-b", 0);
    put_ok(fx, "only-b", "k", "b", 0);
    expect_val(fx, "c", "k", "from-b");
    fx->store = a;
  }
  expect_val(fx, "c", "k", "from-a");
  expect_val(fx, "only-b", "k", NULL);
  list_keys(fx, "c", &names, &n);
  assert_int_equal(n, 1);
  free_names(names, n);
  assert_int_equal(RUN(fx, r, kv_collections(fx->store, &r, NULL, 0, done_cb)),
                   0);
  assert_int_equal(r.nnames, 1);
  assert_string_equal(r.names[0].base, "c");
  kv_req_cleanup(&r);
  /* destroy() of a leaves b intact. */
  destroy_all(fx);
  expect_val(fx, "c", "k", NULL);
  {
    kv_store_t *a = fx->store;
    fx->store = other.store;
    expect_val(fx, "c", "k", "from-b");
    expect_val(fx, "only-b", "k", "b");
    destroy_all(fx);
    fx_close(fx);
    fx->store = a;
  }
}

static void test_ttl_milliseconds(void **state) {
  fx_t *fx = *state;
  char url[128];
  kv_redis_req_t rr;
  kv_req_t r;
  const char *pttl[] = {"PTTL", "ms:k"};
  uint64_t t0;
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  t0 = uv_hrtime();
  put_ok(fx, "ms", "k", "v", 0.25);
  /* Native, millisecond-exact: 250 ms, not rounded to seconds. */
  assert_int_equal(raw(fx, &rr, 2, pttl), 0);
  assert_int_equal(rr.reply->type, KV_REDIS_REPLY_INTEGER);
  assert_true(rr.reply->integer <= 250);
  assert_true(rr.reply->integer >= 150);
  kv_redis_req_cleanup(&rr);
  assert_int_equal(RUN(fx, r, kv_ttl(fx->store, &r, "ms", "k", done_cb)), 0);
  assert_int_equal(r.found, 1);
  assert_true(r.ttl > 0.1 && r.ttl <= 0.25);
  kv_req_cleanup(&r);
  sleep_ms(fx, 300);
  if (uv_hrtime() - t0 >= 250000000u) expect_val(fx, "ms", "k", NULL);
  /* 1 ms: accepted, gone almost at once. */
  put_ok(fx, "ms", "k2", "v", 0.0001);
  sleep_ms(fx, 20);
  expect_val(fx, "ms", "k2", NULL);
  /* incr: a new key gets the TTL, an existing one keeps its own. */
  assert_int_equal(
      RUN(fx, r, kv_incr(fx->store, &r, "ms", "n", 5, 100, done_cb)), 0);
  assert_int_equal(r.number, 5);
  kv_req_cleanup(&r);
  assert_int_equal(RUN(fx, r, kv_incr(fx->store, &r, "ms", "n", 2, 5, done_cb)),
                   0);
  assert_int_equal(r.number, 7);
  kv_req_cleanup(&r);
  assert_int_equal(RUN(fx, r, kv_ttl(fx->store, &r, "ms", "n", done_cb)), 0);
  assert_true(r.ttl > 90 && r.ttl <= 100);
  kv_req_cleanup(&r);
  destroy_all(fx);
}

static void test_raw_commands(void **state) {
  fx_t *fx = *state;
  char url[128];
  kv_redis_req_t rr;
  kv_store_t *mem;
  const char *hset[] = {"HSET", "kvtest-hash", "f", "value"};
  const char *hget[] = {"HGET", "kvtest-hash", "f"};
  const char *bad[] = {"NOSUCHCOMMAND"};
  const char *del[] = {"DEL", "kvtest-hash"};
  const char *mget[] = {"MGET", "kvtest-hash", "nope"};
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  assert_int_equal(raw(fx, &rr, 4, hset), 0);
  assert_int_equal(rr.reply->type, KV_REDIS_REPLY_INTEGER);
  assert_int_equal(rr.reply->integer, 1);
  kv_redis_req_cleanup(&rr);
  assert_int_equal(raw(fx, &rr, 3, hget), 0);
  assert_int_equal(rr.reply->type, KV_REDIS_REPLY_STRING);
  assert_string_equal(rr.reply->str, "value");
  kv_redis_req_cleanup(&rr);
  assert_int_equal(raw(fx, &rr, 3, mget), 0);
  assert_int_equal(rr.reply->type, KV_REDIS_REPLY_ARRAY);
  assert_int_equal(rr.reply->elements, 2);
  assert_int_equal(rr.reply->element[0]->type, KV_REDIS_REPLY_NIL);
  kv_redis_req_cleanup(&rr);
  /* A server error is a reply. */
  assert_int_equal(raw(fx, &rr, 1, bad), 0);
  assert_int_equal(rr.reply->type, KV_REDIS_REPLY_ERROR);
  assert_non_null(strstr(rr.reply->str, "unknown command"));
  kv_redis_req_cleanup(&rr);
  /* WRONGTYPE through the kvio API: a clear backend error. */
  {
    kv_req_t r;
    const char *h2[] = {"HSET", "t:k", "f", "v"};
    assert_int_equal(raw(fx, &rr, 4, h2), 0);
    kv_redis_req_cleanup(&rr);
    assert_int_equal(RUN(fx, r, kv_get(fx->store, &r, "t", "k", done_cb)),
                     KV_EBACKEND);
    assert_non_null(strstr(kv_req_errmsg(&r), "WRONGTYPE"));
    kv_req_cleanup(&r);
  }
  assert_int_equal(raw(fx, &rr, 2, del), 0);
  kv_redis_req_cleanup(&rr);
  /* Argument errors, and a store that is not a redis store. */
  memset(&rr, 0, sizeof rr);
  assert_int_equal(kv_redis_command(fx->store, &rr, 0, hget, NULL, raw_cb),
                   KV_EINVAL);
  kv_redis_req_cleanup(&rr);
  assert_int_equal(kv_open(&fx->loop, "memory://", &mem), 0);
  assert_int_equal(kv_redis_command(mem, &rr, 3, hget, NULL, raw_cb),
                   KV_EINVAL);
  assert_non_null(strstr(kv_redis_req_errmsg(&rr), "not a redis store"));
  kv_redis_req_cleanup(&rr);
  close_other(fx, mem);
  destroy_all(fx);
}

/* ---- Tests: TLS server --------------------------------------------------- */

static void test_tls_ok(void **state) {
  fx_t *fx = *state;
  char url[512];
  format_url(url, sizeof url, "rediss://127.0.0.1:%s/0?ca=%s", g_port, g_ca);
  fx_open(fx, url);
  put_ok(fx, "tls", "k", "v", 0);
  expect_val(fx, "tls", "k", "v");
  destroy_all(fx);
  fx_close(fx);
  /* A wrong name with name checking off: the chain is still verified. */
  format_url(url, sizeof url,
             "valkeys://127.0.0.1:%s/0?ca=%s&server_name=wrong.example&"
             "verify_name=0",
             g_port, g_ca);
  fx_open(fx, url);
  put_ok(fx, "tls", "k", "v", 0);
  destroy_all(fx);
}

static void expect_tls_failure(fx_t *fx, const char *url, int code,
                               const char *text) {
  kv_req_t r;
  int rc;
  fx_open(fx, url);
  rc = RUN(fx, r, kv_get(fx->store, &r, "tls", "k", done_cb));
  if (rc != code || strstr(kv_req_errmsg(&r), text) == NULL)
    fail_msg("%s: %s (%s), expected %s with '%s'", url, kv_err_name(rc),
             kv_req_errmsg(&r), kv_err_name(code), text);
  kv_req_cleanup(&r);
  fx_close(fx);
}

static void test_tls_failures(void **state) {
  fx_t *fx = *state;
  char url[512];
  /* Another CA: a clear certificate error, never a plain-text fallback. */
  format_url(url, sizeof url, "rediss://127.0.0.1:%s/0?ca=%s", g_port, g_badca);
  expect_tls_failure(fx, url, KV_EAUTH, "certificate verification failed");
  /* The right CA, the wrong name. */
  format_url(url, sizeof url,
             "rediss://127.0.0.1:%s/0?ca=%s&server_name=x.test", g_port, g_ca);
  expect_tls_failure(fx, url, KV_EAUTH, "certificate verification failed");
  /* Plain text against the TLS port fails (and does not hang). */
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0?timeout=5", g_port);
  fx_open(fx, url);
  {
    kv_req_t r;
    int rc = RUN(fx, r, kv_get(fx->store, &r, "tls", "k", done_cb));
    assert_true(rc == KV_ECONN || rc == KV_EPROTO);
    kv_req_cleanup(&r);
  }
}

int main(void) {
  const char *mode = getenv("KV_REDIS_MODE");
  static const struct CMUnitTest plain[] = {
      cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_needs_no_server, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_wrong_password, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_down_then_up, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_killed_mid_run, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sync_facade_after_pause, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_pipelining_one_write, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_put_many_one_expiry, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_ten_thousand_in_flight, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_sixteen_mib, setup, teardown),
      cmocka_unit_test_setup_teardown(test_glob_characters, setup, teardown),
      cmocka_unit_test_setup_teardown(test_layout_readable, setup, teardown),
      cmocka_unit_test_setup_teardown(test_prefixes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ttl_milliseconds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_raw_commands, setup, teardown),
  };
  static const struct CMUnitTest tls[] = {
      cmocka_unit_test_setup_teardown(test_tls_ok, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tls_failures, setup, teardown),
  };
  g_port = getenv("KV_REDIS_PORT");
  g_dir = getenv("KV_REDIS_DIR");
  g_server = getenv("KV_REDIS_SERVER");
  g_ca = getenv("KV_REDIS_CA");
  g_badca = getenv("KV_REDIS_BADCA");
  if (g_port == NULL || g_dir == NULL || g_server == NULL || mode == NULL) {
    fprintf(stderr, "test-redis: run it under tests/servers/with-redis.sh\n");
    return 77;
  }
  srand((unsigned)uv_hrtime());
  if (strcmp(mode, "tls") == 0)
    return cmocka_run_group_tests_name("redis tls", tls, NULL, NULL);
  if (strcmp(mode, "plain") != 0) {
    fprintf(stderr, "test-redis: mode %s has no tests of its own\n", mode);
    return 77;
  }
  return cmocka_run_group_tests_name("redis", plain, NULL, NULL);
}
