/* default-value and raise-on-missing: what a missing key reads as. */
#include "wraptest.h"

static void defaults(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *top;
  kv_wrap_default_value_opts_t o = {.value = "{}", .len = 2, .ttl = 30};
  kv_req_t r;
  const char *keys[] = {"set", "unset"};
  char v[16];
  int found;
  (void)state;
  assert_int_equal(kv_wrap_default_value(base, &o, &top), 0);
  ts_set(&t, top);
  assert_int_equal(t_get(&t, "c", "unset", &found, v, sizeof v), 0);
  assert_true(found);
  assert_string_equal(v, "{}");
  assert_true(t_ttl(&t, "c", "unset") == 30);
  assert_int_equal(t_put(&t, "c", "set", "real", 0), 0);
  assert_int_equal(t_get(&t, "c", "set", &found, v, sizeof v), 0);
  assert_string_equal(v, "real");
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_get_many(t.sync, &r, "c", keys, 2), 0);
  assert_string_equal(r.results[0].value.base, "real");
  assert_true(r.results[1].found);
  assert_string_equal(r.results[1].value.base, "{}");
  assert_true(r.results[1].ttl == 30);
  kv_req_cleanup(&r);
  /* take is not defaulted */
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_take(t.sync, &r, "c", "unset"), 0);
  assert_false(r.found);
  kv_req_cleanup(&r);
  ts_close(&t);
}

static void raise_on_missing(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *top;
  kv_req_t r;
  const char *keys[] = {"k", "gone"};
  char v[16];
  int found;
  (void)state;
  assert_int_equal(kv_wrap_raise_on_missing(base, NULL, &top), 0);
  ts_set(&t, top);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), KV_ENOTFOUND);
  assert_int_equal(kv_err_category(KV_ENOTFOUND), KV_CAT_NOTFOUND);
  assert_int_equal(t_put(&t, "c", "k", "v", 0), 0);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "v");
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_get_many(t.sync, &r, "c", keys, 2), KV_ENOTFOUND);
  assert_non_null(strstr(kv_req_errmsg(&r), "'gone'"));
  kv_req_cleanup(&r);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_take(t.sync, &r, "c", "k"), 0);
  kv_req_cleanup(&r);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_take(t.sync, &r, "c", "k"), KV_ENOTFOUND);
  kv_req_cleanup(&r);
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(defaults),
      cmocka_unit_test(raise_on_missing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
