/* The Redis store's connections beyond the first: the pool
 * (?connections=N) and leased connections (kv_redis_lease, transactions).
 *
 * Each is a kv__redis_t of its own (a "child") that shares the store's
 * configuration and runs the same connection code (redis_conn.c): its own
 * FIFO, write buffer, prepare handle and timer, one write per loop turn.
 * A child counts as one of the store's nhandles until it is released, so
 * the store's close callback comes after every child is gone.
 *
 * The pool's connections are created when first picked. Requests fill
 * one connection's next write up to 64 commands, then the next
 * connection's, round the pool; every command of one request goes to the
 * same connection (a ttl's GET and PTTL, an incr's MULTI ... EXEC).
 *
 * A lease is a child lent to one user. Given back, an open MULTI is
 * DISCARDed and WATCHes dropped before anyone else gets it; up to
 * IDLE_LEASES_MAX idle ones keep their connection for the next lease. */
#include <string.h>
#include <strings.h>

#include "stores/redis_cluster.h"

#define IDLE_LEASES_MAX 16
#define LANE_BATCH 64 /* commands per connection per write */

static void child_free(kv__redis_t *c) {
  kv_free(c);
}

kv__redis_t *kv__redis_child_new(kv__redis_t *st) {
  kv__redis_t *c = kv_calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->base.loop = st->base.loop;
  c->host = st->host;
  c->port = st->port;
  c->sock = st->sock;
  c->endpoint = st->endpoint;
  c->db = st->db;
  c->user = st->user;
  c->password = st->password;
  c->prefix = st->prefix;
  c->prefix_len = st->prefix_len;
  c->timeout_ms = st->timeout_ms;
  c->tls = st->tls;
  c->ssl_ctx = st->ssl_ctx;
  c->tls_name = st->tls_name;
  c->tls_name_is_ip = st->tls_name_is_ip;
  c->verify_name = st->verify_name;
  memcpy(c->sha_cas, st->sha_cas, sizeof c->sha_cas);
  memcpy(c->sha_put, st->sha_put, sizeof c->sha_put);
  c->parent = st;
  c->on_released = child_free;
  kv__redis_init_handles(c);
  st->nhandles++;
  return c;
}

void kv__redis_child_close(kv__redis_t *c) {
  if (!c->closing) kv__redis_close(c);
}

kv__redis_t *kv__redis_pick(kv__redis_t *st) {
  kv__redis_t *c;
  if (st->nlanes <= 1) return st;
  c = st->lanes[st->next_lane];
  /* Fill one connection's next write up to LANE_BATCH commands, then move
   * on: a light load stays on one connection (one write and one read per
   * turn), a heavy one is spread over all of them. */
  if (c != NULL && c->fifo_n - c->fifo_sent >= LANE_BATCH) {
    st->next_lane = (st->next_lane + 1) % st->nlanes;
    c = st->lanes[st->next_lane];
  }
  if (c == NULL) {
    if (st->closing) return st;
    c = kv__redis_child_new(st);
    if (c == NULL) return st; /* out of memory: the first one */
    st->lanes[st->next_lane] = c;
  }
  return c;
}

/* ---- Leases -------------------------------------------------------------- */

static void lease_unlink(kv__redis_lease_t *l, kv__redis_t *st) {
  if (l->prev)
    l->prev->next = l->next;
  else
    st->leases = l->next;
  if (l->next) l->next->prev = l->prev;
  l->prev = l->next = NULL;
}

static void idle_remove(kv__redis_t *st, kv__redis_lease_t *l) {
  for (kv__redis_lease_t **p = &st->idle_leases; *p != NULL;
       p = &(*p)->next_idle) {
    if (*p == l) {
      *p = l->next_idle;
      l->next_idle = NULL;
      return;
    }
  }
}

/* The lease's connection is gone (store closing, or too many idle). A
 * lease still lent stays (its user may release it until the store's close
 * callback) and is freed with the store (kv__redis_pool_free). */
static void lease_conn_released(kv__redis_t *c) {
  kv__redis_lease_t *l = c->owner;
  kv__redis_t *st = c->parent;
  kv_free(c);
  l->conn = NULL;
  idle_remove(st, l);
  if (!l->out) {
    lease_unlink(l, st);
    kv_free(l);
  }
}

void kv__redis_pool_free(kv__redis_t *st) {
  while (st->leases != NULL) {
    kv__redis_lease_t *l = st->leases;
    st->leases = l->next;
    kv_free(l);
  }
}

/* A connection lost while lent takes the lease's WATCH / MULTI with it:
 * the lease refuses further commands instead of reconnecting. */
static void lease_down(kv__redis_t *c, int err, const char *msg) {
  kv__redis_lease_t *l = c->owner;
  (void)err, (void)msg;
  if (l->out && l->used) l->broken = 1;
  l->in_multi = l->watching = 0;
}

kv__redis_lease_t *kv__redis_lease_get(kv__redis_t *st, int tx) {
  kv__redis_lease_t *l = st->idle_leases;
  if (l != NULL) {
    st->idle_leases = l->next_idle;
    l->next_idle = NULL;
  } else {
    l = kv_calloc(1, sizeof *l);
    if (l == NULL) return NULL;
    l->conn = kv__redis_child_new(st);
    if (l->conn == NULL) {
      kv_free(l);
      return NULL;
    }
    l->conn->owner = l;
    l->conn->on_down = lease_down;
    l->conn->on_released = lease_conn_released;
    l->next = st->leases;
    if (st->leases) st->leases->prev = l;
    st->leases = l;
  }
  l->out = 1;
  l->tx = tx;
  l->broken = l->used = l->in_multi = l->watching = 0;
  st->leases_total++;
  return l;
}

int kv__redis_lease_send(kv__redis_lease_t *l, size_t argc,
                         const char *const *argv, const size_t *argvlen,
                         kv__redis_reply_fn fn, void *ctx, uint64_t tag) {
  kv__redis_t *c = l->conn;
  int rc;
  if (c == NULL || c->closing || c->parent->closing) return KV_ECLOSED;
  if (l->broken) {
    snprintf(c->last_msg, sizeof c->last_msg,
             "the leased connection to %s was lost (with its WATCH / MULTI "
             "state): release it and lease another",
             c->endpoint);
    return KV_ECONN;
  }
  if ((rc = kv__redis_ready(c)) != 0) return rc;
  rc = kv__redis_queue_argv(c, argc, argv, argvlen, fn, ctx, tag);
  if (rc != 0) {
    snprintf(c->last_msg, sizeof c->last_msg, "out of memory");
    return rc;
  }
  l->used = 1;
  if (argvlen[0] == 5 && strncasecmp(argv[0], "MULTI", 5) == 0) {
    l->in_multi = 1;
  } else if ((argvlen[0] == 4 && strncasecmp(argv[0], "EXEC", 4) == 0) ||
             (argvlen[0] == 7 && strncasecmp(argv[0], "DISCARD", 7) == 0)) {
    l->in_multi = l->watching = 0;
  } else if (argvlen[0] == 5 && strncasecmp(argv[0], "WATCH", 5) == 0) {
    l->watching = 1;
  } else if (argvlen[0] == 7 && strncasecmp(argv[0], "UNWATCH", 7) == 0) {
    l->watching = 0;
  }
  return 0;
}

void kv__redis_lease_put(kv__redis_lease_t *l) {
  kv__redis_t *c = l->conn, *st;
  size_t nidle = 0;
  if (!l->out) return;
  l->out = 0;
  if (c == NULL) return; /* freed with the store (kv__redis_pool_free) */
  st = c->parent;
  if (c->closing || st->closing) return; /* freed with its connection */
  /* Leave the connection as a new one: the server's MULTI / WATCH state
   * goes (in order, before any later user's command). Only a live
   * connection has any. */
  if (!l->broken && c->conn != NULL && (l->in_multi || l->watching)) {
    const char *cmd = l->in_multi ? "DISCARD" : "UNWATCH";
    size_t len = strlen(cmd);
    (void)kv__redis_queue_argv(c, 1, &cmd, &len, kv__redis_ignore_reply, NULL,
                               0);
  }
  l->broken = l->used = l->in_multi = l->watching = l->tx = 0;
  for (kv__redis_lease_t *i = st->idle_leases; i != NULL; i = i->next_idle)
    nidle++;
  if (nidle >= IDLE_LEASES_MAX) {
    kv__redis_child_close(c); /* lease_conn_released frees l */
    return;
  }
  l->next_idle = st->idle_leases;
  st->idle_leases = l;
}

int kv_redis_lease(kv_store_t *s, kv_redis_conn_t **out) {
  kv__redis_lease_t *l;
  if (out == NULL) return KV_EINVAL;
  *out = NULL;
  /* A cluster or sentinel store has no one connection to lend: the node
   * depends on the keys, the primary on failovers (use a transaction). */
  if (kv__redis_ha_kind(s)) return KV_ENOTSUP;
  if (s == NULL || s->methods != &kv__redis_methods) return KV_EINVAL;
  if (kv_store_is_closing(s)) return KV_ECLOSED;
  l = kv__redis_lease_get((kv__redis_t *)s, 0);
  if (l == NULL) return KV_ENOMEM;
  *out = (kv_redis_conn_t *)l;
  return 0;
}

int kv_redis_conn_command(kv_redis_conn_t *conn, kv_redis_req_t *req, int argc,
                          const char **argv, const size_t *argvlen,
                          kv_redis_cb cb) {
  kv__redis_lease_t *l = (kv__redis_lease_t *)conn;
  size_t *lens = NULL, stack[16];
  int rc;
  if (req == NULL) return KV_EINVAL;
  kv__redis_raw_init(req, l && l->conn ? &l->conn->parent->base : NULL, cb);
  if (l == NULL || !l->out || l->tx) {
    req->errmsg =
        kv_strndup("kv_redis_conn_command: not a leased connection", 46);
    return KV_EINVAL;
  }
  if ((rc = kv__redis_raw_check(req, argc, argv, argvlen, cb, 0)) != 0)
    return rc;
  if (argvlen == NULL) {
    lens = argc <= 16 ? stack : kv_malloc((size_t)argc * sizeof *lens);
    if (lens == NULL) return KV_ENOMEM;
    for (int i = 0; i < argc; i++)
      lens[i] = strlen(argv[i]);
    argvlen = lens;
  }
  rc = kv__redis_lease_send(l, (size_t)argc, argv, argvlen, kv__redis_raw_reply,
                            req, 0);
  if (lens != stack) kv_free(lens);
  if (rc != 0) {
    const char *m = rc == KV_ECLOSED ? "the store is closing"
                    : l->conn        ? l->conn->last_msg
                                     : kv_strerror(rc);
    req->errmsg = kv_strndup(m, strlen(m));
  }
  return rc;
}

void kv_redis_release(kv_redis_conn_t *conn) {
  kv__redis_lease_t *l = (kv__redis_lease_t *)conn;
  if (l == NULL || !l->out || l->tx) return;
  kv__redis_lease_put(l);
}

/* ---- Closing ------------------------------------------------------------- */

void kv__redis_pool_close(kv__redis_t *st) {
  for (size_t i = 1; i < st->nlanes; i++)
    if (st->lanes[i] != NULL) kv__redis_child_close(st->lanes[i]);
  for (kv__redis_lease_t *l = st->leases; l != NULL; l = l->next) {
    if (l->conn == NULL) continue;
    kv__redis_cancel_fifo(l->conn, kv__redis_raw_reply, "the store was closed");
    kv__redis_child_close(l->conn);
  }
  st->idle_leases = NULL;
  kv__redis_subs_close_all(st);
}
