/* bench-sqlite-bare: the reference for `kvio bench --store sqlite://...` — a
 * bare loop over SQLite's own C API, with kvio bench's key and value shapes
 * (16-byte keys "k%015u" drawn uniformly from a keyspace, SIZE-byte values,
 * collection "kvio-bench") and the sqlite store's table and settings (the
 * same WITHOUT ROWID table, WAL, synchronous=FULL, a prepared INSERT OR
 * REPLACE / SELECT).
 *
 *   bench-sqlite-bare FILE put-sync  N SIZE [KEYS]        one put per
 *                                                          transaction, each
 *                                                          commit synced
 *   bench-sqlite-bare FILE put-batch N SIZE BATCH [KEYS]  BATCH puts per
 *                                                          transaction
 *   bench-sqlite-bare FILE get       N SIZE [KEYS]        KEYS pre-populated
 *                                                          (not timed), one
 *                                                          read transaction
 *                                                          per 64 gets
 *
 * KEYS defaults to 10000. Prints one JSON object in the shape of
 * `kvio bench --json` (ops_per_sec, p50_us, p99_us, p999_us, ...). Latency
 * is per operation, except put-batch where it is per transaction
 * ("latency_per": "txn"). FILE is created if missing and left in place. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#if defined(__has_include)
#if __has_include(<sqlite3.h>)
#define HAVE_SQLITE 1
#endif
#endif

#ifndef HAVE_SQLITE
int main(void) {
  fprintf(stderr, "bench-sqlite-bare: built without SQLite\n");
  return 77;
}
#else
#include <errno.h>

#include <sqlite3.h>

#define KEY_LEN 16
#define GETS_PER_TXN 64
#define FILL_BATCH 1000
#define COLLECTION "kvio-bench"

typedef struct bench_s {
  const char *op;
  size_t n;
  size_t size;
  size_t batch;
  size_t keys;
  sqlite3 *db;
  sqlite3_stmt *put;
  sqlite3_stmt *get;
  sqlite3_stmt *begin;
  sqlite3_stmt *begin_read;
  sqlite3_stmt *commit;
  char *value;
  uint64_t rng;
  uint64_t *lat; /* ns */
  size_t nlat;
} bench_t;

static void die(bench_t *b, const char *what) {
  fprintf(stderr, "bench-sqlite-bare: %s: %s\n", what,
          b->db ? sqlite3_errmsg(b->db) : "out of memory");
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: bench-sqlite-bare FILE put-sync N SIZE [KEYS]\n"
          "       bench-sqlite-bare FILE put-batch N SIZE BATCH [KEYS]\n"
          "       bench-sqlite-bare FILE get N SIZE [KEYS]\n");
  exit(2);
}

static size_t parse_size(const char *s) {
  char *end;
  unsigned long long v;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || *s == '-') usage();
  return (size_t)v;
}

static uint64_t next_rand(bench_t *b) {
  /* xorshift64*, as kvio bench */
  b->rng ^= b->rng >> 12;
  b->rng ^= b->rng << 25;
  b->rng ^= b->rng >> 27;
  return b->rng * 2685821657736338717ull;
}

static void make_key(size_t i, char *out) {
  char tmp[32];
  snprintf(tmp, sizeof(tmp), "k%015zu", i);
  memcpy(out, tmp, KEY_LEN);
}

static void step_done(bench_t *b, sqlite3_stmt *st, const char *what) {
  if (sqlite3_step(st) != SQLITE_DONE) die(b, what);
  sqlite3_reset(st);
}

static void put_one(bench_t *b, size_t i) {
  char key[KEY_LEN];
  make_key(i, key);
  sqlite3_bind_text(b->put, 1, COLLECTION, -1, SQLITE_STATIC);
  sqlite3_bind_text(b->put, 2, key, KEY_LEN, SQLITE_STATIC);
  sqlite3_bind_blob64(b->put, 3, b->value, b->size, SQLITE_STATIC);
  sqlite3_bind_int64(b->put, 4, 0);
  step_done(b, b->put, "insert");
}

/* Run `count` puts of random keys in one transaction (count 1: the naive
 * way, one autocommit statement per put). */
static void put_txn(bench_t *b, size_t count) {
  size_t j;
  if (count == 1 && b->batch == 1) {
    put_one(b, (size_t)(next_rand(b) % b->keys));
    return;
  }
  step_done(b, b->begin, "begin");
  for (j = 0; j < count; j++)
    put_one(b, (size_t)(next_rand(b) % b->keys));
  step_done(b, b->commit, "commit");
}

static void run_puts(bench_t *b) {
  size_t done = 0, count;
  uint64_t t;
  while (done < b->n) {
    count = b->n - done < b->batch ? b->n - done : b->batch;
    t = uv_hrtime();
    put_txn(b, count);
    b->lat[b->nlat++] = uv_hrtime() - t;
    done += count;
  }
}

static void fill(bench_t *b) {
  size_t i, j;
  for (i = 0; i < b->keys; i += FILL_BATCH) {
    step_done(b, b->begin, "begin");
    for (j = i; j < b->keys && j < i + FILL_BATCH; j++)
      put_one(b, j);
    step_done(b, b->commit, "commit");
  }
}

static void run_gets(bench_t *b) {
  char key[KEY_LEN];
  size_t i;
  uint64_t t;
  for (i = 0; i < b->n; i++) {
    t = uv_hrtime();
    if (i % GETS_PER_TXN == 0) step_done(b, b->begin_read, "begin");
    make_key((size_t)(next_rand(b) % b->keys), key);
    sqlite3_bind_text(b->get, 1, COLLECTION, -1, SQLITE_STATIC);
    sqlite3_bind_text(b->get, 2, key, KEY_LEN, SQLITE_STATIC);
    if (sqlite3_step(b->get) != SQLITE_ROW) die(b, "select");
    if (sqlite3_column_bytes(b->get, 0) != (int)b->size) die(b, "size");
    sqlite3_reset(b->get);
    if ((i + 1) % GETS_PER_TXN == 0 || i + 1 == b->n)
      step_done(b, b->commit, "commit");
    b->lat[b->nlat++] = uv_hrtime() - t;
  }
}

static void prepare(bench_t *b, const char *sql, sqlite3_stmt **st) {
  if (sqlite3_prepare_v2(b->db, sql, -1, st, NULL) != SQLITE_OK)
    die(b, "prepare");
}

static void open_db(bench_t *b, const char *file) {
  if (sqlite3_open(file, &b->db) != SQLITE_OK) die(b, "open");
  if (sqlite3_exec(b->db,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                   "CREATE TABLE IF NOT EXISTS kvio (collection TEXT NOT "
                   "NULL, key TEXT NOT NULL, value BLOB NOT NULL, expires_at "
                   "INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (collection, "
                   "key)) WITHOUT ROWID",
                   NULL, NULL, NULL) != SQLITE_OK)
    die(b, "setup");
  prepare(b,
          "INSERT OR REPLACE INTO kvio (collection, key, value, expires_at) "
          "VALUES (?1, ?2, ?3, ?4)",
          &b->put);
  prepare(b,
          "SELECT value, expires_at FROM kvio WHERE collection = ?1 AND key "
          "= ?2",
          &b->get);
  prepare(b, "BEGIN IMMEDIATE", &b->begin);
  prepare(b, "BEGIN", &b->begin_read);
  prepare(b, "COMMIT", &b->commit);
}

static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, c = *(const uint64_t *)y;
  return a < c ? -1 : a > c;
}

static double quantile_us(const bench_t *b, double q) {
  size_t rank = (size_t)(q * (double)b->nlat + 0.999999);
  if (b->nlat == 0) return 0;
  rank = rank < 1 ? 1 : rank > b->nlat ? b->nlat : rank;
  return (double)b->lat[rank - 1] / 1e3;
}

static void report(bench_t *b, uint64_t elapsed) {
  double secs = (double)elapsed / 1e9;
  qsort(b->lat, b->nlat, sizeof(*b->lat), cmp_u64);
  printf("{\"op\":\"%s\",\"store\":\"sqlite-bare\",\"mode\":\"bare\","
         "\"requests\":%zu,\"clients\":1,\"batch\":%zu,\"size\":%zu,"
         "\"keys\":%zu,\"seconds\":%.6f,\"ops_per_sec\":%.1f,"
         "\"p50_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f,"
         "\"latency_per\":\"%s\"}\n",
         b->op, b->n, b->batch, b->size, b->keys, secs,
         secs > 0 ? (double)b->n / secs : 0, quantile_us(b, 0.50),
         quantile_us(b, 0.99), quantile_us(b, 0.999),
         strcmp(b->op, "put-batch") == 0 ? "txn" : "op");
}

int main(int argc, char **argv) {
  bench_t b;
  uint64_t t0;
  int nfixed;
  size_t i;
  memset(&b, 0, sizeof(b));
  if (argc < 5) usage();
  b.op = argv[2];
  b.n = parse_size(argv[3]);
  b.size = parse_size(argv[4]);
  b.batch = 1;
  nfixed = 5;
  if (strcmp(b.op, "put-batch") == 0) {
    if (argc < 6) usage();
    b.batch = parse_size(argv[5]);
    nfixed = 6;
  } else if (strcmp(b.op, "put-sync") != 0 && strcmp(b.op, "get") != 0) {
    usage();
  }
  if (argc > nfixed + 1) usage();
  b.keys = argc == nfixed + 1 ? parse_size(argv[nfixed]) : 10000;
  if (b.n == 0 || b.batch == 0 || b.keys == 0 || b.keys >= 1000000000000000ull)
    usage();
  b.rng = 0x9e3779b97f4a7c15ull;
  b.value = malloc(b.size + 1);
  b.lat = malloc(b.n * sizeof(*b.lat));
  if (b.value == NULL || b.lat == NULL) die(&b, "malloc");
  for (i = 0; i < b.size; i++)
    b.value[i] = (char)('a' + i % 26);
  open_db(&b, argv[1]);
  if (strcmp(b.op, "get") == 0) fill(&b);
  t0 = uv_hrtime();
  if (strcmp(b.op, "get") == 0)
    run_gets(&b);
  else
    run_puts(&b);
  report(&b, uv_hrtime() - t0);
  sqlite3_finalize(b.put);
  sqlite3_finalize(b.get);
  sqlite3_finalize(b.begin);
  sqlite3_finalize(b.begin_read);
  sqlite3_finalize(b.commit);
  sqlite3_close(b.db);
  free(b.value);
  free(b.lat);
  return 0;
}
#endif
