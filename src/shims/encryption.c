/* Shims of part `crypto` (src/shims/README.md): kvio/encryption.h. */
#include "core/parts.h"
#include "kvio/encryption.h"

KV__SHIM(crypto, int, kv_fernet_generate_key, KV_ENOTSUP,
         (char key[KV_FERNET_KEY_SIZE]), (key))
KV__SHIM(crypto, int, kv_fernet_derive_key, KV_ENOTSUP,
         (const char *source, const char *salt, char key[KV_FERNET_KEY_SIZE]),
         (source, salt, key))
KV__SHIM(crypto, int, kv_fernet_encrypt, KV_ENOTSUP,
         (const char *key, const void *data, size_t len, char **token,
          size_t *token_len),
         (key, data, len, token, token_len))
KV__SHIM(crypto, int, kv_fernet_decrypt, KV_ENOTSUP,
         (const char *const *keys, size_t nkeys, const char *token,
          size_t token_len, double ttl, char **data, size_t *data_len),
         (keys, nkeys, token, token_len, ttl, data, data_len))
KV__SHIM(crypto, int, kv_wrap_encryption, KV_ENOTSUP,
         (kv_store_t * inner, const kv_wrap_encryption_opts_t *opts,
          kv_store_t **out),
         (inner, opts, out))
