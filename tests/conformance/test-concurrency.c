/* Cases 38-40: eviction and concurrency (CONFORMANCE.md, "Eviction and
 * concurrency"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance.h"

static size_t count_keys(conf_t *fx, const char *c) {
  char **names;
  size_t n;

  names = LIST_KEYS(fx, c, 0, &n);
  names_free(names, n);
  return n;
}

/* Submit `n` puts of "<prefix>_<i>" at once and wait for all of them. */
static void put_in_flight(conf_t *fx, const char *c, const char *prefix,
                          int n) {
  conf_req_t *reqs = calloc((size_t)n, sizeof(*reqs));
  char key[64];
  long target = fx->completed + n;
  int i;

  assert_non_null(reqs);
  for (i = 0; i < n; i++) {
    conf_req_init(fx, &reqs[i]);
    snprintf(key, sizeof(key), "%s_%04d", prefix, i);
    CHECK_OK(
        kv_put(fx->store, &reqs[i].req, c, key, key, strlen(key), 0, conf_cb));
    fx->submitted++;
  }
  conf_run_until(fx, &fx->completed, target);
  for (i = 0; i < n; i++) {
    CHECK_INT(reqs[i].calls, 1);
    CHECK_OK(reqs[i].req.status);
    kv_req_cleanup(&reqs[i].req);
  }
  free(reqs);
}

void c38_eviction(void **state) {
  conf_t *fx = FX(state);
  char key[64];
  int64_t m = fx->max_entries;
  int64_t i;

  PUT(fx, "bystander", K1, V); /* another collection's entry */
  if (m <= 0) {
    /* Unbounded: 1,000 puts evict nothing. */
    put_in_flight(fx, "lru", "evict", 1000);
    EXPECT_READ(fx, "lru", "evict_0000", "evict_0000");
    EXPECT_READ(fx, "lru", "evict_0999", "evict_0999");
    EXPECT_READ(fx, "lru", "evict_0500", "evict_0500");
    EXPECT_READ(fx, "bystander", K1, V);
    if (HAS(fx, KV_CAP_ENUMERATE))
      CHECK_INT(count_keys(fx, "lru"), fx->retains ? 1000 : 0);
    return;
  }
  CHECK_TRUE(fx->retains);
  if (m > 5000)
    SKIP_BECAUSE("max_entries=%lld is too large to fill here", (long long)m);

  /* 2·max_entries puts (1,000 for max_entries=500): the first is gone, the
   * last is there, exactly max_entries remain, the bystander stays. */
  for (i = 0; i < 2 * m; i++) {
    snprintf(key, sizeof(key), "evict_%04lld", (long long)i);
    PUT(fx, "lru", key, key);
  }
  EXPECT_MISSING(fx, "lru", "evict_0000");
  snprintf(key, sizeof(key), "evict_%04lld", (long long)(2 * m - 1));
  EXPECT_VALUE(fx, "lru", key, key);
  snprintf(key, sizeof(key), "evict_%04lld", (long long)m);
  EXPECT_VALUE(fx, "lru", key, key);
  snprintf(key, sizeof(key), "evict_%04lld", (long long)(m - 1));
  EXPECT_MISSING(fx, "lru", key);
  EXPECT_VALUE(fx, "bystander", K1, V);
  if (HAS(fx, KV_CAP_ENUMERATE)) {
    CHECK_INT(count_keys(fx, "lru"), m);
    CHECK_INT(count_keys(fx, "bystander"), 1);
  }

  /* A read refreshes recency: fill "lru2", read the oldest, add one more;
   * the second oldest goes instead. */
  for (i = 0; i < m; i++) {
    snprintf(key, sizeof(key), "recent_%04lld", (long long)i);
    PUT(fx, "lru2", key, key);
  }
  EXPECT_VALUE(fx, "lru2", "recent_0000", "recent_0000");
  PUT(fx, "lru2", "newcomer", "newcomer");
  EXPECT_VALUE(fx, "lru2", "recent_0000", "recent_0000");
  EXPECT_MISSING(fx, "lru2", "recent_0001");
  EXPECT_VALUE(fx, "lru2", "newcomer", "newcomer");
  EXPECT_VALUE(fx, "lru2", "recent_0002", "recent_0002");
  /* An overwrite is a write, not a new entry: nothing is evicted. */
  PUT(fx, "lru2", "recent_0003", "rewritten");
  EXPECT_VALUE(fx, "lru2", "recent_0004", "recent_0004");
  EXPECT_VALUE(fx, "bystander", K1, V);
}

/* ---- Case 39: three workers, five rounds each -----------------------------
 */

enum {
  W_GET_MISSING,
  W_PUT,
  W_GET,
  W_OVERWRITE,
  W_GET2,
  W_DELETE,
  W_GET_GONE,
  W_STEPS
};

typedef struct worker_s {
  conf_req_t r;
  int id;
  int round;
  int step;
  int done;
  char key[32];
  char v1[32];
  char v2[32];
} worker_t;

static void worker_cb(kv_req_t *req);

static void worker_submit(worker_t *w) {
  conf_t *fx = w->r.fx;
  kv_store_t *s = fx->store;
  int rc = 0;

  conf_req_init(fx, &w->r);
  w->r.user = w;
  snprintf(w->v1, sizeof(w->v1), "w%d_r%d_first", w->id, w->round);
  snprintf(w->v2, sizeof(w->v2), "w%d_r%d_second", w->id, w->round);
  switch (w->step) {
  case W_GET_MISSING:
  case W_GET:
  case W_GET2:
  case W_GET_GONE:
    rc = kv_get(s, &w->r.req, COLL, w->key, worker_cb);
    break;
  case W_PUT:
    rc = kv_put(s, &w->r.req, COLL, w->key, w->v1, strlen(w->v1), 0, worker_cb);
    break;
  case W_OVERWRITE:
    rc = kv_put(s, &w->r.req, COLL, w->key, w->v2, strlen(w->v2), 0, worker_cb);
    break;
  case W_DELETE:
    rc = kv_delete(s, &w->r.req, COLL, w->key, worker_cb);
    break;
  }
  if (rc != 0) {
    conf_error(fx, "worker %d round %d step %d: submit %s", w->id, w->round,
               w->step, kv_err_name(rc));
    w->done = 1;
    return;
  }
  fx->submitted++;
}

static void worker_check(worker_t *w) {
  conf_t *fx = w->r.fx;
  kv_req_t *req = &w->r.req;
  const char *want = NULL;
  int want_found = 0;

  if (req->status != 0) {
    conf_error(fx, "worker %d round %d step %d: %s", w->id, w->round, w->step,
               kv_err_name(req->status));
    return;
  }
  switch (w->step) {
  case W_GET:
    want = w->v1;
    break;
  case W_GET2:
    want = w->v2;
    break;
  case W_DELETE:
    want_found = fx->retains;
    break;
  default:
    break;
  }
  if (want != NULL && fx->retains) want_found = 1;
  if (w->step == W_PUT || w->step == W_OVERWRITE) return;
  if (req->found != want_found) {
    conf_error(fx, "worker %d round %d step %d: found %d, expected %d", w->id,
               w->round, w->step, req->found, want_found);
    return;
  }
  if (want_found && want != NULL &&
      (req->value.len != strlen(want) ||
       memcmp(req->value.base, want, req->value.len) != 0))
    conf_error(fx, "worker %d round %d step %d: got \"%.*s\", expected %s",
               w->id, w->round, w->step, (int)req->value.len, req->value.base,
               want);
}

static void worker_cb(kv_req_t *req) {
  worker_t *w = ((conf_req_t *)req->data)->user;

  conf_cb(req);
  worker_check(w);
  kv_req_cleanup(req);
  if (++w->step == W_STEPS) {
    w->step = 0;
    if (++w->round == 5) {
      w->done = 1;
      return;
    }
  }
  worker_submit(w);
}

void c39_concurrent_workers(void **state) {
  conf_t *fx = FX(state);
  worker_t workers[3];
  int i;

  memset(workers, 0, sizeof(workers));
  for (i = 0; i < 3; i++) {
    workers[i].id = i;
    workers[i].r.fx = fx;
    snprintf(workers[i].key, sizeof(workers[i].key), "worker_%d", i);
    worker_submit(&workers[i]);
  }
  while (!(workers[0].done && workers[1].done && workers[2].done)) {
    if (uv_run(&fx->loop, UV_RUN_ONCE) == 0 &&
        !(workers[0].done && workers[1].done && workers[2].done)) {
      fx->broken = 1;
      conf_fail_at(__FILE__, __LINE__, "the loop ended with workers waiting");
    }
  }
  CHECK_NO_ERRORS(fx);
  for (i = 0; i < 3; i++)
    CHECK_INT(workers[i].round, 5);
  CHECK_INT(fx->completed, 3 * 5 * W_STEPS);
}

/* ---- Case 40: 10,000 in flight ---------------------------------------------
 */

void c40_ten_thousand_in_flight(void **state) {
  conf_t *fx = FX(state);
  enum { N = 10000 };
  conf_req_t *reqs = calloc(N, sizeof(*reqs));
  static const char *const many[] = {"k_1", "k_2", "k_3"};
  static const kv_buf_t vals[] = {
      {(char *)"a", 1}, {(char *)"b", 1}, {(char *)"c", 1}};
  char key[32];
  int i;

  assert_non_null(reqs);
  for (i = 0; i < N; i++) {
    kv_req_t *req = &reqs[i].req;
    int rc = 0;

    conf_req_init(fx, &reqs[i]);
    snprintf(key, sizeof(key), "k_%d", i % 997);
    switch (i % 6) {
    case 0:
    case 1:
      rc = kv_put(fx->store, req, COLL, key, key, strlen(key), 0, conf_cb);
      break;
    case 2:
      rc = kv_get(fx->store, req, COLL, key, conf_cb);
      break;
    case 3:
      rc = kv_ttl(fx->store, req, COLL, key, conf_cb);
      break;
    case 4:
      rc = (i % 12 == 4)
               ? kv_get_many(fx->store, req, COLL, many, 3, conf_cb)
               : kv_put_many(fx->store, req, COLL, many, vals, 3, 0, conf_cb);
      break;
    case 5:
      rc = kv_delete(fx->store, req, COLL, key, conf_cb);
      break;
    }
    CHECK_OK(rc);
    fx->submitted++;
  }
  CHECK_INT(fx->completed, 0); /* nothing ran inside the submits */
  conf_run_until(fx, &fx->completed, N);
  CHECK_NO_ERRORS(fx);
  for (i = 0; i < N; i++) {
    if (reqs[i].calls != 1 || reqs[i].req.status != 0)
      conf_fail_at(__FILE__, __LINE__, "request %d: %d callbacks, status %s", i,
                   reqs[i].calls, kv_err_name(reqs[i].req.status));
    kv_req_cleanup(&reqs[i].req);
  }
  free(reqs);
  /* The store is still consistent and usable. */
  PUT(fx, COLL, K1, V);
  EXPECT_READ(fx, COLL, K1, V);
}
