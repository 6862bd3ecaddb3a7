/* ttl-clamp: TTLs clamped into [min, max] on every write op, entries
 * without TTL get `missing`. */
#include "wraptest.h"

static void clamps(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *top;
  kv_wrap_ttl_clamp_opts_t o = {.min = 10, .max = 100, .missing = 50};
  kv_req_t r;
  const char *keys[] = {"m1", "m2"};
  kv_buf_t vals[] = {{(char *)"a", 1}, {(char *)"b", 1}};
  double ttl;
  (void)state;
  assert_int_equal(kv_wrap_ttl_clamp(base, &o, &top), 0);
  ts_set(&t, top);
  assert_int_equal(t_put(&t, "c", "low", "v", 1), 0);
  ttl = t_ttl(&t, "c", "low");
  assert_true(ttl > 9 && ttl <= 10);
  assert_int_equal(t_put(&t, "c", "high", "v", 1000), 0);
  ttl = t_ttl(&t, "c", "high");
  assert_true(ttl > 99 && ttl <= 100);
  assert_int_equal(t_put(&t, "c", "mid", "v", 42), 0);
  ttl = t_ttl(&t, "c", "mid");
  assert_true(ttl > 41 && ttl <= 42);
  assert_int_equal(t_put(&t, "c", "none", "v", 0), 0);
  ttl = t_ttl(&t, "c", "none");
  assert_true(ttl > 49 && ttl <= 50);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_put_many(t.sync, &r, "c", keys, vals, 2, 5000), 0);
  kv_req_cleanup(&r);
  ttl = t_ttl(&t, "c", "m2");
  assert_true(ttl > 99 && ttl <= 100);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_incr(t.sync, &r, "c", "n", 1, 1), 0);
  kv_req_cleanup(&r);
  ttl = t_ttl(&t, "c", "n");
  assert_true(ttl > 9 && ttl <= 10);
  ts_close(&t);
}

static void no_missing_keeps_none(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *top;
  kv_wrap_ttl_clamp_opts_t o = {.min = 0, .max = 100};
  char err[256];
  (void)state;
  assert_int_equal(kv_wrap_ttl_clamp(base, &o, &top), 0);
  ts_set(&t, top);
  assert_int_equal(t_put(&t, "c", "none", "v", 0), 0);
  assert_true(t_ttl(&t, "c", "none") == KV_TTL_NONE);
  assert_int_equal(
      kv_wrap_by_name("ttl-clamp", "min=5,max=1", top, &base, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "min"));
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(clamps),
      cmocka_unit_test(no_missing_keeps_none),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
