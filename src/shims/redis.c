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
