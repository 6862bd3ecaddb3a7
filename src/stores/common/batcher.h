/* The batcher shared by the local stores (disk, sqlite, rocksdb, file).
 *
 * It owns the request path of a store whose backend blocks: the queue, the
 * launch once per loop turn, the single batch in flight on libuv's
 * threadpool, the delivery of results on the loop, the cancellation of
 * queued requests on close, and the slot and cursor helpers. An engine
 * (kv__engine_t) supplies only what differs: begin a transaction, execute
 * one request in it, commit, abort, and the rule for retrying a failed
 * transaction. docs/design.md ("The local engine") describes it.
 *
 *  - Requests are queued as they arrive. A uv_check_t (with a no-op
 *    uv_idle_t so that poll does not block meanwhile) launches the queue as
 *    one batch at the end of the loop turn. One batch is on the threadpool
 *    at a time; what arrives meanwhile forms the next one.
 *  - A batch runs in one transaction, ops in arrival order, so later ops
 *    see earlier writes and one commit covers many writes. When the
 *    transaction fails, the results of the ops it ran are dropped; the
 *    engine may ask for the same ops again (retry: a map grown, a lock
 *    freed), else the ops before the failing one commit alone and the
 *    failing one fails alone. A failed begin or commit fails every op of
 *    the transaction.
 *  - Reads on the loop thread: an engine with loop_begin answers reads
 *    (get, ttl, get_many, ttl_many, keys, collections) on the loop thread,
 *    either each at once in its submit (KV__LOOP_SUBMIT: when a read
 *    transaction costs next to nothing, as LMDB's renew) or the reads of a
 *    loop turn together in one loop transaction at the end of the turn
 *    (KV__LOOP_TURN: when beginning one costs, as SQLite's). A read is only
 *    answered on the loop when no write of this store is queued before it
 *    or in flight, so it sees every write submitted before it; otherwise
 *    it waits in the queue, and a queue of reads only is answered on the
 *    loop when the batch in flight has finished. loop_begin may decline
 *    (the engine would block), and exec may fail in a loop transaction
 *    (KV__LOOP_DECLINE when the answer is not in memory, or any engine
 *    code): that read and those after it go to the threadpool.
 */
#ifndef KVIO_STORES_BATCHER_H
#define KVIO_STORES_BATCHER_H

#include <stdint.h>

#include "internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One request of a batch, with what the engine found out about it. The
 * engine fills req's results with the kv_malloc-only helpers
 * (kv_req_give_value, kv_req_set_result), names of listings into the slot
 * (kv__slot_add_name), the cursor with kv__slot_cursor. */
typedef struct kv__slot_s {
  kv_req_t *req;
  int status;      /* the op's outcome: 0 or a KV_E* code */
  int code;        /* the engine's code behind status, or 0 */
  const char *msg; /* static detail text for status, or NULL */
  char *errmsg;    /* the engine's own message (kv_malloc'ed), or NULL */
  int has_detail;  /* the op set the request's detail itself */
  char *names;     /* keys/collections: BE16 len ‖ bytes, repeated */
  size_t names_len;
  size_t names_cap;
  char *cursor; /* keys/collections: the next page's cursor, or NULL */
} kv__slot_t;

typedef struct kv__batcher_s kv__batcher_t;

/* Transaction modes passed to begin/commit. */
enum {
  KV__TXN_READ = 1,  /* threadpool, only reads in the batch */
  KV__TXN_WRITE = 2, /* threadpool, the batch writes */
  KV__TXN_LOOP = 3   /* the loop thread, reads: must not block */
};

/* Where reads are answered (kv__batcher_t.loop_reads). */
enum {
  KV__LOOP_NONE = 0,  /* on the threadpool, in the batches */
  KV__LOOP_TURN = 1,  /* on the loop, the reads of a turn in one loop
                         transaction, at the end of the turn */
  KV__LOOP_SUBMIT = 2 /* on the loop, each one at once in the submit */
};

/* What exec may return in a loop transaction to send the request to the
 * threadpool instead (nothing it produced is kept). */
#define KV__LOOP_DECLINE (-0x7fff)

typedef struct kv__engine_s {
  const char *name; /* "disk": prefix of detail texts */
  /* A transaction. Codes are the engine's: 0 means success, anything else
   * failure (passed to retry and fail). begin stores the transaction in
   * *txn (whatever the engine needs; may stay NULL). */
  int (*begin)(kv__batcher_t *b, int mode, void **txn);
  /* Execute one request. Returns 0 when the op ran (its own outcome, such
   * as KV_ECONFLICT, goes in the slot: kv__slot_error), else a code that
   * aborts the transaction. */
  int (*exec)(kv__batcher_t *b, void *txn, kv__slot_t *slot, int64_t now);
  /* Commit (or end a read transaction). The transaction is gone after it,
   * whatever it returns. */
  int (*commit)(kv__batcher_t *b, void *txn, int mode);
  /* Abandon a transaction (after a failed exec). */
  void (*abort)(kv__batcher_t *b, void *txn, int mode);
  /* The busy-retry rule: after a transaction failed with `code` for the
   * `tries`-th time in a row (0 first), return 1 to run the same ops again
   * (the engine fixed the cause), 0 to split and fail. May be NULL. Worker
   * thread. */
  int (*retry)(kv__batcher_t *b, int code, unsigned tries);
  /* Fill a slot that failed with `code` (status, code, msg or errmsg).
   * Worker thread. */
  void (*fail)(kv__batcher_t *b, kv__slot_t *slot, int code);
  /* The detail text of a slot that failed with an engine code
   * (slot->code != 0 or slot->errmsg): set it with kv_req_set_error. NULL:
   * "<name>: <errmsg or msg>". Loop thread. */
  void (*detail)(kv__batcher_t *b, kv__slot_t *slot);
  /* Optional: the engine's part of a loop-thread read. NULL: no reads on
   * the loop. Return 0 to go on with exec, else the read is queued. */
  int (*loop_begin)(kv__batcher_t *b, void **txn);
  /* Optional, loop thread: a batch is about to go to the threadpool. */
  void (*launch)(kv__batcher_t *b);
  /* Optional, loop thread: after every delivered batch (statistics). */
  void (*after)(kv__batcher_t *b);
  /* Optional, loop thread, closing: close the engine's own handles (their
   * data must be the batcher) with uv_close(h, cb); returns how many. */
  int (*close_handles)(kv__batcher_t *b, uv_close_cb cb);
  /* Optional, threadpool: the blocking part of closing (close a database
   * that waits for background work). */
  void (*close_work)(kv__batcher_t *b);
  /* Loop thread, last: release what the store holds. The batcher then
   * frees its own memory and calls kv_store_closed. */
  void (*closed)(kv__batcher_t *b);
} kv__engine_t;

struct kv__batcher_s {
  kv_store_t *store;
  const kv__engine_t *eng;
  int loop_reads; /* KV__LOOP_*: where reads are answered (loop_begin) */
  /* Everything below is the batcher's. */
  uv_idle_t idle;
  uv_check_t check;
  uv_work_t work;
  int scheduled; /* idle and check are active */
  int busy;      /* a batch (or the close work) is on the threadpool */
  int closing;
  int nhandles;
  kv_req_t **queue; /* arrived, not started, in arrival order */
  size_t nqueue;
  size_t queue_cap;
  kv__slot_t *batch; /* the batch on the threadpool (worker-owned then) */
  size_t nbatch;
  size_t batch_cap;
  int batch_mode; /* KV__TXN_READ or KV__TXN_WRITE */
  /* Counters (loop thread; w_* are written by the worker). */
  uint64_t batches;           /* batches sent to the threadpool */
  uint64_t ops;               /* requests answered */
  uint64_t loop_reads_served; /* reads answered on the loop thread */
  uint64_t loop_declined;     /* loop reads sent on to the threadpool */
  uint64_t read_txns;         /* the w_* below as of the last delivered batch */
  uint64_t write_txns;
  uint64_t retries;
  uint64_t splits;
  uint64_t w_read_txns;
  uint64_t w_write_txns;
  uint64_t w_retries;
  uint64_t w_splits;
};

/* Set up the batcher of store s (from the store's open, last: it puts two
 * handles on the loop and cannot fail). */
KV__MODULE_API void kv__batch_init(kv__batcher_t *b, kv_store_t *s, const kv__engine_t *eng);
/* The method for every op of a store on the batcher: the store's struct
 * must begin with kv_store_t, followed by a kv__batcher_t (see
 * KV__BATCHED_STORE). */
KV__MODULE_API int kv__batch_submit(kv_store_t *s, kv_req_t *req);
/* The store's close method. */
KV__MODULE_API void kv__batch_close(kv_store_t *s);

/* A store on the batcher begins with these two members. */
#define KV__BATCHED_STORE \
  kv_store_t base;        \
  kv__batcher_t batcher

/* The members of a store's kv_store_methods_t that the batcher fills:
 * close and every op. */
#define KV__BATCHED_METHODS                                                   \
  .close = kv__batch_close, .get = kv__batch_submit, .ttl = kv__batch_submit, \
  .put = kv__batch_submit, .del = kv__batch_submit,                           \
  .get_many = kv__batch_submit, .ttl_many = kv__batch_submit,                 \
  .put_many = kv__batch_submit, .delete_many = kv__batch_submit,              \
  .keys = kv__batch_submit, .collections = kv__batch_submit,                  \
  .destroy = kv__batch_submit, .destroy_collection = kv__batch_submit,        \
  .cull = kv__batch_submit, .put_if_absent = kv__batch_submit,                \
  .cas = kv__batch_submit, .incr = kv__batch_submit, .take = kv__batch_submit

/* Whether op only reads. */
KV__MODULE_API int kv__op_is_read(kv_op_t op);

/* Slot helpers (any thread that owns the slot). */
KV__MODULE_API void kv__slot_error(kv__slot_t *slot, int status, const char *msg);
/* Append a name to the slot's listing. 0 or KV_ENOMEM. */
KV__MODULE_API int kv__slot_add_name(kv__slot_t *slot, const char *name, size_t len);
/* Drop what an op produced, so that it can run again. */
KV__MODULE_API void kv__slot_reset(kv__slot_t *slot);
/* Set the slot's cursor to "<tag><hex of p[0..len)>"; on failure the slot
 * fails with KV_ENOMEM. */
KV__MODULE_API void kv__slot_cursor(kv__slot_t *slot, char tag, const void *p, size_t len);
/* Decode a cursor made by kv__slot_cursor into out[max]. Returns the
 * length, or 0 when it is not such a cursor (or longer than max). */
KV__MODULE_API size_t kv__cursor_parse(const char *s, char tag, void *out, size_t max);
/* Copy a value into slot->req->value; KV_ENOMEM fails the slot. */
KV__MODULE_API void kv__slot_give_value(kv__slot_t *slot, const void *p, size_t len);

/* mkdir -p with mode 0755 of `path` (whole = 1) or of its parent
 * directories only (whole = 0). Returns 0 or an errno value; `buf` then
 * holds the prefix that failed. */
KV__MODULE_API int kv__mkdirs(const char *path, int whole, char *buf, size_t buf_len);

#ifdef __cplusplus
}
#endif
#endif
