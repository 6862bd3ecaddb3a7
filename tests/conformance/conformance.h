/* The conformance suite (CONFORMANCE.md): one set of cases, run against
 * every store URL (`test-conformance URL [FILTER]`).
 *
 * Every case is a cmocka test with its own fixture: a fresh uv_loop_t, a
 * fresh temporary directory (replacing @TMP@ in the URL) and a fresh store.
 * Teardown closes the store, runs the loop to the end, checks that every
 * accepted request completed exactly once and that uv_loop_close() returns 0.
 *
 * Expectations are derived from the store, not from a list of names: segment
 * cases run when the capability bit is set and otherwise check KV_ENOTSUP at
 * submit; the null store (kv_store_name() == "null") retains nothing, and its
 * expectations are written out next to the others; eviction follows the
 * URL's max_entries option.
 */
#ifndef KV_CONFORMANCE_H
#define KV_CONFORMANCE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kvio.h"

/* ---- The fixture ----------------------------------------------------------
 */

typedef struct conf_s {
  uv_loop_t loop;
  kv_store_t *store; /* NULL once closed by the test itself */
  char tmpdir[256];  /* "" when the URL has no @TMP@ */
  char *url;         /* the URL with @TMP@ replaced (malloc'ed) */
  unsigned caps;
  int retains;         /* 0 for the null store: writes vanish */
  int64_t max_entries; /* the URL's max_entries option, 0 when absent */
  long submitted;      /* submits that returned 0 */
  long completed;      /* callbacks run */
  int close_cb_calls;
  int broken; /* a request was lost: teardown must not run the loop */
  int errors; /* failures recorded inside callbacks */
  char first_error[512];
} conf_t;

/* A request with its bookkeeping. `req.data` points back at it. */
typedef struct conf_req_s {
  kv_req_t req;
  conf_t *fx;
  int calls;
  void *user;
} conf_req_t;

/* The URL given on the command line (with @TMP@ unexpanded). */
extern const char *conf_url;
/* The fixture of the running case (for callbacks that only get a store). */
extern conf_t *conf_current;

int conf_setup(void **state);
int conf_teardown(void **state);

/* Open (again) the fixture's URL on its loop; fails the test on error. */
void conf_open(conf_t *fx);
/* Close the fixture's store and run the loop until the close callback has
 * run; fx->store is NULL afterwards. */
void conf_close(conf_t *fx);
/* The fixture of a test. */
#define FX(state) ((conf_t *)*(state))

/* Record a failure seen inside a callback (asserting there would longjmp out
 * of the loop); CHECK_NO_ERRORS reports it afterwards. */
void conf_error(conf_t *fx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- Checks that name the URL and the caller's line -----------------------
 */

void conf_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
void conf_check_int(long long actual, long long expected, const char *what,
                    const char *file, int line);
void conf_check_status(int actual, int expected, const char *what,
                       const char *file, int line);
void conf_check_true(int cond, const char *what, const char *file, int line);
void conf_check_bytes(const void *actual, size_t actual_len,
                      const void *expected, size_t expected_len,
                      const char *what, const char *file, int line);

#define CHECK_INT(actual, expected)                                   \
  conf_check_int((long long)(actual), (long long)(expected), #actual, \
                 __FILE__, __LINE__)
#define CHECK_STATUS(actual, expected) \
  conf_check_status((actual), (expected), #actual, __FILE__, __LINE__)
#define CHECK_OK(actual) CHECK_STATUS(actual, 0)
#define CHECK_TRUE(cond) conf_check_true(!!(cond), #cond, __FILE__, __LINE__)
#define CHECK_BYTES(buf, data_, len_)                                      \
  conf_check_bytes((buf).base, (buf).len, (data_), (len_), #buf, __FILE__, \
                   __LINE__)
#define CHECK_NO_ERRORS(fx)                                               \
  do {                                                                    \
    if ((fx)->errors != 0)                                                \
      conf_fail_at(__FILE__, __LINE__,                                    \
                   "%d failure(s) in callbacks; first: %s", (fx)->errors, \
                   (fx)->first_error);                                    \
  } while (0)
#define SKIP_BECAUSE(...)                         \
  do {                                            \
    print_message("[   SKIP   ] %s: ", conf_url); \
    print_message(__VA_ARGS__);                   \
    print_message("\n");                          \
    skip();                                       \
  } while (0)

/* ---- Running requests ------------------------------------------------------
 */

/* Prepare a request (zeroed, req.data set). */
void conf_req_init(conf_t *fx, conf_req_t *r);
/* The callback every helper submits with: counts the call. */
void conf_cb(kv_req_t *req);
/* After a submit that returned `rc`: if rc < 0, spin the loop and check the
 * callback never runs, and return rc; otherwise run the loop until the
 * callback has run, check it ran once, and return req.status. */
int conf_finish_at(conf_t *fx, conf_req_t *r, int rc, const char *file,
                   int line);
#define conf_finish(fx, r, rc) \
  conf_finish_at((fx), (r), (rc), __FILE__, __LINE__)
/* Run the loop until `*counter` reaches `target` (fails if the loop ends
 * first). */
void conf_run_until(conf_t *fx, const long *counter, long target);
/* Wait `ms` milliseconds with a timer on the fixture's loop. */
void conf_sleep_ms(conf_t *fx, uint64_t ms);
/* Wall-clock milliseconds. */
int64_t conf_now_ms(void);

/* Each runs one request to completion and returns what conf_finish returns.
 * Results stay in r->req; the caller calls kv_req_cleanup(&r->req). */
int run_get(conf_t *fx, conf_req_t *r, const char *c, const char *k);
int run_ttl(conf_t *fx, conf_req_t *r, const char *c, const char *k);
int run_put(conf_t *fx, conf_req_t *r, const char *c, const char *k,
            const void *v, size_t len, double ttl);
int run_delete(conf_t *fx, conf_req_t *r, const char *c, const char *k);
int run_get_many(conf_t *fx, conf_req_t *r, const char *c,
                 const char *const *keys, size_t n);
int run_ttl_many(conf_t *fx, conf_req_t *r, const char *c,
                 const char *const *keys, size_t n);
int run_put_many(conf_t *fx, conf_req_t *r, const char *c,
                 const char *const *keys, const kv_buf_t *values, size_t n,
                 double ttl);
int run_delete_many(conf_t *fx, conf_req_t *r, const char *c,
                    const char *const *keys, size_t n);
int run_keys(conf_t *fx, conf_req_t *r, const char *c, const char *cursor,
             size_t limit);
int run_collections(conf_t *fx, conf_req_t *r, const char *cursor,
                    size_t limit);
int run_destroy(conf_t *fx, conf_req_t *r);
int run_destroy_collection(conf_t *fx, conf_req_t *r, const char *c);
int run_cull(conf_t *fx, conf_req_t *r);
int run_put_if_absent(conf_t *fx, conf_req_t *r, const char *c, const char *k,
                      const void *v, size_t len, double ttl);
int run_cas(conf_t *fx, conf_req_t *r, const char *c, const char *k,
            const void *expected, size_t expected_len, const void *v,
            size_t len, double ttl);
int run_incr(conf_t *fx, conf_req_t *r, const char *c, const char *k,
             int64_t delta, double ttl);
int run_take(conf_t *fx, conf_req_t *r, const char *c, const char *k);

/* ---- Assertions built on the helpers (caller's file and line) ------------ */

void put_at(conf_t *fx, const char *c, const char *k, const void *v, size_t len,
            double ttl, const char *file, int line);
void expect_value_at(conf_t *fx, const char *c, const char *k, const void *v,
                     size_t len, const char *file, int line);
void expect_missing_at(conf_t *fx, const char *c, const char *k,
                       const char *file, int line);
/* v when the store retains data, missing on the null store. */
void expect_read_at(conf_t *fx, const char *c, const char *k, const void *v,
                    size_t len, const char *file, int line);
/* delete: returns req.found. */
int delete_at(conf_t *fx, const char *c, const char *k, const char *file,
              int line);
/* All names of a listing (keys when `keys` is set, else collections),
 * following the cursor with `limit` per page; checks that no page exceeds
 * the limit. Returns a malloc'ed array of malloc'ed strings (free with
 * names_free); *n is its length. */
char **list_all_at(conf_t *fx, int keys, const char *c, size_t limit, size_t *n,
                   const char *file, int line);
void names_free(char **names, size_t n);
/* 1 if `name` occurs exactly once in names. */
int names_count(char **names, size_t n, const char *name);

#define PUT(fx, c, k, s) \
  put_at((fx), (c), (k), (s), strlen(s), 0, __FILE__, __LINE__)
#define PUT_TTL(fx, c, k, s, ttl) \
  put_at((fx), (c), (k), (s), strlen(s), (ttl), __FILE__, __LINE__)
#define PUT_BYTES(fx, c, k, v, len) \
  put_at((fx), (c), (k), (v), (len), 0, __FILE__, __LINE__)
#define EXPECT_VALUE(fx, c, k, s) \
  expect_value_at((fx), (c), (k), (s), strlen(s), __FILE__, __LINE__)
#define EXPECT_BYTES(fx, c, k, v, len) \
  expect_value_at((fx), (c), (k), (v), (len), __FILE__, __LINE__)
#define EXPECT_MISSING(fx, c, k) \
  expect_missing_at((fx), (c), (k), __FILE__, __LINE__)
#define EXPECT_READ(fx, c, k, s) \
  expect_read_at((fx), (c), (k), (s), strlen(s), __FILE__, __LINE__)
#define EXPECT_READ_BYTES(fx, c, k, v, len) \
  expect_read_at((fx), (c), (k), (v), (len), __FILE__, __LINE__)
#define DELETE(fx, c, k) delete_at((fx), (c), (k), __FILE__, __LINE__)
#define LIST_KEYS(fx, c, limit, n) \
  list_all_at((fx), 1, (c), (limit), (n), __FILE__, __LINE__)
#define LIST_COLLECTIONS(fx, limit, n) \
  list_all_at((fx), 0, NULL, (limit), (n), __FILE__, __LINE__)

#define HAS(fx, cap) (((fx)->caps & (cap)) != 0)

/* The conventions of CONFORMANCE.md. */
#define V "test"
#define V2 "test_2"
#define COLL "test"
#define K1 "test"
#define K2 "test_2"
#define K3 "test_3"

/* ---- The cases -------------------------------------------------------------
 */

#define CONF_CASES(XX)                    \
  XX(c01_empty_store_is_missing)          \
  XX(c02_put_then_get)                    \
  XX(c03_get_put_get)                     \
  XX(c04_overwrite)                       \
  XX(c05_put_get_delete)                  \
  XX(c06_delete_missing_is_false)         \
  XX(c07_delete_many_counts)              \
  XX(c08_put_many_then_gets)              \
  XX(c09_get_many_partial)                \
  XX(c10_put_get_delete_many)             \
  XX(c11_put_many_then_deletes)           \
  XX(c12_get_many_duplicates_and_empty)   \
  XX(c13_put_many_invalid_writes_nothing) \
  XX(c14_put_many_ten_in_order)           \
  XX(c15_empty_value_is_a_value)          \
  XX(c16_binary_value_every_byte)         \
  XX(c17_text_values)                     \
  XX(c18_large_values)                    \
  XX(c19_long_names)                      \
  XX(c20_special_characters)              \
  XX(c21_no_collisions)                   \
  XX(c22_same_key_two_collections)        \
  XX(c23_invalid_names_rejected)          \
  XX(c24_injection_names_are_data)        \
  XX(c25_ttl_remaining)                   \
  XX(c26_ttl_two_seconds_expires)         \
  XX(c27_ttl_subsecond_precision)         \
  XX(c28_ttl_microsecond_rounds_up)       \
  XX(c29_ttl_forty_days)                  \
  XX(c30_invalid_ttls_rejected)           \
  XX(c31_put_without_ttl_clears_expiry)   \
  XX(c32_expired_not_listed_and_culled)   \
  XX(c33_keys_paged)                      \
  XX(c34_collections_paged)               \
  XX(c35_destroy_and_destroy_collection)  \
  XX(c36_atomic_ops)                      \
  XX(c37_atomic_under_contention)         \
  XX(c38_eviction)                        \
  XX(c39_concurrent_workers)              \
  XX(c40_ten_thousand_in_flight)          \
  XX(c41_no_callback_inside_submit)       \
  XX(c42_failed_submit_never_calls_back)  \
  XX(c43_close_with_requests_in_flight)   \
  XX(c44_close_from_inside_callback)      \
  XX(c45_persistent_reopen)               \
  XX(c46_persistent_two_processes)        \
  XX(c47_persistent_corrupt_file)

#define CONF_DECLARE(name) void name(void **state);
CONF_CASES(CONF_DECLARE)
#undef CONF_DECLARE

#endif
