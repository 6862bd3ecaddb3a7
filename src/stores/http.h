/* The HTTP layer of the cloud stores (s3://, dynamodb://): libcurl's
 * multi-socket API driven by the store's libuv loop (one uv_poll_t per
 * socket curl uses, one uv_timer_t for curl's timeouts), connections reused
 * across requests, any number of requests in flight (curl queues what
 * exceeds max_connections), a deadline per request, requests signed by
 * curl's CURLOPT_AWS_SIGV4, and answers that the store classifies as
 * throttling / 5xx retried with jittered exponential backoff until the
 * deadline. Internal to kvio (kv__ names). */
#ifndef KVIO_STORES_HTTP_H
#define KVIO_STORES_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "kvio/backend.h"

typedef struct kv_http_s kv_http_t;
typedef struct kv_http_req_s kv_http_req_t;
typedef void (*kv_http_cb)(kv_http_req_t *hr);
/* Decide whether a finished attempt (status > 0) should be retried: 1 = a
 * throttling or transient server answer. */
typedef int (*kv_http_retry_fn)(const kv_http_req_t *hr);

/* Credentials and signing. Strings are copied. */
typedef struct kv_http_config_s {
  const char *access_key; /* NULL: requests are not signed */
  const char *secret_key;
  const char *session_token; /* NULL or x-amz-security-token */
  const char *region;
  const char *service; /* "s3", "dynamodb" */
  uint64_t timeout_ms; /* per request, retries included; 0 = none */
  long max_connections; /* per host */
  int verbose; /* CURLOPT_VERBOSE (never with secrets: curl masks them) */
  kv_http_retry_fn retryable;
} kv_http_config_t;

/* Open the layer on a loop (no network). 0 or KV_ENOMEM / KV_EINVAL. */
int kv__http_init(kv_http_t **out, uv_loop_t *loop,
                  const kv_http_config_t *cfg, char *errbuf,
                  size_t errbuf_len);
/* Cancel every request in flight (their callbacks run with
 * KV_ECANCELED, from this call), close the handles, then call done(data)
 * from the loop once every handle is closed. */
void kv__http_close(kv_http_t *h, void (*done)(void *data), void *data);
/* Requests started and retries made so far. */
uint64_t kv__http_retries(const kv_http_t *h);

struct kv_http_req_s {
  /* set by the caller (kv__http_req_new / setters) */
  void *data;
  void *data2;
  size_t index; /* free for the caller */
  kv_http_cb cb;
  /* results, valid in cb */
  int err;       /* 0, or KV_ECONN / KV_ETIMEDOUT / KV_ECANCELED / ... */
  char errmsg[256];
  long status;   /* HTTP status (0 when no answer) */
  char *body;    /* the answer's body, NUL-terminated (kv_malloc'ed) */
  size_t body_len;
  /* private */
  kv_http_t *http;
  kv_http_req_t *next, *prev; /* in flight / waiting to retry */
  void *easy;
  void *headers;  /* struct curl_slist * */
  char *url;
  char *method;
  char *req_body; /* owned copy, or NULL */
  size_t req_body_len;
  const char *ext_body; /* borrowed body (valid until cb) */
  char *resp_headers;
  size_t resp_headers_len, resp_headers_cap;
  size_t body_cap;
  uint64_t deadline; /* uv_now() ms, 0 = none */
  uint64_t retry_at;
  unsigned attempts;
  int in_multi;
  int waiting;
};

/* A new request (kv_malloc'ed, zeroed) for METHOD URL. NULL on ENOMEM. */
kv_http_req_t *kv__http_req_new(kv_http_t *h, const char *method,
                                const char *url, kv_http_cb cb, void *data);
/* Add a header line ("Name: value"). 0 or KV_ENOMEM. */
int kv__http_req_header(kv_http_req_t *hr, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The request body: copied (copy = 1) or borrowed (valid until cb runs). */
int kv__http_req_body(kv_http_req_t *hr, const void *data, size_t len,
                      int copy);
/* Start it. 0 (cb runs exactly once, never from inside this call) or < 0
 * (cb never runs; the request is freed). */
int kv__http_start(kv_http_req_t *hr);
/* Free a request after its callback (or one never started). */
void kv__http_req_free(kv_http_req_t *hr);
/* The value of response header `name` (case-insensitive) copied into buf
 * (trimmed); 1 when present, 0 when not. */
int kv__http_header(const kv_http_req_t *hr, const char *name, char *buf,
                    size_t len);
/* Take the response body (kv_malloc'ed, NUL-terminated); the request keeps
 * nothing. */
char *kv__http_take_body(kv_http_req_t *hr, size_t *len);

/* Helpers shared by the stores. */
/* Percent-encode for a URL path or query (RFC 3986 unreserved kept; '/'
 * kept when keep_slash). kv_malloc'ed, NULL on ENOMEM. */
char *kv__http_escape(const char *s, size_t len, int keep_slash);
/* Lower-case hex SHA-256 of data into out[65]. */
void kv__http_sha256_hex(const void *data, size_t len, char out[65]);
/* Base64 (standard alphabet, padded) of data: kv_malloc'ed. */
char *kv__http_base64(const void *data, size_t len, size_t *out_len);
/* Decode base64; 0 or KV_ECORRUPT. *out kv_malloc'ed, NUL-terminated. */
int kv__http_unbase64(const char *s, size_t len, char **out, size_t *out_len);

/* A growable string. */
typedef struct kv_sbuf_s {
  char *p;
  size_t len, cap;
  int oom;
} kv_sbuf_t;
void kv__sbuf_add(kv_sbuf_t *b, const char *s, size_t len);
void kv__sbuf_adds(kv_sbuf_t *b, const char *s);
void kv__sbuf_printf(kv_sbuf_t *b, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void kv__sbuf_free(kv_sbuf_t *b);

#endif
