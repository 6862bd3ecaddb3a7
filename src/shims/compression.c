/* Shims of part `crypto` (src/shims/README.md): kvio/compression.h. */
#include "core/parts.h"
#include "kvio/compression.h"

KV__SHIM(crypto, int, kv_wrap_compression, KV_ENOTSUP,
         (kv_store_t * inner, const kv_wrap_compression_opts_t *opts,
          kv_store_t **out),
         (inner, opts, out))
