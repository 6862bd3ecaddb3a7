/* libFuzzer target: the compression wrapper's envelope (src/wrappers/
 * compression.c), through the codec the value-codec engine calls
 * (kv__codec_wrap_t in wrappers/codec.h).
 *
 * Every input is
 *  - decoded as a stored value by wrappers configured for gzip, zstd and
 *    lz4 (a reader decodes whatever a value names, so all three must give
 *    the same answer), and by one with allow_raw: the exact value, or
 *    KV_ECORRUPT with a message; never a read past the input (it is copied
 *    to a buffer of its exact size);
 *  - encoded by each of them as a value (every size compressed: min_size 1)
 *    and decoded back by every wrapper: the input again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kvio/compression.h"
#include "wrappers/codec.h"

#define NW 4
static kv__codec_wrap_t *w[NW]; /* gzip, zstd, lz4, zstd + allow_raw */
static uv_loop_t loop;

static kv__codec_wrap_t *wrapper(kv_compression_alg_t alg, int allow_raw) {
  kv_wrap_compression_opts_t o;
  kv_store_t *mem, *s;
  memset(&o, 0, sizeof o);
  o.algorithm = alg;
  o.min_size = 1;
  o.allow_raw = allow_raw;
  if (kv_open(&loop, "memory://", &mem) != 0 ||
      kv_wrap_compression(mem, &o, &s) != 0)
    abort();
  return (kv__codec_wrap_t *)s;
}

static void setup(void) {
  uv_loop_init(&loop);
  w[0] = wrapper(KV_COMPRESSION_GZIP, 0);
  w[1] = wrapper(KV_COMPRESSION_ZSTD, 0);
  w[2] = wrapper(KV_COMPRESSION_LZ4, 0);
  w[3] = wrapper(KV_COMPRESSION_ZSTD, 1);
}

static int decode(kv__codec_wrap_t *c, const char *in, size_t len, char **out,
                  size_t *out_len) {
  char err[512];
  int rc;
  err[0] = '\0';
  *out = NULL;
  rc = c->codec->decode(&c->w, in, len, out, out_len, err, sizeof err);
  if (rc == 0) {
    if (*out == NULL || (*out)[*out_len] != '\0') abort();
  } else if (rc == KV_ECORRUPT) {
    if (err[0] == '\0' || *out != NULL) abort();
  } else if (rc != KV_ENOMEM) {
    abort();
  }
  return rc;
}

static void decode_input(const char *in, size_t len) {
  char *first = NULL, *out;
  size_t first_len = 0, out_len;
  int first_rc = 0;
  for (int i = 0; i < NW; i++) {
    int rc = decode(w[i], in, len, &out, &out_len);
    if (rc == KV_ENOMEM) return; /* a huge declared length; nothing to see */
    if (i == 0) {
      first_rc = rc;
      first = out;
      first_len = out_len;
      continue;
    }
    if (i < 3) { /* the same reader: the same answer */
      if (rc != first_rc) abort();
      if (rc == 0 && (out_len != first_len || memcmp(out, first, out_len)))
        abort();
    } else if (first_rc == 0) { /* allow_raw: the same for an envelope */
      if (rc != 0 || out_len != first_len || memcmp(out, first, out_len))
        abort();
    } else if (rc == 0 && len >= 6 && memcmp(in, "\x89KVZ", 4) == 0) {
      abort(); /* allow_raw never excuses a broken envelope */
    }
    kv_free(out);
  }
  /* A stored ("none") envelope is its payload. */
  if (first_rc == 0 && len >= 6 && in[5] == 0 &&
      (first_len != len - 6 || memcmp(first, in + 6, first_len) != 0))
    abort();
  kv_free(first);
}

static void roundtrip(const char *in, size_t len) {
  for (int i = 0; i < 3; i++) {
    char err[512], *enc, *copy;
    size_t enc_len;
    if (w[i]->codec->encode(&w[i]->w, in, len, &enc, &enc_len, err,
                            sizeof err) != 0)
      abort();
    if (enc_len < 6 || memcmp(enc, "\x89KVZ\x01", 5) != 0 ||
        enc[enc_len] != '\0')
      abort();
    /* Never larger than storing the value as it is. */
    if (enc_len > len + 6) abort();
    copy = malloc(enc_len);
    if (copy == NULL) abort();
    memcpy(copy, enc, enc_len);
    kv_free(enc);
    for (int j = 0; j < NW; j++) {
      char *out;
      size_t out_len;
      if (decode(w[j], copy, enc_len, &out, &out_len) != 0) abort();
      if (out_len != len || (len && memcmp(out, in, len) != 0)) abort();
      kv_free(out);
    }
    free(copy);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  char *in = malloc(size ? size : 1);
  if (!ready) {
    setup();
    ready = 1;
  }
  if (in == NULL) abort();
  if (size) memcpy(in, data, size);
  decode_input(in, size);
  roundtrip(in, size);
  free(in);
  return 0;
}
