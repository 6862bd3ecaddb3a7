/* Memory footprint of memory://: N entries with 16-byte keys and SIZE-byte
 * values, written through the public API; prints the process's resident set
 * before and after as JSON.
 *
 *   bench-memory-rss [N=1000000] [SIZE=100]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvio.h>

static long rss_kib(void) {
  char line[256];
  long kib = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
  size_t size = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;
  enum { BATCH = 1000 };
  static char keybuf[BATCH][17];
  const char *keys[BATCH];
  kv_buf_t vals[BATCH];
  char *value = malloc(size);
  kv_sync_t *db;
  kv_req_t req;
  char err[256];
  long before, after;
  memset(value, 'v', size);
  if (kv_sync_open("memory://", &db, err, sizeof err) != 0) {
    fprintf(stderr, "open: %s\n", err);
    return 1;
  }
  before = rss_kib();
  for (size_t i = 0; i < n; i += BATCH) {
    size_t m = n - i < BATCH ? n - i : BATCH;
    for (size_t j = 0; j < m; j++) {
      snprintf(keybuf[j], sizeof keybuf[j], "key-%012zu", i + j);
      keys[j] = keybuf[j];
      vals[j].base = value;
      vals[j].len = size;
    }
    if (kv_sync_put_many(db, &req, "bench", keys, vals, m, 0) != 0) {
      fprintf(stderr, "put_many: %s\n", kv_req_errmsg(&req));
      return 1;
    }
    kv_req_cleanup(&req);
  }
  after = rss_kib();
  printf("{\"entries\": %zu, \"value_size\": %zu, \"rss_before_mib\": %.1f, "
         "\"rss_after_mib\": %.1f, \"rss_delta_mib\": %.1f, "
         "\"bytes_per_entry\": %.1f}\n",
         n, size, before / 1024.0, after / 1024.0, (after - before) / 1024.0,
         (after - before) * 1024.0 / (double)n);
  kv_sync_close(db);
  free(value);
  return 0;
}
