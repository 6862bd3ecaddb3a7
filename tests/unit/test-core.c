/* Unit tests of the core: errors, URL parsing, validation, the registry,
 * the bulk fallbacks, the blocking facade and the async contract details
 * that the conformance suite does not reach (a misbehaving store). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

/* ---- Errors ----------------------------------------------------------------
 */

static void errors_have_names_messages_categories(void **state) {
  (void)state;
  assert_string_equal(kv_err_name(KV_EINVAL), "KV_EINVAL");
  assert_string_equal(kv_err_name(KV_ECONFLICT), "KV_ECONFLICT");
  assert_string_equal(kv_strerror(KV_ETIMEDOUT), "operation timed out");
  assert_string_equal(kv_err_name(UV_ENOENT), "ENOENT");
  assert_int_equal(kv_err_category(KV_ETIMEDOUT), KV_CAT_TRANSIENT);
  assert_int_equal(kv_err_category(KV_ECONN), KV_CAT_TRANSIENT);
  assert_int_equal(kv_err_category(KV_EINVAL), KV_CAT_USAGE);
  assert_int_equal(kv_err_category(KV_EDECRYPT), KV_CAT_PERMANENT);
  assert_int_equal(kv_err_category(KV_ENOTFOUND), KV_CAT_NOTFOUND);
  assert_int_equal(kv_err_category(0), KV_CAT_OK);
  /* The frozen numbers. */
  assert_int_equal(KV_EINVAL, -5001);
  assert_int_equal(KV_EBUSY, -5019);
}

/* ---- URLs -------------------------------------------------------------------
 */

static void url_parses_network_form(void **state) {
  kv_url_t u;
  char err[256];
  (void)state;
  assert_int_equal(kv__url_parse("Redis://us%40er:p%3Ass@example.org:6380/2"
                                 "?timeout=1.5&tls",
                                 &u, err, sizeof err),
                   0);
  assert_string_equal(u.scheme, "redis");
  assert_string_equal(u.user, "us@er");
  assert_string_equal(u.password, "p:ss");
  assert_string_equal(u.host, "example.org");
  assert_int_equal(u.port, 6380);
  assert_string_equal(u.path, "/2");
  assert_string_equal(kv_url_param(&u, "timeout"), "1.5");
  assert_string_equal(kv_url_param(&u, "tls"), "");
  assert_null(kv_url_param(&u, "nope"));
  kv__url_free(&u);

  assert_int_equal(kv__url_parse("mc://h1:1,h2:2/x?y=1", &u, err, sizeof err),
                   0);
  assert_string_equal(u.host, "h1:1,h2:2");
  assert_int_equal(u.port, -1);
  assert_string_equal(u.target, "h1:1,h2:2/x");
  kv__url_free(&u);

  assert_int_equal(kv__url_parse("x://[::1]:7/", &u, err, sizeof err), 0);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 7);
  kv__url_free(&u);
}

static void url_parses_path_form(void **state) {
  kv_url_t u;
  char err[256];
  (void)state;
  assert_int_equal(kv__url_parse("disk://./kvio-data", &u, err, sizeof err), 0);
  assert_string_equal(u.target, "./kvio-data");
  kv__url_free(&u);
  assert_int_equal(
      kv__url_parse("disk:///tmp/a%20b?sync=none", &u, err, sizeof err), 0);
  assert_string_equal(u.target, "/tmp/a b");
  assert_string_equal(kv_url_param(&u, "sync"), "none");
  kv__url_free(&u);
}

static void url_rejects_garbage(void **state) {
  kv_url_t u;
  char err[256];
  (void)state;
  assert_int_equal(kv__url_parse("no-scheme", &u, err, sizeof err), KV_EINVAL);
  assert_non_null(strstr(err, "not a store URL"));
  assert_int_equal(kv__url_parse("x://h:99999", &u, err, sizeof err),
                   KV_EINVAL);
  assert_int_equal(kv__url_parse("x://h:", &u, err, sizeof err), KV_EINVAL);
  assert_int_equal(kv__url_parse("x://h/%zz", &u, err, sizeof err), KV_EINVAL);
  assert_int_equal(kv__url_parse("x://h/%00", &u, err, sizeof err), KV_EINVAL);
  assert_int_equal(kv__url_parse("x://h?a=1&a=2", &u, err, sizeof err),
                   KV_EINVAL);
  assert_int_equal(kv__url_parse("x://[::1", &u, err, sizeof err), KV_EINVAL);
}

static void open_reports_unknown_scheme_and_option(void **state) {
  uv_loop_t loop;
  kv_store_t *s = (kv_store_t *)1;
  char err[256];
  (void)state;
  uv_loop_init(&loop);
  assert_int_equal(kv_open_ex(&loop, "nosuch://x", &s, err, sizeof err),
                   KV_EINVAL);
  assert_null(s);
  assert_non_null(strstr(err, "unknown store scheme 'nosuch'"));
  assert_non_null(strstr(err, "memory"));
  assert_non_null(strstr(err, "disk"));
  assert_int_equal(
      kv_open_ex(&loop, "memory://?max_entrie=3", &s, err, sizeof err),
      KV_EINVAL);
  assert_non_null(strstr(err, "max_entrie"));
  assert_int_equal(
      kv_open_ex(&loop, "memory://?max_entries=-3", &s, err, sizeof err),
      KV_EINVAL);
  assert_int_equal(kv_open_ex(&loop, "null://x", &s, err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "takes no path"));
  assert_int_equal(kv_open_ex(&loop, "memory://x", &s, err, sizeof err),
                   KV_EINVAL);
  assert_int_equal(kv_open_ex(&loop, "memory://?default_collection=%ff", &s,
                              err, sizeof err),
                   KV_EINVAL);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- Validation
 * ----------------------------------------------------------------- */

static void names_and_ttls_are_validated(void **state) {
  char err[256], big[KV_NAME_MAX + 2];
  (void)state;
  assert_int_equal(kv__check_name("key", "", 0, err, sizeof err), KV_EINVAL);
  assert_int_equal(kv__check_name("key", "\xff", 1, err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "\\xff"));
  assert_int_equal(kv__check_name("key", "\xc0\x80", 2, err, sizeof err),
                   KV_EINVAL); /* overlong NUL */
  assert_int_equal(kv__check_name("key", "\xed\xa0\x80", 3, err, sizeof err),
                   KV_EINVAL); /* surrogate */
  assert_int_equal(kv__check_name("key", "h\xc3\xa9llo \xf0\x9f\x98\x80", 11,
                                  err, sizeof err),
                   0);
  memset(big, 'k', sizeof big);
  assert_int_equal(kv__check_name("key", big, KV_NAME_MAX, err, sizeof err), 0);
  assert_int_equal(kv__check_name("key", big, KV_NAME_MAX + 1, err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "4097 bytes"));
  assert_int_equal(kv__check_ttl(-1, err, sizeof err), KV_EINVAL);
  assert_int_equal(kv__check_ttl(NAN, err, sizeof err), KV_EINVAL);
  assert_int_equal(kv__check_ttl(INFINITY, err, sizeof err), KV_EINVAL);
  assert_int_equal(kv__check_ttl(-INFINITY, err, sizeof err), KV_EINVAL);
  assert_int_equal(kv__check_ttl(1e11, err, sizeof err), KV_EINVAL);
  assert_int_equal(kv__check_ttl(1e10, err, sizeof err), 0);
  assert_int_equal(kv__check_ttl(0, err, sizeof err), 0);
}

static void int64_parse_and_format(void **state) {
  int64_t v;
  char buf[24];
  (void)state;
  assert_int_equal(kv_parse_int64("42", 2, &v), 0);
  assert_int_equal(v, 42);
  assert_int_equal(kv_parse_int64("-9223372036854775808", 20, &v), 0);
  assert_true(v == INT64_MIN);
  assert_int_equal(kv_parse_int64("9223372036854775808", 19, &v), KV_EINVAL);
  assert_int_equal(kv_parse_int64("1.0", 3, &v), KV_EINVAL);
  assert_int_equal(kv_parse_int64("", 0, &v), KV_EINVAL);
  assert_int_equal(kv_parse_int64("-", 1, &v), KV_EINVAL);
  assert_int_equal(kv_format_int64(-17, buf), 3);
  assert_string_equal(buf, "-17");
}

/* ---- A minimal store: only the required single ops --------------------------
 */

typedef struct {
  kv_store_t base;
  char key[64];
  char value[64];
  size_t vlen;
  int have;
  int misbehave; /* 1: complete twice; 2: refuse after completing */
} tiny_store_t;

static int tiny_open(kv_store_t *s, const kv_url_t *url, char *e, size_t n) {
  return 0;
}

static int tiny_op(kv_store_t *s, kv_req_t *req) {
  tiny_store_t *t = (tiny_store_t *)s;
  int match = t->have && strcmp(t->key, req->in.key) == 0;
  switch (req->op) {
  case KV_OP_GET:
  case KV_OP_TTL:
    if (match) kv_req_set_value(req, t->value, t->vlen);
    break;
  case KV_OP_PUT:
    snprintf(t->key, sizeof t->key, "%s", req->in.key);
    memcpy(t->value, req->in.value.base, req->in.value.len);
    t->vlen = req->in.value.len;
    t->have = 1;
    break;
  case KV_OP_DELETE:
    req->found = match;
    t->have &= !match;
    break;
  default:
    return KV_ENOTSUP;
  }
  kv_req_complete(req, 0);
  if (t->misbehave == 1)
    kv_req_complete(req, 0); /* a buggy store: the core must ignore it */
  return 0;
}

static const kv_store_methods_t tiny_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "tiny",
    .store_size = sizeof(tiny_store_t),
    .open = tiny_open,
    .close = kv_store_closed,
    .get = tiny_op,
    .ttl = tiny_op,
    .put = tiny_op,
    .del = tiny_op,
};

static int calls;
static void count_cb(kv_req_t *req) {
  calls++;
}

static void run_until(uv_loop_t *loop, int *counter, int target) {
  while (*counter < target)
    assert_true(uv_run(loop, UV_RUN_ONCE) || *counter >= target);
}

static void registry_and_bulk_fallbacks(void **state) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t req;
  const char *keys[] = {"a", "b", "a"};
  kv_buf_t vals[] = {{(char *)"1", 1}, {(char *)"2", 1}, {(char *)"3", 1}};
  (void)state;
  assert_int_equal(kv_register("tiny", &tiny_methods), 0);
  assert_int_equal(kv_register("TINY", &tiny_methods), KV_EEXISTS);
  assert_non_null(strstr(kv_schemes(), "tiny"));
  uv_loop_init(&loop);
  assert_int_equal(kv_open(&loop, "tiny://", &s), 0);
  assert_int_equal(kv_store_caps(s), 0);

  /* No segment announced: KV_ENOTSUP at submit, never a callback. */
  calls = 0;
  assert_int_equal(kv_keys(s, &req, NULL, NULL, 0, count_cb), KV_ENOTSUP);
  assert_non_null(strstr(kv_req_errmsg(&req), "enumeration"));
  kv_req_cleanup(&req);
  assert_int_equal(kv_incr(s, &req, NULL, "k", 1, 0, count_cb), KV_ENOTSUP);
  kv_req_cleanup(&req);

  /* put_many through the core's fallback: the last write wins. */
  assert_int_equal(kv_put_many(s, &req, "c", keys, vals, 1, 0, count_cb), 0);
  assert_int_equal(calls, 0);
  run_until(&loop, &calls, 1);
  assert_int_equal(req.status, 0);
  kv_req_cleanup(&req);

  /* get_many fallback: results in order, duplicates answered. */
  assert_int_equal(kv_get_many(s, &req, "c", keys, 3, count_cb), 0);
  run_until(&loop, &calls, 2);
  assert_int_equal(req.status, 0);
  assert_int_equal(req.nresults, 3);
  assert_true(req.results[0].found && req.results[2].found);
  assert_false(req.results[1].found);
  assert_memory_equal(req.results[2].value.base, "1", 1);
  kv_req_cleanup(&req);

  assert_int_equal(kv_delete_many(s, &req, "c", keys, 2, count_cb), 0);
  run_until(&loop, &calls, 3);
  assert_int_equal(req.count, 1);
  kv_req_cleanup(&req);

  assert_int_equal(kv_get_many(s, &req, "c", keys, 0, count_cb), 0);
  run_until(&loop, &calls, 4);
  assert_int_equal(req.nresults, 0);
  kv_req_cleanup(&req);

#ifdef NDEBUG
  /* A store that completes twice (release build): the callback still runs
   * once and the second completion is counted, not printed. */
  {
    uint64_t before = kv_double_completions();
    ((tiny_store_t *)s)->misbehave = 1;
    assert_int_equal(kv_get(s, &req, "c", "a", count_cb), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(calls, 5);
    assert_true(kv_double_completions() == before + 1);
    kv_req_cleanup(&req);
    ((tiny_store_t *)s)->misbehave = 0;
  }
#else
  /* Debug build: a second completion aborts (checked in a child). */
  if (getenv("KVIO_TEST_NO_FORK") == NULL) {
    pid_t pid = fork();
    int st = 0;
    assert_true(pid >= 0);
    if (pid == 0) {
      FILE *devnull = freopen("/dev/null", "w", stderr);
      (void)devnull;
      ((tiny_store_t *)s)->misbehave = 1;
      kv_get(s, &req, "c", "a", count_cb);
      _exit(0); /* not reached: the double completion aborted */
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
  }
#endif

  kv_store_close(s, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- Submit validation never calls back; inputs are copied
 * --------------------- */

static void submits_validate_and_copy(void **state) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t req, req2;
  char key[8] = "k1", val[8] = "v1";
  const char *bad_keys[] = {"ok", ""};
  kv_buf_t vals[] = {{(char *)"1", 1}, {(char *)"2", 1}};
  (void)state;
  uv_loop_init(&loop);
  assert_int_equal(kv_open(&loop, "memory://", &s), 0);
  calls = 0;
  assert_int_equal(kv_put(s, &req, NULL, "", "x", 1, 0, count_cb), KV_EINVAL);
  kv_req_cleanup(&req);
  assert_int_equal(kv_put(s, &req, NULL, "k", "x", 1, -1, count_cb), KV_EINVAL);
  assert_non_null(strstr(kv_req_errmsg(&req), "-1"));
  kv_req_cleanup(&req);
  assert_int_equal(kv_put(s, &req, NULL, "k", NULL, 3, 0, count_cb), KV_EINVAL);
  kv_req_cleanup(&req);
  assert_int_equal(kv_put(s, &req, NULL, "k", "x", 1, 0, NULL), KV_EINVAL);
  kv_req_cleanup(&req);
  assert_int_equal(kv_put_many(s, &req, NULL, bad_keys, vals, 2, 0, count_cb),
                   KV_EINVAL);
  kv_req_cleanup(&req);
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(calls, 0);

  /* The caller's buffers may change right after the submit. */
  assert_int_equal(kv_put(s, &req, "", key, val, 2, 0, count_cb), 0);
  strcpy(key, "zz");
  strcpy(val, "zz");
  /* A request still in flight cannot be reused. */
  assert_int_equal(kv_get(s, &req, NULL, "k1", count_cb), KV_EBUSY);
  run_until(&loop, &calls, 1);
  kv_req_cleanup(&req);
  assert_int_equal(kv_get(s, &req2, "default_collection", "k1", count_cb), 0);
  run_until(&loop, &calls, 2);
  assert_true(req2.found);
  assert_string_equal(req2.value.base, "v1");
  kv_req_cleanup(&req2);

  assert_int_equal(kv_store_close(s, NULL), 0);
  assert_int_equal(kv_store_close(s, NULL), KV_ECLOSED);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- kv__submit_in: a wrapper's inner submit with the outer's inputs ----------
 */

static kv_req_t fwd_inner;
static int fwd_calls;
static void fwd_cb(kv_req_t *req) {
  fwd_calls++;
}

static void submit_in_copies_validated_inputs(void **state) {
  uv_loop_t loop;
  kv_store_t *s, *null_store;
  kv_req_t outer;
  (void)state;
  uv_loop_init(&loop);
  assert_int_equal(kv_open(&loop, "memory://", &s), 0);
  assert_int_equal(kv_open(&loop, "null://", &null_store), 0);
  /* An outer put whose validated inputs are forwarded, TTL changed. */
  calls = 0;
  assert_int_equal(kv_put(s, &outer, "c", "k", "v", 1, 0, count_cb), 0);
  {
    kv_req_in_t in = outer.in;
    in.ttl = 100;
    fwd_calls = 0;
    assert_int_equal(kv__submit_in(s, &fwd_inner, KV_OP_PUT, &in, fwd_cb), 0);
    assert_int_equal(fwd_calls, 0); /* deferred like any completion */
    assert_int_equal(kv__submit_in(s, &fwd_inner, KV_OP_PUT, &in, fwd_cb),
                     KV_EBUSY); /* still in flight */
  }
  run_until(&loop, &fwd_calls, 1);
  run_until(&loop, &calls, 1);
  kv_req_cleanup(&fwd_inner);
  {
    kv_req_in_t in = outer.in;
    in.ttl = 0;
    assert_int_equal(
        kv__submit_in(null_store, &fwd_inner, KV_OP_INCR, &in, fwd_cb),
        KV_ENOTSUP); /* capabilities still checked */
    kv_req_cleanup(&fwd_inner);
    assert_int_equal(kv__submit_in(s, &fwd_inner, KV_OP_TTL, &in, fwd_cb), 0);
    run_until(&loop, &fwd_calls, 2);
    assert_true(fwd_inner.found);
    assert_true(fwd_inner.ttl > 99 && fwd_inner.ttl <= 100); /* expiry
      recomputed from the outer's timestamp */
    kv_req_cleanup(&fwd_inner);
  }
  kv_req_cleanup(&outer);
  kv_store_close(s, NULL);
  kv_store_close(null_store, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- The plug-in contract: a table written for version 1 ---------------- */

static int legacy_ctl_calls;
static int legacy_ctl(kv_store_t *s, int op, void *arg) {
  legacy_ctl_calls++;
  return op == 0x8001 ? 0 : KV_ENOTSUP;
}

static void version1_table_is_not_read_past_its_end(void **state) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t req;
  int one = 1;
  /* Exactly the version-1 size, on the heap: ASan reports any read of a
   * member appended later. */
  void *block = malloc(KV_STORE_METHODS_V1_SIZE);
  kv_store_methods_t full = tiny_methods;
  (void)state;
  assert_non_null(block);
  full.version = 1;
  full.name = "tiny1";
  full.ctl = legacy_ctl;
  memcpy(block, &full, KV_STORE_METHODS_V1_SIZE);
  assert_int_equal(kv_register("tiny1", (const kv_store_methods_t *)block), 0);
  uv_loop_init(&loop);
  assert_int_equal(kv_open(&loop, "tiny1://", &s), 0);
  calls = 0;
  assert_int_equal(kv_put(s, &req, "c", "k", "v", 1, 0, count_cb), 0);
  run_until(&loop, &calls, 1);
  kv_req_cleanup(&req);
  assert_int_equal(kv_get(s, &req, "c", "k", count_cb), 0);
  run_until(&loop, &calls, 2);
  assert_true(req.found);
  kv_req_cleanup(&req);
  /* Bulk forms (NULL in the table) fall back to the single ops. */
  {
    const char *keys[] = {"k", "x"};
    assert_int_equal(kv_get_many(s, &req, "c", keys, 2, count_cb), 0);
    run_until(&loop, &calls, 3);
    assert_true(req.results[0].found && !req.results[1].found);
    kv_req_cleanup(&req);
  }
  /* ctl reaches version 1's ctl, without the size. */
  assert_int_equal(kv_store_ctl(s, 0x8001, &one, sizeof one), 0);
  assert_int_equal(legacy_ctl_calls, 1);
  kv_store_close(s, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  /* The registry keeps the table: it stays allocated for the process. */
}

/* ---- Chains complete in the same loop turn, timers are not starved ------ */

#define CHAIN_N 1000000
static kv_store_t *chain_store;
static kv_req_t chain_req;
static size_t chain_done;
static uint64_t chain_iters; /* loop iterations while the chain ran */
static uint64_t tick_last, tick_worst;
static unsigned ticks;
static uv_timer_t tick;
static uv_prepare_t iter_counter;

static void chain_cb(kv_req_t *req) {
  assert_int_equal(req->status, 0);
  assert_true(req->found);
  kv_req_cleanup(req);
  if (++chain_done == CHAIN_N) {
    uv_timer_stop(&tick);
    uv_prepare_stop(&iter_counter);
    return;
  }
  assert_int_equal(kv_get(chain_store, req, "c", "k", chain_cb), 0);
}

static void on_tick(uv_timer_t *t) {
  uint64_t now = uv_hrtime();
  (void)t;
  if (ticks++ > 0 && now - tick_last > tick_worst) tick_worst = now - tick_last;
  tick_last = now;
}

static void on_iter(uv_prepare_t *p) {
  (void)p;
  chain_iters++;
}

static void chain_completes_in_one_turn_without_starving_timers(void **state) {
  uv_loop_t loop;
  kv_req_t req;
  (void)state;
  uv_loop_init(&loop);
  assert_int_equal(kv_open(&loop, "memory://", &chain_store), 0);
  calls = 0;
  assert_int_equal(kv_put(chain_store, &req, "c", "k", "v", 1, 0, count_cb), 0);
  run_until(&loop, &calls, 1);
  kv_req_cleanup(&req);
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, on_tick, 1, 1);
  uv_prepare_init(&loop, &iter_counter);
  uv_prepare_start(&iter_counter, on_iter);
  assert_int_equal(kv_get(chain_store, &chain_req, "c", "k", chain_cb), 0);
  while (chain_done < CHAIN_N) uv_run(&loop, UV_RUN_ONCE);
  /* Many links of the chain per loop iteration (one per iteration was the
   * old rule), yet several iterations: the turn's bound held. */
  assert_true(chain_iters > 1);
  assert_true(CHAIN_N / chain_iters >= 64);
  /* The 1 ms timer kept running while the chain did. A turn spends at most
   * about 1 ms (docs/design.md, rule 4); the bound here leaves room for a
   * loaded machine and sanitizers. */
  if (ticks >= 2) assert_true(tick_worst < 250 * 1000000ull);
  kv_store_close(chain_store, NULL);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_close((uv_handle_t *)&iter_counter, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- The blocking facade
 * ------------------------------------------------------------ */

static void sync_facade_round_trip(void **state) {
  kv_sync_t *s;
  kv_req_t req;
  char err[256];
  size_t len;
  char *kept;
  (void)state;
  assert_int_equal(kv_sync_open("nope://", &s, err, sizeof err), KV_EINVAL);
  assert_null(s);
  assert_int_equal(kv_sync_open("memory://", &s, err, sizeof err), 0);
  assert_int_equal(kv_sync_put(s, &req, "users", "user:123", "{}", 2, 3600), 0);
  kv_req_cleanup(&req);
  assert_int_equal(kv_sync_ttl(s, &req, "users", "user:123"), 0);
  assert_true(req.found);
  assert_true(req.ttl > 3599 && req.ttl <= 3600);
  kept = kv_req_take_value(&req, &len);
  kv_req_cleanup(&req);
  assert_int_equal(len, 2);
  assert_string_equal(kept, "{}");
  kv_free(kept);
  assert_int_equal(kv_sync_incr(s, &req, "n", "c", 5, 0), 0);
  assert_int_equal(req.number, 5);
  kv_req_cleanup(&req);
  assert_int_equal(kv_sync_cas(s, &req, "n", "c", "4", 1, "9", 1, 0),
                   KV_ECONFLICT);
  kv_req_cleanup(&req);
  assert_int_equal(kv_sync_put(s, &req, "users", "", "x", 1, 0), KV_EINVAL);
  kv_req_cleanup(&req);
  assert_int_equal(kv_sync_close(s), 0);

  /* A facade around a store opened by the caller on the facade's loop. */
  assert_int_equal(kv_sync_init(&s), 0);
  {
    kv_store_t *st;
    assert_int_equal(kv_open(kv_sync_loop(s), "memory://", &st), 0);
    kv_sync_set_store(s, st);
    assert_ptr_equal(kv_sync_store(s), st);
  }
  assert_int_equal(kv_sync_put(s, &req, NULL, "k", "v", 1, 0), 0);
  kv_req_cleanup(&req);
  assert_int_equal(kv_sync_close(s), 0);
  assert_int_equal(kv_sync_init(&s), 0); /* no store at all */
  assert_int_equal(kv_sync_close(s), 0);
}

/* ---- memory:// listing while the table changes under it ------------------- */

static void memory_keys_survive_growth_and_removal(void **state) {
  kv_sync_t *s;
  kv_req_t req;
  char err[256], key[32];
  enum { N = 60 };
  int seen[N] = {0};
  char *cursor = NULL;
  int pages = 0, added = 0;
  (void)state;
  assert_int_equal(kv_sync_open("memory://", &s, err, sizeof err), 0);
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof key, "orig-%d", i);
    assert_int_equal(kv_sync_put(s, &req, "c", key, "v", 1, 0), 0);
    kv_req_cleanup(&req);
  }
  do {
    assert_int_equal(kv_sync_keys(s, &req, "c", cursor, 3), 0);
    free(cursor);
    cursor = req.cursor ? strdup(req.cursor) : NULL;
    for (size_t i = 0; i < req.nnames; i++) {
      int n;
      if (sscanf(req.names[i].base, "orig-%d", &n) == 1) {
        seen[n]++;
        /* Remove what was just listed: chains shrink under the cursor. */
        kv_req_t d;
        assert_int_equal(kv_sync_delete(s, &d, "c", req.names[i].base), 0);
        kv_req_cleanup(&d);
      }
    }
    kv_req_cleanup(&req);
    /* Grow the table between pages: chains split and reorder. */
    for (int j = 0; j < 40; j++, added++) {
      snprintf(key, sizeof key, "new-%d", added);
      assert_int_equal(kv_sync_put(s, &req, "c", key, "v", 1, 0), 0);
      kv_req_cleanup(&req);
    }
    pages++;
  } while (cursor != NULL && pages < 10000);
  for (int i = 0; i < N; i++)
    if (seen[i] == 0) fail_msg("orig-%d was never listed", i);
  assert_int_equal(kv_sync_close(s), 0);
}

/* ---- The memory store's sweep and per-collection LRU
 * -------------------------------- */

static void stop_timer(uv_timer_t *t) {
  uv_timer_stop(t);
}

static void memory_sweep_purges_without_reads(void **state) {
  kv_sync_t *s;
  kv_req_t req;
  char err[256];
  (void)state;
  assert_int_equal(kv_sync_open("memory://", &s, err, sizeof err), 0);
  assert_int_equal(kv_sync_put(s, &req, "a", "short", "x", 1, 0.05), 0);
  kv_req_cleanup(&req);
  assert_int_equal(kv_sync_put(s, &req, "b", "long", "x", 1, 0), 0);
  kv_req_cleanup(&req);
  /* The sweep timer is unref'd: run the loop with a ref'd timer of our own
   * for 1.5 s so that the sweep (every second) gets to run. */
  {
    uv_timer_t t;
    uv_timer_init(kv_sync_loop(s), &t);
    uv_timer_start(&t, stop_timer, 1500, 0);
    uv_run(kv_sync_loop(s), UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(kv_sync_loop(s), UV_RUN_DEFAULT);
  }
  /* Collection "a" is gone without anyone reading it: the sweep removed the
   * expired entry and then the empty collection. */
  assert_int_equal(kv_sync_collections(s, &req, NULL, 0), 0);
  assert_int_equal(req.nnames, 1);
  assert_string_equal(req.names[0].base, "b");
  kv_req_cleanup(&req);
  assert_int_equal(kv_sync_cull(s, &req), 0);
  assert_int_equal(req.count, 0);
  kv_req_cleanup(&req);
  assert_int_equal(kv_sync_close(s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(errors_have_names_messages_categories),
      cmocka_unit_test(url_parses_network_form),
      cmocka_unit_test(url_parses_path_form),
      cmocka_unit_test(url_rejects_garbage),
      cmocka_unit_test(open_reports_unknown_scheme_and_option),
      cmocka_unit_test(names_and_ttls_are_validated),
      cmocka_unit_test(int64_parse_and_format),
      cmocka_unit_test(registry_and_bulk_fallbacks),
      cmocka_unit_test(submits_validate_and_copy),
      cmocka_unit_test(submit_in_copies_validated_inputs),
      cmocka_unit_test(version1_table_is_not_read_past_its_end),
      cmocka_unit_test(chain_completes_in_one_turn_without_starving_timers),
      cmocka_unit_test(sync_facade_round_trip),
      cmocka_unit_test(memory_sweep_purges_without_reads),
      cmocka_unit_test(memory_keys_survive_growth_and_removal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
