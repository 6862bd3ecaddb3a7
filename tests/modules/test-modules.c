/* Parts loaded on demand (docs/design.md, "Parts and modules"), through the
 * shared libkvio as an application links it:
 *  - memory://, null://, disk:// and the built-in wrappers load no module,
 *    and an unknown scheme still lists every known scheme, loaded or not;
 *  - registration refuses a methods table without a required member (and
 *    every other bad table) with a detail, and changes nothing;
 *  - a missing module and a file that is no module give errors naming the
 *    file and the loader's reason, and are not remembered;
 *  - a module whose registration is refused (tests/modules/bad-module.c:
 *    no `close`, another kvio version, a short store_size, a declared scheme
 *    not added) is unloaded and changes nothing; the real module then loads;
 *  - threads opening a module's scheme at once all succeed;
 *  - a module's public functions (kv_fernet_*, kv_wrap_compression) work
 *    from libkvio.so, loading their module.
 * Every check of what is loaded reads /proc/self/maps. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvio.h"
#include "kvio/compression.h"
#include "kvio/encryption.h"
#include "kvio/module.h"
#include "kvio/wrap.h"

static char tmp[256];

static int mapped(const char *needle) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[4096];
  int found = 0;
  assert_non_null(f);
  while (fgets(line, sizeof line, f))
    if (strstr(line, needle)) found = 1;
  fclose(f);
  return found;
}

static void run_close(uv_loop_t *loop, kv_store_t *s) {
  assert_int_equal(kv_store_close(s, NULL), 0);
  uv_run(loop, UV_RUN_DEFAULT);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void copy_file(const char *from, const char *to) {
  char buf[65536];
  size_t n;
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  assert_non_null(in);
  assert_non_null(out);
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in);
  fclose(out);
}

/* ---- Nothing is loaded for the core's stores ---------------------------- */

static void core_stores_load_no_module(void **state) {
  static const char *const libs[] = {
      "/kvio/modules/", "librocksdb", "libpq.",    "libhiredis", "libsqlite3",
      "libssl.",        "libcrypto",  "libstdc++", "libzstd",    "liblz4"};
  static const char *const schemes[] = {
      "memory",    "null",       "disk",    "wrap",   "file",
      "sqlite",    "rocksdb",    "redis",   "rediss", "valkey",
      "memcached", "postgresql", "postgres"};
  uv_loop_t loop;
  kv_store_t *s, *w;
  char err[2048], url[400];
  (void)state;
  uv_loop_init(&loop);
  assert_int_equal(kv_open_ex(&loop, "memory://", &s, err, sizeof err), 0);
  assert_int_equal(kv_wrap_by_name("retry", NULL, s, &w, err, sizeof err), 0);
  run_close(&loop, w);
  assert_int_equal(kv_open_ex(&loop, "null://", &s, err, sizeof err), 0);
  run_close(&loop, s);
  snprintf(url, sizeof url, "disk://%s/disk", tmp);
  assert_int_equal(kv_open_ex(&loop, url, &s, err, sizeof err), 0);
  run_close(&loop, s);
  snprintf(url, sizeof url,
           "wrap:///statistics|prefix-keys:prefix=a@disk://%s/disk", tmp);
  assert_int_equal(kv_open_ex(&loop, url, &s, err, sizeof err), 0);
  run_close(&loop, s);

  /* An unknown scheme lists them all, modules not loaded included. */
  assert_int_equal(kv_open_ex(&loop, "nosuch://x", &s, err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "unknown store scheme 'nosuch'"));
  for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++) {
    char want[64];
    snprintf(want, sizeof want, " %s,", schemes[i]);
    if (strstr(err, want) == NULL) {
      snprintf(want, sizeof want, " %s)", schemes[i]);
      if (strstr(err, want) == NULL)
        fail_msg("'%s' not in: %s", schemes[i], err);
    }
  }
  assert_non_null(strstr(kv_schemes(), "rocksdb"));
  assert_non_null(strstr(kv_wrap_names(), "compression"));
  assert_non_null(strstr(kv_wrap_names(), "encryption"));
  assert_int_equal(kv_open_ex(&loop, "memory://", &s, err, sizeof err), 0);
  assert_int_equal(kv_wrap_by_name("nosuch", NULL, s, &w, err, sizeof err),
                   KV_EINVAL);
  assert_non_null(strstr(err, "unknown wrapper 'nosuch'"));
  assert_non_null(strstr(err, "encryption"));
  run_close(&loop, s);

  for (size_t i = 0; i < sizeof libs / sizeof *libs; i++) {
    /* UBSan's runtime links libstdc++ itself. */
    if (strcmp(libs[i], "libstdc++") == 0 && mapped("libubsan")) continue;
    if (mapped(libs[i])) fail_msg("%s is mapped", libs[i]);
  }
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- Registration checks ------------------------------------------------- */

static int t_open(kv_store_t *s, const kv_url_t *url, char *e, size_t n) {
  return 0;
}
static int t_op(kv_store_t *s, kv_req_t *req) {
  req->found = 0;
  kv_req_complete(req, 0);
  return 0;
}

static const kv_store_methods_t good = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "t",
    .store_size = sizeof(kv_store_t),
    .open = t_open,
    .close = kv_store_closed,
    .get = t_op,
    .ttl = t_op,
    .put = t_op,
    .del = t_op,
};

static void registration_refuses_bad_tables(void **state) {
  static const struct {
    const char *name;
    size_t offset;
  } required[] = {
      {"open", offsetof(kv_store_methods_t, open)},
      {"close", offsetof(kv_store_methods_t, close)},
      {"get", offsetof(kv_store_methods_t, get)},
      {"ttl", offsetof(kv_store_methods_t, ttl)},
      {"put", offsetof(kv_store_methods_t, put)},
      {"del", offsetof(kv_store_methods_t, del)},
  };
  static kv_store_methods_t m;
  char err[512], want[64], before[2048];
  uv_loop_t loop;
  kv_store_t *s;
  (void)state;
  snprintf(before, sizeof before, "%s", kv_schemes());
  for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
    m = good;
    memset((char *)&m + required[i].offset, 0, sizeof(void *));
    assert_int_equal(kv_register_ex("t1", &m, err, sizeof err), KV_EINVAL);
    snprintf(want, sizeof want, "required method '%s' is NULL",
             required[i].name);
    if (strstr(err, want) == NULL) fail_msg("'%s' not in: %s", want, err);
    assert_int_equal(kv_register("t1", &m), KV_EINVAL);
  }
  m = good;
  m.version = 0;
  assert_int_equal(kv_register_ex("t1", &m, err, sizeof err), KV_EINVAL);
  assert_non_null(strstr(err, "version 0"));
  m = good;
  m.store_size = sizeof(kv_store_t) - 1;
  assert_int_equal(kv_register_ex("t1", &m, err, sizeof err), KV_EINVAL);
  assert_non_null(strstr(err, "store_size"));
  assert_int_equal(kv_register_ex("t1", NULL, err, sizeof err), KV_EINVAL);
  assert_non_null(strstr(err, "no methods table"));
  assert_int_equal(kv_register_ex("1t", &good, err, sizeof err), KV_EINVAL);
  assert_non_null(strstr(err, "not a URL scheme"));
  assert_int_equal(kv_register_ex(NULL, &good, err, sizeof err), KV_EINVAL);
  /* A module's scheme is taken even before the module is loaded. */
  assert_int_equal(kv_register_ex("SQLite", &good, err, sizeof err),
                   KV_EEXISTS);
  assert_non_null(strstr(err, "part 'sqlite'"));
  assert_false(mapped("/kvio/modules/sqlite.so"));

  /* Nothing was registered. */
  assert_string_equal(kv_schemes(), before);
  uv_loop_init(&loop);
  assert_int_equal(kv_open_ex(&loop, "t1://", &s, err, sizeof err), KV_EINVAL);
  assert_non_null(strstr(err, "unknown store scheme"));
  /* A good table registers and opens. */
  assert_int_equal(kv_register_ex("t1", &good, err, sizeof err), 0);
  assert_int_equal(kv_register_ex("T1", &good, err, sizeof err), KV_EEXISTS);
  assert_non_null(strstr(kv_schemes(), "t1"));
  assert_int_equal(kv_open_ex(&loop, "t1://", &s, err, sizeof err), 0);
  run_close(&loop, s);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- Missing and broken module files ------------------------------------- */

static void missing_and_broken_modules(void **state) {
  char dir[300], path[400], url[400], err[2048];
  uv_loop_t loop;
  kv_store_t *s, *inner, *w;
  (void)state;
  snprintf(dir, sizeof dir, "%s/empty", tmp);
  assert_int_equal(mkdir(dir, 0700), 0);
  setenv("KVIO_MODULE_DIR", dir, 1);
  uv_loop_init(&loop);

  /* Missing: the error names the file and says why. */
  snprintf(url, sizeof url, "rocksdb://%s/r", tmp);
  assert_int_equal(kv_open_ex(&loop, url, &s, err, sizeof err), KV_ENOTSUP);
  snprintf(path, sizeof path, "%s/rocksdb.so", dir);
  if (strstr(err, path) == NULL) fail_msg("'%s' not in: %s", path, err);
  assert_non_null(strstr(err, "No such file or directory"));
  assert_null(s);
  assert_false(mapped("librocksdb"));

  /* A wrapper whose module is missing. */
  assert_int_equal(kv_open_ex(&loop, "memory://", &inner, err, sizeof err), 0);
  assert_int_equal(
      kv_wrap_by_name("compression", NULL, inner, &w, err, sizeof err),
      KV_ENOTSUP);
  assert_non_null(strstr(err, "crypto.so"));
  assert_non_null(strstr(err, "wrapper 'compression'"));
  run_close(&loop, inner);

  /* A file that is not a shared object: the loader's reason. */
  snprintf(path, sizeof path, "%s/sqlite.so", dir);
  write_file(path, "This is not an ELF shared object, whatever its name "
                   "says; dlopen() has to refuse it.\n");
  snprintf(url, sizeof url, "sqlite://%s/s.db", tmp);
  assert_int_equal(kv_open_ex(&loop, url, &s, err, sizeof err), KV_ENOTSUP);
  if (strstr(err, path) == NULL) fail_msg("'%s' not in: %s", path, err);
  assert_non_null(strstr(err, "invalid ELF header"));
  assert_false(mapped("libsqlite3"));

  /* Failures are not remembered: from the right directory it loads. */
  unsetenv("KVIO_MODULE_DIR");
  assert_int_equal(kv_open_ex(&loop, url, &s, err, sizeof err), 0);
  assert_string_equal(kv_store_name(s), "sqlite");
  assert_true(mapped("/kvio/modules/sqlite.so"));
  run_close(&loop, s);
  assert_false(mapped("/kvio/modules/rocksdb.so"));
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- A module whose registration is refused ------------------------------ */

static void refused_module(void **state) {
  static const struct {
    const char *how, *want;
  } cases[] = {
      {"close", "required method 'close' is NULL"},
      {"abi", "built for kvio 0.1.1"},
      {"size", "store_size 8 is smaller than kv_store_t"},
      {"none", "it did not add scheme 'memcached'"},
  };
  char dir[300], path[400], err[2048], before[2048];
  uv_loop_t loop;
  kv_store_t *s;
  (void)state;
  snprintf(dir, sizeof dir, "%s/bad", tmp);
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(path, sizeof path, "%s/memcached.so", dir);
  copy_file(KV_TEST_BAD_MODULE, path);
  setenv("KVIO_MODULE_DIR", dir, 1);
  snprintf(before, sizeof before, "%s", kv_schemes());
  uv_loop_init(&loop);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    setenv("KVIO_TEST_BAD", cases[i].how, 1);
    assert_int_equal(
        kv_open_ex(&loop, "memcached://127.0.0.1:1", &s, err, sizeof err),
        KV_EINVAL);
    if (strstr(err, path) == NULL || strstr(err, cases[i].want) == NULL)
      fail_msg("'%s' and '%s' not in: %s", path, cases[i].want, err);
    /* Unloaded again, nothing registered. */
    assert_false(mapped("/bad/memcached.so"));
    assert_string_equal(kv_schemes(), before);
  }
  unsetenv("KVIO_TEST_BAD");
  unsetenv("KVIO_MODULE_DIR");
  /* The real module (no network is contacted at open). */
  assert_int_equal(
      kv_open_ex(&loop, "memcached://127.0.0.1:1", &s, err, sizeof err), 0);
  assert_string_equal(kv_store_name(s), "memcached");
  run_close(&loop, s);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- Threads loading one module at once -----------------------------------
 */

static void *open_file_store(void *arg) {
  uv_loop_t loop;
  kv_store_t *s = NULL;
  char url[400], err[512];
  long err_code;
  snprintf(url, sizeof url, "file://%s/f%ld.json", tmp, (long)(intptr_t)arg);
  uv_loop_init(&loop);
  err_code = kv_open_ex(&loop, url, &s, err, sizeof err);
  if (err_code == 0) {
    kv_store_close(s, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(&loop);
  return (void *)(intptr_t)err_code;
}

static void threads_load_once(void **state) {
  pthread_t t[4];
  void *ret;
  (void)state;
  assert_false(mapped("/kvio/modules/file.so"));
  for (long i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&t[i], NULL, open_file_store, (void *)i),
                     0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pthread_join(t[i], &ret), 0);
    assert_int_equal((intptr_t)ret, 0);
  }
  assert_true(mapped("/kvio/modules/file.so"));
}

/* ---- Public functions of a module ---------------------------------------- */

static int done;
static void on_done(kv_req_t *req) {
  done++;
}

static void module_functions_forward(void **state) {
  char key[KV_FERNET_KEY_SIZE], *token, *plain;
  const char *keys[1];
  size_t token_len, plain_len;
  kv_wrap_compression_opts_t opts = {0};
  uv_loop_t loop;
  kv_store_t *inner, *c;
  kv_req_t req = {0};
  static const char value[] = "a value long enough for the envelope";
  (void)state;
  assert_false(mapped("/kvio/modules/crypto.so"));
  assert_int_equal(kv_fernet_generate_key(key), 0);
  assert_true(mapped("/kvio/modules/crypto.so"));
  assert_int_equal(kv_fernet_encrypt(key, "secret", 6, &token, &token_len), 0);
  keys[0] = key;
  assert_int_equal(
      kv_fernet_decrypt(keys, 1, token, token_len, 0, &plain, &plain_len), 0);
  assert_int_equal(plain_len, 6);
  assert_memory_equal(plain, "secret", 6);
  kv_free(token);
  kv_free(plain);

  uv_loop_init(&loop);
  assert_int_equal(kv_open(&loop, "memory://", &inner), 0);
  opts.min_size = 1;
  assert_int_equal(kv_wrap_compression(inner, &opts, &c), 0);
  assert_string_equal(kv_store_name(c), "compression");
  done = 0;
  assert_int_equal(
      kv_put(c, &req, NULL, "k", value, sizeof value - 1, 0, on_done), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(req.status, 0);
  kv_req_cleanup(&req);
  assert_int_equal(kv_get(c, &req, NULL, "k", on_done), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(done, 2);
  assert_true(req.found);
  assert_int_equal(req.value.len, sizeof value - 1);
  assert_memory_equal(req.value.base, value, sizeof value - 1);
  kv_req_cleanup(&req);
  /* The inner store holds the envelope, not the value. */
  assert_int_equal(kv_get(inner, &req, NULL, "k", on_done), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(req.found);
  assert_false(req.value.len == sizeof value - 1 &&
               memcmp(req.value.base, value, sizeof value - 1) == 0);
  kv_req_cleanup(&req);
  run_close(&loop, c);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(core_stores_load_no_module),
      cmocka_unit_test(registration_refuses_bad_tables),
      cmocka_unit_test(missing_and_broken_modules),
      cmocka_unit_test(refused_module),
      cmocka_unit_test(threads_load_once),
      cmocka_unit_test(module_functions_forward),
  };
  char cmd[300];
  int rc;
  unsetenv("KVIO_MODULE_DIR");
  snprintf(tmp, sizeof tmp, "%s/kvio-modules.XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (mkdtemp(tmp) == NULL) return 1;
  rc = cmocka_run_group_tests(tests, NULL, NULL);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (system(cmd) != 0) rc = 1;
  return rc;
}
