/* libFuzzer target: Fernet tokens (src/wrappers/fernet.c) and the
 * encryption wrapper's decoder (src/wrappers/encryption.c).
 *
 * Every input is
 *  - decrypted as a token with the specification's key (as of the spec's
 *    "now", with and without a TTL), and with a key ring whose first key is
 *    another one: the answer is 0 or KV_EDECRYPT, and a token that verifies
 *    is exactly what encrypting its plaintext with its own timestamp and IV
 *    gives (so nothing in it went unchecked);
 *  - decoded by the encryption wrapper's codec, with and without
 *    allow_plaintext: 0, or KV_EDECRYPT with a message; a value that is not
 *    token-shaped reads as itself with allow_plaintext;
 *  - encrypted as a plaintext: the token decrypts to the input, looks like a
 *    token, and stops verifying when any one character is changed;
 *  - encoded as base64 (URL-safe and standard) and decoded back; decoded
 *    as base64, and encoded back when it decodes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kvio/encryption.h"
#include "wrappers/codec.h"
#include "wrappers/fernet.h"

#define SPEC_KEY "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
#define OTHER_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define SPEC_NOW 499162801u /* 1985-10-26T01:20:01-07:00 */

static kv__fernet_key_t keys[2];  /* SPEC_KEY, OTHER_KEY */
static kv__fernet_key_t ring[2];  /* OTHER_KEY, SPEC_KEY */
static kv__codec_wrap_t *strict;  /* encryption wrapper, SPEC_KEY */
static kv__codec_wrap_t *lenient; /* the same with allow_plaintext */
static uv_loop_t loop;

static kv__codec_wrap_t *wrapper(int allow_plaintext) {
  kv_wrap_encryption_opts_t o;
  kv_store_t *mem, *w;
  memset(&o, 0, sizeof o);
  o.key = SPEC_KEY;
  o.allow_plaintext = allow_plaintext;
  if (kv_open(&loop, "memory://", &mem) != 0 ||
      kv_wrap_encryption(mem, &o, &w) != 0)
    abort();
  return (kv__codec_wrap_t *)w;
}

static void setup(void) {
  uv_loop_init(&loop);
  if (kv__fernet_key_decode(SPEC_KEY, strlen(SPEC_KEY), &keys[0]) != 0 ||
      kv__fernet_key_decode(OTHER_KEY, strlen(OTHER_KEY), &keys[1]) != 0)
    abort();
  ring[0] = keys[1];
  ring[1] = keys[0];
  if (kv__fernet_key_cache(&ring[0]) != 0) abort(); /* the cached path too */
  strict = wrapper(0);
  lenient = wrapper(1);
}

/* A token that verified is what encrypting its plaintext again with its
 * timestamp and IV gives. */
static void reencrypt(const char *token, size_t len, const char *plain,
                      size_t plain_len) {
  unsigned char *raw = malloc(len / 4 * 3 + 1), iv[16];
  uint64_t ts = 0;
  char *again;
  size_t again_len;
  if (raw == NULL || kv__b64_decode(token, len, raw, KV__B64_URL) < 57) abort();
  for (int i = 0; i < 8; i++)
    ts = ts << 8 | raw[1 + i];
  memcpy(iv, raw + 9, 16);
  free(raw);
  if (kv__fernet_encrypt_at(&keys[0], plain, plain_len, ts, iv, &again,
                            &again_len) != 0)
    abort();
  if (again_len != len || memcmp(again, token, len) != 0) abort();
  kv_free(again);
}

static void decrypt_input(const char *in, size_t len) {
  char *out;
  size_t out_len;
  int rc = kv__fernet_decrypt_at(keys, 1, in, len, SPEC_NOW, 0, &out, &out_len);
  int rc_ttl, rc_ring;
  char *out2;
  size_t out2_len;
  if (rc != 0 && rc != KV_EDECRYPT) abort();
  if (rc != 0 && out != NULL) abort();
  if (rc == 0) {
    if (out == NULL || out[out_len] != '\0') abort();
    if (!kv__fernet_looks_like_token(in, len)) abort();
    reencrypt(in, len, out, out_len);
  }
  /* With a TTL: never accepts what fails without one. */
  rc_ttl =
      kv__fernet_decrypt_at(keys, 1, in, len, SPEC_NOW, 60, &out2, &out2_len);
  if (rc_ttl != 0 && rc_ttl != KV_EDECRYPT) abort();
  if (rc_ttl == 0) {
    if (rc != 0 || out2_len != out_len || memcmp(out2, out, out_len) != 0)
      abort();
    kv_free(out2);
  }
  /* A ring (first key another, cached): the same answer. */
  rc_ring =
      kv__fernet_decrypt_at(ring, 2, in, len, SPEC_NOW, 0, &out2, &out2_len);
  if (rc_ring != rc) abort();
  if (rc_ring == 0) {
    if (out2_len != out_len || memcmp(out2, out, out_len) != 0) abort();
    kv_free(out2);
  }
  kv_free(out);
}

static void codec_input(const char *in, size_t len) {
  char err[512], *out;
  size_t out_len;
  int rc;
  err[0] = '\0';
  out = NULL;
  rc = strict->codec->decode(&strict->w, in, len, &out, &out_len, err,
                             sizeof err);
  if (rc == 0) {
    if (out == NULL || out[out_len] != '\0') abort();
    kv_free(out);
  } else if (rc != KV_EDECRYPT || err[0] == '\0' || out != NULL) {
    abort();
  }
  err[0] = '\0';
  out = NULL;
  rc = lenient->codec->decode(&lenient->w, in, len, &out, &out_len, err,
                              sizeof err);
  if (rc == 0) {
    if (out == NULL || out[out_len] != '\0') abort();
    /* Not a token: read as it is. */
    if (!kv__fernet_looks_like_token(in, len) &&
        (out_len != len || memcmp(out, in, len) != 0))
      abort();
    kv_free(out);
  } else if (rc != KV_EDECRYPT || err[0] == '\0' ||
             !kv__fernet_looks_like_token(in, len)) {
    abort();
  }
}

static void roundtrip(const char *in, size_t len) {
  unsigned char iv[16] = {0};
  char *tok, *out;
  size_t tok_len, out_len;
  memcpy(iv, in, len < 16 ? len : 16);
  if (kv__fernet_encrypt_at(&keys[0], in, len, SPEC_NOW, iv, &tok, &tok_len) !=
      0)
    abort();
  if (tok[tok_len] != '\0' || !kv__fernet_looks_like_token(tok, tok_len))
    abort();
  if (kv__fernet_decrypt_at(keys, 1, tok, tok_len, SPEC_NOW, 60, &out,
                            &out_len) != 0 ||
      out_len != len || (len && memcmp(out, in, len) != 0))
    abort();
  kv_free(out);
  /* Through the wrapper's codec (random IV, the current time). */
  {
    char err[512], *enc, *dec;
    size_t enc_len, dec_len;
    if (strict->codec->encode(&strict->w, in, len, &enc, &enc_len, err,
                              sizeof err) != 0 ||
        strict->codec->decode(&strict->w, enc, enc_len, &dec, &dec_len, err,
                              sizeof err) != 0 ||
        dec_len != len || (len && memcmp(dec, in, len) != 0))
      abort();
    kv_free(enc);
    kv_free(dec);
  }
  /* Change one character: it no longer verifies. */
  {
    size_t pos = len % tok_len;
    char c = tok[pos];
    tok[pos] = c == 'A' ? 'B' : 'A';
    if (kv__fernet_decrypt_at(keys, 1, tok, tok_len, SPEC_NOW, 0, &out,
                              &out_len) != KV_EDECRYPT ||
        out != NULL)
      abort();
  }
  kv_free(tok);
}

/* base64 (src/core/encoding.c) in both alphabets: encoding round-trips;
 * decoding arbitrary text gives a length within bounds or -1, and text that
 * decodes is canonical: encoding the bytes again gives the same text. */
static void b64(const char *in, size_t len, int flags) {
  char *enc = malloc(KV__B64_SIZE(len));
  unsigned char *dec = malloc(len + 3), *raw = malloc(len / 4 * 3 + 1);
  size_t n;
  long long r;
  if (enc == NULL || dec == NULL || raw == NULL) abort();
  n = kv__b64_encode(in, len, enc, flags);
  if (n != 4 * ((len + 2) / 3) || enc[n] != '\0') abort();
  if (kv__b64_decode(enc, n, dec, flags) != (long long)len ||
      (len && memcmp(dec, in, len) != 0))
    abort();
  r = kv__b64_decode(in, len, raw, flags);
  if (r < -1 || r > (long long)(len / 4 * 3)) abort();
  if (r >= 0) {
    char *again = malloc(KV__B64_SIZE((size_t)r));
    if (again == NULL) abort();
    if (kv__b64_encode(raw, (size_t)r, again, flags) != len ||
        memcmp(again, in, len) != 0)
      abort();
    free(again);
  }
  free(raw);
  free(enc);
  free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  /* An exact-size copy, so that ASan sees any read past the input. */
  char *in = malloc(size ? size : 1);
  if (!ready) {
    setup();
    ready = 1;
  }
  if (in == NULL) abort();
  if (size) memcpy(in, data, size);
  decrypt_input(in, size);
  codec_input(in, size);
  if (size <= 4096) roundtrip(in, size);
  b64(in, size, KV__B64_URL);
  b64(in, size, 0);
  free(in);
  return 0;
}
