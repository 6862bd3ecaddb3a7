/* fallback: reads (and, with `write`, writes) go to a secondary store when
 * the primary fails with a transient error. */
#include "wrappers/wrappers.h"

typedef struct {
  kv_wrap_t w;
  kv_store_t *secondary;
  int write;
} fb_t;

static void fb_cb(kv_wrap_req_t *wr) {
  fb_t *f = (fb_t *)wr->w;
  int st = wr->inner.status;
  if (st < 0 && wr->data == NULL && kv_err_category(st) == KV_CAT_TRANSIENT &&
      !kv_store_is_closing(f->secondary)) {
    wr->data = f->secondary; /* tried */
    if (kv_wrap_submit(wr, f->secondary, fb_cb) == 0) return;
  }
  kv_wrap_finish(wr);
}

static int fb_op(kv_store_t *s, kv_req_t *req) {
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, 0);
  int err;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  err = kv_wrap_submit(wr, ((kv_wrap_t *)s)->inner, fb_cb);
  if (err < 0) return kv_wrap_refuse(wr, err);
  return 0;
}

static int fb_write(kv_store_t *s, kv_req_t *req) {
  return ((fb_t *)s)->write ? fb_op(s, req) : kv_wrap_forward(s, req);
}

static kv_store_methods_t fb_methods;
static uv_once_t fb_once = UV_ONCE_INIT;

static void fb_init(void) {
  kv_store_methods_t *m = &fb_methods;
  kv_wrap_methods_init(m, "fallback", sizeof(fb_t));
  m->get = m->ttl = m->get_many = m->ttl_many = fb_op;
  m->put = m->put_many = m->del = m->delete_many = fb_write;
}

int kv_wrap_fallback(kv_store_t *inner, const kv_wrap_fallback_opts_t *o,
                     kv_store_t **out) {
  kv_wrap_t *w;
  fb_t *f;
  int err;
  *out = NULL;
  if (o == NULL || o->secondary == NULL || o->secondary == inner ||
      o->secondary->loop != inner->loop)
    return KV_EINVAL;
  uv_once(&fb_once, fb_init);
  err = kv_wrap_create(inner, &fb_methods, o->borrow, &w);
  if (err) return err;
  f = (fb_t *)w;
  f->secondary = o->secondary;
  f->write = o->write;
  if ((err = kv_wrap_add_store(w, o->secondary, !o->borrow_secondary)) != 0) {
    kv__wrap_abort(w);
    return err;
  }
  *out = &w->base;
  return 0;
}

KV__WRAP_FROM_OPTIONS(fallback) {
  static const char *const known[] = {"store", "write", NULL};
  kv_wrap_fallback_opts_t o = {0};
  kv_url_t opts;
  int err =
      kv__wrap_opts("fallback", options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  if (!(err =
            kv_url_param_bool(&opts, "write", 0, &o.write, errbuf, errbuf_len)))
    err = kv__wrap_open_opt("fallback", &opts, "store", inner->loop,
                            &o.secondary, errbuf, errbuf_len);
  kv_wrap_opts_free(&opts);
  if (err) return err;
  err = kv_wrap_fallback(inner, &o, out);
  if (err) kv_store_close(o.secondary, NULL);
  return err;
}
