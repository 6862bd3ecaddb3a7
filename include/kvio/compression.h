/* kvio/compression.h — the compression wrapper.
 *
 * Values of at least `min_size` bytes are compressed with gzip (zlib), zstd
 * or lz4; every value is stored in a small self-describing envelope (magic,
 * format version, algorithm, original length), so a wrapper reads every
 * value whatever its own settings: a store written with gzip reads through a
 * wrapper configured for zstd. The format is in docs/compression.md.
 *
 * Available when kvio was built with zlib, libzstd and liblz4
 * (KV_HAVE_COMPRESSION).
 */
#ifndef KVIO_COMPRESSION_H
#define KVIO_COMPRESSION_H

#include "../kvio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Algorithms. The numbers are those of the on-store format's algorithm
 * byte (where 0 means "stored uncompressed"); in the options 0 means the
 * default, zstd. */
typedef enum {
  KV_COMPRESSION_DEFAULT = 0,
  KV_COMPRESSION_GZIP = 1, /* one gzip member (RFC 1952), zlib */
  KV_COMPRESSION_ZSTD = 2, /* one zstd frame, with its content checksum */
  KV_COMPRESSION_LZ4 = 3   /* one LZ4 block, with a CRC-32 of the value */
} kv_compression_alg_t;

#define KV_COMPRESSION_MIN_SIZE_DEFAULT 1024

/* Follows the constructor rules of kvio/wrap.h (opts NULL or zeroed: the
 * defaults; the wrapper owns `inner` unless `borrow`; on failure nothing is
 * taken). CLI / wrap:// name: "compression", options
 *   algorithm=gzip|zstd|lz4, min_size=BYTES, level=N, allow_raw=BOOL */
typedef struct kv_wrap_compression_opts_s {
  int borrow;
  kv_compression_alg_t algorithm; /* for writes; 0: zstd. Reads decode
                                     every algorithm. */
  size_t min_size; /* values shorter than this are stored uncompressed;
                      0: KV_COMPRESSION_MIN_SIZE_DEFAULT (1 compresses
                      everything but the empty value) */
  int level;       /* 0: the algorithm's default (gzip 6, zstd 3, lz4 1);
                      gzip 1..9, zstd 1..ZSTD_maxCLevel(), lz4 1..65537
                      (lz4's acceleration: higher is faster) */
  /* Values that are not in the envelope (written before compression was
   * enabled) are returned as they are instead of failing with
   * KV_ECORRUPT. */
  int allow_raw;
} kv_wrap_compression_opts_t;

/* Wrap `inner` in a compression wrapper. Returns 0, KV_EINVAL (unknown
 * algorithm, level out of range), KV_ECLOSED (inner is closing) or
 * KV_ENOMEM.
 *
 * Caps: the inner store's, the atomic segment included. cas compares
 * decoded values: the wrapper reads the stored bytes, decodes and compares
 * them, then submits an inner cas whose expected value is those exact bytes
 * (a concurrent write makes it fail; the wrapper then reads again). incr
 * works the same way on the decoded integer, so counters are stored in the
 * envelope like every other value. */
KV_EXTERN int kv_wrap_compression(kv_store_t *inner,
                                  const kv_wrap_compression_opts_t *opts,
                                  kv_store_t **out);

#ifdef __cplusplus
}
#endif
#endif /* KVIO_COMPRESSION_H */
