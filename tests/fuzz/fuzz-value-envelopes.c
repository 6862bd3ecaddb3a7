/* libFuzzer target: the per-store value records.
 *
 *  - the record of disk:// and rocksdb:// (stores/common/record.h,
 *    kv__rec_parse): 0 or KV_ECORRUPT; what parses points inside the
 *    input, and writing the parsed fields back in the documented layout
 *    gives the input byte for byte (nothing is skipped or guessed), and so
 *    does the stores' own writer (kv__rec_write); fields taken from the
 *    input, encoded, parse back.
 *  - memcached's item data (kv__mc_entry_decode): 0 or KV_ECORRUPT; the
 *    value lies inside the input and ends where it ends; the expiry decides
 *    liveness as KV_EXPIRED says; a hashed-key header counts only for its
 *    own key; encoding the decoded fields decodes to the same.
 * Each input is copied to a buffer of its exact size (ASan sees over-reads).
 * A store left out of the build is skipped (weak references; kv_schemes()
 * pulls the stores' objects out of the static library). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "stores/common/record.h"
#include "stores/memcached_int.h"

#pragma weak kv__mc_entry_decode

#define REC_HDR 10
#define F_CHASHED 1
#define F_KHASHED 2
#define MC_HDR 16

static void be16(unsigned char *p, size_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

static void be64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
}

/* The record layout of disk.c / rocksdb.c. */
static unsigned char *rec_encode(unsigned flags, int64_t exp, const char *coll,
                                 size_t clen, const char *key, size_t klen,
                                 const char *val, size_t vlen, size_t *len) {
  size_t n = REC_HDR + vlen, off = REC_HDR;
  unsigned char *p;
  if (flags & F_CHASHED) n += 2 + clen;
  if (flags & F_KHASHED) n += 2 + klen;
  if ((p = malloc(n ? n : 1)) == NULL) abort();
  p[0] = 1;
  p[1] = (unsigned char)flags;
  be64(p + 2, (uint64_t)exp);
  if (flags & F_CHASHED) be16(p + off, clen), off += 2;
  if (flags & F_KHASHED) be16(p + off, klen), off += 2;
  if (flags & F_CHASHED) memcpy(p + off, coll, clen), off += clen;
  if (flags & F_KHASHED) memcpy(p + off, key, klen), off += klen;
  if (vlen) memcpy(p + off, val, vlen);
  *len = n;
  return p;
}

static int inside(const char *base, size_t size, const char *p, size_t n) {
  return p >= base && p <= base + size && n <= (size_t)(base + size - p);
}

#define CHECK_REC(r, in, size)                                          \
  do {                                                                  \
    if (((r).flags & ~3u) != 0) abort();                                \
    if (!!((r).flags & F_CHASHED) != ((r).coll != NULL)) abort();       \
    if (!!((r).flags & F_KHASHED) != ((r).key != NULL)) abort();        \
    if ((r).coll && !inside(in, size, (r).coll, (r).coll_len)) abort(); \
    if ((r).key && !inside(in, size, (r).key, (r).key_len)) abort();    \
    if (!inside(in, size, (r).value, (r).value_len)) abort();           \
    if ((r).value + (r).value_len != (in) + (size)) abort();            \
  } while (0)

static void records(const char *in, size_t size) {
  kv__rec_t d;
  int rc = kv__rec_parse(in, size, &d);
  if (rc != 0 && rc != KV_ECORRUPT) abort();
  if (rc == 0) {
    size_t n;
    unsigned char *again;
    CHECK_REC(d, in, size);
    again = rec_encode(d.flags, d.expires_at, d.coll, d.coll_len, d.key,
                       d.key_len, d.value, d.value_len, &n);
    if (n != size || memcmp(again, in, size) != 0) abort();
    {
      kv__reckey_t k; /* the stores' writer gives the same bytes */
      k.flags = d.flags;
      if (kv__rec_size(&k, d.coll_len, d.key_len, d.value_len) != size) abort();
      memset(again, 0x5A, size);
      kv__rec_write(again, &k, d.coll, d.coll_len, d.key, d.key_len, d.value,
                    d.value_len, d.expires_at);
      if (memcmp(again, in, size) != 0) abort();
    }
    free(again);
  }
  /* Fields cut from the input, encoded, parse back. */
  if (size >= 4) {
    unsigned flags = (unsigned char)in[0] & 3;
    size_t clen = (unsigned char)in[1] % (size - 2);
    size_t klen = (unsigned char)in[2] % (size - 2 - clen + 1);
    const char *coll = in + 3, *key = coll + clen, *val = key + klen;
    size_t vlen = size - 3 - clen - klen, n;
    int64_t exp = (int64_t)(((uint64_t)(unsigned char)in[3] << 56) | size);
    unsigned char *p;
    if (clen + klen > size - 3) return;
    p = rec_encode(flags, exp, coll, clen, key, klen, val, vlen, &n);
    if (kv__rec_parse(p, n, &d) != 0 || d.flags != flags ||
        d.expires_at != exp || d.value_len != vlen ||
        (vlen && memcmp(d.value, val, vlen) != 0))
      abort();
    if ((flags & F_CHASHED) &&
        (d.coll_len != clen || (clen && memcmp(d.coll, coll, clen))))
      abort();
    if ((flags & F_KHASHED) &&
        (d.key_len != klen || (klen && memcmp(d.key, key, klen))))
      abort();
    free(p);
  }
}

static void mc_check(const char *in, size_t size, const char *ukey, size_t ukl,
                     int64_t now) {
  kv__mc_entry_t e;
  int rc;
  memset(&e, 0xAA, sizeof e);
  rc = kv__mc_entry_decode(in, size, ukey, ukl, now, &e);
  if (rc == KV_ECORRUPT) {
    if (e.live != 0) abort();
    return;
  }
  if (rc != 0) abort();
  if (!e.live) return; /* expired, or another key's: nothing to hand out */
  if (!inside(in, size, e.value, e.vlen) || e.value + e.vlen != in + size)
    abort();
  if (KV_EXPIRED(e.expires_at, now)) abort();
  /* The layout: magic, version, flags, reserved, expiry, key length. */
  if (size < MC_HDR || in[0] != 0x6b || in[1] != 1) abort();
  if ((in[2] & 1) && (size_t)(e.value - in) != MC_HDR + ukl) abort();
  /* Encode what was decoded (the writer's form) and decode it again. */
  {
    int hashed = in[2] & 1;
    size_t n = MC_HDR + (hashed ? ukl : 0) + e.vlen;
    unsigned char *p = malloc(n);
    kv__mc_entry_t e2;
    if (p == NULL) abort();
    memset(p, 0, MC_HDR);
    p[0] = 0x6b;
    p[1] = 1;
    p[2] = (unsigned char)hashed;
    be64(p + 4, (uint64_t)e.expires_at);
    if (hashed) {
      p[12] = (unsigned char)(ukl >> 24);
      p[13] = (unsigned char)(ukl >> 16);
      p[14] = (unsigned char)(ukl >> 8);
      p[15] = (unsigned char)ukl;
      memcpy(p + MC_HDR, ukey, ukl);
    }
    if (e.vlen) memcpy(p + n - e.vlen, e.value, e.vlen);
    if (kv__mc_entry_decode((const char *)p, n, ukey, ukl, now, &e2) != 0 ||
        !e2.live || e2.expires_at != e.expires_at || e2.vlen != e.vlen ||
        (e.vlen && memcmp(e2.value, e.value, e.vlen) != 0))
      abort();
    /* Another key never reads a hashed-key entry. */
    if (hashed &&
        (kv__mc_entry_decode((const char *)p, n, "x", 1, now, &e2) != 0 ||
         (e2.live && !(ukl == 1 && ukey[0] == 'x'))))
      abort();
    free(p);
  }
}

static void memcached(const char *in, size_t size) {
  size_t klen;
  int64_t now = 1700000000000;
  if (kv__mc_entry_decode == NULL) return;
  mc_check(in, size, "k", 1, now);
  /* With the key the header names, when it names one inside the input. */
  if (size >= MC_HDR) {
    klen = (size_t)(unsigned char)in[12] << 24 |
           (size_t)(unsigned char)in[13] << 16 |
           (size_t)(unsigned char)in[14] << 8 | (unsigned char)in[15];
    if (klen <= size - MC_HDR) mc_check(in, size, in + MC_HDR, klen, now);
  }
  mc_check(in, size, "k", 1, 0);
  mc_check(in, size, "k", 1, INT64_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  char *in = malloc(size ? size : 1);
  if (!ready) {
    (void)kv_schemes();
    ready = 1;
  }
  if (in == NULL) abort();
  if (size) memcpy(in, data, size);
  records(in, size);
  memcached(in, size);
  free(in);
  return 0;
}
