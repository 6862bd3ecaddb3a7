/* test-disk-full URL — a persistent store on a disk that fills up
 * (docs/faults.md).
 *
 * URL names the store with @TMP@ for its directory (disk://@TMP@/db,
 * file://@TMP@/kv.json, sqlite://@TMP@/kv.db, rocksdb://@TMP@/db). Two ways
 * to fill the disk, one cmocka test each:
 *
 *   fsize  RLIMIT_FSIZE (soft limit, set before the store is opened, SIGXFSZ
 *          ignored): no file of this process may grow past FSIZE_LIMIT, a
 *          write past it fails with EFBIG ("File too large"). Needs no
 *          privileges: it always runs.
 *   tmpfs  a tmpfs of TMPFS_SIZE mounted on the temporary directory, in a
 *          private mount namespace when the process may create one (so the
 *          mount disappears with the process): writes fail with ENOSPC.
 *          Skipped when mounting is refused (not root, no CAP_SYS_ADMIN).
 *
 * Each test: write values of VALUE_LEN bytes in bursts of BURST puts until
 * puts fail, then AFTER_FAIL_BURSTS bursts more. Then
 *  - every failed put completed once with KV_EIO whose detail carries the
 *    system's message (strerror(EFBIG) / strerror(ENOSPC)) or SQLite's
 *    "database or disk is full";
 *  - while still full, every acknowledged key reads back with its value, a
 *    key whose only put failed reads as missing, and one more put completes
 *    (it may succeed where freed space allows);
 *  - the limit is lifted (setrlimit back / tmpfs remounted larger): a put in
 *    the same store, without reopening, succeeds — or, for the stores listed
 *    in needs_reopen(), is allowed to fail until the store is reopened;
 *  - the disk is made full again (limit set again / tmpfs shrunk to what it
 *    holds plus a little) and filled until puts fail; the store is closed
 *    and opened while full: it opens and reads every acknowledged key, or
 *    the open fails with KV_EIO;
 *  - space comes back, a put succeeds, the store is closed and reopened:
 *    every acknowledged key holds its value, and no failed put is there.
 *
 * Every wait is bounded (WAIT_MS per step, alarm(ALARM_S) for the process).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmocka.h>

#include "faults/faults.h"

#define FSIZE_LIMIT (1024 * 1024) /* bytes per file (fsize mode) */
#define TMPFS_SIZE "4m"           /* the full file system (tmpfs mode) */
#define TMPFS_BIG                                             \
  "32m" /* after the remount (less than RocksDB preallocates) \
         */
#define VALUE_LEN 2048
#define BURST 16
#define AFTER_FAIL_BURSTS 4
#define MAX_WRITES 12000 /* per fill: 24 MiB offered, far past either limit */
#define SPECIAL_KEY (2 * MAX_WRITES + 2 * BURST) /* single puts: 3 keys */
#define KEYS_MAX (SPECIAL_KEY + 3)
#define WAIT_MS 60000
#define ALARM_S 600
#define COLL "full"

static const char *url_tmpl;
static int ns_private; /* running in a private mount namespace */

typedef struct full_s {
  uv_loop_t loop;
  char dir[256];
  int mounted;
  char *url;
  kv_store_t *store;
  long done;
  long closed;
  unsigned char *acked; /* per key number: 1 acknowledged */
  unsigned char *failed;
  long n_written; /* the next key number of a fill */
  long n_acked;
  long n_failed;
  int expect_errno;
  char first_error[512];
  char recovery[256];
  char reopen_full[256];
} full_t;

static void value_of(long i, char *out) {
  uint32_t x = (uint32_t)i * 2654435761u + 12345u;
  int n = snprintf(out, VALUE_LEN, "v-%06ld-", i);
  for (size_t k = (size_t)n; k < VALUE_LEN; k++) {
    x = x * 1664525u + 1013904223u;
    out[k] = (char)(' ' + (x >> 24) % 95); /* printable: text for file:// */
  }
}

static void key_of(long i, char *out, size_t len) {
  snprintf(out, len, "k%06ld", i);
}

/* Stores that cannot take writes again without a reopen once a write failed
 * (documented in docs/faults.md). */
static int needs_reopen(const char *url) {
  return strncmp(url, "rocksdb:", 8) == 0;
}

static void on_closed(kv_store_t *s) {
  full_t *f = kv_store_loop(s)->data;
  f->closed++;
}

static void full_open(full_t *f) {
  char err[512] = "";
  int rc = kv_open_ex(&f->loop, f->url, &f->store, err, sizeof(err));
  if (rc != 0) fail_msg("open %s: %s: %s", f->url, kv_err_name(rc), err);
}

static void full_close(full_t *f) {
  long want = f->closed + 1;
  assert_int_equal(kv_store_close(f->store, on_closed), 0);
  if (fault_run_until(&f->loop, &f->closed, want, WAIT_MS) != 0)
    fail_msg("%s: close did not complete within %d ms (hang)", f->url, WAIT_MS);
  f->store = NULL;
}

static void wait_done(full_t *f, long target, const char *what) {
  if (fault_run_until(&f->loop, &f->done, target, WAIT_MS) != 0)
    fail_msg("%s: %s: %ld of %ld requests completed within %d ms (hang)",
             f->url, what, f->done, target, WAIT_MS);
}

/* Is this failure "clear": KV_EIO with the system's message? */
static void check_error(full_t *f, const kv_req_t *req, const char *key) {
  const char *msg = kv_req_errmsg(req);
  const char *sys = strerror(f->expect_errno);
  if (f->first_error[0] == '\0')
    snprintf(f->first_error, sizeof(f->first_error), "%s: %s",
             kv_err_name(req->status), msg);
  if (req->status != KV_EIO)
    fail_msg("%s: put %s failed with %s (%s), expected KV_EIO", f->url, key,
             kv_err_name(req->status), msg);
  if (strstr(msg, sys) == NULL && strstr(msg, "disk is full") == NULL)
    fail_msg("%s: put %s: KV_EIO without the system's message \"%s\": %s",
             f->url, key, sys, msg);
}

/* Submit puts of key numbers [from, from + n); returns how many failed. */
static long put_burst(full_t *f, fault_req_t *reqs, long from, long n) {
  static char values[BURST][VALUE_LEN];
  char keys[BURST][32];
  long base = f->done, failed = 0;
  for (long j = 0; j < n; j++) {
    key_of(from + j, keys[j], sizeof(keys[j]));
    value_of(from + j, values[j]);
    fault_req_init(&reqs[j], &f->done);
    int rc = kv_put(f->store, &reqs[j].req, COLL, keys[j], values[j], VALUE_LEN,
                    0, fault_req_cb);
    if (rc != 0)
      fail_msg("%s: submit put %s: %s: %s", f->url, keys[j], kv_err_name(rc),
               kv_req_errmsg(&reqs[j].req));
  }
  wait_done(f, base + n, "puts");
  for (long j = 0; j < n; j++) {
    assert_int_equal(reqs[j].calls, 1);
    if (reqs[j].req.status == 0) {
      f->acked[from + j] = 1;
      f->n_acked++;
    } else {
      check_error(f, &reqs[j].req, keys[j]);
      f->failed[from + j] = 1;
      f->n_failed++;
      failed++;
    }
    kv_req_cleanup(&reqs[j].req);
  }
  f->n_written = from + n;
  return failed;
}

/* Every acknowledged key holds its value; keys whose puts all failed are
 * missing. */
static void check_all(full_t *f, const char *when) {
  static char expect[VALUE_LEN];
  fault_req_t reqs[BURST];
  char keys[BURST][32];
  long ids[BURST];
  long checked = 0;
  long i = 0;
  while (i < KEYS_MAX) {
    long n = 0, base = f->done;
    for (; i < KEYS_MAX && n < BURST; i++) {
      if (!f->acked[i] && !f->failed[i]) continue;
      ids[n] = i;
      key_of(i, keys[n], sizeof(keys[n]));
      fault_req_init(&reqs[n], &f->done);
      int rc = kv_get(f->store, &reqs[n].req, COLL, keys[n], fault_req_cb);
      if (rc != 0)
        fail_msg("%s: %s: submit get %s: %s", f->url, when, keys[n],
                 kv_err_name(rc));
      n++;
    }
    if (n == 0) break;
    wait_done(f, base + n, "gets");
    for (long j = 0; j < n; j++) {
      kv_req_t *r = &reqs[j].req;
      if (r->status != 0)
        fail_msg("%s: %s: get %s: %s: %s", f->url, when, keys[j],
                 kv_err_name(r->status), kv_req_errmsg(r));
      if (f->acked[ids[j]]) {
        if (!r->found)
          fail_msg("%s: %s: acknowledged key %s is lost", f->url, when,
                   keys[j]);
        value_of(ids[j], expect);
        if (r->value.len != VALUE_LEN ||
            memcmp(r->value.base, expect, VALUE_LEN) != 0)
          fail_msg("%s: %s: acknowledged key %s has a wrong value", f->url,
                   when, keys[j]);
        checked++;
      } else if (r->found) {
        fail_msg("%s: %s: key %s, whose put failed, is present", f->url, when,
                 keys[j]);
      }
      kv_req_cleanup(r);
    }
  }
  assert_int_equal(checked, f->n_acked);
}

/* One put of key number `i`; returns its status (and the error in msg). */
static int put_one(full_t *f, long i, char *msg, size_t msglen) {
  static char value[VALUE_LEN];
  fault_req_t r;
  char key[32];
  long base = f->done;
  memset(&r, 0, sizeof(r));
  key_of(i, key, sizeof(key));
  value_of(i, value);
  fault_req_init(&r, &f->done);
  int rc =
      kv_put(f->store, &r.req, COLL, key, value, VALUE_LEN, 0, fault_req_cb);
  if (rc != 0) fail_msg("%s: submit put %s: %s", f->url, key, kv_err_name(rc));
  wait_done(f, base + 1, "put");
  assert_int_equal(r.calls, 1);
  rc = r.req.status;
  if (rc == 0) {
    if (!f->acked[i]) f->n_acked++;
    f->acked[i] = 1;
    f->failed[i] = 0;
  } else {
    snprintf(msg, msglen, "%s: %s", kv_err_name(rc), kv_req_errmsg(&r.req));
    f->failed[i] = !f->acked[i];
  }
  kv_req_cleanup(&r.req);
  return rc;
}

static int full_setup(void **state) {
  full_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->acked = calloc(KEYS_MAX, 1);
  f->failed = calloc(KEYS_MAX, 1);
  assert_non_null(f->acked);
  assert_non_null(f->failed);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->loop.data = f;
  const char *tmp = getenv("TMPDIR");
  snprintf(f->dir, sizeof(f->dir), "%s/kvio-full-XXXXXX", tmp ? tmp : "/tmp");
  assert_non_null(mkdtemp(f->dir));
  f->url = fault_subst(url_tmpl, "@TMP@", f->dir);
  *state = f;
  return 0;
}

static void lift_fsize(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_FSIZE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_FSIZE, &rl);
}

static int full_teardown(void **state) {
  full_t *f = *state;
  lift_fsize();
  if (f->store != NULL) {
    kv_store_close(f->store, on_closed);
    fault_run_until(&f->loop, &f->closed, f->closed + 1, WAIT_MS);
  }
  long never = 0; /* nothing may be left on the loop: a bounded run */
  fault_run_until(&f->loop, &never, 1, 2000);
  int alive = uv_loop_alive(&f->loop);
  int lc = uv_loop_close(&f->loop);
  if (f->mounted) umount2(f->dir, MNT_DETACH);
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", f->dir);
  free(f->url);
  free(f->acked);
  free(f->failed);
  free(f);
  assert_int_equal(alive, 0);
  assert_int_equal(lc, 0);
  return 0;
}

/* Put bursts after the last key written until puts fail, then
 * AFTER_FAIL_BURSTS bursts more. */
static void fill(full_t *f, const char *phase) {
  fault_req_t reqs[BURST];
  long start = f->n_written, i = start, after = -1, failed_before = f->n_failed;
  memset(reqs, 0, sizeof(reqs));
  assert_true(start + MAX_WRITES <= SPECIAL_KEY);
  while (i < start + MAX_WRITES && (after < 0 || after < AFTER_FAIL_BURSTS)) {
    long failed = put_burst(f, reqs, i, BURST);
    i += BURST;
    if (after >= 0)
      after++;
    else if (failed > 0)
      after = 0;
  }
  if (f->n_failed == failed_before)
    fail_msg("%s: %s: %ld puts of %d bytes never failed: the disk is not full",
             f->url, phase, i - start, VALUE_LEN);
}

/* The common body, once the disk is small: fill, check, make room, check;
 * fill again, reopen while full, make room, check. */
static void fill_and_recover(full_t *f, const char *mode,
                             void (*make_room)(full_t *),
                             void (*take_room)(full_t *)) {
  char msg[512] = "", err[512] = "";
  int rc;
  full_open(f);
  /* Phase 1: the same store fills up, reads, and writes once there is room
   * again. */
  fill(f, "first fill");
  assert_true(f->n_acked > 0);
  check_all(f, "while full");
  rc = put_one(f, SPECIAL_KEY + 0, msg, sizeof(msg));
  if (rc != 0 && strncmp(msg, "KV_EIO", 6) != 0)
    fail_msg("%s: a put while full: %s, expected KV_EIO", f->url, msg);
  make_room(f);
  rc = put_one(f, SPECIAL_KEY + 1, msg, sizeof(msg));
  if (rc == 0) {
    snprintf(f->recovery, sizeof(f->recovery), "writes work again at once");
  } else {
    if (!needs_reopen(f->url))
      fail_msg("%s: after space came back, a put in the same store failed: "
               "%s",
               f->url, msg);
    snprintf(f->recovery, sizeof(f->recovery),
             "writes fail until reopened (%.180s)", msg);
    full_close(f);
    full_open(f);
    rc = put_one(f, SPECIAL_KEY + 1, msg, sizeof(msg));
    if (rc != 0)
      fail_msg("%s: after space came back and a reopen, a put failed: %s",
               f->url, msg);
  }
  check_all(f, "after space came back");
  /* Phase 2: full again; close and open while full: the store opens and
   * reads, or the open fails with a clear KV_EIO (then it is opened once
   * there is room). */
  take_room(f);
  fill(f, "second fill");
  full_close(f);
  rc = kv_open_ex(&f->loop, f->url, &f->store, err, sizeof(err));
  if (rc == 0) {
    check_all(f, "reopened while full");
    snprintf(f->reopen_full, sizeof(f->reopen_full), "opens and reads");
  } else {
    if (rc != KV_EIO)
      fail_msg("%s: open while full: %s (%s), expected KV_EIO", f->url,
               kv_err_name(rc), err);
    snprintf(f->reopen_full, sizeof(f->reopen_full), "open fails (%s: %.160s)",
             kv_err_name(rc), err);
    f->store = NULL;
  }
  make_room(f);
  if (f->store == NULL) full_open(f);
  rc = put_one(f, SPECIAL_KEY + 2, msg, sizeof(msg));
  if (rc != 0) {
    if (!needs_reopen(f->url))
      fail_msg("%s: after space came back, a put failed: %s", f->url, msg);
    full_close(f);
    full_open(f);
    rc = put_one(f, SPECIAL_KEY + 2, msg, sizeof(msg));
    if (rc != 0)
      fail_msg("%s: after space came back and a reopen, a put failed: %s",
               f->url, msg);
  }
  /* Nothing acknowledged is lost. */
  full_close(f);
  full_open(f);
  check_all(f, "after reopen");
  full_close(f);
  printf("[ disk-full ] %s %s: %ld acknowledged, %ld failed (first: %s); "
         "reads while full ok; %s; reopened while full: %s; all "
         "acknowledged values intact after reopen\n",
         mode, f->url, f->n_acked, f->n_failed, f->first_error, f->recovery,
         f->reopen_full);
}

static void fsize_room(full_t *f) {
  (void)f;
  lift_fsize();
}

static void fsize_take_room(full_t *f) {
  struct rlimit rl;
  (void)f;
  getrlimit(RLIMIT_FSIZE, &rl);
  rl.rlim_cur = FSIZE_LIMIT;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void test_fsize(void **state) {
  full_t *f = *state;
  struct rlimit rl;
  f->expect_errno = EFBIG;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < FSIZE_LIMIT * 4)
    skip(); /* cannot lift it again */
  rl.rlim_cur = FSIZE_LIMIT;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
  fill_and_recover(f, "fsize", fsize_room, fsize_take_room);
}

static void tmpfs_room(full_t *f) {
  if (mount("tmpfs", f->dir, "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV,
            "size=" TMPFS_BIG) != 0)
    fail_msg("remount %s with size=%s: %s", f->dir, TMPFS_BIG, strerror(errno));
}

/* Shrink the tmpfs to what it holds plus a little. */
static void tmpfs_take_room(full_t *f) {
  struct statvfs vfs;
  char opt[64];
  assert_int_equal(statvfs(f->dir, &vfs), 0);
  unsigned long long used =
      (unsigned long long)(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize;
  snprintf(opt, sizeof(opt), "size=%llu", used + 256 * 1024);
  if (mount("tmpfs", f->dir, "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV, opt) !=
      0)
    fail_msg("remount %s with %s: %s", f->dir, opt, strerror(errno));
}

static void test_tmpfs(void **state) {
  full_t *f = *state;
  f->expect_errno = ENOSPC;
  if (mount("tmpfs", f->dir, "tmpfs", MS_NOSUID | MS_NODEV,
            "size=" TMPFS_SIZE ",mode=0700") != 0) {
    printf("[ disk-full ] tmpfs: mount refused (%s): skipped\n",
           strerror(errno));
    skip();
  }
  f->mounted = 1;
  fill_and_recover(f, ns_private ? "tmpfs (private namespace)" : "tmpfs",
                   tmpfs_room, tmpfs_take_room);
}

int main(int argc, char **argv) {
  if (argc != 2 || strstr(argv[1], "@TMP@") == NULL) {
    fprintf(stderr, "usage: %s URL-WITH-@TMP@\n", argv[0]);
    return 2;
  }
  url_tmpl = argv[1];
  signal(SIGXFSZ, SIG_IGN); /* writes past RLIMIT_FSIZE fail with EFBIG */
  alarm(ALARM_S);           /* the last resort against a hang */
  /* A private mount namespace (before any thread exists): the tmpfs goes
   * away with the process, whatever happens. */
  if (unshare(CLONE_NEWNS) == 0 &&
      mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == 0)
    ns_private = 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_fsize, full_setup, full_teardown),
      cmocka_unit_test_setup_teardown(test_tmpfs, full_setup, full_teardown),
  };
  return cmocka_run_group_tests_name(url_tmpl, tests, NULL, NULL);
}
