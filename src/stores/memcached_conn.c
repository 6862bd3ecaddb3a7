/* memcached:// connections (the store itself is memcached.c; what the two
 * share is in memcached_store.h).
 *
 * One uv_tcp_t per server, opened on first use. Commands made in one loop
 * turn are queued per server and written by a uv_prepare handle (which runs
 * before the loop blocks) as one write per server; replies come back in
 * order and are matched to the commands in flight. A server that refuses a
 * connection is left alone for a backoff period during which its requests
 * fail at once with KV_ECONN; the others keep working. A dropped or
 * timed-out connection fails what it had in flight; the next request
 * reconnects. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "memcached_store.h"

static void flush_server(mc_store_t *st, mc_server_t *srv);

/* ---- Output buffer --------------------------------------------------------
 * A write is built in st->out; large values are referenced, not copied
 * (segments). */

int kv__mc_out_reserve(mc_store_t *st, size_t n) {
  if (st->out_cap - st->out_len >= n) return 0;
  size_t cap = st->out_cap ? st->out_cap : 4096;
  while (cap - st->out_len < n)
    cap *= 2;
  char *p = kv_realloc(st->out, cap);
  if (p == NULL) return KV_ENOMEM;
  st->out = p;
  st->out_cap = cap;
  return 0;
}

static int seg_push(mc_store_t *st, const char *ext, size_t off, size_t len) {
  if (st->nsegs == st->capsegs) {
    size_t cap = st->capsegs ? st->capsegs * 2 : 8;
    struct mc_seg *p = kv_realloc(st->segs, cap * sizeof *p);
    if (p == NULL) return KV_ENOMEM;
    st->segs = p;
    st->capsegs = cap;
  }
  st->segs[st->nsegs].ext = ext;
  st->segs[st->nsegs].off = off;
  st->segs[st->nsegs].len = len;
  st->nsegs++;
  return 0;
}

/* Start of the current inline segment. */
static size_t seg_start(mc_store_t *st) {
  if (st->nsegs == 0) return 0;
  struct mc_seg *s = &st->segs[st->nsegs - 1];
  return s->ext ? s->off : s->off + s->len;
}

int kv__mc_out_ref(mc_store_t *st, const char *p, size_t len) {
  size_t s = seg_start(st);
  if (seg_push(st, NULL, s, st->out_len - s) != 0 ||
      seg_push(st, p, st->out_len, len) != 0)
    return KV_ENOMEM;
  return 0;
}

/* ---- Parser ----------------------------------------------------------------
 * Returns the bytes consumed by one reply, 0 when more input is needed, or
 * -1 on a malformed reply. */

static uint64_t parse_u64(const char *p, const char *end, const char **stop) {
  uint64_t v = 0;
  while (p < end && *p >= '0' && *p <= '9') {
    uint64_t d = (uint64_t)(*p++ - '0');
    v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d; /* saturate */
  }
  *stop = p;
  return v;
}

long kv__mc_parse_reply(const char *buf, size_t len, kv__mc_reply_t *r) {
  const char *nl = memchr(buf, '\n', len), *end, *p;
  size_t line;
  if (nl == NULL) return len > 8192 ? -1 : 0;
  /* The same limit with the newline in sight, so that how the bytes were
   * split by the network does not change the verdict. */
  if (nl - buf > 8192) return -1;
  line = (size_t)(nl - buf) + 1;
  end = nl;
  if (end > buf && end[-1] == '\r') end--;
  r->line = buf;
  r->line_len = (size_t)(end - buf);
  r->data = NULL;
  r->dlen = 0;
  r->cas = 0;
  if (r->line_len >= 2 && buf[0] == 'V' && buf[1] == 'A') {
    const char *stop;
    uint64_t n = parse_u64(buf + 3, end, &stop);
    if (r->line_len < 4 || stop == buf + 3) return -1;
    if (n > (uint64_t)LONG_MAX - line - 2) return -1; /* no such length */
    for (p = stop; p < end; p++) {
      if (*p == ' ' && p + 1 < end && p[1] == 'c')
        r->cas = parse_u64(p + 2, end, &stop);
    }
    if (len - line < n + 2) return 0;
    r->type = R_VA;
    r->data = buf + line;
    r->dlen = (size_t)n;
    return (long)(line + n + 2);
  }
  if (r->line_len >= 2) {
    char a = buf[0], b = buf[1];
    if (a == 'H' && b == 'D')
      r->type = R_HD;
    else if (a == 'E' && b == 'N')
      r->type = R_EN;
    else if (a == 'N' && b == 'F')
      r->type = R_NF;
    else if (a == 'N' && b == 'S')
      r->type = R_NS;
    else if (a == 'E' && b == 'X')
      r->type = R_EX;
    else if ((r->line_len >= 5 && memcmp(buf, "ERROR", 5) == 0) ||
             (r->line_len >= 12 && memcmp(buf, "SERVER_ERROR", 12) == 0) ||
             (r->line_len >= 12 && memcmp(buf, "CLIENT_ERROR", 12) == 0))
      r->type = R_ERR;
    else
      return -1;
    return (long)line;
  }
  return -1;
}

/* ---- Connections -------------------------------------------------------- */

static void server_update_ref(mc_server_t *srv) {
  if (!srv->tcp_open || srv->tcp_closing) return;
  if (srv->ninflight || srv->q_head)
    uv_ref((uv_handle_t *)&srv->tcp);
  else
    uv_unref((uv_handle_t *)&srv->tcp);
}

static void fail_list(mc_cmd_t *c, int err, const char *msg) {
  while (c) {
    mc_cmd_t *next = c->next;
    c->in_queue = 0;
    kv__mc_cmd_fail(c, err, msg);
    c = next;
  }
}

static void fail_queued(mc_server_t *srv, int err, const char *msg) {
  mc_cmd_t *c = srv->q_head;
  srv->q_head = srv->q_tail = NULL;
  fail_list(c, err, msg);
}

static void on_tcp_closed(uv_handle_t *h) {
  mc_server_t *srv = h->data;
  srv->tcp_open = 0;
  srv->tcp_closing = 0;
  if (srv->st->closing) {
    srv->st->handles--;
    kv__mc_maybe_closed(srv->st);
    return;
  }
  if (srv->q_head) kv__mc_schedule_flush(srv->st, srv);
}

static void timer_stop(mc_server_t *srv) {
  if (srv->timer_active) {
    uv_timer_stop(&srv->timer);
    srv->timer_active = 0;
  }
}

/* Drop the connection: everything in flight (and queued) fails with err. */
static void conn_fail(mc_server_t *srv, int err, const char *why) {
  char msg[300];
  mc_cmd_t *c;
  if (srv->state == SRV_IDLE && !srv->tcp_open) return;
  snprintf(msg, sizeof msg, "memcached %s: %s", srv->name, why);
  srv->st->stats.conn_errors++;
  if (srv->tcp_open && !srv->tcp_closing) {
    srv->tcp_closing = 1;
    uv_close((uv_handle_t *)&srv->tcp, on_tcp_closed);
  }
  srv->state = SRV_IDLE;
  srv->conn_id++;
  srv->rlen = 0;
  timer_stop(srv);
  c = srv->f_head;
  srv->f_head = srv->f_tail = NULL;
  srv->ninflight = 0;
  fail_list(c, err, msg);
  fail_queued(srv, err, msg);
}

static void backoff(mc_server_t *srv) {
  uint64_t now = uv_now(srv->st->base.loop);
  srv->retry_at = now + srv->backoff_ms;
  srv->backoff_ms *= 2;
  if (srv->backoff_ms > srv->st->backoff_ms * 32)
    srv->backoff_ms = srv->st->backoff_ms * 32;
}

static void on_timer(uv_timer_t *t) {
  mc_server_t *srv = t->data;
  uint64_t now = uv_now(srv->st->base.loop);
  if (srv->state == SRV_UP && srv->ninflight == 0) {
    timer_stop(srv);
    return;
  }
  if (now - srv->last_progress < srv->st->timeout_ms) return;
  if (srv->state == SRV_CONNECTING || srv->state == SRV_RESOLVING) {
    backoff(srv);
    conn_fail(srv, KV_ETIMEDOUT, "connection timed out");
  } else {
    conn_fail(srv, KV_ETIMEDOUT, "no reply within the timeout");
  }
}

static void timer_start(mc_server_t *srv) {
  uint64_t iv = srv->st->timeout_ms / 4;
  srv->last_progress = uv_now(srv->st->base.loop);
  if (srv->timer_active) return;
  if (iv < 5) iv = 5;
  uv_timer_start(&srv->timer, on_timer, iv, iv);
  srv->timer_active = 1;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  mc_server_t *srv = h->data;
  (void)suggested;
  if (srv->rcap - srv->rlen < MC_READ_CHUNK / 2) {
    size_t cap = srv->rcap ? srv->rcap : MC_READ_CHUNK;
    while (cap - srv->rlen < MC_READ_CHUNK / 2)
      cap *= 2;
    char *p = kv_realloc(srv->rbuf, cap);
    if (p == NULL) {
      buf->base = NULL;
      buf->len = 0;
      return;
    }
    srv->rbuf = p;
    srv->rcap = cap;
  }
  buf->base = srv->rbuf + srv->rlen;
  buf->len = srv->rcap - srv->rlen;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  mc_server_t *srv = s->data;
  size_t pos = 0;
  unsigned id = srv->conn_id;
  (void)buf;
  if (nread < 0) {
    conn_fail(srv, KV_ECONN,
              nread == UV_EOF ? "connection closed by the server"
                              : uv_strerror((int)nread));
    return;
  }
  if (nread == 0) {
    if (buf->base == NULL) conn_fail(srv, KV_ENOMEM, "out of memory");
    return;
  }
  srv->rlen += (size_t)nread;
  srv->last_progress = uv_now(srv->st->base.loop);
  while (pos < srv->rlen) {
    mc_reply_t r;
    mc_cmd_t *cmd;
    long n;
    if (srv->f_head == NULL) {
      conn_fail(srv, KV_EPROTO, "reply without a request");
      return;
    }
    n = kv__mc_parse_reply(srv->rbuf + pos, srv->rlen - pos, &r);
    if (n == 0) break;
    if (n < 0) {
      conn_fail(srv, KV_EPROTO, "malformed reply");
      return;
    }
    cmd = srv->f_head;
    srv->st->stats.replies++;
    if (--cmd->replies_left == 0) {
      srv->f_head = cmd->next;
      if (srv->f_head == NULL) srv->f_tail = NULL;
      srv->ninflight--;
    }
    kv__mc_on_reply(cmd, &r);
    if (srv->conn_id != id) return; /* the connection was dropped */
    pos += (size_t)n;
  }
  if (pos) {
    memmove(srv->rbuf, srv->rbuf + pos, srv->rlen - pos);
    srv->rlen -= pos;
  }
  if (srv->rcap > 4 * MC_READ_CHUNK && srv->rlen < MC_READ_CHUNK) {
    char *p = kv_realloc(srv->rbuf, MC_READ_CHUNK); /* shrink after a big one */
    if (p) {
      srv->rbuf = p;
      srv->rcap = MC_READ_CHUNK;
    }
  }
  if (srv->ninflight == 0) timer_stop(srv);
  server_update_ref(srv);
}

/* A connection attempt failed with the libuv error status: back off. */
static void connect_failed(mc_server_t *srv, int status) {
  char why[200];
  snprintf(why, sizeof why, "connect: %s", uv_strerror(status));
  backoff(srv);
  conn_fail(srv, KV_ECONN, why);
}

static void on_connect(uv_connect_t *creq, int status) {
  mc_server_t *srv = creq->data;
  if (srv->st->closing || status == UV_ECANCELED) return;
  timer_stop(srv);
  if (status != 0) {
    connect_failed(srv, status);
    return;
  }
  srv->state = SRV_UP;
  srv->backoff_ms = srv->st->backoff_ms;
  srv->retry_at = 0;
  srv->st->stats.connects++;
  uv_tcp_nodelay(&srv->tcp, 1);
  uv_read_start((uv_stream_t *)&srv->tcp, on_alloc, on_read);
  flush_server(srv->st, srv);
  server_update_ref(srv);
}

static void start_connect(mc_server_t *srv, const struct sockaddr *addr) {
  int rc;
  if (!srv->tcp_open) {
    uv_tcp_init(srv->st->base.loop, &srv->tcp);
    srv->tcp.data = srv;
    srv->tcp_open = 1;
  }
  srv->creq.data = srv;
  srv->state = SRV_CONNECTING;
  rc = uv_tcp_connect(&srv->creq, &srv->tcp, addr, on_connect);
  if (rc != 0) {
    connect_failed(srv, rc);
    return;
  }
  timer_start(srv);
}

static void on_resolved(uv_getaddrinfo_t *gai, int status,
                        struct addrinfo *res) {
  mc_server_t *srv = gai->data;
  srv->gai_pending = 0;
  if (srv->st->closing) {
    uv_freeaddrinfo(res);
    srv->st->handles--;
    kv__mc_maybe_closed(srv->st);
    return;
  }
  if (status != 0 || res == NULL) {
    char why[200];
    snprintf(why, sizeof why, "cannot resolve '%s': %s", srv->host,
             uv_strerror(status));
    uv_freeaddrinfo(res);
    backoff(srv);
    srv->state = SRV_IDLE;
    timer_stop(srv);
    srv->st->stats.conn_errors++;
    fail_queued(srv, KV_ECONN, why);
    return;
  }
  start_connect(srv, res->ai_addr);
  uv_freeaddrinfo(res);
}

static void server_connect(mc_server_t *srv) {
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  if (uv_ip4_addr(srv->host, srv->port, &a4) == 0) {
    start_connect(srv, (const struct sockaddr *)&a4);
  } else if (uv_ip6_addr(srv->host, srv->port, &a6) == 0) {
    start_connect(srv, (const struct sockaddr *)&a6);
  } else {
    struct addrinfo hints;
    char port[16];
    int rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof port, "%d", srv->port);
    srv->gai.data = srv;
    rc = uv_getaddrinfo(srv->st->base.loop, &srv->gai, on_resolved, srv->host,
                        port, &hints);
    if (rc != 0) {
      char why[200];
      snprintf(why, sizeof why, "cannot resolve '%s': %s", srv->host,
               uv_strerror(rc));
      backoff(srv);
      fail_queued(srv, KV_ECONN, why);
      return;
    }
    srv->gai_pending = 1;
    srv->state = SRV_RESOLVING;
    timer_start(srv);
  }
}

/* ---- Writing ---------------------------------------------------------------
 */

typedef struct {
  uv_write_t w;
  mc_server_t *srv;
  unsigned conn_id;
  char *buf;
  size_t nbufs;
  uv_buf_t bufs[];
} mc_write_t;

static void on_write(uv_write_t *w, int status) {
  mc_write_t *wr = (mc_write_t *)w;
  mc_server_t *srv = wr->srv;
  if (status != 0 && status != UV_ECANCELED && !srv->st->closing &&
      srv->conn_id == wr->conn_id) {
    char why[200];
    snprintf(why, sizeof why, "write: %s", uv_strerror(status));
    conn_fail(srv, KV_ECONN, why);
  }
  kv_free(wr->buf);
  kv_free(wr);
}

void kv__mc_inflight_push(mc_server_t *srv, mc_cmd_t *cmd) {
  cmd->next = NULL;
  if (srv->f_tail)
    srv->f_tail->next = cmd;
  else
    srv->f_head = cmd;
  srv->f_tail = cmd;
  srv->ninflight++;
}

/* Write everything queued for srv (it is connected). */
static void flush_server(mc_store_t *st, mc_server_t *srv) {
  mc_cmd_t *c = srv->q_head;
  mc_group_t *g = NULL;
  mc_write_t *wr;
  int had_inflight = srv->ninflight > 0;
  if (c == NULL) return;
  srv->q_head = srv->q_tail = NULL;
  st->out_len = 0;
  st->nsegs = 0;
  while (c) {
    mc_cmd_t *next = c->next;
    c->in_queue = 0;
    kv__mc_write_cmd(st, srv, c, &g);
    c = next;
  }
  if (st->out_len == 0 && st->nsegs == 0) return;
  {
    size_t s = seg_start(st);
    if (st->out_len > s && seg_push(st, NULL, s, st->out_len - s) != 0) {
      conn_fail(srv, KV_ENOMEM, "out of memory");
      return;
    }
  }
  wr = kv_malloc(sizeof *wr + st->nsegs * sizeof(uv_buf_t));
  if (wr == NULL) {
    conn_fail(srv, KV_ENOMEM, "out of memory");
    return;
  }
  wr->srv = srv;
  wr->conn_id = srv->conn_id;
  wr->buf = st->out;
  wr->nbufs = st->nsegs;
  for (size_t i = 0; i < st->nsegs; i++) {
    struct mc_seg *sg = &st->segs[i];
    wr->bufs[i] = uv_buf_init(sg->ext ? (char *)sg->ext : st->out + sg->off,
                              (unsigned)sg->len);
  }
  st->out = NULL;
  st->out_cap = st->out_len = 0;
  st->nsegs = 0;
  st->stats.writes++;
  int rc = uv_write(&wr->w, (uv_stream_t *)&srv->tcp, wr->bufs,
                    (unsigned)wr->nbufs, on_write);
  if (rc != 0) {
    char why[200];
    snprintf(why, sizeof why, "write: %s", uv_strerror(rc));
    kv_free(wr->buf);
    kv_free(wr);
    conn_fail(srv, KV_ECONN, why);
    return;
  }
  if (!had_inflight) timer_start(srv);
  server_update_ref(srv);
}

static void on_prepare(uv_prepare_t *p) {
  mc_store_t *st = p->data;
  uint64_t now = uv_now(st->base.loop);
  while (st->dirty_head) {
    mc_server_t *srv = st->dirty_head;
    st->dirty_head = srv->dirty_next;
    srv->dirty = 0;
    if (srv->q_head == NULL) continue;
    switch (srv->state) {
    case SRV_UP:
      flush_server(st, srv);
      break;
    case SRV_IDLE:
      if (srv->tcp_closing) break; /* reconnects from on_tcp_closed */
      if (now < srv->retry_at) {
        char msg[300];
        for (mc_cmd_t *c = srv->q_head; c; c = c->next)
          st->stats.fast_fails++;
        snprintf(msg, sizeof msg,
                 "memcached %s is down (next connection attempt in %llu ms)",
                 srv->name, (unsigned long long)(srv->retry_at - now));
        fail_queued(srv, KV_ECONN, msg);
      } else {
        server_connect(srv);
      }
      break;
    default:
      break; /* connecting: flushed by on_connect */
    }
  }
  uv_prepare_stop(&st->prepare);
  st->prepare_active = 0;
}

void kv__mc_schedule_flush(mc_store_t *st, mc_server_t *srv) {
  if (!srv->dirty) {
    srv->dirty = 1;
    srv->dirty_next = st->dirty_head;
    st->dirty_head = srv;
  }
  if (!st->prepare_active) {
    uv_prepare_start(&st->prepare, on_prepare);
    st->prepare_active = 1;
  }
}

/* ---- Lifetime ----------------------------------------------------------- */

void kv__mc_conn_init(mc_store_t *st) {
  uv_prepare_init(st->base.loop, &st->prepare);
  st->prepare.data = st;
  for (size_t i = 0; i < st->nservers; i++) {
    uv_timer_init(st->base.loop, &st->servers[i].timer);
    st->servers[i].timer.data = &st->servers[i];
  }
}

static void on_handle_closed(uv_handle_t *h) {
  mc_store_t *st = h->data;
  if (h->type == UV_TIMER) st = ((mc_server_t *)h->data)->st;
  st->handles--;
  kv__mc_maybe_closed(st);
}

void kv__mc_conn_close(mc_store_t *st) {
  st->handles = 1; /* the prepare handle */
  for (size_t i = 0; i < st->nservers; i++) {
    mc_server_t *srv = &st->servers[i];
    mc_cmd_t *c = srv->f_head;
    srv->f_head = srv->f_tail = NULL;
    srv->ninflight = 0;
    srv->conn_id++;
    fail_list(c, KV_ECANCELED, "the store is closing");
    fail_queued(srv, KV_ECANCELED, "the store is closing");
  }
  for (size_t i = 0; i < st->nservers; i++) {
    mc_server_t *srv = &st->servers[i];
    if (srv->gai_pending) {
      st->handles++;
      uv_cancel((uv_req_t *)&srv->gai);
    }
    if (srv->tcp_open) {
      st->handles++;
      if (!srv->tcp_closing) {
        srv->tcp_closing = 1;
        uv_close((uv_handle_t *)&srv->tcp, on_tcp_closed);
      }
    }
    st->handles++;
    uv_close((uv_handle_t *)&srv->timer, on_handle_closed);
  }
  uv_close((uv_handle_t *)&st->prepare, on_handle_closed);
}
