/* fallback: reads go to the secondary when the primary fails with a
 * transient error; writes only with write=true; permanent errors do not
 * fall back. */
#include "wraptest.h"

static kv_store_t *stack(tstack_t *t, int error, int write,
                         kv_store_t **secondary) {
  kv_store_t *base = ts_init(t, "memory://"), *bad, *top;
  kv_wrap_fault_injection_opts_t fo = {.rate = 1, .error = error};
  kv_wrap_fallback_opts_t o = {.write = write};
  assert_int_equal(kv_open(t->loop, "memory://", secondary), 0);
  assert_int_equal(kv_wrap_fault_injection(base, &fo, &bad), 0);
  o.secondary = *secondary;
  assert_int_equal(kv_wrap_fallback(bad, &o, &top), 0);
  ts_set(t, top);
  return base;
}

static void put_direct(tstack_t *t, kv_store_t *s, const char *k,
                       const char *v) {
  treq_t r = {0};
  assert_int_equal(kv_put(s, &r.req, "c", k, v, strlen(v), 0, t_cb), 0);
  t_wait_all(t->loop, &r, 1);
  kv_req_cleanup(&r.req);
}

static void reads_fall_back(void **state) {
  tstack_t t;
  kv_store_t *sec;
  char v[16];
  int found;
  kv_req_t r;
  const char *keys[] = {"k", "x"};
  (void)state;
  stack(&t, KV_ECONN, 0, &sec);
  put_direct(&t, sec, "k", "from-secondary");
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), 0);
  assert_true(found);
  assert_string_equal(v, "from-secondary");
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_get_many(t.sync, &r, "c", keys, 2), 0);
  assert_true(r.results[0].found);
  assert_false(r.results[1].found);
  kv_req_cleanup(&r);
  /* writes stay on the primary: its error is the answer */
  assert_int_equal(t_put(&t, "c", "k", "v", 0), KV_ECONN);
  ts_close(&t);
}

static void writes_fall_back_when_asked(void **state) {
  tstack_t t;
  kv_store_t *sec;
  char v[16];
  int found;
  (void)state;
  stack(&t, KV_ETIMEDOUT, 1, &sec);
  assert_int_equal(t_put(&t, "c", "k", "written", 0), 0);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "written");
  ts_close(&t);
}

static void permanent_errors_do_not(void **state) {
  tstack_t t;
  kv_store_t *sec;
  char v[16];
  int found;
  (void)state;
  stack(&t, KV_ECORRUPT, 1, &sec);
  put_direct(&t, sec, "k", "x");
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), KV_ECORRUPT);
  ts_close(&t);
}

static void healthy_primary_is_used(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *sec, *top;
  kv_wrap_fallback_opts_t o = {0};
  char v[16];
  int found;
  (void)state;
  assert_int_equal(kv_open(t.loop, "memory://", &sec), 0);
  o.secondary = sec;
  assert_int_equal(kv_wrap_fallback(base, &o, &top), 0);
  ts_set(&t, top);
  put_direct(&t, sec, "k", "secondary");
  put_direct(&t, base, "k", "primary");
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "primary");
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(reads_fall_back),
      cmocka_unit_test(writes_fall_back_when_asked),
      cmocka_unit_test(permanent_errors_do_not),
      cmocka_unit_test(healthy_primary_is_used),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
