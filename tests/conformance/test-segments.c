/* Cases 33-37: the optional segments (CONFORMANCE.md, "Optional segments").
 * Each runs where the store announces the capability and otherwise checks
 * that every op of the segment fails at submit with KV_ENOTSUP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conformance.h"

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* names (n) must be exactly expected (m), each once, in any order. */
static void check_same_names(char **names, size_t n, char **expected, size_t m,
                             const char *what, int line) {
  size_t i;

  if (n != m) {
    names_free(names, n);
    conf_fail_at(__FILE__, line, "%s listed %zu names, expected %zu", what, n,
                 m);
  }
  qsort(names, n, sizeof(*names), cmp_str);
  qsort(expected, m, sizeof(*expected), cmp_str);
  for (i = 0; i < n; i++) {
    if (strcmp(names[i], expected[i]) != 0) {
      char got[128];
      char want[128];
      snprintf(got, sizeof(got), "%s", names[i]);
      snprintf(want, sizeof(want), "%s", expected[i]);
      names_free(names, n);
      conf_fail_at(__FILE__, line,
                   "%s: sorted name %zu is \"%s\", expected \"%s\" (a name "
                   "listed twice, or a wrong one)",
                   what, i, got, want);
    }
  }
}

static char **make_names(const char *prefix, size_t n) {
  char **names = calloc(n + 1, sizeof(*names));
  size_t i;

  assert_non_null(names);
  for (i = 0; i < n; i++) {
    names[i] = malloc(64);
    assert_non_null(names[i]);
    snprintf(names[i], 64, "%s_%04zu", prefix, i);
  }
  return names;
}

static void put_names(conf_t *fx, const char *c, char **keys, size_t n) {
  kv_buf_t *vals = calloc(n, sizeof(*vals));
  conf_req_t r;
  size_t i;

  assert_non_null(vals);
  for (i = 0; i < n; i++) {
    vals[i].base = keys[i];
    vals[i].len = strlen(keys[i]);
  }
  CHECK_OK(run_put_many(fx, &r, c, (const char *const *)keys, vals, n, 0));
  kv_req_cleanup(&r.req);
  free(vals);
}

static void enumerate_not_supported(conf_t *fx) {
  conf_req_t r;

  CHECK_STATUS(run_keys(fx, &r, COLL, NULL, 0), KV_ENOTSUP);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_keys(fx, &r, COLL, NULL, 7), KV_ENOTSUP);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_collections(fx, &r, NULL, 0), KV_ENOTSUP);
  kv_req_cleanup(&r.req);
}

void c33_keys_paged(void **state) {
  conf_t *fx = FX(state);
  size_t nkeys = 1000;
  char **keys;
  char **other;
  char **names;
  size_t n;
  conf_req_t r;

  if (!HAS(fx, KV_CAP_ENUMERATE)) {
    enumerate_not_supported(fx);
    return;
  }
  if (fx->max_entries > 0 && (size_t)fx->max_entries < nkeys + 100) {
    nkeys = (size_t)fx->max_entries * 4 / 5;
    print_message("[   NOTE   ] %s: max_entries=%lld, paging over %zu keys "
                  "instead of 1000\n",
                  conf_url, (long long)fx->max_entries, nkeys);
  }
  keys = make_names("key", nkeys);
  other = make_names("other", 5);
  put_names(fx, COLL, keys, nkeys);
  put_names(fx, "other_coll", other, 5);
  PUT(fx, COLL, "deleted", V);
  CHECK_INT(DELETE(fx, COLL, "deleted"), fx->retains);

  /* Page size 7: every key exactly once, no page over 7. */
  names = LIST_KEYS(fx, COLL, 7, &n);
  check_same_names(names, n, keys, fx->retains ? nkeys : 0, "keys(limit 7)",
                   __LINE__);
  names_free(names, n);
  /* The default page size lists them too. */
  names = LIST_KEYS(fx, COLL, 0, &n);
  check_same_names(names, n, keys, fx->retains ? nkeys : 0, "keys(limit 0)",
                   __LINE__);
  names_free(names, n);
  /* One per page. */
  names = LIST_KEYS(fx, "other_coll", 1, &n);
  check_same_names(names, n, other, fx->retains ? 5 : 0, "keys(other, limit 1)",
                   __LINE__);
  names_free(names, n);
  /* Long names (hashed by backends with short key limits) page the same. */
  {
    char *longk[20];
    char **expect = calloc(21, sizeof(*expect));
    size_t i;

    assert_non_null(expect);
    for (i = 0; i < 20; i++) {
      size_t len = 1000 + i * 150;
      longk[i] = malloc(len + 1);
      assert_non_null(longk[i]);
      memset(longk[i], 'k', len);
      snprintf(longk[i], len + 1, "%02zu", i);
      longk[i][2] = 'k';
      longk[i][len] = '\0';
      expect[i] = longk[i];
      PUT(fx, "long_keys", longk[i], V);
    }
    names = LIST_KEYS(fx, "long_keys", 3, &n);
    check_same_names(names, n, expect, fx->retains ? 20 : 0,
                     "keys(long_keys, limit 3)", __LINE__);
    names_free(names, n);
    for (i = 0; i < 20; i++)
      free(longk[i]);
    free(expect);
  }
  /* An unknown collection: one empty, final page. */
  CHECK_OK(run_keys(fx, &r, "never_written", NULL, 7));
  CHECK_INT(r.req.nnames, 0);
  CHECK_TRUE(r.req.cursor == NULL);
  kv_req_cleanup(&r.req);
  names_free(keys, nkeys);
  names_free(other, 5);
}

void c34_collections_paged(void **state) {
  conf_t *fx = FX(state);
  char **colls;
  char **names;
  size_t n;
  size_t i;

  if (!HAS(fx, KV_CAP_ENUMERATE)) {
    enumerate_not_supported(fx);
    return;
  }
  names = LIST_COLLECTIONS(fx, 7, &n);
  CHECK_INT(n, 0); /* a fresh store has none */
  names_free(names, n);
  colls = make_names("collection", 30);
  for (i = 0; i < 30; i++)
    PUT(fx, colls[i], K1, V);
  PUT(fx, colls[0], K2, V); /* two keys: still one collection */
  names = LIST_COLLECTIONS(fx, 7, &n);
  check_same_names(names, n, colls, fx->retains ? 30 : 0,
                   "collections(limit 7)", __LINE__);
  names_free(names, n);
  names = LIST_COLLECTIONS(fx, 1, &n);
  check_same_names(names, n, colls, fx->retains ? 30 : 0,
                   "collections(limit 1)", __LINE__);
  names_free(names, n);
  /* The default collection is listed by its name. */
  PUT(fx, NULL, K1, V);
  names = LIST_COLLECTIONS(fx, 0, &n);
  CHECK_INT(n, fx->retains ? 31 : 0);
  CHECK_INT(names_count(names, n, KV_DEFAULT_COLLECTION), fx->retains);
  names_free(names, n);
  /* Long collection names page the same. */
  {
    char *longc[10];

    for (i = 0; i < 10; i++) {
      size_t len = 2000 + i * 200;
      longc[i] = malloc(len + 1);
      assert_non_null(longc[i]);
      memset(longc[i], 'c', len);
      longc[i][0] = (char)('a' + i);
      longc[i][len] = '\0';
      PUT(fx, longc[i], K1, V);
    }
    names = LIST_COLLECTIONS(fx, 3, &n);
    CHECK_INT(n, fx->retains ? 41 : 0);
    for (i = 0; fx->retains && i < 10; i++)
      CHECK_INT(names_count(names, n, longc[i]), 1);
    names_free(names, n);
    for (i = 0; i < 10; i++)
      free(longc[i]);
  }
  names_free(colls, 30);
}

void c35_destroy_and_destroy_collection(void **state) {
  conf_t *fx = FX(state);
  conf_req_t r;
  char **names;
  size_t n;

  if (!HAS(fx, KV_CAP_DESTROY)) {
    CHECK_STATUS(run_destroy(fx, &r), KV_ENOTSUP);
    kv_req_cleanup(&r.req);
    CHECK_STATUS(run_destroy_collection(fx, &r, COLL), KV_ENOTSUP);
    kv_req_cleanup(&r.req);
    return;
  }
  PUT(fx, "doomed", K1, V);
  PUT(fx, "doomed", K2, V);
  PUT(fx, "kept", K1, V2);
  PUT(fx, NULL, K1, V2);
  PUT(fx, "doomed_too", K1, V2); /* a name with the other as prefix */

  CHECK_OK(run_destroy_collection(fx, &r, "doomed"));
  kv_req_cleanup(&r.req);
  EXPECT_MISSING(fx, "doomed", K1);
  EXPECT_MISSING(fx, "doomed", K2);
  EXPECT_READ(fx, "kept", K1, V2);
  EXPECT_READ(fx, NULL, K1, V2);
  EXPECT_READ(fx, "doomed_too", K1, V2);
  if (HAS(fx, KV_CAP_ENUMERATE)) {
    names = LIST_KEYS(fx, "doomed", 0, &n);
    CHECK_INT(n, 0);
    names_free(names, n);
    names = LIST_COLLECTIONS(fx, 0, &n);
    CHECK_INT(names_count(names, n, "doomed"), 0);
    CHECK_INT(names_count(names, n, "kept"), fx->retains);
    names_free(names, n);
  }
  /* Destroying a collection that does not exist is fine. */
  CHECK_OK(run_destroy_collection(fx, &r, "never_written"));
  kv_req_cleanup(&r.req);
  /* The collection can be used again. */
  PUT(fx, "doomed", K1, "again");
  EXPECT_READ(fx, "doomed", K1, "again");

  CHECK_OK(run_destroy(fx, &r));
  kv_req_cleanup(&r.req);
  EXPECT_MISSING(fx, "doomed", K1);
  EXPECT_MISSING(fx, "kept", K1);
  EXPECT_MISSING(fx, NULL, K1);
  EXPECT_MISSING(fx, "doomed_too", K1);
  if (HAS(fx, KV_CAP_ENUMERATE)) {
    names = LIST_COLLECTIONS(fx, 0, &n);
    CHECK_INT(n, 0);
    names_free(names, n);
  }
  /* The store stays usable, and destroy on an empty store is fine. */
  PUT(fx, "kept", K1, "after destroy");
  EXPECT_READ(fx, "kept", K1, "after destroy");
  CHECK_OK(run_destroy(fx, &r));
  kv_req_cleanup(&r.req);
  CHECK_OK(run_destroy(fx, &r));
  kv_req_cleanup(&r.req);
  PUT(fx, "kept", K1, V);
  EXPECT_READ(fx, "kept", K1, V);
}

static void atomic_not_supported(conf_t *fx) {
  conf_req_t r;

  CHECK_STATUS(run_put_if_absent(fx, &r, COLL, K1, V, 4, 0), KV_ENOTSUP);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_cas(fx, &r, COLL, K1, NULL, 0, V, 4, 0), KV_ENOTSUP);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_incr(fx, &r, COLL, K1, 1, 0), KV_ENOTSUP);
  kv_req_cleanup(&r.req);
  CHECK_STATUS(run_take(fx, &r, COLL, K1), KV_ENOTSUP);
  kv_req_cleanup(&r.req);
  EXPECT_MISSING(fx, COLL, K1);
}

void c36_atomic_ops(void **state) {
  conf_t *fx = FX(state);
  conf_req_t r;
  int st;

  if (!HAS(fx, KV_CAP_ATOMIC)) {
    atomic_not_supported(fx);
    return;
  }
  /* put_if_absent: stored, then not stored (the first value stays). */
  CHECK_OK(run_put_if_absent(fx, &r, COLL, K1, V, 4, 0));
  CHECK_INT(r.req.found, 1);
  kv_req_cleanup(&r.req);
  CHECK_OK(run_put_if_absent(fx, &r, COLL, K1, V2, 6, 0));
  CHECK_INT(r.req.found, fx->retains ? 0 : 1);
  kv_req_cleanup(&r.req);
  EXPECT_READ(fx, COLL, K1, V);

  /* compare_and_swap: right expected value swaps, wrong one conflicts. */
  st = run_cas(fx, &r, COLL, K1, V, 4, V2, 6, 0);
  if (fx->retains) {
    CHECK_OK(st);
    CHECK_INT(r.req.found, 1);
  } else {
    CHECK_STATUS(st, KV_ECONFLICT); /* null: nothing is there to match */
  }
  kv_req_cleanup(&r.req);
  EXPECT_READ(fx, COLL, K1, V2);
  CHECK_STATUS(run_cas(fx, &r, COLL, K1, "wrong", 5, "x", 1, 0), KV_ECONFLICT);
  kv_req_cleanup(&r.req);
  EXPECT_READ(fx, COLL, K1, V2);
  /* "absent" expected: conflicts on a present key, creates an absent one. */
  st = run_cas(fx, &r, COLL, K1, NULL, 0, "x", 1, 0);
  if (fx->retains)
    CHECK_STATUS(st, KV_ECONFLICT);
  else
    CHECK_OK(st);
  kv_req_cleanup(&r.req);
  CHECK_OK(run_cas(fx, &r, COLL, K2, NULL, 0, "created", 7, 0));
  CHECK_INT(r.req.found, 1);
  kv_req_cleanup(&r.req);
  EXPECT_READ(fx, COLL, K2, "created");
  /* An empty expected value is a value, not "absent". */
  CHECK_STATUS(run_cas(fx, &r, COLL, K3, "", 0, "y", 1, 0), KV_ECONFLICT);
  kv_req_cleanup(&r.req);
  EXPECT_MISSING(fx, COLL, K3);

  /* incr: from absent → delta, again → 2·delta; non-integer → KV_EINVAL. */
  CHECK_OK(run_incr(fx, &r, COLL, "counter", 5, 0));
  CHECK_INT(r.req.number, 5);
  kv_req_cleanup(&r.req);
  CHECK_OK(run_incr(fx, &r, COLL, "counter", 5, 0));
  CHECK_INT(r.req.number, fx->retains ? 10 : 5);
  kv_req_cleanup(&r.req);
  EXPECT_READ(fx, COLL, "counter", "10");
  CHECK_OK(run_incr(fx, &r, COLL, "negative", -3, 0));
  CHECK_INT(r.req.number, -3);
  kv_req_cleanup(&r.req);
  EXPECT_READ(fx, COLL, "negative", "-3");
  PUT(fx, COLL, "text", "not a number");
  st = run_incr(fx, &r, COLL, "text", 1, 0);
  CHECK_STATUS(st, fx->retains ? KV_EINVAL : 0);
  kv_req_cleanup(&r.req);
  EXPECT_READ(fx, COLL, "text", "not a number");
  PUT(fx, COLL, "float", "1.5");
  CHECK_STATUS(run_incr(fx, &r, COLL, "float", 1, 0),
               fx->retains ? KV_EINVAL : 0);
  kv_req_cleanup(&r.req);
  PUT(fx, COLL, "max", "9223372036854775807");
  CHECK_STATUS(run_incr(fx, &r, COLL, "max", 1, 0),
               fx->retains ? KV_EINVAL : 0); /* overflow */
  kv_req_cleanup(&r.req);
  EXPECT_READ(fx, COLL, "max", "9223372036854775807");

  /* TTLs: incr keeps an existing entry's TTL and gives a new one `ttl`;
   * cas and put_if_absent write theirs. */
  if (fx->retains) {
    double t;

    PUT_TTL(fx, COLL, "ttl_counter", "5", 100);
    CHECK_OK(run_incr(fx, &r, COLL, "ttl_counter", 1, 0));
    CHECK_INT(r.req.number, 6);
    kv_req_cleanup(&r.req);
    CHECK_OK(run_ttl(fx, &r, COLL, "ttl_counter"));
    t = r.req.ttl;
    kv_req_cleanup(&r.req);
    if (!(t >= 98 && t <= 100))
      conf_fail_at(__FILE__, __LINE__, "incr changed the TTL to %g", t);
    CHECK_OK(run_incr(fx, &r, COLL, "new_ttl_counter", 1, 50));
    kv_req_cleanup(&r.req);
    CHECK_OK(run_ttl(fx, &r, COLL, "new_ttl_counter"));
    t = r.req.ttl;
    kv_req_cleanup(&r.req);
    if (!(t >= 48 && t <= 50))
      conf_fail_at(__FILE__, __LINE__, "incr created a TTL of %g, not 50", t);
    CHECK_OK(run_cas(fx, &r, COLL, "ttl_counter", "6", 1, "7", 1, 30));
    kv_req_cleanup(&r.req);
    CHECK_OK(run_ttl(fx, &r, COLL, "ttl_counter"));
    t = r.req.ttl;
    CHECK_BYTES(r.req.value, "7", 1);
    kv_req_cleanup(&r.req);
    if (!(t >= 28 && t <= 30))
      conf_fail_at(__FILE__, __LINE__, "cas wrote a TTL of %g, not 30", t);
    CHECK_OK(run_put_if_absent(fx, &r, COLL, "pia_ttl", V, 4, 20));
    kv_req_cleanup(&r.req);
    CHECK_OK(run_ttl(fx, &r, COLL, "pia_ttl"));
    t = r.req.ttl;
    kv_req_cleanup(&r.req);
    if (!(t >= 18 && t <= 20))
      conf_fail_at(__FILE__, __LINE__, "put_if_absent wrote a TTL of %g", t);
  }

  /* An expired entry is absent for every atomic op. */
  PUT_TTL(fx, COLL, "exp_pia", V, 0.05);
  PUT_TTL(fx, COLL, "exp_cas", V, 0.05);
  PUT_TTL(fx, COLL, "exp_incr", "41", 0.05);
  PUT_TTL(fx, COLL, "exp_take", V, 0.05);
  conf_sleep_ms(fx, 120);
  CHECK_OK(run_put_if_absent(fx, &r, COLL, "exp_pia", V2, 6, 0));
  CHECK_INT(r.req.found, 1);
  kv_req_cleanup(&r.req);
  EXPECT_READ(fx, COLL, "exp_pia", V2);
  CHECK_OK(run_cas(fx, &r, COLL, "exp_cas", NULL, 0, V2, 6, 0));
  CHECK_INT(r.req.found, 1);
  kv_req_cleanup(&r.req);
  EXPECT_READ(fx, COLL, "exp_cas", V2);
  CHECK_OK(run_incr(fx, &r, COLL, "exp_incr", 1, 0));
  CHECK_INT(r.req.number, 1);
  kv_req_cleanup(&r.req);
  CHECK_OK(run_take(fx, &r, COLL, "exp_take"));
  CHECK_INT(r.req.found, 0);
  kv_req_cleanup(&r.req);
  {
    double t;
    /* ...and what replaced it has no expiry left over from the old entry. */
    if (fx->retains) {
      CHECK_OK(run_ttl(fx, &r, COLL, "exp_incr"));
      t = r.req.ttl;
      CHECK_INT(r.req.found, 1);
      kv_req_cleanup(&r.req);
      CHECK_TRUE(t == KV_TTL_NONE);
    }
  }

  /* take: the value, then missing. */
  PUT(fx, COLL, "token", "one-time");
  CHECK_OK(run_take(fx, &r, COLL, "token"));
  CHECK_INT(r.req.found, fx->retains);
  if (fx->retains) CHECK_BYTES(r.req.value, "one-time", 8);
  kv_req_cleanup(&r.req);
  CHECK_OK(run_take(fx, &r, COLL, "token"));
  CHECK_INT(r.req.found, 0);
  kv_req_cleanup(&r.req);
  EXPECT_MISSING(fx, COLL, "token");
}

/* ---- Case 37: contention --------------------------------------------------
 */

/* A child process: `nincr` concurrent incr of "shared_counter" and `npia`
 * concurrent put_if_absent of "shared_lock" on its own loop and store.
 * Exit status: how many put_if_absent stored (0..npia), or 200 on error. */
static void child_cb(kv_req_t *req) {
  int *counts = req->data;

  counts[0]++;
  if (req->status != 0) counts[1]++;
  if (req->op == KV_OP_PUT_IF_ABSENT && req->status == 0 && req->found)
    counts[2]++;
}

static void child_close_cb(kv_store_t *store) {
  (void)store;
}

static void __attribute__((noreturn))
run_child(const char *url, int nincr, int npia) {
  uv_loop_t loop;
  kv_store_t *store = NULL;
  kv_req_t *reqs = calloc((size_t)(nincr + npia), sizeof(*reqs));
  int counts[3] = {0, 0, 0};
  char errbuf[256] = "";
  int submitted = 0;
  int rc;
  int i;

  alarm(60); /* a hung child fails the case instead of hanging it */
  if (reqs == NULL || uv_loop_init(&loop) != 0) _exit(200);
  rc = kv_open_ex(&loop, url, &store, errbuf, sizeof(errbuf));
  if (rc != 0) {
    fprintf(stderr, "child %d: kv_open(%s): %s %s\n", (int)getpid(), url,
            kv_err_name(rc), errbuf);
    _exit(200);
  }
  for (i = 0; i < nincr + npia; i++) {
    reqs[i].data = counts;
    if (i < nincr)
      rc = kv_incr(store, &reqs[i], COLL, "shared_counter", 1, 0, child_cb);
    else
      rc = kv_put_if_absent(store, &reqs[i], COLL, "shared_lock", "child", 5, 0,
                            child_cb);
    if (rc != 0) {
      fprintf(stderr, "child: submit: %s\n", kv_err_name(rc));
      _exit(200);
    }
    submitted++;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  kv_store_close(store, child_close_cb);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (counts[0] != submitted || counts[1] != 0) {
    fprintf(stderr, "child %d: %d of %d completed, %d failed\n", (int)getpid(),
            counts[0], submitted, counts[1]);
    _exit(200);
  }
  for (i = 0; i < nincr + npia; i++)
    kv_req_cleanup(&reqs[i]);
  free(reqs);
  if (uv_loop_close(&loop) != 0) _exit(200);
  _exit(counts[2]);
}

/* Two processes on the same URL at once: 500 incr and 25 put_if_absent each.
 * The parent's store is closed meanwhile (no LMDB handle crosses a fork). */
static void contention_two_processes(conf_t *fx) {
  pid_t pids[2];
  int stored = 0;
  int i;

  if (getenv("KVIO_TEST_NO_FORK") != NULL) {
    print_message("[   NOTE   ] %s: two-process part skipped: "
                  "KVIO_TEST_NO_FORK is set\n", conf_url);
    return;
  }
  conf_close(fx);
  fflush(NULL);
  for (i = 0; i < 2; i++) {
    pids[i] = fork();
    CHECK_TRUE(pids[i] >= 0);
    if (pids[i] == 0) run_child(fx->url, 500, 25);
  }
  for (i = 0; i < 2; i++) {
    int status = 0;
    CHECK_INT(waitpid(pids[i], &status, 0), pids[i]);
    CHECK_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 200)
      conf_fail_at(__FILE__, __LINE__, "child %d failed (see its stderr)", i);
    stored += WEXITSTATUS(status);
  }
  conf_open(fx);
  CHECK_INT(stored, 1);
  EXPECT_VALUE(fx, COLL, "shared_counter", "1000");
  EXPECT_VALUE(fx, COLL, "shared_lock", "child");
}

void c37_atomic_under_contention(void **state) {
  conf_t *fx = FX(state);
  enum { NPIA = 50, NINCR = 1000 };
  conf_req_t *reqs;
  char(*vals)[16];
  unsigned char *seen;
  int stored = 0;
  int winner = -1;
  int i;

  if (!HAS(fx, KV_CAP_ATOMIC)) {
    atomic_not_supported(fx);
    return;
  }
  reqs = calloc(NPIA + NINCR, sizeof(*reqs));
  vals = calloc(NPIA, sizeof(*vals));
  seen = calloc(NINCR + 1, 1);
  assert_non_null(reqs);
  assert_non_null(vals);
  assert_non_null(seen);

  /* All 1,050 requests are in flight at once. */
  for (i = 0; i < NPIA + NINCR; i++) {
    int rc;
    conf_req_init(fx, &reqs[i]);
    if (i < NPIA) {
      snprintf(vals[i], sizeof(vals[i]), "owner_%d", i);
      rc = kv_put_if_absent(fx->store, &reqs[i].req, COLL, "lock", vals[i],
                            strlen(vals[i]), 0, conf_cb);
    } else {
      rc = kv_incr(fx->store, &reqs[i].req, COLL, "counter", 1, 0, conf_cb);
    }
    CHECK_OK(rc);
    fx->submitted++;
  }
  conf_run_until(fx, &fx->completed, fx->submitted);
  CHECK_NO_ERRORS(fx);
  for (i = 0; i < NPIA + NINCR; i++) {
    kv_req_t *req = &reqs[i].req;
    CHECK_INT(reqs[i].calls, 1);
    CHECK_OK(req->status);
    if (i < NPIA) {
      if (req->found) {
        stored++;
        winner = i;
      }
    } else if (fx->retains) {
      /* Each incr saw its own value: 1..1000, each once. */
      if (req->number < 1 || req->number > NINCR || seen[req->number])
        conf_fail_at(__FILE__, __LINE__,
                     "incr #%d returned %lld (duplicate or out of range)",
                     i - NPIA, (long long)req->number);
      seen[req->number] = 1;
    }
  }
  for (i = 0; i < NPIA + NINCR; i++)
    kv_req_cleanup(&reqs[i].req);
  if (fx->retains) {
    CHECK_INT(stored, 1);
    EXPECT_VALUE(fx, COLL, "lock", vals[winner]);
    EXPECT_VALUE(fx, COLL, "counter", "1000");
  } else {
    /* null: nothing is ever present, so every put_if_absent "stores". */
    CHECK_INT(stored, NPIA);
    EXPECT_MISSING(fx, COLL, "lock");
    EXPECT_MISSING(fx, COLL, "counter");
  }
  free(reqs);
  free(vals);
  free(seen);

  if (HAS(fx, KV_CAP_SHARED) && HAS(fx, KV_CAP_PERSISTENT) && fx->retains)
    contention_two_processes(fx);
}
