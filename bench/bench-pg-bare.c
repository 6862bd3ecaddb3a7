/* bench-pg-bare: the reference for `kvio bench --store postgresql://...` —
 * a bare synchronous libpq loop, one statement per round trip
 * (PQexecParams, binary parameters and results), on the table layout and
 * with the statements of the postgresql:// store, with kvio bench's key and
 * value shapes (16-byte keys "k%015u" drawn uniformly from a keyspace,
 * SIZE-byte values).
 *
 *   bench-pg-bare URL TABLE get N SIZE [KEYS]   KEYS pre-populated (not
 *                                               timed), then N gets
 *   bench-pg-bare URL TABLE put N SIZE [KEYS]   N upserts, each its own
 *                                               transaction (autocommit)
 *
 * URL is a libpq connection URI (postgresql://user:pass@host:port/db).
 * The table is created when missing (the store's layout). KEYS defaults to
 * 10000. Prints one JSON object in the shape of `kvio bench --json`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#if defined(__has_include)
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#define HAVE_LIBPQ 1
#endif
#endif

#ifndef HAVE_LIBPQ
int main(void) {
  fprintf(stderr, "bench-pg-bare: built without libpq\n");
  return 77;
}
#else

#define KEY_LEN 16
#define COLLECTION "kvio-bench-bare"
#define FILL_BATCH 1000

typedef struct bench_s {
  PGconn *conn;
  const char *table;
  const char *op;
  size_t n, size, keys;
  char *value;
  uint64_t rng;
  uint64_t *lat;
  size_t nlat;
  char sql_get[512], sql_put[512];
} bench_t;

static void die(bench_t *b, const char *what, PGresult *res) {
  fprintf(stderr, "bench-pg-bare: %s: %s", what,
          res ? PQresultErrorMessage(res) : PQerrorMessage(b->conn));
  exit(1);
}

static void usage(void) {
  fprintf(stderr, "usage: bench-pg-bare URL TABLE get|put N SIZE [KEYS]\n");
  exit(2);
}

static size_t parse_size(const char *s) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s || *end != '\0' || *s == '-') usage();
  return (size_t)v;
}

static uint64_t next_rand(bench_t *b) {
  b->rng ^= b->rng >> 12;
  b->rng ^= b->rng << 25;
  b->rng ^= b->rng >> 27;
  return b->rng * 2685821657736338717ull;
}

static void make_key(size_t i, char *out) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "k%015zu", i);
  memcpy(out, tmp, KEY_LEN);
}

static void be64(char out[8], int64_t v) {
  for (int i = 7; i >= 0; i--) {
    out[i] = (char)(v & 0xff);
    v = (int64_t)((uint64_t)v >> 8);
  }
}

static void notice_ignore(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

static void exec_ok(bench_t *b, const char *sql) {
  PGresult *r = PQexec(b->conn, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die(b, sql, r);
  PQclear(r);
}

/* One upsert: the store's put statement. */
static void put_one(bench_t *b, size_t i) {
  static const Oid types[] = {25, 25, 17};
  static const int fmts[] = {1, 1, 1};
  char key[KEY_LEN];
  const char *v[3] = {COLLECTION, key, b->value};
  int l[3] = {(int)strlen(COLLECTION), KEY_LEN, (int)b->size};
  PGresult *r;
  make_key(i, key);
  r = PQexecParams(b->conn, b->sql_put, 3, types, v, l, fmts, 1);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die(b, "put", r);
  PQclear(r);
}

/* One read: the store's get statement. */
static void get_one(bench_t *b, size_t i) {
  static const Oid types[] = {25, 25, 20};
  static const int fmts[] = {1, 1, 1};
  char key[KEY_LEN], now[8];
  const char *v[3] = {COLLECTION, key, now};
  int l[3] = {(int)strlen(COLLECTION), KEY_LEN, 8};
  PGresult *r;
  make_key(i, key);
  be64(now, (int64_t)(uv_hrtime() / 1000000)); /* any clock: no expiry */
  r = PQexecParams(b->conn, b->sql_get, 3, types, v, l, fmts, 1);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
    die(b, "get", r);
  PQclear(r);
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

int main(int argc, char **argv) {
  bench_t b;
  char sql[1024];
  uint64_t t0, t;
  double secs;
  if (argc < 6 || argc > 7) usage();
  memset(&b, 0, sizeof b);
  b.table = argv[2];
  b.op = argv[3];
  b.n = parse_size(argv[4]);
  b.size = parse_size(argv[5]);
  b.keys = argc == 7 ? parse_size(argv[6]) : 10000;
  if ((strcmp(b.op, "get") != 0 && strcmp(b.op, "put") != 0) || b.keys == 0)
    usage();
  b.rng = 0x9e3779b97f4a7c15ull;
  b.value = malloc(b.size + 1);
  b.lat = malloc((b.n + 1) * sizeof *b.lat);
  if (b.value == NULL || b.lat == NULL) return 1;
  memset(b.value, 'v', b.size);
  b.conn = PQconnectdb(argv[1]);
  if (PQstatus(b.conn) != CONNECTION_OK) die(&b, "connect", NULL);
  PQsetNoticeProcessor(b.conn, notice_ignore, NULL);
  snprintf(sql, sizeof sql,
           "CREATE TABLE IF NOT EXISTS \"%s\" (collection text COLLATE \"C\" "
           "NOT NULL, key text COLLATE \"C\" NOT NULL, value bytea NOT NULL, "
           "expires_at bigint, collection_full text, key_full text, "
           "PRIMARY KEY (collection, key))",
           b.table);
  exec_ok(&b, sql);
  snprintf(b.sql_put, sizeof b.sql_put,
           "INSERT INTO \"%s\" (collection, key, value, expires_at) "
           "VALUES ($1, $2, $3, NULL) ON CONFLICT (collection, key) DO UPDATE "
           "SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at",
           b.table);
  snprintf(b.sql_get, sizeof b.sql_get,
           "SELECT value, expires_at FROM \"%s\" WHERE collection = $1 AND "
           "key = $2 AND (expires_at IS NULL OR expires_at > $3)",
           b.table);
  if (strcmp(b.op, "get") == 0) {
    /* Fill the keyspace (not timed), FILL_BATCH puts per transaction. */
    for (size_t i = 0; i < b.keys; i++) {
      if (i % FILL_BATCH == 0) exec_ok(&b, "BEGIN");
      put_one(&b, i);
      if ((i + 1) % FILL_BATCH == 0 || i + 1 == b.keys) exec_ok(&b, "COMMIT");
    }
  }
  t0 = uv_hrtime();
  for (size_t i = 0; i < b.n; i++) {
    size_t k = (size_t)(next_rand(&b) % b.keys);
    t = uv_hrtime();
    if (b.op[0] == 'g')
      get_one(&b, k);
    else
      put_one(&b, k);
    b.lat[b.nlat++] = uv_hrtime() - t;
  }
  secs = (double)(uv_hrtime() - t0) / 1e9;
  snprintf(sql, sizeof sql, "DELETE FROM \"%s\" WHERE collection = '%s'",
           b.table, COLLECTION);
  exec_ok(&b, sql);
  qsort(b.lat, b.nlat, sizeof *b.lat, cmp_u64);
  printf("{\"op\":\"%s\",\"store\":\"pg-bare\",\"mode\":\"bare\","
         "\"requests\":%zu,\"clients\":1,\"batch\":1,\"size\":%zu,"
         "\"keys\":%zu,\"seconds\":%.6f,\"ops_per_sec\":%.1f,"
         "\"p50_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f,"
         "\"latency_per\":\"op\"}\n",
         b.op, b.n, b.size, b.keys, secs, secs > 0 ? (double)b.n / secs : 0,
         quantile_us(&b, 0.50), quantile_us(&b, 0.99), quantile_us(&b, 0.999));
  PQfinish(b.conn);
  free(b.value);
  free(b.lat);
  return 0;
}
#endif
