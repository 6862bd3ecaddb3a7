/* retry: transient errors are retried with exponential backoff and jitter
 * (driven by fault-injection), permanent ones are not, at most max
 * retries, atomic ops only when allowed. */
#include <math.h>

#include "wraptest.h"

typedef struct {
  int n;
  int attempt[16];
  double delay[16];
  int err[16];
} seen_t;

static void on_retry(int attempt, double delay, int err, void *data) {
  seen_t *s = data;
  if (s->n < 16) {
    s->attempt[s->n] = attempt;
    s->delay[s->n] = delay;
    s->err[s->n++] = err;
  }
}

static kv_store_t *stack(tstack_t *t, kv_wrap_fault_injection_opts_t *fo,
                         kv_wrap_retry_opts_t *ro, kv_store_t **fault) {
  kv_store_t *base = ts_init(t, "memory://"), *top;
  assert_int_equal(kv_wrap_fault_injection(base, fo, fault), 0);
  assert_int_equal(kv_wrap_retry(*fault, ro, &top), 0);
  ts_set(t, top);
  return base;
}

static void transient_errors_are_retried(void **state) {
  tstack_t t;
  kv_store_t *fault;
  seen_t seen = {0};
  kv_wrap_fault_injection_opts_t fo = {.nth = 1, .times = 3, .error = KV_ECONN};
  kv_wrap_retry_opts_t ro = {.max = 5,
                             .initial = 0.01,
                             .max_delay = 0.025,
                             .on_retry = on_retry,
                             .on_retry_data = &seen,
                             .seed = 7};
  uint64_t calls, injected;
  char v[8];
  int found;
  (void)state;
  stack(&t, &fo, &ro, &fault);
  /* calls 1-3 fail, the 4th succeeds */
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), 0);
  kv_wrap_fault_injection_counts(fault, &calls, &injected);
  assert_int_equal(calls, 4);
  assert_int_equal(injected, 3);
  assert_int_equal(seen.n, 3);
  /* backoff: d_k = min(max_delay, initial * 2^(k-1)), jittered in
   * [d/2, d]: 0.01, 0.02, 0.025 (capped) */
  {
    const double d[] = {0.01, 0.02, 0.025};
    for (int i = 0; i < 3; i++) {
      assert_int_equal(seen.attempt[i], i + 1);
      assert_int_equal(seen.err[i], KV_ECONN);
      assert_true(seen.delay[i] >= d[i] / 2 - 1e-12);
      assert_true(seen.delay[i] <= d[i] + 1e-12);
    }
  }
  ts_close(&t);
}

static void jitter_varies(void **state) {
  tstack_t t;
  kv_store_t *fault;
  seen_t seen = {0};
  kv_wrap_fault_injection_opts_t fo = {.nth = 1, .times = UINT64_MAX};
  kv_wrap_retry_opts_t ro = {.max = 8,
                             .initial = 0.001,
                             .max_delay = 0.001,
                             .on_retry = on_retry,
                             .on_retry_data = &seen,
                             .seed = 99};
  kv_req_t r;
  int distinct = 0;
  (void)state;
  stack(&t, &fo, &ro, &fault);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_get(t.sync, &r, "c", "k"), KV_ECONN);
  kv_req_cleanup(&r);
  assert_int_equal(seen.n, 8);
  for (int i = 1; i < seen.n; i++)
    distinct += seen.delay[i] != seen.delay[0];
  assert_true(distinct > 0); /* jittered, not a fixed sequence */
  ts_close(&t);
}

static void gives_up_after_max(void **state) {
  tstack_t t;
  kv_store_t *fault;
  kv_wrap_fault_injection_opts_t fo = {
      .nth = 1, .times = UINT64_MAX, .error = KV_ETIMEDOUT};
  kv_wrap_retry_opts_t ro = {.max = 2, .initial = 0.001};
  uint64_t calls;
  kv_req_t r;
  (void)state;
  stack(&t, &fo, &ro, &fault);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_put(t.sync, &r, "c", "k", "v", 1, 0), KV_ETIMEDOUT);
  assert_non_null(strstr(kv_req_errmsg(&r), "injected"));
  kv_req_cleanup(&r);
  kv_wrap_fault_injection_counts(fault, &calls, NULL);
  assert_int_equal(calls, 3); /* first try + 2 retries */
  ts_close(&t);
}

static void permanent_errors_are_not_retried(void **state) {
  tstack_t t;
  kv_store_t *fault;
  kv_wrap_fault_injection_opts_t fo = {
      .nth = 1, .times = 1, .error = KV_ECORRUPT};
  kv_wrap_retry_opts_t ro = {.max = 5, .initial = 0.001};
  uint64_t calls;
  char v[8];
  int found;
  (void)state;
  stack(&t, &fo, &ro, &fault);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), KV_ECORRUPT);
  kv_wrap_fault_injection_counts(fault, &calls, NULL);
  assert_int_equal(calls, 1);
  ts_close(&t);
}

static void atomic_ops_only_when_allowed(void **state) {
  tstack_t t;
  kv_store_t *fault;
  kv_wrap_fault_injection_opts_t fo = {.nth = 1, .times = 1};
  kv_wrap_retry_opts_t ro = {.max = 5, .initial = 0.001};
  uint64_t calls;
  kv_req_t r;
  (void)state;
  stack(&t, &fo, &ro, &fault);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_incr(t.sync, &r, "c", "n", 1, 0), KV_ECONN);
  kv_req_cleanup(&r);
  kv_wrap_fault_injection_counts(fault, &calls, NULL);
  assert_int_equal(calls, 1);
  ts_close(&t);

  ro.atomic = 1;
  stack(&t, &fo, &ro, &fault);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_incr(t.sync, &r, "c", "n", 1, 0), 0);
  assert_int_equal(r.number, 1);
  kv_req_cleanup(&r);
  ts_close(&t);
}

static void close_while_waiting(void **state) {
  tstack_t t;
  kv_store_t *fault;
  kv_wrap_fault_injection_opts_t fo = {.nth = 1, .times = UINT64_MAX};
  kv_wrap_retry_opts_t ro = {.max = 5, .initial = 10, .max_delay = 10};
  treq_t r = {0};
  (void)state;
  stack(&t, &fo, &ro, &fault);
  assert_int_equal(kv_get(t.top, &r.req, "c", "k", t_cb), 0);
  for (int i = 0; i < 3; i++)
    uv_run(t.loop, UV_RUN_NOWAIT); /* the first try fails; a retry waits */
  assert_int_equal(r.calls, 0);
  ts_close(&t); /* must not wait 10 s */
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.req.status, KV_ECONN);
  kv_req_cleanup(&r.req);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(transient_errors_are_retried),
      cmocka_unit_test(jitter_varies),
      cmocka_unit_test(gives_up_after_max),
      cmocka_unit_test(permanent_errors_are_not_retried),
      cmocka_unit_test(atomic_ops_only_when_allowed),
      cmocka_unit_test(close_while_waiting),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
