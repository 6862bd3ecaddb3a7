/* The JSON adapter (kvio/json.h): canonical serialization of objects over
 * any store. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kvio/json.h"

#define CANONICAL (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))

char *kv_json_dumps(const json_t *obj, size_t *len) {
  char *text, *copy;
  size_t n;
  if (!json_is_object(obj)) return NULL;
  text = json_dumps(obj, CANONICAL);
  if (text == NULL) return NULL;
  n = strlen(text);
  copy = kv_strndup(text, n);
  free(text); /* jansson's allocator */
  if (copy && len) *len = n;
  return copy;
}

int kv_json_loads(const char *text, size_t len, json_t **out) {
  json_error_t e;
  json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
  *out = NULL;
  if (v == NULL) return KV_ECORRUPT;
  if (!json_is_object(v)) {
    json_decref(v);
    return KV_ECORRUPT;
  }
  *out = v;
  return 0;
}

/* Parse req's value into *out; on failure set the request's error. */
static void parse_result(kv_req_t *req, json_t **out) {
  *out = NULL;
  if (req->status != 0 || !req->found) return;
  if (kv_json_loads(req->value.base, req->value.len, out) != 0) {
    req->status = kv_req_set_error(req, KV_ECORRUPT,
                                   "the value is not a JSON object (%zu "
                                   "bytes)",
                                   req->value.len);
    req->found = 0;
  }
}

static void json_cb(kv_req_t *req) {
  kv_json_req_t *jr = (kv_json_req_t *)req;
  if (req->op == KV_OP_GET) parse_result(req, &jr->value);
  jr->cb(jr);
}

int kv_json_get(kv_store_t *s, kv_json_req_t *jr, const char *collection,
                const char *key, kv_json_cb cb) {
  jr->value = NULL;
  jr->cb = cb;
  if (cb == NULL) return KV_EINVAL;
  return kv_get(s, &jr->req, collection, key, json_cb);
}

int kv_json_put(kv_store_t *s, kv_json_req_t *jr, const char *collection,
                const char *key, const json_t *obj, double ttl, kv_json_cb cb) {
  size_t len = 0;
  char *text;
  int err;
  jr->value = NULL;
  jr->cb = cb;
  if (cb == NULL) return KV_EINVAL;
  text = kv_json_dumps(obj, &len);
  if (text == NULL) {
    /* A failed submit still leaves a request fit for cleanup. */
    memset(&jr->req, 0, offsetof(kv_req_t, priv.inline_buf));
    return kv_req_set_error(&jr->req, KV_EINVAL,
                            json_is_object(obj)
                                ? "the object cannot be serialized"
                                : "the value is not a JSON object");
  }
  err = kv_put(s, &jr->req, collection, key, text, len, ttl, json_cb);
  kv_free(text); /* inputs are copied by the submit */
  return err;
}

void kv_json_req_cleanup(kv_json_req_t *jr) {
  json_decref(jr->value);
  jr->value = NULL;
  kv_req_cleanup(&jr->req);
}

int kv_json_sync_get(kv_sync_t *s, kv_req_t *req, const char *collection,
                     const char *key, json_t **out) {
  int err = kv_sync_get(s, req, collection, key);
  *out = NULL;
  if (err < 0) return err;
  parse_result(req, out);
  return req->status;
}

int kv_json_sync_put(kv_sync_t *s, kv_req_t *req, const char *collection,
                     const char *key, const json_t *obj, double ttl) {
  size_t len = 0;
  char *text = kv_json_dumps(obj, &len);
  int err;
  if (text == NULL) {
    memset(req, 0, offsetof(kv_req_t, priv.inline_buf));
    req->status =
        kv_req_set_error(req, KV_EINVAL, "the value is not a JSON object");
    return req->status;
  }
  err = kv_sync_put(s, req, collection, key, text, len, ttl);
  kv_free(text);
  return err;
}
