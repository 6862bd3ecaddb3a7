/* The record of disk:// and rocksdb:// (record.h). */
#include <string.h>


#include "internal.h"
#include "stores/common/record.h"

_Static_assert(KV__SHA256_LEN == 32, "KV__REC_ENC_MAX assumes SHA-256");

const unsigned char kv__rec_first_key[2] = {0, 1};

static void put_be16(unsigned char *p, size_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

size_t kv__rec_be16(const void *data) {
  const unsigned char *p = data;
  return ((size_t)p[0] << 8) | p[1];
}

static void put_be64(unsigned char *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  int i;
  for (i = 7; i >= 0; i--) {
    p[i] = (unsigned char)u;
    u >>= 8;
  }
}

static int64_t get_be64(const unsigned char *p) {
  uint64_t u = 0;
  int i;
  for (i = 0; i < 8; i++)
    u = (u << 8) | p[i];
  return (int64_t)u;
}

int kv__rec_parse(const void *data, size_t size, kv__rec_t *r) {
  const unsigned char *p = data;
  size_t off = KV__REC_HDR;
  if (size < KV__REC_HDR || p[0] != KV__REC_VERSION ||
      (p[1] & ~(KV__REC_CHASHED | KV__REC_KHASHED)) != 0)
    return KV_ECORRUPT;
  r->flags = p[1];
  r->expires_at = get_be64(p + 2);
  r->coll = NULL;
  r->coll_len = 0;
  r->key = NULL;
  r->key_len = 0;
  if (r->flags & KV__REC_CHASHED) {
    if (size < off + 2) return KV_ECORRUPT;
    r->coll_len = kv__rec_be16(p + off);
    off += 2;
  }
  if (r->flags & KV__REC_KHASHED) {
    if (size < off + 2) return KV_ECORRUPT;
    r->key_len = kv__rec_be16(p + off);
    off += 2;
  }
  if (size - off < r->coll_len + r->key_len) return KV_ECORRUPT;
  if (r->flags & KV__REC_CHASHED) r->coll = (const char *)p + off;
  off += r->coll_len;
  if (r->flags & KV__REC_KHASHED) r->key = (const char *)p + off;
  off += r->key_len;
  r->value = (const char *)p + off;
  r->value_len = size - off;
  return 0;
}

size_t kv__rec_size(const kv__reckey_t *k, size_t coll_len, size_t key_len,
                    size_t value_len) {
  size_t n = KV__REC_HDR + value_len;
  if (k->flags & KV__REC_CHASHED) n += 2 + coll_len;
  if (k->flags & KV__REC_KHASHED) n += 2 + key_len;
  return n;
}

void kv__rec_write(void *data, const kv__reckey_t *k, const char *coll,
                   size_t coll_len, const char *key, size_t key_len,
                   const void *value, size_t value_len, int64_t expires_at) {
  unsigned char *p = data;
  size_t off = KV__REC_HDR;
  p[0] = KV__REC_VERSION;
  p[1] = (unsigned char)k->flags;
  put_be64(p + 2, expires_at);
  if (k->flags & KV__REC_CHASHED) {
    put_be16(p + off, coll_len);
    off += 2;
  }
  if (k->flags & KV__REC_KHASHED) {
    put_be16(p + off, key_len);
    off += 2;
  }
  if (k->flags & KV__REC_CHASHED) {
    memcpy(p + off, coll, coll_len);
    off += coll_len;
  }
  if (k->flags & KV__REC_KHASHED) {
    memcpy(p + off, key, key_len);
    off += key_len;
  }
  if (value_len > 0) memcpy(p + off, value, value_len);
}

/* Encode a name into out[KV__REC_ENC_MAX]; returns the encoded length and
 * whether the name was hashed. */
static size_t encode(const char *name, size_t len, unsigned char *out,
                     int *hashed) {
  if (len <= KV__REC_RAW_MAX) {
    memcpy(out, name, len);
    *hashed = 0;
    return len;
  }
  memcpy(out, name, KV__REC_RAW_MAX);
  out[KV__REC_RAW_MAX] = 0xFF;
  kv__sha256(name, len, out + KV__REC_RAW_MAX + 1); /* Nettle, in the core */
  *hashed = 1;
  return KV__REC_ENC_MAX;
}

void kv__reckey_init(kv__reckey_t *k, const char *coll, size_t coll_len) {
  int hashed;
  size_t n = encode(coll, coll_len, k->buf + 2, &hashed);
  put_be16(k->buf, n);
  k->prefix_len = 2 + n;
  k->len = k->prefix_len;
  k->flags = hashed ? KV__REC_CHASHED : 0;
}

void kv__reckey_set(kv__reckey_t *k, const char *key, size_t key_len) {
  int hashed;
  size_t n = encode(key, key_len, k->buf + k->prefix_len, &hashed);
  k->len = k->prefix_len + n;
  k->flags = (k->flags & KV__REC_CHASHED) | (hashed ? KV__REC_KHASHED : 0);
}

int kv__rec_entry_key(const void *key, size_t len, size_t *prefix_len) {
  size_t n;
  if (len < 4) return 0;
  n = kv__rec_be16(key);
  if (n == 0 || n > KV__REC_ENC_MAX || 2 + n >= len) return 0;
  *prefix_len = 2 + n;
  return 1;
}

int kv__rec_has_prefix(const void *key, size_t len, const void *prefix,
                       size_t prefix_len) {
  return len > prefix_len && memcmp(key, prefix, prefix_len) == 0;
}

size_t kv__rec_successor(unsigned char *p, size_t len) {
  while (len > 0 && p[len - 1] == 0xFF)
    len--;
  if (len > 0) p[len - 1]++;
  return len;
}
