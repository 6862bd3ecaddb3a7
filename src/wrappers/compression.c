/* The compression wrapper: gzip (zlib), zstd or lz4 above a size threshold,
 * in a self-describing, versioned envelope (docs/compression.md):
 *
 *   offset 0  4 bytes  magic 0x89 'K' 'V' 'Z'
 *          4  1 byte   format version (1)
 *          5  1 byte   algorithm: 0 none, 1 gzip, 2 zstd, 3 lz4
 *          6  8 bytes  original length, big-endian      (not for "none")
 *         14  ...      payload: the value (none), a gzip member (gzip),
 *                      one zstd frame with a checksum (zstd), or CRC-32 of
 *                      the original (4 bytes, big-endian) + one LZ4 block
 *
 * A reader decodes whatever algorithm a value names, whatever it is
 * configured to write. Compression runs on the loop thread: zstd and lz4
 * handle a megabyte in about a millisecond. */
#include <string.h>

#include <lz4.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "internal.h"
#include "kvio/compression.h"
#include "wrappers/codec.h"
#include "wrappers/wrappers.h"

#define ENV_MAGIC "\x89KVZ"
#define ENV_VERSION 1
#define ENV_HEAD 6                  /* magic, version, algorithm */
#define ENV_HEAD_LEN (ENV_HEAD + 8) /* ... and the original length */
#define MAX_ORIGINAL                                  \
  0x7E000000u /* LZ4_MAX_INPUT_SIZE; also the largest \
                 length a reader allocates */

#define ALG_NONE 0 /* the algorithm byte of a value stored as is */

typedef struct {
  kv__codec_wrap_t c; /* the engine's */
  kv_compression_alg_t alg;
  size_t min_size;
  int level;
  int allow_raw;
  ZSTD_CCtx *zc;
  ZSTD_DCtx *zd;
  z_stream def; /* reused with deflateReset: init costs ~256 KiB of memset */
  z_stream inf;
  int def_ready;
  int inf_ready;
} comp_store_t;

static const char *const alg_names[] = {"none", "gzip", "zstd", "lz4"};

static void put_be64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static void put_be32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (24 - 8 * i));
}

static uint32_t get_be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

/* ---- Encoding --------------------------------------------------------------
 */

static char *stored(const char *in, size_t len, size_t *out_len) {
  char *out = kv_malloc(ENV_HEAD + len + 1);
  if (out == NULL) return NULL;
  memcpy(out, ENV_MAGIC, 4);
  out[4] = ENV_VERSION;
  out[5] = ALG_NONE;
  if (len) memcpy(out + ENV_HEAD, in, len);
  out[ENV_HEAD + len] = '\0';
  *out_len = ENV_HEAD + len;
  return out;
}

/* Compress into dst (cap bytes); the compressed length, or 0 when it does
 * not fit (the value is then stored). < 0: a library error. */
static long long gzip_compress(comp_store_t *st, const char *in, size_t len,
                               unsigned char *dst, size_t cap) {
  int rc;
  if (!st->def_ready) {
    memset(&st->def, 0, sizeof st->def);
    if (deflateInit2(&st->def, st->level ? st->level : Z_DEFAULT_COMPRESSION,
                     Z_DEFLATED, 15 + 16 /* gzip */, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
      return -1;
    st->def_ready = 1;
  } else if (deflateReset(&st->def) != Z_OK) {
    return -1;
  }
  st->def.next_in = (Bytef *)(uintptr_t)in;
  st->def.avail_in = (uInt)len;
  st->def.next_out = dst;
  st->def.avail_out = (uInt)(cap > UINT32_MAX ? UINT32_MAX : cap);
  rc = deflate(&st->def, Z_FINISH);
  if (rc == Z_STREAM_END) return (long long)st->def.total_out;
  return rc == Z_OK || rc == Z_BUF_ERROR ? 0 : -1;
}

static long long zstd_compress(comp_store_t *st, const char *in, size_t len,
                               unsigned char *dst, size_t cap) {
  size_t n = ZSTD_compress2(st->zc, dst, cap, in, len);
  if (ZSTD_isError(n))
    return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? 0 : -1;
  return (long long)n;
}

static long long lz4_compress(comp_store_t *st, const char *in, size_t len,
                              unsigned char *dst, size_t cap) {
  int n;
  if (cap < 5) return 0;
  put_be32(dst, (uint32_t)crc32(0, (const Bytef *)in, (uInt)len));
  n = LZ4_compress_fast(in, (char *)dst + 4, (int)len, (int)(cap - 4),
                        st->level ? st->level : 1);
  return n > 0 ? (long long)n + 4 : 0;
}

static int comp_encode(kv_wrap_t *s, const char *in, size_t len, char **out,
                       size_t *out_len, char *errbuf, size_t errbuf_len) {
  comp_store_t *st = (comp_store_t *)s;
  unsigned char *buf;
  size_t cap, limit;
  long long n;
  *out = NULL;
  /* Only worth it when smaller than the stored form (ENV_HEAD + len): a
   * result longer than `limit` is dropped and the value stored as is. */
  if (len < st->min_size || len <= ENV_HEAD_LEN - ENV_HEAD + 1 ||
      len > MAX_ORIGINAL)
    goto store;
  limit = len - (ENV_HEAD_LEN - ENV_HEAD) - 1;
  /* zstd and lz4 run faster with room for the worst case; gzip is given
   * the limit and stops when it does not fit. */
  cap = st->alg == KV_COMPRESSION_ZSTD ? ZSTD_compressBound(len)
        : st->alg == KV_COMPRESSION_LZ4
            ? 4 + (size_t)LZ4_compressBound((int)len)
            : limit;
  buf = kv_malloc(ENV_HEAD_LEN + cap + 1);
  if (buf == NULL) return KV_ENOMEM;
  switch (st->alg) {
  case KV_COMPRESSION_GZIP:
    n = gzip_compress(st, in, len, buf + ENV_HEAD_LEN, cap);
    break;
  case KV_COMPRESSION_ZSTD:
    n = zstd_compress(st, in, len, buf + ENV_HEAD_LEN, cap);
    break;
  default:
    n = lz4_compress(st, in, len, buf + ENV_HEAD_LEN, cap);
    break;
  }
  if (n < 0) {
    kv_free(buf);
    return kv__errbuf(errbuf, errbuf_len, KV_EBACKEND,
                      "%s compression of a %zu-byte value failed",
                      alg_names[st->alg], len);
  }
  if (n == 0 || (size_t)n > limit) {
    kv_free(buf);
    goto store;
  }
  memcpy(buf, ENV_MAGIC, 4);
  buf[4] = ENV_VERSION;
  buf[5] = (unsigned char)st->alg;
  put_be64(buf + 6, len);
  buf[ENV_HEAD_LEN + (size_t)n] = '\0';
  *out = (char *)buf;
  *out_len = ENV_HEAD_LEN + (size_t)n;
  return 0;

store:
  if ((*out = stored(in, len, out_len)) == NULL) return KV_ENOMEM;
  return 0;
}

/* ---- Decoding --------------------------------------------------------------
 */

static int gzip_decompress(comp_store_t *st, const unsigned char *src, size_t n,
                           char *dst, size_t len) {
  int rc;
  if (n > UINT32_MAX) return -1;
  if (!st->inf_ready) {
    memset(&st->inf, 0, sizeof st->inf);
    if (inflateInit2(&st->inf, 15 + 16) != Z_OK) return -1;
    st->inf_ready = 1;
  } else if (inflateReset(&st->inf) != Z_OK) {
    return -1;
  }
  st->inf.next_in = (Bytef *)(uintptr_t)src;
  st->inf.avail_in = (uInt)n;
  st->inf.next_out = (Bytef *)dst;
  st->inf.avail_out = (uInt)len;
  rc = inflate(&st->inf, Z_FINISH);
  /* One whole member, exactly `len` bytes, nothing after it. */
  return rc == Z_STREAM_END && st->inf.total_out == len && st->inf.avail_in == 0
             ? 0
             : -1;
}

static int zstd_decompress(comp_store_t *st, const unsigned char *src, size_t n,
                           char *dst, size_t len) {
  size_t r = ZSTD_decompressDCtx(st->zd, dst, len, src, n);
  return !ZSTD_isError(r) && r == len ? 0 : -1;
}

static int lz4_decompress(const unsigned char *src, size_t n, char *dst,
                          size_t len) {
  int r;
  if (n < 5 || n - 4 > INT32_MAX) return -1;
  r = LZ4_decompress_safe((const char *)src + 4, dst, (int)(n - 4), (int)len);
  if (r < 0 || (size_t)r != len) return -1;
  return get_be32(src) == (uint32_t)crc32(0, (const Bytef *)dst, (uInt)len)
             ? 0
             : -1;
}

/* The most `n` bytes of payload can decompress to: a corrupt length must not
 * make the reader allocate more than the payload could fill. deflate
 * expands at most 1032:1; an LZ4 block about 255:1 (one byte per 255 of
 * length); a zstd RLE block gives 128 KiB from 4 bytes. */
static uint64_t max_expansion(unsigned alg, size_t n) {
  return (uint64_t)n * (alg == KV_COMPRESSION_GZIP   ? 1032u
                        : alg == KV_COMPRESSION_ZSTD ? 32768u
                                                     : 256u);
}

static int comp_decode(kv_wrap_t *s, const char *in, size_t len, char **out,
                       size_t *out_len, char *errbuf, size_t errbuf_len) {
  comp_store_t *st = (comp_store_t *)s;
  const unsigned char *p = (const unsigned char *)in;
  uint64_t orig;
  char *dst;
  int rc;
  *out = NULL;
  if (len < ENV_HEAD || memcmp(p, ENV_MAGIC, 4) != 0) {
    if (st->allow_raw) {
      if ((*out = kv_strndup(in, len)) == NULL) return KV_ENOMEM;
      *out_len = len;
      return 0;
    }
    return kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                      "value of %zu bytes is not in the compression format "
                      "(written without the wrapper? see allow_raw)",
                      len);
  }
  if (p[4] != ENV_VERSION)
    return kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                      "compression format version %u is not known (this "
                      "kvio reads version %d)",
                      p[4], ENV_VERSION);
  if (p[5] == ALG_NONE) {
    if ((*out = kv_strndup(in + ENV_HEAD, len - ENV_HEAD)) == NULL)
      return KV_ENOMEM;
    *out_len = len - ENV_HEAD;
    return 0;
  }
  if (p[5] > KV_COMPRESSION_LZ4)
    return kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                      "compression algorithm %u is not known", p[5]);
  if (len < ENV_HEAD_LEN || (orig = get_be64(p + 6)) > MAX_ORIGINAL ||
      orig > max_expansion(p[5], len - ENV_HEAD_LEN))
    return kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                      "corrupt %s envelope (%zu bytes)", alg_names[p[5]], len);
  if ((dst = kv_malloc((size_t)orig + 1)) == NULL) return KV_ENOMEM;
  p += ENV_HEAD_LEN;
  len -= ENV_HEAD_LEN;
  switch (in[5]) {
  case KV_COMPRESSION_GZIP:
    rc = gzip_decompress(st, p, len, dst, (size_t)orig);
    break;
  case KV_COMPRESSION_ZSTD:
    rc = zstd_decompress(st, p, len, dst, (size_t)orig);
    break;
  default:
    rc = lz4_decompress(p, len, dst, (size_t)orig);
    break;
  }
  if (rc != 0) {
    kv_free(dst);
    return kv__errbuf(errbuf, errbuf_len, KV_ECORRUPT,
                      "corrupt %s payload (%zu bytes, %llu expected after "
                      "decompression)",
                      alg_names[(unsigned char)in[5]], len,
                      (unsigned long long)orig);
  }
  dst[orig] = '\0';
  *out = dst;
  *out_len = (size_t)orig;
  return 0;
}

/* ---- The wrapper -----------------------------------------------------------
 */

static const kv__codec_t comp_codec = {comp_encode, comp_decode};

static kv_store_methods_t comp_methods;
static uv_once_t comp_once = UV_ONCE_INIT;

static void comp_init(void) {
  kv__codec_methods_init(&comp_methods, "compression", sizeof(comp_store_t));
}

static void comp_free(kv_wrap_t *w) {
  comp_store_t *st = (comp_store_t *)w;
  ZSTD_freeCCtx(st->zc);
  ZSTD_freeDCtx(st->zd);
  if (st->def_ready) deflateEnd(&st->def);
  if (st->inf_ready) inflateEnd(&st->inf);
  st->zc = NULL;
  st->zd = NULL;
  st->def_ready = st->inf_ready = 0;
}

static int comp_create(kv_store_t *inner, const kv_wrap_compression_opts_t *o,
                       kv_store_t **out, char *errbuf, size_t errbuf_len) {
  static const kv_wrap_compression_opts_t dflt;
  kv_compression_alg_t alg;
  ZSTD_CCtx *zc;
  ZSTD_DCtx *zd;
  kv_wrap_t *w;
  comp_store_t *st;
  int err, level;
  if (out == NULL) return KV_EINVAL;
  *out = NULL;
  if (o == NULL) o = &dflt;
  if (inner == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL, "no inner store");
  alg = o->algorithm == KV_COMPRESSION_DEFAULT ? KV_COMPRESSION_ZSTD
                                               : o->algorithm;
  if ((unsigned)alg > KV_COMPRESSION_LZ4)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "unknown compression algorithm %d", (int)alg);
  level = o->level;
  if (level < 0 || (alg == KV_COMPRESSION_GZIP && level > 9) ||
      (alg == KV_COMPRESSION_ZSTD && level > ZSTD_maxCLevel()) ||
      (alg == KV_COMPRESSION_LZ4 && level > 65537))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "compression level %d is out of range for %s (1..%d)",
                      level, alg_names[alg],
                      alg == KV_COMPRESSION_GZIP   ? 9
                      : alg == KV_COMPRESSION_ZSTD ? ZSTD_maxCLevel()
                                                   : 65537);
  zc = ZSTD_createCCtx();
  zd = ZSTD_createDCtx();
  if (zc == NULL || zd == NULL ||
      ZSTD_isError(ZSTD_CCtx_setParameter(
          zc, ZSTD_c_compressionLevel,
          alg == KV_COMPRESSION_ZSTD && level ? level : ZSTD_CLEVEL_DEFAULT)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(zc, ZSTD_c_checksumFlag, 1))) {
    ZSTD_freeCCtx(zc);
    ZSTD_freeDCtx(zd);
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  }
  uv_once(&comp_once, comp_init);
  if ((err = kv_wrap_create(inner, &comp_methods, o->borrow, &w)) != 0) {
    ZSTD_freeCCtx(zc);
    ZSTD_freeDCtx(zd);
    return kv__errbuf(errbuf, errbuf_len, err,
                      err == KV_ECLOSED ? "the inner store is closing"
                                        : "cannot create the wrapper");
  }
  st = (comp_store_t *)w;
  st->c.codec = &comp_codec;
  st->alg = alg;
  st->min_size = o->min_size ? o->min_size : KV_COMPRESSION_MIN_SIZE_DEFAULT;
  st->level = level;
  st->allow_raw = o->allow_raw;
  st->zc = zc;
  st->zd = zd;
  w->on_free = comp_free;
  *out = &w->base;
  return 0;
}

int kv_wrap_compression(kv_store_t *inner, const kv_wrap_compression_opts_t *o,
                        kv_store_t **out) {
  return comp_create(inner, o, out, NULL, 0);
}

int kv__wrap_compression_from_options(const char *options, kv_store_t *inner,
                                      kv_store_t **out, char *errbuf,
                                      size_t errbuf_len) {
  static const char *const known[] = {"algorithm", "min_size", "level",
                                      "allow_raw", NULL};
  kv_wrap_compression_opts_t o;
  kv_url_t u;
  const char *alg;
  int64_t min_size, level;
  int err;
  *out = NULL;
  memset(&o, 0, sizeof o);
  if ((err = kv__wrap_opts("compression", options, known, &u, errbuf,
                           errbuf_len)) != 0)
    return err;
  alg = kv_url_param(&u, "algorithm");
  if (alg == NULL || strcmp(alg, "zstd") == 0) {
    o.algorithm = KV_COMPRESSION_ZSTD;
  } else if (strcmp(alg, "gzip") == 0) {
    o.algorithm = KV_COMPRESSION_GZIP;
  } else if (strcmp(alg, "lz4") == 0) {
    o.algorithm = KV_COMPRESSION_LZ4;
  } else {
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "unknown compression algorithm '%s' (known: gzip, zstd, "
                     "lz4)",
                     alg);
    goto done;
  }
  if ((err = kv_url_param_int(&u, "min_size", 0, MAX_ORIGINAL,
                              KV_COMPRESSION_MIN_SIZE_DEFAULT, &min_size,
                              errbuf, errbuf_len)) != 0 ||
      (err = kv_url_param_int(&u, "level", 1, 65537, 0, &level, errbuf,
                              errbuf_len)) != 0 ||
      (err = kv_url_param_bool(&u, "allow_raw", 0, &o.allow_raw, errbuf,
                               errbuf_len)) != 0)
    goto done;
  /* 0 and 1 both mean "compress every non-empty value" (in the C options,
   * 0 means the default). */
  o.min_size = min_size == 0 ? 1 : (size_t)min_size;
  o.level = (int)level;
  err = comp_create(inner, &o, out, errbuf, errbuf_len);
done:
  kv_wrap_opts_free(&u);
  return err;
}
