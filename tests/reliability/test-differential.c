/* Differential test: random sequences of operations (single and bulk ops,
 * TTLs, atomic ops, listings, destroy_collection) replayed on memory:// and
 * on the store under test, comparing every result.
 *
 *   test-differential URL [SEQUENCES [OPS]]
 *
 * `@TMP@` in URL becomes a fresh temporary directory per sequence. Each
 * sequence starts from destroy() on both stores. Segments the store under
 * test does not announce are left out of the mix. On a mismatch it prints
 * the seed, the op number and both answers, and exits 1. Ends with a
 * "N passed, M failed" line (one per sequence). */
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kvio.h>

#define NKEYS 24
#define NCOLLS 3

static uint64_t rng;
static unsigned rnd(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng % n);
}

static const char *colls[NCOLLS] = {"alpha", "b::eta", "g a/m*m?a"};
static char keys[NKEYS][32];

typedef struct {
  kv_sync_t *s;
  kv_req_t req;
  int rc;
} side_t;

static char failure[4096];

/* Compare the two requests' results for the op just run. */
static int same(const kv_req_t *a, int rca, const kv_req_t *b, int rcb,
                kv_op_t op) {
  if (rca != rcb) {
    snprintf(failure, sizeof failure, "status %s vs %s (%s)", kv_err_name(rca),
             kv_err_name(rcb), rcb ? kv_req_errmsg(b) : "");
    return 0;
  }
  if (rca != 0) return 1;
  switch (op) {
  case KV_OP_GET:
  case KV_OP_TAKE:
  case KV_OP_TTL:
    if (a->found != b->found ||
        (a->found && (a->value.len != b->value.len ||
                      memcmp(a->value.base, b->value.base, a->value.len)))) {
      snprintf(failure, sizeof failure, "value: found %d '%.*s' vs %d '%.*s'",
               a->found, (int)a->value.len, a->value.base, b->found,
               (int)b->value.len, b->value.base);
      return 0;
    }
    if (op == KV_OP_TTL && a->found &&
        ((a->ttl == 0) != (b->ttl == 0) || a->ttl - b->ttl > 2 ||
         b->ttl - a->ttl > 2)) {
      snprintf(failure, sizeof failure, "ttl %g vs %g", a->ttl, b->ttl);
      return 0;
    }
    return 1;
  case KV_OP_DELETE:
  case KV_OP_PUT_IF_ABSENT:
  case KV_OP_CAS:
    if (a->found != b->found) {
      snprintf(failure, sizeof failure, "found %d vs %d", a->found, b->found);
      return 0;
    }
    return 1;
  case KV_OP_DELETE_MANY:
    if (a->count != b->count) {
      snprintf(failure, sizeof failure, "count %zu vs %zu", a->count, b->count);
      return 0;
    }
    return 1;
  case KV_OP_INCR:
    if (a->number != b->number) {
      snprintf(failure, sizeof failure, "incr %" PRId64 " vs %" PRId64,
               a->number, b->number);
      return 0;
    }
    return 1;
  case KV_OP_GET_MANY:
    if (a->nresults != b->nresults) return 0;
    for (size_t i = 0; i < a->nresults; i++) {
      const kv_result_t *x = &a->results[i], *y = &b->results[i];
      if (x->found != y->found ||
          (x->found && (x->value.len != y->value.len ||
                        memcmp(x->value.base, y->value.base, x->value.len)))) {
        snprintf(failure, sizeof failure, "get_many slot %zu differs", i);
        return 0;
      }
    }
    return 1;
  default:
    return 1;
  }
}

static int cmp_buf(const void *x, const void *y) {
  const kv_buf_t *a = x, *b = y;
  int c = memcmp(a->base, b->base, a->len < b->len ? a->len : b->len);
  return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* The whole listing of one collection (following cursors), sorted, joined
 * with '\n'. Returns a malloc'ed string or NULL on error. */
static char *listing(kv_sync_t *s, const char *coll) {
  kv_buf_t *all = NULL;
  size_t n = 0;
  char *cursor = NULL, *out;
  size_t total = 1;
  do {
    kv_req_t req;
    int rc = coll ? kv_sync_keys(s, &req, coll, cursor, 5)
                  : kv_sync_collections(s, &req, cursor, 5);
    free(cursor);
    cursor = NULL;
    if (rc != 0) {
      snprintf(failure, sizeof failure, "listing: %s", kv_req_errmsg(&req));
      kv_req_cleanup(&req);
      return NULL;
    }
    all = realloc(all, (n + req.nnames + 1) * sizeof *all);
    for (size_t i = 0; i < req.nnames; i++) {
      all[n].base = strdup(req.names[i].base);
      all[n++].len = req.names[i].len;
      total += req.names[i].len + 1;
    }
    if (req.cursor) cursor = strdup(req.cursor);
    kv_req_cleanup(&req);
  } while (cursor);
  qsort(all, n, sizeof *all, cmp_buf);
  out = malloc(total);
  out[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    strcat(out, all[i].base);
    strcat(out, "\n");
    free(all[i].base);
  }
  free(all);
  return out;
}

static int run_sequence(const char *url_tmpl, uint64_t seed, int nops) {
  side_t ref = {0}, sut = {0};
  char url[1024], tmp[256] = "", err[256];
  const char *at = strstr(url_tmpl, "@TMP@");
  unsigned caps;
  int ok = 1;

  rng = seed * 0x9E3779B97F4A7C15ull + 1;
  if (at) {
    snprintf(tmp, sizeof tmp, "%s/kvio-diff-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(tmp) == NULL) return 0;
    snprintf(url, sizeof url, "%.*s%s%s", (int)(at - url_tmpl), url_tmpl, tmp,
             at + 5);
  } else {
    snprintf(url, sizeof url, "%s", url_tmpl);
  }
  if (kv_sync_open("memory://", &ref.s, err, sizeof err) != 0 ||
      kv_sync_open(url, &sut.s, err, sizeof err) != 0) {
    fprintf(stderr, "open %s: %s\n", url, err);
    kv_sync_close(ref.s);
    return 0;
  }
  caps = kv_store_caps(kv_sync_store(sut.s));
  if (caps & KV_CAP_DESTROY) {
    kv_sync_destroy(sut.s, &sut.req);
    kv_req_cleanup(&sut.req);
  }

  for (int i = 0; i < nops && ok; i++) {
    const char *c = colls[rnd(NCOLLS)];
    const char *k = keys[rnd(NKEYS)];
    char val[64];
    size_t vlen = rnd(40);
    double ttl = rnd(4) == 0 ? 1000 + rnd(1000) : 0;
    const char *ks[4];
    kv_buf_t vs[4];
    unsigned r = rnd(100);
    kv_op_t op;
    for (size_t j = 0; j < vlen; j++)
      val[j] = (char)('a' + rnd(26));
    val[vlen] = '\0';
    for (int j = 0; j < 4; j++) {
      ks[j] = keys[rnd(NKEYS)];
      vs[j].base = val;
      vs[j].len = rnd((unsigned)vlen + 1);
    }
#define BOTH(call_ref, call_sut) \
  do {                           \
    ref.rc = call_ref;           \
    sut.rc = call_sut;           \
  } while (0)
    if (r < 25) {
      op = KV_OP_PUT;
      BOTH(kv_sync_put(ref.s, &ref.req, c, k, val, vlen, ttl),
           kv_sync_put(sut.s, &sut.req, c, k, val, vlen, ttl));
    } else if (r < 40) {
      op = KV_OP_GET;
      BOTH(kv_sync_get(ref.s, &ref.req, c, k),
           kv_sync_get(sut.s, &sut.req, c, k));
    } else if (r < 47) {
      op = KV_OP_TTL;
      BOTH(kv_sync_ttl(ref.s, &ref.req, c, k),
           kv_sync_ttl(sut.s, &sut.req, c, k));
    } else if (r < 55) {
      op = KV_OP_DELETE;
      BOTH(kv_sync_delete(ref.s, &ref.req, c, k),
           kv_sync_delete(sut.s, &sut.req, c, k));
    } else if (r < 62) {
      op = KV_OP_PUT_MANY;
      BOTH(kv_sync_put_many(ref.s, &ref.req, c, ks, vs, 4, ttl),
           kv_sync_put_many(sut.s, &sut.req, c, ks, vs, 4, ttl));
    } else if (r < 70) {
      op = KV_OP_GET_MANY;
      BOTH(kv_sync_get_many(ref.s, &ref.req, c, ks, 4),
           kv_sync_get_many(sut.s, &sut.req, c, ks, 4));
    } else if (r < 75) {
      op = KV_OP_DELETE_MANY;
      BOTH(kv_sync_delete_many(ref.s, &ref.req, c, ks, 4),
           kv_sync_delete_many(sut.s, &sut.req, c, ks, 4));
    } else if (r < 96 && (caps & KV_CAP_ATOMIC)) {
      unsigned a = rnd(4);
      if (a == 0) {
        int64_t delta = (int64_t)rnd(7) - 3;
        op = KV_OP_INCR;
        BOTH(kv_sync_incr(ref.s, &ref.req, c, "counter", delta, ttl),
             kv_sync_incr(sut.s, &sut.req, c, "counter", delta, ttl));
      } else if (a == 1) {
        op = KV_OP_PUT_IF_ABSENT;
        BOTH(kv_sync_put_if_absent(ref.s, &ref.req, c, k, val, vlen, ttl),
             kv_sync_put_if_absent(sut.s, &sut.req, c, k, val, vlen, ttl));
      } else if (a == 2) {
        /* Expect the current value half of the time, "absent" or a
         * random value otherwise. */
        kv_req_t cur;
        int absent = rnd(4) == 0;
        char *expected = NULL;
        size_t elen = 0;
        if (kv_sync_get(ref.s, &cur, c, k) == 0 && cur.found && rnd(2))
          expected = kv_req_take_value(&cur, &elen);
        kv_req_cleanup(&cur);
        if (expected == NULL && !absent) {
          expected = strdup("zz");
          elen = 2;
        }
        op = KV_OP_CAS;
        BOTH(
            kv_sync_cas(ref.s, &ref.req, c, k, expected, elen, val, vlen, ttl),
            kv_sync_cas(sut.s, &sut.req, c, k, expected, elen, val, vlen, ttl));
        kv_free(expected);
      } else {
        op = KV_OP_TAKE;
        BOTH(kv_sync_take(ref.s, &ref.req, c, k),
             kv_sync_take(sut.s, &sut.req, c, k));
      }
    } else if (r < 98 && (caps & KV_CAP_DESTROY)) {
      op = KV_OP_DESTROY_COLLECTION;
      BOTH(kv_sync_destroy_collection(ref.s, &ref.req, c),
           kv_sync_destroy_collection(sut.s, &sut.req, c));
    } else {
      op = KV_OP_GET;
      BOTH(kv_sync_get(ref.s, &ref.req, c, "counter"),
           kv_sync_get(sut.s, &sut.req, c, "counter"));
    }
#undef BOTH
    if (!same(&ref.req, ref.rc, &sut.req, sut.rc, op)) {
      fprintf(stderr, "seed %" PRIu64 " op %d (%d, coll '%s', key '%s'): %s\n",
              seed, i, (int)op, c, k, failure);
      ok = 0;
    }
    kv_req_cleanup(&ref.req);
    kv_req_cleanup(&sut.req);
  }
  /* The final states list the same keys and collections. */
  if (ok && (caps & KV_CAP_ENUMERATE)) {
    for (int j = -1; j < NCOLLS && ok; j++) {
      char *a = listing(ref.s, j < 0 ? NULL : colls[j]);
      char *b = listing(sut.s, j < 0 ? NULL : colls[j]);
      if (a == NULL || b == NULL || strcmp(a, b) != 0) {
        fprintf(stderr,
                "seed %" PRIu64 ": final %s listing differs:\n%s---\n%s\n",
                seed, j < 0 ? "collections" : colls[j], a ? a : failure,
                b ? b : failure);
        ok = 0;
      }
      free(a);
      free(b);
    }
  }
  kv_sync_close(ref.s);
  kv_sync_close(sut.s);
  if (tmp[0]) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  }
  return ok;
}

int main(int argc, char **argv) {
  int nseq = argc > 2 ? atoi(argv[2]) : 20;
  int nops = argc > 3 ? atoi(argv[3]) : 400;
  int passed = 0, failed = 0;
  if (argc < 2) {
    fprintf(stderr, "usage: %s URL [SEQUENCES [OPS]]\n", argv[0]);
    return 2;
  }
  for (int i = 0; i < NKEYS; i++)
    snprintf(keys[i], sizeof keys[i], i % 5 == 4 ? "k*[%d]?" : "key-%d", i);
  for (int s = 1; s <= nseq; s++) {
    if (run_sequence(argv[1], (uint64_t)s, nops))
      passed++;
    else
      failed++;
  }
  printf("differential %s: %d sequences of %d ops\n", argv[1], nseq, nops);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
