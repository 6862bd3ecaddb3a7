/* kvio/disk.h — the disk:// store (LMDB), kvio's embedded default.
 *
 * URL:   disk://PATH[?sync=full|meta|none&map_size=BYTES&max_readers=N
 *                   &reads=loop|pool]
 *
 *   PATH         a directory holding LMDB's data.mdb and lock.mdb; created
 *                with its parents (mode 0755) when missing. Relative paths
 *                ("disk://./kvio-data") are relative to the working
 *                directory at open time.
 *   sync         full (default): every acknowledged write is on disk
 *                (LMDB fsyncs data then meta page at each commit).
 *                meta: MDB_NOMETASYNC — the meta page is not fsynced; a
 *                system crash may lose the last transactions but keeps the
 *                database consistent.
 *                none: MDB_NOSYNC — nothing is fsynced; a system crash (not
 *                a process crash) may lose recent writes and, on file
 *                systems that reorder writes, may corrupt the database. Use
 *                it for caches and tests only.
 *   map_size     initial map size in bytes (default 64 MiB, at least
 *                64 KiB). The map doubles by itself whenever it fills.
 *   max_readers  LMDB reader slots (default 126), shared by every process
 *                using PATH.
 *   default_collection   as for every store.
 *
 * All operations that arrive in one loop turn run in one LMDB transaction on
 * libuv's threadpool (group commit: one fsync for many writes), in arrival
 * order; at most one batch per store is in flight. Several stores opened on
 * the same PATH in one process share one LMDB environment (LMDB forbids
 * opening it twice); its sync mode is the strongest one requested. Several
 * processes may use PATH at once. Do not carry an open store across fork():
 * the child must open its own.
 *
 * Backend-specific controls, through kv_store_ctl():
 */
#ifndef KVIO_DISK_H
#define KVIO_DISK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters of one disk store since it was opened (not of the shared
 * environment). */
typedef struct kv_disk_stats_s {
  uint64_t batches;    /* batches sent to the threadpool */
  uint64_t write_txns; /* write transactions committed */
  uint64_t read_txns;  /* read-only transactions */
  uint64_t ops;        /* requests executed (completed by a batch) */
  uint64_t map_grows;  /* times this store doubled the map */
  uint64_t map_size;   /* the map size now, in bytes */
  uint64_t loop_reads; /* reads answered on the loop thread (no batch) */
} kv_disk_stats_t;

/* ctl(s, KV_DISK_CTL_STATS, kv_disk_stats_t *out): copy the counters.
 * Returns 0. Call it on the loop thread. */
#define KV_DISK_CTL_STATS (KV_CTL_RANGE_DISK + 1)

#ifdef __cplusplus
}
#endif
#endif /* KVIO_DISK_H */
