/* memory:// — in-process hash tables, one per collection.
 *
 * Options: max_entries=N caps each collection separately (least recently used
 * entries are evicted first; reads refresh recency), so a busy collection
 * cannot evict another's entries. Expired entries are never returned or
 * listed; reads drop them at once and a periodic sweep (a timer that does not
 * keep the loop alive) purges the rest a slice at a time.
 *
 * Every operation completes inside its submit call; the core delivers the
 * callback on the next loop turn. All segments, including atomic: the store
 * is single-threaded, so each operation is atomic by construction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SWEEP_INTERVAL_MS 1000
#define SWEEP_BUCKETS 4096 /* buckets examined per collection per tick */
#define MIN_BUCKETS 16

typedef struct mem_entry_s mem_entry_t;
struct mem_entry_s {
  mem_entry_t *hnext;    /* hash chain */
  mem_entry_t *lru_prev; /* towards the most recently used */
  mem_entry_t *lru_next; /* towards the least recently used */
  int64_t expires_at_ms; /* 0 = never */
  size_t vlen;
  uint32_t hash;
  uint32_t klen;
  char data[]; /* key, NUL, value, NUL */
};

typedef struct {
  char *name;
  size_t name_len;
  mem_entry_t **buckets;
  size_t mask; /* buckets - 1; a power of two minus one */
  size_t count;
  mem_entry_t *lru_head; /* most recently used */
  mem_entry_t *lru_tail; /* least recently used: evicted first */
  size_t sweep_pos;
} mem_coll_t;

typedef struct {
  kv_store_t base;
  mem_coll_t **colls; /* sorted by name (bytes), for exact paging */
  size_t ncolls;
  size_t capcolls;
  mem_coll_t *last; /* the collection used last: most calls hit it */
  size_t max_entries;
  uv_timer_t sweep;
} mem_store_t;

#define ENTRY_VALUE(e) ((e)->data + (e)->klen + 1)

static uint32_t hash_bytes(const char *p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ n, v;
  while (n >= 8) {
    memcpy(&v, p, 8);
    h = (h ^ v) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  v = 0;
  memcpy(&v, p, n);
  h = (h ^ v) * 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 29;
  return (uint32_t)h;
}

/* ---- Collections ------------------------------------------------------- */

static int name_cmp(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c) return c;
  return al < bl ? -1 : al > bl;
}

/* Index of the first collection >= name; *found says whether it is equal. */
static size_t coll_search(mem_store_t *st, const char *name, size_t len,
                          int *found) {
  size_t lo = 0, hi = st->ncolls;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = name_cmp(st->colls[mid]->name, st->colls[mid]->name_len, name, len);
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = lo < st->ncolls && st->colls[lo]->name_len == len &&
           memcmp(st->colls[lo]->name, name, len) == 0;
  return lo;
}

static mem_coll_t *coll_find(mem_store_t *st, const char *name, size_t len) {
  int found;
  size_t i;
  if (st->last && st->last->name_len == len &&
      memcmp(st->last->name, name, len) == 0)
    return st->last;
  i = coll_search(st, name, len, &found);
  if (!found) return NULL;
  st->last = st->colls[i];
  return st->last;
}

static mem_coll_t *coll_create(mem_store_t *st, const char *name, size_t len) {
  int found;
  size_t i = coll_search(st, name, len, &found);
  mem_coll_t *c;
  if (found) return st->colls[i];
  if (st->ncolls == st->capcolls) {
    size_t cap = st->capcolls ? st->capcolls * 2 : 8;
    mem_coll_t **p = kv_realloc(st->colls, cap * sizeof *p);
    if (p == NULL) return NULL;
    st->colls = p;
    st->capcolls = cap;
  }
  c = kv_calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->name = kv_strndup(name, len);
  c->buckets = kv_calloc(MIN_BUCKETS, sizeof *c->buckets);
  if (c->name == NULL || c->buckets == NULL) {
    kv_free(c->name);
    kv_free(c->buckets);
    kv_free(c);
    return NULL;
  }
  c->name_len = len;
  c->mask = MIN_BUCKETS - 1;
  memmove(&st->colls[i + 1], &st->colls[i],
          (st->ncolls - i) * sizeof *st->colls);
  st->colls[i] = c;
  st->ncolls++;
  st->last = c;
  return c;
}

static void coll_free(mem_coll_t *c) {
  for (size_t b = 0; b <= c->mask; b++) {
    mem_entry_t *e = c->buckets[b];
    while (e) {
      mem_entry_t *next = e->hnext;
      kv_free(e);
      e = next;
    }
  }
  kv_free(c->buckets);
  kv_free(c->name);
  kv_free(c);
}

static void coll_remove(mem_store_t *st, mem_coll_t *c) {
  int found;
  size_t i = coll_search(st, c->name, c->name_len, &found);
  if (!found) return;
  memmove(&st->colls[i], &st->colls[i + 1],
          (st->ncolls - i - 1) * sizeof *st->colls);
  st->ncolls--;
  if (st->last == c) st->last = NULL;
  coll_free(c);
}

/* ---- Entries --------------------------------------------------------------
 */

static void lru_unlink(mem_coll_t *c, mem_entry_t *e) {
  if (e->lru_prev)
    e->lru_prev->lru_next = e->lru_next;
  else
    c->lru_head = e->lru_next;
  if (e->lru_next)
    e->lru_next->lru_prev = e->lru_prev;
  else
    c->lru_tail = e->lru_prev;
}

static void lru_push_front(mem_coll_t *c, mem_entry_t *e) {
  e->lru_prev = NULL;
  e->lru_next = c->lru_head;
  if (c->lru_head)
    c->lru_head->lru_prev = e;
  else
    c->lru_tail = e;
  c->lru_head = e;
}

/* The slot that points at the entry for key (or at NULL at a chain's end). */
static mem_entry_t **entry_slot(mem_coll_t *c, const char *key, size_t klen,
                                uint32_t h) {
  mem_entry_t **pp = &c->buckets[h & c->mask];
  while (*pp) {
    mem_entry_t *e = *pp;
    if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0)
      break;
    pp = &e->hnext;
  }
  return pp;
}

static void entry_remove(mem_coll_t *c, mem_entry_t **slot) {
  mem_entry_t *e = *slot;
  *slot = e->hnext;
  lru_unlink(c, e);
  c->count--;
  kv_free(e);
}

/* The live entry for key, or NULL. An expired entry is dropped on the way. */
static mem_entry_t *entry_get(mem_store_t *st, mem_coll_t *c, const char *key,
                              size_t klen, int64_t now) {
  mem_entry_t **slot;
  if (c == NULL) return NULL;
  slot = entry_slot(c, key, klen, hash_bytes(key, klen));
  if (*slot == NULL) return NULL;
  if (KV_EXPIRED((*slot)->expires_at_ms, now)) {
    entry_remove(c, slot);
    return NULL;
  }
  if (st->max_entries && c->lru_head != *slot) {
    lru_unlink(c, *slot);
    lru_push_front(c, *slot);
  }
  return *slot;
}

static void table_grow(mem_coll_t *c) {
  size_t nb = (c->mask + 1) * 2;
  mem_entry_t **nbk = kv_calloc(nb, sizeof *nbk);
  if (nbk == NULL) return; /* longer chains, still correct */
  for (size_t b = 0; b <= c->mask; b++) {
    mem_entry_t *e = c->buckets[b];
    while (e) {
      mem_entry_t *next = e->hnext;
      mem_entry_t **dst = &nbk[e->hash & (nb - 1)];
      e->hnext = *dst;
      *dst = e;
      e = next;
    }
  }
  kv_free(c->buckets);
  c->buckets = nbk;
  c->mask = nb - 1;
}

/* Insert or replace key's value. Returns 0 or KV_ENOMEM/KV_ETOOBIG. */
static int entry_put(mem_store_t *st, mem_coll_t *c, const char *key,
                     size_t klen, const char *val, size_t vlen,
                     int64_t expires_at_ms) {
  uint32_t h = hash_bytes(key, klen);
  mem_entry_t **slot = entry_slot(c, key, klen, h);
  mem_entry_t *old = *slot, *e;
  if (old && old->vlen == vlen) { /* same size: overwrite in place */
    if (vlen) memcpy(ENTRY_VALUE(old), val, vlen);
    old->expires_at_ms = expires_at_ms;
    if (c->lru_head != old) {
      lru_unlink(c, old);
      lru_push_front(c, old);
    }
    return 0;
  }
  if (vlen > SIZE_MAX - sizeof *e - klen - 2) return KV_ETOOBIG;
  e = kv_malloc(sizeof *e + klen + 1 + vlen + 1);
  if (e == NULL) return KV_ENOMEM;
  e->hash = h;
  e->klen = (uint32_t)klen;
  e->vlen = vlen;
  e->expires_at_ms = expires_at_ms;
  memcpy(e->data, key, klen);
  e->data[klen] = '\0';
  if (vlen) memcpy(ENTRY_VALUE(e), val, vlen);
  ENTRY_VALUE(e)[vlen] = '\0';
  if (old) {
    e->hnext = old->hnext;
    lru_unlink(c, old);
    kv_free(old);
    *slot = e;
  } else {
    e->hnext = NULL;
    *slot = e;
    c->count++;
  }
  lru_push_front(c, e);
  if (st->max_entries) {
    while (c->count > st->max_entries) {
      mem_entry_t *victim = c->lru_tail;
      entry_remove(c, entry_slot(c, victim->data, victim->klen, victim->hash));
    }
  }
  if (c->count > c->mask + 1) table_grow(c);
  return 0;
}

static int entry_delete(mem_coll_t *c, const char *key, size_t klen,
                        int64_t now) {
  mem_entry_t **slot;
  int live;
  if (c == NULL) return 0;
  slot = entry_slot(c, key, klen, hash_bytes(key, klen));
  if (*slot == NULL) return 0;
  live = !KV_EXPIRED((*slot)->expires_at_ms, now);
  entry_remove(c, slot);
  return live;
}

/* ---- Operations ------------------------------------------------------------
 */

#define STORE(s) ((mem_store_t *)(s))
#define COLL(st, req) \
  coll_find((st), (req)->in.collection, (req)->in.collection_len)

static int finish(kv_req_t *req, int err) {
  if (err == KV_ENOMEM)
    kv_req_set_error(req, err, "out of memory");
  else if (err == KV_ETOOBIG)
    kv_req_set_error(req, err, "value of %zu bytes is too big",
                     req->in.value.len);
  kv_req_complete(req, err);
  return 0;
}

static int done(kv_req_t *req) {
  kv_req_complete(req, 0);
  return 0;
}

static int mem_get(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_entry_t *e = entry_get(st, COLL(st, req), req->in.key, req->in.key_len,
                             req->in.now_ms);
  if (e) {
    if (kv_req_set_value(req, ENTRY_VALUE(e), e->vlen) != 0)
      return finish(req, KV_ENOMEM);
    req->ttl = kv_remaining_ttl(e->expires_at_ms, req->in.now_ms);
  }
  return done(req);
}

static mem_coll_t *coll_for_write(mem_store_t *st, kv_req_t *req) {
  return coll_create(st, req->in.collection, req->in.collection_len);
}

static int mem_put(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_coll_t *c = coll_for_write(st, req);
  if (c == NULL) return finish(req, KV_ENOMEM);
  return finish(req, entry_put(st, c, req->in.key, req->in.key_len,
                               req->in.value.base, req->in.value.len,
                               req->in.expires_at_ms));
}

static int mem_delete(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  req->found =
      entry_delete(COLL(st, req), req->in.key, req->in.key_len, req->in.now_ms);
  return done(req);
}

static int mem_get_many(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_coll_t *c = COLL(st, req);
  if (kv_req_alloc_results(req) != 0) return finish(req, KV_ENOMEM);
  for (size_t i = 0; i < req->in.n; i++) {
    mem_entry_t *e = entry_get(st, c, req->in.keys[i].base, req->in.keys[i].len,
                               req->in.now_ms);
    if (e && kv_req_set_result(
                 req, i, ENTRY_VALUE(e), e->vlen,
                 kv_remaining_ttl(e->expires_at_ms, req->in.now_ms)) != 0)
      return finish(req, KV_ENOMEM);
  }
  return done(req);
}

static int mem_put_many(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_coll_t *c;
  if (req->in.n == 0) return done(req);
  if ((c = coll_for_write(st, req)) == NULL) return finish(req, KV_ENOMEM);
  for (size_t i = 0; i < req->in.n; i++) {
    int err = entry_put(st, c, req->in.keys[i].base, req->in.keys[i].len,
                        req->in.values[i].base, req->in.values[i].len,
                        req->in.expires_at_ms);
    if (err) return finish(req, err);
  }
  return done(req);
}

static int mem_delete_many(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_coll_t *c = COLL(st, req);
  for (size_t i = 0; i < req->in.n; i++)
    req->count += (size_t)entry_delete(c, req->in.keys[i].base,
                                       req->in.keys[i].len, req->in.now_ms);
  return done(req);
}

/* keys(): buckets are visited in reverse-binary order (as Redis's SCAN
 * does), so a table that grows between pages does not revisit the buckets
 * already finished. Within a bucket, entries are listed in (hash, key)
 * order, and a page that ends inside a bucket resumes after the last
 * (hash, key) it listed: neither a growth (which splits and reorders chains)
 * nor a removal can make it skip an entry. After a growth, entries of the
 * bucket being listed may be listed again from its split sibling.
 * Cursor: "<bucket>.<hash>.<hex of the last key>", or "<bucket>" at a bucket
 * boundary. */
static size_t rev_bits(size_t v) {
  size_t r = 0;
  for (size_t i = 0; i < sizeof v * 8; i++) {
    r = (r << 1) | (v & 1);
    v >>= 1;
  }
  return r;
}

static int after(const mem_entry_t *e, uint32_t h, const char *k, size_t kl) {
  if (e->hash != h) return e->hash > h;
  return name_cmp(e->data, e->klen, k, kl) > 0;
}

static int keys_cursor(kv_req_t *req, unsigned long long v,
                       const mem_entry_t *last) {
  char *cur = kv_malloc(48 + 2 * (size_t)last->klen);
  size_t o;
  if (cur == NULL) return KV_ENOMEM;
  o = (size_t)snprintf(cur, 48, "%llx.%x.", v, (unsigned)last->hash);
  kv__hex_encode(last->data, last->klen, cur + o);
  req->cursor = cur;
  return 0;
}

static int keys_cursor_parse(const char *s, unsigned long long *v, uint32_t *h,
                             char *key, size_t *klen) {
  char *end;
  long long n;
  *klen = SIZE_MAX; /* no position inside the bucket */
  *v = strtoull(s, &end, 16);
  if (end == s) return KV_EINVAL;
  if (*end == '\0') return 0;
  if (*end != '.') return KV_EINVAL;
  s = end + 1;
  *h = (uint32_t)strtoul(s, &end, 16);
  if (end == s || *end != '.') return KV_EINVAL;
  s = end + 1;
  if (strlen(s) / 2 > KV_NAME_MAX ||
      (n = kv__hex_decode(s, strlen(s), (unsigned char *)key)) < 0)
    return KV_EINVAL;
  *klen = (size_t)n;
  return 0;
}

static int mem_keys(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_coll_t *c = COLL(st, req);
  unsigned long long v = 0;
  uint32_t lh = 0;
  size_t lkl = SIZE_MAX; /* SIZE_MAX: from the start of the bucket */
  char lkey[KV_NAME_MAX];
  const char *lk = lkey;
  const mem_entry_t *last = NULL;
  if (req->in.cursor &&
      keys_cursor_parse(req->in.cursor, &v, &lh, lkey, &lkl) != 0)
    return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%s'",
                            req->in.cursor);
  if (c == NULL) return done(req);
  for (;;) {
    size_t m = c->mask;
    for (;;) { /* the next live entry of the bucket in (hash, key) order */
      mem_entry_t *best = NULL;
      for (mem_entry_t *e = c->buckets[v & m]; e; e = e->hnext) {
        if (KV_EXPIRED(e->expires_at_ms, req->in.now_ms)) continue;
        if (lkl != SIZE_MAX && !after(e, lh, lk, lkl)) continue;
        if (best == NULL || !after(e, best->hash, best->data, best->klen))
          best = e;
      }
      if (best == NULL) break;
      if (req->nnames == req->in.limit) {
        if (lkl == SIZE_MAX) { /* the page ends at a bucket boundary */
          char cur[32];
          snprintf(cur, sizeof cur, "%llx", v);
          return kv_req_set_cursor(req, cur) ? finish(req, KV_ENOMEM)
                                             : done(req);
        }
        return finish(req, keys_cursor(req, v, last));
      }
      if (kv_req_add_name(req, best->data, best->klen) != 0)
        return finish(req, KV_ENOMEM);
      last = best;
      lh = best->hash;
      lk = best->data;
      lkl = best->klen;
    }
    lkl = SIZE_MAX;
    lk = lkey;
    v |= ~(unsigned long long)m;
    v = rev_bits((size_t)v);
    v++;
    v = rev_bits((size_t)v);
    if (v == 0) return done(req);
  }
}

static int coll_has_live(mem_coll_t *c, int64_t now) {
  for (mem_entry_t *e = c->lru_head; e; e = e->lru_next)
    if (!KV_EXPIRED(e->expires_at_ms, now)) return 1;
  return 0;
}

/* collections(): the array is sorted, so the cursor is the last name listed
 * (prefixed with 'c' so that it is never empty). */
static int mem_collections(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  size_t i = 0;
  if (req->in.cursor) {
    int found;
    if (req->in.cursor[0] != 'c')
      return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%s'",
                              req->in.cursor);
    i = coll_search(st, req->in.cursor + 1, strlen(req->in.cursor + 1), &found);
    i += found;
  }
  for (; i < st->ncolls; i++) {
    mem_coll_t *c = st->colls[i];
    if (!coll_has_live(c, req->in.now_ms)) continue;
    if (req->nnames == req->in.limit) {
      /* The cursor is the last listed name: resume after it. */
      const kv_buf_t *last = &req->names[req->nnames - 1];
      char *cur = kv_malloc(last->len + 2);
      if (cur == NULL) return finish(req, KV_ENOMEM);
      cur[0] = 'c';
      memcpy(cur + 1, last->base, last->len + 1);
      req->cursor = cur;
      return done(req);
    }
    if (kv_req_add_name(req, c->name, c->name_len) != 0)
      return finish(req, KV_ENOMEM);
  }
  return done(req);
}

static int mem_destroy(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  for (size_t i = 0; i < st->ncolls; i++)
    coll_free(st->colls[i]);
  st->ncolls = 0;
  st->last = NULL;
  return done(req);
}

static int mem_destroy_collection(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_coll_t *c = COLL(st, req);
  if (c) coll_remove(st, c);
  return done(req);
}

/* Drop expired entries from up to `budget` buckets of c, starting at its
 * sweep position (budget SIZE_MAX: all). Returns how many were dropped. */
static size_t coll_purge(mem_coll_t *c, int64_t now, size_t budget) {
  size_t removed = 0, nb = c->mask + 1;
  if (budget > nb) budget = nb;
  for (size_t k = 0; k < budget; k++) {
    size_t b = (c->sweep_pos + k) & c->mask;
    mem_entry_t **pp = &c->buckets[b];
    while (*pp) {
      if (KV_EXPIRED((*pp)->expires_at_ms, now)) {
        entry_remove(c, pp);
        removed++;
      } else {
        pp = &(*pp)->hnext;
      }
    }
  }
  c->sweep_pos = (c->sweep_pos + budget) & c->mask;
  return removed;
}

/* Collections left empty go away, so that they are not listed. */
static size_t purge(mem_store_t *st, int64_t now, size_t budget) {
  size_t removed = 0;
  for (size_t i = 0; i < st->ncolls;) {
    mem_coll_t *c = st->colls[i];
    removed += coll_purge(c, now, budget);
    if (c->count == 0)
      coll_remove(st, c);
    else
      i++;
  }
  return removed;
}

static int mem_cull(kv_store_t *s, kv_req_t *req) {
  req->count = purge(STORE(s), req->in.now_ms, SIZE_MAX);
  return done(req);
}

static void on_sweep(uv_timer_t *t) {
  purge(t->data, kv_now_ms(), SWEEP_BUCKETS);
}

static int mem_put_if_absent(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_coll_t *c = COLL(st, req);
  if (entry_get(st, c, req->in.key, req->in.key_len, req->in.now_ms))
    return done(req); /* found = 0: not stored */
  req->found = 1;
  return mem_put(s, req);
}

static int mem_cas(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_entry_t *e = entry_get(st, COLL(st, req), req->in.key, req->in.key_len,
                             req->in.now_ms);
  int match =
      req->in.expected_absent
          ? e == NULL
          : e != NULL && e->vlen == req->in.expected.len &&
                memcmp(ENTRY_VALUE(e), req->in.expected.base, e->vlen) == 0;
  if (!match) {
    kv_req_set_error(req, KV_ECONFLICT,
                     req->in.expected_absent
                         ? "key '%s' exists"
                         : "key '%s' does not hold the expected value",
                     req->in.key);
    return finish(req, KV_ECONFLICT);
  }
  req->found = 1;
  return mem_put(s, req);
}

static int mem_incr(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_coll_t *c = COLL(st, req);
  mem_entry_t *e =
      entry_get(st, c, req->in.key, req->in.key_len, req->in.now_ms);
  int64_t cur = 0, expires = req->in.expires_at_ms;
  char buf[24];
  size_t n;
  if (e) {
    if (kv_parse_int64(ENTRY_VALUE(e), e->vlen, &cur) != 0) {
      kv_req_set_error(req, KV_EINVAL,
                       "value of key '%s' is not a decimal integer",
                       req->in.key);
      return finish(req, KV_EINVAL);
    }
    expires = e->expires_at_ms; /* an existing entry keeps its TTL */
  }
  if ((req->in.delta > 0 && cur > INT64_MAX - req->in.delta) ||
      (req->in.delta < 0 && cur < INT64_MIN - req->in.delta)) {
    kv_req_set_error(req, KV_EINVAL, "incr of key '%s' overflows", req->in.key);
    return finish(req, KV_EINVAL);
  }
  req->number = cur + req->in.delta;
  n = kv_format_int64(req->number, buf);
  if (c == NULL && (c = coll_for_write(st, req)) == NULL)
    return finish(req, KV_ENOMEM);
  return finish(
      req, entry_put(st, c, req->in.key, req->in.key_len, buf, n, expires));
}

static int mem_take(kv_store_t *s, kv_req_t *req) {
  mem_store_t *st = STORE(s);
  mem_coll_t *c = COLL(st, req);
  mem_entry_t *e =
      entry_get(st, c, req->in.key, req->in.key_len, req->in.now_ms);
  if (e == NULL) return done(req);
  if (kv_req_set_value(req, ENTRY_VALUE(e), e->vlen) != 0)
    return finish(req, KV_ENOMEM);
  entry_delete(c, req->in.key, req->in.key_len, req->in.now_ms);
  return done(req);
}

/* ---- Lifetime
 * ----------------------------------------------------------------- */

static int mem_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                    size_t errbuf_len) {
  mem_store_t *st = STORE(s);
  int64_t max;
  int err = kv_url_param_int(url, "max_entries", 0, INT64_MAX, 0, &max, errbuf,
                             errbuf_len);
  if (err) return err;
  if (url->target[0] != '\0')
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "memory:// takes no path (got '%s')", url->target);
  st->max_entries = (size_t)max;
  uv_timer_init(s->loop, &st->sweep);
  st->sweep.data = st;
  uv_timer_start(&st->sweep, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
  uv_unref((uv_handle_t *)&st->sweep); /* never keeps the loop alive */
  return 0;
}

static void on_sweep_closed(uv_handle_t *h) {
  mem_store_t *st = h->data;
  for (size_t i = 0; i < st->ncolls; i++)
    coll_free(st->colls[i]);
  kv_free(st->colls);
  st->colls = NULL;
  st->ncolls = 0;
  kv_store_closed(&st->base);
}

static void mem_close(kv_store_t *s) {
  mem_store_t *st = STORE(s);
  uv_close((uv_handle_t *)&st->sweep, on_sweep_closed);
}

static const char *const mem_options[] = {"max_entries", NULL};

const kv_store_methods_t kv__memory_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "memory",
    .store_size = sizeof(mem_store_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC,
    .options = mem_options,
    .open = mem_open,
    .close = mem_close,
    .get = mem_get,
    .ttl = mem_get,
    .put = mem_put,
    .del = mem_delete,
    .get_many = mem_get_many,
    .ttl_many = mem_get_many,
    .put_many = mem_put_many,
    .delete_many = mem_delete_many,
    .keys = mem_keys,
    .collections = mem_collections,
    .destroy = mem_destroy,
    .destroy_collection = mem_destroy_collection,
    .cull = mem_cull,
    .put_if_absent = mem_put_if_absent,
    .cas = mem_cas,
    .incr = mem_incr,
    .take = mem_take,
};
