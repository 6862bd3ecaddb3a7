/* libFuzzer target: the memcached store's handling of server replies
 * (src/stores/memcached.c, memcached_conn.c). The meta-protocol parser is
 * fuzzed alone by fuzz-memcached-reply; here replies go through the store, end
 * to end, over a real connection:
 *
 *   input = op selector, flags, reply bytes
 *
 * A fake server on 127.0.0.1 (fake-server.c: in this process, on the same loop)
 * accepts the store's connection and answers each write of the store with the
 * next segment of the reply bytes (segments are separated by "\n--\n": the
 * generation checks of a first batch are answered, then the commands sent
 * again), whatever they are; after the last segment, or when the store waits
 * for answers that the bytes do not hold, it hangs up. One request of the
 * selected kind (get, ttl, take, delete, put with and without TTL,
 * put_if_absent, cas, incr, get_many, ttl_many, put_many, delete_many, destroy,
 * destroy_collection) runs against it. Then:
 *  - the callback runs exactly once; a failure has a message; nothing
 *    fails with KV_ETIMEDOUT once the server has hung up (the closed
 *    connection must fail what waits);
 *  - results are well formed: values NUL-terminated, one slot per key,
 *    TTLs positive and finite, delete_many's count at most the keys;
 *  - the store closes and the loop ends with every handle closed (ASan and
 *    LSan watch the memory). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fake-server.h"
#include "internal.h"

typedef struct {
  uv_loop_t loop;
  fake_server_t server;
  kv_store_t *store;
  kv_req_t req;
  int op;
  size_t nkeys, limit;
  int calls, closed;
} fx_t;

static void store_closed(kv_store_t *s) {
  fx_t *fx = kv_store_loop(s)->data;
  fx->closed++;
  fake_server_stop(&fx->server);
}

static void finish(fx_t *fx) {
  if (++fx->calls != 1) abort();
  kv_store_close(fx->store, store_closed);
}

static void on_done(kv_req_t *req) {
  fx_t *fx = req->data;
  fake_server_check_done(&fx->server, req, fx->op, fx->nkeys, fx->limit);
  kv_req_cleanup(req);
  finish(fx);
}

#define NOPS 15

static int submit(fx_t *fx, int op) {
  static const char *const keys[] = {
      "k1", "k2", "k1",
      "a key with spaces, so hashed by the store (memcached keys have none)"};
  static char v1[] = "v1", v2[] = "v2", v3[] = "v3", v4[] = "v4";
  static const kv_buf_t vals[] = {{v1, 2}, {v2, 2}, {v3, 2}, {v4, 2}};
  kv_store_t *s = fx->store;
  kv_req_t *r = &fx->req;
  const char *c = "c:1";
  r->data = fx;
  switch (op) {
  case 0:
    return kv_get(s, r, c, "k", on_done);
  case 1:
    return kv_ttl(s, r, c, "k", on_done);
  case 2:
    return kv_take(s, r, c, "k", on_done);
  case 3:
    return kv_delete(s, r, c, "k", on_done);
  case 4:
    return kv_put(s, r, c, "k", "v", 1, 0, on_done);
  case 5:
    return kv_put(s, r, c, "k", "v", 1, 30, on_done);
  case 6:
    return kv_put_if_absent(s, r, c, "k", "v", 1, 0, on_done);
  case 7:
    return kv_cas(s, r, c, "k", "old", 3, "new", 3, 0, on_done);
  case 8:
    return kv_incr(s, r, c, "n", 5, 0, on_done);
  case 9:
    return kv_get_many(s, r, c, keys, fx->nkeys, on_done);
  case 10:
    return kv_ttl_many(s, r, c, keys, fx->nkeys, on_done);
  case 11:
    return kv_put_many(s, r, c, keys, vals, fx->nkeys, 10, on_done);
  case 12:
    return kv_delete_many(s, r, c, keys, fx->nkeys, on_done);
  case 13:
    return kv_destroy(s, r, on_done);
  default:
    return kv_destroy_collection(s, r, c, on_done);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int state; /* 0: not set up; 1: ready; -1: no memcached part */
  fx_t *fx;
  char url[512], err[512];
  int flags, rc, port;
  if (state == 0)
    state = kv_schemes() && strstr(kv_schemes(), "memcached") ? 1 : -1;
  if (state < 0 || size < 2) return 0;
  fx = calloc(1, sizeof *fx);
  if (fx == NULL) abort();
  fx->op = data[0] % NOPS;
  flags = data[1];
  fx->nkeys = 1 + (size_t)(flags >> 4 & 3);
  if (uv_loop_init(&fx->loop) != 0) abort();
  fx->loop.data = fx;
  port = fake_server_start_tcp(&fx->server, &fx->loop, (const char *)data + 2,
                               size - 2);
  snprintf(url, sizeof url, "memcached://127.0.0.1:%d?timeout=1000%s", port,
           flags & 4 ? "&prefix=app" : "");
  if (kv_open_ex(&fx->loop, url, &fx->store, err, sizeof err) != 0) abort();
  rc = submit(fx, fx->op);
  if (rc != 0) { /* refused at submit: no callback will come */
    kv_req_cleanup(&fx->req);
    finish(fx);
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  if (fx->calls != 1 || fx->closed != 1) abort();
  if (uv_loop_close(&fx->loop) != 0) abort();
  free(fx);
  return 0;
}
