/* Requests, completion delivery and closing: the async contract lives here so
 * that no store can break it (docs/design.md lists the rules).
 *
 * A request moves IDLE -> PENDING (accepted by the store, on the store's
 * pending list) -> DONE (completed by the store, on the completion queue)
 * -> DELIVERED (its callback has been called). Completions are always
 * delivered from the store's idle handle, never from inside a submit. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define REQ_IDLE KV__REQ_IDLE
#define REQ_PENDING KV__REQ_PENDING
#define REQ_DONE KV__REQ_DONE
#define REQ_DELIVERED KV__REQ_DELIVERED

enum {
  STORE_CLOSING = 1u << 0,
  STORE_BACKEND_CLOSED = 1u << 1,
  STORE_HANDLE_CLOSING = 1u << 2,
  STORE_INTERNAL_CB = 1u << 3
};

#define KV__DEFAULT_PAGE 1000

/* ---- The pending list ---------------------------------------------------- */

static void pending_add(kv_store_t *s, kv_req_t *req) {
  req->priv.state = REQ_PENDING;
  req->priv.prev = NULL;
  req->priv.next = s->core.pending_head;
  if (s->core.pending_head) s->core.pending_head->priv.prev = req;
  s->core.pending_head = req;
}

static void pending_remove(kv_store_t *s, kv_req_t *req) {
  if (req->priv.prev)
    req->priv.prev->priv.next = req->priv.next;
  else
    s->core.pending_head = req->priv.next;
  if (req->priv.next) req->priv.next->priv.prev = req->priv.prev;
  req->priv.prev = req->priv.next = NULL;
}

/* ---- Delivery ------------------------------------------------------------
 *
 * A completion is queued, never delivered inside the call that completes it.
 * Each store has a queue drained by its idle handle. While a drain runs (a
 * "turn" of deliveries on this thread), completions on any store of the same
 * loop join the turn's queue and are delivered in the same loop turn, in
 * order, until the turn has delivered KV__TURN_MAX requests or spent
 * KV__TURN_BUDGET_NS; later ones wait for the next loop turn (their store's
 * idle handle), so timers and I/O are never starved (docs/design.md, rule
 * 4). */

#define KV__TURN_MAX 4096
#define KV__TURN_BUDGET_NS 1000000 /* 1 ms */

typedef struct turn_s {
  uv_loop_t *loop;
  kv_req_t *head, *tail;
  unsigned count;
  int open; /* still taking new completions */
  uint64_t deadline;
  struct turn_s *prev;
} turn_t;

static _Thread_local turn_t *turn;

static uint64_t double_completions;

static void finish_close_if_ready(kv_store_t *s);

static void queue_append(kv_req_t **head, kv_req_t **tail, kv_req_t *req) {
  req->priv.next = NULL;
  if (*tail)
    (*tail)->priv.next = req;
  else
    *head = req;
  *tail = req;
}

/* Move store s's own queue to the end of the turn's queue. */
static void splice_into_turn(turn_t *t, kv_store_t *s) {
  if (s->core.done_head == NULL) return;
  if (t->tail)
    t->tail->priv.next = s->core.done_head;
  else
    t->head = s->core.done_head;
  t->tail = s->core.done_tail;
  s->core.done_head = s->core.done_tail = NULL;
}

static void on_idle(uv_idle_t *handle);

/* Run the completion hooks of the wrapper layers the request went through,
 * innermost first. Returns 1 if a hook held the request (it is pending
 * again: a retry), 0 when it is ready for its callback. */
static int run_hooks(kv_req_t *r) {
  while (r->priv.nhooks > 0) {
    struct kv_hook_s h = r->priv.hooks[--r->priv.nhooks];
    int held = h.fn(h.layer, r, &h) == KV_HOOK_HELD;
    kv__wrap_hook_done(h.layer);
    if (held) return 1;
  }
  return 0;
}

static void deliver_one(kv_req_t *r) {
  kv_store_t *s = r->store;
  s->core.queued--;
  if (r->priv.nhooks > 0) {
    r->priv.state = KV__REQ_DONE; /* hooks may inspect it */
    if (run_hooks(r)) return;
  }
  r->priv.state = REQ_DELIVERED;
  s->core.delivering++;
  r->priv.cb(r); /* may free or reuse r, or close s */
  s->core.delivering--;
  finish_close_if_ready(s);
}

static void deliver(kv_store_t *s) {
  turn_t t;
  int nested = turn != NULL && turn->loop == s->loop;
  if (nested) {
    /* Already inside a turn on this loop (a blocking call from a callback):
     * take part in it. */
    splice_into_turn(turn, s);
    return;
  }
  t.loop = s->loop;
  t.head = t.tail = NULL;
  t.count = 0;
  t.open = 1;
  t.deadline = uv_hrtime() + KV__TURN_BUDGET_NS;
  t.prev = turn;
  turn = &t;
  splice_into_turn(&t, s);
  uv_idle_stop(&s->core.idle);
  while (t.head != NULL) {
    kv_req_t *r = t.head;
    t.head = r->priv.next;
    if (t.head == NULL) t.tail = NULL;
    r->priv.next = NULL;
    deliver_one(r);
    if (t.open && (++t.count >= KV__TURN_MAX ||
                   ((t.count & 31) == 0 && uv_hrtime() >= t.deadline)))
      t.open = 0; /* what is queued still goes; new completions wait */
  }
  turn = t.prev;
}

static void on_idle(uv_idle_t *handle) {
  deliver((kv_store_t *)handle->data);
}

int kv__store_deliver_now(kv_store_t *s) {
  if (s->core.done_head == NULL || s->core.delivering) return 0;
  deliver(s);
  return 1;
}

uint64_t kv_double_completions(void) {
  return double_completions;
}

void kv_req_complete(kv_req_t *req, int status) {
  kv_store_t *s = req->store;
  if (req->priv.state != REQ_PENDING) {
    /* A second completion: a store bug. The first one stands. */
    double_completions++;
#ifndef NDEBUG
    fprintf(stderr, "kvio: store '%s' completed a request twice\n",
            s && s->methods ? s->methods->name : "?");
    abort();
#endif
    return;
  }
  pending_remove(s, req);
  req->status = status;
  req->priv.state = REQ_DONE;
  s->core.queued++;
  if (turn != NULL && turn->open && turn->loop == s->loop) {
    /* Same turn; behind whatever the store already has queued. */
    splice_into_turn(turn, s);
    queue_append(&turn->head, &turn->tail, req);
    return;
  }
  queue_append(&s->core.done_head, &s->core.done_tail, req);
  if (!uv_is_active((uv_handle_t *)&s->core.idle))
    uv_idle_start(&s->core.idle, on_idle);
}

/* ---- Closing ------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle) {
  kv_store_t *s = handle->data;
  if (s->core.close_cb) s->core.close_cb(s);
  kv_free(s->default_collection);
  kv_free(s);
}

static void finish_close_if_ready(kv_store_t *s) {
  unsigned need = STORE_CLOSING | STORE_BACKEND_CLOSED;
  if ((s->core.flags & need) != need ||
      (s->core.flags & STORE_HANDLE_CLOSING) || s->core.delivering ||
      s->core.pending_head != NULL || s->core.queued != 0)
    return;
  s->core.flags |= STORE_HANDLE_CLOSING;
  uv_close((uv_handle_t *)&s->core.idle, on_handle_closed);
}

void kv_store_closed(kv_store_t *s) {
  s->core.flags |= STORE_BACKEND_CLOSED;
  /* Whatever the store still holds is cancelled: the user's callbacks must
   * all run before the close callback. */
  while (s->core.pending_head != NULL) {
    kv_req_t *r = s->core.pending_head;
    kv_req_set_error(r, KV_ECANCELED, "the store was closed");
    kv_req_complete(r, KV_ECANCELED);
  }
  finish_close_if_ready(s);
}

int kv_store_is_closing(const kv_store_t *s) {
  return (s->core.flags & STORE_CLOSING) != 0;
}

int kv_store_close(kv_store_t *s, kv_close_cb close_cb) {
  if (s == NULL) return KV_EINVAL;
  if (s->core.flags & STORE_CLOSING) return KV_ECLOSED;
  s->core.flags |= STORE_CLOSING;
  s->core.close_cb = close_cb;
  if (s->methods->close)
    s->methods->close(s); /* calls kv_store_closed(), now or later */
  else
    kv_store_closed(s);
  return 0;
}

unsigned kv_store_caps(const kv_store_t *s) {
  return s->caps;
}

size_t kv__methods_size(int version) {
  return version >= 2 ? KV_STORE_METHODS_V2_SIZE : KV_STORE_METHODS_V1_SIZE;
}

int kv_store_ctl(kv_store_t *s, int op, void *arg, size_t size) {
  const kv_store_methods_t *m;
  if (s == NULL || (arg == NULL && size != 0)) return KV_EINVAL;
  m = s->methods;
  if (m->version >= 2 && m->ctl_ex != NULL) return m->ctl_ex(s, op, arg, size);
  if (m->ctl != NULL) return m->ctl(s, op, arg); /* a version-1 store */
  return KV_ENOTSUP;
}

const char *kv_store_name(const kv_store_t *s) {
  return s->methods->name;
}

uv_loop_t *kv_store_loop(const kv_store_t *s) {
  return s->loop;
}

/* Set up the core's part of a store whose loop, methods and caps are set:
 * the default collection (unless already set) and the delivery handle. */
int kv__store_init(kv_store_t *s) {
  if (s->default_collection == NULL) {
    s->default_collection =
        kv_strndup(KV_DEFAULT_COLLECTION, strlen(KV_DEFAULT_COLLECTION));
    if (s->default_collection == NULL) return KV_ENOMEM;
  }
  return 0;
}

void kv__store_start(kv_store_t *s) {
  uv_idle_init(s->loop, &s->core.idle);
  s->core.idle.data = s;
}

int kv_store_create(uv_loop_t *loop, const kv_store_methods_t *m,
                    kv_store_t **out) {
  kv_store_t *s;
  *out = NULL;
  if (loop == NULL || m == NULL || m->store_size < sizeof(kv_store_t))
    return KV_EINVAL;
  s = kv_calloc(1, m->store_size);
  if (s == NULL) return KV_ENOMEM;
  s->loop = loop;
  s->methods = m;
  s->caps = m->caps;
  if (kv__store_init(s) != 0) {
    kv_free(s);
    return KV_ENOMEM;
  }
  kv__store_start(s);
  *out = s;
  return 0;
}

/* ---- Request results ------------------------------------------------------
 */

int kv_req_set_error(kv_req_t *req, int err, const char *fmt, ...) {
  va_list ap;
  char buf[1024];
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  kv_free(req->priv.errmsg);
  req->priv.errmsg = kv_strndup(buf, strlen(buf));
  return err;
}

const char *kv_req_errmsg(const kv_req_t *req) {
  if (req->priv.errmsg != NULL) return req->priv.errmsg;
  return kv_strerror(req->status);
}

int kv_req_set_value(kv_req_t *req, const void *data, size_t len) {
  char *p = kv_malloc(len + 1);
  if (p == NULL) return KV_ENOMEM;
  if (len) memcpy(p, data, len);
  p[len] = '\0';
  kv_req_give_value(req, p, len);
  return 0;
}

void kv_req_give_value(kv_req_t *req, char *data, size_t len) {
  kv_free(req->value.base);
  req->value.base = data;
  req->value.len = len;
  req->found = 1;
}

char *kv_req_take_value(kv_req_t *req, size_t *len) {
  char *p = req->value.base;
  if (len) *len = req->value.len;
  req->value.base = NULL;
  req->value.len = 0;
  return p;
}

int kv_req_alloc_results(kv_req_t *req) {
  if (req->results == NULL) {
    req->results = kv_calloc(req->in.n ? req->in.n : 1, sizeof(kv_result_t));
    if (req->results == NULL) return KV_ENOMEM;
  }
  req->nresults = req->in.n;
  return 0;
}

int kv_req_set_result(kv_req_t *req, size_t i, const void *data, size_t len,
                      double ttl) {
  kv_result_t *r = &req->results[i];
  char *p = kv_malloc(len + 1);
  if (p == NULL) return KV_ENOMEM;
  if (len) memcpy(p, data, len);
  p[len] = '\0';
  kv_free(r->value.base);
  r->value.base = p;
  r->value.len = len;
  r->found = 1;
  r->ttl = ttl;
  return 0;
}

int kv_req_add_name(kv_req_t *req, const char *name, size_t len) {
  /* Grow by doubling; the capacity is implied by nnames (powers of two). */
  size_t n = req->nnames;
  if (n == 0 || (n & (n - 1)) == 0) {
    kv_buf_t *p = kv_realloc(req->names, (n ? n * 2 : 8) * sizeof *p);
    if (p == NULL) return KV_ENOMEM;
    req->names = p;
  }
  req->names[n].base = kv_strndup(name, len);
  if (req->names[n].base == NULL) return KV_ENOMEM;
  req->names[n].len = len;
  req->nnames = n + 1;
  return 0;
}

int kv_req_set_cursor(kv_req_t *req, const char *cursor) {
  kv_free(req->cursor);
  req->cursor = NULL;
  if (cursor == NULL) return 0;
  req->cursor = kv_strndup(cursor, strlen(cursor));
  return req->cursor ? 0 : KV_ENOMEM;
}

static void clear_results(kv_req_t *req);

void kv_req_cleanup(kv_req_t *req) {
  if (req == NULL) return;
  if (req->priv.state == REQ_PENDING || req->priv.state == REQ_DONE)
    return; /* still in flight: cleaning it would break the store */
  clear_results(req);
  if (req->priv.block != req->priv.inline_buf) kv_free(req->priv.block);
  /* A second cleanup is then harmless; the next submit clears the rest. */
  req->priv.block = NULL;
  req->priv.state = REQ_IDLE;
}

/* ---- Submitting ------------------------------------------------------------
 */

/* ---- Operations (generated from KV_OP_MAP) -------------------------------- */

static const char *const op_names[KV_OP_COUNT_] = {
#define XX(NAME, name, member, cap, params, args) [KV_OP_##NAME] = #name,
    KV_OP_MAP(XX)
#undef XX
};

static const unsigned op_caps[KV_OP_COUNT_] = {
#define XX(NAME, name, member, cap, params, args) [KV_OP_##NAME] = cap,
    KV_OP_MAP(XX)
#undef XX
};

/* Where each op's method sits in kv_store_methods_t. */
static const size_t op_offsets[KV_OP_COUNT_] = {
#define XX(NAME, name, member, cap, params, args)                             \
  [KV_OP_##NAME] = offsetof(kv_store_methods_t, member),
    KV_OP_MAP(XX)
#undef XX
};

const char *kv_op_name(kv_op_t op) {
  if (op == KV_OP_NONE) return "none";
  if ((int)op < KV_OP_NONE || op >= KV_OP_COUNT_) return "unknown";
  return op_names[op];
}

unsigned kv__op_cap(kv_op_t op) {
  return (int)op > KV_OP_NONE && op < KV_OP_COUNT_ ? op_caps[op] : 0;
}

static const char *segment_name(unsigned cap) {
  switch (cap) {
  case KV_CAP_ENUMERATE:
    return "enumeration";
  case KV_CAP_DESTROY:
    return "destroy";
  case KV_CAP_CULL:
    return "cull";
  default:
    return "atomic operations";
  }
}

kv_op_fn kv__method(const kv_store_methods_t *m, kv_op_t op) {
  size_t off;
  if ((int)op <= KV_OP_NONE || op >= KV_OP_COUNT_) return NULL;
  off = op_offsets[op];
  /* Members past the version the table was written for are not read
   * (none of the ops is past version 1 today). */
  if (off + sizeof(kv_op_fn) > kv__methods_size(m->version)) return NULL;
  return *(const kv_op_fn *)(const void *)((const char *)m + off);
}

/* Start a request: reset it, check the store's state and capabilities. */
static int begin(kv_store_t *s, kv_req_t *req, kv_op_t op, kv_cb cb) {
  void *data;
  if (req == NULL) return KV_EINVAL;
  if (req->priv.state == REQ_PENDING || req->priv.state == REQ_DONE)
    return KV_EBUSY; /* still in flight: reusing it would corrupt both */
  /* The request may be uninitialised memory: nothing in it is freed here
   * (results of an earlier use must be released with kv_req_cleanup). */
  data = req->data;
  /* The inline input buffer is written before it is read: not cleared. */
  memset(req, 0, offsetof(kv_req_t, priv.inline_buf));
  req->data = data;
  req->store = s;
  req->op = op;
  if (s == NULL) return KV_EINVAL;
  if (cb == NULL) return kv_req_set_error(req, KV_EINVAL, "callback is NULL");
  req->priv.cb = cb;
  if (s->core.flags & STORE_CLOSING)
    return kv_req_set_error(req, KV_ECLOSED, "the store is closing");
  if (op_caps[op] && !(s->caps & op_caps[op]))
    return kv_req_set_error(req, KV_ENOTSUP, "store '%s' does not support %s",
                            s->methods->name, segment_name(op_caps[op]));
  return 0;
}

static int fallback_many(kv_store_t *s, kv_req_t *req);

/* Hand a validated request to the store. */
static int dispatch(kv_store_t *s, kv_req_t *req) {
  kv_op_fn fn = kv__method(s->methods, req->op);
  int err;
  if (fn == NULL) {
    if (req->op >= KV_OP_GET_MANY && req->op <= KV_OP_DELETE_MANY)
      return fallback_many(s, req);
    return kv_req_set_error(req, KV_ENOTSUP,
                            "store '%s' does not implement this operation",
                            s->methods->name);
  }
  pending_add(s, req);
  err = fn(s, req);
  if (err < 0) {
    if (req->priv.state == REQ_PENDING) {
      pending_remove(s, req);
      req->priv.state = REQ_IDLE;
    }
    /* If the store completed it anyway (a store bug), the callback runs
     * once; the caller is told it failed. */
    if (req->priv.errmsg == NULL)
      kv_req_set_error(req, err, "%s", kv_strerror(err));
    return err;
  }
  return 0;
}

/* Copy the collection (resolving the default) and optional key/values into
 * one block owned by the request. */
typedef struct {
  const char *collection;
  size_t collection_len;
  const char *key;
  size_t key_len;
  const void *value;
  size_t value_len;
  const void *expected;
  size_t expected_len;
} inputs_t;

static int check_collection(kv_req_t *req, inputs_t *in, const char *coll) {
  char err[512];
  if (coll == NULL || coll[0] == '\0') coll = req->store->default_collection;
  in->collection = coll;
  in->collection_len = strlen(coll);
  if (kv__check_name("collection", coll, in->collection_len, err, sizeof err))
    return kv_req_set_error(req, KV_EINVAL, "%s", err);
  return 0;
}

static int check_key(kv_req_t *req, const char *key, size_t *len) {
  char err[512];
  *len = key ? strlen(key) : 0;
  if (kv__check_name("key", key, *len, err, sizeof err))
    return kv_req_set_error(req, KV_EINVAL, "%s", err);
  return 0;
}

/* Memory for the copied inputs: inside the request when they fit. */
static void *input_block(kv_req_t *req, size_t total) {
  void *p = total <= sizeof req->priv.inline_buf ? (void *)req->priv.inline_buf
                                                 : kv_malloc(total);
  req->priv.block = p;
  return p;
}

/* The absolute expiry of an entry written at now_ms with a valid ttl. */
int64_t kv__expiry(int64_t now_ms, double ttl) {
  double ms;
  if (ttl <= 0) return 0;
  ms = ceil(ttl * 1000.0);
  return now_ms + (ms < 1 ? 1 : (int64_t)ms);
}

static int check_ttl(kv_req_t *req, double ttl) {
  char err[256];
  if (kv__check_ttl(ttl, err, sizeof err))
    return kv_req_set_error(req, KV_EINVAL, "%s", err);
  req->in.ttl = ttl;
  req->in.now_ms = kv_now_ms();
  req->in.expires_at_ms = kv__expiry(req->in.now_ms, ttl);
  return 0;
}

static int copy_inputs(kv_req_t *req, const inputs_t *in) {
  size_t cl = in->collection_len;
  size_t kl = in->key_len;
  size_t total = cl + 1 + kl + 1 + in->value_len + 1 + in->expected_len + 1;
  char *p = input_block(req, total);
  if (p == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  memcpy(p, in->collection, cl + 1);
  req->in.collection = p;
  req->in.collection_len = cl;
  p += cl + 1;
  if (in->key) {
    memcpy(p, in->key, kl + 1);
    req->in.key = p;
    req->in.key_len = kl;
  }
  p += kl + 1;
  if (in->value_len) memcpy(p, in->value, in->value_len);
  p[in->value_len] = '\0';
  req->in.value.base = p;
  req->in.value.len = in->value_len;
  p += in->value_len + 1;
  if (in->expected_len) memcpy(p, in->expected, in->expected_len);
  p[in->expected_len] = '\0';
  req->in.expected.base = p;
  req->in.expected.len = in->expected_len;
  return 0;
}

/* Single-key operations share one path. */
static int submit_one(kv_store_t *s, kv_req_t *req, kv_op_t op,
                      const char *collection, const char *key,
                      const void *value, size_t len, int has_ttl, double ttl,
                      kv_cb cb) {
  inputs_t in = {0};
  int err = begin(s, req, op, cb);
  if (err) return err;
  if ((err = check_collection(req, &in, collection)) != 0) return err;
  if ((err = check_key(req, key, &in.key_len)) != 0) return err;
  if (value == NULL && len > 0)
    return kv_req_set_error(req, KV_EINVAL, "value is NULL with length %zu",
                            len);
  if (has_ttl && (err = check_ttl(req, ttl)) != 0) return err;
  if (!has_ttl) req->in.now_ms = kv_now_ms();
  in.key = key;
  in.value = value;
  in.value_len = len;
  if ((err = copy_inputs(req, &in)) != 0) return err;
  return dispatch(s, req);
}

int kv_get(kv_store_t *s, kv_req_t *req, const char *collection,
           const char *key, kv_cb cb) {
  return submit_one(s, req, KV_OP_GET, collection, key, NULL, 0, 0, 0, cb);
}

int kv_ttl(kv_store_t *s, kv_req_t *req, const char *collection,
           const char *key, kv_cb cb) {
  return submit_one(s, req, KV_OP_TTL, collection, key, NULL, 0, 0, 0, cb);
}

int kv_put(kv_store_t *s, kv_req_t *req, const char *collection,
           const char *key, const void *value, size_t len, double ttl,
           kv_cb cb) {
  return submit_one(s, req, KV_OP_PUT, collection, key, value, len, 1, ttl, cb);
}

int kv_touch(kv_store_t *s, kv_req_t *req, const char *collection,
             const char *key, double ttl, kv_cb cb) {
  inputs_t in = {0};
  char text[24];
  int err = begin(s, req, KV_OP_PUT, cb);
  if (err) return err;
  if ((err = check_collection(req, &in, collection)) != 0) return err;
  if ((err = check_key(req, key, &in.key_len)) != 0) return err;
  if ((err = check_ttl(req, ttl)) != 0) return err; /* stamps the request */
  in.key = key;
  in.value = text;
  in.value_len = kv_format_int64(req->in.now_ms / 1000, text);
  if ((err = copy_inputs(req, &in)) != 0) return err;
  return dispatch(s, req);
}

int kv_delete(kv_store_t *s, kv_req_t *req, const char *collection,
              const char *key, kv_cb cb) {
  return submit_one(s, req, KV_OP_DELETE, collection, key, NULL, 0, 0, 0, cb);
}

int kv_take(kv_store_t *s, kv_req_t *req, const char *collection,
            const char *key, kv_cb cb) {
  return submit_one(s, req, KV_OP_TAKE, collection, key, NULL, 0, 0, 0, cb);
}

int kv_put_if_absent(kv_store_t *s, kv_req_t *req, const char *collection,
                     const char *key, const void *value, size_t len, double ttl,
                     kv_cb cb) {
  return submit_one(s, req, KV_OP_PUT_IF_ABSENT, collection, key, value, len, 1,
                    ttl, cb);
}

int kv_incr(kv_store_t *s, kv_req_t *req, const char *collection,
            const char *key, int64_t delta, double ttl, kv_cb cb) {
  inputs_t in = {0};
  int err = begin(s, req, KV_OP_INCR, cb);
  if (err) return err;
  if ((err = check_collection(req, &in, collection)) != 0) return err;
  if ((err = check_key(req, key, &in.key_len)) != 0) return err;
  if ((err = check_ttl(req, ttl)) != 0) return err;
  in.key = key;
  if ((err = copy_inputs(req, &in)) != 0) return err;
  req->in.delta = delta;
  return dispatch(s, req);
}

int kv_cas(kv_store_t *s, kv_req_t *req, const char *collection,
           const char *key, const void *expected, size_t expected_len,
           const void *value, size_t len, double ttl, kv_cb cb) {
  inputs_t in = {0};
  int err = begin(s, req, KV_OP_CAS, cb);
  if (err) return err;
  if ((err = check_collection(req, &in, collection)) != 0) return err;
  if ((err = check_key(req, key, &in.key_len)) != 0) return err;
  if ((value == NULL && len > 0))
    return kv_req_set_error(req, KV_EINVAL, "value is NULL with length %zu",
                            len);
  if ((err = check_ttl(req, ttl)) != 0) return err;
  in.key = key;
  in.value = value;
  in.value_len = len;
  in.expected = expected;
  in.expected_len = expected ? expected_len : 0;
  if ((err = copy_inputs(req, &in)) != 0) return err;
  req->in.expected_absent = expected == NULL;
  return dispatch(s, req);
}

/* Bulk operations: validate every key first (all or nothing), then copy the
 * keys (and values) into one block. */
static int submit_many(kv_store_t *s, kv_req_t *req, kv_op_t op,
                       const char *collection, const char *const *keys,
                       const kv_buf_t *values, size_t n, int has_ttl,
                       double ttl, kv_cb cb) {
  size_t total, cl, kl;
  inputs_t in = {0};
  char *p;
  kv_buf_t *kb, *vb = NULL;
  int err = begin(s, req, op, cb);
  if (err) return err;
  if ((err = check_collection(req, &in, collection)) != 0) return err;
  collection = in.collection;
  if (n > 0 && keys == NULL)
    return kv_req_set_error(req, KV_EINVAL, "keys is NULL with n = %zu", n);
  if (n > 0 && op == KV_OP_PUT_MANY && values == NULL)
    return kv_req_set_error(req, KV_EINVAL, "values is NULL with n = %zu", n);
  if (n > SIZE_MAX / (4 * sizeof(kv_buf_t)))
    return kv_req_set_error(req, KV_EINVAL, "too many keys: %zu", n);
  for (size_t i = 0; i < n; i++) {
    if ((err = check_key(req, keys[i], &kl)) != 0) return err;
    if (op == KV_OP_PUT_MANY && values[i].base == NULL && values[i].len > 0)
      return kv_req_set_error(req, KV_EINVAL,
                              "value %zu is NULL with length %zu", i,
                              values[i].len);
  }
  if (has_ttl && (err = check_ttl(req, ttl)) != 0) return err;
  if (!has_ttl) req->in.now_ms = kv_now_ms();
  if (op != KV_OP_PUT_MANY) values = NULL;
  cl = in.collection_len;
  total = cl + 1 + n * sizeof(kv_buf_t) * (values ? 2 : 1);
  for (size_t i = 0; i < n; i++)
    total += strlen(keys[i]) + 1 + (values ? values[i].len + 1 : 0);
  /* Arrays first, for alignment. */
  p = input_block(req, total);
  if (p == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  kb = (kv_buf_t *)p;
  p += n * sizeof(kv_buf_t);
  if (values) {
    vb = (kv_buf_t *)p;
    p += n * sizeof(kv_buf_t);
  }
  memcpy(p, collection, cl + 1);
  req->in.collection = p;
  req->in.collection_len = cl;
  p += cl + 1;
  for (size_t i = 0; i < n; i++) {
    kl = strlen(keys[i]);
    memcpy(p, keys[i], kl + 1);
    kb[i].base = p;
    kb[i].len = kl;
    p += kl + 1;
    if (values) {
      if (values[i].len) memcpy(p, values[i].base, values[i].len);
      p[values[i].len] = '\0';
      vb[i].base = p;
      vb[i].len = values[i].len;
      p += values[i].len + 1;
    }
  }
  req->in.keys = kb;
  req->in.values = vb;
  req->in.n = n;
  return dispatch(s, req);
}

int kv_get_many(kv_store_t *s, kv_req_t *req, const char *collection,
                const char *const *keys, size_t n, kv_cb cb) {
  return submit_many(s, req, KV_OP_GET_MANY, collection, keys, NULL, n, 0, 0,
                     cb);
}

int kv_ttl_many(kv_store_t *s, kv_req_t *req, const char *collection,
                const char *const *keys, size_t n, kv_cb cb) {
  return submit_many(s, req, KV_OP_TTL_MANY, collection, keys, NULL, n, 0, 0,
                     cb);
}

int kv_put_many(kv_store_t *s, kv_req_t *req, const char *collection,
                const char *const *keys, const kv_buf_t *values, size_t n,
                double ttl, kv_cb cb) {
  return submit_many(s, req, KV_OP_PUT_MANY, collection, keys, values, n, 1,
                     ttl, cb);
}

int kv_delete_many(kv_store_t *s, kv_req_t *req, const char *collection,
                   const char *const *keys, size_t n, kv_cb cb) {
  return submit_many(s, req, KV_OP_DELETE_MANY, collection, keys, NULL, n, 0, 0,
                     cb);
}

static int submit_listing(kv_store_t *s, kv_req_t *req, kv_op_t op,
                          const char *collection, const char *cursor,
                          size_t limit, kv_cb cb) {
  inputs_t in = {0};
  int err = begin(s, req, op, cb);
  if (err) return err;
  if ((err = check_collection(req, &in, collection)) != 0) return err;
  /* The cursor travels in the key slot; it is opaque, so it is not
   * validated as a name (the store rejects a cursor it did not make). */
  in.key = cursor;
  in.key_len = cursor ? strlen(cursor) : 0;
  if ((err = copy_inputs(req, &in)) != 0) return err;
  req->in.cursor = cursor ? req->in.key : NULL;
  req->in.key = NULL;
  req->in.key_len = 0;
  req->in.limit = limit ? limit : KV__DEFAULT_PAGE;
  req->in.now_ms = kv_now_ms();
  return dispatch(s, req);
}

int kv_keys(kv_store_t *s, kv_req_t *req, const char *collection,
            const char *cursor, size_t limit, kv_cb cb) {
  return submit_listing(s, req, KV_OP_KEYS, collection, cursor, limit, cb);
}

int kv_collections(kv_store_t *s, kv_req_t *req, const char *cursor,
                   size_t limit, kv_cb cb) {
  return submit_listing(s, req, KV_OP_COLLECTIONS, NULL, cursor, limit, cb);
}

int kv_destroy(kv_store_t *s, kv_req_t *req, kv_cb cb) {
  return submit_listing(s, req, KV_OP_DESTROY, NULL, NULL, 0, cb);
}

int kv_destroy_collection(kv_store_t *s, kv_req_t *req, const char *collection,
                          kv_cb cb) {
  return submit_listing(s, req, KV_OP_DESTROY_COLLECTION, collection, NULL, 0,
                        cb);
}

int kv_cull(kv_store_t *s, kv_req_t *req, kv_cb cb) {
  return submit_listing(s, req, KV_OP_CULL, NULL, NULL, 0, cb);
}

/* ---- Internal submit (wrappers) ---------------------------------------- */

/* Bytes needed to copy `in` (see copy_in). */
static size_t in_size(const kv_req_in_t *in) {
  size_t total = in->collection_len + 1 + in->key_len + 1 + in->value.len + 1 +
                 in->expected.len + 1 + (in->cursor ? strlen(in->cursor) : 0) +
                 1;
  if (in->n > 0) {
    total += in->n * sizeof(kv_buf_t) * (in->values ? 2 : 1);
    for (size_t i = 0; i < in->n; i++)
      total += in->keys[i].len + 1 + (in->values ? in->values[i].len + 1 : 0);
  }
  return total;
}

static char *put_bytes(char **p, const void *src, size_t len) {
  char *d = *p;
  if (len) memcpy(d, src, len);
  d[len] = '\0';
  *p = d + len + 1;
  return d;
}

/* Copy every input of `in` into one block owned by req. */
static int copy_in(kv_req_t *req, const kv_req_in_t *in) {
  char *p = input_block(req, in_size(in));
  kv_buf_t *kb = NULL, *vb = NULL;
  if (p == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  req->in = *in;
  if (in->n > 0) { /* arrays first, for alignment */
    kb = (kv_buf_t *)(void *)p;
    p += in->n * sizeof(kv_buf_t);
    if (in->values) {
      vb = (kv_buf_t *)(void *)p;
      p += in->n * sizeof(kv_buf_t);
    }
  }
  req->in.collection = put_bytes(&p, in->collection, in->collection_len);
  req->in.key = in->key ? put_bytes(&p, in->key, in->key_len) : NULL;
  req->in.value.base = put_bytes(&p, in->value.base, in->value.len);
  req->in.expected.base = put_bytes(&p, in->expected.base, in->expected.len);
  req->in.cursor =
      in->cursor ? put_bytes(&p, in->cursor, strlen(in->cursor)) : NULL;
  for (size_t i = 0; i < in->n; i++) {
    kb[i].base = put_bytes(&p, in->keys[i].base, in->keys[i].len);
    kb[i].len = in->keys[i].len;
    if (vb) {
      vb[i].base = put_bytes(&p, in->values[i].base, in->values[i].len);
      vb[i].len = in->values[i].len;
    }
  }
  req->in.keys = kb;
  req->in.values = vb;
  return 0;
}

int kv__submit_in(kv_store_t *s, kv_req_t *req, kv_op_t op,
                  const kv_req_in_t *in, kv_cb cb) {
  int rc;
  if (in == NULL || (int)op <= KV_OP_NONE || op >= KV_OP_COUNT_)
    return KV_EINVAL;
  kv_req_in_t x;
  if ((rc = begin(s, req, op, cb)) != 0) return rc;
  if (in->collection == NULL)
    return kv_req_set_error(req, KV_EINVAL, "submitted without a collection");
  /* Only what the op uses is copied (a wrapper may leave stale pointers in
   * the fields another op of its used). */
  x = *in;
  if (op != KV_OP_PUT && op != KV_OP_PUT_IF_ABSENT && op != KV_OP_CAS) {
    x.value.base = NULL;
    x.value.len = 0;
  }
  if (op != KV_OP_CAS) {
    x.expected.base = NULL;
    x.expected.len = 0;
  }
  if (op < KV_OP_GET_MANY || op > KV_OP_DELETE_MANY) {
    x.keys = NULL;
    x.n = 0;
  }
  if (op != KV_OP_PUT_MANY) x.values = NULL;
  if (op != KV_OP_KEYS && op != KV_OP_COLLECTIONS) x.cursor = NULL;
  if ((op >= KV_OP_GET_MANY && op <= KV_OP_CULL) || x.key == NULL) {
    x.key = NULL;
    x.key_len = 0;
  }
  in = &x;
  if ((rc = copy_in(req, in)) != 0) return rc;
  req->in.expires_at_ms = kv__expiry(in->now_ms, in->ttl);
  return dispatch(s, req);
}

/* Clear what a completed attempt left in the request. */
static void clear_results(kv_req_t *req) {
  kv_free(req->value.base);
  for (size_t i = 0; i < req->nresults; i++)
    kv_free(req->results[i].value.base);
  kv_free(req->results);
  for (size_t i = 0; i < req->nnames; i++)
    kv_free(req->names[i].base);
  kv_free(req->names);
  kv_free(req->cursor);
  kv_free(req->priv.errmsg);
  req->value.base = NULL;
  req->value.len = 0;
  req->results = NULL;
  req->nresults = 0;
  req->names = NULL;
  req->nnames = 0;
  req->cursor = NULL;
  req->priv.errmsg = NULL;
  req->found = 0;
  req->status = 0;
  req->ttl = 0;
  req->number = 0;
  req->count = 0;
}

void kv__req_hold(kv_req_t *req) {
  if (req->priv.state == REQ_PENDING) return;
  clear_results(req);
  pending_add(req->store, req);
}

/* ---- Bulk forms for stores that only have the single ops ------------------
 *
 * One sub-request per key, submitted straight to the store's single-key
 * method (the inputs are validated already); the parent completes when the
 * last one has. */
typedef struct {
  kv_req_t *parent;
  size_t remaining;
  int status;
  kv_req_t subs[];
} fanout_t;

static void fanout_cb(kv_req_t *sub) {
  fanout_t *f = sub->data;
  kv_req_t *parent = f->parent;
  size_t i = (size_t)(sub - f->subs);
  if (sub->status < 0 && f->status == 0) {
    f->status = sub->status;
    kv_req_set_error(parent, sub->status, "%s", kv_req_errmsg(sub));
  } else if (sub->status == 0) {
    switch (parent->op) {
    case KV_OP_GET_MANY:
    case KV_OP_TTL_MANY:
      if (sub->found) {
        parent->results[i].found = 1;
        parent->results[i].value = sub->value;
        parent->results[i].ttl = sub->ttl;
        sub->value.base = NULL;
      }
      break;
    case KV_OP_DELETE_MANY:
      parent->count += sub->found != 0;
      break;
    default:
      break;
    }
  }
  sub->priv.block = NULL; /* the inputs belong to the parent */
  kv_req_cleanup(sub);
  if (--f->remaining == 0) {
    int status = f->status;
    parent->priv.store_data[3] = NULL;
    kv_free(f);
    kv_req_complete(parent, status);
  }
}

static int fallback_many(kv_store_t *s, kv_req_t *req) {
  static const kv_op_t single[] = {[KV_OP_GET_MANY] = KV_OP_TTL,
                                   [KV_OP_TTL_MANY] = KV_OP_TTL,
                                   [KV_OP_PUT_MANY] = KV_OP_PUT,
                                   [KV_OP_DELETE_MANY] = KV_OP_DELETE};
  size_t n = req->in.n;
  fanout_t *f;
  int err;
  if ((req->op == KV_OP_GET_MANY || req->op == KV_OP_TTL_MANY) &&
      kv_req_alloc_results(req) != 0)
    return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  /* The parent is pending from here on, so it completes exactly once. */
  pending_add(s, req);
  if (n == 0) {
    kv_req_complete(req, 0);
    return 0;
  }
  f = kv_calloc(1, sizeof *f + n * sizeof(kv_req_t));
  if (f == NULL) {
    kv_req_set_error(req, KV_ENOMEM, "out of memory");
    kv_req_complete(req, KV_ENOMEM);
    return 0;
  }
  f->parent = req;
  f->remaining = n;
  req->priv.store_data[3] = f;
  for (size_t i = 0; i < n; i++) {
    kv_req_t *sub = &f->subs[i];
    sub->data = f;
    sub->store = s;
    sub->op = single[req->op];
    sub->priv.cb = fanout_cb;
    sub->in = req->in;
    sub->in.key = req->in.keys[i].base;
    sub->in.key_len = req->in.keys[i].len;
    if (req->op == KV_OP_PUT_MANY) sub->in.value = req->in.values[i];
    sub->in.keys = NULL;
    sub->in.values = NULL;
    sub->in.n = 0;
    err = dispatch(s, sub);
    if (err < 0) {
      /* Refused: count it as answered with that error. */
      pending_add(s, sub);
      kv_req_complete(sub, err);
    }
  }
  return 0;
}
