/* libFuzzer target: the Redis store's handling of server replies
 * (src/stores/redis.c, redis_conn.c). hiredis's reader parses RESP; the
 * store builds the reply trees (redis_conn.c) and turns them into results
 * (redis.c: MGET arrays, SCAN pages, script and MULTI/EXEC replies, error
 * replies, AUTH / SELECT replies). Those are ours, and fuzzed here end to
 * end, through a real connection:
 *
 *   input = op selector, flags, reply bytes
 *
 * A fake server on a unix socket (fake-server.c: in this process, on the same
 * loop) accepts the store's connection and answers each write of the store with
 * the next segment of the reply bytes (segments are separated by "\n--\n", so
 * that a NOSCRIPT can be followed by the script's answer, a SCAN page by the
 * next), whatever they are; after the last segment, or when the store waits for
 * answers that the bytes do not hold, it hangs up. One request of the selected
 * kind (get, ttl, take, delete, put, put_if_absent, cas, incr with and without
 * TTL, get_many, ttl_many, put_many with and without TTL, delete_many, keys,
 * collections, destroy, destroy_collection, a raw command) runs against it,
 * with AUTH and SELECT in front when the flags say so. Then:
 *  - the callback runs exactly once; a failure has a message; nothing
 *    fails with KV_ETIMEDOUT once the server has hung up (the closed
 *    connection must fail what waits);
 *  - results are well formed: values NUL-terminated, one slot per key,
 *    listed names valid and at most `limit`, a raw reply tree complete;
 *  - the store closes and the loop ends with every handle closed (ASan and
 *    LSan watch the memory). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fake-server.h"
#include "internal.h"
#include "kvio/redis.h"

#pragma weak kv_redis_command
#pragma weak kv_redis_req_cleanup

static const char *sock_path;

typedef struct {
  uv_loop_t loop;
  fake_server_t server;
  kv_store_t *store;
  kv_req_t req;
  kv_redis_req_t raw;
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

static void check_reply(const kv_redis_reply_t *r, int depth) {
  if (r == NULL || depth > 10000) abort();
  switch (r->type) {
  case KV_REDIS_REPLY_STRING:
  case KV_REDIS_REPLY_STATUS:
  case KV_REDIS_REPLY_ERROR:
    if (r->str == NULL || r->str[r->len] != '\0') abort();
    break;
  case KV_REDIS_REPLY_ARRAY:
    if (r->elements > 0 && r->element == NULL) abort();
    for (size_t i = 0; i < r->elements; i++)
      check_reply(r->element[i], depth + 1);
    break;
  case KV_REDIS_REPLY_INTEGER:
  case KV_REDIS_REPLY_NIL:
    break;
  default:
    abort();
  }
}

static void on_raw(kv_redis_req_t *raw) {
  fx_t *fx = raw->data;
  if (raw->status == 0) {
    check_reply(raw->reply, 0);
  } else {
    const char *m = kv_redis_req_errmsg(raw);
    if ((raw->status == KV_ETIMEDOUT && fx->server.hung_up) || m == NULL ||
        m[0] == '\0')
      abort();
  }
  kv_redis_req_cleanup(raw);
  finish(fx);
}

static int setup(void) {
  (void)kv_schemes(); /* pulls in the stores (weak references above) */
  if (kv_redis_command == NULL) return -1;
  sock_path = fake_server_unix_path("redis");
  return 0;
}

#define NOPS 21

static int submit(fx_t *fx, int op) {
  static const char *const keys[] = {"k1", "k2", "k1", "k%:3"};
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
    return kv_cas(s, r, c, "k", NULL, 0, "new", 3, 5, on_done);
  case 9:
    return kv_incr(s, r, c, "n", 5, 0, on_done);
  case 10:
    return kv_incr(s, r, c, "n", -5, 60, on_done);
  case 11:
    return kv_get_many(s, r, c, keys, fx->nkeys, on_done);
  case 12:
    return kv_ttl_many(s, r, c, keys, fx->nkeys, on_done);
  case 13:
    return kv_put_many(s, r, c, keys, vals, fx->nkeys, 0, on_done);
  case 14:
    return kv_put_many(s, r, c, keys, vals, fx->nkeys, 10, on_done);
  case 15:
    return kv_delete_many(s, r, c, keys, fx->nkeys, on_done);
  case 16:
    return kv_keys(s, r, c, NULL, fx->limit, on_done);
  case 17:
    return kv_collections(s, r, NULL, fx->limit, on_done);
  case 18:
    return kv_destroy(s, r, on_done);
  case 19:
    return kv_destroy_collection(s, r, c, on_done);
  default: {
    const char *argv[] = {"GET", "x"};
    fx->raw.data = fx;
    return kv_redis_command(s, &fx->raw, 2, argv, NULL, on_raw);
  }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int state; /* 0: not set up; 1: ready; -1: no redis part */
  fx_t *fx;
  char url[512], err[512];
  int flags, rc;
  if (state == 0) state = setup() == 0 ? 1 : -1;
  if (state < 0 || size < 2) return 0;
  fx = calloc(1, sizeof *fx);
  if (fx == NULL) abort();
  fx->op = data[0] % NOPS;
  flags = data[1];
  fx->nkeys = 1 + (size_t)(flags >> 4 & 3);
  fx->limit = 1 + (size_t)(flags >> 6);
  if (uv_loop_init(&fx->loop) != 0) abort();
  fx->loop.data = fx;
  fake_server_start_unix(&fx->server, &fx->loop, sock_path,
                         (const char *)data + 2, size - 2);
  snprintf(url, sizeof url, "redis+unix://%s?timeout=1%s%s%s", sock_path,
           flags & 1 ? "&password=pw" : "", flags & 2 ? "&db=3" : "",
           flags & 4 ? "&prefix=app%3A" : "");
  if (kv_open_ex(&fx->loop, url, &fx->store, err, sizeof err) != 0) abort();
  rc = submit(fx, fx->op);
  if (rc != 0) { /* refused at submit: no callback will come */
    kv_req_cleanup(&fx->req);
    if (fx->op >= 20) kv_redis_req_cleanup(&fx->raw);
    finish(fx);
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  if (fx->calls != 1 || fx->closed != 1) abort();
  if (uv_loop_close(&fx->loop) != 0) abort();
  free(fx);
  return 0;
}
