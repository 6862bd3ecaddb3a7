/* The wrapper infrastructure: registry by name, stacks, wrap:// URLs,
 * ownership and close order, the async contract through wrappers,
 * capabilities, fault-injection, routing. */
#include "wrappers/wrappers.h"
#include "wraptest.h"

static void by_name_errors(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *out = (kv_store_t *)1;
  char err[512];
  (void)state;
  assert_int_equal(kv_wrap_by_name("nope", NULL, base, &out, err, sizeof err),
                   KV_EINVAL);
  assert_null(out);
  assert_non_null(strstr(err, "unknown wrapper 'nope'"));
  assert_non_null(strstr(err, "statistics"));
  assert_non_null(strstr(err, "ttl-clamp"));
  assert_int_equal(
      kv_wrap_by_name("retry", "max=3,bogus=1", base, &out, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "unknown option 'bogus'"));
  assert_non_null(strstr(err, "max_delay"));
  assert_int_equal(
      kv_wrap_by_name("retry", "max=3,max=4", base, &out, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "twice"));
  assert_int_equal(kv_wrap_by_name("retry", "=3", base, &out, err, sizeof err),
                   KV_EINVAL);
  /* A failed stack leaves the inner store to the caller, usable. */
  assert_int_equal(
      kv_wrap_stack("statistics|retry:max=x", base, &out, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "'x'"));
  ts_set(&t, base);
  assert_int_equal(t_put(&t, "c", "k", "v", 0), 0);
  ts_close(&t);
}

static void options_decode(void **state) {
  kv_url_t o;
  char err[256];
  (void)state;
  assert_int_equal(
      kv_wrap_opts_parse("a=1,b=x%2Cy,flag,c%3D=%40", &o, err, sizeof err), 0);
  assert_int_equal(o.nparams, 4);
  assert_string_equal(kv_url_param(&o, "b"), "x,y");
  assert_string_equal(kv_url_param(&o, "flag"), "");
  assert_string_equal(kv_url_param(&o, "c="), "@");
  kv_wrap_opts_free(&o);
  assert_int_equal(kv_wrap_opts_parse("a=%zz", &o, err, sizeof err), KV_EINVAL);
  assert_int_equal(kv_wrap_opts_parse(NULL, &o, err, sizeof err), 0);
  assert_int_equal(o.nparams, 0);
  kv_wrap_opts_free(&o);
}

static void stack_order_and_find(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *top;
  char err[256];
  (void)state;
  assert_int_equal(kv_wrap_stack("prefix-keys:prefix=p|statistics|"
                                 "timeout:seconds=5",
                                 base, &top, err, sizeof err),
                   0);
  ts_set(&t, top);
  assert_string_equal(kv_store_name(top), "timeout");
  assert_string_equal(kv_store_name(((kv_wrap_t *)top)->inner), "statistics");
  assert_non_null(kv_wrap_find(top, "prefix-keys"));
  assert_ptr_equal(kv_wrap_find(top, "memory"), base);
  assert_null(kv_wrap_find(top, "cache"));
  assert_true(kv_wrap_is_wrapper(top));
  assert_false(kv_wrap_is_wrapper(base));
  ts_close(&t);
}

static void wrap_urls(void **state) {
  tstack_t t;
  kv_store_t *s;
  char err[512];
  kv_stats_t st;
  char v[8];
  int found;
  (void)state;
  ts_init(&t, NULL);
  assert_int_equal(
      kv_open_ex(t.loop, "wrap://statistics@memory://", &s, err, sizeof err),
      KV_EINVAL); /* the authority form is not ours */
  assert_int_equal(
      kv_open_ex(t.loop, "wrap:///statistics", &s, err, sizeof err), KV_EINVAL);
  assert_non_null(strstr(err, "wrap:///STACK@URL"));
  assert_int_equal(
      kv_open_ex(t.loop, "wrap:///nope@memory://", &s, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "unknown wrapper 'nope'"));
  assert_int_equal(kv_open_ex(t.loop, "wrap:///statistics@memory://?x=1", &s,
                              err, sizeof err),
                   KV_EINVAL);
  /* a bad escape in the inner URL, or an escaped NUL */
  assert_int_equal(kv_open_ex(t.loop, "wrap:///statistics@memory://%zz", &s,
                              err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "percent-escape"));
  assert_int_equal(kv_open_ex(t.loop, "wrap:///statistics@memory://%3F%00", &s,
                              err, sizeof err),
                   KV_EINVAL);
  /* the inner URL's own options, percent-encoded */
  assert_int_equal(kv_open_ex(t.loop,
                              "wrap:///prefix-keys:prefix=a%40b|statistics@"
                              "memory://%3Fmax_entries=2",
                              &s, err, sizeof err),
                   0);
  ts_set(&t, s);
  assert_string_equal(kv_store_name(s), "wrap");
  assert_int_equal(t_put(&t, "c", "1", "a", 0), 0);
  assert_int_equal(t_put(&t, "c", "2", "b", 0), 0);
  assert_int_equal(t_put(&t, "c", "3", "c", 0), 0);
  assert_int_equal(t_get(&t, "c", "1", &found, v, sizeof v), 0);
  assert_false(found); /* evicted: max_entries reached the memory store */
  assert_int_equal(kv_stats_get(s, "c", KV_OP_PUT, &st), 0);
  assert_int_equal(st.calls, 3);
  assert_non_null(kv_wrap_find(s, "prefix-keys"));
  ts_close(&t);
}

static int closed_order[4];
static int nclosed;

static void on_inner_closed(kv_store_t *s) {
  (void)s;
  closed_order[nclosed++] = 1;
}

static void on_wrapper_closed(kv_store_t *s) {
  (void)s;
  closed_order[nclosed++] = 2;
}

static void ownership(void **state) {
  uv_loop_t loop;
  kv_store_t *base, *w;
  kv_wrap_statistics_opts_t borrow = {.borrow = 1};
  (void)state;
  uv_loop_init(&loop);
  /* owned: closing the wrapper closes the inner store first */
  assert_int_equal(kv_open(&loop, "memory://", &base), 0);
  assert_int_equal(kv_wrap_statistics(base, NULL, &w), 0);
  nclosed = 0;
  assert_int_equal(kv_store_close(w, on_wrapper_closed), 0);
  assert_true(kv_store_is_closing(base));
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(nclosed, 1);
  assert_int_equal(closed_order[0], 2);
  /* borrowed: the inner store stays open and usable */
  assert_int_equal(kv_open(&loop, "memory://", &base), 0);
  assert_int_equal(kv_wrap_statistics(base, &borrow, &w), 0);
  nclosed = 0;
  assert_int_equal(kv_store_close(w, on_wrapper_closed), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(nclosed, 1);
  assert_false(kv_store_is_closing(base));
  assert_int_equal(kv_store_close(base, on_inner_closed), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(nclosed, 2);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void never_inline(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *ro, *top;
  kv_wrap_read_only_opts_t silent = {.silent = 1};
  treq_t r[3];
  (void)state;
  assert_int_equal(kv_wrap_read_only(base, &silent, &ro), 0);
  assert_int_equal(kv_wrap_statistics(ro, NULL, &top), 0);
  ts_set(&t, top);
  memset(r, 0, sizeof r);
  for (int i = 0; i < 3; i++)
    r[i].in_submit = 1;
  /* answered inside the wrappers' methods, delivered on the loop */
  assert_int_equal(kv_put(top, &r[0].req, "c", "k", "v", 1, 0, t_cb), 0);
  assert_int_equal(kv_get(top, &r[1].req, "c", "k", t_cb), 0);
  assert_int_equal(kv_delete(ro, &r[2].req, "c", "k", t_cb), 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r[i].calls, 0);
    r[i].in_submit = 0;
  }
  t_wait_all(t.loop, r, 3);
  for (int i = 0; i < 3; i++)
    kv_req_cleanup(&r[i].req);
  ts_close(&t);
}

static void fault_injection(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *top;
  kv_wrap_fault_injection_opts_t o = {.nth = 2, .times = 2, .error = KV_EIO};
  uint64_t calls, injected;
  char v[8], err[256];
  int found, fails = 0;
  (void)state;
  assert_int_equal(kv_wrap_fault_injection(base, &o, &top), 0);
  ts_set(&t, top);
  assert_int_equal(t_put(&t, "c", "k", "v", 0), 0);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), KV_EIO);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), KV_EIO);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), 0);
  kv_wrap_fault_injection_counts(top, &calls, &injected);
  assert_int_equal(calls, 4);
  assert_int_equal(injected, 2);
  ts_close(&t);
  /* a share of calls, reproducible with a seed */
  base = ts_init(&t, "memory://");
  assert_int_equal(kv_wrap_by_name("fault-injection",
                                   "rate=0.5,seed=3,error=KV_ETIMEDOUT", base,
                                   &top, err, sizeof err),
                   0);
  ts_set(&t, top);
  for (int i = 0; i < 200; i++)
    fails += t_get(&t, "c", "k", &found, v, sizeof v) == KV_ETIMEDOUT;
  assert_true(fails > 60 && fails < 140);
  assert_int_equal(kv_wrap_by_name("fault-injection", "error=EWHAT", top, &base,
                                   err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "EWHAT"));
  ts_close(&t);
}

static kv_store_t *route_b;

static kv_store_t *route(const char *collection, void *data) {
  (void)data;
  return strncmp(collection, "b-", 2) == 0 ? route_b : NULL;
}

static void routing(void **state) {
  tstack_t t;
  kv_store_t *a = ts_init(&t, "memory://"), *b, *top, *stores[1];
  kv_wrap_routing_opts_t o = {0};
  kv_req_t r;
  char v[8];
  int found;
  (void)state;
  assert_int_equal(kv_open(t.loop, "memory://", &b), 0);
  route_b = b;
  stores[0] = b;
  o.stores = stores;
  o.nstores = 1;
  o.route = route;
  assert_int_equal(kv_wrap_routing(a, &o, &top), 0);
  ts_set(&t, top);
  assert_int_equal(t_put(&t, "b-one", "k", "in b", 0), 0);
  assert_int_equal(t_put(&t, "a-one", "k", "in a", 0), 0);
  {
    treq_t q = {0};
    assert_int_equal(kv_get(b, &q.req, "b-one", "k", t_cb), 0);
    t_wait_all(t.loop, &q, 1);
    assert_string_equal(q.req.value.base, "in b");
    kv_req_cleanup(&q.req);
    assert_int_equal(kv_get(a, &q.req, "b-one", "k", t_cb), 0);
    q.calls = 0;
    t_wait_all(t.loop, &q, 1);
    assert_false(q.req.found);
    kv_req_cleanup(&q.req);
  }
  assert_int_equal(t_get(&t, "b-one", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "in b");
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_collections(t.sync, &r, NULL, 0), 0);
  assert_int_equal(r.nnames, 2);
  kv_req_cleanup(&r);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_destroy(t.sync, &r), 0);
  kv_req_cleanup(&r);
  assert_int_equal(t_get(&t, "b-one", "k", &found, v, sizeof v), 0);
  assert_false(found);
  ts_close(&t); /* closes a and b */
}

/* More hooking layers than a request carries (KV_WRAP_HOOKS_MAX), one of
 * them over a borrowed store, with a renaming layer in the middle: every
 * layer records the operation once, under the names of its own level. */
static void hooks_deep_and_borrowed(void **state) {
  tstack_t t;
  kv_store_t *s = ts_init(&t, "memory://"), *layers[12], *mid, *top;
  kv_wrap_statistics_opts_t borrow = {1};
  kv_wrap_prefix_opts_t po = {0};
  kv_stats_t st;
  int found;
  char buf[16];
  (void)state;
  /* layers[0..5] below the prefix, [6..11] above; layer 3 borrows. */
  for (int i = 0; i < 6; i++) {
    assert_int_equal(kv_wrap_statistics(s, i == 3 ? &borrow : NULL, &layers[i]),
                     0);
    s = layers[i];
  }
  po.prefix = "p_";
  assert_int_equal(kv_wrap_prefix_collections(s, &po, &mid), 0);
  s = mid;
  for (int i = 6; i < 12; i++) {
    assert_int_equal(kv_wrap_statistics(s, NULL, &layers[i]), 0);
    s = layers[i];
  }
  top = s;
  ts_set(&t, top);
  assert_int_equal(t_put(&t, "c", "k", "v", 0), 0);
  assert_int_equal(t_get(&t, "c", "k", &found, buf, sizeof buf), 0);
  assert_true(found);
  assert_string_equal(buf, "v");
  for (int i = 0; i < 12; i++) {
    const char *coll = i < 6 ? "p_c" : "c";
    assert_int_equal(kv_stats_get(layers[i], coll, KV_OP_GET, &st), 0);
    assert_true(st.calls == 1 && st.hits == 1);
    assert_int_equal(kv_stats_get(layers[i], coll, KV_OP_PUT, &st), 0);
    assert_true(st.calls == 1);
  }
  /* Layer 3 borrows layer 2 (and what is under it): close that part
   * ourselves; the stack's close stops at layer 3. */
  assert_int_equal(kv_store_close(layers[2], NULL), 0);
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(by_name_errors),
      cmocka_unit_test(options_decode),
      cmocka_unit_test(stack_order_and_find),
      cmocka_unit_test(wrap_urls),
      cmocka_unit_test(ownership),
      cmocka_unit_test(never_inline),
      cmocka_unit_test(fault_injection),
      cmocka_unit_test(routing),
      cmocka_unit_test(hooks_deep_and_borrowed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
