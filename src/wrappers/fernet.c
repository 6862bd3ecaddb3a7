/* Fernet tokens with OpenSSL's libcrypto: AES-128-CBC with PKCS#7 padding,
 * HMAC-SHA256 (encrypt-then-MAC), URL-safe base64 with padding, exactly as
 * the specification (github.com/fernet/spec, Spec.md) describes. The
 * specification's vectors are checked by tests/wrappers/test-encryption.c.
 *
 * Keys never leave this file in a message: every failure is a bare code. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "internal.h"
#include "wrappers/fernet.h"

/* ---- Keys ------------------------------------------------------------------
 */

int kv__fernet_key_decode(const char *text, size_t len, kv__fernet_key_t *key) {
  unsigned char raw[33];
  if (text == NULL || len != KV_FERNET_KEY_SIZE - 1 ||
      kv__b64_decode(text, len, raw, KV__B64_URL) != 32) {
    OPENSSL_cleanse(raw, sizeof raw);
    return KV_EINVAL;
  }
  memcpy(key->sign, raw, 16);
  memcpy(key->enc, raw + 16, 16);
  key->cache = NULL;
  OPENSSL_cleanse(raw, sizeof raw);
  return 0;
}

void kv__fernet_key_encode(const unsigned char raw[32],
                           char out[KV_FERNET_KEY_SIZE]) {
  kv__b64_encode(raw, 32, out, KV__B64_URL);
}

/* ---- OpenSSL objects -------------------------------------------------------
 * Fetched once (OpenSSL 3 looks algorithms up by name on every implicit
 * fetch, which costs more than encrypting a kilobyte). Process-lifetime. */

static EVP_CIPHER *g_aes;
static EVP_MAC *g_hmac;
static uv_once_t g_once = UV_ONCE_INIT;

static void algs_init(void) {
  g_aes = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
  g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static int algs(void) {
  uv_once(&g_once, algs_init);
  return g_aes != NULL && g_hmac != NULL ? 0 : KV_EBACKEND;
}

#define IV_POOL 64 /* IVs drawn from RAND_bytes at once */

struct kv__fernet_cache_s {
  EVP_MAC_CTX *mac; /* keyed with the signing key */
  EVP_CIPHER_CTX *cipher;
  unsigned char ivs[16 * IV_POOL];
  unsigned ivpos; /* next unused IV; IV_POOL: empty */
};

static EVP_MAC_CTX *mac_new(const unsigned char key[16]) {
  OSSL_PARAM params[2];
  EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(g_hmac);
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                               (char *)(uintptr_t) "SHA256", 0);
  params[1] = OSSL_PARAM_construct_end();
  if (ctx != NULL && EVP_MAC_init(ctx, key, 16, params) != 1) {
    EVP_MAC_CTX_free(ctx);
    ctx = NULL;
  }
  return ctx;
}

int kv__fernet_key_cache(kv__fernet_key_t *key) {
  kv__fernet_cache_t *c;
  int err = algs();
  if (err) return err;
  if (key->cache != NULL) return 0;
  if ((c = kv_calloc(1, sizeof *c)) == NULL) return KV_ENOMEM;
  c->mac = mac_new(key->sign);
  c->cipher = EVP_CIPHER_CTX_new();
  c->ivpos = IV_POOL;
  if (c->mac == NULL || c->cipher == NULL) {
    EVP_MAC_CTX_free(c->mac);
    EVP_CIPHER_CTX_free(c->cipher);
    kv_free(c);
    return KV_EBACKEND;
  }
  key->cache = c;
  return 0;
}

void kv__fernet_key_wipe(kv__fernet_key_t *key) {
  kv__fernet_cache_t *c = key->cache;
  if (c != NULL) {
    EVP_MAC_CTX_free(c->mac);
    EVP_CIPHER_CTX_free(c->cipher);
    OPENSSL_cleanse(c, sizeof *c);
    kv_free(c);
  }
  OPENSSL_cleanse(key, sizeof *key);
}

int kv__fernet_derive(const char *source, size_t source_len, const char *salt,
                      size_t salt_len, char out[KV_FERNET_KEY_SIZE]) {
  unsigned char raw[32];
  if (source_len > INT32_MAX || salt_len > INT32_MAX ||
      PKCS5_PBKDF2_HMAC(source, (int)source_len, (const unsigned char *)salt,
                        (int)salt_len, KV_FERNET_PBKDF2_ITERATIONS,
                        EVP_sha256(), (int)sizeof raw, raw) != 1)
    return KV_EBACKEND;
  kv__fernet_key_encode(raw, out);
  OPENSSL_cleanse(raw, sizeof raw);
  return 0;
}

/* ---- Tokens ----------------------------------------------------------------
 */

static int hmac_sha256(const kv__fernet_key_t *key, const unsigned char *data,
                       size_t len, unsigned char mac[32]) {
  EVP_MAC_CTX *ctx = key->cache ? key->cache->mac : mac_new(key->sign);
  size_t maclen = 0;
  int ok;
  if (ctx == NULL) return KV_EBACKEND;
  ok = (key->cache == NULL || EVP_MAC_init(ctx, NULL, 0, NULL) == 1) &&
       EVP_MAC_update(ctx, data, len) == 1 &&
       EVP_MAC_final(ctx, mac, &maclen, 32) == 1 && maclen == 32;
  if (key->cache == NULL) EVP_MAC_CTX_free(ctx);
  return ok ? 0 : KV_EBACKEND;
}

/* The key's cipher context, or a new one (*own = 1: free it). */
static EVP_CIPHER_CTX *cipher_ctx(const kv__fernet_key_t *key, int *own) {
  *own = key->cache == NULL;
  return *own ? EVP_CIPHER_CTX_new() : key->cache->cipher;
}

int kv__fernet_encrypt_at(const kv__fernet_key_t *key, const void *data,
                          size_t len, uint64_t now_s,
                          const unsigned char iv[16], char **out,
                          size_t *out_len) {
  size_t ct_len = (len / 16 + 1) * 16; /* PKCS#7 always adds 1..16 bytes */
  size_t raw_len = KV__FERNET_OVERHEAD + ct_len;
  unsigned char *raw;
  char *text;
  EVP_CIPHER_CTX *ctx;
  int n1 = 0, n2 = 0, ok, own;
  *out = NULL;
  *out_len = 0;
  if (len > (size_t)INT32_MAX - 64) return KV_ETOOBIG; /* EVP takes an int */
  if (algs() != 0) return KV_EBACKEND;
  raw = kv_malloc(raw_len);
  text = kv_malloc(4 * ((raw_len + 2) / 3) + 1);
  ctx = cipher_ctx(key, &own);
  if (raw == NULL || text == NULL || ctx == NULL) {
    kv_free(raw);
    kv_free(text);
    if (own) EVP_CIPHER_CTX_free(ctx);
    return KV_ENOMEM;
  }
  raw[0] = KV__FERNET_VERSION;
  for (int i = 0; i < 8; i++)
    raw[1 + i] = (unsigned char)(now_s >> (56 - 8 * i));
  memcpy(raw + 9, iv, 16);
  ok = EVP_EncryptInit_ex2(ctx, g_aes, key->enc, iv, NULL) == 1 &&
       EVP_EncryptUpdate(ctx, raw + 25, &n1, data, (int)len) == 1 &&
       EVP_EncryptFinal_ex(ctx, raw + 25 + n1, &n2) == 1 &&
       (size_t)n1 + (size_t)n2 == ct_len &&
       hmac_sha256(key, raw, 25 + ct_len, raw + 25 + ct_len) == 0;
  if (own) EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    OPENSSL_cleanse(raw, raw_len);
    kv_free(raw);
    kv_free(text);
    return KV_EBACKEND;
  }
  *out_len = kv__b64_encode(raw, raw_len, text, KV__B64_URL);
  *out = text;
  kv_free(raw);
  return 0;
}

int kv__fernet_encrypt(const kv__fernet_key_t *key, const void *data,
                       size_t len, char **out, size_t *out_len) {
  unsigned char iv[16];
  int64_t now = kv_now_ms();
  kv__fernet_cache_t *c = key->cache;
  if (c != NULL) { /* RAND_bytes costs as much per call for 16 bytes as for
                      a kilobyte: draw IVs in batches */
    if (c->ivpos == IV_POOL) {
      if (RAND_bytes(c->ivs, sizeof c->ivs) != 1) return KV_EBACKEND;
      c->ivpos = 0;
    }
    memcpy(iv, c->ivs + 16 * c->ivpos, 16);
    OPENSSL_cleanse(c->ivs + 16 * c->ivpos, 16); /* used once */
    c->ivpos++;
  } else if (RAND_bytes(iv, sizeof iv) != 1) {
    return KV_EBACKEND;
  }
  return kv__fernet_encrypt_at(key, data, len, (uint64_t)(now / 1000), iv, out,
                               out_len);
}

/* Decode a token into raw (len / 4 * 3 bytes); the decoded length, or 0 when
 * it is not a well-formed token. */
static size_t token_decode(const char *token, size_t len, unsigned char *raw) {
  long long n = kv__b64_decode(token, len, raw, KV__B64_URL);
  if (n < KV__FERNET_OVERHEAD + 16 || raw[0] != KV__FERNET_VERSION ||
      (n - KV__FERNET_OVERHEAD) % 16 != 0)
    return 0;
  return (size_t)n;
}

int kv__fernet_looks_like_token(const char *data, size_t len) {
  unsigned char *raw;
  size_t n;
  /* The shortest token (one block) is 100 characters. */
  if (len < 100 || len % 4 != 0 || data[0] != 'g') return 0;
  raw = kv_malloc(len / 4 * 3);
  if (raw == NULL) return 1; /* cannot tell: treat it as a token (refused) */
  n = token_decode(data, len, raw);
  kv_free(raw);
  return n != 0;
}

int kv__fernet_decrypt_at(const kv__fernet_key_t *keys, size_t nkeys,
                          const char *token, size_t len, uint64_t now_s,
                          int64_t ttl_s, char **out, size_t *out_len) {
  unsigned char *raw, mac[32];
  size_t n, ct_len;
  const kv__fernet_key_t *key = NULL;
  EVP_CIPHER_CTX *ctx;
  int n1 = 0, n2 = 0, ok, own;
  *out = NULL;
  *out_len = 0;
  if (len < 100 || len % 4 != 0 || len / 4 * 3 > (size_t)INT32_MAX)
    return KV_EDECRYPT;
  raw = kv_malloc(len / 4 * 3);
  if (raw == NULL) return KV_ENOMEM;
  n = token_decode(token, len, raw);
  if (n == 0) goto refuse;
  ct_len = n - KV__FERNET_OVERHEAD;
  if (ttl_s > 0) {
    uint64_t ts = 0;
    for (int i = 0; i < 8; i++)
      ts = ts << 8 | raw[1 + i];
    if (ts + (uint64_t)ttl_s < now_s) goto refuse;     /* expired */
    if (now_s + KV__FERNET_MAX_SKEW < ts) goto refuse; /* from the future */
  }
  if (algs() != 0) {
    kv_free(raw);
    return KV_EBACKEND;
  }
  for (size_t k = 0; k < nkeys && key == NULL; k++) {
    if (hmac_sha256(&keys[k], raw, 25 + ct_len, mac) != 0) {
      kv_free(raw);
      return KV_EBACKEND;
    }
    if (CRYPTO_memcmp(mac, raw + 25 + ct_len, 32) == 0) key = &keys[k];
  }
  if (key == NULL) goto refuse;
  /* Decrypt in place: OpenSSL allows out == in for CBC. */
  if ((ctx = cipher_ctx(key, &own)) == NULL) {
    kv_free(raw);
    return KV_ENOMEM;
  }
  ok = EVP_DecryptInit_ex2(ctx, g_aes, key->enc, raw + 9, NULL) == 1 &&
       EVP_DecryptUpdate(ctx, raw + 25, &n1, raw + 25, (int)ct_len) == 1 &&
       EVP_DecryptFinal_ex(ctx, raw + 25 + n1, &n2) == 1; /* padding */
  if (own) EVP_CIPHER_CTX_free(ctx);
  if (!ok) goto refuse;
  n = (size_t)n1 + (size_t)n2;
  memmove(raw, raw + 25, n);
  raw[n] = '\0';
  *out = (char *)raw;
  *out_len = n;
  return 0;

refuse:
  OPENSSL_cleanse(raw, len / 4 * 3);
  kv_free(raw);
  return KV_EDECRYPT;
}

/* ---- Public helpers --------------------------------------------------------
 */

int kv_fernet_generate_key(char key[KV_FERNET_KEY_SIZE]) {
  unsigned char raw[32];
  if (key == NULL) return KV_EINVAL;
  if (RAND_bytes(raw, sizeof raw) != 1) return KV_EBACKEND;
  kv__fernet_key_encode(raw, key);
  OPENSSL_cleanse(raw, sizeof raw);
  return 0;
}

int kv_fernet_derive_key(const char *source, const char *salt,
                         char key[KV_FERNET_KEY_SIZE]) {
  if (source == NULL || salt == NULL || key == NULL || source[0] == '\0' ||
      salt[0] == '\0')
    return KV_EINVAL;
  return kv__fernet_derive(source, strlen(source), salt, strlen(salt), key);
}

int kv_fernet_encrypt(const char *key, const void *data, size_t len,
                      char **token, size_t *token_len) {
  kv__fernet_key_t k;
  int err;
  if (token == NULL || token_len == NULL || (data == NULL && len != 0))
    return KV_EINVAL;
  *token = NULL;
  *token_len = 0;
  if (key == NULL || kv__fernet_key_decode(key, strlen(key), &k) != 0)
    return KV_EINVAL;
  err = kv__fernet_encrypt(&k, data, len, token, token_len);
  kv__fernet_key_wipe(&k);
  return err;
}

int kv_fernet_decrypt(const char *const *keys, size_t nkeys, const char *token,
                      size_t token_len, double ttl, char **data,
                      size_t *data_len) {
  kv__fernet_key_t kbuf[4], *k = kbuf;
  int err = 0;
  if (data == NULL || data_len == NULL || keys == NULL || nkeys == 0 ||
      (token == NULL && token_len != 0) || !(ttl >= 0) || ttl > KV_TTL_MAX)
    return KV_EINVAL;
  *data = NULL;
  *data_len = 0;
  if (nkeys > KV__ARRAY_SIZE(kbuf) && (k = kv_calloc(nkeys, sizeof *k)) == NULL)
    return KV_ENOMEM;
  for (size_t i = 0; i < nkeys && err == 0; i++)
    if (keys[i] == NULL ||
        kv__fernet_key_decode(keys[i], strlen(keys[i]), &k[i]) != 0)
      err = KV_EINVAL;
  if (err == 0) {
    /* A positive TTL below a second still counts as a second. */
    int64_t ttl_s = ttl > 0 ? (int64_t)ttl + (ttl > (double)(int64_t)ttl) : 0;
    err = kv__fernet_decrypt_at(k, nkeys, token, token_len,
                                (uint64_t)(kv_now_ms() / 1000), ttl_s, data,
                                data_len);
  }
  OPENSSL_cleanse(k, nkeys * sizeof *k);
  if (k != kbuf) kv_free(k);
  return err;
}
