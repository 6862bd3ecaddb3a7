/* test-cloud s3|dynamodb [throttle]: the cloud stores' own tests, run by
 * tests/servers/with-cloud.sh against a local s3rver / dynalite (endpoint
 * in KV_CLOUD_ENDPOINT, stop/start scripts in KV_CLOUD_STOP/START).
 *
 *  - the server down at open and during a run: KV_ECONN, then the same
 *    store works again once the server is back;
 *  - wrong credentials: KV_EAUTH (s3rver checks the access key), and the
 *    secret appears in no error text;
 *  - S3: a 16 MiB value round trip; listings over several pages (more than
 *    1,000 entries) on both stores;
 *  - "throttle": through the throttling proxy (every third answer is a
 *    throttling error) every request still succeeds: they were retried. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kvio.h"

static const char *kind;
static const char *endpoint;
static char url[1024];

static void make_url(const char *extra) {
  if (strcmp(kind, "s3") == 0)
    snprintf(url, sizeof url, "s3://kvio-test?endpoint=%s&create=1%s", endpoint,
             extra ? extra : "");
  else
    snprintf(url, sizeof url, "dynamodb://kvio_test?endpoint=%s&create=1%s",
             endpoint, extra ? extra : "");
}

static kv_sync_t *open_store(const char *extra) {
  kv_sync_t *s = NULL;
  char err[256];
  make_url(extra);
  int rc = kv_sync_open(url, &s, err, sizeof err);
  if (rc != 0) fail_msg("open %s: %s (%s)", url, kv_err_name(rc), err);
  return s;
}

static int run_script(const char *env) {
  const char *p = getenv(env);
  assert_non_null(p);
  return system(p);
}

static void test_server_down(void **state) {
  (void)state;
  kv_req_t r = {0};
  /* Down at open: open succeeds (no network), requests fail with ECONN. */
  assert_int_equal(run_script("KV_CLOUD_STOP"), 0);
  kv_sync_t *s = open_store("&timeout=5");
  assert_int_equal(kv_sync_put(s, &r, "c", "k", "v", 1, 0), KV_ECONN);
  kv_req_cleanup(&r);
  assert_int_equal(kv_sync_get(s, &r, "c", "k"), KV_ECONN);
  kv_req_cleanup(&r);
  /* Back: the same store works. */
  assert_int_equal(run_script("KV_CLOUD_START"), 0);
  assert_int_equal(kv_sync_put(s, &r, "c", "k", "v1", 2, 0), 0);
  kv_req_cleanup(&r);
  /* Down during the run. */
  assert_int_equal(run_script("KV_CLOUD_STOP"), 0);
  assert_int_equal(kv_sync_get(s, &r, "c", "k"), KV_ECONN);
  kv_req_cleanup(&r);
  assert_int_equal(run_script("KV_CLOUD_START"), 0);
  assert_int_equal(kv_sync_get(s, &r, "c", "k"), 0);
  assert_int_equal(r.found, 1);
  assert_memory_equal(r.value.base, "v1", 2);
  kv_req_cleanup(&r);
  kv_sync_close(s);
}

static void test_wrong_credentials(void **state) {
  (void)state;
  kv_req_t r = {0};
  kv_sync_t *s = open_store("&access_key=WRONGKEY&secret_key=TopSecretValue42");
  int rc = kv_sync_put(s, &r, "c", "k", "v", 1, 0);
  if (strcmp(kind, "s3") == 0) {
    assert_int_equal(rc, KV_EAUTH);
    assert_null(strstr(kv_req_errmsg(&r), "TopSecretValue42"));
  } else {
    /* dynalite accepts any key: the request goes through. */
    assert_int_equal(rc, 0);
  }
  kv_req_cleanup(&r);
  kv_sync_close(s);
  /* A URL with a secret is never printed back in an open error. */
  kv_sync_t *bad = NULL;
  char err[256];
  rc = kv_sync_open(strcmp(kind, "s3") == 0
                        ? "s3://kvio-test?secret_key=TopSecretValue42&bogus=1"
                        : "dynamodb://kvio_test?secret_key=TopSecretValue42&bogus=1",
                    &bad, err, sizeof err);
  assert_int_equal(rc, KV_EINVAL);
  assert_null(strstr(err, "TopSecretValue42"));
}

/* S3: 16 MiB in one object. DynamoDB: 2 MiB in chunk items (the item
 * limit is 400 KB), read back by get and get_many, then replaced by a small
 * value and by another large one, then taken. */
static void test_big_value(void **state) {
  (void)state;
  int s3 = strcmp(kind, "s3") == 0;
  size_t n = s3 ? 16u << 20 : 2u << 20;
  char *big = malloc(n);
  uint32_t x = 12345;
  kv_req_t r = {0};
  assert_non_null(big);
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    big[i] = (char)(x >> 24);
  }
  kv_sync_t *s = open_store("&timeout=120");
  assert_int_equal(kv_sync_put(s, &r, "big", "sixteen", big, n, 0), 0);
  kv_req_cleanup(&r);
  assert_int_equal(kv_sync_get(s, &r, "big", "sixteen"), 0);
  assert_int_equal(r.found, 1);
  assert_int_equal(r.value.len, n);
  assert_memory_equal(r.value.base, big, n);
  kv_req_cleanup(&r);
  const char *many[3] = {"sixteen", "missing", "sixteen"};
  assert_int_equal(kv_sync_get_many(s, &r, "big", many, 3), 0);
  assert_int_equal(r.results[0].found, 1);
  assert_int_equal(r.results[0].value.len, n);
  assert_memory_equal(r.results[0].value.base, big, n);
  assert_int_equal(r.results[1].found, 0);
  assert_int_equal(r.results[2].value.len, n);
  kv_req_cleanup(&r);
  assert_int_equal(kv_sync_put(s, &r, "big", "sixteen", "small", 5, 0), 0);
  kv_req_cleanup(&r);
  assert_int_equal(kv_sync_get(s, &r, "big", "sixteen"), 0);
  assert_int_equal(r.value.len, 5);
  kv_req_cleanup(&r);
  big[0] ^= 1;
  assert_int_equal(kv_sync_put(s, &r, "big", "sixteen", big, n - 7, 0), 0);
  kv_req_cleanup(&r);
  if (!s3) {
    assert_int_equal(kv_sync_take(s, &r, "big", "sixteen"), 0);
    assert_int_equal(r.found, 1);
    assert_int_equal(r.value.len, n - 7);
    assert_memory_equal(r.value.base, big, n - 7);
    kv_req_cleanup(&r);
    /* Chunk items are never listed as keys. */
    assert_int_equal(kv_sync_keys(s, &r, "big", NULL, 0), 0);
    assert_int_equal(r.nnames, 0);
    kv_req_cleanup(&r);
  }
  kv_sync_close(s);
  free(big);
}

#define NPAGED 1100

static void test_paging(void **state) {
  (void)state;
  kv_sync_t *s = open_store(NULL);
  static char names[NPAGED][16];
  static const char *keys[NPAGED];
  static kv_buf_t vals[NPAGED];
  static unsigned char seen[NPAGED];
  kv_req_t r = {0};
  memset(seen, 0, sizeof seen);
  assert_int_equal(kv_sync_destroy_collection(s, &r, "paged"), 0);
  kv_req_cleanup(&r);
  for (int i = 0; i < NPAGED; i++) {
    snprintf(names[i], sizeof names[i], "key%05d", i);
    keys[i] = names[i];
    vals[i].base = names[i];
    vals[i].len = strlen(names[i]);
  }
  assert_int_equal(kv_sync_put_many(s, &r, "paged", keys, vals, NPAGED, 0), 0);
  kv_req_cleanup(&r);
  /* Default page size (1,000): at least two pages. */
  char *cursor = NULL;
  int pages = 0;
  size_t total = 0;
  do {
    assert_int_equal(kv_sync_keys(s, &r, "paged", cursor, 0), 0);
    free(cursor);
    cursor = r.cursor ? strdup(r.cursor) : NULL;
    for (size_t i = 0; i < r.nnames; i++) {
      int k = atoi(r.names[i].base + 3);
      assert_true(k >= 0 && k < NPAGED);
      assert_int_equal(seen[k], 0);
      seen[k] = 1;
      total++;
    }
    pages++;
    kv_req_cleanup(&r);
  } while (cursor != NULL);
  assert_int_equal(total, NPAGED);
  assert_true(pages >= 2);
  /* destroy_collection removes more than one DeleteObjects / batch. */
  assert_int_equal(kv_sync_destroy_collection(s, &r, "paged"), 0);
  kv_req_cleanup(&r);
  assert_int_equal(kv_sync_keys(s, &r, "paged", NULL, 0), 0);
  assert_int_equal(r.nnames, 0);
  kv_req_cleanup(&r);
  kv_sync_close(s);
}

/* Through the throttling proxy: 300 requests, a third of the answers are
 * throttling errors, and every request succeeds. */
static void test_throttled(void **state) {
  (void)state;
  kv_sync_t *s = open_store("&timeout=60");
  kv_req_t r = {0};
  char key[32];
  for (int i = 0; i < 100; i++) {
    snprintf(key, sizeof key, "t%d", i);
    assert_int_equal(kv_sync_put(s, &r, "thr", key, key, strlen(key), 0), 0);
    kv_req_cleanup(&r);
    assert_int_equal(kv_sync_get(s, &r, "thr", key), 0);
    assert_int_equal(r.found, 1);
    assert_memory_equal(r.value.base, key, strlen(key));
    kv_req_cleanup(&r);
  }
  const char *many[3] = {"t1", "t2", "missing"};
  for (int i = 0; i < 50; i++) {
    assert_int_equal(kv_sync_get_many(s, &r, "thr", many, 3), 0);
    assert_int_equal(r.results[0].found, 1);
    assert_int_equal(r.results[2].found, 0);
    kv_req_cleanup(&r);
  }
  kv_sync_close(s);
  /* Throttled for good: retried until the timeout, then a transient error
   * (KV_EBUSY, or KV_ETIMEDOUT when the deadline falls during an attempt),
   * never a success. */
  char flag[1024];
  const char *dir = getenv("KV_CLOUD_DIR");
  assert_non_null(dir);
  snprintf(flag, sizeof flag, "%s/throttle-all", dir);
  FILE *f = fopen(flag, "w");
  assert_non_null(f);
  fclose(f);
  s = open_store("&timeout=0.3");
  int busy = 0;
  for (int i = 0; i < 5; i++) {
    int rc = kv_sync_get(s, &r, "thr", "t1");
    if (rc == 0 || kv_err_category(rc) != KV_CAT_TRANSIENT)
      fail_msg("get while throttled: %s (%s)", kv_err_name(rc), kv_req_errmsg(&r));
    busy += rc == KV_EBUSY;
    kv_req_cleanup(&r);
  }
  remove(flag);
  print_message("throttled for good: %d of 5 KV_EBUSY, the rest KV_ETIMEDOUT\n", busy);
  assert_int_equal(kv_sync_get(s, &r, "thr", "t1"), 0); /* and back */
  kv_req_cleanup(&r);
  kv_sync_close(s);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s s3|dynamodb [throttle]\n", argv[0]);
    return 2;
  }
  kind = argv[1];
  endpoint = getenv("KV_CLOUD_ENDPOINT");
  if (endpoint == NULL) {
    fprintf(stderr, "KV_CLOUD_ENDPOINT is not set (run me under with-cloud.sh)\n");
    return 2;
  }
  if (argc > 2 && strcmp(argv[2], "throttle") == 0) {
    const struct CMUnitTest t[] = {cmocka_unit_test(test_throttled)};
    return cmocka_run_group_tests_name("throttle", t, NULL, NULL);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wrong_credentials),
      cmocka_unit_test(test_big_value),
      cmocka_unit_test(test_paging),
      cmocka_unit_test(test_server_down),
  };
  return cmocka_run_group_tests_name(kind, tests, NULL, NULL);
}
