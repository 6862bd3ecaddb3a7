/* statistics: counts, hits, misses and errors per collection and op, the
 * latency histogram, totals, Prometheus text (with escaped labels). */
#include "wraptest.h"

static void counts(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *fault, *top;
  kv_wrap_fault_injection_opts_t fo = {.nth = 9, .times = 1};
  kv_stats_t st;
  kv_req_t r;
  const char *keys[] = {"a", "b", "zz"};
  char v[8];
  int found;
  uint64_t nb = 0;
  (void)state;
  assert_int_equal(kv_wrap_fault_injection(base, &fo, &fault), 0);
  assert_int_equal(kv_wrap_statistics(fault, NULL, &top), 0);
  ts_set(&t, top);
  assert_int_equal(t_put(&t, "users", "a", "1", 0), 0);          /* 1 */
  assert_int_equal(t_put(&t, "users", "b", "2", 0), 0);          /* 2 */
  assert_int_equal(t_get(&t, "users", "a", &found, v, 8), 0);    /* 3 */
  assert_int_equal(t_get(&t, "users", "b", &found, v, 8), 0);    /* 4 */
  assert_int_equal(t_get(&t, "users", "nope", &found, v, 8), 0); /* 5 */
  memset(&r, 0, sizeof r);                                       /* 6 */
  assert_int_equal(kv_sync_get_many(t.sync, &r, "users", keys, 3), 0);
  kv_req_cleanup(&r);
  assert_int_equal(t_put(&t, "other", "x", "1", 0), 0);              /* 7 */
  assert_int_equal(t_get(&t, "other", "x", &found, v, 8), 0);        /* 8 */
  assert_int_equal(t_get(&t, "other", "x", &found, v, 8), KV_ECONN); /* 9 */

  assert_int_equal(kv_stats_get(top, "users", KV_OP_GET, &st), 0);
  assert_int_equal(st.calls, 3);
  assert_int_equal(st.hits, 2);
  assert_int_equal(st.misses, 1);
  assert_int_equal(st.errors, 0);
  for (int i = 0; i < KV_STATS_NBUCKETS; i++)
    nb += st.latency_buckets[i];
  assert_int_equal(nb, 3);
  assert_true(st.latency_sum > 0);
  assert_int_equal(kv_stats_get(top, "users", KV_OP_GET_MANY, &st), 0);
  assert_int_equal(st.calls, 1);
  assert_int_equal(st.hits, 2);
  assert_int_equal(st.misses, 1);
  assert_int_equal(kv_stats_get(top, "other", KV_OP_GET, &st), 0);
  assert_int_equal(st.calls, 2);
  assert_int_equal(st.errors, 1);
  assert_int_equal(kv_stats_get(top, NULL, KV_OP_PUT, &st), 0);
  assert_int_equal(st.calls, 3);
  assert_int_equal(kv_stats_get(top, NULL, KV_OP_NONE, &st), 0);
  assert_int_equal(st.calls, 9);
  /* Found from any store of the stack above it; not from below. */
  assert_int_equal(kv_stats_get(base, NULL, KV_OP_NONE, &st), KV_EINVAL);
  kv_stats_reset(top);
  assert_int_equal(kv_stats_get(top, NULL, KV_OP_NONE, &st), 0);
  assert_int_equal(st.calls, 0);
  ts_close(&t);
}

static void prometheus(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *top;
  char *text;
  size_t len;
  char v[8];
  int found;
  (void)state;
  assert_int_equal(kv_wrap_statistics(base, NULL, &top), 0);
  ts_set(&t, top);
  assert_int_equal(t_put(&t, "a\"b\\c", "k", "v", 0), 0);
  assert_int_equal(t_get(&t, "a\"b\\c", "k", &found, v, 8), 0);
  assert_int_equal(t_get(&t, "a\"b\\c", "k", &found, v, 8), 0);
  text = kv_stats_prometheus(top, &len);
  assert_non_null(text);
  assert_int_equal(strlen(text), len);
  assert_non_null(strstr(text, "# TYPE kvio_ops_total counter\n"));
  assert_non_null(strstr(
      text, "kvio_ops_total{collection=\"a\\\"b\\\\c\",op=\"get\"} 2\n"));
  assert_non_null(strstr(
      text, "kvio_hits_total{collection=\"a\\\"b\\\\c\",op=\"get\"} 2\n"));
  assert_non_null(strstr(text, "# TYPE kvio_op_duration_seconds histogram"));
  assert_non_null(strstr(text, "op=\"put\",le=\"+Inf\"} 1\n"));
  assert_non_null(strstr(
      text,
      "kvio_op_duration_seconds_count{collection=\"a\\\"b\\\\c\",op=\"get\"} "
      "2\n"));
  kv_free(text);
  assert_null(kv_stats_prometheus(base, &len));
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(counts),
      cmocka_unit_test(prometheus),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
