/* The wrapper infrastructure (kvio/wrap.h): pass-through defaults, the
 * interposed request (an inner request embedded in a wrapper-side struct),
 * closing a wrapper with the stores it owns, and options as text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kvio/wrap.h"

#define WRAP_FREE_MAX 256 /* recycled requests kept per wrapper */

/* ---- Methods and creation ------------------------------------------------ */

void kv_wrap_methods_init(kv_store_methods_t *m, const char *name,
                          size_t store_size) {
  memset(m, 0, sizeof *m);
  m->version = KV_STORE_METHODS_VERSION;
  m->name = name;
  m->store_size = store_size;
  m->close = kv_wrap_close;
#define XX(NAME, lname, member, cap, params, args) m->member = kv_wrap_forward;
  KV_OP_MAP(XX)
#undef XX
  m->ctl_ex = kv_wrap_ctl_forward;
}

int kv_wrap_create(kv_store_t *inner, const kv_store_methods_t *m, int borrow,
                   kv_wrap_t **out) {
  kv_store_t *s;
  kv_wrap_t *w;
  int err;
  *out = NULL;
  if (inner == NULL || m == NULL || m->close != kv_wrap_close ||
      m->store_size < sizeof(kv_wrap_t))
    return KV_EINVAL;
  if (kv_store_is_closing(inner)) return KV_ECLOSED;
  err = kv_store_create(inner->loop, m, &s);
  if (err) return err;
  w = (kv_wrap_t *)s;
  w->inner = inner;
  w->owns_inner = !borrow;
  s->caps = inner->caps;
  if (inner->default_collection &&
      strcmp(inner->default_collection, s->default_collection) != 0) {
    char *dc = kv_strndup(inner->default_collection,
                          strlen(inner->default_collection));
    if (dc != NULL) {
      kv_free(s->default_collection);
      s->default_collection = dc;
    }
  }
  *out = w;
  return 0;
}

int kv_wrap_add_store(kv_wrap_t *w, kv_store_t *s, int owned) {
  kv_store_t **p;
  if (!owned) return 0;
  p = kv_realloc(w->wrap.stores, (w->wrap.nstores + 1) * sizeof *p);
  if (p == NULL) return KV_ENOMEM;
  p[w->wrap.nstores++] = s;
  w->wrap.stores = p;
  return 0;
}

unsigned kv_wrap_caps(const kv_store_t *inner, unsigned drop) {
  return inner->caps & ~drop;
}

int kv_wrap_is_wrapper(const kv_store_t *s) {
  return s != NULL && s->methods != NULL && s->methods->close == kv_wrap_close;
}

kv_store_t *kv_wrap_find(kv_store_t *top, const char *name) {
  kv_store_t *s = top;
  while (s != NULL) {
    if (strcmp(s->methods->name, name) == 0) return s;
    if (!kv_wrap_is_wrapper(s)) break;
    s = ((kv_wrap_t *)s)->inner;
  }
  return NULL;
}

/* ---- Closing ----------------------------------------------------------------
 */

static void maybe_finish(kv_wrap_t *w) {
  if (!w->wrap.closing || w->wrap.finished || w->wrap.closing_stores ||
      w->wrap.inflight || w->wrap.closing_handles)
    return;
  w->wrap.finished = 1;
  while (w->wrap.free_list) {
    kv_wrap_req_t *wr = w->wrap.free_list;
    w->wrap.free_list = wr->next_;
    kv_free(wr);
  }
  w->wrap.nfree = 0;
  if (w->on_free) w->on_free(w);
  kv_free(w->wrap.stores);
  w->wrap.stores = NULL;
  kv_free(w->wrap.gone);
  w->wrap.gone = NULL;
  kv_store_closed(&w->base);
}

static void close_extras(kv_wrap_t *w);

static void on_store_closed(kv_store_t *s) {
  kv_wrap_t *w = s->data;
  kv_store_t **g = kv_realloc(w->wrap.gone, (w->wrap.ngone + 1) * sizeof *g);
  if (g != NULL) {
    g[w->wrap.ngone++] = s;
    w->wrap.gone = g;
  }
  w->wrap.closing_stores--;
  if (s == w->inner) close_extras(w);
  maybe_finish(w);
}

/* Close an owned store; 0 if it was closing already (not ours to wait
 * for). */
static int close_owned(kv_wrap_t *w, kv_store_t *s) {
  s->data = w;
  w->wrap.closing_stores++;
  if (kv_store_close(s, on_store_closed) != 0) {
    w->wrap.closing_stores--;
    return 0;
  }
  return 1;
}

/* The other stores close after the inner one: an op that completes on the
 * inner store while it closes may still use them (a cache tier's
 * invalidation). */
static void close_extras(kv_wrap_t *w) {
  w->wrap.closing_stores++;
  for (size_t i = 0; i < w->wrap.nstores; i++)
    close_owned(w, w->wrap.stores[i]);
  w->wrap.closing_stores--;
}

void kv_wrap_close(kv_store_t *s) {
  kv_wrap_t *w = (kv_wrap_t *)s;
  w->wrap.closing = 1;
  /* Hold off finishing while the stores are being closed (a store whose
   * close completes at once must not finish us half-way). */
  w->wrap.closing_stores++;
  if (w->on_close) w->on_close(w);
  if (!(w->owns_inner && w->inner && close_owned(w, w->inner))) close_extras(w);
  w->wrap.closing_stores--;
  maybe_finish(w);
}

/* 1 if `target` is an owned store that has closed (its memory is gone). */
static int store_gone(const kv_wrap_t *w, const kv_store_t *target) {
  for (size_t i = 0; i < w->wrap.ngone; i++)
    if (w->wrap.gone[i] == target) return 1;
  return 0;
}

static void on_handle_closed(uv_handle_t *h) {
  kv_wrap_t *w = h->data;
  w->wrap.closing_handles--;
  maybe_finish(w);
}

void kv_wrap_close_handle(kv_wrap_t *w, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  h->data = w;
  w->wrap.closing_handles++;
  uv_close(h, on_handle_closed);
}

/* ---- Interposed requests ----------------------------------------------------
 */

kv_wrap_req_t *kv_wrap_req_new(kv_store_t *s, kv_req_t *outer, size_t extra) {
  kv_wrap_t *w = (kv_wrap_t *)s;
  kv_wrap_req_t *wr;
  if (extra == 0 && w->wrap.free_list != NULL) {
    wr = w->wrap.free_list;
    w->wrap.free_list = wr->next_;
    w->wrap.nfree--;
  } else {
    wr = kv_malloc(sizeof *wr + extra);
    if (wr == NULL) return NULL;
    if (extra) memset(wr + 1, 0, extra);
    /* The inner request is reset by its submit; what cleanup reads must be
     * clear (a recycled request was cleaned when it was freed). */
    memset(&wr->inner, 0, offsetof(kv_req_t, priv.inline_buf));
  }
  wr->outer = outer;
  wr->w = w;
  wr->cb = NULL;
  wr->data = NULL;
  wr->mem = NULL;
  wr->start_ns = 0;
  wr->attempts = 0;
  wr->link = NULL;
  wr->link_prev = NULL;
  wr->due = 0;
  wr->next_ = NULL;
  wr->recyclable_ = extra == 0;
  wr->hook_ = NULL;
  if (outer != NULL) {
    wr->op = outer->op;
    wr->in = outer->in;
  } else {
    wr->op = KV_OP_NONE;
    memset(&wr->in, 0, sizeof wr->in);
  }
  w->wrap.inflight++;
  return wr;
}

void kv_wrap_req_free(kv_wrap_req_t *wr) {
  kv_wrap_t *w = wr->w;
  kv_req_cleanup(&wr->inner);
  kv_free(wr->mem);
  w->wrap.inflight--;
  if (wr->recyclable_ && !w->wrap.closing && w->wrap.nfree < WRAP_FREE_MAX) {
    wr->next_ = w->wrap.free_list;
    w->wrap.free_list = wr;
    w->wrap.nfree++;
  } else {
    kv_free(wr);
  }
  maybe_finish(w);
}

static void inner_cb(kv_req_t *req) {
  kv_wrap_req_t *wr = req->data;
  wr->cb(wr);
}

int kv_wrap_submit(kv_wrap_req_t *wr, kv_store_t *target, kv_wrap_cb cb) {
  kv_req_t *r = &wr->inner;
  int err;
  kv_req_cleanup(r);
  r->data = wr;
  wr->cb = cb;
  wr->attempts++;
  if (wr->w->wrap.closing && store_gone(wr->w, target)) {
    /* A later step of an op caught by the wrapper's close. */
    r->status = kv_req_set_error(r, KV_ECANCELED, "the store was closed");
    return KV_ECANCELED;
  }
  /* Names are NUL-terminated by contract; their lengths follow what the
   * wrapper set. A request with no outer gets its own timestamp. */
  if (wr->in.collection != NULL)
    wr->in.collection_len = strlen(wr->in.collection);
  if (wr->in.key != NULL) wr->in.key_len = strlen(wr->in.key);
  if (wr->in.now_ms == 0) wr->in.now_ms = kv_now_ms();
  err = kv__submit_in(target, r, wr->op, &wr->in, inner_cb);
  if (err == KV_ECLOSED && wr->w->wrap.closing)
    /* A later step of an op caught by the wrapper's own close. */
    err = kv_req_set_error(r, KV_ECANCELED, "the store was closed");
  if (err < 0) r->status = err;
  return err;
}

void kv_wrap_move_results(kv_req_t *dst, kv_req_t *src) {
  dst->status = src->status;
  dst->found = src->found;
  dst->value = src->value;
  dst->ttl = src->ttl;
  dst->number = src->number;
  dst->count = src->count;
  dst->results = src->results;
  dst->nresults = src->nresults;
  dst->names = src->names;
  dst->nnames = src->nnames;
  dst->cursor = src->cursor;
  if (src->priv.errmsg != NULL) {
    kv_free(dst->priv.errmsg);
    dst->priv.errmsg = src->priv.errmsg;
  }
  src->value.base = NULL;
  src->value.len = 0;
  src->results = NULL;
  src->nresults = 0;
  src->names = NULL;
  src->nnames = 0;
  src->cursor = NULL;
  src->priv.errmsg = NULL;
}

void kv_wrap_complete(kv_wrap_req_t *wr, int status) {
  kv_req_t *outer = wr->outer;
  if (outer == NULL) return;
  wr->outer = NULL;
  kv_req_complete(outer, status);
}

void kv_wrap_finish(kv_wrap_req_t *wr) {
  kv_req_t *outer = wr->outer;
  if (outer != NULL) {
    int status = wr->inner.status;
    kv_wrap_move_results(outer, &wr->inner);
    wr->outer = NULL;
    kv_req_complete(outer, status);
  }
  kv_wrap_req_free(wr);
}

int kv_wrap_refuse(kv_wrap_req_t *wr, int err) {
  if (wr->outer != NULL)
    kv_req_set_error(wr->outer, err, "%s", kv_req_errmsg(&wr->inner));
  wr->outer = NULL;
  kv_wrap_req_free(wr);
  return err;
}


/* kv_wrap_pass when it cannot hand the request itself down: an interposed
 * request, and the hook runs on the outer request once the results are
 * moved up. */
static void pass_cb(kv_wrap_req_t *wr) {
  kv_req_t *outer = wr->outer;
  kv_hook_t h;
  int status, held;
  if (outer == NULL || wr->hook_ == NULL) {
    kv_wrap_finish(wr);
    return;
  }
  kv_wrap_move_results(outer, &wr->inner);
  h.fn = wr->hook_;
  h.layer = &wr->w->base;
  h.u = wr->hook_u_;
  h.p = wr->hook_p_;
  wr->outer = NULL;
  held = h.fn(h.layer, outer, &h) == KV_HOOK_HELD;
  status = outer->status;
  kv_wrap_req_free(wr);
  if (!held) kv_req_complete(outer, status);
}

int kv_wrap_pass(kv_store_t *s, kv_req_t *req, kv_hook_fn hook, uint64_t u,
                 void *p) {
  kv_wrap_t *w = (kv_wrap_t *)s;
  kv_store_t *in = w->inner;
  kv_wrap_req_t *wr;
  int err;
  /* The request itself goes down when the wrapper owns its inner store: an
   * owned store closes, finishing or cancelling every request it holds,
   * before the wrapper finishes closing. A borrowed one might outlive the
   * wrapper, so it gets an interposed request. */
  if (w->owns_inner && !kv_store_is_closing(in) &&
      (hook == NULL || req->priv.nhooks < KV_WRAP_HOOKS_MAX)) {
    kv_op_fn fn = kv__method(in->methods, req->op);
    unsigned cap = kv__op_cap(req->op);
    if (fn != NULL && (cap == 0 || (in->caps & cap))) {
      unsigned depth = req->priv.nhooks;
      if (hook != NULL) {
        kv_hook_t *h = &req->priv.hooks[req->priv.nhooks++];
        h->fn = hook;
        h->layer = s;
        h->u = u;
        h->p = p;
        w->wrap.inflight++;
      }
      err = fn(in, req);
      if (err < 0 && hook != NULL && req->priv.nhooks > depth &&
          req->priv.state == KV__REQ_PENDING) {
        /* Refused below: the hook never runs. */
        req->priv.nhooks = depth;
        w->wrap.inflight--;
      }
      return err;
    }
  }
  wr = kv_wrap_req_new(s, req, 0);
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  wr->hook_ = hook;
  wr->hook_u_ = u;
  wr->hook_p_ = p;
  err = kv_wrap_submit(wr, in, pass_cb);
  if (err < 0) return kv_wrap_refuse(wr, err);
  return 0;
}

void kv_wrap_hold(kv_req_t *req) {
  kv__req_hold(req);
}

void kv__wrap_hook_done(kv_store_t *layer) {
  kv_wrap_t *w = (kv_wrap_t *)layer;
  w->wrap.inflight--;
  maybe_finish(w);
}

int kv_wrap_forward(kv_store_t *s, kv_req_t *req) {
  return kv_wrap_pass(s, req, NULL, 0, NULL);
}

int kv_wrap_ctl_forward(kv_store_t *s, int op, void *arg, size_t size) {
  return kv_store_ctl(((kv_wrap_t *)s)->inner, op, arg, size);
}

/* ---- Options as text --------------------------------------------------------
 */

void kv_wrap_opts_free(kv_url_t *opts) {
  for (size_t i = 0; i < opts->nparams; i++) {
    kv_free(opts->params[i].name);
    kv_free(opts->params[i].value);
  }
  kv_free(opts->params);
  memset(opts, 0, sizeof *opts);
}

int kv_wrap_opts_parse(const char *text, kv_url_t *out, char *errbuf,
                       size_t errbuf_len) {
  const char *p = text ? text : "";
  memset(out, 0, sizeof *out);
  out->raw = text;
  out->port = -1;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    const char *eq = memchr(p, '=', n);
    size_t nl = eq ? (size_t)(eq - p) : n;
    kv_url_param_t *prm;
    if (n == 0 || nl == 0) {
      kv_wrap_opts_free(out);
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "empty option name in '%s'", text);
    }
    prm = kv_realloc(out->params, (out->nparams + 1) * sizeof *prm);
    if (prm == NULL) {
      kv_wrap_opts_free(out);
      return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    }
    out->params = prm;
    prm = &out->params[out->nparams++];
    {
      int err1 = kv__pct_decode(p, nl, &prm->name);
      int err2 = eq ? kv__pct_decode(eq + 1, n - nl - 1, &prm->value)
                    : kv__pct_decode("", 0, &prm->value);
      if (err1 != 0 || err2 != 0) {
        kv_wrap_opts_free(out);
        if (err1 == KV_ENOMEM || err2 == KV_ENOMEM)
          return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
        return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                          "invalid percent-escape in options '%s'", text);
      }
    }
    for (size_t i = 0; i + 1 < out->nparams; i++) {
      if (strcmp(out->params[i].name, prm->name) == 0) {
        int err =
            kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                       "option '%s' given twice in '%s'", prm->name, text);
        kv_wrap_opts_free(out);
        return err;
      }
    }
    p += n + (comma != NULL);
  }
  return 0;
}

int kv_wrap_opts_check(const kv_url_t *opts, const char *wrapper,
                       const char *const *known, char *errbuf,
                       size_t errbuf_len) {
  for (size_t i = 0; i < opts->nparams; i++) {
    int ok = 0;
    for (const char *const *k = known; !ok && k && *k; k++)
      ok = strcmp(*k, opts->params[i].name) == 0;
    if (!ok) {
      char list[512] = "";
      for (const char *const *k = known; k && *k; k++) {
        if (list[0]) strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, *k, sizeof list - strlen(list) - 1);
      }
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "unknown option '%s' for wrapper '%s' (known: %s)",
                        opts->params[i].name, wrapper, list[0] ? list : "none");
    }
  }
  return 0;
}
