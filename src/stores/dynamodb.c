/* dynamodb://TABLE — one DynamoDB item per entry, over the HTTP layer
 * (http.c: libcurl on the loop, SigV4 by curl), JSON by jansson.
 *
 * Items: partition key "c" (the collection), sort key "k" (the key), both
 * strings; a name longer than 1,000 bytes, or one starting with '#', is
 * stored as "#" + SHA-256 (hex) with the real name in "cn" / "kn" (a raw
 * name never starts with '#', so the forms never meet). The value is the
 * binary attribute "v" — or, for a counter written by incr, the number "n".
 * The expiry is "x" (epoch seconds, rounded up: DynamoDB's TTL attribute,
 * enable it on "x" to let DynamoDB delete expired items) and "xm" (Unix
 * ms, what kvio reads: an item with xm <= now is missing).
 *
 * Each kv request is a job: a chain of steps, each step a set of HTTP
 * requests in flight; when the last one is answered the job runs its next
 * step (job->then) or completes. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "internal.h"
#include "stores/http.h"

#define DDB_NAME_RAW_MAX 1000
#define DDB_BATCH_GET 100
#define DDB_BATCH_WRITE 25
#define DDB_PAGE 1000
#define DDB_INCR_TRIES 16
/* Values above this are split: the item holds the first chunk, further
 * chunks are items of their own (DynamoDB's item limit is 400 KB). */
#define DDB_CHUNK 350000
#define DDB_RESTARTS 5

extern const kv_store_methods_t kv__dynamodb_methods;

typedef struct ddb_job_s ddb_job_t;
typedef void (*ddb_then_fn)(ddb_job_t *job);

typedef struct ddb_store_s {
  kv_store_t base;
  kv_http_t *http;
  char *endpoint;
  char *table;
  int create;
  int closing;
} ddb_store_t;

struct ddb_job_s {
  ddb_store_t *st;
  kv_req_t *req;
  ddb_then_fn then;  /* the next step, or NULL: complete */
  ddb_then_fn start; /* the first step (run again after creating the table) */
  int outstanding;
  int err;
  char errmsg[300];
  int need_table;
  int table_tried;
  int ccf; /* a ConditionalCheckFailedException was answered */
  int tries;
  size_t count;
  int64_t number;
  json_t *pending;  /* batch: requests still to send (array) */
  json_t *lek;      /* LastEvaluatedKey of the last page, or NULL */
  json_t *item;     /* the item read by a step */
  int done_scanning;
  char *skip_c;     /* collections(): the collection listed last */
  char *last_c;
  /* large values */
  struct ddb_asm_s *asms; /* values being assembled from their chunks */
  size_t nasms;
  size_t asm_todo; /* assemblies whose chunks are not requested yet */
  int stale;       /* a chunk did not match its item: read again */
  int restarts;
  json_t *new_chunks; /* put: chunk items of the value being written */
  json_t *main_item;  /* put: the item to write after its chunks */
  size_t cur;         /* put_many of large values: the entry being written */
  int finalized;
  ddb_then_fn after_batch; /* the step after a BatchWriteItem series */
};

typedef struct ddb_asm_s {
  char *c;
  size_t slot; /* get_many / ttl_many slot, or SIZE_MAX: req->value */
  char *buf;
  size_t len;
  size_t nc;   /* chunks after the first */
  char *g;     /* generation: chunks of this value carry it */
  char *main_k;
  double ttl;
  int drop;    /* take: delete the chunks once read */
} ddb_asm_t;

#define STORE(s) ((ddb_store_t *)(s))

static void job_step(ddb_job_t *job);

/* ---- Small helpers --------------------------------------------------------- */

static void job_fail(ddb_job_t *job, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_fail(ddb_job_t *job, int err, const char *fmt, ...) {
  va_list ap;
  if (job->err) return;
  job->err = err;
  va_start(ap, fmt);
  vsnprintf(job->errmsg, sizeof job->errmsg, fmt, ap);
  va_end(ap);
}

#define OOM(job) job_fail(job, KV_ENOMEM, "dynamodb: out of memory")

/* The stored form of a name (a new JSON string), and whether it is hashed. */
static json_t *stored_name(const char *s, size_t len, int *hashed) {
  if (len <= DDB_NAME_RAW_MAX && s[0] != '#') {
    *hashed = 0;
    return json_stringn(s, len);
  }
  char h[66];
  h[0] = '#';
  kv__http_sha256_hex(s, len, h + 1);
  *hashed = 1;
  return json_string(h);
}

/* {"c":{"S":..},"k":{"S":..}} for (collection, key); *hashed_c/k say which
 * parts are hashed. */
static json_t *item_key(const kv_req_t *req, const char *k, size_t klen,
                        int *hc, int *hk) {
  int a, b;
  json_t *c = stored_name(req->in.collection, req->in.collection_len, &a);
  json_t *kk = stored_name(k, klen, &b);
  if (hc) *hc = a;
  if (hk) *hk = b;
  return json_pack("{s:{s:o},s:{s:o}}", "c", "S", c, "k", "S", kk);
}

static json_t *num(int64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%" PRId64, v);
  return json_pack("{s:s}", "N", buf);
}

/* The full item of a write: key, value, expiry, real names. */
static json_t *full_item(const kv_req_t *req, const char *k, size_t klen,
                         const kv_buf_t *value) {
  int hc, hk;
  json_t *item = item_key(req, k, klen, &hc, &hk);
  size_t n;
  char *b64;
  if (item == NULL) return NULL;
  b64 = kv__http_base64(value->base,
                        value->len > DDB_CHUNK ? DDB_CHUNK : value->len, &n);
  if (b64 == NULL ||
      json_object_set_new(item, "v", json_pack("{s:s#}", "B", b64, n)) != 0) {
    kv_free(b64);
    json_decref(item);
    return NULL;
  }
  kv_free(b64);
  if (req->in.expires_at_ms) {
    json_object_set_new(item, "x", num((req->in.expires_at_ms + 999) / 1000));
    json_object_set_new(item, "xm", num(req->in.expires_at_ms));
  }
  if (hc)
    json_object_set_new(item, "cn",
                        json_pack("{s:s#}", "S", req->in.collection,
                                  req->in.collection_len));
  if (hk) json_object_set_new(item, "kn", json_pack("{s:s#}", "S", k, klen));
  return item;
}

static int64_t attr_int(const json_t *item, const char *name, int *present) {
  const char *s = json_string_value(json_object_get(json_object_get(item, name), "N"));
  int64_t v = 0;
  *present = s != NULL;
  if (s) v = strtoll(s, NULL, 10);
  return v;
}

/* Is an item live now? */
static int item_live(const json_t *item, int64_t now) {
  int has;
  int64_t xm;
  if (!json_is_object(item)) return 0;
  xm = attr_int(item, "xm", &has);
  return !(has && KV_EXPIRED(xm, now));
}

/* The value of an item: "v" (base64) or the counter "n" as decimal text. */
static int item_value(const json_t *item, char **out, size_t *len) {
  const char *b = json_string_value(json_object_get(json_object_get(item, "v"), "B"));
  const char *n = json_string_value(json_object_get(json_object_get(item, "n"), "N"));
  if (b) return kv__http_unbase64(b, strlen(b), out, len);
  if (n) {
    *len = strlen(n);
    if ((*out = kv_strndup(n, *len)) == NULL) return KV_ENOMEM;
    return 0;
  }
  return KV_ECORRUPT;
}

static double item_ttl(const json_t *item, int64_t now) {
  int has;
  int64_t xm = attr_int(item, "xm", &has);
  return has ? kv_remaining_ttl(xm, now) : KV_TTL_NONE;
}

/* The real name of an item's part: "kn"/"cn" when hashed, else "k"/"c". */
static const char *item_name(const json_t *item, const char *part,
                             const char *real) {
  const char *s = json_string_value(json_object_get(json_object_get(item, real), "S"));
  if (s) return s;
  return json_string_value(json_object_get(json_object_get(item, part), "S"));
}

/* The sort key of chunk i (>= 1) of generation g of the item keyed
 * main_k: "#" i "/" g "/" main_k — it starts with '#' and holds '/', so it is
 * neither a raw name nor a hashed one. */
static json_t *chunk_key(const char *c, const char *main_k, const char *g,
                         size_t i) {
  kv_sbuf_t b = {0};
  kv__sbuf_printf(&b, "#%zu/%s/%s", i, g, main_k);
  if (b.oom) return NULL;
  json_t *k = json_pack("{s:{s:s},s:{s:s}}", "c", "S", c, "k", "S", b.p);
  kv__sbuf_free(&b);
  return k;
}

static size_t attr_size(const json_t *item, const char *name) {
  int has;
  int64_t v = attr_int(item, name, &has);
  return has && v > 0 ? (size_t)v : 0;
}

static const char *attr_s(const json_t *item, const char *name) {
  return json_string_value(json_object_get(json_object_get(item, name), "S"));
}

/* ---- Jobs and calls ------------------------------------------------------------ */

static void asms_free(ddb_job_t *job) {
  for (size_t i = 0; i < job->nasms; i++) {
    kv_free(job->asms[i].c);
    kv_free(job->asms[i].buf);
    kv_free(job->asms[i].g);
    kv_free(job->asms[i].main_k);
  }
  kv_free(job->asms);
  job->asms = NULL;
  job->nasms = job->asm_todo = 0;
}

static void job_finish(ddb_job_t *job) {
  kv_req_t *req = job->req;
  int err = job->err;
  if (err) kv_req_set_error(req, err, "%s", job->errmsg);
  json_decref(job->pending);
  json_decref(job->lek);
  json_decref(job->item);
  kv_free(job->skip_c);
  kv_free(job->last_c);
  asms_free(job);
  json_decref(job->new_chunks);
  json_decref(job->main_item);
  kv_free(job);
  kv_req_complete(req, err);
}

static void sub_done(ddb_job_t *job, kv_http_req_t *hr) {
  kv__http_req_free(hr);
  if (--job->outstanding == 0) job_step(job);
}

/* Send one DynamoDB call; `body` is consumed. */
static void call(ddb_job_t *job, const char *op, json_t *body, kv_http_cb cb,
                 size_t index) {
  int with_table = strncmp(op, "Batch", 5) != 0;
  kv_http_req_t *hr;
  char *text;
  int err;
  if (body == NULL) {
    OOM(job);
    return;
  }
  if (with_table)
    json_object_set_new(body, "TableName", json_string(job->st->table));
  text = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  if (text == NULL) {
    OOM(job);
    return;
  }
  hr = kv__http_req_new(job->st->http, "POST", job->st->endpoint, cb, job);
  if (hr == NULL ||
      kv__http_req_header(hr, "Content-Type: application/x-amz-json-1.0") != 0 ||
      kv__http_req_header(hr, "X-Amz-Target: DynamoDB_20120810.%s", op) != 0 ||
      kv__http_req_body(hr, text, strlen(text), 1) != 0) {
    free(text);
    kv__http_req_free(hr);
    OOM(job);
    return;
  }
  free(text);
  hr->index = index;
  hr->data2 = (void *)op;
  if ((err = kv__http_start(hr)) != 0) {
    job_fail(job, err, "dynamodb: cannot start a request: %s", kv_strerror(err));
    return;
  }
  job->outstanding++;
}

static const char *short_type(const char *t) {
  const char *h = t ? strrchr(t, '#') : NULL;
  return h ? h + 1 : t ? t : "";
}

/* The answer of a call: the parsed JSON (new reference) on 200, else NULL
 * with the error recorded (a conditional check failure only sets
 * job->ccf; a missing table with create=1 sets job->need_table). */
static json_t *answer(ddb_job_t *job, kv_http_req_t *hr) {
  json_error_t jerr;
  json_t *doc;
  const char *op = hr->data2;
  if (hr->err) {
    job_fail(job, hr->err, "dynamodb: %s: %s", op, hr->errmsg);
    return NULL;
  }
  doc = json_loadb(hr->body ? hr->body : "", hr->body_len, 0, &jerr);
  if (hr->status == 200) {
    if (!json_is_object(doc)) {
      json_decref(doc);
      job_fail(job, KV_EPROTO, "dynamodb: %s: malformed JSON answer", op);
      return NULL;
    }
    return doc;
  }
  const char *type = short_type(json_string_value(json_object_get(doc, "__type")));
  const char *msg = json_string_value(json_object_get(doc, "message"));
  if (msg == NULL) msg = json_string_value(json_object_get(doc, "Message"));
  if (msg == NULL) msg = "";
  int err = KV_EBACKEND;
  if (strcmp(type, "ConditionalCheckFailedException") == 0) {
    job->ccf = 1;
    json_decref(doc);
    return NULL;
  }
  if (strcmp(type, "ResourceNotFoundException") == 0 && job->st->create &&
      !job->table_tried) {
    job->need_table = 1;
    json_decref(doc);
    return NULL;
  }
  if (strcmp(type, "UnrecognizedClientException") == 0 ||
      strcmp(type, "InvalidSignatureException") == 0 ||
      strcmp(type, "MissingAuthenticationTokenException") == 0 ||
      strcmp(type, "AccessDeniedException") == 0 || hr->status == 403)
    err = KV_EAUTH;
  else if (strstr(type, "Throttling") || strstr(type, "ProvisionedThroughput") ||
           strstr(type, "RequestLimitExceeded"))
    err = KV_EBUSY;
  else if (hr->status >= 500)
    err = KV_EIO;
  else if (strcmp(type, "ItemCollectionSizeLimitExceededException") == 0 ||
           strstr(msg, "size has exceeded") != NULL)
    err = KV_ETOOBIG;
  if (strcmp(type, "ResourceNotFoundException") == 0)
    job_fail(job, err, "dynamodb: table '%s' does not exist (create=1 creates it)",
             job->st->table);
  else
    job_fail(job, err, "dynamodb: %s: HTTP %ld %s%s%s", op, hr->status,
             type[0] ? type : "error", msg[0] ? ": " : "", msg);
  json_decref(doc);
  return NULL;
}

/* ---- Table creation (create=1) --------------------------------------------- */

static void on_describe(kv_http_req_t *hr);

static void describe(ddb_job_t *job) {
  call(job, "DescribeTable", json_object(), on_describe, 0);
}

static void on_ttl_enabled(kv_http_req_t *hr) {
  /* Best effort: servers without TTL support (dynalite) refuse it. */
  sub_done(hr->data, hr);
}

static void on_describe(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  json_t *doc = answer(job, hr);
  if (doc) {
    const char *status = json_string_value(
        json_object_get(json_object_get(doc, "Table"), "TableStatus"));
    if (status && strcmp(status, "ACTIVE") == 0) {
      call(job, "UpdateTimeToLive",
           json_pack("{s:{s:s,s:b}}", "TimeToLiveSpecification",
                     "AttributeName", "x", "Enabled", 1),
           on_ttl_enabled, 0);
      job->then = job->start; /* run the request from its start */
    } else if (++job->tries > 600) {
      job_fail(job, KV_ETIMEDOUT, "dynamodb: table '%s' did not become ACTIVE",
               job->st->table);
    } else {
      job->then = describe;
    }
    json_decref(doc);
  } else if (job->need_table) { /* not visible yet */
    job->need_table = 0;
    job->then = describe;
  }
  sub_done(job, hr);
}

static void on_create_table(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  json_t *doc;
  if (hr->err == 0 && hr->status == 400 && hr->body &&
      strstr(hr->body, "ResourceInUseException")) {
    job->then = describe; /* created meanwhile by someone else */
  } else if ((doc = answer(job, hr)) != NULL) {
    job->then = describe;
    json_decref(doc);
  }
  sub_done(job, hr);
}

static void create_table(ddb_job_t *job) {
  job->need_table = 0;
  job->table_tried = 1;
  job->tries = 0;
  call(job, "CreateTable",
       json_pack("{s:[{s:s,s:s},{s:s,s:s}],s:[{s:s,s:s},{s:s,s:s}],s:s}",
                 "AttributeDefinitions", "AttributeName", "c", "AttributeType",
                 "S", "AttributeName", "k", "AttributeType", "S", "KeySchema",
                 "AttributeName", "c", "KeyType", "HASH", "AttributeName", "k",
                 "KeyType", "RANGE", "BillingMode", "PAY_PER_REQUEST"),
       on_create_table, 0);
}

static void fetch_chunks(ddb_job_t *job);
static void finalize_asms(ddb_job_t *job);

static void job_step(ddb_job_t *job) {
  for (;;) {
    if (job->st->closing && !job->err)
      job_fail(job, KV_ECANCELED, "dynamodb: store closed");
    if (job->need_table && !job->err) {
      job->then = NULL;
      create_table(job);
      if (job->outstanding > 0) return;
    }
    if (!job->err && job->then == NULL && job->nasms > 0 && !job->finalized)
      job->then = job->asm_todo ? fetch_chunks : finalize_asms;
    if (job->err || job->then == NULL) {
      job_finish(job);
      return;
    }
    ddb_then_fn fn = job->then;
    job->then = NULL;
    fn(job);
    if (job->outstanding > 0) return;
  }
}

/* ---- Large values: chunks ---------------------------------------------------- */

static void on_ignore(kv_http_req_t *hr) {
  /* Best effort (a chunk left behind is garbage, never a wrong answer). */
  sub_done(hr->data, hr);
}

/* Delete the extra chunks of an item that was replaced or removed. */
static void drop_chunks(ddb_job_t *job, const json_t *item) {
  size_t nc = attr_size(item, "nc");
  const char *c = attr_s(item, "c"), *k = attr_s(item, "k"), *g = attr_s(item, "g");
  if (nc == 0 || c == NULL || k == NULL || g == NULL) return;
  for (size_t i = 1; i <= nc; i++)
    call(job, "DeleteItem", json_pack("{s:o}", "Key", chunk_key(c, k, g, i)),
         on_ignore, 0);
}

/* Remember a chunked item to assemble (its first chunk is in "v"). */
static int add_asm(ddb_job_t *job, const json_t *item, size_t slot, int drop) {
  char *first;
  size_t flen, tl = attr_size(item, "tl"), nc = attr_size(item, "nc");
  const char *c = attr_s(item, "c"), *k = attr_s(item, "k"), *g = attr_s(item, "g");
  const char *b = json_string_value(json_object_get(json_object_get(item, "v"), "B"));
  ddb_asm_t *a;
  if (b == NULL || c == NULL || k == NULL || g == NULL)
    return KV_ECORRUPT;
  if (kv__http_unbase64(b, strlen(b), &first, &flen) != 0) return KV_ECORRUPT;
  if (flen > tl || tl > (nc + 1) * (size_t)DDB_CHUNK) {
    kv_free(first);
    return KV_ECORRUPT;
  }
  a = kv_realloc(job->asms, (job->nasms + 1) * sizeof *a);
  if (a == NULL) {
    kv_free(first);
    return KV_ENOMEM;
  }
  job->asms = a;
  a = &job->asms[job->nasms];
  memset(a, 0, sizeof *a);
  a->slot = slot;
  a->nc = nc;
  a->len = tl;
  a->drop = drop;
  a->ttl = item_ttl(item, job->req->in.now_ms);
  a->buf = kv_malloc(tl + 1);
  a->c = kv_strndup(c, strlen(c));
  a->g = kv_strndup(g, strlen(g));
  a->main_k = kv_strndup(k, strlen(k));
  job->nasms++;
  job->asm_todo++;
  if (a->buf == NULL || a->c == NULL || a->g == NULL || a->main_k == NULL) {
    kv_free(first);
    return KV_ENOMEM;
  }
  memcpy(a->buf, first, flen);
  a->buf[tl] = '\0';
  kv_free(first);
  return 0;
}

static void on_chunk(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  size_t ai = hr->index >> 20, ci = hr->index & 0xfffff;
  json_t *doc = answer(job, hr);
  if (doc && ai < job->nasms) {
    ddb_asm_t *a = &job->asms[ai];
    json_t *item = json_object_get(doc, "Item");
    const char *g = item ? attr_s(item, "g") : NULL;
    const char *b = item ? json_string_value(json_object_get(json_object_get(item, "v"), "B")) : NULL;
    char *part;
    size_t plen, off = ci * (size_t)DDB_CHUNK;
    if (g == NULL || b == NULL || strcmp(g, a->g) != 0 ||
        kv__http_unbase64(b, strlen(b), &part, &plen) != 0) {
      job->stale = 1; /* overwritten meanwhile */
    } else {
      if (off + plen > a->len || (ci < a->nc && plen != DDB_CHUNK))
        job->stale = 1;
      else
        memcpy(a->buf + off, part, plen);
      kv_free(part);
    }
  }
  json_decref(doc);
  sub_done(job, hr);
}

static void fetch_chunks(ddb_job_t *job) {
  for (size_t ai = job->nasms - job->asm_todo; ai < job->nasms && !job->err; ai++) {
    ddb_asm_t *a = &job->asms[ai];
    for (size_t i = 1; i <= a->nc && !job->err; i++)
      call(job, "GetItem",
           json_pack("{s:o,s:b}", "Key", chunk_key(a->c, a->main_k, a->g, i),
                     "ConsistentRead", 1),
           on_chunk, (ai << 20) | i);
  }
  job->asm_todo = 0;
}

static void finalize_asms(ddb_job_t *job) {
  kv_req_t *req = job->req;
  if (job->stale) {
    /* A writer replaced the value while we read its chunks: read again. */
    job->stale = 0;
    asms_free(job);
    if (++job->restarts > DDB_RESTARTS) {
      job_fail(job, KV_EBUSY, "dynamodb: value changed while being read");
      return;
    }
    for (size_t i = 0; req->results && i < req->in.n; i++) {
      kv_free(req->results[i].value.base);
      memset(&req->results[i], 0, sizeof req->results[i]);
    }
    job->then = job->start;
    return;
  }
  job->finalized = 1;
  for (size_t i = 0; i < job->nasms; i++) {
    ddb_asm_t *a = &job->asms[i];
    if (a->slot == SIZE_MAX) {
      kv_req_give_value(req, a->buf, a->len);
      req->ttl = a->ttl;
    } else {
      kv_result_t *r = &req->results[a->slot];
      r->found = 1;
      r->value.base = a->buf;
      r->value.len = a->len;
      r->ttl = a->ttl;
    }
    a->buf = NULL;
    if (a->drop) {
      for (size_t c = 1; c <= a->nc; c++)
        call(job, "DeleteItem",
             json_pack("{s:o}", "Key", chunk_key(a->c, a->main_k, a->g, c)),
             on_ignore, 0);
    }
  }
}

/* The items of a value above DDB_CHUNK: the main item (first chunk, "nc"
 * more, total length "tl", generation "g") and its chunk items. */
static json_t *big_item(const kv_req_t *req, const char *k, size_t klen,
                        const kv_buf_t *value, json_t **chunks) {
  json_t *item = full_item(req, k, klen, value);
  unsigned char rnd[8];
  char g[17];
  size_t nc = (value->len - 1) / DDB_CHUNK;
  *chunks = NULL;
  if (item == NULL) return NULL;
  if (value->len <= DDB_CHUNK) return item;
  if (RAND_bytes(rnd, sizeof rnd) != 1) {
    uint64_t t = uv_hrtime();
    memcpy(rnd, &t, sizeof rnd);
  }
  kv__hex_encode(rnd, 8, g);
  json_object_set_new(item, "nc", num((int64_t)nc));
  json_object_set_new(item, "tl", num((int64_t)value->len));
  json_object_set_new(item, "g", json_pack("{s:s}", "S", g));
  *chunks = json_array();
  const char *c = attr_s(item, "c"), *mk = attr_s(item, "k");
  for (size_t i = 1; i <= nc && *chunks; i++) {
    json_t *ck = chunk_key(c, mk, g, i);
    size_t off = i * (size_t)DDB_CHUNK, len = value->len - off, n;
    if (len > DDB_CHUNK) len = DDB_CHUNK;
    char *b64 = kv__http_base64(value->base + off, len, &n);
    if (ck == NULL || b64 == NULL) {
      json_decref(ck);
      kv_free(b64);
      json_decref(*chunks);
      *chunks = NULL;
      break;
    }
    json_object_set_new(ck, "v", json_pack("{s:s#}", "B", b64, n));
    kv_free(b64);
    json_object_set_new(ck, "g", json_pack("{s:s}", "S", g));
    json_object_set_new(ck, "ck", num(1));
    if (json_object_get(item, "xm")) {
      json_object_set(ck, "xm", json_object_get(item, "xm"));
      json_object_set(ck, "x", json_object_get(item, "x"));
    }
    json_array_append_new(*chunks, ck);
  }
  if (*chunks == NULL) {
    json_decref(item);
    return NULL;
  }
  return item;
}

/* ---- Single items: get, ttl, put, delete, take, put_if_absent, cas -------- */

static json_t *now_values(const kv_req_t *req) {
  return json_pack("{s:o}", ":now", num(req->in.now_ms));
}

static void put_many_next(ddb_job_t *job);

static void on_single(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  kv_req_t *req = job->req;
  json_t *doc = answer(job, hr);
  if (doc) {
    json_t *item = json_object_get(doc, json_object_get(doc, "Item") ? "Item"
                                                                     : "Attributes");
    int live = item != NULL && item_live(item, req->in.now_ms);
    switch (req->op) {
    case KV_OP_GET:
    case KV_OP_TTL:
    case KV_OP_TAKE:
      if (live && attr_size(item, "nc") > 0) {
        int rc = add_asm(job, item, SIZE_MAX, req->op == KV_OP_TAKE);
        if (rc != 0) job_fail(job, rc, "dynamodb: malformed large value");
      } else if (live) {
        char *v;
        size_t len;
        int rc = item_value(item, &v, &len);
        if (rc != 0) {
          job_fail(job, rc, "dynamodb: item without a readable value");
        } else {
          kv_req_give_value(req, v, len);
          req->ttl = item_ttl(item, req->in.now_ms);
        }
      } else if (item && req->op == KV_OP_TAKE) {
        drop_chunks(job, item);
      }
      break;
    case KV_OP_DELETE:
      req->found = live;
      if (item) drop_chunks(job, item);
      break;
    case KV_OP_PUT_IF_ABSENT:
    case KV_OP_CAS:
      req->found = 1;
      /* fall through */
    case KV_OP_PUT:
    case KV_OP_PUT_MANY:
      if (item) drop_chunks(job, item); /* the replaced value's chunks */
      if (req->op == KV_OP_PUT_MANY) job->then = put_many_next;
      break;
    default:
      break;
    }
    json_decref(doc);
  } else if (job->ccf) {
    if (req->op == KV_OP_CAS)
      job_fail(job, KV_ECONFLICT, "dynamodb: compare-and-swap conflict");
    req->found = 0;
    /* Not written: our chunks are garbage. */
    if (job->main_item) drop_chunks(job, json_object_get(job->main_item, "Item"));
  }
  sub_done(job, hr);
}

static void start_get(ddb_job_t *job) {
  const kv_req_t *req = job->req;
  call(job, "GetItem",
       json_pack("{s:o,s:b}", "Key",
                 item_key(req, req->in.key, req->in.key_len, NULL, NULL),
                 "ConsistentRead", 1),
       on_single, 0);
}

static void start_delete(ddb_job_t *job) {
  const kv_req_t *req = job->req;
  call(job, "DeleteItem",
       json_pack("{s:o,s:s}", "Key",
                 item_key(req, req->in.key, req->in.key_len, NULL, NULL),
                 "ReturnValues", "ALL_OLD"),
       on_single, 0);
}

static void on_chunk_put(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  json_decref(answer(job, hr));
  sub_done(job, hr);
}

static void put_main(ddb_job_t *job) {
  call(job, "PutItem", json_incref(job->main_item), on_single, 0);
}

/* The conditions of put_if_absent and cas. 0 or KV_ENOMEM. */
static int add_conditions(ddb_job_t *job, json_t *body) {
  const kv_req_t *req = job->req;
  json_t *vals;
  if (req->op != KV_OP_PUT_IF_ABSENT && req->op != KV_OP_CAS) return 0;
  if ((vals = now_values(req)) == NULL) return KV_ENOMEM;
  if (req->op == KV_OP_PUT_IF_ABSENT || req->in.expected_absent) {
    json_object_set_new(body, "ConditionExpression",
                        json_string("attribute_not_exists(k) OR xm <= :now"));
  } else {
    int64_t n;
    size_t blen;
    char *b64 = kv__http_base64(req->in.expected.base, req->in.expected.len, &blen);
    if (b64 == NULL) {
      json_decref(vals);
      return KV_ENOMEM;
    }
    /* A large expected value is never equal to a first chunk with more
     * chunks after it: require "nc" absent. */
    json_object_set_new(vals, ":e", json_pack("{s:s#}", "B", b64, blen));
    kv_free(b64);
    if (kv_parse_int64(req->in.expected.base, req->in.expected.len, &n) == 0) {
      /* A counter written by incr holds "n": compare with it too. */
      json_object_set_new(vals, ":en", num(n));
      json_object_set_new(body, "ConditionExpression",
                          json_string("(v = :e OR n = :en) AND attribute_not_exists(nc) "
                                      "AND (attribute_not_exists(xm) OR xm > :now)"));
    } else {
      json_object_set_new(body, "ConditionExpression",
                          json_string("v = :e AND attribute_not_exists(nc) AND "
                                      "(attribute_not_exists(xm) OR xm > :now)"));
    }
  }
  json_object_set_new(body, "ExpressionAttributeValues", vals);
  return 0;
}

/* Write one entry: its chunks first (large values), then the item, which
 * says what it replaced (ALL_OLD) so that old chunks can be dropped. */
static void put_entry(ddb_job_t *job, const char *k, size_t klen,
                      const kv_buf_t *value) {
  json_t *chunks = NULL;
  json_t *item = big_item(job->req, k, klen, value, &chunks);
  json_t *body = item ? json_pack("{s:o,s:s}", "Item", item, "ReturnValues", "ALL_OLD")
                      : NULL;
  if (body == NULL || add_conditions(job, body) != 0) {
    json_decref(body);
    json_decref(chunks);
    OOM(job);
    return;
  }
  json_decref(job->main_item);
  json_decref(job->new_chunks);
  job->main_item = body;
  job->new_chunks = chunks;
  if (chunks == NULL) {
    put_main(job);
    return;
  }
  size_t i;
  json_t *ck;
  json_array_foreach(chunks, i, ck)
      call(job, "PutItem", json_pack("{s:O}", "Item", ck), on_chunk_put, 0);
  job->then = put_main;
}

static void start_put(ddb_job_t *job) {
  const kv_req_t *req = job->req;
  put_entry(job, req->in.key, req->in.key_len, &req->in.value);
}

static void start_cas(ddb_job_t *job) { start_put(job); }

/* put_many with a value above DDB_CHUNK: the entries one after the other,
 * each as a put (in order, so a key given twice ends with its last value). */
static void put_many_next(ddb_job_t *job) {
  const kv_req_t *req = job->req;
  if (job->cur >= req->in.n) return;
  size_t i = job->cur++;
  put_entry(job, req->in.keys[i].base, req->in.keys[i].len, &req->in.values[i]);
}

/* ---- incr --------------------------------------------------------------------- *
 * Fast path: UpdateItem ADD n :d on a live counter, guarded against int64
 * overflow. Otherwise read the item: absent or expired → create the counter
 * (conditional put); a text value "v" → convert it to a counter (conditional
 * on v being unchanged); then try again. */

static void incr_fast(ddb_job_t *job);

static void on_incr_write(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  json_t *doc = answer(job, hr);
  if (doc) {
    int has;
    int64_t n = attr_int(json_object_get(doc, "Attributes"), "n", &has);
    job->req->number = has ? n : job->number;
    job->then = NULL;
    json_decref(doc);
  } else if (job->ccf) {
    job->ccf = 0;
    if (++job->tries > DDB_INCR_TRIES)
      job_fail(job, KV_EBUSY, "dynamodb: incr: too much contention");
    else
      job->then = incr_fast;
  }
  sub_done(job, hr);
}

static void on_incr_read(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  kv_req_t *req = job->req;
  json_t *doc = answer(job, hr);
  if (doc == NULL) {
    sub_done(job, hr);
    return;
  }
  json_t *item = json_object_get(doc, "Item");
  int64_t d = req->in.delta, cur = 0, next;
  int has_n;
  const char *v = item ? json_string_value(json_object_get(json_object_get(item, "v"), "B")) : NULL;
  if (item == NULL || !item_live(item, req->in.now_ms)) {
    /* Create the counter with the request's TTL. */
    int hc, hk;
    json_t *it = item_key(req, req->in.key, req->in.key_len, &hc, &hk);
    if (it) {
      json_object_set_new(it, "n", num(d));
      if (req->in.expires_at_ms) {
        json_object_set_new(it, "x", num((req->in.expires_at_ms + 999) / 1000));
        json_object_set_new(it, "xm", num(req->in.expires_at_ms));
      }
      if (hc)
        json_object_set_new(it, "cn", json_pack("{s:s#}", "S", req->in.collection,
                                                req->in.collection_len));
      if (hk)
        json_object_set_new(it, "kn",
                            json_pack("{s:s#}", "S", req->in.key, req->in.key_len));
    }
    job->number = d;
    call(job, "PutItem",
         json_pack("{s:o,s:s,s:o}", "Item", it, "ConditionExpression",
                   "attribute_not_exists(k) OR xm <= :now",
                   "ExpressionAttributeValues", now_values(req)),
         on_incr_write, 0);
  } else if ((cur = attr_int(item, "n", &has_n)), has_n || v) {
    if (!has_n) {
      char *raw;
      size_t len;
      if (kv__http_unbase64(v, strlen(v), &raw, &len) != 0 ||
          kv_parse_int64(raw, len, &cur) != 0) {
        if (raw) kv_free(raw);
        job_fail(job, KV_EINVAL, "dynamodb: incr: the value is not a decimal integer");
        json_decref(doc);
        sub_done(job, hr);
        return;
      }
      kv_free(raw);
    }
    if ((d > 0 && cur > INT64_MAX - d) || (d < 0 && cur < INT64_MIN - d)) {
      job_fail(job, KV_EINVAL, "dynamodb: incr: integer overflow");
    } else if (has_n) {
      job->then = incr_fast; /* changed meanwhile: try again */
      if (++job->tries > DDB_INCR_TRIES)
        job_fail(job, KV_EBUSY, "dynamodb: incr: too much contention");
    } else {
      next = cur + d;
      job->number = next;
      json_t *vals = now_values(req);
      json_object_set_new(vals, ":old", json_pack("{s:s}", "B", v));
      json_object_set_new(vals, ":new", num(next));
      call(job, "UpdateItem",
           json_pack("{s:o,s:s,s:s,s:o,s:s}", "Key",
                     item_key(req, req->in.key, req->in.key_len, NULL, NULL),
                     "UpdateExpression", "SET n = :new REMOVE v",
                     "ConditionExpression",
                     "v = :old AND (attribute_not_exists(xm) OR xm > :now)",
                     "ExpressionAttributeValues", vals, "ReturnValues",
                     "UPDATED_NEW"),
           on_incr_write, 0);
    }
  } else {
    job_fail(job, KV_ECORRUPT, "dynamodb: incr: item without a value");
  }
  json_decref(doc);
  sub_done(job, hr);
}

static void incr_read(ddb_job_t *job) {
  const kv_req_t *req = job->req;
  call(job, "GetItem",
       json_pack("{s:o,s:b}", "Key",
                 item_key(req, req->in.key, req->in.key_len, NULL, NULL),
                 "ConsistentRead", 1),
       on_incr_read, 0);
}

static void on_incr_fast(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  json_t *doc = answer(job, hr);
  if (doc) {
    int has;
    job->req->number = attr_int(json_object_get(doc, "Attributes"), "n", &has);
    json_decref(doc);
  } else if (job->ccf) {
    job->ccf = 0;
    job->then = incr_read;
  }
  sub_done(job, hr);
}

static void incr_fast(ddb_job_t *job) {
  const kv_req_t *req = job->req;
  int64_t d = req->in.delta;
  json_t *vals = now_values(req);
  json_object_set_new(vals, ":d", num(d));
  json_object_set_new(vals, ":lim", num(d >= 0 ? INT64_MAX - d : INT64_MIN - d));
  call(job, "UpdateItem",
       json_pack("{s:o,s:s,s:s,s:o,s:s}", "Key",
                 item_key(req, req->in.key, req->in.key_len, NULL, NULL),
                 "UpdateExpression", "ADD n :d", "ConditionExpression",
                 d >= 0 ? "attribute_exists(n) AND n <= :lim AND "
                          "(attribute_not_exists(xm) OR xm > :now)"
                        : "attribute_exists(n) AND n >= :lim AND "
                          "(attribute_not_exists(xm) OR xm > :now)",
                 "ExpressionAttributeValues", vals, "ReturnValues",
                 "UPDATED_NEW"),
       on_incr_fast, 0);
}

/* ---- get_many / ttl_many: BatchGetItem, 100 keys a request ------------------ */

static const char *key_k(const json_t *key) {
  return json_string_value(json_object_get(json_object_get(key, "k"), "S"));
}

static void batch_get_send(ddb_job_t *job);

static void on_batch_get(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  kv_req_t *req = job->req;
  json_t *doc = answer(job, hr);
  if (doc) {
    json_t *items = json_object_get(json_object_get(doc, "Responses"), job->st->table);
    json_t *unp = json_object_get(
        json_object_get(json_object_get(doc, "UnprocessedKeys"), job->st->table),
        "Keys");
    size_t i, j;
    json_t *item, *key;
    json_array_foreach(items, i, item) {
      const char *k = key_k(item);
      if (k == NULL || !item_live(item, req->in.now_ms)) continue;
      /* Every slot asking for this key (duplicates are answered). */
      for (j = 0; j < req->in.n; j++) {
        kv_result_t *r = &req->results[j];
        int hk;
        json_t *sk = stored_name(req->in.keys[j].base, req->in.keys[j].len, &hk);
        int same = sk && strcmp(json_string_value(sk), k) == 0;
        json_decref(sk);
        if (!same || r->found) continue;
        if (attr_size(item, "nc") > 0) {
          int rc = add_asm(job, item, j, 0);
          if (rc != 0) job_fail(job, rc, "dynamodb: malformed large value");
          continue;
        }
        char *v;
        size_t len;
        int rc = item_value(item, &v, &len);
        if (rc != 0) {
          job_fail(job, rc, "dynamodb: item without a readable value");
          break;
        }
        r->found = 1;
        r->value.base = v;
        r->value.len = len;
        r->ttl = item_ttl(item, req->in.now_ms);
      }
    }
    json_array_foreach(unp, i, key) json_array_append(job->pending, key);
    if (json_array_size(job->pending) > 0) job->then = batch_get_send;
    json_decref(doc);
  }
  sub_done(job, hr);
}

static void batch_get_send(ddb_job_t *job) {
  while (json_array_size(job->pending) > 0 && !job->err) {
    json_t *keys = json_array();
    while (json_array_size(keys) < DDB_BATCH_GET && json_array_size(job->pending) > 0) {
      json_array_append(keys, json_array_get(job->pending, 0));
      json_array_remove(job->pending, 0);
    }
    call(job, "BatchGetItem",
         json_pack("{s:{s:{s:o,s:b}}}", "RequestItems", job->st->table, "Keys",
                   keys, "ConsistentRead", 1),
         on_batch_get, 0);
  }
}

static void start_get_many(ddb_job_t *job) {
  kv_req_t *req = job->req;
  if (req->in.n == 0) return;
  if (req->results == NULL && kv_req_alloc_results(req) != 0) {
    OOM(job);
    return;
  }
  json_decref(job->pending);
  job->pending = json_array();
  /* One key once: BatchGetItem refuses duplicates. */
  for (size_t i = 0; i < req->in.n; i++) {
    int dup = 0;
    for (size_t j = 0; j < i && !dup; j++)
      dup = req->in.keys[j].len == req->in.keys[i].len &&
            memcmp(req->in.keys[j].base, req->in.keys[i].base, req->in.keys[i].len) == 0;
    if (!dup)
      json_array_append_new(job->pending, item_key(req, req->in.keys[i].base,
                                                   req->in.keys[i].len, NULL, NULL));
  }
  batch_get_send(job);
}

/* ---- BatchWriteItem (put_many, destroy): 25 requests a call ----------------- */

static void batch_write_send(ddb_job_t *job);

static void on_batch_write(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  json_t *doc = answer(job, hr);
  if (doc) {
    json_t *unp = json_object_get(json_object_get(doc, "UnprocessedItems"),
                                  job->st->table);
    size_t i;
    json_t *w;
    json_array_foreach(unp, i, w) json_array_append(job->pending, w);
    if (json_array_size(job->pending) > 0) job->then = batch_write_send;
    json_decref(doc);
  }
  sub_done(job, hr);
}

static void batch_write_send(ddb_job_t *job) {
  /* Called from a callback that chose the next step (keep it for after the
   * resends of unprocessed items), or as a step of its own (then is NULL:
   * restore the step kept). */
  if (job->then) job->after_batch = job->then;
  ddb_then_fn after = job->after_batch;
  while (json_array_size(job->pending) > 0 && !job->err) {
    json_t *writes = json_array();
    while (json_array_size(writes) < DDB_BATCH_WRITE &&
           json_array_size(job->pending) > 0) {
      json_array_append(writes, json_array_get(job->pending, 0));
      json_array_remove(job->pending, 0);
    }
    call(job, "BatchWriteItem",
         json_pack("{s:{s:o}}", "RequestItems", job->st->table, writes),
         on_batch_write, 0);
  }
  job->then = after;
}

static void start_put_many(ddb_job_t *job) {
  kv_req_t *req = job->req;
  for (size_t i = 0; i < req->in.n; i++)
    if (req->in.values[i].len > DDB_CHUNK) {
      job->cur = 0;
      put_many_next(job);
      return;
    }
  json_decref(job->pending);
  job->pending = json_array();
  /* A key given twice: the last value wins (BatchWriteItem refuses
   * duplicates in one call). */
  for (size_t i = 0; i < req->in.n; i++) {
    int dup = 0;
    for (size_t j = i + 1; j < req->in.n && !dup; j++)
      dup = req->in.keys[j].len == req->in.keys[i].len &&
            memcmp(req->in.keys[j].base, req->in.keys[i].base, req->in.keys[i].len) == 0;
    if (dup) continue;
    json_t *item = full_item(req, req->in.keys[i].base, req->in.keys[i].len,
                             &req->in.values[i]);
    if (item == NULL) {
      OOM(job);
      return;
    }
    json_array_append_new(job->pending, json_pack("{s:{s:o}}", "PutRequest", "Item", item));
  }
  batch_write_send(job);
}

/* ---- delete_many: DeleteItem each (the old item says what was removed) ---- */

static void on_delete_one(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  json_t *doc = answer(job, hr);
  if (doc) {
    json_t *old = json_object_get(doc, "Attributes");
    if (old && item_live(old, job->req->in.now_ms)) job->count++;
    if (old) drop_chunks(job, old);
    json_decref(doc);
  }
  job->ccf = 0; /* cull: already gone or renewed */
  job->req->count = job->count;
  sub_done(job, hr);
}

static void start_delete_many(ddb_job_t *job) {
  kv_req_t *req = job->req;
  for (size_t i = 0; i < req->in.n && !job->err; i++) {
    int dup = 0;
    for (size_t j = 0; j < i && !dup; j++)
      dup = req->in.keys[j].len == req->in.keys[i].len &&
            memcmp(req->in.keys[j].base, req->in.keys[i].base, req->in.keys[i].len) == 0;
    if (dup) continue;
    call(job, "DeleteItem",
         json_pack("{s:o,s:s}", "Key",
                   item_key(req, req->in.keys[i].base, req->in.keys[i].len, NULL, NULL),
                   "ReturnValues", "ALL_OLD"),
         on_delete_one, i);
  }
}

/* ---- keys(): Query on the collection ---------------------------------------- */

static json_t *cursor_json(const char *cursor) {
  json_error_t e;
  return cursor ? json_loads(cursor, 0, &e) : NULL;
}

static int set_cursor_json(ddb_job_t *job, json_t *lek) {
  char *text = lek ? json_dumps(lek, JSON_COMPACT) : NULL;
  int rc;
  if (lek && text == NULL) return KV_ENOMEM;
  rc = kv_req_set_cursor(job->req, text);
  free(text);
  return rc;
}

static void on_query_keys(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  kv_req_t *req = job->req;
  json_t *doc = answer(job, hr);
  if (doc) {
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(doc, "Items"), i, item) {
      const char *name = item_name(item, "k", "kn");
      if (json_object_get(item, "ck")) continue; /* a chunk of a large value */
      if (name && item_live(item, req->in.now_ms) &&
          kv_req_add_name(req, name, strlen(name)) != 0)
        OOM(job);
    }
    if (set_cursor_json(job, json_object_get(doc, "LastEvaluatedKey")) != 0) OOM(job);
    json_decref(doc);
  }
  sub_done(job, hr);
}

static void start_keys(ddb_job_t *job) {
  kv_req_t *req = job->req;
  int h;
  json_t *body = json_pack(
      "{s:s,s:{s:{s:o}},s:s,s:b,s:I}", "KeyConditionExpression", "c = :c",
      "ExpressionAttributeValues", ":c", "S",
      stored_name(req->in.collection, req->in.collection_len, &h),
      "ProjectionExpression", "k, kn, xm, ck", "ConsistentRead", 1, "Limit",
      (json_int_t)(req->in.limit ? req->in.limit : DDB_PAGE));
  if (req->in.cursor) {
    json_t *start = cursor_json(req->in.cursor);
    if (!json_is_object(start)) {
      json_decref(start);
      json_decref(body);
      job_fail(job, KV_EINVAL, "dynamodb: invalid cursor");
      return;
    }
    json_object_set_new(body, "ExclusiveStartKey", start);
  }
  call(job, "Query", body, on_query_keys, 0);
}

/* ---- collections(): Scan, one name per run of items of a collection ------- *
 * The cursor is the key of the item where the page ended; the next page
 * starts after it and skips the rest of its collection (DynamoDB returns
 * the items of a partition key together). */

static void collections_scan(ddb_job_t *job);

static void on_scan_collections(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  kv_req_t *req = job->req;
  size_t limit = req->in.limit ? req->in.limit : DDB_PAGE;
  json_t *doc = answer(job, hr);
  if (doc) {
    size_t i;
    json_t *item;
    int full = 0;
    json_array_foreach(json_object_get(doc, "Items"), i, item) {
      const char *c = json_string_value(json_object_get(json_object_get(item, "c"), "S"));
      if (c == NULL) continue;
      if (json_object_get(item, "ck") ||
          (job->skip_c && strcmp(c, job->skip_c) == 0) ||
          (job->last_c && strcmp(c, job->last_c) == 0) ||
          !item_live(item, req->in.now_ms))
        continue;
      const char *name = item_name(item, "c", "cn");
      if (name == NULL || kv_req_add_name(req, name, strlen(name)) != 0) {
        OOM(job);
        break;
      }
      kv_free(job->last_c);
      job->last_c = kv_strndup(c, strlen(c));
      if (req->nnames >= limit) {
        json_t *cur = json_pack("{s:O,s:O}", "c", json_object_get(item, "c"), "k",
                                json_object_get(item, "k"));
        if (set_cursor_json(job, cur) != 0) OOM(job);
        json_decref(cur);
        full = 1;
        break;
      }
    }
    if (!full) {
      json_t *lek = json_object_get(doc, "LastEvaluatedKey");
      json_decref(job->lek);
      job->lek = json_incref(lek);
      if (lek)
        job->then = collections_scan;
      else if (kv_req_set_cursor(req, NULL) != 0)
        OOM(job);
    }
    json_decref(doc);
  }
  sub_done(job, hr);
}

static void collections_scan(ddb_job_t *job) {
  json_t *body = json_pack("{s:s,s:b,s:I}", "ProjectionExpression", "c, k, cn, xm, ck",
                           "ConsistentRead", 1, "Limit", (json_int_t)DDB_PAGE);
  if (body && job->lek) json_object_set(body, "ExclusiveStartKey", job->lek);
  call(job, "Scan", body, on_scan_collections, 0);
}

static void start_collections(ddb_job_t *job) {
  kv_req_t *req = job->req;
  if (req->in.cursor) {
    json_t *start = cursor_json(req->in.cursor);
    const char *c = json_string_value(json_object_get(json_object_get(start, "c"), "S"));
    if (!json_is_object(start) || c == NULL) {
      json_decref(start);
      job_fail(job, KV_EINVAL, "dynamodb: invalid cursor");
      return;
    }
    job->skip_c = kv_strndup(c, strlen(c));
    job->lek = start;
  }
  collections_scan(job);
}

/* ---- destroy, destroy_collection, cull: pages of scan / query, then
 * deletes ------------------------------------------------------------------- */

static void sweep_page(ddb_job_t *job);

static void sweep_next(ddb_job_t *job) {
  if (job->done_scanning) {
    job->req->count = job->count;
    return; /* complete */
  }
  sweep_page(job);
}

static void on_sweep_page(kv_http_req_t *hr) {
  ddb_job_t *job = hr->data;
  kv_req_t *req = job->req;
  json_t *doc = answer(job, hr);
  if (doc) {
    size_t i;
    json_t *item;
    json_t *lek = json_object_get(doc, "LastEvaluatedKey");
    json_decref(job->lek);
    job->lek = json_incref(lek);
    job->done_scanning = lek == NULL;
    json_decref(job->pending);
    job->pending = json_array();
    json_array_foreach(json_object_get(doc, "Items"), i, item) {
      json_t *key = json_pack("{s:O,s:O}", "c", json_object_get(item, "c"), "k",
                              json_object_get(item, "k"));
      if (req->op == KV_OP_CULL) {
        /* Delete only if still expired when the delete runs. */
        json_t *vals = now_values(req);
        call(job, "DeleteItem",
             json_pack("{s:o,s:s,s:o,s:s}", "Key", key, "ConditionExpression",
                       "xm <= :now", "ExpressionAttributeValues", vals,
                       "ReturnValues", "ALL_OLD"),
             on_delete_one, 0);
      } else {
        json_array_append_new(job->pending,
                              json_pack("{s:{s:o}}", "DeleteRequest", "Key", key));
      }
    }
    job->then = sweep_next;
    if (req->op != KV_OP_CULL) batch_write_send(job);
    json_decref(doc);
  }
  sub_done(job, hr);
}

static void sweep_page(ddb_job_t *job) {
  kv_req_t *req = job->req;
  json_t *body;
  int h;
  if (req->op == KV_OP_DESTROY_COLLECTION) {
    body = json_pack("{s:s,s:{s:{s:o}},s:s,s:b}", "KeyConditionExpression", "c = :c",
                     "ExpressionAttributeValues", ":c", "S",
                     stored_name(req->in.collection, req->in.collection_len, &h),
                     "ProjectionExpression", "c, k", "ConsistentRead", 1);
  } else if (req->op == KV_OP_CULL) {
    body = json_pack("{s:s,s:o,s:s,s:b}", "FilterExpression", "xm <= :now",
                     "ExpressionAttributeValues", now_values(req),
                     "ProjectionExpression", "c, k", "ConsistentRead", 1);
  } else {
    body = json_pack("{s:s,s:b}", "ProjectionExpression", "c, k", "ConsistentRead", 1);
  }
  if (body && job->lek) json_object_set(body, "ExclusiveStartKey", job->lek);
  call(job, req->op == KV_OP_DESTROY_COLLECTION ? "Query" : "Scan", body,
       on_sweep_page, 0);
}

/* ---- Submit / open / close -------------------------------------------------- */

static ddb_then_fn first_step(kv_op_t op) {
  switch (op) {
  case KV_OP_GET:
  case KV_OP_TTL:
    return start_get;
  case KV_OP_PUT:
  case KV_OP_PUT_IF_ABSENT:
    return start_put;
  case KV_OP_DELETE:
  case KV_OP_TAKE:
    return start_delete;
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
    return start_get_many;
  case KV_OP_PUT_MANY:
    return start_put_many;
  case KV_OP_DELETE_MANY:
    return start_delete_many;
  case KV_OP_KEYS:
    return start_keys;
  case KV_OP_COLLECTIONS:
    return start_collections;
  case KV_OP_DESTROY:
  case KV_OP_DESTROY_COLLECTION:
  case KV_OP_CULL:
    return sweep_page;
  case KV_OP_CAS:
    return start_cas;
  case KV_OP_INCR:
    return incr_fast;
  default:
    return NULL;
  }
}

static int ddb_submit(kv_store_t *s, kv_req_t *req) {
  ddb_store_t *st = STORE(s);
  ddb_then_fn fn = first_step(req->op);
  ddb_job_t *job;
  if (fn == NULL) return kv_req_set_error(req, KV_ENOTSUP, "dynamodb: not supported");
  if ((job = kv_calloc(1, sizeof *job)) == NULL)
    return kv_req_set_error(req, KV_ENOMEM, "dynamodb: out of memory");
  job->st = st;
  job->req = req;
  job->start = fn;
  job->then = fn;
  job_step(job);
  return 0;
}

static int ddb_retryable(const kv_http_req_t *hr) {
  if (hr->status >= 500) return 1;
  if (hr->status == 400 && hr->body &&
      (strstr(hr->body, "ThrottlingException") ||
       strstr(hr->body, "ProvisionedThroughputExceededException") ||
       strstr(hr->body, "RequestLimitExceeded")))
    return 1;
  return 0;
}

static const char *const ddb_options[] = {
    "endpoint", "region", "create", "access_key", "secret_key", "session_token",
    "timeout", "max_connections", NULL};

static const char *env2(const char *a, const char *b) {
  const char *v = getenv(a);
  if ((v == NULL || v[0] == '\0') && b) v = getenv(b);
  return v && v[0] ? v : NULL;
}

static int valid_table(const char *t) {
  size_t n = strlen(t);
  if (n < 3 || n > 255) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = t[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_' || c == '.'))
      return 0;
  }
  return 1;
}

static int ddb_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                    size_t errbuf_len) {
  ddb_store_t *st = STORE(s);
  const char *table = url->target ? url->target : "";
  const char *endpoint = kv_url_param(url, "endpoint");
  const char *ak = kv_url_param(url, "access_key");
  const char *sk = kv_url_param(url, "secret_key");
  const char *tok = kv_url_param(url, "session_token");
  const char *region = kv_url_param(url, "region");
  int err;
  int64_t maxconn;
  double timeout;
  kv_http_config_t cfg = {0};
  kv_sbuf_t b = {0};

  if ((err = kv_url_param_bool(url, "create", 0, &st->create, errbuf, errbuf_len)) != 0 ||
      (err = kv_url_param_int(url, "max_connections", 1, 1024, 64, &maxconn, errbuf,
                              errbuf_len)) != 0 ||
      (err = kv_url_param_double(url, "timeout", 0, 86400, 30, &timeout, errbuf,
                                 errbuf_len)) != 0)
    return err;
  if (!valid_table(table))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "invalid table name '%s': expected 3 to 255 of a-z A-Z 0-9 _ - .",
                      table);
  if (region == NULL) region = env2("AWS_REGION", "AWS_DEFAULT_REGION");
  if (region == NULL) region = "us-east-1";
  if (endpoint) {
    size_t el = strlen(endpoint);
    if (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0)
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "dynamodb: endpoint must start with http:// or https://");
    while (el > 0 && endpoint[el - 1] == '/') el--;
    kv__sbuf_add(&b, endpoint, el);
    kv__sbuf_adds(&b, "/");
  } else {
    kv__sbuf_printf(&b, "https://dynamodb.%s.amazonaws.com/", region);
  }
  st->endpoint = b.p;
  st->table = kv_strndup(table, strlen(table));
  if (b.oom || st->table == NULL) goto oom;
  if (ak == NULL && sk == NULL) {
    ak = env2("AWS_ACCESS_KEY_ID", NULL);
    sk = env2("AWS_SECRET_ACCESS_KEY", NULL);
    if (tok == NULL) tok = env2("AWS_SESSION_TOKEN", NULL);
  }
  if ((ak == NULL) != (sk == NULL)) {
    kv_free(st->endpoint);
    kv_free(st->table);
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "dynamodb: access_key and secret_key go together");
  }
  cfg.access_key = ak;
  cfg.secret_key = sk;
  cfg.session_token = tok;
  cfg.region = region;
  cfg.service = "dynamodb";
  cfg.timeout_ms = (uint64_t)(timeout * 1e3 + 0.5);
  cfg.max_connections = (long)maxconn;
  cfg.retryable = ddb_retryable;
  if ((err = kv__http_init(&st->http, s->loop, &cfg, errbuf, errbuf_len)) != 0) {
    kv_free(st->endpoint);
    kv_free(st->table);
    return err;
  }
  return 0;
oom:
  kv_free(st->endpoint);
  kv_free(st->table);
  return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "dynamodb: out of memory");
}

static void ddb_http_closed(void *data) {
  ddb_store_t *st = data;
  kv_free(st->endpoint);
  kv_free(st->table);
  kv_store_closed(&st->base);
}

static void ddb_close(kv_store_t *s) {
  ddb_store_t *st = STORE(s);
  st->closing = 1;
  kv__http_close(st->http, ddb_http_closed, st);
}

const kv_store_methods_t kv__dynamodb_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "dynamodb",
    .store_size = sizeof(ddb_store_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT | KV_CAP_SHARED,
    .options = ddb_options,
    .open = ddb_open,
    .close = ddb_close,
    .get = ddb_submit,
    .ttl = ddb_submit,
    .put = ddb_submit,
    .del = ddb_submit,
    .get_many = ddb_submit,
    .ttl_many = ddb_submit,
    .put_many = ddb_submit,
    .delete_many = ddb_submit,
    .keys = ddb_submit,
    .collections = ddb_submit,
    .destroy = ddb_submit,
    .destroy_collection = ddb_submit,
    .cull = ddb_submit,
    .put_if_absent = ddb_submit,
    .cas = ddb_submit,
    .incr = ddb_submit,
    .take = ddb_submit,
};

/* For the fuzz target (tests/fuzz/fuzz-dynamodb-answer.c): run a DynamoDB
 * answer through every decoder a response meets — the error fields, the
 * items of GetItem / DeleteItem / Query / Scan / BatchGetItem (liveness,
 * value, TTL, names), UnprocessedKeys / UnprocessedItems, LastEvaluatedKey
 * turned into a cursor and back. Returns how many live values decoded. */
int kv__ddb_fuzz_answer(const char *data, size_t len, int64_t now);
int kv__ddb_fuzz_answer(const char *data, size_t len, int64_t now) {
  json_error_t jerr;
  json_t *doc = json_loadb(data, len, 0, &jerr);
  int live = 0;
  if (doc == NULL) return 0;
  (void)short_type(json_string_value(json_object_get(doc, "__type")));
  json_t *lists[4] = {json_object_get(doc, "Items"),
                      json_object_get(json_object_get(doc, "Responses"), "t"),
                      json_pack("[O?]", json_object_get(doc, "Item")),
                      json_pack("[O?]", json_object_get(doc, "Attributes"))};
  for (int l = 0; l < 4; l++) {
    size_t i;
    json_t *item;
    json_array_foreach(lists[l], i, item) {
      char *v = NULL;
      size_t vl;
      if (item_live(item, now) && item_value(item, &v, &vl) == 0) {
        if (v[vl] != '\0') abort(); /* values are NUL-terminated */
        live++;
        kv_free(v);
      }
      (void)item_ttl(item, now);
      (void)item_name(item, "k", "kn");
      (void)item_name(item, "c", "cn");
      (void)key_k(item);
    }
  }
  json_decref(lists[2]);
  json_decref(lists[3]);
  json_t *lek = json_object_get(doc, "LastEvaluatedKey");
  if (lek) {
    char *text = json_dumps(lek, JSON_COMPACT);
    json_t *back = text ? cursor_json(text) : NULL;
    if (text && (back == NULL || !json_equal(back, lek))) abort();
    json_decref(back);
    free(text);
  }
  json_decref(doc);
  return live;
}
