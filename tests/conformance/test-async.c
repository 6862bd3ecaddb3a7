/* Cases 41-44: the async contract (CONFORMANCE.md, "The async contract";
 * include/kvio.h rules 1-4). These submit raw requests and count callbacks
 * instead of going through the run_* helpers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance.h"

static int in_submit; /* set around every submit of cases 41 and 42 */

static void flagged_cb(kv_req_t *req) {
  conf_req_t *r = req->data;

  if (in_submit)
    conf_error(r->fx, "op %d: callback ran inside the submit", (int)req->op);
  conf_cb(req);
}

/* A submit that is expected to be accepted (expect 0), or refused with
 * `expect`, for ops the store may not support: KV_ENOTSUP when it lacks
 * `cap`. */
#define SUBMIT(fx, r, cap, call)                                             \
  do {                                                                       \
    int rc_;                                                                 \
    conf_req_init((fx), (r));                                                \
    in_submit = 1;                                                           \
    rc_ = (call);                                                            \
    in_submit = 0;                                                           \
    if ((cap) == 0 || HAS((fx), (cap))) {                                    \
      conf_check_status(rc_, 0, #call, __FILE__, __LINE__);                  \
      (fx)->submitted++;                                                     \
      (r)->user = (r); /* accepted: must call back once */                   \
    } else {                                                                 \
      conf_check_status(rc_, KV_ENOTSUP, #call, __FILE__, __LINE__);         \
    }                                                                        \
    if ((r)->calls != 0)                                                     \
      conf_fail_at(__FILE__, __LINE__, "%s: callback ran inside the submit", \
                   #call);                                                   \
  } while (0)

void c41_no_callback_inside_submit(void **state) {
  conf_t *fx = FX(state);
  static const char *const keys[] = {K1, K2};
  static const kv_buf_t vals[] = {{(char *)V, 4}, {(char *)V2, 6}};
  /* On the heap: if a case fails half-way, pending requests must not point
   * into a dead stack frame when teardown runs the loop. */
  conf_req_t *r = calloc(24, sizeof(*r));
  kv_store_t *s = fx->store;
  int i;

  assert_non_null(r);
  /* Answers a memory store knows at once: a hit, a miss, n = 0. */
  PUT(fx, COLL, K1, V);
  PUT(fx, COLL, "counter", "1");
  fx->completed = fx->submitted = 0;
  i = 0;
  SUBMIT(fx, &r[i], 0, kv_get(s, &r[i].req, COLL, K1, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0, kv_get(s, &r[i].req, COLL, "nope", flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0, kv_ttl(s, &r[i].req, COLL, K1, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0, kv_put(s, &r[i].req, COLL, K2, V2, 6, 0, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0, kv_delete(s, &r[i].req, COLL, "nope", flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0, kv_get_many(s, &r[i].req, COLL, keys, 2, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0, kv_get_many(s, &r[i].req, COLL, keys, 0, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0, kv_ttl_many(s, &r[i].req, COLL, keys, 2, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0,
         kv_put_many(s, &r[i].req, COLL, keys, vals, 2, 0, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0,
         kv_put_many(s, &r[i].req, COLL, keys, vals, 0, 0, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0, kv_delete_many(s, &r[i].req, COLL, keys, 0, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], KV_CAP_ENUMERATE,
         kv_keys(s, &r[i].req, COLL, NULL, 0, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], KV_CAP_ENUMERATE,
         kv_collections(s, &r[i].req, NULL, 0, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], KV_CAP_CULL, kv_cull(s, &r[i].req, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], KV_CAP_ATOMIC,
         kv_put_if_absent(s, &r[i].req, COLL, K1, V, 4, 0, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], KV_CAP_ATOMIC,
         kv_cas(s, &r[i].req, COLL, K1, "wrong", 5, V, 4, 0, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], KV_CAP_ATOMIC,
         kv_incr(s, &r[i].req, COLL, "counter", 1, 0, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], KV_CAP_ATOMIC,
         kv_take(s, &r[i].req, COLL, "nope", flagged_cb));
  i++;
  SUBMIT(fx, &r[i], KV_CAP_DESTROY,
         kv_destroy_collection(s, &r[i].req, "other", flagged_cb));
  i++;
  SUBMIT(fx, &r[i], 0, kv_delete_many(s, &r[i].req, COLL, keys, 2, flagged_cb));
  i++;
  SUBMIT(fx, &r[i], KV_CAP_DESTROY, kv_destroy(s, &r[i].req, flagged_cb));
  i++;

  /* Nothing ran before the loop did. */
  CHECK_INT(fx->completed, 0);
  conf_run_until(fx, &fx->completed, fx->submitted);
  CHECK_NO_ERRORS(fx);
  while (i-- > 0) {
    CHECK_INT(r[i].calls, r[i].user != NULL ? 1 : 0);
    kv_req_cleanup(&r[i].req);
  }
  free(r);
}

/* A submit that must fail with `expect` and never call back. */
#define REFUSE(fx, r, expect, call)                                   \
  do {                                                                \
    int rc_;                                                          \
    const char *msg_;                                                 \
    conf_req_init((fx), (r));                                         \
    in_submit = 1;                                                    \
    rc_ = (call);                                                     \
    in_submit = 0;                                                    \
    conf_check_status(rc_, (expect), #call, __FILE__, __LINE__);      \
    msg_ = kv_req_errmsg(&(r)->req);                                  \
    if (msg_ == NULL || msg_[0] == '\0')                              \
      conf_fail_at(__FILE__, __LINE__, "%s: no error detail", #call); \
    if ((r)->calls != 0)                                              \
      conf_fail_at(__FILE__, __LINE__, "%s: callback ran", #call);    \
  } while (0)

void c42_failed_submit_never_calls_back(void **state) {
  conf_t *fx = FX(state);
  static const char *const bad_keys[] = {K1, ""};
  static const kv_buf_t vals[] = {{(char *)V, 4}, {(char *)V2, 6}};
  conf_req_t *r = calloc(32, sizeof(*r)); /* heap: see case 41 */
  kv_store_t *s = fx->store;
  int n = 0;
  int i;

  assert_non_null(r);

  REFUSE(fx, &r[n], KV_EINVAL, kv_get(s, &r[n].req, COLL, "", conf_cb));
  n++;
  REFUSE(fx, &r[n], KV_EINVAL, kv_get(s, &r[n].req, COLL, NULL, conf_cb));
  n++;
  REFUSE(fx, &r[n], KV_EINVAL, kv_ttl(s, &r[n].req, "\xff", K1, conf_cb));
  n++;
  REFUSE(fx, &r[n], KV_EINVAL,
         kv_put(s, &r[n].req, COLL, K1, V, 4, -5, conf_cb));
  n++;
  REFUSE(fx, &r[n], KV_EINVAL,
         kv_put(s, &r[n].req, COLL, "\xc3", V, 4, 0, conf_cb));
  n++;
  REFUSE(fx, &r[n], KV_EINVAL,
         kv_put(s, &r[n].req, COLL, K1, NULL, 4, 0, conf_cb));
  n++;
  REFUSE(fx, &r[n], KV_EINVAL, kv_delete(s, &r[n].req, COLL, "", conf_cb));
  n++;
  REFUSE(fx, &r[n], KV_EINVAL,
         kv_get_many(s, &r[n].req, COLL, bad_keys, 2, conf_cb));
  n++;
  REFUSE(fx, &r[n], KV_EINVAL,
         kv_put_many(s, &r[n].req, COLL, bad_keys, vals, 2, 0, conf_cb));
  n++;
  REFUSE(fx, &r[n], KV_EINVAL,
         kv_delete_many(s, &r[n].req, COLL, bad_keys, 2, conf_cb));
  n++;
  if (HAS(fx, KV_CAP_ENUMERATE)) {
    REFUSE(fx, &r[n], KV_EINVAL,
           kv_keys(s, &r[n].req, "\xff", NULL, 0, conf_cb));
    n++;
  } else {
    REFUSE(fx, &r[n], KV_ENOTSUP,
           kv_keys(s, &r[n].req, COLL, NULL, 0, conf_cb));
    n++;
    REFUSE(fx, &r[n], KV_ENOTSUP,
           kv_collections(s, &r[n].req, NULL, 0, conf_cb));
    n++;
  }
  if (!HAS(fx, KV_CAP_DESTROY)) {
    REFUSE(fx, &r[n], KV_ENOTSUP, kv_destroy(s, &r[n].req, conf_cb));
    n++;
  }
  if (!HAS(fx, KV_CAP_CULL)) {
    REFUSE(fx, &r[n], KV_ENOTSUP, kv_cull(s, &r[n].req, conf_cb));
    n++;
  }
  if (HAS(fx, KV_CAP_ATOMIC)) {
    REFUSE(fx, &r[n], KV_EINVAL,
           kv_incr(s, &r[n].req, COLL, K1, 1, INFINITY, conf_cb));
    n++;
  } else {
    REFUSE(fx, &r[n], KV_ENOTSUP, kv_take(s, &r[n].req, COLL, K1, conf_cb));
    n++;
  }

  /* Run the loop dry: not one of them calls back. */
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  CHECK_INT(fx->completed, 0);
  CHECK_NO_ERRORS(fx);
  for (i = 0; i < n; i++) {
    CHECK_INT(r[i].calls, 0);
    kv_req_cleanup(&r[i].req);
    kv_req_cleanup(&r[i].req); /* twice is safe */
  }
  /* A refused request can be reused at once. */
  CHECK_OK(run_put(fx, &r[0], COLL, K1, V, 4, 0));
  kv_req_cleanup(&r[0].req);
  EXPECT_READ(fx, COLL, K1, V);
  free(r);
}

/* ---- Case 43: close with requests in flight --------------------------------
 */

static long completed_at_close;

static void count_close_cb(kv_store_t *store) {
  conf_t *fx = conf_current;

  (void)store;
  fx->close_cb_calls++;
  completed_at_close = fx->completed;
}

/* Checks for a store that has been closed by the test: every request done
 * once, 0 or KV_ECANCELED, the close callback after the last of them, the
 * loop left with nothing alive. */
static void walk_count(uv_handle_t *h, void *arg) {
  (void)h;
  (*(int *)arg)++;
}

static void check_closed(conf_t *fx, conf_req_t *reqs, int n, int *statuses,
                         int line) {
  int handles = 0;
  int i;

  CHECK_INT(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  CHECK_NO_ERRORS(fx);
  if (fx->close_cb_calls != 1)
    conf_fail_at(__FILE__, line, "close callback ran %d times",
                 fx->close_cb_calls);
  fx->store = NULL;
  if (completed_at_close != fx->submitted)
    conf_fail_at(__FILE__, line,
                 "close callback ran after %ld of %ld completions",
                 completed_at_close, fx->submitted);
  for (i = 0; i < n; i++) {
    int st = reqs[i].req.status;
    if (reqs[i].calls != 1)
      conf_fail_at(__FILE__, line, "request %d: %d callbacks", i,
                   reqs[i].calls);
    if (st != 0 && st != KV_ECANCELED)
      conf_fail_at(__FILE__, line, "request %d: status %s", i, kv_err_name(st));
    if (statuses != NULL) statuses[i] = st;
    kv_req_cleanup(&reqs[i].req);
  }
  CHECK_INT(fx->completed, fx->submitted);
  CHECK_INT(uv_loop_alive(&fx->loop), 0);
  uv_walk(&fx->loop, walk_count, &handles);
  CHECK_INT(handles, 0); /* so uv_loop_close() will return 0 (teardown) */
}

void c43_close_with_requests_in_flight(void **state) {
  conf_t *fx = FX(state);
  enum { N = 1000 };
  conf_req_t *reqs = calloc(N, sizeof(*reqs));
  int *statuses = calloc(N, sizeof(*statuses));
  conf_req_t *late = calloc(1, sizeof(*late)); /* heap: see case 41 */
  static const char *const keys[] = {K1, K2};
  static const kv_buf_t vals[] = {{(char *)V, 4}, {(char *)V2, 6}};
  kv_store_t *s = fx->store;
  char key[32];
  int canceled = 0;
  int i;

  assert_non_null(reqs);
  assert_non_null(statuses);
  assert_non_null(late);
  PUT(fx, COLL, K1, V);
  fx->completed = fx->submitted = 0;
  completed_at_close = -1;
  for (i = 0; i < N; i++) {
    kv_req_t *req = &reqs[i].req;
    int rc;

    conf_req_init(fx, &reqs[i]);
    snprintf(key, sizeof(key), "inflight_%d", i);
    switch (i % 4) {
    case 0:
      rc = kv_put(s, req, COLL, key, key, strlen(key), 0, conf_cb);
      break;
    case 1:
      rc = kv_get(s, req, COLL, K1, conf_cb);
      break;
    case 2:
      rc = kv_put_many(s, req, COLL, keys, vals, 2, 0, conf_cb);
      break;
    default:
      rc = HAS(fx, KV_CAP_ENUMERATE) ? kv_keys(s, req, COLL, NULL, 5, conf_cb)
                                     : kv_delete(s, req, COLL, key, conf_cb);
      break;
    }
    CHECK_OK(rc);
    fx->submitted++;
  }
  CHECK_OK(kv_store_close(s, count_close_cb));
  /* Closing is one-way: a second close and any new submit are refused. */
  CHECK_STATUS(kv_store_close(s, count_close_cb), KV_ECLOSED);
  conf_req_init(fx, late);
  CHECK_STATUS(kv_get(s, &late->req, COLL, K1, conf_cb), KV_ECLOSED);
  kv_req_cleanup(&late->req);
  CHECK_INT(fx->close_cb_calls, 0); /* not from inside kv_store_close */
  check_closed(fx, reqs, N, statuses, __LINE__);
  CHECK_INT(late->calls, 0);
  free(late);
  for (i = 0; i < N; i++)
    canceled += reqs[i].req.status == KV_ECANCELED;
  print_message("[   NOTE   ] %s: %d of %d in-flight requests canceled\n",
                conf_url, canceled, N);
  /* Nothing acknowledged as written is lost: every put that completed with
   * status 0 is there after reopening a persistent store. */
  if (HAS(fx, KV_CAP_PERSISTENT)) {
    conf_open(fx);
    fx->close_cb_calls = 0;
    for (i = 0; i < N; i += 4) {
      if (statuses[i] != 0) continue;
      snprintf(key, sizeof(key), "inflight_%d", i);
      EXPECT_VALUE(fx, COLL, key, key);
    }
  }
  free(statuses);
  free(reqs);
}

/* ---- Case 44: close from inside a callback ---------------------------------
 */

static void close_inside_cb(kv_req_t *req) {
  conf_req_t *r = req->data;
  conf_t *fx = r->fx;
  conf_req_t *late = r->user;

  conf_cb(req);
  if (kv_store_close(req->store, count_close_cb) != 0)
    conf_error(fx, "kv_store_close inside a callback failed");
  if (fx->close_cb_calls != 0)
    conf_error(fx, "close callback ran inside kv_store_close");
  /* The store is closing: a submit from here is refused at once. */
  if (late != NULL) {
    conf_req_init(fx, late);
    if (kv_get(req->store, &late->req, COLL, K1, conf_cb) != KV_ECLOSED)
      conf_error(fx, "a submit inside the closing callback was not ECLOSED");
    kv_req_cleanup(&late->req);
  }
}

void c44_close_from_inside_callback(void **state) {
  conf_t *fx = FX(state);
  conf_req_t *reqs = calloc(8, sizeof(*reqs)); /* heap: see case 41 */
  conf_req_t late;
  kv_store_t *s = fx->store;
  char key[32];
  int i;

  assert_non_null(reqs);
  /* 1: the first of eight requests closes the store; the other seven are
   * still pending. */
  PUT(fx, COLL, K1, V);
  fx->completed = fx->submitted = 0;
  completed_at_close = -1;
  memset(&late, 0, sizeof(late));
  for (i = 0; i < 8; i++) {
    conf_req_init(fx, &reqs[i]);
    snprintf(key, sizeof(key), "k%d", i);
    if (i == 0) {
      reqs[i].user = &late;
      CHECK_OK(kv_get(s, &reqs[i].req, COLL, K1, close_inside_cb));
    } else if (i % 2) {
      CHECK_OK(kv_put(s, &reqs[i].req, COLL, key, V, 4, 0, conf_cb));
    } else {
      CHECK_OK(kv_get(s, &reqs[i].req, COLL, key, conf_cb));
    }
    fx->submitted++;
  }
  check_closed(fx, reqs, 8, NULL, __LINE__);
  CHECK_INT(late.calls, 0);

  /* 2: the only pending request closes the store from its callback. */
  conf_open(fx);
  s = fx->store;
  fx->close_cb_calls = 0;
  fx->completed = fx->submitted = 0;
  completed_at_close = -1;
  conf_req_init(fx, &reqs[0]);
  CHECK_OK(kv_put(s, &reqs[0].req, COLL, K1, V, 4, 0, close_inside_cb));
  fx->submitted++;
  check_closed(fx, reqs, 1, NULL, __LINE__);

  /* The loop is reusable: a new store opens on it and works. */
  conf_open(fx);
  fx->close_cb_calls = 0;
  PUT(fx, COLL, K1, V);
  EXPECT_READ(fx, COLL, K1, V);
  free(reqs);
}
