/* fault-injection: for tests, fail chosen calls with a chosen error and add
 * latency. A failing call never reaches the inner store; with latency, every
 * call waits in a queue (one timer) before it is forwarded or failed. */
#include <stdio.h>
#include <string.h>

#include "wrappers/wrappers.h"

typedef struct {
  kv_wrap_t w;
  int error;
  double rate;
  uint64_t nth, times;
  double latency;
  uint64_t rng;
  uint64_t calls, injected;
  kv__timerq_t q;
} fault_t;

/* wr->data: NULL to forward, non-NULL to fail. */
#define FAIL_MARK ((void *)1)

static int should_fail(fault_t *f) {
  uint64_t n = ++f->calls;
  if (f->nth && n >= f->nth &&
      (f->times == UINT64_MAX || n - f->nth < (f->times ? f->times : 1)))
    return 1;
  if (f->rate > 0 &&
      (double)(kv__wrap_rand(&f->rng) >> 11) / 9007199254740992.0 < f->rate)
    return 1;
  return 0;
}

static void fail(fault_t *f, kv_req_t *req) {
  f->injected++;
  kv_req_set_error(req, f->error, "injected failure (call %llu)",
                   (unsigned long long)f->calls);
}

static void forward_cb(kv_wrap_req_t *wr) {
  kv_wrap_finish(wr);
}

static void on_due(kv__timerq_t *q, kv_wrap_req_t *wr) {
  fault_t *f = (fault_t *)q->w;
  if (wr->data == FAIL_MARK) {
    kv_req_set_error(wr->outer, f->error, "injected failure");
    kv_wrap_complete(wr, f->error);
    kv_wrap_req_free(wr);
  } else if (kv_wrap_submit(wr, f->w.inner, forward_cb) < 0) {
    kv_wrap_finish(wr); /* completes with the refusal */
  }
}

static int fault_op(kv_store_t *s, kv_req_t *req) {
  fault_t *f = (fault_t *)s;
  int bad = should_fail(f);
  kv_wrap_req_t *wr;
  if (bad) fail(f, req);
  if (f->latency <= 0) {
    if (bad) {
      kv_req_complete(req, f->error); /* delivered on the loop */
      return 0;
    }
    return kv_wrap_forward(s, req);
  }
  wr = kv_wrap_req_new(s, req, 0);
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  wr->data = bad ? FAIL_MARK : NULL;
  kv__timerq_add(&f->q, wr, f->latency);
  return 0;
}

static void cancel(kv_wrap_req_t *wr) {
  kv_req_set_error(wr->outer, KV_ECANCELED, "the store was closed");
  kv_wrap_complete(wr, KV_ECANCELED);
  kv_wrap_req_free(wr);
}

static void fault_close(kv_wrap_t *w) {
  kv__timerq_close(&((fault_t *)w)->q, cancel);
}

static kv_store_methods_t fault_methods;
static uv_once_t fault_once = UV_ONCE_INIT;

static void fault_init(void) {
  kv_store_methods_t *m = &fault_methods;
  kv_wrap_methods_init(m, "fault-injection", sizeof(fault_t));
  m->get = m->ttl = m->put = m->del = fault_op;
  m->get_many = m->ttl_many = m->put_many = m->delete_many = fault_op;
  m->keys = m->collections = m->destroy = m->destroy_collection = fault_op;
  m->cull = m->put_if_absent = m->cas = m->incr = m->take = fault_op;
}

int kv_wrap_fault_injection(kv_store_t *inner,
                            const kv_wrap_fault_injection_opts_t *o,
                            kv_store_t **out) {
  kv_wrap_fault_injection_opts_t d = {0};
  kv_wrap_t *w;
  fault_t *f;
  int err;
  *out = NULL;
  if (o == NULL) o = &d;
  if (!(o->rate >= 0 && o->rate <= 1) || !(o->latency >= 0) ||
      o->latency > KV_TTL_MAX || o->error > 0)
    return KV_EINVAL;
  uv_once(&fault_once, fault_init);
  err = kv_wrap_create(inner, &fault_methods, o->borrow, &w);
  if (err) return err;
  f = (fault_t *)w;
  f->error = o->error ? o->error : KV_ECONN;
  f->rate = o->rate;
  f->nth = o->nth;
  f->times = o->times;
  f->latency = o->latency;
  f->rng = o->seed ? o->seed : 0x2545F4914F6CDD1Dull;
  kv__timerq_init(&f->q, w, on_due);
  w->on_close = fault_close;
  *out = &w->base;
  return 0;
}

void kv_wrap_fault_injection_counts(kv_store_t *s, uint64_t *calls,
                                    uint64_t *injected) {
  fault_t *f = (fault_t *)kv_wrap_find(s, "fault-injection");
  if (calls) *calls = f ? f->calls : 0;
  if (injected) *injected = f ? f->injected : 0;
}

/* An error by name: "KV_ETIMEDOUT", "ETIMEDOUT" or "ECONN". */
static int error_by_name(const char *name, int *out) {
  for (int e = KV_EINVAL; e >= KV_EBUSY; e--) {
    const char *n = kv_err_name(e);
    if (strcmp(n, name) == 0 || strcmp(n + 3, name) == 0) {
      *out = e;
      return 0;
    }
  }
  return KV_EINVAL;
}

KV__WRAP_FROM_OPTIONS(fault_injection) {
  static const char *const known[] = {"rate",    "error", "nth", "times",
                                      "latency", "seed",  NULL};
  kv_wrap_fault_injection_opts_t o = {0};
  kv_url_t opts;
  const char *ename;
  int64_t nth, times, seed;
  int err = kv__wrap_opts("fault-injection", options, known, &opts, errbuf,
                          errbuf_len);
  if (err) return err;
  if ((err = kv_url_param_double(&opts, "rate", 0, 1, 0, &o.rate, errbuf,
                                 errbuf_len)) ||
      (err = kv_url_param_double(&opts, "latency", 0, 3600, 0, &o.latency,
                                 errbuf, errbuf_len)) ||
      (err = kv_url_param_int(&opts, "nth", 0, INT64_MAX, 0, &nth, errbuf,
                              errbuf_len)) ||
      (err = kv_url_param_int(&opts, "times", 0, INT64_MAX, 1, &times, errbuf,
                              errbuf_len)) ||
      (err = kv_url_param_int(&opts, "seed", 0, UINT32_MAX, 0, &seed, errbuf,
                              errbuf_len)))
    goto done;
  o.nth = (uint64_t)nth;
  o.times = times == 0 ? UINT64_MAX : (uint64_t)times;
  o.seed = (unsigned)seed;
  ename = kv_url_param(&opts, "error");
  if (ename && error_by_name(ename, &o.error) != 0) {
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "invalid value '%s' for option 'error': expected an "
                     "error name such as KV_ECONN or KV_ETIMEDOUT",
                     ename);
    goto done;
  }
  err = kv_wrap_fault_injection(inner, &o, out);
done:
  kv_wrap_opts_free(&opts);
  return err;
}
