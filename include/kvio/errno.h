/* kvio error codes.
 *
 * Errors are negative ints. 0 is success. The numbers below are frozen: codes
 * are only ever appended, never renumbered. kvio's own codes live in the range
 * [-5100, -5001], so libuv's UV_E* codes (negated errno values) can pass
 * through unchanged; kv_strerror() and kv_err_name() fall back to libuv for
 * codes outside kvio's range. */
#ifndef KVIO_ERRNO_H
#define KVIO_ERRNO_H

/* XX(name, number, category, message) */
#define KV_ERRNO_MAP(XX)                                             \
  XX(EINVAL, -5001, USAGE, "invalid argument")                       \
  XX(ENOTSUP, -5002, USAGE, "operation not supported by this store") \
  XX(ETOOBIG, -5003, PERMANENT, "value too big for this store")      \
  XX(ECONFLICT, -5004, PERMANENT, "compare-and-swap conflict")       \
  XX(EEXISTS, -5005, PERMANENT, "entry already exists")              \
  XX(EREADONLY, -5006, USAGE, "store is read-only")                  \
  XX(ETIMEDOUT, -5007, TRANSIENT, "operation timed out")             \
  XX(ECANCELED, -5008, PERMANENT, "operation canceled")              \
  XX(ECLOSED, -5009, USAGE, "store is closed or closing")            \
  XX(ECONN, -5010, TRANSIENT, "connection failed")                   \
  XX(EPROTO, -5011, TRANSIENT, "protocol error")                     \
  XX(EAUTH, -5012, PERMANENT, "authentication failed")               \
  XX(ECORRUPT, -5013, PERMANENT, "corrupt data")                     \
  XX(ENOMEM, -5014, TRANSIENT, "out of memory")                      \
  XX(EIO, -5015, TRANSIENT, "I/O error")                             \
  XX(EBACKEND, -5016, PERMANENT, "backend error")                    \
  XX(EDECRYPT, -5017, PERMANENT, "decryption failed")                \
  XX(ENOTFOUND, -5018, NOTFOUND, "key not found")                    \
  XX(EBUSY, -5019, TRANSIENT, "resource busy or locked")

typedef enum {
#define KV__ERR_ENUM(name, num, cat, msg) KV_##name = num,
  KV_ERRNO_MAP(KV__ERR_ENUM)
#undef KV__ERR_ENUM
      KV_ERRNO_FIRST_ = -5001,
  KV_ERRNO_LAST_ = -5100
} kv_errno_t;

/* Error categories, for retry logic: kv_err_category(code). */
typedef enum {
  KV_CAT_OK = 0,    /* code is 0 (success) */
  KV_CAT_TRANSIENT, /* worth retrying: timeouts, connection loss, ENOMEM */
  KV_CAT_PERMANENT, /* retrying the same request gives the same answer */
  KV_CAT_USAGE,     /* the caller asked for something invalid */
  KV_CAT_NOTFOUND   /* KV_ENOTFOUND ("missing is an error" mode) */
} kv_err_category_t;

#endif
