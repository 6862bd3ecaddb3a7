/* --wrap NAME[:opt=val,...] and opening the store stack.
 *
 * Wrappers come from the library's registry (kv_wrap_by_name in
 * kvio/wrap.h); each --wrap is applied in order, the first one closest to
 * the store. Options are passed as written ("opt=val,..."); the library
 * percent-decodes names and values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kvio/wrap.h"

/* Whether `name` is one of kv_wrap_names() ("a, b, c"). */
static int known_wrapper(const char *name) {
  const char *p = kv_wrap_names();
  size_t n = strlen(name);
  while (*p) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && memcmp(p, name, n) == 0) return 1;
    if (e == NULL) break;
    p = e + 1;
    while (*p == ' ')
      p++;
  }
  return 0;
}

static char *dup_range(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p != NULL) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

int cli_wrap_parse(const char *spec, cli_wrap_t *w) {
  const char *colon = strchr(spec, ':');
  size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);

  memset(w, 0, sizeof(*w));
  if (nlen == 0)
    return cli_usage_error("invalid --wrap '%s': no wrapper name", spec);
  w->name = dup_range(spec, nlen);
  if (w->name == NULL) return cli_store_error(KV_ENOMEM, "out of memory");
  w->spec = spec;
  return 0;
}

void cli_wrap_free(cli_wrap_t *w) {
  free(w->name);
  memset(w, 0, sizeof(*w));
}

int cli_wrap_check(const cli_opts_t *o) {
  size_t i;
  for (i = 0; i < o->nwraps; i++) {
    if (!known_wrapper(o->wraps[i].name)) {
      fprintf(stderr, "kvio: %s: unknown wrapper '%s' (known: %s)\n",
              kv_err_name(KV_EINVAL), o->wraps[i].name, kv_wrap_names());
      return CLI_EXIT_USAGE;
    }
  }
  return 0;
}

int cli_wrap_present(const cli_opts_t *o, const char *name) {
  size_t i;
  for (i = 0; i < o->nwraps; i++)
    if (strcmp(o->wraps[i].name, name) == 0) return 1;
  return 0;
}

/* Build the --wrap stack around *store with kv_wrap_stack(): the --wrap
 * arguments joined by '|', innermost first (a '|' inside one is escaped as
 * %7C; the library percent-decodes option values). The stack owns *store;
 * on failure *store is closed and NULL. */
static int wrap_stack(const cli_opts_t *o, kv_store_t **store, char *errbuf,
                      size_t errbuf_len) {
  size_t i, len = 1, n = 0;
  char *spec;
  kv_store_t *top = NULL;
  int rc;
  if (o == NULL || o->nwraps == 0) return 0;
  for (i = 0; i < o->nwraps; i++)
    len += 3 * strlen(o->wraps[i].spec) + 1;
  spec = malloc(len);
  if (spec == NULL) {
    rc = KV_ENOMEM;
    snprintf(errbuf, errbuf_len, "out of memory");
  } else {
    for (i = 0; i < o->nwraps; i++) {
      const char *p;
      if (i) spec[n++] = '|';
      for (p = o->wraps[i].spec; *p; p++) {
        if (*p == '|') {
          memcpy(spec + n, "%7C", 3);
          n += 3;
        } else {
          spec[n++] = *p;
        }
      }
    }
    spec[n] = '\0';
    rc = kv_wrap_stack(spec, *store, &top, errbuf, errbuf_len);
    free(spec);
  }
  if (rc < 0) {
    kv_store_close(*store, NULL);
    *store = NULL;
    return rc;
  }
  *store = top;
  return 0;
}

int cli_open_sync(const cli_opts_t *o, const char *url, kv_sync_t **out) {
  char errbuf[512] = "";
  kv_store_t *store;
  int rc;

  if (o == NULL || o->nwraps == 0) {
    rc = kv_sync_open(url, out, errbuf, sizeof(errbuf));
    if (rc < 0)
      return cli_store_error(rc, errbuf[0] ? errbuf : kv_strerror(rc));
    return 0;
  }
  rc = kv_sync_init(out);
  if (rc < 0) return cli_store_error(rc, kv_strerror(rc));
  rc = kv_open_ex(kv_sync_loop(*out), url, &store, errbuf, sizeof(errbuf));
  if (rc == 0) rc = wrap_stack(o, &store, errbuf, sizeof(errbuf));
  if (rc < 0) {
    kv_sync_close(*out); /* runs the loop: the partial stack closes */
    *out = NULL;
    return cli_store_error(rc, errbuf[0] ? errbuf : kv_strerror(rc));
  }
  kv_sync_set_store(*out, store);
  return 0;
}

int cli_open_async(const cli_opts_t *o, uv_loop_t *loop, kv_store_t **out) {
  char errbuf[512] = "";
  int rc;

  rc = kv_open_ex(loop, o->store_url, out, errbuf, sizeof(errbuf));
  if (rc < 0) return cli_store_error(rc, errbuf[0] ? errbuf : kv_strerror(rc));
  rc = wrap_stack(o, out, errbuf, sizeof(errbuf));
  if (rc < 0) return cli_store_error(rc, errbuf[0] ? errbuf : kv_strerror(rc));
  return 0;
}
