/* ttl-clamp: write TTLs clamped into [min, max]; writes without a TTL get
 * `missing` when it is set. */
#include "wrappers/wrappers.h"

typedef struct {
  kv_wrap_t w;
  double min, max, missing;
} clamp_t;

/* The TTL is changed in the request itself, which then goes down: clamping
 * twice (a retry above) gives the same TTL, so nothing is undone. */
static int clamp_write(kv_store_t *s, kv_req_t *req) {
  clamp_t *c = (clamp_t *)s;
  double t = req->in.ttl;
  if (t == KV_TTL_NONE) {
    t = c->missing;
  } else {
    if (t < c->min) t = c->min;
    if (c->max > 0 && t > c->max) t = c->max;
  }
  if (t != req->in.ttl) {
    req->in.ttl = t;
    req->in.expires_at_ms = kv__expiry(req->in.now_ms, t);
  }
  return kv_wrap_pass(s, req, NULL, 0, NULL);
}

static kv_store_methods_t clamp_methods;
static uv_once_t clamp_once = UV_ONCE_INIT;

static void clamp_init(void) {
  kv_store_methods_t *m = &clamp_methods;
  kv_wrap_methods_init(m, "ttl-clamp", sizeof(clamp_t));
  m->put = m->put_many = m->put_if_absent = m->cas = m->incr = clamp_write;
}

int kv_wrap_ttl_clamp(kv_store_t *inner, const kv_wrap_ttl_clamp_opts_t *o,
                      kv_store_t **out) {
  kv_wrap_ttl_clamp_opts_t d = {0};
  kv_wrap_t *w;
  clamp_t *c;
  int err;
  *out = NULL;
  if (o == NULL) o = &d;
  if (!(o->min >= 0 && o->min <= KV_TTL_MAX) ||
      !(o->max >= 0 && o->max <= KV_TTL_MAX) ||
      !(o->missing >= 0 && o->missing <= KV_TTL_MAX) ||
      (o->max > 0 && o->min > o->max))
    return KV_EINVAL;
  uv_once(&clamp_once, clamp_init);
  err = kv_wrap_create(inner, &clamp_methods, o->borrow, &w);
  if (err) return err;
  c = (clamp_t *)w;
  c->min = o->min;
  c->max = o->max;
  c->missing = o->missing;
  *out = &w->base;
  return 0;
}

KV__WRAP_FROM_OPTIONS(ttl_clamp) {
  static const char *const known[] = {"min", "max", "missing", NULL};
  kv_wrap_ttl_clamp_opts_t o = {0};
  kv_url_t opts;
  int err =
      kv__wrap_opts("ttl-clamp", options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  if (!(err = kv_url_param_double(&opts, "min", 0, KV_TTL_MAX, 0, &o.min,
                                  errbuf, errbuf_len)) &&
      !(err = kv_url_param_double(&opts, "max", 0, KV_TTL_MAX, 0, &o.max,
                                  errbuf, errbuf_len)) &&
      !(err = kv_url_param_double(&opts, "missing", 0, KV_TTL_MAX, 0,
                                  &o.missing, errbuf, errbuf_len)) &&
      o.max > 0 && o.min > o.max)
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "ttl-clamp: min (%g) is above max (%g)", o.min, o.max);
  kv_wrap_opts_free(&opts);
  if (err) return err;
  return kv_wrap_ttl_clamp(inner, &o, out);
}
