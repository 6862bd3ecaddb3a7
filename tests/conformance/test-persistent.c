/* Cases 45-47: persistent stores (CONFORMANCE.md, "Persistent stores"). They
 * run when the store announces KV_CAP_PERSISTENT (46: and KV_CAP_SHARED) and
 * are skipped, with the reason, otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conformance.h"

#define NBULK 50

void c45_persistent_reopen(void **state) {
  conf_t *fx = FX(state);
  const char *bulk_keys[NBULK];
  kv_buf_t bulk_vals[NBULK];
  char names[NBULK][16];
  char *big;
  size_t big_len = 1u << 20;
  conf_req_t r;
  size_t i;

  if (!HAS(fx, KV_CAP_PERSISTENT))
    SKIP_BECAUSE("%s does not announce KV_CAP_PERSISTENT",
                 kv_store_name(fx->store));
  big = malloc(big_len);
  assert_non_null(big);
  for (i = 0; i < big_len; i++)
    big[i] = (char)(i * 31 + (i >> 9));
  for (i = 0; i < NBULK; i++) {
    snprintf(names[i], sizeof(names[i]), "bulk_%02zu", i);
    bulk_keys[i] = names[i];
    bulk_vals[i].base = names[i];
    bulk_vals[i].len = strlen(names[i]);
  }

  PUT(fx, COLL, "forever", V);
  PUT_TTL(fx, COLL, "hundred", V2, 100);
  PUT_TTL(fx, "short", "expiring", V, 0.3);
  PUT(fx, COLL, "deleted", V);
  CHECK_INT(DELETE(fx, COLL, "deleted"), 1);
  PUT(fx, NULL, "default", "in the default collection");
  PUT_BYTES(fx, COLL, "big", big, big_len);
  CHECK_OK(run_put_many(fx, &r, "bulk", bulk_keys, bulk_vals, NBULK, 0));
  kv_req_cleanup(&r.req);

  conf_close(fx);
  conf_sleep_ms(fx, 600);
  conf_open(fx);

  EXPECT_VALUE(fx, COLL, "forever", V);
  CHECK_OK(run_ttl(fx, &r, COLL, "forever"));
  CHECK_INT(r.req.found, 1);
  CHECK_TRUE(r.req.ttl == KV_TTL_NONE);
  kv_req_cleanup(&r.req);
  /* The remaining TTL, not a fresh one: 0.6 s have passed. */
  CHECK_OK(run_ttl(fx, &r, COLL, "hundred"));
  CHECK_INT(r.req.found, 1);
  CHECK_BYTES(r.req.value, V2, 6);
  if (!(r.req.ttl >= 90 && r.req.ttl <= 99.45))
    conf_fail_at(__FILE__, __LINE__,
                 "after reopening, ttl is %.3f, expected within [90, 99.45]",
                 r.req.ttl);
  kv_req_cleanup(&r.req);
  EXPECT_MISSING(fx, "short", "expiring");
  EXPECT_MISSING(fx, COLL, "deleted");
  EXPECT_VALUE(fx, NULL, "default", "in the default collection");
  EXPECT_BYTES(fx, COLL, "big", big, big_len);
  CHECK_OK(run_get_many(fx, &r, "bulk", bulk_keys, NBULK));
  for (i = 0; i < NBULK; i++) {
    CHECK_INT(r.req.results[i].found, 1);
    CHECK_BYTES(r.req.results[i].value, names[i], strlen(names[i]));
  }
  kv_req_cleanup(&r.req);
  if (HAS(fx, KV_CAP_ENUMERATE)) {
    char **listed;
    size_t n;

    listed = LIST_KEYS(fx, "bulk", 7, &n);
    CHECK_INT(n, NBULK);
    names_free(listed, n);
    listed = LIST_KEYS(fx, COLL, 0, &n);
    CHECK_INT(n, 3); /* forever, hundred, big */
    names_free(listed, n);
    listed = LIST_COLLECTIONS(fx, 0, &n);
    CHECK_INT(names_count(listed, n, COLL), 1);
    CHECK_INT(names_count(listed, n, "bulk"), 1);
    CHECK_INT(names_count(listed, n, KV_DEFAULT_COLLECTION), 1);
    names_free(listed, n);
  }
  /* And the reopened store takes writes as usual. */
  PUT(fx, COLL, "forever", V2);
  EXPECT_VALUE(fx, COLL, "forever", V2);
  free(big);
}

/* ---- Case 46: two processes at once -----------------------------------------
 */

enum { ROUNDS = 10, PER_ROUND = 20 };

typedef struct child_s {
  int pending;
  int failed;
} child_t;

static void child_cb(kv_req_t *req) {
  child_t *c = req->data;

  c->pending--;
  if (req->status != 0) {
    fprintf(stderr, "child %d: op %d: %s\n", (int)getpid(), (int)req->op,
            kv_err_name(req->status));
    c->failed++;
  }
}

static void child_close_cb(kv_store_t *store) {
  (void)store;
}

/* Write ROUNDS x PER_ROUND keys "p<id>_<n>" (each round in flight at once),
 * read them all back, and exit 0 — or 1 on any failure. */
static void __attribute__((noreturn)) run_writer(const char *url, int id) {
  uv_loop_t loop;
  kv_store_t *store = NULL;
  kv_req_t reqs[PER_ROUND];
  char keys[PER_ROUND][32];
  child_t c = {0, 0};
  char errbuf[256] = "";
  int round;
  int i;

  alarm(60); /* a hung child fails the case instead of hanging it */
  if (uv_loop_init(&loop) != 0) _exit(1);
  if (kv_open_ex(&loop, url, &store, errbuf, sizeof(errbuf)) != 0) {
    fprintf(stderr, "child %d: open %s: %s\n", id, url, errbuf);
    _exit(1);
  }
  for (round = 0; round < ROUNDS * 2; round++) {
    int reading = round >= ROUNDS;
    memset(reqs, 0, sizeof(reqs));
    for (i = 0; i < PER_ROUND; i++) {
      int rc;
      snprintf(keys[i], sizeof(keys[i]), "p%d_%03d", id,
               (round % ROUNDS) * PER_ROUND + i);
      reqs[i].data = &c;
      rc = reading ? kv_get(store, &reqs[i], COLL, keys[i], child_cb)
                   : kv_put(store, &reqs[i], COLL, keys[i], keys[i],
                            strlen(keys[i]), 0, child_cb);
      if (rc != 0) _exit(1);
      c.pending++;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (c.pending != 0 || c.failed != 0) _exit(1);
    for (i = 0; i < PER_ROUND; i++) {
      if (reading && (!reqs[i].found || reqs[i].value.len != strlen(keys[i]) ||
                      memcmp(reqs[i].value.base, keys[i], reqs[i].value.len))) {
        fprintf(stderr, "child %d: lost its own write %s\n", id, keys[i]);
        _exit(1);
      }
      kv_req_cleanup(&reqs[i]);
    }
  }
  kv_store_close(store, child_close_cb);
  uv_run(&loop, UV_RUN_DEFAULT);
  _exit(uv_loop_close(&loop) == 0 ? 0 : 1);
}

void c46_persistent_two_processes(void **state) {
  conf_t *fx = FX(state);
  pid_t pids[2];
  char **listed;
  char key[32];
  size_t n;
  int id;
  int i;

  if (!HAS(fx, KV_CAP_PERSISTENT) || !HAS(fx, KV_CAP_SHARED))
    SKIP_BECAUSE("%s does not announce KV_CAP_PERSISTENT and KV_CAP_SHARED",
                 kv_store_name(fx->store));
  if (getenv("KVIO_TEST_NO_FORK") != NULL)
    SKIP_BECAUSE("KVIO_TEST_NO_FORK is set (ThreadSanitizer cannot fork)");
  PUT(fx, COLL, "parent", V);
  /* The parent's store is closed while the children run, so no backend
   * handle crosses a fork(). */
  conf_close(fx);
  fflush(NULL);
  for (id = 0; id < 2; id++) {
    pids[id] = fork();
    CHECK_TRUE(pids[id] >= 0);
    if (pids[id] == 0) run_writer(fx->url, id);
  }
  for (id = 0; id < 2; id++) {
    int status = 0;
    CHECK_INT(waitpid(pids[id], &status, 0), pids[id]);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      conf_fail_at(__FILE__, __LINE__, "writer %d failed (status 0x%x)", id,
                   status);
  }
  conf_open(fx);
  EXPECT_VALUE(fx, COLL, "parent", V);
  for (id = 0; id < 2; id++) {
    for (i = 0; i < ROUNDS * PER_ROUND; i++) {
      snprintf(key, sizeof(key), "p%d_%03d", id, i);
      EXPECT_VALUE(fx, COLL, key, key);
    }
  }
  if (HAS(fx, KV_CAP_ENUMERATE)) {
    listed = LIST_KEYS(fx, COLL, 0, &n);
    CHECK_INT(n, 1 + 2 * ROUNDS * PER_ROUND);
    names_free(listed, n);
  }
}

void c47_persistent_corrupt_file(void **state) {
  conf_t *fx = FX(state);

  if (!HAS(fx, KV_CAP_PERSISTENT))
    SKIP_BECAUSE("%s does not announce KV_CAP_PERSISTENT",
                 kv_store_name(fx->store));
  /* What a corrupt or truncated file looks like depends on the format: the
   * generic suite cannot forge one. Each persistent store tests it in its
   * own unit tests (tests/unit/test-<store>.c). */
  SKIP_BECAUSE("corrupt-file detection is store-specific; see the %s store's "
               "unit tests",
               kv_store_name(fx->store));
}
