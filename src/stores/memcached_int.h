/* Internals of the memcached:// store shared with its unit tests: the
 * consistent-hashing ring (memcached_ring.c); and with its fuzz targets:
 * the reply parser (memcached_conn.c) and the entry decoder (memcached.c).
 * What the store's own files share is in memcached_store.h. */
#ifndef KVIO_MEMCACHED_INT_H
#define KVIO_MEMCACHED_INT_H

#include <stddef.h>
#include <stdint.h>

#define KV__MC_POINTS_PER_SERVER 160

typedef struct kv__mc_point_s {
  uint32_t point;
  uint32_t server;
} kv__mc_point_t;

typedef struct kv__mc_ring_s {
  kv__mc_point_t *points; /* sorted by point */
  size_t npoints;
} kv__mc_ring_t;

/* Build a ring over n servers named "host:port": each server gets
 * KV__MC_POINTS_PER_SERVER points derived from SHA-256 of its name, so a
 * server's points do not depend on the other servers. Returns 0 or
 * KV_ENOMEM / KV_EINVAL (n == 0). */
int kv__mc_ring_build(kv__mc_ring_t *ring, const char *const *names, size_t n);
void kv__mc_ring_free(kv__mc_ring_t *ring);
/* The server owning hash h: the first point >= h, wrapping around. */
uint32_t kv__mc_ring_lookup(const kv__mc_ring_t *ring, uint32_t h);
/* The ring position of (collection, key): the collection is length-prefixed
 * so that ("a:b", "c") and ("a", "b:c") hash differently. */
uint32_t kv__mc_key_hash(const char *coll, size_t clen, const char *key,
                         size_t klen);

/* One reply of the meta protocol, parsed: pointers into the input. */
typedef struct kv__mc_reply_s {
  int type;         /* R_* of memcached_store.h */
  const char *data; /* VA: the data block (dlen bytes), else NULL */
  size_t dlen;
  uint64_t cas;     /* VA: the c flag's value, else 0 */
  const char *line; /* the reply line, without "\r\n" */
  size_t line_len;
} kv__mc_reply_t;

/* Parse one reply at the start of buf. Returns the bytes it takes, 0 when
 * more input is needed, or -1 on a malformed reply. */
long kv__mc_parse_reply(const char *buf, size_t len, kv__mc_reply_t *r);

/* An entry (the item's data: a 16-byte header, the original key when it
 * was hashed, the value), decoded. */
typedef struct kv__mc_entry_s {
  int live; /* it counts: not expired, written for this key */
  int64_t expires_at;
  const char *value; /* into the data */
  size_t vlen;
} kv__mc_entry_t;

/* Decode the data of an item read for the user key ukey at now_ms. Returns
 * 0 (e->live says whether it counts) or KV_ECORRUPT. */
int kv__mc_entry_decode(const char *data, size_t dlen, const char *ukey,
                        size_t ukl, int64_t now_ms, kv__mc_entry_t *e);

#endif
