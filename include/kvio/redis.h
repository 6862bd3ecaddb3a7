/* kvio/redis.h — the Redis / Valkey store: raw commands and counters.
 *
 * URLs (the valkey spellings are aliases of the redis ones):
 *
 *   redis://[[user]:password@]host[:port][/db][?options]
 *   rediss://[[user]:password@]host[:port][/db][?options]     (TLS)
 *   redis+tls://...                                  (the same as rediss://)
 *   redis+unix:///path/to/redis.sock[?db=N&options]
 *   redis+unix+tls://name.on.certificate/path/to/redis.sock  (TLS over a
 *                unix socket; the host part is the name checked against
 *                the server's certificate)
 *
 *   host         an IP literal or a name (resolved on libuv's threadpool);
 *                default 127.0.0.1. port: default 6379.
 *   /db, db=N, database=N   the database (SELECT N after connecting);
 *                default 0.
 *   connections=N   the store's commands are spread over N pipelined
 *                connections (1 to 64, default 1); see docs/redis.md.
 *   user, password   AUTH user password (ACL) or AUTH password; from the
 *                URL's userinfo or the options user= and password=.
 *   prefix=P     every key of the store begins with P: stores with different
 *                prefixes share a database without seeing each other.
 *   timeout=S    seconds a command may wait for its reply (including
 *                connecting), default 10; 0 = no limit. A command that
 *                times out completes with KV_ETIMEDOUT.
 *   TLS (rediss://): ca=FILE (CA bundle; default: the system's),
 *                cert=FILE and key=FILE (client certificate), server_name=N
 *                (the name checked against the certificate and sent as
 *                SNI; default: host), verify_name=0 (check the chain but not
 *                the name). The server certificate is always verified; a TLS
 *                failure is an error, never a fallback to plain text.
 *
 * Layout: the entry (collection c, key k) is the Redis string at
 * P + E(c) + ":" + k, where E escapes '%' as "%25" and ':' as "%3A"; the
 * value is the user's bytes as they are. Details in docs/redis.md.
 *
 * The store opens without a server and connects on first use, over
 * pipelined connections: every command submitted in one loop turn leaves in
 * one write per connection. Subscribers (Pub/Sub) and transactions use
 * connections of their own, leased from the store. */
#ifndef KVIO_REDIS_H
#define KVIO_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "../kvio.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Raw commands -------------------------------------------------------- */

/* Reply types (the numbers of RESP2 / hiredis). */
typedef enum {
  KV_REDIS_REPLY_STRING = 1,
  KV_REDIS_REPLY_ARRAY = 2,
  KV_REDIS_REPLY_INTEGER = 3,
  KV_REDIS_REPLY_NIL = 4,
  KV_REDIS_REPLY_STATUS = 5,
  KV_REDIS_REPLY_ERROR = 6
} kv_redis_reply_type_t;

/* A reply tree. Everything in it is allocated with kv_malloc and owned by
 * the request that received it (freed by kv_redis_req_cleanup). */
typedef struct kv_redis_reply_s kv_redis_reply_t;
struct kv_redis_reply_s {
  int type;                   /* kv_redis_reply_type_t */
  long long integer;          /* INTEGER */
  char *str;                  /* STRING, STATUS, ERROR: len bytes + NUL */
  size_t len;                 /* length of str */
  size_t elements;            /* ARRAY: number of elements */
  kv_redis_reply_t **element; /* ARRAY: the elements */
};

typedef struct kv_redis_req_s kv_redis_req_t;
typedef void (*kv_redis_cb)(kv_redis_req_t *req);

/* A raw command request, allocated by the caller; it must stay valid until
 * its callback has run. */
struct kv_redis_req_s {
  void *data; /* for the user */
  /* read-only, valid from the callback until kv_redis_req_cleanup() */
  kv_store_t *store;
  int status; /* 0: the server answered (reply set; it may be an ERROR
                 reply); < 0: no answer (KV_ECONN, KV_ETIMEDOUT,
                 KV_ECANCELED, KV_EAUTH, ...; see kv_redis_req_errmsg) */
  kv_redis_reply_t *reply;
  /* private */
  char *errmsg;
  kv_redis_cb cb;
  kv_redis_req_t *next_done;
};

/* Send one command (argv[0] is its name) on one of the store's pipelined
 * connections. Arguments are copied before the call returns; argvlen may be
 * NULL for C strings. Returns 0 (cb runs exactly once, from the loop, never
 * from inside this call) or a negative error without calling cb: KV_EINVAL
 * (not a redis store, argc < 1, NULL arguments, a command that changes the
 * shared connection's state: SUBSCRIBE and friends, MONITOR, SELECT, AUTH,
 * HELLO, RESET, QUIT, WATCH, UNWATCH, MULTI, EXEC, DISCARD — use a
 * subscriber or a leased connection), KV_ECLOSED, KV_ENOMEM, or the error of
 * the last connection attempt while reconnecting is backing off (KV_ECONN,
 * KV_EAUTH, ...). Closing the store completes every raw request still
 * waiting for its reply with KV_ECANCELED (the command has been sent; its
 * reply is not awaited: a blocking command cannot hold the close). */
KV_EXTERN int kv_redis_command(kv_store_t *s, kv_redis_req_t *req, int argc,
                               const char **argv, const size_t *argvlen,
                               kv_redis_cb cb);
/* Free the reply and the error text; the request may then be reused. */
KV_EXTERN void kv_redis_req_cleanup(kv_redis_req_t *req);
/* Why a request failed (or kv_strerror(status)); valid until cleanup. */
KV_EXTERN const char *kv_redis_req_errmsg(const kv_redis_req_t *req);
/* Free a reply tree (for replies taken out of a request: set req->reply to
 * NULL first). NULL is accepted. */
KV_EXTERN void kv_redis_reply_free(kv_redis_reply_t *reply);

/* ---- Counters (kv_store_ctl) ------------------------------------------- */

typedef struct kv_redis_stats_s {
  uint64_t commands;         /* commands queued */
  uint64_t replies;          /* replies received */
  uint64_t writes;           /* write calls on the socket (flushes) */
  uint64_t bytes_written;    /* bytes handed to the socket (after TLS) */
  uint64_t reads;            /* read callbacks */
  uint64_t bytes_read;       /* bytes read from the socket (before TLS) */
  uint64_t connects;         /* connections established (ready for commands) */
  uint64_t connect_failures; /* attempts that failed before ready */
  uint64_t in_flight;        /* now: commands written, reply pending */
  uint64_t queued;           /* now: commands waiting for the next write */
  /* the pool and the connections of its own (the counters above add up
   * the pool's connections only) */
  uint64_t pool_size;      /* connections=N */
  uint64_t pool_connected; /* now: pool connections ready */
  uint64_t leased;         /* now: connections lent (kv_redis_lease,
                              transactions) */
  uint64_t lease_idle;     /* now: given back, kept for the next lease */
  uint64_t leases;         /* leases handed out since open */
  uint64_t subscribers;    /* now: subscribers open */
} kv_redis_stats_t;

/* ctl(s, KV_REDIS_CTL_STATS, kv_redis_stats_t *out): copy the counters of
 * the store since it was opened. Returns 0. */
#define KV_REDIS_CTL_STATS (KV_CTL_RANGE_REDIS + 1)
/* ctl(s, KV_REDIS_CTL_DISCONNECT, NULL, 0): drop the connection now (requests
 * in flight fail with KV_ECONN; the next request reconnects). Returns 0. */
#define KV_REDIS_CTL_DISCONNECT (KV_CTL_RANGE_REDIS + 2)

/* ---- Publish ------------------------------------------------------------ */

/* PUBLISH channel message on the store's connections. On success
 * req->status is 0 and req->reply an INTEGER: the number of subscribers
 * that received it (Redis delivers to the subscribers connected now and
 * keeps nothing for later). Returns as kv_redis_command. */
KV_EXTERN int kv_redis_publish(kv_store_t *s, kv_redis_req_t *req,
                               const char *channel, const void *msg, size_t len,
                               kv_redis_cb cb);

/* ---- Leased connections ---------------------------------------------------
 *
 * A connection of its own, for commands that depend on the connection's
 * state: WATCH ... MULTI ... EXEC. Commands on a lease go out in the order
 * they are submitted, pipelined like the store's (one write per loop turn),
 * and nobody else's command runs between them on that connection.
 *
 * If the connection is lost while leased, its WATCHes and MULTI are gone
 * with it: every later command on the lease fails with KV_ECONN (it never
 * reconnects silently in the middle of a transaction); release it and
 * lease again. EXEC's reply is the array of the queued commands' replies,
 * or NIL when a watched key changed (the transaction was aborted). */
typedef struct kv_redis_conn_s kv_redis_conn_t;

/* Lease a connection (an idle one given back earlier, or a new one that
 * connects on its first command). Returns 0 or KV_EINVAL (not a redis
 * store), KV_ECLOSED, KV_ENOMEM. */
KV_EXTERN int kv_redis_lease(kv_store_t *s, kv_redis_conn_t **out);
/* kv_redis_command on the leased connection. Every command may be sent,
 * except those that leave the lease in a state its next user would inherit
 * (SUBSCRIBE and friends, MONITOR, SELECT, AUTH, HELLO, RESET, QUIT:
 * KV_EINVAL). KV_ECONN once the connection was lost (see above). */
KV_EXTERN int kv_redis_conn_command(kv_redis_conn_t *c, kv_redis_req_t *req,
                                    int argc, const char **argv,
                                    const size_t *argvlen, kv_redis_cb cb);
/* Give the connection back. Commands already submitted still complete;
 * an open MULTI is DISCARDed and WATCHes are dropped (UNWATCH) before the
 * connection serves anyone else. `c` is invalid afterwards. Closing the
 * store releases the leases still out (their commands complete or are
 * cancelled); do not release a lease after the store's close callback. */
KV_EXTERN void kv_redis_release(kv_redis_conn_t *c);

/* ---- Optimistic transactions (WATCH / MULTI / EXEC, with retries) --------
 *
 * RedIO's "read, compute, write unless someone else wrote, else retry":
 * on a leased connection the helper sends WATCH keys... and MGET keys...,
 * calls fn with the values, sends MULTI, the commands fn queued with
 * kv_redis_tx_queue() and EXEC. When EXEC reports that a watched key
 * changed (a conflict), it starts again from WATCH, at most max_attempts
 * times in all, then completes with KV_ECONFLICT. */
typedef struct kv_redis_tx_s kv_redis_tx_t;
/* values[i] is the value of keys[i]: a STRING, or NIL when the key does not
 * exist or is not a string; valid during the call. Queue the commands with
 * kv_redis_tx_queue and return 0 to EXEC them, or a negative error to stop
 * (the transaction completes with that status, nothing is executed). */
typedef int (*kv_redis_tx_fn)(kv_redis_tx_t *tx,
                              const kv_redis_reply_t *const *values);
typedef void (*kv_redis_tx_cb)(kv_redis_tx_t *tx);

struct kv_redis_tx_s {
  void *data; /* for the user */
  /* read-only, valid from the callback until kv_redis_tx_cleanup() */
  kv_store_t *store;
  int status;   /* 0: EXEC ran, reply is its array; KV_ECONFLICT: every
                   attempt conflicted; KV_EBACKEND: EXEC failed
                   (EXECABORT: a queued command was refused); the error
                   fn returned; KV_ECONN, KV_ETIMEDOUT, KV_ECANCELED ... */
  int attempts; /* EXECs sent (attempts - 1 conflicts on success) */
  kv_redis_reply_t *reply; /* status 0: EXEC's array of replies */
  /* private */
  char *errmsg;
  void *impl;
};

/* Start a transaction watching keys[0..nkeys-1] (1 to 1,000 keys, copied).
 * max_attempts: 1 or more (0: 16). Returns 0 (cb runs exactly once, from
 * the loop) or a negative error without calling cb: KV_EINVAL (arguments,
 * not a redis store), KV_ECLOSED, KV_ENOMEM. The leased connection goes
 * back to the store before cb runs, whatever the outcome. */
KV_EXTERN int kv_redis_transaction(kv_store_t *s, kv_redis_tx_t *tx, int nkeys,
                                   const char **keys, int max_attempts,
                                   kv_redis_tx_fn fn, kv_redis_tx_cb cb);
/* From inside fn only: queue one command (copied) for MULTI / EXEC.
 * Returns 0, KV_EINVAL (outside fn, argc < 1, a command that is not
 * allowed in a transaction: WATCH, MULTI, EXEC, DISCARD, SUBSCRIBE ...) or
 * KV_ENOMEM. */
KV_EXTERN int kv_redis_tx_queue(kv_redis_tx_t *tx, int argc, const char **argv,
                                const size_t *argvlen);
KV_EXTERN void kv_redis_tx_cleanup(kv_redis_tx_t *tx);
KV_EXTERN const char *kv_redis_tx_errmsg(const kv_redis_tx_t *tx);

/* ---- Pub/Sub subscribers -------------------------------------------------
 *
 * A subscriber has a connection of its own. Subscribe and unsubscribe at
 * any time; the callback receives every message with its channel (and the
 * pattern, when it matched by pattern). When the connection is lost it
 * reports KV_REDIS_SUB_DOWN, reconnects with backoff (50 ms doubling to
 * 1 s), subscribes to everything again by itself and reports
 * KV_REDIS_SUB_GAP: Redis keeps nothing for absent subscribers, so
 * messages published between the two are lost. While connected, nothing is
 * lost. Every event comes from the loop, never from inside a call. */
typedef struct kv_redis_sub_s kv_redis_sub_t;

typedef enum {
  KV_REDIS_SUB_MESSAGE = 1,  /* channel, payload; pattern when matched by
                                a pattern subscription */
  KV_REDIS_SUB_SUBSCRIBED,   /* the server confirmed a subscription: channel,
                                or pattern for a pattern; count */
  KV_REDIS_SUB_UNSUBSCRIBED, /* the server confirmed a removal (the same) */
  KV_REDIS_SUB_DOWN,         /* the connection was lost or could not be made
                                (status, errmsg); reconnecting */
  KV_REDIS_SUB_GAP,          /* connected again, every subscription sent
                                again: messages published since DOWN are
                                lost */
  KV_REDIS_SUB_CLOSED        /* the last event; the subscriber is freed when
                                the callback returns */
} kv_redis_sub_event_t;

typedef struct kv_redis_msg_s {
  int event;           /* kv_redis_sub_event_t */
  const char *channel; /* NUL-terminated; NULL when not applicable */
  size_t channel_len;
  const char *pattern;
  size_t pattern_len;
  const char *payload;
  size_t payload_len;
  long long count;    /* (UN)SUBSCRIBED: subscriptions now on the server */
  int status;         /* DOWN: the error (KV_ECONN, KV_EAUTH ...) */
  const char *errmsg; /* DOWN: why */
} kv_redis_msg_t;

typedef void (*kv_redis_sub_cb)(kv_redis_sub_t *sub, const kv_redis_msg_t *msg);

/* Create a subscriber on the store's loop (it connects at once). Returns 0
 * or KV_EINVAL (not a redis store, cb NULL), KV_ECLOSED, KV_ENOMEM. The
 * subscriber keeps the loop alive until it is closed. Closing the store
 * closes its subscribers (each gets KV_REDIS_SUB_CLOSED before the store's
 * close callback). */
KV_EXTERN int kv_redis_subscriber(kv_store_t *s, kv_redis_sub_cb cb, void *data,
                                  kv_redis_sub_t **out);
KV_EXTERN void *kv_redis_sub_data(const kv_redis_sub_t *sub);
/* Add channels / patterns (n >= 1 NUL-terminated names, copied). Returns 0,
 * KV_EINVAL, KV_ECLOSED (closing) or KV_ENOMEM. */
KV_EXTERN int kv_redis_sub_subscribe(kv_redis_sub_t *sub, int n,
                                     const char **channels);
KV_EXTERN int kv_redis_sub_psubscribe(kv_redis_sub_t *sub, int n,
                                      const char **patterns);
/* Remove channels / patterns; n == 0 removes every one of the kind. */
KV_EXTERN int kv_redis_sub_unsubscribe(kv_redis_sub_t *sub, int n,
                                       const char **channels);
KV_EXTERN int kv_redis_sub_punsubscribe(kv_redis_sub_t *sub, int n,
                                        const char **patterns);
/* Close: no more messages; KV_REDIS_SUB_CLOSED comes from the loop.
 * Returns 0 or KV_ECLOSED when already closing. */
KV_EXTERN int kv_redis_sub_close(kv_redis_sub_t *sub);

typedef struct kv_redis_sub_stats_s {
  uint64_t messages; /* MESSAGE events delivered */
  uint64_t gaps;     /* GAP events delivered */
  uint64_t connects; /* connections made */
  uint64_t channels; /* now: channels subscribed (asked for) */
  uint64_t patterns; /* now: patterns subscribed (asked for) */
} kv_redis_sub_stats_t;
KV_EXTERN void kv_redis_sub_stats(const kv_redis_sub_t *sub,
                                  kv_redis_sub_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif /* KVIO_REDIS_H */
