/* Cases 1-14: the core protocol (CONFORMANCE.md, "Basic").
 *
 * Each case spells out what the null store must answer next to what a store
 * that retains data must answer: writes succeed, reads are missing, deletes
 * remove nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance.h"

static const char *const k12[] = {K1, K2};
static const char *const k123[] = {K1, K2, K3};
static const kv_buf_t v12[] = {{(char *)V, 4}, {(char *)V2, 6}};

static size_t delete_many(conf_t *fx, const char *const *keys, size_t n) {
  conf_req_t r;
  size_t count;

  CHECK_OK(run_delete_many(fx, &r, COLL, keys, n));
  count = r.req.count;
  kv_req_cleanup(&r.req);
  return count;
}

static void put_many(conf_t *fx, const char *const *keys, const kv_buf_t *vals,
                     size_t n) {
  conf_req_t r;

  CHECK_OK(run_put_many(fx, &r, COLL, keys, vals, n, 0));
  kv_req_cleanup(&r.req);
}

/* get_many(keys) must answer `expected` per slot (NULL = missing). */
static void check_get_many(conf_t *fx, const char *const *keys, size_t n,
                           const char *const *expected) {
  conf_req_t r;
  size_t i;

  CHECK_OK(run_get_many(fx, &r, COLL, keys, n));
  CHECK_INT(r.req.nresults, n);
  CHECK_TRUE(n == 0 || r.req.results != NULL);
  for (i = 0; i < n; i++) {
    const kv_result_t *res = &r.req.results[i];
    if (expected[i] == NULL) {
      if (res->found)
        conf_fail_at(__FILE__, __LINE__,
                     "get_many slot %zu (%s) found, expected missing", i,
                     keys[i]);
    } else {
      if (!res->found)
        conf_fail_at(__FILE__, __LINE__,
                     "get_many slot %zu (%s) missing, expected %s", i, keys[i],
                     expected[i]);
      CHECK_BYTES(res->value, expected[i], strlen(expected[i]));
    }
  }
  kv_req_cleanup(&r.req);
}

void c01_empty_store_is_missing(void **state) {
  conf_t *fx = FX(state);
  conf_req_t r;

  EXPECT_MISSING(fx, COLL, K1);
  EXPECT_MISSING(fx, NULL, K1);
  CHECK_OK(run_ttl(fx, &r, COLL, K1));
  CHECK_INT(r.req.found, 0);
  kv_req_cleanup(&r.req);
}

void c02_put_then_get(void **state) {
  conf_t *fx = FX(state);

  PUT(fx, COLL, K1, V);
  if (fx->retains) {
    EXPECT_VALUE(fx, COLL, K1, V);
  } else {
    /* null: the write succeeded and nothing was kept. */
    EXPECT_MISSING(fx, COLL, K1);
  }
}

void c03_get_put_get(void **state) {
  conf_t *fx = FX(state);

  EXPECT_MISSING(fx, COLL, K1);
  PUT(fx, COLL, K1, V);
  if (fx->retains)
    EXPECT_VALUE(fx, COLL, K1, V);
  else
    EXPECT_MISSING(fx, COLL, K1);
}

void c04_overwrite(void **state) {
  conf_t *fx = FX(state);

  PUT(fx, COLL, K1, V);
  PUT(fx, COLL, K1, V2);
  if (fx->retains)
    EXPECT_VALUE(fx, COLL, K1, V2);
  else
    EXPECT_MISSING(fx, COLL, K1);
}

void c05_put_get_delete(void **state) {
  conf_t *fx = FX(state);

  PUT(fx, COLL, K1, V);
  if (fx->retains) {
    EXPECT_VALUE(fx, COLL, K1, V);
    CHECK_INT(DELETE(fx, COLL, K1), 1);
  } else {
    EXPECT_MISSING(fx, COLL, K1);
    CHECK_INT(DELETE(fx, COLL, K1), 0); /* null: nothing to remove */
  }
  EXPECT_MISSING(fx, COLL, K1);
}

void c06_delete_missing_is_false(void **state) {
  conf_t *fx = FX(state);

  CHECK_INT(DELETE(fx, COLL, K1), 0);
  PUT(fx, COLL, K1, V);
  CHECK_INT(DELETE(fx, COLL, K1), fx->retains ? 1 : 0);
  CHECK_INT(DELETE(fx, COLL, K1), 0);
}

void c07_delete_many_counts(void **state) {
  conf_t *fx = FX(state);

  CHECK_INT(delete_many(fx, k12, 2), 0);
  PUT(fx, COLL, K1, V);
  if (fx->retains) {
    CHECK_INT(delete_many(fx, k12, 2), 1);
    PUT(fx, COLL, K1, V);
    CHECK_INT(delete_many(fx, k12, 2), 1);
    CHECK_INT(delete_many(fx, k12, 2), 0);
  } else {
    /* null: delete_many always removes 0. */
    CHECK_INT(delete_many(fx, k12, 2), 0);
    CHECK_INT(delete_many(fx, k12, 2), 0);
  }
}

void c08_put_many_then_gets(void **state) {
  conf_t *fx = FX(state);
  static const char *const both[] = {V, V2};
  static const char *const none[] = {NULL, NULL};

  put_many(fx, k12, v12, 2);
  if (fx->retains) {
    EXPECT_VALUE(fx, COLL, K1, V);
    EXPECT_VALUE(fx, COLL, K2, V2);
    check_get_many(fx, k12, 2, both);
  } else {
    EXPECT_MISSING(fx, COLL, K1);
    EXPECT_MISSING(fx, COLL, K2);
    check_get_many(fx, k12, 2, none);
  }
}

void c09_get_many_partial(void **state) {
  conf_t *fx = FX(state);
  static const char *const partial[] = {V, V2, NULL};
  static const char *const none[] = {NULL, NULL, NULL};

  PUT(fx, COLL, K1, V);
  PUT(fx, COLL, K2, V2);
  check_get_many(fx, k123, 3, fx->retains ? partial : none);
}

void c10_put_get_delete_many(void **state) {
  conf_t *fx = FX(state);
  static const char *const both[] = {V, V2};
  static const char *const none[] = {NULL, NULL};

  put_many(fx, k12, v12, 2);
  check_get_many(fx, k12, 2, fx->retains ? both : none);
  CHECK_INT(delete_many(fx, k12, 2), fx->retains ? 2 : 0);
  check_get_many(fx, k12, 2, none);
}

void c11_put_many_then_deletes(void **state) {
  conf_t *fx = FX(state);
  static const char *const none[] = {NULL, NULL};

  put_many(fx, k12, v12, 2);
  CHECK_INT(DELETE(fx, COLL, K1), fx->retains ? 1 : 0);
  CHECK_INT(DELETE(fx, COLL, K2), fx->retains ? 1 : 0);
  check_get_many(fx, k12, 2, none);
}

void c12_get_many_duplicates_and_empty(void **state) {
  conf_t *fx = FX(state);
  static const char *const dup[] = {K1, K1, K2, K1};
  static const char *const dup_full[] = {V, V, NULL, V};
  static const char *const dup_none[] = {NULL, NULL, NULL, NULL};
  static const char *const zero[] = {K1};
  conf_req_t r;

  PUT(fx, COLL, K1, V);
  check_get_many(fx, dup, 4, fx->retains ? dup_full : dup_none);
  /* Zero keys: an empty result, delivered through the callback. */
  CHECK_OK(run_get_many(fx, &r, COLL, zero, 0));
  CHECK_INT(r.req.nresults, 0);
  kv_req_cleanup(&r.req);
  CHECK_OK(run_ttl_many(fx, &r, COLL, zero, 0));
  CHECK_INT(r.req.nresults, 0);
  kv_req_cleanup(&r.req);
  CHECK_OK(run_delete_many(fx, &r, COLL, zero, 0));
  CHECK_INT(r.req.count, 0);
  kv_req_cleanup(&r.req);
  CHECK_OK(run_put_many(fx, &r, COLL, zero, v12, 0, 0));
  kv_req_cleanup(&r.req);
}

void c13_put_many_invalid_writes_nothing(void **state) {
  conf_t *fx = FX(state);
  static const char *const bad_key[] = {K1, "", K3};
  static const char *const bad_utf8[] = {K1, K2, "\xff\xfe"};
  static const char *const null_key[] = {K1, NULL, K3};
  static const char *const none[] = {NULL, NULL, NULL};
  static const kv_buf_t v3[] = {
      {(char *)V, 4}, {(char *)V2, 6}, {(char *)V, 4}};
  conf_req_t r;

  /* One invalid key rejects the whole batch before anything is written. */
  CHECK_STATUS(run_put_many(fx, &r, COLL, bad_key, v3, 3, 0), KV_EINVAL);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_put_many(fx, &r, COLL, bad_utf8, v3, 3, 0), KV_EINVAL);
  kv_req_cleanup(&r.req);
  /* C's form of mismatched lengths: a missing key or no values for n > 0. */
  CHECK_STATUS(run_put_many(fx, &r, COLL, null_key, v3, 3, 0), KV_EINVAL);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_put_many(fx, &r, COLL, k123, NULL, 3, 0), KV_EINVAL);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_put_many(fx, &r, COLL, NULL, v3, 3, 0), KV_EINVAL);
  kv_req_cleanup(&r.req);
  check_get_many(fx, k123, 3, none);
  /* An invalid collection likewise. */
  CHECK_STATUS(run_put_many(fx, &r, "\xc3", k123, v3, 3, 0), KV_EINVAL);
  kv_req_cleanup(&r.req);
  check_get_many(fx, k123, 3, none);
  EXPECT_MISSING(fx, NULL, K1);
}

void c14_put_many_ten_in_order(void **state) {
  conf_t *fx = FX(state);
  const char *keys[10];
  const char *rev[10];
  const char *expect[10];
  kv_buf_t vals[10];
  char kbuf[10][16];
  char vbuf[10][16];
  size_t i;

  for (i = 0; i < 10; i++) {
    snprintf(kbuf[i], sizeof(kbuf[i]), "key_%zu", i);
    snprintf(vbuf[i], sizeof(vbuf[i]), "value_%zu", i * 7);
    keys[i] = kbuf[i];
    vals[i].base = vbuf[i];
    vals[i].len = strlen(vbuf[i]);
  }
  put_many(fx, keys, vals, 10);
  /* Input order, in both directions. */
  for (i = 0; i < 10; i++)
    expect[i] = fx->retains ? vbuf[i] : NULL;
  check_get_many(fx, keys, 10, expect);
  for (i = 0; i < 10; i++) {
    rev[i] = kbuf[9 - i];
    expect[i] = fx->retains ? vbuf[9 - i] : NULL;
  }
  check_get_many(fx, rev, 10, expect);
  CHECK_INT(delete_many(fx, keys, 10), fx->retains ? 10 : 0);
  for (i = 0; i < 10; i++)
    expect[i] = NULL;
  check_get_many(fx, keys, 10, expect);
}
