/* prefix-keys, prefix-collections and single-collection: wrappers that
 * rename on the way in and un-rename on the way out.
 *
 * Names are mapped injectively, so no two user names share an inner name:
 *
 *   prefix-keys         key K        -> P + esc(K)
 *   prefix-collections  collection C -> P + esc(C)
 *   single-collection   (C, K)       -> "<len(C)>:" + C + K   in collection B
 *
 * esc(N) is N, or "~" + N when N starts with '~'. When the result would be
 * longer than KV_NAME_MAX it is replaced by its hashed form, P + "~#" +
 * hex(SHA-256(N)) ("~#" + hex(...) for single-collection), and the original
 * is kept in a side entry under "~!" + hex (prefix-keys: key P~!hex in the
 * same collection; prefix-collections: collection P~!, key hex;
 * single-collection: key ~!hex in B). Verbatim forms never begin with "~#"
 * or "~!" after the prefix, so the three kinds of names never meet.
 * Enumeration lists only names of this wrapper, decoded; side entries are
 * written before a write that needs them and removed after a delete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wrappers/wrappers.h"

/* An operation's arguments as the public submit functions take them (keys
 * as C strings): what this file renames. */
typedef struct {
  kv_op_t op;
  const char *collection;
  const char *key;
  const void *value;
  size_t value_len;
  const void *expected; /* cas: NULL means "expect absent" */
  size_t expected_len;
  double ttl;
  int64_t delta;
  const char *const *keys;
  const kv_buf_t *values;
  size_t n;
  const char *cursor;
  size_t limit;
} ren_args_t;

#define HEXLEN 64
#define SCAN_PAGE 1000

typedef enum { K_KEYS, K_COLLS, K_SINGLE } kind_t;

typedef struct {
  kv_wrap_t w;
  kind_t kind;
  char *p; /* the prefix, or single-collection's collection B */
  size_t pl;
  char *side_coll; /* prefix-collections: P + "~!" */
} ren_t;

/* ---- Owned string vectors -------------------------------------------------
 */

typedef struct {
  kv_buf_t *v;
  size_t n, cap;
} vec_t;

static int vec_push(vec_t *v, const char *s, size_t n) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 16;
    kv_buf_t *p = kv_realloc(v->v, cap * sizeof *p);
    if (p == NULL) return KV_ENOMEM;
    v->v = p;
    v->cap = cap;
  }
  v->v[v->n].base = kv_strndup(s, n);
  if (v->v[v->n].base == NULL) return KV_ENOMEM;
  v->v[v->n++].len = n;
  return 0;
}

static void vec_clear(vec_t *v) {
  for (size_t i = 0; i < v->n; i++)
    kv_free(v->v[i].base);
  v->n = 0;
}

static void vec_free(vec_t *v) {
  vec_clear(v);
  kv_free(v->v);
  memset(v, 0, sizeof *v);
}

static int vec_has(const vec_t *v, const char *s, size_t n) {
  for (size_t i = 0; i < v->n; i++)
    if (v->v[i].len == n && memcmp(v->v[i].base, s, n) == 0) return 1;
  return 0;
}

/* An array of the strings' pointers (kv_malloc'ed). */
static const char **vec_ptrs(const vec_t *v, size_t from, size_t n) {
  const char **p = kv_malloc((n ? n : 1) * sizeof *p);
  if (p == NULL) return NULL;
  for (size_t i = 0; i < n; i++)
    p[i] = v->v[from + i].base;
  return p;
}

/* ---- The codec ---------------------------------------------------------- */

static void sha_hex(const char *s, size_t n, char out[HEXLEN + 1]) {
  unsigned char md[KV__SHA256_LEN];
  kv__sha256(s, n, md);
  kv__hex_encode(md, KV__SHA256_LEN, out);
}

/* An encoded name: the inner name and, when hashed, the side entry. */
typedef struct {
  char *name; /* kv_malloc'ed */
  size_t len;
  int hashed;
  char *side_key;   /* kv_malloc'ed when hashed */
  char *side_value; /* points at the original (user name or SC body) */
  size_t side_len;
  char *body; /* single-collection: the body, kv_malloc'ed */
} enc_t;

static void enc_free(enc_t *e) {
  kv_free(e->name);
  kv_free(e->side_key);
  kv_free(e->body);
  memset(e, 0, sizeof *e);
}

static char *cat3(const char *a, size_t al, const char *b, size_t bl,
                  const char *c, size_t cl, size_t *len) {
  char *p = kv_malloc(al + bl + cl + 1);
  if (p == NULL) return NULL;
  memcpy(p, a, al);
  memcpy(p + al, b, bl);
  memcpy(p + al + bl, c, cl);
  p[al + bl + cl] = '\0';
  if (len) *len = al + bl + cl;
  return p;
}

/* Encode `body` under prefix p. `escape` for user names (a leading '~'). */
static int encode(const char *p, size_t pl, const char *body, size_t bl,
                  int escape, enc_t *e) {
  int esc = escape && bl > 0 && body[0] == '~';
  memset(e, 0, sizeof *e);
  if (pl + (size_t)esc + bl <= KV_NAME_MAX) {
    e->name = cat3(p, pl, "~", (size_t)esc, body, bl, &e->len);
    return e->name ? 0 : KV_ENOMEM;
  }
  {
    char hex[HEXLEN + 1];
    sha_hex(body, bl, hex);
    e->hashed = 1;
    e->name = cat3(p, pl, "~#", 2, hex, HEXLEN, &e->len);
    e->side_key = cat3(p, pl, "~!", 2, hex, HEXLEN, NULL);
    e->side_value = (char *)body;
    e->side_len = bl;
    if (e->name == NULL || e->side_key == NULL) {
      enc_free(e);
      return KV_ENOMEM;
    }
  }
  return 0;
}

/* prefix-collections' side entries live in collection P~! under key hex:
 * the encoded side key minus the prefix and "~!". */
static const char *pc_side_key(const ren_t *r, const enc_t *e) {
  return e->side_key + r->pl + 2;
}

static int encode_key(ren_t *r, const char *c, const char *k, enc_t *e) {
  size_t kl = strlen(k);
  if (r->kind == K_KEYS) return encode(r->p, r->pl, k, kl, 1, e);
  {
    size_t cl = strlen(c);
    char num[24];
    int nn = snprintf(num, sizeof num, "%zu:", cl);
    char *body = kv_malloc((size_t)nn + cl + kl + 1);
    int err;
    if (body == NULL) return KV_ENOMEM;
    memcpy(body, num, (size_t)nn);
    memcpy(body + nn, c, cl);
    memcpy(body + nn + cl, k, kl + 1);
    err = encode("", 0, body, (size_t)nn + cl + kl, 0, e);
    if (err) {
      kv_free(body);
      return err;
    }
    e->body = body;
    return 0;
  }
}

/* Decoding. Returns 1 with the user name, 2 with the hash (64 hex), or 0 for
 * a name that is not this wrapper's. */
static int decode_prefixed(const ren_t *r, const char *s, size_t n,
                           const char **out, size_t *outlen) {
  const char *rest;
  size_t rl;
  if (n <= r->pl || memcmp(s, r->p, r->pl) != 0) return 0;
  rest = s + r->pl;
  rl = n - r->pl;
  if (rest[0] != '~') {
    *out = rest;
    *outlen = rl;
    return 1;
  }
  if (rl >= 2 && rest[1] == '~') {
    *out = rest + 1;
    *outlen = rl - 1;
    return 1;
  }
  if (rl == 2 + HEXLEN && rest[1] == '#') {
    *out = rest + 2;
    *outlen = HEXLEN;
    return 2;
  }
  return 0;
}

/* Parse a single-collection body "<len>:<C><K>". */
static int parse_body(const char *s, size_t n, const char **c, size_t *cl,
                      const char **k, size_t *kl) {
  size_t i = 0, len = 0;
  while (i < n && s[i] >= '0' && s[i] <= '9' && i < 6)
    len = len * 10 + (size_t)(s[i++] - '0');
  if (i == 0 || i >= n || s[i] != ':' || (s[0] == '0' && i > 1)) return 0;
  i++;
  if (len == 0 || n - i <= len) return 0;
  *c = s + i;
  *cl = len;
  *k = s + i + len;
  *kl = n - i - len;
  return 1;
}

static int decode_single(const char *s, size_t n, const char **out,
                         size_t *outlen) {
  if (n == 2 + HEXLEN && s[0] == '~' && s[1] == '#') {
    *out = s + 2;
    *outlen = HEXLEN;
    return 2;
  }
  if (n > 0 && s[0] >= '1' && s[0] <= '9') {
    *out = s;
    *outlen = n;
    return 1;
  }
  return 0;
}

/* ---- Operation contexts ---------------------------------------------------
 *
 * One context per operation (wr->data, freed by ctx_end). Phases: an
 * optional side write before the main op, an optional side delete after
 * it, listings with side lookups, and scans for destroy and
 * single-collection's collections(). */

typedef struct ctx_s ctx_t;
typedef void (*ctx_fn)(ctx_t *c);

struct ctx_s {
  kv_wrap_req_t *wr;
  ren_t *r;
  ctx_fn next; /* what to do when the inner request completes */
  ren_args_t main; /* the operation, renamed */
  ren_args_t args; /* what ctx_submit sends next */
  kv_buf_t *kbuf;  /* args.keys as the inner request takes them */
  const char **okeys; /* the outer keys as C strings */
  int64_t now_ms;
  int saved_status;
  /* renamed names */
  enc_t coll;  /* collection (prefix-collections) */
  enc_t key;   /* key */
  enc_t *keys; /* *_many */
  size_t nkeys;
  const char **kptrs;
  /* side entries */
  const char *side_coll;
  const char **sk;
  kv_buf_t *sv;
  size_t ns;
  /* listings and scans */
  char *user_coll; /* the collection asked for (SC keys) */
  vec_t out;       /* names found */
  vec_t look;      /* side keys to look up */
  const char **lptrs;
  char *cursor; /* the inner cursor of the page */
  int scan;     /* scanning to the end (not one page) */
  vec_t colls;  /* destroy: the collections to clear */
  size_t ci;
  size_t di;
  const char **dptrs;
  int job;
  size_t ulimit; /* the page size asked for */
};

enum { JOB_NONE, JOB_DESTROY_COLL, JOB_DESTROY, JOB_COLLECTIONS };

static void ctx_end(ctx_t *c, int status) {
  kv_wrap_req_t *wr = c->wr;
  enc_free(&c->coll);
  enc_free(&c->key);
  for (size_t i = 0; i < c->nkeys; i++)
    enc_free(&c->keys[i]);
  kv_free(c->keys);
  kv_free(c->kptrs);
  kv_free(c->kbuf);
  kv_free(c->okeys);
  kv_free(c->sk);
  kv_free(c->sv);
  kv_free(c->user_coll);
  vec_free(&c->out);
  vec_free(&c->look);
  vec_free(&c->colls);
  kv_free(c->lptrs);
  kv_free(c->dptrs);
  kv_free(c->cursor);
  kv_free(c);
  wr->data = NULL;
  if (status == 1) { /* the inner results are the answer */
    kv_wrap_finish(wr);
    return;
  }
  if (wr->outer && status < 0 && wr->outer->priv.errmsg == NULL)
    kv_req_set_error(wr->outer, status, "%s", kv_req_errmsg(&wr->inner));
  kv_wrap_complete(wr, status);
  kv_wrap_req_free(wr);
}

static void ctx_cb(kv_wrap_req_t *wr) {
  ctx_t *c = wr->data;
  c->next(c);
}

/* c->args as the interposed request's op and inputs. */
static int set_args(ctx_t *c) {
  const ren_args_t *a = &c->args;
  kv_wrap_req_t *wr = c->wr;
  kv_req_in_t *in = &wr->in;
  wr->op = a->op;
  memset(in, 0, sizeof *in);
  in->collection = a->collection ? a->collection : "";
  in->collection_len = strlen(in->collection);
  in->key = a->key;
  in->key_len = a->key ? strlen(a->key) : 0;
  in->value.base = (char *)a->value;
  in->value.len = a->value_len;
  in->expected.base = (char *)a->expected;
  in->expected.len = a->expected_len;
  in->expected_absent = a->expected == NULL;
  in->ttl = a->ttl;
  in->now_ms = c->now_ms;
  in->delta = a->delta;
  in->values = a->values;
  in->n = a->n;
  in->cursor = a->cursor;
  in->limit = a->limit;
  if (a->n > 0) {
    kv_buf_t *kb = kv_realloc(c->kbuf, a->n * sizeof *kb);
    if (kb == NULL) return KV_ENOMEM;
    c->kbuf = kb;
    for (size_t i = 0; i < a->n; i++) {
      kb[i].base = (char *)a->keys[i];
      kb[i].len = strlen(a->keys[i]);
    }
    in->keys = kb;
  }
  return 0;
}

/* Submit c->args (set by the caller) to the inner store; on a refused
 * submit, end with its error. */
static void ctx_submit(ctx_t *c, ctx_fn next) {
  int err;
  c->next = next;
  if ((err = set_args(c)) != 0) {
    ctx_end(c, err);
    return;
  }
  err = kv_wrap_submit(c->wr, c->r->w.inner, ctx_cb);
  if (err < 0) ctx_end(c, err);
}

static void finish_main(ctx_t *c) {
  ctx_end(c, 1);
}

/* After the main op: keep its results, then delete the side entries. */
static void side_deleted(ctx_t *c) {
  ctx_end(c, c->saved_status);
}

static void main_then_side_delete(ctx_t *c) {
  kv_wrap_req_t *wr = c->wr;
  c->saved_status = wr->inner.status;
  kv_wrap_move_results(wr->outer, &wr->inner);
  if (c->saved_status < 0) {
    ctx_end(c, c->saved_status);
    return;
  }
  memset(&c->args, 0, sizeof c->args);
  c->args.op = KV_OP_DELETE_MANY;
  c->args.collection = c->side_coll;
  c->args.keys = c->sk;
  c->args.n = c->ns;
  ctx_submit(c, side_deleted);
}

static void side_written(ctx_t *c) {
  if (c->wr->inner.status < 0) {
    ctx_end(c, 1);
    return;
  }
  c->args = c->main;
  ctx_submit(c, finish_main);
}

static int is_write(kv_op_t op) {
  return op == KV_OP_PUT || op == KV_OP_PUT_MANY || op == KV_OP_PUT_IF_ABSENT ||
         op == KV_OP_CAS || op == KV_OP_INCR;
}

static int is_delete(kv_op_t op) {
  return op == KV_OP_DELETE || op == KV_OP_DELETE_MANY || op == KV_OP_TAKE;
}

/* Start the main op with its side entries (c->main, c->sk/sv/ns set). */
static void run_main(ctx_t *c) {
  kv_op_t op = c->main.op;
  if (c->ns > 0 && is_write(op)) {
    ren_args_t *a = &c->args;
    memset(a, 0, sizeof *a);
    a->op = KV_OP_PUT_MANY;
    a->collection = c->side_coll;
    a->keys = c->sk;
    a->values = c->sv;
    a->n = c->ns;
    ctx_submit(c, side_written);
  } else if (c->ns > 0 && is_delete(op) && c->r->kind != K_COLLS) {
    c->args = c->main;
    ctx_submit(c, main_then_side_delete);
  } else {
    c->args = c->main;
    ctx_submit(c, finish_main);
  }
}

static ctx_t *ctx_new(kv_store_t *s, kv_req_t *req) {
  ctx_t *c = kv_calloc(1, sizeof *c);
  kv_wrap_req_t *wr;
  if (c == NULL) return NULL;
  wr = kv_wrap_req_new(s, req, 0);
  if (wr == NULL) {
    kv_free(c);
    return NULL;
  }
  c->wr = wr;
  c->r = (ren_t *)s;
  c->now_ms = req->in.now_ms;
  c->main.op = req->op;
  c->main.collection = req->in.collection;
  c->main.key = req->in.key;
  c->main.value = req->in.value.base;
  c->main.value_len = req->in.value.len;
  if (req->op == KV_OP_CAS && !req->in.expected_absent) {
    c->main.expected = req->in.expected.base;
    c->main.expected_len = req->in.expected.len;
  }
  c->main.ttl = req->in.ttl;
  c->main.delta = req->in.delta;
  c->main.values = req->in.values;
  c->main.n = req->in.n;
  c->main.cursor = req->in.cursor;
  c->main.limit = req->in.limit;
  if (req->in.n > 0) {
    c->okeys = kv_malloc(req->in.n * sizeof *c->okeys);
    if (c->okeys == NULL) {
      kv_wrap_req_free(wr);
      kv_free(c);
      return NULL;
    }
    for (size_t i = 0; i < req->in.n; i++)
      c->okeys[i] = req->in.keys[i].base;
    c->main.keys = c->okeys;
  }
  wr->data = c;
  return c;
}

/* A method's failure before anything was submitted. */
static int ctx_refuse(ctx_t *c, int err) {
  kv_wrap_req_t *wr = c->wr;
  kv_req_t *req = wr->outer;
  wr->outer = NULL;
  ctx_end(c, 0); /* frees; the outer is not completed */
  return kv_req_set_error(
      req, err, "%s", err == KV_ENOMEM ? "out of memory" : kv_strerror(err));
}

/* Rename the collection (prefix-collections) or point at B (single). */
static int rename_collection(ctx_t *c) {
  ren_t *r = c->r;
  if (r->kind == K_SINGLE) {
    c->main.collection = r->p;
    c->side_coll = r->p;
  } else if (r->kind == K_COLLS) {
    int err = encode(r->p, r->pl, c->main.collection,
                     strlen(c->main.collection), 1, &c->coll);
    if (err) return err;
    c->main.collection = c->coll.name;
    c->side_coll = r->side_coll;
    if (c->coll.hashed && is_write(c->main.op)) {
      c->sk = kv_malloc(sizeof *c->sk);
      c->sv = kv_malloc(sizeof *c->sv);
      if (c->sk == NULL || c->sv == NULL) return KV_ENOMEM;
      c->sk[0] = pc_side_key(r, &c->coll);
      c->sv[0].base = c->coll.side_value;
      c->sv[0].len = c->coll.side_len;
      c->ns = 1;
    }
  } else {
    c->side_coll = c->main.collection;
  }
  return 0;
}

/* ---- Single-key and bulk ops -------------------------------------------- */

/* The request's own names, kept beside the renamed one while it is down
 * in the inner store (ren_fast). */
typedef struct {
  const char *collection;
  size_t collection_len;
  const char *key;
  size_t key_len;
  char name[];
} fast_t;

/* Completion hook: the request gets its own names back. */
static int fast_hook(kv_store_t *layer, kv_req_t *req, kv_hook_t *h) {
  fast_t *f = h->p;
  (void)layer;
  req->in.collection = f->collection;
  req->in.collection_len = f->collection_len;
  req->in.key = f->key;
  req->in.key_len = f->key_len;
  kv_free(f);
  return 0;
}

/* The common case without a context: a single-key op (or a collection-only
 * op of prefix-collections) whose new name fits, so no side entry. The
 * request itself goes down with the new name. */
static int ren_fast(kv_store_t *s, kv_req_t *req) {
  ren_t *r = (ren_t *)s;
  fast_t *f;
  const char *name = r->kind == K_COLLS ? req->in.collection : req->in.key;
  size_t nl = r->kind == K_COLLS ? req->in.collection_len : req->in.key_len;
  size_t cl = req->in.collection_len, len;
  int esc = r->kind != K_SINGLE && nl > 0 && name[0] == '~';
  char num[24];
  int numl = 0;
  char *p;
  if (r->kind == K_SINGLE) {
    numl = snprintf(num, sizeof num, "%zu:", cl);
    len = (size_t)numl + cl + nl;
  } else {
    len = r->pl + (size_t)esc + nl;
  }
  if (len > KV_NAME_MAX) return 1; /* hashed: the slow path */
  f = kv_malloc(sizeof *f + len + 1);
  if (f == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  f->collection = req->in.collection;
  f->collection_len = req->in.collection_len;
  f->key = req->in.key;
  f->key_len = req->in.key_len;
  p = f->name;
  if (r->kind == K_SINGLE) {
    memcpy(p, num, (size_t)numl);
    memcpy(p + numl, req->in.collection, cl);
    memcpy(p + numl + cl, name, nl);
    req->in.collection = r->p;
    req->in.collection_len = r->pl;
    req->in.key = p;
    req->in.key_len = len;
  } else {
    memcpy(p, r->p, r->pl);
    if (esc) p[r->pl] = '~';
    memcpy(p + r->pl + esc, name, nl);
    if (r->kind == K_COLLS) {
      req->in.collection = p;
      req->in.collection_len = len;
    } else {
      req->in.key = p;
      req->in.key_len = len;
    }
  }
  p[len] = '\0';
  {
    int err = kv_wrap_pass(s, req, fast_hook, 0, f);
    if (err < 0) { /* refused below: the hook will not run */
      kv_hook_t h = {fast_hook, s, 0, f};
      fast_hook(s, req, &h);
    }
    return err;
  }
}

static int ren_single(kv_store_t *s, kv_req_t *req) {
  ctx_t *c;
  int fast = ren_fast(s, req);
  if (fast <= 0) return fast;
  c = ctx_new(s, req);
  const char *ucoll;
  int err;
  if (c == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  ucoll = c->main.collection;
  if ((err = rename_collection(c)) != 0) return ctx_refuse(c, err);
  if (c->r->kind != K_COLLS && c->main.key != NULL) {
    if ((err = encode_key(c->r, ucoll, c->main.key, &c->key)) != 0)
      return ctx_refuse(c, err);
    c->main.key = c->key.name;
    if (c->key.hashed) {
      c->sk = kv_malloc(sizeof *c->sk);
      c->sv = kv_malloc(sizeof *c->sv);
      if (c->sk == NULL || c->sv == NULL) return ctx_refuse(c, KV_ENOMEM);
      c->sk[0] = c->key.side_key;
      c->sv[0].base = c->key.side_value;
      c->sv[0].len = c->key.side_len;
      c->ns = 1;
    }
  }
  run_main(c);
  return 0;
}

static int ren_many(kv_store_t *s, kv_req_t *req) {
  ctx_t *c = ctx_new(s, req);
  const char *ucoll;
  size_t n;
  int err;
  if (c == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  ucoll = c->main.collection;
  n = c->main.n;
  if ((err = rename_collection(c)) != 0) return ctx_refuse(c, err);
  if (c->r->kind != K_COLLS && n > 0) {
    c->keys = kv_calloc(n, sizeof *c->keys);
    c->kptrs = kv_malloc(n * sizeof *c->kptrs);
    c->sk = kv_malloc(n * sizeof *c->sk);
    c->sv = kv_malloc(n * sizeof *c->sv);
    if (!c->keys || !c->kptrs || !c->sk || !c->sv)
      return ctx_refuse(c, KV_ENOMEM);
    c->nkeys = n;
    c->ns = 0;
    for (size_t i = 0; i < n; i++) {
      enc_t *e = &c->keys[i];
      if ((err = encode_key(c->r, ucoll, c->main.keys[i], e)) != 0)
        return ctx_refuse(c, err);
      c->kptrs[i] = e->name;
      if (e->hashed) {
        c->sk[c->ns] = e->side_key;
        c->sv[c->ns].base = e->side_value;
        c->sv[c->ns++].len = e->side_len;
      }
    }
    c->main.keys = c->kptrs;
  }
  run_main(c);
  return 0;
}

/* ---- Listings -------------------------------------------------------------
 *
 * One page of the inner listing is decoded into c->out; hashed names are
 * looked up in their side entries (one get_many), then the page is
 * answered (or, when scanning, the next page is read). */

static void page_done(ctx_t *c);
static void list_next(ctx_t *c);

/* Add a decoded user name found on the page (single-collection: a body,
 * filtered by collection or collected by collection). */
static int take_name(ctx_t *c, const char *s, size_t n, int body) {
  const char *cc, *k;
  size_t cl, kl;
  if (!body) return vec_push(&c->out, s, n);
  if (!parse_body(s, n, &cc, &cl, &k, &kl)) return 0;
  if (c->job == JOB_COLLECTIONS)
    return vec_has(&c->out, cc, cl) ? 0 : vec_push(&c->out, cc, cl);
  if (strlen(c->user_coll) != cl || memcmp(c->user_coll, cc, cl) != 0) return 0;
  if (c->job == JOB_DESTROY_COLL) {
    /* the inner name to delete is re-encoded from the body */
    enc_t e;
    int err = encode("", 0, s, n, 0, &e);
    if (err) return err;
    err = vec_push(&c->out, e.name, e.len);
    if (!err && e.hashed)
      err = vec_push(&c->out, e.side_key, strlen(e.side_key));
    enc_free(&e);
    return err;
  }
  return vec_push(&c->out, k, kl);
}

static void looked_up(ctx_t *c) {
  kv_req_t *in = &c->wr->inner;
  if (in->status < 0) {
    ctx_end(c, in->status);
    return;
  }
  for (size_t i = 0; i < in->nresults; i++) {
    kv_result_t *res = &in->results[i];
    int err;
    if (!res->found) continue; /* side entry lost: the name stays hidden */
    err = take_name(c, res->value.base, res->value.len, c->r->kind == K_SINGLE);
    if (err) {
      ctx_end(c, err);
      return;
    }
  }
  vec_clear(&c->look);
  page_done(c);
}

static void page_read(ctx_t *c) {
  kv_req_t *in = &c->wr->inner;
  ren_t *r = c->r;
  int err = 0;
  if (in->status < 0) {
    ctx_end(c, in->status);
    return;
  }
  kv_free(c->cursor);
  c->cursor = in->cursor;
  in->cursor = NULL;
  for (size_t i = 0; i < in->nnames && !err; i++) {
    const char *s = in->names[i].base, *name;
    size_t n = in->names[i].len, nl;
    int kind;
    if (c->job == JOB_DESTROY_COLL && r->kind == K_KEYS) {
      /* everything of ours goes, side entries included */
      if (decode_prefixed(r, s, n, &name, &nl) != 0 ||
          (n == r->pl + 2 + HEXLEN && memcmp(s, r->p, r->pl) == 0 &&
           s[r->pl] == '~' && s[r->pl + 1] == '!'))
        err = vec_push(&c->out, s, n);
      continue;
    }
    if (c->job == JOB_DESTROY && r->kind == K_COLLS) {
      if (decode_prefixed(r, s, n, &name, &nl) != 0 ||
          strcmp(s, r->side_coll) == 0)
        err = vec_push(&c->colls, s, n);
      continue;
    }
    if (c->job == JOB_DESTROY && r->kind == K_KEYS) {
      err = vec_push(&c->colls, s, n);
      continue;
    }
    kind = r->kind == K_SINGLE ? decode_single(s, n, &name, &nl)
                               : decode_prefixed(r, s, n, &name, &nl);
    if (kind == 1) {
      err = take_name(c, name, nl, r->kind == K_SINGLE);
    } else if (kind == 2) {
      char side[2 + HEXLEN + 1];
      if (r->kind == K_SINGLE) {
        memcpy(side, "~!", 2);
        memcpy(side + 2, name, HEXLEN);
        side[2 + HEXLEN] = '\0';
        err = vec_push(&c->look, side, 2 + HEXLEN);
      } else if (r->kind == K_COLLS) {
        err = vec_push(&c->look, name, HEXLEN);
      } else {
        char *sk = cat3(r->p, r->pl, "~!", 2, name, HEXLEN, NULL);
        err = sk ? vec_push(&c->look, sk, strlen(sk)) : KV_ENOMEM;
        kv_free(sk);
      }
    }
  }
  if (err) {
    ctx_end(c, err);
    return;
  }
  if (c->look.n > 0) {
    ren_args_t *a = &c->args;
    kv_free(c->lptrs);
    c->lptrs = vec_ptrs(&c->look, 0, c->look.n);
    if (c->lptrs == NULL) {
      ctx_end(c, KV_ENOMEM);
      return;
    }
    memset(a, 0, sizeof *a);
    a->op = KV_OP_GET_MANY;
    a->collection = r->kind == K_COLLS    ? r->side_coll
                    : r->kind == K_SINGLE ? r->p
                                          : c->main.collection;
    a->keys = c->lptrs;
    a->n = c->look.n;
    ctx_submit(c, looked_up);
    return;
  }
  page_done(c);
}

/* Read one page of the inner listing (c->main: op, collection, limit;
 * c->cursor). */
static void list_next(ctx_t *c) {
  ren_args_t *a = &c->args;
  *a = c->main;
  a->cursor = c->cursor;
  ctx_submit(c, page_read);
}

/* Answer a listing page (not scanning). */
static void answer_page(ctx_t *c) {
  kv_req_t *outer = c->wr->outer;
  for (size_t i = 0; i < c->out.n; i++) {
    if (kv_req_add_name(outer, c->out.v[i].base, c->out.v[i].len) != 0) {
      ctx_end(c, KV_ENOMEM);
      return;
    }
  }
  outer->cursor = c->cursor;
  c->cursor = NULL;
  ctx_end(c, 0);
}

static int name_cmp(const void *pa, const void *pb) {
  const kv_buf_t *a = pa, *b = pb;
  int x = memcmp(a->base, b->base, a->len < b->len ? a->len : b->len);
  if (x) return x;
  return a->len < b->len ? -1 : a->len > b->len;
}

/* single-collection collections(): every collection found, sorted; the
 * page is the names after the cursor (the last name of the page before). */
static void answer_collections(ctx_t *c) {
  kv_req_t *outer = c->wr->outer;
  size_t limit = c->ulimit, added = 0, i = 0;
  if (c->out.n > 1) qsort(c->out.v, c->out.n, sizeof *c->out.v, name_cmp);
  if (c->user_coll != NULL) {
    kv_buf_t cur = {c->user_coll, strlen(c->user_coll)};
    while (i < c->out.n && name_cmp(&c->out.v[i], &cur) <= 0)
      i++;
  }
  for (; i < c->out.n && added < limit; i++, added++) {
    if (kv_req_add_name(outer, c->out.v[i].base, c->out.v[i].len) != 0) {
      ctx_end(c, KV_ENOMEM);
      return;
    }
  }
  if (i < c->out.n && kv_req_set_cursor(outer, c->out.v[i - 1].base) != 0) {
    ctx_end(c, KV_ENOMEM);
    return;
  }
  ctx_end(c, 0);
}

static void delete_next(ctx_t *c);
static void destroy_next_collection(ctx_t *c);

static void page_done(ctx_t *c) {
  if (!c->scan) {
    /* A filtered page may be empty: only the final page may be. */
    if (c->out.n == 0 && c->cursor != NULL) {
      list_next(c);
      return;
    }
    answer_page(c);
    return;
  }
  if (c->cursor != NULL) {
    list_next(c);
    return;
  }
  /* Scan complete. */
  switch (c->job) {
  case JOB_COLLECTIONS:
    answer_collections(c);
    break;
  case JOB_DESTROY_COLL:
    c->di = 0;
    delete_next(c);
    break;
  case JOB_DESTROY:
    c->ci = 0;
    destroy_next_collection(c);
    break;
  default:
    ctx_end(c, 0);
  }
}

static void deleted(ctx_t *c) {
  if (c->wr->inner.status < 0) {
    ctx_end(c, c->wr->inner.status);
    return;
  }
  delete_next(c);
}

/* Delete the collected inner names in chunks; then the next collection of
 * a destroy, or the end. */
static void delete_next(ctx_t *c) {
  ren_args_t *a = &c->args;
  size_t n = c->out.n - c->di;
  if (n == 0) {
    if (c->colls.n > 0) {
      c->ci++;
      destroy_next_collection(c);
    } else {
      ctx_end(c, 0);
    }
    return;
  }
  if (n > SCAN_PAGE) n = SCAN_PAGE;
  kv_free(c->dptrs);
  c->dptrs = vec_ptrs(&c->out, c->di, n);
  if (c->dptrs == NULL) {
    ctx_end(c, KV_ENOMEM);
    return;
  }
  memset(a, 0, sizeof *a);
  a->op = KV_OP_DELETE_MANY;
  a->collection = c->main.collection;
  a->keys = c->dptrs;
  a->n = n;
  c->di += n;
  ctx_submit(c, deleted);
}

static void collection_destroyed(ctx_t *c) {
  if (c->wr->inner.status < 0) {
    ctx_end(c, c->wr->inner.status);
    return;
  }
  c->ci++;
  destroy_next_collection(c);
}

/* destroy(): prefix-collections destroys each of its inner collections;
 * prefix-keys clears its keys from each collection. */
static void destroy_next_collection(ctx_t *c) {
  ren_args_t *a = &c->args;
  if (c->ci >= c->colls.n) {
    ctx_end(c, 0);
    return;
  }
  memset(a, 0, sizeof *a);
  if (c->r->kind == K_COLLS) {
    a->op = KV_OP_DESTROY_COLLECTION;
    a->collection = c->colls.v[c->ci].base;
    ctx_submit(c, collection_destroyed);
    return;
  }
  /* prefix-keys: scan this collection's keys, then delete ours. */
  c->job = JOB_DESTROY_COLL;
  vec_clear(&c->out);
  kv_free(c->cursor);
  c->cursor = NULL;
  memset(&c->main, 0, sizeof c->main);
  c->main.op = KV_OP_KEYS;
  c->main.collection = c->colls.v[c->ci].base;
  c->main.limit = SCAN_PAGE;
  list_next(c);
}

static int start_scan(ctx_t *c, int job, kv_op_t op, const char *coll) {
  c->scan = 1;
  c->job = job;
  memset(&c->main, 0, sizeof c->main);
  c->main.op = op;
  c->main.collection = coll;
  c->main.limit = SCAN_PAGE;
  list_next(c);
  return 0;
}

static int ren_keys(kv_store_t *s, kv_req_t *req) {
  ren_t *r = (ren_t *)s;
  ctx_t *c;
  if (r->kind == K_COLLS) return ren_single(s, req); /* rename only */
  c = ctx_new(s, req);
  if (c == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  if (r->kind == K_SINGLE) {
    c->user_coll = kv_strndup(req->in.collection, req->in.collection_len);
    if (c->user_coll == NULL) return ctx_refuse(c, KV_ENOMEM);
    c->main.collection = r->p;
  }
  if (req->in.cursor) {
    c->cursor = kv_strndup(req->in.cursor, strlen(req->in.cursor));
    if (c->cursor == NULL) return ctx_refuse(c, KV_ENOMEM);
  }
  list_next(c);
  return 0;
}

static int ren_collections(kv_store_t *s, kv_req_t *req) {
  ren_t *r = (ren_t *)s;
  ctx_t *c;
  if (r->kind == K_KEYS) return kv_wrap_forward(s, req);
  c = ctx_new(s, req);
  if (c == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  if (r->kind == K_SINGLE) {
    /* user_coll holds the cursor: the last name already listed */
    if (req->in.cursor) {
      c->user_coll = kv_strndup(req->in.cursor, strlen(req->in.cursor));
      if (c->user_coll == NULL) return ctx_refuse(c, KV_ENOMEM);
    }
    c->ulimit = req->in.limit;
    start_scan(c, JOB_COLLECTIONS, KV_OP_KEYS, r->p);
    return 0;
  }
  if (req->in.cursor) {
    c->cursor = kv_strndup(req->in.cursor, strlen(req->in.cursor));
    if (c->cursor == NULL) return ctx_refuse(c, KV_ENOMEM);
  }
  list_next(c);
  return 0;
}

static int ren_destroy_collection(kv_store_t *s, kv_req_t *req) {
  ren_t *r = (ren_t *)s;
  ctx_t *c;
  if (r->kind == K_COLLS) return ren_single(s, req);
  c = ctx_new(s, req);
  if (c == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  if (r->kind == K_SINGLE) {
    c->user_coll = kv_strndup(req->in.collection, req->in.collection_len);
    if (c->user_coll == NULL) return ctx_refuse(c, KV_ENOMEM);
    start_scan(c, JOB_DESTROY_COLL, KV_OP_KEYS, r->p);
    return 0;
  }
  start_scan(c, JOB_DESTROY_COLL, KV_OP_KEYS, req->in.collection);
  return 0;
}

static int ren_destroy(kv_store_t *s, kv_req_t *req) {
  ren_t *r = (ren_t *)s;
  ctx_t *c = ctx_new(s, req);
  if (c == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  if (r->kind == K_SINGLE) {
    memset(&c->main, 0, sizeof c->main);
    c->main.op = KV_OP_DESTROY_COLLECTION;
    c->main.collection = r->p;
    run_main(c);
    return 0;
  }
  start_scan(c, JOB_DESTROY, KV_OP_COLLECTIONS, NULL);
  return 0;
}

/* ---- Construction ------------------------------------------------------- */

static void ren_free(kv_wrap_t *w) {
  ren_t *r = (ren_t *)w;
  kv_free(r->p);
  kv_free(r->side_coll);
}

static void methods_for(kv_store_methods_t *m, const char *name) {
  kv_wrap_methods_init(m, name, sizeof(ren_t));
  m->get = m->ttl = m->put = m->del = ren_single;
  m->put_if_absent = m->cas = m->incr = m->take = ren_single;
  m->get_many = m->ttl_many = m->put_many = m->delete_many = ren_many;
  m->keys = ren_keys;
  m->collections = ren_collections;
  m->destroy_collection = ren_destroy_collection;
  m->destroy = ren_destroy;
}

static kv_store_methods_t pk_methods, pc_methods, sc_methods;
static uv_once_t ren_once = UV_ONCE_INIT;

static void ren_init(void) {
  methods_for(&pk_methods, "prefix-keys");
  methods_for(&pc_methods, "prefix-collections");
  methods_for(&sc_methods, "single-collection");
}

static int make(kv_store_t *inner, kind_t kind, const char *p, int borrow,
                kv_store_t **out) {
  const kv_store_methods_t *m;
  kv_wrap_t *w;
  ren_t *r;
  char err512[512];
  size_t pl = p ? strlen(p) : 0;
  int err;
  *out = NULL;
  if (p == NULL || pl == 0 || pl > 1024 ||
      kv__check_name("prefix", p, pl, err512, sizeof err512) != 0)
    return KV_EINVAL;
  uv_once(&ren_once, ren_init);
  m = kind == K_KEYS    ? &pk_methods
      : kind == K_COLLS ? &pc_methods
                        : &sc_methods;
  err = kv_wrap_create(inner, m, borrow, &w);
  if (err) return err;
  r = (ren_t *)w;
  r->kind = kind;
  r->p = kv_strndup(p, pl);
  r->pl = pl;
  r->side_coll = kind == K_COLLS ? cat3(p, pl, "~!", 2, "", 0, NULL) : NULL;
  w->on_free = ren_free;
  if (r->p == NULL || (kind == K_COLLS && r->side_coll == NULL)) {
    kv__wrap_abort(w);
    return KV_ENOMEM;
  }
  *out = &w->base;
  return 0;
}

int kv_wrap_prefix_keys(kv_store_t *inner, const kv_wrap_prefix_opts_t *o,
                        kv_store_t **out) {
  return make(inner, K_KEYS, o ? o->prefix : NULL, o && o->borrow, out);
}

int kv_wrap_prefix_collections(kv_store_t *inner,
                               const kv_wrap_prefix_opts_t *o,
                               kv_store_t **out) {
  return make(inner, K_COLLS, o ? o->prefix : NULL, o && o->borrow, out);
}

int kv_wrap_single_collection(kv_store_t *inner,
                              const kv_wrap_single_collection_opts_t *o,
                              kv_store_t **out) {
  return make(inner, K_SINGLE, o ? o->collection : NULL, o && o->borrow, out);
}

static int from_options(const char *wrapper, const char *opt, kind_t kind,
                        const char *options, kv_store_t *inner,
                        kv_store_t **out, char *errbuf, size_t errbuf_len) {
  const char *known[] = {opt, NULL};
  kv_url_t opts;
  const char *p;
  int err = kv__wrap_opts(wrapper, options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  p = kv_url_param(&opts, opt);
  if (p == NULL || p[0] == '\0') {
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "wrapper '%s' needs option '%s'", wrapper, opt);
  } else {
    err = make(inner, kind, p, 0, out);
    if (err == KV_EINVAL)
      kv__errbuf(errbuf, errbuf_len, err,
                 "invalid value '%s' for option '%s' of wrapper '%s': "
                 "expected 1 to 1024 bytes of UTF-8",
                 p, opt, wrapper);
  }
  kv_wrap_opts_free(&opts);
  return err;
}

KV__WRAP_FROM_OPTIONS(prefix_keys) {
  return from_options("prefix-keys", "prefix", K_KEYS, options, inner, out,
                      errbuf, errbuf_len);
}

KV__WRAP_FROM_OPTIONS(prefix_collections) {
  return from_options("prefix-collections", "prefix", K_COLLS, options, inner,
                      out, errbuf, errbuf_len);
}

KV__WRAP_FROM_OPTIONS(single_collection) {
  return from_options("single-collection", "collection", K_SINGLE, options,
                      inner, out, errbuf, errbuf_len);
}
