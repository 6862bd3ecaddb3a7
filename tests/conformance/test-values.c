/* Cases 15-18: values are bytes, returned exactly (CONFORMANCE.md,
 * "Values"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance.h"

void c15_empty_value_is_a_value(void **state) {
  conf_t *fx = FX(state);
  conf_req_t r;

  PUT_BYTES(fx, COLL, K1, "", 0);
  EXPECT_READ_BYTES(fx, COLL, K1, "", 0);
  /* Also through ttl and get_many: found, 0 bytes. */
  CHECK_OK(run_ttl(fx, &r, COLL, K1));
  CHECK_INT(r.req.found, fx->retains);
  if (fx->retains) CHECK_INT(r.req.value.len, 0);
  kv_req_cleanup(&r.req);
  {
    static const char *const keys[] = {K1};
    CHECK_OK(run_get_many(fx, &r, COLL, keys, 1));
    CHECK_INT(r.req.nresults, 1);
    CHECK_INT(r.req.results[0].found, fx->retains);
    if (fx->retains) CHECK_INT(r.req.results[0].value.len, 0);
    kv_req_cleanup(&r.req);
  }
  /* A NULL pointer with length 0 is the same empty value. */
  PUT_BYTES(fx, COLL, K2, NULL, 0);
  EXPECT_READ_BYTES(fx, COLL, K2, "", 0);
  CHECK_INT(DELETE(fx, COLL, K1), fx->retains);
}

void c16_binary_value_every_byte(void **state) {
  conf_t *fx = FX(state);
  unsigned char all[256 + 5];
  size_t i;

  /* NUL in the middle, then every byte 0x00-0xFF. */
  memcpy(all, "ab\0cd", 5);
  for (i = 0; i < 256; i++)
    all[5 + i] = (unsigned char)i;
  PUT_BYTES(fx, COLL, K1, all, sizeof(all));
  EXPECT_READ_BYTES(fx, COLL, K1, all, sizeof(all));
  /* Descending, and through put_many. */
  for (i = 0; i < 256; i++)
    all[5 + i] = (unsigned char)(255 - i);
  {
    static const char *const keys[] = {K2};
    kv_buf_t v = {(char *)all, sizeof(all)};
    conf_req_t r;
    CHECK_OK(run_put_many(fx, &r, COLL, keys, &v, 1, 0));
    kv_req_cleanup(&r.req);
  }
  EXPECT_READ_BYTES(fx, COLL, K2, all, sizeof(all));
  /* A single NUL byte is one byte, not an empty value. */
  PUT_BYTES(fx, COLL, K3, "\0", 1);
  EXPECT_READ_BYTES(fx, COLL, K3, "\0", 1);
}

void c17_text_values(void **state) {
  conf_t *fx = FX(state);
  static const char *const texts[] = {
      ("\xe4\xb8\xad\xe6\x96\x87 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
       "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4"),                /* CJK */
      "\xf0\x9f\x98\x80\xf0\x9f\x8e\x89\xf0\x9f\x91\x8d",      /* emoji */
      "caf\xc3\xa9 na\xc3\xafve \xc3\xa0 l'\xc3\xa9t\xc3\xa9", /* accents */
      "line 1\nline 2\n\ttabbed\r\n",
      "null",
      "true",
      "1",
      "1.0",
      "{\"json\": [1, 2]}",
      " leading and trailing spaces ",
  };
  char key[32];
  size_t i;

  for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
    snprintf(key, sizeof(key), "text_%zu", i);
    PUT(fx, COLL, key, texts[i]);
  }
  for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
    snprintf(key, sizeof(key), "text_%zu", i);
    EXPECT_READ(fx, COLL, key, texts[i]);
  }
}

static void large_round_trip(conf_t *fx, const char *key, size_t size,
                             int may_be_too_big) {
  char *buf = malloc(size);
  conf_req_t r;
  size_t i;
  uint32_t x = (uint32_t)size * 2654435761u;
  int rc;

  assert_non_null(buf);
  for (i = 0; i < size; i++) {
    x = x * 1103515245u + 12345u;
    buf[i] = (char)(x >> 24);
  }
  rc = run_put(fx, &r, COLL, key, buf, size, 0);
  kv_req_cleanup(&r.req);
  if (rc == KV_ETOOBIG && may_be_too_big) {
    print_message("[   NOTE   ] %s: %zu-byte value is KV_ETOOBIG here\n",
                  conf_url, size);
    EXPECT_MISSING(fx, COLL, key);
    free(buf);
    return;
  }
  if (rc != 0) {
    free(buf);
    conf_fail_at(__FILE__, __LINE__, "put of %zu bytes failed: %s", size,
                 kv_err_name(rc));
  }
  rc = run_get(fx, &r, COLL, key);
  if (rc != 0 || r.req.found != fx->retains ||
      (fx->retains &&
       (r.req.value.len != size || memcmp(r.req.value.base, buf, size) != 0))) {
    int found = r.req.found;
    size_t len = r.req.value.len;
    kv_req_cleanup(&r.req);
    free(buf);
    conf_fail_at(__FILE__, __LINE__,
                 "get of a %zu-byte value: status %s, found %d, %zu bytes, "
                 "expected %s",
                 size, kv_err_name(rc), found, len,
                 fx->retains ? "the same bytes" : "missing");
  }
  kv_req_cleanup(&r.req);
  free(buf);
}

void c18_large_values(void **state) {
  conf_t *fx = FX(state);

  large_round_trip(fx, "large_10000", 10000, 0);
  large_round_trip(fx, "large_1MiB", 1u << 20, 0);
  large_round_trip(fx, "large_16MiB", 16u << 20, 1);
  /* The small entries around them are untouched. */
  PUT(fx, COLL, K1, V);
  EXPECT_READ(fx, COLL, K1, V);
}
