/* kvio/json.h — a JSON front-end over any store (jansson objects in and
 * out).
 *
 * Values are stored as the canonical serialization of a JSON object:
 * compact (no spaces), keys sorted, UTF-8, reals with 17 significant
 * digits — so equal objects are equal bytes (compare-and-swap works on
 * them, and two writers produce the same value). A stored value that is not
 * a JSON object reads as KV_ECORRUPT. Build with `pkg-config --cflags
 * --libs jansson` as well. */
#ifndef KVIO_JSON_H
#define KVIO_JSON_H

#include <jansson.h>

#include "../kvio.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kv_json_req_s kv_json_req_t;
typedef void (*kv_json_cb)(kv_json_req_t *jr);

/* A JSON request: embeds the kv_req_t (status, found, ttl, errmsg are
 * read from jr->req as usual). */
struct kv_json_req_s {
  kv_req_t req;
  void *data;    /* for the user */
  json_t *value; /* get: the object when found; owned by the request until
                    kv_json_req_cleanup (json_incref it to keep it) */
  /* private */
  kv_json_cb cb;
};

/* Canonical serialization of an object: kv_malloc'ed, NUL-terminated
 * (kv_free it); *len its length. NULL when obj is not an object (or
 * ENOMEM). */
KV_EXTERN char *kv_json_dumps(const json_t *obj, size_t *len);
/* Parse a stored value: 0 and a new reference in *out, or KV_ECORRUPT when
 * the bytes are not one JSON object. */
KV_EXTERN int kv_json_loads(const char *text, size_t len, json_t **out);

/* get: jr->value is the object when jr->req.found; a value that is not a
 * JSON object completes with KV_ECORRUPT. */
KV_EXTERN int kv_json_get(kv_store_t *s, kv_json_req_t *jr,
                          const char *collection, const char *key,
                          kv_json_cb cb);
/* put: obj must be a JSON object (else KV_EINVAL at submit); it is
 * serialized before the call returns (the caller keeps its reference). */
KV_EXTERN int kv_json_put(kv_store_t *s, kv_json_req_t *jr,
                          const char *collection, const char *key,
                          const json_t *obj, double ttl, kv_json_cb cb);
/* Release jr->value and the request's results. */
KV_EXTERN void kv_json_req_cleanup(kv_json_req_t *jr);

/* Blocking forms: *out is a new reference (or NULL when missing). Return
 * req->status (KV_ECORRUPT for a non-object value); kv_req_cleanup(req)
 * afterwards. */
KV_EXTERN int kv_json_sync_get(kv_sync_t *s, kv_req_t *req,
                               const char *collection, const char *key,
                               json_t **out);
KV_EXTERN int kv_json_sync_put(kv_sync_t *s, kv_req_t *req,
                               const char *collection, const char *key,
                               const json_t *obj, double ttl);

#ifdef __cplusplus
}
#endif
#endif /* KVIO_JSON_H */
