/* sqlite:// — a store in one SQLite database file, in WAL mode.
 *
 * The store is an engine of the shared batcher (stores/common/batcher.h):
 *
 *  - The requests of one loop turn run in one transaction on libuv's
 *    threadpool, in arrival order, so later ops see earlier writes and one
 *    commit (one fsync) covers many writes. A batch that writes takes the
 *    write lock at once (BEGIN IMMEDIATE), so the read-decide-write of
 *    put_if_absent, cas, incr and take is atomic across connections and
 *    processes; a batch of reads uses a deferred transaction (a WAL
 *    snapshot, no lock).
 *  - Reads (reads=loop, the default) run on the loop thread on a second,
 *    read-only connection with a memory map (mmap_size) and busy_timeout 0:
 *    in WAL mode a reader never waits for a writer, and the rare SQLITE_BUSY
 *    (a WAL being recovered) sends the read to the threadpool instead of
 *    waiting. As on every engine of the batcher, a read waits in the queue
 *    while a write of this store is queued or in flight. reads=pool keeps
 *    every read on the threadpool. docs/sqlite.md has the measurements.
 *  - Statements are prepared once per connection at open, and reset and
 *    rebound for each use. Each connection is used by one thread at a time
 *    (the worker's by one batch at a time, the reader's by the loop), so
 *    they are opened with SQLITE_OPEN_NOMUTEX.
 *  - When a request fails inside the transaction (disk full, I/O error), the
 *    transaction is rolled back, the results of the ops it ran dropped, and
 *    the batch split: the ops before the failing one commit, the failing one
 *    fails alone, the rest run in a new transaction.
 *
 * Table (created when missing; its name is the `table` option):
 *   collection TEXT, key TEXT, value BLOB, expires_at INTEGER (Unix ms,
 *   0 = never), PRIMARY KEY (collection, key), WITHOUT ROWID.
 * SQLite has no length limit on names, so collections and keys are stored as
 * they are; the primary key keeps every (collection, key) pair apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <sqlite3.h>

#include "internal.h"
#include "kvio/sqlite.h"
#include "stores/common/batcher.h"

#define SQL_PAGE_DEFAULT 1000
#define SQL_BUSY_DEFAULT 5000
#define SQL_TABLE_MAX 64
#define SQL_MMAP_SIZE ((int64_t)256 << 20)

extern const kv_store_methods_t kv__sqlite_methods;

/* The prepared statements of a connection. */
enum {
  SQL_BEGIN_W,
  SQL_BEGIN_R,
  SQL_COMMIT,
  SQL_ROLLBACK,
  SQL_GET,
  SQL_PUT,
  SQL_DEL,
  SQL_KEYS,
  SQL_COLL_NEXT,
  SQL_DESTROY,
  SQL_DESTROY_COLL,
  SQL_CULL,
  SQL_NSTMT
};

/* %s is the quoted table name. */
static const char *const sql_text[SQL_NSTMT] = {
    "BEGIN IMMEDIATE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SELECT value, expires_at FROM %s WHERE collection = ?1 AND key = ?2",
    "INSERT OR REPLACE INTO %s (collection, key, value, expires_at) "
    "VALUES (?1, ?2, ?3, ?4)",
    "DELETE FROM %s WHERE collection = ?1 AND key = ?2 RETURNING expires_at",
    "SELECT key FROM %s WHERE collection = ?1 AND key > ?2 AND "
    "(expires_at = 0 OR expires_at > ?3) ORDER BY key LIMIT ?4",
    "SELECT collection FROM %s WHERE collection > ?1 AND "
    "(expires_at = 0 OR expires_at > ?2) ORDER BY collection LIMIT 1",
    "DELETE FROM %s",
    "DELETE FROM %s WHERE collection = ?1",
    "DELETE FROM %s WHERE expires_at > 0 AND expires_at <= ?1",
};

/* One request of a batch, with what the worker found out about it. */
/* A connection and its prepared statements. */
typedef struct sql_conn_s {
  sqlite3 *db;
  sqlite3_stmt *stmt[SQL_NSTMT];
  char w_errmsg[256]; /* SQLite's message for the last failure */
} sql_conn_t;

typedef struct kv_sqlite_s {
  KV__BATCHED_STORE;
  sql_conn_t w; /* the threadpool's connection */
  sql_conn_t r; /* the loop's read-only connection (reads=loop) */
  char *path;
  int64_t busy_timeout;
  /* Written by the worker; copied for the loop after each batch. */
  uint64_t w_busy;
  uint64_t busy;
} kv_sqlite_t;

enum { SQL_ABSENT, SQL_EXPIRED, SQL_LIVE };

/* A looked-up row. Pointers into the statement: valid until it is reset. */
typedef struct sql_row_s {
  int state;
  const char *value;
  size_t value_len;
  int64_t expires_at;
} sql_row_t;

static const char *const sql_options[] = {"sync",  "busy_timeout", "table",
                                          "check", "reads",        NULL};
/* ---- Small helpers ------------------------------------------------------ */

/* The kvio code for an SQLite (extended) result code. */
static int sql_map_err(int rc) {
  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return KV_EBUSY;
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB:
  case SQLITE_FORMAT:
    return KV_ECORRUPT;
  case SQLITE_NOMEM:
    return KV_ENOMEM;
  case SQLITE_TOOBIG:
    return KV_ETOOBIG;
  case SQLITE_IOERR:
  case SQLITE_CANTOPEN:
  case SQLITE_FULL:
  case SQLITE_READONLY:
  case SQLITE_PERM:
  case SQLITE_PROTOCOL:
  case SQLITE_AUTH:
    return KV_EIO;
  }
  return KV_EBACKEND;
}

static uint32_t sql_get_be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | p[3];
}

/* Bind text that lives until the statement is reset. */
static int sql_bind_text(sqlite3_stmt *st, int i, const char *s, size_t len) {
  return sqlite3_bind_text(st, i, s, (int)len, SQLITE_STATIC);
}

/* Step a statement that returns no rows (or whose rows are not wanted) to
 * the end and reset it. Returns SQLITE_OK or the error. */
static int sql_run(sqlite3_stmt *st) {
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
  }
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}
/* ---- Operations (worker thread) ----------------------------------------
 *
 * Each returns an SQLite code: SQLITE_OK when the op ran (its own outcome,
 * such as KV_ECONFLICT, is in the slot), anything else when the transaction
 * failed and must be rolled back.
 */

/* Look (coll, key) up with SQL_GET. On SQLITE_OK the statement stays on
 * the row: call sql_lookup_end() once done with *row. */
static int sql_lookup(sql_conn_t *d, const char *coll, size_t coll_len,
                      const char *key, size_t key_len, int64_t now,
                      sql_row_t *row) {
  sqlite3_stmt *st = d->stmt[SQL_GET];
  int rc;
  sql_bind_text(st, 1, coll, coll_len);
  sql_bind_text(st, 2, key, key_len);
  rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    row->state = SQL_ABSENT;
    return SQLITE_OK;
  }
  if (rc != SQLITE_ROW) {
    sqlite3_reset(st);
    return rc;
  }
  row->value = sqlite3_column_blob(st, 0);
  row->value_len = (size_t)sqlite3_column_bytes(st, 0);
  if (row->value == NULL) row->value_len = 0;
  if (row->value == NULL && row->value_len == 0 &&
      sqlite3_errcode(d->db) == SQLITE_NOMEM) {
    sqlite3_reset(st);
    return SQLITE_NOMEM;
  }
  row->expires_at = sqlite3_column_int64(st, 1);
  row->state = KV_EXPIRED(row->expires_at, now) ? SQL_EXPIRED : SQL_LIVE;
  return SQLITE_OK;
}

static void sql_lookup_end(sql_conn_t *d) {
  sqlite3_reset(d->stmt[SQL_GET]);
}

static int sql_put_row(sql_conn_t *d, const char *coll, size_t coll_len,
                       const char *key, size_t key_len, const void *value,
                       size_t value_len, int64_t expires_at) {
  sqlite3_stmt *st = d->stmt[SQL_PUT];
  sql_bind_text(st, 1, coll, coll_len);
  sql_bind_text(st, 2, key, key_len);
  /* A NULL pointer would bind SQL NULL: an empty value is a 0-byte blob. */
  sqlite3_bind_blob64(st, 3, value_len > 0 ? value : "", value_len,
                      SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, expires_at);
  return sql_run(st);
}

/* Delete (coll, key); *live = 1 if it held a live value. */
static int sql_del_row(sql_conn_t *d, const char *coll, size_t coll_len,
                       const char *key, size_t key_len, int64_t now,
                       int *live) {
  sqlite3_stmt *st = d->stmt[SQL_DEL];
  int rc;
  *live = 0;
  sql_bind_text(st, 1, coll, coll_len);
  sql_bind_text(st, 2, key, key_len);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (!KV_EXPIRED(sqlite3_column_int64(st, 0), now)) *live = 1;
  }
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int sql_do_get(sql_conn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  sql_row_t row;
  int rc, live;
  rc = sql_lookup(d, req->in.collection, req->in.collection_len, req->in.key,
                  req->in.key_len, now, &row);
  if (rc != SQLITE_OK) return rc;
  if (row.state == SQL_LIVE) {
    kv__slot_give_value(slot, row.value, row.value_len);
    if (slot->status == 0 && req->op == KV_OP_TTL)
      req->ttl = kv_remaining_ttl(row.expires_at, now);
  }
  sql_lookup_end(d);
  if (req->op == KV_OP_TAKE && row.state != SQL_ABSENT && slot->status == 0)
    return sql_del_row(d, req->in.collection, req->in.collection_len,
                       req->in.key, req->in.key_len, now, &live);
  return SQLITE_OK;
}

static int sql_do_put(sql_conn_t *d, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  return sql_put_row(d, req->in.collection, req->in.collection_len, req->in.key,
                     req->in.key_len, req->in.value.base, req->in.value.len,
                     req->in.expires_at_ms);
}

static int sql_do_delete(sql_conn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  size_t removed = 0, i;
  int rc, live;
  if (req->op == KV_OP_DELETE) {
    rc = sql_del_row(d, req->in.collection, req->in.collection_len, req->in.key,
                     req->in.key_len, now, &live);
    req->found = live;
    return rc;
  }
  for (i = 0; i < req->in.n; i++) {
    rc = sql_del_row(d, req->in.collection, req->in.collection_len,
                     req->in.keys[i].base, req->in.keys[i].len, now, &live);
    if (rc != SQLITE_OK) return rc;
    removed += (size_t)live;
  }
  req->count = removed;
  return SQLITE_OK;
}

static int sql_do_get_many(sql_conn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  sql_row_t row;
  size_t i;
  int rc;
  if (kv_req_alloc_results(req) != 0) {
    kv__slot_error(slot, KV_ENOMEM, "out of memory");
    return SQLITE_OK;
  }
  for (i = 0; i < req->in.n; i++) {
    rc = sql_lookup(d, req->in.collection, req->in.collection_len,
                    req->in.keys[i].base, req->in.keys[i].len, now, &row);
    if (rc != SQLITE_OK) return rc;
    if (row.state == SQL_LIVE &&
        kv_req_set_result(req, i, row.value, row.value_len,
                          kv_remaining_ttl(row.expires_at, now)) != 0) {
      sql_lookup_end(d);
      kv__slot_error(slot, KV_ENOMEM, "out of memory");
      return SQLITE_OK;
    }
    sql_lookup_end(d);
  }
  return SQLITE_OK;
}

static int sql_do_put_many(sql_conn_t *d, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  size_t i;
  int rc;
  for (i = 0; i < req->in.n; i++) {
    rc = sql_put_row(d, req->in.collection, req->in.collection_len,
                     req->in.keys[i].base, req->in.keys[i].len,
                     req->in.values[i].base, req->in.values[i].len,
                     req->in.expires_at_ms);
    if (rc != SQLITE_OK) return rc; /* rolled back: all or nothing */
  }
  return SQLITE_OK;
}

/* put_if_absent, cas, incr: read, decide, write, in the write transaction
 * (BEGIN IMMEDIATE holds the database's write lock). */
static int sql_do_atomic(sql_conn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  sql_row_t row;
  int rc;
  rc = sql_lookup(d, req->in.collection, req->in.collection_len, req->in.key,
                  req->in.key_len, now, &row);
  if (rc != SQLITE_OK) return rc;
  switch (req->op) {
  case KV_OP_PUT_IF_ABSENT:
    sql_lookup_end(d);
    if (row.state == SQL_LIVE) return SQLITE_OK; /* found = 0: not stored */
    req->found = 1;
    return sql_do_put(d, slot);
  case KV_OP_CAS: {
    int ok =
        req->in.expected_absent
            ? row.state != SQL_LIVE
            : row.state == SQL_LIVE && row.value_len == req->in.expected.len &&
                  (row.value_len == 0 ||
                   memcmp(row.value, req->in.expected.base, row.value_len) ==
                       0);
    sql_lookup_end(d);
    if (!ok) {
      kv__slot_error(slot, KV_ECONFLICT,
                     req->in.expected_absent
                         ? "the key holds a value"
                         : "the value differs from the expected one");
      return SQLITE_OK;
    }
    req->found = 1;
    return sql_do_put(d, slot);
  }
  default: { /* KV_OP_INCR */
    int64_t cur = 0, next, expires_at = req->in.expires_at_ms;
    char text[32];
    size_t len;
    int bad = 0;
    if (row.state == SQL_LIVE) {
      bad = kv_parse_int64(row.value, row.value_len, &cur) != 0;
      expires_at = row.expires_at; /* an existing entry keeps its TTL */
    }
    sql_lookup_end(d);
    if (bad) {
      kv__slot_error(slot, KV_EINVAL, "the value is not a decimal integer");
      return SQLITE_OK;
    }
    if (__builtin_add_overflow(cur, req->in.delta, &next)) {
      kv__slot_error(slot, KV_EINVAL, "integer overflow");
      return SQLITE_OK;
    }
    len = kv_format_int64(next, text);
    req->number = next;
    return sql_put_row(d, req->in.collection, req->in.collection_len,
                       req->in.key, req->in.key_len, text, len, expires_at);
  }
  }
}

/* Keyset pagination: the keys after the cursor's, in byte order. */
static int sql_do_keys(sql_conn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  size_t limit = req->in.limit ? req->in.limit : SQL_PAGE_DEFAULT;
  sqlite3_stmt *st = d->stmt[SQL_KEYS];
  char after[KV_NAME_MAX];
  size_t after_len = 0, n = 0, last_len = 0;
  const char *last = NULL;
  int rc, more = 0;
  if (req->in.cursor != NULL) {
    after_len = kv__cursor_parse(req->in.cursor, 'k', after, KV_NAME_MAX);
    if (after_len == 0) {
      kv__slot_error(slot, KV_EINVAL, "invalid cursor");
      return SQLITE_OK;
    }
  }
  sql_bind_text(st, 1, req->in.collection, req->in.collection_len);
  sql_bind_text(st, 2, after, after_len); /* "" sorts before every key */
  sqlite3_bind_int64(st, 3, now);
  sqlite3_bind_int64(st, 4,
                     limit >= INT64_MAX ? INT64_MAX : (int64_t)limit + 1);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    size_t len = (size_t)sqlite3_column_bytes(st, 0);
    if (n == limit) {
      more = 1;
      break;
    }
    if (name == NULL) name = "";
    if (kv__slot_add_name(slot, name, len) != 0) {
      sqlite3_reset(st);
      kv__slot_error(slot, KV_ENOMEM, "out of memory");
      return SQLITE_OK;
    }
    last = slot->names + slot->names_len - len;
    last_len = len;
    n++;
  }
  sqlite3_reset(st);
  if (!more && rc != SQLITE_DONE) return rc;
  if (more) kv__slot_cursor(slot, 'k', last, last_len);
  return SQLITE_OK;
}

/* Collections: one index seek per collection ("the first live row whose
 * collection sorts after the last one listed"), so a collection's rows are
 * never scanned beyond its first live one. */
static int sql_do_collections(sql_conn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  size_t limit = req->in.limit ? req->in.limit : SQL_PAGE_DEFAULT;
  sqlite3_stmt *st = d->stmt[SQL_COLL_NEXT];
  char after[KV_NAME_MAX];
  size_t after_len = 0, n = 0;
  int rc, more = 0;
  if (req->in.cursor != NULL) {
    after_len = kv__cursor_parse(req->in.cursor, 'c', after, KV_NAME_MAX);
    if (after_len == 0) {
      kv__slot_error(slot, KV_EINVAL, "invalid cursor");
      return SQLITE_OK;
    }
  }
  for (;;) {
    const char *name;
    size_t len;
    /* Copied: `after` is overwritten with the row's name below. */
    sqlite3_bind_text(st, 1, after, (int)after_len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, now);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) break;
    if (n == limit) {
      more = 1;
      break;
    }
    name = (const char *)sqlite3_column_text(st, 0);
    len = (size_t)sqlite3_column_bytes(st, 0);
    if (name == NULL || len == 0 || len > KV_NAME_MAX) {
      sqlite3_reset(st);
      kv__slot_error(slot, KV_ECORRUPT, "a row has an invalid collection");
      return SQLITE_OK;
    }
    if (kv__slot_add_name(slot, name, len) != 0) {
      sqlite3_reset(st);
      kv__slot_error(slot, KV_ENOMEM, "out of memory");
      return SQLITE_OK;
    }
    memcpy(after, name, len);
    after_len = len;
    sqlite3_reset(st);
    n++;
  }
  sqlite3_reset(st);
  if (!more && rc != SQLITE_DONE) return rc;
  if (more) kv__slot_cursor(slot, 'c', after, after_len);
  return SQLITE_OK;
}

static int sql_exec(sql_conn_t *d, kv__slot_t *slot, int64_t now) {
  kv_req_t *req = slot->req;
  sqlite3_stmt *st;
  int rc;
  switch (req->op) {
  case KV_OP_GET:
  case KV_OP_TTL:
  case KV_OP_TAKE:
    return sql_do_get(d, slot, now);
  case KV_OP_PUT:
    return sql_do_put(d, slot);
  case KV_OP_DELETE:
  case KV_OP_DELETE_MANY:
    return sql_do_delete(d, slot, now);
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
    return sql_do_get_many(d, slot, now);
  case KV_OP_PUT_MANY:
    return sql_do_put_many(d, slot);
  case KV_OP_PUT_IF_ABSENT:
  case KV_OP_CAS:
  case KV_OP_INCR:
    return sql_do_atomic(d, slot, now);
  case KV_OP_KEYS:
    return sql_do_keys(d, slot, now);
  case KV_OP_COLLECTIONS:
    return sql_do_collections(d, slot, now);
  case KV_OP_DESTROY:
    return sql_run(d->stmt[SQL_DESTROY]);
  case KV_OP_DESTROY_COLLECTION:
    st = d->stmt[SQL_DESTROY_COLL];
    sql_bind_text(st, 1, req->in.collection, req->in.collection_len);
    rc = sql_run(st);
    if (rc == SQLITE_OK) req->count = (size_t)sqlite3_changes64(d->db);
    return rc;
  case KV_OP_CULL:
    st = d->stmt[SQL_CULL];
    sqlite3_bind_int64(st, 1, now);
    rc = sql_run(st);
    if (rc == SQLITE_OK) req->count = (size_t)sqlite3_changes64(d->db);
    return rc;
  default:
    kv__slot_error(slot, KV_ENOTSUP, "operation not supported");
    return SQLITE_OK;
  }
}

/* Keep SQLite's message for a failure, then roll back what is open. */
static void sql_failed(sql_conn_t *d) {
  /* An I/O failure also names the system's error ("disk I/O error: File too
   * large"): SQLite's text alone does not say why. sqlite3_system_errno()
   * is often 0 here; errno still holds what the failing call set. */
  int last = errno;
  int code = sqlite3_extended_errcode(d->db) & 0xff;
  int sys = sqlite3_system_errno(d->db);
  if (sys == 0) sys = last;
  if (sys != 0 &&
      (code == SQLITE_IOERR || code == SQLITE_FULL || code == SQLITE_CANTOPEN))
    snprintf(d->w_errmsg, sizeof(d->w_errmsg), "%s: %s", sqlite3_errmsg(d->db),
             strerror(sys));
  else
    snprintf(d->w_errmsg, sizeof(d->w_errmsg), "%s", sqlite3_errmsg(d->db));
  if (!sqlite3_get_autocommit(d->db)) sql_run(d->stmt[SQL_ROLLBACK]);
}

/* ---- The engine --------------------------------------------------------- */

#define SQL_OF(b) ((kv_sqlite_t *)(b)->store)

static int sql_begin(kv__batcher_t *b, int mode, void **txn) {
  sql_conn_t *c = &SQL_OF(b)->w;
  int rc = sql_run(c->stmt[mode == KV__TXN_WRITE ? SQL_BEGIN_W : SQL_BEGIN_R]);
  if (rc != SQLITE_OK) {
    sql_failed(c);
    return rc;
  }
  *txn = c;
  return 0;
}

/* Reads on the loop thread, on the read-only connection: a deferred
 * transaction (one WAL snapshot for the reads of a loop turn) that never
 * waits (busy_timeout 0). */
static int sql_loop_begin(kv__batcher_t *b, void **txn) {
  sql_conn_t *c = &SQL_OF(b)->r;
  int rc;
  if (c->db == NULL) return SQLITE_MISUSE;
  rc = sql_run(c->stmt[SQL_BEGIN_R]);
  if (rc != SQLITE_OK) {
    sql_failed(c);
    return rc;
  }
  *txn = c;
  return 0;
}

static int sql_exec_engine(kv__batcher_t *b, void *txn, kv__slot_t *slot,
                           int64_t now) {
  (void)b;
  return sql_exec(txn, slot, now);
}

static int sql_commit(kv__batcher_t *b, void *txn, int mode) {
  sql_conn_t *c = txn;
  int rc = sql_run(c->stmt[SQL_COMMIT]);
  (void)b;
  (void)mode;
  if (rc != SQLITE_OK) sql_failed(c);
  return rc;
}

static void sql_abort(kv__batcher_t *b, void *txn, int mode) {
  (void)b;
  (void)mode;
  sql_failed(txn);
}

/* No retry of its own: SQLite waits busy_timeout inside. Counts the
 * transactions that found the database locked. */
static int sql_retry(kv__batcher_t *b, int code, unsigned tries) {
  (void)tries;
  if ((code & 0xff) == SQLITE_BUSY) SQL_OF(b)->w_busy++;
  return 0;
}

static void sql_fail(kv__batcher_t *b, kv__slot_t *slot, int code) {
  sql_conn_t *c = &SQL_OF(b)->w;
  slot->status = sql_map_err(code);
  slot->code = code;
  slot->msg = NULL;
  kv_free(slot->errmsg);
  slot->errmsg = kv_strndup(c->w_errmsg, strlen(c->w_errmsg));
}

static void sql_detail(kv__batcher_t *b, kv__slot_t *slot) {
  kv_sqlite_t *d = SQL_OF(b);
  kv_req_t *req = slot->req;
  if ((slot->code & 0xff) == SQLITE_BUSY)
    kv_req_set_error(req, slot->status,
                     "sqlite: %s is locked by another connection (waited "
                     "busy_timeout=%lld ms): %s",
                     d->path, (long long)d->busy_timeout,
                     slot->errmsg ? slot->errmsg : "database is locked");
  else
    kv_req_set_error(req, slot->status, "sqlite: %s (%s)",
                     slot->errmsg ? slot->errmsg : sqlite3_errstr(slot->code),
                     d->path);
}

static void sql_close_db(sql_conn_t *c);

/* Closing the last connection checkpoints the WAL (fsyncs): on the
 * threadpool, not on the loop. */
static void sql_close_work(kv__batcher_t *b) {
  kv_sqlite_t *d = SQL_OF(b);
  sql_close_db(&d->r);
  sql_close_db(&d->w);
}

static void sql_after(kv__batcher_t *b) {
  kv_sqlite_t *d = SQL_OF(b);
  d->busy = d->w_busy;
}

static void sql_closed(kv__batcher_t *b) {
  kv_sqlite_t *d = SQL_OF(b);
  kv_free(d->path);
  d->path = NULL;
}

static const kv__engine_t sql_engine = {
    .name = "sqlite",
    .begin = sql_begin,
    .exec = sql_exec_engine,
    .commit = sql_commit,
    .abort = sql_abort,
    .retry = sql_retry,
    .fail = sql_fail,
    .detail = sql_detail,
    .loop_begin = sql_loop_begin,
    .after = sql_after,
    .close_work = sql_close_work,
    .closed = sql_closed,
};

static int sql_ctl(kv_store_t *s, int op, void *arg, size_t size) {
  kv_sqlite_t *d = (kv_sqlite_t *)s;
  kv__batcher_t *b = &d->batcher;
  kv_sqlite_stats_t *st = arg;
  if (op == KV_SQLITE_CTL_STATS) {
    KV_CTL_EXPECT(arg, size, kv_sqlite_stats_t);
    memset(st, 0, sizeof(*st));
    st->batches = b->batches;
    st->write_txns = b->write_txns;
    st->read_txns = b->read_txns;
    st->ops = b->ops;
    st->busy = d->busy;
    st->splits = b->splits;
    st->loop_reads = b->loop_reads_served;
    return 0;
  }
  return KV_ENOTSUP;
}

/* ---- Opening ------------------------------------------------------------ */

/* Check an existing file before SQLite touches it: the magic, the page size
 * and, when the header's page count is valid and no WAL holds pages, that
 * the file is not shorter than the header says. Reads only. */
static int sql_check_header(const char *path, char *errbuf, size_t errbuf_len) {
  unsigned char h[100];
  char wal[PATH_MAX];
  struct stat st, wst;
  uint32_t page_size, pages;
  ssize_t got;
  int fd;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT) return 0; /* a new database */
    return kv__errbuf(errbuf, errbuf_len, KV_EIO, "sqlite: %s: %s", path,
                      strerror(errno));
  }
  if (S_ISDIR(st.st_mode))
    return kv__errbuf(errbuf, errbuf_len, KV_EIO,
                      "sqlite: %s is a directory, not a database file", path);
  if (st.st_size == 0) return 0; /* SQLite's empty database */
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EIO, "sqlite: cannot open %s: %s",
                      path, strerror(errno));
  got = read(fd, h, sizeof(h));
  close(fd);
  if (got < 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EIO, "sqlite: cannot read %s: %s",
                      path, strerror(errno));
  if (got < (ssize_t)sizeof(h) || memcmp(h, "SQLite format 3", 16) != 0)
    return kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                      "sqlite: %s is not an SQLite database (bad header)",
                      path);
  page_size = ((uint32_t)h[16] << 8) | h[17];
  if (page_size == 1) page_size = 65536;
  if (page_size < 512 || page_size > 65536 ||
      (page_size & (page_size - 1)) != 0)
    return kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                      "sqlite: %s: corrupt header (page size %u)", path,
                      (unsigned)page_size);
  pages = sql_get_be32(h + 28);
  snprintf(wal, sizeof(wal), "%s-wal", path);
  if (pages != 0 && sql_get_be32(h + 24) == sql_get_be32(h + 92) &&
      (stat(wal, &wst) != 0 || wst.st_size == 0) &&
      (uint64_t)st.st_size < (uint64_t)pages * page_size)
    return kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                      "sqlite: %s is truncated: %lld bytes, its header says "
                      "%u pages of %u bytes",
                      path, (long long)st.st_size, (unsigned)pages,
                      (unsigned)page_size);
  return 0;
}

/* Run one SQL statement at open; returns an SQLite code. If `text_out` is
 * given, the first column of the first row is copied into it. */
static int sql_exec_open(sqlite3 *db, const char *sql, char *text_out,
                         size_t text_len) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return rc;
  if (text_out != NULL) text_out[0] = '\0';
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char *t = sqlite3_column_text(st, 0);
    if (text_out != NULL && text_out[0] == '\0' && t != NULL)
      snprintf(text_out, text_len, "%s", (const char *)t);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The table: 0 = absent, 1 = present with our columns, or KV_ECORRUPT /
 * another error with a detail in errbuf. */
static int sql_table_state(kv_sqlite_t *d, const char *table, char *errbuf,
                           size_t errbuf_len) {
  static const char *const cols[4] = {"collection", "key", "value",
                                      "expires_at"};
  static const int pks[4] = {1, 2, 0, 0};
  sqlite3_stmt *st;
  int rc, ncols = 0, match = 0, i;
  rc = sqlite3_prepare_v2(d->w.db, "SELECT name, pk FROM pragma_table_info(?1)",
                          -1, &st, NULL);
  if (rc != SQLITE_OK) goto fail;
  sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    int pk = sqlite3_column_int(st, 1);
    ncols++;
    for (i = 0; i < 4; i++) {
      if (name != NULL && strcmp(name, cols[i]) == 0 && pk == pks[i]) match++;
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) goto fail;
  if (ncols == 0) return 0;
  if (ncols == 4 && match == 4) return 1;
  return kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                    "sqlite: %s: table \"%s\" exists with other columns "
                    "(a table of another program? choose another with "
                    "?table=NAME)",
                    d->path, table);
fail:
  return kv__errbuf(errbuf, errbuf_len, sql_map_err(rc), "sqlite: %s: %s",
                    d->path, sqlite3_errmsg(d->w.db));
}

static int sql_valid_table(const char *t) {
  size_t i, n = strlen(t);
  if (n == 0 || n > SQL_TABLE_MAX || (t[0] >= '0' && t[0] <= '9')) return 0;
  for (i = 0; i < n; i++) {
    char c = t[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return strncmp(t, "sqlite_", 7) != 0;
}

static void sql_close_db(sql_conn_t *c) {
  int i;
  for (i = 0; i < SQL_NSTMT; i++) {
    sqlite3_finalize(c->stmt[i]);
    c->stmt[i] = NULL;
  }
  sqlite3_close_v2(c->db);
  c->db = NULL;
}

/* Prepare the statements of a connection. Returns an SQLite code. */
static int sql_prepare(sql_conn_t *c, const char *table) {
  char sql[512];
  int rc, i;
  for (i = 0; i < SQL_NSTMT; i++) {
    /* sql_text[i] with its "%s" replaced by the quoted table name. */
    const char *at = strstr(sql_text[i], "%s");
    if (at == NULL)
      snprintf(sql, sizeof(sql), "%s", sql_text[i]);
    else
      snprintf(sql, sizeof(sql), "%.*s\"%s\"%s", (int)(at - sql_text[i]),
               sql_text[i], table, at + 2);
    rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                            &c->stmt[i], NULL);
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

static int sql_exec_open(sqlite3 *db, const char *sql, char *text_out,
                         size_t text_len);

/* Opening the writer: a statement that another process's open keeps busy
 * for a moment (its switch to WAL, its CREATE TABLE) is tried again until
 * busy_timeout has passed: SQLite's busy handler is not called in every
 * such case ("database is locked" at once, seen with two processes opening
 * one new file). */
static int sql_exec_setup(kv_sqlite_t *d, const char *sql, char *text_out,
                          size_t text_len) {
  uint64_t deadline = uv_hrtime() + (uint64_t)d->busy_timeout * 1000000u;
  for (;;) {
    int rc = sql_exec_open(d->w.db, sql, text_out, text_len);
    if ((rc & 0xff) != SQLITE_BUSY || uv_hrtime() >= deadline) return rc;
    sqlite3_sleep(10);
  }
}

/* The loop's connection: read-only, memory-mapped, never waiting for a
 * lock. Opened after the worker's, which made the file a WAL database with
 * the table. Returns 0 or an error with a detail. */
static int sql_open_reader(kv_sqlite_t *d, const char *table, char *errbuf,
                           size_t errbuf_len) {
  sql_conn_t *c = &d->r;
  char sql[64];
  int rc = sqlite3_open_v2(d->path, &c->db,
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, 0);
    snprintf(sql, sizeof(sql), "PRAGMA mmap_size=%lld",
             (long long)SQL_MMAP_SIZE);
    rc = sql_exec_open(c->db, sql, NULL, 0);
  }
  if (rc == SQLITE_OK) rc = sql_prepare(c, table);
  if (rc == SQLITE_OK) return 0;
  rc = kv__errbuf(errbuf, errbuf_len, sql_map_err(rc),
                  "sqlite: %s: read connection: %s", d->path,
                  c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
  sql_close_db(c);
  return rc;
}

/* Open the connection, check the file and the table, set the modes and
 * prepare the statements. Nothing is written to a file that fails a check:
 * every check reads before WAL mode is set or the table created. */
static int sql_open_db(kv_sqlite_t *d, const char *table, int quick,
                       const char *sync, char *errbuf, size_t errbuf_len) {
  char sql[512], text[64];
  int rc, state;
  rc = sql_check_header(d->path, errbuf, errbuf_len);
  if (rc != 0) return rc;
  rc = sqlite3_open_v2(
      d->path, &d->w.db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    rc = kv__errbuf(errbuf, errbuf_len, KV_EIO, "sqlite: cannot open %s: %s",
                    d->path,
                    d->w.db ? sqlite3_errmsg(d->w.db) : sqlite3_errstr(rc));
    goto fail;
  }
  sqlite3_extended_result_codes(d->w.db, 1);
  sqlite3_busy_timeout(d->w.db, (int)d->busy_timeout);
  if (sqlite3_db_readonly(d->w.db, "main") == 1) {
    rc = kv__errbuf(errbuf, errbuf_len, KV_EIO,
                    "sqlite: %s is read-only (no write permission)", d->path);
    goto fail;
  }
  /* Reading the schema detects "file is not a database". */
  rc = sql_exec_setup(d, "SELECT count(*) FROM sqlite_schema", NULL, 0);
  if (rc != SQLITE_OK) goto fail_sqlite;
  state = sql_table_state(d, table, errbuf, errbuf_len);
  if (state < 0) {
    rc = state;
    goto fail;
  }
  if (quick) {
    rc = sql_exec_setup(d, "PRAGMA quick_check(1)", text, sizeof(text));
    if (rc != SQLITE_OK) goto fail_sqlite;
    if (strcmp(text, "ok") != 0) {
      rc = kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                      "sqlite: %s fails quick_check: %s", d->path, text);
      goto fail;
    }
  }
  rc = sql_exec_setup(d, "PRAGMA journal_mode=WAL", text, sizeof(text));
  if (rc != SQLITE_OK) goto fail_sqlite;
  if (strcmp(text, "wal") != 0) {
    rc = kv__errbuf(errbuf, errbuf_len, KV_EIO,
                    "sqlite: %s: cannot switch to WAL mode (journal mode "
                    "is \"%s\")",
                    d->path, text);
    goto fail;
  }
  snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", sync);
  rc = sql_exec_setup(d, sql, NULL, 0);
  if (rc != SQLITE_OK) goto fail_sqlite;
  if (state == 0) {
    snprintf(sql, sizeof(sql),
             "CREATE TABLE IF NOT EXISTS \"%s\" (collection TEXT NOT NULL, "
             "key TEXT NOT NULL, value BLOB NOT NULL, expires_at INTEGER NOT "
             "NULL DEFAULT 0, PRIMARY KEY (collection, key)) WITHOUT ROWID",
             table);
    rc = sql_exec_setup(d, sql, NULL, 0);
    if (rc != SQLITE_OK) goto fail_sqlite;
    /* Another process may have created it meanwhile, its own way. */
    state = sql_table_state(d, table, errbuf, errbuf_len);
    if (state < 0) {
      rc = state;
      goto fail;
    }
  }
  rc = sql_prepare(&d->w, table);
  if (rc != SQLITE_OK) goto fail_sqlite;
  return 0;
fail_sqlite:
  rc = kv__errbuf(errbuf, errbuf_len, sql_map_err(rc), "sqlite: %s: %s%s",
                  d->path, sqlite3_errmsg(d->w.db),
                  (rc & 0xff) == SQLITE_BUSY ? " (locked by another connection)"
                                             : "");
fail:
  sql_close_db(&d->w);
  return rc;
}

static int sql_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                    size_t errbuf_len) {
  kv_sqlite_t *d = (kv_sqlite_t *)s;
  const char *sync = kv_url_param(url, "sync");
  const char *table = kv_url_param(url, "table");
  const char *check = kv_url_param(url, "check");
  const char *reads = kv_url_param(url, "reads");
  char buf[PATH_MAX];
  int rc, quick;
  if (sync == NULL) sync = "full";
  if (strcmp(sync, "full") != 0 && strcmp(sync, "normal") != 0 &&
      strcmp(sync, "off") != 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "sqlite: sync must be full, normal or off, not \"%s\"",
                      sync);
  if (table == NULL) table = "kvio";
  if (!sql_valid_table(table))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "sqlite: table must be 1 to %d letters, digits or '_', "
                      "not starting with a digit or \"sqlite_\", not \"%s\"",
                      SQL_TABLE_MAX, table);
  if (check == NULL || strcmp(check, "header") == 0)
    quick = 0;
  else if (strcmp(check, "quick") == 0)
    quick = 1;
  else
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "sqlite: check must be header or quick, not \"%s\"",
                      check);
  if (reads != NULL && strcmp(reads, "loop") != 0 && strcmp(reads, "pool") != 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "sqlite: reads must be loop or pool, not \"%s\"", reads);
  rc = kv_url_param_int(url, "busy_timeout", 0, INT_MAX, SQL_BUSY_DEFAULT,
                        &d->busy_timeout, errbuf, errbuf_len);
  if (rc != 0) return rc;
  if (url->target == NULL || url->target[0] == '\0')
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "sqlite: the URL needs a file: sqlite://PATH");
  if (strcmp(url->target, ":memory:") == 0 ||
      strncmp(url->target, "file:", 5) == 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "sqlite: PATH must be a file name, not \"%s\"",
                      url->target);
  d->path = kv_strndup(url->target, strlen(url->target));
  if (d->path == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  rc = kv__mkdirs(d->path, 0, buf, sizeof(buf));
  if (rc != 0) {
    rc =
        kv__errbuf(errbuf, errbuf_len, KV_EIO,
                   "sqlite: cannot create directory %s: %s", buf, strerror(rc));
    goto fail;
  }
  rc = sql_open_db(d, table, quick, sync, errbuf, errbuf_len);
  if (rc != 0) goto fail;
  if (reads == NULL || strcmp(reads, "loop") == 0) {
    rc = sql_open_reader(d, table, errbuf, errbuf_len);
    if (rc != 0) {
      sql_close_db(&d->w);
      goto fail;
    }
  }
  /* Handles last: nothing after this can fail, and open failing must leave
   * nothing on the loop. */
  kv__batch_init(&d->batcher, s, &sql_engine);
  d->batcher.loop_reads = d->r.db != NULL ? KV__LOOP_TURN : KV__LOOP_NONE;
  return 0;
fail:
  kv_free(d->path);
  d->path = NULL;
  return rc;
}

const kv_store_methods_t kv__sqlite_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "sqlite",
    .store_size = sizeof(kv_sqlite_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT | KV_CAP_SHARED,
    .options = sql_options,
    .open = sql_open,
    KV__BATCHED_METHODS,
    .ctl_ex = sql_ctl,
};
