/* raise-on-missing: "missing is an error" — a read of a missing key
 * completes with KV_ENOTFOUND instead of found = 0. */
#include "wrappers/wrappers.h"

static void rom_cb(kv_wrap_req_t *wr) {
  kv_req_t *in = &wr->inner;
  if (in->status == 0) {
    if (wr->op == KV_OP_GET_MANY || wr->op == KV_OP_TTL_MANY) {
      for (size_t i = 0; i < in->nresults; i++) {
        if (!in->results[i].found) {
          in->status = kv_req_set_error(in, KV_ENOTFOUND,
                                        "key '%s' not found in collection '%s'",
                                        wr->in.keys[i].base, wr->in.collection);
          break;
        }
      }
    } else if (!in->found) {
      in->status = kv_req_set_error(in, KV_ENOTFOUND,
                                    "key '%s' not found in collection '%s'",
                                    wr->in.key, wr->in.collection);
    }
  }
  kv_wrap_finish(wr);
}

static int rom_read(kv_store_t *s, kv_req_t *req) {
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, 0);
  int err;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  err = kv_wrap_submit(wr, ((kv_wrap_t *)s)->inner, rom_cb);
  if (err < 0) return kv_wrap_refuse(wr, err);
  return 0;
}

static kv_store_methods_t rom_methods;
static uv_once_t rom_once = UV_ONCE_INIT;

static void rom_init(void) {
  kv_store_methods_t *m = &rom_methods;
  kv_wrap_methods_init(m, "raise-on-missing", sizeof(kv_wrap_t));
  m->get = m->ttl = m->take = m->get_many = m->ttl_many = rom_read;
}

int kv_wrap_raise_on_missing(kv_store_t *inner,
                             const kv_wrap_raise_on_missing_opts_t *o,
                             kv_store_t **out) {
  kv_wrap_t *w;
  int err;
  *out = NULL;
  uv_once(&rom_once, rom_init);
  err = kv_wrap_create(inner, &rom_methods, o && o->borrow, &w);
  if (err) return err;
  *out = &w->base;
  return 0;
}

KV__WRAP_FROM_OPTIONS(raise_on_missing) {
  static const char *const known[] = {NULL};
  kv_url_t opts;
  int err = kv__wrap_opts("raise-on-missing", options, known, &opts, errbuf,
                          errbuf_len);
  if (err) return err;
  kv_wrap_opts_free(&opts);
  return kv_wrap_raise_on_missing(inner, NULL, out);
}
