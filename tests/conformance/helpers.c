/* The conformance suite's fixture and helper layer: open a fresh store per
 * case, run one request to completion, and check results with messages that
 * name the URL and the caller's line. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conformance.h"

/* ---- Failures ----------------------------------------------------------- */

void conf_fail_at(const char *file, int line, const char *fmt, ...) {
  char msg[2048];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  print_error("[%s] %s\n", conf_url, msg);
  _fail(file, line);
  abort(); /* not reached: _fail longjmps out of the test */
}

void conf_check_int(long long actual, long long expected, const char *what,
                    const char *file, int line) {
  if (actual != expected)
    conf_fail_at(file, line, "%s is %lld, expected %lld", what, actual,
                 expected);
}

void conf_check_status(int actual, int expected, const char *what,
                       const char *file, int line) {
  if (actual != expected)
    conf_fail_at(file, line, "%s is %d (%s), expected %d (%s)", what, actual,
                 kv_err_name(actual), expected, kv_err_name(expected));
}

void conf_check_true(int cond, const char *what, const char *file, int line) {
  if (!cond) conf_fail_at(file, line, "expected %s", what);
}

static void describe_bytes(char *out, size_t outlen, const void *data,
                           size_t len) {
  const unsigned char *p = data;
  size_t o = 0;
  size_t i;

  o += (size_t)snprintf(out + o, outlen - o, "%zu bytes \"", len);
  for (i = 0; i < len && i < 40 && o + 8 < outlen; i++) {
    if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
      out[o++] = (char)p[i];
    else
      o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", p[i]);
  }
  snprintf(out + o, outlen - o, "%s\"", i < len ? "..." : "");
}

void conf_check_bytes(const void *actual, size_t actual_len,
                      const void *expected, size_t expected_len,
                      const char *what, const char *file, int line) {
  char a[256];
  char e[256];

  if (actual_len == expected_len &&
      (expected_len == 0 || memcmp(actual, expected, expected_len) == 0))
    return;
  describe_bytes(a, sizeof(a), actual, actual_len);
  describe_bytes(e, sizeof(e), expected, expected_len);
  conf_fail_at(file, line, "%s is %s, expected %s", what, a, e);
}

void conf_error(conf_t *fx, const char *fmt, ...) {
  va_list ap;

  if (fx->errors++ != 0) return;
  va_start(ap, fmt);
  vsnprintf(fx->first_error, sizeof(fx->first_error), fmt, ap);
  va_end(ap);
}

/* ---- Fixture --------------------------------------------------------------
 */

static char *replace_tmp(const char *url, const char *dir) {
  static const char token[] = "@TMP@";
  size_t n = 0;
  const char *p;
  char *out;
  char *o;

  for (p = strstr(url, token); p != NULL; p = strstr(p + 1, token))
    n++;
  out = malloc(strlen(url) + n * strlen(dir) + 1);
  if (out == NULL) return NULL;
  o = out;
  for (p = url; *p != '\0';) {
    if (strncmp(p, token, sizeof(token) - 1) == 0) {
      memcpy(o, dir, strlen(dir));
      o += strlen(dir);
      p += sizeof(token) - 1;
    } else {
      *o++ = *p++;
    }
  }
  *o = '\0';
  return out;
}

static int64_t parse_max_entries(const char *url) {
  const char *q = strchr(url, '?');
  const char *p;

  if (q == NULL) return 0;
  for (p = q; p != NULL; p = strchr(p + 1, '&')) {
    if (strncmp(p + 1, "max_entries=", 12) == 0)
      return strtoll(p + 1 + 12, NULL, 10);
  }
  return 0;
}

static void walk_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  print_error("[%s]   open handle: %s%s\n", conf_url,
              uv_handle_type_name(uv_handle_get_type(h)),
              uv_is_closing(h) ? " (closing)" : "");
}

static int try_open(conf_t *fx, char *errbuf, size_t errbuf_len) {
  int rc = kv_open_ex(&fx->loop, fx->url, &fx->store, errbuf, errbuf_len);

  if (rc != 0) return rc;
  fx->caps = kv_store_caps(fx->store);
  fx->retains = strcmp(kv_store_name(fx->store), "null") != 0;
  return 0;
}

void conf_open(conf_t *fx) {
  char errbuf[256] = "";
  int rc = try_open(fx, errbuf, sizeof(errbuf));

  if (rc != 0)
    conf_fail_at(__FILE__, __LINE__, "kv_open(%s) failed: %s (%s)", fx->url,
                 kv_err_name(rc), errbuf);
}

/* kv_store_t is opaque to users, so the close callback finds the fixture of
 * the running case here (cases run one at a time). */
conf_t *conf_current;

static void close_cb(kv_store_t *store) {
  (void)store;
  conf_current->close_cb_calls++;
}

void conf_close(conf_t *fx) {
  int before = fx->close_cb_calls;
  int rc;

  rc = kv_store_close(fx->store, close_cb);
  if (rc != 0)
    conf_fail_at(__FILE__, __LINE__, "kv_store_close: %s", kv_err_name(rc));
  while (fx->close_cb_calls == before) {
    if (uv_run(&fx->loop, UV_RUN_ONCE) == 0 && fx->close_cb_calls == before) {
      fx->broken = 1;
      conf_fail_at(__FILE__, __LINE__,
                   "the loop ended before the close callback ran");
    }
  }
  CHECK_INT(fx->close_cb_calls, before + 1);
  fx->store = NULL;
}

static int rm_cb(const char *path, const struct stat *sb, int flag,
                 struct FTW *ftw);

/* Remove the temporary directory and free the fixture's strings. */
static void fixture_release(conf_t *fx) {
  if (fx->tmpdir[0] != '\0') nftw(fx->tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  fx->tmpdir[0] = '\0';
  free(fx->url);
  fx->url = NULL;
}

int conf_setup(void **state) {
  conf_t *fx = calloc(1, sizeof(*fx));
  char errbuf[256] = "";
  int rc;

  *state = NULL;
  if (fx == NULL || uv_loop_init(&fx->loop) != 0) {
    free(fx);
    return -1;
  }
  if (strstr(conf_url, "@TMP@") != NULL) {
    snprintf(fx->tmpdir, sizeof(fx->tmpdir), "%s/kvio-conf-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(fx->tmpdir) == NULL) {
      print_error("[%s] mkdtemp(%s): %s\n", conf_url, fx->tmpdir,
                  strerror(errno));
      fx->tmpdir[0] = '\0';
      goto fail;
    }
  }
  fx->url = replace_tmp(conf_url, fx->tmpdir);
  if (fx->url == NULL) goto fail;
  fx->max_entries = parse_max_entries(fx->url);
  rc = try_open(fx, errbuf, sizeof(errbuf));
  if (rc != 0) {
    print_error("[%s] kv_open(%s) failed: %s (%s)\n", conf_url, fx->url,
                kv_err_name(rc), errbuf);
    goto fail;
  }
  *state = fx;
  conf_current = fx;
  /* A URL without @TMP@ names a backend shared by every case (a server):
   * each case starts from an empty store. */
  if (fx->tmpdir[0] == '\0' && (fx->caps & KV_CAP_DESTROY)) {
    conf_req_t r;
    conf_req_init(fx, &r);
    rc = run_destroy(fx, &r);
    kv_req_cleanup(&r.req);
    fx->submitted = fx->completed = 0; /* the case counts its own requests */
    if (rc != 0) {
      print_error("[%s] setup: destroy() failed: %s\n", conf_url,
                  kv_err_name(rc));
      return -1;
    }
  }
  return 0;

fail:
  uv_loop_close(&fx->loop);
  fixture_release(fx);
  free(fx);
  return -1;
}

static int rm_cb(const char *path, const struct stat *sb, int flag,
                 struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

int conf_teardown(void **state) {
  conf_t *fx = *state;
  int before;
  int rc;
  int ok = 1;

  if (fx == NULL) return 0;
  if (fx->broken) {
    /* A request's callback never ran: its memory may be gone, so the loop
     * must not run again. Leak the store and loop; the test already failed. */
    print_error("[%s] teardown: skipping close, a request was lost\n",
                conf_url);
    ok = 0;
    goto out;
  }
  before = fx->close_cb_calls;
  if (fx->store != NULL) {
    rc = kv_store_close(fx->store, close_cb);
    if (rc != 0) {
      print_error("[%s] teardown: kv_store_close: %s\n", conf_url,
                  kv_err_name(rc));
      ok = 0;
    }
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  if (fx->store != NULL && fx->close_cb_calls != before + 1) {
    print_error("[%s] teardown: the close callback ran %d times\n", conf_url,
                fx->close_cb_calls - before);
    ok = 0;
  }
  fx->store = NULL;
  if (fx->completed != fx->submitted) {
    print_error("[%s] teardown: %ld requests accepted, %ld callbacks ran\n",
                conf_url, fx->submitted, fx->completed);
    ok = 0;
  }
  rc = uv_loop_close(&fx->loop);
  if (rc != 0) {
    print_error("[%s] teardown: uv_loop_close: %s; handles left:\n", conf_url,
                uv_err_name(rc));
    uv_walk(&fx->loop, walk_cb, NULL);
    ok = 0;
  }
out:
  fixture_release(fx);
  if (ok) free(fx);
  *state = NULL;
  return ok ? 0 : -1;
}

/* ---- Running requests ---------------------------------------------------- */

void conf_req_init(conf_t *fx, conf_req_t *r) {
  memset(r, 0, sizeof(*r));
  r->fx = fx;
  r->req.data = r;
}

void conf_cb(kv_req_t *req) {
  conf_req_t *r = req->data;

  r->calls++;
  r->fx->completed++;
  if (r->calls > 1) conf_error(r->fx, "a callback ran %d times", r->calls);
}

int conf_finish_at(conf_t *fx, conf_req_t *r, int rc, const char *file,
                   int line) {
  if (rc < 0) {
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    if (r->calls != 0)
      conf_fail_at(file, line, "submit returned %s but the callback ran anyway",
                   kv_err_name(rc));
    return rc;
  }
  if (rc != 0) {
    fx->broken = 1; /* the request's state is unknown: never run the loop */
    conf_fail_at(file, line, "submit returned %d, not 0 or an error", rc);
  }
  fx->submitted++;
  if (r->calls != 0) {
    fx->broken = 1;
    conf_fail_at(file, line, "the callback ran inside the submit call");
  }
  while (r->calls == 0) {
    if (uv_run(&fx->loop, UV_RUN_ONCE) == 0 && r->calls == 0) {
      fx->broken = 1;
      conf_fail_at(file, line, "the loop ended and the callback never ran");
    }
  }
  if (r->calls != 1)
    conf_fail_at(file, line, "the callback ran %d times", r->calls);
  return r->req.status;
}

void conf_run_until(conf_t *fx, const long *counter, long target) {
  while (*counter < target) {
    if (uv_run(&fx->loop, UV_RUN_ONCE) == 0 && *counter < target) {
      fx->broken = 1;
      conf_fail_at(__FILE__, __LINE__,
                   "the loop ended with %ld of %ld callbacks run", *counter,
                   target);
    }
  }
}

static void sleep_timer_cb(uv_timer_t *t) {
  *(int *)t->data = 1;
}

void conf_sleep_ms(conf_t *fx, uint64_t ms) {
  uv_timer_t timer;
  int fired = 0;

  uv_timer_init(&fx->loop, &timer);
  timer.data = &fired;
  uv_update_time(&fx->loop);
  uv_timer_start(&timer, sleep_timer_cb, ms, 0);
  while (!fired)
    uv_run(&fx->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&fx->loop, UV_RUN_NOWAIT); /* runs the close: timer is on our stack */
}

int64_t conf_now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int run_get(conf_t *fx, conf_req_t *r, const char *c, const char *k) {
  conf_req_init(fx, r);
  return conf_finish(fx, r, kv_get(fx->store, &r->req, c, k, conf_cb));
}

int run_ttl(conf_t *fx, conf_req_t *r, const char *c, const char *k) {
  conf_req_init(fx, r);
  return conf_finish(fx, r, kv_ttl(fx->store, &r->req, c, k, conf_cb));
}

int run_put(conf_t *fx, conf_req_t *r, const char *c, const char *k,
            const void *v, size_t len, double ttl) {
  conf_req_init(fx, r);
  return conf_finish(fx, r,
                     kv_put(fx->store, &r->req, c, k, v, len, ttl, conf_cb));
}

int run_delete(conf_t *fx, conf_req_t *r, const char *c, const char *k) {
  conf_req_init(fx, r);
  return conf_finish(fx, r, kv_delete(fx->store, &r->req, c, k, conf_cb));
}

int run_get_many(conf_t *fx, conf_req_t *r, const char *c,
                 const char *const *keys, size_t n) {
  conf_req_init(fx, r);
  return conf_finish(fx, r,
                     kv_get_many(fx->store, &r->req, c, keys, n, conf_cb));
}

int run_ttl_many(conf_t *fx, conf_req_t *r, const char *c,
                 const char *const *keys, size_t n) {
  conf_req_init(fx, r);
  return conf_finish(fx, r,
                     kv_ttl_many(fx->store, &r->req, c, keys, n, conf_cb));
}

int run_put_many(conf_t *fx, conf_req_t *r, const char *c,
                 const char *const *keys, const kv_buf_t *values, size_t n,
                 double ttl) {
  conf_req_init(fx, r);
  return conf_finish(
      fx, r, kv_put_many(fx->store, &r->req, c, keys, values, n, ttl, conf_cb));
}

int run_delete_many(conf_t *fx, conf_req_t *r, const char *c,
                    const char *const *keys, size_t n) {
  conf_req_init(fx, r);
  return conf_finish(fx, r,
                     kv_delete_many(fx->store, &r->req, c, keys, n, conf_cb));
}

int run_keys(conf_t *fx, conf_req_t *r, const char *c, const char *cursor,
             size_t limit) {
  conf_req_init(fx, r);
  return conf_finish(fx, r,
                     kv_keys(fx->store, &r->req, c, cursor, limit, conf_cb));
}

int run_collections(conf_t *fx, conf_req_t *r, const char *cursor,
                    size_t limit) {
  conf_req_init(fx, r);
  return conf_finish(
      fx, r, kv_collections(fx->store, &r->req, cursor, limit, conf_cb));
}

int run_destroy(conf_t *fx, conf_req_t *r) {
  conf_req_init(fx, r);
  return conf_finish(fx, r, kv_destroy(fx->store, &r->req, conf_cb));
}

int run_destroy_collection(conf_t *fx, conf_req_t *r, const char *c) {
  conf_req_init(fx, r);
  return conf_finish(fx, r,
                     kv_destroy_collection(fx->store, &r->req, c, conf_cb));
}

int run_cull(conf_t *fx, conf_req_t *r) {
  conf_req_init(fx, r);
  return conf_finish(fx, r, kv_cull(fx->store, &r->req, conf_cb));
}

int run_put_if_absent(conf_t *fx, conf_req_t *r, const char *c, const char *k,
                      const void *v, size_t len, double ttl) {
  conf_req_init(fx, r);
  return conf_finish(
      fx, r, kv_put_if_absent(fx->store, &r->req, c, k, v, len, ttl, conf_cb));
}

int run_cas(conf_t *fx, conf_req_t *r, const char *c, const char *k,
            const void *expected, size_t expected_len, const void *v,
            size_t len, double ttl) {
  conf_req_init(fx, r);
  return conf_finish(fx, r,
                     kv_cas(fx->store, &r->req, c, k, expected, expected_len, v,
                            len, ttl, conf_cb));
}

int run_incr(conf_t *fx, conf_req_t *r, const char *c, const char *k,
             int64_t delta, double ttl) {
  conf_req_init(fx, r);
  return conf_finish(fx, r,
                     kv_incr(fx->store, &r->req, c, k, delta, ttl, conf_cb));
}

int run_take(conf_t *fx, conf_req_t *r, const char *c, const char *k) {
  conf_req_init(fx, r);
  return conf_finish(fx, r, kv_take(fx->store, &r->req, c, k, conf_cb));
}

/* ---- Assertions on the helpers ------------------------------------------ */

void put_at(conf_t *fx, const char *c, const char *k, const void *v, size_t len,
            double ttl, const char *file, int line) {
  conf_req_t r;
  int rc = run_put(fx, &r, c, k, v, len, ttl);

  if (rc != 0) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", kv_req_errmsg(&r.req));
    kv_req_cleanup(&r.req);
    conf_fail_at(
        file, line, "put(%.60s, %.60s, %zu bytes, ttl %g) failed: %s (%s)",
        c != NULL ? c : "(default)", k, len, ttl, kv_err_name(rc), msg);
  }
  kv_req_cleanup(&r.req);
}

void expect_value_at(conf_t *fx, const char *c, const char *k, const void *v,
                     size_t len, const char *file, int line) {
  conf_req_t r;
  int rc = run_get(fx, &r, c, k);
  char what[256];

  snprintf(what, sizeof(what), "get(%.60s, %.60s).value",
           c != NULL ? c : "(default)", k);
  if (rc != 0) {
    kv_req_cleanup(&r.req);
    conf_fail_at(file, line, "get(%.60s, %.60s) failed: %s",
                 c != NULL ? c : "(default)", k, kv_err_name(rc));
  }
  if (!r.req.found) {
    kv_req_cleanup(&r.req);
    conf_fail_at(file, line, "get(%.60s, %.60s) is missing, expected a value",
                 c != NULL ? c : "(default)", k);
  }
  if (r.req.value.base == NULL || r.req.value.base[r.req.value.len] != '\0') {
    kv_req_cleanup(&r.req);
    conf_fail_at(file, line, "%s is not NUL-terminated", what);
  }
  /* Compare before cleanup; on mismatch, cleanup would leak nothing but the
   * failure longjmps, so copy the verdict first. */
  if (r.req.value.len != len ||
      (len != 0 && memcmp(r.req.value.base, v, len) != 0)) {
    kv_buf_t got = r.req.value;
    char *copy = malloc(got.len + 1);
    size_t glen = got.len;
    if (copy != NULL) memcpy(copy, got.base, got.len);
    kv_req_cleanup(&r.req);
    conf_check_bytes(copy, copy != NULL ? glen : 0, v, len, what, file, line);
    free(copy);
  }
  kv_req_cleanup(&r.req);
}

void expect_missing_at(conf_t *fx, const char *c, const char *k,
                       const char *file, int line) {
  conf_req_t r;
  int rc = run_get(fx, &r, c, k);
  int found = r.req.found;
  size_t len = r.req.value.len;

  kv_req_cleanup(&r.req);
  if (rc != 0)
    conf_fail_at(file, line, "get(%.60s, %.60s) failed: %s",
                 c != NULL ? c : "(default)", k, kv_err_name(rc));
  if (found)
    conf_fail_at(file, line,
                 "get(%.60s, %.60s) found a value of %zu bytes, expected "
                 "missing",
                 c != NULL ? c : "(default)", k, len);
}

void expect_read_at(conf_t *fx, const char *c, const char *k, const void *v,
                    size_t len, const char *file, int line) {
  if (fx->retains)
    expect_value_at(fx, c, k, v, len, file, line);
  else
    expect_missing_at(fx, c, k, file, line);
}

int delete_at(conf_t *fx, const char *c, const char *k, const char *file,
              int line) {
  conf_req_t r;
  int rc = run_delete(fx, &r, c, k);
  int found = r.req.found;

  kv_req_cleanup(&r.req);
  if (rc != 0)
    conf_fail_at(file, line, "delete(%.60s, %.60s) failed: %s",
                 c != NULL ? c : "(default)", k, kv_err_name(rc));
  return found;
}

char **list_all_at(conf_t *fx, int keys, const char *c, size_t limit, size_t *n,
                   const char *file, int line) {
  char **names = NULL;
  size_t count = 0;
  char *cursor = NULL;
  int pages = 0;

  *n = 0;
  do {
    conf_req_t r;
    int rc = keys ? run_keys(fx, &r, c, cursor, limit)
                  : run_collections(fx, &r, cursor, limit);
    size_t i;
    size_t got;

    free(cursor);
    cursor = NULL;
    if (rc != 0) {
      kv_req_cleanup(&r.req);
      names_free(names, count);
      conf_fail_at(file, line, "%s(limit %zu) page %d failed: %s",
                   keys ? "keys" : "collections", limit, pages,
                   kv_err_name(rc));
    }
    got = r.req.nnames;
    if (limit != 0 && got > limit) {
      kv_req_cleanup(&r.req);
      names_free(names, count);
      conf_fail_at(file, line, "%s page %d has %zu names, limit is %zu",
                   keys ? "keys" : "collections", pages, got, limit);
    }
    names = realloc(names, (count + got + 1) * sizeof(*names));
    assert_non_null(names);
    for (i = 0; i < got; i++) {
      kv_buf_t b = r.req.names[i];
      names[count] = malloc(b.len + 1);
      assert_non_null(names[count]);
      memcpy(names[count], b.base, b.len);
      names[count][b.len] = '\0';
      count++;
    }
    if (r.req.cursor != NULL) {
      cursor = strdup(r.req.cursor);
      assert_non_null(cursor);
    }
    kv_req_cleanup(&r.req);
    if (++pages > 100000) {
      free(cursor);
      names_free(names, count);
      conf_fail_at(file, line, "listing does not end after %d pages", pages);
    }
  } while (cursor != NULL);
  *n = count;
  return names;
}

void names_free(char **names, size_t n) {
  size_t i;

  for (i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

int names_count(char **names, size_t n, const char *name) {
  size_t i;
  int count = 0;

  for (i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0) count++;
  return count;
}
