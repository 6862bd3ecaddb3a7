/* Internal declarations shared between kvio's source files (kv__ names). */
#ifndef KVIO_INTERNAL_H
#define KVIO_INTERNAL_H

#include "kvio.h"
#include "kvio/backend.h"

/* The few internals that modules (parts built as NAME.so, loaded on demand)
 * call: exported from libkvio.so although they are not public API. Keep
 * this set small; docs/design.md lists it and tests/install/run.sh checks
 * that libkvio.so exports exactly these beyond the kv_ API. */
#define KV__MODULE_API __attribute__((visibility("default")))

/* Built-in stores (src/stores/<name>.c). */
extern const kv_store_methods_t kv__memory_methods;
extern const kv_store_methods_t kv__null_methods;
extern const kv_store_methods_t kv__disk_methods;

/* Request states (req->priv.state). Distinct magic values, so that an
 * uninitialised request is unlikely to look in flight. */
enum {
  KV__REQ_IDLE = 0,
  KV__REQ_PENDING = 0x5a01,
  KV__REQ_DONE = 0x5a02,
  KV__REQ_DELIVERED = 0x5a03
};

/* src/core/store.c */
int kv__store_init(kv_store_t *s);        /* default collection; 0 or ENOMEM */
void kv__store_start(kv_store_t *s);      /* the delivery handle */
int kv__store_deliver_now(kv_store_t *s); /* deliver queued completions */

/* src/core/url.c */
int kv__url_parse(const char *raw, kv_url_t *url, char *errbuf,
                  size_t errbuf_len);
void kv__url_free(kv_url_t *url);

/* src/core/validate.c: 0 or KV_EINVAL with a detail in errbuf. */
KV__MODULE_API int kv__check_name(const char *what, const char *name,
                                  size_t len, char *errbuf, size_t errbuf_len);
int kv__check_ttl(double ttl, char *errbuf, size_t errbuf_len);
KV__MODULE_API int kv__utf8_valid(const char *s, size_t len);

/* src/core/sha256.c: SHA-256 of data (GNU Nettle). */
#define KV__SHA256_LEN 32
void kv__sha256(const void *data, size_t len,
                unsigned char out[KV__SHA256_LEN]);

/* Write printf output into errbuf (may be NULL); returns err. */
KV__MODULE_API int kv__errbuf(char *errbuf, size_t errbuf_len, int err,
                              const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#define KV__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
