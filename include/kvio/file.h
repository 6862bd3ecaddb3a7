/* kvio/file.h — the file:// store: one human-readable JSON file.
 *
 * URL:   file://PATH[?lock_timeout=SECONDS&sync=full|none&indent=N&watch=1|0]
 *
 *   PATH          the JSON file ("file://./state.json", "file:///tmp/x.json").
 *                 Its directory must exist; the file itself is created by the
 *                 first write (a missing file is an empty store). Beside it
 *                 live PATH.lock (the advisory lock, kept) and PATH.tmp (the
 *                 next version while it is being written). None of the three
 *                 may be a symbolic link: open (or the write) fails with
 *                 KV_EINVAL. Relative paths are relative to the working
 *                 directory at open time.
 *   lock_timeout  how long a write waits for another process's lock, in
 *                 seconds (default 30; 0 = try once). A write that cannot
 *                 get the lock fails with KV_ETIMEDOUT.
 *   sync          full (default): each rewrite fsyncs the new file before
 *                 renaming it over PATH and fsyncs the directory after, so
 *                 an acknowledged write survives a system crash.
 *                 none: no fsync; still atomic against process crashes (the
 *                 rename), not against power loss. For tests and caches.
 *   indent        spaces per nesting level in the file (default 2, 0..8;
 *                 0 writes one compact line).
 *   watch         1 (default): watch the directory (inotify, uv_fs_event) to
 *                 learn that another process or a person changed the file,
 *                 and serve reads from memory without touching the disk
 *                 while nothing changed. 0: check the file's identity on
 *                 the threadpool before every batch of reads (for file
 *                 systems whose changes inotify does not report, e.g. NFS).
 *   default_collection   as for every store.
 *
 * The format is documented in docs/file.md. Requests that arrive in one loop
 * turn form one batch: one lock, one check of the file, one rewrite (temp
 * file, fsync, rename, fsync of the directory) for all of its writes. All
 * file I/O after open runs on libuv's threadpool. Reads are answered from
 * the parsed file kept in memory; the store reloads it when the file changed
 * underneath (identity: device, inode, size, mtime, ctime, plus a generation
 * counter the writers keep in PATH.lock). Several processes may share PATH.
 * A corrupt or truncated file is KV_ECORRUPT (at open, or for the batch that
 * finds it later) with the file name and the position, and is never written.
 *
 * Backend-specific controls, through kv_store_ctl():
 */
#ifndef KVIO_FILE_H
#define KVIO_FILE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters of one file store since it was opened. */
typedef struct kv_file_stats_s {
  uint64_t batches;    /* batches sent to the threadpool */
  uint64_t rewrites;   /* times the file was written (temp + rename) */
  uint64_t reloads;    /* times the file was read and parsed after open */
  uint64_t ops;        /* requests executed */
  uint64_t loop_reads; /* read-only batches answered from memory on the
                          loop (the file was known unchanged) */
  uint64_t lock_waits; /* writes that found the lock held and waited */
  uint64_t file_bytes; /* the size of the file after the last batch */
} kv_file_stats_t;

/* ctl(s, KV_FILE_CTL_STATS, kv_file_stats_t *out): copy the counters.
 * Returns 0. Call it on the loop thread. */
#define KV_FILE_CTL_STATS (KV_CTL_RANGE_FILE + 1)

#ifdef __cplusplus
}
#endif
#endif /* KVIO_FILE_H */
