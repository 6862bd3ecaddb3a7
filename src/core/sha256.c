/* SHA-256 for the core's own uses (disk:// long names, the rename
 * wrappers), with GNU Nettle: a small library, so that libkvio does not map
 * OpenSSL's libcrypto at start (about 3,500 symbol relocations, most of a
 * process start: BENCHMARKS.md, "Process start"). Parts that need OpenSSL
 * link it themselves. */
#include <nettle/sha2.h>

#include "internal.h"

void kv__sha256(const void *data, size_t len,
                unsigned char out[KV__SHA256_LEN]) {
  struct sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, len, data);
  sha256_digest(&ctx, KV__SHA256_LEN, out);
}
