/* Text encodings used across the tree: base64 (RFC 4648, standard and
 * URL-safe alphabets) and hex on GNU Nettle's base64 / base16 coders, and
 * percent-decoding. Nettle, not OpenSSL: the core must not map libcrypto at
 * start (docs/design.md, "Parts and modules").
 *
 * Nettle's decoders skip white space; kvio takes one spelling only, so the
 * input is checked here first (length a multiple of four, only the
 * alphabet's characters, padding only as the last one or two, unused bits
 * zero; hex: an even number of hex digits). */
#include <string.h>

#include <nettle/base16.h>
#include <nettle/base64.h>

#include "internal.h"

size_t kv__b64_encode(const void *in, size_t len, char *out, int flags) {
  struct base64_encode_ctx ctx;
  size_t o;
  if (flags & KV__B64_URL)
    base64url_encode_init(&ctx);
  else
    base64_encode_init(&ctx);
  o = base64_encode_update(&ctx, out, len, in);
  o += base64_encode_final(&ctx, out + o);
  out[o] = '\0';
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
  struct base64_decode_ctx ctx;
  size_t got = n / 4 * 3;
  if (url)
    base64url_decode_init(&ctx);
  else
    base64_decode_init(&ctx);
  if (n == 0) return 0;
  if (!base64_decode_update(&ctx, &got, out, n, (const char *)s) ||
      !base64_decode_final(&ctx))
    return -1;
  return 0;
}

long long kv__b64_decode(const char *in, size_t len, unsigned char *out,
                         int flags) {
  const unsigned char *s = (const unsigned char *)in;
  int url = (flags & KV__B64_URL) != 0;
  unsigned char last[3] = {0, 0, 0};
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
  /* The bits of the last character that no byte uses must be zero (one
   * encoding per byte string). */
  if (pad > 0) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char c = s[len - pad - 1];
    int v = c == '+' || c == '-' ? 62
            : c == '/' || c == '_' ? 63
                                   : (int)(strchr(alphabet, c) - alphabet);
    if ((pad == 1 && (v & 3) != 0) || (pad == 2 && (v & 15) != 0)) return -1;
  }
  memcpy(out + body / 4 * 3, last, 3 - pad);
  return (long long)(body / 4 * 3 + 3 - pad);
}

void kv__hex_encode(const void *in, size_t len, char *out) {
  base16_encode_update(out, len, in);
  out[2 * len] = '\0';
}

static int hex_digit(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

long long kv__hex_decode(const char *in, size_t len, unsigned char *out) {
  struct base16_decode_ctx ctx;
  size_t got = len / 2;
  if (len % 2 != 0) return -1;
  for (size_t i = 0; i < len; i++)
    if (!hex_digit((unsigned char)in[i])) return -1;
  base16_decode_init(&ctx);
  if (len > 0 && (!base16_decode_update(&ctx, &got, out, len, in) ||
                  !base16_decode_final(&ctx)))
    return -1;
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
