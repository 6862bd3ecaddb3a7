/* The blocking facade: a private loop and a store on it. Each call submits
 * the async operation and runs the loop until that request is delivered —
 * one implementation of every operation, not two. */
#include <string.h>

#include "internal.h"

struct kv_sync_s {
  uv_loop_t loop;
  kv_store_t *store;
};

int kv_sync_open(const char *url, kv_sync_t **out, char *errbuf,
                 size_t errbuf_len) {
  kv_sync_t *s;
  int err;
  *out = NULL;
  s = kv_calloc(1, sizeof *s);
  if (s == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  err = uv_loop_init(&s->loop);
  if (err) {
    kv_free(s);
    return kv__errbuf(errbuf, errbuf_len, err, "uv_loop_init: %s",
                      uv_strerror(err));
  }
  err = kv_open_ex(&s->loop, url, &s->store, errbuf, errbuf_len);
  if (err) {
    uv_loop_close(&s->loop);
    kv_free(s);
    return err;
  }
  *out = s;
  return 0;
}

int kv_sync_init(kv_sync_t **out) {
  kv_sync_t *s;
  int err;
  *out = NULL;
  s = kv_calloc(1, sizeof *s);
  if (s == NULL) return KV_ENOMEM;
  err = uv_loop_init(&s->loop);
  if (err) {
    kv_free(s);
    return err;
  }
  *out = s;
  return 0;
}

void kv_sync_set_store(kv_sync_t *s, kv_store_t *store) {
  s->store = store;
}

int kv_sync_close(kv_sync_t *s) {
  int err;
  if (s == NULL) return 0;
  if (s->store) kv_store_close(s->store, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  err = uv_loop_close(&s->loop);
  kv_free(s);
  return err;
}

kv_store_t *kv_sync_store(kv_sync_t *s) {
  return s->store;
}

uv_loop_t *kv_sync_loop(kv_sync_t *s) {
  return &s->loop;
}

static void sync_done(kv_req_t *req) {
  (void)req; /* the state change is the signal */
}

/* A request is delivered when its callback has run: cb is sync_done and
 * the core marks the request before calling it. */
static int delivered(const kv_req_t *req) {
  return req->priv.state == KV__REQ_DELIVERED;
}

int kv_sync_wait(kv_sync_t *s, kv_req_t *req) {
  while (!delivered(req)) {
    /* Completions already queued on the top store are delivered at once;
     * anything else needs the loop (threadpool, inner stores, I/O). */
    if (kv__store_deliver_now(s->store)) continue;
    if (uv_run(&s->loop, UV_RUN_ONCE) == 0 && !delivered(req) &&
        s->store->core.queued == 0) {
      /* Nothing can complete it any more (a store bug). */
      return kv_req_set_error(req, KV_EBACKEND, "request can never complete");
    }
  }
  return req->status;
}

#define SYNC_CALL(call)          \
  do {                           \
    int err_ = (call);           \
    if (err_ < 0) {              \
      req->status = err_;        \
      return err_;               \
    }                            \
    return kv_sync_wait(s, req); \
  } while (0)

#define XX(NAME, name, member, cap, params, args)                             \
  int kv_sync_##name(kv_sync_t *s, kv_req_t *req KV_OP_UNPAREN params) {      \
    SYNC_CALL(kv_##name(s->store, req KV_OP_UNPAREN args, sync_done));        \
  }
KV_OP_MAP(XX)
#undef XX

int kv_sync_touch(kv_sync_t *s, kv_req_t *req, const char *c, const char *k,
                  double ttl) {
  SYNC_CALL(kv_touch(s->store, req, c, k, ttl, sync_done));
}
