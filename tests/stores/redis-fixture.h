/* The fixture shared by the Redis tests (test-redis.c, test-redis-client.c,
 * test-redis-cluster.c, test-redis-sentinel.c): a loop and a store per test,
 * callbacks counted in g_done, the loop run until they have run (RUN for a
 * kvio request, raw() for a raw command), and redis-server processes of the
 * test's own on free ports.
 *
 * Not store-fixture.h (the local stores'): a store with a connection open
 * keeps its loop alive, so requests are waited for one loop turn at a time
 * until their callbacks have run, not by running the loop until it ends;
 * and there is no directory to make.
 *
 * Include it after <cmocka.h>, "kvio.h" and "kvio/redis.h". */
#ifndef KVIO_TESTS_REDIS_FIXTURE_H
#define KVIO_TESTS_REDIS_FIXTURE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__GNUC__) || defined(__clang__)
#define KV_RFX_UNUSED __attribute__((unused))
#else
#define KV_RFX_UNUSED
#endif

typedef struct {
  uv_loop_t loop;
  kv_store_t *store;
} fx_t;

static int g_done; /* callbacks run since it was last reset */

/* The callbacks of kvio and raw requests: each counts in g_done, and in the
 * int that req->data points to when it is set (to check exactly once). */
KV_RFX_UNUSED static void done_cb(kv_req_t *req) {
  int *calls = req->data;
  if (calls) (*calls)++;
  g_done++;
}

KV_RFX_UNUSED static void raw_cb(kv_redis_req_t *req) {
  int *calls = req->data;
  if (calls) (*calls)++;
  g_done++;
}

KV_RFX_UNUSED static void close_cb(kv_store_t *s) {
  (void)s;
  g_done++;
}

/* Run the loop until g_done reaches `n`; fails if the loop ends first. */
KV_RFX_UNUSED static void run_until(fx_t *fx, int n) {
  while (g_done < n)
    if (uv_run(&fx->loop, UV_RUN_ONCE) == 0 && g_done < n) fail();
}

/* Wait for the request submitted with `rc` (its callback counts in g_done):
 * its status, *status once the callback ran, or the submit error. */
KV_RFX_UNUSED static int wait_req(fx_t *fx, const int *status, int rc) {
  if (rc != 0) return rc;
  g_done = 0;
  run_until(fx, 1);
  return *status;
}

/* Zero `req`, submit it with `call` (with done_cb) and wait: its status. */
#define RUN(fx, req, call) \
  (memset(&(req), 0, sizeof(req)), wait_req((fx), &(req).status, (call)))

/* A raw command on store `s` (on fx's loop), waited for: its status, or the
 * submit error. */
KV_RFX_UNUSED static int raw_on(fx_t *fx, kv_store_t *s, kv_redis_req_t *req,
                                int argc, const char **argv) {
  memset(req, 0, sizeof *req);
  return wait_req(fx, &req->status,
                  kv_redis_command(s, req, argc, argv, NULL, raw_cb));
}

KV_RFX_UNUSED static int raw(fx_t *fx, kv_redis_req_t *req, int argc,
                             const char **argv) {
  return raw_on(fx, fx->store, req, argc, argv);
}

/* One put_many of n keys with a TTL of 100 s, then one ttl_many of them:
 * every entry is there and reports the same TTL (one expiry for the
 * batch, read against one clock), however the batch was split (chunks of
 * 1,000 keys, a cluster's slots). */
KV_RFX_UNUSED static void batch_ttl_one_expiry(fx_t *fx, int n) {
  kv_req_t r;
  const char **keys = calloc((size_t)n, sizeof *keys);
  kv_buf_t *vals = calloc((size_t)n, sizeof *vals);
  char *kbuf = calloc((size_t)n, 16);
  assert_non_null(keys);
  assert_non_null(vals);
  assert_non_null(kbuf);
  for (int i = 0; i < n; i++) {
    snprintf(kbuf + 16 * i, 16, "b%d", i);
    keys[i] = kbuf + 16 * i;
    vals[i].base = kbuf + 16 * i;
    vals[i].len = strlen(keys[i]);
  }
  assert_int_equal(RUN(fx, r,
                       kv_put_many(fx->store, &r, "batch", keys, vals,
                                   (size_t)n, 100, done_cb)),
                   0);
  kv_req_cleanup(&r);
  assert_int_equal(
      RUN(fx, r, kv_ttl_many(fx->store, &r, "batch", keys, (size_t)n, done_cb)),
      0);
  assert_int_equal(r.nresults, (size_t)n);
  for (int i = 0; i < n; i++) {
    assert_true(r.results[i].found);
    if (r.results[i].ttl != r.results[0].ttl)
      fail_msg("key %d: TTL %.3f, key 0: %.3f", i, r.results[i].ttl,
               r.results[0].ttl);
  }
  assert_true(r.results[0].ttl > 98 && r.results[0].ttl <= 100);
  kv_req_cleanup(&r);
  free(keys);
  free(vals);
  free(kbuf);
}

/* The i-th (0-based) port of a space-separated list (KV_CLUSTER_PORTS),
 * or -1. */
KV_RFX_UNUSED static int nth_port(const char *list, int i) {
  const char *p = list;
  for (int k = 0; k < i && p; k++) {
    p = strchr(p, ' ');
    if (p) p++;
  }
  return p ? atoi(p) : -1;
}

KV_RFX_UNUSED static void timer_cb(uv_timer_t *t) {
  *(int *)t->data = 1;
}

/* Run the loop for `ms` milliseconds. */
KV_RFX_UNUSED static void sleep_ms(fx_t *fx, uint64_t ms) {
  uv_timer_t t;
  int fired = 0;
  uv_timer_init(&fx->loop, &t);
  t.data = &fired;
  uv_timer_start(&t, timer_cb, ms, 0);
  while (!fired)
    uv_run(&fx->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
}

KV_RFX_UNUSED static void fx_open(fx_t *fx, const char *url) {
  char err[256] = "";
  int rc = kv_open_ex(&fx->loop, url, &fx->store, err, sizeof err);
  if (rc != 0) fail_msg("kv_open(%s): %s: %s", url, kv_err_name(rc), err);
}

/* Close another store opened on fx's loop, and wait for it. */
KV_RFX_UNUSED static void close_other(fx_t *fx, kv_store_t *s) {
  g_done = 0;
  kv_store_close(s, close_cb);
  run_until(fx, 1);
}

KV_RFX_UNUSED static void fx_close(fx_t *fx) {
  if (fx->store == NULL) return;
  g_done = 0;
  assert_int_equal(kv_store_close(fx->store, close_cb), 0);
  run_until(fx, 1);
  fx->store = NULL;
}

KV_RFX_UNUSED static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (fx == NULL || uv_loop_init(&fx->loop) != 0) return -1;
  *state = fx;
  return 0;
}

KV_RFX_UNUSED static int teardown(void **state) {
  fx_t *fx = *state;
  fx_close(fx);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0); /* nothing left behind */
  free(fx);
  return 0;
}

/* snprintf into buf (cluster and sentinel build theirs from their seeds with
 * a url_of of their own). */
KV_RFX_UNUSED static void format_url(char *buf, size_t len, const char *fmt,
                                     ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

/* Each of the n URLs fails to open with KV_EINVAL, a detail, and no store. */
KV_RFX_UNUSED static void expect_bad_urls(fx_t *fx, const char *const *urls,
                                          size_t n) {
  for (size_t i = 0; i < n; i++) {
    char err[256] = "";
    kv_store_t *s = (kv_store_t *)1;
    int rc = kv_open_ex(&fx->loop, urls[i], &s, err, sizeof err);
    if (rc != KV_EINVAL)
      fail_msg("%s: expected KV_EINVAL, got %s (%s)", urls[i], kv_err_name(rc),
               err);
    assert_null(s);
    assert_true(err[0] != '\0');
  }
}

/* kv_destroy, waited for; it must succeed. */
KV_RFX_UNUSED static void destroy_all(fx_t *fx) {
  kv_req_t r;
  assert_int_equal(RUN(fx, r, kv_destroy(fx->store, &r, done_cb)), 0);
  kv_req_cleanup(&r);
}

/* ---- Servers of the test's own ------------------------------------------- */

/* Whether a socket can bind 127.0.0.1:port (do_connect 0), or connect to
 * it (1). */
KV_RFX_UNUSED static int port_try(int port, int do_connect) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ok = do_connect ? connect(fd, (struct sockaddr *)&a, sizeof a) == 0
                  : bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

/* A port nobody listens on (srand() first). */
KV_RFX_UNUSED static int free_port(void) {
  for (int i = 0; i < 100; i++) {
    int p = 20000 + (int)(((unsigned)rand() ^ (unsigned)getpid()) % 40000);
    if (port_try(p, 0)) return p;
  }
  fail_msg("no free port");
  return -1;
}

/* Start `server` (a redis-server binary) on 127.0.0.1:port, without
 * persistence, working in `dir`; returns once it accepts connections. */
KV_RFX_UNUSED static pid_t server_start(const char *server, const char *dir,
                                        int port) {
  char ps[16];
  pid_t pid;
  snprintf(ps, sizeof ps, "%d", port);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    execl(server, server, "--port", ps, "--bind", "127.0.0.1", "--save", "",
          "--appendonly", "no", "--dir", dir, "--logfile", "/dev/null",
          "--loglevel", "warning", "--daemonize", "no", (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 200 && !port_try(port, 1); i++)
    usleep(25000);
  assert_true(port_try(port, 1));
  return pid;
}

KV_RFX_UNUSED static void server_kill(pid_t pid) {
  int st;
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
}

#endif
