/* The JSON adapter: canonical serialization, round trips, non-objects. */
#include "kvio/json.h"
#include "wraptest.h"

static void canonical(void **state) {
  json_error_t e;
  json_t *a = json_loads("{\"b\": 1, \"a\": [1, 2.5, \"\xc3\xa9\"], "
                         "\"c\": {\"z\": null, \"y\": true}}",
                         0, &e);
  json_t *b = json_loads("{\"c\":{\"y\":true,\"z\":null},\"a\":[1,2.5,"
                         "\"\\u00e9\"],\"b\":1}",
                         0, &e);
  size_t la, lb;
  char *ta, *tb;
  (void)state;
  ta = kv_json_dumps(a, &la);
  tb = kv_json_dumps(b, &lb);
  assert_string_equal(ta, "{\"a\":[1,2.5,\"\xc3\xa9\"],\"b\":1,"
                          "\"c\":{\"y\":true,\"z\":null}}");
  assert_int_equal(la, strlen(ta));
  assert_string_equal(ta, tb); /* equal objects, equal bytes */
  kv_free(ta);
  kv_free(tb);
  json_decref(a);
  json_decref(b);
  a = json_pack("[i]", 1);
  assert_null(kv_json_dumps(a, &la));
  json_decref(a);
}

static void json_cb(kv_json_req_t *jr) {
  (*(int *)jr->data)++;
}

static void round_trip(void **state) {
  tstack_t t;
  kv_store_t *s = ts_init(&t, "memory://");
  kv_json_req_t jr;
  kv_req_t r;
  json_t *obj = json_pack("{s:s,s:i}", "name", "Alice", "age", 30), *got;
  int calls = 0;
  (void)state;
  ts_set(&t, s);
  memset(&jr, 0, sizeof jr);
  jr.data = &calls;
  assert_int_equal(kv_json_put(s, &jr, "users", "a", obj, 0, json_cb), 0);
  while (calls == 0)
    uv_run(t.loop, UV_RUN_ONCE);
  assert_int_equal(jr.req.status, 0);
  kv_json_req_cleanup(&jr);
  /* the stored bytes are canonical */
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_get(t.sync, &r, "users", "a"), 0);
  assert_string_equal(r.value.base, "{\"age\":30,\"name\":\"Alice\"}");
  kv_req_cleanup(&r);
  calls = 0;
  assert_int_equal(kv_json_get(s, &jr, "users", "a", json_cb), 0);
  while (calls == 0)
    uv_run(t.loop, UV_RUN_ONCE);
  assert_true(jr.req.found);
  assert_true(json_equal(jr.value, obj));
  kv_json_req_cleanup(&jr);
  /* sync forms; missing; a value that is not an object */
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_json_sync_get(t.sync, &r, "users", "nobody", &got), 0);
  assert_null(got);
  kv_req_cleanup(&r);
  assert_int_equal(t_put(&t, "users", "raw", "[1,2]", 0), 0);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_json_sync_get(t.sync, &r, "users", "raw", &got),
                   KV_ECORRUPT);
  assert_null(got);
  kv_req_cleanup(&r);
  assert_int_equal(t_put(&t, "users", "text", "not json", 0), 0);
  calls = 0;
  assert_int_equal(kv_json_get(s, &jr, "users", "text", json_cb), 0);
  while (calls == 0)
    uv_run(t.loop, UV_RUN_ONCE);
  assert_int_equal(jr.req.status, KV_ECORRUPT);
  assert_null(jr.value);
  kv_json_req_cleanup(&jr);
  /* put of a non-object: refused at submit */
  got = json_integer(5);
  assert_int_equal(kv_json_put(s, &jr, "users", "n", got, 0, json_cb),
                   KV_EINVAL);
  kv_json_req_cleanup(&jr);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_json_sync_put(t.sync, &r, "users", "n", got, 0),
                   KV_EINVAL);
  kv_req_cleanup(&r);
  json_decref(got);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_json_sync_put(t.sync, &r, "users", "b", obj, 0), 0);
  kv_req_cleanup(&r);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_json_sync_get(t.sync, &r, "users", "b", &got), 0);
  assert_true(json_equal(got, obj));
  json_decref(got);
  kv_req_cleanup(&r);
  json_decref(obj);
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(canonical),
      cmocka_unit_test(round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
