/* read-only: writes fail at submit with KV_EREADONLY (nothing changes),
 * reads work, the writing segments are not announced; silent mode. */
#include "wraptest.h"

static kv_store_t *stack(tstack_t *t, int silent) {
  kv_store_t *base = ts_init(t, "memory://"), *top;
  kv_wrap_read_only_opts_t o = {.silent = silent};
  treq_t r = {0};
  assert_int_equal(kv_put(base, &r.req, "c", "k", "v", 1, 0, t_cb), 0);
  t_wait_all(t->loop, &r, 1);
  kv_req_cleanup(&r.req);
  assert_int_equal(kv_wrap_read_only(base, &o, &top), 0);
  ts_set(t, top);
  return base;
}

static void writes_refused(void **state) {
  tstack_t t;
  kv_store_t *base;
  treq_t r = {0};
  const char *keys[] = {"k"};
  kv_buf_t vals[] = {{(char *)"x", 1}};
  char v[8];
  int found;
  (void)state;
  base = stack(&t, 0);
  assert_int_equal(kv_put(t.top, &r.req, "c", "k", "x", 1, 0, t_cb),
                   KV_EREADONLY);
  assert_non_null(strstr(kv_req_errmsg(&r.req), "read-only"));
  kv_req_cleanup(&r.req);
  assert_int_equal(kv_delete(t.top, &r.req, "c", "k", t_cb), KV_EREADONLY);
  kv_req_cleanup(&r.req);
  assert_int_equal(kv_put_many(t.top, &r.req, "c", keys, vals, 1, 0, t_cb),
                   KV_EREADONLY);
  kv_req_cleanup(&r.req);
  assert_int_equal(kv_delete_many(t.top, &r.req, "c", keys, 1, t_cb),
                   KV_EREADONLY);
  kv_req_cleanup(&r.req);
  assert_int_equal(kv_incr(t.top, &r.req, "c", "n", 1, 0, t_cb), KV_ENOTSUP);
  kv_req_cleanup(&r.req);
  assert_int_equal(kv_destroy(t.top, &r.req, t_cb), KV_ENOTSUP);
  kv_req_cleanup(&r.req);
  uv_run(t.loop, UV_RUN_NOWAIT);
  assert_int_equal(r.calls, 0);
  assert_int_equal(
      kv_store_caps(t.top) & (KV_CAP_ATOMIC | KV_CAP_DESTROY | KV_CAP_CULL), 0);
  assert_true(kv_store_caps(t.top) & KV_CAP_ENUMERATE);
  assert_true(kv_store_caps(base) & KV_CAP_ATOMIC);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "v");
  ts_close(&t);
}

static void silent_mode(void **state) {
  tstack_t t;
  kv_req_t r;
  char v[8];
  int found;
  const char *keys[] = {"k"};
  (void)state;
  stack(&t, 1);
  assert_int_equal(t_put(&t, "c", "new", "x", 0), 0);
  assert_int_equal(t_get(&t, "c", "new", &found, v, sizeof v), 0);
  assert_false(found);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_delete(t.sync, &r, "c", "k"), 0);
  assert_false(r.found);
  kv_req_cleanup(&r);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_delete_many(t.sync, &r, "c", keys, 1), 0);
  assert_int_equal(r.count, 0);
  kv_req_cleanup(&r);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "v");
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(writes_refused),
      cmocka_unit_test(silent_mode),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
