/* Internal declarations of the Redis store (src/stores/redis*.c):
 * redis_conn.c owns the connection (libuv, TLS, RESP reader, the FIFO of
 * commands awaiting replies), redis.c maps kvio operations to commands. */
#ifndef KVIO_REDIS_INT_H
#define KVIO_REDIS_INT_H

#include <openssl/ssl.h>

#include "internal.h"
#include "kvio/redis.h"

#define KV__REDIS_MAX_POOL 64 /* connections=N */

typedef struct kv__redis_s kv__redis_t;
typedef struct kv__redis_conn_s kv__redis_conn_t;
typedef struct kv__redis_pend_s kv__redis_pend_t;

/* Called once per command: with its reply (err 0; the handler may take
 * parts of the reply, which is freed after it returns), or with err < 0 and
 * a detail text when no reply will come. */
typedef void (*kv__redis_reply_fn)(kv__redis_t *st, const kv__redis_pend_t *p,
                                   kv_redis_reply_t *reply, int err,
                                   const char *errmsg);

struct kv__redis_pend_s {
  kv__redis_reply_fn fn;
  void *ctx;         /* the kv_req_t (or raw request) it belongs to */
  uint64_t tag;      /* the handler's own use */
  uint64_t deadline; /* kv__redis_now_ms() when it times out (0: never) */
};

enum {
  KV__REDIS_DOWN = 0, /* no connection; the next command connects */
  KV__REDIS_BACKOFF, /* the last attempt failed; commands fail until retry_at */
  KV__REDIS_CONNECTING,
  KV__REDIS_TLS,   /* TLS handshake */
  KV__REDIS_HELLO, /* AUTH / SELECT sent, replies awaited */
  KV__REDIS_READY
};

struct kv__redis_s {
  kv_store_t base;
  /* configuration */
  char *host;     /* TCP: host name or IP literal */
  int port;       /* TCP */
  char *sock;     /* unix socket path, or NULL for TCP */
  char *endpoint; /* "host:port" or the socket path, for messages */
  int db;
  char *user, *password;
  char *prefix; /* key prefix (may be "") */
  size_t prefix_len;
  uint64_t timeout_ms; /* 0: none */
  int tls;
  SSL_CTX *ssl_ctx;
  char *tls_name; /* name or IP checked against the certificate */
  int tls_name_is_ip;
  int verify_name;
  /* connection state */
  kv__redis_conn_t *conn;
  int state;
  int attempts;      /* failed attempts in a row (backoff) */
  uint64_t retry_at; /* kv__redis_now_ms() when BACKOFF ends */
  int last_err;
  char last_msg[320];
  uv_timer_t timer;  /* command timeouts; active while commands wait */
  uv_prepare_t prep; /* flushes the turn's commands in one write */
  uv_idle_t idle;    /* calls back completed raw requests */
  int nhandles;      /* handles and connections not yet released */
  int closing, torn_down;
  /* commands: a ring of pending entries; the first `sent` are written */
  kv__redis_pend_t *fifo;
  size_t fifo_cap, fifo_head, fifo_n, fifo_sent;
  char *out; /* commands formatted, not yet written */
  size_t out_len, out_cap;
  /* argument builder of the command being formatted (see redis.c) */
  struct {
    const char *p; /* external bytes, or NULL: `off` into scratch */
    size_t off, len;
  } * args;
  size_t nargs, cap_args;
  const char **argv;
  size_t *argvlen;
  size_t cap_argv;
  char *scratch;
  size_t scratch_len, scratch_cap;
  int cmd_err;      /* KV_ENOMEM while building the command */
  char sha_cas[41]; /* SHA1 of the scripts, for EVALSHA */
  char sha_put[41];
  kv_redis_stats_t stats;
  /* ---- connections beyond the first (redis_pool.c) ----
   * A store is its first connection. Every other connection (the pool's
   * lanes, leased connections, subscribers) is a kv__redis_t of its own with
   * `parent` set: it shares the parent's configuration (strings and SSL_CTX
   * are the parent's, never freed by the child), has its own handles and
   * FIFO, and counts as one of the parent's nhandles until it is released,
   * so the parent closes last. */
  kv__redis_t *parent;
  void (*on_released)(kv__redis_t *child); /* child: after its teardown */
  void *owner;                             /* child: the lease / subscriber */
  /* Hooks (NULL: none). on_ready: the connection is ready (after AUTH and
   * SELECT). on_down: a connection or an attempt failed (err, detail).
   * on_push: every reply once ready goes here instead of to the FIFO
   * (a subscriber's connection). */
  void (*on_ready)(kv__redis_t *st);
  void (*on_down)(kv__redis_t *st, int err, const char *msg);
  void (*on_push)(kv__redis_t *st, kv_redis_reply_t *reply);
  int keep_loop_alive; /* the connection handle keeps the loop alive */
  /* the pool (parent only): lanes[0] is the store itself */
  kv__redis_t **lanes;
  size_t nlanes, next_lane;
  /* leases (parent only, redis_pool.c) */
  struct kv__redis_lease_s *idle_leases; /* given back, connection kept */
  struct kv__redis_lease_s *leases;      /* every lease object alive */
  struct kv_redis_sub_s *subs;           /* every subscriber alive */
  uint64_t leases_total;
  /* raw requests completed, to be called back from the prepare handle */
  kv_redis_req_t *raw_done, *raw_done_tail;
  /* appended for redis+cluster:// and redis+sentinel:// */
  int tag_collections; /* layout P + "{" + E(c) + "}:" + k (E also escapes
                          '}' as %7D): a collection's keys share a slot */
  int cluster_slots;   /* a node of a Redis Cluster: one UNLINK per slot */
};

/* A connection lent to one user (transactions, kv_redis_lease). */
typedef struct kv__redis_lease_s kv__redis_lease_t;
struct kv__redis_lease_s {
  kv__redis_t *conn; /* a child kv__redis_t */
  kv__redis_lease_t *next_idle;
  kv__redis_lease_t *prev, *next; /* in parent->leases */
  int out;                        /* lent now */
  int broken;                     /* its connection was lost while lent */
  int used;                       /* a command was sent while lent */
  int in_multi;                   /* MULTI sent, EXEC/DISCARD not yet */
  int watching;                   /* WATCH sent, EXEC/DISCARD/UNWATCH not yet */
  int tx; /* lent to kv_redis_transaction (not the user) */
};

/* A request run by redis.c for another store (redis_cluster.c,
 * redis_sentinel.c) carries a hook in priv.store_data[3] (redis.c itself
 * uses [0..2]). Its finish() is called instead of kv_req_complete() when the
 * request is done (the other store completes it, or retries it elsewhere);
 * error_reply() (may be NULL) sees every error reply before it becomes the
 * request's error (MOVED, ASK, ...). */
typedef struct kv__redis_hook_s kv__redis_hook_t;
struct kv__redis_hook_s {
  void (*finish)(kv__redis_hook_t *h, kv_req_t *req, int err);
  void (*error_reply)(kv__redis_hook_t *h, kv__redis_t *st, kv_req_t *req,
                      const kv_redis_reply_t *r);
  /* put_many with a TTL: in, the absolute expiry to give every key (ms by
   * the server's clock; 0: the server's TIME + the TTL); out (set before
   * finish), the expiry given. ttl_many: out, the server's TIME (ms) its
   * TTLs were computed against. So that the parts of one request split
   * over nodes share one expiry and one clock (redis_cluster.c). */
  int64_t put_at_in, put_at_out;
  double ttl_time_ms;
};
/* redis.c: the Redis key of (c, k) in st's layout, written to buf when it
 * fits in cap bytes; returns its length either way. */
size_t kv__redis_format_key(const kv__redis_t *st, const char *c, size_t clen,
                            const char *k, size_t klen, char *buf, size_t cap);
/* redis_cluster.c: the Redis Cluster slot of a key. */
unsigned kv__rcl_slot(const char *key, size_t len);
#define KV__REDIS_HOOK(req) ((kv__redis_hook_t *)(req)->priv.store_data[3])

extern const kv_store_methods_t kv__redis_methods;

/* redis_conn.c */
uint64_t kv__redis_now_ms(void); /* monotonic milliseconds */
/* Make sure commands can be queued: connects when down. Returns 0, or the
 * error of the last attempt while backing off (detail in st->last_msg). */
int kv__redis_ready(kv__redis_t *st);
/* Queue one formatted command (copied) with its reply handler. 0 or
 * KV_ENOMEM. Never calls fn from inside. */
int kv__redis_queue(kv__redis_t *st, const char *cmd, size_t len,
                    kv__redis_reply_fn fn, void *ctx, uint64_t tag);
/* Format a command (RESP) straight into the write buffer and queue it. */
int kv__redis_queue_argv(kv__redis_t *st, size_t argc, const char *const *argv,
                         const size_t *argvlen, kv__redis_reply_fn fn,
                         void *ctx, uint64_t tag);
/* Drop the connection: everything pending fails with err / msg. */
void kv__redis_disconnect(kv__redis_t *st, int err, const char *msg);
/* Start closing: finish what is in flight, then release everything and
 * call kv_store_closed(). */
void kv__redis_close(kv__redis_t *st);
int kv__redis_init_handles(kv__redis_t *st);
/* Reader callbacks building kv_redis_reply_t trees. */
void kv__redis_reply_free(kv_redis_reply_t *r);
/* The kvio error code for a server error reply ("WRONGPASS ..."). */
int kv__redis_error_code(const char *msg, size_t len);
/* Format a command into the write buffer without a FIFO entry: its replies
 * go to st->on_push (a subscriber's connection). 0 or KV_ENOMEM. */
int kv__redis_write_argv(kv__redis_t *st, size_t argc, const char *const *argv,
                         const size_t *argvlen);
/* Call back the completed raw requests (st->raw_done) from the loop. */
void kv__redis_kick(kv__redis_t *st);
/* Complete every pending command whose handler is fn with KV_ECANCELED
 * now; their replies, when they come, are dropped. */
void kv__redis_cancel_fifo(kv__redis_t *st, kv__redis_reply_fn fn,
                           const char *msg);
/* The same with another error (a failover: KV_ECONN). */
void kv__redis_fail_fifo(kv__redis_t *st, kv__redis_reply_fn fn, int err,
                         const char *msg);
/* A reply handler that drops the reply (cancelled requests). */
void kv__redis_ignore_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                            kv_redis_reply_t *reply, int err, const char *msg);

/* redis.c: call back the raw requests completed on st (deferred). */
void kv__redis_deliver_raw(kv__redis_t *st);
/* redis.c: finish a raw request with a reply or an error (queued). */
void kv__redis_raw_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                         kv_redis_reply_t *r, int err, const char *msg);

/* redis.c: raw requests */
void kv__redis_raw_init(kv_redis_req_t *req, kv_store_t *s, kv_redis_cb cb);
/* Check a raw command (shared: on the store's own connections). 0 or
 * KV_EINVAL with req->errmsg set. */
int kv__redis_raw_check(kv_redis_req_t *req, int argc, const char **argv,
                        const size_t *argvlen, kv_redis_cb cb, int shared);

/* 1: the command changes a connection's state for its next user
 * (SUBSCRIBE, SELECT, ...); 2: WATCH, UNWATCH, MULTI, EXEC, DISCARD; 0:
 * any other. */
int kv__redis_cmd_kind(const char *name, size_t len);

/* redis_pubsub.c */
const struct kv_redis_sub_s *kv__redis_sub_next(const struct kv_redis_sub_s *s);

/* redis_pool.c */
/* A new connection sharing st's configuration (not connected yet). */
kv__redis_t *kv__redis_child_new(kv__redis_t *st);
/* Start closing a child: it drains, tears down and calls on_released. */
void kv__redis_child_close(kv__redis_t *child);
/* The connection of the pool for the next request. */
kv__redis_t *kv__redis_pick(kv__redis_t *st);
/* The store is closing: close the pool, cancel the leases and close the
 * subscribers (redis_pubsub.c). */
void kv__redis_pool_close(kv__redis_t *st);
/* The store's last moment: free what the leases left. */
void kv__redis_pool_free(kv__redis_t *st);
void kv__redis_subs_close_all(kv__redis_t *st);
/* Lease a connection (for transactions): NULL when out of memory. */
kv__redis_lease_t *kv__redis_lease_get(kv__redis_t *st, int tx);
void kv__redis_lease_put(kv__redis_lease_t *l);
/* Queue a command on a lease, tracking MULTI / WATCH. */
int kv__redis_lease_send(kv__redis_lease_t *l, size_t argc,
                         const char *const *argv, const size_t *argvlen,
                         kv__redis_reply_fn fn, void *ctx, uint64_t tag);

#endif
