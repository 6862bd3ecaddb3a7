/* The HTTP layer of the cloud stores: see http.h.
 *
 * The loop drives curl: curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION → one uv_poll_t per socket, created on demand and
 * closed when curl is done with the socket) and when to wake it up
 * (CURLMOPT_TIMERFUNCTION → one uv_timer_t); both call
 * curl_multi_socket_action and then collect the finished transfers. Easy
 * handles are kept in a small pool and reused, so their connections and
 * DNS cache entries stay warm. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "internal.h"
#include "stores/http.h"

#define HTTP_POOL_MAX 512       /* idle easy handles kept */
#define HTTP_BACKOFF_BASE 20    /* ms: first retry waits up to this */
#define HTTP_BACKOFF_CAP 2000   /* ms */
#define HTTP_BODY_MAX (1u << 30) /* refuse answers above 1 GiB */

typedef struct http_sock_s http_sock_t;
struct http_sock_s {
  uv_poll_t poll;
  curl_socket_t fd;
  kv_http_t *http;
  http_sock_t *next, *prev;
};

struct kv_http_s {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;       /* curl's timeouts */
  uv_timer_t retry_timer; /* backoff of retried requests */
  kv_http_req_t *active;  /* in curl's hands */
  kv_http_req_t *waiting; /* waiting for their retry time */
  kv_http_req_t *queue_head; /* not started yet: more than max_active */
  kv_http_req_t *queue_tail;
  size_t nactive;
  size_t max_active;
  http_sock_t *socks;
  CURL **pool;
  size_t npool;
  char *userpwd;
  char *sigv4;
  char *token_header;
  uint64_t timeout_ms;
  long max_connections;
  int verbose;
  kv_http_retry_fn retryable;
  uint64_t rng;
  uint64_t retries;
  int closing;
  int handles; /* open uv handles */
  void (*done)(void *);
  void *done_data;
};

static int curl_inited;

/* ---- Small helpers -------------------------------------------------------- */

void kv__sbuf_add(kv_sbuf_t *b, const char *s, size_t len) {
  if (b->oom) return;
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *p;
    while (cap < b->len + len + 1) cap *= 2;
    p = kv_realloc(b->p, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, len);
  b->len += len;
  b->p[b->len] = '\0';
}

void kv__sbuf_adds(kv_sbuf_t *b, const char *s) { kv__sbuf_add(b, s, strlen(s)); }

void kv__sbuf_printf(kv_sbuf_t *b, const char *fmt, ...) {
  char small[256];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->oom = 1;
    return;
  }
  if ((size_t)n < sizeof small) {
    kv__sbuf_add(b, small, (size_t)n);
    return;
  }
  char *big = kv_malloc((size_t)n + 1);
  if (big == NULL) {
    b->oom = 1;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  kv__sbuf_add(b, big, (size_t)n);
  kv_free(big);
}

void kv__sbuf_free(kv_sbuf_t *b) {
  kv_free(b->p);
  memset(b, 0, sizeof *b);
}

char *kv__http_escape(const char *s, size_t len, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  char *out = kv_malloc(len * 3 + 1), *o = out;
  if (out == NULL) return NULL;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
        c == '~' || (keep_slash && c == '/')) {
      *o++ = (char)c;
    } else {
      *o++ = '%';
      *o++ = hex[c >> 4];
      *o++ = hex[c & 15];
    }
  }
  *o = '\0';
  return out;
}

void kv__http_sha256_hex(const void *data, size_t len, char out[65]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(data, len, md);
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
}

char *kv__http_base64(const void *data, size_t len, size_t *out_len) {
  char *out = kv_malloc(KV__B64_SIZE(len));
  size_t o;
  if (out == NULL) return NULL;
  o = kv__b64_encode(data, len, out, 0);
  if (out_len) *out_len = o;
  return out;
}

int kv__http_unbase64(const char *s, size_t len, char **out, size_t *out_len) {
  char *buf = kv_malloc(len / 4 * 3 + 1);
  long long n;
  if (buf == NULL) return KV_ENOMEM;
  n = kv__b64_decode(s, len, (unsigned char *)buf, 0);
  if (n < 0) {
    kv_free(buf);
    return KV_ECORRUPT;
  }
  buf[n] = '\0';
  *out = buf;
  *out_len = (size_t)n;
  return 0;
}

static uint64_t rng_next(kv_http_t *h) {
  uint64_t x = h->rng; /* xorshift64* */
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  h->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static void list_push(kv_http_req_t **head, kv_http_req_t *r) {
  r->prev = NULL;
  r->next = *head;
  if (*head) (*head)->prev = r;
  *head = r;
}

static void list_remove(kv_http_req_t **head, kv_http_req_t *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    *head = r->next;
  if (r->next) r->next->prev = r->prev;
  r->next = r->prev = NULL;
}

/* ---- Handles ---------------------------------------------------------------- */

static void maybe_done(kv_http_t *h) {
  if (!h->closing || h->handles > 0 || h->done == NULL) return;
  void (*done)(void *) = h->done;
  void *data = h->done_data;
  kv_free(h->userpwd);
  kv_free(h->sigv4);
  kv_free(h->token_header);
  kv_free(h->pool);
  kv_free(h);
  done(data);
}

static void on_sock_closed(uv_handle_t *handle) {
  http_sock_t *sk = handle->data;
  kv_http_t *h = sk->http;
  kv_free(sk);
  h->handles--;
  maybe_done(h);
}

static void on_timer_closed(uv_handle_t *handle) {
  kv_http_t *h = handle->data;
  h->handles--;
  maybe_done(h);
}

static void sock_close(kv_http_t *h, http_sock_t *sk) {
  if (sk->prev)
    sk->prev->next = sk->next;
  else
    h->socks = sk->next;
  if (sk->next) sk->next->prev = sk->prev;
  uv_poll_stop(&sk->poll);
  uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
}

/* ---- Completion ------------------------------------------------------------ */

static void finish(kv_http_req_t *hr) {
  hr->cb(hr);
}

static int map_curl_error(CURLcode rc) {
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT:
    return KV_ETIMEDOUT;
  case CURLE_OUT_OF_MEMORY:
    return KV_ENOMEM;
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL:
    return KV_EINVAL;
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_BAD_CONTENT_ENCODING:
  case CURLE_FILESIZE_EXCEEDED:
    return KV_EPROTO;
  case CURLE_WRITE_ERROR:
    return KV_ETOOBIG;
  default:
    return KV_ECONN;
  }
}

static void schedule_retry_timer(kv_http_t *h);

static int setup_easy(kv_http_req_t *hr);

static void retry_now(kv_http_req_t *hr) {
  kv_http_t *h = hr->http;
  hr->status = 0;
  hr->body_len = 0;
  if (hr->body) hr->body[0] = '\0';
  hr->resp_headers_len = 0;
  if (hr->deadline) {
    uint64_t now = uv_now(h->loop);
    long left = hr->deadline > now ? (long)(hr->deadline - now) : 1;
    curl_easy_setopt(hr->easy, CURLOPT_TIMEOUT_MS, left);
  }
  if (curl_multi_add_handle(h->multi, hr->easy) != CURLM_OK) {
    hr->err = KV_ENOMEM;
    snprintf(hr->errmsg, sizeof hr->errmsg, "http: cannot retry the request");
    finish(hr);
    return;
  }
  hr->in_multi = 1;
  h->nactive++;
  list_push(&h->active, hr);
}

static void on_retry_timer(uv_timer_t *t) {
  kv_http_t *h = t->data;
  uint64_t now = uv_now(h->loop);
  kv_http_req_t *r = h->waiting, *next;
  for (; r; r = next) {
    next = r->next;
    if (r->retry_at <= now) {
      list_remove(&h->waiting, r);
      r->waiting = 0;
      retry_now(r);
    }
  }
  schedule_retry_timer(h);
}

static void schedule_retry_timer(kv_http_t *h) {
  uint64_t first = UINT64_MAX, now = uv_now(h->loop);
  for (kv_http_req_t *r = h->waiting; r; r = r->next)
    if (r->retry_at < first) first = r->retry_at;
  if (first == UINT64_MAX) {
    uv_timer_stop(&h->retry_timer);
    return;
  }
  uv_timer_start(&h->retry_timer, on_retry_timer, first > now ? first - now : 0,
                 0);
}

static int activate(kv_http_req_t *hr);

/* Start queued requests while there is room. */
static void drain_queue(kv_http_t *h) {
  while (h->queue_head && h->nactive < h->max_active && !h->closing) {
    kv_http_req_t *hr = h->queue_head;
    int err;
    h->queue_head = hr->next;
    if (h->queue_head == NULL) h->queue_tail = NULL;
    hr->next = NULL;
    hr->waiting = 0;
    if ((err = activate(hr)) != 0) {
      hr->err = err;
      snprintf(hr->errmsg, sizeof hr->errmsg, "http: cannot start the request");
      finish(hr);
    }
  }
}

static void done_transfer(kv_http_t *h, CURL *easy, CURLcode rc) {
  kv_http_req_t *hr = NULL;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&hr);
  curl_multi_remove_handle(h->multi, easy);
  hr->in_multi = 0;
  list_remove(&h->active, hr);
  h->nactive--;
  /* A body cut short (a server that rewrote the object while sending it,
   * as s3rver does) is retried when the request is a read. */
  int partial = rc == CURLE_PARTIAL_FILE &&
                (strcmp(hr->method, "GET") == 0 || strcmp(hr->method, "HEAD") == 0);
  if (rc != CURLE_OK && !partial) {
    hr->err = map_curl_error(rc);
    snprintf(hr->errmsg, sizeof hr->errmsg, "http: %s", curl_easy_strerror(rc));
    finish(hr);
    return;
  }
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &hr->status);
  if (partial || (h->retryable && h->retryable(hr))) {
    /* Full jitter: a random wait in [0, min(cap, base * 2^attempt)]. */
    unsigned shift = hr->attempts < 10 ? hr->attempts : 10;
    uint64_t ceiling = (uint64_t)HTTP_BACKOFF_BASE << shift;
    uint64_t now = uv_now(h->loop), wait;
    if (ceiling > HTTP_BACKOFF_CAP) ceiling = HTTP_BACKOFF_CAP;
    wait = 1 + rng_next(h) % ceiling;
    hr->attempts++;
    if (hr->deadline == 0 || now + wait < hr->deadline) {
      h->retries++;
      hr->retry_at = now + wait;
      hr->waiting = 1;
      list_push(&h->waiting, hr);
      schedule_retry_timer(h);
      return;
    }
    /* Out of time: the store reports the last answer (a transient error). */
    if (partial) {
      hr->err = KV_ECONN;
      snprintf(hr->errmsg, sizeof hr->errmsg, "http: %s", curl_easy_strerror(rc));
    }
  }
  finish(hr);
}

static void check_multi_info(kv_http_t *h) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
    if (msg->msg == CURLMSG_DONE) done_transfer(h, msg->easy_handle, msg->data.result);
  }
  drain_queue(h);
}

/* ---- curl's callbacks ----------------------------------------------------- */

static void on_poll(uv_poll_t *p, int status, int events) {
  http_sock_t *sk = p->data;
  kv_http_t *h = sk->http;
  int flags = 0, running;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(h->multi, sk->fd, flags, &running);
  check_multi_info(h);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp) {
  kv_http_t *h = userp;
  http_sock_t *sk = socketp;
  int events = 0;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (sk) {
      curl_multi_assign(h->multi, s, NULL);
      sock_close(h, sk);
    }
    return 0;
  }
  if (sk == NULL) {
    sk = kv_calloc(1, sizeof *sk);
    if (sk == NULL) return -1;
    if (uv_poll_init_socket(h->loop, &sk->poll, s) != 0) {
      kv_free(sk);
      return -1;
    }
    sk->fd = s;
    sk->http = h;
    sk->poll.data = sk;
    sk->next = h->socks;
    if (h->socks) h->socks->prev = sk;
    h->socks = sk;
    h->handles++;
    curl_multi_assign(h->multi, s, sk);
  }
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  uv_poll_start(&sk->poll, events, on_poll);
  return 0;
}

static void on_timer(uv_timer_t *t) {
  kv_http_t *h = t->data;
  int running;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi_info(h);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp) {
  kv_http_t *h = userp;
  (void)multi;
  if (timeout_ms < 0)
    uv_timer_stop(&h->timer);
  else
    uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
  kv_http_req_t *hr = userdata;
  size_t n = size * nmemb;
  if (hr->body_len + n + 1 > hr->body_cap) {
    size_t cap = hr->body_cap ? hr->body_cap : 1024;
    char *p;
    if (hr->body_len + n + 1 > HTTP_BODY_MAX) return 0;
    while (cap < hr->body_len + n + 1) cap *= 2;
    if ((p = kv_realloc(hr->body, cap)) == NULL) return 0;
    hr->body = p;
    hr->body_cap = cap;
  }
  memcpy(hr->body + hr->body_len, ptr, n);
  hr->body_len += n;
  hr->body[hr->body_len] = '\0';
  return n;
}

static size_t on_header(char *ptr, size_t size, size_t nitems, void *userdata) {
  kv_http_req_t *hr = userdata;
  size_t n = size * nitems;
  if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) hr->resp_headers_len = 0;
  if (hr->resp_headers_len + n + 1 > hr->resp_headers_cap) {
    size_t cap = hr->resp_headers_cap ? hr->resp_headers_cap : 512;
    char *p;
    if (hr->resp_headers_len + n + 1 > 1u << 20) return 0;
    while (cap < hr->resp_headers_len + n + 1) cap *= 2;
    if ((p = kv_realloc(hr->resp_headers, cap)) == NULL) return 0;
    hr->resp_headers = p;
    hr->resp_headers_cap = cap;
  }
  memcpy(hr->resp_headers + hr->resp_headers_len, ptr, n);
  hr->resp_headers_len += n;
  hr->resp_headers[hr->resp_headers_len] = '\0';
  return n;
}

/* ---- Public ---------------------------------------------------------------- */

int kv__http_init(kv_http_t **out, uv_loop_t *loop, const kv_http_config_t *cfg,
                  char *errbuf, size_t errbuf_len) {
  kv_http_t *h;
  *out = NULL;
  if (!curl_inited) {
    /* Not thread-safe in old curls: kvio stores are opened on the loop
     * thread before use, as kv_register is. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM,
                        "http: curl_global_init failed");
    curl_inited = 1;
  }
  if ((h = kv_calloc(1, sizeof *h)) == NULL) goto oom;
  h->loop = loop;
  h->timeout_ms = cfg->timeout_ms;
  h->max_connections = cfg->max_connections > 0 ? cfg->max_connections : 64;
  /* A few transfers per connection wait in curl; the rest wait here, where
   * their deadline has not started yet. */
  h->max_active = (size_t)h->max_connections * 2;
  h->verbose = cfg->verbose;
  h->retryable = cfg->retryable;
  h->rng = uv_hrtime() | 1;
  if (cfg->access_key && cfg->secret_key) {
    size_t n = strlen(cfg->access_key) + strlen(cfg->secret_key) + 2;
    if ((h->userpwd = kv_malloc(n)) == NULL) goto oom;
    snprintf(h->userpwd, n, "%s:%s", cfg->access_key, cfg->secret_key);
    n = strlen(cfg->region) + strlen(cfg->service) + 16;
    if ((h->sigv4 = kv_malloc(n)) == NULL) goto oom;
    snprintf(h->sigv4, n, "aws:amz:%s:%s", cfg->region, cfg->service);
    if (cfg->session_token && cfg->session_token[0]) {
      n = strlen(cfg->session_token) + 32;
      if ((h->token_header = kv_malloc(n)) == NULL) goto oom;
      snprintf(h->token_header, n, "x-amz-security-token: %s",
               cfg->session_token);
    }
  }
  if ((h->pool = kv_calloc(HTTP_POOL_MAX, sizeof *h->pool)) == NULL) goto oom;
  if ((h->multi = curl_multi_init()) == NULL) goto oom;
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, h->max_connections);
  curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, h->max_connections);
  uv_timer_init(loop, &h->timer);
  uv_timer_init(loop, &h->retry_timer);
  h->timer.data = h;
  h->retry_timer.data = h;
  h->handles = 2;
  *out = h;
  return 0;
oom:
  if (h) {
    kv_free(h->userpwd);
    kv_free(h->sigv4);
    kv_free(h->token_header);
    kv_free(h->pool);
    kv_free(h);
  }
  return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "http: out of memory");
}

uint64_t kv__http_retries(const kv_http_t *h) { return h->retries; }

void kv__http_close(kv_http_t *h, void (*done)(void *data), void *data) {
  h->closing = 1;
  h->done = done;
  h->done_data = data;
  while (h->active) {
    kv_http_req_t *r = h->active;
    list_remove(&h->active, r);
    curl_multi_remove_handle(h->multi, r->easy);
    r->in_multi = 0;
    h->nactive--;
    r->err = KV_ECANCELED;
    snprintf(r->errmsg, sizeof r->errmsg, "http: store closed");
    finish(r);
  }
  while (h->queue_head) {
    kv_http_req_t *r = h->queue_head;
    h->queue_head = r->next;
    r->next = NULL;
    r->waiting = 0;
    r->err = KV_ECANCELED;
    snprintf(r->errmsg, sizeof r->errmsg, "http: store closed");
    finish(r);
  }
  h->queue_tail = NULL;
  while (h->waiting) {
    kv_http_req_t *r = h->waiting;
    list_remove(&h->waiting, r);
    r->waiting = 0;
    r->err = KV_ECANCELED;
    snprintf(r->errmsg, sizeof r->errmsg, "http: store closed");
    finish(r);
  }
  for (size_t i = 0; i < h->npool; i++)
    curl_easy_cleanup(h->pool[i]);
  h->npool = 0;
  curl_multi_cleanup(h->multi); /* closes the connections: CURL_POLL_REMOVE */
  h->multi = NULL;
  while (h->socks) sock_close(h, h->socks);
  uv_close((uv_handle_t *)&h->timer, on_timer_closed);
  uv_close((uv_handle_t *)&h->retry_timer, on_timer_closed);
}

kv_http_req_t *kv__http_req_new(kv_http_t *h, const char *method,
                                const char *url, kv_http_cb cb, void *data) {
  kv_http_req_t *hr = kv_calloc(1, sizeof *hr);
  if (hr == NULL) return NULL;
  hr->http = h;
  hr->cb = cb;
  hr->data = data;
  hr->url = kv_strndup(url, strlen(url));
  hr->method = kv_strndup(method, strlen(method));
  if (hr->url == NULL || hr->method == NULL) {
    kv__http_req_free(hr);
    return NULL;
  }
  return hr;
}

int kv__http_req_header(kv_http_req_t *hr, const char *fmt, ...) {
  kv_sbuf_t line = {0};
  struct curl_slist *l;
  va_list ap;
  char small[512];
  int n;
  va_start(ap, fmt);
  n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return KV_EINVAL;
  if ((size_t)n >= sizeof small) {
    char *big = kv_malloc((size_t)n + 1);
    if (big == NULL) return KV_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    l = curl_slist_append(hr->headers, big);
    kv_free(big);
  } else {
    l = curl_slist_append(hr->headers, small);
  }
  (void)line;
  if (l == NULL) return KV_ENOMEM;
  hr->headers = l;
  return 0;
}

int kv__http_req_body(kv_http_req_t *hr, const void *data, size_t len,
                      int copy) {
  if (copy) {
    if ((hr->req_body = kv_malloc(len + 1)) == NULL) return KV_ENOMEM;
    if (len) memcpy(hr->req_body, data, len);
    hr->ext_body = hr->req_body;
  } else {
    hr->ext_body = data;
  }
  hr->req_body_len = len;
  return 0;
}

static int setup_easy(kv_http_req_t *hr) {
  kv_http_t *h = hr->http;
  CURL *e;
  if (h->npool > 0) {
    e = h->pool[--h->npool];
    curl_easy_reset(e);
  } else if ((e = curl_easy_init()) == NULL) {
    return KV_ENOMEM;
  }
  hr->easy = e;
  curl_easy_setopt(e, CURLOPT_URL, hr->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, hr);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, hr);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, hr);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  if (h->verbose) curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
  if (strcmp(hr->method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(hr->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    if (strcmp(hr->method, "POST") != 0)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, hr->method);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)hr->req_body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, hr->ext_body ? hr->ext_body : "");
  }
  if (h->sigv4) {
    curl_easy_setopt(e, CURLOPT_USERPWD, h->userpwd);
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, h->sigv4);
    if (h->token_header &&
        kv__http_req_header(hr, "%s", h->token_header) != 0)
      return KV_ENOMEM;
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hr->headers);
  if (hr->deadline) {
    uint64_t now = uv_now(h->loop);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     (long)(hr->deadline > now ? hr->deadline - now : 1));
  }
  return 0;
}

static int activate(kv_http_req_t *hr) {
  kv_http_t *h = hr->http;
  int err;
  if (h->timeout_ms) hr->deadline = uv_now(h->loop) + h->timeout_ms;
  if ((err = setup_easy(hr)) != 0) return err;
  if (curl_multi_add_handle(h->multi, hr->easy) != CURLM_OK) return KV_ENOMEM;
  hr->in_multi = 1;
  h->nactive++;
  list_push(&h->active, hr);
  return 0;
}

int kv__http_start(kv_http_req_t *hr) {
  kv_http_t *h = hr->http;
  int err;
  if (h->closing) {
    kv__http_req_free(hr);
    return KV_ECANCELED;
  }
  if (h->nactive >= h->max_active || h->queue_head) {
    hr->next = NULL;
    hr->waiting = 2; /* queued */
    if (h->queue_tail)
      h->queue_tail->next = hr;
    else
      h->queue_head = hr;
    h->queue_tail = hr;
    return 0;
  }
  if ((err = activate(hr)) != 0) {
    kv__http_req_free(hr);
    return err;
  }
  return 0;
}

void kv__http_req_free(kv_http_req_t *hr) {
  if (hr == NULL) return;
  kv_http_t *h = hr->http;
  if (hr->easy) {
    if (hr->in_multi) {
      curl_multi_remove_handle(h->multi, hr->easy);
      list_remove(&h->active, hr);
      h->nactive--;
    }
    if (hr->waiting == 1) list_remove(&h->waiting, hr);
    if (!h->closing && h->npool < HTTP_POOL_MAX)
      h->pool[h->npool++] = hr->easy;
    else
      curl_easy_cleanup(hr->easy);
  }
  curl_slist_free_all(hr->headers);
  kv_free(hr->url);
  kv_free(hr->method);
  kv_free(hr->req_body);
  kv_free(hr->body);
  kv_free(hr->resp_headers);
  kv_free(hr);
}

int kv__http_header(const kv_http_req_t *hr, const char *name, char *buf,
                    size_t len) {
  size_t nl = strlen(name);
  const char *p = hr->resp_headers;
  if (p == NULL) return 0;
  while (*p) {
    const char *eol = strchr(p, '\n');
    size_t linelen = eol ? (size_t)(eol - p) : strlen(p);
    if (linelen > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
      const char *v = p + nl + 1, *end = p + linelen;
      while (v < end && (*v == ' ' || *v == '\t')) v++;
      while (end > v && (end[-1] == '\r' || end[-1] == ' ')) end--;
      size_t n = (size_t)(end - v);
      if (n >= len) n = len - 1;
      memcpy(buf, v, n);
      buf[n] = '\0';
      return 1;
    }
    if (eol == NULL) break;
    p = eol + 1;
  }
  return 0;
}

char *kv__http_take_body(kv_http_req_t *hr, size_t *len) {
  char *b = hr->body;
  if (b == NULL) {
    b = kv_malloc(1);
    if (b) b[0] = '\0';
    *len = 0;
    return b;
  }
  *len = hr->body_len;
  hr->body = NULL;
  hr->body_len = hr->body_cap = 0;
  return b;
}
