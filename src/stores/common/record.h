/* The record of the local stores that keep an expiry beside the value
 * (disk:// on LMDB, rocksdb://), and the names → backend key encoding they
 * share.
 *
 * Keys: BE16(|C|) ‖ C ‖ K, where C and K are the encoded collection and
 * key: the name itself when it has at most KV__REC_RAW_MAX bytes, else its
 * first KV__REC_RAW_MAX bytes ‖ 0xFF ‖ SHA-256(name). 0xFF never occurs in
 * UTF-8, so a raw name and a hashed one never meet, and the length prefix
 * makes (C, K) → key injective: (collection "a::b", key "c") and ("a",
 * "b::c") are different entries. Every key is at most KV__REC_KEY_MAX (468)
 * bytes (LMDB's limit is 511).
 *
 * Record (version 1):
 *   u8 version (1) ‖ u8 flags ‖ BE64 expires_at_ms (0 = none)
 *   [‖ BE16 len(collection) if the collection is hashed]
 *   [‖ BE16 len(key)        if the key is hashed]
 *   [‖ original collection] [‖ original key] ‖ value bytes
 */
#ifndef KVIO_STORES_RECORD_H
#define KVIO_STORES_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define KV__REC_RAW_MAX 200
#define KV__REC_ENC_MAX (KV__REC_RAW_MAX + 1 + 32)
#define KV__REC_KEY_MAX (2 + 2 * KV__REC_ENC_MAX)
#define KV__REC_VERSION 1
#define KV__REC_HDR 10
#define KV__REC_CHASHED 0x01
#define KV__REC_KHASHED 0x02

/* A parsed record: pointers into the parsed bytes. */
typedef struct kv__rec_s {
  unsigned flags;
  int64_t expires_at;
  const char *coll; /* the original collection when hashed, else NULL */
  size_t coll_len;
  const char *key; /* the original key when hashed, else NULL */
  size_t key_len;
  const char *value;
  size_t value_len;
} kv__rec_t;

/* A backend key being built: the collection prefix once, then each key. */
typedef struct kv__reckey_s {
  unsigned char buf[KV__REC_KEY_MAX];
  size_t prefix_len; /* BE16 ‖ encoded collection */
  size_t len;
  unsigned flags; /* KV__REC_* for a record written under this key */
} kv__reckey_t;

/* The smallest entry key: every entry sorts at or after it, a marker
 * stored under "\0" before it. */
KV__MODULE_API extern const unsigned char kv__rec_first_key[2];

/* Parse `size` bytes as a record; 0, or KV_ECORRUPT for bytes that are no
 * record. */
KV__MODULE_API int kv__rec_parse(const void *data, size_t size, kv__rec_t *r);
/* The size of the record for k (its flags say which names it carries). */
KV__MODULE_API size_t kv__rec_size(const kv__reckey_t *k, size_t coll_len, size_t key_len,
                    size_t value_len);
/* Write the record for k into p (kv__rec_size bytes). */
KV__MODULE_API void kv__rec_write(void *p, const kv__reckey_t *k, const char *coll,
                   size_t coll_len, const char *key, size_t key_len,
                   const void *value, size_t value_len, int64_t expires_at);

KV__MODULE_API void kv__reckey_init(kv__reckey_t *k, const char *coll, size_t coll_len);
KV__MODULE_API void kv__reckey_set(kv__reckey_t *k, const char *key, size_t key_len);
/* Whether a backend key is an entry key (not a marker, not foreign), and
 * its prefix length (BE16 ‖ encoded collection). */
KV__MODULE_API int kv__rec_entry_key(const void *key, size_t len, size_t *prefix_len);
/* Whether key starts with prefix and is longer. */
KV__MODULE_API int kv__rec_has_prefix(const void *key, size_t len, const void *prefix,
                       size_t prefix_len);
/* The smallest key after every key that starts with p[0..len): p + 1, in
 * place. Returns its length. */
KV__MODULE_API size_t kv__rec_successor(unsigned char *p, size_t len);
/* BE16 of p. */
KV__MODULE_API size_t kv__rec_be16(const void *p);

#endif
