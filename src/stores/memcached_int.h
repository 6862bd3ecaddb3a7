/* Internals of the memcached:// store shared with its unit tests: the
 * consistent-hashing ring (memcached_ring.c). */
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

#endif
