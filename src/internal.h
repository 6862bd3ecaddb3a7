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
KV__MODULE_API int kv__store_init(kv_store_t *s);        /* default collection; 0 or ENOMEM */
KV__MODULE_API void kv__store_start(kv_store_t *s);      /* the delivery handle */
int kv__store_deliver_now(kv_store_t *s); /* deliver queued completions */

/* src/wrappers/wrap.c: a completion hook of `layer` has run. */
void kv__wrap_hook_done(kv_store_t *layer);
/* src/core/store.c: the size of a methods table of `version`. */
size_t kv__methods_size(int version);
/* The method implementing op, or NULL. */
kv_op_fn kv__method(const kv_store_methods_t *m, kv_op_t op);
/* Capability an op needs (0: none) and its segment's name. */
unsigned kv__op_cap(kv_op_t op);
/* Submit `op` on `s` with inputs already validated (`in`, e.g. an outer
 * request's): the request copies them into its own block, keeps in->now_ms
 * and recomputes the expiry from in->ttl. 0, or < 0 (cb never runs). */
int kv__submit_in(kv_store_t *s, kv_req_t *req, kv_op_t op,
                  const kv_req_in_t *in, kv_cb cb);
/* The absolute expiry (Unix ms, 0 = none) of a write at now_ms with a
 * valid ttl in seconds (rule 14 of docs/design.md). */
int64_t kv__expiry(int64_t now_ms, double ttl);
/* Put a completed request (DONE, in a hook) back to pending on its store,
 * its results cleared; it is then completed again with kv_req_complete. */
void kv__req_hold(kv_req_t *req);

/* src/core/url.c */
int kv__url_parse(const char *raw, kv_url_t *url, char *errbuf,
                  size_t errbuf_len);
void kv__url_free(kv_url_t *url);

/* src/core/encoding.c: base64 (RFC 4648), hex and percent-decoding.
 *
 * kv__b64_encode writes the base64 of in[0..len) and a NUL into out, which
 * needs KV__B64_SIZE(len) bytes; it returns the length written (without
 * the NUL). Flags: KV__B64_URL, the URL-safe alphabet ('-' and '_' for '+'
 * and '/', as Fernet uses); KV__B64_NOPAD, no '=' padding.
 * kv__b64_decode decodes padded base64 of that alphabet (KV__B64_URL or 0)
 * into out, which needs room for the decoded bytes (len / 4 * 3 is always
 * enough; it writes nothing past the decoded length); it returns that length,
 * or -1 when the text is not canonical base64 (a length that is not a
 * multiple of 4, a character outside the alphabet, padding other than one
 * or two final '=', unused bits not zero). Empty text decodes to 0 bytes. */
enum { KV__B64_URL = 1, KV__B64_NOPAD = 2 };
#define KV__B64_SIZE(len) (((len) + 2) / 3 * 4 + 1)
KV__MODULE_API size_t kv__b64_encode(const void *in, size_t len, char *out, int flags);
KV__MODULE_API long long kv__b64_decode(const char *in, size_t len, unsigned char *out,
                         int flags);
/* Lower-case hex of in[0..len) and a NUL into out (2 * len + 1 bytes). */
KV__MODULE_API void kv__hex_encode(const void *in, size_t len, char *out);
/* Decode hex digits (either case) into out (len / 2 bytes): the decoded
 * length, or -1 on an odd length or a character that is not a hex digit. */
KV__MODULE_API long long kv__hex_decode(const char *in, size_t len, unsigned char *out);
/* Percent-decode in[0..len) into a new NUL-terminated string (kv_malloc;
 * '+' stays '+'). 0, KV_ENOMEM, or KV_EINVAL on a '%' not followed by two
 * hex digits or on an escaped NUL (%00); *out is NULL on failure. */
KV__MODULE_API int kv__pct_decode(const char *in, size_t len, char **out);

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
