/* prefix-keys, prefix-collections, single-collection: what lands in the
 * inner store, enumeration shows only the user's names (other tenants'
 * names are invisible), no collisions, long names, destroy removes only
 * the wrapper's names. */
#include "wraptest.h"

static int has_name(const kv_req_t *r, const char *name) {
  for (size_t i = 0; i < r->nnames; i++)
    if (r->names[i].len == strlen(name) &&
        memcmp(r->names[i].base, name, r->names[i].len) == 0)
      return 1;
  return 0;
}

/* Every key of `coll` in store s, all pages, into *out (cleanup it). */
static void all_keys(tstack_t *t, kv_store_t *s, const char *coll,
                     kv_req_t *out) {
  char *cursor = NULL;
  memset(out, 0, sizeof *out);
  do {
    treq_t r = {0};
    assert_int_equal(kv_keys(s, &r.req, coll, cursor, 2, t_cb), 0);
    t_wait_all(t->loop, &r, 1);
    assert_int_equal(r.req.status, 0);
    assert_true(r.req.nnames <= 2);
    for (size_t i = 0; i < r.req.nnames; i++)
      assert_int_equal(
          kv_req_add_name(out, r.req.names[i].base, r.req.names[i].len), 0);
    free(cursor);
    cursor = r.req.cursor ? strdup(r.req.cursor) : NULL;
    kv_req_cleanup(&r.req);
  } while (cursor != NULL);
}

static void all_collections(tstack_t *t, kv_store_t *s, kv_req_t *out) {
  char *cursor = NULL;
  memset(out, 0, sizeof *out);
  do {
    treq_t r = {0};
    assert_int_equal(kv_collections(s, &r.req, cursor, 1, t_cb), 0);
    t_wait_all(t->loop, &r, 1);
    assert_int_equal(r.req.status, 0);
    for (size_t i = 0; i < r.req.nnames; i++)
      assert_int_equal(
          kv_req_add_name(out, r.req.names[i].base, r.req.names[i].len), 0);
    free(cursor);
    cursor = r.req.cursor ? strdup(r.req.cursor) : NULL;
    kv_req_cleanup(&r.req);
  } while (cursor != NULL);
}

static void direct_put(tstack_t *t, kv_store_t *s, const char *c, const char *k,
                       const char *v) {
  treq_t r = {0};
  assert_int_equal(kv_put(s, &r.req, c, k, v, strlen(v), 0, t_cb), 0);
  t_wait_all(t->loop, &r, 1);
  kv_req_cleanup(&r.req);
}

static void prefix_keys(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *top;
  kv_wrap_prefix_opts_t o = {.prefix = "app:", .borrow = 1};
  kv_req_t l;
  char v[16];
  int found;
  char *longk = malloc(KV_NAME_MAX + 1);
  (void)state;
  assert_int_equal(kv_wrap_prefix_keys(base, &o, &top), 0);
  ts_set(&t, top);
  assert_int_equal(t_put(&t, "c", "alice", "1", 0), 0);
  assert_int_equal(t_put(&t, "c", "~tilde", "2", 0), 0);
  memset(longk, 'x', KV_NAME_MAX);
  longk[KV_NAME_MAX] = '\0';
  assert_int_equal(t_put(&t, "c", longk, "3", 0), 0);
  /* Someone else's keys in the same collection, including look-alikes. */
  direct_put(&t, base, "c", "bob", "x");
  direct_put(&t, base, "c", "app", "x");
  direct_put(&t, base, "c", "app:~#zz", "x");
  /* Inner names */
  all_keys(&t, base, "c", &l);
  assert_true(has_name(&l, "app:alice"));
  assert_true(has_name(&l, "app:~~tilde"));
  kv_req_cleanup(&l);
  /* The wrapper shows the user's names only */
  all_keys(&t, top, "c", &l);
  assert_int_equal(l.nnames, 3);
  assert_true(has_name(&l, "alice"));
  assert_true(has_name(&l, "~tilde"));
  assert_true(has_name(&l, longk));
  kv_req_cleanup(&l);
  assert_int_equal(t_get(&t, "c", longk, &found, v, sizeof v), 0);
  assert_string_equal(v, "3");
  assert_int_equal(t_get(&t, "c", "bob", &found, v, sizeof v), 0);
  assert_false(found);
  /* destroy_collection removes ours (side entries too), not theirs */
  memset(&l, 0, sizeof l);
  assert_int_equal(kv_sync_destroy_collection(t.sync, &l, "c"), 0);
  kv_req_cleanup(&l);
  all_keys(&t, base, "c", &l);
  assert_int_equal(l.nnames, 3);
  assert_true(has_name(&l, "bob"));
  kv_req_cleanup(&l);
  free(longk);
  kv_store_close(base, NULL); /* borrowed */
  ts_close(&t);
}

static void prefix_collections(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *top;
  kv_wrap_prefix_opts_t o = {.prefix = "t1/", .borrow = 1};
  kv_req_t l;
  char *longc = malloc(KV_NAME_MAX + 1);
  char v[16];
  int found;
  (void)state;
  assert_int_equal(kv_wrap_prefix_collections(base, &o, &top), 0);
  ts_set(&t, top);
  memset(longc, 'c', KV_NAME_MAX);
  longc[KV_NAME_MAX] = '\0';
  assert_int_equal(t_put(&t, "users", "k", "1", 0), 0);
  assert_int_equal(t_put(&t, longc, "k", "2", 0), 0);
  direct_put(&t, base, "t2/users", "k", "other tenant");
  direct_put(&t, base, "users", "k", "unprefixed");
  all_collections(&t, top, &l);
  assert_int_equal(l.nnames, 2);
  assert_true(has_name(&l, "users"));
  assert_true(has_name(&l, longc));
  kv_req_cleanup(&l);
  all_collections(&t, base, &l);
  assert_true(has_name(&l, "t1/users"));
  kv_req_cleanup(&l);
  assert_int_equal(t_get(&t, longc, "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "2");
  assert_int_equal(t_get(&t, "users", "k", &found, v, sizeof v), 0);
  assert_string_equal(v, "1");
  /* destroy: only this prefix's collections */
  memset(&l, 0, sizeof l);
  assert_int_equal(kv_sync_destroy(t.sync, &l), 0);
  kv_req_cleanup(&l);
  all_collections(&t, base, &l);
  assert_int_equal(l.nnames, 2);
  assert_true(has_name(&l, "t2/users"));
  assert_true(has_name(&l, "users"));
  kv_req_cleanup(&l);
  free(longc);
  kv_store_close(base, NULL); /* borrowed */
  ts_close(&t);
}

static void single_collection(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *top;
  kv_wrap_single_collection_opts_t o = {.collection = "all", .borrow = 1};
  kv_req_t l;
  char v[16];
  int found;
  (void)state;
  assert_int_equal(kv_wrap_single_collection(base, &o, &top), 0);
  ts_set(&t, top);
  /* ("a:b", "c") and ("a", "b:c") must not collide */
  assert_int_equal(t_put(&t, "a:b", "c", "first", 0), 0);
  assert_int_equal(t_put(&t, "a", "b:c", "second", 0), 0);
  assert_int_equal(t_put(&t, "1:a", "x", "third", 0), 0);
  assert_int_equal(t_get(&t, "a:b", "c", &found, v, sizeof v), 0);
  assert_string_equal(v, "first");
  assert_int_equal(t_get(&t, "a", "b:c", &found, v, sizeof v), 0);
  assert_string_equal(v, "second");
  all_collections(&t, base, &l);
  assert_int_equal(l.nnames, 1);
  assert_true(has_name(&l, "all"));
  kv_req_cleanup(&l);
  all_collections(&t, top, &l);
  assert_int_equal(l.nnames, 3);
  assert_true(has_name(&l, "a:b"));
  assert_true(has_name(&l, "a"));
  assert_true(has_name(&l, "1:a"));
  kv_req_cleanup(&l);
  all_keys(&t, top, "a", &l);
  assert_int_equal(l.nnames, 1);
  assert_true(has_name(&l, "b:c"));
  kv_req_cleanup(&l);
  memset(&l, 0, sizeof l);
  assert_int_equal(kv_sync_destroy_collection(t.sync, &l, "a"), 0);
  kv_req_cleanup(&l);
  assert_int_equal(t_get(&t, "a", "b:c", &found, v, sizeof v), 0);
  assert_false(found);
  assert_int_equal(t_get(&t, "a:b", "c", &found, v, sizeof v), 0);
  assert_true(found);
  kv_store_close(base, NULL); /* borrowed */
  ts_close(&t);
}

static void bad_prefix(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *out;
  kv_wrap_prefix_opts_t o = {.prefix = ""};
  char err[512];
  (void)state;
  assert_int_equal(kv_wrap_prefix_keys(base, &o, &out), KV_EINVAL);
  assert_int_equal(kv_wrap_prefix_keys(base, NULL, &out), KV_EINVAL);
  o.prefix = "bad\xff";
  assert_int_equal(kv_wrap_prefix_collections(base, &o, &out), KV_EINVAL);
  assert_int_equal(
      kv_wrap_by_name("prefix-keys", "", base, &out, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "'prefix'"));
  ts_set(&t, base);
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(prefix_keys),
      cmocka_unit_test(prefix_collections),
      cmocka_unit_test(single_collection),
      cmocka_unit_test(bad_prefix),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
