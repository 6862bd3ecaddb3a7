/* timeout: a slow store (fault-injection latency) times out; the late
 * answer from below is absorbed (no crash, no leak: run under ASan); fast
 * operations are untouched; closing with a timed-out request in flight. */
#include "wraptest.h"

static kv_store_t *slow_stack(tstack_t *t, double latency, double seconds) {
  kv_store_t *base = ts_init(t, "memory://"), *slow, *top;
  kv_wrap_fault_injection_opts_t fo = {.latency = latency};
  kv_wrap_timeout_opts_t to = {.seconds = seconds};
  assert_int_equal(kv_wrap_fault_injection(base, &fo, &slow), 0);
  assert_int_equal(kv_wrap_timeout(slow, &to, &top), 0);
  ts_set(t, top);
  return base;
}

static void slow_get_times_out(void **state) {
  tstack_t t;
  treq_t r = {0};
  uint64_t t0;
  double took;
  (void)state;
  slow_stack(&t, 0.4, 0.05);
  t0 = uv_hrtime();
  assert_int_equal(kv_get(t.top, &r.req, "c", "k", t_cb), 0);
  t_wait_all(t.loop, &r, 1);
  took = (double)(r.done_ns - t0) / 1e9;
  assert_int_equal(r.req.status, KV_ETIMEDOUT);
  assert_non_null(strstr(kv_req_errmsg(&r.req), "0.05"));
  assert_true(took >= 0.04 && took < 0.39);
  kv_req_cleanup(&r.req);
  /* The late answer arrives later and goes nowhere; closing waits for it
   * (the inner request must outlive its callback). */
  ts_close(&t);
}

static void late_write_still_lands(void **state) {
  tstack_t t;
  treq_t r = {0};
  treq_t q = {0};
  kv_store_t *base;
  (void)state;
  base = slow_stack(&t, 0.15, 0.02);
  assert_int_equal(kv_put(t.top, &r.req, "c", "k", "late", 4, 0, t_cb), 0);
  t_wait_all(t.loop, &r, 1);
  assert_int_equal(r.req.status, KV_ETIMEDOUT);
  kv_req_cleanup(&r.req);
  t_sleep_ms(200);
  /* Let the late put reach the store, then read below the wrappers. */
  for (int i = 0; i < 5; i++)
    uv_run(t.loop, UV_RUN_NOWAIT);
  assert_int_equal(kv_get(base, &q.req, "c", "k", t_cb), 0);
  t_wait_all(t.loop, &q, 1);
  assert_true(q.req.found);
  assert_string_equal(q.req.value.base, "late");
  kv_req_cleanup(&q.req);
  ts_close(&t);
}

static void fast_ops_pass(void **state) {
  tstack_t t;
  char v[16];
  int found;
  (void)state;
  slow_stack(&t, 0, 5);
  assert_int_equal(t_put(&t, "c", "k", "v", 0), 0);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "v");
  ts_close(&t);
}

static void many_time_out_together(void **state) {
  enum { N = 50 };
  tstack_t t;
  treq_t r[N];
  (void)state;
  slow_stack(&t, 0.3, 0.03);
  memset(r, 0, sizeof r);
  for (int i = 0; i < N; i++)
    assert_int_equal(kv_get(t.top, &r[i].req, "c", "k", t_cb), 0);
  t_wait_all(t.loop, r, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i].req.status, KV_ETIMEDOUT);
    kv_req_cleanup(&r[i].req);
  }
  ts_close(&t);
}

static void close_cancels_waiting(void **state) {
  tstack_t t;
  treq_t r = {0};
  (void)state;
  slow_stack(&t, 0.2, 10);
  assert_int_equal(kv_get(t.top, &r.req, "c", "k", t_cb), 0);
  ts_close(&t); /* runs the loop to the end */
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.req.status, KV_ECANCELED);
  kv_req_cleanup(&r.req);
}

static void bad_options(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *out;
  char err[512];
  kv_wrap_timeout_opts_t o = {.seconds = -1};
  (void)state;
  assert_int_equal(kv_wrap_timeout(base, &o, &out), KV_EINVAL);
  assert_int_equal(kv_wrap_timeout(base, NULL, &out), KV_EINVAL);
  assert_int_equal(
      kv_wrap_by_name("timeout", NULL, base, &out, err, sizeof err), KV_EINVAL);
  assert_non_null(strstr(err, "seconds"));
  assert_int_equal(
      kv_wrap_by_name("timeout", "seconds=abc", base, &out, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "abc"));
  ts_set(&t, base);
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(slow_get_times_out),
      cmocka_unit_test(late_write_still_lands),
      cmocka_unit_test(fast_ops_pass),
      cmocka_unit_test(many_time_out_together),
      cmocka_unit_test(close_cancels_waiting),
      cmocka_unit_test(bad_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
