/* Tests of the postgresql:// store that the conformance suite does not
 * reach: pipelining (one round trip per loop turn), a server restart and a
 * stop/start under load (requests in flight fail with KV_ECONN, later ones
 * succeed on the same store), wrong and missing passwords (KV_EAUTH),
 * auto_create=false, a batch rolled back by one failing statement (the
 * others are retried), 10,000 requests in flight, a 16 MiB value, names
 * longer than a B-tree entry, SQL injection as names and as the table name,
 * a server that never answers (timeout), host names resolved off the loop.
 *
 *   test-postgresql URL RESTART STOP START
 *
 * is run by tests/servers/with-postgres.sh, which starts a throwaway
 * cluster and passes its URL and the scripts that restart, stop and start
 * it. Every test uses its own loop and ends by proving that the loop closes
 * with nothing left on it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "internal.h"
#include "kvio/postgresql.h"

static const char *g_url; /* postgresql://kv:kvpass@127.0.0.1:PORT/kvtest */
static const char *g_restart, *g_stop, *g_start;

/* ---- Helpers --------------------------------------------------------------
 */

static int g_done;

static void done_cb(kv_req_t *req) {
  (void)req;
  g_done++;
}

/* Run the loop until the one request submitted (rc = the submit's result)
 * has completed; returns its status. */
static int wait_one(uv_loop_t *loop, kv_req_t *req, int rc) {
  if (rc != 0) return rc;
  while (g_done == 0)
    uv_run(loop, UV_RUN_ONCE);
  assert_int_equal(g_done, 1);
  return req->status;
}

#define SYNC(loop, req, call) \
  (memset(&(req), 0, sizeof(req)), g_done = 0, wait_one((loop), &(req), (call)))

static kv_store_t *open_url(uv_loop_t *loop, const char *url) {
  kv_store_t *s = NULL;
  char err[512] = "";
  int rc = kv_open_ex(loop, url, &s, err, sizeof err);
  if (rc != 0) fail_msg("kv_open(%s): %s %s", url, kv_err_name(rc), err);
  return s;
}

/* g_url with `query` appended ("table=x&..."). */
static char *url_with(const char *query) {
  static char buf[4][1024];
  static int i;
  char *b = buf[i++ % 4];
  snprintf(b, sizeof buf[0], "%s?%s", g_url, query);
  return b;
}

static void close_and_check(uv_loop_t *loop, kv_store_t *s) {
  assert_int_equal(kv_store_close(s, NULL), 0);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
}

static kv_postgresql_stats_t stats(kv_store_t *s) {
  kv_postgresql_stats_t st;
  assert_int_equal(kv_store_ctl(s, KV_POSTGRESQL_CTL_STATS, &st, sizeof st), 0);
  return st;
}

static void put_ok(uv_loop_t *loop, kv_store_t *s, const char *c, const char *k,
                   const void *v, size_t n) {
  kv_req_t r;
  int rc = SYNC(loop, r, kv_put(s, &r, c, k, v, n, 0, done_cb));
  if (rc != 0) fail_msg("put %s: %s %s", k, kv_err_name(rc), kv_req_errmsg(&r));
  kv_req_cleanup(&r);
}

static void expect_val(uv_loop_t *loop, kv_store_t *s, const char *c,
                       const char *k, const void *v, size_t n) {
  kv_req_t r;
  int rc = SYNC(loop, r, kv_get(s, &r, c, k, done_cb));
  if (rc != 0) fail_msg("get %s: %s %s", k, kv_err_name(rc), kv_req_errmsg(&r));
  assert_int_equal(r.found, 1);
  assert_int_equal(r.value.len, n);
  assert_memory_equal(r.value.base, v, n);
  kv_req_cleanup(&r);
}

static void notice_ignore(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

/* A direct libpq connection (blocking: test code only). */
static PGconn *direct(void) {
  PGconn *c = PQconnectdb(g_url);
  if (PQstatus(c) != CONNECTION_OK)
    fail_msg("direct connection: %s", PQerrorMessage(c));
  PQsetNoticeProcessor(c, notice_ignore, NULL);
  return c;
}

static void exec_ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK &&
      PQresultStatus(r) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
}

static int run_script(const char *path) {
  int rc = system(path);
  return rc;
}

/* ---- Pipelining -----------------------------------------------------------
 */

/* 100 gets submitted in one loop turn go out as one batch: one round trip,
 * one PQpipelineSync. */
static void test_pipelining(void **state) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t r, reqs[100];
  kv_postgresql_stats_t a, b;
  char key[32];
  (void)state;
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_pipe"));
  /* Not connected yet: opening contacts no server. */
  a = stats(s);
  assert_int_equal(a.connected, 0);
  assert_int_equal(a.connects, 0);
  put_ok(&loop, s, "c", "k42", "v", 1);
  a = stats(s);
  assert_int_equal(a.connected, 1);
  g_done = 0;
  memset(reqs, 0, sizeof reqs);
  for (int i = 0; i < 100; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(kv_get(s, &reqs[i], "c", key, done_cb), 0);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 100);
  b = stats(s);
  assert_int_equal(b.round_trips - a.round_trips, 1);
  assert_int_equal(b.statements - a.statements, 100);
  assert_true(b.max_batch >= 100);
  for (int i = 0; i < 100; i++) {
    assert_int_equal(reqs[i].status, 0);
    assert_int_equal(reqs[i].found, i == 42);
    kv_req_cleanup(&reqs[i]);
  }
  /* One request per turn: one round trip each. */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(SYNC(&loop, r, kv_get(s, &r, "c", "k1", done_cb)), 0);
    kv_req_cleanup(&r);
  }
  a = stats(s);
  assert_int_equal(a.round_trips - b.round_trips, 3);
  assert_int_equal(SYNC(&loop, r, kv_destroy(s, &r, done_cb)), 0);
  kv_req_cleanup(&r);
  close_and_check(&loop, s);
}

/* ---- The server goes away ---------------------------------------------- */

#define STREAM_DEPTH 32

typedef struct stream_s {
  kv_store_t *s;
  int refill;
  int inflight;
  long submitted, completed, ok, econn, other;
  int other_status;
  char other_msg[256];
  long seq;
  kv_req_t reqs[STREAM_DEPTH];
  char keys[STREAM_DEPTH][32];
} stream_t;

static void stream_cb(kv_req_t *req);

static void stream_submit(stream_t *st, int slot) {
  kv_req_t *r = &st->reqs[slot];
  snprintf(st->keys[slot], sizeof st->keys[slot], "s%ld", st->seq++ % 500);
  memset(r, 0, sizeof *r);
  r->data = st;
  assert_int_equal(
      kv_put(st->s, r, "stream", st->keys[slot], "value", 5, 0, stream_cb), 0);
  st->submitted++;
  st->inflight++;
}

static void stream_cb(kv_req_t *req) {
  stream_t *st = req->data;
  st->completed++;
  st->inflight--;
  if (req->status == 0) {
    st->ok++;
  } else if (req->status == KV_ECONN) {
    st->econn++;
  } else {
    st->other++;
    st->other_status = req->status;
    snprintf(st->other_msg, sizeof st->other_msg, "%s", kv_req_errmsg(req));
  }
  kv_req_cleanup(req);
  if (st->refill) stream_submit(st, (int)(req - st->reqs));
}

typedef struct script_s {
  uv_process_t proc;
  stream_t *stream;
  int exited;
  int64_t status;
} script_t;

static void on_script_exit(uv_process_t *p, int64_t status, int sig) {
  script_t *sc = p->data;
  (void)sig;
  sc->exited = 1;
  sc->status = status;
  sc->stream->refill = 0;
  uv_close((uv_handle_t *)p, NULL);
}

/* Requests stream (32 in flight, each completion submits the next) while
 * the server restarts: the ones in flight when it goes fail with KV_ECONN,
 * nothing else fails, each completes once; afterwards the same store works
 * without being reopened. */
static void test_restart_under_load(void **state) {
  uv_loop_t loop;
  stream_t *st = calloc(1, sizeof *st);
  script_t sc;
  uv_process_options_t opt;
  char *args[] = {(char *)g_restart, NULL};
  kv_postgresql_stats_t a, b;
  char key[32];
  (void)state;
  assert_non_null(st);
  uv_loop_init(&loop);
  st->s = open_url(&loop, url_with("table=kv_restart"));
  put_ok(&loop, st->s, "stream", "first", "1", 1); /* connected */
  a = stats(st->s);
  st->refill = 1;
  for (int i = 0; i < STREAM_DEPTH; i++)
    stream_submit(st, i);
  /* Let the stream run a little before the restart. */
  for (int i = 0; i < 20; i++)
    uv_run(&loop, UV_RUN_ONCE);
  memset(&sc, 0, sizeof sc);
  memset(&opt, 0, sizeof opt);
  sc.stream = st;
  sc.proc.data = &sc;
  opt.file = g_restart;
  opt.args = args;
  opt.exit_cb = on_script_exit;
  assert_int_equal(uv_spawn(&loop, &sc.proc, &opt), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(sc.exited, 1);
  assert_int_equal(sc.status, 0);
  assert_int_equal(st->inflight, 0);
  assert_int_equal(st->completed, st->submitted);
  if (st->other)
    fail_msg("%ld requests failed with %s (%s), not KV_ECONN", st->other,
             kv_err_name(st->other_status), st->other_msg);
  print_message("restart: %ld requests, %ld ok, %ld KV_ECONN\n", st->submitted,
                st->ok, st->econn);
  assert_true(st->econn >= 1);
  assert_true(st->ok >= 1);
  /* Later requests succeed on the same store. */
  for (int i = 0; i < 50; i++) {
    snprintf(key, sizeof key, "after%d", i);
    put_ok(&loop, st->s, "stream", key, key, strlen(key));
  }
  for (int i = 0; i < 50; i++) {
    snprintf(key, sizeof key, "after%d", i);
    expect_val(&loop, st->s, "stream", key, key, strlen(key));
  }
  expect_val(&loop, st->s, "stream", "first", "1", 1);
  b = stats(st->s);
  assert_true(b.disconnects > a.disconnects);
  assert_true(b.connects > a.connects);
  assert_int_equal(b.connected, 1);
  close_and_check(&loop, st->s);
  free(st);
}

/* The server stops: a request fails with KV_ECONN (the store was opened and
 * used before); it starts again: the next request succeeds. */
static void test_stop_start(void **state) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t r;
  int rc;
  (void)state;
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_stop"));
  put_ok(&loop, s, "c", "k", "before", 6);
  assert_int_equal(run_script(g_stop), 0);
  rc = SYNC(&loop, r, kv_get(s, &r, "c", "k", done_cb));
  assert_int_equal(rc, KV_ECONN);
  print_message("while stopped: %s\n", kv_req_errmsg(&r));
  kv_req_cleanup(&r);
  /* Opening needs no server either. */
  {
    uv_loop_t l2;
    kv_store_t *s2;
    uv_loop_init(&l2);
    s2 = open_url(&l2, url_with("table=kv_stop"));
    close_and_check(&l2, s2);
  }
  assert_int_equal(run_script(g_start), 0);
  expect_val(&loop, s, "c", "k", "before", 6);
  put_ok(&loop, s, "c", "k", "after", 5);
  expect_val(&loop, s, "c", "k", "after", 5);
  close_and_check(&loop, s);
}

/* ---- Authentication and the table -------------------------------------- */

static char *url_password(const char *password) {
  static char buf[1024];
  const char *at = strchr(g_url, '@');
  const char *colon = strchr(g_url + strlen("postgresql://"), ':');
  assert_non_null(at);
  assert_non_null(colon);
  if (password)
    snprintf(buf, sizeof buf, "%.*s:%s%s", (int)(colon - g_url), g_url,
             password, at);
  else
    snprintf(buf, sizeof buf, "%.*s%s", (int)(colon - g_url), g_url, at);
  return buf;
}

static void test_wrong_password(void **state) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t r;
  kv_postgresql_stats_t st;
  (void)state;
  uv_loop_init(&loop);
  s = open_url(&loop, url_password("wrong"));
  assert_int_equal(SYNC(&loop, r, kv_get(s, &r, "c", "k", done_cb)), KV_EAUTH);
  print_message("wrong password: %s\n", kv_req_errmsg(&r));
  assert_non_null(strstr(kv_req_errmsg(&r), "password"));
  kv_req_cleanup(&r);
  /* Again (after the backoff): still KV_EAUTH, never a hang. */
  assert_int_equal(SYNC(&loop, r, kv_put(s, &r, "c", "k", "v", 1, 0, done_cb)),
                   KV_EAUTH);
  kv_req_cleanup(&r);
  st = stats(s);
  assert_int_equal(st.connects, 0);
  assert_int_equal(st.connect_failures, 2);
  close_and_check(&loop, s);

  /* No password at all, where the server wants one. */
  uv_loop_init(&loop);
  s = open_url(&loop, url_password(NULL));
  assert_int_equal(SYNC(&loop, r, kv_get(s, &r, "c", "k", done_cb)), KV_EAUTH);
  kv_req_cleanup(&r);
  close_and_check(&loop, s);
}

static void test_auto_create_false(void **state) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t r;
  PGconn *c;
  PGresult *res;
  (void)state;
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_missing&auto_create=false"));
  assert_int_equal(SYNC(&loop, r, kv_put(s, &r, "c", "k", "v", 1, 0, done_cb)),
                   KV_EBACKEND);
  print_message("auto_create=false: %s\n", kv_req_errmsg(&r));
  assert_non_null(strstr(kv_req_errmsg(&r), "kv_missing"));
  assert_non_null(strstr(kv_req_errmsg(&r), "does not exist"));
  kv_req_cleanup(&r);
  assert_int_equal(SYNC(&loop, r, kv_get(s, &r, "c", "k", done_cb)),
                   KV_EBACKEND);
  kv_req_cleanup(&r);
  close_and_check(&loop, s);
  c = direct();
  res = PQexec(c, "SELECT to_regclass('kv_missing') IS NULL");
  assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
  assert_string_equal(PQgetvalue(res, 0, 0), "t"); /* nothing created */
  PQclear(res);
  /* Once the table exists, the same options work. */
  exec_ok(c, "CREATE TABLE kv_missing (collection text COLLATE \"C\" NOT NULL,"
             " key text COLLATE \"C\" NOT NULL, value bytea NOT NULL,"
             " expires_at bigint, collection_full text, key_full text,"
             " PRIMARY KEY (collection, key))");
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_missing&auto_create=false"));
  put_ok(&loop, s, "c", "k", "v", 1);
  expect_val(&loop, s, "c", "k", "v", 1);
  close_and_check(&loop, s);
  exec_ok(c, "DROP TABLE kv_missing");
  PQfinish(c);
}

/* A statement that fails rolls its batch back: that request fails with the
 * server's message, the others of the batch are sent again and succeed. */
static void test_failed_statement_in_batch(void **state) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t reqs[20];
  kv_postgresql_stats_t a, b;
  char key[32];
  PGconn *c;
  (void)state;
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_check"));
  put_ok(&loop, s, "c", "setup", "x", 1); /* creates the table */
  c = direct();
  exec_ok(c, "ALTER TABLE kv_check ADD CONSTRAINT kv_no_poison"
             " CHECK (value <> '\\x706f69736f6e'::bytea)"); /* "poison" */
  a = stats(s);
  g_done = 0;
  memset(reqs, 0, sizeof reqs);
  for (int i = 0; i < 20; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(kv_put(s, &reqs[i], "c", key, i == 7 ? "poison" : key,
                            i == 7 ? 6 : strlen(key), 0, done_cb),
                     0);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 20);
  b = stats(s);
  for (int i = 0; i < 20; i++) {
    if (i == 7) {
      assert_int_equal(reqs[i].status, KV_EBACKEND);
      print_message("failing statement: %s\n", kv_req_errmsg(&reqs[i]));
      assert_non_null(strstr(kv_req_errmsg(&reqs[i]), "kv_no_poison"));
    } else {
      assert_int_equal(reqs[i].status, 0);
    }
    kv_req_cleanup(&reqs[i]);
  }
  assert_int_equal(b.retried - a.retried, 19);
  assert_int_equal(b.round_trips - a.round_trips, 2);
  for (int i = 0; i < 20; i++) {
    kv_req_t r;
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(SYNC(&loop, r, kv_get(s, &r, "c", key, done_cb)), 0);
    assert_int_equal(r.found, i != 7);
    kv_req_cleanup(&r);
  }
  close_and_check(&loop, s);
  exec_ok(c, "DROP TABLE kv_check");
  PQfinish(c);
}

/* A read-only session: every write fails with KV_EREADONLY, reads work. */
static void test_read_only_session(void **state) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t r;
  (void)state;
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_ro"));
  put_ok(&loop, s, "c", "k", "v", 1);
  close_and_check(&loop, s);
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_ro&options=-c%20"
                               "default_transaction_read_only%3Don"));
  assert_int_equal(SYNC(&loop, r, kv_put(s, &r, "c", "k", "w", 1, 0, done_cb)),
                   KV_EREADONLY);
  kv_req_cleanup(&r);
  expect_val(&loop, s, "c", "k", "v", 1);
  close_and_check(&loop, s);
}

/* ---- Load and sizes ------------------------------------------------------ */

typedef struct many_s {
  int calls;
} many_t;

static void many_cb(kv_req_t *req) {
  ((many_t *)req->data)->calls++;
}

/* 10,000 requests in flight (puts, gets, incrs): each completes exactly
 * once, in batches of at most 1024. */
static void test_ten_thousand(void **state) {
  enum { N = 10000 };
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t *reqs = calloc(N, sizeof *reqs);
  many_t *m = calloc(N, sizeof *m);
  char(*keys)[16] = calloc(N, sizeof *keys);
  kv_postgresql_stats_t a, b;
  kv_req_t r;
  int nincr = 0;
  (void)state;
  assert_non_null(reqs);
  assert_non_null(m);
  assert_non_null(keys);
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_many"));
  assert_int_equal(SYNC(&loop, r, kv_destroy(s, &r, done_cb)), 0);
  kv_req_cleanup(&r);
  a = stats(s);
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i % 2000);
    reqs[i].data = &m[i];
    switch (i % 3) {
    case 0:
      assert_int_equal(kv_put(s, &reqs[i], "c", keys[i], keys[i],
                              strlen(keys[i]), 0, many_cb),
                       0);
      break;
    case 1:
      assert_int_equal(kv_get(s, &reqs[i], "c", keys[i], many_cb), 0);
      break;
    default:
      assert_int_equal(kv_incr(s, &reqs[i], "n", "counter", 1, 0, many_cb), 0);
      nincr++;
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  b = stats(s);
  for (int i = 0; i < N; i++) {
    assert_int_equal(m[i].calls, 1);
    if (reqs[i].status != 0)
      fail_msg("request %d: %s %s", i, kv_err_name(reqs[i].status),
               kv_req_errmsg(&reqs[i]));
    kv_req_cleanup(&reqs[i]);
  }
  assert_true(b.max_batch <= 1024);
  assert_true(b.round_trips - a.round_trips >= N / 1024);
  assert_int_equal(b.requests - a.requests, N);
  assert_int_equal(SYNC(&loop, r, kv_get(s, &r, "n", "counter", done_cb)), 0);
  assert_int_equal(r.found, 1);
  {
    char want[16];
    snprintf(want, sizeof want, "%d", nincr);
    assert_int_equal(r.value.len, strlen(want));
    assert_memory_equal(r.value.base, want, strlen(want));
  }
  kv_req_cleanup(&r);
  close_and_check(&loop, s);
  free(reqs);
  free(m);
  free(keys);
}

static void test_sixteen_mib(void **state) {
  const size_t n = (size_t)16 << 20;
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t r;
  unsigned char *big = malloc(n);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  (void)state;
  assert_non_null(big);
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    big[i] = (unsigned char)x;
  }
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_big"));
  put_ok(&loop, s, "c", "big", big, n);
  expect_val(&loop, s, "c", "big", big, n);
  assert_int_equal(SYNC(&loop, r, kv_take(s, &r, "c", "big", done_cb)), 0);
  assert_int_equal(r.found, 1);
  assert_int_equal(r.value.len, n);
  assert_memory_equal(r.value.base, big, n);
  assert_int_equal(r.value.base[n], '\0');
  kv_req_cleanup(&r);
  assert_int_equal(SYNC(&loop, r, kv_get(s, &r, "c", "big", done_cb)), 0);
  assert_int_equal(r.found, 0);
  kv_req_cleanup(&r);
  close_and_check(&loop, s);
  free(big);
}

/* ---- Names ------------------------------------------------------------------
 */

static char *random_name(size_t n, uint64_t seed) {
  static const char alnum[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  char *s = malloc(n + 1);
  assert_non_null(s);
  for (size_t i = 0; i < n; i++) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    s[i] = alnum[seed % 62];
  }
  s[n] = '\0';
  return s;
}

static int listed(kv_req_t *r, const char *name) {
  int n = 0;
  for (size_t i = 0; i < r->nnames; i++)
    n += r->names[i].len == strlen(name) &&
         memcmp(r->names[i].base, name, r->names[i].len) == 0;
  return n;
}

/* Random 4,096-byte names do not compress: stored as they are they would
 * not fit a B-tree entry. Two of them sharing their first 4,000 bytes stay
 * two entries; listings return the names themselves. */
static void test_long_random_names(void **state) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t r;
  char *coll = random_name(3000, 1);
  char *k1 = random_name(KV_NAME_MAX, 2);
  char *k2 = strdup(k1);
  char *mid = random_name(1025, 3); /* the size of a hashed name's form */
  (void)state;
  assert_non_null(k2);
  memcpy(k2 + 4000, "different", 9);
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_long"));
  assert_int_equal(SYNC(&loop, r, kv_destroy(s, &r, done_cb)), 0);
  kv_req_cleanup(&r);
  put_ok(&loop, s, coll, k1, "one", 3);
  put_ok(&loop, s, coll, k2, "two", 3);
  put_ok(&loop, s, coll, mid, "mid", 3); /* exactly the hashed form's size */
  expect_val(&loop, s, coll, k1, "one", 3);
  expect_val(&loop, s, coll, k2, "two", 3);
  expect_val(&loop, s, coll, mid, "mid", 3);
  /* The hashed forms are data on disk: the first 960 bytes, '~' and the
   * lower-case hex SHA-256 of the name, as the server computes them. */
  {
    PGconn *c = direct();
    PGresult *res = PQexec(
        c, "SELECT count(*) FILTER (WHERE collection = left(collection_full,"
           " 960) || '~' || encode(sha256(convert_to(collection_full,"
           " 'UTF8')), 'hex') AND key = left(key_full, 960) || '~' ||"
           " encode(sha256(convert_to(key_full, 'UTF8')), 'hex')), count(*)"
           " FROM kv_long");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "3"); /* k1, k2 and mid */
    assert_string_equal(PQgetvalue(res, 0, 1), "3");
    PQclear(res);
    PQfinish(c);
  }
  assert_int_equal(SYNC(&loop, r, kv_keys(s, &r, coll, NULL, 2, done_cb)), 0);
  {
    kv_req_t r2;
    char *cursor = strdup(r.cursor);
    assert_int_equal(r.nnames, 2);
    assert_int_equal(SYNC(&loop, r2, kv_keys(s, &r2, coll, cursor, 2, done_cb)),
                     0);
    assert_int_equal(r2.nnames, 1);
    assert_null(r2.cursor);
    assert_int_equal(listed(&r, k1) + listed(&r2, k1), 1);
    assert_int_equal(listed(&r, k2) + listed(&r2, k2), 1);
    assert_int_equal(listed(&r, mid) + listed(&r2, mid), 1);
    kv_req_cleanup(&r2);
    free(cursor);
  }
  kv_req_cleanup(&r);
  assert_int_equal(SYNC(&loop, r, kv_collections(s, &r, NULL, 0, done_cb)), 0);
  assert_int_equal(listed(&r, coll), 1);
  kv_req_cleanup(&r);
  {
    const char *keys[] = {k1, mid, "absent", k2};
    char v1[] = "1", vm[] = "m", va[] = "a", v2[] = "2";
    kv_buf_t vals[] = {{v1, 1}, {vm, 1}, {va, 1}, {v2, 1}};
    assert_int_equal(
        SYNC(&loop, r, kv_put_many(s, &r, coll, keys, vals, 4, 0, done_cb)), 0);
    kv_req_cleanup(&r);
    assert_int_equal(SYNC(&loop, r, kv_get_many(s, &r, coll, keys, 4, done_cb)),
                     0);
    for (int i = 0; i < 4; i++) {
      assert_int_equal(r.results[i].found, 1);
      assert_memory_equal(r.results[i].value.base, vals[i].base, 1);
    }
    kv_req_cleanup(&r);
    assert_int_equal(
        SYNC(&loop, r, kv_delete_many(s, &r, coll, keys, 4, done_cb)), 0);
    assert_int_equal(r.count, 4);
    kv_req_cleanup(&r);
  }
  close_and_check(&loop, s);
  free(coll);
  free(k1);
  free(k2);
  free(mid);
}

/* SQL in names and in the table name is data. */
static void test_injection(void **state) {
  static const char *const names[] = {
      "x'); DROP TABLE kv_inj; --",
      "\"; DELETE FROM kv_inj WHERE ''='",
      "' OR 1=1 --",
      "$1",
      "%T",
      "\\x00",
      "Robert'); DROP TABLE Students;--",
  };
  uv_loop_t loop;
  kv_store_t *s, *t;
  kv_req_t r;
  (void)state;
  uv_loop_init(&loop);
  s = open_url(&loop, url_with("table=kv_inj"));
  put_ok(&loop, s, "canary", "canary", "alive", 5);
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    for (size_t j = 0; j < sizeof names / sizeof *names; j++)
      put_ok(&loop, s, names[i], names[j], names[i], strlen(names[i]));
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    for (size_t j = 0; j < sizeof names / sizeof *names; j++)
      expect_val(&loop, s, names[i], names[j], names[i], strlen(names[i]));
    assert_int_equal(SYNC(&loop, r, kv_keys(s, &r, names[i], NULL, 0, done_cb)),
                     0);
    assert_int_equal(r.nnames, sizeof names / sizeof *names);
    for (size_t j = 0; j < sizeof names / sizeof *names; j++)
      assert_int_equal(listed(&r, names[j]), 1);
    kv_req_cleanup(&r);
  }
  /* A table name full of SQL: quoted, so it is just a name. */
  t = open_url(&loop, url_with("table=kv_inj%22%3B%20DROP%20TABLE%20kv_inj%3B"
                               "%20--"));
  put_ok(&loop, t, "c", "k", "v", 1);
  expect_val(&loop, t, "c", "k", "v", 1);
  assert_int_equal(SYNC(&loop, r, kv_destroy(t, &r, done_cb)), 0);
  kv_req_cleanup(&r);
  assert_int_equal(kv_store_close(t, NULL), 0);
  /* destroy removed only that table's rows. */
  expect_val(&loop, s, "canary", "canary", "alive", 5);
  assert_int_equal(SYNC(&loop, r, kv_destroy(s, &r, done_cb)), 0);
  kv_req_cleanup(&r);
  close_and_check(&loop, s);
}

/* ---- Connecting -------------------------------------------------------------
 */

static void on_conn_ignored(uv_stream_t *server, int status) {
  (void)server;
  (void)status; /* never accepted: the client waits for an answer */
}

/* A server that accepts TCP connections and never answers: the attempt
 * fails after `timeout`, and a store closed while connecting cancels what
 * waits. */
static void test_timeout_and_close_while_connecting(void **state) {
  uv_loop_t loop;
  uv_tcp_t server;
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  char url[256];
  kv_store_t *s;
  kv_req_t r;
  uint64_t t0;
  (void)state;
  uv_loop_init(&loop);
  uv_tcp_init(&loop, &server);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&server, (struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&server, 8, on_conn_ignored), 0);
  uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
  snprintf(url, sizeof url,
           "postgresql://kv:kvpass@127.0.0.1:%d/kvtest?timeout=0.3",
           ntohs(((struct sockaddr_in *)&bound)->sin_port));
  s = open_url(&loop, url);
  t0 = uv_hrtime();
  assert_int_equal(SYNC(&loop, r, kv_get(s, &r, "c", "k", done_cb)), KV_ECONN);
  print_message("silent server: %s\n", kv_req_errmsg(&r));
  assert_non_null(strstr(kv_req_errmsg(&r), "timeout"));
  assert_true(uv_hrtime() - t0 >= 250000000ull);
  kv_req_cleanup(&r);
  /* Close while the next attempt is in progress. */
  memset(&r, 0, sizeof r);
  g_done = 0;
  assert_int_equal(kv_get(s, &r, "c", "k", done_cb), 0);
  for (int i = 0; i < 3; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(kv_store_close(s, NULL), 0);
  uv_close((uv_handle_t *)&server, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 1);
  assert_int_equal(r.status, KV_ECANCELED);
  kv_req_cleanup(&r);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* "localhost" is a host name: resolved on the threadpool, every address
 * handed to libpq (the server listens on 127.0.0.1 only). */
static void test_host_name(void **state) {
  char url[1024];
  const char *at = strchr(g_url, '@'), *colon;
  uv_loop_t loop;
  kv_store_t *s;
  assert_non_null(at);
  colon = strchr(at, ':');
  assert_non_null(colon);
  (void)state;
  snprintf(url, sizeof url, "%.*slocalhost%s?table=kv_host",
           (int)(at + 1 - g_url), g_url, colon);
  uv_loop_init(&loop);
  s = open_url(&loop, url);
  put_ok(&loop, s, "c", "k", "v", 1);
  expect_val(&loop, s, "c", "k", "v", 1);
  close_and_check(&loop, s);
  /* postgres:// is the same store. */
  snprintf(url, sizeof url, "postgres%s?table=kv_host",
           g_url + strlen("postgresql"));
  uv_loop_init(&loop);
  s = open_url(&loop, url);
  assert_string_equal(kv_store_name(s), "postgresql");
  expect_val(&loop, s, "c", "k", "v", 1);
  close_and_check(&loop, s);
}

static void test_bad_options(void **state) {
  uv_loop_t loop;
  kv_store_t *s = NULL;
  char err[512];
  (void)state;
  uv_loop_init(&loop);
  assert_int_equal(kv_open_ex(&loop, url_with("tabel=x"), &s, err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "tabel"));
  assert_int_equal(kv_open_ex(&loop, url_with("table="), &s, err, sizeof err),
                   KV_EINVAL);
  assert_int_equal(
      kv_open_ex(&loop, url_with("auto_create=maybe"), &s, err, sizeof err),
      KV_EINVAL);
  assert_int_equal(
      kv_open_ex(&loop, url_with("timeout=-1"), &s, err, sizeof err),
      KV_EINVAL);
  assert_int_equal(
      kv_open_ex(&loop,
                 url_with("table=a234567890123456789012345678901234567890123456"
                          "789012345678901234"),
                 &s, err, sizeof err),
      KV_EINVAL);
  assert_null(s);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_pipelining),
      cmocka_unit_test(test_wrong_password),
      cmocka_unit_test(test_auto_create_false),
      cmocka_unit_test(test_failed_statement_in_batch),
      cmocka_unit_test(test_read_only_session),
      cmocka_unit_test(test_ten_thousand),
      cmocka_unit_test(test_sixteen_mib),
      cmocka_unit_test(test_long_random_names),
      cmocka_unit_test(test_injection),
      cmocka_unit_test(test_host_name),
      cmocka_unit_test(test_timeout_and_close_while_connecting),
      cmocka_unit_test(test_restart_under_load),
      cmocka_unit_test(test_stop_start),
  };
  if (argc != 5) {
    fprintf(stderr,
            "usage: %s URL RESTART STOP START\n"
            "  (run by tests/servers/with-postgres.sh)\n",
            argv[0]);
    return 2;
  }
  g_url = argv[1];
  g_restart = argv[2];
  g_stop = argv[3];
  g_start = argv[4];
  setvbuf(stdout, NULL, _IOLBF, 0);
  return cmocka_run_group_tests_name("postgresql", tests, NULL, NULL);
}
