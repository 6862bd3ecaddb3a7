/* kvio/redis.h — the Redis / Valkey store: raw commands and counters.
 *
 * URLs (valkey://, valkeys:// and valkey+unix:// are aliases):
 *
 *   redis://[[user]:password@]host[:port][/db][?options]
 *   rediss://[[user]:password@]host[:port][/db][?options]     (TLS)
 *   redis+unix:///path/to/redis.sock[?db=N&options]
 *
 *   host         an IP literal or a name (resolved on libuv's threadpool);
 *                default 127.0.0.1. port: default 6379.
 *   /db, db=N    the database (SELECT N after connecting); default 0.
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
 * The store opens without a server and connects on first use, over one
 * pipelined connection: every command submitted in one loop turn leaves in
 * one write. */
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
};

/* Send one command (argv[0] is its name) on the store's pipelined
 * connection, in order with every other command of the store. Arguments
 * are copied before the call returns; argvlen may be NULL for C strings.
 * Returns 0 (cb runs exactly once, from the loop, never from inside this
 * call) or a negative error without calling cb: KV_EINVAL (not a redis
 * store, argc < 1, NULL arguments), KV_ECLOSED, KV_ENOMEM, or the error of
 * the last connection attempt while reconnecting is backing off (KV_ECONN,
 * KV_EAUTH, ...). Do not send commands that change the connection's state
 * (SELECT, AUTH, SUBSCRIBE, MONITOR, MULTI without EXEC in the same turn):
 * the connection is shared by every request of the store. */
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
} kv_redis_stats_t;

/* ctl(s, KV_REDIS_CTL_STATS, kv_redis_stats_t *out): copy the counters of
 * the store since it was opened. Returns 0. */
#define KV_REDIS_CTL_STATS 0x5201
/* ctl(s, KV_REDIS_CTL_DISCONNECT, NULL): drop the connection now (requests
 * in flight fail with KV_ECONN; the next request reconnects). Returns 0. */
#define KV_REDIS_CTL_DISCONNECT 0x5202

#ifdef __cplusplus
}
#endif
#endif /* KVIO_REDIS_H */
