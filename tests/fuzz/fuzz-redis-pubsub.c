/* libFuzzer target: a Redis subscriber's message path
 * (src/stores/redis_pubsub.c on redis_conn.c): whatever a server sends on a
 * subscriber's connection — "message", "pmessage", "subscribe",
 * "unsubscribe" arrays, well formed or not, nested, nil, errors, integers,
 * split anywhere — goes through hiredis's reader and the subscriber's
 * parser to the program's callback.
 *
 *   input = flags, reply bytes
 *
 * The fake server (fake-server.c, as in fuzz-redis-reply.c: a unix socket
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz/fake-server.h"
#include "internal.h"
#include "kvio/redis.h"

#pragma weak kv_redis_subscriber

static const char *sock_path;

typedef struct {
  uv_loop_t loop;
  fake_server_t server;
  kv_store_t *store;
  kv_redis_sub_t *sub;
  int flags;
  int events, sub_closed, closed, closing;
  unsigned long messages;
} fx_t;

static void check_str(const char *p, size_t n) {
  if (p == NULL || p[n] != '\0') abort();
}

static void store_closed(kv_store_t *s) {
  fx_t *fx = kv_store_loop(s)->data;
  if (fx->sub_closed != 1) abort(); /* the subscriber's last event first */
  fx->closed++;
  fake_server_stop(&fx->server);
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

static int setup(void) {
  (void)kv_schemes(); /* pulls in the stores (weak reference above) */
  if (kv_redis_subscriber == NULL) return -1;
  sock_path = fake_server_unix_path("redis-pubsub");
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
  if (uv_loop_init(&fx->loop) != 0) abort();
  fx->loop.data = fx;
  fake_server_start_unix(&fx->server, &fx->loop, sock_path,
                         (const char *)data + 1, size - 1);
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
