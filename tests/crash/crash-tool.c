/* crash-tool: the writer and the checker of the crash and two-process tests
 * (tests/crash/run.sh, tests/crash/two-proc.sh) for any store URL.
 *
 *   crash-tool write URL PREFIX [COUNT]
 *       Keep WINDOW puts in flight in collection "crash": keys PREFIX-0,
 *       PREFIX-1, ..., each with value_of(key) (about 100 bytes derived from
 *       the key). Print each key on stdout, flushed, as soon as its put is
 *       acknowledged (callback status 0). Runs until killed, or until COUNT
 *       keys are acknowledged (then closes the store and exits 0). A failed
 *       put is reported on stderr and ends the run with exit 1.
 *
 *   crash-tool check [--exact] URL ACKFILE...
 *       Reopen URL and check that every key listed in the ACKFILEs (one per
 *       line; an unterminated last line is ignored: the writer died while
 *       printing it) holds value_of(key); that a get of a missing key
 *       succeeds with "missing"; and, when the store can enumerate, that
 *       every key it lists in "crash" holds value_of(key) (a write that was
 *       not acknowledged may be there or not, but never half-written) and
 *       that every acknowledged key is listed. --exact: the listing holds
 *       exactly the acknowledged keys. Prints one summary line; exit 0 when
 *       all holds, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvio.h"

#define WINDOW 64
#define VALUE_LEN 100
#define KEY_MAX 128
#define COLL "crash"
#define CHUNK 256 /* keys per get_many in the checker */

static size_t value_of(const char *key, char *out) {
  char unit[KEY_MAX + 8];
  size_t ulen, n = 0;
  ulen = (size_t)snprintf(unit, sizeof(unit), "v-%s-", key);
  while (n < VALUE_LEN) {
    size_t k = VALUE_LEN - n < ulen ? VALUE_LEN - n : ulen;
    memcpy(out + n, unit, k);
    n += k;
  }
  out[n] = '\0';
  return n;
}

/* ---- write ----------------------------------------------------------------
 */

typedef struct slot_s {
  kv_req_t req;
  char key[KEY_MAX];
  char value[VALUE_LEN + 1];
} slot_t;

typedef struct writer_s {
  kv_store_t *store;
  const char *prefix;
  unsigned long long next; /* the next key number to write */
  unsigned long long acked;
  unsigned long long count; /* 0: forever */
  int failed;
  int closing;
  slot_t slots[WINDOW];
} writer_t;

static void on_put(kv_req_t *req);

static void writer_close_cb(kv_store_t *s) {
  (void)s;
}

static void submit(writer_t *w, slot_t *s) {
  size_t len;
  int rc;
  if (w->failed || (w->count && w->next >= w->count)) return;
  snprintf(s->key, sizeof(s->key), "%s-%llu", w->prefix, w->next++);
  len = value_of(s->key, s->value);
  kv_req_cleanup(&s->req);
  s->req.data = w;
  rc = kv_put(w->store, &s->req, COLL, s->key, s->value, len, 0, on_put);
  if (rc != 0) {
    fprintf(stderr, "crash-tool: put %s: %s: %s\n", s->key, kv_err_name(rc),
            kv_req_errmsg(&s->req));
    w->failed = 1;
  }
}

static void maybe_close(writer_t *w) {
  if (w->closing) return;
  if (w->failed || (w->count && w->acked >= w->count)) {
    w->closing = 1;
    kv_store_close(w->store, writer_close_cb);
  }
}

static void on_put(kv_req_t *req) {
  writer_t *w = req->data;
  slot_t *s = (slot_t *)req; /* req is the slot's first member */
  if (req->status != 0) {
    fprintf(stderr, "crash-tool: put %s: %s: %s\n", s->key,
            kv_err_name(req->status), kv_req_errmsg(req));
    w->failed = 1;
  } else {
    printf("%s\n", s->key);
    fflush(stdout);
    w->acked++;
    submit(w, s);
  }
  maybe_close(w);
}

static int cmd_write(const char *url, const char *prefix, const char *count) {
  static writer_t w; /* large: not on the stack */
  uv_loop_t loop;
  char errbuf[512] = "";
  int rc, i;
  if (strlen(prefix) > 64) {
    fprintf(stderr, "crash-tool: prefix too long\n");
    return 2;
  }
  w.prefix = prefix;
  w.count = count ? strtoull(count, NULL, 10) : 0;
  if (uv_loop_init(&loop) != 0) return 1;
  rc = kv_open_ex(&loop, url, &w.store, errbuf, sizeof(errbuf));
  if (rc != 0) {
    fprintf(stderr, "crash-tool: open %s: %s: %s\n", url, kv_err_name(rc),
            errbuf);
    return 1;
  }
  for (i = 0; i < WINDOW; i++)
    submit(&w, &w.slots[i]);
  maybe_close(&w);
  uv_run(&loop, UV_RUN_DEFAULT);
  for (i = 0; i < WINDOW; i++)
    kv_req_cleanup(&w.slots[i].req);
  if (uv_loop_close(&loop) != 0) {
    fprintf(stderr, "crash-tool: the loop did not close\n");
    return 1;
  }
  return w.failed ? 1 : 0;
}

/* ---- check ----------------------------------------------------------------
 */

typedef struct keyset_s {
  char **keys;
  size_t n;
  size_t cap;
} keyset_t;

static void keyset_add(keyset_t *ks, const char *k, size_t len) {
  if (ks->n == ks->cap) {
    ks->cap = ks->cap ? ks->cap * 2 : 1024;
    ks->keys = realloc(ks->keys, ks->cap * sizeof(*ks->keys));
    if (ks->keys == NULL) abort();
  }
  ks->keys[ks->n] = malloc(len + 1);
  if (ks->keys[ks->n] == NULL) abort();
  memcpy(ks->keys[ks->n], k, len);
  ks->keys[ks->n][len] = '\0';
  ks->n++;
}

static void keyset_free(keyset_t *ks) {
  size_t i;
  for (i = 0; i < ks->n; i++)
    free(ks->keys[i]);
  free(ks->keys);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read complete lines of an ack file. Returns 0 or -1. */
static int read_acks(const char *path, keyset_t *ks) {
  FILE *fp = fopen(path, "rb");
  char line[KEY_MAX + 2];
  if (fp == NULL) {
    perror(path);
    return -1;
  }
  while (fgets(line, sizeof(line), fp) != NULL) {
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') break; /* cut short by the kill */
    if (len > 1) keyset_add(ks, line, len - 1);
  }
  fclose(fp);
  return 0;
}

/* Check that keys[0..n) hold their values (all of them when must_exist,
 * else present ones only). Returns the number of failures. */
static size_t check_values(kv_sync_t *db, char **keys, size_t n, int must_exist,
                           size_t *missing) {
  char want[VALUE_LEN + 1];
  size_t bad = 0, i, j;
  kv_req_t req;
  for (i = 0; i < n; i += CHUNK) {
    size_t m = n - i < CHUNK ? n - i : CHUNK;
    int rc;
    memset(&req, 0, sizeof(req));
    rc = kv_sync_get_many(db, &req, COLL, (const char *const *)keys + i, m);
    if (rc != 0) {
      fprintf(stderr, "crash-tool: get_many: %s: %s\n", kv_err_name(rc),
              kv_req_errmsg(&req));
      kv_req_cleanup(&req);
      return bad + m;
    }
    for (j = 0; j < m; j++) {
      const kv_result_t *r = &req.results[j];
      size_t wl = value_of(keys[i + j], want);
      if (!r->found) {
        if (must_exist) {
          if (*missing < 5)
            fprintf(stderr, "crash-tool: acknowledged key %s is lost\n",
                    keys[i + j]);
          (*missing)++;
          bad++;
        }
      } else if (r->value.len != wl || memcmp(r->value.base, want, wl) != 0) {
        fprintf(stderr, "crash-tool: key %s holds %zu wrong bytes\n",
                keys[i + j], r->value.len);
        bad++;
      }
    }
    kv_req_cleanup(&req);
  }
  return bad;
}

static int cmd_check(int exact, const char *url, char **files, int nfiles) {
  keyset_t acked = {0}, listed = {0};
  kv_sync_t *db = NULL;
  char errbuf[512] = "";
  size_t bad = 0, missing = 0, unlisted = 0, i;
  const char *cursor = NULL;
  char *cur = NULL;
  kv_req_t req;
  int rc, f;
  for (f = 0; f < nfiles; f++)
    if (read_acks(files[f], &acked) != 0) return 1;
  rc = kv_sync_open(url, &db, errbuf, sizeof(errbuf));
  if (rc != 0) {
    printf("FAIL: the store cannot be opened: %s: %s\n", kv_err_name(rc),
           errbuf);
    keyset_free(&acked);
    return 1;
  }
  bad += check_values(db, acked.keys, acked.n, 1, &missing);
  /* A missing key reads as missing. */
  memset(&req, 0, sizeof(req));
  rc = kv_sync_get(db, &req, COLL, "no-such-key");
  if (rc != 0 || req.found) {
    printf("FAIL: get of a missing key: %s\n",
           rc ? kv_req_errmsg(&req) : "found");
    bad++;
  }
  kv_req_cleanup(&req);
  if (kv_store_caps(kv_sync_store(db)) & KV_CAP_ENUMERATE) {
    do {
      memset(&req, 0, sizeof(req));
      rc = kv_sync_keys(db, &req, COLL, cursor, 1000);
      if (rc != 0) {
        printf("FAIL: keys(): %s: %s\n", kv_err_name(rc), kv_req_errmsg(&req));
        kv_req_cleanup(&req);
        bad++;
        break;
      }
      for (i = 0; i < req.nnames; i++)
        keyset_add(&listed, req.names[i].base, req.names[i].len);
      free(cur);
      cur = req.cursor ? strdup(req.cursor) : NULL;
      cursor = cur;
      kv_req_cleanup(&req);
    } while (cursor != NULL);
    free(cur);
    bad += check_values(db, listed.keys, listed.n, 0, &missing);
    if (listed.n) qsort(listed.keys, listed.n, sizeof(char *), cmp_str);
    for (i = 0; i < acked.n; i++)
      if (!bsearch(&acked.keys[i], listed.keys, listed.n, sizeof(char *),
                   cmp_str))
        unlisted++;
    if (unlisted) printf("FAIL: %zu acknowledged keys not listed\n", unlisted);
    bad += unlisted;
    if (exact && listed.n != acked.n) {
      printf("FAIL: %zu keys listed, %zu acknowledged\n", listed.n, acked.n);
      bad++;
    }
  }
  kv_sync_close(db);
  printf("%s: %zu acknowledged keys, %zu lost, %zu listed, %zu failures\n",
         bad ? "FAIL" : "ok", acked.n, missing, listed.n, bad);
  keyset_free(&acked);
  keyset_free(&listed);
  return bad ? 1 : 0;
}

static int usage(void) {
  fprintf(stderr, "usage: crash-tool write URL PREFIX [COUNT]\n"
                  "       crash-tool check [--exact] URL ACKFILE...\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc >= 4 && argc <= 5 && strcmp(argv[1], "write") == 0)
    return cmd_write(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
  if (argc >= 4 && strcmp(argv[1], "check") == 0) {
    int exact = strcmp(argv[2], "--exact") == 0;
    if (argc - exact < 4) return usage();
    return cmd_check(exact, argv[2 + exact], argv + 3 + exact,
                     argc - 3 - exact);
  }
  return usage();
}
