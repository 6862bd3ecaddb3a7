/* Store URL parsing: scheme://[user[:password]@]host[:port][/path][?query]
 * For path stores the whole part between "://" and "?" is also kept, decoded,
 * as url->target. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

void kv__url_free(kv_url_t *url) {
  kv_free(url->scheme);
  kv_free(url->target);
  kv_free(url->user);
  kv_free(url->password);
  kv_free(url->host);
  kv_free(url->path);
  for (size_t i = 0; i < url->nparams; i++) {
    kv_free(url->params[i].name);
    kv_free(url->params[i].value);
  }
  kv_free(url->params);
  memset(url, 0, sizeof *url);
}

/* Percent-decode s[0..n) into field ('+' stays '+'); a bad escape or an
 * escaped NUL is an error. */
#define DECODE_INTO(field, s, n)                                             \
  do {                                                                       \
    if ((err = kv__pct_decode((s), (n), &(field))) != 0) {                   \
      err = err == KV_ENOMEM                                                 \
                ? kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory") \
                : kv__errbuf(errbuf, errbuf_len, KV_EINVAL,                  \
                             "invalid percent-escape in URL '%s'", raw);     \
      goto fail;                                                             \
    }                                                                        \
  } while (0)

static int parse_query(const char *q, kv_url_t *url, const char *raw,
                       char *errbuf, size_t errbuf_len) {
  int err = 0;
  while (*q) {
    const char *amp = strchr(q, '&');
    size_t n = amp ? (size_t)(amp - q) : strlen(q);
    if (n > 0) {
      const char *eq = memchr(q, '=', n);
      size_t nl = eq ? (size_t)(eq - q) : n;
      kv_url_param_t *p =
          kv_realloc(url->params, (url->nparams + 1) * sizeof *url->params);
      if (p == NULL)
        return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
      url->params = p;
      p = &url->params[url->nparams];
      p->name = p->value = NULL;
      url->nparams++;
      DECODE_INTO(p->name, q, nl);
      if (eq)
        DECODE_INTO(p->value, eq + 1, n - nl - 1);
      else
        DECODE_INTO(p->value, "", 0);
      if (p->name[0] == '\0')
        return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                          "empty option name in URL '%s'", raw);
      for (size_t i = 0; i + 1 < url->nparams; i++)
        if (strcmp(url->params[i].name, p->name) == 0)
          return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                            "option '%s' given twice in URL '%s'", p->name,
                            raw);
    }
    q += n + (amp != NULL);
  }
  return 0;
fail:
  return err;
}

static int parse_authority(const char *a, size_t n, kv_url_t *url,
                           const char *raw, char *errbuf, size_t errbuf_len) {
  int err = 0;
  const char *at = NULL, *hp, *end = a + n, *colon;
  for (const char *p = a; p < end; p++)
    if (*p == '@') at = p; /* the last '@' ends the userinfo */
  hp = a;
  if (memchr(a, ',', n) != NULL && memchr(a, '@', n) == NULL) {
    /* A list of servers (memcached://h1:p1,h2:p2): the store parses it from
     * url->target; host holds the decoded list, no single port. */
    DECODE_INTO(url->host, a, n);
    return 0;
  }
  if (at) {
    const char *c = memchr(a, ':', (size_t)(at - a));
    if (c) {
      DECODE_INTO(url->user, a, (size_t)(c - a));
      DECODE_INTO(url->password, c + 1, (size_t)(at - c - 1));
    } else {
      DECODE_INTO(url->user, a, (size_t)(at - a));
    }
    hp = at + 1;
  }
  if (hp < end && *hp == '[') {
    const char *rb = memchr(hp, ']', (size_t)(end - hp));
    if (rb == NULL)
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "unterminated '[' in URL '%s'", raw);
    DECODE_INTO(url->host, hp + 1, (size_t)(rb - hp - 1));
    colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    if (rb + 1 < end && rb[1] != ':')
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "unexpected text after ']' in URL '%s'", raw);
  } else {
    colon = memchr(hp, ':', (size_t)(end - hp));
    size_t hl = colon ? (size_t)(colon - hp) : (size_t)(end - hp);
    if (hl > 0) DECODE_INTO(url->host, hp, hl);
  }
  if (colon) {
    long port = 0;
    const char *p = colon + 1;
    if (p == end)
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL, "empty port in URL '%s'",
                        raw);
    for (; p < end; p++) {
      if (!isdigit((unsigned char)*p) || port > 65535) break;
      port = port * 10 + (*p - '0');
    }
    if (p != end || port < 1 || port > 65535)
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "invalid port in URL '%s'", raw);
    url->port = (int)port;
  }
  return 0;
fail:
  return err;
}

int kv__url_parse(const char *raw, kv_url_t *url, char *errbuf,
                  size_t errbuf_len) {
  int err = 0;
  const char *sep, *rest, *q, *slash;
  memset(url, 0, sizeof *url);
  url->raw = raw;
  url->port = -1;
  sep = raw ? strstr(raw, "://") : NULL;
  if (sep == NULL || sep == raw)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "not a store URL: '%s' (expected SCHEME://...; known "
                      "schemes: %s)",
                      raw ? raw : "(null)", kv_schemes());
  for (const char *p = raw; p < sep; p++)
    if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "invalid scheme in URL '%s'", raw);
  url->scheme = kv_strndup(raw, (size_t)(sep - raw));
  if (url->scheme == NULL) {
    err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    goto fail;
  }
  for (char *p = url->scheme; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  rest = sep + 3;
  q = strchr(rest, '?');
  if (q == NULL) q = rest + strlen(rest);
  DECODE_INTO(url->target, rest, (size_t)(q - rest));
  slash = memchr(rest, '/', (size_t)(q - rest));
  err = parse_authority(rest, (size_t)((slash ? slash : q) - rest), url, raw,
                        errbuf, errbuf_len);
  if (err) goto fail;
  if (slash) DECODE_INTO(url->path, slash, (size_t)(q - slash));
  if (*q == '?') {
    err = parse_query(q + 1, url, raw, errbuf, errbuf_len);
    if (err) goto fail;
  }
  return 0;
fail:
  kv__url_free(url);
  return err;
}

const char *kv_url_param(const kv_url_t *url, const char *name) {
  for (size_t i = 0; i < url->nparams; i++)
    if (strcmp(url->params[i].name, name) == 0) return url->params[i].value;
  return NULL;
}

int kv_url_param_int(const kv_url_t *url, const char *name, int64_t min,
                     int64_t max, int64_t dflt, int64_t *out, char *errbuf,
                     size_t errbuf_len) {
  const char *v = kv_url_param(url, name);
  int64_t n;
  if (v == NULL) {
    *out = dflt;
    return 0;
  }
  if (kv_parse_int64(v, strlen(v), &n) != 0 || n < min || n > max)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "invalid value '%s' for option '%s': expected an "
                      "integer in [%lld, %lld]",
                      v, name, (long long)min, (long long)max);
  *out = n;
  return 0;
}

int kv_url_param_double(const kv_url_t *url, const char *name, double min,
                        double max, double dflt, double *out, char *errbuf,
                        size_t errbuf_len) {
  const char *v = kv_url_param(url, name);
  char *end;
  double d;
  if (v == NULL) {
    *out = dflt;
    return 0;
  }
  errno = 0;
  d = strtod(v, &end);
  if (*v == '\0' || *end != '\0' || errno || isnan(d) || d < min || d > max)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "invalid value '%s' for option '%s': expected a number "
                      "in [%g, %g]",
                      v, name, min, max);
  *out = d;
  return 0;
}

int kv_url_param_bool(const kv_url_t *url, const char *name, int dflt, int *out,
                      char *errbuf, size_t errbuf_len) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  const char *v = kv_url_param(url, name);
  if (v == NULL) {
    *out = dflt;
    return 0;
  }
  for (size_t i = 0; i < KV__ARRAY_SIZE(yes); i++) {
    if (strcasecmp(v, yes[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcasecmp(v, no[i]) == 0) {
      *out = 0;
      return 0;
    }
  }
  return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                    "invalid value '%s' for option '%s': expected true or "
                    "false",
                    v, name);
}
