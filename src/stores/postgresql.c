/* postgresql:// — PostgreSQL through libpq, on the loop.
 *
 * One connection per store, in libpq's non-blocking pipeline mode, watched
 * by a uv_poll_t on PQsocket() (recreated whenever libpq changes sockets
 * while connecting). Host names are resolved with uv_getaddrinfo and handed
 * to libpq as hostaddr, so PQconnectPoll never blocks on DNS.
 *
 * Batching: a submitted request waits in `waiting`; a uv_prepare_t (which
 * runs once per loop turn, before the loop blocks for I/O) sends everything
 * waiting as batches of at most PG_BATCH_MAX statements, each closed by a
 * PQpipelineSync: one implicit transaction per batch, one round trip for the
 * turn. Results are kept until the batch's Sync arrives — only then is the
 * batch committed — and then applied and completed in order. If a statement
 * fails, the server rolls the batch back: that request fails, the others go
 * back to the head of `waiting` (deadlocks and serialization failures retry
 * the whole batch, a few times).
 *
 * Connection states: DOWN → RESOLVING (host names only) → CONNECTING
 * (PQconnectPoll) → SETUP (CREATE TABLE IF NOT EXISTS, PREPARE of every
 * statement) → READY. A failed attempt fails the waiting requests and backs
 * off; a dropped connection fails the requests in flight (KV_ECONN) and the
 * next request reconnects.
 *
 * SQL lives in postgresql_sql.c; this file is the connection and batching. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "kvio/postgresql.h"
#include "stores/postgresql_int.h"

#define PG_BATCH_MAX 1024   /* requests per batch (one transaction) */
#define PG_BACKOFF_MIN 50   /* ms, after the first failed attempt */
#define PG_BACKOFF_MAX 2000 /* ms */
#define PG_RETRY_MAX 8      /* retries of one request after deadlocks */
#define PG_MAX_ADDRS 8      /* resolved addresses handed to libpq */

enum {
  PG_DOWN = 0,
  PG_RESOLVING,
  PG_CONNECTING,
  PG_SETUP,
  PG_READY,
};

enum { PG_BATCH_REQS = 0, PG_BATCH_CREATE, PG_BATCH_PREPARE };

typedef struct pg_batch_s pg_batch_t;
struct pg_batch_s {
  pg_batch_t *next;
  int kind;
  size_t n;        /* statements */
  size_t cur;      /* the statement whose results are being read */
  int got;         /* cur's result arrived; its terminating NULL is next */
  PGresult **res;  /* one per statement */
  kv_req_t **reqs; /* PG_BATCH_REQS: one per statement */
};

typedef struct pg_store_s {
  kv_store_t base;
  pg_sql_t sql;
  /* connection parameters (NULL-terminated, values kv_malloc'ed) */
  char **keywords;
  char **values;
  size_t nparams;
  char *resolve_host; /* a host name to resolve first, or NULL */
  int auto_create;
  uint64_t timeout_ms;
  /* the connection */
  int state;
  PGconn *conn;
  uv_poll_t *poll;
  int poll_fd;
  int poll_events;
  uv_getaddrinfo_t gai;
  int gai_busy;
  uv_prepare_t prepare;
  uv_timer_t timer;
  uint64_t next_attempt; /* uv_now() before which no attempt starts */
  unsigned failures;     /* consecutive failed attempts */
  /* requests */
  kv_req_t *wait_head; /* submitted, not sent (linked by store_data[0]) */
  kv_req_t *wait_tail;
  pg_batch_t *fly_head; /* sent, waiting for their Sync */
  pg_batch_t *fly_tail;
  kv_postgresql_stats_t stats;
  int closing;
  int handles; /* handles whose close callback has not run */
} pg_store_t;

extern const kv_store_methods_t kv__postgresql_methods;

#define STORE(s) ((pg_store_t *)(s))
/* A request's links while the store holds it: the next waiting request,
 * and how many times a deadlock made it retry. */
#define REQ_NEXT(r) ((kv_req_t *)(r)->priv.store_data[0])
#define REQ_SET_NEXT(r, n) ((r)->priv.store_data[0] = (n))
#define REQ_RETRIES(r) ((uintptr_t)(r)->priv.store_data[1])
#define REQ_SET_RETRIES(r, n) ((r)->priv.store_data[1] = (void *)(uintptr_t)(n))

static void kick(pg_store_t *st);
static void conn_drop(pg_store_t *st, int err, const char *msg);
static void attempt_failed(pg_store_t *st, int err, const char *msg);
static void maybe_finish_close(pg_store_t *st);
static void poll_update(pg_store_t *st);

/* ---- Small helpers ------------------------------------------------------- */

/* A libpq message as a one-line detail: "postgresql: " first, newlines
 * and tabs as spaces, without the LOCATION line of verbose errors. */
static void trim_msg(char *buf, size_t len, const char *msg) {
  static const char prefix[] = "postgresql: ";
  char *loc, *p;
  size_t n;
  if (msg == NULL) msg = "";
  snprintf(buf, len, "%s%s",
           strncmp(msg, prefix, sizeof prefix - 1) ? prefix : "", msg);
  if ((loc = strstr(buf, "\nLOCATION:")) != NULL) *loc = '\0';
  n = strlen(buf);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    buf[--n] = '\0';
  for (p = buf; *p; p++) {
    if (*p == '\n' || *p == '\t') *p = ' ';
  }
}

static void fail_req(kv_req_t *req, int err, const char *msg) {
  kv_req_set_error(req, err, "%s", msg);
  kv_req_complete(req, err);
}

static void wait_push_back(pg_store_t *st, kv_req_t *req) {
  REQ_SET_NEXT(req, NULL);
  if (st->wait_tail)
    REQ_SET_NEXT(st->wait_tail, req);
  else
    st->wait_head = req;
  st->wait_tail = req;
}

/* Fail every waiting request. */
static void wait_fail_all(pg_store_t *st, int err, const char *msg) {
  kv_req_t *r = st->wait_head;
  st->wait_head = st->wait_tail = NULL;
  while (r) {
    kv_req_t *next = REQ_NEXT(r);
    fail_req(r, err, msg);
    r = next;
  }
}

static void batch_free(pg_batch_t *b) {
  for (size_t i = 0; i < b->n; i++)
    PQclear(b->res[i]);
  kv_free(b);
}

static pg_batch_t *batch_new(int kind, size_t n) {
  pg_batch_t *b =
      kv_calloc(1, sizeof *b + n * (sizeof(PGresult *) + sizeof(kv_req_t *)));
  if (b == NULL) return NULL;
  b->kind = kind;
  b->res = (PGresult **)(b + 1);
  b->reqs = (kv_req_t **)(b->res + n);
  return b;
}

static void fly_push(pg_store_t *st, pg_batch_t *b) {
  if (st->fly_tail)
    st->fly_tail->next = b;
  else
    st->fly_head = b;
  st->fly_tail = b;
}

static pg_batch_t *fly_pop(pg_store_t *st) {
  pg_batch_t *b = st->fly_head;
  st->fly_head = b->next;
  if (st->fly_head == NULL) st->fly_tail = NULL;
  return b;
}

/* ---- Handles ------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
  pg_store_t *st = h->data;
  if (h != (uv_handle_t *)&st->prepare && h != (uv_handle_t *)&st->timer)
    kv_free(h); /* a poll handle */
  st->handles--;
  maybe_finish_close(st);
}

/* Stop watching the socket. Must run before libpq closes it. */
static void poll_drop(pg_store_t *st) {
  if (st->poll == NULL) return;
  uv_close((uv_handle_t *)st->poll, on_handle_closed);
  st->poll = NULL;
  st->poll_events = 0;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Watch `fd` for `events` (a new handle when `fresh` or the fd changed). */
static int poll_watch(pg_store_t *st, int fd, int events, int fresh) {
  if (st->poll && (fresh || st->poll_fd != fd)) poll_drop(st);
  if (st->poll == NULL) {
    uv_poll_t *p = kv_malloc(sizeof *p);
    if (p == NULL) return KV_ENOMEM;
    if (uv_poll_init(st->base.loop, p, fd) != 0) {
      kv_free(p);
      return KV_ECONN;
    }
    p->data = st;
    st->handles++;
    st->poll = p;
    st->poll_fd = fd;
    st->poll_events = 0;
  }
  if (events != st->poll_events) {
    uv_poll_start(st->poll, events, on_poll);
    st->poll_events = events;
  }
  /* An idle connection must not keep the loop alive. */
  if (st->state != PG_READY || st->fly_head != NULL)
    uv_ref((uv_handle_t *)st->poll);
  else
    uv_unref((uv_handle_t *)st->poll);
  return 0;
}

static void timer_arm(pg_store_t *st, uint64_t ms);

/* The timer guards the attempt in progress, or the oldest batch in flight. */
static void timer_update(pg_store_t *st) {
  if (st->state == PG_READY && st->fly_head == NULL) {
    uv_timer_stop(&st->timer);
    return;
  }
  if (st->state != PG_DOWN && st->timeout_ms > 0 &&
      !uv_is_active((uv_handle_t *)&st->timer))
    timer_arm(st, st->timeout_ms);
}

/* ---- Connecting -----------------------------------------------------------
 */

static void on_timer(uv_timer_t *t);

static void timer_arm(pg_store_t *st, uint64_t ms) {
  uv_timer_start(&st->timer, on_timer, ms, 0);
}

static void notice_ignore(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

/* Start libpq's connection with the stored parameters plus `hostaddr`
 * (resolved addresses, or NULL). */
static void conn_start(pg_store_t *st, const char *host, const char *hostaddr) {
  const char **kw = kv_calloc(st->nparams + 4, sizeof *kw);
  const char **val = kv_calloc(st->nparams + 4, sizeof *val);
  size_t n = 0;
  char msg[512];
  if (kw == NULL || val == NULL) {
    kv_free(kw);
    kv_free(val);
    attempt_failed(st, KV_ENOMEM, "postgresql: out of memory");
    return;
  }
  for (size_t i = 0; i < st->nparams; i++) {
    kw[n] = st->keywords[i];
    val[n++] = st->values[i];
  }
  if (hostaddr) {
    kw[n] = "host";
    val[n++] = host;
    kw[n] = "hostaddr";
    val[n++] = hostaddr;
  }
  st->conn = PQconnectStartParams(kw, val, 0);
  kv_free(kw);
  kv_free(val);
  if (st->conn == NULL) {
    attempt_failed(st, KV_ENOMEM, "postgresql: out of memory");
    return;
  }
  PQsetNoticeProcessor(st->conn, notice_ignore, NULL);
  /* Connection errors then carry their SQLSTATE ("FATAL:  28P01: ..."). */
  PQsetErrorVerbosity(st->conn, PQERRORS_VERBOSE);
  if (PQstatus(st->conn) == CONNECTION_BAD) {
    trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
    attempt_failed(st, KV_ECONN, msg);
    return;
  }
  st->state = PG_CONNECTING;
  if (poll_watch(st, PQsocket(st->conn), UV_WRITABLE, 1) != 0) {
    attempt_failed(st, KV_ECONN, "postgresql: cannot watch the socket");
    return;
  }
  if (st->timeout_ms) timer_arm(st, st->timeout_ms);
}

static void on_resolved(uv_getaddrinfo_t *gai, int status,
                        struct addrinfo *res) {
  pg_store_t *st = gai->data;
  char list[PG_MAX_ADDRS * (INET6_ADDRSTRLEN + 1)] = "";
  char hosts[PG_MAX_ADDRS * 256 + 1] = "";
  char msg[600];
  size_t n = 0;
  st->gai_busy = 0;
  st->handles--;
  if (st->closing || st->state != PG_RESOLVING) {
    /* An attempt abandoned (timeout, close) while resolving. */
    uv_freeaddrinfo(res);
    maybe_finish_close(st);
    return;
  }
  if (status != 0) {
    snprintf(msg, sizeof msg, "postgresql: cannot resolve host '%s': %s",
             st->resolve_host, uv_strerror(status));
    attempt_failed(st, KV_ECONN, msg);
    return;
  }
  for (struct addrinfo *a = res; a && n < PG_MAX_ADDRS; a = a->ai_next) {
    char ip[INET6_ADDRSTRLEN];
    if (a->ai_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)a->ai_addr, ip, sizeof ip);
    else if (a->ai_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)a->ai_addr, ip, sizeof ip);
    else
      continue;
    if (strstr(list, ip)) continue; /* one entry per address */
    if (n) {
      strcat(list, ",");
      strcat(hosts, ",");
    }
    strcat(list, ip);
    strncat(hosts, st->resolve_host, 255);
    n++;
  }
  uv_freeaddrinfo(res);
  if (n == 0) {
    snprintf(msg, sizeof msg, "postgresql: host '%s' has no address",
             st->resolve_host);
    attempt_failed(st, KV_ECONN, msg);
    return;
  }
  conn_start(st, hosts, list);
}

/* Begin a connection attempt. */
static void conn_begin(pg_store_t *st) {
  if (st->resolve_host && st->gai_busy) {
    /* The resolution of an abandoned attempt is still running: use it. */
    st->state = PG_RESOLVING;
    if (st->timeout_ms) timer_arm(st, st->timeout_ms);
    return;
  }
  if (st->resolve_host) {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    st->gai.data = st;
    st->state = PG_RESOLVING;
    if (uv_getaddrinfo(st->base.loop, &st->gai, on_resolved, st->resolve_host,
                       NULL, &hints) != 0) {
      attempt_failed(st, KV_ECONN, "postgresql: cannot start resolving");
      return;
    }
    st->gai_busy = 1;
    st->handles++;
    if (st->timeout_ms) timer_arm(st, st->timeout_ms);
    return;
  }
  conn_start(st, NULL, NULL);
}

/* An error text from a connection attempt: KV_EAUTH for an authentication
 * failure (SQLSTATE 28P01 / 28000, or a password the server wants and the
 * URL lacks), else KV_ECONN. */
static int connect_error(PGconn *conn, const char *msg) {
  if (PQconnectionNeedsPassword(conn)) return KV_EAUTH;
  if (strstr(msg, " 28P01:") || strstr(msg, " 28000:")) return KV_EAUTH;
  return KV_ECONN;
}

/* The connection's statements: the table (when auto_create), then one
 * PREPARE per statement, each group closed by a Sync. */
static int setup_send(pg_store_t *st) {
  pg_batch_t *b;
  if (st->auto_create) {
    b = batch_new(PG_BATCH_CREATE, 2);
    if (b == NULL) return KV_ENOMEM;
    fly_push(st, b);
    b->n = 2;
    if (!PQsendQueryParams(st->conn, st->sql.create_table, 0, NULL, NULL, NULL,
                           NULL, 1) ||
        !PQsendQueryParams(st->conn, st->sql.create_index, 0, NULL, NULL, NULL,
                           NULL, 1) ||
        !PQpipelineSync(st->conn))
      return KV_ECONN;
  }
  b = batch_new(PG_BATCH_PREPARE, PG_STMT_COUNT);
  if (b == NULL) return KV_ENOMEM;
  fly_push(st, b);
  b->n = PG_STMT_COUNT;
  for (int i = 0; i < PG_STMT_COUNT; i++) {
    const pg_stmt_t *s = &st->sql.stmts[i];
    if (!PQsendPrepare(st->conn, s->name, s->text, s->nparams, s->types))
      return KV_ECONN;
  }
  if (!PQpipelineSync(st->conn)) return KV_ECONN;
  return 0;
}

static void connect_step(pg_store_t *st) {
  char msg[1024];
  int fd, err;
  switch (PQconnectPoll(st->conn)) {
  case PGRES_POLLING_READING:
    fd = PQsocket(st->conn);
    if (poll_watch(st, fd, UV_READABLE, 1) != 0)
      attempt_failed(st, KV_ECONN, "postgresql: cannot watch the socket");
    return;
  case PGRES_POLLING_WRITING:
    fd = PQsocket(st->conn);
    if (poll_watch(st, fd, UV_WRITABLE, 1) != 0)
      attempt_failed(st, KV_ECONN, "postgresql: cannot watch the socket");
    return;
  case PGRES_POLLING_OK:
    PQsetErrorVerbosity(st->conn, PQERRORS_DEFAULT);
    if (PQsetnonblocking(st->conn, 1) != 0 || !PQenterPipelineMode(st->conn)) {
      trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
      attempt_failed(st, KV_ECONN, msg);
      return;
    }
    st->state = PG_SETUP;
    err = setup_send(st);
    if (err) {
      trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
      attempt_failed(st, err, msg);
      return;
    }
    poll_update(st);
    return;
  default: /* PGRES_POLLING_FAILED */
    trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
    attempt_failed(st, connect_error(st->conn, msg), msg);
    return;
  }
}

/* Release the connection and whatever is in flight on it; requests in
 * flight fail with err. */
static void conn_release(pg_store_t *st, int err, const char *msg) {
  pg_batch_t *b;
  poll_drop(st);
  if (st->conn) PQfinish(st->conn);
  st->conn = NULL;
  if (st->closing && st->gai_busy) uv_cancel((uv_req_t *)&st->gai);
  st->state = PG_DOWN;
  uv_timer_stop(&st->timer);
  while (st->fly_head) {
    b = fly_pop(st);
    if (b->kind == PG_BATCH_REQS)
      for (size_t i = 0; i < b->n; i++)
        fail_req(b->reqs[i], err, msg);
    batch_free(b);
  }
  st->stats.connected = 0;
}

/* A connection attempt failed: what waits fails with it, the next attempt
 * backs off. */
static void attempt_failed(pg_store_t *st, int err, const char *msg) {
  uint64_t delay;
  conn_release(st, err, msg);
  st->stats.connect_failures++;
  st->failures++;
  delay = (uint64_t)PG_BACKOFF_MIN << (st->failures < 7 ? st->failures - 1 : 6);
  if (delay > PG_BACKOFF_MAX) delay = PG_BACKOFF_MAX;
  st->next_attempt = uv_now(st->base.loop) + delay;
  wait_fail_all(st, err, msg);
  maybe_finish_close(st);
}

/* An established connection was lost (or abandoned): requests in flight
 * fail, waiting ones go out on the next connection. */
static void conn_drop(pg_store_t *st, int err, const char *msg) {
  if (st->state != PG_READY) { /* lost while setting up: a failed attempt */
    attempt_failed(st, err, msg);
    return;
  }
  conn_release(st, err, msg);
  st->stats.disconnects++;
  st->next_attempt = 0;
  if (st->closing) {
    wait_fail_all(st, KV_ECANCELED, "postgresql: the store was closed");
    maybe_finish_close(st);
    return;
  }
  if (st->wait_head) kick(st);
}

static void on_timer(uv_timer_t *t) {
  pg_store_t *st = t->data;
  char msg[128];
  switch (st->state) {
  case PG_DOWN: /* the backoff has passed */
    if (st->wait_head) kick(st);
    return;
  case PG_RESOLVING:
  case PG_CONNECTING:
  case PG_SETUP:
    snprintf(msg, sizeof msg,
             "postgresql: no connection within the timeout (%.3g s)",
             (double)st->timeout_ms / 1e3);
    attempt_failed(st, KV_ECONN, msg);
    return;
  default:
    snprintf(msg, sizeof msg,
             "postgresql: no answer from the server within the timeout "
             "(%.3g s); connection dropped",
             (double)st->timeout_ms / 1e3);
    conn_drop(st, KV_ETIMEDOUT, msg);
    return;
  }
}

/* ---- Sending ----------------------------------------------------------------
 */

/* Send everything waiting (READY only). */
static void send_waiting(pg_store_t *st) {
  char msg[1024];
  /* An idle connection may have been closed by the server (a restart, an
   * idle timeout) without the loop having polled it yet: then nothing is
   * lost by reconnecting before sending. */
  if (st->fly_head == NULL &&
      (!PQconsumeInput(st->conn) || PQstatus(st->conn) == CONNECTION_BAD)) {
    trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
    conn_drop(st, KV_ECONN, msg);
    return;
  }
  while (st->wait_head) {
    size_t n = 0;
    pg_batch_t *b = batch_new(PG_BATCH_REQS, PG_BATCH_MAX);
    if (b == NULL) {
      wait_fail_all(st, KV_ENOMEM, "postgresql: out of memory");
      return;
    }
    fly_push(st, b);
    while (st->wait_head && n < PG_BATCH_MAX) {
      kv_req_t *r = st->wait_head;
      int err;
      st->wait_head = REQ_NEXT(r);
      if (st->wait_head == NULL) st->wait_tail = NULL;
      b->reqs[n] = r;
      b->n = ++n;
      err = kv__pg_sql_send(&st->sql, st->conn, r);
      if (err == KV_ENOMEM) {
        /* Nothing was queued for it: the request fails alone. */
        b->n = --n;
        fail_req(r, err, "postgresql: out of memory");
        continue;
      }
      if (err) {
        trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
        conn_drop(st, KV_ECONN, msg);
        return;
      }
      st->stats.statements++;
    }
    if (!PQpipelineSync(st->conn)) {
      trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
      conn_drop(st, KV_ECONN, msg);
      return;
    }
    st->stats.round_trips++;
    if (n > st->stats.max_batch) st->stats.max_batch = n;
  }
}

static void process(pg_store_t *st);

/* Start whatever is possible now: a connection attempt, or sending. */
static void kick(pg_store_t *st) {
  if (st->closing || st->wait_head == NULL) return;
  if (st->state == PG_DOWN) {
    uint64_t now = uv_now(st->base.loop);
    if (now < st->next_attempt) {
      if (!uv_is_active((uv_handle_t *)&st->timer))
        timer_arm(st, st->next_attempt - now);
      return;
    }
    conn_begin(st);
    return;
  }
  if (st->state != PG_READY) return;
  send_waiting(st);
  if (st->state == PG_READY) process(st);
}

static void on_prepare(uv_prepare_t *h) {
  pg_store_t *st = h->data;
  uv_prepare_stop(h);
  kick(st);
}

/* ---- Receiving ---------------------------------------------------------- */

/* Which requests of a failed batch fail, and how. */
static void batch_failed(pg_store_t *st, pg_batch_t *b) {
  size_t f = 0;
  int err, whole, retry_all;
  char msg[1024];
  while (f < b->n &&
         (b->res[f] == NULL || PQresultStatus(b->res[f]) != PGRES_FATAL_ERROR))
    f++;
  if (f == b->n) f = 0; /* no statement failed: the Sync did */
  err = kv__pg_sql_error(&st->sql, b->res[f], b->reqs[f], msg, sizeof msg,
                         &whole, &retry_all);
  /* Everything goes back in order, ahead of what waits, except the
   * failures. */
  kv_req_t *head = NULL, *tail = NULL;
  for (size_t i = 0; i < b->n; i++) {
    kv_req_t *r = b->reqs[i];
    int fails = whole || (i == f && !retry_all);
    if (retry_all && !whole) {
      fails = REQ_RETRIES(r) >= PG_RETRY_MAX;
      REQ_SET_RETRIES(r, REQ_RETRIES(r) + 1);
    }
    if (fails) {
      fail_req(r, err, msg);
      continue;
    }
    st->stats.retried++;
    REQ_SET_NEXT(r, NULL);
    if (tail)
      REQ_SET_NEXT(tail, r);
    else
      head = r;
    tail = r;
  }
  if (head) {
    REQ_SET_NEXT(tail, st->wait_head);
    st->wait_head = head;
    if (st->wait_tail == NULL) st->wait_tail = tail;
  }
}

/* A batch's Sync arrived: it is committed (or rolled back). */
static int batch_done(pg_store_t *st, pg_batch_t *b) {
  char msg[1024];
  int failed = 0;
  for (size_t i = 0; i < b->n; i++)
    if (b->res[i] == NULL || (PQresultStatus(b->res[i]) != PGRES_COMMAND_OK &&
                              PQresultStatus(b->res[i]) != PGRES_TUPLES_OK))
      failed = 1;
  switch (b->kind) {
  case PG_BATCH_CREATE:
    /* A concurrent creator may win the race (23505, 42P07): fine. */
    if (failed) {
      for (size_t i = 0; i < b->n; i++) {
        const char *code =
            b->res[i] ? PQresultErrorField(b->res[i], PG_DIAG_SQLSTATE) : NULL;
        /* A concurrent creator (23505, 42P07), a read-only session or
         * standby (25006), no CREATE privilege (42501): the table may well
         * exist; the PREPAREs that follow will tell. */
        if (code && strcmp(code, "23505") != 0 && strcmp(code, "42P07") != 0 &&
            strcmp(code, "25006") != 0 && strcmp(code, "42501") != 0) {
          int whole, retry;
          int err = kv__pg_sql_error(&st->sql, b->res[i], NULL, msg, sizeof msg,
                                     &whole, &retry);
          batch_free(b);
          attempt_failed(st, err, msg);
          return -1;
        }
      }
    }
    break;
  case PG_BATCH_PREPARE:
    if (failed) {
      size_t i = 0;
      int err, whole, retry;
      while (i + 1 < b->n && (b->res[i] == NULL ||
                              PQresultStatus(b->res[i]) != PGRES_FATAL_ERROR))
        i++;
      err = kv__pg_sql_error(&st->sql, b->res[i], NULL, msg, sizeof msg, &whole,
                             &retry);
      batch_free(b);
      attempt_failed(st, err, msg);
      return -1;
    }
    st->state = PG_READY;
    st->failures = 0;
    st->stats.connects++;
    st->stats.connected = 1;
    uv_timer_stop(&st->timer);
    break;
  default:
    if (failed) {
      batch_failed(st, b);
    } else {
      for (size_t i = 0; i < b->n; i++) {
        kv_req_t *r = b->reqs[i];
        int err = kv__pg_sql_apply(&st->sql, b->res[i], r, msg, sizeof msg);
        st->stats.requests++;
        if (err)
          fail_req(r, err, msg);
        else
          kv_req_complete(r, 0);
      }
    }
    uv_timer_stop(&st->timer);
    break;
  }
  batch_free(b);
  return 0;
}

/* A result that ends the session: the server shuts down or restarts
 * (SQLSTATE class 57P: "terminating connection due to administrator
 * command"), or a connection exception (class 08). The server sends it
 * and closes; the results stop in the middle of the pipeline. */
static int ends_session(const PGresult *res) {
  const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  return code != NULL &&
         (strncmp(code, "57P", 3) == 0 || strncmp(code, "08", 2) == 0);
}

/* Results out of step with what was sent: the connection failed (libpq
 * reports it so, once it has read the end of the stream; or the server
 * said it ends the session: `ended`, or in a result of the batch), or
 * something is badly wrong. */
static void process_lost(pg_store_t *st, int ended) {
  char msg[1024];
  pg_batch_t *b = st->fly_head;
  for (size_t i = 0; b != NULL && !ended && i < b->n; i++)
    ended = ends_session(b->res[i]);
  if (PQstatus(st->conn) != CONNECTION_BAD)
    (void)PQconsumeInput(st->conn); /* the end of the stream, if it came */
  if (PQstatus(st->conn) == CONNECTION_BAD || ended) {
    trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
    conn_drop(st, KV_ECONN,
              strlen(msg) > 12 ? msg : "postgresql: connection lost");
  } else {
    conn_drop(st, KV_EPROTO, "postgresql: results out of step with requests");
  }
}

/* Read every result that has arrived, in order. */
static void process(pg_store_t *st) {
  char msg[1024];
  while (st->conn && st->fly_head) {
    pg_batch_t *b = st->fly_head;
    PGresult *res;
    if (PQisBusy(st->conn)) break;
    res = PQgetResult(st->conn);
    if (b->cur < b->n) {
      if (res == NULL) {
        if (!b->got) { /* never between a statement's results */
          process_lost(st, 0);
          return;
        }
        b->cur++;
        b->got = 0;
        continue;
      }
      if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
        PQclear(res);
        process_lost(st, 0);
        return;
      }
      if (b->res[b->cur] == NULL)
        b->res[b->cur] = res;
      else
        PQclear(res);
      b->got = 1;
      continue;
    }
    if (res == NULL) break;
    if (PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
      int ended = ends_session(res);
      PQclear(res);
      process_lost(st, ended);
      return;
    }
    PQclear(res);
    fly_pop(st);
    if (batch_done(st, b) != 0) return;
  }
  if (st->conn && PQstatus(st->conn) == CONNECTION_BAD) {
    trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
    conn_drop(st, KV_ECONN,
              strlen(msg) > 12 ? msg : "postgresql: connection lost");
    return;
  }
  if (st->conn == NULL) return;
  if (st->state == PG_READY && st->wait_head && !st->closing) {
    /* Retried requests, or requests that waited for the setup. */
    if (!uv_is_active((uv_handle_t *)&st->prepare))
      uv_prepare_start(&st->prepare, on_prepare);
  }
  poll_update(st);
  timer_update(st);
  maybe_finish_close(st);
}

/* Watch for what libpq needs: input always, output while some is queued. */
static void poll_update(pg_store_t *st) {
  char msg[1024];
  int events = UV_READABLE, r;
  if (st->conn == NULL) return;
  r = PQflush(st->conn);
  if (r < 0 || PQstatus(st->conn) == CONNECTION_BAD) {
    trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
    conn_drop(st, KV_ECONN, msg);
    return;
  }
  if (r > 0) events |= UV_WRITABLE;
  if (poll_watch(st, PQsocket(st->conn), events, 0) != 0)
    conn_drop(st, KV_ECONN, "postgresql: cannot watch the socket");
}

static void on_poll(uv_poll_t *h, int status, int events) {
  pg_store_t *st = h->data;
  char msg[1024];
  if (h != st->poll) return; /* a handle being replaced */
  if (st->state == PG_CONNECTING) {
    connect_step(st);
    return;
  }
  if (status < 0) {
    /* An error on the socket (libuv has stopped watching it). libpq's own
     * account of it, if it has one, is the better detail. */
    snprintf(msg, sizeof msg, "postgresql: socket error: %s",
             uv_strerror(status));
    if (!PQconsumeInput(st->conn))
      trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
    process(st);
    if (st->conn) conn_drop(st, KV_ECONN, msg);
    return;
  }
  if ((events & UV_WRITABLE) && PQflush(st->conn) < 0) {
    trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
    conn_drop(st, KV_ECONN, msg);
    return;
  }
  if ((events & UV_READABLE) && !PQconsumeInput(st->conn)) {
    trim_msg(msg, sizeof msg, PQerrorMessage(st->conn));
    /* What already arrived is still delivered before the loss. */
    process(st);
    if (st->conn) conn_drop(st, KV_ECONN, msg);
    return;
  }
  process(st);
}

/* ---- Submitting -----------------------------------------------------------
 */

static int pg_submit(kv_store_t *s, kv_req_t *req) {
  pg_store_t *st = STORE(s);
  int err = kv__pg_sql_check(req);
  if (err) return err;
  if (kv__pg_sql_trivial(req)) { /* e.g. a bulk op of 0 keys */
    kv_req_complete(req, 0);
    return 0;
  }
  REQ_SET_RETRIES(req, 0);
  wait_push_back(st, req);
  if (!uv_is_active((uv_handle_t *)&st->prepare))
    uv_prepare_start(&st->prepare, on_prepare);
  return 0;
}

static int pg_ctl(kv_store_t *s, int op, void *arg, size_t size) {
  pg_store_t *st = STORE(s);
  if (op == KV_POSTGRESQL_CTL_STATS) {
    KV_CTL_EXPECT(arg, size, st->stats);
    memcpy(arg, &st->stats, sizeof st->stats);
    return 0;
  }
  return KV_ENOTSUP;
}

/* ---- Lifetime -------------------------------------------------------------
 */

/* libpq options passed through from the URL query. */
static const char *const pg_passthrough[] = {"host",
                                             "hostaddr",
                                             "port",
                                             "dbname",
                                             "user",
                                             "password",
                                             "passfile",
                                             "channel_binding",
                                             "connect_timeout",
                                             "options",
                                             "application_name",
                                             "keepalives",
                                             "keepalives_idle",
                                             "keepalives_interval",
                                             "keepalives_count",
                                             "tcp_user_timeout",
                                             "sslmode",
                                             "sslcompression",
                                             "sslcert",
                                             "sslkey",
                                             "sslpassword",
                                             "sslrootcert",
                                             "sslcrl",
                                             "sslcrldir",
                                             "sslsni",
                                             "requirepeer",
                                             "ssl_min_protocol_version",
                                             "ssl_max_protocol_version",
                                             "gssencmode",
                                             "krbsrvname",
                                             "gsslib",
                                             "service",
                                             "target_session_attrs",
                                             NULL};

static const char *const pg_options[] = {"table",
                                         "auto_create",
                                         "timeout",
                                         "host",
                                         "hostaddr",
                                         "port",
                                         "dbname",
                                         "user",
                                         "password",
                                         "passfile",
                                         "channel_binding",
                                         "connect_timeout",
                                         "options",
                                         "application_name",
                                         "keepalives",
                                         "keepalives_idle",
                                         "keepalives_interval",
                                         "keepalives_count",
                                         "tcp_user_timeout",
                                         "sslmode",
                                         "sslcompression",
                                         "sslcert",
                                         "sslkey",
                                         "sslpassword",
                                         "sslrootcert",
                                         "sslcrl",
                                         "sslcrldir",
                                         "sslsni",
                                         "requirepeer",
                                         "ssl_min_protocol_version",
                                         "ssl_max_protocol_version",
                                         "gssencmode",
                                         "krbsrvname",
                                         "gsslib",
                                         "service",
                                         "target_session_attrs",
                                         NULL};

static void params_free(pg_store_t *st) {
  for (size_t i = 0; i < st->nparams; i++) {
    kv_free(st->keywords[i]);
    kv_free(st->values[i]);
  }
  kv_free(st->keywords);
  kv_free(st->values);
  st->keywords = st->values = NULL;
  st->nparams = 0;
  kv_free(st->resolve_host);
  st->resolve_host = NULL;
}

/* Set (or replace) a connection parameter. */
static int param_set(pg_store_t *st, const char *kw, const char *val) {
  char *v = kv_strndup(val, strlen(val));
  if (v == NULL) return KV_ENOMEM;
  for (size_t i = 0; i < st->nparams; i++) {
    if (strcmp(st->keywords[i], kw) == 0) {
      kv_free(st->values[i]);
      st->values[i] = v;
      return 0;
    }
  }
  st->keywords[st->nparams] = kv_strndup(kw, strlen(kw));
  if (st->keywords[st->nparams] == NULL) {
    kv_free(v);
    return KV_ENOMEM;
  }
  st->values[st->nparams++] = v;
  return 0;
}

static int is_ip_literal(const char *h) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

static int pg_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                   size_t errbuf_len) {
  pg_store_t *st = STORE(s);
  const char *table = kv_url_param(url, "table");
  const char *host;
  size_t cap = KV__ARRAY_SIZE(pg_passthrough) + 8;
  char port[16];
  double timeout;
  int err;

  if (table == NULL) table = "kvio";
  if (table[0] == '\0' || strlen(table) > 63)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "invalid table name '%s': expected 1 to 63 bytes", table);
  if ((err = kv_url_param_bool(url, "auto_create", 1, &st->auto_create, errbuf,
                               errbuf_len)) != 0 ||
      (err = kv_url_param_double(url, "timeout", 0, 86400, 30, &timeout, errbuf,
                                 errbuf_len)) != 0)
    return err;
  st->timeout_ms = (uint64_t)(timeout * 1e3 + 0.5);
  if (timeout > 0 && st->timeout_ms == 0) st->timeout_ms = 1;
  st->keywords = kv_calloc(cap, sizeof *st->keywords);
  st->values = kv_calloc(cap, sizeof *st->values);
  if (st->keywords == NULL || st->values == NULL) goto oom;
  if (url->host && url->host[0] && param_set(st, "host", url->host)) goto oom;
  if (url->port >= 0) {
    snprintf(port, sizeof port, "%d", url->port);
    if (param_set(st, "port", port)) goto oom;
  }
  if (url->user && url->user[0] && param_set(st, "user", url->user)) goto oom;
  if (url->password && param_set(st, "password", url->password)) goto oom;
  if (url->path && url->path[0] == '/' && url->path[1] &&
      param_set(st, "dbname", url->path + 1))
    goto oom;
  for (size_t i = 0; i < url->nparams; i++)
    for (const char *const *p = pg_passthrough; *p; p++)
      if (strcmp(*p, url->params[i].name) == 0 &&
          param_set(st, *p, url->params[i].value))
        goto oom;
  if (param_set(st, "client_encoding", "UTF8") ||
      param_set(st, "fallback_application_name", "kvio"))
    goto oom;
  /* A host name (not an IP, a socket directory or a list) is resolved on
   * the threadpool before each attempt. */
  host = NULL;
  for (size_t i = 0; i < st->nparams; i++)
    if (strcmp(st->keywords[i], "host") == 0) host = st->values[i];
  if (host && host[0] != '/' && host[0] != '@' && !strchr(host, ',') &&
      !is_ip_literal(host) && kv_url_param(url, "hostaddr") == NULL &&
      kv_url_param(url, "service") == NULL) {
    st->resolve_host = kv_strndup(host, strlen(host));
    if (st->resolve_host == NULL) goto oom;
  }
  if ((err = kv__pg_sql_init(&st->sql, table, errbuf, errbuf_len)) != 0)
    goto fail;

  uv_prepare_init(s->loop, &st->prepare);
  uv_timer_init(s->loop, &st->timer);
  st->prepare.data = st;
  st->timer.data = st;
  st->handles = 2;
  return 0;
oom:
  err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
fail:
  params_free(st);
  kv__pg_sql_free(&st->sql);
  return err;
}

/* Closing: once nothing is in flight, release the connection, then the
 * handles; the last handle's close callback ends it. */
static void maybe_finish_close(pg_store_t *st) {
  if (!st->closing) return;
  if (st->closing == 1) {
    if (st->fly_head != NULL) return;
    st->closing = 2;
    conn_release(st, KV_ECANCELED, "postgresql: the store was closed");
    uv_close((uv_handle_t *)&st->prepare, on_handle_closed);
    uv_close((uv_handle_t *)&st->timer, on_handle_closed);
    return; /* on_handle_closed comes back here */
  }
  if (st->closing == 2 && st->handles == 0) {
    st->closing = 3;
    params_free(st);
    kv__pg_sql_free(&st->sql);
    kv_store_closed(&st->base);
  }
}

/* Waiting requests are canceled; batches in flight finish (or fail with the
 * connection), then the connection and the handles are released. */
static void pg_close(kv_store_t *s) {
  pg_store_t *st = STORE(s);
  st->closing = 1;
  uv_prepare_stop(&st->prepare);
  wait_fail_all(st, KV_ECANCELED,
                "postgresql: store closed before the request was sent");
  if (st->state != PG_READY) {
    /* An attempt in progress is abandoned. */
    conn_release(st, KV_ECANCELED, "postgresql: the store was closed");
  }
  maybe_finish_close(st);
}

const kv_store_methods_t kv__postgresql_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "postgresql",
    .store_size = sizeof(pg_store_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT | KV_CAP_SHARED,
    .options = pg_options,
    .open = pg_open,
    .close = pg_close,
    .get = pg_submit,
    .ttl = pg_submit,
    .put = pg_submit,
    .del = pg_submit,
    .get_many = pg_submit,
    .ttl_many = pg_submit,
    .put_many = pg_submit,
    .delete_many = pg_submit,
    .keys = pg_submit,
    .collections = pg_submit,
    .destroy = pg_submit,
    .destroy_collection = pg_submit,
    .cull = pg_submit,
    .put_if_absent = pg_submit,
    .cas = pg_submit,
    .incr = pg_submit,
    .take = pg_submit,
    .ctl_ex = pg_ctl,
};
