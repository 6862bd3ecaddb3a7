/* Unit tests of the disk:// store (LMDB): what the generic conformance suite
 * does not reach — persistence, long names and their encoding, paging,
 * several processes, map growth, corrupt and unwritable paths, group commit
 * and closing with requests in flight. Each test gets a fresh directory and
 * its own loop, and ends by proving the loop closes with nothing open. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "internal.h"
#include "kvio/disk.h"

#define KV_FX_NAME "disk"
#define KV_FX_FILE "db"
#include "store-fixture.h"

static kv_disk_stats_t stats(fx_t *fx) {
  kv_disk_stats_t st;
  assert_int_equal(kv_store_ctl(fx->store, KV_DISK_CTL_STATS, &st, sizeof st),
                   0);
  return st;
}

/* ---- Persistence --------------------------------------------------------- */

static void persists_across_reopen_with_ttl(void **state) {
  fx_t *fx = *state;
  kv_req_t req;
  open_store(fx);
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
  assert_int_equal(kv_store_caps(fx->store),
                   KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL |
                       KV_CAP_ATOMIC | KV_CAP_PERSISTENT | KV_CAP_SHARED);
  assert_string_equal(kv_store_name(fx->store), "disk");
}

/* ---- Names ----------------------------------------------------------------
 */

static void long_names_round_trip_and_enumerate(void **state) {
  fx_t *fx = *state;
  char *coll = make_name("collection-", 'c', KV_NAME_MAX);
  char *key = make_name("key-", 'k', KV_NAME_MAX);
  char **names;
  size_t n, pages;
  open_store(fx);
  put(fx, coll, key, "long", 0);
  put(fx, coll, "short", "s", 0);
  expect(fx, coll, key, "long");
  expect(fx, coll, "short", "s");
  reopen(fx);
  expect(fx, coll, key, "long");
  n = list_all(fx, coll, 0, 0, &names, &pages);
  assert_int_equal(n, 2);
  assert_int_equal(has_name(names, n, key), 1);
  assert_int_equal(has_name(names, n, "short"), 1);
  free_names(names, n);
  n = list_all(fx, NULL, 1, 0, &names, &pages);
  assert_int_equal(n, 1);
  assert_string_equal(names[0], coll);
  free_names(names, n);
  free(coll);
  free(key);
}

static void no_collisions(void **state) {
  fx_t *fx = *state;
  /* Long names sharing their first 200 (and 300) bytes. */
  char *c1 = make_name("", 'x', 1000), *c2 = make_name("", 'x', 1000);
  char *k1 = make_name("", 'y', 600), *k2 = make_name("", 'y', 600);
  char *r200 = make_name("", 'z', 200), *r201 = make_name("", 'z', 201);
  char **names;
  size_t n, pages;
  c2[300] = 'X';
  k2[599] = 'Y';
  open_store(fx);
  put(fx, "a::b", "c", "1", 0);
  put(fx, "a", "b::c", "2", 0);
  put(fx, "a__b", "c", "3", 0);
  put(fx, "a", "b__c", "4", 0);
  put(fx, "a/b", "c", "5", 0);
  put(fx, "a", "b/c", "6", 0);
  put(fx, c1, k1, "c1k1", 0);
  put(fx, c1, k2, "c1k2", 0);
  put(fx, c2, k1, "c2k1", 0);
  put(fx, c2, k2, "c2k2", 0);
  put(fx, r200, r200, "200/200", 0);
  put(fx, r200, r201, "200/201", 0);
  put(fx, r201, r200, "201/200", 0);
  expect(fx, "a::b", "c", "1");
  expect(fx, "a", "b::c", "2");
  expect(fx, "a__b", "c", "3");
  expect(fx, "a", "b__c", "4");
  expect(fx, "a/b", "c", "5");
  expect(fx, "a", "b/c", "6");
  expect(fx, c1, k1, "c1k1");
  expect(fx, c1, k2, "c1k2");
  expect(fx, c2, k1, "c2k1");
  expect(fx, c2, k2, "c2k2");
  expect(fx, r200, r200, "200/200");
  expect(fx, r200, r201, "200/201");
  expect(fx, r201, r200, "201/200");
  expect(fx, r201, r201, NULL);
  n = list_all(fx, c1, 0, 0, &names, &pages);
  assert_int_equal(n, 2);
  assert_int_equal(has_name(names, n, k1), 1);
  assert_int_equal(has_name(names, n, k2), 1);
  free_names(names, n);
  n = list_all(fx, "a", 0, 0, &names, &pages);
  assert_int_equal(n, 3);
  assert_int_equal(has_name(names, n, "b::c"), 1);
  free_names(names, n);
  n = list_all(fx, NULL, 1, 3, &names, &pages);
  assert_int_equal(n, 8);
  assert_int_equal(has_name(names, n, c1), 1);
  assert_int_equal(has_name(names, n, c2), 1);
  assert_int_equal(has_name(names, n, r200), 1);
  assert_int_equal(has_name(names, n, r201), 1);
  assert_int_equal(has_name(names, n, "a::b"), 1);
  assert_int_equal(has_name(names, n, "a"), 1);
  free_names(names, n);
  free(c1);
  free(c2);
  free(k1);
  free(k2);
  free(r200);
  free(r201);
}

/* ---- Enumeration -------------------------------------------------------- */

static void keys_paging_lists_each_once(void **state) {
  fx_t *fx = *state;
  enum { N = 1000 };
  static char keybuf[N][16];
  const char *keys[N];
  kv_buf_t values[N];
  int seen[N];
  char **names;
  size_t n, pages, i;
  kv_req_t req;
  open_store(fx);
  for (i = 0; i < N; i++) {
    snprintf(keybuf[i], sizeof keybuf[i], "k%04zu", (i * 7919) % N);
    keys[i] = keybuf[i];
    values[i].base = keybuf[i];
    values[i].len = strlen(keybuf[i]);
  }
  assert_int_equal(
      SYNC(fx, req,
           kv_put_many(fx->store, &req, "pages", keys, values, N, 0, done_cb)),
      0);
  kv_req_cleanup(&req);
  put(fx, "pages", "expired", "x", 0.001);
  put(fx, "other", "k0001", "x", 0); /* neighbours must not leak in */
  put(fx, "pagesX", "k0001", "x", 0);
  usleep(20 * 1000);
  n = list_all(fx, "pages", 0, 7, &names, &pages);
  assert_int_equal(n, N);
  assert_int_equal(pages, (N + 6) / 7);
  memset(seen, 0, sizeof seen);
  for (i = 0; i < n; i++) {
    int k;
    assert_int_equal(sscanf(names[i], "k%d", &k), 1);
    assert_true(k >= 0 && k < N);
    seen[k]++;
  }
  for (i = 0; i < N; i++)
    assert_int_equal(seen[i], 1);
  free_names(names, n);
  /* limit 0 is the default page of 1000: one page, complete. */
  n = list_all(fx, "pages", 0, 0, &names, &pages);
  assert_int_equal(n, N);
  assert_int_equal(pages, 1);
  free_names(names, n);
  /* A cursor of another collection is refused. */
  assert_int_equal(
      SYNC(fx, req, kv_keys(fx->store, &req, "other", NULL, 1, done_cb)), 0);
  assert_int_equal(req.nnames, 1);
  assert_null(req.cursor);
  kv_req_cleanup(&req);
  assert_int_equal(
      SYNC(fx, req, kv_keys(fx->store, &req, "pages", NULL, 1, done_cb)), 0);
  assert_non_null(req.cursor);
  {
    char *cur = strdup(req.cursor);
    kv_req_cleanup(&req);
    assert_int_equal(
        SYNC(fx, req, kv_keys(fx->store, &req, "other", cur, 1, done_cb)),
        KV_EINVAL);
    kv_req_cleanup(&req);
    assert_int_equal(
        SYNC(fx, req, kv_keys(fx->store, &req, "other", "garbage", 1, done_cb)),
        KV_EINVAL);
    kv_req_cleanup(&req);
    free(cur);
  }
}

static void collections_paging_skips_expired(void **state) {
  fx_t *fx = *state;
  char name[32], **names;
  size_t n, pages;
  int i;
  open_store(fx);
  for (i = 0; i < 30; i++) {
    snprintf(name, sizeof name, "coll-%02d", i);
    put(fx, name, "a", "1", 0);
    put(fx, name, "b", "1", i % 3 == 0 ? 0.001 : 0);
  }
  put(fx, "gone", "a", "1", 0.001);
  usleep(20 * 1000);
  n = list_all(fx, NULL, 1, 7, &names, &pages);
  assert_int_equal(n, 30);
  for (i = 0; i < 30; i++) {
    snprintf(name, sizeof name, "coll-%02d", i);
    assert_int_equal(has_name(names, n, name), 1);
  }
  assert_int_equal(has_name(names, n, "gone"), 0);
  free_names(names, n);
}

/* ---- Atomic segment, destroy, cull ----------------------------------------
 */

static void atomic_ops_and_cull(void **state) {
  fx_t *fx = *state;
  kv_req_t req;
  int64_t big = INT64_MAX;
  open_store(fx);
  /* put_if_absent: an expired entry counts as absent. */
  put(fx, "a", "lease", "old", 0.001);
  usleep(10 * 1000);
  assert_int_equal(SYNC(fx, req,
                        kv_put_if_absent(fx->store, &req, "a", "lease", "me", 2,
                                         0, done_cb)),
                   0);
  assert_int_equal(req.found, 1);
  kv_req_cleanup(&req);
  assert_int_equal(SYNC(fx, req,
                        kv_put_if_absent(fx->store, &req, "a", "lease", "you",
                                         3, 0, done_cb)),
                   0);
  assert_int_equal(req.found, 0);
  kv_req_cleanup(&req);
  expect(fx, "a", "lease", "me");
  /* cas */
  assert_int_equal(
      SYNC(fx, req,
           kv_cas(fx->store, &req, "a", "lease", "x", 1, "y", 1, 0, done_cb)),
      KV_ECONFLICT);
  kv_req_cleanup(&req);
  assert_int_equal(
      SYNC(fx, req,
           kv_cas(fx->store, &req, "a", "lease", "me", 2, "y", 1, 0, done_cb)),
      0);
  assert_int_equal(req.found, 1);
  kv_req_cleanup(&req);
  assert_int_equal(
      SYNC(fx, req,
           kv_cas(fx->store, &req, "a", "new", NULL, 0, "z", 1, 0, done_cb)),
      0);
  kv_req_cleanup(&req);
  assert_int_equal(
      SYNC(fx, req,
           kv_cas(fx->store, &req, "a", "new", NULL, 0, "z", 1, 0, done_cb)),
      KV_ECONFLICT);
  kv_req_cleanup(&req);
  /* incr: created with the TTL, an existing entry keeps its TTL. */
  assert_int_equal(
      SYNC(fx, req, kv_incr(fx->store, &req, "a", "n", 5, 100, done_cb)), 0);
  assert_int_equal(req.number, 5);
  kv_req_cleanup(&req);
  assert_int_equal(
      SYNC(fx, req, kv_incr(fx->store, &req, "a", "n", -7, 0, done_cb)), 0);
  assert_int_equal(req.number, -2);
  kv_req_cleanup(&req);
  expect(fx, "a", "n", "-2");
  assert_int_equal(SYNC(fx, req, kv_ttl(fx->store, &req, "a", "n", done_cb)),
                   0);
  assert_true(req.ttl > 98 && req.ttl <= 100);
  kv_req_cleanup(&req);
  assert_int_equal(
      SYNC(fx, req, kv_incr(fx->store, &req, "a", "lease", 1, 0, done_cb)),
      KV_EINVAL);
  kv_req_cleanup(&req);
  assert_int_equal(
      SYNC(fx, req, kv_incr(fx->store, &req, "a", "big", big, 0, done_cb)), 0);
  kv_req_cleanup(&req);
  assert_int_equal(
      SYNC(fx, req, kv_incr(fx->store, &req, "a", "big", 1, 0, done_cb)),
      KV_EINVAL);
  kv_req_cleanup(&req);
  /* take */
  assert_int_equal(SYNC(fx, req, kv_take(fx->store, &req, "a", "new", done_cb)),
                   0);
  assert_int_equal(req.found, 1);
  assert_string_equal(req.value.base, "z");
  kv_req_cleanup(&req);
  assert_int_equal(SYNC(fx, req, kv_take(fx->store, &req, "a", "new", done_cb)),
                   0);
  assert_int_equal(req.found, 0);
  kv_req_cleanup(&req);
  /* cull removes the expired entries and says how many. */
  put(fx, "b", "e1", "x", 0.001);
  put(fx, "b", "e2", "x", 0.001);
  put(fx, "c", "e3", "x", 0.001);
  put(fx, "b", "live", "x", 0);
  usleep(10 * 1000);
  assert_int_equal(SYNC(fx, req, kv_cull(fx->store, &req, done_cb)), 0);
  assert_int_equal(req.count, 3);
  kv_req_cleanup(&req);
  assert_int_equal(SYNC(fx, req, kv_cull(fx->store, &req, done_cb)), 0);
  assert_int_equal(req.count, 0);
  kv_req_cleanup(&req);
  expect(fx, "b", "live", "x");
  /* destroy_collection and destroy; the store stays usable. */
  assert_int_equal(
      SYNC(fx, req, kv_destroy_collection(fx->store, &req, "b", done_cb)), 0);
  kv_req_cleanup(&req);
  expect(fx, "b", "live", NULL);
  expect(fx, "a", "n", "-2");
  assert_int_equal(SYNC(fx, req, kv_destroy(fx->store, &req, done_cb)), 0);
  kv_req_cleanup(&req);
  expect(fx, "a", "n", NULL);
  put(fx, "a", "n", "again", 0);
  reopen(fx); /* the format marker survived destroy */
  expect(fx, "a", "n", "again");
}

/* ---- Several processes ----------------------------------------------------
 */

/* In a child: open the store on a fresh loop, write `n` keys tagged `who`
 * (a few per loop turn, to interleave with the other process) and incr a
 * shared counter as often. Returns 0 on success. */
static int writer(const char *url, const char *who, int n) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t reqs[10];
  char key[32];
  int i, j, failed = 0;
  if (uv_loop_init(&loop) != 0 || kv_open(&loop, url, &s) != 0) return 1;
  for (i = 0; i < n; i += 10) {
    g_done = 0;
    for (j = 0; j < 10; j++) {
      memset(&reqs[j], 0, sizeof reqs[j]);
      snprintf(key, sizeof key, "%s-%04d", who, i + j);
      if (j % 2 == 0)
        failed |=
            kv_put(s, &reqs[j], "shared", key, key, strlen(key), 0, done_cb);
      else
        failed |= kv_incr(s, &reqs[j], "shared", "counter", 1, 0, done_cb);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (j = 0; j < 10; j++) {
      failed |= reqs[j].status;
      kv_req_cleanup(&reqs[j]);
    }
    if (g_done != 10) failed = 1;
  }
  kv_store_close(s, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0) failed = 1;
  return failed != 0;
}

static void two_processes_lose_nothing(void **state) {
  fx_t *fx = *state;
  enum { N = 400 };
  pid_t pid;
  int status, i, rc;
  char **names, key[32];
  size_t n, pages;
  /* Both processes open the store after fork(): an LMDB environment must
   * not cross a fork. */
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(writer(fx->url, "child", N));
  rc = writer(fx->url, "parent", N);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_int_equal(rc, 0);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  open_store(fx);
  n = list_all(fx, "shared", 0, 0, &names, &pages);
  assert_int_equal(n, N + 1); /* N/2 keys each, plus the counter */
  for (i = 0; i < N; i += 2) {
    snprintf(key, sizeof key, "child-%04d", i);
    assert_int_equal(has_name(names, n, key), 1);
    snprintf(key, sizeof key, "parent-%04d", i);
    assert_int_equal(has_name(names, n, key), 1);
  }
  free_names(names, n);
  expect(fx, "shared", "counter", "400"); /* N/2 incr from each */
}

/* The map grown by another process: this one adopts the new size. */
static void map_resized_by_another_process(void **state) {
  fx_t *fx = *state;
  char url[256];
  pid_t pid;
  int status;
  snprintf(url, sizeof url, "%s?map_size=1048576", fx->url);
  open_url(fx, url);
  put(fx, "r", "before", "1", 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* The child leaves the inherited store alone and opens its own. */
    uv_loop_t loop;
    kv_store_t *s;
    static kv_req_t reqs[40];
    static char value[256 << 10];
    char key[16];
    int i, failed = 0;
    if (uv_loop_init(&loop) != 0 || kv_open(&loop, url, &s) != 0) _exit(1);
    for (i = 0; i < 40; i++) {
      snprintf(key, sizeof key, "c%02d", i);
      failed |= kv_put(s, &reqs[i], "r", key, value, sizeof value, 0, done_cb);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (i = 0; i < 40; i++)
      failed |= reqs[i].status;
    kv_store_close(s, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(failed != 0 || uv_loop_close(&loop) != 0);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  {
    kv_req_t req;
    put(fx, "r", "after", "2", 0);
    expect(fx, "r", "before", "1");
    assert_int_equal(
        SYNC(fx, req, kv_get(fx->store, &req, "r", "c39", done_cb)), 0);
    assert_int_equal(req.found, 1);
    assert_int_equal(req.value.len, 256 << 10);
    kv_req_cleanup(&req);
  }
}

/* A process killed (SIGKILL) in a write storm: every acknowledged write is
 * there afterwards and the store opens cleanly. */
static int g_ack_fd;
static int g_crash_next;
static kv_store_t *g_crash_store;

static void disk_crash_cb(kv_req_t *req) {
  int i = (int)(intptr_t)req->data;
  char key[16];
  if (req->status != 0) _exit(2);
  if (write(g_ack_fd, &i, sizeof i) != sizeof i) _exit(3);
  kv_req_cleanup(req);
  i = g_crash_next++;
  req->data = (void *)(intptr_t)i;
  snprintf(key, sizeof key, "w%06d", i);
  if (kv_put(g_crash_store, req, "crash", key, key, strlen(key), 0,
             disk_crash_cb) != 0)
    _exit(4);
}

static void crash_loses_nothing_acknowledged(void **state) {
  fx_t *fx = *state;
  int fds[2], status, i, acked = 0;
  static int acks[1 << 16];
  char key[16];
  pid_t pid;
  ssize_t n;
  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    uv_loop_t loop;
    kv_store_t *s;
    static kv_req_t reqs[32];
    close(fds[0]);
    g_ack_fd = fds[1];
    if (uv_loop_init(&loop) != 0 || kv_open(&loop, fx->url, &s) != 0) _exit(1);
    g_crash_store = s;
    for (i = 0; i < 32; i++) {
      reqs[i].data = (void *)(intptr_t)i;
      snprintf(key, sizeof key, "w%06d", i);
      if (kv_put(s, &reqs[i], "crash", key, key, strlen(key), 0,
                 disk_crash_cb) != 0)
        _exit(1);
    }
    g_crash_next = 32;
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(5); /* never reached: killed */
  }
  close(fds[1]);
  while (acked < 2000 &&
         (n = read(fds[0], &acks[acked], sizeof acks[0])) == sizeof acks[0])
    acked++;
  kill(pid, SIGKILL);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  while (acked < (int)(sizeof acks / sizeof acks[0]) &&
         read(fds[0], &acks[acked], sizeof acks[0]) == sizeof acks[0])
    acked++;
  close(fds[0]);
  assert_true(acked >= 2000);
  open_store(fx);
  for (i = 0; i < acked; i++) {
    snprintf(key, sizeof key, "w%06d", acks[i]);
    expect(fx, "crash", key, key);
  }
}

/* ---- Map growth and big values --------------------------------------------
 */

static void map_grows_by_itself(void **state) {
  fx_t *fx = *state;
  enum { N = 50, SIZE = 1 << 20 };
  static kv_req_t reqs[N], extra[3];
  const char *many[3] = {"small", "nope", "v49"};
  char url[256], key[16];
  char *big = malloc((16 << 20) + 1), *vals = malloc((size_t)N * SIZE);
  kv_disk_stats_t st;
  kv_req_t req;
  size_t i;
  assert_non_null(big);
  assert_non_null(vals);
  for (i = 0; i < (size_t)N * SIZE; i++)
    vals[i] = (char)((i * 2654435761u) >> 13);
  for (i = 0; i < (16u << 20) + 1; i++)
    big[i] = (char)(i * 31 + 7);
  snprintf(url, sizeof url, "%s?map_size=1048576", fx->url);
  open_url(fx, url);
  put(fx, "big", "small", "s", 0);
  /* 50 MiB in one turn: one transaction, retried as the map doubles. The
   * reads in the same batch run again each time, and must answer once. */
  g_done = 0;
  for (i = 0; i < N; i++) {
    memset(&reqs[i], 0, sizeof reqs[i]);
    snprintf(key, sizeof key, "v%02zu", i);
    assert_int_equal(kv_put(fx->store, &reqs[i], "big", key, vals + i * SIZE,
                            SIZE, 0, done_cb),
                     0);
  }
  memset(extra, 0, sizeof extra);
  assert_int_equal(kv_get(fx->store, &extra[0], "big", "v00", done_cb), 0);
  assert_int_equal(kv_get_many(fx->store, &extra[1], "big", many, 3, done_cb),
                   0);
  assert_int_equal(kv_keys(fx->store, &extra[2], "big", NULL, 2, done_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, N + 3);
  for (i = 0; i < N; i++) {
    assert_int_equal(reqs[i].status, 0);
    kv_req_cleanup(&reqs[i]);
  }
  assert_int_equal(extra[0].status, 0);
  assert_int_equal(extra[0].value.len, SIZE);
  assert_memory_equal(extra[0].value.base, vals, SIZE);
  assert_int_equal(extra[1].status, 0);
  assert_int_equal(extra[1].nresults, 3);
  assert_int_equal(extra[1].results[0].found, 1);
  assert_int_equal(extra[1].results[0].value.len, 1);
  assert_int_equal(extra[1].results[1].found, 0);
  assert_int_equal(extra[1].results[2].value.len, SIZE);
  assert_int_equal(extra[2].status, 0);
  assert_int_equal(extra[2].nnames, 2);
  assert_non_null(extra[2].cursor);
  for (i = 0; i < 3; i++)
    kv_req_cleanup(&extra[i]);
  st = stats(fx);
  assert_true(st.map_grows >= 5);
  assert_true(st.map_size >= (uint64_t)N * SIZE);
  assert_int_equal(SYNC(fx, req,
                        kv_put(fx->store, &req, "big", "16mib", big,
                               (16u << 20) + 1, 0, done_cb)),
                   0);
  kv_req_cleanup(&req);
  reopen(fx);
  for (i = 0; i < N; i++) {
    snprintf(key, sizeof key, "v%02zu", i);
    assert_int_equal(
        SYNC(fx, req, kv_get(fx->store, &req, "big", key, done_cb)), 0);
    assert_int_equal(req.found, 1);
    assert_int_equal(req.value.len, SIZE);
    assert_memory_equal(req.value.base, vals + i * SIZE, SIZE);
    kv_req_cleanup(&req);
  }
  assert_int_equal(
      SYNC(fx, req, kv_get(fx->store, &req, "big", "16mib", done_cb)), 0);
  assert_int_equal(req.value.len, (16u << 20) + 1);
  assert_memory_equal(req.value.base, big, (16u << 20) + 1);
  kv_req_cleanup(&req);
  /* An empty value is a value. */
  put(fx, "big", "empty", "", 0);
  expect(fx, "big", "empty", "");
  free(big);
  free(vals);
}

/* ---- Bad paths --------------------------------------------------------------
 */

static void corrupt_file_is_ecorrupt_and_untouched(void **state) {
  fx_t *fx = *state;
  char file[160], err[512];
  static unsigned char garbage[65536], after[65536];
  size_t sizes[2] = {sizeof garbage, 100}, i, k;
  kv_store_t *s = NULL;
  FILE *f;
  assert_int_equal(mkdir(fx->path, 0755), 0);
  snprintf(file, sizeof file, "%s/data.mdb", fx->path);
  for (k = 0; k < 2; k++) {
    for (i = 0; i < sizeof garbage; i++)
      garbage[i] = (unsigned char)((i * 1103515245u + 12345u + k) >> 7);
    f = fopen(file, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(garbage, 1, sizes[k], f), sizes[k]);
    fclose(f);
    err[0] = '\0';
    assert_int_equal(kv_open_ex(&fx->loop, fx->url, &s, err, sizeof err),
                     KV_ECORRUPT);
    assert_null(s);
    assert_non_null(strstr(err, fx->path));
    f = fopen(file, "rb");
    assert_non_null(f);
    assert_int_equal(fread(after, 1, sizeof after, f), sizes[k]);
    fclose(f);
    assert_memory_equal(after, garbage, sizes[k]);
  }
}

static void foreign_lmdb_database_is_ecorrupt(void **state) {
  fx_t *fx = *state;
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_val k = {3, (void *)(uintptr_t) "foo"},
          v = {3, (void *)(uintptr_t) "bar"};
  char err[512];
  kv_store_t *s = NULL;
  assert_int_equal(mkdir(fx->path, 0755), 0);
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_open(env, fx->path, 0, 0644), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
  assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  assert_int_equal(kv_open_ex(&fx->loop, fx->url, &s, err, sizeof err),
                   KV_ECORRUPT);
  assert_non_null(strstr(err, fx->path));
}

static void unwritable_path_is_eio(void **state) {
  fx_t *fx = *state;
  char file[160], url[256], err[512];
  kv_store_t *s = NULL;
  FILE *f;
  snprintf(file, sizeof file, "%s/plain-file", fx->dir);
  f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  snprintf(url, sizeof url, "disk://%s/sub/db", file);
  assert_int_equal(kv_open_ex(&fx->loop, url, &s, err, sizeof err), KV_EIO);
  assert_null(s);
  assert_non_null(strstr(err, file));
  assert_non_null(strstr(err, strerror(ENOTDIR)));
  snprintf(url, sizeof url, "disk://%s", file); /* a file, not a directory */
  assert_int_equal(kv_open_ex(&fx->loop, url, &s, err, sizeof err), KV_EIO);
  assert_non_null(strstr(err, file));
  assert_int_equal(
      kv_open_ex(&fx->loop, "disk:///proc/kvio-nope/db", &s, err, sizeof err),
      KV_EIO);
  assert_non_null(strstr(err, "/proc/kvio-nope"));
}

static void options_are_checked(void **state) {
  fx_t *fx = *state;
  char url[256], err[512], cwd[512];
  kv_store_t *s = NULL;
  const char *bad[] = {"?sync=sometimes", "?map_size=abc", "?map_size=10",
                       "?max_readers=0", "?bogus=1"};
  const char *good[] = {"?sync=none", "?sync=meta",
                        "?sync=full&map_size=2097152&max_readers=10"};
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(url, sizeof url, "%s%s", fx->url, bad[i]);
    assert_int_equal(kv_open_ex(&fx->loop, url, &s, err, sizeof err),
                     KV_EINVAL);
  }
  assert_int_equal(kv_open_ex(&fx->loop, "disk://", &s, err, sizeof err),
                   KV_EINVAL);
  for (i = 0; i < sizeof good / sizeof good[0]; i++) {
    snprintf(url, sizeof url, "%s%s", fx->url, good[i]);
    open_url(fx, url);
    put(fx, "o", "k", good[i], 0);
    expect(fx, "o", "k", good[i]);
    close_store(fx, fx->store);
    fx->store = NULL;
  }
  /* A relative path, with missing parents. */
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(fx->dir), 0);
  open_url(fx, "disk://./rel/a/b");
  put(fx, "o", "k", "rel", 0);
  close_store(fx, fx->store);
  fx->store = NULL;
  assert_int_equal(chdir(cwd), 0);
  snprintf(url, sizeof url, "%s/rel/a/b/data.mdb", fx->dir);
  assert_int_equal(access(url, F_OK), 0);
}

/* ---- Stores on one path ----------------------------------------------------
 */

static void two_stores_share_one_path(void **state) {
  fx_t *fx = *state;
  kv_store_t *other = NULL;
  kv_req_t req;
  char url[256];
  open_store(fx);
  /* The same directory under another spelling, with a weaker sync mode. */
  snprintf(url, sizeof url, "disk://%s/../db/?sync=none", fx->path);
  assert_int_equal(kv_open(&fx->loop, url, &other), 0);
  put(fx, "s", "k", "from-first", 0);
  assert_int_equal(SYNC(fx, req, kv_get(other, &req, "s", "k", done_cb)), 0);
  assert_int_equal(req.found, 1);
  assert_string_equal(req.value.base, "from-first");
  kv_req_cleanup(&req);
  close_store(fx, other);
  put(fx, "s", "k2", "still-open", 0);
  expect(fx, "s", "k2", "still-open");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(persists_across_reopen_with_ttl, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(long_names_round_trip_and_enumerate,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(no_collisions, setup, teardown),
      cmocka_unit_test_setup_teardown(keys_paging_lists_each_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(collections_paging_skips_expired, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(atomic_ops_and_cull, setup, teardown),
      cmocka_unit_test_setup_teardown(two_processes_lose_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(map_grows_by_itself, setup, teardown),
      cmocka_unit_test_setup_teardown(map_resized_by_another_process, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(crash_loses_nothing_acknowledged, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(corrupt_file_is_ecorrupt_and_untouched,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(foreign_lmdb_database_is_ecorrupt, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(unwritable_path_is_eio, setup, teardown),
      cmocka_unit_test_setup_teardown(options_are_checked, setup, teardown),
      cmocka_unit_test_setup_teardown(two_stores_share_one_path, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
