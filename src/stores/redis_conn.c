/* The Redis store's connection: one pipelined connection per store on
 * libuv (uv_tcp_t or uv_pipe_t), TLS through OpenSSL memory BIOs around the
 * socket, hiredis's RESP reader building kv_redis_reply_t trees.
 *
 * Commands are formatted when they are submitted and appended to st->out;
 * a prepare handle writes everything queued in the loop turn with one write
 * just before the loop polls, so any number of callers share one round
 * trip. Replies come back in order and are matched with the FIFO of pending
 * commands (st->fifo).
 *
 * Connecting is lazy: the first command connects (DNS on the threadpool,
 * connect, TLS handshake, AUTH, SELECT) and is written once the connection
 * is ready. A failed attempt fails the waiting commands with its error and
 * backs off (50 ms doubling up to 1 s): commands submitted meanwhile fail at
 * once with the same error, the first one after the backoff tries again. A
 * connection lost while ready fails what it had in flight (KV_ECONN) and the
 * next command reconnects at once. A command without a reply within the
 * timeout completes with KV_ETIMEDOUT and resets the connection (a pipelined
 * connection cannot skip a reply). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "stores/redis_int.h"

#define READ_BUF_SIZE 65536
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define IDLE_TIMER_MS 3600000   /* keeps the loop alive without a timeout */
#define OUT_KEEP_MAX (1u << 20) /* larger write buffers are not kept */

struct kv__redis_conn_s {
  kv__redis_t *st;
  int attached; /* st->conn == this */
  int was_ready;
  int handle_init;
  int gai_pending;
  int tls_done;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  uv_connect_t connect_req;
  uv_getaddrinfo_t gai;
  redisReader *reader;
  SSL *ssl;
  BIO *rbio, *wbio; /* network side of the TLS engine: in, out */
  int hello_left;   /* handshake replies still expected */
  int hello_kind[2];
  char rbuf[READ_BUF_SIZE];
};

typedef struct {
  uv_write_t req;
  size_t len;
  char data[];
} wreq_t;

enum { HELLO_AUTH = 1, HELLO_SELECT };

static void conn_fail(kv__redis_conn_t *c, int err, int timed_out,
                      const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Deadlines and backoff use the real clock, not uv_now(): the loop's time
 * is stale when it has not run for a while (the blocking facade between
 * calls). */
uint64_t kv__redis_now_ms(void) {
  return uv_hrtime() / 1000000u;
}

/* ---- Replies ------------------------------------------------------------- */

void kv__redis_reply_free(kv_redis_reply_t *r) {
  if (r == NULL) return;
  for (size_t i = 0; i < r->elements; i++)
    kv__redis_reply_free(r->element[i]);
  kv_free(r->element);
  kv_free(r->str);
  kv_free(r);
}

/* Room for n elements of an array declared with `count`: what arrives, not
 * what the header claims ("*2000000000" must not allocate 16 GB up front):
 * up to 1024 at once, then doubling, never past count. */
static size_t array_room(size_t n, size_t count) {
  size_t c = count < 1024 ? count : 1024;
  if (n == 0) return 0;
  while (c < n)
    c = c > count / 2 ? count : 2 * c;
  return c;
}

/* Add r to its parent array. Elements arrive in order: `elements` counts
 * those attached (so a partial array frees cleanly) and equals the declared
 * count once complete. NULL (r freed) when out of memory. */
static void *reply_attach(const redisReadTask *task, kv_redis_reply_t *r) {
  if (task->parent != NULL) {
    kv_redis_reply_t *parent = task->parent->obj;
    size_t count = (size_t)task->parent->elements, idx = (size_t)task->idx;
    if (idx != parent->elements || idx >= count) {
      kv__redis_reply_free(r);
      return NULL;
    }
    if (array_room(idx + 1, count) > array_room(idx, count)) {
      size_t need = array_room(idx + 1, count);
      kv_redis_reply_t **e = kv_realloc(parent->element, need * sizeof *e);
      if (e == NULL) {
        kv__redis_reply_free(r);
        return NULL;
      }
      parent->element = e;
    }
    parent->element[idx] = r;
    parent->elements = idx + 1;
  }
  return r;
}

static kv_redis_reply_t *reply_new(int type) {
  kv_redis_reply_t *r = kv_calloc(1, sizeof *r);
  if (r) r->type = type;
  return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len) {
  kv_redis_reply_t *r = reply_new(task->type);
  if (r == NULL) return NULL;
  r->str = kv_malloc(len + 1);
  if (r->str == NULL) {
    kv_free(r);
    return NULL;
  }
  memcpy(r->str, str, len);
  r->str[len] = '\0';
  r->len = len;
  return reply_attach(task, r);
}

static void *create_array(const redisReadTask *task, int elements) {
  kv_redis_reply_t *r = reply_new(KV_REDIS_REPLY_ARRAY);
  (void)elements; /* the room grows as elements arrive (reply_attach) */
  if (r == NULL) return NULL;
  return reply_attach(task, r);
}

static void *create_integer(const redisReadTask *task, long long value) {
  kv_redis_reply_t *r = reply_new(KV_REDIS_REPLY_INTEGER);
  if (r == NULL) return NULL;
  r->integer = value;
  return reply_attach(task, r);
}

static void *create_nil(const redisReadTask *task) {
  kv_redis_reply_t *r = reply_new(KV_REDIS_REPLY_NIL);
  if (r == NULL) return NULL;
  return reply_attach(task, r);
}

static void free_object(void *obj) {
  kv__redis_reply_free(obj);
}

static redisReplyObjectFunctions reply_fns = {
    create_string, create_array, create_integer, create_nil, free_object};

int kv__redis_error_code(const char *msg, size_t len) {
  static const struct {
    const char *prefix;
    int err;
  } map[] = {{"WRONGPASS", KV_EAUTH}, {"NOAUTH", KV_EAUTH},
             {"NOPERM", KV_EAUTH},    {"READONLY", KV_EREADONLY},
             {"LOADING", KV_EBUSY},   {"BUSY", KV_EBUSY},
             {"TRYAGAIN", KV_EBUSY},  {"MASTERDOWN", KV_EBUSY}};
  for (size_t i = 0; i < KV__ARRAY_SIZE(map); i++) {
    size_t n = strlen(map[i].prefix);
    if (len >= n && memcmp(msg, map[i].prefix, n) == 0 &&
        (len == n || msg[n] == ' '))
      return map[i].err;
  }
  if (len >= 16 && memcmp(msg, "ERR invalid pass", 16) == 0) return KV_EAUTH;
  return KV_EBACKEND;
}

/* ---- The FIFO ------------------------------------------------------------ */

static kv__redis_pend_t *fifo_at(kv__redis_t *st, size_t i) {
  return &st->fifo[(st->fifo_head + i) & (st->fifo_cap - 1)];
}

static int fifo_push(kv__redis_t *st, const kv__redis_pend_t *e) {
  if (st->fifo_n == st->fifo_cap) {
    size_t cap = st->fifo_cap ? st->fifo_cap * 2 : 64;
    kv__redis_pend_t *v = kv_malloc(cap * sizeof *v);
    if (v == NULL) return KV_ENOMEM;
    for (size_t i = 0; i < st->fifo_n; i++)
      v[i] = *fifo_at(st, i);
    kv_free(st->fifo);
    st->fifo = v;
    st->fifo_cap = cap;
    st->fifo_head = 0;
  }
  *fifo_at(st, st->fifo_n) = *e;
  st->fifo_n++;
  return 0;
}

static void timer_update(kv__redis_t *st);

/* ---- Writing ------------------------------------------------------------- */

static void on_written(uv_write_t *w, int status) {
  kv__redis_conn_t *c = w->data;
  kv_free(w);
  if (status < 0 && c->attached)
    conn_fail(c, KV_ECONN, 0, "write to %s failed: %s", c->st->endpoint,
              uv_strerror(status));
}

/* Write bytes on the socket: one try_write, the rest queued. */
static void write_raw(kv__redis_conn_t *c, const char *data, size_t len) {
  kv__redis_t *st = c->st;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int n;
  wreq_t *w;
  uv_os_fd_t fd;
  if (len == 0) return;
  st->stats.writes++;
  st->stats.bytes_written += len;
  if (uv_stream_get_write_queue_size(&c->h.stream) == 0 &&
      uv_fileno(&c->h.handle, &fd) == 0) {
    /* send() with MSG_NOSIGNAL: a server gone away is an error, not a
     * SIGPIPE (libuv's own writes could raise one). */
    ssize_t r;
    do
      r = send(fd, data, len, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    n = r >= 0 ? (int)r
        : (errno == EAGAIN || errno == EWOULDBLOCK)
            ? 0
            : uv_translate_sys_error(errno);
  } else {
    n = 0; /* earlier bytes still queued: keep the order */
  }
  if (n < 0) {
    conn_fail(c, KV_ECONN, 0, "write to %s failed: %s", st->endpoint,
              uv_strerror(n));
    return;
  }
  if ((size_t)n == len) return;
  w = kv_malloc(sizeof *w + len - (size_t)n);
  if (w == NULL) {
    conn_fail(c, KV_ENOMEM, 0, "out of memory");
    return;
  }
  w->len = len - (size_t)n;
  memcpy(w->data, data + n, w->len);
  w->req.data = c;
  b = uv_buf_init(w->data, (unsigned)w->len);
  n = uv_write(&w->req, &c->h.stream, &b, 1, on_written);
  if (n < 0) {
    kv_free(w);
    conn_fail(c, KV_ECONN, 0, "write to %s failed: %s", st->endpoint,
              uv_strerror(n));
  }
}

/* The TLS engine's output (handshake records, encrypted data) to the
 * socket. */
static void tls_flush(kv__redis_conn_t *c) {
  size_t pending = BIO_ctrl_pending(c->wbio);
  char *buf;
  int n;
  if (pending == 0) return;
  buf = kv_malloc(pending);
  if (buf == NULL) {
    conn_fail(c, KV_ENOMEM, 0, "out of memory");
    return;
  }
  n = BIO_read(c->wbio, buf, (int)pending);
  if (n > 0) write_raw(c, buf, (size_t)n);
  kv_free(buf);
}

static void tls_error_text(char *buf, size_t len) {
  unsigned long e = ERR_get_error();
  if (e == 0)
    snprintf(buf, len, "unknown TLS error");
  else
    ERR_error_string_n(e, buf, len);
  ERR_clear_error();
}

static void conn_write(kv__redis_conn_t *c, const char *data, size_t len) {
  if (c->ssl == NULL) {
    write_raw(c, data, len);
    return;
  }
  ERR_clear_error();
  while (len > 0) {
    int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
    int n = SSL_write(c->ssl, data, chunk);
    if (n <= 0) {
      char msg[256];
      tls_error_text(msg, sizeof msg);
      conn_fail(c, KV_EPROTO, 0, "TLS write to %s failed: %s", c->st->endpoint,
                msg);
      return;
    }
    data += n;
    len -= (size_t)n;
  }
  tls_flush(c);
}

/* Write every queued command (the prepare handle calls it once a turn). */
static void flush(kv__redis_t *st) {
  kv__redis_conn_t *c = st->conn;
  size_t len = st->out_len;
  if (c == NULL || st->state != KV__REDIS_READY || len == 0) return;
  st->out_len = 0;
  st->fifo_sent = st->fifo_n;
  conn_write(c, st->out, len);
  if (st->out_cap > OUT_KEEP_MAX) {
    kv_free(st->out);
    st->out = NULL;
    st->out_cap = 0;
  }
}

static void teardown(kv__redis_t *st);
static int only_ignored(kv__redis_t *st);

static void on_prepare(uv_prepare_t *h) {
  kv__redis_t *st = h->data;
  flush(st);
  if (st->closing && !st->torn_down) {
    if (st->fifo_n == 0 || st->state != KV__REDIS_READY || only_ignored(st)) {
      if (st->fifo_n != 0)
        kv__redis_disconnect(
            st, KV_ECANCELED,
            "the store was closed before the connection to the "
            "server was ready");
      teardown(st);
      return;
    }
    return; /* draining: replies still to come */
  }
  if (st->out_len == 0 || st->state != KV__REDIS_READY) uv_prepare_stop(h);
}

static void kick(kv__redis_t *st) {
  if (!st->torn_down && !uv_is_active((uv_handle_t *)&st->prep))
    uv_prepare_start(&st->prep, on_prepare);
}

/* Raw requests' callbacks, from an idle handle (as the core delivers
 * kvio requests). The handle stops on the turn after the last delivery, so
 * the turn that delivers does not block in poll (a caller running the loop
 * with UV_RUN_ONCE sees its callback). */
static void on_idle(uv_idle_t *h) {
  kv__redis_t *st = h->data;
  if (st->raw_done == NULL) {
    uv_idle_stop(h);
    return;
  }
  kv__redis_deliver_raw(st);
}

void kv__redis_kick(kv__redis_t *st) {
  if (!st->torn_down && !uv_is_active((uv_handle_t *)&st->idle))
    uv_idle_start(&st->idle, on_idle);
}

void kv__redis_ignore_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                            kv_redis_reply_t *reply, int err, const char *msg) {
  (void)st, (void)p, (void)reply, (void)err, (void)msg;
}

void kv__redis_cancel_fifo(kv__redis_t *st, kv__redis_reply_fn fn,
                           const char *msg) {
  kv__redis_fail_fifo(st, fn, KV_ECANCELED, msg);
}

void kv__redis_fail_fifo(kv__redis_t *st, kv__redis_reply_fn fn, int err,
                         const char *msg) {
  for (size_t i = 0; i < st->fifo_n; i++) {
    kv__redis_pend_t *e = fifo_at(st, i);
    if (e->fn != fn) continue;
    e->fn = kv__redis_ignore_reply;
    fn(st, e, NULL, err, msg);
  }
}

/* Whether every command still awaiting a reply was cancelled (its reply
 * is only to be dropped): then a closing store need not wait for it. */
static int only_ignored(kv__redis_t *st) {
  for (size_t i = 0; i < st->fifo_n; i++)
    if (fifo_at(st, i)->fn != kv__redis_ignore_reply) return 0;
  return 1;
}

static int out_reserve(kv__redis_t *st, size_t len) {
  if (st->out_len + len > st->out_cap) {
    size_t cap = st->out_cap ? st->out_cap : 4096;
    char *p;
    while (cap < st->out_len + len)
      cap *= 2;
    p = kv_realloc(st->out, cap);
    if (p == NULL) return KV_ENOMEM;
    st->out = p;
    st->out_cap = cap;
  }
  return 0;
}

/* The bytes are already in st->out: add the FIFO entry. */
static int queue_entry(kv__redis_t *st, kv__redis_reply_fn fn, void *ctx,
                       uint64_t tag) {
  kv__redis_pend_t e;
  e.fn = fn;
  e.ctx = ctx;
  e.tag = tag;
  e.deadline = st->timeout_ms ? kv__redis_now_ms() + st->timeout_ms : 0;
  if (fifo_push(st, &e) != 0) return KV_ENOMEM;
  st->stats.commands++;
  if (st->state == KV__REDIS_READY) kick(st);
  if (!uv_is_active((uv_handle_t *)&st->timer)) timer_update(st);
  return 0;
}

int kv__redis_queue(kv__redis_t *st, const char *cmd, size_t len,
                    kv__redis_reply_fn fn, void *ctx, uint64_t tag) {
  int rc;
  if (out_reserve(st, len) != 0) return KV_ENOMEM;
  if ((rc = queue_entry(st, fn, ctx, tag)) != 0) return rc;
  memcpy(st->out + st->out_len, cmd, len);
  st->out_len += len;
  return 0;
}

/* "<c><decimal>\r\n" at o; returns the end. */
static char *put_header(char *o, char c, size_t v) {
  char tmp[24];
  size_t n = 0;
  *o++ = c;
  do
    tmp[n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  while (n > 0)
    *o++ = tmp[--n];
  *o++ = '\r';
  *o++ = '\n';
  return o;
}

int kv__redis_queue_argv(kv__redis_t *st, size_t argc, const char *const *argv,
                         const size_t *argvlen, kv__redis_reply_fn fn,
                         void *ctx, uint64_t tag) {
  size_t need = 24; /* "*N\r\n" */
  char *o;
  int rc;
  for (size_t i = 0; i < argc; i++)
    need += 24 + argvlen[i] + 2;
  if (out_reserve(st, need) != 0) return KV_ENOMEM;
  if ((rc = queue_entry(st, fn, ctx, tag)) != 0) return rc;
  o = put_header(st->out + st->out_len, '*', argc);
  for (size_t i = 0; i < argc; i++) {
    o = put_header(o, '$', argvlen[i]);
    memcpy(o, argv[i], argvlen[i]);
    o += argvlen[i];
    *o++ = '\r';
    *o++ = '\n';
  }
  st->out_len = (size_t)(o - st->out);
  return 0;
}

int kv__redis_write_argv(kv__redis_t *st, size_t argc, const char *const *argv,
                         const size_t *argvlen) {
  size_t need = 24;
  char *o;
  for (size_t i = 0; i < argc; i++)
    need += 24 + argvlen[i] + 2;
  if (out_reserve(st, need) != 0) return KV_ENOMEM;
  o = put_header(st->out + st->out_len, '*', argc);
  for (size_t i = 0; i < argc; i++) {
    o = put_header(o, '$', argvlen[i]);
    memcpy(o, argv[i], argvlen[i]);
    o += argvlen[i];
    *o++ = '\r';
    *o++ = '\n';
  }
  st->out_len = (size_t)(o - st->out);
  st->stats.commands++;
  if (st->state == KV__REDIS_READY) kick(st);
  return 0;
}

/* ---- Failing and timing out ---------------------------------------------- */

/* Fail every pending command: the timed-out ones (deadline passed) with
 * KV_ETIMEDOUT when `timed_out`, the others with err. The FIFO is detached
 * first, so handlers may queue new commands (on a new connection). */
static void fail_all(kv__redis_t *st, int err, int timed_out, const char *msg) {
  kv__redis_pend_t *v = st->fifo;
  size_t head = st->fifo_head, n = st->fifo_n, mask = st->fifo_cap - 1;
  uint64_t now = kv__redis_now_ms();
  char tmsg[160];
  st->fifo = NULL;
  st->fifo_cap = st->fifo_head = st->fifo_n = st->fifo_sent = 0;
  st->out_len = 0;
  snprintf(tmsg, sizeof tmsg, "no reply from %s within %.3f s", st->endpoint,
           (double)st->timeout_ms / 1000.0);
  for (size_t i = 0; i < n; i++) {
    kv__redis_pend_t e = v[(head + i) & mask];
    if (timed_out && e.deadline != 0 && e.deadline <= now)
      e.fn(st, &e, NULL, KV_ETIMEDOUT, tmsg);
    else
      e.fn(st, &e, NULL, err, msg);
  }
  kv_free(v);
  timer_update(st);
}

static void conn_release(kv__redis_conn_t *c);

static void conn_fail(kv__redis_conn_t *c, int err, int timed_out,
                      const char *fmt, ...) {
  kv__redis_t *st = c->st;
  va_list ap;
  if (!c->attached) return;
  c->attached = 0;
  st->conn = NULL;
  va_start(ap, fmt);
  vsnprintf(st->last_msg, sizeof st->last_msg, fmt, ap);
  va_end(ap);
  st->last_err = err;
  if (c->was_ready || err == KV_ECANCELED) {
    st->state = KV__REDIS_DOWN; /* reconnect at once on the next command */
    st->attempts = 0;
  } else {
    uint64_t wait = BACKOFF_MIN_MS;
    for (int i = 0; i < st->attempts && wait < BACKOFF_MAX_MS; i++)
      wait *= 2;
    if (wait > BACKOFF_MAX_MS) wait = BACKOFF_MAX_MS;
    st->attempts++;
    st->stats.connect_failures++;
    st->state = KV__REDIS_BACKOFF;
    st->retry_at = kv__redis_now_ms() + wait;
  }
  conn_release(c);
  {
    char msg[sizeof st->last_msg];
    memcpy(msg, st->last_msg, sizeof msg);
    fail_all(st, err, timed_out, msg);
    if (st->on_down != NULL && !st->torn_down) st->on_down(st, err, msg);
  }
  if (st->closing) kick(st);
}

void kv__redis_disconnect(kv__redis_t *st, int err, const char *msg) {
  if (st->conn != NULL) {
    conn_fail(st->conn, err, 0, "%s", msg);
  } else if (st->fifo_n != 0) {
    fail_all(st, err, 0, msg);
  }
}

static void on_timer(uv_timer_t *t) {
  kv__redis_t *st = t->data;
  uint64_t now = kv__redis_now_ms();
  if (st->fifo_n != 0 && st->timeout_ms != 0 &&
      fifo_at(st, 0)->deadline <= now) {
    if (st->conn != NULL)
      conn_fail(st->conn, KV_ECONN, 1,
                "connection to %s reset: a command before this one timed out "
                "after %.3f s",
                st->endpoint, (double)st->timeout_ms / 1000.0);
    else
      fail_all(st, KV_ETIMEDOUT, 1, "timed out");
    return;
  }
  timer_update(st);
}

/* Arm the timer for the oldest command (a long idle period without a
 * timeout: it only keeps the loop alive), or stop it when nothing waits. */
static void timer_update(kv__redis_t *st) {
  uint64_t due = IDLE_TIMER_MS, now;
  if (st->torn_down) return;
  if (st->fifo_n == 0) {
    uv_timer_stop(&st->timer);
    return;
  }
  now = kv__redis_now_ms();
  if (st->timeout_ms != 0) {
    uint64_t d = fifo_at(st, 0)->deadline;
    due = d > now ? d - now : 0;
  }
  uv_timer_start(&st->timer, on_timer, due, 0);
}

/* ---- Reading ------------------------------------------------------------- */

static void hello_reply(kv__redis_conn_t *c, kv_redis_reply_t *r) {
  kv__redis_t *st = c->st;
  int kind = c->hello_kind[0];
  c->hello_kind[0] = c->hello_kind[1];
  c->hello_left--;
  if (r->type == KV_REDIS_REPLY_ERROR) {
    if (kind == HELLO_AUTH)
      conn_fail(c, KV_EAUTH, 0, "authentication%s%s to %s failed: %s",
                st->user ? " as " : "", st->user ? st->user : "", st->endpoint,
                r->str);
    else
      conn_fail(c, kv__redis_error_code(r->str, r->len), 0,
                "SELECT %d on %s failed: %s", st->db, st->endpoint, r->str);
    return;
  }
  if (c->hello_left == 0) {
    st->state = KV__REDIS_READY;
    c->was_ready = 1;
    st->attempts = 0;
    st->stats.connects++;
    if (st->on_ready != NULL) st->on_ready(st);
    if (st->out_len) kick(st);
  }
}

static void dispatch(kv__redis_conn_t *c, kv_redis_reply_t *r) {
  kv__redis_t *st = c->st;
  kv__redis_pend_t e;
  st->stats.replies++;
  if (st->state == KV__REDIS_HELLO && c->hello_left > 0) {
    hello_reply(c, r);
    kv__redis_reply_free(r);
    return;
  }
  if (st->on_push != NULL) { /* a subscriber: no FIFO */
    st->on_push(st, r);
    kv__redis_reply_free(r);
    return;
  }
  if (st->fifo_sent == 0) {
    kv__redis_reply_free(r);
    conn_fail(c, KV_EPROTO, 0, "unexpected reply from %s", st->endpoint);
    return;
  }
  e = *fifo_at(st, 0);
  st->fifo_head = (st->fifo_head + 1) & (st->fifo_cap - 1);
  st->fifo_n--;
  st->fifo_sent--;
  e.fn(st, &e, r, 0, NULL);
  kv__redis_reply_free(r);
  if (st->fifo_n == 0) timer_update(st);
}

static void process_replies(kv__redis_conn_t *c) {
  while (c->attached) {
    void *reply = NULL;
    if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
      conn_fail(c, KV_EPROTO, 0, "protocol error from %s: %s", c->st->endpoint,
                c->reader->errstr);
      return;
    }
    if (reply == NULL) return;
    dispatch(c, reply);
  }
}

static void hello_start(kv__redis_conn_t *c);

static void tls_input(kv__redis_conn_t *c, const char *data, size_t len) {
  kv__redis_t *st = c->st;
  char plain[16384];
  int n;
  ERR_clear_error();
  if (BIO_write(c->rbio, data, (int)len) != (int)len) {
    conn_fail(c, KV_ENOMEM, 0, "out of memory");
    return;
  }
  if (!c->tls_done) {
    int rc = SSL_do_handshake(c->ssl);
    tls_flush(c);
    if (!c->attached) return;
    if (rc != 1) {
      int e = SSL_get_error(c->ssl, rc);
      long v = SSL_get_verify_result(c->ssl);
      char msg[256];
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
      if (v != X509_V_OK) {
        conn_fail(c, KV_EAUTH, 0,
                  "TLS handshake with %s failed: certificate verification "
                  "failed: %s",
                  st->endpoint, X509_verify_cert_error_string(v));
        return;
      }
      tls_error_text(msg, sizeof msg);
      conn_fail(c, KV_EPROTO, 0, "TLS handshake with %s failed: %s",
                st->endpoint, msg);
      return;
    }
    c->tls_done = 1;
    hello_start(c);
    if (!c->attached) return;
  }
  for (;;) {
    n = SSL_read(c->ssl, plain, sizeof plain);
    if (n <= 0) break;
    if (redisReaderFeed(c->reader, plain, (size_t)n) != REDIS_OK) {
      conn_fail(c, KV_ENOMEM, 0, "out of memory");
      return;
    }
  }
  {
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_ZERO_RETURN) {
      process_replies(c);
      if (c->attached)
        conn_fail(c, KV_ECONN, 0, "%s closed the TLS connection", st->endpoint);
      return;
    }
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      char msg[256];
      tls_error_text(msg, sizeof msg);
      conn_fail(c, KV_EPROTO, 0, "TLS error from %s: %s", st->endpoint, msg);
      return;
    }
  }
  tls_flush(c);
  if (c->attached) process_replies(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  kv__redis_conn_t *c = h->data;
  (void)suggested;
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  kv__redis_conn_t *c = s->data;
  kv__redis_t *st = c->st;
  if (!c->attached) return;
  if (nread < 0) {
    if (nread == UV_EOF)
      conn_fail(c, KV_ECONN, 0, "%s closed the connection", st->endpoint);
    else
      conn_fail(c, KV_ECONN, 0, "read from %s failed: %s", st->endpoint,
                uv_strerror((int)nread));
    return;
  }
  if (nread == 0) return;
  st->stats.reads++;
  st->stats.bytes_read += (uint64_t)nread;
  if (c->ssl) {
    tls_input(c, buf->base, (size_t)nread);
    return;
  }
  if (redisReaderFeed(c->reader, buf->base, (size_t)nread) != REDIS_OK) {
    conn_fail(c, KV_ENOMEM, 0, "out of memory");
    return;
  }
  process_replies(c);
}

/* ---- Connecting ---------------------------------------------------------- */

/* AUTH and SELECT, before any user command; ready at once without them. */
static void hello_start(kv__redis_conn_t *c) {
  kv__redis_t *st = c->st;
  const char *argv[3];
  size_t argl[3];
  int argc = 0;
  char *cmd;
  int len;
  char dbs[16];
  c->hello_left = 0;
  st->state = KV__REDIS_HELLO;
  if (st->password != NULL) {
    argv[argc] = "AUTH", argl[argc++] = 4;
    if (st->user != NULL)
      argv[argc] = st->user, argl[argc++] = strlen(st->user);
    argv[argc] = st->password, argl[argc++] = strlen(st->password);
    len = redisFormatCommandArgv(&cmd, argc, argv, argl);
    if (len < 0) {
      conn_fail(c, KV_ENOMEM, 0, "out of memory");
      return;
    }
    c->hello_kind[c->hello_left++] = HELLO_AUTH;
    conn_write(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (!c->attached) return;
  }
  if (st->db != 0) {
    snprintf(dbs, sizeof dbs, "%d", st->db);
    argv[0] = "SELECT", argl[0] = 6;
    argv[1] = dbs, argl[1] = strlen(dbs);
    len = redisFormatCommandArgv(&cmd, 2, argv, argl);
    if (len < 0) {
      conn_fail(c, KV_ENOMEM, 0, "out of memory");
      return;
    }
    c->hello_kind[c->hello_left++] = HELLO_SELECT;
    conn_write(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (!c->attached) return;
  }
  if (c->hello_left == 0) {
    st->state = KV__REDIS_READY;
    c->was_ready = 1;
    st->attempts = 0;
    st->stats.connects++;
    if (st->on_ready != NULL) st->on_ready(st);
    if (st->out_len) kick(st);
  }
}

static void tls_start(kv__redis_conn_t *c) {
  kv__redis_t *st = c->st;
  char msg[256];
  int rc;
  ERR_clear_error();
  c->ssl = SSL_new(st->ssl_ctx);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
    if (c->ssl == NULL) {
      BIO_free(c->rbio);
      BIO_free(c->wbio);
    }
    c->rbio = c->wbio = NULL;
    conn_fail(c, KV_ENOMEM, 0, "out of memory (TLS)");
    return;
  }
  SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns both BIOs now */
  SSL_set_connect_state(c->ssl);
  if (st->verify_name) {
    int ok = st->tls_name_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(
                                      SSL_get0_param(c->ssl), st->tls_name)
                                : SSL_set1_host(c->ssl, st->tls_name);
    if (ok != 1) {
      tls_error_text(msg, sizeof msg);
      conn_fail(c, KV_EINVAL, 0, "TLS: cannot check the name '%s': %s",
                st->tls_name, msg);
      return;
    }
  }
  if (!st->tls_name_is_ip) SSL_set_tlsext_host_name(c->ssl, st->tls_name);
  st->state = KV__REDIS_TLS;
  rc = SSL_do_handshake(c->ssl);
  if (rc != 1) {
    int e = SSL_get_error(c->ssl, rc);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      tls_error_text(msg, sizeof msg);
      conn_fail(c, KV_EPROTO, 0, "TLS handshake with %s failed: %s",
                st->endpoint, msg);
      return;
    }
  }
  tls_flush(c);
}

static void on_connect(uv_connect_t *req, int status) {
  kv__redis_conn_t *c = req->data;
  kv__redis_t *st = c->st;
  int rc;
  if (!c->attached) return;
  if (status < 0) {
    conn_fail(c, KV_ECONN, 0, "cannot connect to %s: %s", st->endpoint,
              uv_strerror(status));
    return;
  }
  if (st->sock == NULL) {
    uv_tcp_nodelay(&c->h.tcp, 1);
    uv_tcp_keepalive(&c->h.tcp, 1, 60);
  }
  rc = uv_read_start(&c->h.stream, on_alloc, on_read);
  if (rc < 0) {
    conn_fail(c, KV_ECONN, 0, "cannot read from %s: %s", st->endpoint,
              uv_strerror(rc));
    return;
  }
  if (st->tls)
    tls_start(c);
  else
    hello_start(c);
}

static int tcp_connect(kv__redis_conn_t *c, const struct sockaddr *addr) {
  int rc = uv_tcp_init(c->st->base.loop, &c->h.tcp);
  if (rc < 0) return rc;
  c->handle_init = 1;
  c->h.handle.data = c;
  /* only pending commands keep the loop alive (or a subscriber) */
  if (!c->st->keep_loop_alive) uv_unref(&c->h.handle);
  return uv_tcp_connect(&c->connect_req, &c->h.tcp, addr, on_connect);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  kv__redis_conn_t *c = req->data;
  kv__redis_t *st = c->st;
  int rc;
  c->gai_pending = 0;
  if (!c->attached) {
    uv_freeaddrinfo(res);
    conn_release(c);
    return;
  }
  if (status < 0 || res == NULL) {
    uv_freeaddrinfo(res);
    conn_fail(c, KV_ECONN, 0, "cannot resolve '%s': %s", st->host,
              uv_strerror(status < 0 ? status : UV_EAI_NONAME));
    return;
  }
  rc = tcp_connect(c, res->ai_addr);
  uv_freeaddrinfo(res);
  if (rc < 0)
    conn_fail(c, KV_ECONN, 0, "cannot connect to %s: %s", st->endpoint,
              uv_strerror(rc));
}

static void on_conn_closed(uv_handle_t *h) {
  kv__redis_conn_t *c = h->data;
  c->handle_init = 0;
  conn_release(c);
}

/* Release a detached connection: close its handle, then free it (once its
 * DNS request, if any, has come back). */
static void conn_release(kv__redis_conn_t *c) {
  kv__redis_t *st = c->st;
  if (c->gai_pending) return; /* on_resolved comes back here */
  if (c->handle_init) {
    if (!uv_is_closing(&c->h.handle)) uv_close(&c->h.handle, on_conn_closed);
    return;
  }
  if (c->ssl) SSL_free(c->ssl);
  if (c->reader) redisReaderFree(c->reader);
  kv_free(c);
  st->nhandles--;
  if (st->torn_down && st->nhandles == 0) teardown(st);
}

static int conn_start(kv__redis_t *st) {
  kv__redis_conn_t *c = kv_calloc(1, sizeof *c);
  struct sockaddr_storage ss;
  int rc = 0;
  if (c == NULL ||
      (c->reader = redisReaderCreateWithFunctions(&reply_fns)) == NULL) {
    kv_free(c);
    snprintf(st->last_msg, sizeof st->last_msg, "out of memory");
    return KV_ENOMEM;
  }
  c->st = st;
  c->attached = 1;
  c->connect_req.data = c;
  st->nhandles++;
  st->conn = c;
  st->state = KV__REDIS_CONNECTING;
  if (st->sock != NULL) {
    rc = uv_pipe_init(st->base.loop, &c->h.pipe, 0);
    if (rc == 0) {
      c->handle_init = 1;
      c->h.handle.data = c;
      if (!st->keep_loop_alive) uv_unref(&c->h.handle);
      uv_pipe_connect(&c->connect_req, &c->h.pipe, st->sock, on_connect);
    }
  } else if (uv_ip4_addr(st->host, st->port, (struct sockaddr_in *)&ss) == 0 ||
             uv_ip6_addr(st->host, st->port, (struct sockaddr_in6 *)&ss) == 0) {
    rc = tcp_connect(c, (const struct sockaddr *)&ss);
  } else {
    struct addrinfo hints;
    char port[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof port, "%d", st->port);
    c->gai.data = c;
    rc = uv_getaddrinfo(st->base.loop, &c->gai, on_resolved, st->host, port,
                        &hints);
    if (rc == 0) c->gai_pending = 1;
  }
  if (rc < 0) {
    conn_fail(c, KV_ECONN, 0, "cannot connect to %s: %s", st->endpoint,
              uv_strerror(rc));
    return st->last_err;
  }
  return 0;
}

int kv__redis_ready(kv__redis_t *st) {
  if (st->state == KV__REDIS_BACKOFF) {
    if (kv__redis_now_ms() < st->retry_at) return st->last_err;
    st->state = KV__REDIS_DOWN;
  }
  if (st->state == KV__REDIS_DOWN) return conn_start(st);
  return 0;
}

/* ---- Lifetime ------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h) {
  kv__redis_t *st = h->data;
  st->nhandles--;
  if (st->nhandles == 0) teardown(st);
}

int kv__redis_init_handles(kv__redis_t *st) {
  uv_timer_init(st->base.loop, &st->timer);
  uv_prepare_init(st->base.loop, &st->prep);
  uv_idle_init(st->base.loop, &st->idle);
  st->timer.data = st;
  st->prep.data = st;
  st->idle.data = st;
  st->nhandles = 3;
  return 0;
}

/* First call: drop the connection and close the handles. Last call (every
 * handle and connection released): free and tell the core. */
static void teardown(kv__redis_t *st) {
  if (!st->torn_down) {
    st->torn_down = 1;
    if (st->conn != NULL)
      conn_fail(st->conn, KV_ECANCELED, 0, "the store was closed");
    uv_close((uv_handle_t *)&st->timer, on_handle_closed);
    uv_close((uv_handle_t *)&st->prep, on_handle_closed);
    uv_close((uv_handle_t *)&st->idle, on_handle_closed);
    return;
  }
  if (st->nhandles != 0) return;
  kv__redis_deliver_raw(st); /* every raw callback before the close */
  kv_free(st->fifo);
  kv_free(st->out);
  kv_free(st->args);
  kv_free(st->argv);
  kv_free(st->argvlen);
  kv_free(st->scratch);
  st->fifo = NULL;
  st->out = st->scratch = NULL;
  st->args = NULL;
  st->argv = NULL;
  st->argvlen = NULL;
  if (st->parent != NULL) { /* a child: the configuration is the parent's */
    kv__redis_t *parent = st->parent;
    st->on_released(st); /* frees st */
    parent->nhandles--;
    if (parent->torn_down && parent->nhandles == 0) teardown(parent);
    return;
  }
  kv__redis_pool_free(st);
  kv_free(st->lanes);
  kv_free(st->host);
  kv_free(st->sock);
  kv_free(st->endpoint);
  kv_free(st->user);
  kv_free(st->password);
  kv_free(st->prefix);
  kv_free(st->tls_name);
  if (st->ssl_ctx) SSL_CTX_free(st->ssl_ctx);
  kv_store_closed(&st->base);
}

void kv__redis_close(kv__redis_t *st) {
  st->closing = 1;
  kick(st); /* the prepare handle drains, then tears down */
}
