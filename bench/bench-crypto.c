/* Throughput of the compression and encryption wrappers over memory://,
 * with the bare codec (libzstd called directly, kv_fernet_encrypt) and the
 * bare memory:// store measured in the same run as references.
 *
 *   bench-crypto [seconds per measurement, default 1]
 *
 * Targets (BENCHMARKS.md): zstd compression of 10 KB JSON-like values at
 * >= 200 MB/s through the wrapper; Fernet encryption of 1 KB values at
 * >= 100,000 ops/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvio.h"

#if !defined(KV_HAVE_COMPRESSION) || !defined(KV_HAVE_ENCRYPTION)
int main(void) {
  fprintf(stderr, "bench-crypto: kvio was built without the compression or "
                  "encryption wrapper\n");
  return 77;
}
#else
#include <zstd.h>

#include "kvio/compression.h"
#include "kvio/encryption.h"

#define NVALUES 256 /* distinct values, cycled */
#define DEPTH 64    /* requests in flight */

typedef struct {
  kv_store_t *store;
  kv_op_t op;
  char **values;
  size_t len;
  uint64_t deadline;
  uint64_t done;
  uint64_t submitted;
  int stopping;
  kv_req_t reqs[DEPTH];
} run_t;

static char *json_like(size_t len, unsigned seed) {
  char *v = malloc(len + 1);
  size_t i = 0;
  unsigned n = seed * 1000;
  while (i < len) {
    char item[160];
    int k = snprintf(item, sizeof item,
                     "{\"id\":%u,\"user\":\"user-%u\",\"email\":\"u%u@example."
                     "org\",\"score\":%u.%02u,\"active\":%s,\"tags\":[\"t%u\","
                     "\"t%u\"]},",
                     n, n * 7919u % 100000u, n, n % 1000u, n % 100u,
                     n % 3 ? "true" : "false", n % 17u, n % 31u);
    for (int j = 0; j < k && i < len; j++)
      v[i++] = item[j];
    n++;
  }
  v[len] = '\0';
  return v;
}

static void submit(run_t *r, kv_req_t *req);

static void on_done(kv_req_t *req) {
  run_t *r = req->data;
  if (req->status != 0) {
    fprintf(stderr, "bench-crypto: %s\n", kv_req_errmsg(req));
    exit(1);
  }
  kv_req_cleanup(req);
  r->done++;
  if ((r->done & 63) == 0 && uv_hrtime() >= r->deadline) r->stopping = 1;
  if (!r->stopping) submit(r, req);
}

static void submit(run_t *r, kv_req_t *req) {
  char key[32];
  unsigned i = (unsigned)(r->submitted++ % NVALUES);
  int rc;
  snprintf(key, sizeof key, "k%u", i);
  if (r->op == KV_OP_PUT)
    rc = kv_put(r->store, req, "bench", key, r->values[i], r->len, 0, on_done);
  else
    rc = kv_get(r->store, req, "bench", key, on_done);
  if (rc != 0) {
    fprintf(stderr, "bench-crypto: submit: %s\n", kv_req_errmsg(req));
    exit(1);
  }
}

/* Ops per second of `op` on `store` for `seconds`. */
static double measure(uv_loop_t *loop, kv_store_t *store, kv_op_t op,
                      char **values, size_t len, double seconds) {
  run_t *r = calloc(1, sizeof *r);
  uint64_t t0;
  double ops;
  r->store = store;
  r->op = op;
  r->values = values;
  r->len = len;
  t0 = uv_hrtime();
  r->deadline = t0 + (uint64_t)(seconds * 1e9);
  for (int i = 0; i < DEPTH; i++) {
    r->reqs[i].data = r;
    submit(r, &r->reqs[i]);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  ops = (double)r->done / ((double)(uv_hrtime() - t0) / 1e9);
  free(r);
  return ops;
}

static void fill(uv_loop_t *loop, kv_store_t *store, char **values,
                 size_t len) {
  measure(loop, store, KV_OP_PUT, values, len, 0.05);
}

static void close_store(uv_loop_t *loop, kv_store_t *s) {
  kv_store_close(s, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  uv_loop_t *loop = uv_default_loop();
  char *json[NVALUES], *kb[NVALUES];
  kv_store_t *mem, *w;
  char key[KV_FERNET_KEY_SIZE];
  const size_t jlen = 10 * 1024, klen = 1024;
  double ops, ref;
  uint64_t t0;
  size_t n = 0, clen = 0;

  if (secs <= 0) secs = 1.0;
  for (int i = 0; i < NVALUES; i++) {
    json[i] = json_like(jlen, (unsigned)i);
    kb[i] = json_like(klen, (unsigned)i + 7);
  }
  printf("bench-crypto: %.1f s per measurement, %d requests in flight, "
         "memory:// inner store\n",
         secs, DEPTH);

  /* ---- zstd, 10 KB JSON-like values ---- */
  {
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(jlen);
    char *dst = malloc(cap);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, ZSTD_CLEVEL_DEFAULT);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    t0 = uv_hrtime();
    while (uv_hrtime() - t0 < (uint64_t)(secs * 1e9)) {
      for (int i = 0; i < 64; i++, n++)
        clen += ZSTD_compress2(cc, dst, cap, json[n % NVALUES], jlen);
    }
    ref = (double)n * jlen / ((double)(uv_hrtime() - t0) / 1e9) / 1e6;
    printf("zstd level 3, bare ZSTD_compress2 on 10 KB:   %8.1f MB/s "
           "(ratio %.2f)\n",
           ref, (double)n * jlen / (double)clen);
    free(dst);
    ZSTD_freeCCtx(cc);
  }
  kv_open(loop, "memory://", &mem);
  ops = measure(loop, mem, KV_OP_PUT, json, jlen, secs);
  printf("memory:// put 10 KB (no wrapper):             %8.1f MB/s  "
         "(%.0f ops/s)\n",
         ops * jlen / 1e6, ops);
  {
    kv_wrap_compression_opts_t o = {0};
    o.algorithm = KV_COMPRESSION_ZSTD;
    kv_wrap_compression(mem, &o, &w);
  }
  ops = measure(loop, w, KV_OP_PUT, json, jlen, secs);
  printf("compression zstd put 10 KB (wrapper):         %8.1f MB/s  "
         "(%.0f ops/s)   target >= 200 MB/s: %s\n",
         ops * jlen / 1e6, ops, ops * jlen / 1e6 >= 200 ? "met" : "MISSED");
  ops = measure(loop, w, KV_OP_GET, json, jlen, secs);
  printf("compression zstd get 10 KB (wrapper):         %8.1f MB/s  "
         "(%.0f ops/s)\n",
         ops * jlen / 1e6, ops);
  close_store(loop, w);
  kv_open(loop, "memory://", &mem);
  {
    kv_wrap_compression_opts_t o = {0};
    o.algorithm = KV_COMPRESSION_ZSTD;
    o.level = 1;
    kv_wrap_compression(mem, &o, &w);
  }
  ops = measure(loop, w, KV_OP_PUT, json, jlen, secs);
  printf("compression zstd level=1 put 10 KB (wrapper): %8.1f MB/s  "
         "(%.0f ops/s)\n",
         ops * jlen / 1e6, ops);
  close_store(loop, w);

  /* ---- Fernet, 1 KB values ---- */
  kv_fernet_generate_key(key);
  n = 0;
  t0 = uv_hrtime();
  while (uv_hrtime() - t0 < (uint64_t)(secs * 1e9)) {
    for (int i = 0; i < 64; i++, n++) {
      char *tok;
      size_t tlen;
      kv_fernet_encrypt(key, kb[n % NVALUES], klen, &tok, &tlen);
      kv_free(tok);
    }
  }
  ref = (double)n / ((double)(uv_hrtime() - t0) / 1e9);
  printf("Fernet, bare kv_fernet_encrypt on 1 KB:       %8.0f ops/s\n", ref);
  kv_open(loop, "memory://", &mem);
  ops = measure(loop, mem, KV_OP_PUT, kb, klen, secs);
  printf("memory:// put 1 KB (no wrapper):              %8.0f ops/s\n", ops);
  {
    kv_wrap_encryption_opts_t o = {0};
    o.key = key;
    kv_wrap_encryption(mem, &o, &w);
  }
  ops = measure(loop, w, KV_OP_PUT, kb, klen, secs);
  printf("encryption put 1 KB (wrapper):                %8.0f ops/s   "
         "target >= 100000 ops/s: %s\n",
         ops, ops >= 100000 ? "met" : "MISSED");
  fill(loop, w, kb, klen);
  ops = measure(loop, w, KV_OP_GET, kb, klen, secs);
  printf("encryption get 1 KB (wrapper):                %8.0f ops/s\n", ops);
  close_store(loop, w);

  for (int i = 0; i < NVALUES; i++) {
    free(json[i]);
    free(kb[i]);
  }
  return uv_loop_close(loop) == 0 ? 0 : 1;
}
#endif
