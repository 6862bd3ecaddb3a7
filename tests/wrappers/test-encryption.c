/* Tests of the Fernet tokens and of the encryption wrapper: the Fernet
 * specification's own vectors
 * (tests/vectors/fernet/{generate,verify,invalid}.json, read with jansson), the
 * PBKDF2 derivations py-key-value makes, and the wrapper over memory://: round
 * trips, tampering, wrong keys, rotation, plaintext values, the atomic segment
 * and error messages without key material. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "internal.h"
#include "kvio/encryption.h"
#include "wrappers/fernet.h"

#ifndef KV_FERNET_VECTORS_DIR
#error "KV_FERNET_VECTORS_DIR must name tests/vectors/fernet"
#endif

#define SPEC_KEY "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="

/* ---- Vectors ---------------------------------------------------------------
 */

static json_t *load_vectors(const char *name) {
  char path[1024];
  json_error_t jerr;
  json_t *v;
  snprintf(path, sizeof path, "%s/%s", KV_FERNET_VECTORS_DIR, name);
  v = json_load_file(path, 0, &jerr);
  if (v == NULL) fail_msg("%s: %s (line %d)", path, jerr.text, jerr.line);
  assert_true(json_is_array(v));
  assert_true(json_array_size(v) > 0);
  return v;
}

/* RFC 3339 ("1985-10-26T01:20:00-07:00") → Unix seconds. */
static uint64_t rfc3339(const char *s) {
  struct tm tm;
  int y, mo, d, h, mi, sec, oh = 0, om = 0, n = 0;
  char sign = 'Z';
  time_t t;
  memset(&tm, 0, sizeof tm);
  assert_int_equal(
      sscanf(s, "%d-%d-%dT%d:%d:%d%n", &y, &mo, &d, &h, &mi, &sec, &n), 6);
  if (s[n] == '+' || s[n] == '-') {
    sign = s[n];
    assert_int_equal(sscanf(s + n + 1, "%d:%d", &oh, &om), 2);
  } else {
    assert_int_equal(s[n], 'Z');
  }
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  t = timegm(&tm);
  if (sign == '+') t -= oh * 3600 + om * 60;
  if (sign == '-') t += oh * 3600 + om * 60;
  return (uint64_t)t;
}

static const char *str(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  if (s == NULL) fail_msg("vector without '%s'", k);
  return s;
}

static void spec_generate_vectors(void **state) {
  json_t *all = load_vectors("generate.json"), *v;
  size_t i;
  (void)state;
  json_array_foreach(all, i, v) {
    kv__fernet_key_t key;
    unsigned char iv[16];
    json_t *jiv = json_object_get(v, "iv");
    const char *secret = str(v, "secret"), *src = str(v, "src");
    char *token;
    size_t len;
    assert_int_equal(json_array_size(jiv), 16);
    for (size_t b = 0; b < 16; b++)
      iv[b] = (unsigned char)json_integer_value(json_array_get(jiv, b));
    assert_int_equal(kv__fernet_key_decode(secret, strlen(secret), &key), 0);
    assert_int_equal(kv__fernet_encrypt_at(&key, src, strlen(src),
                                           rfc3339(str(v, "now")), iv, &token,
                                           &len),
                     0);
    assert_string_equal(token, str(v, "token"));
    assert_int_equal(len, strlen(str(v, "token")));
    kv_free(token);
  }
  json_decref(all);
}

static void spec_verify_vectors(void **state) {
  json_t *all = load_vectors("verify.json"), *v;
  size_t i;
  (void)state;
  json_array_foreach(all, i, v) {
    kv__fernet_key_t key;
    const char *secret = str(v, "secret"), *token = str(v, "token");
    char *out;
    size_t len;
    assert_int_equal(kv__fernet_key_decode(secret, strlen(secret), &key), 0);
    assert_int_equal(kv__fernet_decrypt_at(
                         &key, 1, token, strlen(token), rfc3339(str(v, "now")),
                         json_integer_value(json_object_get(v, "ttl_sec")),
                         &out, &len),
                     0);
    assert_int_equal(len, strlen(str(v, "src")));
    assert_memory_equal(out, str(v, "src"), len);
    assert_int_equal(out[len], '\0');
    kv_free(out);
  }
  json_decref(all);
}

static void spec_invalid_vectors(void **state) {
  json_t *all = load_vectors("invalid.json"), *v;
  size_t i;
  (void)state;
  json_array_foreach(all, i, v) {
    kv__fernet_key_t key;
    const char *secret = str(v, "secret"), *token = str(v, "token");
    char *out = (char *)"untouched";
    size_t len = 99;
    assert_int_equal(kv__fernet_key_decode(secret, strlen(secret), &key), 0);
    if (kv__fernet_decrypt_at(&key, 1, token, strlen(token),
                              rfc3339(str(v, "now")),
                              json_integer_value(json_object_get(v, "ttl_sec")),
                              &out, &len) != KV_EDECRYPT)
      fail_msg("invalid vector '%s' was not refused", str(v, "desc"));
    assert_null(out);
    assert_int_equal(len, 0);
  }
  json_decref(all);
}

/* The valid vector must stop verifying one second after its TTL ends, and
 * when stamped too far in the future: the boundaries of the TTL check. */
static void spec_ttl_boundaries(void **state) {
  json_t *all = load_vectors("verify.json"), *v = json_array_get(all, 0);
  kv__fernet_key_t key;
  const char *token = str(v, "token");
  uint64_t now = rfc3339(str(v, "now")),
           ts = rfc3339("1985-10-26T01:20:00-07:00");
  char *out;
  size_t len;
  (void)state;
  assert_int_equal(kv__fernet_key_decode(SPEC_KEY, strlen(SPEC_KEY), &key), 0);
  assert_int_equal(kv__fernet_decrypt_at(&key, 1, token, strlen(token), ts + 60,
                                         60, &out, &len),
                   0);
  kv_free(out);
  assert_int_equal(kv__fernet_decrypt_at(&key, 1, token, strlen(token), ts + 61,
                                         60, &out, &len),
                   KV_EDECRYPT);
  assert_int_equal(kv__fernet_decrypt_at(&key, 1, token, strlen(token), ts - 61,
                                         60, &out, &len),
                   KV_EDECRYPT);
  /* Without a TTL the timestamp is not checked. */
  assert_int_equal(kv__fernet_decrypt_at(&key, 1, token, strlen(token),
                                         now + 1000000, 0, &out, &len),
                   0);
  kv_free(out);
  json_decref(all);
}

/* ---- Keys ------------------------------------------------------------------
 */

static void pbkdf2_derivations_match_py_key_value(void **state) {
  static const struct {
    const char *source, *salt, *key;
  } cases[] = {
      {"test-source-material", "test-salt",
       "znx7rVYt4roVgu3ymt5sIYFmfMNGEPbm8AShXQv6CY4="},
      {"different-source-material", "test-salt",
       "1TLRpjxQm4Op699i9hAXFVfyz6PqPXbuvwKaWB48tS8="},
      {"test-source-material", "different-salt",
       "oLz_g5NoLhANNh2_-ZwbgchDZ1q23VFx90kUQDjracc="},
  };
  char key[KV_FERNET_KEY_SIZE];
  (void)state;
  for (size_t i = 0; i < KV__ARRAY_SIZE(cases); i++) {
    assert_int_equal(kv_fernet_derive_key(cases[i].source, cases[i].salt, key),
                     0);
    assert_string_equal(key, cases[i].key);
  }
  assert_int_equal(kv_fernet_derive_key("", "salt", key), KV_EINVAL);
  assert_int_equal(kv_fernet_derive_key("src", NULL, key), KV_EINVAL);
}

static void keys_are_checked(void **state) {
  kv__fernet_key_t k;
  char key[KV_FERNET_KEY_SIZE], key2[KV_FERNET_KEY_SIZE];
  (void)state;
  assert_int_equal(kv__fernet_key_decode(SPEC_KEY, strlen(SPEC_KEY), &k), 0);
  /* Too short, standard alphabet, no padding, bad trailing bits. */
  assert_int_equal(kv__fernet_key_decode(SPEC_KEY, 43, &k), KV_EINVAL);
  assert_int_equal(kv__fernet_key_decode(
                       "cw/0x689RpI+jtRR7oE8h/eQsKImvJapLeSbXpwF4e4=", 44, &k),
                   KV_EINVAL);
  assert_int_equal(kv__fernet_key_decode(
                       "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e5=", 44, &k),
                   KV_EINVAL);
  assert_int_equal(kv_fernet_generate_key(key), 0);
  assert_int_equal(kv_fernet_generate_key(key2), 0);
  assert_int_equal(strlen(key), 44);
  assert_string_not_equal(key, key2);
  assert_int_equal(kv__fernet_key_decode(key, strlen(key), &k), 0);
}

static void public_helpers_round_trip(void **state) {
  char key[KV_FERNET_KEY_SIZE], other[KV_FERNET_KEY_SIZE];
  const char *keys[2];
  char *token, *token2, *out;
  size_t tlen, tlen2, len;
  static const char msg[] = "attack at dawn\0with a NUL";
  (void)state;
  assert_int_equal(kv_fernet_generate_key(key), 0);
  assert_int_equal(kv_fernet_generate_key(other), 0);
  assert_int_equal(kv_fernet_encrypt(key, msg, sizeof msg, &token, &tlen), 0);
  assert_int_equal(kv_fernet_encrypt(key, msg, sizeof msg, &token2, &tlen2), 0);
  assert_string_not_equal(token, token2); /* random IVs */
  assert_true(kv__fernet_looks_like_token(token, tlen));
  keys[0] = other;
  keys[1] = key;
  assert_int_equal(kv_fernet_decrypt(keys, 2, token, tlen, 60, &out, &len), 0);
  assert_int_equal(len, sizeof msg);
  assert_memory_equal(out, msg, len);
  kv_free(out);
  assert_int_equal(kv_fernet_decrypt(keys, 1, token, tlen, 0, &out, &len),
                   KV_EDECRYPT);
  assert_int_equal(kv_fernet_encrypt("not a key", msg, 3, &out, &len),
                   KV_EINVAL);
  keys[0] = "short";
  assert_int_equal(kv_fernet_decrypt(keys, 2, token, tlen, 0, &out, &len),
                   KV_EINVAL);
  /* Empty plaintext: one block of padding. */
  kv_free(token2);
  assert_int_equal(kv_fernet_encrypt(key, "", 0, &token2, &tlen2), 0);
  assert_int_equal(tlen2, 100);
  keys[0] = key;
  assert_int_equal(kv_fernet_decrypt(keys, 1, token2, tlen2, 0, &out, &len), 0);
  assert_int_equal(len, 0);
  kv_free(out);
  kv_free(token);
  kv_free(token2);
}

static void every_bit_flip_is_refused(void **state) {
  kv__fernet_key_t k;
  unsigned char iv[16] = {0};
  char *token, *out;
  size_t tlen, len;
  (void)state;
  assert_int_equal(kv__fernet_key_decode(SPEC_KEY, strlen(SPEC_KEY), &k), 0);
  assert_int_equal(
      kv__fernet_encrypt_at(&k, "payload", 7, 1000, iv, &token, &tlen), 0);
  for (size_t i = 0; i < tlen; i++) {
    char saved = token[i];
    for (int bit = 0; bit < 8; bit++) {
      token[i] = (char)(saved ^ (1 << bit));
      assert_int_equal(
          kv__fernet_decrypt_at(&k, 1, token, tlen, 1000, 0, &out, &len),
          KV_EDECRYPT);
    }
    token[i] = saved;
  }
  /* Truncated and extended. */
  assert_int_equal(
      kv__fernet_decrypt_at(&k, 1, token, tlen - 4, 1000, 0, &out, &len),
      KV_EDECRYPT);
  assert_int_equal(
      kv__fernet_decrypt_at(&k, 1, token, tlen, 1000, 0, &out, &len), 0);
  kv_free(out);
  kv_free(token);
}

/* ---- The wrapper
 * -------------------------------------------------------------
 */

typedef struct {
  uv_loop_t loop;
  kv_store_t *mem; /* the inner store, owned by `w` */
  kv_store_t *w;
  char key[KV_FERNET_KEY_SIZE];
  char old[KV_FERNET_KEY_SIZE];
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
  kv_wrap_encryption_opts_t o = {0};
  assert_non_null(fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(kv_open(&fx->loop, "memory://", &fx->mem), 0);
  assert_int_equal(kv_fernet_generate_key(fx->key), 0);
  assert_int_equal(kv_fernet_generate_key(fx->old), 0);
  o.key = fx->key;
  assert_int_equal(kv_wrap_encryption(fx->mem, &o, &fx->w), 0);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  assert_int_equal(kv_store_close(fx->w, NULL), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  free(fx);
  return 0;
}

/* Another wrapper over the same inner store (borrowed). */
static kv_store_t *wrap_with(fx_t *fx, kv_wrap_encryption_opts_t *o) {
  kv_store_t *w;
  o->borrow = 1;
  assert_int_equal(kv_wrap_encryption(fx->mem, o, &w), 0);
  return w;
}

static void put_ok(fx_t *fx, kv_store_t *s, const char *key, const char *v,
                   size_t len) {
  kv_req_t r = {0};
  assert_int_equal(SYNC(fx, r, kv_put(s, &r, "c", key, v, len, 0, done_cb)), 0);
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

/* What the inner store holds (kv_malloc'ed; NULL when missing). */
static char *stored(fx_t *fx, const char *key, size_t *len) {
  kv_req_t r = {0};
  char *v;
  assert_int_equal(SYNC(fx, r, kv_get(fx->mem, &r, "c", key, done_cb)), 0);
  v = r.found ? kv_req_take_value(&r, len) : NULL;
  kv_req_cleanup(&r);
  return v;
}

static void expect_edecrypt_without_keys(fx_t *fx, kv_store_t *s,
                                         const char *key) {
  kv_req_t r = {0};
  const char *msg;
  assert_int_equal(SYNC(fx, r, kv_get(s, &r, "c", key, done_cb)), KV_EDECRYPT);
  assert_false(r.found);
  msg = kv_req_errmsg(&r);
  assert_non_null(strstr(msg, key));
  /* No key material in the detail: neither key, nor a piece of one. */
  assert_null(strstr(msg, fx->key));
  assert_null(strstr(msg, fx->old));
  for (size_t i = 0; i + 8 <= 44; i += 4) {
    char piece[9];
    memcpy(piece, fx->key + i, 8);
    piece[8] = '\0';
    assert_null(strstr(msg, piece));
    memcpy(piece, fx->old + i, 8);
    assert_null(strstr(msg, piece));
  }
  kv_req_cleanup(&r);
}

static void wrapper_round_trips_and_stores_plain_tokens(void **state) {
  fx_t *fx = *state;
  static const size_t sizes[] = {0, 1, 15, 16, 17, 1000, 65536, 1 << 20};
  for (size_t i = 0; i < KV__ARRAY_SIZE(sizes); i++) {
    char *v = malloc(sizes[i] + 1), *tok, *dec;
    const char *keys[1];
    size_t tlen, dlen;
    for (size_t j = 0; j < sizes[i]; j++)
      v[j] = (char)(j * 31 + i);
    put_ok(fx, fx->w, "k", v, sizes[i]);
    check_value(fx, fx->w, "k", v, sizes[i]);
    /* The stored value is the Fernet token itself: any Fernet
     * implementation with the key reads it. */
    tok = stored(fx, "k", &tlen);
    assert_non_null(tok);
    assert_int_equal(tlen, 4 * ((57 + (sizes[i] / 16 + 1) * 16 + 2) / 3));
    assert_int_equal(tok[0], 'g');
    keys[0] = fx->key;
    assert_int_equal(kv_fernet_decrypt(keys, 1, tok, tlen, 0, &dec, &dlen), 0);
    assert_int_equal(dlen, sizes[i]);
    if (dlen) assert_memory_equal(dec, v, dlen);
    kv_free(dec);
    kv_free(tok);
    free(v);
  }
}

static void tokens_from_elsewhere_are_read(void **state) {
  fx_t *fx = *state;
  char *tok;
  size_t tlen;
  kv_req_t r = {0};
  /* A token made by another Fernet implementation: here the specification's
   * own (generate.json's), under its key. */
  kv_wrap_encryption_opts_t o = {0};
  kv_store_t *spec;
  const char *t = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_"
                  "5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==";
  o.key = SPEC_KEY;
  spec = wrap_with(fx, &o);
  assert_int_equal(
      SYNC(fx, r, kv_put(fx->mem, &r, "c", "spec", t, strlen(t), 0, done_cb)),
      0);
  check_value(fx, spec, "spec", "hello", 5);
  assert_int_equal(kv_fernet_encrypt(fx->key, "from outside", 12, &tok, &tlen),
                   0);
  assert_int_equal(
      SYNC(fx, r, kv_put(fx->mem, &r, "c", "ext", tok, tlen, 0, done_cb)), 0);
  check_value(fx, fx->w, "ext", "from outside", 12);
  kv_free(tok);
  kv_req_cleanup(&r);
  assert_int_equal(kv_store_close(spec, NULL), 0);
}

static void tampered_and_wrong_key_are_edecrypt(void **state) {
  fx_t *fx = *state;
  kv_wrap_encryption_opts_t o = {0};
  kv_store_t *other;
  char *tok;
  size_t tlen;
  kv_req_t r = {0};
  put_ok(fx, fx->w, "k", "secret value", 12);
  tok = stored(fx, "k", &tlen);
  /* One character of the ciphertext changed. */
  tok[tlen / 2] = tok[tlen / 2] == 'A' ? 'B' : 'A';
  assert_int_equal(
      SYNC(fx, r, kv_put(fx->mem, &r, "c", "tampered", tok, tlen, 0, done_cb)),
      0);
  expect_edecrypt_without_keys(fx, fx->w, "tampered");
  /* A wrapper with another key. */
  o.key = fx->old;
  other = wrap_with(fx, &o);
  expect_edecrypt_without_keys(fx, other, "k");
  assert_int_equal(SYNC(fx, r, kv_get(other, &r, "c", "k", done_cb)),
                   KV_EDECRYPT);
  assert_non_null(strstr(kv_req_errmsg(&r), "does not verify"));
  /* get_many and take fail the same way; take removed the value. */
  {
    const char *keys[] = {"k", "tampered"};
    assert_int_equal(SYNC(fx, r, kv_get_many(fx->w, &r, "c", keys, 2, done_cb)),
                     KV_EDECRYPT);
    assert_int_equal(SYNC(fx, r, kv_take(fx->w, &r, "c", "tampered", done_cb)),
                     KV_EDECRYPT);
  }
  kv_free(tok);
  kv_req_cleanup(&r);
  assert_int_equal(kv_store_close(other, NULL), 0);
}

static void rotation_first_encrypts_all_decrypt(void **state) {
  fx_t *fx = *state;
  kv_wrap_encryption_opts_t o = {0};
  const char *olds[1];
  const char *keys[1];
  kv_store_t *old_w, *rotated;
  char *tok, *dec;
  size_t tlen, dlen;
  o.key = fx->old;
  old_w = wrap_with(fx, &o);
  put_ok(fx, old_w, "before", "old data", 8);
  memset(&o, 0, sizeof o);
  o.key = fx->key;
  olds[0] = fx->old;
  o.old_keys = olds;
  o.nold_keys = 1;
  rotated = wrap_with(fx, &o);
  check_value(fx, rotated, "before", "old data", 8);
  put_ok(fx, rotated, "after", "new data", 8);
  /* New writes are under the first key only. */
  tok = stored(fx, "after", &tlen);
  keys[0] = fx->key;
  assert_int_equal(kv_fernet_decrypt(keys, 1, tok, tlen, 0, &dec, &dlen), 0);
  kv_free(dec);
  keys[0] = fx->old;
  assert_int_equal(kv_fernet_decrypt(keys, 1, tok, tlen, 0, &dec, &dlen),
                   KV_EDECRYPT);
  expect_edecrypt_without_keys(fx, old_w, "after");
  kv_free(tok);
  assert_int_equal(kv_store_close(old_w, NULL), 0);
  assert_int_equal(kv_store_close(rotated, NULL), 0);
}

static void plaintext_refused_unless_allowed(void **state) {
  fx_t *fx = *state;
  kv_wrap_encryption_opts_t o = {0};
  kv_store_t *lax;
  char *tok;
  size_t tlen;
  kv_req_t r = {0};
  assert_int_equal(
      SYNC(fx, r,
           kv_put(fx->mem, &r, "c", "plain", "not encrypted", 13, 0, done_cb)),
      0);
  assert_int_equal(SYNC(fx, r, kv_get(fx->w, &r, "c", "plain", done_cb)),
                   KV_EDECRYPT);
  assert_non_null(strstr(kv_req_errmsg(&r), "not a Fernet token"));
  o.key = fx->key;
  o.allow_plaintext = 1;
  lax = wrap_with(fx, &o);
  check_value(fx, lax, "plain", "not encrypted", 13);
  /* ... but a token that does not verify is still refused. */
  put_ok(fx, fx->w, "k", "v", 1);
  tok = stored(fx, "k", &tlen);
  tok[60] = tok[60] == 'A' ? 'B' : 'A';
  assert_int_equal(
      SYNC(fx, r, kv_put(fx->mem, &r, "c", "bad", tok, tlen, 0, done_cb)), 0);
  assert_int_equal(SYNC(fx, r, kv_get(lax, &r, "c", "bad", done_cb)),
                   KV_EDECRYPT);
  kv_free(tok);
  kv_req_cleanup(&r);
  assert_int_equal(kv_store_close(lax, NULL), 0);
}

static void missing_on_error_reads_missing(void **state) {
  fx_t *fx = *state;
  kv_wrap_encryption_opts_t o = {0};
  kv_store_t *w;
  const char *keys[] = {"plain", "good"};
  kv_req_t r = {0};
  o.key = fx->key;
  o.missing_on_error = 1;
  w = wrap_with(fx, &o);
  assert_int_equal(
      SYNC(fx, r, kv_put(fx->mem, &r, "c", "plain", "xyz", 3, 0, done_cb)), 0);
  put_ok(fx, w, "good", "fine", 4);
  assert_int_equal(SYNC(fx, r, kv_get(w, &r, "c", "plain", done_cb)), 0);
  assert_false(r.found);
  assert_int_equal(SYNC(fx, r, kv_get_many(w, &r, "c", keys, 2, done_cb)), 0);
  assert_false(r.results[0].found);
  assert_true(r.results[1].found);
  assert_string_equal(r.results[1].value.base, "fine");
  /* cas against an unreadable value: a conflict, nothing written. */
  assert_int_equal(
      SYNC(fx, r, kv_cas(w, &r, "c", "plain", "xyz", 3, "new", 3, 0, done_cb)),
      KV_ECONFLICT);
  kv_req_cleanup(&r);
  assert_int_equal(kv_store_close(w, NULL), 0);
}

static void derived_key_matches_py_key_value(void **state) {
  fx_t *fx = *state;
  kv_wrap_encryption_opts_t o = {0};
  kv_store_t *w;
  const char *keys[] = {"znx7rVYt4roVgu3ymt5sIYFmfMNGEPbm8AShXQv6CY4="};
  char *tok, *dec;
  size_t tlen, dlen;
  o.source = "test-source-material";
  o.salt = "test-salt";
  w = wrap_with(fx, &o);
  put_ok(fx, w, "k", "derived", 7);
  tok = stored(fx, "k", &tlen);
  assert_int_equal(kv_fernet_decrypt(keys, 1, tok, tlen, 0, &dec, &dlen), 0);
  assert_int_equal(dlen, 7);
  assert_memory_equal(dec, "derived", 7);
  kv_free(dec);
  kv_free(tok);
  assert_int_equal(kv_store_close(w, NULL), 0);
}

static void atomic_ops_compare_plaintexts(void **state) {
  fx_t *fx = *state;
  kv_req_t r = {0}, a = {0}, b = {0};
  const char *keys[] = {"x", "y"};
  kv_buf_t vals[] = {{(char *)"one", 3}, {(char *)"two", 3}};
  assert_true(kv_store_caps(fx->w) & KV_CAP_ATOMIC);
  put_ok(fx, fx->w, "k", "v1", 2);
  /* Every encryption of "v1" differs; the compare is on plaintexts. */
  assert_int_equal(
      SYNC(fx, r, kv_cas(fx->w, &r, "c", "k", "v1", 2, "v2", 2, 0, done_cb)),
      0);
  assert_true(r.found);
  check_value(fx, fx->w, "k", "v2", 2);
  assert_int_equal(
      SYNC(fx, r, kv_cas(fx->w, &r, "c", "k", "v1", 2, "v3", 2, 0, done_cb)),
      KV_ECONFLICT);
  check_value(fx, fx->w, "k", "v2", 2);
  /* Two concurrent swaps from the same value: one wins. */
  g_done = 0;
  assert_int_equal(kv_cas(fx->w, &a, "c", "k", "v2", 2, "A", 1, 0, done_cb), 0);
  assert_int_equal(kv_cas(fx->w, &b, "c", "k", "v2", 2, "B", 1, 0, done_cb), 0);
  while (g_done < 2)
    uv_run(&fx->loop, UV_RUN_ONCE);
  assert_true((a.status == 0) != (b.status == 0));
  check_value(fx, fx->w, "k", a.status == 0 ? "A" : "B", 1);
  /* incr, put_if_absent, take, put_many / ttl_many. */
  assert_int_equal(SYNC(fx, r, kv_incr(fx->w, &r, "c", "n", 41, 0, done_cb)),
                   0);
  assert_int_equal(SYNC(fx, r, kv_incr(fx->w, &r, "c", "n", 1, 0, done_cb)), 0);
  assert_int_equal(r.number, 42);
  check_value(fx, fx->w, "n", "42", 2);
  assert_int_equal(
      SYNC(fx, r, kv_put_if_absent(fx->w, &r, "c", "n", "0", 1, 0, done_cb)),
      0);
  assert_false(r.found);
  assert_int_equal(SYNC(fx, r, kv_take(fx->w, &r, "c", "n", done_cb)), 0);
  assert_true(r.found);
  assert_string_equal(r.value.base, "42");
  assert_int_equal(
      SYNC(fx, r, kv_put_many(fx->w, &r, "c", keys, vals, 2, 50, done_cb)), 0);
  assert_int_equal(SYNC(fx, r, kv_ttl_many(fx->w, &r, "c", keys, 2, done_cb)),
                   0);
  assert_string_equal(r.results[0].value.base, "one");
  assert_string_equal(r.results[1].value.base, "two");
  assert_true(r.results[1].ttl > 40 && r.results[1].ttl <= 50);
  kv_req_cleanup(&a);
  kv_req_cleanup(&b);
  kv_req_cleanup(&r);
}

static void options_never_echo_keys(void **state) {
  fx_t *fx = *state;
  kv_wrap_encryption_opts_t o = {0};
  kv_store_t *w = NULL;
  char err[512], opts[256], bad[48];
  kv_req_t r = {0};
  /* No key, both forms, a bad key, a bad old key. */
  assert_int_equal(kv_wrap_encryption(fx->mem, NULL, &w), KV_EINVAL);
  assert_null(w);
  o.key = fx->key;
  o.source = "s";
  o.salt = "t";
  assert_int_equal(kv_wrap_encryption(fx->mem, &o, &w), KV_EINVAL);
  memcpy(bad, fx->key, sizeof fx->key);
  bad[10] = '!';
  snprintf(opts, sizeof opts, "key=%s", bad);
  assert_int_equal(
      kv_wrap_by_name("encryption", opts, fx->mem, &w, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "not a Fernet key"));
  assert_null(strstr(err, bad + 12));
  snprintf(opts, sizeof opts, "key=%s,old_keys=%s+short", fx->key, fx->old);
  assert_int_equal(
      kv_wrap_by_name("encryption", opts, fx->mem, &w, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "old key #2"));
  assert_null(strstr(err, fx->key));
  assert_null(strstr(err, fx->old));
  /* A malformed options text (repeated option) is not quoted. */
  snprintf(opts, sizeof opts, "key=%s,key=%s", fx->key, fx->old);
  assert_int_equal(
      kv_wrap_by_name("encryption", opts, fx->mem, &w, err, sizeof err),
      KV_EINVAL);
  assert_null(strstr(err, fx->key));
  assert_int_equal(kv_wrap_by_name("encryption", "key_env=KV_TEST_NO_SUCH_VAR",
                                   fx->mem, &w, err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "KV_TEST_NO_SUCH_VAR"));
  assert_int_equal(
      kv_wrap_by_name("encryption", "source=x", fx->mem, &w, err, sizeof err),
      KV_EINVAL);
  assert_int_equal(
      kv_wrap_by_name("encryption", "cipher=aes", fx->mem, &w, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "cipher"));
  /* key_env holding "NEW+OLD": the first encrypts, both decrypt. */
  {
    kv_store_t *mem2;
    char *tok;
    size_t tlen;
    snprintf(opts, sizeof opts, "%s+%s", fx->key, fx->old);
    assert_int_equal(setenv("KV_TEST_FERNET_KEYS", opts, 1), 0);
    assert_int_equal(kv_open(&fx->loop, "memory://", &mem2), 0);
    assert_int_equal(kv_wrap_by_name("encryption",
                                     "key_env=KV_TEST_FERNET_KEYS,"
                                     "allow_plaintext=yes",
                                     mem2, &w, err, sizeof err),
                     0);
    unsetenv("KV_TEST_FERNET_KEYS");
    assert_int_equal(kv_fernet_encrypt(fx->old, "by old", 6, &tok, &tlen), 0);
    assert_int_equal(
        SYNC(fx, r, kv_put(mem2, &r, "c", "o", tok, tlen, 0, done_cb)), 0);
    kv_free(tok);
    check_value(fx, w, "o", "by old", 6);
    assert_int_equal(
        SYNC(fx, r, kv_put(mem2, &r, "c", "p", "plain", 5, 0, done_cb)), 0);
    check_value(fx, w, "p", "plain", 5);
    assert_int_equal(kv_store_close(w, NULL), 0); /* closes mem2 */
  }
  kv_req_cleanup(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(spec_generate_vectors),
      cmocka_unit_test(spec_verify_vectors),
      cmocka_unit_test(spec_invalid_vectors),
      cmocka_unit_test(spec_ttl_boundaries),
      cmocka_unit_test(pbkdf2_derivations_match_py_key_value),
      cmocka_unit_test(keys_are_checked),
      cmocka_unit_test(public_helpers_round_trip),
      cmocka_unit_test(every_bit_flip_is_refused),
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      T(wrapper_round_trips_and_stores_plain_tokens),
      T(tokens_from_elsewhere_are_read),
      T(tampered_and_wrong_key_are_edecrypt),
      T(rotation_first_encrypts_all_decrypt),
      T(plaintext_refused_unless_allowed),
      T(missing_on_error_reads_missing),
      T(derived_key_matches_py_key_value),
      T(atomic_ops_compare_plaintexts),
      T(options_never_echo_keys),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
