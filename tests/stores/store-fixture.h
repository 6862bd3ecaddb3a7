/* The fixture shared by the engine-specific tests of the local stores
 * (test-disk.c, test-sqlite.c, test-rocksdb.c): a fresh directory and loop per
 * test, open/close/reopen, put/expect, listing, files, and the child processes
 * (this program run again with "--child MODE URL ...", fork + exec, so that
 * no process carries a connection or a loop across fork()). The batching
 * behaviour they share is tested once, in test-local-engine.c.
 *
 * Before including it, define KV_FX_NAME (the scheme, "sqlite") and
 * KV_FX_FILE (the name of the database in the test's directory). */
#ifndef KVIO_TESTS_STORE_FIXTURE_H
#define KVIO_TESTS_STORE_FIXTURE_H

#if defined(__GNUC__) || defined(__clang__)
#define KV_FX_UNUSED __attribute__((unused))
#else
#define KV_FX_UNUSED
#endif

typedef struct fx_s {
  uv_loop_t loop;
  kv_store_t *store;
  char dir[64];  /* the test's temporary directory */
  char path[96]; /* dir/KV_FX_FILE: the database */
  char url[160];
} fx_t;

static int g_done; /* callbacks run since the last SYNC */

KV_FX_UNUSED static void done_cb(kv_req_t *req) {
  (void)req;
  g_done++;
}

/* Run the loop until the request submitted with `rc` completes; returns its
 * status (or the submit error). */
KV_FX_UNUSED static int sync_wait(fx_t *fx, kv_req_t *req, int rc) {
  if (rc != 0) return rc;
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(g_done, 1);
  return req->status;
}

#define SYNC(fx, req, call) \
  (memset(&(req), 0, sizeof(req)), g_done = 0, sync_wait((fx), &(req), (call)))

KV_FX_UNUSED static void rm_rf(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

KV_FX_UNUSED static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  strcpy(fx->dir, "/tmp/kvio-" KV_FX_NAME "-XXXXXX");
  assert_non_null(mkdtemp(fx->dir));
  snprintf(fx->path, sizeof fx->path, "%s/" KV_FX_FILE, fx->dir);
  snprintf(fx->url, sizeof fx->url, KV_FX_NAME "://%s", fx->path);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  *state = fx;
  return 0;
}

KV_FX_UNUSED static void closed_cb(kv_store_t *s) {
  (*(int *)s->data)++;
}

KV_FX_UNUSED static void close_store(fx_t *fx, kv_store_t *s) {
  int closed = 0;
  s->data = &closed;
  assert_int_equal(kv_store_close(s, closed_cb), 0);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
}

KV_FX_UNUSED static int teardown(void **state) {
  fx_t *fx = *state;
  if (fx->store != NULL) close_store(fx, fx->store);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  rm_rf(fx->dir);
  free(fx);
  return 0;
}

KV_FX_UNUSED static void open_url(fx_t *fx, const char *url) {
  char err[512];
  int rc = kv_open_ex(&fx->loop, url, &fx->store, err, sizeof err);
  if (rc != 0) fail_msg("kv_open_ex(%s): %s: %s", url, kv_err_name(rc), err);
}

KV_FX_UNUSED static void open_store(fx_t *fx) {
  open_url(fx, fx->url);
}

KV_FX_UNUSED static void reopen(fx_t *fx) {
  close_store(fx, fx->store);
  fx->store = NULL;
  open_store(fx);
}

/* Open `url` expecting failure `want`; returns the detail (static). */
KV_FX_UNUSED static const char *open_fails(fx_t *fx, const char *url,
                                           int want) {
  static char err[512];
  kv_store_t *s = (kv_store_t *)1;
  int rc;
  err[0] = '\0';
  rc = kv_open_ex(&fx->loop, url, &s, err, sizeof err);
  if (rc != want)
    fail_msg("kv_open_ex(%s) = %s (%s), expected %s", url, kv_err_name(rc), err,
             kv_err_name(want));
  assert_null(s);
  return err;
}

KV_FX_UNUSED static void put(fx_t *fx, const char *coll, const char *key,
                             const char *v, double ttl) {
  kv_req_t req;
  assert_int_equal(
      SYNC(fx, req,
           kv_put(fx->store, &req, coll, key, v, strlen(v), ttl, done_cb)),
      0);
  kv_req_cleanup(&req);
}

/* Expect `key` to hold `v` (NULL: missing). */
KV_FX_UNUSED static void expect(fx_t *fx, const char *coll, const char *key,
                                const char *v) {
  kv_req_t req;
  assert_int_equal(SYNC(fx, req, kv_get(fx->store, &req, coll, key, done_cb)),
                   0);
  if (v == NULL) {
    assert_int_equal(req.found, 0);
  } else {
    assert_int_equal(req.found, 1);
    assert_int_equal(req.value.len, strlen(v));
    assert_memory_equal(req.value.base, v, strlen(v));
  }
  kv_req_cleanup(&req);
}

/* A name of `len` ASCII bytes: `prefix` then `fill` repeated. */
KV_FX_UNUSED static char *make_name(const char *prefix, char fill, size_t len) {
  char *s = malloc(len + 1);
  size_t n = strlen(prefix);
  assert_non_null(s);
  memset(s, fill, len);
  memcpy(s, prefix, n < len ? n : len);
  s[len] = '\0';
  return s;
}

/* List every key of coll (or every collection) with page size `limit`;
 * returns the names (strdup'ed) in *out, and the number of pages in
 * *pages_out unless it is NULL. */
KV_FX_UNUSED static size_t list_all(fx_t *fx, const char *coll, int collections,
                                    size_t limit, char ***out,
                                    size_t *pages_out) {
  char **names = NULL, *cursor = NULL;
  size_t n = 0, i, pages = 0;
  for (;;) {
    kv_req_t req;
    int rc;
    if (collections)
      rc = SYNC(fx, req,
                kv_collections(fx->store, &req, cursor, limit, done_cb));
    else
      rc =
          SYNC(fx, req, kv_keys(fx->store, &req, coll, cursor, limit, done_cb));
    assert_int_equal(rc, 0);
    pages++;
    if (limit) assert_true(req.nnames <= limit);
    names = realloc(names, (n + req.nnames + 1) * sizeof(*names));
    for (i = 0; i < req.nnames; i++) {
      assert_int_equal(strlen(req.names[i].base), req.names[i].len);
      names[n++] = strdup(req.names[i].base);
    }
    free(cursor);
    cursor = req.cursor ? strdup(req.cursor) : NULL;
    kv_req_cleanup(&req);
    if (cursor == NULL) break;
    assert_true(pages < 100000);
  }
  if (pages_out != NULL) *pages_out = pages;
  *out = names;
  return n;
}

KV_FX_UNUSED static void free_names(char **names, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

KV_FX_UNUSED static int has_name(char **names, size_t n, const char *name) {
  size_t i;
  int count = 0;
  for (i = 0; i < n; i++)
    count += strcmp(names[i], name) == 0;
  return count;
}

/* The whole content of a file (malloc'ed), its size in *len. */
KV_FX_UNUSED static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

KV_FX_UNUSED static void spit(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

KV_FX_UNUSED static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* ---- Children -------------------------------------------------------------
 *
 * "--child writer URL NAME N": N/2 puts "NAME-%04d" in collection "shared"
 * and N/2 incr of "shared"/"counter", N/20 requests in flight at a time;
 * exit 0 when all succeeded.
 * "--child crash URL FD": an endless storm of puts, 32 in flight, writing
 * the number of each acknowledged put to FD; killed by the parent.
 */

KV_FX_UNUSED static int child_writer(const char *url, const char *name, int n) {
  uv_loop_t loop;
  kv_store_t *s;
  kv_req_t reqs[20];
  char key[64];
  char err[256];
  int i, j, failed = 0;
  if (uv_loop_init(&loop) != 0) return 1;
  if (kv_open_ex(&loop, url, &s, err, sizeof err) != 0) {
    fprintf(stderr, "child %s: %s\n", name, err);
    return 1;
  }
  for (i = 0; i < n; i += 20) {
    memset(reqs, 0, sizeof reqs);
    for (j = 0; j < 20; j++) {
      if ((i + j) % 2 == 0) {
        snprintf(key, sizeof key, "%s-%04d", name, i + j);
        failed |= kv_put(s, &reqs[j], "shared", key, key, strlen(key), 0,
                         done_cb) != 0;
      } else {
        failed |= kv_incr(s, &reqs[j], "shared", "counter", 1, 0, done_cb) != 0;
      }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (j = 0; j < 20; j++) {
      if (reqs[j].status != 0) {
        fprintf(stderr, "child %s: %s\n", name, kv_req_errmsg(&reqs[j]));
        failed = 1;
      }
      kv_req_cleanup(&reqs[j]);
    }
  }
  kv_store_close(s, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return failed || uv_loop_close(&loop) != 0;
}

KV_FX_UNUSED static int g_ack_fd;
KV_FX_UNUSED static int g_crash_next;
KV_FX_UNUSED static kv_store_t *g_crash_store;

KV_FX_UNUSED static void crash_writer_cb(kv_req_t *req) {
  int i = (int)(intptr_t)req->data;
  char key[16];
  if (req->status != 0) _exit(2);
  if (write(g_ack_fd, &i, sizeof i) != sizeof i) _exit(3);
  kv_req_cleanup(req);
  i = g_crash_next++;
  req->data = (void *)(intptr_t)i;
  snprintf(key, sizeof key, "w%06d", i);
  if (kv_put(g_crash_store, req, "crash", key, key, strlen(key), 0,
             crash_writer_cb) != 0)
    _exit(4);
}

KV_FX_UNUSED static int child_crash(const char *url, int fd) {
  uv_loop_t loop;
  static kv_req_t reqs[32];
  char key[16];
  int i;
  g_ack_fd = fd;
  if (uv_loop_init(&loop) != 0 || kv_open(&loop, url, &g_crash_store) != 0)
    return 1;
  for (i = 0; i < 32; i++) {
    reqs[i].data = (void *)(intptr_t)i;
    snprintf(key, sizeof key, "w%06d", i);
    if (kv_put(g_crash_store, &reqs[i], "crash", key, key, strlen(key), 0,
               crash_writer_cb) != 0)
      return 1;
  }
  g_crash_next = 32;
  uv_run(&loop, UV_RUN_DEFAULT);
  return 5; /* never reached: killed */
}

/* Start this program as a child with the given arguments. */
KV_FX_UNUSED static pid_t spawn(const char *const *args) {
  char *argv[8];
  pid_t pid;
  int i;
  argv[0] = (char *)"test-" KV_FX_NAME;
  argv[1] = (char *)"--child";
  for (i = 0; args[i] != NULL && i < 5; i++)
    argv[2 + i] = (char *)args[i];
  argv[2 + i] = NULL;
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    execv("/proc/self/exe", argv);
    _exit(127);
  }
  return pid;
}

KV_FX_UNUSED static int wait_exit(pid_t pid) {
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

#endif
