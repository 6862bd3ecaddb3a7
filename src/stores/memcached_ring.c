/* The memcached:// store's consistent-hashing ring (ketama-style): every
 * server owns KV__MC_POINTS_PER_SERVER points on a 32-bit circle, taken from
 * SHA-256 digests of "<host:port>-<i>"; a key belongs to the first point at
 * or after its hash. Adding a server takes over about 1/N of the circle and
 * leaves every other key where it was. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "internal.h"
#include "memcached_int.h"

static int point_cmp(const void *a, const void *b) {
  const kv__mc_point_t *x = a, *y = b;
  if (x->point != y->point) return x->point < y->point ? -1 : 1;
  return x->server < y->server ? -1 : x->server > y->server;
}

int kv__mc_ring_build(kv__mc_ring_t *ring, const char *const *names, size_t n) {
  size_t k = 0;
  ring->points = NULL;
  ring->npoints = 0;
  if (n == 0 || n > UINT32_MAX / KV__MC_POINTS_PER_SERVER) return KV_EINVAL;
  ring->points = kv_malloc(n * KV__MC_POINTS_PER_SERVER * sizeof *ring->points);
  if (ring->points == NULL) return KV_ENOMEM;
  for (size_t s = 0; s < n; s++) {
    for (unsigned i = 0; i < KV__MC_POINTS_PER_SERVER / 8; i++) {
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned int mdlen = 0;
      char buf[600];
      int len = snprintf(buf, sizeof buf, "%s-%u", names[s], i);
      if (len < 0 || (size_t)len >= sizeof buf) len = (int)sizeof buf - 1;
      if (!EVP_Digest(buf, (size_t)len, md, &mdlen, EVP_sha256(), NULL) ||
          mdlen < 32) {
        kv__mc_ring_free(ring);
        return KV_ENOMEM;
      }
      for (unsigned j = 0; j < 8; j++) {
        const unsigned char *p = md + 4 * j;
        ring->points[k].point = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                                (uint32_t)p[2] << 8 | p[3];
        ring->points[k].server = (uint32_t)s;
        k++;
      }
    }
  }
  ring->npoints = k;
  qsort(ring->points, k, sizeof *ring->points, point_cmp);
  return 0;
}

void kv__mc_ring_free(kv__mc_ring_t *ring) {
  kv_free(ring->points);
  ring->points = NULL;
  ring->npoints = 0;
}

uint32_t kv__mc_ring_lookup(const kv__mc_ring_t *ring, uint32_t h) {
  size_t lo = 0, hi = ring->npoints;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (ring->points[mid].point < h)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == ring->npoints) lo = 0;
  return ring->points[lo].server;
}

/* FNV-1a over (u32 length of the collection, collection, key), then
 * MurmurHash3's 64-bit finalizer so that every input bit reaches the top 32
 * bits, which are the ring position. */
static uint64_t fnv_bytes(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

uint32_t kv__mc_key_hash(const char *coll, size_t clen, const char *key,
                         size_t klen) {
  unsigned char lenb[4] = {(unsigned char)(clen >> 24),
                           (unsigned char)(clen >> 16),
                           (unsigned char)(clen >> 8), (unsigned char)clen};
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv_bytes(h, lenb, 4);
  h = fnv_bytes(h, coll, clen);
  h = fnv_bytes(h, key, klen);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return (uint32_t)(h >> 32);
}
