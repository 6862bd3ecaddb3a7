/* Unit tests of the file:// store (one JSON file): what the conformance suite
 * does not reach — the format on disk, corrupt and truncated files (an error
 * at open, the bytes untouched), symbolic links, files changed underneath by
 * another store or a person, the lock, group commit, failed rewrites. Each
 * test gets a fresh directory and its own loop, and ends by proving the loop
 * closes with nothing open. Without the file part it is skipped (77). */
#ifndef KV_HAVE_FILE

int main(void) {
  return 77;
}
#else
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "internal.h"
#include "kvio/file.h"

typedef struct fx_s {
  uv_loop_t loop;
  kv_store_t *store;
  char dir[64];   /* the test's temporary directory */
  char path[96];  /* dir/state.json */
  char url[160];  /* file://path */
  char lock[112]; /* path.lock */
  char tmp[112];  /* path.tmp */
} fx_t;

static int g_done;

static void done_cb(kv_req_t *req) {
  (void)req;
  g_done++;
}

static int sync_wait(fx_t *fx, kv_req_t *req, int rc) {
  if (rc != 0) return rc;
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 1);
  return req->status;
}

#define SYNC(fx, req, call) \
  (memset(&(req), 0, sizeof(req)), g_done = 0, sync_wait((fx), &(req), (call)))

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  strcpy(fx->dir, "/tmp/kvio-file-XXXXXX");
  assert_non_null(mkdtemp(fx->dir));
  snprintf(fx->path, sizeof fx->path, "%s/state.json", fx->dir);
  snprintf(fx->url, sizeof fx->url, "file://%s", fx->path);
  snprintf(fx->lock, sizeof fx->lock, "%s.lock", fx->path);
  snprintf(fx->tmp, sizeof fx->tmp, "%s.tmp", fx->path);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  *state = fx;
  return 0;
}

static void closed_cb(kv_store_t *s) {
  (*(int *)s->data)++;
}

static void close_store(fx_t *fx, kv_store_t *s) {
  int closed = 0;
  s->data = &closed;
  assert_int_equal(kv_store_close(s, closed_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
}

static int teardown(void **state) {
  fx_t *fx = *state;
  char cmd[128];
  if (fx->store != NULL) close_store(fx, fx->store);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
  assert_int_equal(system(cmd), 0);
  free(fx);
  return 0;
}

static kv_store_t *open_url(fx_t *fx, const char *url) {
  char err[512];
  kv_store_t *s = NULL;
  int rc = kv_open_ex(&fx->loop, url, &s, err, sizeof err);
  if (rc != 0) fail_msg("kv_open_ex(%s): %s: %s", url, kv_err_name(rc), err);
  return s;
}

/* Open expecting failure `want`; returns the detail (static). */
static const char *open_fails(fx_t *fx, const char *url, int want) {
  static char err[512];
  kv_store_t *s = NULL;
  int rc;
  err[0] = '\0';
  rc = kv_open_ex(&fx->loop, url, &s, err, sizeof err);
  if (rc != want)
    fail_msg("kv_open_ex(%s) = %s (%s), expected %s", url, kv_err_name(rc), err,
             kv_err_name(want));
  assert_null(s);
  return err;
}

static void put_in(fx_t *fx, kv_store_t *s, const char *key, const void *v,
                   size_t len, double ttl) {
  kv_req_t req;
  int rc = SYNC(fx, req, kv_put(s, &req, NULL, key, v, len, ttl, done_cb));
  if (rc != 0)
    fail_msg("put %s: %s: %s", key, kv_err_name(rc), kv_req_errmsg(&req));
  kv_req_cleanup(&req);
}

static void put(fx_t *fx, const char *key, const char *v) {
  put_in(fx, fx->store, key, v, strlen(v), 0);
}

/* Expect key to hold v (NULL: missing) in store s. */
static void expect_in(fx_t *fx, kv_store_t *s, const char *key, const char *v) {
  kv_req_t req;
  int rc = SYNC(fx, req, kv_get(s, &req, NULL, key, done_cb));
  if (rc != 0)
    fail_msg("get %s: %s: %s", key, kv_err_name(rc), kv_req_errmsg(&req));
  if (v == NULL) {
    assert_int_equal(req.found, 0);
  } else {
    if (!req.found) fail_msg("get %s: missing, expected \"%s\"", key, v);
    assert_int_equal(req.value.len, strlen(v));
    assert_memory_equal(req.value.base, v, strlen(v));
  }
  kv_req_cleanup(&req);
}

static void expect(fx_t *fx, const char *key, const char *v) {
  expect_in(fx, fx->store, key, v);
}

static kv_file_stats_t stats(kv_store_t *s) {
  kv_file_stats_t st;
  assert_int_equal(kv_store_ctl(s, KV_FILE_CTL_STATS, &st, sizeof st), 0);
  return st;
}

/* The whole content of a file (malloc'ed; NULL when missing). */
static char *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  char *buf;
  long n;
  if (fp == NULL) return NULL;
  assert_int_equal(fseek(fp, 0, SEEK_END), 0);
  n = ftell(fp);
  rewind(fp);
  buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
  buf[n] = '\0';
  fclose(fp);
  *len = (size_t)n;
  return buf;
}

static void spew(const char *path, const void *p, size_t n) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(p, 1, n, fp), n);
  assert_int_equal(fclose(fp), 0);
}

/* Replace the file the way an editor or another program would: a new file
 * renamed over it. */
static void replace_file(fx_t *fx, const char *text) {
  char other[128];
  snprintf(other, sizeof other, "%s/edit.tmp", fx->dir);
  spew(other, text, strlen(text));
  assert_int_equal(rename(other, fx->path), 0);
}

static json_t *load_json(const char *path) {
  json_error_t e;
  json_t *j = json_load_file(path, 0, &e);
  if (j == NULL) fail_msg("%s: %s (line %d)", path, e.text, e.line);
  return j;
}

/* ---- The format -----------------------------------------------------------
 */

static void missing_file_is_empty_and_created_by_first_write(void **state) {
  fx_t *fx = *state;
  struct stat st;
  json_t *j, *e;
  fx->store = open_url(fx, fx->url);
  expect(fx, "a", NULL);
  assert_int_equal(stat(fx->path, &st), -1); /* reads create nothing */
  put(fx, "a", "hello");
  j = load_json(fx->path);
  assert_string_equal(json_string_value(json_object_get(j, "format")),
                      "kvio-file");
  assert_int_equal(json_integer_value(json_object_get(j, "version")), 1);
  e = json_object_get(
      json_object_get(json_object_get(j, "collections"), KV_DEFAULT_COLLECTION),
      "a");
  assert_string_equal(json_string_value(e), "hello");
  json_decref(j);
  assert_int_equal(stat(fx->tmp, &st), -1); /* no temp file left behind */
}

static void values_ttls_and_binary_in_the_file(void **state) {
  fx_t *fx = *state;
  static const char bin[] = {'\0', '\xff', 'a', '\x80'};
  json_t *j, *c, *e;
  kv_req_t req;
  int64_t before = kv_now_ms();
  fx->store = open_url(fx, fx->url);
  put_in(fx, fx->store, "text", "wörld", strlen("wörld"), 0);
  put_in(fx, fx->store, "ttl", "soon", 4, 100);
  put_in(fx, fx->store, "bin", bin, sizeof bin, 0);
  put_in(fx, fx->store, "empty", "", 0, 0);
  /* Not UTF-8 for JSON either (a surrogate, an overlong NUL): base64. */
  put_in(fx, fx->store, "surrogate", "\xed\xa0\x80", 3, 0);
  put_in(fx, fx->store, "overlong", "\xc0\x80", 2, 0);
  j = load_json(fx->path);
  c = json_object_get(json_object_get(j, "collections"), KV_DEFAULT_COLLECTION);
  assert_string_equal(json_string_value(json_object_get(c, "text")), "wörld");
  assert_string_equal(json_string_value(json_object_get(c, "empty")), "");
  e = json_object_get(c, "ttl");
  assert_string_equal(json_string_value(json_object_get(e, "value")), "soon");
  assert_true(json_integer_value(json_object_get(e, "expires_at")) >=
              before + 100000);
  assert_true(json_integer_value(json_object_get(e, "expires_at")) <=
              kv_now_ms() + 100000);
  e = json_object_get(c, "bin");
  assert_string_equal(json_string_value(json_object_get(e, "base64")),
                      "AP9hgA==");
  assert_null(json_object_get(e, "expires_at"));
  assert_string_equal(json_string_value(json_object_get(
                          json_object_get(c, "surrogate"), "base64")),
                      "7aCA");
  assert_string_equal(json_string_value(json_object_get(
                          json_object_get(c, "overlong"), "base64")),
                      "wIA=");
  json_decref(j);
  /* And back, after a reopen. */
  close_store(fx, fx->store);
  fx->store = open_url(fx, fx->url);
  assert_int_equal(SYNC(fx, req, kv_ttl(fx->store, &req, NULL, "bin", done_cb)),
                   0);
  assert_int_equal(req.found, 1);
  assert_int_equal(req.value.len, sizeof bin);
  assert_memory_equal(req.value.base, bin, sizeof bin);
  assert_true(req.ttl == KV_TTL_NONE);
  kv_req_cleanup(&req);
  assert_int_equal(SYNC(fx, req, kv_ttl(fx->store, &req, NULL, "ttl", done_cb)),
                   0);
  assert_true(req.ttl > 98 && req.ttl <= 100);
  kv_req_cleanup(&req);
  expect(fx, "empty", "");
  expect(fx, "surrogate", "\xed\xa0\x80");
  expect(fx, "overlong", "\xc0\x80");
}

static void escapes_round_trip(void **state) {
  fx_t *fx = *state;
  /* Characters that need escapes, multibyte UTF-8 and plain ones, at every
   * offset around the serializer's 8-byte steps. */
  static const char *const parts[] = {"\"",       "\\",   "\n", "\x01", "\x1f",
                                      "\xc3\xa9", "\x7f", " ",  "a",    "/"};
  enum { N = 300 };
  static char vals[N][64];
  static char names[N][16];
  const char *keys[N];
  kv_buf_t bufs[N];
  unsigned r = 12345;
  json_t *j, *c;
  kv_req_t req;
  size_t i;
  for (i = 0; i < N; i++) {
    size_t len = 0, want = i % 40;
    while (len < want) {
      const char *p;
      r = r * 1103515245u + 12345u;
      p = parts[(r >> 16) % 10];
      if (len + strlen(p) >= sizeof vals[i]) break;
      memcpy(vals[i] + len, p, strlen(p));
      len += strlen(p);
    }
    vals[i][len] = '\0';
    snprintf(names[i], sizeof names[i], "k\"%zu\\", i);
    keys[i] = names[i];
    bufs[i].base = vals[i];
    bufs[i].len = len;
  }
  fx->store = open_url(fx, fx->url);
  assert_int_equal(
      SYNC(fx, req,
           kv_put_many(fx->store, &req, "c\n1", keys, bufs, N, 0, done_cb)),
      0);
  kv_req_cleanup(&req);
  j = load_json(fx->path);
  c = json_object_get(json_object_get(j, "collections"), "c\n1");
  assert_non_null(c);
  for (i = 0; i < N; i++) {
    json_t *v = json_object_get(c, names[i]);
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), bufs[i].len);
    assert_memory_equal(json_string_value(v), vals[i], bufs[i].len);
  }
  json_decref(j);
  close_store(fx, fx->store);
  fx->store = open_url(fx, fx->url);
  assert_int_equal(
      SYNC(fx, req, kv_get_many(fx->store, &req, "c\n1", keys, N, done_cb)), 0);
  for (i = 0; i < N; i++) {
    assert_int_equal(req.results[i].found, 1);
    assert_int_equal(req.results[i].value.len, bufs[i].len);
    assert_memory_equal(req.results[i].value.base, vals[i], bufs[i].len);
  }
  kv_req_cleanup(&req);
}

static void hand_written_file_is_read(void **state) {
  fx_t *fx = *state;
  char text[512];
  kv_req_t req;
  snprintf(text, sizeof text,
           "{\"format\": \"kvio-file\", \"version\": 1, \"note\": \"mine\",\n"
           " \"collections\": {\"default_collection\": {\n"
           "   \"plain\": \"x\",\n"
           "   \"obj\": {\"value\": \"y\"},\n"
           "   \"b64\": {\"base64\": \"aGk=\"},\n"
           "   \"gone\": {\"value\": \"old\", \"expires_at\": 1000},\n"
           "   \"later\": {\"value\": \"z\", \"expires_at\": %lld}}}}\n",
           (long long)kv_now_ms() + 3600000);
  spew(fx->path, text, strlen(text));
  fx->store = open_url(fx, fx->url);
  expect(fx, "plain", "x");
  expect(fx, "obj", "y");
  expect(fx, "b64", "hi");
  expect(fx, "gone", NULL);
  expect(fx, "later", "z");
  /* cull drops the expired entry from the file; members the store does not
   * know are kept. */
  assert_int_equal(SYNC(fx, req, kv_cull(fx->store, &req, done_cb)), 0);
  assert_int_equal(req.count, 1);
  kv_req_cleanup(&req);
  {
    json_t *j = load_json(fx->path);
    json_t *c = json_object_get(json_object_get(j, "collections"),
                                KV_DEFAULT_COLLECTION);
    assert_null(json_object_get(c, "gone"));
    assert_non_null(json_object_get(c, "later"));
    assert_string_equal(json_string_value(json_object_get(j, "note")), "mine");
    json_decref(j);
  }
}

/* ---- Corrupt files: KV_ECORRUPT at open, bytes untouched -------------------
 */

static void expect_corrupt(fx_t *fx, const void *bytes, size_t n,
                           const char *must_say) {
  char *after;
  size_t len;
  const char *msg;
  struct stat st;
  spew(fx->path, bytes, n);
  msg = open_fails(fx, fx->url, KV_ECORRUPT);
  if (strstr(msg, fx->path) == NULL || strstr(msg, must_say) == NULL)
    fail_msg("detail \"%s\" should name %s and say \"%s\"", msg, fx->path,
             must_say);
  after = slurp(fx->path, &len);
  assert_non_null(after);
  assert_int_equal(len, n);
  assert_memory_equal(after, bytes, n);
  free(after);
  assert_int_equal(stat(fx->tmp, &st), -1);
  assert_int_equal(stat(fx->lock, &st), -1); /* nothing created beside it */
}

#define EXPECT_CORRUPT_STR(fx, s, say) \
  expect_corrupt((fx), (s), strlen(s), (say))

static void truncated_file_is_ecorrupt_and_untouched(void **state) {
  fx_t *fx = *state;
  char *good, *garbage;
  size_t len, i;
  fx->store = open_url(fx, fx->url);
  for (i = 0; i < 50; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%02zu", i);
    put(fx, k, "some value");
  }
  close_store(fx, fx->store);
  fx->store = NULL;
  good = slurp(fx->path, &len);
  assert_non_null(good);
  unlink(fx->lock);
  /* Cut anywhere: the position is reported. */
  expect_corrupt(fx, good, len / 2, "line ");
  expect_corrupt(fx, good, len / 2, "column ");
  expect_corrupt(fx, good, len - 3, "byte ");
  expect_corrupt(fx, good, 1, "line 1");
  EXPECT_CORRUPT_STR(fx, "", "not valid JSON");
  /* Garbage bytes, in the middle and instead of the file. */
  garbage = malloc(len);
  memcpy(garbage, good, len);
  memcpy(garbage + len / 3, "\xff\xfe\x00garbage", 10);
  expect_corrupt(fx, garbage, len, "not valid JSON");
  for (i = 0; i < len; i++)
    garbage[i] = (char)(i * 7919 % 251);
  expect_corrupt(fx, garbage, len, "byte ");
  free(garbage);
  /* Valid JSON that is not our format. */
  EXPECT_CORRUPT_STR(fx, "[1, 2]", "not a JSON object");
  EXPECT_CORRUPT_STR(fx, "[1, 2]", "not a JSON object");
  EXPECT_CORRUPT_STR(fx,
                     "{\"format\": \"kvio-file\", \"version\": 2, "
                     "\"collections\": {}}",
                     "version 2");
  EXPECT_CORRUPT_STR(
      fx,
      "{\"format\": \"kvio-file\", \"version\": 1, \"collections\": "
      "{\"c\": {\"k\": 5}}}",
      "key \"k\"");
  EXPECT_CORRUPT_STR(
      fx,
      "{\"format\": \"kvio-file\", \"version\": 1, \"collections\": "
      "{\"c\": {\"k\": {\"base64\": \"a\"}}}}",
      "base64");
  EXPECT_CORRUPT_STR(
      fx,
      "{\"format\": \"kvio-file\", \"version\": 1, \"collections\": "
      "{\"c\": {\"k\": \"1\", \"k\": \"2\"}}}",
      "duplicate");
  /* The good file still opens. */
  spew(fx->path, good, len);
  fx->store = open_url(fx, fx->url);
  expect(fx, "k07", "some value");
  free(good);
}

static void file_corrupted_later_fails_batches_untouched(void **state) {
  fx_t *fx = *state;
  static const char bad[] = "{\"format\": \"kvio-file\", \"vers";
  char *after;
  size_t len;
  kv_req_t req;
  int rc;
  fx->store = open_url(fx, fx->url);
  put(fx, "a", "1");
  replace_file(fx, bad);
  rc = SYNC(fx, req, kv_put(fx->store, &req, NULL, "b", "2", 1, 0, done_cb));
  assert_int_equal(rc, KV_ECORRUPT);
  assert_non_null(strstr(kv_req_errmsg(&req), "line 1"));
  kv_req_cleanup(&req);
  rc = SYNC(fx, req, kv_get(fx->store, &req, NULL, "a", done_cb));
  assert_int_equal(rc, KV_ECORRUPT);
  kv_req_cleanup(&req);
  after = slurp(fx->path, &len);
  assert_int_equal(len, strlen(bad));
  assert_memory_equal(after, bad, len);
  free(after);
  /* Repaired by hand: the store carries on from the repaired file. */
  replace_file(fx,
               "{\"format\": \"kvio-file\", \"version\": 1, "
               "\"collections\": {\"default_collection\": {\"c\": \"3\"}}}");
  put(fx, "b", "2");
  expect(fx, "a", NULL);
  expect(fx, "b", "2");
  expect(fx, "c", "3");
}

/* ---- Symbolic links -------------------------------------------------------
 */

static void symlinks_are_refused(void **state) {
  fx_t *fx = *state;
  char target[128], *after;
  size_t len;
  const char *msg;
  kv_req_t req;
  int rc;
  snprintf(target, sizeof target, "%s/elsewhere", fx->dir);
  spew(target, "precious", 8);
  /* The file itself. */
  assert_int_equal(symlink(target, fx->path), 0);
  msg = open_fails(fx, fx->url, KV_EINVAL);
  assert_non_null(strstr(msg, "symbolic link"));
  unlink(fx->path);
  /* The lock file. */
  assert_int_equal(symlink(target, fx->lock), 0);
  msg = open_fails(fx, fx->url, KV_EINVAL);
  assert_non_null(strstr(msg, ".lock is a symbolic link"));
  unlink(fx->lock);
  /* The temp file, at open and when it appears later. */
  assert_int_equal(symlink(target, fx->tmp), 0);
  msg = open_fails(fx, fx->url, KV_EINVAL);
  assert_non_null(strstr(msg, ".tmp is a symbolic link"));
  unlink(fx->tmp);
  fx->store = open_url(fx, fx->url);
  put(fx, "a", "1");
  assert_int_equal(symlink(target, fx->tmp), 0);
  rc = SYNC(fx, req, kv_put(fx->store, &req, NULL, "a", "2", 1, 0, done_cb));
  assert_int_equal(rc, KV_EINVAL);
  assert_non_null(strstr(kv_req_errmsg(&req), "symbolic link"));
  kv_req_cleanup(&req);
  expect(fx, "a", "1"); /* the failed write left nothing in memory */
  after = slurp(target, &len);
  assert_int_equal(len, 8);
  assert_memory_equal(after, "precious", 8);
  free(after);
  /* The file replaced by a symlink while open. */
  unlink(fx->tmp);
  unlink(fx->path);
  assert_int_equal(symlink(target, fx->path), 0);
  rc = SYNC(fx, req, kv_put(fx->store, &req, NULL, "a", "3", 1, 0, done_cb));
  assert_int_equal(rc, KV_EINVAL);
  kv_req_cleanup(&req);
  after = slurp(target, &len);
  assert_memory_equal(after, "precious", 8);
  free(after);
}

/* ---- Sharing the file -----------------------------------------------------
 */

static void two_stores_see_each_others_writes(void **state) {
  fx_t *fx = *state;
  char url0[200];
  kv_store_t *b, *c;
  snprintf(url0, sizeof url0, "%s?watch=0", fx->url);
  fx->store = open_url(fx, fx->url);
  b = open_url(fx, fx->url);
  c = open_url(fx, url0);
  put(fx, "a", "1");
  expect_in(fx, b, "a", "1");
  expect_in(fx, c, "a", "1");
  put_in(fx, b, "a", "2", 1, 0);
  expect(fx, "a", "2");
  expect_in(fx, c, "a", "2");
  put_in(fx, c, "b", "3", 1, 0);
  expect(fx, "b", "3");
  expect_in(fx, b, "b", "3");
  expect(fx, "a", "2");
  /* A person's edit is seen too. */
  replace_file(fx,
               "{\"format\": \"kvio-file\", \"version\": 1, "
               "\"collections\": {\"default_collection\": {\"h\": \"4\"}}}");
  expect(fx, "h", "4");
  expect_in(fx, b, "h", "4");
  expect_in(fx, c, "h", "4");
  expect(fx, "a", NULL);
  close_store(fx, b);
  close_store(fx, c);
}

static void reads_are_served_from_memory(void **state) {
  fx_t *fx = *state;
  kv_file_stats_t st0, st1;
  int i;
  fx->store = open_url(fx, fx->url);
  put(fx, "a", "1");
  expect(fx, "a", "1"); /* may check the file once after the write */
  st0 = stats(fx->store);
  for (i = 0; i < 100; i++)
    expect(fx, "a", "1");
  st1 = stats(fx->store);
  assert_int_equal(st1.batches, st0.batches); /* no threadpool trip */
  assert_int_equal(st1.loop_reads, st0.loop_reads + 100);
  assert_int_equal(st1.reloads, st0.reloads);
}

static void writes_in_one_turn_are_one_rewrite(void **state) {
  fx_t *fx = *state;
  kv_req_t reqs[64];
  char keys[64][8];
  kv_file_stats_t st0, st1;
  int i;
  fx->store = open_url(fx, fx->url);
  put(fx, "warm", "up");
  st0 = stats(fx->store);
  memset(reqs, 0, sizeof reqs);
  g_done = 0;
  for (i = 0; i < 64; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    assert_int_equal(kv_put(fx->store, &reqs[i], NULL, keys[i], keys[i],
                            strlen(keys[i]), 0, done_cb),
                     0);
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 64);
  for (i = 0; i < 64; i++) {
    assert_int_equal(reqs[i].status, 0);
    kv_req_cleanup(&reqs[i]);
  }
  st1 = stats(fx->store);
  assert_int_equal(st1.batches, st0.batches + 1);
  assert_int_equal(st1.rewrites, st0.rewrites + 1);
  expect(fx, "k63", "k63");
}

static void lock_held_elsewhere_times_out(void **state) {
  fx_t *fx = *state;
  char url[200];
  kv_req_t req;
  uint64_t t0;
  int fd, rc;
  snprintf(url, sizeof url, "%s?lock_timeout=0.2", fx->url);
  fx->store = open_url(fx, url);
  put(fx, "a", "1");
  fd = open(fx->lock, O_RDWR);
  assert_true(fd >= 0);
  assert_int_equal(flock(fd, LOCK_EX), 0);
  t0 = uv_hrtime();
  rc = SYNC(fx, req, kv_put(fx->store, &req, NULL, "a", "2", 1, 0, done_cb));
  assert_int_equal(rc, KV_ETIMEDOUT);
  assert_non_null(strstr(kv_req_errmsg(&req), "lock_timeout"));
  assert_true(uv_hrtime() - t0 >= 150000000u);
  kv_req_cleanup(&req);
  expect(fx, "a", "1"); /* reads need no lock */
  assert_int_equal(flock(fd, LOCK_UN), 0);
  close(fd);
  put(fx, "a", "3");
  expect(fx, "a", "3");
  assert_true(stats(fx->store).lock_waits >= 1);
}

static void failed_rewrite_changes_nothing(void **state) {
  fx_t *fx = *state;
  char *before, *after;
  size_t n0, n1;
  kv_req_t req;
  int rc;
  fx->store = open_url(fx, fx->url);
  put(fx, "a", "1");
  before = slurp(fx->path, &n0);
  assert_int_equal(mkdir(fx->tmp, 0755), 0); /* the temp file cannot be made */
  rc = SYNC(fx, req, kv_put(fx->store, &req, NULL, "a", "2", 1, 0, done_cb));
  assert_int_equal(rc, KV_EIO);
  assert_non_null(strstr(kv_req_errmsg(&req), ".tmp"));
  kv_req_cleanup(&req);
  rc = SYNC(fx, req, kv_incr(fx->store, &req, NULL, "n", 1, 0, done_cb));
  assert_int_equal(rc, KV_EIO);
  kv_req_cleanup(&req);
  expect(fx, "a", "1");
  expect(fx, "n", NULL);
  after = slurp(fx->path, &n1);
  assert_int_equal(n0, n1);
  assert_memory_equal(before, after, n0);
  free(before);
  free(after);
  assert_int_equal(rmdir(fx->tmp), 0);
  put(fx, "a", "4");
  expect(fx, "a", "4");
}

static void permissions_are_kept(void **state) {
  fx_t *fx = *state;
  struct stat st;
  fx->store = open_url(fx, fx->url);
  put(fx, "a", "1");
  assert_int_equal(chmod(fx->path, 0600), 0);
  put(fx, "a", "2");
  assert_int_equal(stat(fx->path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
}

static void keys_limit_7_over_1000_lists_each_once(void **state) {
  fx_t *fx = *state;
  static const char *names[1000];
  char(*keys)[8] = malloc(1000 * 8);
  kv_buf_t *vals = malloc(1000 * sizeof(*vals));
  unsigned char seen[1000] = {0};
  char *cursor = NULL;
  size_t total = 0, pages = 0, i;
  kv_req_t req;
  for (i = 0; i < 1000; i++) {
    snprintf(keys[i], 8, "k%03zu", i);
    names[i] = keys[i];
    vals[i].base = keys[i];
    vals[i].len = 4;
  }
  fx->store = open_url(fx, fx->url);
  assert_int_equal(
      SYNC(fx, req,
           kv_put_many(fx->store, &req, "c", names, vals, 1000, 0, done_cb)),
      0);
  kv_req_cleanup(&req);
  do {
    assert_int_equal(
        SYNC(fx, req, kv_keys(fx->store, &req, "c", cursor, 7, done_cb)), 0);
    assert_true(req.nnames <= 7);
    for (i = 0; i < req.nnames; i++) {
      unsigned k = (unsigned)atoi(req.names[i].base + 1);
      assert_true(k < 1000);
      assert_int_equal(seen[k], 0);
      seen[k] = 1;
      total++;
    }
    free(cursor);
    cursor = req.cursor ? strdup(req.cursor) : NULL;
    kv_req_cleanup(&req);
    /* Another store rewrites the file between pages: the cursor holds. */
    if (pages++ == 50) {
      kv_store_t *b = open_url(fx, fx->url);
      put_in(fx, b, "other", "x", 1, 0);
      close_store(fx, b);
    }
  } while (cursor != NULL);
  assert_int_equal(total, 1000);
  assert_int_equal(pages, 143);
  free(keys);
  free(vals);
}

static void options_are_checked(void **state) {
  fx_t *fx = *state;
  char url[256];
  const char *msg;
  snprintf(url, sizeof url, "%s?sync=sometimes", fx->url);
  msg = open_fails(fx, url, KV_EINVAL);
  assert_non_null(strstr(msg, "sometimes"));
  snprintf(url, sizeof url, "%s?indent=9", fx->url);
  open_fails(fx, url, KV_EINVAL);
  snprintf(url, sizeof url, "%s?lock_timeout=-1", fx->url);
  open_fails(fx, url, KV_EINVAL);
  snprintf(url, sizeof url, "%s?bogus=1", fx->url);
  open_fails(fx, url, KV_EINVAL);
  snprintf(url, sizeof url, "file://%s/", fx->dir);
  open_fails(fx, url, KV_EINVAL);
  open_fails(fx, "file://", KV_EINVAL);
  open_fails(fx, "file:///nonexistent-dir-kvio/x.json", KV_EIO);
  snprintf(url, sizeof url, "file://%s", fx->dir); /* a directory */
  open_fails(fx, url, KV_EINVAL);
  /* indent=0: one compact line. */
  snprintf(url, sizeof url, "%s?indent=0&sync=none", fx->url);
  fx->store = open_url(fx, url);
  put(fx, "a", "1");
  {
    size_t len;
    char *text = slurp(fx->path, &len);
    assert_non_null(text);
    assert_ptr_equal(strchr(text, '\n'), text + len - 1);
    free(text);
  }
}

/* ---- aiokv's files ------------------------------------------------------- */

static void touch_cb(kv_req_t *req) {
  (void)req;
  g_done++;
}

static void aiokv_file_reads_and_stays_aiokv(void **state) {
  fx_t *fx = *state;
  static const char text[] =
      "{\"last_command\": \"ping\", \"seen\": 1700000000,\n"
      " \"cfg\": {\"a\": [1, 2]}, \"flag\": true, \"pi\": 3.5}\n";
  char *before, *after;
  size_t n0, n1;
  json_t *doc;
  kv_req_t req;
  int64_t t0 = (int64_t)time(NULL), t;
  spew(fx->path, text, strlen(text));
  fx->store = open_url(fx, fx->url);
  /* Strings read as their text, other JSON as its compact text. */
  expect(fx, "last_command", "ping");
  expect(fx, "seen", "1700000000");
  expect(fx, "cfg", "{\"a\":[1,2]}");
  expect(fx, "flag", "true");
  expect(fx, "pi", "3.5");
  expect(fx, "absent", NULL);
  /* Reading rewrites nothing. */
  before = slurp(fx->path, &n0);
  assert_int_equal(n0, strlen(text));
  assert_memory_equal(before, text, n0);
  free(before);
  /* A write keeps every entry and the aiokv shape: types as they were, a
   * touch as a JSON number, a new value as a string. */
  put(fx, "new", "x");
  memset(&req, 0, sizeof req);
  g_done = 0;
  assert_int_equal(kv_touch(fx->store, &req, NULL, "t", 0, touch_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 1);
  assert_int_equal(req.status, 0);
  kv_req_cleanup(&req);
  doc = load_json(fx->path);
  assert_null(json_object_get(doc, "format"));
  assert_string_equal(json_string_value(json_object_get(doc, "last_command")),
                      "ping");
  assert_true(json_integer_value(json_object_get(doc, "seen")) == 1700000000);
  assert_true(json_is_object(json_object_get(doc, "cfg")));
  assert_true(json_is_true(json_object_get(doc, "flag")));
  assert_true(json_real_value(json_object_get(doc, "pi")) == 3.5);
  assert_string_equal(json_string_value(json_object_get(doc, "new")), "x");
  t = (int64_t)json_integer_value(json_object_get(doc, "t"));
  assert_true(t >= t0 && t <= (int64_t)time(NULL));
  json_decref(doc);
  /* An expiry does not fit aiokv's format: the kvio format, every entry
   * kept in the default collection. */
  put_in(fx, fx->store, "session", "abc", 3, 3600);
  doc = load_json(fx->path);
  assert_string_equal(json_string_value(json_object_get(doc, "format")),
                      "kvio-file");
  assert_string_equal(json_string_value(json_object_get(
                          json_object_get(json_object_get(doc, "collections"),
                                          "default_collection"),
                          "last_command")),
                      "ping");
  json_decref(doc);
  expect(fx, "cfg", "{\"a\":[1,2]}");
  /* destroy, as aiokv's clear: the file goes; the store is empty. */
  memset(&req, 0, sizeof req);
  g_done = 0;
  assert_int_equal(kv_destroy(fx->store, &req, touch_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(req.status, 0);
  kv_req_cleanup(&req);
  assert_int_equal(access(fx->path, F_OK), -1);
  expect(fx, "last_command", NULL);
  after = slurp(fx->lock, &n1); /* the lock file stays */
  free(after);
}

static void aiokv_empty_object_and_destroy_of_a_kvio_file(void **state) {
  fx_t *fx = *state;
  kv_req_t req;
  json_t *doc;
  spew(fx->path, "{}", 2);
  fx->store = open_url(fx, fx->url);
  expect(fx, "a", NULL);
  put(fx, "a", "1");
  doc = load_json(fx->path);
  assert_true(json_integer_value(json_object_get(doc, "a")) == 1);
  assert_int_equal(json_object_size(doc), 1);
  json_decref(doc);
  close_store(fx, fx->store);
  fx->store = NULL;
  /* A kvio file with another program's members keeps them on destroy. */
  replace_file(fx, "{\"format\": \"kvio-file\", \"version\": 1, "
                   "\"comment\": \"mine\", \"collections\": {\"c\": "
                   "{\"k\": \"v\"}}}");
  fx->store = open_url(fx, fx->url);
  memset(&req, 0, sizeof req);
  g_done = 0;
  assert_int_equal(kv_destroy(fx->store, &req, touch_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(req.status, 0);
  kv_req_cleanup(&req);
  doc = load_json(fx->path);
  assert_string_equal(json_string_value(json_object_get(doc, "comment")),
                      "mine");
  assert_int_equal(json_object_size(json_object_get(doc, "collections")), 0);
  json_decref(doc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          missing_file_is_empty_and_created_by_first_write, setup, teardown),
      cmocka_unit_test_setup_teardown(values_ttls_and_binary_in_the_file, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(escapes_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(hand_written_file_is_read, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(truncated_file_is_ecorrupt_and_untouched,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          file_corrupted_later_fails_batches_untouched, setup, teardown),
      cmocka_unit_test_setup_teardown(symlinks_are_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(two_stores_see_each_others_writes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(reads_are_served_from_memory, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(writes_in_one_turn_are_one_rewrite, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(lock_held_elsewhere_times_out, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(failed_rewrite_changes_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(permissions_are_kept, setup, teardown),
      cmocka_unit_test_setup_teardown(keys_limit_7_over_1000_lists_each_once,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(options_are_checked, setup, teardown),
      cmocka_unit_test_setup_teardown(aiokv_file_reads_and_stays_aiokv, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          aiokv_empty_object_and_destroy_of_a_kvio_file, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
