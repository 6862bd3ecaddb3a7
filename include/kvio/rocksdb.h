/* kvio/rocksdb.h — the rocksdb:// store (RocksDB through its C API).
 *
 * URL:   rocksdb://PATH[?sync=true|false&lock_timeout=MS]
 *
 *   PATH          a directory holding the RocksDB database; created with its
 *                 parents (mode 0755) when missing. "rocksdb://./kv" is
 *                 relative to the working directory at open time.
 *   sync          true (default): every write batch is fsynced before its
 *                 requests complete (WriteOptions.sync) — an acknowledged
 *                 write survives a power loss. false: the batch is written
 *                 to RocksDB's WAL without fsync; a process crash loses
 *                 nothing, a system crash may lose the last batches.
 *   lock_timeout  RocksDB lets one process at a time open PATH. When another
 *                 process holds it, kv_open() retries for this many
 *                 milliseconds (default 5000, 0 = fail at once) and then
 *                 fails with KV_EBUSY. kv_open() blocks meanwhile (it is
 *                 synchronous).
 *   default_collection   as for every store.
 *
 * All operations that arrive in one loop turn run as one batch on libuv's
 * threadpool, in arrival order, against one WriteBatchWithIndex (reads see
 * the batch's earlier writes), then the batch is written at once: one
 * write, one fsync. At most one batch per store is in flight, and batches of
 * every store of the process on PATH run one at a time, so the atomic
 * operations (put_if_absent, cas, incr, take) are atomic. Stores opened on
 * the same PATH in one process share one RocksDB handle. Do not carry an open
 * store across fork(): the child must open its own (and a child forked while
 * the parent has PATH open cannot open PATH at all: RocksDB's in-process lock
 * table is copied into it).
 *
 * Backend-specific controls, through kv_store_ctl():
 */
#ifndef KVIO_ROCKSDB_H
#define KVIO_ROCKSDB_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters of one rocksdb store since it was opened. */
typedef struct kv_rocksdb_stats_s {
  uint64_t batches;       /* batches sent to the threadpool */
  uint64_t write_batches; /* write batches written (one write each) */
  uint64_t read_batches;  /* batches that wrote nothing */
  uint64_t ops;           /* requests executed (completed by a batch) */
  uint64_t open_retries;  /* times open found PATH locked and retried */
  uint64_t loop_reads;    /* reads answered on the loop thread from memory */
  uint64_t loop_misses;   /* loop reads that needed the disk: sent to the
                             threadpool */
} kv_rocksdb_stats_t;

/* ctl(s, KV_ROCKSDB_CTL_STATS, kv_rocksdb_stats_t *out): copy the counters.
 * Returns 0. Call it on the loop thread. */
#define KV_ROCKSDB_CTL_STATS (KV_CTL_RANGE_ROCKSDB + 1)

#ifdef __cplusplus
}
#endif
#endif /* KVIO_ROCKSDB_H */
