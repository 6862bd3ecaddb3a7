/* statistics: per collection and per op, calls, hits, misses, errors and a
 * latency histogram; readable from C and as Prometheus text. */
#include <stdio.h>
#include <string.h>

#include "wrappers/wrappers.h"

const double kv_stats_bucket_bounds[KV_STATS_NBUCKETS] = {
    1e-5,   2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
    2.5e-3, 5e-3,   1e-2, 0.1,  1,      10,   0 /* +Inf */};

typedef struct {
  char *name;
  size_t len;
  kv_stats_t ops[KV_OP_COUNT_];
} stats_coll_t;

typedef struct {
  kv_wrap_t w;
  stats_coll_t **colls; /* sorted by name (bytes) */
  size_t ncolls;
  size_t cap;
  stats_coll_t *last;
} stats_t;



static int name_cmp(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c) return c;
  return al < bl ? -1 : al > bl;
}

static size_t coll_search(stats_t *st, const char *name, size_t len,
                          int *found) {
  size_t lo = 0, hi = st->ncolls;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (name_cmp(st->colls[mid]->name, st->colls[mid]->len, name, len) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = lo < st->ncolls && st->colls[lo]->len == len &&
           memcmp(st->colls[lo]->name, name, len) == 0;
  return lo;
}

static stats_coll_t *coll_get(stats_t *st, const char *name, size_t len) {
  int found;
  size_t i;
  stats_coll_t *c;
  if (st->last && st->last->len == len &&
      memcmp(st->last->name, name, len) == 0)
    return st->last;
  i = coll_search(st, name, len, &found);
  if (found) return st->last = st->colls[i];
  if (st->ncolls == st->cap) {
    size_t cap = st->cap ? st->cap * 2 : 8;
    stats_coll_t **p = kv_realloc(st->colls, cap * sizeof *p);
    if (p == NULL) return NULL;
    st->colls = p;
    st->cap = cap;
  }
  c = kv_calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->name = kv_strndup(name, len);
  if (c->name == NULL) {
    kv_free(c);
    return NULL;
  }
  c->len = len;
  memmove(&st->colls[i + 1], &st->colls[i],
          (st->ncolls - i) * sizeof *st->colls);
  st->colls[i] = c;
  st->ncolls++;
  return st->last = c;
}

static int op_has_collection(kv_op_t op) {
  return op != KV_OP_COLLECTIONS && op != KV_OP_DESTROY && op != KV_OP_CULL;
}

/* One completed request: `in` holds its results, start_ns its submit. */
static void record(stats_t *st, const kv_req_t *in, uint64_t start_ns) {
  kv_op_t op = in->op;
  int named = op_has_collection(op);
  stats_coll_t *c = coll_get(st, named ? in->in.collection : "",
                             named ? in->in.collection_len : 0);
  kv_stats_t *o;
  double secs = (double)(uv_hrtime() - start_ns) / 1e9;
  size_t b = 0;
  if (c == NULL) return; /* out of memory: this sample is lost */
  o = &c->ops[op];
  o->calls++;
  if (in->status < 0) {
    o->errors++;
  } else {
    switch (op) {
    case KV_OP_GET:
    case KV_OP_TTL:
    case KV_OP_TAKE:
      if (in->found)
        o->hits++;
      else
        o->misses++;
      break;
    case KV_OP_GET_MANY:
    case KV_OP_TTL_MANY:
      for (size_t i = 0; i < in->nresults; i++) {
        if (in->results[i].found)
          o->hits++;
        else
          o->misses++;
      }
      break;
    default:
      break;
    }
  }
  o->latency_sum += secs;
  while (b < KV_STATS_NBUCKETS - 1 && secs > kv_stats_bucket_bounds[b])
    b++;
  o->latency_buckets[b]++;
}

/* Completion hook: the request's results, at this layer. */
static int stats_hook(kv_store_t *layer, kv_req_t *req, kv_hook_t *h) {
  record((stats_t *)layer, req, h->u);
  return 0;
}

static int stats_op(kv_store_t *s, kv_req_t *req) {
  return kv_wrap_pass(s, req, stats_hook, uv_hrtime(), NULL);
}

static void stats_free(kv_wrap_t *w) {
  stats_t *st = (stats_t *)w;
  for (size_t i = 0; i < st->ncolls; i++) {
    kv_free(st->colls[i]->name);
    kv_free(st->colls[i]);
  }
  kv_free(st->colls);
  st->colls = NULL;
  st->ncolls = 0;
}

static kv_store_methods_t stats_methods;
static uv_once_t stats_once = UV_ONCE_INIT;

static void stats_init(void) {
  kv_wrap_methods_init(&stats_methods, "statistics", sizeof(stats_t));
#define XX(NAME, name, member, cap, params, args) stats_methods.member = stats_op;
  KV_OP_MAP(XX)
#undef XX
}

int kv_wrap_statistics(kv_store_t *inner, const kv_wrap_statistics_opts_t *o,
                       kv_store_t **out) {
  kv_wrap_t *w;
  int err;
  uv_once(&stats_once, stats_init);
  *out = NULL;
  err = kv_wrap_create(inner, &stats_methods, o && o->borrow, &w);
  if (err) return err;
  w->on_free = stats_free;
  *out = &w->base;
  return 0;
}

KV__WRAP_FROM_OPTIONS(statistics) {
  static const char *const known[] = {NULL};
  kv_url_t opts;
  int err =
      kv__wrap_opts("statistics", options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  kv_wrap_opts_free(&opts);
  return kv_wrap_statistics(inner, NULL, out);
}

/* ---- Reading ---------------------------------------------------------------
 */

static stats_t *find_stats(kv_store_t *s) {
  return s ? (stats_t *)kv_wrap_find(s, "statistics") : NULL;
}

static void add(kv_stats_t *dst, const kv_stats_t *src) {
  dst->calls += src->calls;
  dst->hits += src->hits;
  dst->misses += src->misses;
  dst->errors += src->errors;
  dst->latency_sum += src->latency_sum;
  for (int b = 0; b < KV_STATS_NBUCKETS; b++)
    dst->latency_buckets[b] += src->latency_buckets[b];
}

int kv_stats_get(kv_store_t *s, const char *collection, kv_op_t op,
                 kv_stats_t *out) {
  stats_t *st = find_stats(s);
  memset(out, 0, sizeof *out);
  if (st == NULL || (int)op < 0 || op >= KV_OP_COUNT_) return KV_EINVAL;
  for (size_t i = 0; i < st->ncolls; i++) {
    stats_coll_t *c = st->colls[i];
    if (collection && (c->len != strlen(collection) ||
                       memcmp(c->name, collection, c->len) != 0))
      continue;
    for (int k = 1; k < KV_OP_COUNT_; k++)
      if (op == KV_OP_NONE || op == (kv_op_t)k) add(out, &c->ops[k]);
  }
  return 0;
}

int kv_stats_foreach(kv_store_t *s, kv_stats_visit_cb cb, void *data) {
  stats_t *st = find_stats(s);
  if (st == NULL) return KV_EINVAL;
  for (size_t i = 0; i < st->ncolls; i++) {
    for (int k = 1; k < KV_OP_COUNT_; k++) {
      int rc;
      if (st->colls[i]->ops[k].calls == 0) continue;
      rc = cb(st->colls[i]->name, (kv_op_t)k, &st->colls[i]->ops[k], data);
      if (rc) return rc;
    }
  }
  return 0;
}

void kv_stats_reset(kv_store_t *s) {
  stats_t *st = find_stats(s);
  if (st == NULL) return;
  for (size_t i = 0; i < st->ncolls; i++)
    memset(st->colls[i]->ops, 0, sizeof st->colls[i]->ops);
}

/* A growing text buffer. */
typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *p;
    while (cap < b->len + n + 1)
      cap *= 2;
    p = kv_realloc(b->p, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_printf(sbuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0)
    sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Label values: backslash, double quote and newline escaped. */
static void sb_labels(sbuf_t *b, const char *coll, kv_op_t op) {
  sb_add(b, "{collection=\"", 13);
  for (const char *p = coll; *p; p++) {
    if (*p == '\\' || *p == '"')
      sb_add(b, "\\", 1), sb_add(b, p, 1);
    else if (*p == '\n')
      sb_add(b, "\\n", 2);
    else
      sb_add(b, p, 1);
  }
  sb_printf(b, "\",op=\"%s\"", kv_op_name(op));
}

typedef struct {
  sbuf_t *b;
  int which;
} prom_ctx_t;

static int prom_counter(const char *coll, kv_op_t op, const kv_stats_t *st,
                        void *data) {
  prom_ctx_t *pc = data;
  static const char *const names[] = {"kvio_ops_total", "kvio_hits_total",
                                      "kvio_misses_total", "kvio_errors_total"};
  uint64_t v = pc->which == 0   ? st->calls
               : pc->which == 1 ? st->hits
               : pc->which == 2 ? st->misses
                                : st->errors;
  sb_add(pc->b, names[pc->which], strlen(names[pc->which]));
  sb_labels(pc->b, coll, op);
  sb_printf(pc->b, "} %llu\n", (unsigned long long)v);
  return 0;
}

static int prom_hist(const char *coll, kv_op_t op, const kv_stats_t *st,
                     void *data) {
  prom_ctx_t *pc = data;
  uint64_t cum = 0;
  for (int i = 0; i < KV_STATS_NBUCKETS; i++) {
    cum += st->latency_buckets[i];
    sb_add(pc->b, "kvio_op_duration_seconds_bucket", 31);
    sb_labels(pc->b, coll, op);
    if (i == KV_STATS_NBUCKETS - 1)
      sb_printf(pc->b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    else
      sb_printf(pc->b, ",le=\"%g\"} %llu\n", kv_stats_bucket_bounds[i],
                (unsigned long long)cum);
  }
  sb_add(pc->b, "kvio_op_duration_seconds_sum", 28);
  sb_labels(pc->b, coll, op);
  sb_printf(pc->b, "} %.9g\n", st->latency_sum);
  sb_add(pc->b, "kvio_op_duration_seconds_count", 30);
  sb_labels(pc->b, coll, op);
  sb_printf(pc->b, "} %llu\n", (unsigned long long)st->calls);
  return 0;
}

char *kv_stats_prometheus(kv_store_t *s, size_t *len) {
  static const char *const help[] = {
      "# HELP kvio_ops_total Operations completed.\n"
      "# TYPE kvio_ops_total counter\n",
      "# HELP kvio_hits_total Reads that found a value (per key).\n"
      "# TYPE kvio_hits_total counter\n",
      "# HELP kvio_misses_total Reads that found nothing (per key).\n"
      "# TYPE kvio_misses_total counter\n",
      "# HELP kvio_errors_total Operations that failed.\n"
      "# TYPE kvio_errors_total counter\n"};
  sbuf_t b = {0};
  prom_ctx_t pc = {&b, 0};
  if (find_stats(s) == NULL) return NULL;
  sb_add(&b, "", 0);
  for (pc.which = 0; pc.which < 4; pc.which++) {
    sb_add(&b, help[pc.which], strlen(help[pc.which]));
    kv_stats_foreach(s, prom_counter, &pc);
  }
  sb_printf(&b, "# HELP kvio_op_duration_seconds Operation latency.\n"
                "# TYPE kvio_op_duration_seconds histogram\n");
  kv_stats_foreach(s, prom_hist, &pc);
  if (b.oom) {
    kv_free(b.p);
    return NULL;
  }
  if (len) *len = b.len;
  return b.p;
}
