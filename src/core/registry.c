/* The URL registry: scheme -> store implementation, and kv_open(). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define KV__MAX_SCHEMES 64

static struct {
  const char *scheme;
  const kv_store_methods_t *methods;
} registry[KV__MAX_SCHEMES];
static size_t nregistry;
static int builtins_done;
static char scheme_list[1024];

static void rebuild_scheme_list(void) {
  size_t o = 0;
  scheme_list[0] = '\0';
  for (size_t i = 0; i < nregistry; i++)
    o += (size_t)snprintf(scheme_list + o, sizeof scheme_list - o, "%s%s",
                          i ? ", " : "", registry[i].scheme);
}

static int add(const char *scheme, const kv_store_methods_t *m) {
  if (scheme == NULL || m == NULL || m->open == NULL || m->get == NULL ||
      m->ttl == NULL || m->put == NULL || m->del == NULL ||
      m->store_size < sizeof(kv_store_t))
    return KV_EINVAL;
  for (size_t i = 0; i < nregistry; i++)
    if (strcasecmp(registry[i].scheme, scheme) == 0) return KV_EEXISTS;
  if (nregistry == KV__MAX_SCHEMES) return KV_ENOMEM;
  registry[nregistry].scheme = scheme;
  registry[nregistry].methods = m;
  nregistry++;
  rebuild_scheme_list();
  return 0;
}

static void register_builtins(void) {
  if (builtins_done) return;
  builtins_done = 1;
  add("memory", &kv__memory_methods);
  add("null", &kv__null_methods);
  add("disk", &kv__disk_methods);
}

int kv_register(const char *scheme, const kv_store_methods_t *m) {
  register_builtins();
  return add(scheme, m);
}

const char *kv_schemes(void) {
  register_builtins();
  return scheme_list;
}

static const kv_store_methods_t *find(const char *scheme) {
  for (size_t i = 0; i < nregistry; i++)
    if (strcasecmp(registry[i].scheme, scheme) == 0) return registry[i].methods;
  return NULL;
}

/* Every option must be one the store (or the core) knows. */
static int check_options(const kv_url_t *url, const kv_store_methods_t *m,
                         char *errbuf, size_t errbuf_len) {
  for (size_t i = 0; i < url->nparams; i++) {
    const char *name = url->params[i].name;
    int known = strcmp(name, "default_collection") == 0;
    for (const char *const *o = m->options; !known && o && *o; o++)
      known = strcmp(*o, name) == 0;
    if (!known) {
      char list[512] = "default_collection";
      for (const char *const *o = m->options; o && *o; o++) {
        strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, *o, sizeof list - strlen(list) - 1);
      }
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "unknown option '%s' for %s:// (known: %s)", name,
                        url->scheme, list);
    }
  }
  return 0;
}

int kv_open_ex(uv_loop_t *loop, const char *raw, kv_store_t **out, char *errbuf,
               size_t errbuf_len) {
  kv_url_t url;
  const kv_store_methods_t *m;
  const char *dc;
  kv_store_t *s = NULL;
  int err;
  char localbuf[512];
  if (errbuf == NULL || errbuf_len == 0) {
    errbuf = localbuf;
    errbuf_len = sizeof localbuf;
  }
  errbuf[0] = '\0';
  if (out) *out = NULL;
  if (loop == NULL || out == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "loop and out must not be NULL");
  register_builtins();
  err = kv__url_parse(raw, &url, errbuf, errbuf_len);
  if (err) return err;
  m = find(url.scheme);
  if (m == NULL) {
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "unknown store scheme '%s' in '%s' (known: %s)",
                     url.scheme, raw, scheme_list);
    goto done;
  }
  if ((err = check_options(&url, m, errbuf, errbuf_len)) != 0) goto done;
  s = kv_calloc(1, m->store_size);
  if (s == NULL) {
    err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    goto done;
  }
  dc = kv_url_param(&url, "default_collection");
  if (dc != NULL) {
    err = kv__check_name("default_collection", dc, strlen(dc), errbuf,
                         errbuf_len);
    if (err) goto done;
    s->default_collection = kv_strndup(dc, strlen(dc));
    if (s->default_collection == NULL) {
      err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
      goto done;
    }
  }
  s->loop = loop;
  s->methods = m;
  s->caps = m->caps;
  if (kv__store_init(s) != 0) {
    err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    goto done;
  }
  err = m->open(s, &url, errbuf, errbuf_len);
  if (err) {
    if (errbuf[0] == '\0')
      kv__errbuf(errbuf, errbuf_len, err, "%s", kv_strerror(err));
    goto done;
  }
  /* The handle is set up last: a failed open then needs no async close. */
  kv__store_start(s);
  *out = s;
  s = NULL;
done:
  if (s) {
    kv_free(s->default_collection);
    kv_free(s);
  }
  kv__url_free(&url);
  return err;
}

int kv_open(uv_loop_t *loop, const char *url, kv_store_t **out) {
  return kv_open_ex(loop, url, out, NULL, 0);
}
