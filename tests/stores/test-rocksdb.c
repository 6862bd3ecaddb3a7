/* Unit tests of the rocksdb:// store: what the generic conformance suite
 * does not reach — persistence, long names (hashed keys, originals listed),
 * group commit, reads seeing earlier writes of the same batch, two stores on
 * one path in one process, a second process waiting for RocksDB's lock (and
 * giving up with KV_EBUSY), a crash in a write storm, corrupt and foreign
 * databases, unwritable paths and options. Each test gets a fresh directory
 * and its own loop, and ends by proving the loop closes with nothing open.
 *
 * Children (other processes) are this program run again with
 * "--child MODE URL ..." (fork + exec): RocksDB must not cross a fork()
 * (its background threads and in-process lock table would be copied). */
#include <dirent.h>
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
#include <rocksdb/c.h>

#include "internal.h"
#include "kvio/rocksdb.h"

#define KV_FX_NAME "rocksdb"
#define KV_FX_FILE "db"
#include "store-fixture.h"

/* The name of the file in `dir` starting with `prefix` (static), or NULL. */
static const char *find_file(const char *dir, const char *prefix) {
  static char path[512];
  struct dirent *e;
  DIR *d = opendir(dir);
  const char *found = NULL;
  assert_non_null(d);
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      found = path;
      break;
    }
  }
  closedir(d);
  return found;
}

static int child_open(const char *url, int fd, int waiter) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_rocksdb_stats_t st;
  kv_req_t req;
  char err[512] = "";
  int rc, ok = 1;
  if (uv_loop_init(&loop) != 0 || write(fd, "s", 1) != 1) return 1;
  close(fd);
  rc = kv_open_ex(&loop, url, &s, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "child: %s: %s\n", kv_err_name(rc), err);
    if (uv_loop_close(&loop) != 0) return 1; /* a failed open leaves nothing */
    return !waiter && rc == KV_EBUSY &&
                   strstr(err, "locked by another process") != NULL
               ? 10
               : 1;
  }
  if (!waiter) {
    kv_store_close(s, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop) != 0;
  }
  if (kv_store_ctl(s, KV_ROCKSDB_CTL_STATS, &st, sizeof st) != 0 || st.open_retries == 0)
    ok = 0;
  memset(&req, 0, sizeof req);
  if (kv_get(s, &req, "w", "x", done_cb) != 0) return 1;
  uv_run(&loop, UV_RUN_DEFAULT);
  if (req.status != 0 || !req.found || strcmp(req.value.base, "from-parent"))
    ok = 0;
  kv_req_cleanup(&req);
  if (kv_put(s, &req, "w", "y", "from-child", 10, 0, done_cb) != 0) return 1;
  uv_run(&loop, UV_RUN_DEFAULT);
  if (req.status != 0) ok = 0;
  kv_req_cleanup(&req);
  kv_store_close(s, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return ok && uv_loop_close(&loop) == 0 ? 0 : 1;
}

/* ---- Persistence --------------------------------------------------------- */

static void persists_across_reopen_with_ttl(void **state) {
  fx_t *fx = *state;
  kv_req_t req;
  open_store(fx);
  assert_string_equal(kv_store_name(fx->store), "rocksdb");
  /* One process per path: no KV_CAP_SHARED. */
  assert_int_equal(kv_store_caps(fx->store), KV_CAP_ENUMERATE | KV_CAP_DESTROY |
                                                 KV_CAP_CULL | KV_CAP_ATOMIC |
                                                 KV_CAP_PERSISTENT);
  put(fx, "c", "forever", "1", 0);
  put(fx, "c", "hundred", "2", 100);
  put(fx, "c", "brief", "3", 0.05);
  put(fx, NULL, "dflt", "4", 0);
  put(fx, "c", "empty", "", 0);
  reopen(fx);
  expect(fx, "c", "forever", "1");
  expect(fx, NULL, "dflt", "4");
  expect(fx, "default_collection", "dflt", "4");
  expect(fx, "c", "empty", "");
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
  /* The expired entry stays until culled. */
  assert_int_equal(SYNC(fx, req, kv_cull(fx->store, &req, done_cb)), 0);
  assert_int_equal(req.count, 1);
  kv_req_cleanup(&req);
  assert_int_equal(SYNC(fx, req, kv_cull(fx->store, &req, done_cb)), 0);
  assert_int_equal(req.count, 0);
  kv_req_cleanup(&req);
  reopen(fx);
  expect(fx, "c", "forever", "1");
}

/* ---- Names ----------------------------------------------------------------
 */

static void long_names_hashed_and_listed(void **state) {
  fx_t *fx = *state;
  char *coll = make_name("collection-", 'c', KV_NAME_MAX);
  char *key = make_name("key-", 'k', KV_NAME_MAX);
  char *key2 = make_name("key-", 'k', KV_NAME_MAX);
  char **names;
  size_t n, longest = 0, entries = 0;
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
  assert_int_equal(has_name(names, n, "a::b"), 1);
  free_names(names, n);
  close_store(fx, fx->store);
  fx->store = NULL;
  /* In RocksDB itself: bounded keys, one entry per pair, plus the marker. */
  {
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it;
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(o, fx->path, &err);
    assert_null(err);
    it = rocksdb_create_iterator(db, ro);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
      size_t klen;
      rocksdb_iter_key(it, &klen);
      if (klen > longest) longest = klen;
      entries++;
    }
    rocksdb_iter_destroy(it);
    rocksdb_close(db);
    rocksdb_readoptions_destroy(ro);
    rocksdb_options_destroy(o);
  }
  assert_int_equal(entries, 6);
  assert_int_equal(longest, 2 + 2 * (200 + 1 + 32));
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
  put(fx, "o", "before", "x", 0); /* neighbours are not listed */
  put(fx, "q", "after", "x", 0);
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
  /* destroy_collection counts and removes exactly one collection. */
  assert_int_equal(
      SYNC(fx, req, kv_destroy_collection(fx->store, &req, "p", done_cb)), 0);
  assert_int_equal(req.count, N);
  kv_req_cleanup(&req);
  n = list_all(fx, NULL, 1, 0, &names, NULL);
  assert_int_equal(n, 2);
  free_names(names, n);
  expect(fx, "o", "before", "x");
  assert_int_equal(SYNC(fx, req, kv_destroy(fx->store, &req, done_cb)), 0);
  kv_req_cleanup(&req);
  n = list_all(fx, NULL, 1, 0, &names, NULL);
  assert_int_equal(n, 0);
  free_names(names, n);
  reopen(fx); /* the marker survived destroy */
  put(fx, "o", "again", "y", 0);
  expect(fx, "o", "again", "y");
}

/* ---- Group commit ---------------------------------------------------------
 */

/* ---- Several stores, several processes ------------------------------------
 */

/* Processes one after another, as short CLI commands are. */
static void processes_in_turn_lose_nothing(void **state) {
  fx_t *fx = *state;
  const char *a1[] = {"writer", fx->url, "one", "200", NULL};
  const char *a2[] = {"writer", fx->url, "two", "200", NULL};
  char **names;
  size_t n;
  assert_int_equal(wait_exit(spawn(a1)), 0);
  assert_int_equal(wait_exit(spawn(a2)), 0);
  open_store(fx);
  n = list_all(fx, "shared", 0, 0, &names, NULL);
  assert_int_equal(n, 201);
  assert_int_equal(has_name(names, n, "one-0000"), 1);
  assert_int_equal(has_name(names, n, "two-0198"), 1);
  free_names(names, n);
  expect(fx, "shared", "counter", "200");
}

/* A second process finds the path locked: it waits lock_timeout, then fails
 * with KV_EBUSY — never a crash. */
static void locked_path_times_out_with_ebusy(void **state) {
  fx_t *fx = *state;
  char url[256], fdtext[16], c;
  const char *args[] = {"locked", url, fdtext, NULL};
  uint64_t t0;
  int fds[2];
  pid_t pid;
  open_store(fx);
  snprintf(url, sizeof url, "%s?lock_timeout=300", fx->url);
  assert_int_equal(pipe(fds), 0);
  snprintf(fdtext, sizeof fdtext, "%d", fds[1]);
  pid = spawn(args);
  close(fds[1]);
  assert_int_equal(read(fds[0], &c, 1), 1); /* about to open */
  close(fds[0]);
  t0 = uv_hrtime();
  assert_int_equal(wait_exit(pid), 10);
  assert_true(uv_hrtime() - t0 >= 200 * 1000000ull); /* it waited */
  /* lock_timeout=0: at once. */
  snprintf(url, sizeof url, "%s?lock_timeout=0", fx->url);
  assert_int_equal(pipe(fds), 0);
  snprintf(fdtext, sizeof fdtext, "%d", fds[1]);
  pid = spawn(args);
  close(fds[1]);
  close(fds[0]);
  assert_int_equal(wait_exit(pid), 10);
  put(fx, "still", "works", "1", 0);
}

/* A second process waits for the lock and gets it when the first closes. */
static void second_process_waits_for_the_lock(void **state) {
  fx_t *fx = *state;
  char url[256], fdtext[16], c;
  const char *args[] = {"waiter", url, fdtext, NULL};
  int fds[2];
  pid_t pid;
  open_store(fx);
  put(fx, "w", "x", "from-parent", 0);
  snprintf(url, sizeof url, "%s?lock_timeout=60000", fx->url);
  assert_int_equal(pipe(fds), 0);
  snprintf(fdtext, sizeof fdtext, "%d", fds[1]);
  pid = spawn(args);
  close(fds[1]);
  assert_int_equal(read(fds[0], &c, 1), 1); /* about to open */
  close(fds[0]);
  usleep(300 * 1000); /* it is waiting now */
  close_store(fx, fx->store);
  fx->store = NULL;
  assert_int_equal(wait_exit(pid), 0);
  open_store(fx);
  expect(fx, "w", "y", "from-child");
}

/* A process killed (SIGKILL) in a write storm: every acknowledged write is
 * there afterwards and the database opens cleanly. */
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
  open_url(fx, fx->url); /* the lock of the dead process is gone */
  for (i = 0; i < acked; i++) {
    snprintf(key, sizeof key, "w%06d", acks[i]);
    expect(fx, "crash", key, key);
  }
}

/* ---- Bad databases and paths ----------------------------------------------
 */

static void corrupt_database_is_ecorrupt_and_untouched(void **state) {
  fx_t *fx = *state;
  char current[128], manifest[512];
  char *cur_before, *man_before, *after;
  size_t cur_len, man_len, len;
  const char *err, *m;
  open_store(fx);
  put(fx, "c", "k", "v", 0);
  close_store(fx, fx->store);
  fx->store = NULL;
  snprintf(current, sizeof current, "%s/CURRENT", fx->path);
  m = find_file(fx->path, "MANIFEST-");
  assert_non_null(m);
  snprintf(manifest, sizeof manifest, "%s", m);
  man_before = slurp(manifest, &man_len);
  /* Garbage in CURRENT. */
  cur_before = slurp(current, &cur_len);
  spit(current, "\x01\x02 not a manifest name", 22);
  err = open_fails(fx, fx->url, KV_ECORRUPT);
  assert_non_null(strstr(err, fx->path));
  after = slurp(current, &len);
  assert_int_equal(len, 22);
  assert_memory_equal(after, "\x01\x02 not a manifest name", 22);
  free(after);
  after = slurp(manifest, &len);
  assert_int_equal(len, man_len);
  assert_memory_equal(after, man_before, len);
  free(after);
  /* A truncated MANIFEST. */
  spit(current, cur_before, cur_len);
  assert_int_equal(truncate(manifest, (off_t)(man_len / 2)), 0);
  err = open_fails(fx, fx->url, KV_ECORRUPT);
  assert_non_null(strstr(err, fx->path));
  after = slurp(manifest, &len);
  assert_int_equal(len, man_len / 2);
  assert_memory_equal(after, man_before, len);
  free(after);
  /* Restored, it opens and reads again. */
  spit(manifest, man_before, man_len);
  open_store(fx);
  expect(fx, "c", "k", "v");
  free(cur_before);
  free(man_before);
}

static void foreign_database_is_ecorrupt(void **state) {
  fx_t *fx = *state;
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  char *err = NULL, *v;
  size_t len;
  rocksdb_t *db;
  rocksdb_options_set_create_if_missing(o, 1);
  db = rocksdb_open(o, fx->path, &err);
  assert_null(err);
  rocksdb_put(db, wo, "theirs", 6, "data", 4, &err);
  assert_null(err);
  rocksdb_close(db);
  err = (char *)open_fails(fx, fx->url, KV_ECORRUPT);
  assert_non_null(strstr(err, "another program"));
  err = NULL;
  db = rocksdb_open(o, fx->path, &err); /* untouched */
  assert_null(err);
  v = rocksdb_get(db, ro, "theirs", 6, &len, &err);
  assert_non_null(v);
  assert_int_equal(len, 4);
  rocksdb_free(v);
  v = rocksdb_get(db, ro, "\0", 1, &len, &err);
  assert_null(v); /* no marker written */
  rocksdb_close(db);
  rocksdb_readoptions_destroy(ro);
  rocksdb_writeoptions_destroy(wo);
  rocksdb_options_destroy(o);
}

static void unwritable_path_is_eio(void **state) {
  fx_t *fx = *state;
  char url[256];
  const char *err;
  err = open_fails(fx, "rocksdb:///proc/kvio-no/db", KV_EIO);
  assert_non_null(strstr(err, "/proc/kvio-no"));
  err = open_fails(fx, "rocksdb:///proc/self", KV_EIO);
  assert_non_null(strstr(err, "/proc/self"));
  /* PATH is a file, or under one. */
  spit(fx->path, "x", 1);
  err = open_fails(fx, fx->url, KV_EIO);
  assert_non_null(strstr(err, fx->path));
  snprintf(url, sizeof url, "%s/sub", fx->url);
  err = open_fails(fx, url, KV_EIO);
  assert_non_null(strstr(err, fx->path));
}

static void options_are_checked(void **state) {
  fx_t *fx = *state;
  static const char *const bad[] = {"?sync=sometimes", "?lock_timeout=-1",
                                    "?lock_timeout=x", "?bogus=1"};
  char url[256];
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *err;
    snprintf(url, sizeof url, "%s%s", fx->url, bad[i]);
    err = open_fails(fx, url, KV_EINVAL);
    assert_true(strlen(err) > 0);
  }
  assert_false(file_exists(fx->path)); /* nothing created */
  open_fails(fx, "rocksdb://", KV_EINVAL);
  snprintf(url, sizeof url, "%s?sync=false&lock_timeout=0", fx->url);
  open_url(fx, url);
  put(fx, "o", "k", "v", 0);
  reopen(fx);
  expect(fx, "o", "k", "v");
}

/* Reads on the loop thread use the block-cache tier only: a key that is in
 * no memtable and no cached block (flushed to a table file, store reopened)
 * comes back "incomplete" and is answered on the threadpool instead; once
 * its block is cached, the loop answers it. */
static void uncached_reads_go_to_the_threadpool(void **state) {
  fx_t *fx = *state;
  kv_rocksdb_stats_t st0, st1;
  rocksdb_options_t *o;
  rocksdb_flushoptions_t *fo;
  rocksdb_t *db;
  char *err = NULL, key[16], value[128];
  int i;
  open_store(fx);
  /* Many blocks: opening reads the first one (the format marker). */
  memset(value, 'v', sizeof value - 1);
  value[sizeof value - 1] = '\0';
  for (i = 0; i < 2000; i++) {
    snprintf(key, sizeof key, "k%05d", i);
    put(fx, "c", key, value, 0);
  }
  put(fx, "c", "zz", "on-disk", 0);
  close_store(fx, fx->store);
  fx->store = NULL;
  /* Move the memtable into a table file. */
  o = rocksdb_options_create();
  db = rocksdb_open(o, fx->path, &err);
  assert_null(err);
  fo = rocksdb_flushoptions_create();
  rocksdb_flushoptions_set_wait(fo, 1);
  rocksdb_flush(db, fo, &err);
  assert_null(err);
  rocksdb_flushoptions_destroy(fo);
  rocksdb_close(db);
  rocksdb_options_destroy(o);
  open_store(fx);
  assert_int_equal(kv_store_ctl(fx->store, KV_ROCKSDB_CTL_STATS, &st0, sizeof st0), 0);
  expect(fx, "c", "zz", "on-disk");
  assert_int_equal(kv_store_ctl(fx->store, KV_ROCKSDB_CTL_STATS, &st1, sizeof st1), 0);
  assert_int_equal(st1.loop_misses - st0.loop_misses, 1);
  assert_int_equal(st1.batches - st0.batches, 1);
  /* The threadpool's read filled the block cache. */
  expect(fx, "c", "zz", "on-disk");
  assert_int_equal(kv_store_ctl(fx->store, KV_ROCKSDB_CTL_STATS, &st0, sizeof st0), 0);
  assert_int_equal(st0.loop_reads - st1.loop_reads, 1);
  assert_int_equal(st0.batches, st1.batches);
  expect(fx, "c", "absent", NULL);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(persists_across_reopen_with_ttl, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(uncached_reads_go_to_the_threadpool,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(long_names_hashed_and_listed, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(keys_paging_and_bad_cursor, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(processes_in_turn_lose_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(locked_path_times_out_with_ebusy, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(second_process_waits_for_the_lock, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(crash_loses_nothing_acknowledged, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          corrupt_database_is_ecorrupt_and_untouched, setup, teardown),
      cmocka_unit_test_setup_teardown(foreign_database_is_ecorrupt, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(unwritable_path_is_eio, setup, teardown),
      cmocka_unit_test_setup_teardown(options_are_checked, setup, teardown),
  };
  if (argc >= 3 && strcmp(argv[1], "--child") == 0) {
    if (strcmp(argv[2], "writer") == 0 && argc == 6)
      return child_writer(argv[3], argv[4], atoi(argv[5]));
    if (strcmp(argv[2], "crash") == 0 && argc == 5)
      return child_crash(argv[3], atoi(argv[4]));
    if (strcmp(argv[2], "locked") == 0 && argc == 5)
      return child_open(argv[3], atoi(argv[4]), 0);
    if (strcmp(argv[2], "waiter") == 0 && argc == 5)
      return child_open(argv[3], atoi(argv[4]), 1);
    return 2;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
