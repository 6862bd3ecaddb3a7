/* limit-size: values outside [min, max] bytes are refused at submit
 * (KV_ETOOBIG / KV_EINVAL; a put_many with one bad value writes nothing) or,
 * with `silent`, dropped. */
#include "wrappers/wrappers.h"

typedef struct {
  kv_wrap_t w;
  size_t min, max;
  int silent;
} limit_t;

/* 0 when len is in range, else the error (with the detail set on req). */
static int check(limit_t *l, kv_req_t *req, size_t len, const char *what) {
  if (l->max && len > l->max)
    return kv_req_set_error(req, KV_ETOOBIG,
                            "%s of %zu bytes is above the limit of %zu bytes",
                            what, len, l->max);
  if (len < l->min)
    return kv_req_set_error(req, KV_EINVAL,
                            "%s of %zu bytes is below the minimum of %zu "
                            "bytes",
                            what, len, l->min);
  return 0;
}

static void limit_many_cb(kv_wrap_req_t *wr) {
  kv_free(wr->data);
  kv_wrap_finish(wr);
}

static int limit_single(kv_store_t *s, kv_req_t *req) {
  limit_t *l = (limit_t *)s;
  int err = check(l, req, req->in.value.len, "value");
  if (err == 0) return kv_wrap_forward(s, req);
  if (!l->silent) return err;
  /* Dropped: put "succeeds", put_if_absent did not store, cas did not swap. */
  kv_free(req->priv.errmsg);
  req->priv.errmsg = NULL;
  req->found = 0;
  if (req->op == KV_OP_CAS) {
    kv_req_set_error(req, KV_ECONFLICT, "value dropped by limit-size");
    kv_req_complete(req, KV_ECONFLICT);
  } else {
    kv_req_complete(req, 0);
  }
  return 0;
}

static int limit_many(kv_store_t *s, kv_req_t *req) {
  limit_t *l = (limit_t *)s;
  kv_wrap_req_t *wr;
  size_t bad = 0;
  int err;
  for (size_t i = 0; i < req->in.n; i++) {
    char what[64];
    snprintf(what, sizeof what, "value %zu", i);
    if (check(l, req, req->in.values[i].len, what) != 0) {
      if (!l->silent) return check(l, req, req->in.values[i].len, what);
      bad++;
    }
  }
  if (bad == 0) return kv_wrap_forward(s, req);
  kv_free(req->priv.errmsg);
  req->priv.errmsg = NULL;
  /* Silent: write the values in range only. */
  wr = kv_wrap_req_new(s, req, 0);
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  {
    size_t n = req->in.n - bad, j = 0;
    kv_buf_t *keys = kv_malloc((n ? n : 1) * sizeof *keys);
    kv_buf_t *vals = kv_malloc((n ? n : 1) * sizeof *vals);
    if (keys == NULL || vals == NULL) {
      kv_free(keys);
      kv_free(vals);
      kv_wrap_req_free(wr);
      return kv_req_set_error(req, KV_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < req->in.n; i++) {
      size_t len = req->in.values[i].len;
      if ((l->max && len > l->max) || len < l->min) continue;
      keys[j] = req->in.keys[i];
      vals[j++] = req->in.values[i];
    }
    wr->mem = keys;
    wr->data = vals;
    wr->in.keys = keys;
    wr->in.values = vals;
    wr->in.n = n;
  }
  err = kv_wrap_submit(wr, l->w.inner, limit_many_cb);
  if (err < 0) {
    kv_free(wr->data);
    return kv_wrap_refuse(wr, err);
  }
  return 0;
}

static kv_store_methods_t limit_methods;
static uv_once_t limit_once = UV_ONCE_INIT;

static void limit_init(void) {
  kv_store_methods_t *m = &limit_methods;
  kv_wrap_methods_init(m, "limit-size", sizeof(limit_t));
  m->put = m->put_if_absent = m->cas = limit_single;
  m->put_many = limit_many;
}

int kv_wrap_limit_size(kv_store_t *inner, const kv_wrap_limit_size_opts_t *o,
                       kv_store_t **out) {
  kv_wrap_t *w;
  limit_t *l;
  int err;
  *out = NULL;
  if (o && o->max && o->min > o->max) return KV_EINVAL;
  uv_once(&limit_once, limit_init);
  err = kv_wrap_create(inner, &limit_methods, o && o->borrow, &w);
  if (err) return err;
  l = (limit_t *)w;
  l->min = o ? o->min : 0;
  l->max = o ? o->max : 0;
  l->silent = o && o->silent;
  *out = &w->base;
  return 0;
}

KV__WRAP_FROM_OPTIONS(limit_size) {
  static const char *const known[] = {"min", "max", "silent", NULL};
  kv_wrap_limit_size_opts_t o = {0};
  kv_url_t opts;
  int64_t min, max;
  int err =
      kv__wrap_opts("limit-size", options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  if (!(err = kv_url_param_int(&opts, "min", 0, INT64_MAX, 0, &min, errbuf,
                               errbuf_len)) &&
      !(err = kv_url_param_int(&opts, "max", 0, INT64_MAX, 0, &max, errbuf,
                               errbuf_len)) &&
      !(err = kv_url_param_bool(&opts, "silent", 0, &o.silent, errbuf,
                                errbuf_len)) &&
      max > 0 && min > max)
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "limit-size: min (%lld) is above max (%lld)",
                     (long long)min, (long long)max);
  kv_wrap_opts_free(&opts);
  if (err) return err;
  o.min = (size_t)min;
  o.max = (size_t)max;
  return kv_wrap_limit_size(inner, &o, out);
}
