/* retry: an operation that completes with a transient error
 * (kv_err_category) is submitted again after an exponential backoff with
 * jitter, at most `max` more times. Waiting requests sit in one queue
 * ordered by due time, with one timer. */
#include <math.h>
#include <time.h>

#include "wrappers/wrappers.h"

typedef struct {
  kv_wrap_t w;
  int max;
  double initial, max_delay;
  int atomic;
  uint64_t rng;
  kv_wrap_retry_cb on_retry;
  void *on_retry_data;
  kv__timerq_t q;
} retry_t;

static int is_atomic(kv_op_t op) {
  return op == KV_OP_PUT_IF_ABSENT || op == KV_OP_CAS || op == KV_OP_INCR ||
         op == KV_OP_TAKE;
}

static void retry_cb(kv_wrap_req_t *wr);

static void on_due(kv__timerq_t *q, kv_wrap_req_t *wr) {
  if (kv_wrap_submit(wr, q->w->inner, retry_cb) < 0)
    kv_wrap_finish(wr); /* the refusal is the answer */
}

static void retry_cb(kv_wrap_req_t *wr) {
  retry_t *r = (retry_t *)wr->w;
  int st = wr->inner.status;
  int tries = wr->attempts; /* submits so far */
  double d, delay;
  if (st >= 0 || kv_err_category(st) != KV_CAT_TRANSIENT || tries > r->max ||
      r->w.wrap.closing || (is_atomic(wr->args.op) && !r->atomic)) {
    kv_wrap_finish(wr);
    return;
  }
  d = r->initial * pow(2.0, tries - 1);
  if (d > r->max_delay) d = r->max_delay;
  /* Jitter: uniform in [d/2, d]. */
  delay = d / 2 +
          d / 2 * ((double)(kv__wrap_rand(&r->rng) >> 11) / 9007199254740992.0);
  if (r->on_retry) r->on_retry(tries, delay, st, r->on_retry_data);
  kv__timerq_add(&r->q, wr, delay);
}

static int retry_op(kv_store_t *s, kv_req_t *req) {
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, 0);
  int err;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  err = kv_wrap_submit(wr, ((kv_wrap_t *)s)->inner, retry_cb);
  if (err < 0) return kv_wrap_refuse(wr, err);
  return 0;
}

/* Closing: requests waiting for their next try end with their last error. */
static void cancel(kv_wrap_req_t *wr) {
  kv_wrap_finish(wr);
}

static void retry_close(kv_wrap_t *w) {
  kv__timerq_close(&((retry_t *)w)->q, cancel);
}

static kv_store_methods_t retry_methods;
static uv_once_t retry_once = UV_ONCE_INIT;

static void retry_init(void) {
  kv_store_methods_t *m = &retry_methods;
  kv_wrap_methods_init(m, "retry", sizeof(retry_t));
  m->get = m->ttl = m->put = m->del = retry_op;
  m->get_many = m->ttl_many = m->put_many = m->delete_many = retry_op;
  m->keys = m->collections = m->destroy = m->destroy_collection = retry_op;
  m->cull = m->put_if_absent = m->cas = m->incr = m->take = retry_op;
}

int kv_wrap_retry(kv_store_t *inner, const kv_wrap_retry_opts_t *o,
                  kv_store_t **out) {
  kv_wrap_retry_opts_t d = {0};
  kv_wrap_t *w;
  retry_t *r;
  int err;
  *out = NULL;
  if (o == NULL) o = &d;
  if (o->max < 0 || !(o->initial >= 0) || !(o->max_delay >= 0) ||
      o->initial > 3600 || o->max_delay > 3600)
    return KV_EINVAL;
  uv_once(&retry_once, retry_init);
  err = kv_wrap_create(inner, &retry_methods, o->borrow, &w);
  if (err) return err;
  r = (retry_t *)w;
  r->max = o->max ? o->max : 3;
  r->initial = o->initial > 0 ? o->initial : 0.05;
  r->max_delay = o->max_delay > 0 ? o->max_delay : 2;
  r->atomic = o->atomic;
  r->rng = o->seed ? o->seed : (uint64_t)time(NULL) ^ uv_hrtime();
  r->on_retry = o->on_retry;
  r->on_retry_data = o->on_retry_data;
  kv__timerq_init(&r->q, w, on_due);
  w->on_close = retry_close;
  *out = &w->base;
  return 0;
}

KV__WRAP_FROM_OPTIONS(retry) {
  static const char *const known[] = {"max",    "initial", "max_delay",
                                      "atomic", "seed",    NULL};
  kv_wrap_retry_opts_t o = {0};
  kv_url_t opts;
  int64_t max, seed;
  int err = kv__wrap_opts("retry", options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  if ((err = kv_url_param_int(&opts, "max", 1, 1000, 3, &max, errbuf,
                              errbuf_len)) ||
      (err = kv_url_param_double(&opts, "initial", 1e-6, 3600, 0.05, &o.initial,
                                 errbuf, errbuf_len)) ||
      (err = kv_url_param_double(&opts, "max_delay", 1e-6, 3600, 2,
                                 &o.max_delay, errbuf, errbuf_len)) ||
      (err = kv_url_param_bool(&opts, "atomic", 0, &o.atomic, errbuf,
                               errbuf_len)) ||
      (err = kv_url_param_int(&opts, "seed", 0, UINT32_MAX, 0, &seed, errbuf,
                              errbuf_len))) {
    kv_wrap_opts_free(&opts);
    return err;
  }
  kv_wrap_opts_free(&opts);
  o.max = (int)max;
  o.seed = (unsigned)seed;
  return kv_wrap_retry(inner, &o, out);
}
