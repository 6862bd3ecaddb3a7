/* Unit tests of the sqlite:// store: what the generic conformance suite does
 * not reach — persistence, long names stored as they are, group commit,
 * reads seeing earlier writes of the same batch, several processes, a lock
 * held by another connection (KV_EBUSY), a crash in a write storm, corrupt
 * and foreign files, unwritable paths and options. Each test gets a fresh
 * directory and its own loop, and ends by proving the loop closes with
 * nothing open.
 *
 * Children (other processes) are this program run again with
 * "--child MODE URL ..." (fork + exec), so that no process carries a
 * connection or a loop across fork(). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "internal.h"
#include "kvio/sqlite.h"

#define KV_FX_NAME "sqlite"
#define KV_FX_FILE "kv.db"
#include "store-fixture.h"

static kv_sqlite_stats_t stats(fx_t *fx) {
  kv_sqlite_stats_t st;
  assert_int_equal(kv_store_ctl(fx->store, KV_SQLITE_CTL_STATS, &st, sizeof st), 0);
  return st;
}

/* ---- Persistence --------------------------------------------------------- */

static void persists_across_reopen_with_ttl(void **state) {
  fx_t *fx = *state;
  kv_req_t req;
  open_store(fx);
  assert_string_equal(kv_store_name(fx->store), "sqlite");
  assert_int_equal(kv_store_caps(fx->store),
                   KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL |
                       KV_CAP_ATOMIC | KV_CAP_PERSISTENT | KV_CAP_SHARED);
  put(fx, "c", "forever", "1", 0);
  put(fx, "c", "hundred", "2", 100);
  put(fx, "c", "brief", "3", 0.05);
  put(fx, NULL, "dflt", "4", 0);
  reopen(fx);
  expect(fx, "c", "forever", "1");
  expect(fx, NULL, "dflt", "4");
  expect(fx, "default_collection", "dflt", "4");
  assert_int_equal(
      SYNC(fx, req, kv_ttl(fx->store, &req, "c", "hundred", done_cb)), 0);
  assert_int_equal(req.found, 1);
  assert_true(req.ttl > 98 && req.ttl <= 100);
  assert_memory_equal(req.value.base, "2", 2); /* NUL-terminated */
  kv_req_cleanup(&req);
  assert_int_equal(
      SYNC(fx, req, kv_ttl(fx->store, &req, "c", "forever", done_cb)), 0);
  assert_int_equal(req.found, 1);
  assert_true(req.ttl == KV_TTL_NONE);
  kv_req_cleanup(&req);
  usleep(100 * 1000);
  expect(fx, "c", "brief", NULL);
  /* The expired row is still in the table until culled. */
  assert_int_equal(SYNC(fx, req, kv_cull(fx->store, &req, done_cb)), 0);
  assert_int_equal(req.count, 1);
  kv_req_cleanup(&req);
  assert_int_equal(SYNC(fx, req, kv_cull(fx->store, &req, done_cb)), 0);
  assert_int_equal(req.count, 0);
  kv_req_cleanup(&req);
  /* WAL mode, and the table as documented. */
  {
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT value, expires_at FROM kvio WHERE "
                           "collection = 'c' AND key = 'hundred'",
                           -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_bytes(st, 0), 1);
    assert_true(sqlite3_column_int64(st, 1) > kv_now_ms() + 90000);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
}

/* ---- Names ----------------------------------------------------------------
 */

static void long_names_stored_as_they_are(void **state) {
  fx_t *fx = *state;
  char *coll = make_name("collection-", 'c', KV_NAME_MAX);
  char *key = make_name("key-", 'k', KV_NAME_MAX);
  char *key2 = make_name("key-", 'k', KV_NAME_MAX);
  char **names;
  size_t n;
  key2[KV_NAME_MAX - 1] = 'x'; /* differs in the last byte only */
  open_store(fx);
  put(fx, coll, key, "long", 0);
  put(fx, coll, key2, "long2", 0);
  put(fx, coll, "short", "s", 0);
  put(fx, "a", "b::c", "1", 0); /* separators do not collide */
  put(fx, "a::b", "c", "2", 0);
  reopen(fx);
  expect(fx, coll, key, "long");
  expect(fx, coll, key2, "long2");
  expect(fx, coll, "short", "s");
  expect(fx, "a", "b::c", "1");
  expect(fx, "a::b", "c", "2");
  n = list_all(fx, coll, 0, 1, &names, NULL);
  assert_int_equal(n, 3);
  assert_int_equal(has_name(names, n, key), 1);
  assert_int_equal(has_name(names, n, key2), 1);
  assert_int_equal(has_name(names, n, "short"), 1);
  free_names(names, n);
  n = list_all(fx, NULL, 1, 1, &names, NULL);
  assert_int_equal(n, 3);
  assert_int_equal(has_name(names, n, coll), 1);
  free_names(names, n);
  {
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM kvio WHERE length(collection) "
                           "= 4096 AND length(key) = 4096",
                           -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 2);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  free(coll);
  free(key);
  free(key2);
}

static void keys_paging_and_bad_cursor(void **state) {
  fx_t *fx = *state;
  enum { N = 250 };
  static kv_req_t reqs[N];
  char key[32], **names;
  size_t n, i;
  kv_req_t req;
  open_store(fx);
  g_done = 0;
  for (i = 0; i < N; i++) {
    snprintf(key, sizeof key, "k%03zu", i);
    memset(&reqs[i], 0, sizeof reqs[i]);
    assert_int_equal(kv_put(fx->store, &reqs[i], "p", key, "v", 1,
                            i % 5 == 0 ? 0.01 : 0, done_cb),
                     0);
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, N);
  for (i = 0; i < N; i++)
    kv_req_cleanup(&reqs[i]);
  usleep(30 * 1000);
  n = list_all(fx, "p", 0, 7, &names, NULL);
  assert_int_equal(n, N - N / 5); /* expired keys are not listed */
  for (i = 1; i < n; i++)
    assert_true(strcmp(names[i - 1], names[i]) < 0); /* once, in order */
  free_names(names, n);
  assert_int_equal(
      SYNC(fx, req, kv_keys(fx->store, &req, "p", "bogus", 0, done_cb)),
      KV_EINVAL);
  kv_req_cleanup(&req);
  assert_int_equal(
      SYNC(fx, req, kv_collections(fx->store, &req, "kzz", 0, done_cb)),
      KV_EINVAL);
  kv_req_cleanup(&req);
}

/* ---- Group commit ---------------------------------------------------------
 */

/* ---- Several connections and processes ------------------------------------
 */

/* Another connection holds the write lock: writes wait busy_timeout, then
 * fail with KV_EBUSY; reads go on (WAL); after the lock is released the
 * store works again. */
static void locked_database_is_ebusy(void **state) {
  fx_t *fx = *state;
  char url[256];
  kv_req_t req;
  sqlite3 *db;
  uint64_t t0;
  open_store(fx);
  put(fx, "l", "k", "before", 0);
  close_store(fx, fx->store);
  fx->store = NULL;
  snprintf(url, sizeof url, "%s?busy_timeout=200", fx->url);
  open_url(fx, url);
  assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                   SQLITE_OK);
  t0 = uv_hrtime();
  assert_int_equal(
      SYNC(fx, req, kv_put(fx->store, &req, "l", "k", "during", 6, 0, done_cb)),
      KV_EBUSY);
  assert_true(uv_hrtime() - t0 >= 150 * 1000000ull); /* it waited */
  assert_non_null(strstr(kv_req_errmsg(&req), "locked"));
  assert_non_null(strstr(kv_req_errmsg(&req), fx->path));
  kv_req_cleanup(&req);
  assert_int_equal(stats(fx).busy, 1);
  expect(fx, "l", "k", "before"); /* reads need no lock in WAL mode */
  assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  put(fx, "l", "k", "after", 0);
  expect(fx, "l", "k", "after");
  sqlite3_close(db);
}

static void two_processes_lose_nothing(void **state) {
  fx_t *fx = *state;
  enum { N = 400 };
  const char *a1[] = {"writer", fx->url, "one", "400", NULL};
  const char *a2[] = {"writer", fx->url, "two", "400", NULL};
  char **names, key[32];
  size_t n;
  pid_t p1, p2;
  int i;
  open_store(fx); /* a third user of the file, idle meanwhile */
  p1 = spawn(a1);
  p2 = spawn(a2);
  assert_int_equal(wait_exit(p1), 0);
  assert_int_equal(wait_exit(p2), 0);
  n = list_all(fx, "shared", 0, 0, &names, NULL);
  assert_int_equal(n, N + 1); /* N/2 keys each, plus the counter */
  for (i = 0; i < N; i += 2) {
    snprintf(key, sizeof key, "one-%04d", i);
    assert_int_equal(has_name(names, n, key), 1);
    snprintf(key, sizeof key, "two-%04d", i);
    assert_int_equal(has_name(names, n, key), 1);
  }
  free_names(names, n);
  expect(fx, "shared", "counter", "400"); /* N/2 incr from each */
}

/* A process killed (SIGKILL) in a write storm: every acknowledged write is
 * there afterwards and the file opens cleanly. */
static void crash_loses_nothing_acknowledged(void **state) {
  fx_t *fx = *state;
  static int acks[1 << 16];
  int fds[2], i, acked = 0, status;
  char key[16], fdtext[16];
  const char *args[] = {"crash", fx->url, fdtext, NULL};
  pid_t pid;
  assert_int_equal(pipe(fds), 0);
  snprintf(fdtext, sizeof fdtext, "%d", fds[1]);
  pid = spawn(args);
  close(fds[1]);
  while (acked < 1000 &&
         read(fds[0], &acks[acked], sizeof acks[0]) == sizeof acks[0])
    acked++;
  kill(pid, SIGKILL);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  while (acked < (int)(sizeof acks / sizeof acks[0]) &&
         read(fds[0], &acks[acked], sizeof acks[0]) == sizeof acks[0])
    acked++;
  close(fds[0]);
  assert_true(acked >= 1000);
  open_url(fx, fx->url);
  for (i = 0; i < acked; i++) {
    snprintf(key, sizeof key, "w%06d", acks[i]);
    expect(fx, "crash", key, key);
  }
}

/* ---- Bad files and paths --------------------------------------------------
 */

static void garbage_file_is_ecorrupt_and_untouched(void **state) {
  fx_t *fx = *state;
  char garbage[8192], wal[128];
  const char *err;
  size_t len, i;
  char *after;
  for (i = 0; i < sizeof garbage; i++)
    garbage[i] = (char)(i * 7 + (i >> 8));
  spit(fx->path, garbage, sizeof garbage);
  err = open_fails(fx, fx->url, KV_ECORRUPT);
  assert_non_null(strstr(err, fx->path));
  after = slurp(fx->path, &len);
  assert_int_equal(len, sizeof garbage);
  assert_memory_equal(after, garbage, len);
  free(after);
  snprintf(wal, sizeof wal, "%s-wal", fx->path);
  assert_false(file_exists(wal));
  /* A header that says SQLite but is short. */
  spit(fx->path, "SQLite format 3", 16);
  open_fails(fx, fx->url, KV_ECORRUPT);
  after = slurp(fx->path, &len);
  assert_int_equal(len, 16);
  free(after);
}

static void truncated_file_is_ecorrupt_and_untouched(void **state) {
  fx_t *fx = *state;
  enum { N = 200 };
  static kv_req_t reqs[N];
  char key[16], value[512];
  char *before, *after;
  size_t len, len2;
  int i;
  open_store(fx);
  memset(value, 'v', sizeof value);
  for (i = 0; i < N; i++) {
    snprintf(key, sizeof key, "t%04d", i);
    memset(&reqs[i], 0, sizeof reqs[i]);
    assert_int_equal(
        kv_put(fx->store, &reqs[i], "t", key, value, sizeof value, 0, done_cb),
        0);
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  for (i = 0; i < N; i++)
    kv_req_cleanup(&reqs[i]);
  close_store(fx, fx->store); /* the last close checkpoints the WAL */
  fx->store = NULL;
  before = slurp(fx->path, &len);
  assert_true(len > 8 * 4096);
  assert_int_equal(truncate(fx->path, (off_t)(len / 2)), 0);
  open_fails(fx, fx->url, KV_ECORRUPT);
  after = slurp(fx->path, &len2);
  assert_int_equal(len2, len / 2);
  assert_memory_equal(after, before, len2);
  free(after);
  /* Restored, it opens and reads again. */
  spit(fx->path, before, len);
  open_store(fx);
  {
    kv_req_t req;
    assert_int_equal(
        SYNC(fx, req, kv_get(fx->store, &req, "t", "t0199", done_cb)), 0);
    assert_int_equal(req.found, 1);
    assert_int_equal(req.value.len, sizeof value);
    kv_req_cleanup(&req);
  }
  free(before);
}

/* A corrupt page behind a valid header: check=quick finds it at open. */
static void quick_check_finds_a_corrupt_page(void **state) {
  fx_t *fx = *state;
  char url[256], value[512];
  char *bytes;
  size_t len, i;
  int j;
  open_store(fx);
  memset(value, 'q', sizeof value);
  for (j = 0; j < 100; j++) {
    char key[16];
    kv_req_t req;
    snprintf(key, sizeof key, "q%03d", j);
    assert_int_equal(SYNC(fx, req,
                          kv_put(fx->store, &req, "q", key, value, sizeof value,
                                 0, done_cb)),
                     0);
    kv_req_cleanup(&req);
  }
  close_store(fx, fx->store);
  fx->store = NULL;
  bytes = slurp(fx->path, &len);
  assert_true(len >= 4 * 4096);
  for (i = 2 * 4096; i < 3 * 4096; i++) /* page 3: a b-tree page */
    bytes[i] = (char)(i * 13);
  spit(fx->path, bytes, len);
  free(bytes);
  snprintf(url, sizeof url, "%s?check=quick", fx->url);
  open_fails(fx, url, KV_ECORRUPT);
}

static void foreign_table_is_ecorrupt(void **state) {
  fx_t *fx = *state;
  char url[256];
  sqlite3 *db;
  sqlite3_stmt *st;
  const char *err;
  assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE kvio (a, b); "
                                "INSERT INTO kvio VALUES (1, 2); "
                                "CREATE TABLE other (x);",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  err = open_fails(fx, fx->url, KV_ECORRUPT);
  assert_non_null(strstr(err, "kvio"));
  assert_non_null(strstr(err, fx->path));
  /* Another table name: created beside the program's tables. */
  snprintf(url, sizeof url, "%s?table=mine", fx->url);
  open_url(fx, url);
  put(fx, "c", "k", "v", 0);
  expect(fx, "c", "k", "v");
  close_store(fx, fx->store);
  fx->store = NULL;
  assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
  assert_int_equal(
      sqlite3_prepare_v2(db, "SELECT a, b FROM kvio", -1, &st, NULL),
      SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 1);
  sqlite3_finalize(st);
  assert_int_equal(
      sqlite3_prepare_v2(db, "SELECT count(*) FROM mine", -1, &st, NULL),
      SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 1);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

static void unwritable_path_is_eio(void **state) {
  fx_t *fx = *state;
  char url[256], sub[128];
  const char *err;
  err = open_fails(fx, "sqlite:///proc/kvio-no/kv.db", KV_EIO);
  assert_non_null(strstr(err, "/proc/kvio-no"));
  /* A directory where the file should be. */
  snprintf(url, sizeof url, "sqlite://%s", fx->dir);
  err = open_fails(fx, url, KV_EIO);
  assert_non_null(strstr(err, fx->dir));
  /* A parent that is a file. */
  spit(fx->path, "", 0);
  snprintf(sub, sizeof sub, "%s/x.db", fx->path);
  snprintf(url, sizeof url, "sqlite://%s", sub);
  err = open_fails(fx, url, KV_EIO);
  assert_non_null(strstr(err, fx->path));
  unlink(fx->path);
  /* A read-only file (root writes anyway: checked only for others). */
  if (geteuid() != 0) {
    open_store(fx);
    close_store(fx, fx->store);
    fx->store = NULL;
    assert_int_equal(chmod(fx->path, 0444), 0);
    err = open_fails(fx, fx->url, KV_EIO);
    assert_non_null(strstr(err, "read-only"));
  }
}

static void options_are_checked(void **state) {
  fx_t *fx = *state;
  static const char *const bad[] = {
      "?sync=sometimes",      "?busy_timeout=-1",
      "?busy_timeout=abc",    "?table=a;drop",
      "?table=sqlite_master", "?table=1abc",
      "?check=full",          "?bogus=1",
  };
  char url[256];
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *err;
    snprintf(url, sizeof url, "%s%s", fx->url, bad[i]);
    err = open_fails(fx, url, KV_EINVAL);
    assert_true(strlen(err) > 0);
  }
  assert_false(file_exists(fx->path)); /* nothing created */
  open_fails(fx, "sqlite://", KV_EINVAL);
  open_fails(fx, "sqlite://:memory:", KV_EINVAL);
  snprintf(url, sizeof url, "%s?sync=off&busy_timeout=0&table=T_1&check=quick",
           fx->url);
  open_url(fx, url);
  put(fx, "o", "k", "v", 0);
  expect(fx, "o", "k", "v");
  close_store(fx, fx->store);
  fx->store = NULL;
  snprintf(url, sizeof url, "%s?sync=normal", fx->url);
  open_url(fx, url);
  expect(fx, "o", "k", NULL); /* another table */
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(persists_across_reopen_with_ttl, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(long_names_stored_as_they_are, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(keys_paging_and_bad_cursor, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(locked_database_is_ebusy, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(two_processes_lose_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(crash_loses_nothing_acknowledged, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(garbage_file_is_ecorrupt_and_untouched,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(truncated_file_is_ecorrupt_and_untouched,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(quick_check_finds_a_corrupt_page, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(foreign_table_is_ecorrupt, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(unwritable_path_is_eio, setup, teardown),
      cmocka_unit_test_setup_teardown(options_are_checked, setup, teardown),
  };
  if (argc >= 3 && strcmp(argv[1], "--child") == 0) {
    if (strcmp(argv[2], "writer") == 0 && argc == 6)
      return child_writer(argv[3], argv[4], atoi(argv[5]));
    if (strcmp(argv[2], "crash") == 0 && argc == 5)
      return child_crash(argv[3], atoi(argv[4]));
    return 2;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
