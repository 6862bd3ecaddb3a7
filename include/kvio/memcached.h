/* kvio/memcached.h — the memcached:// store.
 *
 * URL:  memcached://HOST:PORT[,HOST:PORT...][?options]
 *
 *   HOST:PORT    one or more servers (PORT defaults to 11211; IPv6 hosts in
 *                brackets). Keys are spread over them by consistent hashing
 *                (160 points per server on a ring, SHA-256), so adding a
 *                server moves only about 1/N of the keys.
 *   servers      another comma-separated list of servers, appended to the
 *                ones in the authority (for tools that cannot put commas in
 *                a URL's authority).
 *   prefix       a namespace for this store's keys (any text): stores with
 *                different prefixes never see each other's entries, and
 *                destroy() only reaches its own prefix. Default: none.
 *   timeout      milliseconds a server may take to answer (or to accept a
 *                connection) before its connection is dropped and its
 *                requests fail with KV_ETIMEDOUT (default 5000).
 *   backoff      milliseconds a server that refused a connection is left
 *                alone (its requests fail at once with KV_ECONN) before the
 *                next attempt; doubles per failure up to 32 times the value
 *                (default 100).
 *   default_collection   as for every store.
 *
 * Protocol: memcached's meta text protocol (mg / ms / md, memcached >= 1.6)
 * over one TCP connection per server. Every request made in one loop turn
 * goes out in one write per server; replies are matched in order.
 *
 * Backend-specific controls, through kv_store_ctl():
 */
#ifndef KVIO_MEMCACHED_H
#define KVIO_MEMCACHED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters of one memcached store since it was opened, summed over its
 * servers. `commands / writes` is the pipelining depth actually achieved. */
typedef struct kv_memcached_stats_s {
  uint64_t writes;      /* uv_write calls (one per server per loop turn) */
  uint64_t commands;    /* protocol commands sent (including generation
                           checks) */
  uint64_t replies;     /* replies parsed */
  uint64_t connects;    /* connections established */
  uint64_t conn_errors; /* connections refused, dropped or timed out */
  uint64_t retries;     /* commands re-sent (generation change, CAS race) */
  uint64_t fast_fails;  /* requests failed at once: server backing off */
} kv_memcached_stats_t;

/* ctl(s, KV_MEMCACHED_CTL_STATS, kv_memcached_stats_t *out): copy the
 * counters. Returns 0. */
#define KV_MEMCACHED_CTL_STATS (KV_CTL_RANGE_MEMCACHED + 1)

/* Which server holds a key. */
typedef struct kv_memcached_locate_s {
  const char *collection; /* NULL or "" for the default collection */
  const char *key;
  int server; /* out: index into the URL's server list */
} kv_memcached_locate_t;

/* ctl(s, KV_MEMCACHED_CTL_LOCATE, kv_memcached_locate_t *io): fill
 * io->server. Returns 0, or KV_EINVAL for a NULL key. */
#define KV_MEMCACHED_CTL_LOCATE (KV_CTL_RANGE_MEMCACHED + 2)

/* ctl(s, KV_MEMCACHED_CTL_NSERVERS, int *out): the number of servers. */
#define KV_MEMCACHED_CTL_NSERVERS (KV_CTL_RANGE_MEMCACHED + 3)

#ifdef __cplusplus
}
#endif
#endif /* KVIO_MEMCACHED_H */
