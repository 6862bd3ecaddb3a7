/* Text encodings used across the tree: base64 (RFC 4648, standard and
 * URL-safe alphabets) on OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock, hex
 * and percent-decoding on OPENSSL_hexchar2int.
 *
 * EVP_DecodeBlock is lenient where kvio must not be: it skips leading
 * white space, drops trailing white space, newlines and '-' characters,
 * decodes '=' as zero bits wherever it stands and counts padding as data.
 * So the input is checked here first (length a multiple of four, only the
 * alphabet's characters, padding only as the last one or two, unused bits
 * zero) and the padding is taken off the length it returns. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "internal.h"

/* Input handed to OpenSSL per call: a multiple of 3 bytes to encode, a
 * multiple of 4 characters to decode (its API counts in int). */
#define ENCODE_CHUNK 3072
#define DECODE_CHUNK 4096

size_t kv__b64_encode(const void *in, size_t len, char *out, int flags) {
  const unsigned char *p = in;
  size_t o = 0;
  while (len > 0) {
    size_t n = len < ENCODE_CHUNK ? len : ENCODE_CHUNK;
    o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, p, (int)n);
    p += n;
    len -= n;
  }
  out[o] = '\0';
  if (flags & KV__B64_URL) {
    for (size_t i = 0; i < o; i++) {
      if (out[i] == '+')
        out[i] = '-';
      else if (out[i] == '/')
        out[i] = '_';
    }
  }
  if (flags & KV__B64_NOPAD) {
    while (o > 0 && out[o - 1] == '=')
      out[--o] = '\0';
  }
  return o;
}

/* Whether c is one of the 64 characters of the alphabet. */
static int b64_char(unsigned char c, int url) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
      (c >= '0' && c <= '9'))
    return 1;
  return url ? c == '-' || c == '_' : c == '+' || c == '/';
}

/* Decode n characters (a multiple of 4, checked) into out. */
static int b64_decode_block(const unsigned char *s, size_t n,
                            unsigned char *out, int url) {
  unsigned char chunk[DECODE_CHUNK];
  for (size_t i = 0; i < n; i += DECODE_CHUNK) {
    size_t m = n - i < DECODE_CHUNK ? n - i : DECODE_CHUNK;
    const unsigned char *src = s + i;
    if (url) { /* OpenSSL knows the standard alphabet only */
      for (size_t j = 0; j < m; j++)
        chunk[j] = src[j] == '-' ? '+' : src[j] == '_' ? '/' : src[j];
      src = chunk;
    }
    if (EVP_DecodeBlock(out + i / 4 * 3, src, (int)m) != (int)(m / 4 * 3))
      return -1;
  }
  return 0;
}

long long kv__b64_decode(const char *in, size_t len, unsigned char *out,
                         int flags) {
  const unsigned char *s = (const unsigned char *)in;
  int url = (flags & KV__B64_URL) != 0;
  unsigned char last[3];
  size_t pad = 0, body;
  if (len % 4 != 0) return -1;
  if (len == 0) return 0;
  if (s[len - 1] == '=') pad++;
  if (s[len - 2] == '=') pad++;
  for (size_t i = 0; i < len - pad; i++)
    if (!b64_char(s[i], url)) return -1;
  /* Every group but the last straight into out; the last one, which the
   * padding shortens, through `last`, so that out needs room for the
   * decoded bytes only. */
  body = len - 4;
  if (b64_decode_block(s, body, out, url) != 0 ||
      b64_decode_block(s + body, 4, last, url) != 0)
    return -1;
  /* The padding decoded as zero bytes; the bits of the last character
   * that no byte uses must be zero too (one encoding per byte string). */
  for (size_t i = 3 - pad; i < 3; i++)
    if (last[i] != 0) return -1;
  memcpy(out + body / 4 * 3, last, 3 - pad);
  return (long long)(body / 4 * 3 + 3 - pad);
}

void kv__hex_encode(const void *in, size_t len, char *out) {
  static const char digits[] = "0123456789abcdef";
  const unsigned char *p = in;
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * len] = '\0';
}

long long kv__hex_decode(const char *in, size_t len, unsigned char *out) {
  if (len % 2 != 0) return -1;
  for (size_t i = 0; i < len; i += 2) {
    int hi = OPENSSL_hexchar2int((unsigned char)in[i]);
    int lo = OPENSSL_hexchar2int((unsigned char)in[i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i / 2] = (unsigned char)(hi << 4 | lo);
  }
  return (long long)(len / 2);
}

int kv__pct_decode(const char *in, size_t len, char **out) {
  char *buf = kv_malloc(len + 1);
  size_t o = 0;
  *out = NULL;
  if (buf == NULL) return KV_ENOMEM;
  for (size_t i = 0; i < len; i++) {
    unsigned char byte;
    if (in[i] != '%') {
      buf[o++] = in[i];
      continue;
    }
    if (len - i < 3 || kv__hex_decode(in + i + 1, 2, &byte) != 1 || byte == 0) {
      kv_free(buf);
      return KV_EINVAL;
    }
    buf[o++] = (char)byte;
    i += 2;
  }
  buf[o] = '\0';
  *out = buf;
  return 0;
}
