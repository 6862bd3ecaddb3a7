/* Internal declarations of the Redis store (src/stores/redis*.c):
 * redis_conn.c owns the connection (libuv, TLS, RESP reader, the FIFO of
 * commands awaiting replies), redis.c maps kvio operations to commands. */
#ifndef KVIO_REDIS_INT_H
#define KVIO_REDIS_INT_H

#include <openssl/ssl.h>

#include "internal.h"
#include "kvio/redis.h"

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
};

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

#endif
