/* RedIO's optimistic-locking example with kvio: invert the capitalisation
 * of the Redis key "foo" ("default VALUE" when it does not exist), unless
 * another client changes it meanwhile, in which case try again.
 *
 *   example-redis-swapcase [URL]     (default: redis://127.0.0.1:6379/0)
 *
 * kv_redis_transaction() WATCHes foo on a leased connection, reads it,
 * calls swapcase() with its value, and sends MULTI, the SET swapcase()
 * queued, and EXEC; when EXEC reports that foo changed, it starts again
 * (at most 16 times, then KV_ECONFLICT). Prints the new value. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvio.h>

#ifdef KV_HAVE_REDIS
#include <kvio/redis.h>

static kv_store_t *store;
static int failed;

static void on_closed(kv_store_t *s) {
  (void)s;
}

/* Read foo, queue SET foo <swapped>. */
static int swapcase(kv_redis_tx_t *tx, const kv_redis_reply_t *const *values) {
  const kv_redis_reply_t *foo = values[0];
  const char *v = "default VALUE";
  size_t len = strlen(v);
  char *swapped;
  const char *argv[3];
  size_t argl[3];
  int rc;
  if (foo->type == KV_REDIS_REPLY_STRING) v = foo->str, len = foo->len;
  swapped = malloc(len + 1);
  if (swapped == NULL) return KV_ENOMEM;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)v[i];
    swapped[i] = (char)(islower(c) ? toupper(c) : isupper(c) ? tolower(c) : c);
  }
  swapped[len] = '\0';
  argv[0] = "SET", argl[0] = 3;
  argv[1] = "foo", argl[1] = 3;
  argv[2] = swapped, argl[2] = len;
  rc = kv_redis_tx_queue(tx, 3, argv, argl);
  printf("foo: \"%.*s\" -> \"%s\"\n", (int)len, v, swapped);
  free(swapped);
  return rc;
}

static void on_done(kv_redis_tx_t *tx) {
  if (tx->status != 0) {
    fprintf(stderr, "transaction failed: %s: %s\n", kv_err_name(tx->status),
            kv_redis_tx_errmsg(tx));
    failed = 1;
  } else {
    printf("done after %d attempt%s\n", tx->attempts,
           tx->attempts == 1 ? "" : "s");
  }
  kv_redis_tx_cleanup(tx);
  kv_store_close(store, on_closed);
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0";
  const char *keys[] = {"foo"};
  kv_redis_tx_t tx;
  char err[256];
  uv_loop_t *loop = uv_default_loop();
  int rc = kv_open_ex(loop, url, &store, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "%s: %s: %s\n", url, kv_err_name(rc), err);
    return 1;
  }
  memset(&tx, 0, sizeof tx);
  rc = kv_redis_transaction(store, &tx, 1, keys, 0, swapcase, on_done);
  if (rc != 0) {
    fprintf(stderr, "%s: %s\n", kv_err_name(rc), kv_redis_tx_errmsg(&tx));
    kv_redis_tx_cleanup(&tx);
    kv_store_close(store, on_closed);
    failed = 1;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return failed;
}

#else
int main(void) {
  fprintf(stderr, "kvio was built without Redis\n");
  return 77;
}
#endif
