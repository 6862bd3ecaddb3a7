/* bench-rocksdb-bare: the reference for `kvio bench --store rocksdb://...` —
 * a bare loop over RocksDB's own C API, with kvio bench's key and value
 * shapes (16-byte keys "k%015u" drawn uniformly from a keyspace, SIZE-byte
 * values, collection "kvio-bench") laid out as the rocksdb store lays them
 * out (BE16 length ‖ collection ‖ key; a 10-byte record header before the
 * value), default options and synced writes.
 *
 *   bench-rocksdb-bare DIR put-sync  N SIZE [KEYS]        one synced
 *                                                          rocksdb_put per put
 *   bench-rocksdb-bare DIR put-batch N SIZE BATCH [KEYS]  BATCH puts per
 *                                                          synced WriteBatch
 *   bench-rocksdb-bare DIR get       N SIZE [KEYS]        KEYS pre-populated
 *                                                          (not timed), one
 *                                                          rocksdb_get each
 *
 * KEYS defaults to 10000. Prints one JSON object in the shape of
 * `kvio bench --json` (ops_per_sec, p50_us, p99_us, p999_us, ...). Latency
 * is per operation, except put-batch where it is per batch
 * ("latency_per": "txn"). DIR is created if missing and left in place. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#if defined(__has_include)
#if __has_include(<rocksdb/c.h>)
#define HAVE_ROCKSDB 1
#endif
#endif

#ifndef HAVE_ROCKSDB
int main(void) {
  fprintf(stderr, "bench-rocksdb-bare: built without RocksDB\n");
  return 77;
}
#else
#include <errno.h>

#include <rocksdb/c.h>

#define KEY_LEN 16
#define COLLECTION "kvio-bench"
#define PREFIX_LEN (2 + sizeof(COLLECTION) - 1)
#define REC_HDR 10
#define FILL_BATCH 1000

typedef struct bench_s {
  const char *op;
  size_t n;
  size_t size;
  size_t batch;
  size_t keys;
  rocksdb_t *db;
  rocksdb_writeoptions_t *wo;
  rocksdb_readoptions_t *ro;
  rocksdb_writebatch_t *wb;
  char *value; /* REC_HDR + size bytes */
  uint64_t rng;
  uint64_t *lat; /* ns */
  size_t nlat;
} bench_t;

static void die(const char *what, char *err) {
  fprintf(stderr, "bench-rocksdb-bare: %s: %s\n", what, err ? err : "failed");
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: bench-rocksdb-bare DIR put-sync N SIZE [KEYS]\n"
          "       bench-rocksdb-bare DIR put-batch N SIZE BATCH [KEYS]\n"
          "       bench-rocksdb-bare DIR get N SIZE [KEYS]\n");
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

/* BE16(len) ‖ "kvio-bench" ‖ "k%015u", as the store builds it. */
static void make_key(size_t i, char *out) {
  char tmp[32];
  out[0] = 0;
  out[1] = (char)(PREFIX_LEN - 2);
  memcpy(out + 2, COLLECTION, PREFIX_LEN - 2);
  snprintf(tmp, sizeof(tmp), "k%015zu", i);
  memcpy(out + PREFIX_LEN, tmp, KEY_LEN);
}

static void run_puts(bench_t *b) {
  char key[PREFIX_LEN + KEY_LEN];
  size_t done = 0, count, j;
  char *err = NULL;
  uint64_t t;
  while (done < b->n) {
    count = b->n - done < b->batch ? b->n - done : b->batch;
    t = uv_hrtime();
    if (b->batch == 1) {
      make_key((size_t)(next_rand(b) % b->keys), key);
      rocksdb_put(b->db, b->wo, key, sizeof(key), b->value, REC_HDR + b->size,
                  &err);
      if (err != NULL) die("rocksdb_put", err);
    } else {
      rocksdb_writebatch_clear(b->wb);
      for (j = 0; j < count; j++) {
        make_key((size_t)(next_rand(b) % b->keys), key);
        rocksdb_writebatch_put(b->wb, key, sizeof(key), b->value,
                               REC_HDR + b->size);
      }
      rocksdb_write(b->db, b->wo, b->wb, &err);
      if (err != NULL) die("rocksdb_write", err);
    }
    b->lat[b->nlat++] = uv_hrtime() - t;
    done += count;
  }
}

static void fill(bench_t *b) {
  char key[PREFIX_LEN + KEY_LEN];
  char *err = NULL;
  size_t i, j;
  for (i = 0; i < b->keys; i += FILL_BATCH) {
    rocksdb_writebatch_clear(b->wb);
    for (j = i; j < b->keys && j < i + FILL_BATCH; j++) {
      make_key(j, key);
      rocksdb_writebatch_put(b->wb, key, sizeof(key), b->value,
                             REC_HDR + b->size);
    }
    rocksdb_write(b->db, b->wo, b->wb, &err);
    if (err != NULL) die("rocksdb_write", err);
  }
}

static void run_gets(bench_t *b) {
  char key[PREFIX_LEN + KEY_LEN];
  char *err = NULL, *v;
  size_t i, len;
  uint64_t t;
  for (i = 0; i < b->n; i++) {
    t = uv_hrtime();
    make_key((size_t)(next_rand(b) % b->keys), key);
    v = rocksdb_get(b->db, b->ro, key, sizeof(key), &len, &err);
    if (err != NULL) die("rocksdb_get", err);
    if (v == NULL || len != REC_HDR + b->size) die("rocksdb_get", NULL);
    rocksdb_free(v);
    b->lat[b->nlat++] = uv_hrtime() - t;
  }
}

static void open_db(bench_t *b, const char *dir) {
  rocksdb_options_t *o = rocksdb_options_create();
  char *err = NULL;
  rocksdb_options_set_create_if_missing(o, 1);
  b->db = rocksdb_open(o, dir, &err);
  if (err != NULL) die("rocksdb_open", err);
  rocksdb_options_destroy(o);
  b->wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(b->wo, 1);
  b->ro = rocksdb_readoptions_create();
  b->wb = rocksdb_writebatch_create();
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
  printf("{\"op\":\"%s\",\"store\":\"rocksdb-bare\",\"mode\":\"bare\","
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
  b.value = calloc(1, REC_HDR + b.size + 1);
  b.lat = malloc(b.n * sizeof(*b.lat));
  if (b.value == NULL || b.lat == NULL) die("malloc", NULL);
  b.value[0] = 1; /* record version; no expiry */
  for (i = 0; i < b.size; i++)
    b.value[REC_HDR + i] = (char)('a' + i % 26);
  open_db(&b, argv[1]);
  if (strcmp(b.op, "get") == 0) fill(&b);
  t0 = uv_hrtime();
  if (strcmp(b.op, "get") == 0)
    run_gets(&b);
  else
    run_puts(&b);
  report(&b, uv_hrtime() - t0);
  rocksdb_writebatch_destroy(b.wb);
  rocksdb_readoptions_destroy(b.ro);
  rocksdb_writeoptions_destroy(b.wo);
  rocksdb_close(b.db);
  free(b.value);
  free(b.lat);
  return 0;
}
#endif
