/* timeout: each operation completes with KV_ETIMEDOUT after its deadline
 * unless the inner store answered first. Deadlines are equal for every
 * request, so they sit in arrival order in one queue with one timer. A
 * timed-out request stays alive until the inner store answers; that late
 * answer is released (its values freed) and goes nowhere. */
#include "wrappers/wrappers.h"

typedef struct {
  kv_wrap_t w;
  double seconds;
  kv__timerq_t q;
} timeout_t;

#define QUEUED ((void *)1)

static void timeout_cb(kv_wrap_req_t *wr) {
  if (wr->data == QUEUED) kv__timerq_remove(&((timeout_t *)wr->w)->q, wr);
  kv_wrap_finish(wr); /* frees only, when the outer timed out already */
}

static void on_deadline(kv__timerq_t *q, kv_wrap_req_t *wr) {
  timeout_t *t = (timeout_t *)q->w;
  wr->data = NULL;
  kv_req_set_error(wr->outer, KV_ETIMEDOUT, "no answer within %g s",
                   t->seconds);
  kv_wrap_complete(wr, KV_ETIMEDOUT);
  /* wr lives on until timeout_cb. */
}

static int timeout_op(kv_store_t *s, kv_req_t *req) {
  timeout_t *t = (timeout_t *)s;
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, 0);
  int err;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  err = kv_wrap_submit(wr, t->w.inner, timeout_cb);
  if (err < 0) return kv_wrap_refuse(wr, err);
  wr->data = QUEUED;
  kv__timerq_add(&t->q, wr, t->seconds);
  return 0;
}

/* Closing: outer requests still waiting are cancelled now; their inner
 * requests finish or are cancelled by the inner store. */
static void cancel(kv_wrap_req_t *wr) {
  wr->data = NULL;
  kv_req_set_error(wr->outer, KV_ECANCELED, "the store was closed");
  kv_wrap_complete(wr, KV_ECANCELED);
}

static void timeout_close(kv_wrap_t *w) {
  kv__timerq_close(&((timeout_t *)w)->q, cancel);
}

static kv_store_methods_t timeout_methods;
static uv_once_t timeout_once = UV_ONCE_INIT;

static void timeout_init(void) {
  kv_store_methods_t *m = &timeout_methods;
  kv_wrap_methods_init(m, "timeout", sizeof(timeout_t));
  m->get = m->ttl = m->put = m->del = timeout_op;
  m->get_many = m->ttl_many = m->put_many = m->delete_many = timeout_op;
  m->keys = m->collections = m->destroy = m->destroy_collection = timeout_op;
  m->cull = m->put_if_absent = m->cas = m->incr = m->take = timeout_op;
}

int kv_wrap_timeout(kv_store_t *inner, const kv_wrap_timeout_opts_t *o,
                    kv_store_t **out) {
  kv_wrap_t *w;
  int err;
  *out = NULL;
  if (o == NULL || !(o->seconds > 0) || o->seconds > KV_TTL_MAX)
    return KV_EINVAL;
  uv_once(&timeout_once, timeout_init);
  err = kv_wrap_create(inner, &timeout_methods, o->borrow, &w);
  if (err) return err;
  ((timeout_t *)w)->seconds = o->seconds;
  kv__timerq_init(&((timeout_t *)w)->q, w, on_deadline);
  w->on_close = timeout_close;
  *out = &w->base;
  return 0;
}

KV__WRAP_FROM_OPTIONS(timeout) {
  static const char *const known[] = {"seconds", NULL};
  kv_wrap_timeout_opts_t o = {0};
  kv_url_t opts;
  int err = kv__wrap_opts("timeout", options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  if (kv_url_param(&opts, "seconds") == NULL)
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "wrapper 'timeout' needs option 'seconds'");
  else
    err = kv_url_param_double(&opts, "seconds", 1e-3, KV_TTL_MAX, 0, &o.seconds,
                              errbuf, errbuf_len);
  kv_wrap_opts_free(&opts);
  if (err) return err;
  return kv_wrap_timeout(inner, &o, out);
}
