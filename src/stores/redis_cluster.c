/* redis+cluster://, rediss+cluster://, valkey+cluster://, valkeys+cluster://:
 * the Redis store over a Redis Cluster.
 *
 * Every cluster node is a redis:// store of its own (redis.c and
 * redis_conn.c: one pipelined connection, TLS, AUTH, timeouts), opened on
 * the cluster store's loop and never seen by the user. A request is routed
 * by the slot of its Redis key and run on the node that serves the slot by
 * redis.c's own method for the op; the request carries a hook
 * (kv__redis_hook_t in priv.store_data[3]) so that redis.c hands it back here
 * when it is done instead of completing it, and shows us its error replies:
 *
 *   MOVED slot addr   the slot map is corrected at once, a full refresh
 *                     (CLUSTER SLOTS) is scheduled, the request runs again on
 *                     the new owner;
 *   ASK slot addr     the request runs again on addr, after ASKING;
 *   TRYAGAIN, CLUSTERDOWN, a slot no node serves
 *                     the request waits (10 ms doubling to 200 ms) and runs
 *                     again, until the store's timeout has passed.
 *
 * A redirected command was not executed, so running it again is safe. A
 * request that fails for another reason (the node went away: KV_ECONN) is not
 * run again — it may have been executed — and schedules a map refresh.
 *
 * Layout: the keys of redis://, except that by default (slots=collection)
 * the collection is a hash tag, P + "{" + E(c) + "}:" + k, so every key of a
 * collection lives in one slot: bulk operations, keys() and
 * destroy_collection() go to one node, as on a single server. With
 * slots=key the layout is redis://'s exactly and a collection spreads over
 * the cluster: bulk operations are split per slot (one sub-request per slot,
 * results merged in the caller's order), keys() and destroy_collection()
 * walk every primary. collections() and destroy() walk every primary in
 * both layouts. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stores/redis_cluster.h"

#define NSLOTS 16384
#define RETRY_MIN_MS 10
#define RETRY_MAX_MS 200
#define REFRESH_MIN_MS 100
#define FAST_REDIRECTS 2 /* redirects followed at once; then with a backoff */

#define CL(s) ((kv__rcl_t *)(s))

enum { K_NONE = 0, K_MOVED, K_ASK, K_TRYAGAIN, K_DOWN };

typedef struct node_s node_t;
struct node_s {
  kv_store_t *store; /* a redis:// store (kv__redis_t) */
  char *host;
  int port;
  char *addr; /* "host:port" */
  node_t *next;
};

typedef struct fan_s fan_t;

/* What a request run on a node carries (priv.store_data[3]). Requests share
 * the store's until their first redirect; then they get their own. Parts of
 * a split request have theirs inside the fan. */
typedef struct ctx_s ctx_t;
struct ctx_s {
  kv__redis_hook_t hook;
  kv__rcl_t *cl;
  int owned; /* allocated for one request, freed when it completes */
  int kind;  /* the redirect of the last run (K_*) */
  node_t *ask;
  node_t *fixed; /* runs on this node, whatever the slot (enumeration) */
  int redirects;
  uint64_t deadline, retry_at;
  kv_req_t *req;
  ctx_t *next; /* the retry list */
  fan_t *fan;
  size_t idx;
};

typedef struct {
  kv_req_t req;
  ctx_t ctx;
  size_t off; /* first key of the part in fan->keys */
} part_t;

/* A request split into parts: per slot (bulk operations, slots=key) or per
 * primary (collections, destroy, keys and destroy_collection with
 * slots=key). */
struct fan_s {
  kv_req_t *parent;
  size_t nparts, left;
  int err;
  kv_buf_t *keys, *values; /* the parent's, grouped by slot */
  size_t *map;             /* parent index of keys[i] */
  kv_buf_t *names;         /* collections: every part's names */
  size_t nnames, cap_names;
  int more;    /* collections: a part had more */
  size_t node; /* keys (slots=key): the primary being listed */
  /* put_many with a TTL: the first part runs alone, and the expiry its
   * node gave (put_at) goes to the others: one expiry for the batch.
   * ttl_many: every part's TTLs are put on the first part's clock. */
  int seq;
  int64_t put_at;
  int have_ref;
  double ref_ms;
  part_t parts[];
};

struct kv__rcl_s {
  kv_store_t base;
  /* configuration */
  kv_url_t tmpl; /* the URL of a node: the scheme, host and port replaced */
  char *scheme;  /* "redis" or "rediss" */
  int spread;    /* slots=key */
  uint64_t timeout_ms;
  kv__redis_t *layout; /* a node, for its key layout */
  char last_coll[64];  /* slots=collection: the last collection routed */
  size_t last_len;
  unsigned last_slot;
  /* nodes and the slot map */
  node_t *nodes;
  node_t **prim; /* the primaries of the map, sorted by address */
  size_t nprim;
  node_t *slots[NSLOTS];
  int map_ready;
  int loading;   /* CLUSTER SLOTS in flight */
  node_t *probe; /* the node asked */
  int want_refresh;
  uint64_t last_load;
  int map_err;
  char map_msg[400];
  uint64_t map_retry_at;
  int map_attempts;
  kv_req_t *wait_head, *wait_tail; /* waiting for the first map */
  kv__redis_waiter_t *waiters;     /* redis_ha.c's, for the first map */
  int waiters_due;                 /* the map is loaded or failed */
  ctx_t *retry_head;
  uv_timer_t timer;
  ctx_t shared;
  int closing, nclosing, timer_closed;
  kv_redis_cluster_stats_t stats;
};

static uint64_t now_ms(void) {
  return kv__redis_now_ms();
}

/* ---- Slots: CRC16 (XMODEM: polynomial 0x1021, no reflection), as the
 * Redis Cluster specification defines it; the hash tag rule. --------------- */

static uint16_t crc_table[256];
static uv_once_t crc_once = UV_ONCE_INIT;

static void crc_init(void) {
  for (unsigned i = 0; i < 256; i++) {
    uint16_t c = (uint16_t)(i << 8);
    for (int b = 0; b < 8; b++)
      c = (uint16_t)((c & 0x8000) ? (c << 1) ^ 0x1021 : c << 1);
    crc_table[i] = c;
  }
}

static unsigned key_slot(const char *k, size_t n) {
  const uint16_t *t = crc_table;
  const char *open = memchr(k, '{', n);
  uint16_t c = 0;
  if (open != NULL) {
    const char *from = open + 1;
    const char *close = memchr(from, '}', n - (size_t)(from - k));
    if (close != NULL && close > from) {
      k = from;
      n = (size_t)(close - from);
    }
  }
  for (size_t i = 0; i < n; i++)
    c = (uint16_t)((c << 8) ^ t[((c >> 8) ^ (unsigned char)k[i]) & 0xff]);
  return c & (NSLOTS - 1);
}

unsigned kv__rcl_slot(const char *key, size_t len) {
  uv_once(&crc_once, crc_init);
  return key_slot(key, len);
}

static unsigned slot_of(kv__rcl_t *cl, const char *c, size_t clen,
                        const char *k, size_t klen) {
  char buf[512], *p = buf;
  size_t n =
      kv__redis_format_key(cl->layout, c, clen, k, klen, buf, sizeof buf);
  unsigned slot;
  if (n > sizeof buf) {
    if ((p = kv_malloc(n)) == NULL) return 0; /* routed anywhere: MOVED */
    kv__redis_format_key(cl->layout, c, clen, k, klen, p, n);
  }
  slot = key_slot(p, n);
  if (p != buf) kv_free(p);
  return slot;
}

/* The slot of what a single-slot request touches. */
static unsigned req_slot(kv__rcl_t *cl, const kv_req_t *req) {
  const char *c = req->in.collection;
  size_t clen = req->in.collection_len;
  if (!cl->spread) { /* the collection's slot; the last one is kept */
    if (clen != cl->last_len || clen > sizeof cl->last_coll ||
        memcmp(c, cl->last_coll, clen) != 0) {
      cl->last_slot = slot_of(cl, c, clen, "", 0);
      cl->last_len = clen <= sizeof cl->last_coll ? clen : 0;
      memcpy(cl->last_coll, c, cl->last_len);
    }
    return cl->last_slot;
  }
  switch (req->op) {
  case KV_OP_KEYS:
  case KV_OP_DESTROY_COLLECTION: /* slots=collection: any key will do */
    return slot_of(cl, c, clen, "", 0);
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
  case KV_OP_PUT_MANY:
  case KV_OP_DELETE_MANY:
    if (req->in.n == 0) return 0;
    return slot_of(cl, c, clen, req->in.keys[0].base, req->in.keys[0].len);
  default:
    return slot_of(cl, c, clen, req->in.key, req->in.key_len);
  }
}

/* ---- Nodes -----------------------------------------------------------------
 */

/* Open a redis:// store for host:port with the options of `tmpl` (what
 * kv_open does, without a URL string to parse). */
int kv__redis_node_open(uv_loop_t *loop, const kv_url_t *tmpl,
                        const char *scheme, const char *host, int port,
                        kv_store_t **out, char *errbuf, size_t errbuf_len) {
  const kv_store_methods_t *m = &kv__redis_methods;
  kv_url_t u = *tmpl;
  kv_store_t *s;
  int err;
  *out = NULL;
  u.scheme = (char *)scheme;
  u.host = (char *)host;
  u.port = port;
  u.path = NULL;
  s = kv_calloc(1, m->store_size);
  if (s == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  s->loop = loop;
  s->methods = m;
  s->caps = m->caps;
  if (kv__store_init(s) != 0) {
    kv_free(s);
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  }
  err = m->open(s, &u, errbuf, errbuf_len);
  if (err) {
    kv_free(s->default_collection);
    kv_free(s);
    return err;
  }
  kv__store_start(s);
  *out = s;
  return 0;
}

static node_t *node_find(kv__rcl_t *cl, const char *host, size_t hlen,
                         int port) {
  for (node_t *n = cl->nodes; n != NULL; n = n->next)
    if (n->port == port && strlen(n->host) == hlen &&
        memcmp(n->host, host, hlen) == 0)
      return n;
  return NULL;
}

/* The node host:port, opened when it is new. NULL when out of memory. */
static node_t *node_get_ex(kv__rcl_t *cl, const char *host, size_t hlen,
                           int port, char *errbuf, size_t errbuf_len) {
  node_t *n = node_find(cl, host, hlen, port);
  size_t alen;
  if (n != NULL) return n;
  if (cl->closing || (n = kv_calloc(1, sizeof *n)) == NULL) return NULL;
  n->host = kv_strndup(host, hlen);
  alen = hlen + 24;
  n->addr = kv_malloc(alen);
  if (n->host == NULL || n->addr == NULL ||
      kv__redis_node_open(cl->base.loop, &cl->tmpl, cl->scheme, n->host, port,
                          &n->store, errbuf, errbuf_len) != 0) {
    kv_free(n->host);
    kv_free(n->addr);
    kv_free(n);
    return NULL;
  }
  snprintf(n->addr, alen, memchr(host, ':', hlen) ? "[%s]:%d" : "%s:%d",
           n->host, port);
  n->port = port;
  ((kv__redis_t *)n->store)->tag_collections = !cl->spread;
  ((kv__redis_t *)n->store)->cluster_slots = 1;
  n->next = cl->nodes;
  cl->nodes = n;
  return n;
}

static node_t *node_get(kv__rcl_t *cl, const char *host, size_t hlen,
                        int port) {
  char err[256];
  return node_get_ex(cl, host, hlen, port, err, sizeof err);
}

/* "host:port" (host may be "[v6]"). */
static node_t *node_by_addr(kv__rcl_t *cl, const char *a, size_t len) {
  const char *colon = NULL;
  int64_t port;
  for (size_t i = len; i > 0; i--)
    if (a[i - 1] == ':') {
      colon = a + i - 1;
      break;
    }
  if (colon == NULL ||
      kv_parse_int64(colon + 1, len - (size_t)(colon - a) - 1, &port) != 0 ||
      port <= 0 || port > 65535)
    return NULL;
  if (colon - a >= 2 && a[0] == '[' && colon[-1] == ']')
    return node_get(cl, a + 1, (size_t)(colon - a) - 2, (int)port);
  return node_get(cl, a, (size_t)(colon - a), (int)port);
}

/* ---- The slot map ----------------------------------------------------------
 */

static void map_load(kv__rcl_t *cl);
static int start(kv__rcl_t *cl, kv_req_t *req);
static void timer_arm(kv__rcl_t *cl);

static int addr_cmp(const void *a, const void *b) {
  return strcmp((*(node_t *const *)a)->addr, (*(node_t *const *)b)->addr);
}

/* The primaries: the distinct nodes of the map, sorted by address. */
static int prim_rebuild(kv__rcl_t *cl) {
  size_t n = 0, cap = 0;
  node_t **v = NULL;
  for (unsigned i = 0; i < NSLOTS; i++) {
    node_t *nd = cl->slots[i];
    size_t j;
    if (nd == NULL) continue;
    for (j = 0; j < n && v[j] != nd; j++)
      ;
    if (j < n) continue;
    if (n == cap) {
      node_t **p = kv_realloc(v, (cap = cap ? 2 * cap : 8) * sizeof *p);
      if (p == NULL) {
        kv_free(v);
        return KV_ENOMEM;
      }
      v = p;
    }
    v[n++] = nd;
  }
  if (n > 1) qsort(v, n, sizeof *v, addr_cmp);
  kv_free(cl->prim);
  cl->prim = v;
  cl->nprim = n;
  return 0;
}

/* A refresh is wanted (MOVED, a node lost): one now if none ran in the last
 * REFRESH_MIN_MS, else from the timer. */
static void want_refresh(kv__rcl_t *cl) {
  if (cl->closing) return;
  cl->want_refresh = 1;
  if (!cl->loading && now_ms() >= cl->last_load + REFRESH_MIN_MS)
    map_load(cl);
  else
    timer_arm(cl);
}

static void run_waiting(kv__rcl_t *cl, int err) {
  kv_req_t *req = cl->wait_head;
  cl->wait_head = cl->wait_tail = NULL;
  if (cl->waiters != NULL) { /* from the timer: this may be inside a call */
    cl->waiters_due = 1;
    timer_arm(cl);
  }
  while (req != NULL) {
    kv_req_t *next = req->priv.store_data[0];
    int rc;
    req->priv.store_data[0] = NULL;
    if (err != 0) {
      kv_req_set_error(req, err, "%s", cl->map_msg);
      kv_req_complete(req, err);
    } else if ((rc = start(cl, req)) < 0) {
      kv_req_complete(req, rc);
    }
    req = next;
  }
}

/* No node answered CLUSTER SLOTS. */
static void map_failed(kv__rcl_t *cl, int err, const char *why) {
  cl->loading = 0;
  cl->probe = NULL;
  cl->map_retry_at = now_ms() + kv__redis_backoff_ms(cl->map_attempts++);
  cl->map_err = err;
  snprintf(cl->map_msg, sizeof cl->map_msg,
           "cannot load the cluster's slot map: %s", why);
  if (!cl->map_ready) {
    run_waiting(cl, err);
  } else {
    timer_arm(cl); /* try again later; the old map stays */
  }
}

/* One range of CLUSTER SLOTS: [start, end, [host, port, id, ...], ...]. */
static int map_range(kv__rcl_t *cl, node_t **slots, const kv_redis_reply_t *e,
                     kv__redis_t *asked) {
  const kv_redis_reply_t *m;
  const char *host;
  size_t hlen;
  node_t *nd;
  if (e->type != KV_REDIS_REPLY_ARRAY || e->elements < 3 ||
      e->element[0]->type != KV_REDIS_REPLY_INTEGER ||
      e->element[1]->type != KV_REDIS_REPLY_INTEGER ||
      e->element[2]->type != KV_REDIS_REPLY_ARRAY)
    return KV_EPROTO;
  m = e->element[2];
  if (m->elements < 2 || m->element[0]->type != KV_REDIS_REPLY_STRING ||
      m->element[1]->type != KV_REDIS_REPLY_INTEGER ||
      m->element[1]->integer <= 0 || m->element[1]->integer > 65535 ||
      e->element[0]->integer < 0 || e->element[1]->integer >= NSLOTS ||
      e->element[0]->integer > e->element[1]->integer)
    return KV_EPROTO;
  host = m->element[0]->str;
  hlen = m->element[0]->len;
  /* "" or "?": the node does not know its address; it is the node asked */
  if (hlen == 0 || (hlen == 1 && host[0] == '?')) {
    host = asked->host;
    hlen = strlen(host);
  }
  nd = node_get(cl, host, hlen, (int)m->element[1]->integer);
  if (nd == NULL) return KV_ENOMEM;
  for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
    slots[s] = nd;
  return 0;
}

static void probe_next(kv__rcl_t *cl, const char *why);

static void on_slots(kv__redis_t *st, const kv__redis_pend_t *p,
                     kv_redis_reply_t *r, int err, const char *msg) {
  kv__rcl_t *cl = p->ctx;
  node_t **slots;
  char why[400];
  int rc = 0;
  if (cl->closing) {
    cl->loading = 0;
    return;
  }
  if (err != 0) {
    snprintf(why, sizeof why, "%s", msg);
    probe_next(cl, why);
    return;
  }
  if (r->type == KV_REDIS_REPLY_ERROR) {
    snprintf(why, sizeof why, "%s: %s", st->endpoint, r->str);
    probe_next(cl, why);
    return;
  }
  if (r->type != KV_REDIS_REPLY_ARRAY || r->elements == 0) {
    snprintf(why, sizeof why, "%s: no slot is served (CLUSTER SLOTS)",
             st->endpoint);
    probe_next(cl, why);
    return;
  }
  slots = kv_calloc(NSLOTS, sizeof *slots);
  if (slots == NULL) {
    map_failed(cl, KV_ENOMEM, "out of memory");
    return;
  }
  for (size_t i = 0; i < r->elements && rc == 0; i++)
    rc = map_range(cl, slots, r->element[i], st);
  if (rc != 0) {
    kv_free(slots);
    snprintf(why, sizeof why, "%s: %s", st->endpoint,
             rc == KV_ENOMEM ? "out of memory" : "bad CLUSTER SLOTS reply");
    probe_next(cl, why);
    return;
  }
  memcpy(cl->slots, slots, sizeof cl->slots);
  kv_free(slots);
  if (prim_rebuild(cl) != 0) {
    map_failed(cl, KV_ENOMEM, "out of memory");
    return;
  }
  cl->loading = 0;
  cl->probe = NULL;
  cl->map_attempts = 0;
  cl->stats.map_loads++;
  if (!cl->map_ready) {
    cl->map_ready = 1;
    run_waiting(cl, 0);
  }
  if (cl->want_refresh) timer_arm(cl);
}

/* Ask the next node for the map: the primaries first, then the others (the
 * seeds among them), in the order of the list. */
static void probe_next(kv__rcl_t *cl, const char *why) {
  static const char *const argv[] = {"CLUSTER", "SLOTS"};
  static const size_t argl[] = {7, 5};
  for (;;) {
    node_t *n = cl->probe ? cl->probe->next : cl->nodes;
    kv__redis_t *st;
    int rc;
    cl->probe = n;
    if (n == NULL) {
      map_failed(cl, KV_ECONN, why ? why : "no node to ask");
      return;
    }
    st = (kv__redis_t *)n->store;
    rc = kv__redis_ready(st);
    if (rc != 0) {
      why = st->last_msg;
      continue;
    }
    if (kv__redis_queue_argv(st, 2, argv, argl, on_slots, cl, 0) != 0) {
      map_failed(cl, KV_ENOMEM, "out of memory");
      return;
    }
    return;
  }
}

static void map_load(kv__rcl_t *cl) {
  if (cl->loading || cl->closing) return;
  cl->loading = 1;
  cl->want_refresh = 0;
  cl->last_load = now_ms();
  cl->probe = NULL;
  /* Put a primary of the current map first: it knows the latest map. */
  if (cl->nprim > 0) {
    node_t *first = cl->prim[(cl->stats.map_loads) % cl->nprim];
    node_t **pp = &cl->nodes;
    while (*pp != NULL && *pp != first)
      pp = &(*pp)->next;
    if (*pp == first) {
      *pp = first->next;
      first->next = cl->nodes;
      cl->nodes = first;
    }
  }
  probe_next(cl, NULL);
}

/* ---- Running a request on a node -------------------------------------------
 */

kv_op_fn kv__redis_method(kv_op_t op) {
  const kv_store_methods_t *m = &kv__redis_methods;
  switch (op) {
  case KV_OP_GET:
    return m->get;
  case KV_OP_TTL:
    return m->ttl;
  case KV_OP_PUT:
    return m->put;
  case KV_OP_DELETE:
    return m->del;
  case KV_OP_GET_MANY:
    return m->get_many;
  case KV_OP_TTL_MANY:
    return m->ttl_many;
  case KV_OP_PUT_MANY:
    return m->put_many;
  case KV_OP_DELETE_MANY:
    return m->delete_many;
  case KV_OP_KEYS:
    return m->keys;
  case KV_OP_COLLECTIONS:
    return m->collections;
  case KV_OP_DESTROY:
    return m->destroy;
  case KV_OP_DESTROY_COLLECTION:
    return m->destroy_collection;
  case KV_OP_PUT_IF_ABSENT:
    return m->put_if_absent;
  case KV_OP_CAS:
    return m->cas;
  case KV_OP_INCR:
    return m->incr;
  case KV_OP_TAKE:
    return m->take;
  default:
    return NULL;
  }
}

static void ignore_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                         kv_redis_reply_t *r, int err, const char *msg) {
  (void)st, (void)p, (void)r, (void)err, (void)msg;
}

static void finish_req(ctx_t *ctx, kv_req_t *req, int err);
static void retry_later(kv__rcl_t *cl, ctx_t *ctx, kv_req_t *req);

/* Run req on the node of its slot (or ctx->fixed, or the ASK target) with
 * redis.c's method. < 0: refused (nothing runs, nothing completes). */
static int run(kv__rcl_t *cl, kv_req_t *req, ctx_t *ctx) {
  node_t *node;
  int asking = 0, rc;
  kv_op_fn fn = kv__redis_method(req->op);
  if (ctx == NULL) ctx = &cl->shared;
  if (ctx->fixed != NULL) {
    node = ctx->fixed;
  } else if (ctx->kind == K_ASK && ctx->ask != NULL) {
    node = ctx->ask;
    asking = 1;
  } else {
    unsigned slot = req_slot(cl, req);
    node = cl->slots[slot];
    if (node == NULL) { /* not served: wait for the map to say who does */
      int fresh = 0;
      if (!ctx->owned && ctx->fan == NULL) {
        ctx_t *own = kv_calloc(1, sizeof *own);
        if (own == NULL)
          return kv_req_set_error(req, KV_ENOMEM, "out of memory");
        *own = cl->shared;
        own->owned = 1;
        ctx = own;
        fresh = 1;
      }
      if (ctx->deadline == 0)
        ctx->deadline = now_ms() + (cl->timeout_ms ? cl->timeout_ms : 60000);
      kv_req_set_error(req, KV_EBACKEND,
                       "slot %u is not served by any node (CLUSTERDOWN)", slot);
      if (now_ms() >= ctx->deadline || cl->closing) {
        req->priv.store_data[3] = NULL;
        if (fresh) kv_free(ctx);
        return KV_EBACKEND;
      }
      ctx->kind = K_DOWN;
      req->priv.store_data[3] = &ctx->hook;
      want_refresh(cl);
      retry_later(cl, ctx, req);
      return 0;
    }
  }
  req->priv.store_data[0] = req->priv.store_data[1] = NULL;
  req->priv.store_data[2] = NULL;
  req->priv.store_data[3] = &ctx->hook;
  ctx->kind = K_NONE;
  kv_free(req->priv.errmsg); /* an earlier attempt's (CLUSTERDOWN) text */
  req->priv.errmsg = NULL;
  if (asking) {
    static const char *const argv[] = {"ASKING"};
    static const size_t argl[] = {6};
    kv__redis_t *st = (kv__redis_t *)node->store;
    if (kv__redis_ready(st) == 0)
      kv__redis_queue_argv(st, 1, argv, argl, ignore_reply, NULL, 0);
  }
  rc = fn(node->store, req);
  if (rc < 0) req->priv.store_data[3] = NULL;
  return rc;
}

/* A request failed with a redirect: clear what the run left and go again. */
static void reset_results(kv_req_t *req) {
  kv_free(req->value.base);
  req->value.base = NULL;
  req->value.len = 0;
  req->found = 0;
  req->ttl = 0;
  req->number = 0;
  req->count = 0;
  for (size_t i = 0; i < req->nresults; i++) {
    kv_free(req->results[i].value.base);
    memset(&req->results[i], 0, sizeof req->results[i]);
  }
  for (size_t i = 0; i < req->nnames; i++)
    kv_free(req->names[i].base);
  kv_free(req->names);
  req->names = NULL;
  req->nnames = 0;
  kv_free(req->cursor);
  req->cursor = NULL;
  kv_free(req->priv.errmsg); /* the redirect's text: the run starts over */
  req->priv.errmsg = NULL;
}

static void rerun(kv__rcl_t *cl, ctx_t *ctx, kv_req_t *req) {
  int rc = run(cl, req, ctx);
  if (rc < 0) finish_req(ctx, req, rc);
}

static void retry_later(kv__rcl_t *cl, ctx_t *ctx, kv_req_t *req) {
  uint64_t wait = RETRY_MIN_MS;
  for (int i = FAST_REDIRECTS; i < ctx->redirects && wait < RETRY_MAX_MS; i++)
    wait *= 2;
  ctx->retry_at = now_ms() + (wait > RETRY_MAX_MS ? RETRY_MAX_MS : wait);
  ctx->req = req;
  ctx->next = cl->retry_head;
  cl->retry_head = ctx;
  timer_arm(cl);
}

static void hook_finish(kv__redis_hook_t *h, kv_req_t *req, int err) {
  ctx_t *ctx = (ctx_t *)h;
  kv__rcl_t *cl = ctx->cl;
  uint64_t now;
  if (err == 0 || ctx->kind == K_NONE || ctx->fixed != NULL || cl->closing ||
      (err != KV_EBACKEND && err != KV_EBUSY)) {
    if (err == KV_ECONN || err == KV_ETIMEDOUT) want_refresh(cl);
    finish_req(ctx, req, err);
    return;
  }
  now = now_ms();
  if (ctx->deadline == 0)
    ctx->deadline = now + (cl->timeout_ms ? cl->timeout_ms : 60000);
  ctx->redirects++;
  if (now >= ctx->deadline) {
    finish_req(ctx, req, err); /* the last redirect's error and text */
    return;
  }
  reset_results(req);
  if ((ctx->kind == K_MOVED || ctx->kind == K_ASK) &&
      ctx->redirects <= FAST_REDIRECTS) {
    if (ctx->kind == K_MOVED) ctx->kind = K_NONE;
    rerun(cl, ctx, req);
  } else {
    if (ctx->kind != K_ASK) ctx->kind = K_NONE;
    retry_later(cl, ctx, req);
  }
}

/* The kind of an error reply (K_*); for MOVED and ASK also the slot and
 * the address ("MOVED 3999 127.0.0.1:6381"). K_NONE: none of ours, or a
 * redirect that cannot be read. */
static int error_kind(const char *str, size_t len, long *slot,
                      const char **addr, size_t *alen) {
  int kind = K_NONE;
  if (len > 6 && memcmp(str, "MOVED ", 6) == 0)
    kind = K_MOVED;
  else if (len > 4 && memcmp(str, "ASK ", 4) == 0)
    kind = K_ASK;
  else if (len >= 8 && memcmp(str, "TRYAGAIN", 8) == 0)
    kind = K_TRYAGAIN;
  else if (len >= 11 && memcmp(str, "CLUSTERDOWN", 11) == 0)
    kind = K_DOWN;
  if (kind == K_MOVED || kind == K_ASK) {
    char *end;
    const char *num = str + (kind == K_MOVED ? 6 : 4), *sp;
    *slot = strtol(num, &end, 10);
    if (end == num || *end != ' ' || *slot < 0 || *slot >= NSLOTS)
      return K_NONE;
    *addr = end + 1;
    sp = memchr(*addr, ' ', len - (size_t)(*addr - str));
    *alen = sp ? (size_t)(sp - *addr) : len - (size_t)(*addr - str);
  }
  return kind;
}

/* A MOVED reply: the slot is served by addr from now on. */
static node_t *moved(kv__rcl_t *cl, long slot, const char *addr, size_t alen) {
  node_t *n = node_by_addr(cl, addr, alen);
  cl->stats.moved++;
  if (n == NULL) return NULL;
  cl->slots[slot] = n;
  want_refresh(cl);
  return n;
}

/* "MOVED 3999 127.0.0.1:6381" and the like. */
static void hook_error_reply(kv__redis_hook_t *h, kv__redis_t *st,
                             kv_req_t *req, const kv_redis_reply_t *r) {
  ctx_t *ctx = (ctx_t *)h;
  kv__rcl_t *cl = ctx->cl;
  long slot = -1;
  const char *addr = NULL;
  size_t alen = 0;
  int kind = error_kind(r->str, r->len, &slot, &addr, &alen);
  (void)st;
  if (kind == K_NONE || ctx->fixed != NULL) return;
  if (!ctx->owned && ctx->fan == NULL) { /* its own context from now on */
    ctx_t *own = kv_calloc(1, sizeof *own);
    if (own == NULL) return; /* the error stands */
    *own = cl->shared;
    own->owned = 1;
    req->priv.store_data[3] = &own->hook;
    ctx = own;
  }
  switch (kind) {
  case K_MOVED:
    if (moved(cl, slot, addr, alen) == NULL) return;
    break;
  case K_ASK:
    cl->stats.ask++;
    if ((ctx->ask = node_by_addr(cl, addr, alen)) == NULL) return;
    break;
  case K_TRYAGAIN:
    cl->stats.tryagain++;
    break;
  default:
    cl->stats.clusterdown++;
    want_refresh(cl);
    break;
  }
  if (kind > ctx->kind) ctx->kind = kind;
}

/* ---- Requests split into parts ---------------------------------------------
 */

static void fan_part_done(fan_t *f, size_t i, int err);

static void finish_req(ctx_t *ctx, kv_req_t *req, int err) {
  if (ctx->fan != NULL) {
    fan_part_done(ctx->fan, ctx->idx, err);
    return;
  }
  req->priv.store_data[3] = NULL;
  if (ctx->owned) kv_free(ctx);
  kv_req_complete(req, err);
}

static fan_t *fan_new(kv__rcl_t *cl, kv_req_t *parent, size_t nparts) {
  fan_t *f = kv_calloc(1, sizeof *f + nparts * sizeof(part_t));
  if (f == NULL) return NULL;
  f->parent = parent;
  f->nparts = nparts;
  f->left = nparts + 1; /* held until every part has started */
  for (size_t i = 0; i < nparts; i++) {
    part_t *p = &f->parts[i];
    p->ctx = cl->shared;
    p->ctx.fan = f;
    p->ctx.idx = i;
    p->req.op = parent->op;
    p->req.store = parent->store;
    p->req.in = parent->in;
  }
  return f;
}

static void fan_free(fan_t *f) {
  for (size_t i = 0; i < f->nnames; i++)
    kv_free(f->names[i].base);
  kv_free(f->names);
  kv_free(f->keys);
  kv_free(f->values);
  kv_free(f->map);
  kv_free(f);
}

static int name_cmp(const void *a, const void *b) {
  const kv_buf_t *x = a, *y = b;
  int c = memcmp(x->base, y->base, x->len < y->len ? x->len : y->len);
  if (c) return c;
  return x->len < y->len ? -1 : x->len > y->len;
}

/* collections(): every primary listed its first `limit` names after the
 * cursor; the first `limit` of their union are the page. */
static int colls_merge(fan_t *f) {
  kv_req_t *req = f->parent;
  size_t o = 0, i;
  if (f->nnames > 1) qsort(f->names, f->nnames, sizeof *f->names, name_cmp);
  for (i = 0; i < f->nnames; i++) {
    if (o > 0 && name_cmp(&f->names[o - 1], &f->names[i]) == 0) {
      kv_free(f->names[i].base);
      continue;
    }
    f->names[o++] = f->names[i];
  }
  f->nnames = o;
  for (i = 0; i < f->nnames && req->nnames < req->in.limit; i++)
    if (kv_req_add_name(req, f->names[i].base, f->names[i].len) != 0)
      return KV_ENOMEM;
  if (i < f->nnames || (f->more && req->nnames > 0)) {
    const kv_buf_t *last = &req->names[req->nnames - 1];
    char *c = kv_malloc(last->len + 2);
    if (c == NULL) return KV_ENOMEM;
    c[0] = 'c';
    memcpy(c + 1, last->base, last->len + 1);
    kv_free(req->cursor);
    req->cursor = c;
  }
  return 0;
}

static int keys_part_start(kv__rcl_t *cl, fan_t *f, const char *inner);

static void fan_unref(fan_t *f) {
  kv_req_t *req = f->parent;
  int e;
  if (--f->left != 0) return;
  e = f->err;
  if (e == 0 && req->op == KV_OP_COLLECTIONS && (e = colls_merge(f)) != 0)
    kv_req_set_error(req, e, "out of memory");
  fan_free(f);
  kv_req_complete(req, e);
}

static void fan_fail(fan_t *f, int err, const char *msg) {
  if (f->err != 0) return;
  f->err = err;
  kv_req_set_error(f->parent, err, "%s", msg);
}

/* keys() with slots=key: the primary's page is the parent's; when the
 * primary is done and the page has room, the next primary goes on. */
static int keys_part_done(kv__rcl_t *cl, fan_t *f, kv_req_t *sub) {
  kv_req_t *req = f->parent;
  const char *addr = cl->prim[f->node]->addr;
  size_t n;
  int rc = 0;
  for (size_t j = 0; j < sub->nnames && rc == 0; j++)
    rc = kv_req_add_name(req, sub->names[j].base, sub->names[j].len);
  if (rc != 0) return rc;
  if (sub->cursor != NULL) {
    n = strlen(addr) + strlen(sub->cursor) + 3;
  } else {
    if (f->node + 1 >= cl->nprim) return 0; /* the listing is complete */
    f->node++;
    addr = cl->prim[f->node]->addr;
    if (req->nnames < req->in.limit && !cl->closing) return 1; /* go on */
    n = strlen(addr) + 3;
  }
  kv_free(req->cursor);
  if ((req->cursor = kv_malloc(n)) == NULL) return KV_ENOMEM;
  snprintf(req->cursor, n, "@%s@%s", addr, sub->cursor ? sub->cursor : "");
  return 0;
}

/* ttl_many split over nodes: a result of part i, whose TTL its node
 * computed against its own TIME, is put on the first part's clock, so
 * that entries with one expiry (one put_many) report one TTL. */
static void same_clock(fan_t *f, size_t i, kv_result_t *r) {
  double t = f->parts[i].ctx.hook.ttl_time_ms, at, left;
  if (!f->have_ref) {
    f->have_ref = 1;
    f->ref_ms = t;
  }
  if (!r->found || r->ttl == KV_TTL_NONE || t == f->ref_ms) return;
  at = floor(r->ttl * 1000.0 + 0.5) + t; /* the expiry, ms */
  left = at - f->ref_ms;
  if (left > 0) {
    r->ttl = left / 1000.0;
  } else { /* expired by the reference clock */
    kv_free(r->value.base);
    r->value.base = NULL;
    r->value.len = 0;
    r->found = 0;
  }
}

static void fan_start_from(kv__rcl_t *cl, fan_t *f, size_t first);

static void fan_part_done(fan_t *f, size_t i, int err) {
  kv_req_t *sub = &f->parts[i].req, *req = f->parent;
  kv__rcl_t *cl = f->parts[i].ctx.cl;
  int again = 0;
  if (err != 0) {
    fan_fail(f, err, kv_req_errmsg(sub));
  } else {
    switch (req->op) {
    case KV_OP_GET_MANY:
    case KV_OP_TTL_MANY:
      for (size_t j = 0; j < sub->nresults; j++) {
        kv_result_t *r = &req->results[f->map[f->parts[i].off + j]];
        *r = sub->results[j];
        sub->results[j].value.base = NULL;
        if (req->op == KV_OP_TTL_MANY) same_clock(f, i, r);
      }
      break;
    case KV_OP_DELETE_MANY:
      req->count += sub->count;
      break;
    case KV_OP_COLLECTIONS:
      if (sub->cursor != NULL) f->more = 1;
      for (size_t j = 0; j < sub->nnames; j++) {
        if (f->nnames == f->cap_names) {
          size_t cap = f->cap_names ? 2 * f->cap_names : 64;
          kv_buf_t *p = kv_realloc(f->names, cap * sizeof *p);
          if (p == NULL) {
            fan_fail(f, KV_ENOMEM, "out of memory");
            break;
          }
          f->names = p;
          f->cap_names = cap;
        }
        f->names[f->nnames++] = sub->names[j];
        sub->names[j].base = NULL;
      }
      break;
    case KV_OP_KEYS: {
      int rc = keys_part_done(cl, f, sub);
      if (rc < 0)
        fan_fail(f, rc, "out of memory");
      else
        again = rc;
      break;
    }
    default:
      break;
    }
  }
  kv_req_cleanup(sub);
  if (f->seq && i == 0) { /* put_many with a TTL: now the other parts */
    if (err == 0) {
      f->put_at = f->parts[0].ctx.hook.put_at_out;
      fan_start_from(cl, f, 1);
    } else { /* they never start */
      for (size_t j = 1; j < f->nparts; j++)
        fan_unref(f);
      fan_unref(f); /* the hold */
    }
  }
  if (again) { /* keys(), slots=key: the next primary, same part */
    memset(sub, 0, sizeof *sub);
    sub->op = req->op;
    sub->store = req->store;
    sub->in = req->in;
    f->left++;
    if (keys_part_start(cl, f, NULL) < 0) fan_unref(f);
  }
  fan_unref(f);
}

static void fan_run(kv__rcl_t *cl, fan_t *f, size_t i) {
  int rc;
  f->parts[i].ctx.hook.put_at_in = f->put_at;
  rc = run(cl, &f->parts[i].req, &f->parts[i].ctx);
  if (rc < 0) {
    fan_fail(f, rc, kv_req_errmsg(&f->parts[i].req));
    fan_part_done(f, i, rc);
  }
}

/* Start parts from `first`, then let go of the hold: the parent completes
 * when the last one is done. */
static void fan_start_from(kv__rcl_t *cl, fan_t *f, size_t first) {
  for (size_t i = first; i < f->nparts; i++)
    fan_run(cl, f, i);
  fan_unref(f);
}

/* put_many with a TTL (seq): the first part alone; fan_part_done starts
 * the others, the hold staying until then. */
static void fan_start(kv__rcl_t *cl, fan_t *f) {
  if (f->seq)
    fan_run(cl, f, 0);
  else
    fan_start_from(cl, f, 0);
}

/* One part per primary. */
static int fan_all(kv__rcl_t *cl, kv_req_t *req) {
  fan_t *f = fan_new(cl, req, cl->nprim);
  if (f == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  for (size_t i = 0; i < cl->nprim; i++)
    f->parts[i].ctx.fixed = cl->prim[i];
  fan_start(cl, f);
  return 0;
}

static int keys_part_start(kv__rcl_t *cl, fan_t *f, const char *inner) {
  part_t *p = &f->parts[0];
  int rc;
  p->ctx.fixed = cl->prim[f->node];
  p->req.in.cursor = inner;
  p->req.in.limit = f->parent->in.limit - f->parent->nnames;
  rc = run(cl, &p->req, &p->ctx);
  if (rc < 0) fan_part_done(f, 0, rc);
  return 0;
}

/* keys() with slots=key: cursor "@host:port@<the primary's cursor>". */
static int keys_spread(kv__rcl_t *cl, kv_req_t *req) {
  const char *cur = req->in.cursor, *inner = NULL;
  size_t node = 0;
  fan_t *f;
  if (cl->nprim == 0) { /* nothing is served: nothing to list */
    kv_req_complete(req, 0);
    return 0;
  }
  if (cur != NULL) {
    const char *at = cur[0] == '@' ? strchr(cur + 1, '@') : NULL;
    size_t alen;
    if (at == NULL)
      return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%s'", cur);
    alen = (size_t)(at - cur - 1);
    /* the primary of the cursor, or the first after it (the map changed) */
    for (node = 0; node < cl->nprim; node++) {
      const char *a = cl->prim[node]->addr;
      int c = strncmp(a, cur + 1, alen);
      if (c == 0 && a[alen] != '\0') c = 1;
      if (c == 0) {
        inner = at[1] ? at + 1 : NULL;
        break;
      }
      if (c > 0) break;
    }
    if (node == cl->nprim) { /* past the last primary: complete */
      kv_req_complete(req, 0);
      return 0;
    }
  }
  f = fan_new(cl, req, 1);
  if (f == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  f->node = node;
  keys_part_start(cl, f, inner);
  fan_unref(f);
  return 0;
}

/* Bulk operations: one part per slot, unless every key is in one. */
typedef struct {
  unsigned slot;
  size_t idx;
} keyslot_t;

static int keyslot_cmp(const void *a, const void *b) {
  const keyslot_t *x = a, *y = b;
  if (x->slot != y->slot) return x->slot < y->slot ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx; /* the caller's order */
}

static int many(kv__rcl_t *cl, kv_req_t *req) {
  size_t n = req->in.n, ngroups = 1;
  keyslot_t *ks;
  fan_t *f;
  /* slots=collection (no brace in the prefix): one slot for them all */
  if (n <= 1 || !cl->spread) return run(cl, req, NULL);
  ks = kv_malloc(n * sizeof *ks);
  if (ks == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    ks[i].slot = slot_of(cl, req->in.collection, req->in.collection_len,
                         req->in.keys[i].base, req->in.keys[i].len);
    ks[i].idx = i;
    if (i > 0 && ks[i].slot != ks[0].slot) ngroups = 2;
  }
  if (ngroups == 1) {
    kv_free(ks);
    return run(cl, req, NULL);
  }
  qsort(ks, n, sizeof *ks, keyslot_cmp);
  ngroups = 1;
  for (size_t i = 1; i < n; i++)
    if (ks[i].slot != ks[i - 1].slot) ngroups++;
  f = fan_new(cl, req, ngroups);
  if (f == NULL || (f->keys = kv_malloc(n * sizeof *f->keys)) == NULL ||
      (f->map = kv_malloc(n * sizeof *f->map)) == NULL ||
      (req->in.values != NULL &&
       (f->values = kv_malloc(n * sizeof *f->values)) == NULL) ||
      ((req->op == KV_OP_GET_MANY || req->op == KV_OP_TTL_MANY) &&
       kv_req_alloc_results(req) != 0)) {
    if (f) fan_free(f);
    kv_free(ks);
    return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  }
  for (size_t i = 0, g = 0; i < n; i++) {
    f->map[i] = ks[i].idx;
    f->keys[i] = req->in.keys[ks[i].idx];
    if (f->values) f->values[i] = req->in.values[ks[i].idx];
    if (i == 0 || ks[i].slot != ks[i - 1].slot) {
      part_t *p = &f->parts[g++];
      p->off = i;
      p->req.in.keys = &f->keys[i];
      p->req.in.values = f->values ? &f->values[i] : NULL;
      p->req.in.n = 0;
    }
    f->parts[g - 1].req.in.n++;
  }
  kv_free(ks);
  f->seq = req->op == KV_OP_PUT_MANY && req->in.expires_at_ms != 0;
  fan_start(cl, f);
  return 0;
}

/* Route a request (the map is loaded). < 0: refused. */
static int start(kv__rcl_t *cl, kv_req_t *req) {
  switch (req->op) {
  case KV_OP_CULL: /* Redis expires entries by itself */
    kv_req_complete(req, 0);
    return 0;
  case KV_OP_COLLECTIONS:
    if (req->in.cursor != NULL && req->in.cursor[0] != 'c')
      return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%s'",
                              req->in.cursor);
    /* fall through */
  case KV_OP_DESTROY:
    return fan_all(cl, req);
  case KV_OP_DESTROY_COLLECTION:
    return cl->spread ? fan_all(cl, req) : run(cl, req, NULL);
  case KV_OP_KEYS:
    return cl->spread ? keys_spread(cl, req) : run(cl, req, NULL);
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
  case KV_OP_PUT_MANY:
  case KV_OP_DELETE_MANY:
    return many(cl, req);
  default:
    return run(cl, req, NULL);
  }
}

/* Every op's method: wait for the first map, or route now. */
static int rcl_submit(kv_store_t *s, kv_req_t *req) {
  kv__rcl_t *cl = CL(s);
  if (cl->map_ready) return start(cl, req);
  if (!cl->loading && now_ms() < cl->map_retry_at) {
    uint64_t now = now_ms();
    kv_req_set_error(req, cl->map_err, "%s (next attempt in %llu ms)",
                     cl->map_msg, (unsigned long long)(cl->map_retry_at - now));
    kv_req_complete(req, cl->map_err);
    return 0;
  }
  req->priv.store_data[0] = NULL;
  if (cl->wait_tail)
    cl->wait_tail->priv.store_data[0] = req;
  else
    cl->wait_head = req;
  cl->wait_tail = req;
  map_load(cl);
  return 0;
}

/* ---- Routing the Redis client's parts (redis_ha.c) ------------------------
 */

int kv__redis_ha_kind(const kv_store_t *s) {
  if (s == NULL) return 0;
  return s->methods == &kv__redis_cluster_methods    ? 1
         : s->methods == &kv__redis_sentinel_methods ? 2
                                                     : 0;
}

static int rcl_route(kv__rcl_t *cl, const char *key, size_t klen, unsigned hint,
                     kv__redis_waiter_t *w, kv__redis_t **out,
                     const char **msg) {
  node_t *n;
  if (cl->closing) {
    *msg = "the store is closing";
    return KV_ECLOSED;
  }
  if (!cl->map_ready) {
    if (!cl->loading && now_ms() < cl->map_retry_at) {
      *msg = cl->map_msg;
      return cl->map_err;
    }
    map_load(cl);
    if (!cl->loading && !cl->map_ready) { /* failed at once */
      *msg = cl->map_msg;
      return cl->map_err;
    }
    if (w != NULL) kv__redis_waiters_add(&cl->waiters, w);
    return 1;
  }
  if (key != NULL)
    n = cl->slots[key_slot(key, klen)];
  else
    n = cl->nprim > 0 ? cl->prim[hint % cl->nprim] : NULL;
  if (n == NULL) {
    snprintf(cl->map_msg, sizeof cl->map_msg,
             "no node serves the slot (the cluster is down or changing)");
    want_refresh(cl);
    *msg = cl->map_msg;
    return KV_ECONN;
  }
  *out = (kv__redis_t *)n->store;
  return 0;
}

int kv__redis_route_redirect(kv_store_t *s, const char *err, size_t len,
                             kv__redis_t **to) {
  kv__rcl_t *cl = CL(s);
  long slot = -1;
  const char *addr = NULL;
  size_t alen = 0;
  node_t *n;
  int kind;
  if (kv__redis_ha_kind(s) != 1 || cl->closing) return 0;
  kind = error_kind(err, len, &slot, &addr, &alen);
  if (kind == K_MOVED) {
    n = moved(cl, slot, addr, alen);
  } else if (kind == K_ASK) {
    cl->stats.ask++;
    n = node_by_addr(cl, addr, alen);
  } else {
    return 0;
  }
  if (n == NULL) return 0;
  *to = (kv__redis_t *)n->store;
  return kind == K_MOVED ? 1 : 2;
}

int kv__redis_route(kv_store_t *s, const char *key, size_t klen, unsigned hint,
                    kv__redis_waiter_t *w, kv__redis_t **out,
                    const char **msg) {
  switch (kv__redis_ha_kind(s)) {
  case 1:
    return rcl_route(CL(s), key, klen, hint, w, out, msg);
  case 2:
    return kv__rsn_route(s, w, out, msg);
  default:
    *msg = "not a cluster or sentinel store";
    return KV_EINVAL;
  }
}

void kv__redis_route_failed(kv_store_t *s, int err) {
  if (kv__redis_ha_kind(s) == 1) {
    if (err == KV_ECONN || err == KV_ETIMEDOUT) want_refresh(CL(s));
  } else if (kv__redis_ha_kind(s) == 2) {
    kv__rsn_failed(s, err);
  }
}

kv__redis_t *kv__redis_route_home(kv_store_t *s) {
  if (kv__redis_ha_kind(s) == 1) return (kv__redis_t *)CL(s)->nodes->store;
  return kv__rsn_home(s);
}

/* ---- Timer: retries and refreshes ------------------------------------------
 */

static void on_timer(uv_timer_t *t) {
  kv__rcl_t *cl = t->data;
  uint64_t now = now_ms();
  ctx_t *due = NULL, **pp = &cl->retry_head;
  if (cl->closing) return;
  if (cl->waiters_due && (cl->map_ready || !cl->loading)) {
    cl->waiters_due = 0;
    kv__redis_waiters_run(&cl->waiters, cl->map_ready ? 0 : cl->map_err,
                          cl->map_msg);
  }
  if (cl->want_refresh && !cl->loading && now >= cl->last_load + REFRESH_MIN_MS)
    map_load(cl);
  else if (!cl->map_ready && !cl->loading && cl->wait_head != NULL)
    map_load(cl);
  while (*pp != NULL) { /* take the due ones, oldest first */
    ctx_t *c = *pp;
    if (c->retry_at <= now) {
      *pp = c->next;
      c->next = due;
      due = c;
    } else {
      pp = &c->next;
    }
  }
  while (due != NULL) {
    ctx_t *c = due;
    due = c->next;
    c->next = NULL;
    rerun(cl, c, c->req);
  }
  timer_arm(cl);
}

static void timer_arm(kv__rcl_t *cl) {
  uint64_t now = now_ms(), at = UINT64_MAX;
  if (cl->closing) return;
  for (ctx_t *c = cl->retry_head; c != NULL; c = c->next)
    if (c->retry_at < at) at = c->retry_at;
  if (cl->waiters_due) at = now;
  if (cl->want_refresh && !cl->loading) {
    uint64_t r = cl->last_load + REFRESH_MIN_MS;
    if (cl->map_retry_at > r) r = cl->map_retry_at;
    if (r < at) at = r;
  }
  if (at == UINT64_MAX) {
    uv_timer_stop(&cl->timer);
    return;
  }
  /* Requests waiting for a retry keep the loop alive; a refresh alone
   * does not. */
  if (cl->retry_head != NULL || cl->waiters_due)
    uv_ref((uv_handle_t *)&cl->timer);
  else
    uv_unref((uv_handle_t *)&cl->timer);
  uv_timer_start(&cl->timer, on_timer, at > now ? at - now : 0, 0);
}

/* ---- Lifetime --------------------------------------------------------------
 */

static void free_config(kv__rcl_t *cl) {
  const char *raw = cl->tmpl.raw; /* the user's URL, not ours */
  kv__redis_url_free(&cl->tmpl);
  cl->tmpl.raw = raw;
  cl->tmpl.port = -1;
  kv_free(cl->scheme);
  kv_free(cl->prim);
  cl->prim = NULL;
  cl->scheme = NULL;
}

static void maybe_closed(kv__rcl_t *cl) {
  if (cl->nclosing != 0 || !cl->timer_closed) return;
  while (cl->nodes != NULL) {
    node_t *n = cl->nodes;
    cl->nodes = n->next;
    kv_free(n->host);
    kv_free(n->addr);
    kv_free(n);
  }
  free_config(cl);
  kv_store_closed(&cl->base);
}

static void on_node_closed(kv_store_t *s) {
  kv__rcl_t *cl = s->data;
  cl->nclosing--;
  maybe_closed(cl);
}

static void on_timer_closed(uv_handle_t *h) {
  kv__rcl_t *cl = h->data;
  kv__redis_waiters_run(&cl->waiters, KV_ECANCELED, "the store was closed");
  cl->timer_closed = 1;
  maybe_closed(cl);
}

static void rcl_close(kv_store_t *s) {
  kv__rcl_t *cl = CL(s);
  node_t *n;
  cl->closing = 1;
  snprintf(cl->map_msg, sizeof cl->map_msg, "the store was closed");
  run_waiting(cl, KV_ECANCELED);
  while (cl->retry_head != NULL) {
    ctx_t *c = cl->retry_head;
    cl->retry_head = c->next;
    kv_req_set_error(c->req, KV_ECANCELED, "the store was closed");
    finish_req(c, c->req, KV_ECANCELED);
  }
  /* Each node finishes what it has in flight, then closes; the list is
   * freed when the last one has. */
  for (n = cl->nodes; n != NULL; n = n->next) {
    kv__redis_ha_cancel((kv__redis_t *)n->store, KV_ECANCELED,
                        "the store was closed");
    n->store->data = cl;
    cl->nclosing++;
    kv_store_close(n->store, on_node_closed);
  }
  uv_close((uv_handle_t *)&cl->timer, on_timer_closed);
}

/* The seed nodes: "host:port,host:port,..." (the core leaves a list in
 * url->host) or one host with url->port. Everything is checked before the
 * first node is opened. */
static int add_seeds(kv__rcl_t *cl, const kv_url_t *url, char *errbuf,
                     size_t errbuf_len) {
  const char *list = url->host ? url->host : "127.0.0.1";
  for (int pass = 0; pass < 2; pass++) {
    const char *p = list;
    while (*p != '\0') {
      const char *end = strchr(p, ',');
      size_t len = end ? (size_t)(end - p) : strlen(p);
      const char *host;
      size_t hlen;
      int port;
      if (url->port > 0 && strchr(list, ',') == NULL) {
        host = p, hlen = len, port = url->port;
      } else if (kv__redis_parse_addr(p, len, 6379, &host, &hlen, &port) != 0) {
        return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                          "invalid node '%.*s' in URL '%s' (expected "
                          "host:port[,host:port...])",
                          (int)len, p, url->raw);
      }
      if (pass == 1 && node_find(cl, host, hlen, port) == NULL &&
          node_get_ex(cl, host, hlen, port, errbuf, errbuf_len) == NULL)
        return errbuf[0]
                   ? KV_EINVAL
                   : kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
      p += len + (end ? 1 : 0);
    }
  }
  return 0;
}

static int rcl_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                    size_t errbuf_len) {
  kv__rcl_t *cl = CL(s);
  const char *slots = kv_url_param(url, "slots");
  const char *prefix = kv_url_param(url, "prefix");
  int tls = strncmp(url->scheme, "rediss", 6) == 0 ||
            strncmp(url->scheme, "valkeys", 7) == 0;
  double timeout;
  int err;
  cl->shared.hook.finish = hook_finish;
  cl->shared.hook.error_reply = hook_error_reply;
  cl->shared.cl = cl;
  uv_once(&crc_once, crc_init);
  if ((err = kv_url_param_double(url, "timeout", 0, 1e6, 10, &timeout, errbuf,
                                 errbuf_len)) != 0)
    return err;
  cl->timeout_ms = (uint64_t)(timeout * 1000.0 + 0.5);
  if (slots != NULL && strcmp(slots, "collection") != 0 &&
      strcmp(slots, "key") != 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "option 'slots' is 'collection' or 'key' (got '%s')",
                      slots);
  cl->spread = slots != NULL && strcmp(slots, "key") == 0;
  if (!cl->spread && prefix != NULL &&
      (strchr(prefix, '{') != NULL || strchr(prefix, '}') != NULL))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "a prefix with '{' or '}' would change the hash tag of "
                      "every key: use slots=key with it (got '%s')",
                      prefix);
  if ((url->path != NULL && strcmp(url->path, "/") != 0 &&
       strcmp(url->path, "/0") != 0) ||
      (kv_url_param(url, "db") != NULL && strcmp(kv_url_param(url, "db"), "0")))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "a Redis Cluster has only database 0 (URL '%s')",
                      url->raw);
  /* The nodes' URL: the cluster's options, less its own. */
  cl->tmpl.raw = url->raw;
  cl->scheme = kv_strndup(tls ? "rediss" : "redis", tls ? 6 : 5);
  if (cl->scheme == NULL) goto nomem;
  if (url->user &&
      (cl->tmpl.user = kv_strndup(url->user, strlen(url->user))) == NULL)
    goto nomem;
  if (url->password && (cl->tmpl.password = kv_strndup(
                            url->password, strlen(url->password))) == NULL)
    goto nomem;
  cl->tmpl.port = -1;
  for (size_t i = 0; i < url->nparams; i++) {
    const char *n = url->params[i].name;
    if (strcmp(n, "slots") == 0 || strcmp(n, "default_collection") == 0)
      continue;
    if (kv__redis_url_add_param(&cl->tmpl, n, url->params[i].value) != 0)
      goto nomem;
  }
  if ((err = add_seeds(cl, url, errbuf, errbuf_len)) != 0) goto fail;
  if (cl->nodes == NULL) {
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL, "no node in URL '%s'",
                     url->raw);
    goto fail;
  }
  cl->layout = (kv__redis_t *)cl->nodes->store;
  uv_timer_init(s->loop, &cl->timer);
  cl->timer.data = cl;
  uv_unref((uv_handle_t *)&cl->timer);
  return 0;
nomem:
  err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
fail:
  /* Nodes opened so far: their open succeeded, close them (no network). */
  while (cl->nodes != NULL) {
    node_t *n = cl->nodes;
    cl->nodes = n->next;
    n->store->data = NULL;
    kv_store_close(n->store, NULL);
    kv_free(n->host);
    kv_free(n->addr);
    kv_free(n);
  }
  free_config(cl);
  return err;
}

static int rcl_ctl(kv_store_t *s, int op, void *arg, size_t size) {
  kv__rcl_t *cl = CL(s);
  if (op == KV_REDIS_CTL_STATS) {
    kv_redis_stats_t *out = arg, one;
    KV_CTL_EXPECT(arg, size, kv_redis_stats_t);
    memset(out, 0, sizeof *out);
    for (node_t *n = cl->nodes; n != NULL; n = n->next) {
      if (kv_store_ctl(n->store, KV_REDIS_CTL_STATS, &one, sizeof one) != 0)
        continue;
      out->commands += one.commands;
      out->replies += one.replies;
      out->writes += one.writes;
      out->bytes_written += one.bytes_written;
      out->reads += one.reads;
      out->bytes_read += one.bytes_read;
      out->connects += one.connects;
      out->connect_failures += one.connect_failures;
      out->in_flight += one.in_flight;
      out->queued += one.queued;
    }
    return 0;
  }
  if (op == KV_REDIS_CTL_CLUSTER_STATS) {
    kv_redis_cluster_stats_t *out = arg;
    KV_CTL_EXPECT(arg, size, kv_redis_cluster_stats_t);
    *out = cl->stats;
    out->primaries = cl->nprim;
    out->nodes = 0;
    for (node_t *n = cl->nodes; n != NULL; n = n->next)
      out->nodes++;
    return 0;
  }
  if (op == KV_REDIS_CTL_DISCONNECT) {
    for (node_t *n = cl->nodes; n != NULL; n = n->next)
      kv_store_ctl(n->store, KV_REDIS_CTL_DISCONNECT, NULL, 0);
    return 0;
  }
  return KV_ENOTSUP;
}

static const char *const rcl_options[] = {
    "prefix", "timeout",     "user",        "password", "ca", "cert",
    "key",    "server_name", "verify_name", "slots",    "db", NULL};

const kv_store_methods_t kv__redis_cluster_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "redis+cluster",
    .store_size = sizeof(kv__rcl_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT | KV_CAP_SHARED,
    .options = rcl_options,
    .open = rcl_open,
    .close = rcl_close,
    .get = rcl_submit,
    .ttl = rcl_submit,
    .put = rcl_submit,
    .del = rcl_submit,
    .get_many = rcl_submit,
    .ttl_many = rcl_submit,
    .put_many = rcl_submit,
    .delete_many = rcl_submit,
    .keys = rcl_submit,
    .collections = rcl_submit,
    .destroy = rcl_submit,
    .destroy_collection = rcl_submit,
    .cull = rcl_submit,
    .put_if_absent = rcl_submit,
    .cas = rcl_submit,
    .incr = rcl_submit,
    .take = rcl_submit,
    .ctl_ex = rcl_ctl,
};
