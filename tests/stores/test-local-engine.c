/* The batching behaviour of the local stores (disk, sqlite, rocksdb, file),
 * written once and run per store: test-local-engine URL, where @TMP@ in the
 * URL is replaced by a fresh temporary directory for each test
 * (tests/parts/local-engine.cmake). These stores share one batcher
 * (src/stores/common/batcher.c); this is what it promises:
 *  - the writes of one loop turn are one batch (one commit);
 *  - reads of a turn are answered on the loop thread, without a batch
 *    (reads=pool: in one batch);
 *  - in one turn, each op sees the ones submitted before it;
 *  - a read submitted while a write is in flight waits for it and sees it,
 *    and its callback runs after the write's;
 *  - close completes everything, every callback before the close
 *    callback: what was acknowledged is there after a reopen, the rest is
 *    KV_ECANCELED;
 *  - a TTL survives a reopen;
 *  - two stores on one path in one process keep the atomic ops atomic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "kvio/disk.h"
#include "kvio/file.h"
#include "kvio/rocksdb.h"
#include "kvio/sqlite.h"

static const char *g_template; /* the URL, with @TMP@ */

typedef struct fx_s {
  uv_loop_t loop;
  kv_store_t *store;
  char dir[64];
  char url[512];
} fx_t;

static int g_done;  /* callbacks run since the last reset */
static int g_order; /* a counter the callbacks stamp themselves with */

static void done_cb(kv_req_t *req) {
  if (req->data != NULL) *(int *)req->data = ++g_order;
  g_done++;
}

/* The URL with @TMP@ replaced, and an extra query option (or NULL). */
static void make_url(fx_t *fx, const char *extra) {
  const char *at = strstr(g_template, "@TMP@");
  assert_non_null(at);
  snprintf(fx->url, sizeof fx->url, "%.*s%s%s%s%s", (int)(at - g_template),
           g_template, fx->dir, at + 5,
           extra ? (strchr(g_template, '?') ? "&" : "?") : "",
           extra ? extra : "");
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  strcpy(fx->dir, "/tmp/kvio-engine-XXXXXX");
  assert_non_null(mkdtemp(fx->dir));
  make_url(fx, NULL);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  *state = fx;
  return 0;
}

static int g_done_at_close; /* g_done when the last close callback ran */

static void closed_cb(kv_store_t *s) {
  (*(int *)s->data)++;
  g_done_at_close = g_done;
}

static void close_store(fx_t *fx) {
  int closed = 0;
  fx->store->data = &closed;
  assert_int_equal(kv_store_close(fx->store, closed_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
  fx->store = NULL;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  char cmd[128];
  if (fx->store != NULL) close_store(fx);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
  assert_int_equal(system(cmd), 0);
  free(fx);
  return 0;
}

static void open_store(fx_t *fx) {
  char err[512];
  int rc = kv_open_ex(&fx->loop, fx->url, &fx->store, err, sizeof err);
  if (rc != 0)
    fail_msg("kv_open_ex(%s): %s: %s", fx->url, kv_err_name(rc), err);
}

/* The batcher's counters, whatever the store. */
typedef struct counters_s {
  uint64_t batches;    /* batches sent to the threadpool */
  uint64_t ops;        /* requests answered */
  uint64_t loop_reads; /* reads answered on the loop thread */
} counters_t;

static counters_t counters(fx_t *fx) {
  const char *name = kv_store_name(fx->store);
  counters_t c = {0, 0, 0};
  if (strcmp(name, "disk") == 0) {
    kv_disk_stats_t st;
    assert_int_equal(kv_store_ctl(fx->store, KV_DISK_CTL_STATS, &st, sizeof st), 0);
    c.batches = st.batches, c.ops = st.ops, c.loop_reads = st.loop_reads;
  } else if (strcmp(name, "sqlite") == 0) {
    kv_sqlite_stats_t st;
    assert_int_equal(kv_store_ctl(fx->store, KV_SQLITE_CTL_STATS, &st, sizeof st), 0);
    c.batches = st.batches, c.ops = st.ops, c.loop_reads = st.loop_reads;
  } else if (strcmp(name, "rocksdb") == 0) {
    kv_rocksdb_stats_t st;
    assert_int_equal(kv_store_ctl(fx->store, KV_ROCKSDB_CTL_STATS, &st, sizeof st), 0);
    c.batches = st.batches, c.ops = st.ops, c.loop_reads = st.loop_reads;
  } else if (strcmp(name, "file") == 0) {
    kv_file_stats_t st;
    assert_int_equal(kv_store_ctl(fx->store, KV_FILE_CTL_STATS, &st, sizeof st), 0);
    c.batches = st.batches, c.ops = st.ops, c.loop_reads = st.loop_reads;
  } else {
    fail_msg("not a store of the local engine: %s", name);
  }
  return c;
}

static void put(fx_t *fx, const char *key, const char *v, double ttl) {
  kv_req_t req;
  memset(&req, 0, sizeof req);
  g_done = 0;
  assert_int_equal(
      kv_put(fx->store, &req, "e", key, v, strlen(v), ttl, done_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 1);
  assert_int_equal(req.status, 0);
  kv_req_cleanup(&req);
}

static void expect(fx_t *fx, const char *key, const char *v) {
  kv_req_t req;
  memset(&req, 0, sizeof req);
  g_done = 0;
  assert_int_equal(kv_get(fx->store, &req, "e", key, done_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 1);
  assert_int_equal(req.status, 0);
  if (v == NULL) {
    assert_int_equal(req.found, 0);
  } else {
    assert_int_equal(req.found, 1);
    assert_int_equal(req.value.len, strlen(v));
    assert_memory_equal(req.value.base, v, strlen(v));
  }
  kv_req_cleanup(&req);
}

/* ---- Tests ----------------------------------------------------------------
 */

enum { N = 200 };
static kv_req_t reqs[N];

static void writes_of_a_turn_are_one_batch_reads_none(void **state) {
  fx_t *fx = *state;
  char key[16];
  counters_t c0, c;
  int i;
  open_store(fx);
  put(fx, "warm", "up", 0); /* file://: a first write makes it fresh */
  c0 = counters(fx);
  g_done = 0;
  for (i = 0; i < N; i++) {
    memset(&reqs[i], 0, sizeof reqs[i]);
    snprintf(key, sizeof key, "g%d", i);
    assert_int_equal(
        kv_put(fx->store, &reqs[i], "e", key, key, strlen(key), 0, done_cb), 0);
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, N);
  for (i = 0; i < N; i++) {
    assert_int_equal(reqs[i].status, 0);
    kv_req_cleanup(&reqs[i]);
  }
  c = counters(fx);
  assert_int_equal(c.batches - c0.batches, 1);
  assert_int_equal(c.ops - c0.ops, N);
  /* N reads in one turn: on the loop thread, no batch. (file:// answers
   * from memory once it knows the file unchanged: after the watch has seen
   * its own rewrite, so after one read; with watch=0 it checks the file on
   * the threadpool for every turn: one batch.) */
  expect(fx, "g0", "g0");
  c0 = counters(fx);
  g_done = 0;
  for (i = 0; i < N; i++) {
    memset(&reqs[i], 0, sizeof reqs[i]);
    snprintf(key, sizeof key, "g%d", i);
    assert_int_equal(kv_get(fx->store, &reqs[i], "e", key, done_cb), 0);
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, N);
  for (i = 0; i < N; i++) {
    snprintf(key, sizeof key, "g%d", i);
    assert_int_equal(reqs[i].status, 0);
    assert_int_equal(reqs[i].found, 1);
    assert_string_equal(reqs[i].value.base, key);
    kv_req_cleanup(&reqs[i]);
  }
  c = counters(fx);
  if (strstr(g_template, "watch=0") != NULL) {
    assert_int_equal(c.batches - c0.batches, 1);
    assert_int_equal(c.loop_reads - c0.loop_reads, 0);
  } else {
    assert_int_equal(c.batches - c0.batches, 0);
    assert_int_equal(c.loop_reads - c0.loop_reads, N);
  }
  assert_int_equal(c.ops - c0.ops, N);
}

/* reads=pool (disk, sqlite, rocksdb): the reads of a turn are one batch. */
static void reads_pool_sends_reads_to_the_threadpool(void **state) {
  fx_t *fx = *state;
  counters_t c0, c;
  int i;
  if (strncmp(g_template, "file:", 5) == 0) skip(); /* no reads option */
  make_url(fx, "reads=pool");
  open_store(fx);
  put(fx, "a", "1", 0);
  c0 = counters(fx);
  g_done = 0;
  for (i = 0; i < 10; i++) {
    memset(&reqs[i], 0, sizeof reqs[i]);
    assert_int_equal(kv_get(fx->store, &reqs[i], "e", "a", done_cb), 0);
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 10);
  for (i = 0; i < 10; i++) {
    assert_int_equal(reqs[i].found, 1);
    kv_req_cleanup(&reqs[i]);
  }
  c = counters(fx);
  assert_int_equal(c.batches - c0.batches, 1);
  assert_int_equal(c.loop_reads - c0.loop_reads, 0);
  close_store(fx);
  /* A bad value is refused at open. */
  {
    char err[256];
    kv_store_t *s = NULL;
    make_url(fx, "reads=sometimes");
    assert_int_equal(kv_open_ex(&fx->loop, fx->url, &s, err, sizeof err),
                     KV_EINVAL);
    assert_non_null(strstr(err, "reads"));
  }
}

/* In one turn, each op sees the ones before it. */
static void a_turn_runs_in_order(void **state) {
  fx_t *fx = *state;
  open_store(fx);
  g_done = 0;
  memset(reqs, 0, 5 * sizeof reqs[0]);
  assert_int_equal(kv_get(fx->store, &reqs[0], "e", "k", done_cb), 0);
  assert_int_equal(kv_put(fx->store, &reqs[1], "e", "k", "1", 1, 0, done_cb),
                   0);
  assert_int_equal(kv_get(fx->store, &reqs[2], "e", "k", done_cb), 0);
  assert_int_equal(kv_delete(fx->store, &reqs[3], "e", "k", done_cb), 0);
  assert_int_equal(kv_get(fx->store, &reqs[4], "e", "k", done_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 5);
  assert_int_equal(reqs[0].found, 0);
  assert_int_equal(reqs[1].status, 0);
  assert_int_equal(reqs[2].found, 1);
  assert_string_equal(reqs[2].value.base, "1");
  assert_int_equal(reqs[3].found, 1);
  assert_int_equal(reqs[4].found, 0);
  for (int i = 0; i < 5; i++)
    kv_req_cleanup(&reqs[i]);
}

/* A read submitted while a write is in flight sees that write. */
static void a_read_waits_for_the_write_in_flight(void **state) {
  fx_t *fx = *state;
  int put_at = 0, get_at = 0, i;
  open_store(fx);
  put(fx, "k", "old", 0);
  for (i = 0; i < 20; i++) {
    char v[16];
    snprintf(v, sizeof v, "v%d", i);
    memset(reqs, 0, 2 * sizeof reqs[0]);
    reqs[0].data = &put_at;
    reqs[1].data = &get_at;
    g_done = 0;
    assert_int_equal(
        kv_put(fx->store, &reqs[0], "e", "k", v, strlen(v), 0, done_cb), 0);
    /* One turn: the write's batch goes to the threadpool. */
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(kv_get(fx->store, &reqs[1], "e", "k", done_cb), 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(g_done, 2);
    assert_int_equal(reqs[0].status, 0);
    assert_int_equal(reqs[1].status, 0);
    assert_int_equal(reqs[1].found, 1);
    assert_string_equal(reqs[1].value.base, v);
    assert_true(put_at < get_at);
    kv_req_cleanup(&reqs[0]);
    kv_req_cleanup(&reqs[1]);
  }
}

static void close_completes_everything(void **state) {
  fx_t *fx = *state;
  char key[16];
  int i, ok = 0, canceled = 0;
  open_store(fx);
  g_done = 0;
  for (i = 0; i < N; i++) {
    memset(&reqs[i], 0, sizeof reqs[i]);
    snprintf(key, sizeof key, "c%d", i);
    assert_int_equal(
        kv_put(fx->store, &reqs[i], "e", key, key, strlen(key), 0, done_cb), 0);
    if (i == N / 2) uv_run(&fx->loop, UV_RUN_NOWAIT); /* half in flight */
  }
  close_store(fx);
  assert_int_equal(g_done, N);
  assert_int_equal(g_done_at_close, N); /* every callback before close's */
  for (i = 0; i < N; i++) {
    if (reqs[i].status == 0)
      ok++;
    else if (reqs[i].status == KV_ECANCELED)
      canceled++;
    else
      fail_msg("put c%d: %s", i, kv_err_name(reqs[i].status));
  }
  assert_int_equal(ok + canceled, N);
  open_store(fx);
  for (i = 0; i < N; i++) {
    snprintf(key, sizeof key, "c%d", i);
    expect(fx, key, reqs[i].status == 0 ? key : NULL);
    kv_req_cleanup(&reqs[i]);
  }
}

static void a_ttl_survives_a_reopen(void **state) {
  fx_t *fx = *state;
  kv_req_t req;
  open_store(fx);
  put(fx, "forever", "1", 0);
  put(fx, "hour", "2", 3600);
  close_store(fx);
  open_store(fx);
  expect(fx, "forever", "1");
  memset(&req, 0, sizeof req);
  g_done = 0;
  assert_int_equal(kv_ttl(fx->store, &req, "e", "hour", done_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(req.found, 1);
  assert_true(req.ttl > 3500 && req.ttl <= 3600);
  kv_req_cleanup(&req);
}

/* Two stores on one path in one process: their batches take turns, so
 * their atomic ops interleave correctly; both see everything. */
static void two_stores_on_one_path_stay_atomic(void **state) {
  fx_t *fx = *state;
  kv_store_t *a, *b;
  char seen[N + 1], err[256];
  int i;
  open_store(fx);
  a = fx->store;
  assert_int_equal(kv_open_ex(&fx->loop, fx->url, &b, err, sizeof err), 0);
  memset(seen, 0, sizeof seen);
  g_done = 0;
  for (i = 0; i < N; i++) {
    memset(&reqs[i], 0, sizeof reqs[i]);
    assert_int_equal(
        kv_incr(i % 2 ? a : b, &reqs[i], "e", "ctr", 1, 0, done_cb), 0);
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, N);
  for (i = 0; i < N; i++) {
    assert_int_equal(reqs[i].status, 0);
    assert_true(reqs[i].number >= 1 && reqs[i].number <= N);
    assert_int_equal(seen[reqs[i].number], 0);
    seen[reqs[i].number] = 1;
    kv_req_cleanup(&reqs[i]);
  }
  fx->store = b;
  close_store(fx);
  fx->store = a;
  expect(fx, "ctr", "200");
  close_store(fx);
  open_store(fx);
  expect(fx, "ctr", "200");
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(writes_of_a_turn_are_one_batch_reads_none,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(reads_pool_sends_reads_to_the_threadpool,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(a_turn_runs_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(a_read_waits_for_the_write_in_flight,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(close_completes_everything, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_ttl_survives_a_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(two_stores_on_one_path_stay_atomic, setup,
                                      teardown),
  };
  if (argc != 2) {
    fprintf(stderr, "usage: %s URL (with @TMP@)\n", argv[0]);
    return 2;
  }
  g_template = argv[1];
  return cmocka_run_group_tests_name(g_template, tests, NULL, NULL);
}
