/* bench-lmdb-bare: the reference for `kvio bench --store disk://...` — a
 * bare loop over LMDB's own C API, with kvio bench's key and value shapes
 * (16-byte keys "k%015u" drawn uniformly from a keyspace, SIZE-byte values)
 * and the same environment flags as the disk store (MDB_NOTLS, full sync).
 *
 *   bench-lmdb-bare DIR put-sync  N SIZE [KEYS]        one put per txn,
 *                                                       each commit synced
 *   bench-lmdb-bare DIR put-batch N SIZE BATCH [KEYS]  BATCH puts per txn
 *   bench-lmdb-bare DIR get       N SIZE [KEYS]        KEYS pre-populated
 *                                                       (not timed), one
 *                                                       read txn per 64 gets
 *
 * KEYS defaults to 10000. Prints one JSON object in the shape of
 * `kvio bench --json` (ops_per_sec, p50_us, p99_us, p999_us, ...). Latency
 * is per operation, except put-batch where it is per transaction
 * ("latency_per": "txn"). DIR is created if missing and left in place. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>
#include <uv.h>

#define KEY_LEN 16
#define GETS_PER_TXN 64
#define FILL_BATCH 1000
#define MAP_SIZE ((size_t)1 << 30)

typedef struct bench_s {
  const char *op;
  size_t n;
  size_t size;
  size_t batch;
  size_t keys;
  MDB_env *env;
  MDB_dbi dbi;
  char *value;
  uint64_t rng;
  uint64_t *lat; /* ns */
  size_t nlat;
} bench_t;

static void die(const char *what, int rc) {
  fprintf(stderr, "bench-lmdb-bare: %s: %s\n", what, mdb_strerror(rc));
  exit(1);
}

static void usage(void) {
  fprintf(stderr, "usage: bench-lmdb-bare DIR put-sync N SIZE [KEYS]\n"
                  "       bench-lmdb-bare DIR put-batch N SIZE BATCH [KEYS]\n"
                  "       bench-lmdb-bare DIR get N SIZE [KEYS]\n");
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

static void put_one(bench_t *b, MDB_txn *txn, size_t i) {
  char key[KEY_LEN];
  MDB_val k = {KEY_LEN, key}, v = {b->size, b->value};
  int rc;

  make_key(i, key);
  rc = mdb_put(txn, b->dbi, &k, &v, 0);
  if (rc != 0) die("mdb_put", rc);
}

/* Run `count` puts of random keys in one transaction. */
static void put_txn(bench_t *b, size_t count) {
  MDB_txn *txn;
  size_t j;
  int rc;

  rc = mdb_txn_begin(b->env, NULL, 0, &txn);
  if (rc != 0) die("mdb_txn_begin", rc);
  for (j = 0; j < count; j++)
    put_one(b, txn, (size_t)(next_rand(b) % b->keys));
  rc = mdb_txn_commit(txn);
  if (rc != 0) die("mdb_txn_commit", rc);
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
  MDB_txn *txn;
  size_t i, j;
  int rc;

  for (i = 0; i < b->keys; i += FILL_BATCH) {
    if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0)
      die("mdb_txn_begin", rc);
    for (j = i; j < b->keys && j < i + FILL_BATCH; j++)
      put_one(b, txn, j);
    if ((rc = mdb_txn_commit(txn)) != 0) die("mdb_txn_commit", rc);
  }
}

static void run_gets(bench_t *b) {
  MDB_txn *txn = NULL;
  char key[KEY_LEN];
  MDB_val k = {KEY_LEN, key}, v;
  size_t i;
  uint64_t t;
  int rc;

  for (i = 0; i < b->n; i++) {
    t = uv_hrtime();
    if (i % GETS_PER_TXN == 0 &&
        (rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn)) != 0)
      die("mdb_txn_begin", rc);
    make_key((size_t)(next_rand(b) % b->keys), key);
    rc = mdb_get(txn, b->dbi, &k, &v);
    if (rc != 0) die("mdb_get", rc);
    if ((i + 1) % GETS_PER_TXN == 0 || i + 1 == b->n) mdb_txn_abort(txn);
    b->lat[b->nlat++] = uv_hrtime() - t;
  }
}

static void open_env(bench_t *b, const char *dir) {
  MDB_txn *txn;
  int rc;

  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "bench-lmdb-bare: mkdir %s: %s\n", dir, strerror(errno));
    exit(1);
  }
  if ((rc = mdb_env_create(&b->env)) != 0) die("mdb_env_create", rc);
  if ((rc = mdb_env_set_mapsize(b->env, MAP_SIZE)) != 0)
    die("mdb_env_set_mapsize", rc);
  if ((rc = mdb_env_open(b->env, dir, MDB_NOTLS, 0644)) != 0)
    die("mdb_env_open", rc);
  if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0)
    die("mdb_txn_begin", rc);
  if ((rc = mdb_dbi_open(txn, NULL, 0, &b->dbi)) != 0) die("mdb_dbi_open", rc);
  if ((rc = mdb_txn_commit(txn)) != 0) die("mdb_txn_commit", rc);
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
  printf("{\"op\":\"%s\",\"store\":\"lmdb-bare\",\"mode\":\"bare\","
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
  if (b.value == NULL || b.lat == NULL) {
    fprintf(stderr, "bench-lmdb-bare: out of memory\n");
    return 1;
  }
  for (i = 0; i < b.size; i++)
    b.value[i] = (char)('a' + i % 26);
  open_env(&b, argv[1]);
  if (strcmp(b.op, "get") == 0) fill(&b);
  t0 = uv_hrtime();
  if (strcmp(b.op, "get") == 0)
    run_gets(&b);
  else
    run_puts(&b);
  report(&b, uv_hrtime() - t0);
  mdb_env_close(b.env);
  free(b.value);
  free(b.lat);
  return 0;
}
