/* A framework author's view: a rate limiter and a session cache written
 * against any kv_store_t. The code does not know (or care) which backend it
 * got; the user chose it by URL.
 *
 *   example-framework [URL]      (default: memory://)
 */
#include <stdio.h>
#include <string.h>

#include <kvio.h>

/* ---- The "framework": works with any store ------------------------------ */

typedef struct {
  kv_store_t *store;
  kv_req_t req;
  int64_t limit;
  void (*done)(int allowed, void *arg);
  void *arg;
} rate_check_t;

static void on_incr(kv_req_t *req) {
  rate_check_t *rc = req->data;
  int allowed = req->status == 0 && req->number <= rc->limit;
  kv_req_cleanup(req);
  rc->done(allowed, rc->arg);
}

/* Count a hit for `client` in a one-minute window; answer allowed or not.
 * Uses the atomic segment when the store has it. */
static int rate_check(kv_store_t *store, rate_check_t *rc, const char *client,
                      int64_t limit, void (*done)(int, void *), void *arg) {
  if (!(kv_store_caps(store) & KV_CAP_ATOMIC)) return KV_ENOTSUP;
  rc->store = store;
  rc->limit = limit;
  rc->done = done;
  rc->arg = arg;
  rc->req.data = rc;
  return kv_incr(store, &rc->req, "ratelimit", client, 1, 60.0, on_incr);
}

/* ---- The application ------------------------------------------------------
 */

static kv_store_t *store;
static rate_check_t checks[5];
static int answered, allowed_count;

static void on_closed(kv_store_t *s) {
  (void)s;
}

static void on_rate(int allowed, void *arg) {
  printf("request %ld: %s\n", (long)(intptr_t)arg,
         allowed ? "allowed" : "rate limited");
  allowed_count += allowed;
  if (++answered == 5) kv_store_close(store, on_closed);
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : "memory://";
  char err[256];
  uv_loop_t *loop = uv_default_loop();
  int rc = kv_open_ex(loop, url, &store, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "kv_open %s: %s: %s\n", url, kv_err_name(rc), err);
    return 1;
  }
  printf("store '%s' (caps 0x%x): allowing 3 requests per minute\n",
         kv_store_name(store), kv_store_caps(store));
  for (intptr_t i = 0; i < 5; i++) {
    rc = rate_check(store, &checks[i], "client-42", 3, on_rate, (void *)i);
    if (rc < 0) {
      fprintf(stderr, "rate_check: %s\n", kv_strerror(rc));
      kv_store_close(store, on_closed);
      break;
    }
  }
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 && allowed_count == 3 ? 0 : 1;
}
