/* Internals of the rocksdb:// store exposed to its fuzz target
 * (tests/fuzz/fuzz-value-envelopes.c): the record format of rocksdb.c. */
#ifndef KVIO_ROCKSDB_INT_H
#define KVIO_ROCKSDB_INT_H

#include <stddef.h>
#include <stdint.h>

/* A parsed record (format in rocksdb.c): pointers into the parsed bytes. */
typedef struct kv__rdb_rec_s {
  unsigned flags;
  int64_t expires_at;
  const char *coll; /* the original collection when hashed, else NULL */
  size_t coll_len;
  const char *key; /* the original key when hashed, else NULL */
  size_t key_len;
  const char *value;
  size_t value_len;
} kv__rdb_rec_t;

/* Parse `size` bytes as a record; 0, or KV_ECORRUPT for bytes that are no
 * record. */
int kv__rdb_rec_parse(const char *v, size_t size, kv__rdb_rec_t *r);

#endif
