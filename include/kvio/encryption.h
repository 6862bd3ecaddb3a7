/* kvio/encryption.h — the encryption wrapper (Fernet) and Fernet helpers.
 *
 * The wrapper stores each value as a Fernet token (the token itself, nothing
 * added), so any Fernet implementation given the key reads what kvio wrote,
 * and kvio reads what it wrote. See docs/encryption.md.
 *
 * Available when kvio was built with OpenSSL's libcrypto (KV_HAVE_ENCRYPTION).
 */
#ifndef KVIO_ENCRYPTION_H
#define KVIO_ENCRYPTION_H

#include "../kvio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A Fernet key as text: URL-safe base64 of 32 bytes (44 characters) and a
 * NUL. */
#define KV_FERNET_KEY_SIZE 45
/* PBKDF2-HMAC-SHA256 iterations of kv_fernet_derive_key (py-key-value's). */
#define KV_FERNET_PBKDF2_ITERATIONS 1200000

/* ---- Fernet tokens ---------------------------------------------------------
 *
 * These functions are thread-safe. Keys are URL-safe base64 Fernet keys
 * ("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="). Buffers they return are
 * allocated with kv_malloc, NUL-terminated (the NUL is not counted) and
 * belong to the caller (kv_free). */

/* Write a new random key into `key`. Returns 0 or KV_EBACKEND (no entropy). */
KV_EXTERN int kv_fernet_generate_key(char key[KV_FERNET_KEY_SIZE]);

/* Derive a key from source material and a salt with PBKDF2-HMAC-SHA256,
 * KV_FERNET_PBKDF2_ITERATIONS iterations, 32 bytes, as py-key-value does
 * (about a second of CPU: derive once, keep the key). Returns 0,
 * KV_EINVAL (NULL or empty source or salt) or KV_EBACKEND. */
KV_EXTERN int kv_fernet_derive_key(const char *source, const char *salt,
                                   char key[KV_FERNET_KEY_SIZE]);

/* Encrypt `len` bytes into a token (current time, random IV). Returns 0,
 * KV_EINVAL (bad key), KV_ENOMEM or KV_EBACKEND. */
KV_EXTERN int kv_fernet_encrypt(const char *key, const void *data, size_t len,
                                char **token, size_t *token_len);

/* Decrypt a token with any of `nkeys` keys (tried in order). With ttl > 0 a
 * token older than ttl seconds (or stamped more than 60 s in the future) is
 * refused; ttl 0 ignores the timestamp. Returns 0, KV_EINVAL (bad key),
 * KV_EDECRYPT (not a token, tampered, wrong key, expired) or KV_ENOMEM. */
KV_EXTERN int kv_fernet_decrypt(const char *const *keys, size_t nkeys,
                                const char *token, size_t token_len, double ttl,
                                char **data, size_t *data_len);

/* ---- The wrapper -----------------------------------------------------------
 *
 * Follows the constructor rules of kvio/wrap.h (opts NULL or zeroed: the
 * defaults; the wrapper owns `inner` unless `borrow`; on failure nothing is
 * taken). CLI / wrap:// name: "encryption", options
 *   key=FERNET_KEY | key_env=VAR | source=TEXT,salt=TEXT
 *   [,old_keys=K1+K2...][,allow_plaintext=true][,missing_on_error=true]
 * (key_env names an environment variable holding the key, or "K1+K2...").
 */

typedef struct kv_wrap_encryption_opts_s {
  int borrow;
  /* The key values are encrypted with: either `key` (a Fernet key) or
   * `source` + `salt` (derived once, here, with kv_fernet_derive_key).
   * Exactly one of the two forms is required. */
  const char *key;
  const char *source;
  const char *salt;
  /* Further keys, tried in order after the first when decrypting (key
   * rotation: the first key encrypts, every key decrypts). */
  const char *const *old_keys;
  size_t nold_keys;
  /* Values that are not Fernet tokens at all (written before encryption
   * was enabled) are returned as they are instead of failing with
   * KV_EDECRYPT. A token that does not verify is still KV_EDECRYPT. */
  int allow_plaintext;
  /* A value that cannot be decrypted reads as missing (found = 0) on get,
   * ttl, take, get_many and ttl_many instead of failing with KV_EDECRYPT. */
  int missing_on_error;
} kv_wrap_encryption_opts_t;

/* Wrap `inner` in an encryption wrapper. Keys are decoded (or derived: about
 * a second of CPU, on the calling thread) here, once, and wiped when the
 * wrapper is freed. Returns 0, KV_EINVAL (no key, a key that is not a
 * Fernet key, both forms given), KV_ECLOSED (inner is closing) or
 * KV_ENOMEM.
 *
 * Caps: the inner store's, the atomic segment included. cas compares
 * plaintexts: the wrapper reads the stored token, decrypts and compares it,
 * then submits an inner cas whose expected value is that exact token (so a
 * concurrent write makes it fail; the wrapper then reads again). incr works
 * the same way on the decrypted integer. */
KV_EXTERN int kv_wrap_encryption(kv_store_t *inner,
                                 const kv_wrap_encryption_opts_t *opts,
                                 kv_store_t **out);

#ifdef __cplusplus
}
#endif
#endif /* KVIO_ENCRYPTION_H */
