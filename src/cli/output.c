/* Output helpers of the CLI: diagnostics, JSON, escaped text, base64, and
 * binary-safe reading of stdin. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "internal.h" /* kv__b64_encode / kv__b64_decode */

int cli_usage_error(const char *fmt, ...) {
  va_list ap;

  fputs("kvio: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs("\nTry 'kvio --help' for more information.\n", stderr);
  return CLI_EXIT_USAGE;
}

int cli_store_error(int err, const char *detail) {
  fprintf(stderr, "kvio: %s: %s\n", kv_err_name(err),
          detail != NULL ? detail : kv_strerror(err));
  return CLI_EXIT_STORE;
}

int cli_req_error(int err, const kv_req_t *req) {
  /* After a refused submit the request's status may still be 0; its detail
   * text, when there is one, is still the reason. */
  const char *detail = kv_req_errmsg(req);
  if (req->status == 0 && strcmp(detail, kv_strerror(0)) == 0)
    detail = kv_strerror(err);
  return cli_store_error(err, detail);
}

int cli_write(const void *p, size_t n) {
  if (n > 0 && fwrite(p, 1, n, stdout) != n) {
    fprintf(stderr, "kvio: write error: %s\n", strerror(errno));
    return CLI_EXIT_STORE;
  }
  return 0;
}

int cli_printf(const char *fmt, ...) {
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vprintf(fmt, ap);
  va_end(ap);
  if (n < 0) {
    fprintf(stderr, "kvio: write error: %s\n", strerror(errno));
    return CLI_EXIT_STORE;
  }
  return 0;
}

int cli_json_print(json_t *v) {
  int rc;

  if (v == NULL)
    return cli_store_error(KV_ENOMEM, "out of memory building JSON");
  rc = json_dumpf(v, stdout,
                  JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
  json_decref(v);
  if (rc != 0 || fputc('\n', stdout) == EOF) {
    fprintf(stderr, "kvio: write error: %s\n", strerror(errno));
    return CLI_EXIT_STORE;
  }
  return 0;
}

/* ---- JSON values ------------------------------------------------------------
 */

json_t *cli_json_bytes(const char *p, size_t n) {
  /* json_stringn() refuses invalid UTF-8: exactly the test we want. */
  json_t *s = json_stringn(p != NULL ? p : "", n);
  char *b64;

  if (s != NULL) return s;
  b64 = malloc(KV__B64_SIZE(n));
  if (b64 == NULL) return NULL;
  kv__b64_encode(p, n, b64, 0);
  s = json_pack("{s:s}", "base64", b64);
  free(b64);
  return s;
}

json_t *cli_json_name(const char *p, size_t n) {
  return cli_json_bytes(p, n);
}

int cli_json_to_bytes(const json_t *v, char **out, size_t *len,
                      const char **why) {
  const json_t *b;

  if (json_is_string(v)) {
    size_t n = json_string_length(v);
    *out = malloc(n + 1);
    if (*out == NULL) {
      *why = "out of memory";
      return -1;
    }
    memcpy(*out, json_string_value(v), n);
    (*out)[n] = '\0';
    *len = n;
    return 0;
  }
  b = json_is_object(v) ? json_object_get(v, "base64") : NULL;
  if (b == NULL || !json_is_string(b) || json_object_size(v) != 1) {
    *why = "expected a string or {\"base64\": \"...\"}";
    return -1;
  }
  {
    size_t n = json_string_length(b);
    unsigned char *buf = malloc(n / 4 * 3 + 1);
    long long got;
    if (buf == NULL) {
      *why = "out of memory";
      return -1;
    }
    got = kv__b64_decode(json_string_value(b), n, buf, 0);
    if (got < 0) {
      free(buf);
      *why = "invalid base64";
      return -1;
    }
    buf[got] = '\0';
    *out = (char *)buf;
    *len = (size_t)got;
  }
  return 0;
}

/* ---- Escaped text -----------------------------------------------------------
 */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  size_t len, i;
  unsigned cp;

  if (p[0] < 0x80) return 1;
  if (p[0] >= 0xc2 && p[0] <= 0xdf)
    len = 2, cp = p[0] & 0x1f;
  else if (p[0] >= 0xe0 && p[0] <= 0xef)
    len = 3, cp = p[0] & 0x0f;
  else if (p[0] >= 0xf0 && p[0] <= 0xf4)
    len = 4, cp = p[0] & 0x07;
  else
    return 0;
  if (len > n) return 0;
  for (i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3f);
  }
  if ((len == 3 && cp < 0x800) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

/* Backslash, tab, newline, other control bytes and invalid UTF-8 are
 * escaped, so that every record stays on one line and the output can be
 * decoded back into the exact bytes. */
int cli_write_escaped(const char *p, size_t n) {
  const unsigned char *u = (const unsigned char *)p;
  size_t i = 0, seq = 1;
  int ok = 1;

  while (i < n && ok) {
    unsigned char c = u[i];
    if (c == '\\')
      ok = fputs("\\\\", stdout) >= 0, seq = 1;
    else if (c == '\t')
      ok = fputs("\\t", stdout) >= 0, seq = 1;
    else if (c == '\n')
      ok = fputs("\\n", stdout) >= 0, seq = 1;
    else if (c == '\r')
      ok = fputs("\\r", stdout) >= 0, seq = 1;
    else if (c < 0x20 || c == 0x7f || (seq = utf8_seq(u + i, n - i)) == 0)
      ok = printf("\\x%02x", c) > 0, seq = 1;
    else
      ok = fwrite(u + i, 1, seq, stdout) == seq;
    i += seq;
  }
  if (!ok) {
    fprintf(stderr, "kvio: write error: %s\n", strerror(errno));
    return CLI_EXIT_STORE;
  }
  return 0;
}

/* ---- Misc -------------------------------------------------------------------
 */

int cli_read_all(FILE *f, char **out, size_t *len) {
  size_t cap = 4096, n = 0, got;
  char *buf = malloc(cap), *nb;

  if (buf == NULL) return -1;
  for (;;) {
    if (cap - n < 2) {
      nb = realloc(buf, cap * 2);
      if (nb == NULL) break;
      buf = nb;
      cap *= 2;
    }
    got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) break;
      buf[n] = '\0';
      *out = buf;
      *len = n;
      return 0;
    }
  }
  free(buf);
  return -1;
}

double cli_round_ms(double seconds) {
  return round(seconds * 1000.0) / 1000.0;
}

void cli_format_ttl(double ttl, char *buf, size_t len) {
  char *dot;
  size_t n;

  if (ttl == KV_TTL_NONE) {
    snprintf(buf, len, "none");
    return;
  }
  snprintf(buf, len, "%.3f", cli_round_ms(ttl));
  dot = strchr(buf, '.');
  if (dot == NULL) return;
  n = strlen(buf);
  while (n > 0 && buf[n - 1] == '0')
    buf[--n] = '\0';
  if (n > 0 && buf[n - 1] == '.') buf[--n] = '\0';
}
