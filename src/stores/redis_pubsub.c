/* Pub/Sub subscribers (kv_redis_subscriber): a connection of their own (a
 * child of the store, redis_pool.c) whose replies all go to on_push
 * instead of the FIFO: the server's "message", "pmessage", "subscribe" and
 * "unsubscribe" arrays (RESP2).
 *
 * The subscriber keeps the set of channels and patterns it was asked for.
 * Each time its connection becomes ready it sends SUBSCRIBE and PSUBSCRIBE
 * for the whole set; while ready, (un)subscribing sends just the change.
 * A lost connection is reported once (KV_REDIS_SUB_DOWN); the subscriber's
 * timer reconnects (at once, then with the connection's backoff: 50 ms
 * doubling to 1 s), and the first ready connection after a DOWN reports
 * KV_REDIS_SUB_GAP. The timer also keeps the loop alive while the
 * subscriber is open and not connected.
 *
 * Closing: the timer is closed, then the connection (redis_conn.c tears it
 * down); when the connection is released, KV_REDIS_SUB_CLOSED is delivered
 * and the subscriber freed. The store waits for it (the connection is one
 * of its handles). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "stores/redis_cluster.h"

#define IDLE_MS 3600000
#define ROUTE_POLL_MS 50 /* cluster / sentinel: asking for a node again */

typedef struct {
  char *name;
  size_t len;
  int pattern;
} sub_name_t;

struct kv_redis_sub_s {
  kv__redis_t *st;   /* the store (for a cluster or sentinel: the node) */
  kv_store_t *ha;    /* the cluster or sentinel store, or NULL */
  unsigned hint;     /* cluster: which primary (moves on when one fails) */
  kv__redis_t *conn; /* the subscriber's connection (NULL once released) */
  kv_redis_sub_cb cb;
  void *data;
  sub_name_t *names;
  size_t nnames, cap;
  uv_timer_t timer;
  int closing;
  int down;  /* DOWN reported, GAP not yet */
  int quiet; /* does not keep the loop alive */
  struct kv_redis_sub_s *prev, *next;
  kv_redis_sub_stats_t stats;
};

const struct kv_redis_sub_s *
kv__redis_sub_next(const struct kv_redis_sub_s *s) {
  return s->next;
}

void *kv_redis_sub_data(const kv_redis_sub_t *sub) {
  return sub->data;
}

static void deliver(kv_redis_sub_t *sub, kv_redis_msg_t *m) {
  sub->cb(sub, m);
}

/* ---- Sending ------------------------------------------------------------- */

/* Send CMD name... for the given names (or, names NULL, every name of the
 * kind in the set). Only on a ready connection. */
static int send_names(kv_redis_sub_t *sub, const char *cmd, int pattern, int n,
                      const char **names) {
  kv__redis_t *c = sub->conn;
  size_t argc = 1, cap = (size_t)(names ? n : (int)sub->nnames) + 1;
  const char **argv;
  size_t *argl;
  int rc;
  if (c == NULL || c->state != KV__REDIS_READY) return 0;
  argv = kv_malloc(cap * sizeof *argv);
  argl = kv_malloc(cap * sizeof *argl);
  if (argv == NULL || argl == NULL) {
    kv_free(argv);
    kv_free(argl);
    return KV_ENOMEM;
  }
  argv[0] = cmd, argl[0] = strlen(cmd);
  if (names != NULL) {
    for (int i = 0; i < n; i++)
      argv[argc] = names[i], argl[argc++] = strlen(names[i]);
  } else {
    for (size_t i = 0; i < sub->nnames; i++)
      if (sub->names[i].pattern == pattern)
        argv[argc] = sub->names[i].name, argl[argc++] = sub->names[i].len;
  }
  rc =
      argc > 1 || names != NULL ? kv__redis_write_argv(c, argc, argv, argl) : 0;
  kv_free(argv);
  kv_free(argl);
  return rc;
}

/* ---- Connection events --------------------------------------------------- */

static void on_timer(uv_timer_t *t);
static int move(kv_redis_sub_t *sub, kv__redis_t *to);

static void schedule(kv_redis_sub_t *sub, uint64_t ms) {
  if (!sub->closing) uv_timer_start(&sub->timer, on_timer, ms, 0);
}

static void on_ready(kv__redis_t *c) {
  kv_redis_sub_t *sub = c->owner;
  if (sub == NULL) return;
  sub->stats.connects++;
  uv_timer_stop(&sub->timer);
  if (send_names(sub, "SUBSCRIBE", 0, 0, NULL) != 0 ||
      send_names(sub, "PSUBSCRIBE", 1, 0, NULL) != 0) {
    kv__redis_disconnect(c, KV_ENOMEM, "out of memory");
    return;
  }
  if (sub->down) {
    kv_redis_msg_t m;
    sub->down = 0;
    sub->stats.gaps++;
    memset(&m, 0, sizeof m);
    m.event = KV_REDIS_SUB_GAP;
    deliver(sub, &m);
  }
}

static void report_down(kv_redis_sub_t *sub, int err, const char *msg) {
  if (!sub->down) {
    kv_redis_msg_t m;
    sub->down = 1;
    memset(&m, 0, sizeof m);
    m.event = KV_REDIS_SUB_DOWN;
    m.status = err;
    m.errmsg = msg;
    deliver(sub, &m);
  }
}

static void on_down(kv__redis_t *c, int err, const char *msg) {
  kv_redis_sub_t *sub = c->owner;
  uint64_t now = kv__redis_now_ms(), wait = 0;
  if (sub == NULL || sub->closing) return;
  if (sub->ha != NULL) { /* the node may be gone: the next one is asked for */
    kv__redis_route_failed(sub->ha, err);
    sub->hint++;
  }
  if (c->state == KV__REDIS_BACKOFF && c->retry_at > now)
    wait = c->retry_at - now;
  schedule(sub, wait);
  report_down(sub, err, msg);
}

/* Connect (again), or wait for the end of the backoff. The timer runs
 * while not connected; once connected it idles (keeping the loop alive is
 * then the connection's job). */
static void on_timer(uv_timer_t *t) {
  kv_redis_sub_t *sub = t->data;
  kv__redis_t *c = sub->conn;
  int rc;
  if (sub->closing || c == NULL) return;
  if (sub->ha != NULL && c->conn == NULL) { /* which node now? */
    kv__redis_t *node = NULL;
    const char *msg = NULL;
    rc = kv__redis_route(sub->ha, NULL, 0, sub->hint, NULL, &node, &msg);
    if (rc != 0) { /* not known yet: ask again soon */
      if (rc < 0) report_down(sub, rc, msg);
      schedule(sub, ROUTE_POLL_MS);
      return;
    }
    if (node != sub->st && move(sub, node) != 0) {
      schedule(sub, ROUTE_POLL_MS);
      return;
    }
    c = sub->conn;
  }
  if (c->conn != NULL) { /* connecting or connected */
    schedule(sub, IDLE_MS);
    return;
  }
  rc = kv__redis_ready(c); /* a failure comes back through on_down */
  if (rc != 0 && c->state == KV__REDIS_BACKOFF &&
      !uv_is_active((uv_handle_t *)t)) {
    uint64_t now = kv__redis_now_ms();
    schedule(sub, c->retry_at > now ? c->retry_at - now : 0);
  } else if (!uv_is_active((uv_handle_t *)t)) {
    schedule(sub, IDLE_MS);
  }
}

static int str_el(const kv_redis_reply_t *r) {
  return r != NULL && r->type == KV_REDIS_REPLY_STRING && r->str != NULL;
}

static int is(const kv_redis_reply_t *r, const char *what) {
  size_t n = strlen(what);
  return str_el(r) && r->len == n && memcmp(r->str, what, n) == 0;
}

/* A reply on the subscriber's connection. */
static void on_push(kv__redis_t *c, kv_redis_reply_t *r) {
  kv_redis_sub_t *sub = c->owner;
  kv_redis_msg_t m;
  kv_redis_reply_t **e = r->element;
  if (sub == NULL || sub->closing || r->type != KV_REDIS_REPLY_ARRAY ||
      r->elements < 3)
    return; /* PONG, an error reply to a refused command: nothing to say */
  memset(&m, 0, sizeof m);
  if (is(e[0], "message") && r->elements == 3 && str_el(e[1]) && str_el(e[2])) {
    m.event = KV_REDIS_SUB_MESSAGE;
    m.channel = e[1]->str, m.channel_len = e[1]->len;
    m.payload = e[2]->str, m.payload_len = e[2]->len;
  } else if (is(e[0], "pmessage") && r->elements == 4 && str_el(e[1]) &&
             str_el(e[2]) && str_el(e[3])) {
    m.event = KV_REDIS_SUB_MESSAGE;
    m.pattern = e[1]->str, m.pattern_len = e[1]->len;
    m.channel = e[2]->str, m.channel_len = e[2]->len;
    m.payload = e[3]->str, m.payload_len = e[3]->len;
  } else if ((is(e[0], "subscribe") || is(e[0], "psubscribe") ||
              is(e[0], "unsubscribe") || is(e[0], "punsubscribe")) &&
             r->elements == 3 && e[2]->type == KV_REDIS_REPLY_INTEGER) {
    int pat = e[0]->str[0] == 'p';
    m.event = e[0]->str[pat] == 's' ? KV_REDIS_SUB_SUBSCRIBED
                                    : KV_REDIS_SUB_UNSUBSCRIBED;
    if (str_el(e[1])) {
      if (pat)
        m.pattern = e[1]->str, m.pattern_len = e[1]->len;
      else
        m.channel = e[1]->str, m.channel_len = e[1]->len;
    } else if (e[1]->type != KV_REDIS_REPLY_NIL) {
      return;
    }
    m.count = e[2]->integer;
  } else {
    return;
  }
  if (m.event == KV_REDIS_SUB_MESSAGE) sub->stats.messages++;
  deliver(sub, &m);
}

/* ---- Lifetime ------------------------------------------------------------ */

static void sub_unlink(kv_redis_sub_t *sub) {
  kv__redis_t *st = sub->st;
  if (sub->prev)
    sub->prev->next = sub->next;
  else
    st->subs = sub->next;
  if (sub->next) sub->next->prev = sub->prev;
  sub->prev = sub->next = NULL;
}

static void sub_link(kv_redis_sub_t *sub, kv__redis_t *st) {
  sub->st = st;
  sub->prev = NULL;
  sub->next = st->subs;
  if (st->subs) st->subs->prev = sub;
  st->subs = sub;
}

static void on_released(kv__redis_t *c);

/* A connection of a subscriber on st (not connected yet). */
static kv__redis_t *conn_new(kv_redis_sub_t *sub, kv__redis_t *st) {
  kv__redis_t *c = kv__redis_child_new(st);
  if (c == NULL) return NULL;
  c->owner = sub;
  c->keep_loop_alive = !sub->quiet;
  c->timeout_ms = 0; /* no FIFO: nothing times out */
  c->on_ready = on_ready;
  c->on_down = on_down;
  c->on_push = on_push;
  c->on_released = on_released;
  return c;
}

static void retired_released(kv__redis_t *c) {
  kv_free(c);
}

/* Move to another node (cluster, sentinel): the old connection closes
 * (nothing it still says reaches the subscriber), a new one connects from
 * the timer. */
static int move(kv_redis_sub_t *sub, kv__redis_t *to) {
  kv__redis_t *old = sub->conn, *c = conn_new(sub, to);
  if (c == NULL) return KV_ENOMEM;
  old->owner = NULL;
  old->on_released = retired_released;
  sub_unlink(sub);
  sub_link(sub, to);
  sub->conn = c;
  kv__redis_child_close(old);
  return 0;
}

void kv__redis_subs_move(kv__redis_t *from, kv__redis_t *to) {
  kv_redis_sub_t *sub = from->subs, *next;
  for (; sub != NULL; sub = next) {
    next = sub->next;
    if (sub->closing) continue; /* closes with `from` */
    if (move(sub, to) != 0) {
      kv_redis_sub_close(sub); /* out of memory: it closes with `from` */
      continue;
    }
    report_down(sub, KV_ECONN, "the primary changed (failover)");
    schedule(sub, 0);
  }
}

static void sub_free(kv_redis_sub_t *sub) {
  for (size_t i = 0; i < sub->nnames; i++)
    kv_free(sub->names[i].name);
  kv_free(sub->names);
  kv_free(sub);
}

/* The connection is gone: the last event, then free. */
static void on_released(kv__redis_t *c) {
  kv_redis_sub_t *sub = c->owner;
  kv_redis_msg_t m;
  kv_free(c);
  sub->conn = NULL;
  sub_unlink(sub);
  memset(&m, 0, sizeof m);
  m.event = KV_REDIS_SUB_CLOSED;
  deliver(sub, &m);
  sub_free(sub);
}

static void on_timer_closed(uv_handle_t *h) {
  kv_redis_sub_t *sub = h->data;
  kv__redis_child_close(sub->conn);
}

int kv_redis_subscriber(kv_store_t *s, kv_redis_sub_cb cb, void *data,
                        kv_redis_sub_t **out) {
  kv__redis_t *st = (kv__redis_t *)s;
  kv_redis_sub_t *sub;
  int ha = kv__redis_ha_kind(s);
  if (out == NULL) return KV_EINVAL;
  *out = NULL;
  if (s == NULL || (s->methods != &kv__redis_methods && !ha) || cb == NULL)
    return KV_EINVAL;
  if (kv_store_is_closing(s)) return KV_ECLOSED;
  sub = kv_calloc(1, sizeof *sub);
  if (sub == NULL) return KV_ENOMEM;
  if (ha) {
    /* A cluster or sentinel store: the subscriber waits on a stand-in
     * (a connection of a node or a sentinel that is never made) until the
     * timer finds its node, and moves there. */
    sub->ha = s;
    /* a cluster's subscribers spread over the primaries (no shared
     * counter: stores may live on loops of several threads) */
    sub->hint = (unsigned)((uintptr_t)sub >> 4);
    st = kv__redis_route_home(s);
  }
  sub->cb = cb;
  sub->data = data;
  sub->conn = conn_new(sub, st);
  if (sub->conn == NULL) {
    kv_free(sub);
    return KV_ENOMEM;
  }
  uv_timer_init(s->loop, &sub->timer);
  sub->timer.data = sub;
  schedule(sub, 0); /* connect from the loop */
  sub_link(sub, st);
  *out = sub;
  return 0;
}

void kv__redis_sub_quiet(kv_redis_sub_t *sub) {
  sub->quiet = 1;
  sub->conn->keep_loop_alive = 0;
  uv_unref((uv_handle_t *)&sub->timer);
}

int kv_redis_sub_close(kv_redis_sub_t *sub) {
  if (sub == NULL) return KV_EINVAL;
  if (sub->closing) return KV_ECLOSED;
  sub->closing = 1;
  uv_close((uv_handle_t *)&sub->timer, on_timer_closed);
  return 0;
}

void kv__redis_subs_close_all(kv__redis_t *st) {
  for (kv_redis_sub_t *sub = st->subs; sub != NULL; sub = sub->next)
    if (!sub->closing) kv_redis_sub_close(sub);
}

/* ---- Subscribing --------------------------------------------------------- */

static int check_names(kv_redis_sub_t *sub, int n, const char **names,
                       int allow_none) {
  if (sub == NULL || (n == 0 && !allow_none) || n < 0 ||
      (n > 0 && names == NULL))
    return KV_EINVAL;
  for (int i = 0; i < n; i++)
    if (names[i] == NULL) return KV_EINVAL;
  if (sub->closing) return KV_ECLOSED;
  return 0;
}

static ptrdiff_t find(const kv_redis_sub_t *sub, const char *name,
                      int pattern) {
  size_t len = strlen(name);
  for (size_t i = 0; i < sub->nnames; i++)
    if (sub->names[i].pattern == pattern && sub->names[i].len == len &&
        memcmp(sub->names[i].name, name, len) == 0)
      return (ptrdiff_t)i;
  return -1;
}

static int add(kv_redis_sub_t *sub, int n, const char **names, int pattern) {
  int rc = check_names(sub, n, names, 0);
  if (rc != 0) return rc;
  for (int i = 0; i < n; i++) {
    if (find(sub, names[i], pattern) >= 0) continue;
    if (sub->nnames == sub->cap) {
      size_t cap = sub->cap ? 2 * sub->cap : 8;
      sub_name_t *v = kv_realloc(sub->names, cap * sizeof *v);
      if (v == NULL) return KV_ENOMEM;
      sub->names = v;
      sub->cap = cap;
    }
    sub->names[sub->nnames].len = strlen(names[i]);
    sub->names[sub->nnames].name =
        kv_strndup(names[i], sub->names[sub->nnames].len);
    if (sub->names[sub->nnames].name == NULL) return KV_ENOMEM;
    sub->names[sub->nnames].pattern = pattern;
    sub->nnames++;
    if (pattern)
      sub->stats.patterns++;
    else
      sub->stats.channels++;
  }
  return send_names(sub, pattern ? "PSUBSCRIBE" : "SUBSCRIBE", pattern, n,
                    names);
}

static int drop(kv_redis_sub_t *sub, int n, const char **names, int pattern) {
  int rc = check_names(sub, n, names, 1);
  size_t j = 0;
  if (rc != 0) return rc;
  for (size_t i = 0; i < sub->nnames; i++) {
    int gone = sub->names[i].pattern == pattern && n == 0;
    for (int k = 0; !gone && k < n; k++)
      gone = sub->names[i].pattern == pattern &&
             strlen(names[k]) == sub->names[i].len &&
             memcmp(names[k], sub->names[i].name, sub->names[i].len) == 0;
    if (gone) {
      kv_free(sub->names[i].name);
      if (pattern)
        sub->stats.patterns--;
      else
        sub->stats.channels--;
    } else {
      sub->names[j++] = sub->names[i];
    }
  }
  sub->nnames = j;
  {
    static const char *none[1] = {NULL}; /* no names: every one */
    return send_names(sub, pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE", pattern, n,
                      n ? names : none);
  }
}

int kv_redis_sub_subscribe(kv_redis_sub_t *sub, int n, const char **channels) {
  return add(sub, n, channels, 0);
}

int kv_redis_sub_psubscribe(kv_redis_sub_t *sub, int n, const char **patterns) {
  return add(sub, n, patterns, 1);
}

int kv_redis_sub_unsubscribe(kv_redis_sub_t *sub, int n,
                             const char **channels) {
  return drop(sub, n, channels, 0);
}

int kv_redis_sub_punsubscribe(kv_redis_sub_t *sub, int n,
                              const char **patterns) {
  return drop(sub, n, patterns, 1);
}

void kv_redis_sub_stats(const kv_redis_sub_t *sub, kv_redis_sub_stats_t *out) {
  *out = sub->stats;
}
