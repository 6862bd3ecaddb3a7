/* test-stall URL PID TIMEOUT_MS — a network store whose server stalls
 * (docs/faults.md).
 *
 * Run under a launcher (tests/servers/with-redis.sh, with-memcached.sh,
 * with-postgres.sh) that substitutes the server's port and pid: URL carries
 * the store's own per-command timeout option, TIMEOUT_MS says what it is.
 * "Stalling" the server is SIGSTOP to PID and to every descendant of it
 * (PostgreSQL's backends are the postmaster's children); SIGCONT resumes
 * them. Whatever happens — a failed check, a crash, the alarm — the stopped
 * processes are resumed before this process ends (teardown, atexit, and a
 * handler for the fatal signals).
 *
 * Cases:
 *   inflight  requests in flight when the server stops complete, each exactly
 *             once, with KV_ETIMEDOUT (or KV_ECONN for the rest of a reset
 *             connection) no sooner than the timeout and within a bound;
 *             requests submitted while it is still stopped (the store
 *             reconnects to a server that accepts but never answers) fail
 *             the same way; after SIGCONT the same store answers again
 *             without a reopen, and what was acknowledged before is there.
 *   connect   the server stops before the store's first request: the
 *             connection setup times out (KV_ETIMEDOUT / KV_ECONN); after
 *             SIGCONT the same store works.
 *   close     the store is closed while requests wait on the stopped server:
 *             each completes exactly once (with an error), the close callback
 *             runs after all of them, and the loop ends with nothing left.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#include <cmocka.h>

#include "faults/faults.h"

#define NREQ 8
#define SLACK_MS 20000 /* beyond the timeout: a loaded machine */
#define RECOVER_MS 15000
#define ALARM_S 240
#define MAX_STOPPED 256
#define COLL "stall"

static const char *url;
static pid_t server_pid;
static uint64_t timeout_ms;

/* The processes this test stopped (for the signal handler: plain array). */
static volatile sig_atomic_t n_stopped;
static pid_t stopped[MAX_STOPPED];

static void resume_all(void) {
  for (sig_atomic_t i = 0; i < n_stopped; i++)
    kill(stopped[i], SIGCONT);
  n_stopped = 0;
}

static void fatal_handler(int sig) {
  resume_all(); /* kill() is async-signal-safe */
  signal(sig, SIG_DFL);
  raise(sig);
}

/* The parent pid of `pid` from /proc, or -1. */
static pid_t parent_of(pid_t pid) {
  char path[64], buf[512];
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the name may hold spaces and parens */
  int ppid;
  char state;
  if (p == NULL || sscanf(p + 1, " %c %d", &state, &ppid) != 2) return -1;
  return (pid_t)ppid;
}

static int is_descendant(pid_t pid) {
  for (int depth = 0; depth < 8 && pid > 1; depth++) {
    pid = parent_of(pid);
    if (pid == server_pid) return 1;
  }
  return 0;
}

/* SIGSTOP the server and its descendants (the server first: it then starts
 * no new child). */
/* SIGSTOP is delivered asynchronously: kill() may return while some thread
 * of the target still runs (and answers one more request). Wait until every
 * thread of pid shows state T (stopped), for at most 2 s. */
static void wait_stopped(pid_t pid) {
  char path[64];
  for (int tries = 0; tries < 2000; tries++) {
    int running = 0;
    DIR *d;
    struct dirent *e;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    d = opendir(path);
    if (d == NULL) return; /* gone: nothing to wait for */
    while ((e = readdir(d)) != NULL) {
      char stat[320], buf[512];
      FILE *f;
      if (e->d_name[0] == '.') continue;
      snprintf(stat, sizeof stat, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
      f = fopen(stat, "r");
      if (f == NULL) continue;
      if (fgets(buf, sizeof buf, f) != NULL) {
        const char *rp = strrchr(buf, ')'); /* "pid (comm) S ..." */
        if (rp && rp[1] == ' ' && rp[2] != 'T' && rp[2] != 't') running = 1;
      }
      fclose(f);
    }
    closedir(d);
    if (!running) return;
    uv_sleep(1);
  }
  fail_msg("process %d did not stop within 2 s of SIGSTOP", (int)pid);
}

static void stall(void) {
  DIR *d;
  struct dirent *e;
  assert_int_equal(n_stopped, 0);
  if (kill(server_pid, SIGSTOP) != 0)
    fail_msg("SIGSTOP %d: %s", (int)server_pid, strerror(errno));
  stopped[n_stopped++] = server_pid;
  d = opendir("/proc");
  assert_non_null(d);
  while ((e = readdir(d)) != NULL && n_stopped < MAX_STOPPED) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 1 || (pid_t)pid == server_pid) continue;
    if (!is_descendant((pid_t)pid)) continue;
    if (kill((pid_t)pid, SIGSTOP) == 0) stopped[n_stopped++] = (pid_t)pid;
  }
  closedir(d);
  for (int i = 0; i < n_stopped; i++)
    wait_stopped(stopped[i]);
}

typedef struct stall_s {
  uv_loop_t loop;
  kv_store_t *store;
  long done;
  long closed;
  long done_at_close; /* requests completed when the close callback ran */
  fault_req_t reqs[NREQ];
} stall_t;

static void on_closed(kv_store_t *s) {
  stall_t *st = kv_store_loop(s)->data;
  st->closed++;
  st->done_at_close = st->done;
}

static int stall_setup(void **state) {
  stall_t *st = calloc(1, sizeof(*st));
  char err[512] = "";
  assert_non_null(st);
  assert_int_equal(uv_loop_init(&st->loop), 0);
  st->loop.data = st;
  int rc = kv_open_ex(&st->loop, url, &st->store, err, sizeof(err));
  if (rc != 0) fail_msg("open %s: %s: %s", url, kv_err_name(rc), err);
  *state = st;
  return 0;
}

static int stall_teardown(void **state) {
  stall_t *st = *state;
  resume_all();
  if (st->store != NULL) {
    kv_store_close(st->store, on_closed);
    fault_run_until(&st->loop, &st->closed, st->closed + 1,
                    timeout_ms + SLACK_MS);
  }
  for (int i = 0; i < NREQ; i++)
    kv_req_cleanup(&st->reqs[i].req);
  /* Nothing may be left on the loop: a bounded run, then close. */
  long never = 0;
  fault_run_until(&st->loop, &never, 1, 2000);
  int alive = uv_loop_alive(&st->loop);
  int lc = uv_loop_close(&st->loop);
  free(st);
  assert_int_equal(alive, 0);
  assert_int_equal(lc, 0);
  return 0;
}

/* One request, waited for (bounded). */
static int one_put(stall_t *st, const char *key, const char *value,
                   uint64_t bound_ms, char *msg, size_t msglen) {
  fault_req_t r;
  long base = st->done;
  memset(&r, 0, sizeof(r));
  fault_req_init(&r, &st->done);
  int rc = kv_put(st->store, &r.req, COLL, key, value, strlen(value), 0,
                  fault_req_cb);
  if (rc != 0) fail_msg("%s: submit put: %s", url, kv_err_name(rc));
  if (fault_run_until(&st->loop, &st->done, base + 1, bound_ms) != 0)
    fail_msg("%s: a put did not complete within %llu ms (hang)", url,
             (unsigned long long)bound_ms);
  assert_int_equal(r.calls, 1);
  rc = r.req.status;
  if (rc != 0)
    snprintf(msg, msglen, "%s: %s", kv_err_name(rc), kv_req_errmsg(&r.req));
  kv_req_cleanup(&r.req);
  return rc;
}

/* A get of `key`, waited for; 0 and *found / the value compared. */
static int one_get(stall_t *st, const char *key, const char *expect,
                   uint64_t bound_ms, char *msg, size_t msglen) {
  fault_req_t r;
  long base = st->done;
  memset(&r, 0, sizeof(r));
  fault_req_init(&r, &st->done);
  int rc = kv_get(st->store, &r.req, COLL, key, fault_req_cb);
  if (rc != 0) fail_msg("%s: submit get: %s", url, kv_err_name(rc));
  if (fault_run_until(&st->loop, &st->done, base + 1, bound_ms) != 0)
    fail_msg("%s: a get did not complete within %llu ms (hang)", url,
             (unsigned long long)bound_ms);
  assert_int_equal(r.calls, 1);
  rc = r.req.status;
  if (rc != 0) {
    snprintf(msg, msglen, "%s: %s", kv_err_name(rc), kv_req_errmsg(&r.req));
  } else if (!r.req.found || r.req.value.len != strlen(expect) ||
             memcmp(r.req.value.base, expect, r.req.value.len) != 0) {
    fail_msg("%s: get %s: found=%d, expected \"%s\"", url, key, r.req.found,
             expect);
  }
  kv_req_cleanup(&r.req);
  return rc;
}

/* Submit NREQ mixed requests (gets, puts, a delete, a get_many, a ttl). */
static void submit_mixed(stall_t *st, const char *tag) {
  static const char *const many[] = {"warm", "other"};
  char key[64];
  for (int i = 0; i < NREQ; i++) {
    fault_req_t *r = &st->reqs[i];
    int rc;
    kv_req_cleanup(&r->req);
    fault_req_init(r, &st->done);
    snprintf(key, sizeof(key), "%s-%d", tag, i);
    switch (i % 5) {
    case 0:
      rc = kv_get(st->store, &r->req, COLL, "warm", fault_req_cb);
      break;
    case 1:
      rc = kv_put(st->store, &r->req, COLL, key, "during", 6, 0, fault_req_cb);
      break;
    case 2:
      rc = kv_delete(st->store, &r->req, COLL, key, fault_req_cb);
      break;
    case 3:
      rc = kv_get_many(st->store, &r->req, COLL, many, 2, fault_req_cb);
      break;
    default:
      rc = kv_ttl(st->store, &r->req, COLL, "warm", fault_req_cb);
      break;
    }
    if (rc != 0)
      fail_msg("%s: submit %d: %s: %s", url, i, kv_err_name(rc),
               kv_req_errmsg(&r->req));
  }
}

/* Every one of the NREQ completed once with a stall error; returns the
 * shortest time to completion in ms. */
static uint64_t check_stalled(stall_t *st, const char *what, int *n_timedout) {
  uint64_t min_ms = UINT64_MAX;
  *n_timedout = 0;
  for (int i = 0; i < NREQ; i++) {
    fault_req_t *r = &st->reqs[i];
    if (r->calls != 1)
      fail_msg("%s: %s: request %d called back %d times", url, what, i,
               r->calls);
    if (r->req.status != KV_ETIMEDOUT && r->req.status != KV_ECONN)
      fail_msg("%s: %s: request %d: %s (%s), expected KV_ETIMEDOUT or "
               "KV_ECONN",
               url, what, i, kv_err_name(r->req.status),
               kv_req_errmsg(&r->req));
    if (r->req.status == KV_ETIMEDOUT) (*n_timedout)++;
    uint64_t ms = (r->t_end - r->t_sub) / 1000000;
    if (ms < min_ms) min_ms = ms;
  }
  return min_ms;
}

/* After SIGCONT: the same store answers within RECOVER_MS (retrying a
 * failed request, as a client would). Returns the attempts it took. */
static int recover(stall_t *st, const char *key, const char *value) {
  char msg[512] = "";
  uint64_t start = uv_hrtime();
  int attempts = 0;
  for (;;) {
    attempts++;
    if (one_get(st, key, value, timeout_ms + SLACK_MS, msg, sizeof(msg)) == 0)
      return attempts;
    if ((uv_hrtime() - start) / 1000000 > RECOVER_MS)
      fail_msg("%s: no answer %d ms after SIGCONT (%d attempts), last: %s", url,
               RECOVER_MS, attempts, msg);
    uv_sleep(100);
  }
}

/* The first put (connection setup included) may take longer than the
 * timeout on a loaded machine: retry it for RECOVER_MS. */
static void warm_up(stall_t *st) {
  char msg[512] = "";
  uint64_t start = uv_hrtime();
  while (one_put(st, "warm", "v-warm", timeout_ms + SLACK_MS, msg,
                 sizeof(msg)) != 0) {
    if ((uv_hrtime() - start) / 1000000 > RECOVER_MS)
      fail_msg("%s: warm-up put: %s", url, msg);
    uv_sleep(100);
  }
}

static void test_inflight(void **state) {
  stall_t *st = *state;
  char msg[512] = "";
  int nto1, nto2;
  warm_up(st);
  stall();
  long base = st->done;
  submit_mixed(st, "a");
  if (fault_run_until(&st->loop, &st->done, base + NREQ,
                      timeout_ms + SLACK_MS) != 0)
    fail_msg("%s: %ld of %d requests completed within %llu ms of a stall "
             "(hang)",
             url, st->done - base, NREQ,
             (unsigned long long)(timeout_ms + SLACK_MS));
  uint64_t min1 = check_stalled(st, "in flight", &nto1);
  if (nto1 == 0) fail_msg("%s: no request failed with KV_ETIMEDOUT", url);
  if (min1 + 50 < timeout_ms * 9 / 10)
    fail_msg("%s: a request failed after %llu ms, before the timeout (%llu)",
             url, (unsigned long long)min1, (unsigned long long)timeout_ms);
  /* Still stopped: new requests (a new connection to a server that accepts
   * but never answers) fail the same way. */
  base = st->done;
  submit_mixed(st, "b");
  if (fault_run_until(&st->loop, &st->done, base + NREQ,
                      timeout_ms + SLACK_MS) != 0)
    fail_msg("%s: requests submitted while stalled: %ld of %d completed "
             "within %llu ms (hang)",
             url, st->done - base, NREQ,
             (unsigned long long)(timeout_ms + SLACK_MS));
  check_stalled(st, "submitted while stalled", &nto2);
  resume_all();
  int attempts = recover(st, "warm", "v-warm");
  if (one_put(st, "after", "v-after", timeout_ms + SLACK_MS, msg,
              sizeof(msg)) != 0)
    fail_msg("%s: put after SIGCONT: %s", url, msg);
  if (one_get(st, "after", "v-after", timeout_ms + SLACK_MS, msg,
              sizeof(msg)) != 0)
    fail_msg("%s: get after SIGCONT: %s", url, msg);
  printf("[ stall ] %s inflight: %d/%d KV_ETIMEDOUT (rest KV_ECONN), first "
         "after %llu ms (timeout %llu); while stalled: %d/%d KV_ETIMEDOUT; "
         "answers again after SIGCONT at attempt %d, no reopen\n",
         url, nto1, NREQ, (unsigned long long)min1,
         (unsigned long long)timeout_ms, nto2, NREQ, attempts);
}

static void test_connect(void **state) {
  stall_t *st = *state;
  char msg[512] = "";
  stall();
  long base = st->done;
  submit_mixed(st, "c");
  if (fault_run_until(&st->loop, &st->done, base + NREQ,
                      timeout_ms + SLACK_MS) != 0)
    fail_msg("%s: first requests to a stalled server: %ld of %d completed "
             "within %llu ms (hang)",
             url, st->done - base, NREQ,
             (unsigned long long)(timeout_ms + SLACK_MS));
  int nto;
  uint64_t min = check_stalled(st, "connecting", &nto);
  resume_all();
  int attempts = 0;
  uint64_t start = uv_hrtime();
  for (;;) {
    attempts++;
    if (one_put(st, "warm", "v-warm", timeout_ms + SLACK_MS, msg,
                sizeof(msg)) == 0)
      break;
    if ((uv_hrtime() - start) / 1000000 > RECOVER_MS)
      fail_msg("%s: no answer %d ms after SIGCONT, last: %s", url, RECOVER_MS,
               msg);
    uv_sleep(100);
  }
  recover(st, "warm", "v-warm");
  printf("[ stall ] %s connect: %d/%d KV_ETIMEDOUT (rest KV_ECONN), first "
         "after %llu ms; works after SIGCONT at attempt %d, no reopen\n",
         url, nto, NREQ, (unsigned long long)min, attempts);
}

static void test_close(void **state) {
  stall_t *st = *state;
  warm_up(st);
  stall();
  long base = st->done;
  submit_mixed(st, "d");
  /* Let them reach the wire (a loop turn or two), then close. */
  long never = 0;
  fault_run_until(&st->loop, &never, 1, 100);
  assert_int_equal(st->done, base); /* nobody can have answered */
  uint64_t t0 = uv_hrtime();
  assert_int_equal(kv_store_close(st->store, on_closed), 0);
  st->store = NULL;
  if (fault_run_until(&st->loop, &st->closed, 1, timeout_ms + SLACK_MS) != 0)
    fail_msg("%s: close with requests on a stalled server: no close "
             "callback within %llu ms (hang); %ld of %d requests completed",
             url, (unsigned long long)(timeout_ms + SLACK_MS), st->done - base,
             NREQ);
  uint64_t close_ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(st->done_at_close, base + NREQ);
  int codes[4] = {0, 0, 0, 0}; /* ECANCELED, ETIMEDOUT, ECONN, other */
  for (int i = 0; i < NREQ; i++) {
    fault_req_t *r = &st->reqs[i];
    if (r->calls != 1)
      fail_msg("%s: close: request %d called back %d times", url, i, r->calls);
    if (r->req.status == 0)
      fail_msg("%s: close: request %d succeeded on a stopped server", url, i);
    codes[r->req.status == KV_ECANCELED   ? 0
          : r->req.status == KV_ETIMEDOUT ? 1
          : r->req.status == KV_ECONN     ? 2
                                          : 3]++;
    if (codes[3])
      fail_msg("%s: close: request %d: %s (%s)", url, i,
               kv_err_name(r->req.status), kv_req_errmsg(&r->req));
  }
  printf("[ stall ] %s close: close callback after %llu ms, requests: %d "
         "KV_ECANCELED, %d KV_ETIMEDOUT, %d KV_ECONN, each once\n",
         url, (unsigned long long)close_ms, codes[0], codes[1], codes[2]);
  resume_all();
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s URL SERVER-PID TIMEOUT-MS\n", argv[0]);
    return 2;
  }
  url = argv[1];
  server_pid = (pid_t)atol(argv[2]);
  timeout_ms = (uint64_t)atoll(argv[3]);
  if (server_pid <= 1 || kill(server_pid, 0) != 0 || timeout_ms == 0) {
    fprintf(stderr, "test-stall: bad server pid %s or timeout %s\n", argv[2],
            argv[3]);
    return 2;
  }
  atexit(resume_all);
  static const int fatal[] = {SIGALRM, SIGSEGV, SIGABRT, SIGBUS,
                              SIGFPE,  SIGILL,  SIGTERM, SIGINT};
  for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
    signal(fatal[i], fatal_handler);
  signal(SIGPIPE, SIG_IGN);
  alarm(ALARM_S); /* the last resort against a hang */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_inflight, stall_setup,
                                      stall_teardown),
      cmocka_unit_test_setup_teardown(test_connect, stall_setup,
                                      stall_teardown),
      cmocka_unit_test_setup_teardown(test_close, stall_setup, stall_teardown),
  };
  return cmocka_run_group_tests_name(url, tests, NULL, NULL);
}
