/* Shims of part `redis` (src/shims/README.md): kvio/redis.h. A request or
 * reply can only come from the module, so the cleanup functions have
 * nothing to do when it is not loaded. */
#include "core/parts.h"
#include "kvio/redis.h"

KV__SHIM(redis, int, kv_redis_command, KV_EINVAL,
         (kv_store_t * s, kv_redis_req_t *req, int argc, const char **argv,
          const size_t *argvlen, kv_redis_cb cb),
         (s, req, argc, argv, argvlen, cb))
KV__SHIM_VOID(redis, kv_redis_req_cleanup, (kv_redis_req_t * req), (req))
KV__SHIM(redis, const char *, kv_redis_req_errmsg,
         "the redis module is not loaded", (const kv_redis_req_t *req), (req))
KV__SHIM_VOID(redis, kv_redis_reply_free, (kv_redis_reply_t * reply), (reply))
KV__SHIM(redis, int, kv_redis_publish, KV_ENOTSUP,
         (kv_store_t * s, kv_redis_req_t *req, const char *channel,
          const void *msg, size_t len, kv_redis_cb cb),
         (s, req, channel, msg, len, cb))
KV__SHIM(redis, int, kv_redis_lease, KV_ENOTSUP,
         (kv_store_t * s, kv_redis_conn_t **out), (s, out))
KV__SHIM(redis, int, kv_redis_conn_command, KV_EINVAL,
         (kv_redis_conn_t * c, kv_redis_req_t *req, int argc,
          const char **argv, const size_t *argvlen, kv_redis_cb cb),
         (c, req, argc, argv, argvlen, cb))
KV__SHIM_VOID(redis, kv_redis_release, (kv_redis_conn_t * c), (c))
KV__SHIM(redis, int, kv_redis_transaction, KV_ENOTSUP,
         (kv_store_t * s, kv_redis_tx_t *tx, int nkeys, const char **keys,
          int max_attempts, kv_redis_tx_fn txfn, kv_redis_tx_cb cb),
         (s, tx, nkeys, keys, max_attempts, txfn, cb))
KV__SHIM(redis, int, kv_redis_tx_queue, KV_EINVAL,
         (kv_redis_tx_t * tx, int argc, const char **argv,
          const size_t *argvlen),
         (tx, argc, argv, argvlen))
KV__SHIM_VOID(redis, kv_redis_tx_cleanup, (kv_redis_tx_t * tx), (tx))
KV__SHIM(redis, const char *, kv_redis_tx_errmsg,
         "the redis module is not loaded", (const kv_redis_tx_t *tx), (tx))
KV__SHIM(redis, int, kv_redis_subscriber, KV_ENOTSUP,
         (kv_store_t * s, kv_redis_sub_cb cb, void *data,
          kv_redis_sub_t **out),
         (s, cb, data, out))
KV__SHIM(redis, void *, kv_redis_sub_data, NULL,
         (const kv_redis_sub_t *sub), (sub))
KV__SHIM(redis, int, kv_redis_sub_subscribe, KV_EINVAL,
         (kv_redis_sub_t * sub, int n, const char **channels),
         (sub, n, channels))
KV__SHIM(redis, int, kv_redis_sub_psubscribe, KV_EINVAL,
         (kv_redis_sub_t * sub, int n, const char **patterns),
         (sub, n, patterns))
KV__SHIM(redis, int, kv_redis_sub_unsubscribe, KV_EINVAL,
         (kv_redis_sub_t * sub, int n, const char **channels),
         (sub, n, channels))
KV__SHIM(redis, int, kv_redis_sub_punsubscribe, KV_EINVAL,
         (kv_redis_sub_t * sub, int n, const char **patterns),
         (sub, n, patterns))
KV__SHIM(redis, int, kv_redis_sub_close, KV_EINVAL, (kv_redis_sub_t * sub),
         (sub))
KV__SHIM_VOID(redis, kv_redis_sub_stats,
              (const kv_redis_sub_t *sub, kv_redis_sub_stats_t *out),
              (sub, out))
