/* bench: an asynchronous load on the store's own loop (SPEC section 8).
 *
 * --clients requests are kept in flight; each completion records its
 * latency (uv_hrtime at submit to callback) and submits the next request
 * until --requests were issued. Keys are 16 bytes ("k" and 15 digits) drawn
 * uniformly from a keyspace of --keys; values are --size bytes. get, mixed
 * and get-many first fill the keyspace with put_many (not timed). Batch ops
 * carry BENCH_BATCH keys per request. --sync runs the same load one request
 * at a time through the blocking facade, to measure its overhead.
 *
 * The load goes to the collection "kvio-bench" (removed afterwards when the
 * store can destroy collections) unless -c names another, which is then
 * left in place. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define BENCH_BATCH 100
#define BENCH_KEY_LEN 16
#define BENCH_FILL_BATCH 1000
#define BENCH_COLLECTION "kvio-bench"
#define BENCH_PUT_SHARE 10 /* mixed: one put in BENCH_PUT_SHARE requests */

typedef enum { OP_GET, OP_PUT, OP_MIXED, OP_GET_MANY, OP_PUT_MANY } bench_op_t;

static const char *const op_names[] = {"get", "put", "mixed", "get-many",
                                       "put-many"};

typedef struct bench_s bench_t;

typedef struct slot_s {
  kv_req_t req; /* first member: a kv_req_t * is a slot_t * */
  bench_t *b;
  uint64_t start;
  const char *keys[BENCH_BATCH];
} slot_t;

struct bench_s {
  const cli_opts_t *o;
  bench_op_t op;
  const char *collection;
  size_t batch;    /* keys per request */
  size_t requests; /* to issue */
  size_t clients;
  size_t nkeys;
  char *keybuf; /* nkeys keys of BENCH_KEY_LEN + 1 bytes */
  char *value;
  kv_buf_t values[BENCH_FILL_BATCH]; /* all point to `value` */
  uint64_t *lat;                     /* ns, one per completed request */
  size_t issued;
  size_t completed;
  uint64_t rng;
  int err;      /* the first error; no new requests after it */
  int reported; /* err was already printed */
  char errmsg[512];
  uint64_t t0, t1;
  uv_loop_t loop;
  kv_store_t *store;
  kv_sync_t *sync;
  slot_t *slots;
};

static int parse_op(const char *name, bench_op_t *op) {
  size_t i;
  for (i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++) {
    if (strcmp(op_names[i], name) == 0) {
      *op = (bench_op_t)i;
      return 0;
    }
  }
  return -1;
}

int cli_bench_check(const cli_opts_t *o) {
  bench_op_t op;

  if (o->bench_op == NULL)
    return cli_usage_error("bench needs --op get|put|mixed|get-many|put-many");
  if (parse_op(o->bench_op, &op) != 0)
    return cli_usage_error("unknown --op '%s' (get, put, mixed, get-many, "
                           "put-many)",
                           o->bench_op);
  if (o->keys >= 1000000000000000ull)
    return cli_usage_error("'--keys' must be below 10^15");
  return 0;
}

/* ---- Keys, values, randomness
 * ------------------------------------------------ */

static uint64_t next_rand(bench_t *b) {
  /* xorshift64*: fast, and good enough to spread keys. */
  b->rng ^= b->rng >> 12;
  b->rng ^= b->rng << 25;
  b->rng ^= b->rng >> 27;
  return b->rng * 2685821657736338717ull;
}

static const char *key_at(const bench_t *b, size_t i) {
  return b->keybuf + i * (BENCH_KEY_LEN + 1);
}

static const char *random_key(bench_t *b) {
  return key_at(b, (size_t)(next_rand(b) % b->nkeys));
}

static int make_data(bench_t *b) {
  size_t i;

  b->keybuf = malloc(b->nkeys * (BENCH_KEY_LEN + 1));
  b->value = malloc(b->o->size + 1);
  b->lat = malloc(b->requests * sizeof(*b->lat));
  b->slots = calloc(b->clients, sizeof(*b->slots));
  if (!b->keybuf || !b->value || !b->lat || !b->slots)
    return cli_store_error(KV_ENOMEM, "out of memory");
  for (i = 0; i < b->nkeys; i++) {
    char tmp[32]; /* --keys is below 10^15: always 16 bytes */
    snprintf(tmp, sizeof(tmp), "k%015zu", i);
    memcpy(b->keybuf + i * (BENCH_KEY_LEN + 1), tmp, BENCH_KEY_LEN + 1);
  }
  for (i = 0; i < b->o->size; i++)
    b->value[i] = (char)('a' + i % 26);
  for (i = 0; i < BENCH_FILL_BATCH; i++) {
    b->values[i].base = b->value;
    b->values[i].len = b->o->size;
  }
  return 0;
}

static void free_data(bench_t *b) {
  free(b->keybuf);
  free(b->value);
  free(b->lat);
  free(b->slots);
}

/* Keep the first error; later ones are usually its consequences. */
static void record_error(bench_t *b, int err, const kv_req_t *req) {
  const char *detail;

  if (b->err) return;
  b->err = err;
  detail = kv_req_errmsg(req);
  if (req->status == 0) detail = kv_strerror(err);
  snprintf(b->errmsg, sizeof(b->errmsg), "%s", detail);
}

/* ---- The async load --------------------------------------------------------
 */

static void on_done(kv_req_t *req);

/* Fill s->keys for a batch request: random keys for get-many, a run of
 * consecutive keys for put-many (no duplicates within one write). */
static void pick_batch(bench_t *b, slot_t *s) {
  size_t start = (size_t)(next_rand(b) % b->nkeys), j;

  for (j = 0; j < b->batch; j++)
    s->keys[j] = b->op == OP_GET_MANY ? random_key(b)
                                      : key_at(b, (start + j) % b->nkeys);
}

static int submit(bench_t *b, slot_t *s) {
  kv_req_t *req = &s->req;
  int put = b->op == OP_PUT ||
            (b->op == OP_MIXED && next_rand(b) % BENCH_PUT_SHARE == 0);
  const char *c = b->collection;
  int rc;

  /* kv_get & co. reset the request themselves. */
  if (b->batch > 1) pick_batch(b, s);
  s->start = uv_hrtime();
  if (b->op == OP_GET_MANY)
    rc = kv_get_many(b->store, req, c, s->keys, b->batch, on_done);
  else if (b->op == OP_PUT_MANY)
    rc = kv_put_many(b->store, req, c, s->keys, b->values, b->batch,
                     KV_TTL_NONE, on_done);
  else if (put)
    rc = kv_put(b->store, req, c, random_key(b), b->value, b->o->size,
                KV_TTL_NONE, on_done);
  else
    rc = kv_get(b->store, req, c, random_key(b), on_done);
  if (rc < 0) {
    record_error(b, rc, req);
    kv_req_cleanup(req);
    return rc;
  }
  b->issued++;
  return 0;
}

static void on_done(kv_req_t *req) {
  slot_t *s = (slot_t *)req;
  bench_t *b = s->b;

  b->lat[b->completed++] = uv_hrtime() - s->start;
  if (req->status < 0) record_error(b, req->status, req);
  kv_req_cleanup(req);
  if (!b->err && b->issued < b->requests) submit(b, s);
}

/* Run the loop until *flag is set. The store keeps a handle active while it
 * has work, so a loop with nothing alive means the request was lost. */
static int run_until(bench_t *b, const int *flag) {
  while (!*flag) {
    if (uv_run(&b->loop, UV_RUN_ONCE) == 0 && !*flag) {
      b->err = b->err ? b->err : KV_EBACKEND;
      snprintf(b->errmsg, sizeof(b->errmsg), "the loop stopped early");
      return -1;
    }
  }
  return 0;
}

static void flag_done(kv_req_t *req) {
  *(int *)req->data = 1;
}

/* One request on the loop, waited for: submit with flag_done. */
#define RUN_ONE(b, req, call)                                 \
  do {                                                        \
    int done_ = 0, rc_;                                       \
    memset(&(req), 0, sizeof(req));                           \
    (req).data = &done_;                                      \
    rc_ = (call);                                             \
    if (rc_ < 0)                                              \
      record_error((b), rc_, &(req));                         \
    else if (run_until((b), &done_) == 0 && (req).status < 0) \
      record_error((b), (req).status, &(req));                \
    kv_req_cleanup(&(req));                                   \
  } while (0)

static void fill_async(bench_t *b) {
  const char *keys[BENCH_FILL_BATCH];
  size_t i, j, n;
  kv_req_t req;

  for (i = 0; i < b->nkeys && !b->err; i += n) {
    n = b->nkeys - i < BENCH_FILL_BATCH ? b->nkeys - i : BENCH_FILL_BATCH;
    for (j = 0; j < n; j++)
      keys[j] = key_at(b, i + j);
    RUN_ONE(b, req,
            kv_put_many(b->store, &req, b->collection, keys, b->values, n,
                        KV_TTL_NONE, flag_done));
  }
}

static void load_async(bench_t *b) {
  size_t i;

  b->t0 = uv_hrtime();
  for (i = 0; i < b->clients && b->issued < b->requests && !b->err; i++) {
    b->slots[i].b = b;
    submit(b, &b->slots[i]);
  }
  while (b->completed < b->issued) {
    if (uv_run(&b->loop, UV_RUN_ONCE) == 0 && b->completed < b->issued) {
      record_error(b, KV_EBACKEND, &b->slots[0].req);
      snprintf(b->errmsg, sizeof(b->errmsg), "the loop stopped early");
      break;
    }
  }
  b->t1 = uv_hrtime();
}

static int closed_flag;

static void on_closed(kv_store_t *store) {
  (void)store;
  closed_flag = 1;
}

static int bench_own_collection(const bench_t *b) {
  return b->o->collection == NULL;
}

static void run_async(bench_t *b) {
  kv_req_t req;

  if (uv_loop_init(&b->loop) != 0) {
    b->err = KV_ENOMEM;
    snprintf(b->errmsg, sizeof(b->errmsg), "uv_loop_init failed");
    return;
  }
  if (cli_open_async(b->o, &b->loop, &b->store) != 0) {
    b->err = KV_EBACKEND;
    b->reported = 1; /* cli_open_*() printed why */
    /* A failed --wrap stack closes on the loop. */
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
    return;
  }
  if (b->op == OP_GET || b->op == OP_MIXED || b->op == OP_GET_MANY)
    fill_async(b);
  if (!b->err) load_async(b);
  if (bench_own_collection(b) && (kv_store_caps(b->store) & KV_CAP_DESTROY))
    RUN_ONE(b, req,
            kv_destroy_collection(b->store, &req, b->collection, flag_done));
  closed_flag = 0;
  kv_store_close(b->store, on_closed);
  while (!closed_flag && uv_run(&b->loop, UV_RUN_ONCE) != 0)
    ;
  uv_run(&b->loop, UV_RUN_DEFAULT);
  uv_loop_close(&b->loop);
}

/* ---- The blocking facade, one request at a time ----------------------------
 */

static void run_sync_one(bench_t *b, slot_t *s) {
  kv_req_t *req = &s->req;
  const char *c = b->collection;
  int put = b->op == OP_PUT ||
            (b->op == OP_MIXED && next_rand(b) % BENCH_PUT_SHARE == 0);
  int rc;

  /* kv_get & co. reset the request themselves. */
  if (b->batch > 1) pick_batch(b, s);
  s->start = uv_hrtime();
  if (b->op == OP_GET_MANY)
    rc = kv_sync_get_many(b->sync, req, c, s->keys, b->batch);
  else if (b->op == OP_PUT_MANY)
    rc = kv_sync_put_many(b->sync, req, c, s->keys, b->values, b->batch,
                          KV_TTL_NONE);
  else if (put)
    rc = kv_sync_put(b->sync, req, c, random_key(b), b->value, b->o->size,
                     KV_TTL_NONE);
  else
    rc = kv_sync_get(b->sync, req, c, random_key(b));
  b->lat[b->completed++] = uv_hrtime() - s->start;
  b->issued++;
  if (rc < 0) record_error(b, rc, req);
  kv_req_cleanup(req);
}

static void fill_sync(bench_t *b) {
  const char *keys[BENCH_FILL_BATCH];
  size_t i, j, n;
  kv_req_t req;
  int rc;

  for (i = 0; i < b->nkeys && !b->err; i += n) {
    n = b->nkeys - i < BENCH_FILL_BATCH ? b->nkeys - i : BENCH_FILL_BATCH;
    for (j = 0; j < n; j++)
      keys[j] = key_at(b, i + j);
    memset(&req, 0, sizeof(req));
    rc = kv_sync_put_many(b->sync, &req, b->collection, keys, b->values, n,
                          KV_TTL_NONE);
    if (rc < 0) record_error(b, rc, &req);
    kv_req_cleanup(&req);
  }
}

static void run_sync(bench_t *b) {
  kv_req_t req;

  if (cli_open_sync(b->o, b->o->store_url, &b->sync) != 0) {
    b->err = KV_EBACKEND;
    b->reported = 1; /* cli_open_*() printed why */
    return;
  }
  b->slots[0].b = b;
  if (b->op == OP_GET || b->op == OP_MIXED || b->op == OP_GET_MANY)
    fill_sync(b);
  b->t0 = uv_hrtime();
  while (!b->err && b->issued < b->requests)
    run_sync_one(b, &b->slots[0]);
  b->t1 = uv_hrtime();
  memset(&req, 0, sizeof(req));
  if (bench_own_collection(b) &&
      (kv_store_caps(kv_sync_store(b->sync)) & KV_CAP_DESTROY))
    kv_sync_destroy_collection(b->sync, &req, b->collection);
  kv_req_cleanup(&req);
  kv_sync_close(b->sync);
}

/* ---- Report
 * ------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The q-quantile of the sorted latencies, in microseconds (nearest rank). */
static double quantile_us(const bench_t *b, double q) {
  size_t n = b->completed, rank;

  if (n == 0) return 0;
  rank = (size_t)(q * (double)n + 0.999999);
  rank = rank < 1 ? 1 : rank > n ? n : rank;
  return (double)b->lat[rank - 1] / 1e3;
}

/* The URL as it may be shown: a password is replaced by "***". */
static void redact_url(const char *url, char *out, size_t len) {
  const char *auth = strstr(url, "://");
  const char *at, *colon, *end;

  snprintf(out, len, "%s", url);
  if (auth == NULL) return;
  auth += 3;
  end = auth + strcspn(auth, "/?#");
  at = memchr(auth, '@', (size_t)(end - auth));
  colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
  if (colon != NULL)
    snprintf(out, len, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

static int report_text(const bench_t *b, const char *url, double ops,
                       double p50, double p99, double p999) {
  char keys_per_sec[64] = "";

  if (b->batch > 1)
    snprintf(keys_per_sec, sizeof(keys_per_sec), " (%.0f keys/s)",
             ops * (double)b->batch);
  return cli_printf("bench %s on %s (%s): %zu requests of %zu key(s), %zu in "
                    "flight, %zu-byte values, %zu keys\n"
                    "  throughput: %.0f ops/s%s\n"
                    "  latency: p50 %.1f us, p99 %.1f us, p99.9 %.1f us\n",
                    op_names[b->op], url, b->o->sync ? "sync" : "async",
                    b->completed, b->batch, b->clients, b->o->size, b->nkeys,
                    ops, keys_per_sec, p50, p99, p999);
}

static int report(bench_t *b) {
  double secs = (double)(b->t1 - b->t0) / 1e9;
  double ops = secs > 0 ? (double)b->completed / secs : 0;
  double p50, p99, p999;
  char url[1024];
  json_t *j;

  qsort(b->lat, b->completed, sizeof(*b->lat), cmp_u64);
  p50 = quantile_us(b, 0.50);
  p99 = quantile_us(b, 0.99);
  p999 = quantile_us(b, 0.999);
  redact_url(b->o->store_url, url, sizeof(url));
  if (!b->o->json) return report_text(b, url, ops, p50, p99, p999);
  j = json_pack(
      "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "op",
      op_names[b->op], "store", url, "mode", b->o->sync ? "sync" : "async",
      "requests", (json_int_t)b->completed, "clients", (json_int_t)b->clients,
      "batch", (json_int_t)b->batch, "size", (json_int_t)b->o->size, "keys",
      (json_int_t)b->nkeys, "seconds", secs, "ops_per_sec", ops, "keys_per_sec",
      ops * (double)b->batch, "p50_us", p50, "p99_us", p99, "p999_us", p999);
  return cli_json_print(j);
}

int cli_cmd_bench(cli_ctx_t *ctx) {
  const cli_opts_t *o = ctx->o;
  bench_t *b = calloc(1, sizeof(*b));
  int rc;

  if (b == NULL) return cli_store_error(KV_ENOMEM, "out of memory");
  b->o = o;
  parse_op(o->bench_op, &b->op); /* checked by cli_bench_check() */
  b->collection = o->collection != NULL ? o->collection : BENCH_COLLECTION;
  b->batch = b->op == OP_GET_MANY || b->op == OP_PUT_MANY ? BENCH_BATCH : 1;
  /* By default every op moves the same number of keys (100000). */
  b->requests = o->requests ? o->requests : 100000 / b->batch;
  b->clients = o->sync ? 1 : o->clients;
  b->nkeys = o->keys;
  b->rng = 0x9e3779b97f4a7c15ull;
  rc = make_data(b);
  if (rc == 0) {
    if (o->sync)
      run_sync(b);
    else
      run_async(b);
    if (b->reported)
      rc = CLI_EXIT_STORE;
    else if (b->err)
      rc = cli_store_error(b->err, b->errmsg);
    else
      rc = report(b);
  }
  free_data(b);
  free(b);
  return rc;
}
