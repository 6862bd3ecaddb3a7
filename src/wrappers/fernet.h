/* Fernet tokens (https://github.com/fernet/spec), internal API.
 *
 * Token = base64url(0x80 | timestamp (8, big-endian, Unix s) | IV (16) |
 *                   AES-128-CBC(PKCS#7(plaintext)) | HMAC-SHA256 (32)),
 * with padding. A 32-byte key is split into the signing key (first 16 bytes)
 * and the encryption key (last 16 bytes).
 *
 * The *_at forms take the time and the IV from the caller so that the
 * specification's test vectors can be checked; everything else uses the
 * wall clock and OpenSSL's CSPRNG. Nothing here keeps a key in a message:
 * errors are codes, and the detail texts of the wrappers never quote keys. */
#ifndef KVIO_WRAPPERS_FERNET_H
#define KVIO_WRAPPERS_FERNET_H

#include <stddef.h>
#include <stdint.h>

#include "kvio/encryption.h"
#include "kvio/wrap.h"

#define KV__FERNET_VERSION 0x80
#define KV__FERNET_OVERHEAD (1 + 8 + 16 + 32) /* before the ciphertext */
#define KV__FERNET_MAX_SKEW 60                /* seconds, with a TTL */

typedef struct kv__fernet_cache_s kv__fernet_cache_t;
typedef struct kv__fernet_key_s {
  unsigned char sign[16];
  unsigned char enc[16];
  /* NULL: OpenSSL contexts are made per call (thread-safe). Set by
   * kv__fernet_key_cache: contexts kept with the key and a pool of random
   * IVs, for one thread at a time (a wrapper, on its loop). */
  kv__fernet_cache_t *cache;
} kv__fernet_key_t;

/* Decode a URL-safe base64 Fernet key (44 characters, padded) into *key.
 * Returns 0 or KV_EINVAL (never quoting the key). */
int kv__fernet_key_decode(const char *text, size_t len, kv__fernet_key_t *key);
/* Encode 32 raw key bytes as a Fernet key: 44 characters and a NUL. */
void kv__fernet_key_encode(const unsigned char raw[32],
                           char out[KV_FERNET_KEY_SIZE]);
/* Keep OpenSSL contexts (the keyed HMAC, the cipher) and a pool of random
 * IVs with the key: about twice as fast, for use by one thread at a time.
 * Returns 0, KV_ENOMEM or KV_EBACKEND. */
int kv__fernet_key_cache(kv__fernet_key_t *key);
/* Release the cache and wipe the key (OPENSSL_cleanse). */
void kv__fernet_key_wipe(kv__fernet_key_t *key);

/* Encrypt `len` bytes at time `now_s` with `iv`. *out is kv_malloc'ed,
 * NUL-terminated, *out_len its length. Returns 0, KV_ENOMEM or KV_EBACKEND
 * (OpenSSL failure). */
int kv__fernet_encrypt_at(const kv__fernet_key_t *key, const void *data,
                          size_t len, uint64_t now_s,
                          const unsigned char iv[16], char **out,
                          size_t *out_len);
/* As above with the current time and a random IV. */
int kv__fernet_encrypt(const kv__fernet_key_t *key, const void *data,
                       size_t len, char **out, size_t *out_len);

/* Decrypt a token with the first of `nkeys` keys whose HMAC verifies. With
 * ttl_s > 0, a token older than ttl_s seconds at `now_s`, or stamped more
 * than KV__FERNET_MAX_SKEW seconds in the future, is refused (as the
 * reference implementation does; without a TTL the timestamp is not
 * checked). *out is kv_malloc'ed and NUL-terminated.
 * Returns 0, KV_EDECRYPT (not a token, tampered, wrong key, expired) or
 * KV_ENOMEM / KV_EBACKEND. */
int kv__fernet_decrypt_at(const kv__fernet_key_t *keys, size_t nkeys,
                          const char *token, size_t len, uint64_t now_s,
                          int64_t ttl_s, char **out, size_t *out_len);

/* 1 if `data` has the shape of a Fernet token (URL-safe base64 with
 * padding, version byte 0x80, a length that a token can have), whatever the
 * key. Used to tell "not encrypted" from "encrypted with another key". */
int kv__fernet_looks_like_token(const char *data, size_t len);

/* PBKDF2-HMAC-SHA256(source, salt, KV_FERNET_PBKDF2_ITERATIONS, 32 bytes),
 * encoded as a Fernet key. Returns 0 or KV_EBACKEND. */
int kv__fernet_derive(const char *source, size_t source_len, const char *salt,
                      size_t salt_len, char out[KV_FERNET_KEY_SIZE]);

#endif
