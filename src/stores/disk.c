/* disk:// — the embedded default store, on LMDB.
 *
 * The store is an engine of the shared batcher (stores/common/batcher.h):
 *
 *  - Writes: the requests of one loop turn run in one LMDB write
 *    transaction on libuv's threadpool, in arrival order, so later ops see
 *    earlier writes and one commit (one fsync) covers many writes. At most
 *    one batch per store is in flight.
 *  - Reads (get, ttl, get_many, ttl_many, keys, collections) run on the
 *    loop thread, in a read transaction of the store that is renewed for
 *    each read and reset after it (LMDB reads are copies out of the memory
 *    map): no thread hop. A read waits in the queue instead while a write of
 *    this store is queued or in flight, so it sees every write submitted
 *    before it. `?reads=pool` sends reads to the threadpool as before (for
 *    data sets much larger than memory, where a cold page fault would block
 *    the loop).
 *  - When a write transaction cannot finish (map full, another process grew
 *    the map, transaction too big, an LMDB error), it is aborted, the
 *    results of the ops it ran are dropped and the ops run again: after
 *    growing the map (the engine's retry rule), or split so that the ops
 *    before the failing one commit and the failing one fails alone.
 *
 * On-disk format (version 1). The main database holds:
 *   "\0"                    → "kvio-disk 1" (the format marker)
 *   BE16(|C|) ‖ C ‖ K       → record
 * with keys and records as in stores/common/record.h.
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

#include "internal.h"
#include "kvio/disk.h"
#include "stores/common/batcher.h"
#include "stores/common/record.h"

#define DISK_MAP_DEFAULT ((int64_t)64 << 20)
#define DISK_MAP_MIN ((int64_t)64 << 10)
#define DISK_MAP_MAX ((int64_t)1 << 46)
#define DISK_FULL_SLACK ((uint64_t)1 << 20) /* "full": less free than this */
#define DISK_PAGE_DEFAULT 1000
#define DISK_MAX_RETRIES 48

static const char disk_marker_key[1] = {0};
static const char disk_marker_value[] = "kvio-disk 1";

/* ---- Shared environments --------------------------------------------------
 *
 * LMDB must not open one environment twice in a process (its POSIX locks
 * would be released by the second close), so stores on the same directory
 * share one disk_env_t, found by device and inode. `resize_lock` is held
 * shared around every transaction and exclusively to change the map size,
 * which LMDB allows only while this process has no transaction open. The
 * loop thread only tries it: when a worker is growing the map, the read
 * goes to the threadpool instead of waiting.
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

/* A transaction in progress. */
typedef struct disk_txn_s {
  MDB_txn *txn;
  MDB_dbi dbi;
  int64_t now; /* read time: what expiry is checked against */
} disk_txn_t;

typedef struct kv_disk_s {
  KV__BATCHED_STORE;
  disk_env_t *denv;
  char *path;
  disk_txn_t wtxn; /* the threadpool's transaction */
  disk_txn_t ltxn; /* the loop's read transaction: reset between reads */
  /* Written by the worker; copied for the loop after each batch. */
  uint64_t w_grows;
  uint64_t w_map_size;
  uint64_t map_grows;
  uint64_t map_size;
} kv_disk_t;

enum { DISK_ABSENT, DISK_EXPIRED, DISK_LIVE, DISK_BAD };

static const char *const disk_options[] = {"sync", "map_size", "max_readers",
                                           "reads", NULL};

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

/* ---- Records in LMDB ---------------------------------------------------- */

static int disk_rec_parse(const MDB_val *v, kv__rec_t *r) {
  return kv__rec_parse(v->mv_data, v->mv_size, r);
}

/* Write a record under k. The value is written straight into the map
 * (MDB_RESERVE). Returns an LMDB code. */
static int disk_rec_put(disk_txn_t *t, const kv__reckey_t *k, const char *coll,
                        size_t coll_len, const char *key, size_t key_len,
                        const void *value, size_t value_len,
                        int64_t expires_at) {
  MDB_val mk, mv;
  int rc;
  mv.mv_size = kv__rec_size(k, coll_len, key_len, value_len);
  mv.mv_data = NULL;
  mk.mv_size = k->len;
  mk.mv_data = (void *)k->buf;
  rc = mdb_put(t->txn, t->dbi, &mk, &mv, MDB_RESERVE);
  if (rc != 0) return rc;
  kv__rec_write(mv.mv_data, k, coll, coll_len, key, key_len, value, value_len,
                expires_at);
  return 0;
}

/* Look k up. *state is DISK_ABSENT, DISK_EXPIRED, DISK_LIVE or DISK_BAD;
 * *rec is filled for EXPIRED and LIVE. Returns an LMDB code (not
 * MDB_NOTFOUND). */
static int disk_lookup(disk_txn_t *t, const kv__reckey_t *k, kv__rec_t *rec,
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

static int disk_del_key(disk_txn_t *t, const kv__reckey_t *k) {
  MDB_val mk;
  int rc;
  mk.mv_size = k->len;
  mk.mv_data = (void *)k->buf;
  rc = mdb_del(t->txn, t->dbi, &mk, NULL);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- Operations (worker thread) ----------------------------------------
 *
 * Each returns an LMDB code: 0 when the op ran (its own outcome, such as
 * KV_ECONFLICT, is in the slot), anything else when the transaction failed
 * and must be aborted.
 */

static int disk_do_get(disk_txn_t *t, kv__slot_t *slot, int take) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  kv__rec_t rec;
  int rc, state;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  kv__reckey_set(&k, req->in.key, req->in.key_len);
  rc = disk_lookup(t, &k, &rec, &state);
  if (rc != 0) return rc;
  if (state == DISK_BAD) {
    kv__slot_error(slot, KV_ECORRUPT, "unreadable record");
    return 0;
  }
  if (state == DISK_LIVE) {
    kv__slot_give_value(slot, rec.value, rec.value_len);
    if (slot->status != 0) return 0;
    if (req->op == KV_OP_TTL)
      req->ttl = kv_remaining_ttl(rec.expires_at, t->now);
  }
  if (take && state != DISK_ABSENT) return disk_del_key(t, &k);
  return 0;
}

static int disk_do_put(disk_txn_t *t, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  kv__reckey_set(&k, req->in.key, req->in.key_len);
  return disk_rec_put(t, &k, req->in.collection, req->in.collection_len,
                      req->in.key, req->in.key_len, req->in.value.base,
                      req->in.value.len, req->in.expires_at_ms);
}

/* Delete one key of k's collection; *removed += 1 if it was live. */
static int disk_delete_one(disk_txn_t *t, kv__reckey_t *k, const char *key,
                           size_t key_len, size_t *removed) {
  kv__rec_t rec;
  int rc, state;
  kv__reckey_set(k, key, key_len);
  rc = disk_lookup(t, k, &rec, &state);
  if (rc != 0 || state == DISK_ABSENT) return rc;
  if (state == DISK_LIVE) (*removed)++;
  return disk_del_key(t, k);
}

static int disk_do_delete(disk_txn_t *t, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  size_t removed = 0, i;
  int rc;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
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

static int disk_do_get_many(disk_txn_t *t, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  kv__rec_t rec;
  size_t i;
  int rc, state;
  if (kv_req_alloc_results(req) != 0) {
    kv__slot_error(slot, KV_ENOMEM, "out of memory");
    return 0;
  }
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  for (i = 0; i < req->in.n; i++) {
    kv__reckey_set(&k, req->in.keys[i].base, req->in.keys[i].len);
    rc = disk_lookup(t, &k, &rec, &state);
    if (rc != 0) return rc;
    if (state == DISK_BAD) {
      kv__slot_error(slot, KV_ECORRUPT, "unreadable record");
      return 0;
    }
    if (state != DISK_LIVE) continue;
    if (kv_req_set_result(req, i, rec.value, rec.value_len,
                          kv_remaining_ttl(rec.expires_at, t->now)) != 0) {
      kv__slot_error(slot, KV_ENOMEM, "out of memory");
      return 0;
    }
  }
  return 0;
}

static int disk_do_put_many(disk_txn_t *t, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  size_t i;
  int rc;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  for (i = 0; i < req->in.n; i++) {
    kv__reckey_set(&k, req->in.keys[i].base, req->in.keys[i].len);
    rc = disk_rec_put(t, &k, req->in.collection, req->in.collection_len,
                      req->in.keys[i].base, req->in.keys[i].len,
                      req->in.values[i].base, req->in.values[i].len,
                      req->in.expires_at_ms);
    if (rc != 0) return rc; /* the transaction aborts: all or nothing */
  }
  return 0;
}

/* put_if_absent, cas, incr: read, decide, write, all in the transaction. */
static int disk_do_atomic(disk_txn_t *t, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  kv__reckey_t k;
  kv__rec_t rec;
  int rc, state;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  kv__reckey_set(&k, req->in.key, req->in.key_len);
  rc = disk_lookup(t, &k, &rec, &state);
  if (rc != 0) return rc;
  if (state == DISK_BAD && req->op != KV_OP_PUT_IF_ABSENT) {
    kv__slot_error(slot, KV_ECORRUPT, "unreadable record");
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
      kv__slot_error(slot, KV_ECONFLICT,
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
        kv__slot_error(slot, KV_EINVAL, "the value is not a decimal integer");
        return 0;
      }
      expires_at = rec.expires_at; /* an existing entry keeps its TTL */
    }
    if (__builtin_add_overflow(cur, req->in.delta, &next)) {
      kv__slot_error(slot, KV_EINVAL, "integer overflow");
      return 0;
    }
    len = kv_format_int64(next, text);
    req->number = next;
    return disk_rec_put(t, &k, req->in.collection, req->in.collection_len,
                        req->in.key, req->in.key_len, text, len, expires_at);
  }
  }
}

static int disk_do_keys(disk_txn_t *t, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  size_t limit = req->in.limit ? req->in.limit : DISK_PAGE_DEFAULT;
  size_t n = 0, prefix_len, last_len = 0;
  unsigned char start[KV__REC_KEY_MAX], last[KV__REC_KEY_MAX];
  kv__reckey_t k;
  MDB_cursor *c;
  MDB_val mk, mv;
  kv__rec_t rec;
  int rc, more = 0;
  kv__reckey_init(&k, req->in.collection, req->in.collection_len);
  prefix_len = k.prefix_len;
  mk.mv_data = k.buf;
  mk.mv_size = prefix_len;
  if (req->in.cursor != NULL) {
    mk.mv_size = kv__cursor_parse(req->in.cursor, 'k', start, KV__REC_KEY_MAX);
    mk.mv_data = start;
    if (mk.mv_size == 0 ||
        !kv__rec_has_prefix(mk.mv_data, mk.mv_size, k.buf, prefix_len)) {
      kv__slot_error(slot, KV_EINVAL, "invalid cursor for this collection");
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
  for (;
       rc == 0 && kv__rec_has_prefix(mk.mv_data, mk.mv_size, k.buf, prefix_len);
       rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT)) {
    if (disk_rec_parse(&mv, &rec) != 0 || KV_EXPIRED(rec.expires_at, t->now))
      continue;
    if (n == limit) {
      more = 1;
      break;
    }
    if (rec.flags & KV__REC_KHASHED)
      rc = kv__slot_add_name(slot, rec.key, rec.key_len);
    else
      rc = kv__slot_add_name(slot, (const char *)mk.mv_data + prefix_len,
                             mk.mv_size - prefix_len);
    if (rc != 0) {
      mdb_cursor_close(c);
      kv__slot_error(slot, KV_ENOMEM, "out of memory");
      return 0;
    }
    memcpy(last, mk.mv_data, mk.mv_size);
    last_len = mk.mv_size;
    n++;
  }
  mdb_cursor_close(c);
  if (rc != 0 && rc != MDB_NOTFOUND && !more) return rc;
  if (more) kv__slot_cursor(slot, 'k', last, last_len);
  return 0;
}

static int disk_do_collections(disk_txn_t *t, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  size_t limit = req->in.limit ? req->in.limit : DISK_PAGE_DEFAULT;
  size_t n = 0, plen = 0, last_len = 0;
  unsigned char start[KV__REC_KEY_MAX], prefix[KV__REC_KEY_MAX],
      last[KV__REC_KEY_MAX];
  MDB_cursor *c;
  MDB_val mk, mv;
  kv__rec_t rec;
  int rc, more = 0;
  mk.mv_data = start;
  if (req->in.cursor != NULL) {
    mk.mv_size = kv__cursor_parse(req->in.cursor, 'c', start, KV__REC_KEY_MAX);
    if (mk.mv_size < 3 || 2 + kv__rec_be16(start) != mk.mv_size) {
      kv__slot_error(slot, KV_EINVAL, "invalid cursor");
      return 0;
    }
    mk.mv_size = kv__rec_successor(start, mk.mv_size);
  } else {
    memcpy(start, kv__rec_first_key, sizeof(kv__rec_first_key));
    mk.mv_size = sizeof(kv__rec_first_key);
  }
  rc = mdb_cursor_open(t->txn, t->dbi, &c);
  if (rc != 0) return rc;
  rc = mdb_cursor_get(c, &mk, &mv, MDB_SET_RANGE);
  while (rc == 0) {
    int live = 0;
    if (!kv__rec_entry_key(mk.mv_data, mk.mv_size, &plen)) {
      rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT);
      continue;
    }
    memcpy(prefix, mk.mv_data, plen);
    /* A collection is listed only while it holds a live entry. */
    for (; rc == 0 && kv__rec_has_prefix(mk.mv_data, mk.mv_size, prefix, plen);
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
      if (rec.flags & KV__REC_CHASHED)
        rc = kv__slot_add_name(slot, rec.coll, rec.coll_len);
      else
        rc = kv__slot_add_name(slot, (const char *)prefix + 2, plen - 2);
      if (rc != 0) {
        mdb_cursor_close(c);
        kv__slot_error(slot, KV_ENOMEM, "out of memory");
        return 0;
      }
      memcpy(last, prefix, plen);
      last_len = plen;
      n++;
    }
    mk.mv_data = prefix;
    mk.mv_size = kv__rec_successor(prefix, plen);
    rc = mdb_cursor_get(c, &mk, &mv, MDB_SET_RANGE);
  }
  mdb_cursor_close(c);
  if (rc != 0 && rc != MDB_NOTFOUND && !more) return rc;
  if (more) kv__slot_cursor(slot, 'c', last, last_len);
  return 0;
}

/* Delete entries from `from` on: all of them while they start with prefix
 * (destroy_collection), or the expired ones anywhere (prefix NULL: cull). */
static int disk_sweep(disk_txn_t *t, const unsigned char *from, size_t from_len,
                      const unsigned char *prefix, size_t prefix_len,
                      size_t *removed) {
  MDB_cursor *c;
  MDB_val mk, mv;
  kv__rec_t rec;
  size_t plen;
  int rc;
  rc = mdb_cursor_open(t->txn, t->dbi, &c);
  if (rc != 0) return rc;
  mk.mv_data = (void *)from;
  mk.mv_size = from_len;
  for (rc = mdb_cursor_get(c, &mk, &mv, MDB_SET_RANGE); rc == 0;
       rc = mdb_cursor_get(c, &mk, &mv, MDB_NEXT)) {
    if (prefix != NULL) {
      if (!kv__rec_has_prefix(mk.mv_data, mk.mv_size, prefix, prefix_len))
        break;
    } else if (!kv__rec_entry_key(mk.mv_data, mk.mv_size, &plen) ||
               disk_rec_parse(&mv, &rec) != 0 ||
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

static int disk_exec_op(disk_txn_t *t, kv__slot_t *slot) {
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
    kv__reckey_t k;
    kv__reckey_init(&k, req->in.collection, req->in.collection_len);
    rc = disk_sweep(t, k.buf, k.prefix_len, k.buf, k.prefix_len, &removed);
    req->count = removed;
    return rc;
  }
  case KV_OP_CULL:
    rc = disk_sweep(t, kv__rec_first_key, sizeof(kv__rec_first_key), NULL, 0,
                    &removed);
    req->count = removed;
    return rc;
  default:
    kv__slot_error(slot, KV_ENOTSUP, "operation not supported");
    return 0;
  }
}

/* ---- Environments ------------------------------------------------------- */

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
  rc = kv__mkdirs(path, 1, buf, sizeof(buf));
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
  if (mdb_env_get_maxkeysize(e->env) < KV__REC_KEY_MAX) {
    rc = disk_errbuf(errbuf, errbuf_len, KV_EBACKEND,
                     "disk: LMDB's key limit is below %d bytes",
                     KV__REC_KEY_MAX);
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

/* ---- The engine --------------------------------------------------------- */

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

#define DISK_OF(b) ((kv_disk_t *)(b)->store)

static int disk_begin(kv__batcher_t *b, int mode, void **txn) {
  kv_disk_t *d = DISK_OF(b);
  disk_env_t *e = d->denv;
  int rc;
  pthread_rwlock_rdlock(&e->resize_lock);
  rc = mdb_txn_begin(e->env, NULL, mode == KV__TXN_READ ? MDB_RDONLY : 0,
                     &d->wtxn.txn);
  if (rc != 0) {
    pthread_rwlock_unlock(&e->resize_lock);
    return rc;
  }
  d->wtxn.dbi = e->dbi;
  *txn = &d->wtxn;
  return 0;
}

/* A read on the loop thread: renew the store's reset read transaction (a
 * fresh snapshot, no allocation). Never waits: a map being resized sends
 * the read to the threadpool. */
static int disk_loop_begin(kv__batcher_t *b, void **txn) {
  kv_disk_t *d = DISK_OF(b);
  disk_env_t *e = d->denv;
  int rc;
  if (pthread_rwlock_tryrdlock(&e->resize_lock) != 0) return EBUSY;
  if (d->ltxn.txn == NULL)
    rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &d->ltxn.txn);
  else
    rc = mdb_txn_renew(d->ltxn.txn);
  if (rc != 0) {
    if (d->ltxn.txn != NULL) mdb_txn_abort(d->ltxn.txn);
    d->ltxn.txn = NULL;
    pthread_rwlock_unlock(&e->resize_lock);
    return rc;
  }
  d->ltxn.dbi = e->dbi;
  *txn = &d->ltxn;
  return 0;
}

static int disk_exec(kv__batcher_t *b, void *txn, kv__slot_t *slot,
                     int64_t now) {
  disk_txn_t *t = txn;
  (void)b;
  t->now = now;
  return disk_exec_op(t, slot);
}

static int disk_commit(kv__batcher_t *b, void *txn, int mode) {
  kv_disk_t *d = DISK_OF(b);
  disk_txn_t *t = txn;
  int rc = 0;
  if (mode == KV__TXN_LOOP)
    mdb_txn_reset(t->txn);
  else if (mode == KV__TXN_READ)
    mdb_txn_abort(t->txn);
  else
    rc = mdb_txn_commit(t->txn);
  if (mode != KV__TXN_LOOP) {
    MDB_envinfo info;
    t->txn = NULL;
    if (mdb_env_info(d->denv->env, &info) == 0) d->w_map_size = info.me_mapsize;
  }
  pthread_rwlock_unlock(&d->denv->resize_lock);
  return rc;
}

static void disk_abort(kv__batcher_t *b, void *txn, int mode) {
  kv_disk_t *d = DISK_OF(b);
  disk_txn_t *t = txn;
  if (mode == KV__TXN_LOOP) {
    mdb_txn_reset(t->txn);
  } else {
    mdb_txn_abort(t->txn);
    t->txn = NULL;
  }
  pthread_rwlock_unlock(&d->denv->resize_lock);
}

/* Retry after growing the map (it was full) or adopting the size another
 * process gave it. */
static int disk_retry(kv__batcher_t *b, int code, unsigned tries) {
  kv_disk_t *d = DISK_OF(b);
  if (tries >= DISK_MAX_RETRIES) return 0;
  if (code == MDB_MAP_FULL) return disk_grow(d) == 0;
  if (code == MDB_MAP_RESIZED) return disk_adopt_size(d) == 0;
  return 0;
}

static void disk_fail(kv__batcher_t *b, kv__slot_t *slot, int code) {
  if (code == EIO) code = disk_diagnose_eio(DISK_OF(b));
  slot->status = disk_map_err(code);
  slot->code = code;
  slot->msg = code == MDB_MAP_FULL ? "the map cannot grow further" : NULL;
}

static void disk_detail(kv__batcher_t *b, kv__slot_t *slot) {
  kv_req_set_error(slot->req, slot->status, "disk: %s%s%s (%s)",
                   slot->msg ? slot->msg : "", slot->msg ? ": " : "",
                   mdb_strerror(slot->code), DISK_OF(b)->path);
}

static void disk_after(kv__batcher_t *b) {
  kv_disk_t *d = DISK_OF(b);
  d->map_grows = d->w_grows;
  d->map_size = d->w_map_size;
}

static void disk_closed(kv__batcher_t *b) {
  kv_disk_t *d = DISK_OF(b);
  if (d->ltxn.txn != NULL) mdb_txn_abort(d->ltxn.txn);
  d->ltxn.txn = NULL;
  disk_env_release(d->denv);
  d->denv = NULL;
  kv_free(d->path);
  d->path = NULL;
}

static const kv__engine_t disk_engine = {
    .name = "disk",
    .begin = disk_begin,
    .exec = disk_exec,
    .commit = disk_commit,
    .abort = disk_abort,
    .retry = disk_retry,
    .fail = disk_fail,
    .detail = disk_detail,
    .loop_begin = disk_loop_begin,
    .after = disk_after,
    .closed = disk_closed,
};

static int disk_ctl(kv_store_t *s, int op, void *arg, size_t size) {
  kv_disk_t *d = (kv_disk_t *)s;
  kv__batcher_t *b = &d->batcher;
  kv_disk_stats_t *st = arg;
  if (op == KV_DISK_CTL_STATS) {
    KV_CTL_EXPECT(arg, size, kv_disk_stats_t);
    memset(st, 0, sizeof(*st));
    st->batches = b->batches;
    st->write_txns = b->write_txns;
    st->read_txns = b->read_txns;
    st->ops = b->ops;
    st->map_grows = d->map_grows;
    st->map_size = d->map_size;
    st->loop_reads = b->loop_reads_served;
    return 0;
  }
  return KV_ENOTSUP;
}

/* ---- Open --------------------------------------------------------------- */

static int disk_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                     size_t errbuf_len) {
  kv_disk_t *d = (kv_disk_t *)s;
  const char *sync = kv_url_param(url, "sync");
  const char *reads = kv_url_param(url, "reads");
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
  if (reads != NULL && strcmp(reads, "loop") != 0 && strcmp(reads, "pool") != 0)
    return disk_errbuf(errbuf, errbuf_len, KV_EINVAL,
                       "disk: reads must be loop or pool, not \"%s\"", reads);
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
  {
    MDB_envinfo info;
    if (mdb_env_info(d->denv->env, &info) == 0)
      d->map_size = d->w_map_size = info.me_mapsize;
  }
  kv__batch_init(&d->batcher, s, &disk_engine);
  d->batcher.loop_reads = reads == NULL || strcmp(reads, "loop") == 0
                              ? KV__LOOP_SUBMIT
                              : KV__LOOP_NONE;
  return 0;
}

const kv_store_methods_t kv__disk_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "disk",
    .store_size = sizeof(kv_disk_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT | KV_CAP_SHARED,
    .options = disk_options,
    .open = disk_open,
    KV__BATCHED_METHODS,
    .ctl_ex = disk_ctl,
};
