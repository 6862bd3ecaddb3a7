/* kvio/wrap.h — wrappers: stores built around other stores.
 *
 * Every wrapper is a store (it begins with kv_store_t, has a methods table,
 * is closed with kv_store_close) around an inner store, sometimes two or
 * more. Stacks compose freely: statistics(retry(timeout(prefix-keys(disk)))).
 * docs/wrappers.md is the manual; this header is the contract.
 *
 * Part 1 is the infrastructure for people who write wrappers; part 2 the
 * wrappers kvio ships, each with an options struct and a constructor
 *
 *   int kv_wrap_<name>(kv_store_t *inner, const kv_wrap_<name>_opts_t *opts,
 *                      kv_store_t **out);
 *
 * Rules common to every constructor:
 *  - `opts` may be NULL: every option then has its default (a zeroed struct
 *    means the same as NULL).
 *  - On success *out is the wrapper, on the inner store's loop, and the
 *    wrapper owns `inner` (closing the wrapper closes it, before the
 *    wrapper's close callback runs) unless opts->borrow is set. Stores given
 *    in the options (a cache, a fallback, routes) are owned the same way
 *    unless their own borrow flag is set.
 *  - On failure (KV_EINVAL with bad options, KV_ENOMEM) *out is NULL and
 *    nothing was taken: the caller still owns every store it passed.
 *  - The wrapper's default collection is the inner store's.
 *  - The wrapper announces the inner store's capability bits, minus the
 *    segments it cannot keep true (each constructor says which).
 */
#ifndef KVIO_WRAP_H
#define KVIO_WRAP_H

#include <stdio.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===========================================================================
 * Part 1: writing a wrapper
 * ===========================================================================
 *
 * A wrapper's struct begins with kv_wrap_t; its methods table starts from
 * kv_wrap_methods_init() (every op forwarded to the inner store unchanged)
 * and overrides only what the wrapper changes:
 *
 *   typedef struct { kv_wrap_t w; double min; } clamp_t;
 *   static kv_store_methods_t clamp_methods;
 *   static uv_once_t clamp_once = UV_ONCE_INIT;
 *   static void clamp_init(void) {
 *     kv_wrap_methods_init(&clamp_methods, "ttl-clamp", sizeof(clamp_t));
 *     clamp_methods.put = clamp_put;   // the rest is forwarded
 *   }
 *   int kv_wrap_ttl_clamp(kv_store_t *inner, const ... *o, kv_store_t **out) {
 *     kv_wrap_t *w;
 *     uv_once(&clamp_once, clamp_init);
 *     int err = kv_wrap_create(inner, &clamp_methods, o && o->borrow, &w);
 *     if (err) return err;
 *     ((clamp_t *)w)->min = ...;
 *     *out = &w->base;
 *     return 0;
 *   }
 *
 * A method has two ways down to the inner store:
 *
 *  - kv_wrap_pass(s, req, hook, u, p): the same request goes down. The
 *    method may first change req->in (a clamped TTL, a renamed key in memory
 *    it owns) and push a completion hook; the inner store's method then runs
 *    on req itself, with the inputs the core validated and copied once. When
 *    the request completes, the hooks run innermost first, in the loop turn
 *    of the completion, each seeing the results (and undoing what it changed
 *    in req->in); then the user's callback runs. A hook cannot complete the
 *    request early: the store below holds it. A hook may take it back
 *    (kv_wrap_hold, return KV_HOOK_HELD: a retry) and complete it later.
 *    Used by statistics, ttl-clamp, retry, logging, prefix-keys and every
 *    forwarded op. When the wrapper borrows its inner store, or more than
 *    KV_WRAP_HOOKS_MAX hooks are stacked, kv_wrap_pass interposes a request
 *    instead (below) and runs the hook on its result: same behaviour.
 *  - An interposed request (kv_wrap_req_t): an inner request of the
 *    wrapper's own, whose inputs (wr->in, the outer's to start with) the
 *    wrapper may change and which kv_wrap_submit copies into the inner
 *    request, so the layers never share input memory: a wrapper may complete
 *    its outer request early (a timeout) while the store below still works
 *    on the inner one. The wrapper completes the outer request from cb,
 *    usually with kv_wrap_finish(wr), which moves the inner results over
 *    without copying values. Used where a wrapper answers by itself (cache,
 *    timeout, fallback) or sends something else down (encryption,
 *    compression, routing).
 * A method may also complete the outer request itself at once
 * (kv_req_complete): the core delivers it on the loop, never inside the
 * submit.
 */

#define KV_WRAP_HOOKS_MAX 8 /* hooks one request carries (kv_req_t) */

typedef struct kv_wrap_s kv_wrap_t;
typedef struct kv_wrap_req_s kv_wrap_req_t;
typedef void (*kv_wrap_cb)(kv_wrap_req_t *wr);

/* The base of every wrapper. */
struct kv_wrap_s {
  kv_store_t base;
  kv_store_t *inner; /* the wrapped store */
  int owns_inner;    /* close inner when the wrapper closes */
  /* Optional hooks, set by the constructor:
   * on_close: closing has begun (kv_store_close on the wrapper). Complete
   *   or cancel what the wrapper holds itself (requests waiting on its own
   *   timers: complete them with KV_ECANCELED and free them) and close its
   *   handles with kv_wrap_close_handle(). Requests in flight in inner
   *   stores need nothing: the inner stores finish or cancel them.
   * on_free: the last step, once every owned store is closed, every
   *   kv_wrap_req_t freed and every handle closed: release the wrapper's own
   *   memory. The core frees the struct itself after the close callback. */
  void (*on_close)(kv_wrap_t *w);
  void (*on_free)(kv_wrap_t *w);
  /* private: kv_wrap_* bookkeeping */
  struct {
    kv_store_t **stores; /* other stores to close with the wrapper */
    size_t nstores;
    size_t inflight;       /* kv_wrap_req_t alive */
    size_t closing_stores; /* owned stores not yet closed */
    size_t closing_handles;
    int closing;
    int finished;
    kv_wrap_req_t *free_list; /* recycled requests (no extra bytes) */
    size_t nfree;
    kv_store_t **gone; /* owned stores already closed (compared, never
                          dereferenced) */
    size_t ngone;
  } wrap;
};

/* One interposed operation: the inner request and the outer one. */
struct kv_wrap_req_s {
  kv_req_t inner;      /* submitted to an inner store by kv_wrap_submit */
  kv_req_t *outer;     /* the wrapper's request; NULL once completed */
  kv_wrap_t *w;        /* the wrapper */
  kv_op_t op;          /* what kv_wrap_submit sends: the outer's op ... */
  kv_req_in_t in;      /* ... with these inputs: the outer's (pointing into
                          the outer request) until the wrapper changes them;
                          collection and key NUL-terminated; a changed ttl
                          gets its expiry from in.now_ms */
  kv_wrap_cb cb;       /* called when the inner request completes */
  void *data;          /* for the wrapper */
  void *mem;           /* for the wrapper: kv_free'd with the request */
  uint64_t start_ns;   /* uv_hrtime() at kv_wrap_req_new */
  int attempts;        /* kv_wrap_submit calls so far */
  kv_wrap_req_t *link; /* for the wrapper's own lists */
  kv_wrap_req_t *link_prev;
  double due; /* for the wrapper's own timers */
  /* private */
  kv_hook_fn hook_; /* kv_wrap_pass's hook, when it interposed */
  uint64_t hook_u_;
  void *hook_p_;
  kv_wrap_req_t *next_; /* the wrapper's free list */
  int recyclable_;
};

/* A completion hook's frame (struct kv_hook_s, in kvio.h's kv_req_t): fn,
 * layer (the wrapper), and the u and p kv_wrap_pass was given. */


/* Send req down to the inner store of wrapper s, the same request, after
 * pushing `hook` (NULL: none) with its data u and p; see above. Returns
 * what the inner method returns (0 accepted, < 0 refused: the method
 * returns it). */
KV_EXTERN int kv_wrap_pass(kv_store_t *s, kv_req_t *req, kv_hook_fn hook,
                           uint64_t u, void *p);

/* In a hook: take the request back (its results are cleared, it is
 * pending again) before returning KV_HOOK_HELD. The layer completes it
 * later with kv_req_complete (e.g. kv_wrap_finish of an interposed request
 * made for it); the hooks of the layers above then run. */
KV_EXTERN void kv_wrap_hold(kv_req_t *req);

/* Fill a methods table with the defaults: version, name, store_size, no
 * caps, no options, no open, close = kv_wrap_close, every op =
 * kv_wrap_forward, ctl_ex = kv_wrap_ctl_forward. The table must stay valid as
 * long as stores use it (make it static). */
KV_EXTERN void kv_wrap_methods_init(kv_store_methods_t *m, const char *name,
                                    size_t store_size);

/* Create a wrapper with methods `m` (whose close must be kv_wrap_close) on
 * inner's loop: w->inner = inner, w->owns_inner = !borrow, caps = inner's,
 * default collection = inner's. Returns 0 or KV_EINVAL / KV_ENOMEM. */
KV_EXTERN int kv_wrap_create(kv_store_t *inner, const kv_store_methods_t *m,
                             int borrow, kv_wrap_t **out);

/* Add another store the wrapper uses (a cache tier, a fallback, routes):
 * closed with the wrapper when `owned`. 0 or KV_ENOMEM. */
KV_EXTERN int kv_wrap_add_store(kv_wrap_t *w, kv_store_t *s, int owned);

/* The inner store's caps minus `drop` (KV_CAP_* bits). */
KV_EXTERN unsigned kv_wrap_caps(const kv_store_t *inner, unsigned drop);

/* The default close method: sets closing, calls on_close, closes the owned
 * stores, and once they are closed, no kv_wrap_req_t is alive and every
 * handle is closed, calls on_free and kv_store_closed(). */
KV_EXTERN void kv_wrap_close(kv_store_t *s);

/* Close a handle of the wrapper's (its uv_timer_t, ...) as part of closing:
 * the wrapper finishes closing only after the handle's close callback.
 * Overwrites h->data. */
KV_EXTERN void kv_wrap_close_handle(kv_wrap_t *w, uv_handle_t *h);

/* The default method for every op: the same op with the same inputs on the
 * inner store; the outer request completes with the inner results, moved
 * (values are not copied). */
KV_EXTERN int kv_wrap_forward(kv_store_t *s, kv_req_t *req);
/* The default ctl: kv_store_ctl on the inner store. */
KV_EXTERN int kv_wrap_ctl_forward(kv_store_t *s, int op, void *arg,
                                  size_t size);

/* A new interposed request for `outer` (on wrapper s), with `extra` zeroed
 * bytes for the wrapper at kv_wrap_req_extra(wr). op and in are the outer
 * request's. NULL on ENOMEM. The wrapper does not finish closing while
 * one is alive: free it with kv_wrap_req_free (or kv_wrap_finish). */
KV_EXTERN kv_wrap_req_t *kv_wrap_req_new(kv_store_t *s, kv_req_t *outer,
                                         size_t extra);
#define kv_wrap_req_extra(wr) ((void *)((wr) + 1))

/* Submit wr->op with wr->in to `target` with wr->inner (the inputs are
 * copied into it; nothing is validated again, the timestamp is the
 * outer's); cb(wr) runs when it completes (always on the loop). The inner request is cleaned first, so a
 * wrapper may submit again from cb (retry, fallback). Returns 0, or the
 * submit's error (cb will not run; wr->inner.status is set to it and its
 * detail is in kv_req_errmsg(&wr->inner)). */
KV_EXTERN int kv_wrap_submit(kv_wrap_req_t *wr, kv_store_t *target,
                             kv_wrap_cb cb);

/* Move every result (value, found, ttl, number, count, results, names,
 * cursor, status and the detail text) from src to dst, leaving src empty.
 * dst's own results must be empty (as they are before completion). */
KV_EXTERN void kv_wrap_move_results(kv_req_t *dst, kv_req_t *src);

/* Complete the outer request with `status` (a detail: kv_req_set_error on
 * wr->outer first) and forget it (wr->outer = NULL). No-op when already
 * completed. Does not free wr. */
KV_EXTERN void kv_wrap_complete(kv_wrap_req_t *wr, int status);

/* Move the inner results to the outer request, complete it with the inner
 * status, and free wr. The usual end of a callback. Safe when the outer
 * request was completed already (timeout): then it only frees. */
KV_EXTERN void kv_wrap_finish(kv_wrap_req_t *wr);

/* Release wr: cleans the inner request (which must not be in flight),
 * frees wr->mem, the keys copy and wr itself. */
KV_EXTERN void kv_wrap_req_free(kv_wrap_req_t *wr);

/* For a method whose kv_wrap_submit failed: copy the detail to the outer
 * request, free wr, return err (the method returns it: a refused submit). */
KV_EXTERN int kv_wrap_refuse(kv_wrap_req_t *wr, int err);

/* The wrapper named `name` (its methods->name, e.g. "statistics") in the
 * stack whose top is `top` (top itself included), or NULL. Walks down
 * kv_wrap_t::inner; stores that are not wrappers end the walk. */
KV_EXTERN kv_store_t *kv_wrap_find(kv_store_t *top, const char *name);
/* 1 if s is a wrapper built on kv_wrap_t (its close is kv_wrap_close). */
KV_EXTERN int kv_wrap_is_wrapper(const kv_store_t *s);

/* ---- Options as text ---------------------------------------------------
 *
 * The CLI and wrap:// URLs give a wrapper's options as "opt=val,opt=val"
 * (a bare "opt" means "opt="). Names and values are percent-decoded, so a
 * value may hold ',' as %2C. They are parsed into a kv_url_t holding only
 * params, so kv_url_param(), kv_url_param_int(), kv_url_param_double() and
 * kv_url_param_bool() from kvio/backend.h read them. */

/* Parse `text` (NULL or "" = no options). 0 or KV_EINVAL (empty name,
 * duplicate, bad escape; detail in errbuf) / KV_ENOMEM. */
KV_EXTERN int kv_wrap_opts_parse(const char *text, kv_url_t *out, char *errbuf,
                                 size_t errbuf_len);
/* KV_EINVAL naming the first option not in `known` (NULL-terminated) and
 * listing the known ones, for wrapper `wrapper`; else 0. */
KV_EXTERN int kv_wrap_opts_check(const kv_url_t *opts, const char *wrapper,
                                 const char *const *known, char *errbuf,
                                 size_t errbuf_len);
KV_EXTERN void kv_wrap_opts_free(kv_url_t *opts);

/* ---- Wrappers by name (CLI, wrap:// URLs) --------------------------------
 */

/* Build wrapper `name` around `inner` from its options text. Options that
 * name a store ("store=URL") open it on inner's loop. On success the
 * wrapper owns inner. Unknown wrapper or option → KV_EINVAL naming it and
 * listing the known ones (in errbuf); inner is then untouched. */
KV_EXTERN int kv_wrap_by_name(const char *name, const char *options,
                              kv_store_t *inner, kv_store_t **out, char *errbuf,
                              size_t errbuf_len);
/* The comma-separated names kv_wrap_by_name knows. Static storage. */
KV_EXTERN const char *kv_wrap_names(void);

/* Build a whole stack from a spec "NAME[:opts]|NAME[:opts]|..." — the first
 * sits closest to inner (as repeated --wrap options). On failure everything
 * built is closed except inner, which the caller still owns. */
KV_EXTERN int kv_wrap_stack(const char *spec, kv_store_t *inner,
                            kv_store_t **out, char *errbuf, size_t errbuf_len);

/* ===========================================================================
 * Part 2: the wrappers
 * ===========================================================================
 * CLI names in brackets; their option names are the field names. */

/* [fault-injection] For tests: fail calls and add latency. Call numbers
 * count every operation submitted to the wrapper, from 1. A failing call
 * completes (on the loop) with `error` and a detail saying it was injected;
 * it never reaches the inner store. Latency delays every call (failing or
 * not) by `latency` seconds before it is forwarded or failed. Keeps every
 * cap. */
typedef struct kv_wrap_fault_injection_opts_s {
  int borrow;
  int error;      /* the error to inject; 0 → KV_ECONN */
  double rate;    /* share of calls to fail at random, [0, 1] */
  uint64_t nth;   /* fail call number nth ... */
  uint64_t times; /* ... and the times-1 after it (0 → 1; UINT64_MAX:
                     every call from nth on) */
  double latency; /* seconds added to every call */
  unsigned seed;  /* random seed for `rate` (0 → a fixed default) */
} kv_wrap_fault_injection_opts_t;
KV_EXTERN int kv_wrap_fault_injection(kv_store_t *inner,
                                      const kv_wrap_fault_injection_opts_t *o,
                                      kv_store_t **out);
/* Calls seen and failures injected so far. */
KV_EXTERN void kv_wrap_fault_injection_counts(kv_store_t *s, uint64_t *calls,
                                              uint64_t *injected);

/* [fallback] Reads (get, ttl, get_many, ttl_many) go to `secondary` when the
 * inner (primary) store fails with a transient error (kv_err_category); with
 * `write`, so do put, put_many, delete and delete_many. Everything else goes
 * to the primary only. Caps: the primary's. */
typedef struct kv_wrap_fallback_opts_s {
  int borrow;
  kv_store_t *secondary; /* required */
  int borrow_secondary;
  int write;
} kv_wrap_fallback_opts_t;
KV_EXTERN int kv_wrap_fallback(kv_store_t *inner,
                               const kv_wrap_fallback_opts_t *o,
                               kv_store_t **out);

/* [limit-size] Values outside [min, max] bytes (put, put_many,
 * put_if_absent, cas) are refused at submit: KV_ETOOBIG above max,
 * KV_EINVAL below min, naming the size; a put_many with one bad value
 * writes nothing. With `silent`, they are dropped instead: a put succeeds
 * without writing, a put_many writes only the values in range,
 * put_if_absent reports "not stored" and cas a conflict. Reads are not
 * limited. Keeps every cap. */
typedef struct kv_wrap_limit_size_opts_s {
  int borrow;
  size_t min; /* 0: no minimum */
  size_t max; /* 0: no maximum */
  int silent;
} kv_wrap_limit_size_opts_t;
KV_EXTERN int kv_wrap_limit_size(kv_store_t *inner,
                                 const kv_wrap_limit_size_opts_t *o,
                                 kv_store_t **out);

/* [logging] One line per completed operation:
 *   text: "kvio: get coll=users key=alice status=0 found=1 len=5 us=12"
 *   json: {"op":"get","collection":"users","key":"alice","status":0,...}
 * Keys and collections are escaped (text) or JSON strings; values are
 * logged only with `values` (text: escaped, at most 256 bytes shown).
 * Lines go to `cb` when set, else to `stream` (NULL: stderr). Keeps every
 * cap. */
typedef void (*kv_wrap_log_cb)(const char *line, size_t len, void *data);
typedef struct kv_wrap_logging_opts_s {
  int borrow;
  int values; /* also log values (put input, get result) */
  int json;   /* JSON lines instead of text */
  kv_wrap_log_cb cb;
  void *cb_data;
  FILE *stream;
} kv_wrap_logging_opts_t;
KV_EXTERN int kv_wrap_logging(kv_store_t *inner,
                              const kv_wrap_logging_opts_t *o,
                              kv_store_t **out);

/* [cache] passthrough-cache: read-through two tiers, `cache` (fast) in front
 * of the inner store (the primary). get/ttl: a hit in the cache answers;
 * a miss reads the primary and fills the cache for at most max_ttl seconds
 * (and never longer than the entry's own TTL); concurrent misses on one
 * key make one primary read. Misses are cached for missing_ttl seconds when
 * it is > 0. An empty value is a value. Every write (put, delete, their bulk
 * forms, the atomic ops, destroy) goes to the primary and then invalidates
 * the cache; a read that overlaps a write on its key is not cached. The
 * cache tier holds entries in its own envelope: give the wrapper a cache
 * store of its own. Caps: the primary's; destroy needs it on the cache too. */
typedef struct kv_wrap_cache_opts_s {
  int borrow;
  kv_store_t *cache; /* required */
  int borrow_cache;
  double max_ttl;     /* 0 → 60 s */
  double missing_ttl; /* 0: misses are not cached */
} kv_wrap_cache_opts_t;
KV_EXTERN int kv_wrap_cache(kv_store_t *inner, const kv_wrap_cache_opts_t *o,
                            kv_store_t **out);
/* Hits (answered by the cache tier), misses (primary reads) and coalesced
 * misses (answered by another request's primary read). */
KV_EXTERN void kv_wrap_cache_counts(kv_store_t *s, uint64_t *hits,
                                    uint64_t *misses, uint64_t *coalesced);

/* [prefix-collections] Collection C is stored as prefix+C; enumeration lists
 * only the wrapper's collections, under the user's names. Names too long
 * for prefix+C are stored under a hash (with the original kept beside it),
 * so every name of up to KV_NAME_MAX bytes works and none collide.
 * [prefix-keys] The same for keys within each collection. Keep every cap
 * (destroy only removes the prefixed names). */
typedef struct kv_wrap_prefix_opts_s {
  int borrow;
  const char *prefix; /* required, non-empty; copied */
} kv_wrap_prefix_opts_t;
KV_EXTERN int kv_wrap_prefix_collections(kv_store_t *inner,
                                         const kv_wrap_prefix_opts_t *o,
                                         kv_store_t **out);
KV_EXTERN int kv_wrap_prefix_keys(kv_store_t *inner,
                                  const kv_wrap_prefix_opts_t *o,
                                  kv_store_t **out);

/* [read-only] Writes fail at submit with KV_EREADONLY, or with `silent`
 * succeed without writing (delete reports nothing removed). Drops the
 * destroy, cull and atomic segments (they write): KV_ENOTSUP. */
typedef struct kv_wrap_read_only_opts_s {
  int borrow;
  int silent;
} kv_wrap_read_only_opts_t;
KV_EXTERN int kv_wrap_read_only(kv_store_t *inner,
                                const kv_wrap_read_only_opts_t *o,
                                kv_store_t **out);

/* [retry] An operation that completes with a transient error
 * (kv_err_category == KV_CAT_TRANSIENT) is submitted again after a delay,
 * at most `max` more times. Delay before retry k (k = 0, 1, ...):
 * d = min(max_delay, initial * 2^k), jittered uniformly in [d/2, d].
 * Atomic ops (put_if_absent, cas, incr, take) are retried only with
 * `atomic` (a timed-out incr may have been applied). Keeps every cap. */
typedef void (*kv_wrap_retry_cb)(int attempt, double delay, int err,
                                 void *data);
typedef struct kv_wrap_retry_opts_s {
  int borrow;
  int max;          /* retries after the first try; 0 → 3 */
  double initial;   /* first delay in seconds; 0 → 0.05 */
  double max_delay; /* cap of one delay; 0 → 2 */
  int atomic;
  unsigned seed;             /* jitter seed (0 → from the clock) */
  kv_wrap_retry_cb on_retry; /* told each retry: attempt (1-based), delay */
  void *on_retry_data;
} kv_wrap_retry_opts_t;
KV_EXTERN int kv_wrap_retry(kv_store_t *inner, const kv_wrap_retry_opts_t *o,
                            kv_store_t **out);

/* [single-collection] Every collection is folded into one collection
 * `collection` of the inner store, with keys made collision-free
 * ("<len(C)>:<C><K>", hashed when too long, original kept beside it).
 * Enumeration shows the user's collections and keys. Keeps every cap. */
typedef struct kv_wrap_single_collection_opts_s {
  int borrow;
  const char *collection; /* required; copied */
} kv_wrap_single_collection_opts_t;
KV_EXTERN int
kv_wrap_single_collection(kv_store_t *inner,
                          const kv_wrap_single_collection_opts_t *o,
                          kv_store_t **out);

/* [ttl-clamp] Write TTLs are clamped into [min, max]; a write without TTL
 * gets `missing` (when > 0; else it stays without TTL). max 0: no upper
 * bound. Keeps every cap. */
typedef struct kv_wrap_ttl_clamp_opts_s {
  int borrow;
  double min;
  double max;
  double missing;
} kv_wrap_ttl_clamp_opts_t;
KV_EXTERN int kv_wrap_ttl_clamp(kv_store_t *inner,
                                const kv_wrap_ttl_clamp_opts_t *o,
                                kv_store_t **out);

/* [statistics] Per collection and per op: calls, hits and misses (get, ttl,
 * take, and per slot for get_many/ttl_many), errors, and a latency
 * histogram. Keeps every cap. */
#define KV_STATS_NBUCKETS 14
/* Upper bounds (seconds) of the histogram buckets; the last is +Inf. */
KV_EXTERN extern const double kv_stats_bucket_bounds[KV_STATS_NBUCKETS];
typedef struct kv_stats_s {
  uint64_t calls;
  uint64_t hits;
  uint64_t misses;
  uint64_t errors;
  double latency_sum;                          /* seconds */
  uint64_t latency_buckets[KV_STATS_NBUCKETS]; /* not cumulative */
} kv_stats_t;
typedef struct kv_wrap_statistics_opts_s {
  int borrow;
} kv_wrap_statistics_opts_t;
KV_EXTERN int kv_wrap_statistics(kv_store_t *inner,
                                 const kv_wrap_statistics_opts_t *o,
                                 kv_store_t **out);
/* The counters of `op` for `collection` (NULL: summed over collections);
 * op KV_OP_NONE sums over ops. s may be any store of a stack holding a
 * statistics wrapper. Returns 0, or KV_EINVAL when there is none. */
KV_EXTERN int kv_stats_get(kv_store_t *s, const char *collection, kv_op_t op,
                           kv_stats_t *out);
/* Call cb for each (collection, op) with calls > 0, collections in byte
 * order; stops at the first non-zero return of cb and returns it. */
typedef int (*kv_stats_visit_cb)(const char *collection, kv_op_t op,
                                 const kv_stats_t *st, void *data);
KV_EXTERN int kv_stats_foreach(kv_store_t *s, kv_stats_visit_cb cb, void *data);
/* The counters in Prometheus text format (kvio_ops_total,
 * kvio_hits_total, kvio_misses_total, kvio_errors_total,
 * kvio_op_duration_seconds histogram; labels collection and op). Returns a
 * kv_malloc'ed NUL-terminated text (kv_free it), NULL when s has no
 * statistics wrapper or on ENOMEM. */
KV_EXTERN char *kv_stats_prometheus(kv_store_t *s, size_t *len);
KV_EXTERN void kv_stats_reset(kv_store_t *s);
/* kv_op_name() is in kvio.h. */

/* [timeout] Each operation completes with KV_ETIMEDOUT after `seconds`
 * unless the inner store answered first. The late answer is absorbed (its
 * results are released); the inner request lives until then. Keeps every
 * cap. */
typedef struct kv_wrap_timeout_opts_s {
  int borrow;
  double seconds; /* required, > 0 */
} kv_wrap_timeout_opts_t;
KV_EXTERN int kv_wrap_timeout(kv_store_t *inner,
                              const kv_wrap_timeout_opts_t *o,
                              kv_store_t **out);

/* [default-value] A get (or a get_many slot) of a missing key reads as
 * `value` (copied) with remaining TTL `ttl` (ttl and ttl_many report it).
 * take and the atomic ops are unaffected. Keeps every cap. */
typedef struct kv_wrap_default_value_opts_s {
  int borrow;
  const void *value;
  size_t len;
  double ttl;
} kv_wrap_default_value_opts_t;
KV_EXTERN int kv_wrap_default_value(kv_store_t *inner,
                                    const kv_wrap_default_value_opts_t *o,
                                    kv_store_t **out);

/* [raise-on-missing] "Missing is an error": get, ttl and take of a missing
 * key, and get_many / ttl_many with a missing slot, complete with
 * KV_ENOTFOUND (detail names the key). Keeps every cap. */
typedef struct kv_wrap_raise_on_missing_opts_s {
  int borrow;
} kv_wrap_raise_on_missing_opts_t;
KV_EXTERN int kv_wrap_raise_on_missing(kv_store_t *inner,
                                       const kv_wrap_raise_on_missing_opts_t *o,
                                       kv_store_t **out);

/* [routing] The store for each operation is chosen by collection: route()
 * returns one of `stores` or NULL for the inner (default) store. Every
 * store in `stores` is owned (closed with the wrapper) unless `borrow_stores`.
 * collections() lists, from each store, the collections routed to it;
 * destroy and cull go to every store. Caps: those all stores share.
 * [collection-routing] The same with a fixed map: collections[i] goes to
 * stores[i]; anything else to the inner store. CLI:
 * collection-routing:users=memory://,sessions=disk:///x (option names are
 * collections, values store URLs). */
typedef kv_store_t *(*kv_wrap_route_fn)(const char *collection, void *data);
typedef struct kv_wrap_routing_opts_s {
  int borrow;
  kv_store_t *const *stores; /* copied */
  size_t nstores;
  int borrow_stores;
  kv_wrap_route_fn route; /* routing */
  void *route_data;
  const char *const *collections; /* collection-routing: nstores names */
} kv_wrap_routing_opts_t;
KV_EXTERN int kv_wrap_routing(kv_store_t *inner,
                              const kv_wrap_routing_opts_t *o,
                              kv_store_t **out);
KV_EXTERN int kv_wrap_collection_routing(kv_store_t *inner,
                                         const kv_wrap_routing_opts_t *o,
                                         kv_store_t **out);

#ifdef __cplusplus
}
#endif
#endif /* KVIO_WRAP_H */
