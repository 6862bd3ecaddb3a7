/* Wrappers by name (CLI --wrap, wrap:// URLs) and the wrap:// store.
 *
 * Names map to factories building a wrapper from its options text
 * ("opt=val,..."). The parts register them (cmake/parts/wrappers.cmake for
 * the wrappers here, crypto.cmake for compression and encryption); the
 * registry of src/core/registry.c keeps them and loads a module part on the
 * first use of one of its names. */
#include <stdio.h>
#include <string.h>

#include "core/parts.h"
#include "wrappers/wrappers.h"

const char *kv_wrap_names(void) {
  return kv__wrapper_names();
}

int kv_wrap_by_name(const char *name, const char *options, kv_store_t *inner,
                    kv_store_t **out, char *errbuf, size_t errbuf_len) {
  char local[512];
  kv_wrap_factory_fn fn;
  int err;
  if (errbuf == NULL || errbuf_len == 0) {
    errbuf = local;
    errbuf_len = sizeof local;
  }
  errbuf[0] = '\0';
  *out = NULL;
  if (name == NULL || inner == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "wrapper name and inner store must not be NULL");
  if ((err = kv__wrapper_find(name, &fn, errbuf, errbuf_len)) != 0) return err;
  err = fn(options, inner, out, errbuf, errbuf_len);
  if (err && errbuf[0] == '\0')
    kv__errbuf(errbuf, errbuf_len, err, "wrapper '%s': %s", name,
               kv_strerror(err));
  return err;
}

int kv__wrap_opts(const char *wrapper, const char *options,
                  const char *const *known, kv_url_t *out, char *errbuf,
                  size_t errbuf_len) {
  int err = kv_wrap_opts_parse(options, out, errbuf, errbuf_len);
  if (err) return err;
  err = kv_wrap_opts_check(out, wrapper, known, errbuf, errbuf_len);
  if (err) kv_wrap_opts_free(out);
  return err;
}

int kv__wrap_open_opt(const char *wrapper, const kv_url_t *opts,
                      const char *name, uv_loop_t *loop, kv_store_t **out,
                      char *errbuf, size_t errbuf_len) {
  const char *url = kv_url_param(opts, name);
  char sub[400];
  int err;
  *out = NULL;
  if (url == NULL || url[0] == '\0')
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "wrapper '%s' needs option '%s' (a store URL)", wrapper,
                      name);
  err = kv_open_ex(loop, url, out, sub, sizeof sub);
  if (err)
    return kv__errbuf(errbuf, errbuf_len, err, "wrapper '%s', option '%s': %s",
                      wrapper, name, sub);
  return 0;
}

void kv__wrap_abort(kv_wrap_t *w) {
  w->owns_inner = 0;
  w->wrap.nstores = 0;
  kv_store_close(&w->base, NULL);
}

uint64_t kv__wrap_rand(uint64_t *state) {
  uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 2685821657736338717ull;
}

/* ---- Stacks -------------------------------------------------------------- */

int kv_wrap_stack(const char *spec, kv_store_t *inner, kv_store_t **out,
                  char *errbuf, size_t errbuf_len) {
  kv_store_t *cur = inner, *bottom = NULL;
  const char *p = spec ? spec : "";
  char local[512];
  int err = 0;
  if (errbuf == NULL || errbuf_len == 0) {
    errbuf = local;
    errbuf_len = sizeof local;
  }
  errbuf[0] = '\0';
  *out = NULL;
  while (*p) {
    const char *bar = strchr(p, '|');
    size_t n = bar ? (size_t)(bar - p) : strlen(p);
    const char *colon = memchr(p, ':', n);
    size_t nl = colon ? (size_t)(colon - p) : n;
    char *name = kv_strndup(p, nl);
    char *opts = colon ? kv_strndup(colon + 1, n - nl - 1) : NULL;
    kv_store_t *next = NULL;
    if (name == NULL || (colon && opts == NULL)) {
      err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    } else if (nl == 0) {
      err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                       "empty wrapper name in '%s'", spec);
    } else {
      err = kv_wrap_by_name(name, opts, cur, &next, errbuf, errbuf_len);
    }
    kv_free(name);
    kv_free(opts);
    if (err) break;
    if (bottom == NULL) bottom = next;
    cur = next;
    p += n + (bar != NULL);
  }
  if (err) {
    if (bottom != NULL) {
      /* The caller keeps inner: the partial stack must not close it. */
      ((kv_wrap_t *)bottom)->owns_inner = 0;
      kv_store_close(cur, NULL);
    }
    return err;
  }
  *out = cur;
  return 0;
}

/* ---- wrap:// ------------------------------------------------------------
 *
 *   wrap:///NAME[:opt=val,...]|NAME[:...]|...@INNER_URL
 *
 * The stack reads like repeated --wrap options: the first wrapper sits
 * closest to the inner store. The stack ends at the first '@'; inside it,
 * '@', '|', ',', '?' and '%' are written percent-encoded in option values.
 * The inner URL is percent-decoded once (write its '?' as %3F), so
 * wrap:///statistics@memory://%3Fmax_entries=5 wraps memory://?max_entries=5.
 * The empty authority ("///") keeps the core's URL parser happy whatever
 * the inner URL holds. */

extern const kv_store_methods_t kv__wrap_url_methods;

static int wrap_url_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                         size_t errbuf_len) {
  kv_wrap_t *w = (kv_wrap_t *)s;
  const char *body = strstr(url->raw, "://");
  const char *end, *at;
  char *spec = NULL, *inner_url = NULL;
  kv_store_t *inner = NULL, *top = NULL;
  int err;
  body += 3;
  end = strchr(body, '?');
  if (end == NULL) end = body + strlen(body);
  if (*body != '/')
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "wrap:// URL must read wrap:///STACK@URL, got '%s'",
                      url->raw);
  body++;
  at = memchr(body, '@', (size_t)(end - body));
  if (at == NULL || at == body || at + 1 == end)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "wrap:// URL must read wrap:///STACK@URL, got '%s'",
                      url->raw);
  spec = kv_strndup(body, (size_t)(at - body));
  err = spec == NULL
            ? KV_ENOMEM
            : kv__pct_decode(at + 1, (size_t)(end - at - 1), &inner_url);
  if (err != 0) {
    err = err == KV_ENOMEM
              ? kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory")
              : kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                           "invalid percent-escape in the inner URL of '%s' "
                           "(write '%%' as %%25)",
                           url->raw);
    goto done;
  }
  err = kv_open_ex(s->loop, inner_url, &inner, errbuf, errbuf_len);
  if (err) goto done;
  err = kv_wrap_stack(spec, inner, &top, errbuf, errbuf_len);
  if (err) {
    kv_store_close(inner, NULL);
    goto done;
  }
  w->inner = top;
  w->owns_inner = 1;
  s->caps = top->caps;
done:
  kv_free(spec);
  kv_free(inner_url);
  return err;
}

const kv_store_methods_t kv__wrap_url_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "wrap",
    .store_size = sizeof(kv_wrap_t),
    .caps = 0,
    .options = NULL,
    .open = wrap_url_open,
    .close = kv_wrap_close,
    .get = kv_wrap_forward,
    .ttl = kv_wrap_forward,
    .put = kv_wrap_forward,
    .del = kv_wrap_forward,
    .get_many = kv_wrap_forward,
    .ttl_many = kv_wrap_forward,
    .put_many = kv_wrap_forward,
    .delete_many = kv_wrap_forward,
    .keys = kv_wrap_forward,
    .collections = kv_wrap_forward,
    .destroy = kv_wrap_forward,
    .destroy_collection = kv_wrap_forward,
    .cull = kv_wrap_forward,
    .put_if_absent = kv_wrap_forward,
    .cas = kv_wrap_forward,
    .incr = kv_wrap_forward,
    .take = kv_wrap_forward,
    .ctl_ex = kv_wrap_ctl_forward,
};
