/* Tests of the memcached:// store. Run under tests/servers/with-memcached.sh
 * --servers 2 (KV_MEMCACHED_PORT1/2, KV_MEMCACHED_SERVER and
 * KV_MEMCACHED_ARGS in the environment); the restart test starts and kills
 * a memcached of its own. Without that environment: exit 77 (skipped). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "kvio.h"
#include "kvio/backend.h"
#include "kvio/memcached.h"
#include "kvio/wrap.h"
#include "memcached_int.h"

static const char *port1, *port2;

typedef struct {
  kv_req_t req;
  int calls;
} treq_t;

static uv_loop_t loop;

static void tcb(kv_req_t *r) {
  ((treq_t *)r->data)->calls++;
}

static void treq_init(treq_t *t) {
  memset(t, 0, sizeof *t);
  t->req.data = t;
}

static int wait_req(treq_t *t, int rc) {
  if (rc != 0) return rc;
  while (t->calls == 0)
    assert_int_not_equal(uv_run(&loop, UV_RUN_ONCE) + t->calls, 0);
  assert_int_equal(t->calls, 1);
  return t->req.status;
}

static int do_put(kv_store_t *s, const char *c, const char *k, const void *v,
                  size_t n, double ttl) {
  treq_t t;
  int rc;
  treq_init(&t);
  rc = wait_req(&t, kv_put(s, &t.req, c, k, v, n, ttl, tcb));
  kv_req_cleanup(&t.req);
  return rc;
}

/* get: returns the status; *found and the value in out (if not NULL). */
static int do_get(kv_store_t *s, const char *c, const char *k, int *found,
                  char **out, size_t *outlen, double *ttl) {
  treq_t t;
  int rc;
  treq_init(&t);
  rc = wait_req(&t, kv_ttl(s, &t.req, c, k, tcb));
  *found = t.req.found;
  if (ttl) *ttl = t.req.ttl;
  if (out) *out = kv_req_take_value(&t.req, outlen);
  kv_req_cleanup(&t.req);
  return rc;
}

static kv_store_t *open_url(const char *fmt, ...) {
  char url[1024], err[256] = "";
  va_list ap;
  kv_store_t *s = NULL;
  va_start(ap, fmt);
  vsnprintf(url, sizeof url, fmt, ap);
  va_end(ap);
  if (kv_open_ex(&loop, url, &s, err, sizeof err) != 0)
    fail_msg("kv_open(%s): %s", url, err);
  return s;
}

/* Two servers: the documented "a,b" form when the core URL parser accepts a
 * host list, the ?servers= form otherwise. */
static kv_store_t *open_two(const char *p1, const char *p2, const char *opts) {
  char url[1024];
  kv_store_t *s = NULL;
  snprintf(url, sizeof url, "memcached://127.0.0.1:%s,127.0.0.1:%s?%s", p1, p2,
           opts);
  if (kv_open(&loop, url, &s) == 0) return s;
  return open_url("memcached://127.0.0.1:%s?servers=127.0.0.1:%s&%s", p1, p2,
                  opts);
}

static void close_store(kv_store_t *s) {
  assert_int_equal(kv_store_close(s, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
}

static int setup(void **state) {
  (void)state;
  return uv_loop_init(&loop);
}

static int teardown(void **state) {
  (void)state;
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  return 0;
}

static kv_memcached_stats_t stats_of(kv_store_t *s) {
  kv_memcached_stats_t st;
  assert_int_equal(kv_store_ctl(s, KV_MEMCACHED_CTL_STATS, &st, sizeof st), 0);
  return st;
}

static int locate(kv_store_t *s, const char *c, const char *k) {
  kv_memcached_locate_t l = {c, k, -1};
  assert_int_equal(kv_store_ctl(s, KV_MEMCACHED_CTL_LOCATE, &l, sizeof l), 0);
  return l.server;
}

/* ---- Raw access to a server (blocking; test only) ----------------------- */

static int raw_connect(const char *port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The server's item list ("key=... exp=... ..." lines), malloc'ed. The LRU
 * crawler answers BUSY while a previous dump is still being cleaned up:
 * try again then. */
static char *metadump_once(const char *port) {
  static const char cmd[] = "lru_crawler metadump all\r\n";
  size_t len = 0, cap = 1 << 16;
  char *buf = malloc(cap);
  int fd = raw_connect(port);
  assert_true(fd >= 0 && buf != NULL);
  assert_int_equal(write(fd, cmd, sizeof cmd - 1), (ssize_t)sizeof cmd - 1);
  for (;;) {
    ssize_t n;
    if (cap - len < 4096) buf = realloc(buf, cap *= 2);
    n = read(fd, buf + len, cap - len - 1);
    if (n <= 0) break;
    len += (size_t)n;
    buf[len] = '\0';
    if (len >= 5 && strcmp(buf + len - 5, "END\r\n") == 0) break;
    if (strncmp(buf, "BUSY", 4) == 0 || strncmp(buf, "ERROR", 5) == 0 ||
        strncmp(buf, "CLIENT_ERROR", 12) == 0)
      break;
  }
  buf[len] = '\0';
  close(fd);
  return buf;
}

static char *metadump(const char *port) {
  for (int i = 0; i < 100; i++) {
    char *d = metadump_once(port);
    size_t l = strlen(d);
    if (l >= 5 && strcmp(d + l - 5, "END\r\n") == 0) return d;
    free(d);
    usleep(50000);
  }
  fail_msg("lru_crawler metadump never answered");
  return NULL;
}

static size_t url_decode(const char *p, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '%' && i + 2 < n) {
      unsigned v;
      sscanf(p + i + 1, "%2x", &v);
      out[o++] = (char)v;
      i += 2;
    } else {
      out[o++] = p[i];
    }
  }
  return o;
}

/* ---- Servers of our own -------------------------------------------------- */

static int free_port(void) {
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), port;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static pid_t spawn_memcached(int port) {
  const char *bin = getenv("KV_MEMCACHED_SERVER");
  const char *args = getenv("KV_MEMCACHED_ARGS");
  char *argv[32], buf[512], portbuf[16];
  int argc = 0;
  pid_t pid;
  char p[16];
  snprintf(buf, sizeof buf, "%s", args ? args : "-l 127.0.0.1 -U 0 -m 64");
  argv[argc++] = (char *)bin;
  for (char *t = strtok(buf, " "); t && argc < 28; t = strtok(NULL, " "))
    argv[argc++] = t;
  snprintf(portbuf, sizeof portbuf, "%d", port);
  argv[argc++] = (char *)"-p";
  argv[argc++] = portbuf;
  argv[argc] = NULL;
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    execv(bin, argv);
    _exit(127);
  }
  snprintf(p, sizeof p, "%d", port);
  for (int i = 0; i < 200; i++) {
    int fd = raw_connect(p);
    if (fd >= 0) {
      close(fd);
      return pid;
    }
    usleep(25000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  fail_msg("memcached did not start on port %d", port);
  return -1;
}

static void sleep_cb(uv_timer_t *t) {
  *(int *)t->data = 1;
}

static void sleep_loop_ms(uint64_t ms) {
  uv_timer_t t;
  int fired = 0;
  uv_timer_init(&loop, &t);
  t.data = &fired;
  uv_timer_start(&t, sleep_cb, ms, 0);
  while (!fired)
    uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* ---- The ring ------------------------------------------------------------ */

static void t_ring_moves_a_fraction(void **state) {
  const char *names[] = {"10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211",
                         "10.0.0.4:11211"};
  kv__mc_ring_t r3, r4;
  size_t moved = 0, wrong = 0, per3[3] = {0, 0, 0};
  (void)state;
  assert_int_equal(kv__mc_ring_build(&r3, names, 3), 0);
  assert_int_equal(kv__mc_ring_build(&r4, names, 4), 0);
  assert_int_equal(r3.npoints, 3 * KV__MC_POINTS_PER_SERVER);
  for (int i = 0; i < 10000; i++) {
    char key[32];
    int n = snprintf(key, sizeof key, "user:%d", i);
    uint32_t h = kv__mc_key_hash("coll", 4, key, (size_t)n);
    uint32_t a = kv__mc_ring_lookup(&r3, h), b = kv__mc_ring_lookup(&r4, h);
    per3[a]++;
    if (a != b) {
      moved++;
      if (b != 3) wrong++; /* a key only ever moves to the new server */
    }
  }
  print_message("  3 -> 4 servers: %zu of 10000 keys moved; spread over 3: "
                "%zu %zu %zu\n",
                moved, per3[0], per3[1], per3[2]);
  assert_true(moved >= 1500 && moved <= 3500);
  assert_int_equal(wrong, 0);
  for (int i = 0; i < 3; i++)
    assert_true(per3[i] >= 2000 && per3[i] <= 4700);
  /* the collection is length-prefixed: ("a:b","c") and ("a","b:c") differ */
  assert_int_not_equal(kv__mc_key_hash("a:b", 3, "c", 1),
                       kv__mc_key_hash("a", 1, "b:c", 3));
  kv__mc_ring_free(&r3);
  kv__mc_ring_free(&r4);
}

/* ---- Two servers --------------------------------------------------------- */

static void t_keys_spread_over_both(void **state) {
  kv_store_t *s = open_two(port1, port2, "prefix=spread");
  kv_store_t *only1;
  int count[2] = {0, 0}, nservers = 0, found;
  char key[32];
  (void)state;
  assert_int_equal(
      kv_store_ctl(s, KV_MEMCACHED_CTL_NSERVERS, &nservers, sizeof nservers),
      0);
  assert_int_equal(nservers, 2);
  {
    /* Every ctl carries the caller's struct size: a wrong size is refused,
     * and another store's opcode is not this store's (even through a
     * wrapper, which forwards controls unchanged). */
    kv_memcached_stats_t small_buf[1];
    kv_store_t *w = NULL;
    int64_t big = 0;
    kv_wrap_statistics_opts_t o = {1};
    assert_int_equal(kv_store_ctl(s, KV_MEMCACHED_CTL_NSERVERS, &big,
                                  sizeof big),
                     KV_EINVAL);
    assert_int_equal(kv_store_ctl(s, KV_MEMCACHED_CTL_STATS, small_buf,
                                  sizeof small_buf[0] / 2),
                     KV_EINVAL);
    assert_int_equal(kv_wrap_statistics(s, &o, &w), 0);
    assert_int_equal(kv_store_ctl(w, KV_MEMCACHED_CTL_NSERVERS, &nservers,
                                  sizeof nservers),
                     0);
    assert_int_equal(kv_store_ctl(w, KV_CTL_RANGE_ROCKSDB + 1, &nservers,
                                  sizeof nservers),
                     KV_ENOTSUP);
    kv_store_close(w, NULL);
  }
  for (int i = 0; i < 200; i++) {
    snprintf(key, sizeof key, "k%d", i);
    count[locate(s, "c", key)]++;
    assert_int_equal(do_put(s, "c", key, key, strlen(key), 0), 0);
  }
  print_message("  200 keys: %d on server 1, %d on server 2\n", count[0],
                count[1]);
  assert_true(count[0] >= 40 && count[1] >= 40);
  /* Each key is really on the server the ring names: a store that only
   * knows server 1 (same prefix) finds exactly the keys located there. */
  only1 = open_url("memcached://127.0.0.1:%s?prefix=spread", port1);
  for (int i = 0; i < 200; i++) {
    char *v = NULL;
    size_t vl = 0;
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(do_get(only1, "c", key, &found, &v, &vl, NULL), 0);
    assert_int_equal(found, locate(s, "c", key) == 0);
    if (found) assert_memory_equal(v, key, strlen(key));
    kv_free(v);
  }
  close_store(only1);
  close_store(s);
}

static void t_server_down_fails_fast(void **state) {
  char dead[16];
  kv_store_t *s;
  int ok = 0, down = 0;
  kv_memcached_stats_t before, after;
  (void)state;
  snprintf(dead, sizeof dead, "%d", free_port()); /* nothing listens there */
  s = open_two(port1, dead, "prefix=down&backoff=5000");
  for (int round = 0; round < 2; round++) {
    treq_t t[100];
    char key[32];
    if (round == 1) before = stats_of(s);
    for (int i = 0; i < 100; i++) {
      snprintf(key, sizeof key, "k%d", i);
      treq_init(&t[i]);
      assert_int_equal(kv_put(s, &t[i].req, "c", key, key, strlen(key), 0, tcb),
                       0);
    }
    for (int i = 0; i < 100; i++) {
      int rc = wait_req(&t[i], 0);
      snprintf(key, sizeof key, "k%d", i);
      if (locate(s, "c", key) == 1) {
        assert_int_equal(rc, KV_ECONN);
        if (round == 1 && i == 99)
          print_message("  %s\n", kv_req_errmsg(&t[i].req));
        down++;
      } else {
        assert_int_equal(rc, 0);
        ok++;
      }
      kv_req_cleanup(&t[i].req);
    }
  }
  after = stats_of(s);
  /* the second round did not even try to connect: the server backs off */
  assert_true(after.fast_fails > before.fast_fails);
  assert_true(ok > 0 && down > 0);
  /* the live server's keys read back */
  for (int i = 0; i < 100; i++) {
    char key[32];
    int found;
    snprintf(key, sizeof key, "k%d", i);
    if (locate(s, "c", key) == 0) {
      assert_int_equal(do_get(s, "c", key, &found, NULL, NULL, NULL), 0);
      assert_int_equal(found, 1);
    }
  }
  close_store(s);
}

static void t_server_restart(void **state) {
  int port = free_port();
  pid_t pid = spawn_memcached(port);
  kv_store_t *s = open_url(
      "memcached://127.0.0.1:%d?prefix=restart&backoff=20&timeout=10000", port);
  treq_t t[20];
  int found = 0, rc = -1, attempts = 0;
  (void)state;
  assert_int_equal(do_put(s, "c", "k", "v", 1, 0), 0);
  /* Stop the server so that requests stay in flight, then kill it. */
  kill(pid, SIGSTOP);
  for (int i = 0; i < 20; i++) {
    treq_init(&t[i]);
    assert_int_equal(kv_get(s, &t[i].req, "c", "k", tcb), 0);
  }
  uv_run(&loop, UV_RUN_NOWAIT); /* written */
  uv_run(&loop, UV_RUN_NOWAIT);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(wait_req(&t[i], 0), KV_ECONN);
    kv_req_cleanup(&t[i].req);
  }
  /* Back on the same port: later requests succeed without reopening. */
  pid = spawn_memcached(port);
  while (rc != 0 && attempts++ < 200) {
    rc = do_put(s, "c", "k", "again", 5, 0);
    if (rc != 0) {
      assert_int_equal(rc, KV_ECONN);
      sleep_loop_ms(25);
    }
  }
  assert_int_equal(rc, 0);
  assert_int_equal(do_get(s, "c", "k", &found, NULL, NULL, NULL), 0);
  assert_int_equal(found, 1);
  close_store(s);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
}

/* ---- TTLs -------------------------------------------------------------- */

/* The exp= of the item whose key contains `needle` in a metadump, or
 * -2 when absent. */
static long long item_exp(const char *dump, const char *needle) {
  const char *p = strstr(dump, needle);
  const char *e;
  if (p == NULL) return -2;
  e = strstr(p, " exp=");
  assert_non_null(e);
  return strtoll(e + 5, NULL, 10);
}

static void t_forty_days(void **state) {
  kv_store_t *s = open_url("memcached://127.0.0.1:%s?prefix=ttl40", port1);
  double ttl;
  int found;
  char *dump;
  long long now = (long long)time(NULL), exp;
  (void)state;
  assert_int_equal(do_put(s, "c", "forty", "v", 1, 3456000), 0);
  assert_int_equal(do_put(s, "c", "huge", "v", 1, KV_TTL_MAX), 0);
  assert_int_equal(do_put(s, "c", "short", "v", 1, 0.3), 0);
  assert_int_equal(do_get(s, "c", "forty", &found, NULL, NULL, &ttl), 0);
  assert_int_equal(found, 1);
  assert_true(ttl > 3455990 && ttl <= 3456000);
  dump = metadump(port1);
  for (int i = 0; i < 40 && (!strstr(dump, "forty") || !strstr(dump, "huge") ||
                             !strstr(dump, "short"));
       i++) {
    free(dump); /* the crawler missed an item: dump again */
    usleep(50000);
    dump = metadump(port1);
  }
  /* memcached holds the entry past 30 days: the absolute time was sent */
  exp = item_exp(dump, "forty");
  print_message("  server expiry of a 40-day entry: now + %lld s\n", exp - now);
  assert_true(exp >= now + 3456000 && exp <= now + 3456000 + 10);
  /* beyond memcached's 32-bit expiries: no server expiry, filtered on read */
  assert_int_equal(item_exp(dump, "huge"), -1);
  /* below a second: rounded up, never "no expiry". On a loaded machine the
   * dumps above can take longer than the entry's 2 server seconds: gone
   * from the server (-2) shows an expiry too. */
  exp = item_exp(dump, "short");
  assert_true(exp == -2 || (exp >= now + 1 && exp <= now + 4));
  free(dump);
  assert_int_equal(do_get(s, "c", "huge", &found, NULL, NULL, &ttl), 0);
  assert_true(found && ttl > KV_TTL_MAX - 10);
  sleep_loop_ms(400);
  assert_int_equal(do_get(s, "c", "short", &found, NULL, NULL, NULL), 0);
  assert_int_equal(found, 0); /* still on the server, filtered by kvio */
  close_store(s);
}

/* ---- Names ------------------------------------------------------------- */

static void t_long_and_unsafe_keys(void **state) {
  kv_store_t *s = open_url("memcached://127.0.0.1:%s?prefix=names", port1);
  static char k300[301], k4096a[4097], k4096b[4097];
  const char *keys[] = {k300,         k4096a,
                        k4096b,       "with space",
                        "tab\there",  "ctl\x01\x1f\x7f",
                        "nl\r\nms x", "=raw",
                        "#hash",      "\xc3\xa9t\xc3\xa9"};
  size_t n = sizeof keys / sizeof *keys;
  char *dump = NULL, *p;
  int seen = 0;
  (void)state;
  memset(k300, 'x', 300);
  memset(k4096a, 'y', 4096);
  memset(k4096b, 'y', 4096);
  k4096b[4095] = 'z';
  for (size_t i = 0; i < n; i++) {
    char v[16];
    snprintf(v, sizeof v, "value-%zu", i);
    assert_int_equal(do_put(s, "a coll\x02", keys[i], v, strlen(v), 0), 0);
  }
  for (size_t i = 0; i < n; i++) {
    char v[16], *got = NULL;
    size_t gl = 0;
    int found;
    snprintf(v, sizeof v, "value-%zu", i);
    assert_int_equal(do_get(s, "a coll\x02", keys[i], &found, &got, &gl, NULL),
                     0);
    assert_int_equal(found, 1);
    assert_int_equal(gl, strlen(v));
    assert_memory_equal(got, v, gl);
    kv_free(got);
  }
  /* every memcached key is legal: at most 250 bytes, no space or control.
   * The crawler may miss items that are being moved between LRUs: dump
   * again until every entry (and the generation keys) has been seen. */
  for (int attempt = 0; attempt < 40 && seen < (int)n; attempt++) {
    if (attempt) {
      free(dump);
      usleep(50000);
    }
    dump = metadump(port1);
    seen = 0;
    for (p = strstr(dump, "key="); p; p = strstr(p + 1, "\nkey=")) {
      char raw[1024];
      const char *k = p[0] == '\n' ? p + 5 : p + 4, *end = strchr(k, ' ');
      size_t kl = url_decode(k, (size_t)(end - k), raw);
      if (kl < 11 || memcmp(raw, "kvio:=names", 11) != 0) continue;
      seen++;
      assert_true(kl <= 250);
      for (size_t i = 0; i < kl; i++)
        assert_true((unsigned char)raw[i] > 0x20 &&
                    (unsigned char)raw[i] < 0x7f);
    }
  }
  assert_true(seen >= (int)n);
  free(dump);
  close_store(s);
}

/* ---- Load ---------------------------------------------------------------- */

static void t_ten_thousand_in_flight(void **state) {
  enum { N = 10000 };
  kv_store_t *s = open_two(port1, port2, "prefix=load");
  treq_t *t = calloc(N, sizeof *t);
  char key[32];
  int bad = 0;
  (void)state;
  for (int i = 0; i < N; i++) {
    treq_init(&t[i]);
    snprintf(key, sizeof key, "k%d", i % 2000);
    if (i % 2 == 0)
      assert_int_equal(
          kv_put(s, &t[i].req, "c", key, key, strlen(key), 60, tcb), 0);
    else
      assert_int_equal(kv_get(s, &t[i].req, "c", key, tcb), 0);
    assert_int_equal(t[i].calls, 0);
  }
  for (int i = 0; i < N; i++)
    wait_req(&t[i], 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  for (int i = 0; i < N; i++) {
    if (t[i].calls != 1 || t[i].req.status != 0) bad++;
    if (i % 2 == 1 && i >= 4000 && t[i].req.found) {
      snprintf(key, sizeof key, "k%d", i % 2000);
      assert_memory_equal(t[i].req.value.base, key, strlen(key));
    }
    kv_req_cleanup(&t[i].req);
  }
  assert_int_equal(bad, 0);
  free(t);
  close_store(s);
}

static void t_pipelining(void **state) {
  enum { N = 64 };
  kv_store_t *s = open_url("memcached://127.0.0.1:%s?prefix=pipe", port1);
  treq_t t[N];
  kv_memcached_stats_t a, b;
  int found;
  (void)state;
  assert_int_equal(do_get(s, "c", "warm", &found, NULL, NULL, NULL), 0);
  a = stats_of(s);
  for (int i = 0; i < N; i++) {
    treq_init(&t[i]);
    assert_int_equal(kv_get(s, &t[i].req, "c", "k", tcb), 0);
  }
  for (int i = 0; i < N; i++) {
    assert_int_equal(wait_req(&t[i], 0), 0);
    kv_req_cleanup(&t[i].req);
  }
  b = stats_of(s);
  print_message("  64 gets in one turn: %llu write(s), %llu commands\n",
                (unsigned long long)(b.writes - a.writes),
                (unsigned long long)(b.commands - a.commands));
  assert_int_equal(b.writes - a.writes, 1);
  assert_int_equal(b.commands - a.commands, N + 2); /* + generation checks */
  assert_int_equal(b.replies - a.replies, N + 2);
  close_store(s);
}

/* ---- Errors, generations, atomic ---------------------------------------- */

static void t_too_big(void **state) {
  kv_store_t *s = open_url("memcached://127.0.0.1:%s?prefix=big", port1);
  size_t n = 40u << 20; /* above the test server's -I 32m */
  char *v = calloc(1, n);
  treq_t t;
  int found;
  (void)state;
  treq_init(&t);
  assert_int_equal(wait_req(&t, kv_put(s, &t.req, "c", "big", v, n, 0, tcb)),
                   KV_ETOOBIG);
  assert_non_null(strstr(kv_req_errmsg(&t.req), "too large"));
  kv_req_cleanup(&t.req);
  free(v);
  /* the connection survives; nothing was written */
  assert_int_equal(do_get(s, "c", "big", &found, NULL, NULL, NULL), 0);
  assert_int_equal(found, 0);
  assert_int_equal(do_put(s, "c", "small", "x", 1, 0), 0);
  close_store(s);
}

static void t_generations_across_clients(void **state) {
  kv_store_t *a = open_two(port1, port2, "prefix=gen");
  kv_store_t *b = open_two(port1, port2, "prefix=gen");
  treq_t t;
  int found;
  (void)state;
  assert_int_equal(do_put(a, "c", "k", "v", 1, 0), 0);
  assert_int_equal(do_put(a, "other", "k", "v", 1, 0), 0);
  assert_int_equal(do_get(a, "c", "k", &found, NULL, NULL, NULL), 0);
  assert_int_equal(found, 1);
  /* b destroys the collection: a, whose generations are cached, sees it */
  treq_init(&t);
  assert_int_equal(wait_req(&t, kv_destroy_collection(b, &t.req, "c", tcb)), 0);
  kv_req_cleanup(&t.req);
  assert_int_equal(do_get(a, "c", "k", &found, NULL, NULL, NULL), 0);
  assert_int_equal(found, 0);
  assert_int_equal(do_get(a, "other", "k", &found, NULL, NULL, NULL), 0);
  assert_int_equal(found, 1);
  assert_int_equal(do_put(a, "c", "k", "w", 1, 0), 0);
  assert_int_equal(do_get(b, "c", "k", &found, NULL, NULL, NULL), 0);
  assert_int_equal(found, 1);
  /* destroy() by b: everything of the prefix, for a too */
  treq_init(&t);
  assert_int_equal(wait_req(&t, kv_destroy(b, &t.req, tcb)), 0);
  kv_req_cleanup(&t.req);
  assert_int_equal(do_get(a, "other", "k", &found, NULL, NULL, NULL), 0);
  assert_int_equal(found, 0);
  close_store(a);
  close_store(b);
}

static void t_incr_keeps_header(void **state) {
  kv_store_t *s = open_url("memcached://127.0.0.1:%s?prefix=incr", port1);
  treq_t t;
  double ttl;
  int found;
  char *v = NULL;
  size_t vl;
  (void)state;
  assert_int_equal(do_put(s, "c", "n", "10", 2, 100), 0);
  treq_init(&t);
  assert_int_equal(wait_req(&t, kv_incr(s, &t.req, "c", "n", 5, 0, tcb)), 0);
  assert_int_equal(t.req.number, 15);
  kv_req_cleanup(&t.req);
  assert_int_equal(do_get(s, "c", "n", &found, &v, &vl, &ttl), 0);
  assert_int_equal(found, 1);
  assert_int_equal(vl, 2);
  assert_memory_equal(v, "15", 2);
  assert_true(ttl > 98 && ttl <= 100); /* the entry kept its expiry */
  kv_free(v);
  /* take with a CAS-guarded delete */
  treq_init(&t);
  assert_int_equal(wait_req(&t, kv_take(s, &t.req, "c", "n", tcb)), 0);
  assert_int_equal(t.req.found, 1);
  assert_memory_equal(t.req.value.base, "15", 2);
  kv_req_cleanup(&t.req);
  assert_int_equal(do_get(s, "c", "n", &found, NULL, NULL, NULL), 0);
  assert_int_equal(found, 0);
  close_store(s);
}

static void t_bad_urls(void **state) {
  const char *bad[] = {"memcached://",
                       "memcached://127.0.0.1:0",
                       "memcached://127.0.0.1:1/path",
                       "memcached://127.0.0.1:1?timeout=0",
                       "memcached://127.0.0.1:1?servers=127.0.0.1:99999",
                       "memcached://127.0.0.1:1?servers=127.0.0.1:1",
                       "memcached://127.0.0.1:1?nope=1"};
  (void)state;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    kv_store_t *s = NULL;
    char err[256] = "";
    assert_int_equal(kv_open_ex(&loop, bad[i], &s, err, sizeof err), KV_EINVAL);
    assert_null(s);
    assert_true(err[0] != '\0');
  }
}

int main(void) {
  const struct CMUnitTest ring[] = {
      cmocka_unit_test(t_ring_moves_a_fraction),
  };
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(t_bad_urls, setup, teardown),
      cmocka_unit_test_setup_teardown(t_keys_spread_over_both, setup, teardown),
      cmocka_unit_test_setup_teardown(t_server_down_fails_fast, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(t_server_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(t_forty_days, setup, teardown),
      cmocka_unit_test_setup_teardown(t_long_and_unsafe_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(t_ten_thousand_in_flight, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(t_pipelining, setup, teardown),
      cmocka_unit_test_setup_teardown(t_too_big, setup, teardown),
      cmocka_unit_test_setup_teardown(t_generations_across_clients, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(t_incr_keeps_header, setup, teardown),
  };
  int rc = cmocka_run_group_tests_name("memcached ring", ring, NULL, NULL);
  port1 = getenv("KV_MEMCACHED_PORT1");
  port2 = getenv("KV_MEMCACHED_PORT2");
  if (port1 == NULL || port2 == NULL || getenv("KV_MEMCACHED_SERVER") == NULL) {
    fprintf(stderr, "test-memcached: run it under tests/servers/"
                    "with-memcached.sh --servers 2; server tests skipped\n");
    return rc ? 1 : 77;
  }
  signal(SIGPIPE, SIG_IGN);
  rc |= cmocka_run_group_tests_name("memcached store", tests, NULL, NULL);
  return rc ? 1 : 0;
}
