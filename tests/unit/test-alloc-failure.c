/* Allocation failures: a scripted session on memory:// (and the core under
 * it) is run with the N-th allocation failing, for N = 1, 2, ... until a run
 * completes without reaching N. In every run each submit returns 0 or an
 * error, each accepted request calls back exactly once with 0 or KV_ENOMEM,
 * nothing crashes, the loop closes with no handle left, and (under ASan's
 * leak checker) nothing leaks. Like SQLite's and curl's OOM loops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

static long alloc_count; /* allocations so far in this run */
static long fail_at;     /* the allocation that fails (0: none) */
static int failed_once;  /* the failure was reached in this run */

static int should_fail(void) {
  if (++alloc_count == fail_at) {
    failed_once = 1;
    return 1;
  }
  return 0;
}

static void *t_malloc(size_t n) {
  return should_fail() ? NULL : malloc(n);
}
static void *t_realloc(void *p, size_t n) {
  return should_fail() ? NULL : realloc(p, n);
}
static void *t_calloc(size_t c, size_t n) {
  return should_fail() ? NULL : calloc(c, n);
}
static void t_free(void *p) {
  free(p);
}

typedef struct {
  kv_req_t req;
  int calls;
} treq_t;

static long accepted, called;

static void on_done(kv_req_t *req) {
  treq_t *t = (treq_t *)req;
  t->calls++;
  called++;
  /* Only success or out of memory: nothing else may go wrong. */
  if (req->status != 0 && req->status != KV_ENOMEM &&
      req->status != KV_ECONFLICT && req->status != KV_ECANCELED)
    fail_msg("unexpected status %s: %s", kv_err_name(req->status),
             kv_req_errmsg(req));
}

/* Submit through `rc`, then run the loop until the callback ran. */
static void finish(uv_loop_t *loop, treq_t *t, int rc) {
  if (rc < 0) {
    assert_true(rc == KV_ENOMEM || rc == KV_EINVAL);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_int_equal(t->calls, 0); /* a failed submit never calls back */
  } else {
    accepted++;
    assert_int_equal(t->calls, 0); /* never from inside the submit */
    while (t->calls == 0)
      assert_true(uv_run(loop, UV_RUN_ONCE) != 0 || t->calls != 0);
    assert_int_equal(t->calls, 1);
  }
  kv_req_cleanup(&t->req);
  t->calls = 0;
}

static int closed;
static void on_close(kv_store_t *s) {
  (void)s;
  closed++;
}

/* One session: every kind of operation, several collections, a listing. */
static void session(const char *url) {
  uv_loop_t loop;
  kv_store_t *s = NULL;
  treq_t t = {0};
  const char *keys[] = {"a", "b", "c", "d"};
  kv_buf_t vals[] = {{(char *)"1", 1},
                     {(char *)"22", 2},
                     {(char *)"", 0},
                     {(char *)"4444", 4}};
  char key[32];
  int rc;

  assert_int_equal(uv_loop_init(&loop), 0);
  rc = kv_open(&loop, url, &s);
  if (rc != 0) {
    assert_int_equal(rc, KV_ENOMEM);
    assert_null(s);
    /* A store that opens others (wrap://) closes them asynchronously when a
     * later step fails: the loop finishes that (kv_open's contract). */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return;
  }
  for (int i = 0; i < 40; i++) { /* enough to grow the hash table */
    snprintf(key, sizeof key, "key-%d", i);
    finish(&loop, &t,
           kv_put(s, &t.req, i % 2 ? "c1" : "c2", key, "value", 5,
                  i % 3 ? 0 : 60, on_done));
  }
  finish(&loop, &t, kv_get(s, &t.req, "c1", "key-1", on_done));
  finish(&loop, &t, kv_ttl(s, &t.req, "c2", "key-0", on_done));
  finish(&loop, &t, kv_put_many(s, &t.req, "many", keys, vals, 4, 0, on_done));
  finish(&loop, &t, kv_get_many(s, &t.req, "many", keys, 4, on_done));
  finish(&loop, &t, kv_ttl_many(s, &t.req, "many", keys, 4, on_done));
  finish(&loop, &t, kv_keys(s, &t.req, "c1", NULL, 7, on_done));
  finish(&loop, &t, kv_collections(s, &t.req, NULL, 2, on_done));
  finish(&loop, &t, kv_incr(s, &t.req, "n", "counter", 5, 0, on_done));
  finish(&loop, &t,
         kv_cas(s, &t.req, "n", "counter", "5", 1, "6", 1, 0, on_done));
  finish(&loop, &t,
         kv_put_if_absent(s, &t.req, "n", "once", "x", 1, 0, on_done));
  finish(&loop, &t, kv_take(s, &t.req, "n", "once", on_done));
  finish(&loop, &t, kv_delete_many(s, &t.req, "many", keys, 4, on_done));
  finish(&loop, &t, kv_delete(s, &t.req, "c1", "key-1", on_done));
  finish(&loop, &t, kv_destroy_collection(s, &t.req, "c2", on_done));
  finish(&loop, &t, kv_cull(s, &t.req, on_done));
  /* Close with requests in flight. */
  {
    treq_t inflight[3];
    memset(inflight, 0, sizeof inflight);
    for (int i = 0; i < 3; i++) {
      rc = kv_get(s, &inflight[i].req, "c1", "key-3", on_done);
      if (rc == 0) accepted++;
    }
    closed = 0;
    assert_int_equal(kv_store_close(s, on_close), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    for (int i = 0; i < 3; i++) {
      assert_true(inflight[i].calls <= 1);
      kv_req_cleanup(&inflight[i].req);
    }
  }
  assert_int_equal(called, accepted); /* every accepted request called back */
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void run_oom_loop(const char *url) {
  long n;
  assert_int_equal(kv_replace_allocator(t_malloc, t_realloc, t_calloc, t_free),
                   0);
  for (n = 1;; n++) {
    alloc_count = 0;
    fail_at = n;
    failed_once = 0;
    accepted = called = 0;
    session(url);
    if (!failed_once) break; /* the whole session ran without reaching n */
  }
  fail_at = 0;
  assert_int_equal(kv_replace_allocator(malloc, realloc, calloc, free), 0);
  print_message("%s: %ld allocations, each failed once\n", url, n - 1);
  assert_true(n > 50); /* the session does allocate: the loop is real */
}

static void oom_memory(void **state) {
  (void)state;
  run_oom_loop("memory://");
}

static void oom_memory_lru(void **state) {
  (void)state;
  run_oom_loop("memory://?max_entries=5");
}

#ifdef KV_HAVE_WRAPPERS
/* A stack of wrappers over memory:// (opened through a wrap:// URL). */
static void oom_wrappers(void **state) {
  (void)state;
  run_oom_loop("wrap:///statistics|retry:max=1|timeout:seconds=30|"
               "prefix-keys:prefix=p|ttl-clamp:min=0,max=100000@memory://");
}

static void oom_cache(void **state) {
  (void)state;
  run_oom_loop("wrap:///cache:store=memory://@memory://");
}
#endif

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(oom_memory),
      cmocka_unit_test(oom_memory_lru),
#ifdef KV_HAVE_WRAPPERS
      cmocka_unit_test(oom_wrappers),
      cmocka_unit_test(oom_cache),
#endif
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
