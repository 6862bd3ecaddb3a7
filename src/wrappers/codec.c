/* The value-codec engine (wrappers/codec.h): what the encryption and
 * compression wrappers share. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wrappers/codec.h"
#include "wrappers/wrappers.h"

/* ===========================================================================
 * The value-codec engine
 * ===========================================================================
 */

#define CW(w) ((kv__codec_wrap_t *)(w))

/* State of the read-modify-write loops (cas, incr) and of put_many. */
typedef struct {
  char *raw; /* the stored bytes read, expected by the inner cas */
  size_t raw_len;
  char *enc; /* the encoded new value */
  size_t enc_len;
  int64_t number; /* incr: the new value */
  int tries;
  kv_buf_t *values; /* put_many: the encoded values */
  size_t nvalues;
  /* read-modify-write queueing (see rmw_enter) */
  int rmw;                /* registered as the running op of its key */
  kv_wrap_req_t *chain;   /* next running op in the same bucket */
  kv_wrap_req_t *waiters; /* ops on the same key, first to run first */
  kv_wrap_req_t *waiters_tail;
  kv_wrap_req_t *next_waiter;
  void (*start)(kv_wrap_req_t *wr); /* how a waiting op starts */
} loop_t;

#define LOOP(wr) ((loop_t *)kv_wrap_req_extra(wr))

/* ---- Read-modify-write ops, one at a time per key ------------------------ */

static size_t rmw_bucket(const kv_wrap_req_t *wr) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over collection NUL key */
  for (const char *p = wr->in.collection; *p; p++)
    h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
  h *= 0x100000001b3ull;
  for (const char *p = wr->in.key; *p; p++)
    h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
  return (size_t)(h ^ (h >> 32)) % KV__CODEC_RMW_BUCKETS;
}

/* Register wr as the running op of its key, or queue it behind the one
 * running (then `start` runs it later). Returns 1 when queued. */
static int rmw_enter(kv_wrap_req_t *wr, void (*start)(kv_wrap_req_t *wr)) {
  kv_wrap_req_t **head = &CW(wr->w)->rmw[rmw_bucket(wr)];
  loop_t *l = LOOP(wr);
  for (kv_wrap_req_t *a = *head; a != NULL; a = LOOP(a)->chain) {
    loop_t *al = LOOP(a);
    if (strcmp(a->in.key, wr->in.key) != 0 ||
        strcmp(a->in.collection, wr->in.collection) != 0)
      continue;
    l->start = start;
    if (al->waiters_tail)
      LOOP(al->waiters_tail)->next_waiter = wr;
    else
      al->waiters = wr;
    al->waiters_tail = wr;
    return 1;
  }
  l->rmw = 1;
  l->chain = *head;
  *head = wr;
  return 0;
}

/* wr is done: unregister it and start the first op waiting on its key. */
static void rmw_leave(kv_wrap_req_t *wr) {
  loop_t *l = LOOP(wr), *nl;
  kv_wrap_req_t **pp, *next;
  if (!l->rmw) return;
  l->rmw = 0;
  for (pp = &CW(wr->w)->rmw[rmw_bucket(wr)]; *pp != wr; pp = &LOOP(*pp)->chain)
    ;
  *pp = l->chain;
  if ((next = l->waiters) == NULL) return;
  nl = LOOP(next);
  nl->waiters = nl->next_waiter;
  nl->waiters_tail = nl->waiters ? l->waiters_tail : NULL;
  nl->next_waiter = NULL;
  l->waiters = l->waiters_tail = NULL;
  nl->rmw = 1;
  nl->chain = CW(wr->w)->rmw[rmw_bucket(next)];
  CW(wr->w)->rmw[rmw_bucket(next)] = next;
  nl->start(next); /* on failure it completes, and leaves in turn */
}

static void loop_release(kv_wrap_req_t *wr) {
  loop_t *l = LOOP(wr);
  rmw_leave(wr);
  kv_free(l->raw);
  kv_free(l->enc);
  for (size_t i = 0; i < l->nvalues; i++)
    kv_free(l->values[i].base);
  kv_free(l->values);
  memset(l, 0, sizeof *l);
}

static int nomem(kv_req_t *req) {
  return kv_req_set_error(req, KV_ENOMEM, "out of memory");
}

/* Put the codec's failure on `req`, naming the key; returns rc. */
static int codec_error(kv_wrap_t *w, kv_req_t *req, const char *key, int rc,
                       const char *err) {
  return kv_req_set_error(req, rc,
                          "%s wrapper, key '%s' in collection '%s': %s",
                          w->base.methods->name, key, req->in.collection,
                          err[0] ? err : kv_strerror(rc));
}

/* Run the codec; on failure put a detail naming the key on `req`. */
static int run(kv_wrap_t *w, kv__codec_fn fn, kv_req_t *req, const char *key,
               const char *in, size_t len, char **out, size_t *out_len) {
  char err[512] = "";
  int rc = fn(w, in, len, out, out_len, err, sizeof err);
  return rc != 0 ? codec_error(w, req, key, rc, err) : 0;
}

/* Complete the outer request with `status` (a failure's detail already
 * set) and free everything. */
static void end(kv_wrap_req_t *wr, int status) {
  loop_release(wr);
  kv_wrap_complete(wr, status);
  kv_wrap_req_free(wr);
}

/* A submit from a callback failed: the detail is on the inner request. */
static void fail_submit(kv_wrap_req_t *wr, int err) {
  if (wr->outer)
    kv_req_set_error(wr->outer, err, "%s", kv_req_errmsg(&wr->inner));
  end(wr, err);
}

/* Decode one stored value in place. Returns 0 (the value is replaced, or
 * dropped with *found = 0 for an undecodable value read as missing) or the
 * error (detail on the outer request). */
static int decode_slot(kv_wrap_req_t *wr, const char *key, kv_buf_t *v,
                       int *found, double *ttl) {
  kv__codec_wrap_t *cw = CW(wr->w);
  char *out, err[512] = "";
  size_t n;
  int rc = cw->codec->decode(wr->w, v->base, v->len, &out, &n, err, sizeof err);
  if (rc != 0 && cw->missing_on_error && rc == cw->missing_error) {
    kv_free(v->base);
    v->base = NULL;
    v->len = 0;
    *found = 0;
    if (ttl) *ttl = KV_TTL_NONE;
    return 0;
  }
  if (rc != 0) return codec_error(wr->w, wr->outer, key, rc, err);
  kv_free(v->base);
  v->base = out;
  v->len = n;
  return 0;
}

/* get, ttl, take: decode the value, then hand the results over. */
static void on_value(kv_wrap_req_t *wr) {
  kv_req_t *in = &wr->inner;
  if (wr->outer && in->status == 0 && in->found) {
    int rc = decode_slot(wr, wr->in.key, &in->value, &in->found, &in->ttl);
    if (rc != 0) return end(wr, rc);
  }
  kv_wrap_finish(wr);
}

/* get_many, ttl_many: decode every slot found. */
static void on_values(kv_wrap_req_t *wr) {
  kv_req_t *in = &wr->inner;
  if (wr->outer && in->status == 0) {
    for (size_t i = 0; i < in->nresults; i++) {
      kv_result_t *r = &in->results[i];
      int rc;
      if (!r->found) continue;
      rc = decode_slot(wr, wr->in.keys[i].base, &r->value, &r->found, &r->ttl);
      if (rc != 0) return end(wr, rc);
    }
  }
  kv_wrap_finish(wr);
}

static void on_done(kv_wrap_req_t *wr) {
  loop_release(wr);
  kv_wrap_finish(wr);
}

static int submit(kv_wrap_req_t *wr, kv_wrap_cb cb) {
  int err = kv_wrap_submit(wr, wr->w->inner, cb);
  if (err < 0) {
    loop_release(wr);
    return kv_wrap_refuse(wr, err);
  }
  return 0;
}

static int codec_read(kv_store_t *s, kv_req_t *req) {
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, sizeof(loop_t));
  if (wr == NULL) return nomem(req);
  return submit(wr, req->op == KV_OP_GET_MANY || req->op == KV_OP_TTL_MANY
                        ? on_values
                        : on_value);
}

/* put, put_if_absent: encode, then forward. */
static int codec_write(kv_store_t *s, kv_req_t *req) {
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, sizeof(loop_t));
  loop_t *l;
  int rc;
  if (wr == NULL) return nomem(req);
  l = LOOP(wr);
  rc = run(wr->w, CW(s)->codec->encode, req, req->in.key, req->in.value.base,
           req->in.value.len, &l->enc, &l->enc_len);
  if (rc != 0) {
    kv_wrap_req_free(wr);
    return rc;
  }
  wr->in.value.base = (char *)l->enc;
  wr->in.value.len = l->enc_len;
  return submit(wr, on_done);
}

static int codec_put_many(kv_store_t *s, kv_req_t *req) {
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, sizeof(loop_t));
  loop_t *l;
  if (wr == NULL) return nomem(req);
  l = LOOP(wr);
  if (req->in.n > 0 &&
      (l->values = kv_calloc(req->in.n, sizeof *l->values)) == NULL) {
    kv_wrap_req_free(wr);
    return nomem(req);
  }
  for (size_t i = 0; i < req->in.n; i++) {
    int rc = run(wr->w, CW(s)->codec->encode, req, req->in.keys[i].base,
                 req->in.values[i].base, req->in.values[i].len,
                 &l->values[i].base, &l->values[i].len);
    l->nvalues = i + 1;
    if (rc != 0) { /* nothing is written */
      loop_release(wr);
      kv_wrap_req_free(wr);
      return rc;
    }
  }
  wr->in.values = l->values;
  return submit(wr, on_done);
}

/* ---- cas: read, compare decoded, inner cas on the stored bytes ---------- */

static void cas_read(kv_wrap_req_t *wr);

static void conflict(kv_wrap_req_t *wr) {
  kv_req_set_error(wr->outer, KV_ECONFLICT,
                   "key '%s' does not hold the expected value", wr->in.key);
  end(wr, KV_ECONFLICT);
}

static void on_cas_done(kv_wrap_req_t *wr) {
  loop_t *l = LOOP(wr);
  kv_free(l->raw);
  l->raw = NULL;
  if (wr->inner.status == KV_ECONFLICT && wr->outer &&
      !wr->outer->in.expected_absent && ++l->tries < KV__CODEC_MAX_TRIES)
    return cas_read(wr); /* written meanwhile: compare again */
  on_done(wr);
}

static void on_cas_read(kv_wrap_req_t *wr) {
  kv_req_t *in = &wr->inner, *outer = wr->outer;
  loop_t *l = LOOP(wr);
  char *dec;
  size_t n;
  int rc, equal;
  if (outer == NULL || in->status != 0) return on_done(wr);
  if (!in->found) return conflict(wr);
  rc = run(wr->w, CW(wr->w)->codec->decode, outer, wr->in.key, in->value.base,
           in->value.len, &dec, &n);
  if (rc != 0) {
    if (CW(wr->w)->missing_on_error && rc == CW(wr->w)->missing_error)
      return conflict(wr); /* reads as missing: not the expected value */
    return end(wr, rc);
  }
  equal = n == outer->in.expected.len &&
          (n == 0 || memcmp(dec, outer->in.expected.base, n) == 0);
  kv_free(dec);
  if (!equal) return conflict(wr);
  l->raw = kv_req_take_value(in, &l->raw_len);
  wr->op = KV_OP_CAS;
  wr->in.expected.base = (char *)l->raw;
  wr->in.expected_absent = l->raw == NULL;
  wr->in.expected.len = l->raw_len;
  wr->in.value.base = (char *)l->enc;
  wr->in.value.len = l->enc_len;
  if ((rc = kv_wrap_submit(wr, wr->w->inner, on_cas_done)) < 0)
    fail_submit(wr, rc);
}

static void cas_read(kv_wrap_req_t *wr) {
  int rc;
  wr->op = KV_OP_GET;
  if ((rc = kv_wrap_submit(wr, wr->w->inner, on_cas_read)) < 0)
    fail_submit(wr, rc);
}

static int codec_cas(kv_store_t *s, kv_req_t *req) {
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, sizeof(loop_t));
  loop_t *l;
  int rc;
  if (wr == NULL) return nomem(req);
  l = LOOP(wr);
  rc = run(wr->w, CW(s)->codec->encode, req, req->in.key, req->in.value.base,
           req->in.value.len, &l->enc, &l->enc_len);
  if (rc != 0) {
    kv_wrap_req_free(wr);
    return rc;
  }
  wr->in.value.base = (char *)l->enc;
  wr->in.value.len = l->enc_len;
  if (req->in.expected_absent) return submit(wr, on_cas_done);
  wr->op = KV_OP_GET;
  if (rmw_enter(wr, cas_read)) return 0; /* runs after the one running */
  return submit(wr, on_cas_read);
}

/* ---- incr: read (with the TTL), add, inner cas on the stored bytes ----- */

static void incr_read(kv_wrap_req_t *wr);

static void on_incr_done(kv_wrap_req_t *wr) {
  loop_t *l = LOOP(wr);
  kv_free(l->raw);
  kv_free(l->enc);
  l->raw = l->enc = NULL;
  if (wr->outer == NULL) return on_done(wr);
  if (wr->inner.status == KV_ECONFLICT) {
    if (++l->tries < KV__CODEC_MAX_TRIES) return incr_read(wr);
    kv_req_set_error(wr->outer, KV_EBUSY,
                     "incr of key '%s' gave up after %d concurrent writes",
                     wr->in.key, l->tries);
    return end(wr, KV_EBUSY);
  }
  if (wr->inner.status != 0) return on_done(wr);
  wr->outer->number = l->number;
  end(wr, 0);
}

static void on_incr_read(kv_wrap_req_t *wr) {
  kv_req_t *in = &wr->inner, *outer = wr->outer;
  loop_t *l = LOOP(wr);
  int64_t cur = 0, delta;
  double ttl;
  char text[24];
  size_t n;
  int rc;
  if (outer == NULL || in->status != 0) return on_done(wr);
  delta = outer->in.delta;
  ttl = outer->in.ttl;
  if (in->found) {
    char *dec;
    rc = run(wr->w, CW(wr->w)->codec->decode, outer, wr->in.key, in->value.base,
             in->value.len, &dec, &n);
    if (rc != 0) return end(wr, rc);
    rc = kv_parse_int64(dec, n, &cur);
    kv_free(dec);
    if (rc != 0) {
      kv_req_set_error(outer, KV_EINVAL,
                       "value of key '%s' is not a decimal integer",
                       wr->in.key);
      return end(wr, KV_EINVAL);
    }
    ttl = in->ttl; /* an existing entry keeps its (remaining) TTL */
    l->raw = kv_req_take_value(in, &l->raw_len);
  }
  if ((delta > 0 && cur > INT64_MAX - delta) ||
      (delta < 0 && cur < INT64_MIN - delta)) {
    kv_req_set_error(outer, KV_EINVAL, "incr of key '%s' overflows",
                     wr->in.key);
    return end(wr, KV_EINVAL);
  }
  l->number = cur + delta;
  n = kv_format_int64(l->number, text);
  rc = run(wr->w, CW(wr->w)->codec->encode, outer, wr->in.key, text, n, &l->enc,
           &l->enc_len);
  if (rc != 0) return end(wr, rc);
  wr->op = KV_OP_CAS;
  wr->in.expected.base = (char *)l->raw;
  wr->in.expected_absent = l->raw == NULL; /* NULL: expect absent */
  wr->in.expected.len = l->raw_len;
  wr->in.value.base = (char *)l->enc;
  wr->in.value.len = l->enc_len;
  wr->in.ttl = ttl;
  if ((rc = kv_wrap_submit(wr, wr->w->inner, on_incr_done)) < 0)
    fail_submit(wr, rc);
}

static void incr_read(kv_wrap_req_t *wr) {
  int rc;
  loop_t *l = LOOP(wr);
  l->raw_len = 0;
  wr->op = KV_OP_TTL;
  if ((rc = kv_wrap_submit(wr, wr->w->inner, on_incr_read)) < 0)
    fail_submit(wr, rc);
}

static int codec_incr(kv_store_t *s, kv_req_t *req) {
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, sizeof(loop_t));
  if (wr == NULL) return nomem(req);
  wr->op = KV_OP_TTL;
  if (rmw_enter(wr, incr_read)) return 0; /* runs after the one running */
  return submit(wr, on_incr_read);
}

void kv__codec_methods_init(kv_store_methods_t *m, const char *name,
                            size_t store_size) {
  kv_wrap_methods_init(m, name, store_size);
  m->get = m->ttl = m->take = codec_read;
  m->get_many = m->ttl_many = codec_read;
  m->put = m->put_if_absent = codec_write;
  m->put_many = codec_put_many;
  m->cas = codec_cas;
  m->incr = codec_incr;
}
