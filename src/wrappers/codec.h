/* wrappers/codec.h — the value-codec engine (codec.c), shared by the
 * encryption and compression wrappers. A codec wrapper transforms every value
 * on its way in (encode) and out (decode); the engine does the rest:
 *   - put, put_if_absent, put_many: encode, then forward;
 *   - get, ttl, take, get_many, ttl_many: forward, then decode;
 *   - cas with an expected value: read the stored bytes, decode, compare
 *     with the expected value, then an inner cas whose expected value is
 *     the exact stored bytes (so it fails if anything wrote meanwhile; the
 *     engine then reads again, up to KV__CODEC_MAX_TRIES times). Such ops
 *     on one key through one wrapper are queued and run one at a time, so
 *     a thousand concurrent incrs cost a thousand round trips, not a
 *     million;
 *   - incr: the same loop on the decoded integer (an existing entry keeps
 *     its remaining TTL);
 *   - everything else is forwarded unchanged.
 * With non-deterministic encodings (Fernet's random IV) this is still a
 * true compare-and-swap: the inner cas compares what is stored. */
#ifndef KVIO_WRAPPERS_CODEC_H
#define KVIO_WRAPPERS_CODEC_H

#include <stddef.h>

#include "kvio/wrap.h"

#define KV__CODEC_MAX_TRIES 4096 /* inner cas conflicts before giving up */
#define KV__CODEC_RMW_BUCKETS 64

typedef struct kv__codec_s kv__codec_t;
/* Encode or decode `len` bytes of `in` into *out (kv_malloc'ed, followed by
 * a NUL not counted in *out_len). Returns 0 or an error with a detail in
 * errbuf, which must never quote key material. */
typedef int (*kv__codec_fn)(kv_wrap_t *w, const char *in, size_t len,
                            char **out, size_t *out_len, char *errbuf,
                            size_t errbuf_len);
struct kv__codec_s {
  kv__codec_fn encode;
  kv__codec_fn decode;
};

/* The base of a codec wrapper's struct (set both fields after
 * kv_wrap_create). */
typedef struct kv__codec_wrap_s {
  kv_wrap_t w;
  const kv__codec_t *codec;
  /* Reads (get, ttl, take, get_many, ttl_many) of a value that fails to
   * decode with `missing_error` report it missing instead of failing. */
  int missing_on_error;
  int missing_error;
  /* private: the read-modify-write ops (cas with an expected value, incr)
   * running, hashed by collection and key. Ops on one key through one
   * wrapper run one after another, so they do not make each other retry. */
  kv_wrap_req_t *rmw[KV__CODEC_RMW_BUCKETS];
} kv__codec_wrap_t;

/* kv_wrap_methods_init plus the engine's methods for the value ops. */
void kv__codec_methods_init(kv_store_methods_t *m, const char *name,
                            size_t store_size);

#endif
