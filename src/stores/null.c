/* null:// — accepts everything, stores nothing. Reads are always missing,
 * deletes remove nothing, listings are empty. It has no atomic segment:
 * put_if_absent could not keep its promise on a store that forgets. */
#include "internal.h"

static int null_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                     size_t errbuf_len) {
  if (url->target[0] != '\0')
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "null:// takes no path (got '%s')", url->target);
  return 0;
}

static int null_op(kv_store_t *s, kv_req_t *req) {
  switch (req->op) {
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
    if (kv_req_alloc_results(req) != 0)
      return kv_req_set_error(req, KV_ENOMEM, "out of memory");
    break;
  default:
    break; /* found = 0, count = 0, cursor = NULL: nothing here */
  }
  kv_req_complete(req, 0);
  return 0;
}

const kv_store_methods_t kv__null_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "null",
    .store_size = sizeof(kv_store_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL,
    .open = null_open,
    .close = kv_store_closed, /* holds nothing: closed at once */
    .get = null_op,
    .ttl = null_op,
    .put = null_op,
    .del = null_op,
    .get_many = null_op,
    .ttl_many = null_op,
    .put_many = null_op,
    .delete_many = null_op,
    .keys = null_op,
    .collections = null_op,
    .destroy = null_op,
    .destroy_collection = null_op,
    .cull = null_op,
};
