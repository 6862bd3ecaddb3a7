/* Internal declarations of src/wrappers/: each wrapper's "from options"
 * constructor (the registry calls them by name) and small shared helpers. */
#ifndef KVIO_WRAPPERS_INTERNAL_H
#define KVIO_WRAPPERS_INTERNAL_H

#include "internal.h"
#include "kvio/wrap.h"

/* int fn(const char *options, kv_store_t *inner, kv_store_t **out,
 *        char *errbuf, size_t errbuf_len) */
typedef int (*kv__wrap_from_options_fn)(const char *options, kv_store_t *inner,
                                        kv_store_t **out, char *errbuf,
                                        size_t errbuf_len);

#define KV__WRAP_FROM_OPTIONS(name)                                          \
  int kv__wrap_##name##_from_options(const char *options, kv_store_t *inner, \
                                     kv_store_t **out, char *errbuf,         \
                                     size_t errbuf_len)

KV__WRAP_FROM_OPTIONS(fault_injection);
KV__WRAP_FROM_OPTIONS(fallback);
KV__WRAP_FROM_OPTIONS(limit_size);
KV__WRAP_FROM_OPTIONS(logging);
KV__WRAP_FROM_OPTIONS(cache);
KV__WRAP_FROM_OPTIONS(prefix_collections);
KV__WRAP_FROM_OPTIONS(prefix_keys);
KV__WRAP_FROM_OPTIONS(read_only);
KV__WRAP_FROM_OPTIONS(retry);
KV__WRAP_FROM_OPTIONS(single_collection);
KV__WRAP_FROM_OPTIONS(ttl_clamp);
KV__WRAP_FROM_OPTIONS(statistics);
KV__WRAP_FROM_OPTIONS(timeout);
KV__WRAP_FROM_OPTIONS(default_value);
KV__WRAP_FROM_OPTIONS(raise_on_missing);
KV__WRAP_FROM_OPTIONS(collection_routing);
/* Built with the crypto part (cmake/parts/crypto.cmake). */
KV__WRAP_FROM_OPTIONS(compression);
KV__WRAP_FROM_OPTIONS(encryption);

/* Parse `options` and check them against `known`: 0 or KV_EINVAL (errbuf). */
KV__MODULE_API int kv__wrap_opts(const char *wrapper, const char *options,
                  const char *const *known, kv_url_t *out, char *errbuf,
                  size_t errbuf_len);
/* Open the store URL of option `name` on `loop`; the error names the
 * option. A missing option is KV_EINVAL ("option 'store' is required"). */
int kv__wrap_open_opt(const char *wrapper, const kv_url_t *opts,
                      const char *name, uv_loop_t *loop, kv_store_t **out,
                      char *errbuf, size_t errbuf_len);

/* A constructor's failure after the wrapper was created: detach and close
 * it without touching the stores the caller still owns. */
void kv__wrap_abort(kv_wrap_t *w);

/* A random 64-bit number for jitter and fault injection (xorshift). */
uint64_t kv__wrap_rand(uint64_t *state);

/* A queue of interposed requests ordered by due time (ms of uv_now) with
 * one timer: timeout deadlines, retry backoffs, injected latency. `fire`
 * runs for each request whose time has come, after its removal. */
typedef struct kv__timerq_s kv__timerq_t;
struct kv__timerq_s {
  uv_timer_t timer; /* first: the timer callback finds the queue */
  kv_wrap_req_t *head;
  kv_wrap_req_t *tail;
  kv_wrap_t *w;
  void (*fire)(kv__timerq_t *q, kv_wrap_req_t *wr);
};
void kv__timerq_init(kv__timerq_t *q, kv_wrap_t *w,
                     void (*fire)(kv__timerq_t *q, kv_wrap_req_t *wr));
/* Queue wr to fire after `delay_s` seconds (wr->due is set). */
void kv__timerq_add(kv__timerq_t *q, kv_wrap_req_t *wr, double delay_s);
void kv__timerq_remove(kv__timerq_t *q, kv_wrap_req_t *wr);
/* Closing: take every queued request out (calling `cancel` on each, which
 * must complete or free it) and close the timer with kv_wrap_close_handle. */
void kv__timerq_close(kv__timerq_t *q, void (*cancel)(kv_wrap_req_t *wr));

#endif
