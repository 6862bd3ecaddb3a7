/* The shims of kvio/redis.h (src/shims/redis.c) through the shared libkvio:
 * kv_redis_command, kv_redis_req_errmsg, kv_redis_req_cleanup and
 * kv_redis_reply_free forward into the redis module, loaded by kv_open.
 *   test-modules-redis redis://127.0.0.1:PORT   (tests/servers/with-redis.sh)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvio.h"
#include "kvio/redis.h"

static int fails;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      fails++;                                                        \
    }                                                                 \
  } while (0)

static int done;
static void on_reply(kv_redis_req_t *req) {
  done++;
}

int main(int argc, char **argv) {
  uv_loop_t loop;
  kv_store_t *s = NULL, *m = NULL;
  kv_redis_req_t req;
  const char *ping[] = {"PING", "hello"};
  const char *bogus[] = {"NOSUCHCOMMAND"};
  char err[512];
  kv_redis_reply_t *reply;
  if (argc != 2) return 2;
  uv_loop_init(&loop);
  /* Not a redis store: the shim loads the module, which says so. */
  CHECK(kv_open(&loop, "memory://", &m) == 0);
  memset(&req, 0, sizeof req);
  CHECK(kv_redis_command(m, &req, 2, ping, NULL, on_reply) == KV_EINVAL);
  CHECK(strstr(kv_redis_req_errmsg(&req), "redis") != NULL);
  kv_redis_req_cleanup(&req); /* the refusal's text */
  kv_store_close(m, NULL);

  if (kv_open_ex(&loop, argv[1], &s, err, sizeof err) != 0) {
    fprintf(stderr, "FAIL open %s: %s\n", argv[1], err);
    return 1;
  }
  memset(&req, 0, sizeof req);
  CHECK(kv_redis_command(s, &req, 2, ping, NULL, on_reply) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(done == 1);
  CHECK(req.status == 0);
  CHECK(req.reply != NULL && req.reply->type == KV_REDIS_REPLY_STRING &&
        req.reply->len == 5 && memcmp(req.reply->str, "hello", 5) == 0);
  /* A reply taken out of the request, freed by kv_redis_reply_free. */
  reply = req.reply;
  req.reply = NULL;
  kv_redis_reply_free(reply);
  kv_redis_req_cleanup(&req);

  memset(&req, 0, sizeof req);
  CHECK(kv_redis_command(s, &req, 1, bogus, NULL, on_reply) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(done == 2);
  CHECK(req.reply != NULL && req.reply->type == KV_REDIS_REPLY_ERROR);
  CHECK(kv_redis_req_errmsg(&req) != NULL);
  kv_redis_req_cleanup(&req);
  CHECK(req.reply == NULL);

  kv_store_close(s, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  printf("%s redis shims\n", fails ? "FAIL" : "PASS");
  return fails ? 1 : 0;
}
