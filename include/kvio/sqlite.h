/* kvio/sqlite.h — the sqlite:// store (one SQLite database file, WAL mode).
 *
 * URL:   sqlite://PATH[?sync=full|normal|off&busy_timeout=MS&table=NAME
 *                       &check=header|quick]
 *
 *   PATH          the database file; created (with its parent directories,
 *                 mode 0755) when missing. "sqlite://./kv.db" is relative
 *                 to the working directory at open time, "sqlite:///tmp/kv.db"
 *                 is absolute. The file is switched to WAL mode.
 *   sync          full (default): PRAGMA synchronous=FULL — every
 *                 acknowledged write is on disk (the WAL is fsynced at each
 *                 commit). normal: the WAL is fsynced only at checkpoints; a
 *                 system crash may lose the last transactions, a process
 *                 crash loses nothing. off: nothing is fsynced (caches,
 *                 tests).
 *   busy_timeout  how long a transaction waits for another connection's
 *                 write lock, in milliseconds (default 5000, 0 = fail at
 *                 once). After it, the requests of that transaction fail
 *                 with KV_EBUSY.
 *   table         the table holding the entries (default "kvio"; letters,
 *                 digits and '_', at most 64 bytes, not starting with a
 *                 digit). Created when missing; a table of that name with
 *                 other columns is KV_ECORRUPT at open.
 *   check         header (default): at open, the file's header is checked
 *                 (magic, page size, truncation) and the schema read.
 *                 quick: also run PRAGMA quick_check (reads every page;
 *                 O(size of the file)).
 *   default_collection   as for every store.
 *
 * All operations that arrive in one loop turn run in one transaction on
 * libuv's threadpool (BEGIN IMMEDIATE … COMMIT when the batch writes, so the
 * atomic operations are atomic across processes; a plain read transaction
 * otherwise), in arrival order; at most one batch per store is in flight.
 * Several processes and several stores may use PATH at once. Do not carry an
 * open store across fork(): the child must open its own.
 *
 * Backend-specific controls, through kv_store_ctl():
 */
#ifndef KVIO_SQLITE_H
#define KVIO_SQLITE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters of one sqlite store since it was opened. */
typedef struct kv_sqlite_stats_s {
  uint64_t batches;    /* batches sent to the threadpool */
  uint64_t write_txns; /* write transactions committed */
  uint64_t read_txns;  /* read transactions committed */
  uint64_t ops;        /* requests executed (completed by a batch) */
  uint64_t busy;       /* transactions that found the database locked
                          after busy_timeout (their requests: KV_EBUSY) */
  uint64_t splits;     /* batches split because one request failed */
  uint64_t loop_reads; /* reads answered on the loop thread (no batch) */
} kv_sqlite_stats_t;

/* ctl(s, KV_SQLITE_CTL_STATS, kv_sqlite_stats_t *out): copy the counters.
 * Returns 0. Call it on the loop thread. */
#define KV_SQLITE_CTL_STATS (KV_CTL_RANGE_SQLITE + 1)

#ifdef __cplusplus
}
#endif
#endif /* KVIO_SQLITE_H */
