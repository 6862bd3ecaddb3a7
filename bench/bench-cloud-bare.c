/* bench-cloud-bare: the reference loop for the cloud stores' benchmarks — a
 * bare libcurl easy handle (one connection, reused) doing one request at a
 * time, signed by curl's SigV4 exactly as the stores sign:
 *
 *   bench-cloud-bare s3 ENDPOINT BUCKET get N SIZE KEYS
 *       PUT KEYS objects of SIZE bytes, then time N GETs of random ones
 *   bench-cloud-bare dynamodb ENDPOINT TABLE put N SIZE KEYS
 *       time N PutItem of SIZE-byte values over KEYS keys
 *
 * Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; BARE_ALL_OLD=1
 * adds ReturnValues=ALL_OLD to PutItem. Prints one
 * JSON line: {"ops_per_sec": X, "p99_us": Y} (as `kvio bench --json`). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

static size_t sink(char *p, size_t s, size_t n, void *u) {
  (void)p;
  (void)u;
  return s * n;
}

static void sha_hex(const void *d, size_t n, char out[65]) {
  unsigned char md[32];
  SHA256(d, n, md);
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int perform(CURL *e) {
  long code = 0;
  CURLcode rc = curl_easy_perform(e);
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  if (rc != CURLE_OK || code < 200 || code > 299) {
    fprintf(stderr, "request failed: %s, HTTP %ld\n", curl_easy_strerror(rc), code);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: %s s3|dynamodb ENDPOINT BUCKET|TABLE get|put N SIZE KEYS\n",
            argv[0]);
    return 2;
  }
  const char *kind = argv[1], *endpoint = argv[2], *name = argv[3];
  long n = atol(argv[5]), size = atol(argv[6]), keys = atol(argv[7]);
  const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
  int s3 = strcmp(kind, "s3") == 0;
  /* BARE_ALL_OLD=1: PutItem with ReturnValues=ALL_OLD, as dynamodb:// sends
   * it (it drops the chunks of a replaced large value). */
  int all_old = getenv("BARE_ALL_OLD") && strcmp(getenv("BARE_ALL_OLD"), "1") == 0;
  char userpwd[256], url[1024], sha[65], hdr[128];
  char *value = malloc((size_t)size + 1);
  double *lat = malloc((size_t)n * sizeof *lat);
  if (!ak || !sk || !value || !lat || n <= 0 || keys <= 0) return 2;
  memset(value, 'x', (size_t)size);
  snprintf(userpwd, sizeof userpwd, "%s:%s", ak, sk);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_USERPWD, userpwd);
  curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s3 ? "aws:amz:us-east-1:s3" : "aws:amz:us-east-1:dynamodb");
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  srand(42);
  if (s3) {
    char empty[65];
    sha_hex("", 0, empty);
    sha_hex(value, (size_t)size, sha);
    /* Fill: PUT every key. */
    for (long k = 0; k < keys; k++) {
      struct curl_slist *h = NULL;
      snprintf(hdr, sizeof hdr, "x-amz-content-sha256: %s", sha);
      h = curl_slist_append(h, hdr);
      snprintf(url, sizeof url, "%s/%s/bare/key%06ld", endpoint, name, k);
      curl_easy_setopt(e, CURLOPT_URL, url);
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, value);
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
      curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
      if (perform(e) != 0) return 1;
      curl_slist_free_all(h);
    }
    struct curl_slist *h = NULL;
    snprintf(hdr, sizeof hdr, "x-amz-content-sha256: %s", empty);
    h = curl_slist_append(h, hdr);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    double t0 = now_us();
    for (long i = 0; i < n; i++) {
      snprintf(url, sizeof url, "%s/%s/bare/key%06ld", endpoint, name, (long)(rand() % keys));
      curl_easy_setopt(e, CURLOPT_URL, url);
      double a = now_us();
      if (perform(e) != 0) return 1;
      lat[i] = now_us() - a;
    }
    double t = now_us() - t0;
    curl_slist_free_all(h);
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    printf("{\"ops_per_sec\": %.1f, \"p99_us\": %.0f}\n", n / (t / 1e6), lat[(size_t)(n * 0.99)]);
  } else {
    size_t b64len = 4 * (((size_t)size + 2) / 3);
    char *b64 = malloc(b64len + 1);
    char *body = malloc(b64len + 512);
    EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)value, (int)size);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/x-amz-json-1.0");
    h = curl_slist_append(h, "X-Amz-Target: DynamoDB_20120810.PutItem");
    snprintf(url, sizeof url, "%s/", endpoint);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    double t0 = now_us();
    for (long i = 0; i < n; i++) {
      int len = snprintf(body, b64len + 512,
                         "{\"TableName\":\"%s\",%s\"Item\":{\"c\":{\"S\":\"bare\"},"
                         "\"k\":{\"S\":\"key%06ld\"},\"v\":{\"B\":\"%s\"}}}",
                         name, all_old ? "\"ReturnValues\":\"ALL_OLD\"," : "",
                         (long)(rand() % keys), b64);
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
      double a = now_us();
      if (perform(e) != 0) return 1;
      lat[i] = now_us() - a;
    }
    double t = now_us() - t0;
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    printf("{\"ops_per_sec\": %.1f, \"p99_us\": %.0f}\n", n / (t / 1e6), lat[(size_t)(n * 0.99)]);
    curl_slist_free_all(h);
    free(b64);
    free(body);
  }
  curl_easy_cleanup(e);
  curl_global_cleanup();
  free(value);
  free(lat);
  return 0;
}
