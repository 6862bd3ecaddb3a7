/* limit-size: exactly max and max-1 pass, max+1 is refused at submit with
 * KV_ETOOBIG naming the size; below min is KV_EINVAL; a batch with one bad
 * value writes nothing; silent mode drops instead. */
#include "wraptest.h"

static kv_store_t *stack(tstack_t *t, size_t min, size_t max, int silent) {
  kv_store_t *base = ts_init(t, "memory://"), *top;
  kv_wrap_limit_size_opts_t o = {.min = min, .max = max, .silent = silent};
  assert_int_equal(kv_wrap_limit_size(base, &o, &top), 0);
  ts_set(t, top);
  return base;
}

static void at_the_limits(void **state) {
  tstack_t t;
  char v[32];
  int found;
  treq_t r = {0};
  (void)state;
  stack(&t, 2, 10, 0);
  assert_int_equal(t_put(&t, "c", "max", "0123456789", 0), 0);
  assert_int_equal(t_put(&t, "c", "max-1", "012345678", 0), 0);
  assert_int_equal(t_put(&t, "c", "min", "01", 0), 0);
  /* max + 1: refused at submit, no callback, detail names the size */
  assert_int_equal(
      kv_put(t.top, &r.req, "c", "big", "01234567890", 11, 0, t_cb),
      KV_ETOOBIG);
  assert_non_null(strstr(kv_req_errmsg(&r.req), "11 bytes"));
  kv_req_cleanup(&r.req);
  assert_int_equal(kv_put(t.top, &r.req, "c", "small", "0", 1, 0, t_cb),
                   KV_EINVAL);
  assert_non_null(strstr(kv_req_errmsg(&r.req), "1 bytes"));
  kv_req_cleanup(&r.req);
  uv_run(t.loop, UV_RUN_NOWAIT);
  assert_int_equal(r.calls, 0);
  assert_int_equal(t_get(&t, "c", "big", &found, v, sizeof v), 0);
  assert_false(found);
  assert_int_equal(t_get(&t, "c", "max", &found, v, sizeof v), 0);
  assert_string_equal(v, "0123456789");
  /* cas and put_if_absent are limited too; reads are not */
  assert_int_equal(
      kv_put_if_absent(t.top, &r.req, "c", "p", "01234567890", 11, 0, t_cb),
      KV_ETOOBIG);
  kv_req_cleanup(&r.req);
  ts_close(&t);
}

static void batch_all_or_nothing(void **state) {
  tstack_t t;
  kv_req_t r;
  const char *keys[] = {"a", "b", "c"};
  kv_buf_t vals[] = {
      {(char *)"ok", 2}, {(char *)"way too long", 12}, {(char *)"ok", 2}};
  int found;
  char v[16];
  (void)state;
  stack(&t, 0, 10, 0);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_put_many(t.top, &r, "c", keys, vals, 3, 0, t_cb),
                   KV_ETOOBIG);
  assert_non_null(strstr(kv_req_errmsg(&r), "value 1"));
  kv_req_cleanup(&r);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(t_get(&t, "c", keys[i], &found, v, sizeof v), 0);
    assert_false(found);
  }
  ts_close(&t);
}

static void silent_drops(void **state) {
  tstack_t t;
  kv_req_t r;
  const char *keys[] = {"a", "b", "c"};
  kv_buf_t vals[] = {
      {(char *)"ok", 2}, {(char *)"way too long", 12}, {(char *)"fine", 4}};
  int found;
  char v[16];
  (void)state;
  stack(&t, 0, 10, 1);
  assert_int_equal(t_put(&t, "c", "big", "01234567890", 0), 0);
  assert_int_equal(t_get(&t, "c", "big", &found, v, sizeof v), 0);
  assert_false(found);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_put_many(t.sync, &r, "c", keys, vals, 3, 0), 0);
  kv_req_cleanup(&r);
  assert_int_equal(t_get(&t, "c", "a", &found, v, sizeof v), 0);
  assert_string_equal(v, "ok");
  assert_int_equal(t_get(&t, "c", "b", &found, v, sizeof v), 0);
  assert_false(found);
  assert_int_equal(t_get(&t, "c", "c", &found, v, sizeof v), 0);
  assert_string_equal(v, "fine");
  memset(&r, 0, sizeof r);
  assert_int_equal(
      kv_sync_put_if_absent(t.sync, &r, "c", "p", "01234567890", 11, 0), 0);
  assert_false(r.found);
  kv_req_cleanup(&r);
  ts_close(&t);
}

static void bad_options(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *out;
  char err[512];
  kv_wrap_limit_size_opts_t o = {.min = 5, .max = 4};
  (void)state;
  assert_int_equal(kv_wrap_limit_size(base, &o, &out), KV_EINVAL);
  assert_int_equal(
      kv_wrap_by_name("limit-size", "max=-1", base, &out, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "'-1'"));
  ts_set(&t, base);
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(at_the_limits),
      cmocka_unit_test(batch_all_or_nothing),
      cmocka_unit_test(silent_drops),
      cmocka_unit_test(bad_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
