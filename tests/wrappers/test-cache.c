/* cache: hit and miss, invalidation by every kind of write, the cached TTL,
 * an empty value is a value, concurrent misses coalesce into one primary
 * read, a read that overlaps a write does not fill the cache, misses cached
 * for missing_ttl. */
#include "wraptest.h"

typedef struct {
  tstack_t t;
  kv_store_t *primary; /* borrowed view below the cache */
  kv_store_t *fault;   /* fault-injection over the primary (latency) */
  kv_store_t *tier;    /* the cache tier */
} fx_t;

static void open_cache(fx_t *f, double latency, double max_ttl,
                       double missing_ttl) {
  kv_store_t *top;
  kv_wrap_fault_injection_opts_t fo = {.latency = latency};
  memset(f, 0, sizeof *f);
  f->primary = ts_init(&f->t, "memory://");
  assert_int_equal(kv_open(f->t.loop, "memory://", &f->tier), 0);
  assert_int_equal(kv_wrap_fault_injection(f->primary, &fo, &f->fault), 0);
  kv_wrap_cache_opts_t co = {
      .cache = f->tier, .max_ttl = max_ttl, .missing_ttl = missing_ttl};
  assert_int_equal(kv_wrap_cache(f->fault, &co, &top), 0);
  ts_set(&f->t, top);
}

/* Write to the primary directly, behind the cache's back. */
static void put_behind(fx_t *f, const char *k, const char *v) {
  treq_t r = {0};
  assert_int_equal(kv_put(f->primary, &r.req, "c", k, v, strlen(v), 0, t_cb),
                   0);
  t_wait_all(f->t.loop, &r, 1);
  kv_req_cleanup(&r.req);
}

static void counts(fx_t *f, uint64_t h, uint64_t m, uint64_t co) {
  uint64_t hits, misses, coalesced;
  kv_wrap_cache_counts(f->t.top, &hits, &misses, &coalesced);
  assert_int_equal(hits, h);
  assert_int_equal(misses, m);
  assert_int_equal(coalesced, co);
}

static void hit_and_miss(void **state) {
  fx_t f;
  char v[64];
  int found;
  (void)state;
  open_cache(&f, 0, 60, 0);
  assert_int_equal(t_put(&f.t, "c", "k", "v1", 0), 0);
  assert_int_equal(t_get(&f.t, "c", "k", &found, v, sizeof v), 0);
  assert_true(found);
  assert_string_equal(v, "v1");
  counts(&f, 0, 1, 0);
  /* Served from the cache: the primary changed behind its back. */
  put_behind(&f, "k", "v2");
  assert_int_equal(t_get(&f.t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "v1");
  counts(&f, 1, 1, 0);
  /* A missing key is read from the primary each time (no missing_ttl). */
  assert_int_equal(t_get(&f.t, "c", "none", &found, v, sizeof v), 0);
  assert_false(found);
  assert_int_equal(t_get(&f.t, "c", "none", &found, v, sizeof v), 0);
  counts(&f, 1, 3, 0);
  ts_close(&f.t);
}

static void writes_invalidate(void **state) {
  fx_t f;
  char v[64];
  int found;
  kv_req_t r;
  const char *keys[] = {"a", "b"};
  kv_buf_t vals[] = {{(char *)"A2", 2}, {(char *)"B2", 2}};
  (void)state;
  open_cache(&f, 0, 60, 0);
  assert_int_equal(t_put(&f.t, "c", "a", "A1", 0), 0);
  assert_int_equal(t_put(&f.t, "c", "b", "B1", 0), 0);
  assert_int_equal(t_get(&f.t, "c", "a", &found, v, sizeof v), 0);
  assert_int_equal(t_get(&f.t, "c", "b", &found, v, sizeof v), 0);
  /* put */
  assert_int_equal(t_put(&f.t, "c", "a", "A-new", 0), 0);
  assert_int_equal(t_get(&f.t, "c", "a", &found, v, sizeof v), 0);
  assert_string_equal(v, "A-new");
  /* put_many */
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_put_many(f.t.sync, &r, "c", keys, vals, 2, 0), 0);
  kv_req_cleanup(&r);
  assert_int_equal(t_get(&f.t, "c", "b", &found, v, sizeof v), 0);
  assert_string_equal(v, "B2");
  /* incr (atomic) */
  assert_int_equal(t_put(&f.t, "c", "n", "1", 0), 0);
  assert_int_equal(t_get(&f.t, "c", "n", &found, v, sizeof v), 0);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_incr(f.t.sync, &r, "c", "n", 5, 0), 0);
  kv_req_cleanup(&r);
  assert_int_equal(t_get(&f.t, "c", "n", &found, v, sizeof v), 0);
  assert_string_equal(v, "6");
  /* delete */
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_delete(f.t.sync, &r, "c", "a"), 0);
  assert_true(r.found);
  kv_req_cleanup(&r);
  assert_int_equal(t_get(&f.t, "c", "a", &found, v, sizeof v), 0);
  assert_false(found);
  /* take */
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_take(f.t.sync, &r, "c", "b"), 0);
  assert_string_equal(r.value.base, "B2");
  kv_req_cleanup(&r);
  assert_int_equal(t_get(&f.t, "c", "b", &found, v, sizeof v), 0);
  assert_false(found);
  /* destroy_collection */
  assert_int_equal(t_put(&f.t, "c", "d", "D", 0), 0);
  assert_int_equal(t_get(&f.t, "c", "d", &found, v, sizeof v), 0);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_destroy_collection(f.t.sync, &r, "c"), 0);
  kv_req_cleanup(&r);
  assert_int_equal(t_get(&f.t, "c", "d", &found, v, sizeof v), 0);
  assert_false(found);
  ts_close(&f.t);
}

static void empty_value_is_a_value(void **state) {
  fx_t f;
  char v[8];
  int found = 0;
  kv_req_t r;
  const char *keys[] = {"e", "x"};
  (void)state;
  open_cache(&f, 0, 60, 0);
  assert_int_equal(t_put(&f.t, "c", "e", "", 0), 0);
  assert_int_equal(t_get(&f.t, "c", "e", &found, v, sizeof v), 0);
  assert_true(found);
  assert_int_equal(t_get(&f.t, "c", "e", &found, v, sizeof v), 0);
  assert_true(found); /* a hit, still a value */
  assert_string_equal(v, "");
  counts(&f, 1, 1, 0);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_get_many(f.t.sync, &r, "c", keys, 2), 0);
  assert_true(r.results[0].found);
  assert_int_equal(r.results[0].value.len, 0);
  assert_false(r.results[1].found);
  kv_req_cleanup(&r);
  ts_close(&f.t);
}

static void ttl_is_the_primary_ttl(void **state) {
  fx_t f;
  char v[8];
  int found;
  double ttl;
  (void)state;
  open_cache(&f, 0, 5, 0);
  assert_int_equal(t_put(&f.t, "c", "k", "v", 100), 0);
  assert_int_equal(t_get(&f.t, "c", "k", &found, v, sizeof v), 0);
  ttl = t_ttl(&f.t, "c", "k"); /* a hit: the cache's own TTL is 5 s */
  assert_true(ttl > 98 && ttl <= 100);
  counts(&f, 1, 1, 0);
  /* Without expiry: "none", even though the cache entry expires. */
  assert_int_equal(t_put(&f.t, "c", "n", "v", 0), 0);
  assert_int_equal(t_get(&f.t, "c", "n", &found, v, sizeof v), 0);
  assert_true(t_ttl(&f.t, "c", "n") == KV_TTL_NONE);
  ts_close(&f.t);
}

static void cache_ttl_is_clamped(void **state) {
  fx_t f;
  char v[8];
  int found;
  (void)state;
  open_cache(&f, 0, 0.2, 0);
  assert_int_equal(t_put(&f.t, "c", "k", "v1", 0), 0);
  assert_int_equal(t_get(&f.t, "c", "k", &found, v, sizeof v), 0);
  put_behind(&f, "k", "v2");
  assert_int_equal(t_get(&f.t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "v1");
  t_sleep_ms(300); /* max_ttl passed: read through again */
  assert_int_equal(t_get(&f.t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "v2");
  ts_close(&f.t);
}

static void concurrent_misses_coalesce(void **state) {
  enum { N = 10 };
  fx_t f;
  treq_t r[N];
  uint64_t calls, injected;
  (void)state;
  open_cache(&f, 0.05, 60, 0);
  assert_int_equal(t_put(&f.t, "c", "k", "shared", 0), 0);
  memset(r, 0, sizeof r);
  for (int i = 0; i < N; i++) {
    r[i].in_submit = 1;
    assert_int_equal(kv_get(f.t.top, &r[i].req, "c", "k", t_cb), 0);
    r[i].in_submit = 0;
  }
  t_wait_all(f.t.loop, r, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i].req.status, 0);
    assert_true(r[i].req.found);
    assert_string_equal(r[i].req.value.base, "shared");
    kv_req_cleanup(&r[i].req);
  }
  counts(&f, 0, 1, N - 1);
  kv_wrap_fault_injection_counts(f.fault, &calls, &injected);
  assert_int_equal(calls, 2); /* the put and ONE read */
  ts_close(&f.t);
}

static void overlapping_write_is_not_cached(void **state) {
  fx_t f;
  treq_t g = {0}, p = {0};
  char v[16];
  int found;
  (void)state;
  open_cache(&f, 0.05, 60, 0);
  assert_int_equal(t_put(&f.t, "c", "k", "old", 0), 0);
  /* The read starts first; the write overlaps it. */
  assert_int_equal(kv_get(f.t.top, &g.req, "c", "k", t_cb), 0);
  assert_int_equal(kv_put(f.t.top, &p.req, "c", "k", "new", 3, 0, t_cb), 0);
  t_wait_all(f.t.loop, &g, 1);
  t_wait_all(f.t.loop, &p, 1);
  assert_int_equal(p.req.status, 0);
  kv_req_cleanup(&g.req);
  kv_req_cleanup(&p.req);
  assert_int_equal(t_get(&f.t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "new");
  assert_int_equal(t_get(&f.t, "c", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "new");
  ts_close(&f.t);
}

static void missing_cached_for_missing_ttl(void **state) {
  fx_t f;
  char v[8];
  int found;
  (void)state;
  open_cache(&f, 0, 60, 0.2);
  assert_int_equal(t_get(&f.t, "c", "m", &found, v, sizeof v), 0);
  assert_false(found);
  put_behind(&f, "m", "now");
  assert_int_equal(t_get(&f.t, "c", "m", &found, v, sizeof v), 0);
  assert_false(found); /* the cached miss */
  counts(&f, 1, 1, 0);
  t_sleep_ms(300);
  assert_int_equal(t_get(&f.t, "c", "m", &found, v, sizeof v), 0);
  assert_true(found);
  /* A write through the wrapper invalidates a cached miss at once. */
  assert_int_equal(t_get(&f.t, "c", "m2", &found, v, sizeof v), 0);
  assert_int_equal(t_put(&f.t, "c", "m2", "x", 0), 0);
  assert_int_equal(t_get(&f.t, "c", "m2", &found, v, sizeof v), 0);
  assert_true(found);
  ts_close(&f.t);
}

static void bad_options(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *out = (kv_store_t *)1;
  char err[512];
  (void)state;
  assert_int_equal(kv_wrap_cache(base, NULL, &out), KV_EINVAL);
  assert_null(out);
  assert_int_equal(
      kv_wrap_by_name("cache", "max_ttl=1", base, &out, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "'store'"));
  assert_int_equal(kv_wrap_by_name("cache", "store=memory://,ttl=1", base, &out,
                                   err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "unknown option 'ttl'"));
  ts_set(&t, base);
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(hit_and_miss),
      cmocka_unit_test(writes_invalidate),
      cmocka_unit_test(empty_value_is_a_value),
      cmocka_unit_test(ttl_is_the_primary_ttl),
      cmocka_unit_test(cache_ttl_is_clamped),
      cmocka_unit_test(concurrent_misses_coalesce),
      cmocka_unit_test(overlapping_write_is_not_cached),
      cmocka_unit_test(missing_cached_for_missing_ttl),
      cmocka_unit_test(bad_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
