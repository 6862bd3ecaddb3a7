/* Validation of names and TTLs (in one place, for every store), time, and
 * the integer format used by incr. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
int kv__utf8_valid(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < len) {
    unsigned c = s[i];
    if (c < 0x80 && i + 8 <= len) { /* ASCII runs: 8 bytes at a time */
      uint64_t w;
      memcpy(&w, s + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    size_t n;
    unsigned min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, min = 0x80, c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, min = 0x800, c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, min = 0x10000, c &= 0x07;
    } else {
      return 0;
    }
    if (len - i <= n) return 0;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      c = (c << 6) | (s[i + k] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    i += n + 1;
  }
  return 1;
}

/* A short, printable rendering of a name for error messages. */
static void describe(char *out, size_t outlen, const char *name, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 5 < outlen && i < 40; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c >= 0x20 && c < 0x7F && c != '\\')
      out[o++] = (char)c;
    else
      o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
  }
  out[o] = '\0';
  if (len > 40 && o + 4 < outlen) strcat(out, "...");
}

int kv__check_name(const char *what, const char *name, size_t len, char *errbuf,
                   size_t errbuf_len) {
  char shown[200];
  if (name == NULL || len == 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL, "invalid %s: empty", what);
  if (len > KV_NAME_MAX) {
    describe(shown, sizeof shown, name, len);
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "invalid %s '%s': %zu bytes, the limit is %d", what,
                      shown, len, KV_NAME_MAX);
  }
  if (!kv__utf8_valid(name, len)) {
    describe(shown, sizeof shown, name, len);
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "invalid %s '%s': not valid UTF-8", what, shown);
  }
  return 0;
}

int kv__check_ttl(double ttl, char *errbuf, size_t errbuf_len) {
  if (isnan(ttl) || isinf(ttl) || ttl < 0 || ttl > KV_TTL_MAX)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "invalid TTL %g: must be a finite number of seconds in "
                      "[0, 1e10] (0 = no expiry)",
                      ttl);
  return 0;
}

int64_t kv_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double kv_remaining_ttl(int64_t expires_at_ms, int64_t now_ms) {
  if (expires_at_ms == 0) return KV_TTL_NONE;
  if (expires_at_ms <= now_ms)
    return 0.001; /* about to expire; never report "no expiry" */
  return (double)(expires_at_ms - now_ms) / 1000.0;
}

int kv_parse_int64(const char *s, size_t len, int64_t *out) {
  size_t i = 0;
  int neg = 0;
  uint64_t v = 0, limit;
  if (len == 0) return KV_EINVAL;
  if (s[0] == '-' || s[0] == '+') {
    neg = s[0] == '-';
    i = 1;
  }
  if (i == len) return KV_EINVAL;
  limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return KV_EINVAL;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (limit - d) / 10) return KV_EINVAL;
    v = v * 10 + d;
  }
  if (neg)
    *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  else
    *out = (int64_t)v;
  return 0;
}

size_t kv_format_int64(int64_t v, char *buf) {
  return (size_t)snprintf(buf, 24, "%" PRId64, v);
}
