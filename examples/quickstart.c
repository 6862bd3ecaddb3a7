/* kvio quickstart: put, get, delete, get again — on the libuv loop.
 *
 *   example-quickstart [URL]      (default: memory://)
 *
 * Each step starts the next from its callback; the loop ends when the store
 * is closed. */
#include <stdio.h>
#include <string.h>

#include <kvio.h>

static kv_store_t *store;
static kv_req_t req;
static int failed;

static void on_closed(kv_store_t *s) {
  (void)s;
  printf("closed\n");
}

static int check(kv_req_t *r, const char *what) {
  if (r->status < 0) {
    fprintf(stderr, "%s failed: %s: %s\n", what, kv_err_name(r->status),
            kv_req_errmsg(r));
    failed = 1;
    kv_req_cleanup(r);
    kv_store_close(store, on_closed);
    return -1;
  }
  return 0;
}

static void on_get_again(kv_req_t *r) {
  if (check(r, "get") == 0)
    printf("get user:123 after delete -> %s\n",
           r->found ? "still there?!" : "missing");
  failed |= r->found;
  kv_req_cleanup(r);
  kv_store_close(store, on_closed);
}

static void on_delete(kv_req_t *r) {
  if (check(r, "delete") != 0) return;
  printf("delete user:123 -> %s\n", r->found ? "removed" : "not found");
  kv_req_cleanup(r);
  kv_get(store, r, "users", "user:123", on_get_again);
}

static void on_get(kv_req_t *r) {
  if (check(r, "get") != 0) return;
  /* r->value is owned by the request until kv_req_cleanup(). */
  printf("get user:123 -> %.*s\n", (int)r->value.len, r->value.base);
  kv_req_cleanup(r);
  kv_delete(store, r, "users", "user:123", on_delete);
}

static void on_put(kv_req_t *r) {
  if (check(r, "put") != 0) return;
  printf("put user:123 (ttl 3600 s)\n");
  kv_req_cleanup(r);
  kv_get(store, r, "users", "user:123", on_get);
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : "memory://";
  const char *value = "{\"name\": \"Alice\"}";
  char err[256];
  uv_loop_t *loop = uv_default_loop();
  int rc = kv_open_ex(loop, url, &store, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "kv_open %s: %s: %s\n", url, kv_err_name(rc), err);
    return 1;
  }
  printf("opened %s\n", url);
  rc = kv_put(store, &req, "users", "user:123", value, strlen(value), 3600,
              on_put);
  if (rc < 0) {
    fprintf(stderr, "put: %s\n", kv_req_errmsg(&req));
    return 1;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 && !failed ? 0 : 1;
}
