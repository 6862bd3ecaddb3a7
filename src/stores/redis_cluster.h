/* Internal declarations of redis+cluster:// and redis+sentinel://
 * (src/stores/redis_cluster.c, redis_sentinel.c), built on the redis://
 * store's code (redis_int.h). */
#ifndef KVIO_REDIS_CLUSTER_INT_H
#define KVIO_REDIS_CLUSTER_INT_H

#include "kvio/redis_cluster.h"
#include "stores/redis_int.h"

typedef struct kv__rcl_s kv__rcl_t;

extern const kv_store_methods_t kv__redis_cluster_methods;
extern const kv_store_methods_t kv__redis_sentinel_methods;

/* Open a redis:// store (not seen by the user) for host:port with the
 * options of tmpl (its scheme, host, port and path replaced), as kv_open
 * would. 0 or < 0 with a detail in errbuf; nothing to close on failure. */
int kv__redis_node_open(uv_loop_t *loop, const kv_url_t *tmpl,
                        const char *scheme, const char *host, int port,
                        kv_store_t **out, char *errbuf, size_t errbuf_len);
/* The redis:// store's method for op (NULL for cull and unknown ops). */
kv_op_fn kv__redis_method(kv_op_t op);

#endif
