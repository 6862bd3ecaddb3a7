/* cache (passthrough-cache): a read-through cache tier in front of the
 * primary (inner) store.
 *
 * The cache tier holds an envelope: a tag ('v' value, 'm' cached miss), the
 * primary entry's absolute expiry (8 bytes, big-endian Unix ms, 0 = none)
 * and the value. An empty value is "v" + expiry: a value, not a miss.
 *
 * Reads (get, ttl): a hit answers from the cache; a miss reads the primary
 * (one read per key at a time: concurrent misses wait for it) and fills
 * the cache with TTL min(max_ttl, remaining). A read session that overlaps
 * a write on its key ("dirty") answers its callers but does not fill the
 * cache. Writes (every op that can change an entry) go to the primary,
 * then delete the key(s) from the cache, then complete. Bulk reads fill
 * the cache only when no write started or was in flight meanwhile. */
#include <string.h>

#include "wrappers/wrappers.h"

#define ENV_HDR 9

typedef struct session_s session_t;
typedef struct kstate_s kstate_t;

struct session_s {
  kv_wrap_req_t *waiters; /* coalesced requests, linked by wr->link */
  int dirty;
  uint64_t epoch;
};

struct kstate_s {
  kstate_t *hnext;
  uint32_t hash;
  size_t len; /* of name: collection, NUL, key */
  session_t *read;
  unsigned writes;
  unsigned readers; /* read sessions' leaders holding it */
  char name[];
};

typedef struct {
  kv_wrap_t w;
  kv_store_t *cache;
  double max_ttl, missing_ttl;
  kstate_t **tab;
  size_t mask, count;
  uint64_t epoch;  /* bumped by every write and destroy (bulk reads) */
  uint64_t depoch; /* bumped by destroys (single-key reads) */
  unsigned writes; /* writes in flight, any key */
  uint64_t hits, misses, coalesced;
} cache_t;

/* Per-request state (extra bytes of the wr). */
typedef struct {
  kstate_t *ks;     /* single-key ops: the key's state */
  session_t *sess;  /* leader of a read session */
  kstate_t **kss;   /* bulk writes: one per key */
  uint64_t epoch;   /* bulk reads: epoch at start */
  int saved_status; /* writes: the primary's status */
  size_t *miss;     /* bulk reads: indexes of the slots that missed */
  size_t nmiss;
  kv_buf_t *mkeys;
} cst_t;

#define CST(wr) ((cst_t *)kv_wrap_req_extra(wr))

/* ---- Key states ---------------------------------------------------------- */

static uint32_t hash_name(const char *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)p[i]) * 16777619u;
  return h;
}

static kstate_t *ks_get(cache_t *c, const char *coll, const char *key) {
  size_t cl = strlen(coll), kl = strlen(key), n = cl + 1 + kl;
  char stackbuf[256];
  char *name = n <= sizeof stackbuf ? stackbuf : kv_malloc(n);
  uint32_t h;
  kstate_t *ks;
  if (name == NULL) return NULL;
  memcpy(name, coll, cl + 1);
  memcpy(name + cl + 1, key, kl);
  h = hash_name(name, n);
  if (c->tab == NULL) {
    c->tab = kv_calloc(64, sizeof *c->tab);
    if (c->tab == NULL) goto fail;
    c->mask = 63;
  }
  for (ks = c->tab[h & c->mask]; ks; ks = ks->hnext)
    if (ks->hash == h && ks->len == n && memcmp(ks->name, name, n) == 0) break;
  if (ks == NULL) {
    ks = kv_malloc(sizeof *ks + n);
    if (ks == NULL) goto fail;
    ks->hash = h;
    ks->len = n;
    ks->read = NULL;
    ks->writes = 0;
    ks->readers = 0;
    memcpy(ks->name, name, n);
    ks->hnext = c->tab[h & c->mask];
    c->tab[h & c->mask] = ks;
    c->count++;
  }
  if (name != stackbuf) kv_free(name);
  return ks;
fail:
  if (name != stackbuf) kv_free(name);
  return NULL;
}

/* Drop a key state nobody uses any more. */
static void ks_release(cache_t *c, kstate_t *ks) {
  kstate_t **pp;
  if (ks == NULL || ks->read != NULL || ks->writes != 0 || ks->readers != 0)
    return;
  for (pp = &c->tab[ks->hash & c->mask]; *pp; pp = &(*pp)->hnext) {
    if (*pp == ks) {
      *pp = ks->hnext;
      c->count--;
      kv_free(ks);
      return;
    }
  }
}

static void write_begin(cache_t *c, kstate_t *ks) {
  c->epoch++;
  c->writes++;
  if (ks == NULL) return;
  ks->writes++;
  if (ks->read) {
    ks->read->dirty = 1;
    ks->read = NULL;
  }
}

static void write_end(cache_t *c, kstate_t *ks) {
  c->epoch++;
  c->writes--;
  if (ks == NULL) return;
  ks->writes--;
  if (ks->read) { /* began during the write: may have read the old value */
    ks->read->dirty = 1;
    ks->read = NULL;
  }
  ks_release(c, ks);
}

/* ---- Envelopes ------------------------------------------------------------
 */

static void put_be64(unsigned char *p, int64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (unsigned char)(v & 0xff);
    v >>= 8;
  }
}

static int64_t get_be64(const unsigned char *p) {
  int64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

/* Parse an envelope: 1 value, 2 cached miss, 0 invalid or expired. */
static int env_parse(const kv_buf_t *b, int64_t now, int64_t *expires) {
  const unsigned char *p = (const unsigned char *)b->base;
  if (b->len < ENV_HDR || (p[0] != 'v' && p[0] != 'm')) return 0;
  *expires = get_be64(p + 1);
  if (KV_EXPIRED(*expires, now)) return 0;
  return p[0] == 'v' ? 1 : 2;
}

/* The cache TTL for an entry of primary TTL `ttl` (0 = none). */
static double fill_ttl(cache_t *c, double ttl) {
  if (ttl > 0 && ttl < c->max_ttl) return ttl;
  return c->max_ttl;
}

static void internal_done(kv_wrap_req_t *wr) {
  kv_wrap_req_free(wr);
}

/* Put an envelope into the cache tier (fire and forget). */
static void fill(cache_t *c, const char *coll, const char *key, int found,
                 const char *val, size_t len, double ttl, int64_t now) {
  kv_wrap_req_t *wr;
  unsigned char *env;
  double cttl;
  if (!found && c->missing_ttl <= 0) return;
  wr = kv_wrap_req_new(&c->w.base, NULL, 0);
  if (wr == NULL) return;
  env = kv_malloc(ENV_HDR + len + 1);
  if (env == NULL) {
    kv_wrap_req_free(wr);
    return;
  }
  env[0] = found ? 'v' : 'm';
  put_be64(env + 1, found && ttl > 0 ? now + (int64_t)(ttl * 1000.0 + 0.5) : 0);
  if (len) memcpy(env + ENV_HDR, val, len);
  cttl = found ? fill_ttl(c, ttl) : c->missing_ttl;
  wr->mem = env;
  wr->op = KV_OP_PUT;
  wr->in.collection = coll;
  wr->in.key = key;
  wr->in.value.base = (char *)env;
  wr->in.value.len = ENV_HDR + len;
  wr->in.ttl = cttl;
  /* The strings are copied by the submit. */
  if (kv_wrap_submit(wr, c->cache, internal_done) < 0) kv_wrap_req_free(wr);
}

/* ---- Single-key reads -----------------------------------------------------
 */

static void answer_waiters(session_t *s, kv_req_t *src) {
  kv_wrap_req_t *wr = s->waiters;
  while (wr) {
    kv_wrap_req_t *next = wr->link;
    kv_req_t *o = wr->outer;
    int st = src->status;
    if (st == 0) {
      o->found = src->found;
      o->ttl = src->ttl;
      if (src->found && kv_req_set_value(o, src->value.base, src->value.len))
        st = kv_req_set_error(o, KV_ENOMEM, "out of memory");
    } else {
      kv_req_set_error(o, st, "%s", kv_req_errmsg(src));
    }
    kv_wrap_complete(wr, st);
    kv_wrap_req_free(wr);
    wr = next;
  }
  s->waiters = NULL;
}

static void primary_read(kv_wrap_req_t *wr) {
  cache_t *c = (cache_t *)wr->w;
  cst_t *st = CST(wr);
  session_t *s = st->sess;
  kstate_t *ks = st->ks;
  kv_req_t *in = &wr->inner;
  if (ks->read == s) ks->read = NULL;
  if (s->epoch != c->depoch) s->dirty = 1; /* a destroy ran meanwhile */
  if (in->status == 0 && !s->dirty)
    fill(c, wr->in.collection, wr->in.key, in->found, in->value.base,
         in->value.len, in->found ? in->ttl : 0, in->in.now_ms);
  answer_waiters(s, in);
  kv_free(s);
  st->sess = NULL;
  ks->readers--;
  ks_release(c, ks);
  kv_wrap_finish(wr);
}

static void plain_done(kv_wrap_req_t *wr) {
  kv_wrap_finish(wr);
}

static void cache_read(kv_wrap_req_t *wr) {
  cache_t *c = (cache_t *)wr->w;
  cst_t *st = CST(wr);
  kv_req_t *in = &wr->inner, *o = wr->outer;
  int64_t expires = 0;
  int kind = in->status == 0 && in->found
                 ? env_parse(&in->value, in->in.now_ms, &expires)
                 : 0;
  kstate_t *ks;
  session_t *s;
  if (kind == 1) {
    size_t len = in->value.len - ENV_HDR;
    int64_t now = in->in.now_ms;
    char *buf = kv_req_take_value(in, NULL);
    memmove(buf, buf + ENV_HDR, len + 1); /* with the NUL */
    kv_req_give_value(o, buf, len);
    o->ttl = kv_remaining_ttl(expires, now);
    c->hits++;
    kv_wrap_complete(wr, 0);
    kv_wrap_req_free(wr);
    return;
  }
  if (kind == 2) {
    o->found = 0;
    c->hits++;
    kv_wrap_complete(wr, 0);
    kv_wrap_req_free(wr);
    return;
  }
  wr->op = KV_OP_TTL; /* the value and its remaining TTL */
  ks = ks_get(c, wr->in.collection, wr->in.key);
  if (ks == NULL || !ks->read || ks->read->dirty) c->misses++;
  if (ks == NULL) { /* no memory for coalescing: read, do not fill */
    if (kv_wrap_submit(wr, c->w.inner, plain_done) < 0) kv_wrap_finish(wr);
    return;
  }
  if (ks->read && !ks->read->dirty) {
    c->coalesced++;
    wr->link = ks->read->waiters;
    ks->read->waiters = wr;
    return;
  }
  s = kv_calloc(1, sizeof *s);
  if (s == NULL) {
    ks_release(c, ks);
    if (kv_wrap_submit(wr, c->w.inner, plain_done) < 0) kv_wrap_finish(wr);
    return;
  }
  s->dirty = ks->writes > 0;
  s->epoch = c->depoch;
  ks->read = s;
  ks->readers++;
  st->ks = ks;
  st->sess = s;
  if (kv_wrap_submit(wr, c->w.inner, primary_read) < 0) {
    /* Nobody joined yet (the submit is synchronous). */
    ks->read = NULL;
    ks->readers--;
    kv_free(s);
    ks_release(c, ks);
    kv_wrap_finish(wr);
  }
}

static int cache_get(kv_store_t *s, kv_req_t *req) {
  cache_t *c = (cache_t *)s;
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, sizeof(cst_t));
  int err;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  wr->op = KV_OP_GET;
  err = kv_wrap_submit(wr, c->cache, cache_read);
  if (err < 0) { /* the cache refused: read the primary */
    wr->op = KV_OP_TTL;
    err = kv_wrap_submit(wr, c->w.inner, plain_done);
    if (err < 0) return kv_wrap_refuse(wr, err);
  }
  return 0;
}

/* ---- Bulk reads ------------------------------------------------------------
 */

static void many_done(kv_wrap_req_t *wr, int status) {
  cst_t *st = CST(wr);
  kv_free(st->miss);
  kv_free(st->mkeys);
  st->miss = NULL;
  st->mkeys = NULL;
  if (status < 0 && wr->outer)
    kv_req_set_error(wr->outer, status, "%s", kv_req_errmsg(&wr->inner));
  kv_wrap_complete(wr, status);
  kv_wrap_req_free(wr);
}

static void many_primary(kv_wrap_req_t *wr) {
  cache_t *c = (cache_t *)wr->w;
  cst_t *st = CST(wr);
  kv_req_t *in = &wr->inner, *o = wr->outer;
  int can_fill = c->epoch == st->epoch && c->writes == 0;
  if (in->status < 0) {
    many_done(wr, in->status);
    return;
  }
  for (size_t j = 0; j < st->nmiss && j < in->nresults; j++) {
    kv_result_t *r = &in->results[j];
    size_t i = st->miss[j];
    if (can_fill)
      fill(c, wr->in.collection, st->mkeys[j].base, r->found, r->value.base,
           r->value.len, r->found ? r->ttl : 0, in->in.now_ms);
    if (r->found) {
      o->results[i].found = 1;
      o->results[i].value = r->value;
      o->results[i].ttl = r->ttl;
      r->value.base = NULL;
      r->value.len = 0;
    }
  }
  many_done(wr, 0);
}

static void many_cached(kv_wrap_req_t *wr) {
  cache_t *c = (cache_t *)wr->w;
  cst_t *st = CST(wr);
  kv_req_t *in = &wr->inner, *o = wr->outer;
  size_t n = o->in.n;
  if (kv_req_alloc_results(o) != 0) {
    many_done(wr, kv_req_set_error(o, KV_ENOMEM, "out of memory"));
    return;
  }
  st->miss = kv_malloc((n ? n : 1) * sizeof *st->miss);
  st->mkeys = kv_malloc((n ? n : 1) * sizeof *st->mkeys);
  if (st->miss == NULL || st->mkeys == NULL) {
    many_done(wr, kv_req_set_error(o, KV_ENOMEM, "out of memory"));
    return;
  }
  for (size_t i = 0; i < n; i++) {
    kv_result_t *r =
        in->status == 0 && i < in->nresults ? &in->results[i] : NULL;
    int64_t expires = 0;
    int kind =
        r && r->found ? env_parse(&r->value, in->in.now_ms, &expires) : 0;
    if (kind == 1) {
      size_t len = r->value.len - ENV_HDR;
      memmove(r->value.base, r->value.base + ENV_HDR, len + 1);
      o->results[i].found = 1;
      o->results[i].value.base = r->value.base;
      o->results[i].value.len = len;
      o->results[i].ttl = kv_remaining_ttl(expires, in->in.now_ms);
      r->value.base = NULL;
      r->value.len = 0;
      c->hits++;
    } else if (kind == 2) {
      c->hits++;
    } else {
      c->misses++;
      st->mkeys[st->nmiss] = wr->in.keys[i];
      st->miss[st->nmiss++] = i;
    }
  }
  if (st->nmiss == 0) {
    many_done(wr, 0);
    return;
  }
  wr->op = KV_OP_TTL_MANY;
  wr->in.keys = st->mkeys;
  wr->in.n = st->nmiss;
  if (kv_wrap_submit(wr, c->w.inner, many_primary) < 0)
    many_done(wr, wr->inner.status);
}

static int cache_get_many(kv_store_t *s, kv_req_t *req) {
  cache_t *c = (cache_t *)s;
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, sizeof(cst_t));
  int err;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  CST(wr)->epoch = c->epoch;
  wr->op = KV_OP_GET_MANY;
  err = kv_wrap_submit(wr, c->cache, many_cached);
  if (err < 0) {
    wr->op = req->op;
    err = kv_wrap_submit(wr, c->w.inner, plain_done);
    if (err < 0) return kv_wrap_refuse(wr, err);
  }
  return 0;
}

/* ---- Writes
 * ------------------------------------------------------------------
 */

static void writes_end(cache_t *c, kv_wrap_req_t *wr) {
  cst_t *st = CST(wr);
  if (st->kss) {
    for (size_t i = 0; i < wr->in.n; i++)
      write_end(c, st->kss[i]);
    kv_free(st->kss);
    st->kss = NULL;
  } else {
    write_end(c, st->ks);
  }
}

static void invalidated(kv_wrap_req_t *wr) {
  cache_t *c = (cache_t *)wr->w;
  writes_end(c, wr);
  kv_wrap_complete(wr, CST(wr)->saved_status);
  kv_wrap_req_free(wr);
}

static void written(kv_wrap_req_t *wr) {
  cache_t *c = (cache_t *)wr->w;
  kv_op_t op = wr->op;
  CST(wr)->saved_status = wr->inner.status;
  kv_wrap_move_results(wr->outer, &wr->inner);
  /* Invalidate even after a failure: the write may have been applied. */
  if (op == KV_OP_DESTROY || op == KV_OP_DESTROY_COLLECTION)
    ; /* same op on the cache */
  else if (op == KV_OP_PUT_MANY || op == KV_OP_DELETE_MANY)
    wr->op = KV_OP_DELETE_MANY;
  else
    wr->op = KV_OP_DELETE;
  if (kv_wrap_submit(wr, c->cache, invalidated) < 0) invalidated(wr);
}

static void mark_all_dirty(cache_t *c) {
  for (size_t b = 0; c->tab && b <= c->mask; b++)
    for (kstate_t *ks = c->tab[b]; ks; ks = ks->hnext)
      if (ks->read) {
        ks->read->dirty = 1;
        ks->read = NULL;
      }
}

static int cache_write(kv_store_t *s, kv_req_t *req) {
  cache_t *c = (cache_t *)s;
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, sizeof(cst_t));
  cst_t *st;
  int err;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  st = CST(wr);
  switch (req->op) {
  case KV_OP_DESTROY:
  case KV_OP_DESTROY_COLLECTION:
    c->depoch++;
    mark_all_dirty(c);
    write_begin(c, NULL);
    break;
  case KV_OP_PUT_MANY:
  case KV_OP_DELETE_MANY:
    st->kss = kv_calloc(wr->in.n ? wr->in.n : 1, sizeof *st->kss);
    if (st->kss == NULL) {
      kv_wrap_req_free(wr);
      return kv_req_set_error(req, KV_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < wr->in.n; i++) {
      st->kss[i] = ks_get(c, wr->in.collection, wr->in.keys[i].base);
      if (st->kss[i] == NULL) {
        for (size_t j = 0; j < i; j++)
          write_end(c, st->kss[j]);
        kv_free(st->kss);
        kv_wrap_req_free(wr);
        return kv_req_set_error(req, KV_ENOMEM, "out of memory");
      }
      write_begin(c, st->kss[i]);
    }
    break;
  default:
    st->ks = ks_get(c, wr->in.collection, wr->in.key);
    if (st->ks == NULL) {
      kv_wrap_req_free(wr);
      return kv_req_set_error(req, KV_ENOMEM, "out of memory");
    }
    write_begin(c, st->ks);
  }
  err = kv_wrap_submit(wr, c->w.inner, written);
  if (err < 0) {
    writes_end(c, wr);
    return kv_wrap_refuse(wr, err);
  }
  return 0;
}

/* ---- Construction ------------------------------------------------------- */

static void cache_free(kv_wrap_t *w) {
  cache_t *c = (cache_t *)w;
  for (size_t b = 0; c->tab && b <= c->mask; b++) {
    kstate_t *ks = c->tab[b];
    while (ks) {
      kstate_t *next = ks->hnext;
      kv_free(ks);
      ks = next;
    }
  }
  kv_free(c->tab);
  c->tab = NULL;
}

static kv_store_methods_t cache_methods;
static uv_once_t cache_once = UV_ONCE_INIT;

static void cache_init(void) {
  kv_store_methods_t *m = &cache_methods;
  kv_wrap_methods_init(m, "cache", sizeof(cache_t));
  m->get = m->ttl = cache_get;
  m->get_many = m->ttl_many = cache_get_many;
  m->put = m->del = m->put_many = m->delete_many = cache_write;
  m->put_if_absent = m->cas = m->incr = m->take = cache_write;
  m->destroy = m->destroy_collection = cache_write;
}

int kv_wrap_cache(kv_store_t *inner, const kv_wrap_cache_opts_t *o,
                  kv_store_t **out) {
  kv_wrap_t *w;
  cache_t *c;
  int err;
  *out = NULL;
  if (o == NULL || o->cache == NULL || o->cache == inner ||
      o->cache->loop != inner->loop || !(o->max_ttl >= 0) ||
      !(o->missing_ttl >= 0) || o->max_ttl > KV_TTL_MAX ||
      o->missing_ttl > KV_TTL_MAX)
    return KV_EINVAL;
  uv_once(&cache_once, cache_init);
  err = kv_wrap_create(inner, &cache_methods, o->borrow, &w);
  if (err) return err;
  c = (cache_t *)w;
  c->cache = o->cache;
  c->max_ttl = o->max_ttl > 0 ? o->max_ttl : 60;
  c->missing_ttl = o->missing_ttl;
  w->on_free = cache_free;
  if (!(kv_store_caps(o->cache) & KV_CAP_DESTROY))
    w->base.caps &= ~KV_CAP_DESTROY;
  if ((err = kv_wrap_add_store(w, o->cache, !o->borrow_cache)) != 0) {
    kv__wrap_abort(w);
    return err;
  }
  *out = &w->base;
  return 0;
}

void kv_wrap_cache_counts(kv_store_t *s, uint64_t *hits, uint64_t *misses,
                          uint64_t *coalesced) {
  cache_t *c = (cache_t *)kv_wrap_find(s, "cache");
  if (hits) *hits = c ? c->hits : 0;
  if (misses) *misses = c ? c->misses : 0;
  if (coalesced) *coalesced = c ? c->coalesced : 0;
}

KV__WRAP_FROM_OPTIONS(cache) {
  static const char *const known[] = {"store", "max_ttl", "missing_ttl", NULL};
  kv_wrap_cache_opts_t o = {0};
  kv_url_t opts;
  int err = kv__wrap_opts("cache", options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  if (!(err = kv_url_param_double(&opts, "max_ttl", 1e-3, KV_TTL_MAX, 60,
                                  &o.max_ttl, errbuf, errbuf_len)) &&
      !(err = kv_url_param_double(&opts, "missing_ttl", 0, KV_TTL_MAX, 0,
                                  &o.missing_ttl, errbuf, errbuf_len)))
    err = kv__wrap_open_opt("cache", &opts, "store", inner->loop, &o.cache,
                            errbuf, errbuf_len);
  kv_wrap_opts_free(&opts);
  if (err) return err;
  err = kv_wrap_cache(inner, &o, out);
  if (err) kv_store_close(o.cache, NULL);
  return err;
}
