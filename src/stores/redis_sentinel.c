/* redis+sentinel://, rediss+sentinel://, valkey+sentinel://,
 * valkeys+sentinel://: the Redis store on the primary that Sentinel
 * watches.
 *
 * The sentinels and the primary are redis:// stores of their own (redis.c,
 * redis_conn.c), opened on this store's loop and never seen by the user.
 * The first request asks the sentinels, in order, for the primary's address
 * (SENTINEL get-master-addr-by-name NAME; the one that answered moves to the
 * front of the list, as the Sentinel client guidelines ask) and waits for
 * the answer; requests then run on the primary with redis.c's methods and
 * come back here through a hook (kv__redis_hook_t) when they are done.
 *
 * Failover: a request that fails because the primary went away (KV_ECONN,
 * KV_ETIMEDOUT) fails — it may have been executed — and makes the store ask
 * the sentinels again (at most every 100 ms); a write refused with READONLY
 * (the node we talk to is a replica now) was not executed: it waits for the
 * answer and runs once more on the primary the sentinels name. When the
 * address changes, the old primary's store finishes what it has in flight
 * and closes, and a new one connects: later requests succeed without
 * reopening the store. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stores/redis_cluster.h"

#define LOOKUP_MIN_MS 100

#define SN(s) ((rsn_t *)(s))

typedef struct snode_s snode_t;
struct snode_s {
  kv_store_t *store; /* a redis:// store on a sentinel */
  snode_t *next;
};

typedef struct rsn_s rsn_t;

typedef struct {
  kv__redis_hook_t hook;
  rsn_t *sn;
  int retry; /* a READONLY reply runs the request again */
} hook_t;

struct rsn_s {
  kv_store_t base;
  kv_url_t dtmpl, stmpl; /* URLs of the primary and of the sentinels */
  char *scheme;
  char *name;
  snode_t *sentinels;
  kv_store_t *primary;
  char *phost;
  int pport;
  int looking;
  snode_t *asking;
  int want_lookup;
  uint64_t last_lookup, retry_at;
  int attempts, lookup_err;
  int nfailed, nauth; /* this lookup: sentinels that failed, on auth/TLS */
  char lookup_msg[400];
  kv_req_t *wait_head, *wait_tail;
  kv__redis_waiter_t *waiters; /* redis_ha.c's, for the primary */
  int waiters_due;             /* a lookup ended */
  kv_redis_sub_t *watch;       /* +switch-master on a sentinel */
  kv_store_t *watch_on;        /* that sentinel */
  int watch_up;                /* subscribed */
  hook_t hook, hook_once;
  uv_timer_t timer;
  int closing, nclosing, timer_closed;
  kv_redis_sentinel_stats_t stats;
};

static uint64_t now_ms(void) {
  return kv__redis_now_ms();
}

static void lookup(rsn_t *sn);
static void timer_arm(rsn_t *sn);
static void watch_start(rsn_t *sn);

/* ---- Running requests on the primary ----------------------------------------
 */

static int run(rsn_t *sn, kv_req_t *req, hook_t *hook) {
  kv_op_fn fn = kv__redis_method(req->op);
  int rc;
  if (fn == NULL) { /* cull: Redis expires entries by itself */
    kv_req_complete(req, 0);
    return 0;
  }
  req->priv.store_data[0] = req->priv.store_data[1] = NULL;
  req->priv.store_data[2] = NULL;
  req->priv.store_data[3] = &hook->hook;
  rc = fn(sn->primary, req);
  if (rc < 0) req->priv.store_data[3] = NULL;
  return rc;
}

static void wait_add(rsn_t *sn, kv_req_t *req) {
  req->priv.store_data[0] = NULL;
  req->priv.store_data[3] = NULL;
  if (sn->wait_tail)
    sn->wait_tail->priv.store_data[0] = req;
  else
    sn->wait_head = req;
  sn->wait_tail = req;
}

/* The lookup is over: run what waited (on the primary, if one is known), or
 * fail it with err. */
static void run_waiting(rsn_t *sn, int err, const char *msg) {
  kv_req_t *req = sn->wait_head;
  sn->wait_head = sn->wait_tail = NULL;
  if (sn->waiters != NULL) { /* from the timer: this may be inside a call */
    sn->waiters_due = 1;
    timer_arm(sn);
  }
  while (req != NULL) {
    kv_req_t *next = req->priv.store_data[0];
    hook_t *h = req->priv.store_data[1] ? &sn->hook_once : &sn->hook;
    int rc;
    req->priv.store_data[0] = req->priv.store_data[1] = NULL;
    if (err != 0 || sn->primary == NULL) {
      if (err == 0) err = KV_ECONN;
      kv_req_set_error(req, err, "%s", msg);
      kv_req_complete(req, err);
    } else if ((rc = run(sn, req, h)) < 0) {
      kv_req_complete(req, rc);
    }
    req = next;
  }
}

static void want_lookup(rsn_t *sn) {
  if (sn->closing) return;
  sn->want_lookup = 1;
  if (!sn->looking && now_ms() >= sn->last_lookup + LOOKUP_MIN_MS)
    lookup(sn);
  else
    timer_arm(sn);
}

static void hook_finish(kv__redis_hook_t *h, kv_req_t *req, int err) {
  hook_t *hk = (hook_t *)h;
  rsn_t *sn = hk->sn;
  if (err == KV_EREADONLY && hk->retry && !sn->closing) {
    /* refused by a replica: nothing was written; again on the primary */
    kv_free(req->priv.errmsg);
    req->priv.errmsg = NULL;
    req->found = 0;
    wait_add(sn, req);
    req->priv.store_data[1] = (void *)1; /* once */
    sn->want_lookup = 1;
    if (!sn->looking) lookup(sn);
    return;
  }
  if (err == KV_ECONN || err == KV_ETIMEDOUT || err == KV_EREADONLY)
    want_lookup(sn);
  req->priv.store_data[3] = NULL;
  kv_req_complete(req, err);
}

/* ---- Asking the sentinels
 * ---------------------------------------------------- */

static void lookup_failed(rsn_t *sn, int err, const char *why) {
  sn->looking = 0;
  sn->asking = NULL;
  sn->retry_at = now_ms() + kv__redis_backoff_ms(sn->attempts++);
  sn->lookup_err = err;
  snprintf(sn->lookup_msg, sizeof sn->lookup_msg,
           "cannot find the primary '%s': %s", sn->name, why);
  run_waiting(sn, sn->primary ? 0 : err, sn->lookup_msg);
  if (sn->want_lookup) timer_arm(sn);
}

static void ask_next(rsn_t *sn, const char *why);

static void on_closed(kv_store_t *s);

static void on_addr(kv__redis_t *st, const kv__redis_pend_t *p,
                    kv_redis_reply_t *r, int err, const char *msg) {
  rsn_t *sn = p->ctx;
  char why[400];
  int64_t port;
  const char *host;
  if (sn->closing) {
    sn->looking = 0;
    return;
  }
  if (err != 0) {
    sn->nfailed++;
    if (err == KV_EAUTH) sn->nauth++;
    ask_next(sn, msg);
    return;
  }
  if (r->type == KV_REDIS_REPLY_ERROR) {
    snprintf(why, sizeof why, "%s: %s", st->endpoint, r->str);
    ask_next(sn, why);
    return;
  }
  if (r->type != KV_REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != KV_REDIS_REPLY_STRING ||
      r->element[1]->type != KV_REDIS_REPLY_STRING ||
      kv_parse_int64(r->element[1]->str, r->element[1]->len, &port) != 0 ||
      port <= 0 || port > 65535) {
    snprintf(why, sizeof why, "sentinel %s %s", st->endpoint,
             r->type == KV_REDIS_REPLY_NIL ? "does not know it"
                                           : "sent an unexpected reply");
    ask_next(sn, why);
    return;
  }
  host = r->element[0]->str;
  { /* the sentinel that answered is asked first next time */
    snode_t **pp = &sn->sentinels;
    while (*pp != NULL && *pp != sn->asking)
      pp = &(*pp)->next;
    if (*pp != NULL && *pp != sn->sentinels) {
      snode_t *n = *pp;
      *pp = n->next;
      n->next = sn->sentinels;
      sn->sentinels = n;
    }
  }
  sn->looking = 0;
  sn->asking = NULL;
  sn->attempts = 0;
  if (sn->primary == NULL || sn->pport != (int)port ||
      strcmp(sn->phost, host) != 0) {
    kv_store_t *np;
    char *h = kv_strndup(host, strlen(host));
    char err2[256] = "";
    if (h == NULL ||
        kv__redis_node_open(sn->base.loop, &sn->dtmpl, sn->scheme, h, (int)port,
                            &np, err2, sizeof err2) != 0) {
      kv_free(h);
      lookup_failed(sn, KV_ENOMEM, err2[0] ? err2 : "out of memory");
      return;
    }
    if (sn->primary != NULL) { /* it finishes what it has, then closes */
      sn->stats.failovers++;
      kv__redis_subs_move((kv__redis_t *)sn->primary, (kv__redis_t *)np);
      kv__redis_ha_cancel((kv__redis_t *)sn->primary, KV_ECONN,
                          "the primary changed (failover): the reply is no "
                          "longer awaited (the command may have run)");
      sn->primary->data = sn;
      sn->nclosing++;
      kv_store_close(sn->primary, on_closed);
    }
    kv_free(sn->phost);
    sn->primary = np;
    sn->phost = h;
    sn->pport = (int)port;
    snprintf(sn->stats.primary, sizeof sn->stats.primary,
             strchr(h, ':') ? "[%s]:%d" : "%s:%d", h, (int)port);
  }
  run_waiting(sn, 0, NULL);
  watch_start(sn);
  if (sn->want_lookup) timer_arm(sn);
}

static void ask_next(rsn_t *sn, const char *why) {
  const char *argv[] = {"SENTINEL", "get-master-addr-by-name", sn->name};
  size_t argl[] = {8, 23, strlen(sn->name)};
  int rc;
  for (;;) {
    snode_t *n = sn->asking ? sn->asking->next : sn->sentinels;
    kv__redis_t *st;
    sn->asking = n;
    if (n == NULL) { /* every sentinel refusing our credentials or
                        certificate is a configuration error */
      lookup_failed(
          sn, sn->nfailed > 0 && sn->nauth == sn->nfailed ? KV_EAUTH : KV_ECONN,
          why ? why : "no sentinel");
      return;
    }
    st = (kv__redis_t *)n->store;
    if ((rc = kv__redis_ready(st)) != 0) {
      sn->nfailed++;
      if (rc == KV_EAUTH) sn->nauth++;
      why = st->last_msg;
      continue;
    }
    if (kv__redis_queue_argv(st, 3, argv, argl, on_addr, sn, 0) != 0) {
      lookup_failed(sn, KV_ENOMEM, "out of memory");
      return;
    }
    return;
  }
}

static void lookup(rsn_t *sn) {
  if (sn->looking || sn->closing) return;
  sn->looking = 1;
  sn->want_lookup = 0;
  sn->last_lookup = now_ms();
  sn->asking = NULL;
  sn->nfailed = sn->nauth = 0;
  sn->stats.lookups++;
  ask_next(sn, NULL);
}

static void on_timer(uv_timer_t *t) {
  rsn_t *sn = t->data;
  if (sn->closing) return;
  if (sn->waiters_due && !sn->looking) {
    sn->waiters_due = 0;
    kv__redis_waiters_run(&sn->waiters,
                          sn->primary      ? 0
                          : sn->lookup_err ? sn->lookup_err
                                           : KV_ECONN,
                          sn->lookup_msg);
  }
  if (sn->want_lookup && !sn->looking &&
      now_ms() >= sn->last_lookup + LOOKUP_MIN_MS)
    lookup(sn);
  timer_arm(sn);
}

static void timer_arm(rsn_t *sn) {
  uint64_t now = now_ms(), at;
  if (sn->closing) return;
  if (sn->waiters_due && !sn->looking) {
    uv_ref((uv_handle_t *)&sn->timer);
    uv_timer_start(&sn->timer, on_timer, 0, 0);
    return;
  }
  if (!sn->want_lookup || sn->looking) {
    uv_timer_stop(&sn->timer);
    return;
  }
  at = sn->last_lookup + LOOKUP_MIN_MS;
  if (sn->retry_at > at) at = sn->retry_at;
  if (sn->wait_head != NULL)
    uv_ref((uv_handle_t *)&sn->timer);
  else
    uv_unref((uv_handle_t *)&sn->timer);
  uv_timer_start(&sn->timer, on_timer, at > now ? at - now : 0, 0);
}

/* ---- Sentinel announcements ---------------------------------------------
 * A subscriber on the sentinel that answered the last lookup listens for
 * +switch-master: a failover is then followed at once, even when the old
 * primary is still up (SENTINEL FAILOVER, a partition) and nothing would
 * fail on it. Missed announcements (the subscriber was down: GAP) and a
 * lost sentinel make the store ask again. The subscriber does not keep the
 * loop alive. */

static void lookup_now(rsn_t *sn) {
  if (sn->closing) return;
  sn->want_lookup = 1;
  if (!sn->looking) lookup(sn);
}

static void on_watch(kv_redis_sub_t *sub, const kv_redis_msg_t *m) {
  rsn_t *sn = kv_redis_sub_data(sub);
  size_t nlen = strlen(sn->name);
  switch (m->event) {
  case KV_REDIS_SUB_MESSAGE: /* "NAME old-ip old-port new-ip new-port" */
    if (m->payload_len > nlen && m->payload[nlen] == ' ' &&
        memcmp(m->payload, sn->name, nlen) == 0) {
      sn->stats.announcements++;
      lookup_now(sn);
    }
    break;
  case KV_REDIS_SUB_SUBSCRIBED:
    sn->watch_up = 1;
    break;
  case KV_REDIS_SUB_GAP: /* an announcement may have been missed */
    sn->watch_up = 1;
    lookup_now(sn);
    break;
  case KV_REDIS_SUB_DOWN:
    sn->watch_up = 0;
    want_lookup(sn); /* the answering sentinel gets the subscriber */
    break;
  case KV_REDIS_SUB_CLOSED:
    if (sn->watch == sub) sn->watch = NULL;
    break;
  default:
    break;
  }
}

/* After a lookup: listen on the sentinel that answered, unless a
 * subscriber is up on another one. */
static void watch_start(rsn_t *sn) {
  static const char *chan[] = {"+switch-master"};
  kv_store_t *on = sn->sentinels->store;
  if (sn->closing ||
      (sn->watch != NULL && (sn->watch_up || sn->watch_on == on)))
    return;
  if (sn->watch != NULL) kv_redis_sub_close(sn->watch);
  sn->watch = NULL;
  sn->watch_up = 0;
  if (kv_redis_subscriber(on, on_watch, sn, &sn->watch) != 0) return;
  kv__redis_sub_quiet(sn->watch);
  sn->watch_on = on;
  if (kv_redis_sub_subscribe(sn->watch, 1, chan) != 0) {
    kv_redis_sub_close(sn->watch);
    sn->watch = NULL;
  }
}

/* ---- Routing the Redis client's parts (redis_ha.c) ------------------------
 */

int kv__rsn_route(kv_store_t *s, kv__redis_waiter_t *w, kv__redis_t **out,
                  const char **msg) {
  rsn_t *sn = SN(s);
  if (sn->closing) {
    *msg = "the store is closing";
    return KV_ECLOSED;
  }
  if (sn->primary == NULL) {
    if (!sn->looking && now_ms() >= sn->retry_at) lookup(sn);
    if (!sn->looking) { /* backing off, or failed at once */
      *msg = sn->lookup_msg;
      return sn->lookup_err ? sn->lookup_err : KV_ECONN;
    }
    if (w != NULL) kv__redis_waiters_add(&sn->waiters, w);
    return 1;
  }
  *out = (kv__redis_t *)sn->primary;
  return 0;
}

void kv__rsn_failed(kv_store_t *s, int err) {
  if (err == KV_ECONN || err == KV_ETIMEDOUT || err == KV_EREADONLY)
    want_lookup(SN(s));
}

kv__redis_t *kv__rsn_home(kv_store_t *s) {
  return (kv__redis_t *)SN(s)->sentinels->store;
}

/* ---- Operations ------------------------------------------------------------
 */

static int rsn_submit(kv_store_t *s, kv_req_t *req) {
  rsn_t *sn = SN(s);
  if (sn->primary != NULL) return run(sn, req, &sn->hook);
  if (!sn->looking && now_ms() < sn->retry_at) {
    kv_req_set_error(req, sn->lookup_err, "%s (next attempt in %llu ms)",
                     sn->lookup_msg,
                     (unsigned long long)(sn->retry_at - now_ms()));
    kv_req_complete(req, sn->lookup_err);
    return 0;
  }
  wait_add(sn, req);
  req->priv.store_data[1] = NULL;
  lookup(sn);
  return 0;
}

static int rsn_ctl(kv_store_t *s, int op, void *arg, size_t size) {
  rsn_t *sn = SN(s);
  if (op == KV_REDIS_CTL_SENTINEL_STATS) {
    KV_CTL_EXPECT(arg, size, kv_redis_sentinel_stats_t);
    *(kv_redis_sentinel_stats_t *)arg = sn->stats;
    return 0;
  }
  if (op == KV_REDIS_CTL_STATS && sn->primary == NULL) {
    KV_CTL_EXPECT(arg, size, kv_redis_stats_t);
    memset(arg, 0, sizeof(kv_redis_stats_t));
    return 0;
  }
  if (op == KV_REDIS_CTL_STATS || op == KV_REDIS_CTL_DISCONNECT)
    return sn->primary ? kv_store_ctl(sn->primary, op, arg, size) : 0;
  return KV_ENOTSUP;
}

/* ---- Lifetime --------------------------------------------------------------
 */

static void free_config(rsn_t *sn) {
  kv__redis_url_free(&sn->dtmpl);
  kv__redis_url_free(&sn->stmpl);
  kv_free(sn->scheme);
  kv_free(sn->name);
  kv_free(sn->phost);
  sn->scheme = sn->name = sn->phost = NULL;
  while (sn->sentinels != NULL) {
    snode_t *n = sn->sentinels;
    sn->sentinels = n->next;
    kv_free(n);
  }
}

static void maybe_closed(rsn_t *sn) {
  if (sn->nclosing != 0 || !sn->timer_closed) return;
  free_config(sn);
  kv_store_closed(&sn->base);
}

static void on_closed(kv_store_t *s) {
  rsn_t *sn = s->data;
  sn->nclosing--;
  maybe_closed(sn);
}

static void on_timer_closed(uv_handle_t *h) {
  rsn_t *sn = h->data;
  kv__redis_waiters_run(&sn->waiters, KV_ECANCELED, "the store was closed");
  sn->timer_closed = 1;
  maybe_closed(sn);
}

static void close_store(rsn_t *sn, kv_store_t *s) {
  s->data = sn;
  sn->nclosing++;
  kv_store_close(s, on_closed);
}

static void rsn_close(kv_store_t *s) {
  rsn_t *sn = SN(s);
  sn->closing = 1;
  run_waiting(sn, KV_ECANCELED, "the store was closed");
  for (snode_t *n = sn->sentinels; n != NULL; n = n->next)
    close_store(sn, n->store);
  if (sn->primary != NULL) {
    kv__redis_ha_cancel((kv__redis_t *)sn->primary, KV_ECANCELED,
                        "the store was closed");
    close_store(sn, sn->primary);
  }
  uv_close((uv_handle_t *)&sn->timer, on_timer_closed);
}

static char *dup0(const char *s) {
  return s ? kv_strndup(s, strlen(s)) : NULL;
}

/* One "host:port" (or "[v6]:port", or "host": port 26379), host copied. */
static int parse_addr(const char *a, size_t len, char **host, int *port) {
  const char *h;
  size_t hlen;
  if (kv__redis_parse_addr(a, len, 26379, &h, &hlen, port) != 0)
    return KV_EINVAL;
  *host = kv_strndup(h, hlen);
  return *host ? 0 : KV_ENOMEM;
}

static int add_sentinel(rsn_t *sn, const char *host, int port, char *errbuf,
                        size_t errbuf_len) {
  snode_t *n = kv_calloc(1, sizeof *n), **tail = &sn->sentinels;
  int err;
  if (n == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  err = kv__redis_node_open(sn->base.loop, &sn->stmpl, sn->scheme, host, port,
                            &n->store, errbuf, errbuf_len);
  if (err) {
    kv_free(n);
    return err;
  }
  while (*tail != NULL)
    tail = &(*tail)->next;
  *tail = n;
  return 0;
}

static int rsn_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                    size_t errbuf_len) {
  rsn_t *sn = SN(s);
  int tls = strncmp(url->scheme, "rediss", 6) == 0 ||
            strncmp(url->scheme, "valkeys", 7) == 0;
  const char *list = url->host ? url->host : "127.0.0.1";
  const char *suser = kv_url_param(url, "sentinel_user");
  const char *spass = kv_url_param(url, "sentinel_password");
  static const char *const shared_opts[] = {
      "timeout", "ca", "cert", "key", "server_name", "verify_name"};
  int err = 0;
  size_t nseeds = 0;
  struct {
    char *host;
    int port;
  } seeds[64];
  sn->hook.hook.finish = sn->hook_once.hook.finish = hook_finish;
  sn->hook.sn = sn->hook_once.sn = sn;
  sn->hook.retry = 1;
  if (url->path == NULL || url->path[1] == '\0' ||
      strchr(url->path + 1, '/') != NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "%s:// needs the primary's name: "
                      "%s://host:port[,host:port...]/NAME (got '%s')",
                      url->scheme, url->scheme, url->raw);
  if (suser != NULL && spass == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "sentinel_user given without sentinel_password");
  /* the sentinels: all checked before any is opened */
  if (url->port > 0 && strchr(list, ',') == NULL) {
    seeds[0].host = dup0(list);
    seeds[0].port = url->port;
    nseeds = seeds[0].host ? 1 : 0;
    if (nseeds == 0) err = KV_ENOMEM;
  } else {
    const char *p = list;
    while (*p != '\0' && err == 0) {
      const char *end = strchr(p, ',');
      size_t len = end ? (size_t)(end - p) : strlen(p);
      if (nseeds == KV__ARRAY_SIZE(seeds) ||
          parse_addr(p, len, &seeds[nseeds].host, &seeds[nseeds].port) != 0)
        err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                         "invalid sentinel '%.*s' in URL '%s' (expected "
                         "host:port[,host:port...], at most 64)",
                         (int)len, p, url->raw);
      else
        nseeds++;
      p += len + (end ? 1 : 0);
    }
  }
  if (err == 0) {
    sn->dtmpl.raw = sn->stmpl.raw = url->raw;
    sn->dtmpl.port = sn->stmpl.port = -1;
    sn->scheme = dup0(tls ? "rediss" : "redis");
    sn->name = dup0(url->path + 1);
    sn->dtmpl.user = dup0(url->user);
    sn->dtmpl.password = dup0(url->password);
    sn->stmpl.user = dup0(suser);
    sn->stmpl.password = dup0(spass);
    if (sn->scheme == NULL || sn->name == NULL ||
        (url->user && !sn->dtmpl.user) ||
        (url->password && !sn->dtmpl.password) || (suser && !sn->stmpl.user) ||
        (spass && !sn->stmpl.password))
      err = KV_ENOMEM;
    for (size_t i = 0; i < url->nparams && err == 0; i++) {
      const char *n = url->params[i].name, *v = url->params[i].value;
      if (strcmp(n, "default_collection") == 0 ||
          strncmp(n, "sentinel_", 9) == 0)
        continue;
      err = kv__redis_url_add_param(&sn->dtmpl, n, v);
      for (size_t j = 0; j < KV__ARRAY_SIZE(shared_opts) && err == 0; j++)
        if (strcmp(n, shared_opts[j]) == 0)
          err = kv__redis_url_add_param(&sn->stmpl, n, v);
    }
    if (err == KV_ENOMEM)
      kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  }
  /* What only the primary's store reads is checked here (it opens later);
   * the options it shares with the sentinels are checked by their open. */
  if (err == 0) {
    int64_t db;
    const char *user = kv_url_param(url, "user");
    err = kv_url_param_int(url, "db", 0, INT_MAX, 0, &db, errbuf, errbuf_len);
    if (err == 0 && ((user && !kv_url_param(url, "password")) ||
                     (url->user && url->user[0] && !url->password)))
      err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                       "a user without a password in URL '%s'", url->raw);
    if (err == 0 &&
        (kv_url_param(url, "user") || kv_url_param(url, "password")) &&
        (url->user || url->password))
      err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                       "credentials given both in the URL and as options");
  }
  for (size_t i = 0; i < nseeds && err == 0; i++)
    err = add_sentinel(sn, seeds[i].host, seeds[i].port, errbuf, errbuf_len);
  for (size_t i = 0; i < nseeds; i++)
    kv_free(seeds[i].host);
  if (err != 0) {
    for (snode_t *n = sn->sentinels; n != NULL; n = n->next) {
      n->store->data = NULL;
      kv_store_close(n->store, NULL);
    }
    free_config(sn);
    return err;
  }
  uv_timer_init(s->loop, &sn->timer);
  sn->timer.data = sn;
  uv_unref((uv_handle_t *)&sn->timer);
  return 0;
}

static const char *const rsn_options[] = {
    "db",          "prefix",      "timeout",       "user",
    "password",    "ca",          "cert",          "key",
    "server_name", "verify_name", "sentinel_user", "sentinel_password",
    NULL};

const kv_store_methods_t kv__redis_sentinel_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "redis+sentinel",
    .store_size = sizeof(rsn_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT | KV_CAP_SHARED,
    .options = rsn_options,
    .open = rsn_open,
    .close = rsn_close,
    .get = rsn_submit,
    .ttl = rsn_submit,
    .put = rsn_submit,
    .del = rsn_submit,
    .get_many = rsn_submit,
    .ttl_many = rsn_submit,
    .put_many = rsn_submit,
    .delete_many = rsn_submit,
    .keys = rsn_submit,
    .collections = rsn_submit,
    .destroy = rsn_submit,
    .destroy_collection = rsn_submit,
    .cull = rsn_submit,
    .put_if_absent = rsn_submit,
    .cas = rsn_submit,
    .incr = rsn_submit,
    .take = rsn_submit,
    .ctl_ex = rsn_ctl,
};
