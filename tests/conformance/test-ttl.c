/* Cases 25-32: per-entry TTL (CONFORMANCE.md, "TTL"). These use real time:
 * an entry written at t with TTL d is expired when t + d <= now, with
 * millisecond precision on every store. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance.h"

/* ttl(c, k): returns found; *ttl_out the remaining seconds. Checks the value
 * when found. */
static int ttl_of(conf_t *fx, const char *c, const char *k, const char *v,
                  double *ttl_out) {
  conf_req_t r;
  int found;

  CHECK_OK(run_ttl(fx, &r, c, k));
  found = r.req.found;
  *ttl_out = r.req.ttl;
  if (found && v != NULL) CHECK_BYTES(r.req.value, v, strlen(v));
  kv_req_cleanup(&r.req);
  return found;
}

static int found_now(conf_t *fx, const char *c, const char *k) {
  conf_req_t r;
  int found;

  CHECK_OK(run_get(fx, &r, c, k));
  found = r.req.found;
  kv_req_cleanup(&r.req);
  return found;
}

#define CHECK_RANGE(x, lo, hi)                                                 \
  do {                                                                         \
    double x_ = (x);                                                           \
    if (!(x_ >= (lo) && x_ <= (hi)))                                           \
      conf_fail_at(__FILE__, __LINE__, "%s is %.6f, expected within [%g, %g]", \
                   #x, x_, (double)(lo), (double)(hi));                        \
  } while (0)

void c25_ttl_remaining(void **state) {
  conf_t *fx = FX(state);
  static const char *const keys[] = {K1, K2};
  conf_req_t r;
  double ttl;

  PUT_TTL(fx, COLL, K1, V, 100);
  if (!fx->retains) {
    CHECK_INT(ttl_of(fx, COLL, K1, NULL, &ttl), 0);
    EXPECT_MISSING(fx, COLL, K1);
    return;
  }
  CHECK_INT(ttl_of(fx, COLL, K1, V, &ttl), 1);
  CHECK_RANGE(ttl, 98, 100);
  EXPECT_VALUE(fx, COLL, K1, V);
  /* ttl_many: the same, and a missing slot. */
  CHECK_OK(run_ttl_many(fx, &r, COLL, keys, 2));
  CHECK_INT(r.req.nresults, 2);
  CHECK_INT(r.req.results[0].found, 1);
  CHECK_BYTES(r.req.results[0].value, V, 4);
  CHECK_RANGE(r.req.results[0].ttl, 98, 100);
  CHECK_INT(r.req.results[1].found, 0);
  kv_req_cleanup(&r.req);
  /* An entry without expiry reports KV_TTL_NONE. */
  PUT(fx, COLL, K2, V2);
  CHECK_INT(ttl_of(fx, COLL, K2, V2, &ttl), 1);
  CHECK_TRUE(ttl == KV_TTL_NONE);
  /* put_many: one TTL and one timestamp for the batch, so one ttl_many
   * reports the same remaining time for every entry. */
  {
    static const char *const batch[] = {"batch_1", "batch_2", "batch_3"};
    static const kv_buf_t vals[] = {
        {(char *)V, 4}, {(char *)V2, 6}, {(char *)V, 4}};
    CHECK_OK(run_put_many(fx, &r, COLL, batch, vals, 3, 100));
    kv_req_cleanup(&r.req);
    CHECK_OK(run_ttl_many(fx, &r, COLL, batch, 3));
    CHECK_INT(r.req.nresults, 3);
    CHECK_RANGE(r.req.results[0].ttl, 98, 100);
    CHECK_TRUE(r.req.results[0].ttl == r.req.results[1].ttl);
    CHECK_TRUE(r.req.results[0].ttl == r.req.results[2].ttl);
    CHECK_BYTES(r.req.results[1].value, V2, 6);
    kv_req_cleanup(&r.req);
  }
}

void c26_ttl_two_seconds_expires(void **state) {
  conf_t *fx = FX(state);
  int64_t t0 = conf_now_ms();
  int64_t now;
  int found = 1;

  PUT_TTL(fx, COLL, K1, V, 2);
  if (!fx->retains) {
    EXPECT_MISSING(fx, COLL, K1);
    return;
  }
  EXPECT_VALUE(fx, COLL, K1, V);
  conf_sleep_ms(fx, 1000);
  for (;;) {
    found = found_now(fx, COLL, K1);
    now = conf_now_ms();
    if (!found) break;
    if (now - t0 >= 3000) break;
    conf_sleep_ms(fx, 250);
  }
  if (found)
    conf_fail_at(__FILE__, __LINE__, "a 2 s entry is still there after %lld ms",
                 (long long)(now - t0));
  /* Never early: it was written after t0, so it cannot expire before
   * t0 + 2 s (2 ms of clock granularity allowed). */
  if (now - t0 < 1998)
    conf_fail_at(__FILE__, __LINE__, "a 2 s entry expired after only %lld ms",
                 (long long)(now - t0));
}

void c27_ttl_subsecond_precision(void **state) {
  conf_t *fx = FX(state);
  int64_t t0 = conf_now_ms();
  int64_t elapsed;
  double ttl;
  int found;

  PUT_TTL(fx, COLL, K1, V, 0.3);
  found = ttl_of(fx, COLL, K1, V, &ttl);
  elapsed = conf_now_ms() - t0;
  if (!fx->retains) {
    CHECK_INT(found, 0);
    return;
  }
  if (elapsed < 290) {
    CHECK_INT(found, 1);
    /* Milliseconds, not whole seconds: at most 0.3 remain. */
    CHECK_RANGE(ttl, 0.0005, 0.3);
  }
  conf_sleep_ms(fx, (uint64_t)(elapsed < 500 ? 500 - elapsed : 0));
  EXPECT_MISSING(fx, COLL, K1);
  CHECK_INT(ttl_of(fx, COLL, K1, NULL, &ttl), 0);
}

void c28_ttl_microsecond_rounds_up(void **state) {
  conf_t *fx = FX(state);
  static const char *const keys[] = {K2};
  static const kv_buf_t vals[] = {{(char *)V2, 6}};
  conf_req_t r;
  double ttl;

  /* Stored (not rejected), and with an expiry, never "none". */
  PUT_TTL(fx, COLL, K1, V, 1e-6);
  CHECK_OK(run_put_many(fx, &r, COLL, keys, vals, 1, 1e-6));
  kv_req_cleanup(&r.req);
  if (ttl_of(fx, COLL, K1, V, &ttl)) {
    CHECK_TRUE(fx->retains);
    CHECK_TRUE(ttl != KV_TTL_NONE);
    CHECK_RANGE(ttl, 1e-7, 0.001);
  }
  conf_sleep_ms(fx, 20);
  EXPECT_MISSING(fx, COLL, K1);
  EXPECT_MISSING(fx, COLL, K2);
  CHECK_INT(ttl_of(fx, COLL, K1, NULL, &ttl), 0);
  CHECK_INT(ttl_of(fx, COLL, K2, NULL, &ttl), 0);
}

void c29_ttl_forty_days(void **state) {
  conf_t *fx = FX(state);
  double ttl;

  PUT_TTL(fx, COLL, K1, V, 3456000);
  EXPECT_READ(fx, COLL, K1, V);
  if (!fx->retains) {
    CHECK_INT(ttl_of(fx, COLL, K1, NULL, &ttl), 0);
    return;
  }
  CHECK_INT(ttl_of(fx, COLL, K1, V, &ttl), 1);
  CHECK_RANGE(ttl, 3455990, 3456000);
  /* The largest accepted TTL is accepted and reported. */
  PUT_TTL(fx, COLL, K2, V2, KV_TTL_MAX);
  CHECK_INT(ttl_of(fx, COLL, K2, V2, &ttl), 1);
  CHECK_RANGE(ttl, KV_TTL_MAX - 10, KV_TTL_MAX);
}

void c30_invalid_ttls_rejected(void **state) {
  conf_t *fx = FX(state);
  const double bad[] = {-1,       -1e-9,     NAN,  -NAN,
                        INFINITY, -INFINITY, 1e11, KV_TTL_MAX * (1 + 1e-9)};
  static const char *const keys[] = {K2, K3};
  static const kv_buf_t vals[] = {{(char *)V, 4}, {(char *)V2, 6}};
  conf_req_t r;
  double ttl;
  size_t i;

  PUT(fx, COLL, K1, V); /* existing, without expiry: must stay so */
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    print_message("  ttl %g\n", bad[i]);
    CHECK_STATUS(run_put(fx, &r, COLL, K1, V2, 6, bad[i]), KV_EINVAL);
    kv_req_cleanup(&r.req);
    CHECK_STATUS(run_put(fx, &r, COLL, K2, V2, 6, bad[i]), KV_EINVAL);
    kv_req_cleanup(&r.req);
    CHECK_STATUS(run_put_many(fx, &r, COLL, keys, vals, 2, bad[i]), KV_EINVAL);
    kv_req_cleanup(&r.req);
    if (HAS(fx, KV_CAP_ATOMIC)) {
      CHECK_STATUS(run_put_if_absent(fx, &r, COLL, K2, V, 4, bad[i]),
                   KV_EINVAL);
      kv_req_cleanup(&r.req);
      CHECK_STATUS(run_cas(fx, &r, COLL, K1, V, 4, V2, 6, bad[i]), KV_EINVAL);
      kv_req_cleanup(&r.req);
      CHECK_STATUS(run_incr(fx, &r, COLL, K3, 1, bad[i]), KV_EINVAL);
      kv_req_cleanup(&r.req);
    }
  }
  EXPECT_MISSING(fx, COLL, K2);
  EXPECT_MISSING(fx, COLL, K3);
  EXPECT_READ(fx, COLL, K1, V);
  if (fx->retains) {
    CHECK_INT(ttl_of(fx, COLL, K1, V, &ttl), 1);
    CHECK_TRUE(ttl == KV_TTL_NONE);
  }
}

void c31_put_without_ttl_clears_expiry(void **state) {
  conf_t *fx = FX(state);
  static const char *const keys[] = {K2};
  static const kv_buf_t vals[] = {{(char *)V2, 6}};
  conf_req_t r;
  double ttl;

  PUT_TTL(fx, COLL, K1, V, 100);
  PUT(fx, COLL, K1, V2);
  /* Likewise through put_many. */
  PUT_TTL(fx, COLL, K2, V, 100);
  CHECK_OK(run_put_many(fx, &r, COLL, keys, vals, 1, KV_TTL_NONE));
  kv_req_cleanup(&r.req);
  if (!fx->retains) {
    CHECK_INT(ttl_of(fx, COLL, K1, NULL, &ttl), 0);
    CHECK_INT(ttl_of(fx, COLL, K2, NULL, &ttl), 0);
    return;
  }
  CHECK_INT(ttl_of(fx, COLL, K1, V2, &ttl), 1);
  CHECK_TRUE(ttl == KV_TTL_NONE);
  CHECK_INT(ttl_of(fx, COLL, K2, V2, &ttl), 1);
  CHECK_TRUE(ttl == KV_TTL_NONE);
  /* And the other way: a TTL on an entry that had none. */
  PUT_TTL(fx, COLL, K1, V, 50);
  CHECK_INT(ttl_of(fx, COLL, K1, V, &ttl), 1);
  CHECK_RANGE(ttl, 48, 50);
}

void c32_expired_not_listed_and_culled(void **state) {
  conf_t *fx = FX(state);
  static const char *const keys[] = {"expiring", "live"};
  conf_req_t r;
  char **names;
  size_t n;

  PUT_TTL(fx, COLL, "expiring", V, 0.05);
  PUT(fx, COLL, "live", V2);
  PUT_TTL(fx, "other_coll", "expiring", V, 0.05);
  PUT(fx, "other_coll", "live", V2);
  conf_sleep_ms(fx, 150);

  EXPECT_MISSING(fx, COLL, "expiring");
  EXPECT_MISSING(fx, "other_coll", "expiring");
  CHECK_OK(run_ttl_many(fx, &r, COLL, keys, 2));
  CHECK_INT(r.req.nresults, 2);
  CHECK_INT(r.req.results[0].found, 0);
  CHECK_INT(r.req.results[1].found, fx->retains);
  kv_req_cleanup(&r.req);

  if (HAS(fx, KV_CAP_ENUMERATE)) {
    names = LIST_KEYS(fx, COLL, 0, &n);
    CHECK_INT(n, fx->retains ? 1 : 0);
    if (n == 1) CHECK_INT(strcmp(names[0], "live"), 0);
    names_free(names, n);
  } else {
    CHECK_STATUS(run_keys(fx, &r, COLL, NULL, 0), KV_ENOTSUP);
    kv_req_cleanup(&r.req);
  }

  if (HAS(fx, KV_CAP_CULL)) {
    CHECK_OK(run_cull(fx, &r));
    /* At most the two expired entries were removed (0 when the store does
     * not count, or a background sweep was first). */
    if (r.req.count > 2)
      conf_fail_at(__FILE__, __LINE__,
                   "cull removed %zu entries, only 2 expired", r.req.count);
    kv_req_cleanup(&r.req);
    EXPECT_READ(fx, COLL, "live", V2);
    EXPECT_READ(fx, "other_coll", "live", V2);
    EXPECT_MISSING(fx, COLL, "expiring");
    /* A second cull finds nothing left to remove. */
    CHECK_OK(run_cull(fx, &r));
    CHECK_INT(r.req.count, 0);
    kv_req_cleanup(&r.req);
    if (HAS(fx, KV_CAP_ENUMERATE)) {
      names = LIST_KEYS(fx, "other_coll", 0, &n);
      CHECK_INT(n, fx->retains ? 1 : 0);
      if (n == 1) CHECK_INT(strcmp(names[0], "live"), 0);
      names_free(names, n);
    }
  } else {
    CHECK_STATUS(run_cull(fx, &r), KV_ENOTSUP);
    kv_req_cleanup(&r.req);
  }
}
