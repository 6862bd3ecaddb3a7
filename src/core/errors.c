/* Error names, messages and categories, generated from KV_ERRNO_MAP. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

const char *kv_err_name(int err) {
  switch (err) {
  case 0:
    return "OK";
#define KV__ERR_NAME(name, num, cat, msg) \
  case KV_##name:                         \
    return "KV_" #name;
    KV_ERRNO_MAP(KV__ERR_NAME)
#undef KV__ERR_NAME
  default:
    return uv_err_name(err);
  }
}

const char *kv_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define KV__ERR_MSG(name, num, cat, msg) \
  case KV_##name:                        \
    return msg;
    KV_ERRNO_MAP(KV__ERR_MSG)
#undef KV__ERR_MSG
  default:
    return uv_strerror(err);
  }
}

kv_err_category_t kv_err_category(int err) {
  switch (err) {
  case 0:
    return KV_CAT_OK;
#define KV__ERR_CAT(name, num, cat, msg) \
  case KV_##name:                        \
    return KV_CAT_##cat;
    KV_ERRNO_MAP(KV__ERR_CAT)
#undef KV__ERR_CAT
  /* System errors passed through from libuv: the ones a retry can cure. */
  case UV_EAGAIN:
  case UV_EINTR:
  case UV_ECONNREFUSED:
  case UV_ECONNRESET:
  case UV_ECONNABORTED:
  case UV_ETIMEDOUT:
  case UV_EPIPE:
  case UV_ENETUNREACH:
  case UV_EHOSTUNREACH:
  case UV_ENOMEM:
  case UV_ENOBUFS:
  case UV_EBUSY:
    return KV_CAT_TRANSIENT;
  case UV_EINVAL:
    return KV_CAT_USAGE;
  default:
    return KV_CAT_PERMANENT;
  }
}

int kv__errbuf(char *errbuf, size_t errbuf_len, int err, const char *fmt, ...) {
  va_list ap;
  if (errbuf == NULL || errbuf_len == 0) return err;
  va_start(ap, fmt);
  vsnprintf(errbuf, errbuf_len, fmt, ap);
  va_end(ap);
  return err;
}
