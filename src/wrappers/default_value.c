/* default-value: a missing key reads as a configured value with a
 * configured TTL (get, ttl and their bulk forms). */
#include <string.h>

#include "wrappers/wrappers.h"

typedef struct {
  kv_wrap_t w;
  char *value;
  size_t len;
  double ttl;
} dflt_t;

static void dflt_cb(kv_wrap_req_t *wr) {
  dflt_t *d = (dflt_t *)wr->w;
  kv_req_t *outer = wr->outer;
  int status = wr->inner.status;
  kv_wrap_move_results(outer, &wr->inner);
  if (status == 0) {
    if (wr->op == KV_OP_GET || wr->op == KV_OP_TTL) {
      if (!outer->found) {
        if (kv_req_set_value(outer, d->value, d->len) != 0)
          status = kv_req_set_error(outer, KV_ENOMEM, "out of memory");
        outer->ttl = d->ttl;
      }
    } else {
      for (size_t i = 0; i < outer->nresults && status == 0; i++)
        if (!outer->results[i].found &&
            kv_req_set_result(outer, i, d->value, d->len, d->ttl) != 0)
          status = kv_req_set_error(outer, KV_ENOMEM, "out of memory");
    }
  }
  kv_wrap_complete(wr, status);
  kv_wrap_req_free(wr);
}

static int dflt_read(kv_store_t *s, kv_req_t *req) {
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, 0);
  int err;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  err = kv_wrap_submit(wr, ((kv_wrap_t *)s)->inner, dflt_cb);
  if (err < 0) return kv_wrap_refuse(wr, err);
  return 0;
}

static void dflt_free(kv_wrap_t *w) {
  kv_free(((dflt_t *)w)->value);
}

static kv_store_methods_t dflt_methods;
static uv_once_t dflt_once = UV_ONCE_INIT;

static void dflt_init(void) {
  kv_store_methods_t *m = &dflt_methods;
  kv_wrap_methods_init(m, "default-value", sizeof(dflt_t));
  m->get = m->ttl = m->get_many = m->ttl_many = dflt_read;
}

int kv_wrap_default_value(kv_store_t *inner,
                          const kv_wrap_default_value_opts_t *o,
                          kv_store_t **out) {
  kv_wrap_default_value_opts_t d0 = {0};
  kv_wrap_t *w;
  dflt_t *d;
  char *copy;
  int err;
  *out = NULL;
  if (o == NULL) o = &d0;
  if ((o->value == NULL && o->len > 0) || !(o->ttl >= 0) || o->ttl > KV_TTL_MAX)
    return KV_EINVAL;
  copy = kv_malloc(o->len + 1);
  if (copy == NULL) return KV_ENOMEM;
  if (o->len) memcpy(copy, o->value, o->len);
  copy[o->len] = '\0';
  uv_once(&dflt_once, dflt_init);
  err = kv_wrap_create(inner, &dflt_methods, o->borrow, &w);
  if (err) {
    kv_free(copy);
    return err;
  }
  d = (dflt_t *)w;
  d->value = copy;
  d->len = o->len;
  d->ttl = o->ttl;
  w->on_free = dflt_free;
  *out = &w->base;
  return 0;
}

KV__WRAP_FROM_OPTIONS(default_value) {
  static const char *const known[] = {"value", "ttl", NULL};
  kv_wrap_default_value_opts_t o = {0};
  kv_url_t opts;
  int err =
      kv__wrap_opts("default-value", options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  o.value = kv_url_param(&opts, "value");
  if (o.value == NULL)
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "wrapper 'default-value' needs option 'value'");
  else
    err = kv_url_param_double(&opts, "ttl", 0, KV_TTL_MAX, 0, &o.ttl, errbuf,
                              errbuf_len);
  if (err == 0) {
    o.len = strlen(o.value);
    err = kv_wrap_default_value(inner, &o, out);
  }
  kv_wrap_opts_free(&opts);
  return err;
}
