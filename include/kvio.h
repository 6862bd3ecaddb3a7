/* kvio — an asynchronous, pluggable key-value library for C on libuv.
 *
 * This is the only header a user includes. The lifetime rules (the async
 * contract) are listed in docs/design.md; the short form:
 *
 *  1. A submit function (kv_get, kv_put, ...) that returns < 0 never calls
 *     its callback. One that returns 0 calls it exactly once, always from the
 *     loop, never from inside the submit call.
 *  2. Requests (kv_req_t) are allocated by the caller and must stay valid
 *     until their callback has run. Results live in the request until
 *     kv_req_cleanup(); call kv_req_cleanup() after every submit, successful
 *     or not, before reusing or freeing the request.
 *  3. Inputs (collection, key, values) are copied before the submit returns.
 *  4. kv_store_close() is asynchronous: pending requests complete (with
 *     KV_ECANCELED if the store cannot finish them), then the close callback
 *     runs, then the store's memory is released. Closing from a callback is
 *     safe.
 *  5. Nothing here is thread-safe unless a function says so; a store lives on
 *     the loop it was opened on.
 */
#ifndef KVIO_H
#define KVIO_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kvio/errno.h"
#include "kvio/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define KV_EXTERN __attribute__((visibility("default")))
#else
#define KV_EXTERN
#endif

/* ---- Limits and constants --------------------------------------------- */

#define KV_TTL_NONE 0.0  /* "never expires" (put) / "no expiry" (ttl) */
#define KV_TTL_MAX 1e10  /* largest accepted TTL, in seconds */
#define KV_NAME_MAX 4096 /* longest key or collection, in bytes */
#define KV_DEFAULT_COLLECTION "default_collection"

/* Capability bits (kv_store_caps). A submit to a segment the store does not
 * announce fails at once with KV_ENOTSUP. */
#define KV_CAP_ENUMERATE (1u << 0)  /* kv_keys, kv_collections */
#define KV_CAP_DESTROY (1u << 1)    /* kv_destroy, kv_destroy_collection */
#define KV_CAP_CULL (1u << 2)       /* kv_cull */
#define KV_CAP_ATOMIC (1u << 3)     /* put_if_absent, cas, incr, take */
#define KV_CAP_PERSISTENT (1u << 4) /* data survives a close and reopen */
#define KV_CAP_SHARED (1u << 5)     /* several processes may share it */

/* ---- Types -------------------------------------------------------------- */

typedef struct kv_store_s kv_store_t;
typedef struct kv_req_s kv_req_t;

/* A byte string. In results, `base` is owned by the request (see
 * kv_req_cleanup) and is always followed by a NUL byte that is not counted in
 * `len`, so text values can be used as C strings. */
typedef struct kv_buf_s {
  char *base;
  size_t len;
} kv_buf_t;

/* The operations, once: XX(NAME, name, member, cap, params, args)
 *   NAME    the enum suffix (KV_OP_GET)
 *   name    the submit function's suffix (kv_get, kv_sync_get) and the op's
 *           name (kv_op_name)
 *   member  the kv_store_methods_t member that implements it
 *   cap     the capability bit a store must announce (0: every store)
 *   params  the submit function's parameters after (store, req), each
 *           preceded by a comma
 *   args    the same parameters as arguments
 * The enum, kv_op_name, the capability check, the vtable dispatch, the
 * blocking facade and the wrapper infrastructure are generated from it:
 * adding an operation is one line here plus its implementations. */
#define KV_OP_MAP(XX)                                                          \
  XX(GET, get, get, 0, (, const char *collection, const char *key),            \
     (, collection, key))                                                      \
  XX(TTL, ttl, ttl, 0, (, const char *collection, const char *key),            \
     (, collection, key))                                                      \
  XX(PUT, put, put, 0,                                                         \
     (, const char *collection, const char *key, const void *value,           \
      size_t len, double ttl),                                                 \
     (, collection, key, value, len, ttl))                                     \
  XX(DELETE, delete, del, 0, (, const char *collection, const char *key),      \
     (, collection, key))                                                      \
  XX(GET_MANY, get_many, get_many, 0,                                          \
     (, const char *collection, const char *const *keys, size_t n),            \
     (, collection, keys, n))                                                  \
  XX(TTL_MANY, ttl_many, ttl_many, 0,                                          \
     (, const char *collection, const char *const *keys, size_t n),            \
     (, collection, keys, n))                                                  \
  XX(PUT_MANY, put_many, put_many, 0,                                          \
     (, const char *collection, const char *const *keys,                       \
      const kv_buf_t *values, size_t n, double ttl),                           \
     (, collection, keys, values, n, ttl))                                     \
  XX(DELETE_MANY, delete_many, delete_many, 0,                                 \
     (, const char *collection, const char *const *keys, size_t n),            \
     (, collection, keys, n))                                                  \
  XX(KEYS, keys, keys, KV_CAP_ENUMERATE,                                       \
     (, const char *collection, const char *cursor, size_t limit),             \
     (, collection, cursor, limit))                                            \
  XX(COLLECTIONS, collections, collections, KV_CAP_ENUMERATE,                  \
     (, const char *cursor, size_t limit), (, cursor, limit))                  \
  XX(DESTROY, destroy, destroy, KV_CAP_DESTROY, (), ())                        \
  XX(DESTROY_COLLECTION, destroy_collection, destroy_collection,               \
     KV_CAP_DESTROY, (, const char *collection), (, collection))               \
  XX(CULL, cull, cull, KV_CAP_CULL, (), ())                                    \
  XX(PUT_IF_ABSENT, put_if_absent, put_if_absent, KV_CAP_ATOMIC,               \
     (, const char *collection, const char *key, const void *value,           \
      size_t len, double ttl),                                                 \
     (, collection, key, value, len, ttl))                                     \
  XX(CAS, cas, cas, KV_CAP_ATOMIC,                                             \
     (, const char *collection, const char *key, const void *expected,        \
      size_t expected_len, const void *value, size_t len, double ttl),         \
     (, collection, key, expected, expected_len, value, len, ttl))             \
  XX(INCR, incr, incr, KV_CAP_ATOMIC,                                          \
     (, const char *collection, const char *key, int64_t delta, double ttl),   \
     (, collection, key, delta, ttl))                                          \
  XX(TAKE, take, take, KV_CAP_ATOMIC, (, const char *collection, const char *key), \
     (, collection, key))

/* Removes the parentheses of a KV_OP_MAP params or args column. */
#define KV_OP_UNPAREN(...) __VA_ARGS__

typedef enum {
  KV_OP_NONE = 0,
#define KV__OP_ENUM(NAME, name, member, cap, params, args) KV_OP_##NAME,
  KV_OP_MAP(KV__OP_ENUM)
#undef KV__OP_ENUM
  KV_OP_COUNT_ /* not an op: the number of ops */
} kv_op_t;

/* The op's name ("get", "put_many", ...; "none" for KV_OP_NONE, "unknown"
 * out of range). */
KV_EXTERN const char *kv_op_name(kv_op_t op);

/* One slot of a get_many / ttl_many result. */
typedef struct kv_result_s {
  int found;      /* 1 if the key holds a live value */
  kv_buf_t value; /* the value when found (owned by the request) */
  double ttl;     /* ttl_many: remaining seconds, or KV_TTL_NONE */
} kv_result_t;

typedef void (*kv_cb)(kv_req_t *req);
typedef void (*kv_close_cb)(kv_store_t *store);

/* A request. Allocate it yourself (stack, heap, embedded in your struct);
 * the library never frees it. Fields marked read-only are set by the library
 * before the callback runs; fields marked private must not be touched. */
struct kv_req_s {
  /* public */
  void *data; /* for the user; never touched by the library */

  /* read-only: the request */
  kv_store_t *store;
  kv_op_t op;

  /* read-only: the result, valid from the callback until kv_req_cleanup() */
  int status;           /* 0 or a negative KV_E* / UV_E* code */
  int found;            /* get/ttl/take: value present; delete: removed;
                           put_if_absent: stored; cas: swapped */
  kv_buf_t value;       /* get, ttl, take: the value */
  double ttl;           /* ttl: remaining seconds, or KV_TTL_NONE */
  int64_t number;       /* incr: the new value */
  size_t count;         /* delete_many: how many were removed */
  kv_result_t *results; /* get_many, ttl_many: one slot per input key */
  size_t nresults;
  kv_buf_t *names; /* keys, collections: the names of this page */
  size_t nnames;
  char *cursor; /* keys, collections: the cursor of the next page,
                   or NULL when the listing is complete */

  /* private: the inputs, copied at submit; stores read them through the
   * rules in kvio/backend.h */
  struct kv_req_in_s {
    const char *collection; /* never NULL: the default is resolved */
    size_t collection_len;
    const char *key; /* NUL-terminated */
    size_t key_len;
    kv_buf_t value;         /* put, put_if_absent, cas (new value) */
    kv_buf_t expected;      /* cas: expected value */
    int expected_absent;    /* cas: expect "absent" instead of a value */
    double ttl;             /* requested TTL in seconds (0 = none) */
    int64_t expires_at_ms;  /* absolute expiry, Unix ms; 0 = none */
    int64_t now_ms;         /* the request's timestamp, Unix ms */
    int64_t delta;          /* incr */
    const kv_buf_t *keys;   /* *_many: n keys (NUL-terminated) */
    const kv_buf_t *values; /* put_many: n values */
    size_t n;
    const char *cursor; /* keys, collections: NULL for the first page */
    size_t limit;       /* keys, collections: page size, 0 = default */
  } in;

  /* private: bookkeeping of the core */
  struct {
    kv_cb cb;
    kv_req_t *next; /* pending list / completion queue */
    kv_req_t *prev;
    void *block;  /* the copied inputs (inline or allocated) */
    char *errmsg; /* detail text */
    unsigned state;
    void *store_data[4];     /* scratch space for the store executing it */
    unsigned nhooks;         /* completion hooks pushed (kvio/wrap.h) */
    uint64_t inline_buf[32]; /* small inputs are copied here: no malloc */
    /* Completion hooks of the wrapper layers the request passes through
     * (innermost last); written before they are read. */
    struct kv_hook_s {
      int (*fn)(kv_store_t *layer, kv_req_t *req, struct kv_hook_s *h);
      kv_store_t *layer;
      uint64_t u;
      void *p;
    } hooks[8];
  } priv;
};

/* ---- Errors ------------------------------------------------------------- */

/* The name of an error code ("KV_EINVAL", "ECONNREFUSED", ...). Static
 * storage; never NULL. */
KV_EXTERN const char *kv_err_name(int err);
/* A short message for an error code. Static storage; never NULL. */
KV_EXTERN const char *kv_strerror(int err);
/* The category of an error code, for retry decisions. */
KV_EXTERN kv_err_category_t kv_err_category(int err);
/* The detail text of a failed request (the offending value, the backend's
 * own message), or kv_strerror(req->status) when there is none. Valid until
 * kv_req_cleanup(). */
KV_EXTERN const char *kv_req_errmsg(const kv_req_t *req);

/* ---- Allocator ---------------------------------------------------------- */

typedef void *(*kv_malloc_func)(size_t size);
typedef void *(*kv_realloc_func)(void *ptr, size_t size);
typedef void *(*kv_calloc_func)(size_t count, size_t size);
typedef void (*kv_free_func)(void *ptr);

/* Replace the allocator used for everything kvio allocates. Call it before
 * any other kvio function. Returns 0, or KV_EINVAL if a function is NULL. */
KV_EXTERN int kv_replace_allocator(kv_malloc_func m, kv_realloc_func r,
                                   kv_calloc_func c, kv_free_func f);
KV_EXTERN void *kv_malloc(size_t size);
KV_EXTERN void kv_free(void *ptr); /* accepts NULL */

/* ---- Opening and closing -------------------------------------------------
 *
 * URLs: memory://[?max_entries=N], null://, disk://PATH[?sync=full|meta|none]
 * and every scheme registered with kv_register (see kvio/backend.h). Every
 * store also accepts ?default_collection=NAME. Unknown options are KV_EINVAL.
 */

/* Open the store named by `url` on `loop`. Synchronous: no network is
 * contacted (network stores connect on first use). On success *out is a new
 * store, to be closed with kv_store_close(). On failure *out is NULL and the
 * error is returned; kv_open_ex() also writes the detail text. A URL that
 * opens other stores (wrap://…@URL) may leave their asynchronous close on the
 * loop after a failure: run the loop before uv_loop_close(). */
KV_EXTERN int kv_open(uv_loop_t *loop, const char *url, kv_store_t **out);
KV_EXTERN int kv_open_ex(uv_loop_t *loop, const char *url, kv_store_t **out,
                         char *errbuf, size_t errbuf_len);

/* Close a store. Pending requests complete first (KV_ECANCELED where the
 * store cannot finish them), then close_cb (may be NULL) runs, then the
 * store's memory is released. Returns KV_ECLOSED if already closing. */
KV_EXTERN int kv_store_close(kv_store_t *store, kv_close_cb close_cb);

/* The store's capability bits (KV_CAP_*). */
KV_EXTERN unsigned kv_store_caps(const kv_store_t *store);
/* The store's implementation name ("memory", "disk", ...). */
KV_EXTERN const char *kv_store_name(const kv_store_t *store);
/* The loop the store was opened on. */
KV_EXTERN uv_loop_t *kv_store_loop(const kv_store_t *store);
/* ctl opcodes: each store and wrapper owns a range of 256, so an opcode
 * names its owner and a wrapper may forward every ctl unchanged. */
#define KV_CTL_RANGE_CORE 0x0000 /* reserved for kvio's core */
#define KV_CTL_RANGE_MEMORY 0x0100
#define KV_CTL_RANGE_DISK 0x0200
#define KV_CTL_RANGE_FILE 0x0300
#define KV_CTL_RANGE_SQLITE 0x0400
#define KV_CTL_RANGE_ROCKSDB 0x0500
#define KV_CTL_RANGE_REDIS 0x0600
#define KV_CTL_RANGE_MEMCACHED 0x0700
#define KV_CTL_RANGE_POSTGRESQL 0x0800
#define KV_CTL_RANGE_REDIS_CLUSTER 0x0900
#define KV_CTL_RANGE_S3 0x0a00
#define KV_CTL_RANGE_DYNAMODB 0x0b00
/* 0x0c00-0x3fff: further stores of kvio */
#define KV_CTL_RANGE_WRAPPERS 0x4000 /* 0x4000-0x7fff: kvio's wrappers */
#define KV_CTL_RANGE_USER 0x8000     /* 0x8000-0xffff: stores outside kvio */

/* A store-specific control (see the store's header, e.g. kvio/disk.h):
 * `arg` points to the struct the opcode takes and `size` is its size
 * (sizeof *arg). Returns the store's answer, KV_ENOTSUP for an opcode it
 * does not know (wrappers pass every ctl down to the store they wrap) and
 * KV_EINVAL when `size` is not the size that opcode takes. */
KV_EXTERN int kv_store_ctl(kv_store_t *store, int op, void *arg, size_t size);
/* The comma-separated list of known URL schemes: kvio's parts (loaded or
 * not: see docs/design.md, "Parts and modules"), then those registered with
 * kv_register(). Static storage until the next kv_register(). */
KV_EXTERN const char *kv_schemes(void);

/* ---- Operations ----------------------------------------------------------
 *
 * `collection` may be NULL or "" for the store's default collection. Keys and
 * collections are UTF-8 without NUL, 1..KV_NAME_MAX bytes. TTLs are seconds,
 * 0 (KV_TTL_NONE) for no expiry; negative, NaN, infinite or > KV_TTL_MAX is
 * KV_EINVAL. A positive TTL below 1 ms counts as 1 ms.
 *
 * Every function returns 0 (the callback will run exactly once) or a negative
 * error (KV_EINVAL, KV_ENOTSUP, KV_ECLOSED, KV_ENOMEM; the callback will never
 * run; kv_req_errmsg() tells why). Missing keys are results, not errors.
 */

KV_EXTERN int kv_get(kv_store_t *s, kv_req_t *req, const char *collection,
                     const char *key, kv_cb cb);
KV_EXTERN int kv_ttl(kv_store_t *s, kv_req_t *req, const char *collection,
                     const char *key, kv_cb cb);
KV_EXTERN int kv_put(kv_store_t *s, kv_req_t *req, const char *collection,
                     const char *key, const void *value, size_t len, double ttl,
                     kv_cb cb);
KV_EXTERN int kv_delete(kv_store_t *s, kv_req_t *req, const char *collection,
                        const char *key, kv_cb cb);
/* Store the current Unix time under key, as decimal whole seconds (the
 * request's own timestamp): aiokv's set(key) without a value, "I saw or did
 * this at time T". On an aiokv file (file://) it is written as a JSON
 * number. Otherwise as kv_put. */
KV_EXTERN int kv_touch(kv_store_t *s, kv_req_t *req, const char *collection,
                       const char *key, double ttl, kv_cb cb);

/* Bulk forms. Results in input order, duplicates answered. put_many writes
 * every entry with one TTL and one timestamp; any invalid key rejects the
 * whole batch before anything is written. n may be 0. */
KV_EXTERN int kv_get_many(kv_store_t *s, kv_req_t *req, const char *collection,
                          const char *const *keys, size_t n, kv_cb cb);
KV_EXTERN int kv_ttl_many(kv_store_t *s, kv_req_t *req, const char *collection,
                          const char *const *keys, size_t n, kv_cb cb);
KV_EXTERN int kv_put_many(kv_store_t *s, kv_req_t *req, const char *collection,
                          const char *const *keys, const kv_buf_t *values,
                          size_t n, double ttl, kv_cb cb);
KV_EXTERN int kv_delete_many(kv_store_t *s, kv_req_t *req,
                             const char *collection, const char *const *keys,
                             size_t n, kv_cb cb);

/* Enumeration (KV_CAP_ENUMERATE). Pass cursor NULL for the first page and
 * req->cursor of the previous page for the next; req->cursor is NULL after
 * the last page. limit 0 means the store's default page size (1000). Expired
 * entries are never listed. Entries written or removed while a listing is in
 * progress may or may not be listed; every other entry is listed at least
 * once, and exactly once unless the store reorganised itself meanwhile (a
 * memory:// table that grew, a Redis rehash: see each store's doc). */
KV_EXTERN int kv_keys(kv_store_t *s, kv_req_t *req, const char *collection,
                      const char *cursor, size_t limit, kv_cb cb);
KV_EXTERN int kv_collections(kv_store_t *s, kv_req_t *req, const char *cursor,
                             size_t limit, kv_cb cb);

/* Destroy (KV_CAP_DESTROY): remove everything this store owns / one
 * collection. The store stays usable. */
KV_EXTERN int kv_destroy(kv_store_t *s, kv_req_t *req, kv_cb cb);
KV_EXTERN int kv_destroy_collection(kv_store_t *s, kv_req_t *req,
                                    const char *collection, kv_cb cb);

/* Cull (KV_CAP_CULL): remove expired entries now; req->count says how many
 * where the store knows. */
KV_EXTERN int kv_cull(kv_store_t *s, kv_req_t *req, kv_cb cb);

/* Atomic segment (KV_CAP_ATOMIC). */
/* Store only if no live value exists; req->found = 1 if stored. */
KV_EXTERN int kv_put_if_absent(kv_store_t *s, kv_req_t *req,
                               const char *collection, const char *key,
                               const void *value, size_t len, double ttl,
                               kv_cb cb);
/* Replace the value if it equals `expected` (or, with expected == NULL, if
 * the key is absent). status 0 and found = 1 when swapped, KV_ECONFLICT
 * otherwise. */
KV_EXTERN int kv_cas(kv_store_t *s, kv_req_t *req, const char *collection,
                     const char *key, const void *expected, size_t expected_len,
                     const void *value, size_t len, double ttl, kv_cb cb);
/* Add delta to a decimal integer value (an absent key counts as 0 and is
 * created with `ttl`; an existing entry keeps its TTL). req->number is the
 * new value. A value that is not a decimal int64, or an overflow, is
 * KV_EINVAL. */
KV_EXTERN int kv_incr(kv_store_t *s, kv_req_t *req, const char *collection,
                      const char *key, int64_t delta, double ttl, kv_cb cb);
/* Get and delete in one step; req->found and req->value as for kv_get. */
KV_EXTERN int kv_take(kv_store_t *s, kv_req_t *req, const char *collection,
                      const char *key, kv_cb cb);

/* Release everything the request holds (results, detail text). Safe on a
 * zeroed request and after a failed submit; the request may then be reused.
 * Must not be called while the request is pending. */
KV_EXTERN void kv_req_cleanup(kv_req_t *req);

/* Take ownership of req->value: returns its buffer (free with kv_free) and
 * clears req->value. Lets a caller keep a result without a copy. */
KV_EXTERN char *kv_req_take_value(kv_req_t *req, size_t *len);

/* ---- Blocking facade -------------------------------------------------------
 *
 * For programs without an event loop. A kv_sync_t owns a private loop and a
 * store on it; each kv_sync_* call submits the async operation and runs the
 * private loop until it completes, then returns req->status. Results are in
 * `req` exactly as for the async call; kv_req_cleanup() it afterwards.
 */

typedef struct kv_sync_s kv_sync_t;

KV_EXTERN int kv_sync_open(const char *url, kv_sync_t **out, char *errbuf,
                           size_t errbuf_len);
/* A facade around a store the caller builds (e.g. wrappers around an opened
 * store): kv_sync_init() creates the private loop (kv_sync_loop) without a
 * store; open or build the store on that loop, then hand it over with
 * kv_sync_set_store() — the facade owns it from then on and closes it in
 * kv_sync_close(). Returns 0 or KV_ENOMEM / a libuv error. */
KV_EXTERN int kv_sync_init(kv_sync_t **out);
KV_EXTERN void kv_sync_set_store(kv_sync_t *sync, kv_store_t *store);
/* Close the store, run the loop to the end, free everything. NULL is ok. */
KV_EXTERN int kv_sync_close(kv_sync_t *sync);
/* The underlying store (on the private loop) and loop. */
KV_EXTERN kv_store_t *kv_sync_store(kv_sync_t *sync);
KV_EXTERN uv_loop_t *kv_sync_loop(kv_sync_t *sync);
/* Run the private loop until `req` (submitted on it) has completed; returns
 * req->status. Use it to drive any async call on kv_sync_store(). */
KV_EXTERN int kv_sync_wait(kv_sync_t *sync, kv_req_t *req);

/* One blocking call per operation, with the async submit's parameters:
 * kv_sync_get(s, req, collection, key), kv_sync_put(s, req, collection, key,
 * value, len, ttl), ... (generated from KV_OP_MAP). Each returns
 * req->status; results are in req until kv_req_cleanup(). */
#define KV__SYNC_DECL(NAME, name, member, cap, params, args) \
  KV_EXTERN int kv_sync_##name(kv_sync_t *s, kv_req_t *req KV_OP_UNPAREN params);
KV_OP_MAP(KV__SYNC_DECL)
#undef KV__SYNC_DECL
/* touch: store the request's Unix time in seconds (decimal text) under key
 * (kv_touch). */
KV_EXTERN int kv_sync_touch(kv_sync_t *s, kv_req_t *req, const char *collection,
                            const char *key, double ttl);

/* ---- Version ----------------------------------------------------------------
 */

KV_EXTERN unsigned kv_version(void);           /* KV_VERSION_HEX */
KV_EXTERN const char *kv_version_string(void); /* "0.1.0" */

#ifdef __cplusplus
}
#endif
#endif /* KVIO_H */
