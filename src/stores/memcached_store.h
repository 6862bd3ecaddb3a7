/* Private declarations of the memcached:// store, shared by its two files:
 *
 *   memcached.c       the store: keys and generations, entries, the atomic
 *                     segment, what each command writes and what each reply
 *                     means, the operations, open and close;
 *   memcached_conn.c  the connections: connecting with backoff, timeouts,
 *                     the output buffer, one pipelined write per server and
 *                     loop turn, reading and parsing replies and matching
 *                     them to the commands in flight, in order.
 *
 * (memcached_int.h holds what the unit tests and fuzz targets reach.) */
#ifndef KVIO_MEMCACHED_STORE_H
#define KVIO_MEMCACHED_STORE_H

#include <string.h>

#include "internal.h"
#include "kvio/memcached.h"
#include "memcached_int.h"

#define MC_DEFAULT_PORT 11211
#define MC_KEY_MAX 250
#define MC_TOKEN_LEN 16 /* 12 random bytes in base64url */
#define MC_HASH_LEN 43  /* SHA-256 in base64url, no padding */
#define MC_HDR_LEN 16
#define MC_MAGIC 0x6b /* 'k' */
#define MC_VERSION 1
#define MC_HDR_KEY 0x01
#define MC_RELATIVE_MAX 2592000 /* memcached: larger expiries are absolute */
#define MC_ABSOLUTE_MAX 2147483647u /* memcached: int32 expiry */
#define MC_MAX_RETRIES 1000
#define MC_INLINE_VALUE 65536 /* larger values are written from the request */
#define MC_READ_CHUNK 65536
#define MC_GEN_CACHE_MAX 4096
#define MC_LOCK_BUCKETS 256

typedef struct mc_store_s mc_store_t;
typedef struct mc_server_s mc_server_t;
typedef struct mc_cmd_s mc_cmd_t;
typedef struct mc_op_s mc_op_t;
typedef struct mc_group_s mc_group_t;
typedef struct mc_lock_s mc_lock_t;

enum {
  CMD_CHECK,  /* mg <genkey> v */
  CMD_ADDGEN, /* ms <genkey> 16 T0 ME */
  CMD_SETGEN, /* ms <genkey> 16 T0 (destroy) */
  CMD_GET,    /* mg <key> v [c] */
  CMD_SET,    /* ms <key> <n> T<ttl> [C<cas> | ME] */
  CMD_DEL,    /* mg <key> v, md <key>: two replies */
  CMD_DELCAS  /* md <key> C<cas> */
};

enum { SET_PLAIN, SET_ADD, SET_CAS };

enum { SRV_IDLE, SRV_RESOLVING, SRV_CONNECTING, SRV_UP };

struct mc_cmd_s {
  mc_cmd_t *next;
  mc_op_t *op;       /* data and SETGEN commands */
  mc_group_t *group; /* data and CHECK/ADDGEN commands */
  mc_server_t *srv;
  size_t idx; /* key index in the request (bulk ops) */
  int kind;
  int replies_left;
  int live;          /* CMD_DEL: the mg saw a live entry */
  int with_cas;      /* CMD_GET: ask for the CAS id */
  int set_mode;      /* CMD_SET */
  int check_coll;    /* CMD_CHECK / ADDGEN: the collection generation */
  int in_queue;      /* queued and not yet written */
  unsigned retries;  /* times re-sent */
  uint64_t cas;      /* CMD_SET (SET_CAS), CMD_DELCAS */
  const char *value; /* CMD_SET */
  size_t vlen;
  int64_t expires_at;       /* CMD_SET: header expiry */
  char token[MC_TOKEN_LEN]; /* ADDGEN / SETGEN */
  char *genkey;             /* SETGEN: owned */
  size_t genkey_len;
};

/* The generation check of one collection in one write to one server. */
struct mc_group_s {
  int refs;   /* commands in flight or deferred that point here */
  int checks; /* checks (and adds) not answered yet */
  int stale;  /* a check disagreed with the tokens the commands used */
  int err;    /* a check failed: deferred commands fail with it */
  int sg_known, cg_known;
  char sg[MC_TOKEN_LEN];
  char cg[MC_TOKEN_LEN];
  mc_cmd_t *deferred; /* sent again once the checks are answered */
  mc_cmd_t *deferred_tail;
  mc_server_t *srv;
  const char *coll; /* the collection of the first command (for grouping) */
  size_t coll_len;
  size_t cgkey_len;
  char cgkey[]; /* the collection generation's memcached key */
};

typedef struct mc_gen_s mc_gen_t;
struct mc_gen_s {
  mc_gen_t *next;
  uint32_t hash;
  char token[MC_TOKEN_LEN];
  size_t keylen;
  char key[];
};

struct mc_server_s {
  mc_store_t *st;
  int index;
  char *host;
  int port;
  char *name; /* "host:port" */
  int state;
  int tcp_open;    /* tcp initialised and not closed yet */
  int tcp_closing; /* waiting for its close callback */
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_getaddrinfo_t gai;
  int gai_pending;
  uv_timer_t timer;
  int timer_active;
  uint64_t last_progress;
  uint64_t retry_at;
  uint64_t backoff_ms;
  unsigned conn_id;
  mc_cmd_t *q_head, *q_tail; /* to be written */
  mc_cmd_t *f_head, *f_tail; /* in flight, in order */
  size_t ninflight;
  int dirty;
  mc_server_t *dirty_next;
  char *rbuf;
  size_t rlen, rcap;
  int sg_known;
  char sg[MC_TOKEN_LEN];
  mc_gen_t **gens; /* collection generation cache */
  size_t ngens;
};

struct mc_lock_s {
  mc_lock_t *next;
  uint32_t hash;
  mc_op_t *holder;
  mc_op_t *wait_head, *wait_tail;
};

struct mc_op_s {
  kv_req_t *req;
  mc_store_t *st;
  size_t remaining;
  int err;
  uint64_t cas;
  char *buf; /* atomic: the new value / the taken value */
  size_t buflen;
  mc_lock_t *lock;
  mc_op_t *lock_next;
  uint32_t hash;
  size_t ncmds;
  mc_cmd_t cmds[];
};

struct mc_store_s {
  kv_store_t base;
  mc_server_t *servers;
  size_t nservers;
  kv__mc_ring_t ring;
  char *kprefix; /* "kvio:<prefix>:" */
  size_t kprefix_len;
  uint64_t timeout_ms;
  uint64_t backoff_ms;
  uv_prepare_t prepare;
  int prepare_active;
  mc_server_t *dirty_head;
  mc_lock_t *locks[MC_LOCK_BUCKETS];
  int closing;
  int handles; /* handles and requests still to be closed / called back */
  kv_memcached_stats_t stats;
  /* write building */
  char *out;
  size_t out_len, out_cap;
  struct mc_seg {
    const char *ext;
    size_t off, len;
  } * segs;
  size_t nsegs, capsegs;
};

typedef kv__mc_reply_t mc_reply_t; /* memcached_int.h */

enum { R_VA, R_EN, R_HD, R_NF, R_NS, R_EX, R_ERR };

#define STORE(s) ((mc_store_t *)(s))

/* ---- memcached.c: what the connections call ------------------------------ */

/* A command ends with an error (connection lost, server error...). */
void kv__mc_cmd_fail(mc_cmd_t *cmd, int err, const char *msg);
/* A reply to cmd, the oldest command in flight; cmd->replies_left says how
 * many more it gets (CMD_DEL gets two), and the connection has already
 * taken it off the in-flight list when that is 0. */
void kv__mc_on_reply(mc_cmd_t *cmd, const mc_reply_t *r);
/* Append a queued command to the write being built for srv: its generation
 * checks first when it starts a new collection group (*g, NULL at the start
 * of the write), or defer it until they are answered. The command is then
 * in flight, deferred, or failed. */
void kv__mc_write_cmd(mc_store_t *st, mc_server_t *srv, mc_cmd_t *cmd,
                      mc_group_t **g);
/* Complete the close once no handle is left (st->handles). */
void kv__mc_maybe_closed(mc_store_t *st);

/* ---- memcached_conn.c: what the store calls ------------------------------ */

/* The handles of an opened store (the prepare handle, a timer per server). */
void kv__mc_conn_init(mc_store_t *st);
/* Fail everything in flight or queued with KV_ECANCELED and close every
 * handle; kv__mc_maybe_closed runs when the last one is closed. */
void kv__mc_conn_close(mc_store_t *st);
/* Write srv's queue before the loop blocks (all of this turn's commands for
 * a server go out in one write). */
void kv__mc_schedule_flush(mc_store_t *st, mc_server_t *srv);
/* cmd is written: its replies are awaited, in order. */
void kv__mc_inflight_push(mc_server_t *srv, mc_cmd_t *cmd);
/* Room for n more bytes in the output buffer: 0 or KV_ENOMEM. */
int kv__mc_out_reserve(mc_store_t *st, size_t n);
/* Send len bytes at p with the write without copying them (a large value:
 * the request keeps it alive until it completes). 0 or KV_ENOMEM. */
int kv__mc_out_ref(mc_store_t *st, const char *p, size_t len);

/* Append to the output buffer (room reserved beforehand). */
static inline void out_add(mc_store_t *st, const void *p, size_t n) {
  memcpy(st->out + st->out_len, p, n);
  st->out_len += n;
}

static inline void out_str(mc_store_t *st, const char *s) {
  out_add(st, s, strlen(s));
}

static inline void out_u64(mc_store_t *st, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n)
    st->out[st->out_len++] = tmp[--n];
}

#endif
