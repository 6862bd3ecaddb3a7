/* disk:// — the embedded default store, on LMDB.
 *
 * Shape of the store:
 *
 *  - Requests are queued as they arrive. A uv_check_t (plus a no-op
 *    uv_idle_t so the loop does not block in poll meanwhile) launches the
 *    queue as one batch at the end of the loop turn. One batch per store is
 *    on the threadpool at a time; what arrives meanwhile forms the next one.
 *  - A batch runs in one LMDB transaction, ops in arrival order, so later
 *    ops see earlier writes and one commit (one fsync) covers many writes.
 *    A batch of reads only uses an MDB_RDONLY transaction.
 *  - The worker thread fills results into the requests with the allocator-
 *    only helpers (kv_req_give_value, kv_req_set_result); names of listings
 *    are kept in the batch slot and handed over on the loop. Completions
 *    happen on the loop, in the after-work callback.
 *  - When the transaction cannot finish (map full, another process grew the
 *    map, transaction too big, an LMDB error), it is aborted, the results of
 *    the ops it ran are dropped and the ops run again: after growing the
 *    map, or split so that the ops before the failing one commit and the
 *    failing one fails alone.
 *
 * On-disk format (version 1). The main database holds:
 *   "\0"                    → "kvio-disk 1" (the format marker)
 *   BE16(|C|) ‖ C ‖ K       → record
 * where C and K are the encoded collection and key: the name itself when it
 * has at most DISK_RAW_MAX bytes, else its first DISK_RAW_MAX bytes ‖ 0xFF ‖
 * SHA-256(name). 0xFF never occurs in UTF-8, so a raw name and a hashed one
 * never meet, and the length prefix makes (C, K) → key injective, so
 * (collection "a::b", key "c") and ("a", "b::c") are different entries.
 * Every internal key is at most 2 + 2 * 233 = 468 bytes (LMDB: 511).
 * A record is:
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <lmdb.h>

#include "disk_int.h"
#include "internal.h"
#include "kvio/disk.h"

#define DISK_RAW_MAX 200
#define DISK_ENC_MAX (DISK_RAW_MAX + 1 + KV__SHA256_LEN)
#define DISK_KEY_MAX (2 + 2 * DISK_ENC_MAX)
#define DISK_REC_VERSION 1
#define DISK_REC_HDR 10
#define DISK_F_CHASHED 0x01
#define DISK_F_KHASHED 0x02
#define DISK_MAP_DEFAULT ((int64_t)64 << 20)
#define DISK_MAP_MIN ((int64_t)64 << 10)
#define DISK_MAP_MAX ((int64_t)1 << 46)
#define DISK_FULL_SLACK ((uint64_t)1 << 20) /* "full": less free than this */
#define DISK_PAGE_DEFAULT 1000
#define DISK_MAX_RETRIES 48

static const char disk_marker_key[1] = {0};
static const char disk_marker_value[] = "kvio-disk 1";
/* The smallest possible entry key: every entry sorts at or after it, the
 * marker before it. */
static const unsigned char disk_first_key[2] = {0, 1};

/* ---- Shared environments --------------------------------------------------
 *
 * LMDB must not open one environment twice in a process (its POSIX locks
 * would be released by the second close), so stores on the same directory
 * share one disk_env_t, found by device and inode. `resize_lock` is held
 * shared around every transaction and exclusively to change the map size,
 * which LMDB allows only while this process has no transaction open.
 */
typedef struct disk_env_s {
  struct disk_env_s *next;
  dev_t dev;
  ino_t ino;
  pid_t pid; /* the process that opened it; a forked child must not use it */
  MDB_env *env;
  MDB_dbi dbi;
  unsigned refs;
  unsigned sync_flags;
  pthread_rwlock_t resize_lock;
} disk_env_t;

static pthread_mutex_t disk_envs_lock = PTHREAD_MUTEX_INITIALIZER;
static disk_env_t *disk_envs;

/* One request of a batch, with what the worker found out about it. */
typedef struct disk_slot_s {
  kv_req_t *req;
  int status;      /* the op's outcome: 0 or a KV_E* code */
  int mdb_rc;      /* the LMDB or errno code behind status, or 0 */
  const char *msg; /* static detail text for status, or NULL */
  char *names;     /* keys/collections: BE16 len ‖ bytes, repeated */
  size_t names_len;
  size_t names_cap;
  char *cursor; /* keys/collections: the next page's cursor, or NULL */
} disk_slot_t;

typedef struct kv_disk_s {
  kv_store_t base;
  disk_env_t *denv;
  char *path;
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
  disk_slot_t *batch; /* the batch on the threadpool (worker-owned then) */
  size_t nbatch;
  size_t batch_cap;
  int batch_rdonly;
  /* Written by the worker, read on the loop in the after-work callback. */
  uint64_t w_write_txns;
  uint64_t w_read_txns;
  uint64_t w_grows;
  uint64_t w_map_size;
  kv_disk_stats_t stats;
} kv_disk_t;

/* A transaction in progress on the worker. */
typedef struct disk_txn_s {
  MDB_txn *txn;
  MDB_dbi dbi;
  int64_t now; /* read time: what expiry is checked against */
} disk_txn_t;

/* An internal key being built: the collection prefix once, then each key. */
typedef struct disk_key_s {
  unsigned char buf[DISK_KEY_MAX];
  size_t prefix_len; /* BE16 ‖ encoded collection */
  size_t len;
  unsigned flags; /* DISK_F_* for a record written under this key */
} disk_key_t;

/* A parsed record (disk_int.h). Pointers into the LMDB value: valid until
 * the transaction ends or the entry is written. */
typedef kv__disk_rec_t disk_rec_t;

enum { DISK_ABSENT, DISK_EXPIRED, DISK_LIVE, DISK_BAD };

static const char *const disk_options[] = {"sync", "map_size", "max_readers",
                                           NULL};

/* ---- Small helpers ------------------------------------------------------ */

static int disk_errbuf(char *errbuf, size_t errbuf_len, int err,
                       const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int disk_errbuf(char *errbuf, size_t errbuf_len, int err,
                       const char *fmt, ...) {
  va_list ap;
  if (errbuf == NULL || errbuf_len == 0) return err;
  va_start(ap, fmt);
  vsnprintf(errbuf, errbuf_len, fmt, ap);
  va_end(ap);
  return err;
}

/* The kvio code for an LMDB (or errno) code. */
static int disk_map_err(int rc) {
  switch (rc) {
  case MDB_INVALID:
  case MDB_VERSION_MISMATCH:
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
  case MDB_INCOMPATIBLE:
    return KV_ECORRUPT;
  case MDB_TXN_FULL:
  case MDB_BAD_VALSIZE:
    return KV_ETOOBIG;
  case MDB_READERS_FULL:
    return KV_EBUSY;
  case ENOMEM:
    return KV_ENOMEM;
  case MDB_MAP_FULL:
    return KV_EIO; /* the map could not grow further */
  }
  return rc > 0 ? KV_EIO : KV_EBACKEND;
}

static void disk_be16(unsigned char *p, size_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

static size_t disk_get_be16(const unsigned char *p) {
  return ((size_t)p[0] << 8) | p[1];
}

static void disk_be64(unsigned char *p, int64_t v) {
  uint64_t u = (uint64_t)v;
  int i;
  for (i = 7; i >= 0; i--) {
    p[i] = (unsigned char)u;
    u >>= 8;
  }
}

static int64_t disk_get_be64(const unsigned char *p) {
  uint64_t u = 0;
  int i;
  for (i = 0; i < 8; i++)
    u = (u << 8) | p[i];
  return (int64_t)u;
}

/* ---- Names and keys ----------------------------------------------------- */

/* Encode a name (see the format above). `out` holds DISK_ENC_MAX bytes.
 * Returns the encoded length; *hashed says whether the name was hashed. */
static size_t disk_encode(const char *name, size_t len, unsigned char *out,
                          int *hashed) {
  if (len <= DISK_RAW_MAX) {
    memcpy(out, name, len);
    *hashed = 0;
    return len;
  }
  memcpy(out, name, DISK_RAW_MAX);
  out[DISK_RAW_MAX] = 0xFF;
  kv__sha256(name, len, out + DISK_RAW_MAX + 1);
  *hashed = 1;
  return DISK_ENC_MAX;
}

static void disk_key_init(disk_key_t *k, const char *coll, size_t coll_len) {
  int hashed;
  size_t n = disk_encode(coll, coll_len, k->buf + 2, &hashed);
  disk_be16(k->buf, n);
  k->prefix_len = 2 + n;
  k->len = k->prefix_len;
  k->flags = hashed ? DISK_F_CHASHED : 0;
}

static void disk_key_set(disk_key_t *k, const char *key, size_t key_len) {
  int hashed;
  size_t n = disk_encode(key, key_len, k->buf + k->prefix_len, &hashed);
  k->len = k->prefix_len + n;
  k->flags = (k->flags & DISK_F_CHASHED) | (hashed ? DISK_F_KHASHED : 0);
}

/* Whether an LMDB key is an entry key (not the marker, not foreign), and
 * its prefix length (BE16 ‖ encoded collection). */
static int disk_entry_key(const MDB_val *k, size_t *prefix_len) {
  const unsigned char *p = k->mv_data;
  size_t n;
  if (k->mv_size < 4) return 0;
  n = disk_get_be16(p);
  if (n == 0 || n > DISK_ENC_MAX || 2 + n >= k->mv_size) return 0;
  *prefix_len = 2 + n;
  return 1;
}

static int disk_has_prefix(const MDB_val *k, const unsigned char *prefix,
                           size_t len) {
  return k->mv_size > len && memcmp(k->mv_data, prefix, len) == 0;
}

/* Parse a record; 0, or KV_ECORRUPT for bytes that are no record. */
int kv__disk_rec_parse(const void *data, size_t size, kv__disk_rec_t *r) {
  const unsigned char *p = data;
  size_t off = DISK_REC_HDR;
  if (size < DISK_REC_HDR || p[0] != DISK_REC_VERSION ||
      (p[1] & ~(DISK_F_CHASHED | DISK_F_KHASHED)) != 0)
    return KV_ECORRUPT;
  r->flags = p[1];
  r->expires_at = disk_get_be64(p + 2);
  r->coll = NULL;
  r->coll_len = 0;
  r->key = NULL;
  r->key_len = 0;
  if (r->flags & DISK_F_CHASHED) {
    if (size < off + 2) return KV_ECORRUPT;
    r->coll_len = disk_get_be16(p + off);
    off += 2;
  }
  if (r->flags & DISK_F_KHASHED) {
    if (size < off + 2) return KV_ECORRUPT;
    r->key_len = disk_get_be16(p + off);
    off += 2;
  }
  if (size - off < r->coll_len + r->key_len) return KV_ECORRUPT;
  if (r->flags & DISK_F_CHASHED) r->coll = (const char *)p + off;
  off += r->coll_len;
  if (r->flags & DISK_F_KHASHED) r->key = (const char *)p + off;
  off += r->key_len;
  r->value = (const char *)p + off;
  r->value_len = size - off;
  return 0;
}

static int disk_rec_parse(const MDB_val *v, disk_rec_t *r) {
  return kv__disk_rec_parse(v->mv_data, v->mv_size, r);
}

/* Write a record under k. The value is written straight into the map
 * (MDB_RESERVE). Returns an LMDB code. */
static int disk_rec_put(disk_txn_t *t, const disk_key_t *k, const char *coll,
                        size_t coll_len, const char *key, size_t key_len,
                        const void *value, size_t value_len,
                        int64_t expires_at) {
  MDB_val mk, mv;
  unsigned char *p;
  size_t off = DISK_REC_HDR;
  int rc;
  mv.mv_size = DISK_REC_HDR + value_len;
  if (k->flags & DISK_F_CHASHED) mv.mv_size += 2 + coll_len;
  if (k->flags & DISK_F_KHASHED) mv.mv_size += 2 + key_len;
  mv.mv_data = NULL;
  mk.mv_size = k->len;
  mk.mv_data = (void *)k->buf;
  rc = mdb_put(t->txn, t->dbi, &mk, &mv, MDB_RESERVE);
  if (rc != 0) return rc;
  p = mv.mv_data;
  p[0] = DISK_REC_VERSION;
  p[1] = (unsigned char)k->flags;
  disk_be64(p + 2, expires_at);
  if (k->flags & DISK_F_CHASHED) {
    disk_be16(p + off, coll_len);
    off += 2;
  }
  if (k->flags & DISK_F_KHASHED) {
    disk_be16(p + off, key_len);
    off += 2;
  }
  if (k->flags & DISK_F_CHASHED) {
    memcpy(p + off, coll, coll_len);
    off += coll_len;
  }
  if (k->flags & DISK_F_KHASHED) {
    memcpy(p + off, key, key_len);
    off += key_len;
  }
  if (value_len > 0) memcpy(p + off, value, value_len);
  return 0;
}

/* Look k up. *state is DISK_ABSENT, DISK_EXPIRED, DISK_LIVE or DISK_BAD;
 * *rec is filled for EXPIRED and LIVE. Returns an LMDB code (not
 * MDB_NOTFOUND). */
static int disk_lookup(disk_txn_t *t, const disk_key_t *k, disk_rec_t *rec,
                       int *state) {
  MDB_val mk, mv;
  int rc;
  mk.mv_size = k->len;
  mk.mv_data = (void *)k->buf;
  rc = mdb_get(t->txn, t->dbi, &mk, &mv);
  if (rc == MDB_NOTFOUND) {
    *state = DISK_ABSENT;
    return 0;
  }
  if (rc != 0) return rc;
  if (disk_rec_parse(&mv, rec) != 0)
    *state = DISK_BAD;
  else if (KV_EXPIRED(rec->expires_at, t->now))
    *state = DISK_EXPIRED;
  else
    *state = DISK_LIVE;
  return 0;
}

static int disk_del_key(disk_txn_t *t, const disk_key_t *k) {
  MDB_val mk;
  int rc;
  mk.mv_size = k->len;
  mk.mv_data = (void *)k->buf;
  rc = mdb_del(t->txn, t->dbi, &mk, NULL);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- Slots -------------------------------------------------------------- */

static void disk_slot_error(disk_slot_t *slot, int status, const char *msg) {
  slot->status = status;
  slot->msg = msg;
}

static void disk_slot_fail(disk_slot_t *slot, int mdb_rc) {
  slot->status = disk_map_err(mdb_rc);
  slot->mdb_rc = mdb_rc;
  slot->msg = mdb_rc == MDB_MAP_FULL ? "the map cannot grow further" : NULL;
}

/* Drop what an op produced, so that it can run again in a new transaction.
 * The result helpers allocate with kv_malloc (kvio/backend.h) and the
 * request is still ours, so freeing here is the mirror of kv_req_cleanup
 * for the fields this store sets. */
static void disk_slot_reset(disk_slot_t *slot) {
  kv_req_t *req = slot->req;
  size_t i;
  slot->status = 0;
  slot->mdb_rc = 0;
  slot->msg = NULL;
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

/* Append a name to the slot's list. 0 or KV_ENOMEM. */
static int disk_slot_add_name(disk_slot_t *slot, const char *name, size_t len) {
  size_t need = slot->names_len + 2 + len;
  if (need > slot->names_cap) {
    size_t cap = slot->names_cap ? slot->names_cap * 2 : 4096;
    char *p;
    while (cap < need)
      cap *= 2;
    p = kv_realloc(slot->names, cap);
    if (p == NULL) return KV_ENOMEM;
    slot->names = p;
    slot->names_cap = cap;
  }
  disk_be16((unsigned char *)slot->names + slot->names_len, len);
  memcpy(slot->names + slot->names_len + 2, name, len);
  slot->names_len = need;
  return 0;
}

static const char disk_hex[] = "0123456789abcdef";

/* "<tag><hex of bytes>", kv_malloc'ed; NULL when out of memory. */
static char *disk_cursor_make(char tag, const unsigned char *p, size_t len) {
  char *s = kv_malloc(2 * len + 2);
  size_t i;
  if (s == NULL) return NULL;
  s[0] = tag;
  for (i = 0; i < len; i++) {
    s[1 + 2 * i] = disk_hex[p[i] >> 4];
    s[2 + 2 * i] = disk_hex[p[i] & 15];
  }
  s[1 + 2 * len] = '\0';
  return s;
}

static int disk_hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decode a cursor made by disk_cursor_make into out[DISK_KEY_MAX].
 * Returns the length, or 0 when it is not such a cursor. */
static size_t disk_cursor_parse(const char *s, char tag, unsigned char *out) {
  size_t n = strlen(s), i;
  if (n < 3 || s[0] != tag || (n - 1) % 2 != 0 || (n - 1) / 2 > DISK_KEY_MAX)
    return 0;
  for (i = 0; i < (n - 1) / 2; i++) {
    int hi = disk_hexval(s[1 + 2 * i]), lo = disk_hexval(s[2 + 2 * i]);
    if (hi < 0 || lo < 0) return 0;
    out[i] = (unsigned char)(hi << 4 | lo);
  }
  return (n - 1) / 2;
}

/* ---- Operations (worker thread) ----------------------------------------
 *
 * Each returns an LMDB code: 0 when the op ran (its own outcome, such as
 * KV_ECONFLICT, is in the slot), anything else when the transaction failed
 * and must be aborted.
 */

/* Copy a value into req->value. */
static void disk_give_value(disk_slot_t *slot, const disk_rec_t *rec) {
  char *buf = kv_malloc(rec->value_len + 1);
  if (buf == NULL) {
    disk_slot_error(slot, KV_ENOMEM, "out of memory");
    return;
  }
  if (rec->value_len > 0) memcpy(buf, rec->value, rec->value_len);
  buf[rec->value_len] = '\0';
  kv_req_give_value(slot->req, buf, rec->value_len);
}

static int disk_do_get(disk_txn_t *t, disk_slot_t *slot, int take) {
  kv_req_t *req = slot->req;
  disk_key_t k;
  disk_rec_t rec;
  int rc, state;
  disk_key_init(&k, req->in.collection, req->in.collection_len);
  disk_key_set(&k, req->in.key, req->in.key_len);
  rc = disk_lookup(t, &k, &rec, &state);
  if (rc != 0) return rc;
  if (state == DISK_BAD) {
    disk_slot_error(slot, KV_ECORRUPT, "unreadable record");
    return 0;
  }
  if (state == DISK_LIVE) {
    disk_give_value(slot, &rec);
    if (slot->status != 0) return 0;
    if (req->op == KV_OP_TTL)
      req->ttl = kv_remaining_ttl(rec.expires_at, t->now);
  }
  if (take && state != DISK_ABSENT) return disk_del_key(t, &k);
  return 0;
}

static int disk_do_put(disk_txn_t *t, disk_slot_t *slot) {
  kv_req_t *req = slot->req;
  disk_key_t k;
  disk_key_init(&k, req->in.collection, req->in.collection_len);
  disk_key_set(&k, req->in.key, req->in.key_len);
  return disk_rec_put(t, &k, req->in.collection, req->in.collection_len,
                      req->in.key, req->in.key_len, req->in.value.base,
                      req->in.value.len, req->in.expires_at_ms);
}

/* Delete one key of k's collection; *removed += 1 if it was live. */
static int disk_delete_one(disk_txn_t *t, disk_key_t *k, const char *key,
                           size_t key_len, size_t *removed) {
  disk_rec_t rec;
  int rc, state;
  disk_key_set(k, key, key_len);
  rc = disk_lookup(t, k, &rec, &state);
  if (rc != 0 || state == DISK_ABSENT) return rc;
  if (state == DISK_LIVE) (*removed)++;
  return disk_del_key(t, k);
}

static int disk_do_delete(disk_txn_t *t, disk_slot_t *slot) {
  kv_req_t *req = slot->req;
  disk_key_t k;
  size_t removed = 0, i;
  int rc;
  disk_key_init(&k, req->in.collection, req->in.collection_len);
  if (req->op == KV_OP_DELETE) {
    rc = disk_delete_one(t, &k, req->in.key, req->in.key_len, &removed);
    req->found = removed > 0;
    return rc;
  }
  for (i = 0; i < req->in.n; i++) {
    rc = disk_delete_one(t, &k, req->in.keys[i].base, req->in.keys[i].len,
                         &removed);
    if (rc != 0) return rc;
  }
  req->count = removed;
  return 0;
}

static int disk_do_get_many(disk_txn_t *t, disk_slot_t *slot) {
  kv_req_t *req = slot->req;
  disk_key_t k;
  disk_rec_t rec;
  size_t i;
  int rc, state;
  if (kv_req_alloc_results(req) != 0) {
    disk_slot_error(slot, KV_ENOMEM, "out of memory");
    return 0;
  }
  disk_key_init(&k, req->in.collection, req->in.collection_len);
  for (i = 0; i < req->in.n; i++) {
    disk_key_set(&k, req->in.keys[i].base, req->in.keys[i].len);
    rc = disk_lookup(t, &k, &rec, &state);
    if (rc != 0) return rc;
    if (state == DISK_BAD) {
      disk_slot_error(slot, KV_ECORRUPT, "unreadable record");
      return 0;
    }
    if (state != DISK_LIVE) continue;
    if (kv_req_set_result(req, i, rec.value, rec.value_len,
                          kv_remaining_ttl(rec.expires_at, t->now)) != 0) {
      disk_slot_error(slot, KV_ENOMEM, "out of memory");
      return 0;
    }
  }
  return 0;
}

static int disk_do_put_many(disk_txn_t *t, disk_slot_t *slot) {
  kv_req_t *req = slot->req;
  disk_key_t k;
  size_t i;
  int rc;
  disk_key_init(&k, req->in.collection, req->in.collection_len);
  for (i = 0; i < req->in.n; i++) {
    disk_key_set(&k, req->in.keys[i].base, req->in.keys[i].len);
    rc = disk_rec_put(t, &k, req->in.collection, req->in.collection_len,
                      req->in.keys[i].base, req->in.keys[i].len,
                      req->in.values[i].base, req->in.values[i].len,
                      req->in.expires_at_ms);
    if (rc != 0) return rc; /* the transaction aborts: all or nothing */
  }
  return 0;
}

/* put_if_absent, cas, incr: read, decide, write, all in the transaction. */
static int disk_do_atomic(disk_txn_t *t, disk_slot_t *slot) {
  kv_req_t *req = slot->req;
  disk_key_t k;
  disk_rec_t rec;
  int rc, state;
  disk_key_init(&k, req->in.collection, req->in.collection_len);
  disk_key_set(&k, req->in.key, req->in.key_len);
  rc = disk_lookup(t, &k, &rec, &state);
  if (rc != 0) return rc;
  if (state == DISK_BAD && req->op != KV_OP_PUT_IF_ABSENT) {
    disk_slot_error(slot, KV_ECORRUPT, "unreadable record");
    return 0;
  }
  switch (req->op) {
  case KV_OP_PUT_IF_ABSENT:
    if (state == DISK_LIVE) return 0; /* found = 0: not stored */
    req->found = 1;
    return disk_do_put(t, slot);
  case KV_OP_CAS:
    if (req->in.expected_absent
            ? state == DISK_LIVE
            : (state != DISK_LIVE || rec.value_len != req->in.expected.len ||
               (rec.value_len > 0 && memcmp(rec.value, req->in.expected.base,
                                            rec.value_len) != 0))) {
      disk_slot_error(slot, KV_ECONFLICT,
                      req->in.expected_absent
                          ? "the key holds a value"
                          : "the value differs from the expected one");
      return 0;
    }
    req->found = 1;
    return disk_do_put(t, slot);
  default: { /* KV_OP_INCR */
    int64_t cur = 0, next, expires_at = req->in.expires_at_ms;
    char text[32];
    size_t len;
    if (state == DISK_LIVE) {
      if (kv_parse_int64(rec.value, rec.value_len, &cur) != 0) {
        disk_slot_error(slot, KV_EINVAL, "the value is not a decimal integer");
        return 0;
      }
      expires_at = rec.expires_at; /* an existing entry keeps its TTL */
    }
    if (__builtin_add_overflow(cur, req->in.delta, &next)) {
      disk_slot_error(slot, KV_EINVAL, "integer overflow");
      return 0;
    }
    len = kv_format_int64(next, text);
    req->number = next;
    return disk_rec_put(t, &k, req->in.collection, req->in.collection_len,
                        req->in.key, req->in.key_len, text, len, expires_at);
  }
  }
}

static int disk_do_keys(disk_txn_t *t, disk_slot_t *slot) {
  kv_req_t *req = slot->req;
  size_t limit = req->in.limit ? req->in.limit : DISK_PAGE_DEFAULT;
  size_t n = 0, prefix_len, last_len = 0;
  unsigned char start[DISK_KEY_MAX], last[DISK_KEY_MAX];
  disk_key_t k;
  MDB_cursor *c;
  MDB_val mk, mv;
  disk_rec_t rec;
  int rc, more = 0;
  disk_key_init(&k, req->in.collection, req->in.collection_len);
  prefix_len = k.prefix_len;
  mk.mv_data = k.buf;
  mk.mv_size = prefix_len;
  if (req->in.cursor != NULL) {
    mk.mv_size = disk_cursor_parse(req->in.cursor, 'k', start);
    mk.mv_data = start;
    if (mk.mv_size == 0 || !disk_has_prefix(&mk, k.buf, prefix_len)) {
      disk_slot_error(slot, KV_EINVAL, "invalid cursor for this collection");
      return 0;
    }
  }
  rc = mdb_cursor_open(t->txn, t->dbi, &c);
  if (rc != 0) return rc;
  {
    MDB_val want = mk;
    rc = mdb_cursor_get(c, &mk, &mv, MDB_SET_RANGE);
    /* Resume after the cursor's key, not at it. */
    if (rc == 0 && req->in.cursor != NULL && mk.mv_size == want.mv_size &&
        memcmp(mk.mv_data, want.mv_data, want.mv_size) == 0)
      rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT);
  }
  for (; rc == 0 && disk_has_prefix(&mk, k.buf, prefix_len);
       rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT)) {
    if (disk_rec_parse(&mv, &rec) != 0 || KV_EXPIRED(rec.expires_at, t->now))
      continue;
    if (n == limit) {
      more = 1;
      break;
    }
    if (rec.flags & DISK_F_KHASHED)
      rc = disk_slot_add_name(slot, rec.key, rec.key_len);
    else
      rc = disk_slot_add_name(slot, (const char *)mk.mv_data + prefix_len,
                              mk.mv_size - prefix_len);
    if (rc != 0) {
      mdb_cursor_close(c);
      disk_slot_error(slot, KV_ENOMEM, "out of memory");
      return 0;
    }
    memcpy(last, mk.mv_data, mk.mv_size);
    last_len = mk.mv_size;
    n++;
  }
  mdb_cursor_close(c);
  if (rc != 0 && rc != MDB_NOTFOUND && !more) return rc;
  if (more && (slot->cursor = disk_cursor_make('k', last, last_len)) == NULL)
    disk_slot_error(slot, KV_ENOMEM, "out of memory");
  return 0;
}

/* The smallest key after every key that starts with p[0..len): p + 1. */
static size_t disk_successor(unsigned char *p, size_t len) {
  while (len > 0 && p[len - 1] == 0xFF)
    len--;
  if (len > 0) p[len - 1]++;
  return len;
}

static int disk_do_collections(disk_txn_t *t, disk_slot_t *slot) {
  kv_req_t *req = slot->req;
  size_t limit = req->in.limit ? req->in.limit : DISK_PAGE_DEFAULT;
  size_t n = 0, plen = 0, last_len = 0;
  unsigned char start[DISK_KEY_MAX], prefix[DISK_KEY_MAX], last[DISK_KEY_MAX];
  MDB_cursor *c;
  MDB_val mk, mv;
  disk_rec_t rec;
  int rc, more = 0;
  mk.mv_data = start;
  if (req->in.cursor != NULL) {
    mk.mv_size = disk_cursor_parse(req->in.cursor, 'c', start);
    if (mk.mv_size < 3 || 2 + disk_get_be16(start) != mk.mv_size) {
      disk_slot_error(slot, KV_EINVAL, "invalid cursor");
      return 0;
    }
    mk.mv_size = disk_successor(start, mk.mv_size);
  } else {
    memcpy(start, disk_first_key, sizeof(disk_first_key));
    mk.mv_size = sizeof(disk_first_key);
  }
  rc = mdb_cursor_open(t->txn, t->dbi, &c);
  if (rc != 0) return rc;
  rc = mdb_cursor_get(c, &mk, &mv, MDB_SET_RANGE);
  while (rc == 0) {
    int live = 0;
    if (!disk_entry_key(&mk, &plen)) {
      rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT);
      continue;
    }
    memcpy(prefix, mk.mv_data, plen);
    /* A collection is listed only while it holds a live entry. */
    for (; rc == 0 && disk_has_prefix(&mk, prefix, plen);
         rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT)) {
      if (disk_rec_parse(&mv, &rec) == 0 &&
          !KV_EXPIRED(rec.expires_at, t->now)) {
        live = 1;
        break;
      }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) break;
    if (live) {
      if (n == limit) {
        more = 1;
        break;
      }
      if (rec.flags & DISK_F_CHASHED)
        rc = disk_slot_add_name(slot, rec.coll, rec.coll_len);
      else
        rc = disk_slot_add_name(slot, (const char *)prefix + 2, plen - 2);
      if (rc != 0) {
        mdb_cursor_close(c);
        disk_slot_error(slot, KV_ENOMEM, "out of memory");
        return 0;
      }
      memcpy(last, prefix, plen);
      last_len = plen;
      n++;
    }
    mk.mv_data = prefix;
    mk.mv_size = disk_successor(prefix, plen);
    rc = mdb_cursor_get(c, &mk, &mv, MDB_SET_RANGE);
  }
  mdb_cursor_close(c);
  if (rc != 0 && rc != MDB_NOTFOUND && !more) return rc;
  if (more && (slot->cursor = disk_cursor_make('c', last, last_len)) == NULL)
    disk_slot_error(slot, KV_ENOMEM, "out of memory");
  return 0;
}

/* Delete entries from `from` on: all of them while they start with prefix
 * (destroy_collection), or the expired ones anywhere (prefix NULL: cull). */
static int disk_sweep(disk_txn_t *t, const unsigned char *from, size_t from_len,
                      const unsigned char *prefix, size_t prefix_len,
                      size_t *removed) {
  MDB_cursor *c;
  MDB_val mk, mv;
  disk_rec_t rec;
  size_t plen;
  int rc;
  rc = mdb_cursor_open(t->txn, t->dbi, &c);
  if (rc != 0) return rc;
  mk.mv_data = (void *)from;
  mk.mv_size = from_len;
  for (rc = mdb_cursor_get(c, &mk, &mv, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT)) {
    if (prefix != NULL) {
      if (!disk_has_prefix(&mk, prefix, prefix_len)) break;
    } else if (!disk_entry_key(&mk, &plen) || disk_rec_parse(&mv, &rec) != 0 ||
               !KV_EXPIRED(rec.expires_at, t->now)) {
      continue; /* keep live entries, the marker and unknown data */
    }
    /* After a delete the cursor sits on the next entry; MDB_NEXT then
     * returns that one (LMDB's C_DEL), so nothing is skipped. */
    rc = mdb_cursor_del(c, 0);
    if (rc != 0) break;
    (*removed)++;
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

static int disk_put_marker(disk_txn_t *t) {
  MDB_val mk, mv;
  mk.mv_data = (void *)disk_marker_key;
  mk.mv_size = sizeof(disk_marker_key);
  mv.mv_data = (void *)disk_marker_value;
  mv.mv_size = sizeof(disk_marker_value) - 1;
  return mdb_put(t->txn, t->dbi, &mk, &mv, 0);
}

static int disk_exec(disk_txn_t *t, disk_slot_t *slot) {
  kv_req_t *req = slot->req;
  size_t removed = 0;
  int rc;
  switch (req->op) {
  case KV_OP_GET:
  case KV_OP_TTL:
    return disk_do_get(t, slot, 0);
  case KV_OP_TAKE:
    return disk_do_get(t, slot, 1);
  case KV_OP_PUT:
    return disk_do_put(t, slot);
  case KV_OP_DELETE:
  case KV_OP_DELETE_MANY:
    return disk_do_delete(t, slot);
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
    return disk_do_get_many(t, slot);
  case KV_OP_PUT_MANY:
    return disk_do_put_many(t, slot);
  case KV_OP_PUT_IF_ABSENT:
  case KV_OP_CAS:
  case KV_OP_INCR:
    return disk_do_atomic(t, slot);
  case KV_OP_KEYS:
    return disk_do_keys(t, slot);
  case KV_OP_COLLECTIONS:
    return disk_do_collections(t, slot);
  case KV_OP_DESTROY:
    rc = mdb_drop(t->txn, t->dbi, 0);
    return rc != 0 ? rc : disk_put_marker(t);
  case KV_OP_DESTROY_COLLECTION: {
    disk_key_t k;
    disk_key_init(&k, req->in.collection, req->in.collection_len);
    rc = disk_sweep(t, k.buf, k.prefix_len, k.buf, k.prefix_len, &removed);
    req->count = removed;
    return rc;
  }
  case KV_OP_CULL:
    rc = disk_sweep(t, disk_first_key, sizeof(disk_first_key), NULL, 0,
                    &removed);
    req->count = removed;
    return rc;
  default:
    disk_slot_error(slot, KV_ENOTSUP, "operation not supported");
    return 0;
  }
}

static int disk_op_is_read(kv_op_t op) {
  return op == KV_OP_GET || op == KV_OP_TTL || op == KV_OP_GET_MANY ||
         op == KV_OP_TTL_MANY || op == KV_OP_KEYS || op == KV_OP_COLLECTIONS;
}

/* ---- Batches (worker thread) -------------------------------------------- */

/* Run slots [lo, hi) in one transaction. Returns an LMDB code; on failure
 * *at is the slot that failed, or hi when the whole transaction did (begin
 * or commit). */
static int disk_txn_run(kv_disk_t *d, size_t lo, size_t hi, size_t *at) {
  disk_env_t *e = d->denv;
  disk_txn_t t;
  size_t i;
  int rc;
  *at = hi;
  pthread_rwlock_rdlock(&e->resize_lock);
  rc = mdb_txn_begin(e->env, NULL, d->batch_rdonly ? MDB_RDONLY : 0, &t.txn);
  if (rc != 0) goto out;
  t.dbi = e->dbi;
  t.now = kv_now_ms();
  for (i = lo; i < hi; i++) {
    rc = disk_exec(&t, &d->batch[i]);
    if (rc != 0) {
      mdb_txn_abort(t.txn);
      *at = i;
      goto out;
    }
  }
  if (d->batch_rdonly) {
    mdb_txn_abort(t.txn);
    d->w_read_txns++;
  } else {
    rc = mdb_txn_commit(t.txn);
    if (rc == 0) d->w_write_txns++;
  }
out:
  pthread_rwlock_unlock(&e->resize_lock);
  return rc;
}

/* Double the map. LMDB needs no transaction of this process open. */
static int disk_grow(kv_disk_t *d) {
  disk_env_t *e = d->denv;
  MDB_envinfo info;
  int rc;
  pthread_rwlock_wrlock(&e->resize_lock);
  rc = mdb_env_info(e->env, &info);
  if (rc == 0) {
    if (info.me_mapsize > (size_t)DISK_MAP_MAX / 2)
      rc = MDB_MAP_FULL;
    else
      rc = mdb_env_set_mapsize(e->env, info.me_mapsize * 2);
  }
  pthread_rwlock_unlock(&e->resize_lock);
  if (rc == 0) d->w_grows++;
  return rc;
}

/* Another process grew the map: adopt its size. */
static int disk_adopt_size(kv_disk_t *d) {
  disk_env_t *e = d->denv;
  int rc;
  pthread_rwlock_wrlock(&e->resize_lock);
  rc = mdb_env_set_mapsize(e->env, 0);
  pthread_rwlock_unlock(&e->resize_lock);
  return rc;
}

/* LMDB reports a short write as EIO ("short write, filesystem full?"): tell
 * a full file system (ENOSPC) and a file past RLIMIT_FSIZE (EFBIG) apart, so
 * that the detail says why. Worker thread. */
static int disk_diagnose_eio(kv_disk_t *d) {
  struct statvfs vfs;
  struct rlimit rl;
  struct stat st;
  char file[PATH_MAX];
  if (statvfs(d->path, &vfs) == 0 &&
      (uint64_t)vfs.f_bavail * vfs.f_frsize < DISK_FULL_SLACK)
    return ENOSPC;
  snprintf(file, sizeof(file), "%s/data.mdb", d->path);
  if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      stat(file, &st) == 0 &&
      (uint64_t)st.st_size + DISK_FULL_SLACK > (uint64_t)rl.rlim_cur)
    return EFBIG;
  return EIO;
}

static void disk_work_cb(uv_work_t *w) {
  kv_disk_t *d = w->data;
  size_t n = d->nbatch, lo = 0, hi = n, at, i;
  unsigned tries = 0;
  MDB_envinfo info;
  int rc;
  while (lo < n) {
    rc = disk_txn_run(d, lo, hi, &at);
    if (rc == 0) {
      lo = hi;
      hi = n;
      tries = 0;
      continue;
    }
    for (i = lo; i < (at < hi ? at + 1 : hi); i++)
      disk_slot_reset(&d->batch[i]);
    if ((rc == MDB_MAP_FULL || rc == MDB_MAP_RESIZED) &&
        tries++ < DISK_MAX_RETRIES &&
        (rc == MDB_MAP_FULL ? disk_grow(d) : disk_adopt_size(d)) == 0)
      continue; /* the same slots again, in a bigger map */
    if (at > lo && at < hi) {
      hi = at; /* commit the slots before the failing one first */
      continue;
    }
    if (rc == EIO) rc = disk_diagnose_eio(d);
    if (at < hi) {
      disk_slot_fail(&d->batch[at], rc); /* it fails alone */
      lo = at + 1;
    } else {
      for (i = lo; i < hi; i++)
        disk_slot_fail(&d->batch[i], rc);
      lo = hi;
    }
    hi = n;
    tries = 0;
  }
  if (mdb_env_info(d->denv->env, &info) == 0) d->w_map_size = info.me_mapsize;
}

/* ---- Loop side ---------------------------------------------------------- */

static void disk_idle_cb(uv_idle_t *h) {
  (void)h; /* only here to keep the loop from blocking before check runs */
}

static void disk_launch(kv_disk_t *d);

static void disk_check_cb(uv_check_t *h) {
  kv_disk_t *d = h->data;
  uv_idle_stop(&d->idle);
  uv_check_stop(&d->check);
  d->scheduled = 0;
  if (!d->busy && d->nqueue > 0) disk_launch(d);
}

/* Launch the queue at the end of this loop turn. */
static void disk_schedule(kv_disk_t *d) {
  if (d->scheduled) return;
  d->scheduled = 1;
  uv_idle_start(&d->idle, disk_idle_cb);
  uv_check_start(&d->check, disk_check_cb);
}

static void disk_deliver(kv_disk_t *d, disk_slot_t *slot) {
  kv_req_t *req = slot->req;
  int status = slot->status;
  size_t off = 0, len;
  if (status == 0) {
    while (off < slot->names_len) {
      len = disk_get_be16((unsigned char *)slot->names + off);
      if (kv_req_add_name(req, slot->names + off + 2, len) != 0) {
        status = kv_req_set_error(req, KV_ENOMEM, "out of memory");
        break;
      }
      off += 2 + len;
    }
    if (status == 0 && slot->cursor != NULL &&
        kv_req_set_cursor(req, slot->cursor) != 0)
      status = kv_req_set_error(req, KV_ENOMEM, "out of memory");
  } else if (slot->mdb_rc != 0) {
    kv_req_set_error(req, status, "disk: %s%s%s (%s)",
                     slot->msg ? slot->msg : "", slot->msg ? ": " : "",
                     mdb_strerror(slot->mdb_rc), d->path);
  } else {
    kv_req_set_error(req, status, "disk: %s",
                     slot->msg ? slot->msg : kv_strerror(status));
  }
  kv_free(slot->names);
  slot->names = NULL;
  slot->names_len = slot->names_cap = 0;
  kv_free(slot->cursor);
  slot->cursor = NULL;
  kv_req_complete(req, status);
}

static void disk_finish_close(kv_disk_t *d);

static void disk_after_work_cb(uv_work_t *w, int status) {
  kv_disk_t *d = w->data;
  size_t i;
  (void)status; /* never canceled: this store does not uv_cancel */
  d->stats.ops += d->nbatch;
  d->stats.write_txns = d->w_write_txns;
  d->stats.read_txns = d->w_read_txns;
  d->stats.map_grows = d->w_grows;
  d->stats.map_size = d->w_map_size;
  for (i = 0; i < d->nbatch; i++)
    disk_deliver(d, &d->batch[i]);
  d->nbatch = 0;
  d->busy = 0;
  if (d->closing)
    disk_finish_close(d);
  else if (d->nqueue > 0)
    disk_schedule(d);
}

/* Move the queue into the batch and send it to the threadpool. */
static void disk_launch(kv_disk_t *d) {
  size_t i;
  int rc;
  if (d->nqueue > d->batch_cap) {
    disk_slot_t *b = kv_realloc(d->batch, d->queue_cap * sizeof(*b));
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
  d->batch_rdonly = 1;
  for (i = 0; i < d->nqueue; i++) {
    disk_slot_t *slot = &d->batch[i];
    memset(slot, 0, sizeof(*slot));
    slot->req = d->queue[i];
    if (!disk_op_is_read(slot->req->op)) d->batch_rdonly = 0;
  }
  d->nbatch = d->nqueue;
  d->nqueue = 0;
  d->busy = 1;
  d->stats.batches++;
  rc = uv_queue_work(d->base.loop, &d->work, disk_work_cb, disk_after_work_cb);
  if (rc != 0) {
    d->busy = 0;
    for (i = 0; i < d->nbatch; i++)
      kv_req_complete(d->batch[i].req,
                      kv_req_set_error(d->batch[i].req, KV_EIO,
                                       "disk: cannot queue work: %s",
                                       uv_strerror(rc)));
    d->nbatch = 0;
  }
}

/* Every op: queue it for the end of this loop turn. */
static int disk_submit(kv_store_t *s, kv_req_t *req) {
  kv_disk_t *d = (kv_disk_t *)s;
  if (d->closing) return KV_ECLOSED;
  if (d->nqueue == d->queue_cap) {
    size_t cap = d->queue_cap ? d->queue_cap * 2 : 64;
    kv_req_t **q = kv_realloc(d->queue, cap * sizeof(*q));
    if (q == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
    d->queue = q;
    d->queue_cap = cap;
  }
  d->queue[d->nqueue++] = req;
  if (!d->busy) disk_schedule(d);
  return 0;
}

static int disk_ctl(kv_store_t *s, int op, void *arg) {
  kv_disk_t *d = (kv_disk_t *)s;
  if (op == KV_DISK_CTL_STATS && arg != NULL) {
    *(kv_disk_stats_t *)arg = d->stats;
    return 0;
  }
  return KV_ENOTSUP;
}

/* ---- Environments ------------------------------------------------------- */

/* mkdir -p with mode 0755. Returns 0 or an errno value; *failed is the
 * prefix that could not be created (in `buf`). */
static int disk_mkdirs(const char *path, char *buf, size_t buf_len) {
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

/* Check the format marker, writing it into an empty database. Runs once
 * per environment, on the opening thread. */
static int disk_env_init(disk_env_t *e, const char *path, char *errbuf,
                         size_t errbuf_len) {
  MDB_txn *txn = NULL;
  MDB_stat st;
  MDB_val mk, mv;
  int rc;
  rc = mdb_txn_begin(e->env, NULL, 0, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, NULL, 0, &e->dbi);
  if (rc == 0) rc = mdb_stat(txn, e->dbi, &st);
  if (rc != 0) goto fail;
  mk.mv_data = (void *)disk_marker_key;
  mk.mv_size = sizeof(disk_marker_key);
  rc = mdb_get(txn, e->dbi, &mk, &mv);
  if (rc == MDB_NOTFOUND && st.ms_entries == 0) {
    mv.mv_data = (void *)disk_marker_value;
    mv.mv_size = sizeof(disk_marker_value) - 1;
    rc = mdb_put(txn, e->dbi, &mk, &mv, 0);
    if (rc != 0) goto fail;
    rc = mdb_txn_commit(txn); /* frees txn, even when it fails */
    if (rc != 0) goto fail_nocommit;
    return 0;
  }
  if (rc == 0 && mv.mv_size == sizeof(disk_marker_value) - 1 &&
      memcmp(mv.mv_data, disk_marker_value, mv.mv_size) == 0) {
    mdb_txn_abort(txn);
    return 0;
  }
  mdb_txn_abort(txn);
  if (rc != 0 && rc != MDB_NOTFOUND) goto fail_nocommit;
  return disk_errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                     "disk: %s is an LMDB database of another program or "
                     "format (no \"%s\" marker)",
                     path, disk_marker_value);
fail:
  if (txn != NULL) mdb_txn_abort(txn);
fail_nocommit:
  return disk_errbuf(errbuf, errbuf_len, disk_map_err(rc), "disk: %s: %s", path,
                     mdb_strerror(rc));
}

/* Find or open the environment of directory `path`. */
static int disk_env_acquire(const char *path, unsigned sync_flags,
                            int64_t map_size, int64_t max_readers,
                            disk_env_t **out, char *errbuf, size_t errbuf_len) {
  char buf[PATH_MAX];
  struct stat st;
  disk_env_t *e;
  pid_t pid = getpid();
  int rc;
  rc = disk_mkdirs(path, buf, sizeof(buf));
  if (rc != 0)
    return disk_errbuf(errbuf, errbuf_len, KV_EIO,
                       "disk: cannot create directory %s: %s", buf,
                       strerror(rc));
  if (stat(path, &st) != 0)
    return disk_errbuf(errbuf, errbuf_len, KV_EIO, "disk: %s: %s", path,
                       strerror(errno));
  pthread_mutex_lock(&disk_envs_lock);
  for (e = disk_envs; e != NULL; e = e->next) {
    if (e->dev == st.st_dev && e->ino == st.st_ino && e->pid == pid) break;
  }
  if (e != NULL) {
    /* Shared: the strongest durability asked for wins. */
    if (e->sync_flags & ~sync_flags) {
      mdb_env_set_flags(e->env, e->sync_flags & ~sync_flags, 0);
      e->sync_flags &= sync_flags;
    }
    e->refs++;
    pthread_mutex_unlock(&disk_envs_lock);
    *out = e;
    return 0;
  }
  e = kv_calloc(1, sizeof(*e));
  if (e == NULL) {
    rc = disk_errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    goto unlock;
  }
  e->dev = st.st_dev;
  e->ino = st.st_ino;
  e->pid = pid;
  e->refs = 1;
  e->sync_flags = sync_flags;
  rc = mdb_env_create(&e->env);
  if (rc == 0) rc = mdb_env_set_maxreaders(e->env, (unsigned)max_readers);
  if (rc == 0) rc = mdb_env_set_mapsize(e->env, (size_t)map_size);
  if (rc == 0) rc = mdb_env_open(e->env, path, MDB_NOTLS | sync_flags, 0644);
  if (rc != 0) {
    rc = disk_errbuf(errbuf, errbuf_len, disk_map_err(rc), "disk: %s: %s%s",
                     path, mdb_strerror(rc),
                     disk_map_err(rc) == KV_ECORRUPT
                         ? " (not a valid LMDB environment)"
                         : "");
    goto fail;
  }
  if (mdb_env_get_maxkeysize(e->env) < DISK_KEY_MAX) {
    rc = disk_errbuf(errbuf, errbuf_len, KV_EBACKEND,
                     "disk: LMDB's key limit is below %d bytes", DISK_KEY_MAX);
    goto fail;
  }
  rc = disk_env_init(e, path, errbuf, errbuf_len);
  if (rc != 0) goto fail;
  if (pthread_rwlock_init(&e->resize_lock, NULL) != 0) {
    rc = disk_errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    goto fail;
  }
  e->next = disk_envs;
  disk_envs = e;
  pthread_mutex_unlock(&disk_envs_lock);
  *out = e;
  return 0;
fail:
  if (e->env != NULL) mdb_env_close(e->env);
  kv_free(e);
unlock:
  pthread_mutex_unlock(&disk_envs_lock);
  return rc;
}

static void disk_env_release(disk_env_t *e) {
  disk_env_t **pp;
  pthread_mutex_lock(&disk_envs_lock);
  if (--e->refs > 0) {
    pthread_mutex_unlock(&disk_envs_lock);
    return;
  }
  for (pp = &disk_envs; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == e) {
      *pp = e->next;
      break;
    }
  }
  pthread_mutex_unlock(&disk_envs_lock);
  /* A forked child must not close its parent's environment: LMDB would
   * clear the parent's reader slots. It only drops its copy. */
  if (e->pid == getpid()) mdb_env_close(e->env);
  pthread_rwlock_destroy(&e->resize_lock);
  kv_free(e);
}

/* ---- Open and close ----------------------------------------------------- */

static int disk_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                     size_t errbuf_len) {
  kv_disk_t *d = (kv_disk_t *)s;
  const char *sync = kv_url_param(url, "sync");
  unsigned sync_flags;
  int64_t map_size, max_readers;
  int rc;
  if (sync == NULL || strcmp(sync, "full") == 0)
    sync_flags = 0;
  else if (strcmp(sync, "meta") == 0)
    sync_flags = MDB_NOMETASYNC;
  else if (strcmp(sync, "none") == 0)
    sync_flags = MDB_NOSYNC;
  else
    return disk_errbuf(errbuf, errbuf_len, KV_EINVAL,
                       "disk: sync must be full, meta or none, not \"%s\"",
                       sync);
  rc = kv_url_param_int(url, "map_size", DISK_MAP_MIN, DISK_MAP_MAX,
                        DISK_MAP_DEFAULT, &map_size, errbuf, errbuf_len);
  if (rc != 0) return rc;
  rc = kv_url_param_int(url, "max_readers", 1, 32767, 126, &max_readers, errbuf,
                        errbuf_len);
  if (rc != 0) return rc;
  if (url->target == NULL || url->target[0] == '\0')
    return disk_errbuf(errbuf, errbuf_len, KV_EINVAL,
                       "disk: the URL needs a directory: disk://PATH");
  d->path = kv_strndup(url->target, strlen(url->target));
  if (d->path == NULL)
    return disk_errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  rc = disk_env_acquire(d->path, sync_flags, map_size, max_readers, &d->denv,
                        errbuf, errbuf_len);
  if (rc != 0) {
    kv_free(d->path);
    d->path = NULL;
    return rc;
  }
  /* Handles last: nothing after this can fail, and open failing must leave
   * nothing on the loop. */
  uv_idle_init(s->loop, &d->idle);
  uv_check_init(s->loop, &d->check);
  d->idle.data = d;
  d->check.data = d;
  d->work.data = d;
  return 0;
}

static void disk_handle_closed(uv_handle_t *h) {
  kv_disk_t *d = h->data;
  if (--d->nhandles > 0) return;
  kv_free(d->queue);
  kv_free(d->batch);
  kv_free(d->path);
  d->queue = NULL;
  d->batch = NULL;
  d->path = NULL;
  kv_store_closed(&d->base);
}

static void disk_finish_close(kv_disk_t *d) {
  disk_env_release(d->denv);
  d->denv = NULL;
  d->nhandles = 2;
  uv_close((uv_handle_t *)&d->idle, disk_handle_closed);
  uv_close((uv_handle_t *)&d->check, disk_handle_closed);
}

/* Queued requests are canceled; a batch on the threadpool finishes and is
 * delivered, then the environment and the handles are released. */
static void disk_close(kv_store_t *s) {
  kv_disk_t *d = (kv_disk_t *)s;
  size_t i;
  d->closing = 1;
  uv_idle_stop(&d->idle);
  uv_check_stop(&d->check);
  d->scheduled = 0;
  for (i = 0; i < d->nqueue; i++)
    kv_req_complete(d->queue[i],
                    kv_req_set_error(d->queue[i], KV_ECANCELED,
                                     "disk: store closed before the "
                                     "request started"));
  d->nqueue = 0;
  if (!d->busy) disk_finish_close(d);
}

const kv_store_methods_t kv__disk_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "disk",
    .store_size = sizeof(kv_disk_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT | KV_CAP_SHARED,
    .options = disk_options,
    .open = disk_open,
    .close = disk_close,
    .get = disk_submit,
    .ttl = disk_submit,
    .put = disk_submit,
    .del = disk_submit,
    .get_many = disk_submit,
    .ttl_many = disk_submit,
    .put_many = disk_submit,
    .delete_many = disk_submit,
    .keys = disk_submit,
    .collections = disk_submit,
    .destroy = disk_submit,
    .destroy_collection = disk_submit,
    .cull = disk_submit,
    .put_if_absent = disk_submit,
    .cas = disk_submit,
    .incr = disk_submit,
    .take = disk_submit,
    .ctl = disk_ctl,
};
