/* Cases 19-24: keys and collections (CONFORMANCE.md, "Names"). Every store
 * accepts 1..4096 bytes of UTF-8 whatever its backend's limits, never lets
 * two names collide, and lists the names the user wrote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conformance.h"

static char *repeat(const char *unit, size_t times) {
  size_t ulen = strlen(unit);
  char *s = malloc(ulen * times + 1);
  size_t i;

  assert_non_null(s);
  for (i = 0; i < times; i++)
    memcpy(s + i * ulen, unit, ulen);
  s[ulen * times] = '\0';
  return s;
}

/* With KV_CAP_ENUMERATE, keys(c) lists `key` exactly once and collections()
 * lists `c` exactly once (on the null store: nothing). */
static void expect_listed(conf_t *fx, const char *c, const char *key) {
  char **names;
  size_t n;

  if (!HAS(fx, KV_CAP_ENUMERATE)) return;
  names = LIST_KEYS(fx, c, 0, &n);
  if (names_count(names, n, key) != (fx->retains ? 1 : 0)) {
    names_free(names, n);
    conf_fail_at(__FILE__, __LINE__,
                 "keys(%.40s...) does not list the %zu-byte key %.40s... %s", c,
                 strlen(key), key, fx->retains ? "once" : "zero times");
  }
  names_free(names, n);
  names = LIST_COLLECTIONS(fx, 0, &n);
  if (names_count(names, n, c) != (fx->retains ? 1 : 0)) {
    names_free(names, n);
    conf_fail_at(__FILE__, __LINE__,
                 "collections() does not list the %zu-byte collection "
                 "%.40s... %s",
                 strlen(c), c, fx->retains ? "once" : "zero times");
  }
  names_free(names, n);
}

void c19_long_names(void **state) {
  conf_t *fx = FX(state);
  char *coll1500 = repeat("test_collection", 100);
  char *key800 = repeat("test_key", 100);
  char *max_ascii = repeat("abcdefgh", 512);
  char *max_utf8 = repeat("\xc3\xa9", 2048); /* 2048 x "é" */

  CHECK_INT(strlen(coll1500), 1500);
  CHECK_INT(strlen(key800), 800);
  CHECK_INT(strlen(max_ascii), KV_NAME_MAX);
  CHECK_INT(strlen(max_utf8), KV_NAME_MAX);
  PUT(fx, coll1500, key800, V);
  EXPECT_READ(fx, coll1500, key800, V);
  expect_listed(fx, coll1500, key800);
  PUT(fx, max_ascii, max_ascii, V2);
  EXPECT_READ(fx, max_ascii, max_ascii, V2);
  expect_listed(fx, max_ascii, max_ascii);
  PUT(fx, max_utf8, max_utf8, "utf8");
  EXPECT_READ(fx, max_utf8, max_utf8, "utf8");
  expect_listed(fx, max_utf8, max_utf8);
  /* The short key in the same collections is a different entry. */
  EXPECT_MISSING(fx, coll1500, K1);
  EXPECT_MISSING(fx, max_ascii, key800);
  CHECK_INT(DELETE(fx, coll1500, key800), fx->retains);
  EXPECT_MISSING(fx, coll1500, key800);
  EXPECT_READ(fx, max_ascii, max_ascii, V2);
  free(coll1500);
  free(key800);
  free(max_ascii);
  free(max_utf8);
}

static const char *const special[] = {
    "test_collection!@#$%^&*()",
    "test_key!@#$%^&*()",
    "with spaces  and\ttab",
    "a/b/c",
    "/leading/slash",
    "trailing/",
    "..",
    ".",
    "../..",
    "*?[]",
    "key*",
    "[a-z]?",
    "::",
    "a::b",
    "__",
    "a__b",
    "%",
    "%2F%00%",
    "'single' \"double\" `back`",
    "back\\slash",
    "\\",
    "\xc3\xa9\xc3\xa0\xc3\xbc \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x94\x91",
    "{braces}|pipe;semi,comma=eq+plus~tilde",
    "\x01\x02\x1f control",
};
#define NSPECIAL (sizeof(special) / sizeof(special[0]))

void c20_special_characters(void **state) {
  conf_t *fx = FX(state);
  char val[32];
  size_t i;

  /* As keys in one collection, and as collections holding one key. */
  for (i = 0; i < NSPECIAL; i++) {
    snprintf(val, sizeof(val), "key value %zu", i);
    PUT(fx, COLL, special[i], val);
    snprintf(val, sizeof(val), "coll value %zu", i);
    PUT(fx, special[i], K1, val);
  }
  for (i = 0; i < NSPECIAL; i++) {
    snprintf(val, sizeof(val), "key value %zu", i);
    EXPECT_READ(fx, COLL, special[i], val);
    snprintf(val, sizeof(val), "coll value %zu", i);
    EXPECT_READ(fx, special[i], K1, val);
  }
  if (HAS(fx, KV_CAP_ENUMERATE)) {
    char **names;
    size_t n;

    names = LIST_KEYS(fx, COLL, 0, &n);
    CHECK_INT(n, fx->retains ? NSPECIAL : 0);
    for (i = 0; fx->retains && i < NSPECIAL; i++) {
      if (names_count(names, n, special[i]) != 1) {
        names_free(names, n);
        conf_fail_at(__FILE__, __LINE__, "keys() does not list \"%s\" once",
                     special[i]);
      }
    }
    names_free(names, n);
    names = LIST_COLLECTIONS(fx, 0, &n);
    /* COLL itself ("test") plus every special collection. */
    CHECK_INT(n, fx->retains ? NSPECIAL + 1 : 0);
    for (i = 0; fx->retains && i < NSPECIAL; i++) {
      if (names_count(names, n, special[i]) != 1) {
        names_free(names, n);
        conf_fail_at(__FILE__, __LINE__,
                     "collections() does not list \"%s\" once", special[i]);
      }
    }
    names_free(names, n);
  }
}

void c21_no_collisions(void **state) {
  conf_t *fx = FX(state);
  static const char *const pairs[][4] = {
      /* collection, key, collection, key: two different entries */
      {"a::b", "c", "a", "b::c"},     {"a__b", "c", "a", "b__c"},
      {"a/b", "c", "a", "b/c"},       {"a:b", "c", "a", "b:c"},
      {"a:", ":c", "a::", "c"},       {"a|b", "c", "a", "b|c"},
      {"x%3A%3Ay", "c", "x::y", "c"}, /* escaping must be injective */
      {"k", "a%2Fb", "k", "a/b"},     {"a.b", "c", "a", "b.c"},
      {"a\\", "c", "a", "\\c"},
  };
  char *long_a = repeat("x", KV_NAME_MAX);
  char *long_b = repeat("x", KV_NAME_MAX);
  char *long_c = repeat("x", KV_NAME_MAX - 1);
  char val[32];
  size_t i;

  for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
    snprintf(val, sizeof(val), "first %zu", i);
    PUT(fx, pairs[i][0], pairs[i][1], val);
    snprintf(val, sizeof(val), "second %zu", i);
    PUT(fx, pairs[i][2], pairs[i][3], val);
  }
  for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
    snprintf(val, sizeof(val), "first %zu", i);
    EXPECT_READ(fx, pairs[i][0], pairs[i][1], val);
    snprintf(val, sizeof(val), "second %zu", i);
    EXPECT_READ(fx, pairs[i][2], pairs[i][3], val);
  }
  /* Long names that differ only at the end (backends that hash the excess
   * must keep them apart), and a name that is a prefix of another. */
  long_b[KV_NAME_MAX - 1] = 'y';
  PUT(fx, COLL, long_a, "long a");
  PUT(fx, COLL, long_b, "long b");
  PUT(fx, COLL, long_c, "long c");
  PUT(fx, long_a, K1, "coll a");
  PUT(fx, long_b, K1, "coll b");
  EXPECT_READ(fx, COLL, long_a, "long a");
  EXPECT_READ(fx, COLL, long_b, "long b");
  EXPECT_READ(fx, COLL, long_c, "long c");
  EXPECT_READ(fx, long_a, K1, "coll a");
  EXPECT_READ(fx, long_b, K1, "coll b");
  CHECK_INT(DELETE(fx, COLL, long_a), fx->retains);
  EXPECT_READ(fx, COLL, long_b, "long b");
  EXPECT_READ(fx, COLL, long_c, "long c");
  free(long_a);
  free(long_b);
  free(long_c);
}

void c22_same_key_two_collections(void **state) {
  conf_t *fx = FX(state);

  PUT(fx, "coll_a", K1, V);
  PUT(fx, "coll_b", K1, V2);
  PUT(fx, NULL, K1, "default");
  EXPECT_READ(fx, "coll_a", K1, V);
  EXPECT_READ(fx, "coll_b", K1, V2);
  EXPECT_READ(fx, NULL, K1, "default");
  /* NULL, "" and the default collection's name are the same collection. */
  EXPECT_READ(fx, "", K1, "default");
  EXPECT_READ(fx, KV_DEFAULT_COLLECTION, K1, "default");
  CHECK_INT(DELETE(fx, "coll_a", K1), fx->retains);
  EXPECT_MISSING(fx, "coll_a", K1);
  EXPECT_READ(fx, "coll_b", K1, V2);
  EXPECT_READ(fx, NULL, K1, "default");
}

/* Every op that takes a key, with an invalid key: KV_EINVAL at submit. */
static void reject_key(conf_t *fx, const char *c, const char *k) {
  const char *keys[] = {K1, k};
  kv_buf_t vals[] = {{(char *)V, 4}, {(char *)V, 4}};
  conf_req_t r;

  CHECK_STATUS(run_get(fx, &r, c, k), KV_EINVAL);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_ttl(fx, &r, c, k), KV_EINVAL);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_put(fx, &r, c, k, V, 4, 0), KV_EINVAL);
  CHECK_TRUE(kv_req_errmsg(&r.req) != NULL);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_delete(fx, &r, c, k), KV_EINVAL);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_get_many(fx, &r, c, keys, 2), KV_EINVAL);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_ttl_many(fx, &r, c, keys, 2), KV_EINVAL);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_put_many(fx, &r, c, keys, vals, 2, 0), KV_EINVAL);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_delete_many(fx, &r, c, keys, 2), KV_EINVAL);
  kv_req_cleanup(&r.req);
  if (HAS(fx, KV_CAP_ATOMIC)) {
    CHECK_STATUS(run_put_if_absent(fx, &r, c, k, V, 4, 0), KV_EINVAL);
    kv_req_cleanup(&r.req);
    CHECK_STATUS(run_cas(fx, &r, c, k, NULL, 0, V, 4, 0), KV_EINVAL);
    kv_req_cleanup(&r.req);
    CHECK_STATUS(run_incr(fx, &r, c, k, 1, 0), KV_EINVAL);
    kv_req_cleanup(&r.req);
    CHECK_STATUS(run_take(fx, &r, c, k), KV_EINVAL);
    kv_req_cleanup(&r.req);
  }
}

/* Every op that takes a collection, with an invalid collection. */
static void reject_collection(conf_t *fx, const char *c) {
  conf_req_t r;

  reject_key(fx, c, K1);
  if (HAS(fx, KV_CAP_ENUMERATE)) {
    CHECK_STATUS(run_keys(fx, &r, c, NULL, 0), KV_EINVAL);
    kv_req_cleanup(&r.req);
  }
  if (HAS(fx, KV_CAP_DESTROY)) {
    CHECK_STATUS(run_destroy_collection(fx, &r, c), KV_EINVAL);
    kv_req_cleanup(&r.req);
  }
}

void c23_invalid_names_rejected(void **state) {
  conf_t *fx = FX(state);
  static const char *const bad_utf8[] = {
      "\xff\xfe",         /* never valid */
      "ab\xc3",           /* truncated sequence */
      "\xc0\xaf",         /* overlong "/" */
      "\xed\xa0\x80",     /* UTF-16 surrogate */
      "\xf4\x90\x80\x80", /* above U+10FFFF */
      "a\x80z",           /* stray continuation byte */
  };
  char *too_long = repeat("k", KV_NAME_MAX + 1);
  char *too_long_utf8 = repeat("\xc3\xa9", KV_NAME_MAX / 2);
  size_t i;

  /* 4,097 bytes, also when every character is valid and multi-byte. */
  too_long_utf8 = realloc(too_long_utf8, KV_NAME_MAX + 2);
  assert_non_null(too_long_utf8);
  strcpy(too_long_utf8 + KV_NAME_MAX, "x");

  PUT(fx, COLL, K1, V); /* an existing entry that must stay as it is */
  reject_key(fx, COLL, "");
  reject_key(fx, COLL, too_long);
  reject_key(fx, COLL, too_long_utf8);
  for (i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
    reject_key(fx, COLL, bad_utf8[i]);
  /* Collections: "" is the default collection; the others are invalid. */
  reject_collection(fx, too_long);
  reject_collection(fx, too_long_utf8);
  for (i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
    reject_collection(fx, bad_utf8[i]);

  /* Nothing changed: the entry is there, and nothing else is. */
  EXPECT_READ(fx, COLL, K1, V);
  EXPECT_MISSING(fx, NULL, K1);
  too_long[KV_NAME_MAX] = '\0'; /* the 4096-byte prefix was not written */
  EXPECT_MISSING(fx, COLL, too_long);
  if (HAS(fx, KV_CAP_ENUMERATE)) {
    char **names;
    size_t n;

    names = LIST_KEYS(fx, COLL, 0, &n);
    CHECK_INT(n, fx->retains ? 1 : 0);
    if (n == 1) CHECK_INT(strcmp(names[0], K1), 0);
    names_free(names, n);
    names = LIST_COLLECTIONS(fx, 0, &n);
    CHECK_INT(n, fx->retains ? 1 : 0);
    if (n == 1) CHECK_INT(strcmp(names[0], COLL), 0);
    names_free(names, n);
  }
  free(too_long);
  free(too_long_utf8);
}

void c24_injection_names_are_data(void **state) {
  conf_t *fx = FX(state);
  static const char *const names[] = {
      "x'; DROP TABLE kv; --",
      "../../../../tmp/evil",
      "\"; DELETE FROM kv WHERE \"1\"=\"1",
      "/etc/passwd",
      "..\\..\\windows",
      "$(touch /tmp/kvio-evil)",
  };
  struct stat st;
  int evil_existed = stat("/tmp/evil", &st) == 0;
  int evil2_existed = stat("/tmp/kvio-evil", &st) == 0;
  char val[32];
  size_t i;

  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    snprintf(val, sizeof(val), "injected %zu", i);
    PUT(fx, names[i], names[i], val);
    PUT(fx, COLL, names[i], val);
  }
  for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    snprintf(val, sizeof(val), "injected %zu", i);
    EXPECT_READ(fx, names[i], names[i], val);
    EXPECT_READ(fx, COLL, names[i], val);
    expect_listed(fx, names[i], names[i]);
  }
  /* The store still works and nothing escaped it. */
  PUT(fx, COLL, K1, V);
  EXPECT_READ(fx, COLL, K1, V);
  if (!evil_existed) CHECK_TRUE(stat("/tmp/evil", &st) != 0);
  if (!evil2_existed) CHECK_TRUE(stat("/tmp/kvio-evil", &st) != 0);
  CHECK_INT(DELETE(fx, COLL, names[0]), fx->retains);
  EXPECT_READ(fx, names[0], names[0], "injected 0");
}
