/* rocksdb:// — a store in a RocksDB database, through RocksDB's C API.
 *
 * Shape of the store (as disk.c):
 *
 *  - Requests are queued as they arrive. A uv_check_t (plus a no-op
 *    uv_idle_t so the loop does not block in poll meanwhile) launches the
 *    queue as one batch at the end of the loop turn. One batch per store is
 *    on the threadpool at a time; what arrives meanwhile forms the next one.
 *  - A batch runs its ops in arrival order against one WriteBatchWithIndex:
 *    writes go into the batch, reads look at the batch first and then at the
 *    database (rocksdb_writebatch_wi_get_from_batch_and_db, iterators with
 *    the database as base), so later ops see earlier writes. Then the batch
 *    is written at once: one write, one fsync (sync=true) for many writes.
 *  - RocksDB lets one process open a path, and one handle per path in that
 *    process: stores on the same directory share one handle (found by
 *    device and inode), and a per-handle mutex lets one batch at a time run
 *    its reads and write, so a read-modify-write (put_if_absent, cas, incr,
 *    take) sees nothing change under it: the atomic segment is atomic.
 *  - A request that fails alone (a read error) fails alone; when the write
 *    of the batch fails, every request of the batch fails with that error
 *    (their results are dropped: they may have seen writes that never
 *    happened).
 *
 * Format (version 1), as disk.c's:
 *   "\0"                    → "kvio-rocksdb 1" (the format marker)
 *   BE16(|C|) ‖ C ‖ K       → record
 * where C and K are the encoded collection and key: the name itself when it
 * has at most RDB_RAW_MAX bytes, else its first RDB_RAW_MAX bytes ‖ 0xFF ‖
 * SHA-256(name). 0xFF never occurs in UTF-8, so a raw name and a hashed one
 * never meet, and the length prefix makes (C, K) → key injective. A record
 * is:
 *   u8 version (1) ‖ u8 flags ‖ BE64 expires_at_ms (0 = none)
 *   [‖ BE16 len(collection) if the collection is hashed]
 *   [‖ BE16 len(key)        if the key is hashed]
 *   [‖ original collection] [‖ original key] ‖ value bytes
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <rocksdb/c.h>

#include "internal.h"
#include "kvio/rocksdb.h"
#include "rocksdb_int.h"

#define RDB_RAW_MAX 200
#define RDB_ENC_MAX (RDB_RAW_MAX + 1 + SHA256_DIGEST_LENGTH)
#define RDB_KEY_MAX (2 + 2 * RDB_ENC_MAX)
#define RDB_REC_VERSION 1
#define RDB_REC_HDR 10
#define RDB_F_CHASHED 0x01
#define RDB_F_KHASHED 0x02
#define RDB_PAGE_DEFAULT 1000
#define RDB_LOCK_DEFAULT 5000
#define RDB_LOCK_POLL_MS 20

extern const kv_store_methods_t kv__rocksdb_methods;

static const char rdb_marker_key[1] = {0};
static const char rdb_marker_value[] = "kvio-rocksdb 1";
/* The smallest possible entry key: every entry sorts at or after it, the
 * marker before it. */
static const unsigned char rdb_first_key[2] = {0, 1};

/* ---- Shared handles -------------------------------------------------------
 *
 * One rocksdb_t per directory and process. `batch_lock` is held while a
 * batch of any store on it runs (reads, decisions, write).
 */
typedef struct rdb_env_s {
  struct rdb_env_s *next;
  dev_t dev;
  ino_t ino;
  pid_t pid; /* the process that opened it; a forked child must not use it */
  rocksdb_t *db;
  unsigned refs;
  pthread_mutex_t batch_lock;
} rdb_env_t;

static pthread_mutex_t rdb_envs_lock = PTHREAD_MUTEX_INITIALIZER;
static rdb_env_t *rdb_envs;

/* One request of a batch, with what the worker found out about it. */
typedef struct rdb_slot_s {
  kv_req_t *req;
  int status;      /* the op's outcome: 0 or a KV_E* code */
  const char *msg; /* static detail text for status, or NULL */
  char *errmsg;    /* RocksDB's message (kv_malloc'ed), or NULL */
  char *names;     /* keys/collections: BE16 len ‖ bytes, repeated */
  size_t names_len;
  size_t names_cap;
  char *cursor; /* keys/collections: the next page's cursor, or NULL */
} rdb_slot_t;

typedef struct kv_rocksdb_s {
  kv_store_t base;
  rdb_env_t *env;
  char *path;
  rocksdb_readoptions_t *ropts;
  rocksdb_writeoptions_t *wopts;
  rocksdb_writebatch_wi_t *wbwi; /* the batch's writes (worker-owned) */
  uv_idle_t idle;   /* active while a launch is due: keeps poll from
                       blocking until `check` runs */
  uv_check_t check; /* launches the queue at the end of the loop turn */
  uv_work_t work;
  int scheduled; /* idle and check are active */
  int busy;      /* a batch is on the threadpool */
  int closing;
  int nhandles;     /* handles still to close */
  kv_req_t **queue; /* arrived, not started, in arrival order */
  size_t nqueue;
  size_t queue_cap;
  rdb_slot_t *batch; /* the batch on the threadpool (worker-owned then) */
  size_t nbatch;
  size_t batch_cap;
  /* Worker scratch: the record being written, keys to delete. */
  char *w_rec;
  size_t w_rec_cap;
  char *w_keys; /* BE16 len ‖ key, repeated */
  size_t w_keys_len;
  size_t w_keys_cap;
  /* Written by the worker, read on the loop in the after-work callback. */
  uint64_t w_write_batches;
  uint64_t w_read_batches;
  kv_rocksdb_stats_t stats;
} kv_rocksdb_t;

/* An internal key being built: the collection prefix once, then each key. */
typedef struct rdb_key_s {
  unsigned char buf[RDB_KEY_MAX];
  size_t prefix_len; /* BE16 ‖ encoded collection */
  size_t len;
  unsigned flags; /* RDB_F_* for a record written under this key */
} rdb_key_t;

/* A parsed record. Pointers into the value: valid while it is. */
typedef kv__rdb_rec_t rdb_rec_t; /* rocksdb_int.h */

/* A looked-up entry: `raw` is RocksDB's copy (rocksdb_free). */
typedef struct rdb_found_s {
  int state;
  char *raw;
  rdb_rec_t rec;
} rdb_found_t;

enum { RDB_ABSENT, RDB_EXPIRED, RDB_LIVE, RDB_BAD };

static const char *const rdb_options[] = {"sync", "lock_timeout", NULL};

/* ---- Small helpers ------------------------------------------------------ */

/* The kvio code for a RocksDB status message ("IO error: ..."). */
static int rdb_map_err(const char *err, int at_open) {
  if (strncmp(err, "Corruption", 10) == 0) return KV_ECORRUPT;
  if (strstr(err, "While lock file") != NULL ||
      strstr(err, "lock hold by current process") != NULL ||
      strncmp(err, "Resource busy", 13) == 0 || strncmp(err, "Busy", 4) == 0)
    return KV_EBUSY;
  if (strncmp(err, "IO error", 8) == 0) return KV_EIO;
  if (strncmp(err, "Invalid argument", 16) == 0 && at_open)
    return KV_ECORRUPT; /* an existing database kvio cannot use */
  if (strncmp(err, "Operation timed out", 19) == 0 ||
      strncmp(err, "TimedOut", 8) == 0)
    return KV_ETIMEDOUT;
  return KV_EBACKEND;
}

static void rdb_be16(unsigned char *p, size_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

static size_t rdb_get_be16(const unsigned char *p) {
  return ((size_t)p[0] << 8) | p[1];
}

static void rdb_be64(unsigned char *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  int i;
  for (i = 7; i >= 0; i--) {
    p[i] = (unsigned char)u;
    u >>= 8;
  }
}

static int64_t rdb_get_be64(const unsigned char *p) {
  uint64_t u = 0;
  int i;
  for (i = 0; i < 8; i++)
    u = (u << 8) | p[i];
  return (int64_t)u;
}

/* ---- Names and keys ----------------------------------------------------- */

/* Encode a name (see the format above). `out` holds RDB_ENC_MAX bytes.
 * Returns the encoded length; *hashed says whether the name was hashed. */
static size_t rdb_encode(const char *name, size_t len, unsigned char *out,
                         int *hashed) {
  if (len <= RDB_RAW_MAX) {
    memcpy(out, name, len);
    *hashed = 0;
    return len;
  }
  memcpy(out, name, RDB_RAW_MAX);
  out[RDB_RAW_MAX] = 0xFF;
  SHA256((const unsigned char *)name, len, out + RDB_RAW_MAX + 1);
  *hashed = 1;
  return RDB_ENC_MAX;
}

static void rdb_key_init(rdb_key_t *k, const char *coll, size_t coll_len) {
  int hashed;
  size_t n = rdb_encode(coll, coll_len, k->buf + 2, &hashed);
  rdb_be16(k->buf, n);
  k->prefix_len = 2 + n;
  k->len = k->prefix_len;
  k->flags = hashed ? RDB_F_CHASHED : 0;
}

static void rdb_key_set(rdb_key_t *k, const char *key, size_t key_len) {
  int hashed;
  size_t n = rdb_encode(key, key_len, k->buf + k->prefix_len, &hashed);
  k->len = k->prefix_len + n;
  k->flags = (k->flags & RDB_F_CHASHED) | (hashed ? RDB_F_KHASHED : 0);
}

/* Whether a key is an entry key (not the marker), and its prefix length
 * (BE16 ‖ encoded collection). */
static int rdb_entry_key(const unsigned char *p, size_t len,
                         size_t *prefix_len) {
  size_t n;
  if (len < 4) return 0;
  n = rdb_get_be16(p);
  if (n == 0 || n > RDB_ENC_MAX || 2 + n >= len) return 0;
  *prefix_len = 2 + n;
  return 1;
}

static int rdb_has_prefix(const char *k, size_t klen, const void *prefix,
                          size_t len) {
  return klen > len && memcmp(k, prefix, len) == 0;
}

/* Parse a record; 0, or KV_ECORRUPT for bytes that are no record. */
int kv__rdb_rec_parse(const char *v, size_t size, kv__rdb_rec_t *r) {
  const unsigned char *p = (const unsigned char *)v;
  size_t off = RDB_REC_HDR;
  if (size < RDB_REC_HDR || p[0] != RDB_REC_VERSION ||
      (p[1] & ~(RDB_F_CHASHED | RDB_F_KHASHED)) != 0)
    return KV_ECORRUPT;
  r->flags = p[1];
  r->expires_at = rdb_get_be64(p + 2);
  r->coll = NULL;
  r->coll_len = 0;
  r->key = NULL;
  r->key_len = 0;
  if (r->flags & RDB_F_CHASHED) {
    if (size < off + 2) return KV_ECORRUPT;
    r->coll_len = rdb_get_be16(p + off);
    off += 2;
  }
  if (r->flags & RDB_F_KHASHED) {
    if (size < off + 2) return KV_ECORRUPT;
    r->key_len = rdb_get_be16(p + off);
    off += 2;
  }
  if (size - off < r->coll_len + r->key_len) return KV_ECORRUPT;
  if (r->flags & RDB_F_CHASHED) r->coll = v + off;
  off += r->coll_len;
  if (r->flags & RDB_F_KHASHED) r->key = v + off;
  off += r->key_len;
  r->value = v + off;
  r->value_len = size - off;
  return 0;
}

/* ---- Slots -------------------------------------------------------------- */

static void rdb_slot_error(rdb_slot_t *slot, int status, const char *msg) {
  slot->status = status;
  slot->msg = msg;
}

/* The slot failed with RocksDB's message `err` (freed here). */
static void rdb_slot_fail(rdb_slot_t *slot, char *err) {
  slot->status = rdb_map_err(err, 0);
  slot->msg = NULL;
  kv_free(slot->errmsg);
  slot->errmsg = kv_strndup(err, strlen(err));
  rocksdb_free(err);
}

/* Drop what an op produced (the mirror of kv_req_cleanup for the fields
 * this store sets). */
static void rdb_slot_reset(rdb_slot_t *slot) {
  kv_req_t *req = slot->req;
  size_t i;
  slot->status = 0;
  slot->msg = NULL;
  kv_free(slot->errmsg);
  slot->errmsg = NULL;
  slot->names_len = 0;
  kv_free(slot->cursor);
  slot->cursor = NULL;
  kv_free(req->value.base);
  req->value.base = NULL;
  req->value.len = 0;
  if (req->results != NULL) {
    for (i = 0; i < req->nresults; i++)
      kv_free(req->results[i].value.base);
    kv_free(req->results);
    req->results = NULL;
    req->nresults = 0;
  }
  req->found = 0;
  req->ttl = 0;
  req->number = 0;
  req->count = 0;
}

/* Append BE16 len ‖ bytes to a growable buffer. 0 or KV_ENOMEM. */
static int rdb_buf_add(char **buf, size_t *len, size_t *cap, const void *p,
                       size_t n) {
  size_t need = *len + 2 + n;
  if (need > *cap) {
    size_t c = *cap ? *cap * 2 : 4096;
    char *q;
    while (c < need)
      c *= 2;
    q = kv_realloc(*buf, c);
    if (q == NULL) return KV_ENOMEM;
    *buf = q;
    *cap = c;
  }
  rdb_be16((unsigned char *)*buf + *len, n);
  memcpy(*buf + *len + 2, p, n);
  *len = need;
  return 0;
}

static const char rdb_hex[] = "0123456789abcdef";

/* "<tag><hex of bytes>", kv_malloc'ed; NULL when out of memory. */
static char *rdb_cursor_make(char tag, const unsigned char *p, size_t len) {
  char *s = kv_malloc(2 * len + 2);
  size_t i;
  if (s == NULL) return NULL;
  s[0] = tag;
  for (i = 0; i < len; i++) {
    s[1 + 2 * i] = rdb_hex[p[i] >> 4];
    s[2 + 2 * i] = rdb_hex[p[i] & 15];
  }
  s[1 + 2 * len] = '\0';
  return s;
}

static int rdb_hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decode a cursor made by rdb_cursor_make into out[RDB_KEY_MAX]. Returns
 * the length, or 0 when it is not such a cursor. */
static size_t rdb_cursor_parse(const char *s, char tag, unsigned char *out) {
  size_t n = strlen(s), i;
  if (n < 3 || s[0] != tag || (n - 1) % 2 != 0 || (n - 1) / 2 > RDB_KEY_MAX)
    return 0;
  for (i = 0; i < (n - 1) / 2; i++) {
    int hi = rdb_hexval(s[1 + 2 * i]), lo = rdb_hexval(s[2 + 2 * i]);
    if (hi < 0 || lo < 0) return 0;
    out[i] = (unsigned char)(hi << 4 | lo);
  }
  return (n - 1) / 2;
}

/* ---- Operations (worker thread, batch_lock held) ------------------------
 *
 * Each sets the slot's outcome; writes go into d->wbwi.
 */

/* Look k up in the batch, then the database. The caller frees f->raw with
 * rocksdb_free. 0, or -1 after failing the slot. */
static int rdb_lookup(kv_rocksdb_t *d, rdb_slot_t *slot, const rdb_key_t *k,
                      int64_t now, rdb_found_t *f) {
  char *err = NULL;
  size_t len = 0;
  f->raw = rocksdb_writebatch_wi_get_from_batch_and_db(
      d->wbwi, d->env->db, d->ropts, (const char *)k->buf, k->len, &len, &err);
  if (err != NULL) {
    rocksdb_free(f->raw);
    f->raw = NULL;
    rdb_slot_fail(slot, err);
    return -1;
  }
  if (f->raw == NULL)
    f->state = RDB_ABSENT;
  else if (kv__rdb_rec_parse(f->raw, len, &f->rec) != 0)
    f->state = RDB_BAD;
  else if (KV_EXPIRED(f->rec.expires_at, now))
    f->state = RDB_EXPIRED;
  else
    f->state = RDB_LIVE;
  return 0;
}

/* Write a record under k into the batch. 0 or KV_ENOMEM. */
static int rdb_rec_put(kv_rocksdb_t *d, const rdb_key_t *k, const char *coll,
                       size_t coll_len, const char *key, size_t key_len,
                       const void *value, size_t value_len,
                       int64_t expires_at) {
  size_t size = RDB_REC_HDR + value_len, off = RDB_REC_HDR;
  unsigned char *p;
  if (k->flags & RDB_F_CHASHED) size += 2 + coll_len;
  if (k->flags & RDB_F_KHASHED) size += 2 + key_len;
  if (size > d->w_rec_cap) {
    char *q = kv_realloc(d->w_rec, size);
    if (q == NULL) return KV_ENOMEM;
    d->w_rec = q;
    d->w_rec_cap = size;
  }
  p = (unsigned char *)d->w_rec;
  p[0] = RDB_REC_VERSION;
  p[1] = (unsigned char)k->flags;
  rdb_be64(p + 2, expires_at);
  if (k->flags & RDB_F_CHASHED) {
    rdb_be16(p + off, coll_len);
    off += 2;
  }
  if (k->flags & RDB_F_KHASHED) {
    rdb_be16(p + off, key_len);
    off += 2;
  }
  if (k->flags & RDB_F_CHASHED) {
    memcpy(p + off, coll, coll_len);
    off += coll_len;
  }
  if (k->flags & RDB_F_KHASHED) {
    memcpy(p + off, key, key_len);
    off += key_len;
  }
  if (value_len > 0) memcpy(p + off, value, value_len);
  rocksdb_writebatch_wi_put(d->wbwi, (const char *)k->buf, k->len, d->w_rec,
                            size);
  return 0;
}

static void rdb_del_key(kv_rocksdb_t *d, const rdb_key_t *k) {
  rocksdb_writebatch_wi_delete(d->wbwi, (const char *)k->buf, k->len);
}

/* Copy a value into req->value. */
static void rdb_give_value(rdb_slot_t *slot, const rdb_rec_t *rec) {
  char *buf = kv_malloc(rec->value_len + 1);
  if (buf == NULL) {
    rdb_slot_error(slot, KV_ENOMEM, "out of memory");
    return;
  }
  if (rec->value_len > 0) memcpy(buf, rec->value, rec->value_len);
  buf[rec->value_len] = '\0';
  kv_req_give_value(slot->req, buf, rec->value_len);
}

static void rdb_do_get(kv_rocksdb_t *d, rdb_slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  rdb_key_t k;
  rdb_found_t f;
  rdb_key_init(&k, req->in.collection, req->in.collection_len);
  rdb_key_set(&k, req->in.key, req->in.key_len);
  if (rdb_lookup(d, slot, &k, now, &f) != 0) return;
  if (f.state == RDB_BAD) {
    rdb_slot_error(slot, KV_ECORRUPT, "unreadable record");
  } else if (f.state == RDB_LIVE) {
    rdb_give_value(slot, &f.rec);
    if (slot->status == 0 && req->op == KV_OP_TTL)
      req->ttl = kv_remaining_ttl(f.rec.expires_at, now);
  }
  rocksdb_free(f.raw);
  if (req->op == KV_OP_TAKE && slot->status == 0 && f.state != RDB_ABSENT)
    rdb_del_key(d, &k);
}

static void rdb_do_put(kv_rocksdb_t *d, rdb_slot_t *slot) {
  kv_req_t *req = slot->req;
  rdb_key_t k;
  rdb_key_init(&k, req->in.collection, req->in.collection_len);
  rdb_key_set(&k, req->in.key, req->in.key_len);
  if (rdb_rec_put(d, &k, req->in.collection, req->in.collection_len,
                  req->in.key, req->in.key_len, req->in.value.base,
                  req->in.value.len, req->in.expires_at_ms) != 0)
    rdb_slot_error(slot, KV_ENOMEM, "out of memory");
}

static void rdb_do_delete(kv_rocksdb_t *d, rdb_slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  size_t n = req->op == KV_OP_DELETE ? 1 : req->in.n, removed = 0, i;
  rdb_key_t k;
  rdb_found_t f;
  rdb_key_init(&k, req->in.collection, req->in.collection_len);
  rocksdb_writebatch_wi_set_save_point(d->wbwi);
  for (i = 0; i < n; i++) {
    if (req->op == KV_OP_DELETE)
      rdb_key_set(&k, req->in.key, req->in.key_len);
    else
      rdb_key_set(&k, req->in.keys[i].base, req->in.keys[i].len);
    if (rdb_lookup(d, slot, &k, now, &f) != 0) {
      char *err = NULL;
      /* All or nothing: take back the deletes of this request. */
      rocksdb_writebatch_wi_rollback_to_save_point(d->wbwi, &err);
      rocksdb_free(err);
      return;
    }
    rocksdb_free(f.raw);
    if (f.state == RDB_ABSENT) continue;
    if (f.state == RDB_LIVE) removed++;
    rdb_del_key(d, &k);
  }
  if (req->op == KV_OP_DELETE)
    req->found = removed > 0;
  else
    req->count = removed;
}

static void rdb_do_get_many(kv_rocksdb_t *d, rdb_slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  rdb_key_t k;
  rdb_found_t f;
  size_t i;
  if (kv_req_alloc_results(req) != 0) {
    rdb_slot_error(slot, KV_ENOMEM, "out of memory");
    return;
  }
  rdb_key_init(&k, req->in.collection, req->in.collection_len);
  for (i = 0; i < req->in.n; i++) {
    int rc = 0;
    rdb_key_set(&k, req->in.keys[i].base, req->in.keys[i].len);
    if (rdb_lookup(d, slot, &k, now, &f) != 0) return;
    if (f.state == RDB_BAD)
      rdb_slot_error(slot, KV_ECORRUPT, "unreadable record");
    else if (f.state == RDB_LIVE)
      rc = kv_req_set_result(req, i, f.rec.value, f.rec.value_len,
                             kv_remaining_ttl(f.rec.expires_at, now));
    rocksdb_free(f.raw);
    if (rc != 0) rdb_slot_error(slot, KV_ENOMEM, "out of memory");
    if (slot->status != 0) return;
  }
}

static void rdb_do_put_many(kv_rocksdb_t *d, rdb_slot_t *slot) {
  kv_req_t *req = slot->req;
  rdb_key_t k;
  size_t i;
  rocksdb_writebatch_wi_set_save_point(d->wbwi);
  rdb_key_init(&k, req->in.collection, req->in.collection_len);
  for (i = 0; i < req->in.n; i++) {
    rdb_key_set(&k, req->in.keys[i].base, req->in.keys[i].len);
    if (rdb_rec_put(d, &k, req->in.collection, req->in.collection_len,
                    req->in.keys[i].base, req->in.keys[i].len,
                    req->in.values[i].base, req->in.values[i].len,
                    req->in.expires_at_ms) != 0) {
      char *err = NULL;
      /* All or nothing: take back the puts of this request. */
      rocksdb_writebatch_wi_rollback_to_save_point(d->wbwi, &err);
      rocksdb_free(err);
      rdb_slot_error(slot, KV_ENOMEM, "out of memory");
      return;
    }
  }
}

/* put_if_absent, cas, incr: read, decide, write (batch_lock held). */
static void rdb_do_atomic(kv_rocksdb_t *d, rdb_slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  rdb_key_t k;
  rdb_found_t f;
  rdb_key_init(&k, req->in.collection, req->in.collection_len);
  rdb_key_set(&k, req->in.key, req->in.key_len);
  if (rdb_lookup(d, slot, &k, now, &f) != 0) return;
  if (f.state == RDB_BAD && req->op != KV_OP_PUT_IF_ABSENT) {
    rocksdb_free(f.raw);
    rdb_slot_error(slot, KV_ECORRUPT, "unreadable record");
    return;
  }
  switch (req->op) {
  case KV_OP_PUT_IF_ABSENT:
    rocksdb_free(f.raw);
    if (f.state == RDB_LIVE) return; /* found = 0: not stored */
    req->found = 1;
    rdb_do_put(d, slot);
    return;
  case KV_OP_CAS: {
    int ok = req->in.expected_absent
                 ? f.state != RDB_LIVE
                 : f.state == RDB_LIVE &&
                       f.rec.value_len == req->in.expected.len &&
                       (f.rec.value_len == 0 ||
                        memcmp(f.rec.value, req->in.expected.base,
                               f.rec.value_len) == 0);
    rocksdb_free(f.raw);
    if (!ok) {
      rdb_slot_error(slot, KV_ECONFLICT,
                     req->in.expected_absent
                         ? "the key holds a value"
                         : "the value differs from the expected one");
      return;
    }
    req->found = 1;
    rdb_do_put(d, slot);
    return;
  }
  default: { /* KV_OP_INCR */
    int64_t cur = 0, next, expires_at = req->in.expires_at_ms;
    char text[32];
    size_t len;
    int bad = 0;
    if (f.state == RDB_LIVE) {
      bad = kv_parse_int64(f.rec.value, f.rec.value_len, &cur) != 0;
      expires_at = f.rec.expires_at; /* an existing entry keeps its TTL */
    }
    rocksdb_free(f.raw);
    if (bad) {
      rdb_slot_error(slot, KV_EINVAL, "the value is not a decimal integer");
      return;
    }
    if (__builtin_add_overflow(cur, req->in.delta, &next)) {
      rdb_slot_error(slot, KV_EINVAL, "integer overflow");
      return;
    }
    len = kv_format_int64(next, text);
    if (rdb_rec_put(d, &k, req->in.collection, req->in.collection_len,
                    req->in.key, req->in.key_len, text, len, expires_at) != 0) {
      rdb_slot_error(slot, KV_ENOMEM, "out of memory");
      return;
    }
    req->number = next;
  }
  }
}

/* An iterator over the database with the batch's writes on top. */
static rocksdb_iterator_t *rdb_iter(kv_rocksdb_t *d) {
  rocksdb_iterator_t *base = rocksdb_create_iterator(d->env->db, d->ropts);
  return rocksdb_writebatch_wi_create_iterator_with_base(d->wbwi, base);
}

/* Close an iterator; 0, or -1 after failing the slot with its error. */
static int rdb_iter_end(rocksdb_iterator_t *it, rdb_slot_t *slot) {
  char *err = NULL;
  rocksdb_iter_get_error(it, &err);
  rocksdb_iter_destroy(it);
  if (err == NULL) return 0;
  rdb_slot_fail(slot, err);
  return -1;
}

static void rdb_do_keys(kv_rocksdb_t *d, rdb_slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  size_t limit = req->in.limit ? req->in.limit : RDB_PAGE_DEFAULT;
  size_t n = 0, last_len = 0, start_len;
  unsigned char start[RDB_KEY_MAX], last[RDB_KEY_MAX];
  rdb_key_t k;
  rdb_rec_t rec;
  rocksdb_iterator_t *it;
  int more = 0, oom = 0;
  rdb_key_init(&k, req->in.collection, req->in.collection_len);
  memcpy(start, k.buf, k.prefix_len);
  start_len = k.prefix_len;
  if (req->in.cursor != NULL) {
    start_len = rdb_cursor_parse(req->in.cursor, 'k', start);
    if (start_len == 0 ||
        !rdb_has_prefix((const char *)start, start_len, k.buf, k.prefix_len)) {
      rdb_slot_error(slot, KV_EINVAL, "invalid cursor for this collection");
      return;
    }
  }
  it = rdb_iter(d);
  rocksdb_iter_seek(it, (const char *)start, start_len);
  /* Resume after the cursor's key, not at it. */
  if (req->in.cursor != NULL && rocksdb_iter_valid(it)) {
    size_t klen;
    const char *key = rocksdb_iter_key(it, &klen);
    if (klen == start_len && memcmp(key, start, klen) == 0)
      rocksdb_iter_next(it);
  }
  for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t klen, vlen;
    const char *key = rocksdb_iter_key(it, &klen);
    const char *val;
    if (!rdb_has_prefix(key, klen, k.buf, k.prefix_len)) break;
    val = rocksdb_iter_value(it, &vlen);
    if (klen > RDB_KEY_MAX || kv__rdb_rec_parse(val, vlen, &rec) != 0 ||
        KV_EXPIRED(rec.expires_at, now))
      continue; /* not a record of this format, or expired */
    if (n == limit) {
      more = 1;
      break;
    }
    if (rec.flags & RDB_F_KHASHED)
      oom = rdb_buf_add(&slot->names, &slot->names_len, &slot->names_cap,
                        rec.key, rec.key_len);
    else
      oom = rdb_buf_add(&slot->names, &slot->names_len, &slot->names_cap,
                        key + k.prefix_len, klen - k.prefix_len);
    if (oom != 0) break;
    memcpy(last, key, klen);
    last_len = klen;
    n++;
  }
  if (rdb_iter_end(it, slot) != 0) return;
  if (oom != 0)
    rdb_slot_error(slot, KV_ENOMEM, "out of memory");
  else if (more &&
           (slot->cursor = rdb_cursor_make('k', last, last_len)) == NULL)
    rdb_slot_error(slot, KV_ENOMEM, "out of memory");
}

/* The smallest key after every key that starts with p[0..len): p + 1. */
static size_t rdb_successor(unsigned char *p, size_t len) {
  while (len > 0 && p[len - 1] == 0xFF)
    len--;
  if (len > 0) p[len - 1]++;
  return len;
}

static void rdb_do_collections(kv_rocksdb_t *d, rdb_slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  size_t limit = req->in.limit ? req->in.limit : RDB_PAGE_DEFAULT;
  size_t n = 0, plen = 0, last_len = 0, seek_len;
  unsigned char seek[RDB_KEY_MAX], prefix[RDB_KEY_MAX], last[RDB_KEY_MAX];
  rocksdb_iterator_t *it;
  rdb_rec_t rec;
  int more = 0, oom = 0;
  if (req->in.cursor != NULL) {
    seek_len = rdb_cursor_parse(req->in.cursor, 'c', seek);
    if (seek_len < 3 || 2 + rdb_get_be16(seek) != seek_len) {
      rdb_slot_error(slot, KV_EINVAL, "invalid cursor");
      return;
    }
    seek_len = rdb_successor(seek, seek_len);
  } else {
    memcpy(seek, rdb_first_key, sizeof(rdb_first_key));
    seek_len = sizeof(rdb_first_key);
  }
  it = rdb_iter(d);
  rocksdb_iter_seek(it, (const char *)seek, seek_len);
  while (rocksdb_iter_valid(it)) {
    size_t klen, vlen;
    const char *key = rocksdb_iter_key(it, &klen);
    int live = 0;
    if (!rdb_entry_key((const unsigned char *)key, klen, &plen)) {
      rocksdb_iter_next(it);
      continue;
    }
    memcpy(prefix, key, plen);
    /* A collection is listed only while it holds a live entry. */
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
      const char *val;
      key = rocksdb_iter_key(it, &klen);
      if (!rdb_has_prefix(key, klen, prefix, plen)) break;
      val = rocksdb_iter_value(it, &vlen);
      if (kv__rdb_rec_parse(val, vlen, &rec) == 0 &&
          !KV_EXPIRED(rec.expires_at, now)) {
        live = 1;
        break;
      }
    }
    if (live) {
      if (n == limit) {
        more = 1;
        break;
      }
      if (rec.flags & RDB_F_CHASHED)
        oom = rdb_buf_add(&slot->names, &slot->names_len, &slot->names_cap,
                          rec.coll, rec.coll_len);
      else
        oom = rdb_buf_add(&slot->names, &slot->names_len, &slot->names_cap,
                          prefix + 2, plen - 2);
      if (oom != 0) break;
      memcpy(last, prefix, plen);
      last_len = plen;
      n++;
    }
    seek_len = plen;
    memcpy(seek, prefix, plen);
    seek_len = rdb_successor(seek, seek_len);
    if (seek_len == 0) break;
    rocksdb_iter_seek(it, (const char *)seek, seek_len);
  }
  if (rdb_iter_end(it, slot) != 0) return;
  if (oom != 0)
    rdb_slot_error(slot, KV_ENOMEM, "out of memory");
  else if (more &&
           (slot->cursor = rdb_cursor_make('c', last, last_len)) == NULL)
    rdb_slot_error(slot, KV_ENOMEM, "out of memory");
}

/* Delete entries from `from` on: all of them while they start with prefix
 * (destroy, destroy_collection), or the expired ones (cull: expired_only).
 * The keys are gathered first, then deleted (an iterator over the batch
 * must not see the batch change under it). Returns how many, or sets the
 * slot's error. */
static size_t rdb_sweep(kv_rocksdb_t *d, rdb_slot_t *slot,
                        const unsigned char *from, size_t from_len,
                        const unsigned char *prefix, size_t prefix_len,
                        int expired_only, int64_t now) {
  rocksdb_iterator_t *it = rdb_iter(d);
  size_t off = 0, count = 0, plen;
  rdb_rec_t rec;
  d->w_keys_len = 0;
  for (rocksdb_iter_seek(it, (const char *)from, from_len);
       rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t klen, vlen;
    const char *key = rocksdb_iter_key(it, &klen);
    if (prefix != NULL && !rdb_has_prefix(key, klen, prefix, prefix_len)) break;
    if (expired_only) {
      const char *val = rocksdb_iter_value(it, &vlen);
      if (!rdb_entry_key((const unsigned char *)key, klen, &plen) ||
          kv__rdb_rec_parse(val, vlen, &rec) != 0 ||
          !KV_EXPIRED(rec.expires_at, now))
        continue; /* keep live entries and unknown data */
    }
    if (klen > 0xFFFF ||
        rdb_buf_add(&d->w_keys, &d->w_keys_len, &d->w_keys_cap, key, klen)) {
      rocksdb_iter_destroy(it);
      rdb_slot_error(slot, KV_ENOMEM, "out of memory");
      return 0;
    }
  }
  if (rdb_iter_end(it, slot) != 0) return 0;
  while (off < d->w_keys_len) {
    size_t klen = rdb_get_be16((unsigned char *)d->w_keys + off);
    rocksdb_writebatch_wi_delete(d->wbwi, d->w_keys + off + 2, klen);
    off += 2 + klen;
    count++;
  }
  return count;
}

static void rdb_exec(kv_rocksdb_t *d, rdb_slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  switch (req->op) {
  case KV_OP_GET:
  case KV_OP_TTL:
  case KV_OP_TAKE:
    rdb_do_get(d, slot, now);
    return;
  case KV_OP_PUT:
    rdb_do_put(d, slot);
    return;
  case KV_OP_DELETE:
  case KV_OP_DELETE_MANY:
    rdb_do_delete(d, slot, now);
    return;
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
    rdb_do_get_many(d, slot, now);
    return;
  case KV_OP_PUT_MANY:
    rdb_do_put_many(d, slot);
    return;
  case KV_OP_PUT_IF_ABSENT:
  case KV_OP_CAS:
  case KV_OP_INCR:
    rdb_do_atomic(d, slot, now);
    return;
  case KV_OP_KEYS:
    rdb_do_keys(d, slot, now);
    return;
  case KV_OP_COLLECTIONS:
    rdb_do_collections(d, slot, now);
    return;
  case KV_OP_DESTROY:
    rdb_sweep(d, slot, rdb_first_key, sizeof(rdb_first_key), NULL, 0, 0, now);
    return;
  case KV_OP_DESTROY_COLLECTION: {
    rdb_key_t k;
    rdb_key_init(&k, req->in.collection, req->in.collection_len);
    req->count =
        rdb_sweep(d, slot, k.buf, k.prefix_len, k.buf, k.prefix_len, 0, now);
    return;
  }
  case KV_OP_CULL:
    req->count = rdb_sweep(d, slot, rdb_first_key, sizeof(rdb_first_key), NULL,
                           0, 1, now);
    return;
  default:
    rdb_slot_error(slot, KV_ENOTSUP, "operation not supported");
    return;
  }
}

/* ---- Batches (worker thread) -------------------------------------------- */

static void rdb_work_cb(uv_work_t *w) {
  kv_rocksdb_t *d = w->data;
  rdb_env_t *e = d->env;
  char *err = NULL;
  int64_t now;
  size_t i;
  pthread_mutex_lock(&e->batch_lock);
  rocksdb_writebatch_wi_clear(d->wbwi);
  now = kv_now_ms();
  for (i = 0; i < d->nbatch; i++)
    rdb_exec(d, &d->batch[i], now);
  if (rocksdb_writebatch_wi_count(d->wbwi) == 0) {
    d->w_read_batches++;
  } else {
    rocksdb_write_writebatch_wi(e->db, d->wopts, d->wbwi, &err);
    if (err == NULL) {
      d->w_write_batches++;
    } else {
      /* Nothing of the batch was written: every request fails. */
      for (i = 0; i < d->nbatch; i++) {
        rdb_slot_reset(&d->batch[i]);
        d->batch[i].status = rdb_map_err(err, 0);
        d->batch[i].errmsg = kv_strndup(err, strlen(err));
      }
      rocksdb_free(err);
    }
    rocksdb_writebatch_wi_clear(d->wbwi);
  }
  pthread_mutex_unlock(&e->batch_lock);
}

/* ---- Loop side ---------------------------------------------------------- */

static void rdb_idle_cb(uv_idle_t *h) {
  (void)h; /* only here to keep the loop from blocking before check runs */
}

static void rdb_launch(kv_rocksdb_t *d);

static void rdb_check_cb(uv_check_t *h) {
  kv_rocksdb_t *d = h->data;
  uv_idle_stop(&d->idle);
  uv_check_stop(&d->check);
  d->scheduled = 0;
  if (!d->busy && d->nqueue > 0) rdb_launch(d);
}

/* Launch the queue at the end of this loop turn. */
static void rdb_schedule(kv_rocksdb_t *d) {
  if (d->scheduled) return;
  d->scheduled = 1;
  uv_idle_start(&d->idle, rdb_idle_cb);
  uv_check_start(&d->check, rdb_check_cb);
}

static void rdb_deliver(kv_rocksdb_t *d, rdb_slot_t *slot) {
  kv_req_t *req = slot->req;
  int status = slot->status;
  size_t off = 0, len;
  if (status == 0) {
    while (off < slot->names_len) {
      len = rdb_get_be16((unsigned char *)slot->names + off);
      if (kv_req_add_name(req, slot->names + off + 2, len) != 0) {
        status = kv_req_set_error(req, KV_ENOMEM, "out of memory");
        break;
      }
      off += 2 + len;
    }
    if (status == 0 && slot->cursor != NULL &&
        kv_req_set_cursor(req, slot->cursor) != 0)
      status = kv_req_set_error(req, KV_ENOMEM, "out of memory");
  } else if (slot->errmsg != NULL) {
    kv_req_set_error(req, status, "rocksdb: %s (%s)", slot->errmsg, d->path);
  } else {
    kv_req_set_error(req, status, "rocksdb: %s",
                     slot->msg ? slot->msg : kv_strerror(status));
  }
  kv_free(slot->names);
  slot->names = NULL;
  slot->names_len = slot->names_cap = 0;
  kv_free(slot->cursor);
  slot->cursor = NULL;
  kv_free(slot->errmsg);
  slot->errmsg = NULL;
  kv_req_complete(req, status);
}

static void rdb_finish_close(kv_rocksdb_t *d);

static void rdb_after_work_cb(uv_work_t *w, int status) {
  kv_rocksdb_t *d = w->data;
  size_t i;
  (void)status; /* never canceled: this store does not uv_cancel */
  d->stats.ops += d->nbatch;
  d->stats.write_batches = d->w_write_batches;
  d->stats.read_batches = d->w_read_batches;
  for (i = 0; i < d->nbatch; i++)
    rdb_deliver(d, &d->batch[i]);
  d->nbatch = 0;
  d->busy = 0;
  if (d->closing)
    rdb_finish_close(d);
  else if (d->nqueue > 0)
    rdb_schedule(d);
}

/* Move the queue into the batch and send it to the threadpool. */
static void rdb_launch(kv_rocksdb_t *d) {
  size_t i;
  int rc;
  if (d->nqueue > d->batch_cap) {
    rdb_slot_t *b = kv_realloc(d->batch, d->queue_cap * sizeof(*b));
    if (b == NULL) {
      for (i = 0; i < d->nqueue; i++)
        kv_req_complete(d->queue[i], kv_req_set_error(d->queue[i], KV_ENOMEM,
                                                      "out of memory"));
      d->nqueue = 0;
      return;
    }
    d->batch = b;
    d->batch_cap = d->queue_cap;
  }
  for (i = 0; i < d->nqueue; i++) {
    rdb_slot_t *slot = &d->batch[i];
    memset(slot, 0, sizeof(*slot));
    slot->req = d->queue[i];
  }
  d->nbatch = d->nqueue;
  d->nqueue = 0;
  d->busy = 1;
  d->stats.batches++;
  rc = uv_queue_work(d->base.loop, &d->work, rdb_work_cb, rdb_after_work_cb);
  if (rc != 0) {
    d->busy = 0;
    for (i = 0; i < d->nbatch; i++)
      kv_req_complete(d->batch[i].req,
                      kv_req_set_error(d->batch[i].req, KV_EIO,
                                       "rocksdb: cannot queue work: %s",
                                       uv_strerror(rc)));
    d->nbatch = 0;
  }
}

/* Every op: queue it for the end of this loop turn. */
static int rdb_submit(kv_store_t *s, kv_req_t *req) {
  kv_rocksdb_t *d = (kv_rocksdb_t *)s;
  if (d->closing) return KV_ECLOSED;
  if (d->nqueue == d->queue_cap) {
    size_t cap = d->queue_cap ? d->queue_cap * 2 : 64;
    kv_req_t **q = kv_realloc(d->queue, cap * sizeof(*q));
    if (q == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
    d->queue = q;
    d->queue_cap = cap;
  }
  d->queue[d->nqueue++] = req;
  if (!d->busy) rdb_schedule(d);
  return 0;
}

static int rdb_ctl(kv_store_t *s, int op, void *arg) {
  kv_rocksdb_t *d = (kv_rocksdb_t *)s;
  if (op == KV_ROCKSDB_CTL_STATS && arg != NULL) {
    *(kv_rocksdb_stats_t *)arg = d->stats;
    return 0;
  }
  return KV_ENOTSUP;
}

/* ---- Handles ------------------------------------------------------------ */

/* mkdir -p with mode 0755. Returns 0 or an errno value; `buf` then holds
 * the prefix that could not be created. */
static int rdb_mkdirs(const char *path, char *buf, size_t buf_len) {
  size_t len = strlen(path), i;
  struct stat st;
  if (len + 1 > buf_len) return ENAMETOOLONG;
  memcpy(buf, path, len + 1);
  for (i = 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    if (buf[i - 1] == '/') continue;
    buf[i] = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return errno;
    if (i < len) buf[i] = '/';
  }
  if (stat(path, &st) != 0) return errno;
  if (!S_ISDIR(st.st_mode)) return ENOTDIR;
  return 0;
}

/* Check the format marker, writing it into an empty database. */
static int rdb_env_init(rdb_env_t *e, const char *path, char *errbuf,
                        size_t errbuf_len) {
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
  rocksdb_iterator_t *it;
  char *err = NULL, *val;
  size_t len = 0;
  int rc = 0, empty;
  val = rocksdb_get(e->db, ro, rdb_marker_key, sizeof(rdb_marker_key), &len,
                    &err);
  if (err != NULL) goto fail;
  if (val != NULL) {
    if (len != sizeof(rdb_marker_value) - 1 ||
        memcmp(val, rdb_marker_value, len) != 0)
      rc = kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                      "rocksdb: %s holds another format (marker \"%.*s\", "
                      "expected \"%s\")",
                      path, (int)(len > 40 ? 40 : len), val, rdb_marker_value);
    rocksdb_free(val);
    goto out;
  }
  it = rocksdb_create_iterator(e->db, ro);
  rocksdb_iter_seek_to_first(it);
  empty = !rocksdb_iter_valid(it);
  rocksdb_iter_get_error(it, &err);
  rocksdb_iter_destroy(it);
  if (err != NULL) goto fail;
  if (!empty) {
    rc = kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                    "rocksdb: %s is a RocksDB database of another program "
                    "(no \"%s\" marker)",
                    path, rdb_marker_value);
    goto out;
  }
  rocksdb_writeoptions_set_sync(wo, 1);
  rocksdb_put(e->db, wo, rdb_marker_key, sizeof(rdb_marker_key),
              rdb_marker_value, sizeof(rdb_marker_value) - 1, &err);
  if (err != NULL) goto fail;
  goto out;
fail:
  rc = kv__errbuf(errbuf, errbuf_len, rdb_map_err(err, 1), "rocksdb: %s: %s",
                  path, err);
  rocksdb_free(err);
out:
  rocksdb_readoptions_destroy(ro);
  rocksdb_writeoptions_destroy(wo);
  return rc;
}

static void rdb_sleep_ms(unsigned ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Open PATH, waiting up to lock_timeout ms while another process holds it.
 * Returns the handle or NULL with a detail in errbuf (*rc set). */
static rocksdb_t *rdb_open_wait(const char *path, int64_t lock_timeout,
                                uint64_t *retries, int *rc, char *errbuf,
                                size_t errbuf_len) {
  rocksdb_options_t *opts = rocksdb_options_create();
  uint64_t start = uv_hrtime();
  rocksdb_t *db = NULL;
  char *err = NULL;
  rocksdb_options_set_create_if_missing(opts, 1);
  /* Each open starts a new info LOG; keep a few, quietly. Only its header:
   * on a full disk a failed LOG write followed by a second log line trips an
   * assertion in RocksDB 7.8 (WritableFileWriter, Debian's build keeps
   * assertions) and aborts the process; errors reach the caller through
   * the requests' details instead (docs/faults.md). */
  rocksdb_options_set_info_log_level(opts, 5 /* HEADER */);
  rocksdb_options_set_keep_log_file_num(opts, 4);
  for (;;) {
    db = rocksdb_open(opts, path, &err);
    if (db != NULL) break;
    *rc = rdb_map_err(err, 1);
    if (*rc == KV_EBUSY &&
        (uv_hrtime() - start) / 1000000 < (uint64_t)lock_timeout) {
      rocksdb_free(err);
      err = NULL;
      (*retries)++;
      rdb_sleep_ms(RDB_LOCK_POLL_MS);
      continue;
    }
    if (*rc == KV_EBUSY)
      kv__errbuf(errbuf, errbuf_len, KV_EBUSY,
                 "rocksdb: %s is locked by another process (waited "
                 "lock_timeout=%lld ms): %s",
                 path, (long long)lock_timeout, err);
    else
      kv__errbuf(errbuf, errbuf_len, *rc, "rocksdb: %s: %s", path, err);
    rocksdb_free(err);
    break;
  }
  rocksdb_options_destroy(opts);
  return db;
}

/* Find or open the handle of directory `path`. */
static int rdb_env_acquire(const char *path, int64_t lock_timeout,
                           uint64_t *retries, rdb_env_t **out, char *errbuf,
                           size_t errbuf_len) {
  char buf[PATH_MAX];
  struct stat st;
  rdb_env_t *e;
  pid_t pid = getpid();
  int rc;
  rc = rdb_mkdirs(path, buf, sizeof(buf));
  if (rc != 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EIO,
                      "rocksdb: cannot create directory %s: %s", buf,
                      strerror(rc));
  if (stat(path, &st) != 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EIO, "rocksdb: %s: %s", path,
                      strerror(errno));
  pthread_mutex_lock(&rdb_envs_lock);
  for (e = rdb_envs; e != NULL; e = e->next) {
    if (e->dev == st.st_dev && e->ino == st.st_ino && e->pid == pid) break;
  }
  if (e != NULL) {
    e->refs++;
    pthread_mutex_unlock(&rdb_envs_lock);
    *out = e;
    return 0;
  }
  e = kv_calloc(1, sizeof(*e));
  if (e == NULL) {
    rc = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    goto unlock;
  }
  e->dev = st.st_dev;
  e->ino = st.st_ino;
  e->pid = pid;
  e->refs = 1;
  e->db = rdb_open_wait(path, lock_timeout, retries, &rc, errbuf, errbuf_len);
  if (e->db == NULL) goto fail;
  rc = rdb_env_init(e, path, errbuf, errbuf_len);
  if (rc != 0) goto fail;
  if (pthread_mutex_init(&e->batch_lock, NULL) != 0) {
    rc = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    goto fail;
  }
  e->next = rdb_envs;
  rdb_envs = e;
  pthread_mutex_unlock(&rdb_envs_lock);
  *out = e;
  return 0;
fail:
  if (e->db != NULL) rocksdb_close(e->db);
  kv_free(e);
unlock:
  pthread_mutex_unlock(&rdb_envs_lock);
  return rc;
}

static void rdb_env_release(rdb_env_t *e) {
  rdb_env_t **pp;
  pthread_mutex_lock(&rdb_envs_lock);
  if (--e->refs > 0) {
    pthread_mutex_unlock(&rdb_envs_lock);
    return;
  }
  for (pp = &rdb_envs; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == e) {
      *pp = e->next;
      break;
    }
  }
  pthread_mutex_unlock(&rdb_envs_lock);
  /* A forked child only drops its copy: the handle is its parent's. */
  if (e->pid == getpid()) rocksdb_close(e->db);
  pthread_mutex_destroy(&e->batch_lock);
  kv_free(e);
}

/* ---- Open and close ----------------------------------------------------- */

static int rdb_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                    size_t errbuf_len) {
  kv_rocksdb_t *d = (kv_rocksdb_t *)s;
  int64_t lock_timeout;
  int sync, rc;
  rc = kv_url_param_bool(url, "sync", 1, &sync, errbuf, errbuf_len);
  if (rc != 0) return rc;
  rc = kv_url_param_int(url, "lock_timeout", 0, INT_MAX, RDB_LOCK_DEFAULT,
                        &lock_timeout, errbuf, errbuf_len);
  if (rc != 0) return rc;
  if (url->target == NULL || url->target[0] == '\0')
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "rocksdb: the URL needs a directory: rocksdb://PATH");
  d->path = kv_strndup(url->target, strlen(url->target));
  if (d->path == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  rc = rdb_env_acquire(d->path, lock_timeout, &d->stats.open_retries, &d->env,
                       errbuf, errbuf_len);
  if (rc != 0) {
    kv_free(d->path);
    d->path = NULL;
    return rc;
  }
  d->ropts = rocksdb_readoptions_create();
  d->wopts = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(d->wopts, (unsigned char)sync);
  d->wbwi = rocksdb_writebatch_wi_create(0, 1 /* overwrite_keys */);
  /* Handles last: nothing after this can fail, and open failing must leave
   * nothing on the loop. */
  uv_idle_init(s->loop, &d->idle);
  uv_check_init(s->loop, &d->check);
  d->idle.data = d;
  d->check.data = d;
  d->work.data = d;
  return 0;
}

static void rdb_handle_closed(uv_handle_t *h) {
  kv_rocksdb_t *d = h->data;
  if (--d->nhandles > 0) return;
  kv_free(d->queue);
  kv_free(d->batch);
  kv_free(d->path);
  kv_free(d->w_rec);
  kv_free(d->w_keys);
  d->queue = NULL;
  d->batch = NULL;
  d->path = NULL;
  d->w_rec = NULL;
  d->w_keys = NULL;
  kv_store_closed(&d->base);
}

static void rdb_close_handles(kv_rocksdb_t *d) {
  d->nhandles = 2;
  uv_close((uv_handle_t *)&d->idle, rdb_handle_closed);
  uv_close((uv_handle_t *)&d->check, rdb_handle_closed);
}

/* Closing the last store of a path closes RocksDB, which waits for its
 * background work: on the threadpool, not on the loop. */
static void rdb_close_work_cb(uv_work_t *w) {
  kv_rocksdb_t *d = w->data;
  rdb_env_release(d->env);
  d->env = NULL;
}

static void rdb_close_after_cb(uv_work_t *w, int status) {
  (void)status;
  rdb_close_handles(w->data);
}

static void rdb_finish_close(kv_rocksdb_t *d) {
  rocksdb_writebatch_wi_destroy(d->wbwi);
  rocksdb_readoptions_destroy(d->ropts);
  rocksdb_writeoptions_destroy(d->wopts);
  d->wbwi = NULL;
  d->ropts = NULL;
  d->wopts = NULL;
  if (uv_queue_work(d->base.loop, &d->work, rdb_close_work_cb,
                    rdb_close_after_cb) != 0) {
    rdb_close_work_cb(&d->work);
    rdb_close_handles(d);
  }
}

/* Queued requests are canceled; a batch on the threadpool finishes and is
 * delivered, then the handle (closed with its last store) and the loop
 * handles are released. */
static void rdb_close(kv_store_t *s) {
  kv_rocksdb_t *d = (kv_rocksdb_t *)s;
  size_t i;
  d->closing = 1;
  uv_idle_stop(&d->idle);
  uv_check_stop(&d->check);
  d->scheduled = 0;
  for (i = 0; i < d->nqueue; i++)
    kv_req_complete(d->queue[i],
                    kv_req_set_error(d->queue[i], KV_ECANCELED,
                                     "rocksdb: store closed before the "
                                     "request started"));
  d->nqueue = 0;
  if (!d->busy) rdb_finish_close(d);
}

const kv_store_methods_t kv__rocksdb_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "rocksdb",
    .store_size = sizeof(kv_rocksdb_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT,
    .options = rdb_options,
    .open = rdb_open,
    .close = rdb_close,
    .get = rdb_submit,
    .ttl = rdb_submit,
    .put = rdb_submit,
    .del = rdb_submit,
    .get_many = rdb_submit,
    .ttl_many = rdb_submit,
    .put_many = rdb_submit,
    .delete_many = rdb_submit,
    .keys = rdb_submit,
    .collections = rdb_submit,
    .destroy = rdb_submit,
    .destroy_collection = rdb_submit,
    .cull = rdb_submit,
    .put_if_absent = rdb_submit,
    .cas = rdb_submit,
    .incr = rdb_submit,
    .take = rdb_submit,
    .ctl = rdb_ctl,
};
