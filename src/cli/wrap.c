/* --wrap NAME[:opt=val,...] and opening the store stack.
 *
 * The library has no wrappers yet, so every name is unknown. The parsing is
 * complete, so that plugging a wrapper in means adding it to `wrappers`
 * below and applying it in wrap_stack() (see the TODO there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* Wrappers the CLI knows, by name. TODO(wrappers): one entry per wrapper of
 * src/wrappers/ (e.g. "statistics", "compression", "ttl-clamp"), each with
 * a function that builds it around an inner store from its options. */
typedef int (*cli_wrap_fn)(kv_store_t *inner, const cli_wrap_t *w,
                           kv_store_t **out, char *errbuf, size_t errbuf_len);

typedef struct cli_wrapper_def_s {
  const char *name;
  cli_wrap_fn wrap;
} cli_wrapper_def_t;

static const cli_wrapper_def_t wrappers[] = {
    {NULL, NULL} /* none yet */
};

static const cli_wrapper_def_t *find_wrapper(const char *name) {
  size_t i;
  for (i = 0; i < sizeof(wrappers) / sizeof(wrappers[0]); i++)
    if (wrappers[i].name != NULL && strcmp(wrappers[i].name, name) == 0)
      return &wrappers[i];
  return NULL;
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
    if (find_wrapper(o->wraps[i].name) == NULL) {
      fprintf(stderr, "kvio: %s: unknown wrapper '%s'\n",
              kv_err_name(KV_EINVAL), o->wraps[i].name);
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

/* Build the --wrap stack around `store`, innermost first. TODO(wrappers):
 * for each o->wraps[i], call find_wrapper(name)->wrap(store, &o->wraps[i],
 * &store, ...): the wrapper owns its inner store (SPEC 3.5), so on failure
 * close the partial stack. The blocking facade then needs to run its calls
 * on the top of the stack: kv_sync_t has no way to swap its store yet
 * (a kv_sync_* over a caller's store, or submitting on the wrapper and
 * waiting with kv_sync_wait(), would do). cli_wrap_check() has already
 * rejected unknown names, so with no wrappers there is nothing to do. */
static int wrap_stack(const cli_opts_t *o, kv_store_t **store, char *errbuf,
                      size_t errbuf_len) {
  (void)store;
  (void)errbuf;
  (void)errbuf_len;
  return o == NULL || o->nwraps == 0 ? 0 : KV_ENOTSUP;
}

int cli_open_sync(const cli_opts_t *o, const char *url, kv_sync_t **out) {
  char errbuf[512] = "";
  kv_store_t *store;
  int rc;

  rc = kv_sync_open(url, out, errbuf, sizeof(errbuf));
  if (rc < 0) return cli_store_error(rc, errbuf[0] ? errbuf : kv_strerror(rc));
  store = kv_sync_store(*out);
  rc = wrap_stack(o, &store, errbuf, sizeof(errbuf));
  if (rc < 0) {
    kv_sync_close(*out);
    *out = NULL;
    return cli_store_error(rc, errbuf[0] ? errbuf : kv_strerror(rc));
  }
  return 0;
}

int cli_open_async(const cli_opts_t *o, uv_loop_t *loop, kv_store_t **out) {
  char errbuf[512] = "";
  int rc;

  rc = kv_open_ex(loop, o->store_url, out, errbuf, sizeof(errbuf));
  if (rc < 0) return cli_store_error(rc, errbuf[0] ? errbuf : kv_strerror(rc));
  rc = wrap_stack(o, out, errbuf, sizeof(errbuf));
  if (rc < 0) {
    kv_store_close(*out, NULL);
    *out = NULL;
    return cli_store_error(rc, errbuf[0] ? errbuf : kv_strerror(rc));
  }
  return 0;
}
