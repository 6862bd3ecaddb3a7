/* rocksdb:// — a store in a RocksDB database, through RocksDB's C API.
 *
 * The store is an engine of the shared batcher (stores/common/batcher.h):
 *
 *  - A batch (the requests of one loop turn) runs its ops in arrival order
 *    on libuv's threadpool against one WriteBatchWithIndex: writes go into
 *    the batch, reads look at the batch first and then at the database
 *    (rocksdb_writebatch_wi_get_from_batch_and_db, iterators with the
 *    database as base), so later ops see earlier writes. Then the batch is
 *    written at once: one write, one fsync (sync=true) for many writes.
 *  - Reads on the loop thread first (reads=loop, the default): get, ttl,
 *    get_many and ttl_many are tried at once in the submit with the
 *    block-cache read tier (kBlockCacheTier: memtables and block cache, no
 *    file I/O). An answer that needs the disk comes back "incomplete" and
 *    the read goes to the threadpool, as listings do. As on every engine of
 *    the batcher, a read waits in the queue while a write of this store is
 *    queued or in flight. reads=pool keeps every read on the threadpool.
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
 * with keys and records as in stores/common/record.h.
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

#include <rocksdb/c.h>

#include "internal.h"
#include "kvio/rocksdb.h"
#include "stores/common/batcher.h"
#include "stores/common/record.h"

#define RDB_PAGE_DEFAULT 1000
#define RDB_LOCK_DEFAULT 5000
#define RDB_LOCK_POLL_MS 20

extern const kv_store_methods_t kv__rocksdb_methods;

static const char rdb_marker_key[1] = {0};
static const char rdb_marker_value[] = "kvio-rocksdb 1";
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

/* A batch's transaction (the worker's) or a read on the loop thread
 * (wbwi NULL: the block-cache tier only). */
typedef struct rdb_txn_s {
  rdb_env_t *env;
  rocksdb_readoptions_t *ropts;
  rocksdb_writebatch_wi_t *wbwi; /* the batch's writes; NULL on the loop */
  int incomplete;                /* loop: an answer was not in memory */
  /* Worker scratch: the record being written, keys to delete. */
  char *w_rec;
  size_t w_rec_cap;
  char *w_keys; /* BE16 len ‖ key, repeated */
  size_t w_keys_len;
  size_t w_keys_cap;
  char *w_err; /* the failed write's message (rocksdb_free) */
} rdb_txn_t;

typedef struct kv_rocksdb_s {
  KV__BATCHED_STORE;
  rdb_env_t *env;
  char *path;
  rocksdb_writeoptions_t *wopts;
  rdb_txn_t w; /* the threadpool's */
  rdb_txn_t l; /* the loop's */
  /* Written by the worker, read on the loop. */
  uint64_t w_write_batches;
  uint64_t w_read_batches;
  uint64_t write_batches; /* the two above, copied after each batch */
  uint64_t read_batches;
  kv_rocksdb_stats_t stats;
} kv_rocksdb_t;

typedef kv__rec_t rdb_rec_t;

/* A looked-up entry: `raw` is RocksDB's copy (rocksdb_free). */
typedef struct rdb_found_s {
  int state;
  char *raw;
  rdb_rec_t rec;
} rdb_found_t;

enum { RDB_ABSENT, RDB_EXPIRED, RDB_LIVE, RDB_BAD };

static const char *const rdb_options[] = {"sync", "lock_timeout", "reads",
                                          NULL};

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

/* The slot failed with RocksDB's message `err` (freed here). */
static void rdb_slot_fail(kv__slot_t *slot, char *err) {
  slot->status = rdb_map_err(err, 0);
  slot->msg = NULL;
  kv_free(slot->errmsg);
  slot->errmsg = kv_strndup(err, strlen(err));
  rocksdb_free(err);
}

/* Append BE16 len ‖ bytes to a growable buffer. 0 or KV_ENOMEM. */
static int rdb_buf_add(char **buf, size_t *len, size_t *cap, const void *p,
                       size_t n) {
  size_t need = *len + 2 + n;
  unsigned char *q;
  if (need > *cap) {
    size_t c = *cap ? *cap * 2 : 4096;
    char *nb;
    while (c < need)
      c *= 2;
    nb = kv_realloc(*buf, c);
    if (nb == NULL) return KV_ENOMEM;
    *buf = nb;
    *cap = c;
  }
  q = (unsigned char *)*buf + *len;
  q[0] = (unsigned char)(n >> 8);
  q[1] = (unsigned char)n;
  memcpy(q + 2, p, n);
  *len = need;
  return 0;
}

/* ---- Operations (worker thread, batch_lock held) ------------------------
 *
 * Each sets the slot's outcome; writes go into d->wbwi.
 */

/* Look k up in the batch, then the database. The caller frees f->raw with
 * rocksdb_free. 0, or -1 after failing the slot. */
static int rdb_lookup(rdb_txn_t *d, kv__slot_t *slot, const kv__reckey_t *k,
                      int64_t now, rdb_found_t *f) {
  char *err = NULL;
  size_t len = 0;
  if (d->wbwi != NULL)
    f->raw = rocksdb_writebatch_wi_get_from_batch_and_db(
        d->wbwi, d->env->db, d->ropts, (const char *)k->buf, k->len, &len,
        &err);
  else /* the loop: memtables and block cache only */
    f->raw = rocksdb_get(d->env->db, d->ropts, (const char *)k->buf, k->len,
                         &len, &err);
  if (err != NULL) {
    rocksdb_free(f->raw);
    f->raw = NULL;
    if (d->wbwi == NULL) { /* "incomplete": not in memory */
      rocksdb_free(err);
      d->incomplete = 1;
      return -1;
    }
    rdb_slot_fail(slot, err);
    return -1;
  }
  if (f->raw == NULL)
    f->state = RDB_ABSENT;
  else if (kv__rec_parse(f->raw, len, &f->rec) != 0)
    f->state = RDB_BAD;
  else if (KV_EXPIRED(f->rec.expires_at, now))
    f->state = RDB_EXPIRED;
  else
    f->state = RDB_LIVE;
  return 0;
}

/* Write a record under k into the batch. 0 or KV_ENOMEM. */
static int rdb_rec_put(rdb_txn_t *d, const kv__reckey_t *k, const char *coll,
                       size_t coll_len, const char *key, size_t key_len,
                       const void *value, size_t value_len,
                       int64_t expires_at) {
  size_t size = kv__rec_size(k, coll_len, key_len, value_len);
  if (size > d->w_rec_cap) {
    char *q = kv_realloc(d->w_rec, size);
    if (q == NULL) return KV_ENOMEM;
    d->w_rec = q;
    d->w_rec_cap = size;
  }
  kv__rec_write(d->w_rec, k, coll, coll_len, key, key_len, value, value_len,
                expires_at);
  rocksdb_writebatch_wi_put(d->wbwi, (const char *)k->buf, k->len, d->w_rec,
                            size);
  return 0;
}

static void rdb_del_key(rdb_txn_t *d, const kv__reckey_t *k) {
  rocksdb_writebatch_wi_delete(d->wbwi, (const char *)k->buf, k->len);
}

static void rdb_do_get(rdb_txn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  rdb_found_t f;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  kv__reckey_set(&k, req->in.key, req->in.key_len);
  if (rdb_lookup(d, slot, &k, now, &f) != 0) return;
  if (f.state == RDB_BAD) {
    kv__slot_error(slot, KV_ECORRUPT, "unreadable record");
  } else if (f.state == RDB_LIVE) {
    kv__slot_give_value(slot, f.rec.value, f.rec.value_len);
    if (slot->status == 0 && req->op == KV_OP_TTL)
      req->ttl = kv_remaining_ttl(f.rec.expires_at, now);
  }
  rocksdb_free(f.raw);
  if (req->op == KV_OP_TAKE && slot->status == 0 && f.state != RDB_ABSENT)
    rdb_del_key(d, &k);
}

static void rdb_do_put(rdb_txn_t *d, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  kv__reckey_set(&k, req->in.key, req->in.key_len);
  if (rdb_rec_put(d, &k, req->in.collection, req->in.collection_len,
                  req->in.key, req->in.key_len, req->in.value.base,
                  req->in.value.len, req->in.expires_at_ms) != 0)
    kv__slot_error(slot, KV_ENOMEM, "out of memory");
}

static void rdb_do_delete(rdb_txn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  size_t n = req->op == KV_OP_DELETE ? 1 : req->in.n, removed = 0, i;
  kv__reckey_t k;
  rdb_found_t f;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  rocksdb_writebatch_wi_set_save_point(d->wbwi);
  for (i = 0; i < n; i++) {
    if (req->op == KV_OP_DELETE)
      kv__reckey_set(&k, req->in.key, req->in.key_len);
    else
      kv__reckey_set(&k, req->in.keys[i].base, req->in.keys[i].len);
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

static void rdb_do_get_many(rdb_txn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  rdb_found_t f;
  size_t i;
  if (kv_req_alloc_results(req) != 0) {
    kv__slot_error(slot, KV_ENOMEM, "out of memory");
    return;
  }
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  for (i = 0; i < req->in.n; i++) {
    int rc = 0;
    kv__reckey_set(&k, req->in.keys[i].base, req->in.keys[i].len);
    if (rdb_lookup(d, slot, &k, now, &f) != 0) return;
    if (f.state == RDB_BAD)
      kv__slot_error(slot, KV_ECORRUPT, "unreadable record");
    else if (f.state == RDB_LIVE)
      rc = kv_req_set_result(req, i, f.rec.value, f.rec.value_len,
                             kv_remaining_ttl(f.rec.expires_at, now));
    rocksdb_free(f.raw);
    if (rc != 0) kv__slot_error(slot, KV_ENOMEM, "out of memory");
    if (slot->status != 0) return;
  }
}

static void rdb_do_put_many(rdb_txn_t *d, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  size_t i;
  rocksdb_writebatch_wi_set_save_point(d->wbwi);
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  for (i = 0; i < req->in.n; i++) {
    kv__reckey_set(&k, req->in.keys[i].base, req->in.keys[i].len);
    if (rdb_rec_put(d, &k, req->in.collection, req->in.collection_len,
                    req->in.keys[i].base, req->in.keys[i].len,
                    req->in.values[i].base, req->in.values[i].len,
                    req->in.expires_at_ms) != 0) {
      char *err = NULL;
      /* All or nothing: take back the puts of this request. */
      rocksdb_writebatch_wi_rollback_to_save_point(d->wbwi, &err);
      rocksdb_free(err);
      kv__slot_error(slot, KV_ENOMEM, "out of memory");
      return;
    }
  }
}

/* put_if_absent, cas, incr: read, decide, write (batch_lock held). */
static void rdb_do_atomic(rdb_txn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  rdb_found_t f;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  kv__reckey_set(&k, req->in.key, req->in.key_len);
  if (rdb_lookup(d, slot, &k, now, &f) != 0) return;
  if (f.state == RDB_BAD && req->op != KV_OP_PUT_IF_ABSENT) {
    rocksdb_free(f.raw);
    kv__slot_error(slot, KV_ECORRUPT, "unreadable record");
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
      kv__slot_error(slot, KV_ECONFLICT,
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
      kv__slot_error(slot, KV_EINVAL, "the value is not a decimal integer");
      return;
    }
    if (__builtin_add_overflow(cur, req->in.delta, &next)) {
      kv__slot_error(slot, KV_EINVAL, "integer overflow");
      return;
    }
    len = kv_format_int64(next, text);
    if (rdb_rec_put(d, &k, req->in.collection, req->in.collection_len,
                    req->in.key, req->in.key_len, text, len, expires_at) != 0) {
      kv__slot_error(slot, KV_ENOMEM, "out of memory");
      return;
    }
    req->number = next;
  }
  }
}

/* An iterator over the database with the batch's writes on top. */
static rocksdb_iterator_t *rdb_iter(rdb_txn_t *d) {
  rocksdb_iterator_t *base = rocksdb_create_iterator(d->env->db, d->ropts);
  return rocksdb_writebatch_wi_create_iterator_with_base(d->wbwi, base);
}

/* Close an iterator; 0, or -1 after failing the slot with its error. */
static int rdb_iter_end(rocksdb_iterator_t *it, kv__slot_t *slot) {
  char *err = NULL;
  rocksdb_iter_get_error(it, &err);
  rocksdb_iter_destroy(it);
  if (err == NULL) return 0;
  rdb_slot_fail(slot, err);
  return -1;
}

static void rdb_do_keys(rdb_txn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  size_t limit = req->in.limit ? req->in.limit : RDB_PAGE_DEFAULT;
  size_t n = 0, last_len = 0, start_len;
  unsigned char start[KV__REC_KEY_MAX], last[KV__REC_KEY_MAX];
  kv__reckey_t k;
  rdb_rec_t rec;
  rocksdb_iterator_t *it;
  int more = 0, oom = 0;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  memcpy(start, k.buf, k.prefix_len);
  start_len = k.prefix_len;
  if (req->in.cursor != NULL) {
    start_len = kv__cursor_parse(req->in.cursor, 'k', start, KV__REC_KEY_MAX);
    if (start_len == 0 || !kv__rec_has_prefix((const char *)start, start_len,
                                              k.buf, k.prefix_len)) {
      kv__slot_error(slot, KV_EINVAL, "invalid cursor for this collection");
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
    if (!kv__rec_has_prefix(key, klen, k.buf, k.prefix_len)) break;
    val = rocksdb_iter_value(it, &vlen);
    if (klen > KV__REC_KEY_MAX || kv__rec_parse(val, vlen, &rec) != 0 ||
        KV_EXPIRED(rec.expires_at, now))
      continue; /* not a record of this format, or expired */
    if (n == limit) {
      more = 1;
      break;
    }
    if (rec.flags & KV__REC_KHASHED)
      oom = kv__slot_add_name(slot, rec.key, rec.key_len);
    else
      oom = kv__slot_add_name(slot, key + k.prefix_len, klen - k.prefix_len);
    if (oom != 0) break;
    memcpy(last, key, klen);
    last_len = klen;
    n++;
  }
  if (rdb_iter_end(it, slot) != 0) return;
  if (oom != 0)
    kv__slot_error(slot, KV_ENOMEM, "out of memory");
  else if (more)
    kv__slot_cursor(slot, 'k', last, last_len);
}

static void rdb_do_collections(rdb_txn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  size_t limit = req->in.limit ? req->in.limit : RDB_PAGE_DEFAULT;
  size_t n = 0, plen = 0, last_len = 0, seek_len;
  unsigned char seek[KV__REC_KEY_MAX], prefix[KV__REC_KEY_MAX],
      last[KV__REC_KEY_MAX];
  rocksdb_iterator_t *it;
  rdb_rec_t rec;
  int more = 0, oom = 0;
  if (req->in.cursor != NULL) {
    seek_len = kv__cursor_parse(req->in.cursor, 'c', seek, KV__REC_KEY_MAX);
    if (seek_len < 3 || 2 + kv__rec_be16(seek) != seek_len) {
      kv__slot_error(slot, KV_EINVAL, "invalid cursor");
      return;
    }
    seek_len = kv__rec_successor(seek, seek_len);
  } else {
    memcpy(seek, kv__rec_first_key, sizeof(kv__rec_first_key));
    seek_len = sizeof(kv__rec_first_key);
  }
  it = rdb_iter(d);
  rocksdb_iter_seek(it, (const char *)seek, seek_len);
  while (rocksdb_iter_valid(it)) {
    size_t klen, vlen;
    const char *key = rocksdb_iter_key(it, &klen);
    int live = 0;
    if (!kv__rec_entry_key((const unsigned char *)key, klen, &plen)) {
      rocksdb_iter_next(it);
      continue;
    }
    memcpy(prefix, key, plen);
    /* A collection is listed only while it holds a live entry. */
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
      const char *val;
      key = rocksdb_iter_key(it, &klen);
      if (!kv__rec_has_prefix(key, klen, prefix, plen)) break;
      val = rocksdb_iter_value(it, &vlen);
      if (kv__rec_parse(val, vlen, &rec) == 0 &&
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
      if (rec.flags & KV__REC_CHASHED)
        oom = kv__slot_add_name(slot, rec.coll, rec.coll_len);
      else
        oom = kv__slot_add_name(slot, (const char *)prefix + 2, plen - 2);
      if (oom != 0) break;
      memcpy(last, prefix, plen);
      last_len = plen;
      n++;
    }
    seek_len = plen;
    memcpy(seek, prefix, plen);
    seek_len = kv__rec_successor(seek, seek_len);
    if (seek_len == 0) break;
    rocksdb_iter_seek(it, (const char *)seek, seek_len);
  }
  if (rdb_iter_end(it, slot) != 0) return;
  if (oom != 0)
    kv__slot_error(slot, KV_ENOMEM, "out of memory");
  else if (more)
    kv__slot_cursor(slot, 'c', last, last_len);
}

/* Delete entries from `from` on: all of them while they start with prefix
 * (destroy, destroy_collection), or the expired ones (cull: expired_only).
 * The keys are gathered first, then deleted (an iterator over the batch
 * must not see the batch change under it). Returns how many, or sets the
 * slot's error. */
static size_t rdb_sweep(rdb_txn_t *d, kv__slot_t *slot,
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
    if (prefix != NULL && !kv__rec_has_prefix(key, klen, prefix, prefix_len))
      break;
    if (expired_only) {
      const char *val = rocksdb_iter_value(it, &vlen);
      if (!kv__rec_entry_key((const unsigned char *)key, klen, &plen) ||
          kv__rec_parse(val, vlen, &rec) != 0 ||
          !KV_EXPIRED(rec.expires_at, now))
        continue; /* keep live entries and unknown data */
    }
    if (klen > 0xFFFF ||
        rdb_buf_add(&d->w_keys, &d->w_keys_len, &d->w_keys_cap, key, klen)) {
      rocksdb_iter_destroy(it);
      kv__slot_error(slot, KV_ENOMEM, "out of memory");
      return 0;
    }
  }
  if (rdb_iter_end(it, slot) != 0) return 0;
  while (off < d->w_keys_len) {
    size_t klen = kv__rec_be16((unsigned char *)d->w_keys + off);
    rocksdb_writebatch_wi_delete(d->wbwi, d->w_keys + off + 2, klen);
    off += 2 + klen;
    count++;
  }
  return count;
}

static void rdb_exec_op(rdb_txn_t *d, kv__slot_t *slot, int64_t now) {
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
    rdb_sweep(d, slot, kv__rec_first_key, sizeof(kv__rec_first_key), NULL, 0, 0,
              now);
    return;
  case KV_OP_DESTROY_COLLECTION: {
    kv__reckey_t k;
    kv__reckey_init(&k, req->in.collection, req->in.collection_len);
    req->count =
        rdb_sweep(d, slot, k.buf, k.prefix_len, k.buf, k.prefix_len, 0, now);
    return;
  }
  case KV_OP_CULL:
    req->count = rdb_sweep(d, slot, kv__rec_first_key,
                           sizeof(kv__rec_first_key), NULL, 0, 1, now);
    return;
  default:
    kv__slot_error(slot, KV_ENOTSUP, "operation not supported");
    return;
  }
}

/* ---- Handles ------------------------------------------------------------ */

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
  rc = kv__mkdirs(path, 1, buf, sizeof(buf));
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

/* ---- The engine --------------------------------------------------------- */

#define RDB_OF(b) ((kv_rocksdb_t *)(b)->store)

static int rdb_begin(kv__batcher_t *b, int mode, void **txn) {
  kv_rocksdb_t *d = RDB_OF(b);
  (void)mode;
  pthread_mutex_lock(&d->env->batch_lock);
  rocksdb_free(d->w.w_err);
  d->w.w_err = NULL;
  rocksdb_writebatch_wi_clear(d->w.wbwi);
  *txn = &d->w;
  return 0;
}

/* Reads on the loop thread: the block-cache tier, no lock (a read sees a
 * committed state; no write of this store is in flight then). */
static int rdb_loop_begin(kv__batcher_t *b, void **txn) {
  kv_rocksdb_t *d = RDB_OF(b);
  d->l.incomplete = 0;
  *txn = &d->l;
  return 0;
}

static int rdb_exec(kv__batcher_t *b, void *txn, kv__slot_t *slot,
                    int64_t now) {
  rdb_txn_t *t = txn;
  kv_op_t op = slot->req->op;
  (void)b;
  if (t->wbwi == NULL) {
    /* The loop: point reads only; listings need the disk's iterators. */
    if (op != KV_OP_GET && op != KV_OP_TTL && op != KV_OP_GET_MANY &&
        op != KV_OP_TTL_MANY)
      return KV__LOOP_DECLINE;
    rdb_exec_op(t, slot, now);
    return t->incomplete ? KV__LOOP_DECLINE : 0;
  }
  rdb_exec_op(t, slot, now);
  return 0;
}

/* Write the batch (reads only: nothing to write). */
static int rdb_commit(kv__batcher_t *b, void *txn, int mode) {
  kv_rocksdb_t *d = RDB_OF(b);
  rdb_txn_t *t = txn;
  int rc = 0;
  if (mode == KV__TXN_LOOP) {
    t->incomplete = 0;
    return 0;
  }
  if (rocksdb_writebatch_wi_count(t->wbwi) == 0) {
    d->w_read_batches++;
  } else {
    rocksdb_write_writebatch_wi(t->env->db, d->wopts, t->wbwi, &t->w_err);
    if (t->w_err == NULL)
      d->w_write_batches++;
    else
      rc = -1; /* nothing of the batch was written: every request fails */
    rocksdb_writebatch_wi_clear(t->wbwi);
  }
  pthread_mutex_unlock(&t->env->batch_lock);
  return rc;
}

static void rdb_abort(kv__batcher_t *b, void *txn, int mode) {
  rdb_txn_t *t = txn;
  (void)b;
  if (mode == KV__TXN_LOOP) {
    t->incomplete = 0;
    return;
  }
  rocksdb_writebatch_wi_clear(t->wbwi);
  pthread_mutex_unlock(&t->env->batch_lock);
}

static void rdb_fail(kv__batcher_t *b, kv__slot_t *slot, int code) {
  rdb_txn_t *t = &RDB_OF(b)->w;
  (void)code;
  slot->status = t->w_err ? rdb_map_err(t->w_err, 0) : KV_EBACKEND;
  kv_free(slot->errmsg);
  slot->errmsg = t->w_err ? kv_strndup(t->w_err, strlen(t->w_err)) : NULL;
}

static void rdb_detail(kv__batcher_t *b, kv__slot_t *slot) {
  kv_req_set_error(slot->req, slot->status, "rocksdb: %s (%s)",
                   slot->errmsg ? slot->errmsg : kv_strerror(slot->status),
                   RDB_OF(b)->path);
}

/* Closing the last store of a path closes RocksDB, which waits for its
 * background work: on the threadpool, not on the loop. */
static void rdb_close_work(kv__batcher_t *b) {
  kv_rocksdb_t *d = RDB_OF(b);
  rdb_env_release(d->env);
  d->env = NULL;
}

static void rdb_after(kv__batcher_t *b) {
  kv_rocksdb_t *d = RDB_OF(b);
  d->write_batches = d->w_write_batches;
  d->read_batches = d->w_read_batches;
}

static void rdb_txn_free(rdb_txn_t *t) {
  if (t->wbwi != NULL) rocksdb_writebatch_wi_destroy(t->wbwi);
  if (t->ropts != NULL) rocksdb_readoptions_destroy(t->ropts);
  rocksdb_free(t->w_err);
  kv_free(t->w_rec);
  kv_free(t->w_keys);
  memset(t, 0, sizeof(*t));
}

static void rdb_closed(kv__batcher_t *b) {
  kv_rocksdb_t *d = RDB_OF(b);
  rdb_txn_free(&d->w);
  rdb_txn_free(&d->l);
  if (d->wopts != NULL) rocksdb_writeoptions_destroy(d->wopts);
  d->wopts = NULL;
  kv_free(d->path);
  d->path = NULL;
}

static const kv__engine_t rdb_engine = {
    .name = "rocksdb",
    .begin = rdb_begin,
    .exec = rdb_exec,
    .commit = rdb_commit,
    .abort = rdb_abort,
    .fail = rdb_fail,
    .detail = rdb_detail,
    .loop_begin = rdb_loop_begin,
    .after = rdb_after,
    .close_work = rdb_close_work,
    .closed = rdb_closed,
};

static int rdb_ctl(kv_store_t *s, int op, void *arg, size_t size) {
  kv_rocksdb_t *d = (kv_rocksdb_t *)s;
  kv__batcher_t *b = &d->batcher;
  kv_rocksdb_stats_t *st = arg;
  if (op == KV_ROCKSDB_CTL_STATS) {
    KV_CTL_EXPECT(arg, size, kv_rocksdb_stats_t);
    *st = d->stats; /* open_retries */
    st->batches = b->batches;
    st->write_batches = d->write_batches;
    st->read_batches = d->read_batches;
    st->ops = b->ops;
    st->loop_reads = b->loop_reads_served;
    st->loop_misses = b->loop_declined;
    return 0;
  }
  return KV_ENOTSUP;
}

/* ---- Open --------------------------------------------------------------- */

static int rdb_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                    size_t errbuf_len) {
  kv_rocksdb_t *d = (kv_rocksdb_t *)s;
  const char *reads = kv_url_param(url, "reads");
  int64_t lock_timeout;
  int sync, rc;
  rc = kv_url_param_bool(url, "sync", 1, &sync, errbuf, errbuf_len);
  if (rc != 0) return rc;
  rc = kv_url_param_int(url, "lock_timeout", 0, INT_MAX, RDB_LOCK_DEFAULT,
                        &lock_timeout, errbuf, errbuf_len);
  if (rc != 0) return rc;
  if (reads != NULL && strcmp(reads, "loop") != 0 && strcmp(reads, "pool") != 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "rocksdb: reads must be loop or pool, not \"%s\"", reads);
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
  d->w.env = d->l.env = d->env;
  d->w.ropts = rocksdb_readoptions_create();
  d->l.ropts = rocksdb_readoptions_create();
  rocksdb_readoptions_set_read_tier(d->l.ropts, 1 /* kBlockCacheTier */);
  d->wopts = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(d->wopts, (unsigned char)sync);
  d->w.wbwi = rocksdb_writebatch_wi_create(0, 1 /* overwrite_keys */);
  /* Handles last: nothing after this can fail, and open failing must leave
   * nothing on the loop. */
  kv__batch_init(&d->batcher, s, &rdb_engine);
  d->batcher.loop_reads = reads == NULL || strcmp(reads, "loop") == 0
                              ? KV__LOOP_SUBMIT
                              : KV__LOOP_NONE;
  return 0;
}

const kv_store_methods_t kv__rocksdb_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "rocksdb",
    .store_size = sizeof(kv_rocksdb_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT,
    .options = rdb_options,
    .open = rdb_open,
    KV__BATCHED_METHODS,
    .ctl_ex = rdb_ctl,
};
