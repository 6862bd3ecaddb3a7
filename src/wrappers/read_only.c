/* read-only: writes fail at submit with KV_EREADONLY, or with `silent`
 * succeed without writing. The destroy, cull and atomic segments write, so
 * they are not announced. */
#include "wrappers/wrappers.h"

typedef struct {
  kv_wrap_t w;
  int silent;
} ro_t;

static int ro_write(kv_store_t *s, kv_req_t *req) {
  if (!((ro_t *)s)->silent)
    return kv_req_set_error(req, KV_EREADONLY,
                            "the store is read-only (%s refused)",
                            kv_op_name(req->op));
  req->found = 0; /* delete: nothing removed */
  req->count = 0;
  kv_req_complete(req, 0);
  return 0;
}

static kv_store_methods_t ro_methods;
static uv_once_t ro_once = UV_ONCE_INIT;

static void ro_init(void) {
  kv_store_methods_t *m = &ro_methods;
  kv_wrap_methods_init(m, "read-only", sizeof(ro_t));
  m->put = m->del = m->put_many = m->delete_many = ro_write;
  m->destroy = m->destroy_collection = m->cull = NULL;
  m->put_if_absent = m->cas = m->incr = m->take = NULL;
}

int kv_wrap_read_only(kv_store_t *inner, const kv_wrap_read_only_opts_t *o,
                      kv_store_t **out) {
  kv_wrap_t *w;
  int err;
  *out = NULL;
  uv_once(&ro_once, ro_init);
  err = kv_wrap_create(inner, &ro_methods, o && o->borrow, &w);
  if (err) return err;
  ((ro_t *)w)->silent = o && o->silent;
  w->base.caps =
      kv_wrap_caps(inner, KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC);
  *out = &w->base;
  return 0;
}

KV__WRAP_FROM_OPTIONS(read_only) {
  static const char *const known[] = {"silent", NULL};
  kv_wrap_read_only_opts_t o = {0};
  kv_url_t opts;
  int err =
      kv__wrap_opts("read-only", options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  err = kv_url_param_bool(&opts, "silent", 0, &o.silent, errbuf, errbuf_len);
  kv_wrap_opts_free(&opts);
  if (err) return err;
  return kv_wrap_read_only(inner, &o, out);
}
