/* Helpers shared by the wrapper tests: a stack on the blocking facade's
 * loop, one-line operations, and async requests with counted callbacks. */
#ifndef KV_WRAPTEST_H
#define KV_WRAPTEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvio.h"
#include "kvio/wrap.h"

typedef struct tstack_s {
  kv_sync_t *sync;
  uv_loop_t *loop;
  kv_store_t *top;
} tstack_t;

/* A private loop; open `url` on it as the bottom of the stack. */
static inline kv_store_t *ts_init(tstack_t *t, const char *url) {
  kv_store_t *s = NULL;
  memset(t, 0, sizeof *t);
  assert_int_equal(kv_sync_init(&t->sync), 0);
  t->loop = kv_sync_loop(t->sync);
  if (url) assert_int_equal(kv_open(t->loop, url, &s), 0);
  return s;
}

/* The stack is built: its top serves the kv_sync_* calls. */
static inline void ts_set(tstack_t *t, kv_store_t *top) {
  t->top = top;
  kv_sync_set_store(t->sync, top);
}

/* Close everything; the loop must end with no handle left. */
static inline void ts_close(tstack_t *t) {
  assert_int_equal(kv_sync_close(t->sync), 0);
}

static inline int t_put(tstack_t *t, const char *c, const char *k,
                        const char *v, double ttl) {
  kv_req_t r;
  int rc;
  memset(&r, 0, sizeof r);
  rc = kv_sync_put(t->sync, &r, c, k, v, strlen(v), ttl);
  kv_req_cleanup(&r);
  return rc;
}

/* get: returns the status; *found and the value (NUL-terminated, at most
 * cap - 1 bytes) in out. */
static inline int t_get(tstack_t *t, const char *c, const char *k, int *found,
                        char *out, size_t cap) {
  kv_req_t r;
  int rc;
  memset(&r, 0, sizeof r);
  rc = kv_sync_get(t->sync, &r, c, k);
  if (found) *found = r.found;
  if (out && cap) {
    size_t n = r.found && r.value.len < cap ? r.value.len : 0;
    if (n) memcpy(out, r.value.base, n);
    out[n] = '\0';
  }
  kv_req_cleanup(&r);
  return rc;
}

static inline double t_ttl(tstack_t *t, const char *c, const char *k) {
  kv_req_t r;
  double ttl;
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_ttl(t->sync, &r, c, k), 0);
  assert_true(r.found);
  ttl = r.ttl;
  kv_req_cleanup(&r);
  return ttl;
}

/* An async request whose callback counts and may record the time. */
typedef struct treq_s {
  kv_req_t req;
  int calls;
  int in_submit; /* set around the submit: a callback inside it is a bug */
  int inline_calls;
  uint64_t done_ns;
} treq_t;

static inline void t_cb(kv_req_t *r) {
  treq_t *t = (treq_t *)r;
  t->calls++;
  if (t->in_submit) t->inline_calls++;
  t->done_ns = uv_hrtime();
}

/* Run the loop until every one of the n requests has called back once. */
static inline void t_wait_all(uv_loop_t *loop, treq_t *reqs, size_t n) {
  for (;;) {
    size_t done = 0;
    for (size_t i = 0; i < n; i++)
      done += reqs[i].calls > 0;
    if (done == n) break;
    assert_int_not_equal(uv_run(loop, UV_RUN_ONCE) + 1, 0);
  }
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(reqs[i].calls, 1);
    assert_int_equal(reqs[i].inline_calls, 0);
  }
}

static inline void t_sleep_ms(unsigned ms) {
  uv_sleep(ms);
}

#endif
