/* bench-file-naive: the reference for `kvio bench --store file://... --op
 * put` — aiokv's way as a bare C loop. For each put: read and parse the
 * whole JSON file, set the key, dump the whole tree to a temp file in the
 * same directory, fsync it, rename it over the file and fsync the directory
 * (the same durability as the file:// store's default sync=full). It writes
 * the file:// store's own format (docs/file.md) with kvio bench's key and
 * value shapes: 16-byte keys "k%015u" drawn uniformly from KEYS, SIZE-byte
 * values 'a'..'z'.
 *
 *   bench-file-naive PATH N [SIZE [KEYS]] [--no-dirsync]
 *
 * SIZE defaults to 100, KEYS to 10000. PATH is removed first (kvio bench
 * --op put starts from an empty file too, when the file is removed before
 * it) and left in place at the end. --no-dirsync skips the directory fsync
 * (what aiokv's os.replace does). Prints one JSON object in the shape of
 * `kvio bench --json`: ops_per_sec, p50_us, p99_us, p999_us, requests, and
 * file_bytes (the final size). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

static void die(const char *what) {
  fprintf(stderr, "bench-file-naive: %s: %s\n", what, strerror(errno));
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static size_t parse_size(const char *s) {
  char *end;
  unsigned long long v;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || end == s) {
    fprintf(stderr, "bench-file-naive: bad number '%s'\n", s);
    exit(2);
  }
  return (size_t)v;
}

static int dump_cb(const char *p, size_t n, void *data) {
  FILE *fp = data;
  return fwrite(p, 1, n, fp) == n ? 0 : -1;
}

/* Read and parse the whole file (an empty document when it is missing). */
static json_t *load(const char *path) {
  json_error_t err;
  json_t *doc;
  FILE *fp = fopen(path, "rb");
  if (fp == NULL) {
    if (errno != ENOENT) die(path);
    return json_pack("{s:s, s:i, s:{}}", "format", "kvio-file", "version", 1,
                     "collections");
  }
  doc = json_loadf(fp, JSON_REJECT_DUPLICATES, &err);
  fclose(fp);
  if (doc == NULL) {
    fprintf(stderr, "bench-file-naive: %s: %s\n", path, err.text);
    exit(1);
  }
  return doc;
}

/* Write the whole tree atomically: temp file, fsync, rename, dir fsync. */
static void save(json_t *doc, const char *path, const char *tmp, int dirfd) {
  FILE *fp = fopen(tmp, "wb");
  if (fp == NULL) die(tmp);
  if (json_dump_callback(doc, dump_cb, fp, JSON_INDENT(2)) != 0 ||
      fputc('\n', fp) == EOF || fflush(fp) != 0)
    die(tmp);
  if (fsync(fileno(fp)) != 0) die("fsync");
  if (fclose(fp) != 0) die(tmp);
  if (rename(tmp, path) != 0) die("rename");
  if (dirfd >= 0 && fsync(dirfd) != 0) die("fsync of the directory");
}

int main(int argc, char **argv) {
  const char *args[4];
  size_t nargs = 0, n, size = 100, keys = 10000, i;
  int dirsync = 1, dirfd = -1, a;
  char tmp[4096], dir[4096], *slash, *value;
  uint64_t *lat, rng = 0x9E3779B97F4A7C15ull, t0, t1;
  struct stat st;
  double secs;
  for (a = 1; a < argc; a++) {
    if (strcmp(argv[a], "--no-dirsync") == 0)
      dirsync = 0;
    else if (nargs < 4)
      args[nargs++] = argv[a];
    else
      nargs = 5;
  }
  if (nargs < 2 || nargs > 4) {
    fprintf(stderr,
            "usage: bench-file-naive PATH N [SIZE [KEYS]] [--no-dirsync]\n");
    return 2;
  }
  n = parse_size(args[1]);
  if (nargs > 2) size = parse_size(args[2]);
  if (nargs > 3) keys = parse_size(args[3]);
  if (n == 0 || keys == 0) {
    fprintf(stderr, "bench-file-naive: N and KEYS must be positive\n");
    return 2;
  }
  snprintf(tmp, sizeof tmp, "%s.tmp", args[0]);
  snprintf(dir, sizeof dir, "%s", args[0]);
  slash = strrchr(dir, '/');
  if (slash == NULL)
    strcpy(dir, ".");
  else if (slash == dir)
    dir[1] = '\0';
  else
    *slash = '\0';
  if (dirsync && (dirfd = open(dir, O_RDONLY | O_DIRECTORY)) < 0) die(dir);
  if (unlink(args[0]) != 0 && errno != ENOENT) die(args[0]);
  value = malloc(size + 1);
  lat = malloc(n * sizeof(*lat));
  if (value == NULL || lat == NULL) die("malloc");
  for (i = 0; i < size; i++)
    value[i] = (char)('a' + i % 26);
  value[size] = '\0';

  t0 = now_ns();
  for (i = 0; i < n; i++) {
    uint64_t s = now_ns();
    char key[32];
    json_t *doc, *colls, *c;
    /* xorshift64*, as kvio bench draws its keys */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    snprintf(key, sizeof key, "k%015llu",
             (unsigned long long)((rng * 0x2545F4914F6CDD1Dull) % keys));
    doc = load(args[0]);
    colls = json_object_get(doc, "collections");
    c = json_object_get(colls, "default_collection");
    if (c == NULL) {
      c = json_object();
      json_object_set_new(colls, "default_collection", c);
    }
    json_object_set_new(c, key, json_stringn(value, size));
    save(doc, args[0], tmp, dirfd);
    json_decref(doc);
    lat[i] = now_ns() - s;
  }
  t1 = now_ns();

  secs = (double)(t1 - t0) / 1e9;
  qsort(lat, n, sizeof(*lat), cmp_u64);
  if (stat(args[0], &st) != 0) die(args[0]);
  printf("{\"tool\":\"bench-file-naive\",\"op\":\"put\",\"requests\":%zu,"
         "\"size\":%zu,\"keys\":%zu,\"dirsync\":%s,\"seconds\":%.3f,"
         "\"ops_per_sec\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
         "\"p999_us\":%.1f,\"file_bytes\":%lld}\n",
         n, size, keys, dirsync ? "true" : "false", secs, (double)n / secs,
         (double)lat[n / 2] / 1e3, (double)lat[n * 99 / 100] / 1e3,
         (double)lat[n * 999 / 1000] / 1e3, (long long)st.st_size);
  free(value);
  free(lat);
  if (dirfd >= 0) close(dirfd);
  return 0;
}
