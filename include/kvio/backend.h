/* kvio/backend.h — everything a store (backend or wrapper) implements.
 *
 * A store is a struct that begins with `kv_store_t base;` and a table of
 * methods (kv_store_methods_t). The core allocates the struct
 * (methods->store_size bytes, zeroed, through kv_malloc), validates every
 * request, copies its inputs into req->in, and then calls the method for the
 * op. The core — not the store — enforces the async contract:
 *
 *  - A method returns 0 when it accepted the request. It must then call
 *    kv_req_complete(req, status) exactly once, from any point on the loop
 *    thread (including inside the method itself: the core defers the user's
 *    callback to the loop). After kv_req_complete the store must not touch
 *    the request again.
 *  - A method returns < 0 when it refuses the request; it must not call
 *    kv_req_complete then. It may set a detail with kv_req_set_error().
 *  - close() begins closing. The store finishes or completes (with
 *    KV_ECANCELED) every request it holds, releases its resources and then
 *    calls kv_store_closed(). The core runs the user's close callback after
 *    every completion has been delivered, then frees the struct.
 *
 * Rules for the table (as sqlite3_io_methods): members are only appended,
 * never reordered; `version` says how many a store fills in. Required: open,
 * close, get, ttl, put, delete. Optional members may be NULL: the bulk forms
 * then fall back to the single ops (the core loops), the segments then fail
 * with KV_ENOTSUP. A segment is only called when the store's caps announce
 * it.
 *
 * A method must not assume that req->store is the store running it: a
 * wrapper that forwards a request may hand its own request to the store it
 * wraps.
 *
 * Request inputs, as a store sees them (req->in):
 *   collection / collection_len  always set (the default is resolved)
 *   key / key_len                get, ttl, put, delete, atomic ops
 *   value                        put, put_if_absent, cas (new value)
 *   expected / expected_absent   cas
 *   ttl, expires_at_ms, now_ms   writes: ttl in s, absolute expiry (Unix ms,
 *                                0 = none) computed once per request
 *   delta                        incr
 *   keys / values / n            *_many
 *   cursor / limit               keys, collections
 * All of it stays valid until the request is completed.
 *
 * Results: set them with the kv_req_set_* helpers below (they allocate with
 * kv_malloc and hand ownership to the request), or fill req->found, ttl,
 * number, count directly.
 */
#ifndef KVIO_BACKEND_H
#define KVIO_BACKEND_H

#include <stdarg.h>
#include <stddef.h>

#include "../kvio.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KV_STORE_METHODS_VERSION 2

/* A parsed store URL: scheme://[user[:password]@]host[:port][/path][?query]
 * For path stores (disk://PATH) `target` holds everything between "://" and
 * "?" (percent-decoded): "disk://./data" → "./data", "disk:///tmp/x" →
 * "/tmp/x". Network stores use user/password/host/port/path. */
typedef struct kv_url_param_s {
  char *name;  /* percent-decoded */
  char *value; /* percent-decoded; "" when given without '=' */
} kv_url_param_t;

typedef struct kv_url_s {
  const char *raw; /* the URL as given */
  char *scheme;    /* lower case */
  char *target;    /* between "://" and "?", decoded */
  char *user;      /* NULL when absent */
  char *password;  /* NULL when absent */
  char *host;      /* NULL when absent; [v6] brackets removed */
  int port;        /* -1 when absent */
  char *path;      /* after the authority, starting with '/'; or NULL */
  kv_url_param_t *params;
  size_t nparams;
} kv_url_t;

/* The value of query option `name`, or NULL when absent. */
KV_EXTERN const char *kv_url_param(const kv_url_t *url, const char *name);
/* Parse option `name` as an integer in [min, max] (absent → *out = dflt).
 * Returns 0 or KV_EINVAL with a detail in errbuf. */
KV_EXTERN int kv_url_param_int(const kv_url_t *url, const char *name,
                               int64_t min, int64_t max, int64_t dflt,
                               int64_t *out, char *errbuf, size_t errbuf_len);
/* Parse option `name` as a number of seconds (>= 0, finite). */
KV_EXTERN int kv_url_param_double(const kv_url_t *url, const char *name,
                                  double min, double max, double dflt,
                                  double *out, char *errbuf, size_t errbuf_len);
/* Parse option `name` as a boolean: 1/0, true/false, yes/no, on/off. */
KV_EXTERN int kv_url_param_bool(const kv_url_t *url, const char *name, int dflt,
                                int *out, char *errbuf, size_t errbuf_len);

typedef struct kv_store_methods_s kv_store_methods_t;

typedef int (*kv_op_fn)(kv_store_t *s, kv_req_t *req);

struct kv_store_methods_s {
  int version;                /* KV_STORE_METHODS_VERSION when written */
  const char *name;           /* "memory", "disk", ... */
  size_t store_size;          /* sizeof the store's struct (>= sizeof base) */
  unsigned caps;              /* KV_CAP_* announced by default; open() may
                                 change s->caps */
  const char *const *options; /* NULL-terminated list of accepted query
                                 options; the core rejects any other */

  /* Open: parse url, acquire resources. On failure, release everything,
   * write a detail to errbuf and return < 0; close() is then not called.
   * May be NULL for stores made by a constructor (wrappers). */
  int (*open)(kv_store_t *s, const kv_url_t *url, char *errbuf,
              size_t errbuf_len);
  void (*close)(kv_store_t *s);

  kv_op_fn get;
  kv_op_fn ttl;
  kv_op_fn put;
  kv_op_fn del;
  kv_op_fn get_many;
  kv_op_fn ttl_many;
  kv_op_fn put_many;
  kv_op_fn delete_many;
  kv_op_fn keys;
  kv_op_fn collections;
  kv_op_fn destroy;
  kv_op_fn destroy_collection;
  kv_op_fn cull;
  kv_op_fn put_if_absent;
  kv_op_fn cas;
  kv_op_fn incr;
  kv_op_fn take;
  /* Version 1's control method, without the caller's struct size: the
   * core calls it only for a version-1 table. Newer stores set ctl_ex. */
  int (*ctl)(kv_store_t *s, int op, void *arg);
  /* members above are version 1; append only */

  /* Version 2. Backend-specific controls (xFileControl): `op` is one of
   * the store's own opcodes (KV_CTL_* ranges below), `arg` points to the
   * caller's struct of `size` bytes. A store answers KV_ENOTSUP for an
   * opcode it does not know and KV_EINVAL when size is not the size of the
   * struct that opcode takes, so no struct is ever misread. */
  int (*ctl_ex)(kv_store_t *s, int op, void *arg, size_t size);
};

/* The size of a methods table written for `version` (the core never reads
 * a member appended after the table's version). */
#define KV_STORE_METHODS_V1_SIZE offsetof(kv_store_methods_t, ctl_ex)
#define KV_STORE_METHODS_V2_SIZE sizeof(kv_store_methods_t)

/* ctl opcode ranges (KV_CTL_RANGE_*): kvio.h. In a ctl_ex, refuse an
 * argument that is not a T: */
#define KV_CTL_EXPECT(arg, size, T)                                          \
  do {                                                                       \
    if ((arg) == NULL || (size) != sizeof(T)) return KV_EINVAL;              \
  } while (0)

/* The base of every store. A store's struct begins with it. */
struct kv_store_s {
  /* public */
  void *data; /* for the user */
  /* read-only for stores */
  uv_loop_t *loop;
  const kv_store_methods_t *methods;
  unsigned caps;
  char *default_collection;
  /* private: the core's */
  struct {
    kv_req_t *pending_head; /* requests accepted and not yet completed */
    kv_req_t *done_head;    /* completions waiting for this store's idle */
    kv_req_t *done_tail;
    size_t queued; /* completed, not yet delivered (here or in a turn) */
    uv_idle_t idle; /* delivers completions on the loop */
    kv_close_cb close_cb;
    unsigned flags;
    int delivering;
  } core;
};

/* Register a store implementation under a URL scheme ("memory"). Schemes are
 * matched case-insensitively. Returns KV_EEXISTS if the scheme is taken (by
 * a registration or by one of kvio's parts, loaded or not) and KV_EINVAL for
 * a table that fails the checks of kvio/module.h (version >= 1, store_size,
 * open/close/get/ttl/put/del set); kv_register_ex() there says why. */
KV_EXTERN int kv_register(const char *scheme, const kv_store_methods_t *m);

/* Create a store that has no URL (a wrapper): allocates methods->store_size
 * bytes and initialises the base. The caller sets up its own fields; close
 * with kv_store_close() as any store. Returns 0 or KV_ENOMEM. */
KV_EXTERN int kv_store_create(uv_loop_t *loop, const kv_store_methods_t *m,
                              kv_store_t **out);

/* The inputs of a request, as the core filled them in (req->in). */
typedef struct kv_req_in_s kv_req_in_t;

/* Completion hooks (kvio/wrap.h: kv_wrap_pass): a hook returns 0 to let
 * the result rise to the next layer, or KV_HOOK_HELD when it has taken the
 * request back (a retry) and will complete it again later. */
typedef struct kv_hook_s kv_hook_t;
typedef int (*kv_hook_fn)(kv_store_t *layer, kv_req_t *req, kv_hook_t *h);
#define KV_HOOK_HELD 1

/* Complete a request accepted by a method (see the rules above). A second
 * completion of the same request is a store bug: it aborts in debug builds
 * (NDEBUG undefined); in release builds it is ignored and counted. */
KV_EXTERN void kv_req_complete(kv_req_t *req, int status);
/* How many second completions were ignored in this process. */
KV_EXTERN uint64_t kv_double_completions(void);
/* Set the request's detail text (printf format). Returns `err`, so
 * `return kv_req_set_error(req, KV_EINVAL, "bad %s", x);` reads well. */
KV_EXTERN int kv_req_set_error(kv_req_t *req, int err, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Copy `len` bytes into req->value (NUL-terminated); sets found = 1.
 * Returns 0 or KV_ENOMEM. */
KV_EXTERN int kv_req_set_value(kv_req_t *req, const void *data, size_t len);
/* Hand a kv_malloc'ed buffer of len + 1 bytes (data[len] must be 0) to
 * req->value without a copy; sets found = 1. */
KV_EXTERN void kv_req_give_value(kv_req_t *req, char *data, size_t len);
/* Allocate req->results for req->in.n slots (zeroed). 0 or KV_ENOMEM. */
KV_EXTERN int kv_req_alloc_results(kv_req_t *req);
/* Copy a value into results[i]; sets found = 1. 0 or KV_ENOMEM. */
KV_EXTERN int kv_req_set_result(kv_req_t *req, size_t i, const void *data,
                                size_t len, double ttl);
/* Append a name to req->names (keys / collections). 0 or KV_ENOMEM. */
KV_EXTERN int kv_req_add_name(kv_req_t *req, const char *name, size_t len);
/* Set req->cursor (copied); NULL means "listing complete". 0 or KV_ENOMEM. */
KV_EXTERN int kv_req_set_cursor(kv_req_t *req, const char *cursor);

/* The store has finished closing (see close() above). */
KV_EXTERN void kv_store_closed(kv_store_t *s);
/* 1 if kv_store_close() has been called on s. */
KV_EXTERN int kv_store_is_closing(const kv_store_t *s);

/* Time: the current wall-clock time in Unix milliseconds (what expiry uses),
 * and the remaining TTL in seconds of an entry expiring at `expires_at_ms`
 * (0 → KV_TTL_NONE). An entry is expired when expires_at_ms <= now_ms. */
KV_EXTERN int64_t kv_now_ms(void);
KV_EXTERN double kv_remaining_ttl(int64_t expires_at_ms, int64_t now_ms);
#define KV_EXPIRED(expires_at_ms, now_ms) \
  ((expires_at_ms) != 0 && (expires_at_ms) <= (now_ms))

/* Parse a decimal int64 value for incr (optional sign, digits, nothing
 * else). Returns 0 or KV_EINVAL. */
KV_EXTERN int kv_parse_int64(const char *s, size_t len, int64_t *out);
/* Format an int64 for incr results; returns the length written (buf >= 24). */
KV_EXTERN size_t kv_format_int64(int64_t v, char *buf);

/* Safe realloc/calloc through the replaceable allocator. */
KV_EXTERN void *kv_realloc(void *ptr, size_t size);
KV_EXTERN void *kv_calloc(size_t count, size_t size);
KV_EXTERN char *kv_strndup(const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* KVIO_BACKEND_H */
