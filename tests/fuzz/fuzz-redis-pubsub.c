/* libFuzzer target: a Redis subscriber's message path
 * (src/stores/redis_pubsub.c on redis_conn.c): whatever a server sends on a
 * subscriber's connection — "message", "pmessage", "subscribe",
 * "unsubscribe" arrays, well formed or not, nested, nil, errors, integers,
 * split anywhere — goes through hiredis's reader and the subscriber's
 * parser to the program's callback.
 *
 *   input = flags, reply bytes
 *
 * The fake server (the harness of fuzz-redis-reply.c, copied: a unix socket
 * on the same loop) answers each write of the subscriber's connection with
 * the next segment of the reply bytes (segments separated by "\n--\n") and
 * hangs up after the last one. The subscriber subscribes to two channels
 * and a pattern (AUTH and SELECT in front when the flags say so); its
 * callback subscribes and unsubscribes as messages come, so that it writes
 * again. When the connection is lost it closes the subscriber and the
 * store. Then:
 *  - every event is well formed: a MESSAGE has a NUL-terminated channel and
 *    payload of the lengths given, a pattern only when by pattern; DOWN has
 *    a negative status and a message; KV_REDIS_SUB_CLOSED comes exactly
 *    once, last, and before the store's close callback;
 *  - the store closes and the loop ends with every handle closed (ASan and
 *    LSan watch the memory). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "kvio/redis.h"

#pragma weak kv_redis_subscriber

/* Separates the answers to successive writes of the store. */
#define SEP "\n--\n"

static char dir[64];
static char sock_path[128];

typedef struct {
  uv_loop_t loop;
  uv_pipe_t listener;
  uv_pipe_t client;
  uv_idle_t idle;   /* keeps poll from blocking while the client is up */
  uv_check_t check; /* notices a client that waits for more answers */
  int listening, have_client, hung_up, writes, quiet;
  size_t pos;                /* reply bytes sent so far */
  unsigned long reads, seen; /* server reads, and as of the last check */
  const char *reply;
  size_t reply_len;
  kv_store_t *store;
  kv_redis_sub_t *sub;
  int flags;
  int events, sub_closed, closed, closing;
  unsigned long messages;
} fx_t;

static void on_closed_handle(uv_handle_t *h) {
  (void)h;
}

static void server_stop(fx_t *fx) {
  if (!uv_is_closing((uv_handle_t *)&fx->idle)) {
    uv_close((uv_handle_t *)&fx->idle, on_closed_handle);
    uv_close((uv_handle_t *)&fx->check, on_closed_handle);
  }
  if (fx->listening) {
    fx->listening = 0;
    uv_close((uv_handle_t *)&fx->listener, on_closed_handle);
  }
  if (fx->have_client) {
    fx->have_client = 0;
    uv_close((uv_handle_t *)&fx->client, on_closed_handle);
  }
}

static void hang_up(fx_t *fx) {
  if (!fx->have_client) return;
  fx->have_client = 0;
  fx->hung_up = 1;
  uv_close((uv_handle_t *)&fx->client, on_closed_handle);
}

static void on_written(uv_write_t *w, int status) {
  fx_t *fx = w->data;
  (void)status;
  free(w);
  if (--fx->writes == 0 && fx->pos >= fx->reply_len) hang_up(fx);
}

/* After each loop turn: a client that has been quiet for a few turns with
 * nothing left to write to it waits for answers that will not come (the
 * reply bytes ran out mid-exchange): hang up, so that it fails now. Writes
 * on loopback are readable at once, so a few turns are plenty. */
static void on_check(uv_check_t *h) {
  fx_t *fx = h->data;
  if (!fx->have_client) {
    uv_idle_stop(&fx->idle);
    uv_check_stop(&fx->check);
    return;
  }
  if (fx->writes > 0 || fx->reads != fx->seen) {
    fx->seen = fx->reads;
    fx->quiet = 0;
  } else if (++fx->quiet >= 3) {
    hang_up(fx);
  }
}

static void on_idle(uv_idle_t *h) {
  (void)h;
}

static void srv_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf) {
  static char rbuf[65536];
  (void)h;
  (void)n;
  *buf = uv_buf_init(rbuf, sizeof rbuf);
}

/* Each time the store writes, answer with the next segment of the reply
 * bytes (segments end at SEP); after the last one, hang up. */
static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  fx_t *fx = s->data;
  const char *start, *sep;
  size_t len;
  uv_write_t *w;
  uv_buf_t b;
  (void)buf;
  if (n == 0) return;
  fx->reads++;
  if (n < 0) { /* the store hung up */
    if (fx->have_client) {
      fx->have_client = 0;
      uv_close((uv_handle_t *)&fx->client, on_closed_handle);
    }
    return;
  }
  if (fx->pos >= fx->reply_len) {
    if (fx->writes == 0) hang_up(fx);
    return;
  }
  start = fx->reply + fx->pos;
  sep = memmem(start, fx->reply_len - fx->pos, SEP, sizeof SEP - 1);
  len = sep ? (size_t)(sep - start) : fx->reply_len - fx->pos;
  fx->pos += len + (sep ? sizeof SEP - 1 : 0);
  if (len == 0) {
    if (fx->pos >= fx->reply_len && fx->writes == 0) hang_up(fx);
    return;
  }
  if ((w = malloc(sizeof *w)) == NULL) abort();
  w->data = fx;
  b = uv_buf_init((char *)(uintptr_t)start, (unsigned)len);
  if (uv_write(w, s, &b, 1, on_written) != 0) {
    free(w);
    hang_up(fx);
    return;
  }
  fx->writes++;
}

static void on_connection(uv_stream_t *l, int status) {
  fx_t *fx = l->data;
  if (status != 0 || fx->have_client) return;
  uv_pipe_init(&fx->loop, &fx->client, 0);
  fx->client.data = fx;
  fx->have_client = 1;
  if (uv_accept(l, (uv_stream_t *)&fx->client) != 0 ||
      uv_read_start((uv_stream_t *)&fx->client, srv_alloc, srv_read) != 0) {
    fx->have_client = 0;
    uv_close((uv_handle_t *)&fx->client, on_closed_handle);
  }
  if (fx->have_client) {
    uv_idle_start(&fx->idle, on_idle);
    uv_check_start(&fx->check, on_check);
  }
  /* One connection: a reconnect finds nobody (and fails at once). */
  fx->listening = 0;
  uv_close((uv_handle_t *)&fx->listener, on_closed_handle);
}

static void check_str(const char *p, size_t n) {
  if (p == NULL || p[n] != '\0') abort();
}

static void store_closed(kv_store_t *s) {
  fx_t *fx = kv_store_loop(s)->data;
  if (fx->sub_closed != 1) abort(); /* the subscriber's last event first */
  fx->closed++;
  server_stop(fx);
}

static void close_all(fx_t *fx) {
  if (fx->closing) return;
  fx->closing = 1;
  kv_redis_sub_close(fx->sub);
  kv_store_close(fx->store, store_closed);
}

static void on_event(kv_redis_sub_t *sub, const kv_redis_msg_t *m) {
  fx_t *fx = kv_redis_sub_data(sub);
  static const char *more[] = {"c3", "c1"};
  if (fx->sub_closed) abort(); /* nothing after CLOSED */
  fx->events++;
  switch (m->event) {
  case KV_REDIS_SUB_MESSAGE:
    check_str(m->channel, m->channel_len);
    check_str(m->payload, m->payload_len);
    if (m->pattern) check_str(m->pattern, m->pattern_len);
    /* Write again now and then: the next segment answers. */
    if (++fx->messages % 3 == 1)
      kv_redis_sub_subscribe(sub, 1, more);
    else if (fx->messages % 3 == 2)
      kv_redis_sub_unsubscribe(sub, 1, more + 1);
    break;
  case KV_REDIS_SUB_SUBSCRIBED:
  case KV_REDIS_SUB_UNSUBSCRIBED:
    if (m->channel) check_str(m->channel, m->channel_len);
    if (m->pattern) check_str(m->pattern, m->pattern_len);
    if (m->channel && m->pattern) abort();
    break;
  case KV_REDIS_SUB_DOWN:
    if (m->status >= 0 || m->errmsg == NULL || m->errmsg[0] == '\0') abort();
    close_all(fx);
    break;
  case KV_REDIS_SUB_GAP:
    break;
  case KV_REDIS_SUB_CLOSED:
    fx->sub_closed++;
    break;
  default:
    abort();
  }
}

static void cleanup_dir(void) {
  unlink(sock_path);
  rmdir(dir);
}

static int setup(void) {
  (void)kv_schemes(); /* pulls in the stores (weak reference above) */
  if (kv_redis_subscriber == NULL) return -1;
  snprintf(dir, sizeof dir, "/tmp/kvio-fuzz-redis-pubsub-XXXXXX");
  if (mkdtemp(dir) == NULL) abort();
  snprintf(sock_path, sizeof sock_path, "%s/s", dir);
  atexit(cleanup_dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int state; /* 0: not set up; 1: ready; -1: no redis part */
  static const char *chans[] = {"c1", "c2"};
  static const char *pats[] = {"p*"};
  fx_t *fx;
  char url[512], err[512];
  if (state == 0) state = setup() == 0 ? 1 : -1;
  if (state < 0 || size < 1) return 0;
  fx = calloc(1, sizeof *fx);
  if (fx == NULL) abort();
  fx->flags = data[0];
  fx->reply = (const char *)data + 1;
  fx->reply_len = size - 1;
  if (uv_loop_init(&fx->loop) != 0) abort();
  fx->loop.data = fx;
  uv_idle_init(&fx->loop, &fx->idle);
  uv_check_init(&fx->loop, &fx->check);
  fx->idle.data = fx->check.data = fx;
  unlink(sock_path);
  if (uv_pipe_init(&fx->loop, &fx->listener, 0) != 0 ||
      uv_pipe_bind(&fx->listener, sock_path) != 0 ||
      uv_listen((uv_stream_t *)&fx->listener, 4, on_connection) != 0)
    abort();
  fx->listener.data = fx;
  fx->listening = 1;
  snprintf(url, sizeof url, "redis+unix://%s?timeout=1%s%s", sock_path,
           fx->flags & 1 ? "&password=pw" : "", fx->flags & 2 ? "&db=3" : "");
  if (kv_open_ex(&fx->loop, url, &fx->store, err, sizeof err) != 0) abort();
  if (kv_redis_subscriber(fx->store, on_event, fx, &fx->sub) != 0 ||
      kv_redis_sub_subscribe(fx->sub, 2, chans) != 0 ||
      kv_redis_sub_psubscribe(fx->sub, 1, pats) != 0)
    abort();
  if (fx->flags & 4) close_all(fx); /* closed before it ever connects */
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  if (fx->sub_closed != 1 || fx->closed != 1) abort();
  if (uv_loop_close(&fx->loop) != 0) abort();
  free(fx);
  return 0;
}
