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

/* ---- Routing the Redis client's parts (redis_ha.c) --------------------------
 * Raw commands, Pub/Sub and transactions on a cluster or sentinel store run
 * on one of its nodes (a redis:// store of its own). These find the node. */

/* 1: s is a redis+cluster:// store; 2: a redis+sentinel:// store; 0: any
 * other. */
int kv__redis_ha_kind(const kv_store_t *s);

/* Waiting for the route: the slot map (cluster) or the primary (sentinel)
 * is not known yet. ready() is called once, from the loop (never from inside
 * a call of the user's): err 0 when the route is known (ask again), or the
 * reason it cannot be (KV_ECANCELED when the store closes first). */
typedef struct kv__redis_waiter_s kv__redis_waiter_t;
struct kv__redis_waiter_s {
  void (*ready)(kv__redis_waiter_t *w, int err, const char *msg);
  kv__redis_waiter_t *next;
};

/* The node for a command on `key` (the Redis key as sent; NULL: no key,
 * any primary, `hint` choosing which). 0: *out set. 1: not known yet, the
 * lookup has started and w (when not NULL) waits for it. < 0: it cannot be
 * known now (KV_ECONN while the lookup backs off, KV_ECLOSED ...), *msg
 * says why (valid until the next call on s). Never calls back from inside. */
int kv__redis_route(kv_store_t *s, const char *key, size_t klen, unsigned hint,
                    kv__redis_waiter_t *w, kv__redis_t **out, const char **msg);
/* A command on node failed with err (KV_ECONN, KV_ETIMEDOUT: the node may be
 * gone; KV_EREADONLY: it is a replica now): reload the slot map / ask the
 * sentinels again. */
void kv__redis_route_failed(kv_store_t *s, int err);
/* Cluster: an error reply "MOVED slot host:port" or "ASK slot host:port":
 * the node named (opened when new; for MOVED the map is corrected and a
 * reload scheduled). 0: not a redirect (or the node cannot be opened);
 * 1: MOVED; 2: ASK. */
int kv__redis_route_redirect(kv_store_t *s, const char *err, size_t len,
                             kv__redis_t **to);
/* A store of s's that lives until s is closed (the parent of a subscriber
 * that waits for its route). */
kv__redis_t *kv__redis_route_home(kv_store_t *s);

/* redis_sentinel.c: kv__redis_route, kv__redis_route_failed and
 * kv__redis_route_home of a sentinel store. */
int kv__rsn_route(kv_store_t *s, kv__redis_waiter_t *w, kv__redis_t **out,
                  const char **msg);
void kv__rsn_failed(kv_store_t *s, int err);
kv__redis_t *kv__rsn_home(kv_store_t *s);

/* redis_ha.c: helpers of both stores. */
/* Append name=value (copied) to a URL template. 0 or KV_ENOMEM. */
int kv__redis_url_add_param(kv_url_t *u, const char *name, const char *value);
/* Free what a template owns (params, user, password) and zero it. */
void kv__redis_url_free(kv_url_t *u);
/* One "host:port", "[v6]:port" or "host" (default_port) of a list: the host
 * (without brackets, not NUL-terminated) and the port. 0 or KV_EINVAL. */
int kv__redis_parse_addr(const char *a, size_t len, int default_port,
                         const char **host, size_t *hlen, int *port);
/* A lookup's backoff after `attempts` failures in a row: 50 ms doubling to
 * 1 s. */
uint64_t kv__redis_backoff_ms(int attempts);

/* redis_ha.c */
/* kv_redis_command on a cluster or sentinel store (req initialised and
 * the command checked by the caller). */
int kv__redis_ha_command(kv_store_t *s, kv_redis_req_t *req, int argc,
                         const char **argv, const size_t *argvlen);
/* Raw commands still waiting for their reply on node complete now with
 * err: the store is closing (KV_ECANCELED), or the node is being replaced
 * after a failover (KV_ECONN: a blocking command must not hold the old
 * primary's close). Their callbacks run from the loop, before the close
 * callback. */
void kv__redis_ha_cancel(kv__redis_t *node, int err, const char *msg);
/* Call every waiter of the list (taken) with err / msg. */
void kv__redis_waiters_run(kv__redis_waiter_t **list, int err, const char *msg);
void kv__redis_waiters_add(kv__redis_waiter_t **list, kv__redis_waiter_t *w);

/* redis_pubsub.c: the subscribers of `from` move to `to` (a failover): each
 * reports DOWN (unless it had), connects to `to`, subscribes again and
 * reports GAP. */
void kv__redis_subs_move(kv__redis_t *from, kv__redis_t *to);
/* A subscriber that does not keep the loop alive (the store's own). */
void kv__redis_sub_quiet(kv_redis_sub_t *sub);

#endif
