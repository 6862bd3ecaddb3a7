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

/* The backoff before try number tries + 1. */
static void schedule(retry_t *r, kv_wrap_req_t *wr, int tries, int st) {
  double d = r->initial * pow(2.0, tries - 1), delay;
  if (d > r->max_delay) d = r->max_delay;
  /* Jitter: uniform in [d/2, d]. */
  delay = d / 2 +
          d / 2 * ((double)(kv__wrap_rand(&r->rng) >> 11) / 9007199254740992.0);
  if (r->on_retry) r->on_retry(tries, delay, st, r->on_retry_data);
  kv__timerq_add(&r->q, wr, delay);
}

static void retry_cb(kv_wrap_req_t *wr) {
  retry_t *r = (retry_t *)wr->w;
  int st = wr->inner.status;
  int tries = wr->attempts; /* tries so far */
  if (st >= 0 || kv_err_category(st) != KV_CAT_TRANSIENT || tries > r->max ||
      r->w.wrap.closing) {
    kv_wrap_finish(wr);
    return;
  }
  schedule(r, wr, tries, st);
}

/* Completion hook of the first try (the request itself went down): on a
 * transient error the request is taken back and retried through an
 * interposed request, which holds the last answer while it waits. */
static int retry_hook(kv_store_t *layer, kv_req_t *req, kv_hook_t *h) {
  retry_t *r = (retry_t *)layer;
  int st = req->status;
  kv_wrap_req_t *wr;
  if (st >= 0 || kv_err_category(st) != KV_CAT_TRANSIENT || r->max < 1 ||
      r->w.wrap.closing)
    return 0;
  wr = kv_wrap_req_new(layer, req, 0);
  if (wr == NULL) return 0; /* no memory to retry: the error stands */
  kv_wrap_move_results(&wr->inner, req);
  kv_wrap_hold(req);
  wr->attempts = 1;
  schedule(r, wr, 1, st);
  return KV_HOOK_HELD;
}

static int retry_op(kv_store_t *s, kv_req_t *req) {
  retry_t *r = (retry_t *)s;
  if (is_atomic(req->op) && !r->atomic)
    return kv_wrap_pass(s, req, NULL, 0, NULL);
  return kv_wrap_pass(s, req, retry_hook, 0, NULL);
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
#define XX(NAME, name, member, cap, params, args) m->member = retry_op;
  KV_OP_MAP(XX)
#undef XX
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
