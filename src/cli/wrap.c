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

/* One "opt=val" (or bare "opt", value "") of the comma-separated list. */
static int parse_wrap_opt(const char *s, size_t n, cli_wrap_opt_t *opt) {
  const char *eq = memchr(s, '=', n);
  size_t nlen = eq ? (size_t)(eq - s) : n;

  if (nlen == 0) return -1;
  opt->name = dup_range(s, nlen);
  opt->value = eq ? dup_range(eq + 1, n - nlen - 1) : dup_range("", 0);
  return opt->name != NULL && opt->value != NULL ? 0 : -1;
}

int cli_wrap_parse(const char *spec, cli_wrap_t *w) {
  const char *colon = strchr(spec, ':');
  const char *s, *comma;
  size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);

  memset(w, 0, sizeof(*w));
  if (nlen == 0)
    return cli_usage_error("invalid --wrap '%s': no wrapper name", spec);
  w->name = dup_range(spec, nlen);
  if (w->name == NULL) return cli_store_error(KV_ENOMEM, "out of memory");
  for (s = colon ? colon + 1 : NULL; s != NULL; s = comma ? comma + 1 : NULL) {
    cli_wrap_opt_t *opts = realloc(w->opts, (w->nopts + 1) * sizeof(*opts));
    comma = strchr(s, ',');
    if (opts == NULL) return cli_store_error(KV_ENOMEM, "out of memory");
    w->opts = opts;
    memset(&opts[w->nopts], 0, sizeof(*opts));
    if (parse_wrap_opt(s, comma ? (size_t)(comma - s) : strlen(s),
                       &opts[w->nopts++]) != 0)
      return cli_usage_error("invalid --wrap '%s': bad option list", spec);
  }
  return 0;
}

void cli_wrap_free(cli_wrap_t *w) {
  size_t i;
  for (i = 0; i < w->nopts; i++) {
    free(w->opts[i].name);
    free(w->opts[i].value);
  }
  free(w->opts);
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

/* The options of one --wrap as text again: "opt=val,opt=val". */
static char *options_text(const cli_wrap_t *w) {
  size_t len = 1, i, o = 0;
  char *text;
  for (i = 0; i < w->nopts; i++)
    len += strlen(w->opts[i].name) + strlen(w->opts[i].value) + 2;
  text = malloc(len);
  if (text == NULL) return NULL;
  text[0] = '\0';
  for (i = 0; i < w->nopts; i++)
    o += (size_t)snprintf(text + o, len - o, "%s%s=%s", i ? "," : "",
                          w->opts[i].name, w->opts[i].value);
  return text;
}

/* Build the --wrap stack around *store, innermost first. Each wrapper owns
 * the store below it; on failure the partial stack is closed (with the
 * store) and *store is NULL. */
static int wrap_stack(const cli_opts_t *o, kv_store_t **store, char *errbuf,
                      size_t errbuf_len) {
  size_t i;
  for (i = 0; o != NULL && i < o->nwraps; i++) {
    kv_store_t *next = NULL;
    char *opts = options_text(&o->wraps[i]);
    int rc;
    if (opts == NULL) {
      snprintf(errbuf, errbuf_len, "out of memory");
      rc = KV_ENOMEM;
    } else {
      rc = kv_wrap_by_name(o->wraps[i].name, opts, *store, &next, errbuf,
                           errbuf_len);
    }
    free(opts);
    if (rc < 0) {
      kv_store_close(*store, NULL);
      *store = NULL;
      return rc;
    }
    *store = next;
  }
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
