/* Tests of the compression wrapper over memory://: round trips for each
 * algorithm across sizes (0 to 1 MiB, text and binary), the threshold, the
 * self-describing format (a value written with one algorithm reads through
 * a wrapper configured for another), corrupt and foreign values, the bulk
 * and atomic ops (cas compares decoded values), options as text, and
 * closing with requests in flight. Each test ends by proving the loop
 * closes with nothing left open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "kvio/compression.h"
#include "kvio/wrap.h"

typedef struct {
  uv_loop_t loop;
  kv_store_t *mem; /* the inner store (owned by the first wrapper) */
  kv_store_t *w;
} fx_t;

static int g_done;

static void done_cb(kv_req_t *req) {
  (void)req;
  g_done++;
}

static int wait_req(fx_t *fx, kv_req_t *req, int rc) {
  if (rc != 0) return rc;
  while (g_done == 0)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_int_equal(g_done, 1);
  return req->status;
}

#define SYNC(fx, req, call) \
  (kv_req_cleanup(&(req)), g_done = 0, wait_req((fx), &(req), (call)))

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  assert_non_null(fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(kv_open(&fx->loop, "memory://", &fx->mem), 0);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  assert_int_equal(kv_store_close(fx->w ? fx->w : fx->mem, NULL), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  free(fx);
  return 0;
}

/* A wrapper over fx->mem; the first one owns it, later ones borrow it. */
static kv_store_t *wrap(fx_t *fx, kv_compression_alg_t alg, size_t min_size) {
  kv_wrap_compression_opts_t o = {0};
  kv_store_t *w;
  o.algorithm = alg;
  o.min_size = min_size;
  o.borrow = fx->w != NULL;
  assert_int_equal(kv_wrap_compression(fx->mem, &o, &w), 0);
  if (fx->w == NULL) fx->w = w;
  return w;
}

static void close_borrower(fx_t *fx, kv_store_t *w) {
  assert_int_equal(kv_store_close(w, NULL), 0);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  (void)fx;
}

/* JSON-like text (compressible) or random bytes (not). */
static char *make_value(size_t len, int binary, unsigned seed) {
  char *v = malloc(len + 1);
  uint64_t x = 0x9E3779B97F4A7C15ull ^ seed;
  assert_non_null(v);
  if (binary) {
    for (size_t i = 0; i < len; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      v[i] = (char)x;
    }
  } else {
    size_t i = 0;
    unsigned n = seed;
    while (i < len) {
      char item[96];
      int k = snprintf(item, sizeof item,
                       "{\"id\":%u,\"name\":\"user-%u\",\"active\":true},", n,
                       n * 7u);
      for (int j = 0; j < k && i < len; j++)
        v[i++] = item[j];
      n++;
    }
  }
  v[len] = '\0';
  return v;
}

/* The algorithm byte of what the inner store holds for key (-1: missing,
 * -2: not in the envelope). */
static int stored_alg(fx_t *fx, const char *key, size_t *stored_len) {
  kv_req_t r = {0};
  int alg;
  assert_int_equal(SYNC(fx, r, kv_get(fx->mem, &r, "c", key, done_cb)), 0);
  if (!r.found) {
    kv_req_cleanup(&r);
    return -1;
  }
  if (stored_len) *stored_len = r.value.len;
  alg = r.value.len >= 6 && memcmp(r.value.base, "\x89KVZ\x01", 5) == 0
            ? (unsigned char)r.value.base[5]
            : -2;
  kv_req_cleanup(&r);
  return alg;
}

static void raw_put(fx_t *fx, const char *key, const void *v, size_t len) {
  kv_req_t r = {0};
  assert_int_equal(
      SYNC(fx, r, kv_put(fx->mem, &r, "c", key, v, len, 0, done_cb)), 0);
  kv_req_cleanup(&r);
}

static void check_value(fx_t *fx, kv_store_t *s, const char *key, const char *v,
                        size_t len) {
  kv_req_t r = {0};
  assert_int_equal(SYNC(fx, r, kv_get(s, &r, "c", key, done_cb)), 0);
  assert_true(r.found);
  assert_int_equal(r.value.len, len);
  if (len) assert_memory_equal(r.value.base, v, len);
  assert_int_equal(r.value.base[len], '\0');
  kv_req_cleanup(&r);
}

/* ---- Round trips -------------------------------------------------------- */

static void round_trips_every_algorithm_and_size(void **state) {
  fx_t *fx = *state;
  static const size_t sizes[] = {0,    1,    15,    16,    100,    1023,
                                 1024, 1025, 10000, 65536, 1 << 20};
  kv_compression_alg_t algs[] = {KV_COMPRESSION_GZIP, KV_COMPRESSION_ZSTD,
                                 KV_COMPRESSION_LZ4};
  for (size_t a = 0; a < 3; a++) {
    kv_store_t *w = wrap(fx, algs[a], 0);
    for (size_t i = 0; i < KV__ARRAY_SIZE(sizes); i++) {
      for (int binary = 0; binary < 2; binary++) {
        kv_req_t r = {0};
        size_t stored;
        char *v = make_value(sizes[i], binary, (unsigned)(i * 3 + a));
        int alg;
        assert_int_equal(
            SYNC(fx, r, kv_put(w, &r, "c", "k", v, sizes[i], 0, done_cb)), 0);
        check_value(fx, w, "k", v, sizes[i]);
        alg = stored_alg(fx, "k", &stored);
        if (sizes[i] >= KV_COMPRESSION_MIN_SIZE_DEFAULT && !binary) {
          assert_int_equal(alg, (int)algs[a]); /* compressed */
          assert_true(stored < sizes[i] / 2);
        } else {
          /* Small, or incompressible: stored as is, in the envelope. */
          assert_int_equal(alg, 0);
          assert_int_equal(stored, sizes[i] + 6);
        }
        kv_req_cleanup(&r);
        free(v);
      }
    }
    if (w != fx->w) close_borrower(fx, w);
  }
}

static void threshold_is_min_size(void **state) {
  fx_t *fx = *state;
  kv_store_t *w = wrap(fx, KV_COMPRESSION_ZSTD, 200);
  char *v = make_value(400, 0, 1);
  kv_req_t r = {0};
  assert_int_equal(SYNC(fx, r, kv_put(w, &r, "c", "below", v, 199, 0, done_cb)),
                   0);
  assert_int_equal(SYNC(fx, r, kv_put(w, &r, "c", "at", v, 200, 0, done_cb)),
                   0);
  assert_int_equal(stored_alg(fx, "below", NULL), 0);
  assert_int_equal(stored_alg(fx, "at", NULL), KV_COMPRESSION_ZSTD);
  check_value(fx, w, "below", v, 199);
  check_value(fx, w, "at", v, 200);
  kv_req_cleanup(&r);
  free(v);
}

/* ---- The format ---------------------------------------------------------- */

static void any_algorithm_reads_through_any_wrapper(void **state) {
  fx_t *fx = *state;
  kv_store_t *z = wrap(fx, KV_COMPRESSION_ZSTD, 0);
  kv_store_t *g = wrap(fx, KV_COMPRESSION_GZIP, 0);
  kv_store_t *l = wrap(fx, KV_COMPRESSION_LZ4, 0);
  char *v = make_value(50000, 0, 7);
  kv_req_t r = {0};
  assert_int_equal(SYNC(fx, r, kv_put(g, &r, "c", "g", v, 50000, 0, done_cb)),
                   0);
  assert_int_equal(SYNC(fx, r, kv_put(l, &r, "c", "l", v, 50000, 0, done_cb)),
                   0);
  assert_int_equal(stored_alg(fx, "g", NULL), KV_COMPRESSION_GZIP);
  assert_int_equal(stored_alg(fx, "l", NULL), KV_COMPRESSION_LZ4);
  check_value(fx, z, "g", v, 50000); /* zstd wrapper reads gzip and lz4 */
  check_value(fx, z, "l", v, 50000);
  check_value(fx, l, "g", v, 50000);
  kv_req_cleanup(&r);
  close_borrower(fx, g);
  close_borrower(fx, l);
  free(v);
}

static void corrupt_values_are_ecorrupt(void **state) {
  fx_t *fx = *state;
  kv_compression_alg_t algs[] = {KV_COMPRESSION_GZIP, KV_COMPRESSION_ZSTD,
                                 KV_COMPRESSION_LZ4};
  char *v = make_value(20000, 0, 3);
  kv_store_t *w0 = wrap(fx, KV_COMPRESSION_ZSTD, 0);
  kv_req_t r = {0};
  for (size_t a = 0; a < 3; a++) {
    kv_store_t *w = wrap(fx, algs[a], 0);
    kv_req_t g = {0};
    char *stored;
    size_t len;
    assert_int_equal(SYNC(fx, r, kv_put(w, &r, "c", "k", v, 20000, 0, done_cb)),
                     0);
    assert_int_equal(SYNC(fx, g, kv_get(fx->mem, &g, "c", "k", done_cb)), 0);
    stored = kv_req_take_value(&g, &len);
    kv_req_cleanup(&g);
    /* A flipped byte in the middle of the payload. */
    stored[len / 2] ^= 0x5a;
    raw_put(fx, "k", stored, len);
    assert_int_equal(SYNC(fx, r, kv_get(w0, &r, "c", "k", done_cb)),
                     KV_ECORRUPT);
    assert_non_null(strstr(kv_req_errmsg(&r), "corrupt"));
    assert_false(r.found);
    /* Truncated. */
    stored[len / 2] ^= 0x5a;
    raw_put(fx, "k", stored, len - 3);
    assert_int_equal(SYNC(fx, r, kv_get(w0, &r, "c", "k", done_cb)),
                     KV_ECORRUPT);
    kv_free(stored);
    close_borrower(fx, w);
  }
  /* Not in the envelope at all; an unknown version; an unknown algorithm. */
  raw_put(fx, "raw", "plain bytes", 11);
  assert_int_equal(SYNC(fx, r, kv_get(w0, &r, "c", "raw", done_cb)),
                   KV_ECORRUPT);
  assert_non_null(strstr(kv_req_errmsg(&r), "not in the compression format"));
  assert_non_null(strstr(kv_req_errmsg(&r), "'raw'"));
  raw_put(fx, "v9", "\x89KVZ\x09\x00hello", 11);
  assert_int_equal(SYNC(fx, r, kv_get(w0, &r, "c", "v9", done_cb)),
                   KV_ECORRUPT);
  assert_non_null(strstr(kv_req_errmsg(&r), "version 9"));
  raw_put(fx, "a7", "\x89KVZ\x01\x07hello", 11);
  assert_int_equal(SYNC(fx, r, kv_get(w0, &r, "c", "a7", done_cb)),
                   KV_ECORRUPT);
  /* A stored (uncompressed) value in the envelope reads back. */
  raw_put(fx, "v1", "\x89KVZ\x01\x00hello", 11);
  check_value(fx, w0, "v1", "hello", 5);
  /* A huge announced length is refused, not allocated. */
  raw_put(fx, "big", "\x89KVZ\x01\x02\xff\xff\xff\xff\xff\xff\xff\xffxx", 16);
  assert_int_equal(SYNC(fx, r, kv_get(w0, &r, "c", "big", done_cb)),
                   KV_ECORRUPT);
  kv_req_cleanup(&r);
  free(v);
}

/* Random damage (byte flips, truncation) to valid envelopes of each
 * algorithm: a read either returns the original value exactly or fails
 * with KV_ECORRUPT; it never crashes, never returns other bytes. */
static void random_damage_is_detected(void **state) {
  fx_t *fx = *state;
  kv_compression_alg_t algs[] = {KV_COMPRESSION_GZIP, KV_COMPRESSION_ZSTD,
                                 KV_COMPRESSION_LZ4};
  char *v = make_value(3000, 0, 11);
  uint64_t x = 88172645463325252ull;
  kv_store_t *w0 = wrap(fx, KV_COMPRESSION_ZSTD, 0);
  kv_req_t r = {0};
  for (size_t a = 0; a < 3; a++) {
    kv_store_t *w = wrap(fx, algs[a], 0);
    kv_req_t g = {0};
    char *good, *bad;
    size_t len;
    assert_int_equal(SYNC(fx, r, kv_put(w, &r, "c", "k", v, 3000, 0, done_cb)),
                     0);
    assert_int_equal(SYNC(fx, g, kv_get(fx->mem, &g, "c", "k", done_cb)), 0);
    good = kv_req_take_value(&g, &len);
    kv_req_cleanup(&g);
    bad = malloc(len);
    for (int i = 0; i < 300; i++) {
      size_t blen = len;
      memcpy(bad, good, len);
      for (int k = 0; k < 1 + i % 3; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        bad[x % len] ^= (char)(1 + (x >> 32) % 255);
      }
      if (i % 7 == 0) blen = (size_t)(x >> 40) % len;
      raw_put(fx, "d", bad, blen);
      g_done = 0;
      kv_req_cleanup(&r);
      assert_int_equal(kv_get(w0, &r, "c", "d", done_cb), 0);
      while (g_done == 0)
        uv_run(&fx->loop, UV_RUN_ONCE);
      if (r.status == 0) {
        /* A flip that changed nothing decoded (e.g. gzip header fields). */
        assert_true(r.found);
        assert_int_equal(r.value.len, 3000);
        assert_memory_equal(r.value.base, v, 3000);
      } else {
        assert_int_equal(r.status, KV_ECORRUPT);
      }
    }
    free(bad);
    kv_free(good);
    close_borrower(fx, w);
  }
  kv_req_cleanup(&r);
  free(v);
}

static void allow_raw_passes_foreign_values(void **state) {
  fx_t *fx = *state;
  kv_wrap_compression_opts_t o = {0};
  kv_req_t r = {0};
  o.allow_raw = 1;
  assert_int_equal(kv_wrap_compression(fx->mem, &o, &fx->w), 0);
  raw_put(fx, "old", "written before", 14);
  check_value(fx, fx->w, "old", "written before", 14);
  /* A corrupt envelope is still an error. */
  raw_put(fx, "bad", "\x89KVZ\x01\x02\x00\x00\x00\x00\x00\x00\x00\x05xx", 16);
  assert_int_equal(SYNC(fx, r, kv_get(fx->w, &r, "c", "bad", done_cb)),
                   KV_ECORRUPT);
  kv_req_cleanup(&r);
}

/* ---- Other ops ------------------------------------------------------------
 */

static void bulk_ops_and_take_decode(void **state) {
  fx_t *fx = *state;
  kv_store_t *w = wrap(fx, KV_COMPRESSION_LZ4, 10);
  const char *keys[] = {"a", "b", "missing", "a"};
  char *big = make_value(5000, 0, 9);
  kv_buf_t vals[2] = {{big, 5000}, {(char *)"small", 5}};
  kv_req_t r = {0};
  assert_int_equal(
      SYNC(fx, r, kv_put_many(w, &r, "c", keys, vals, 2, 100, done_cb)), 0);
  assert_int_equal(stored_alg(fx, "a", NULL), KV_COMPRESSION_LZ4);
  assert_int_equal(stored_alg(fx, "b", NULL), 0);
  assert_int_equal(SYNC(fx, r, kv_get_many(w, &r, "c", keys, 4, done_cb)), 0);
  assert_int_equal(r.nresults, 4);
  assert_true(r.results[0].found && r.results[1].found && r.results[3].found);
  assert_false(r.results[2].found);
  assert_int_equal(r.results[0].value.len, 5000);
  assert_memory_equal(r.results[0].value.base, big, 5000);
  assert_memory_equal(r.results[3].value.base, big, 5000);
  assert_string_equal(r.results[1].value.base, "small");
  assert_int_equal(SYNC(fx, r, kv_ttl_many(w, &r, "c", keys, 4, done_cb)), 0);
  assert_true(r.results[0].ttl > 90 && r.results[0].ttl <= 100);
  assert_string_equal(r.results[1].value.base, "small");
  assert_int_equal(SYNC(fx, r, kv_ttl(w, &r, "c", "a", done_cb)), 0);
  assert_true(r.found && r.ttl > 90 && r.ttl <= 100);
  assert_int_equal(r.value.len, 5000);
  assert_int_equal(SYNC(fx, r, kv_take(w, &r, "c", "a", done_cb)), 0);
  assert_true(r.found);
  assert_memory_equal(r.value.base, big, 5000);
  assert_int_equal(stored_alg(fx, "a", NULL), -1);
  assert_int_equal(
      SYNC(fx, r, kv_put_if_absent(w, &r, "c", "b", "x", 1, 0, done_cb)), 0);
  assert_false(r.found);
  assert_int_equal(
      SYNC(fx, r, kv_put_if_absent(w, &r, "c", "n", big, 5000, 0, done_cb)), 0);
  assert_true(r.found);
  assert_int_equal(stored_alg(fx, "n", NULL), KV_COMPRESSION_LZ4);
  check_value(fx, w, "n", big, 5000);
  kv_req_cleanup(&r);
  free(big);
}

static void cas_compares_decoded_values(void **state) {
  fx_t *fx = *state;
  kv_store_t *z = wrap(fx, KV_COMPRESSION_ZSTD, 0);
  kv_store_t *g = wrap(fx, KV_COMPRESSION_GZIP, 0);
  char *v1 = make_value(8000, 0, 1), *v2 = make_value(9000, 0, 2);
  kv_req_t r = {0};
  assert_true(kv_store_caps(z) & KV_CAP_ATOMIC);
  /* Expected absent. */
  assert_int_equal(
      SYNC(fx, r, kv_cas(g, &r, "c", "k", NULL, 0, v1, 8000, 0, done_cb)), 0);
  assert_true(r.found);
  assert_int_equal(
      SYNC(fx, r, kv_cas(g, &r, "c", "k", NULL, 0, v1, 8000, 0, done_cb)),
      KV_ECONFLICT);
  /* Written with gzip, swapped through the zstd wrapper: the bytes differ,
   * the values are equal. */
  assert_int_equal(
      SYNC(fx, r, kv_cas(z, &r, "c", "k", v1, 8000, v2, 9000, 0, done_cb)), 0);
  assert_true(r.found);
  assert_int_equal(stored_alg(fx, "k", NULL), KV_COMPRESSION_ZSTD);
  check_value(fx, g, "k", v2, 9000);
  /* Wrong expected value, and a missing key. */
  assert_int_equal(
      SYNC(fx, r, kv_cas(z, &r, "c", "k", v1, 8000, v2, 9000, 0, done_cb)),
      KV_ECONFLICT);
  assert_non_null(strstr(kv_req_errmsg(&r), "expected value"));
  assert_int_equal(
      SYNC(fx, r, kv_cas(z, &r, "c", "nope", v1, 8000, v2, 9000, 0, done_cb)),
      KV_ECONFLICT);
  check_value(fx, g, "k", v2, 9000);
  /* Small values (below min_size) and an empty expected value. */
  assert_int_equal(SYNC(fx, r, kv_put(z, &r, "c", "e", "", 0, 0, done_cb)), 0);
  assert_int_equal(
      SYNC(fx, r, kv_cas(z, &r, "c", "e", "", 0, "x", 1, 0, done_cb)), 0);
  check_value(fx, z, "e", "x", 1);
  kv_req_cleanup(&r);
  close_borrower(fx, g);
  free(v1);
  free(v2);
}

/* Two cas with the same expected value, submitted together: exactly one
 * wins (the inner cas compares the exact stored bytes). */
static void concurrent_cas_has_one_winner(void **state) {
  fx_t *fx = *state;
  kv_store_t *w = wrap(fx, KV_COMPRESSION_ZSTD, 1);
  kv_req_t r = {0}, a = {0}, b = {0};
  assert_int_equal(SYNC(fx, r, kv_put(w, &r, "c", "k", "v0", 2, 0, done_cb)),
                   0);
  g_done = 0;
  assert_int_equal(kv_cas(w, &a, "c", "k", "v0", 2, "from-a", 6, 0, done_cb),
                   0);
  assert_int_equal(kv_cas(w, &b, "c", "k", "v0", 2, "from-b", 6, 0, done_cb),
                   0);
  while (g_done < 2)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_true((a.status == 0) != (b.status == 0));
  assert_int_equal(a.status == 0 ? b.status : a.status, KV_ECONFLICT);
  check_value(fx, w, "k", a.status == 0 ? "from-a" : "from-b", 6);
  kv_req_cleanup(&a);
  kv_req_cleanup(&b);
  kv_req_cleanup(&r);
}

static void incr_works_on_decoded_integers(void **state) {
  fx_t *fx = *state;
  kv_store_t *w = wrap(fx, KV_COMPRESSION_GZIP, 1);
  kv_req_t r = {0}, a = {0}, b = {0};
  assert_int_equal(SYNC(fx, r, kv_incr(w, &r, "c", "n", 5, 100, done_cb)), 0);
  assert_int_equal(r.number, 5);
  assert_int_equal(SYNC(fx, r, kv_incr(w, &r, "c", "n", -7, 0, done_cb)), 0);
  assert_int_equal(r.number, -2);
  check_value(fx, w, "n", "-2", 2);
  assert_int_equal(stored_alg(fx, "n", NULL), 0); /* in the envelope */
  /* The entry kept its TTL. */
  assert_int_equal(SYNC(fx, r, kv_ttl(w, &r, "c", "n", done_cb)), 0);
  assert_true(r.ttl > 90 && r.ttl <= 100);
  /* Concurrent increments are all counted. */
  g_done = 0;
  assert_int_equal(kv_incr(w, &a, "c", "n", 10, 0, done_cb), 0);
  assert_int_equal(kv_incr(w, &b, "c", "n", 100, 0, done_cb), 0);
  while (g_done < 2)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_int_equal(a.status, 0);
  assert_int_equal(b.status, 0);
  check_value(fx, w, "n", "108", 3);
  /* Not an integer; overflow. */
  assert_int_equal(SYNC(fx, r, kv_put(w, &r, "c", "s", "abc", 3, 0, done_cb)),
                   0);
  assert_int_equal(SYNC(fx, r, kv_incr(w, &r, "c", "s", 1, 0, done_cb)),
                   KV_EINVAL);
  assert_non_null(strstr(kv_req_errmsg(&r), "not a decimal integer"));
  assert_int_equal(
      SYNC(fx, r,
           kv_put(w, &r, "c", "m", "9223372036854775807", 19, 0, done_cb)),
      0);
  assert_int_equal(SYNC(fx, r, kv_incr(w, &r, "c", "m", 1, 0, done_cb)),
                   KV_EINVAL);
  kv_req_cleanup(&a);
  kv_req_cleanup(&b);
  kv_req_cleanup(&r);
}

/* Two wrappers over one store do not share their queues: their increments
 * race on the inner store, and the inner cas on the exact stored bytes
 * makes the losers read again. Every increment counts once. */
static void incr_races_between_wrappers(void **state) {
  fx_t *fx = *state;
  enum { N = 40 };
  kv_store_t *w1 = wrap(fx, KV_COMPRESSION_ZSTD, 1);
  kv_store_t *w2 = wrap(fx, KV_COMPRESSION_LZ4, 1);
  kv_req_t reqs[2 * N];
  unsigned char seen[2 * N + 1] = {0};
  memset(reqs, 0, sizeof reqs);
  g_done = 0;
  for (int i = 0; i < 2 * N; i++)
    assert_int_equal(
        kv_incr(i % 2 ? w2 : w1, &reqs[i], "c", "n", 1, 0, done_cb), 0);
  while (g_done < 2 * N)
    uv_run(&fx->loop, UV_RUN_ONCE);
  for (int i = 0; i < 2 * N; i++) {
    assert_int_equal(reqs[i].status, 0);
    assert_true(reqs[i].number >= 1 && reqs[i].number <= 2 * N);
    assert_false(seen[reqs[i].number]); /* each value seen once */
    seen[reqs[i].number] = 1;
    kv_req_cleanup(&reqs[i]);
  }
  check_value(fx, w1, "n", "80", 2);
  close_borrower(fx, w2);
}

static void caps_follow_the_inner_store(void **state) {
  fx_t *fx = *state;
  kv_store_t *nul, *w;
  assert_int_equal(kv_store_caps(wrap(fx, 0, 0)), kv_store_caps(fx->mem));
  assert_int_equal(kv_open(&fx->loop, "null://", &nul), 0);
  assert_int_equal(kv_wrap_compression(nul, NULL, &w), 0);
  assert_int_equal(kv_store_caps(w), kv_store_caps(nul));
  assert_string_equal(kv_store_name(w), "compression");
  assert_int_equal(kv_store_close(w, NULL), 0);
}

/* ---- Options ------------------------------------------------------------- */

static void options_are_checked(void **state) {
  fx_t *fx = *state;
  kv_wrap_compression_opts_t o = {0};
  kv_store_t *w = NULL;
  char err[512];
  kv_req_t r = {0};
  o.algorithm = (kv_compression_alg_t)9;
  assert_int_equal(kv_wrap_compression(fx->mem, &o, &w), KV_EINVAL);
  assert_null(w);
  o.algorithm = KV_COMPRESSION_GZIP;
  o.level = 10;
  assert_int_equal(kv_wrap_compression(fx->mem, &o, &w), KV_EINVAL);
  assert_int_equal(kv_wrap_by_name("compression", "algorithm=brotli", fx->mem,
                                   &w, err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "brotli"));
  assert_int_equal(
      kv_wrap_by_name("compression", "speed=3", fx->mem, &w, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "speed"));
  assert_int_equal(kv_wrap_by_name("compression", "min_size=-1", fx->mem, &w,
                                   err, sizeof err),
                   KV_EINVAL);
  assert_int_equal(kv_wrap_by_name("compression", "algorithm=gzip,level=12",
                                   fx->mem, &w, err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "level"));
  assert_int_equal(kv_wrap_by_name("compression",
                                   "algorithm=lz4,min_size=8,allow_raw=true",
                                   fx->mem, &fx->w, err, sizeof err),
                   0);
  assert_int_equal(SYNC(fx, r,
                        kv_put(fx->w, &r, "c", "k", "aaaaaaaaaaaaaaaaaaaaaaaa",
                               24, 0, done_cb)),
                   0);
  assert_int_equal(stored_alg(fx, "k", NULL), KV_COMPRESSION_LZ4);
  raw_put(fx, "raw", "xyz", 3);
  check_value(fx, fx->w, "raw", "xyz", 3);
  kv_req_cleanup(&r);
}

static void wrap_url_works(void **state) {
  fx_t *fx = *state;
  kv_store_t *s;
  kv_req_t r = {0};
  char *v = make_value(4096, 0, 5);
  assert_int_equal(
      kv_open(&fx->loop,
              "wrap:///compression:algorithm=gzip,min_size=64@memory://", &s),
      0);
  assert_int_equal(SYNC(fx, r, kv_put(s, &r, "c", "k", v, 4096, 0, done_cb)),
                   0);
  check_value(fx, s, "k", v, 4096);
  assert_non_null(kv_wrap_find(s, "compression"));
  assert_int_equal(kv_store_close(s, NULL), 0);
  kv_req_cleanup(&r);
  free(v);
}

/* Closing with requests in flight: every callback runs, then the close
 * callback, and the loop ends empty (teardown). */
static int g_closed;
static void on_closed(kv_store_t *s) {
  (void)s;
  g_closed = g_done;
}

static void close_with_requests_in_flight(void **state) {
  fx_t *fx = *state;
  kv_store_t *w = wrap(fx, KV_COMPRESSION_ZSTD, 1);
  kv_req_t reqs[8];
  memset(reqs, 0, sizeof reqs);
  g_done = 0;
  for (int i = 0; i < 8; i++) {
    char key[16];
    snprintf(key, sizeof key, "k%d", i);
    if (i % 3 == 0)
      assert_int_equal(kv_incr(w, &reqs[i], "c", key, 1, 0, done_cb), 0);
    else if (i % 3 == 1)
      assert_int_equal(
          kv_cas(w, &reqs[i], "c", key, "x", 1, "y", 1, 0, done_cb), 0);
    else
      assert_int_equal(kv_put(w, &reqs[i], "c", key, "v", 1, 0, done_cb), 0);
  }
  g_closed = -1;
  assert_int_equal(kv_store_close(w, on_closed), 0);
  fx->w = NULL;
  fx->mem = NULL;
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 8);
  assert_int_equal(g_closed, 8);
  for (int i = 0; i < 8; i++)
    kv_req_cleanup(&reqs[i]);
  /* teardown closes nothing more: reopen something for it to close. */
  assert_int_equal(kv_open(&fx->loop, "memory://", &fx->mem), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(round_trips_every_algorithm_and_size,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(threshold_is_min_size, setup, teardown),
      cmocka_unit_test_setup_teardown(any_algorithm_reads_through_any_wrapper,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(corrupt_values_are_ecorrupt, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(random_damage_is_detected, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(allow_raw_passes_foreign_values, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(bulk_ops_and_take_decode, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(cas_compares_decoded_values, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(concurrent_cas_has_one_winner, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(incr_works_on_decoded_integers, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(incr_races_between_wrappers, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(caps_follow_the_inner_store, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(options_are_checked, setup, teardown),
      cmocka_unit_test_setup_teardown(wrap_url_works, setup, teardown),
      cmocka_unit_test_setup_teardown(close_with_requests_in_flight, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
