/* Helpers shared by the fault tests (tests/faults/test-*.c): requests with
 * bookkeeping, a bounded loop runner and URL templates.
 *
 * Every wait here is bounded by a timer of its own: a store that never
 * answers fails the test with "hang" instead of relying on ctest's timeout.
 */
#ifndef KV_FAULTS_H
#define KV_FAULTS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvio.h"

/* A request that counts its callbacks. */
typedef struct fault_req_s {
  kv_req_t req;
  int calls;      /* callbacks run (must end at exactly 1) */
  long *counter;  /* incremented by each callback, may be NULL */
  uint64_t t_sub; /* uv_hrtime() at submit */
  uint64_t t_end; /* uv_hrtime() in the callback */
} fault_req_t;

static inline void fault_req_cb(kv_req_t *req) {
  fault_req_t *r = (fault_req_t *)req; /* req is the first member */
  r->calls++;
  r->t_end = uv_hrtime();
  if (r->counter != NULL) (*r->counter)++;
}

/* Prepare `r` for a submit. It must hold no results (fresh, or cleaned up
 * with kv_req_cleanup). */
static inline void fault_req_init(fault_req_t *r, long *counter) {
  memset(r, 0, sizeof(*r));
  r->counter = counter;
  r->t_sub = uv_hrtime();
}

static inline void fault_timer_cb(uv_timer_t *t) {
  *(int *)t->data = 1;
}

/* Run `loop` until *count >= target or timeout_ms pass. Returns 0, or -1 on
 * timeout (the loop is left as it is: the caller fails). */
static inline int fault_run_until(uv_loop_t *loop, const long *count,
                                  long target, uint64_t timeout_ms) {
  uv_timer_t timer;
  int expired = 0;
  uv_timer_init(loop, &timer);
  timer.data = &expired;
  uv_timer_start(&timer, fault_timer_cb, timeout_ms, 0);
  while (*count < target && !expired)
    uv_run(loop, UV_RUN_ONCE);
  uv_timer_stop(&timer);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(loop, UV_RUN_NOWAIT); /* the timer's close */
  return *count >= target ? 0 : -1;
}

/* Replace every `token` in `tmpl` by `value`; malloc'ed. */
static inline char *fault_subst(const char *tmpl, const char *token,
                                const char *value) {
  size_t tl = strlen(token), vl = strlen(value), n = 1;
  const char *p;
  char *out, *o;
  for (p = tmpl; (p = strstr(p, token)) != NULL; p += tl)
    n += vl;
  out = malloc(strlen(tmpl) + n);
  if (out == NULL) abort();
  o = out;
  while ((p = strstr(tmpl, token)) != NULL) {
    memcpy(o, tmpl, (size_t)(p - tmpl));
    o += p - tmpl;
    memcpy(o, value, vl);
    o += vl;
    tmpl = p + tl;
  }
  strcpy(o, tmpl);
  return out;
}

#endif
