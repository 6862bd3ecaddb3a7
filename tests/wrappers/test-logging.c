/* logging: the text and JSON line formats, values redacted unless asked
 * for, one line per operation, errors logged with their detail. */
#include <jansson.h>

#include "wraptest.h"

typedef struct {
  char lines[16][1024];
  int n;
} sink_t;

static void sink(const char *line, size_t len, void *data) {
  sink_t *s = data;
  if (s->n < 16) {
    snprintf(s->lines[s->n], sizeof s->lines[0], "%.*s", (int)len, line);
    s->n++;
  }
}

static kv_store_t *stack(tstack_t *t, sink_t *s, int values, int json) {
  kv_store_t *base = ts_init(t, "memory://"), *top;
  kv_wrap_logging_opts_t o = {
      .values = values, .json = json, .cb = sink, .cb_data = s};
  memset(s, 0, sizeof *s);
  assert_int_equal(kv_wrap_logging(base, &o, &top), 0);
  ts_set(t, top);
  return base;
}

/* The line without its " us=N" timing. */
static void strip_us(char *line) {
  char *p = strstr(line, " us=");
  if (p) {
    char *e = p + 4;
    while (*e >= '0' && *e <= '9')
      e++;
    memmove(p, e, strlen(e) + 1);
  }
}

static void text_format_redacts_values(void **state) {
  tstack_t t;
  sink_t s;
  char v[32];
  int found;
  (void)state;
  stack(&t, &s, 0, 0);
  assert_int_equal(t_put(&t, "users", "alice", "s3cr3t-password", 60), 0);
  assert_int_equal(t_get(&t, "users", "alice", &found, v, sizeof v), 0);
  assert_int_equal(t_get(&t, "users", "bob\n\"x", &found, v, sizeof v), 0);
  assert_int_equal(s.n, 3);
  for (int i = 0; i < s.n; i++) {
    assert_null(strstr(s.lines[i], "s3cr3t"));
    strip_us(s.lines[i]);
  }
  assert_string_equal(s.lines[0], "kvio: put collection=\"users\" "
                                  "key=\"alice\" status=ok len=15 ttl=60");
  assert_string_equal(s.lines[1], "kvio: get collection=\"users\" "
                                  "key=\"alice\" status=ok found=1 len=15");
  assert_string_equal(s.lines[2], "kvio: get collection=\"users\" "
                                  "key=\"bob\\n\\\"x\" status=ok found=0");
  ts_close(&t);
}

static void values_when_asked(void **state) {
  tstack_t t;
  sink_t s;
  char v[32];
  int found;
  (void)state;
  stack(&t, &s, 1, 0);
  assert_int_equal(t_put(&t, "c", "k", "visible", 0), 0);
  assert_int_equal(t_get(&t, "c", "k", &found, v, sizeof v), 0);
  assert_non_null(strstr(s.lines[0], " value=\"visible\""));
  assert_non_null(strstr(s.lines[1], " value=\"visible\""));
  ts_close(&t);
}

static void json_lines(void **state) {
  tstack_t t;
  sink_t s;
  json_t *j;
  json_error_t e;
  kv_req_t r;
  char v[32];
  int found;
  (void)state;
  stack(&t, &s, 0, 1);
  assert_int_equal(t_put(&t, "c", "k\xc3\xa9", "hidden", 0), 0);
  assert_int_equal(t_get(&t, "c", "k\xc3\xa9", &found, v, sizeof v), 0);
  memset(&r, 0, sizeof r);
  assert_int_equal(kv_sync_incr(t.sync, &r, "c", "k\xc3\xa9", 1, 0), KV_EINVAL);
  kv_req_cleanup(&r);
  assert_int_equal(s.n, 3);
  j = json_loads(s.lines[1], 0, &e);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "op")), "get");
  assert_string_equal(json_string_value(json_object_get(j, "collection")), "c");
  assert_string_equal(json_string_value(json_object_get(j, "key")),
                      "k\xc3\xa9");
  assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
  assert_true(json_is_true(json_object_get(j, "found")));
  assert_int_equal(json_integer_value(json_object_get(j, "len")), 6);
  assert_true(json_is_integer(json_object_get(j, "us")));
  assert_null(json_object_get(j, "value"));
  assert_null(strstr(s.lines[0], "hidden"));
  json_decref(j);
  j = json_loads(s.lines[2], 0, &e);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "status")),
                      "KV_EINVAL");
  assert_non_null(json_string_value(json_object_get(j, "error")));
  json_decref(j);
  ts_close(&t);
}

/* With values, a value that is not UTF-8 goes in "value_hex" (lower case),
 * cut at 256 bytes as text is. */
static void json_binary_values_in_hex(void **state) {
  tstack_t t;
  sink_t s;
  json_t *j;
  json_error_t e;
  char big[301], want[513];
  (void)state;
  stack(&t, &s, 1, 1);
  assert_int_equal(t_put(&t, "c", "bin", "\xff\xfe\x01\x41\x7a", 0), 0);
  memset(big, 0xab, 300);
  big[300] = '\0';
  assert_int_equal(t_put(&t, "c", "big", big, 0), 0);
  assert_int_equal(s.n, 2);
  j = json_loads(s.lines[0], 0, &e);
  assert_non_null(j);
  assert_null(json_object_get(j, "value"));
  assert_string_equal(json_string_value(json_object_get(j, "value_hex")),
                      "fffe01417a");
  assert_null(json_object_get(j, "value_truncated"));
  json_decref(j);
  j = json_loads(s.lines[1], 0, &e);
  assert_non_null(j);
  for (int i = 0; i < 256; i++)
    memcpy(want + 2 * i, "ab", 2);
  want[512] = '\0';
  assert_string_equal(json_string_value(json_object_get(j, "value_hex")), want);
  assert_int_equal(json_integer_value(json_object_get(j, "len")), 300);
  assert_true(json_is_true(json_object_get(j, "value_truncated")));
  json_decref(j);
  ts_close(&t);
}

static void cli_options(void **state) {
  tstack_t t;
  kv_store_t *base = ts_init(&t, "memory://"), *out;
  char err[512];
  (void)state;
  assert_int_equal(
      kv_wrap_by_name("logging", "format=xml", base, &out, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "'xml'"));
  assert_int_equal(
      kv_wrap_by_name("logging", "values=maybe", base, &out, err, sizeof err),
      KV_EINVAL);
  assert_int_equal(kv_wrap_by_name("logging", "sink=null,format=json", base,
                                   &out, err, sizeof err),
                   0);
  ts_set(&t, out);
  ts_close(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(text_format_redacts_values),
      cmocka_unit_test(values_when_asked),
      cmocka_unit_test(json_lines),
      cmocka_unit_test(json_binary_values_in_hex),
      cmocka_unit_test(cli_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
