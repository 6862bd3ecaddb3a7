/* Raw commands on redis+cluster:// and redis+sentinel:// (kv_redis_command,
 * kv_redis_publish), the waiting lists the two stores keep for the Redis
 * client's parts (raw commands, transactions) while the route is not known
 * yet, and the helpers the two stores share (URL templates, addresses,
 * backoff).
 *
 * A raw command runs on one node, a redis:// store of the cluster or
 * sentinel store (redis_cluster.c, redis_sentinel.c): on a cluster the
 * node that serves the slot of argv[1] (Redis puts the first key there for
 * nearly every command; a command without arguments goes to a primary), on
 * a sentinel store the primary. A cluster's MOVED and ASK replies are
 * followed (a redirected command was not executed), at most MAX_REDIRECTS
 * times, so a command whose key is elsewhere (EVAL, a key further on)
 * still reaches the right node. Any other reply, errors included, is the
 * request's answer. A command whose node is lost (KV_ECONN, KV_ETIMEDOUT)
 * or that a replica refused (READONLY) fails with that answer and makes the
 * store reload its map or ask the sentinels again: it may have been
 * executed, so it is not run again.
 *
 * Completions follow redis.c's rules: a reply is handed to the node's
 * connection (kv__redis_raw_reply), which calls back from the loop; a
 * request that waited for the route and cannot run is called back from
 * the store's timer. */
#include <stddef.h>
#include <string.h>

#include "stores/redis_cluster.h"

#define MAX_REDIRECTS 5

typedef struct {
  kv__redis_waiter_t w; /* first: the waiter is the command */
  kv_redis_req_t *req;
  kv_store_t *s;
  int redirects;
  size_t argc;
  const char **argv;
  size_t *argl;
} rcmd_t;

void kv__redis_waiters_add(kv__redis_waiter_t **list, kv__redis_waiter_t *w) {
  while (*list != NULL)
    list = &(*list)->next;
  w->next = NULL;
  *list = w;
}

void kv__redis_waiters_run(kv__redis_waiter_t **list, int err,
                           const char *msg) {
  kv__redis_waiter_t *w = *list;
  char why[400];
  /* msg may be the store's, rewritten by what the waiters do */
  strncpy(why, msg ? msg : kv_strerror(err), sizeof why - 1);
  why[sizeof why - 1] = '\0';
  *list = NULL;
  while (w != NULL) {
    kv__redis_waiter_t *next = w->next;
    w->next = NULL;
    w->ready(w, err, why);
    w = next;
  }
}

/* ---- Shared by redis_cluster.c and redis_sentinel.c -------------------- */

int kv__redis_url_add_param(kv_url_t *u, const char *name, const char *value) {
  kv_url_param_t *p =
      kv_realloc(u->params, (u->nparams + 1) * sizeof *u->params);
  if (p == NULL) return KV_ENOMEM;
  u->params = p;
  p[u->nparams].name = kv_strndup(name, strlen(name));
  p[u->nparams].value = kv_strndup(value, strlen(value));
  u->nparams++;
  if (p[u->nparams - 1].name == NULL || p[u->nparams - 1].value == NULL)
    return KV_ENOMEM;
  return 0;
}

void kv__redis_url_free(kv_url_t *u) {
  for (size_t i = 0; i < u->nparams; i++) {
    kv_free(u->params[i].name);
    kv_free(u->params[i].value);
  }
  kv_free(u->params);
  kv_free(u->user);
  kv_free(u->password);
  memset(u, 0, sizeof *u);
}

int kv__redis_parse_addr(const char *a, size_t len, int default_port,
                         const char **host, size_t *hlen, int *port) {
  const char *colon = NULL;
  int64_t p = default_port;
  for (size_t i = len; i > 0; i--)
    if (a[i - 1] == ':' || a[i - 1] == ']') {
      if (a[i - 1] == ':') colon = a + i - 1;
      break;
    }
  if (colon != NULL &&
      (kv_parse_int64(colon + 1, len - (size_t)(colon - a) - 1, &p) != 0 ||
       p <= 0 || p > 65535))
    return KV_EINVAL;
  if (colon == NULL) colon = a + len;
  *host = a;
  *hlen = (size_t)(colon - a);
  if (*hlen >= 2 && a[0] == '[' && colon[-1] == ']') {
    (*host)++;
    *hlen -= 2;
  }
  *port = (int)p;
  return *hlen > 0 && memchr(*host, ',', *hlen) == NULL ? 0 : KV_EINVAL;
}

uint64_t kv__redis_backoff_ms(int attempts) {
  uint64_t wait = 50;
  for (int i = 0; i < attempts && wait < 1000; i++)
    wait *= 2;
  return wait > 1000 ? 1000 : wait;
}

/* ---- Raw commands ------------------------------------------------------- */

static void on_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                     kv_redis_reply_t *r, int err, const char *msg);

/* The answer goes to the request through the connection that got it. */
static void done(rcmd_t *c, kv__redis_t *st, kv_redis_reply_t *r, int err,
                 const char *msg) {
  kv__redis_pend_t p;
  memset(&p, 0, sizeof p);
  p.ctx = c->req;
  kv_free(c);
  kv__redis_raw_reply(st, &p, r, err, msg);
}

/* From the store's timer (the command waited for its route). */
static void fail_now(rcmd_t *c, int err, const char *msg) {
  kv_redis_req_t *req = c->req;
  kv_free(c);
  req->status = err;
  req->errmsg = kv_strndup(msg, strlen(msg));
  req->cb(req);
}

/* Queue the command on node (after ASKING when asked to). 0, or the error
 * with its text in *msg. */
static int send_on(rcmd_t *c, kv__redis_t *node, int asking, const char **msg) {
  kv__redis_t *st = kv__redis_pick(node);
  int rc = kv__redis_ready(st);
  if (rc != 0) {
    *msg = st->last_msg;
    return rc;
  }
  if (asking) {
    const char *a = "ASKING";
    size_t alen = 6;
    rc =
        kv__redis_queue_argv(st, 1, &a, &alen, kv__redis_ignore_reply, NULL, 0);
  }
  if (rc == 0)
    rc = kv__redis_queue_argv(st, c->argc, c->argv, c->argl, on_reply, c, 0);
  if (rc != 0) *msg = "out of memory";
  return rc;
}

/* Route the command and queue it. 0: queued or waiting; < 0: neither. */
static int start(rcmd_t *c, const char **msg) {
  kv__redis_t *node = NULL;
  int rc = kv__redis_route(c->s, c->argc > 1 ? c->argv[1] : NULL,
                           c->argc > 1 ? c->argl[1] : 0, 0, &c->w, &node, msg);
  if (rc == 1) return 0;
  if (rc < 0) return rc;
  return send_on(c, node, 0, msg);
}

static void on_route(kv__redis_waiter_t *w, int err, const char *msg) {
  rcmd_t *c = (rcmd_t *)w;
  if (err == 0 && (err = start(c, &msg)) == 0) return;
  fail_now(c, err, msg);
}

static void on_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                     kv_redis_reply_t *r, int err, const char *msg) {
  rcmd_t *c = p->ctx;
  if (err != 0) {
    if (err != KV_ECANCELED) kv__redis_route_failed(c->s, err);
    done(c, st, NULL, err, msg);
    return;
  }
  if (r->type == KV_REDIS_REPLY_ERROR) {
    kv__redis_t *to = NULL;
    int kind = c->redirects < MAX_REDIRECTS
                   ? kv__redis_route_redirect(c->s, r->str, r->len, &to)
                   : 0;
    if (kind != 0) { /* not executed: again where the server says */
      const char *why = NULL;
      int rc;
      c->redirects++;
      if ((rc = send_on(c, to, kind == 2, &why)) != 0)
        done(c, st, NULL, rc, why);
      return;
    }
    if (r->len >= 8 && memcmp(r->str, "READONLY", 8) == 0)
      kv__redis_route_failed(c->s, KV_EREADONLY);
  }
  done(c, st, r, 0, NULL);
}

int kv__redis_ha_command(kv_store_t *s, kv_redis_req_t *req, int argc,
                         const char **argv, const size_t *argvlen) {
  size_t n = (size_t)argc, bytes = 0, off;
  const char *msg = NULL;
  rcmd_t *c;
  char *data;
  int rc;
  for (size_t i = 0; i < n; i++)
    bytes += (argvlen ? argvlen[i] : strlen(argv[i])) + 1;
  /* one block: the command, argv, argl, the bytes */
  off = sizeof(rcmd_t) + n * (sizeof(char *) + sizeof(size_t));
  c = kv_malloc(off + bytes);
  if (c == NULL) goto nomem;
  memset(c, 0, sizeof *c);
  c->w.ready = on_route;
  c->req = req;
  c->s = s;
  c->argc = n;
  c->argv = (const char **)(c + 1);
  c->argl = (size_t *)(c->argv + n);
  data = (char *)c + off;
  for (size_t i = 0; i < n; i++) {
    size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
    memcpy(data, argv[i], len);
    data[len] = '\0';
    c->argv[i] = data;
    c->argl[i] = len;
    data += len + 1;
  }
  if ((rc = start(c, &msg)) == 0) return 0;
  kv_free(c);
  req->errmsg = kv_strndup(msg, strlen(msg));
  return rc;
nomem:
  req->errmsg = kv_strndup("out of memory", 13);
  return KV_ENOMEM;
}

void kv__redis_ha_cancel(kv__redis_t *node, int err, const char *msg) {
  for (size_t i = 0; i < node->nlanes; i++)
    if (node->lanes[i] != NULL)
      kv__redis_fail_fifo(node->lanes[i], on_reply, err, msg);
}
