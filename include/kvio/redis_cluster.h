/* kvio/redis_cluster.h — redis+cluster:// and redis+sentinel:// counters.
 *
 * URLs (valkey+cluster://, rediss+cluster://, valkeys+cluster:// and the
 * same forms of +sentinel are aliases; the rediss/valkeys forms use TLS):
 *
 *   redis+cluster://[[user]:password@]host:port[,host:port...][/][?options]
 *   redis+sentinel://[[user]:password@]host:port[,host:port...]/PRIMARY[?db=N&options]
 *
 * Both take the options of redis:// (prefix, timeout, user, password and the
 * TLS options); redis+cluster:// also slots=collection|key (docs/redis.md).
 * kv_store_ctl(s, KV_REDIS_CTL_STATS, kv_redis_stats_t *) sums the counters
 * of every connection, KV_REDIS_CTL_DISCONNECT drops them all. */
#ifndef KVIO_REDIS_CLUSTER_H
#define KVIO_REDIS_CLUSTER_H

#include <stdint.h>

#include "redis.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kv_redis_cluster_stats_s {
  uint64_t primaries;   /* now: primaries in the slot map */
  uint64_t nodes;       /* now: nodes known (connections open or not) */
  uint64_t map_loads;   /* slot maps loaded (CLUSTER SLOTS answered) */
  uint64_t moved;       /* MOVED replies followed */
  uint64_t ask;         /* ASK replies followed */
  uint64_t tryagain;    /* TRYAGAIN replies (retried after a pause) */
  uint64_t clusterdown; /* CLUSTERDOWN replies or unserved slots */
} kv_redis_cluster_stats_t;

/* ctl(s, KV_REDIS_CTL_CLUSTER_STATS, kv_redis_cluster_stats_t *out): the
 * routing counters of a redis+cluster:// store. Returns 0. */
#define KV_REDIS_CTL_CLUSTER_STATS (KV_CTL_RANGE_REDIS_CLUSTER + 1)

typedef struct kv_redis_sentinel_stats_s {
  uint64_t lookups;       /* primary addresses asked of the sentinels */
  uint64_t failovers;     /* times the primary's address changed */
  char primary[300];      /* now: "host:port" of the primary, "" if unknown */
  uint64_t announcements; /* +switch-master messages for this primary */
} kv_redis_sentinel_stats_t;

/* ctl(s, KV_REDIS_CTL_SENTINEL_STATS, kv_redis_sentinel_stats_t *out): the
 * current primary of a redis+sentinel:// store and its counters. */
#define KV_REDIS_CTL_SENTINEL_STATS (KV_CTL_RANGE_REDIS_CLUSTER + 2)

#ifdef __cplusplus
}
#endif
#endif /* KVIO_REDIS_CLUSTER_H */
