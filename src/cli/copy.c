/* copy DEST_URL: every collection (or just -c NAME), with keys, values and
 * remaining TTLs, from --store to DEST_URL.
 *
 * Per page of keys: one ttl_many on the source (values and remaining TTLs
 * in one request), then one put per entry on the destination, all submitted
 * before waiting, so that a store that groups the work of one loop turn
 * (disk://: one transaction, one fsync) writes the page at once. Entries
 * that expire between listing and reading are skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define COPY_PAGE 1000
#define BAR_WIDTH 30

typedef struct copy_s {
  const cli_opts_t *o;
  kv_sync_t *src;
  kv_sync_t *dst;
  kv_req_t puts[COPY_PAGE];
  size_t collections;
  size_t copied;
  size_t total; /* keys counted before copying (progress bar only) */
  int progress; /* stderr is a terminal */
} copy_t;

static void put_done(kv_req_t *req) {
  (void)req; /* kv_sync_wait() watches the request itself */
}

static void draw_progress(const copy_t *c, int last) {
  size_t done = c->copied > c->total ? c->total : c->copied;
  size_t fill = c->total ? done * BAR_WIDTH / c->total : BAR_WIDTH;
  char bar[BAR_WIDTH + 1];

  if (!c->progress) return;
  memset(bar, '#', fill);
  memset(bar + fill, '.', BAR_WIDTH - fill);
  bar[BAR_WIDTH] = '\0';
  fprintf(stderr, "\r[%s] %3zu%% %zu/%zu keys", bar,
          c->total ? done * 100 / c->total : 100, done, c->total);
  if (last) fputc('\n', stderr);
  fflush(stderr);
}

/* Submit one put per live entry of the page, then wait for all of them. */
static int write_page(copy_t *c, const char *collection, const kv_req_t *page,
                      const kv_req_t *vals) {
  size_t i, n = 0, k;
  int rc = 0, err;

  for (i = 0; i < vals->nresults; i++) {
    const kv_result_t *r = &vals->results[i];
    kv_req_t *put = &c->puts[n];
    if (!r->found) continue;
    memset(put, 0, sizeof(*put));
    err = kv_put(kv_sync_store(c->dst), put, collection, page->names[i].base,
                 r->value.base, r->value.len, r->ttl, put_done);
    if (err < 0) {
      rc = cli_req_error(err, put);
      kv_req_cleanup(put);
      break;
    }
    n++;
  }
  for (k = 0; k < n; k++) {
    err = kv_sync_wait(c->dst, &c->puts[k]);
    if (err < 0 && rc == 0) rc = cli_req_error(err, &c->puts[k]);
    kv_req_cleanup(&c->puts[k]);
  }
  c->copied += n;
  return rc;
}

/* Read values and TTLs of one page of key names and write them. */
static int copy_page(copy_t *c, const char *collection, const kv_req_t *page) {
  const char **keys = malloc((page->nnames + 1) * sizeof(*keys));
  kv_req_t vals;
  size_t i;
  int rc;

  if (keys == NULL) return cli_store_error(KV_ENOMEM, "out of memory");
  for (i = 0; i < page->nnames; i++)
    keys[i] = page->names[i].base;
  memset(&vals, 0, sizeof(vals));
  rc = kv_sync_ttl_many(c->src, &vals, collection, keys, page->nnames);
  rc = rc < 0 ? cli_req_error(rc, &vals)
              : write_page(c, collection, page, &vals);
  kv_req_cleanup(&vals);
  free(keys);
  return rc;
}

/* Walk the keys of a collection; with count_only, just count them. */
static int walk_collection(copy_t *c, const char *collection, int count_only) {
  char *cursor = NULL;
  kv_req_t page;
  int rc;

  do {
    memset(&page, 0, sizeof(page));
    rc = kv_sync_keys(c->src, &page, collection, cursor, COPY_PAGE);
    free(cursor);
    cursor = NULL;
    if (rc < 0) {
      rc = cli_req_error(rc, &page);
    } else if (count_only) {
      c->total += page.nnames;
    } else {
      rc = copy_page(c, collection, &page);
      draw_progress(c, 0);
    }
    if (rc == 0 && page.cursor != NULL &&
        (cursor = strdup(page.cursor)) == NULL)
      rc = cli_store_error(KV_ENOMEM, "out of memory");
    kv_req_cleanup(&page);
  } while (rc == 0 && cursor != NULL);
  free(cursor);
  return rc;
}

/* Run walk_collection over every collection of the source (or -c). */
static int walk_all(copy_t *c, int count_only) {
  char *cursor = NULL;
  kv_req_t page;
  size_t i;
  int rc;

  if (c->o->collection != NULL) {
    c->collections = 1;
    return walk_collection(c, c->o->collection, count_only);
  }
  do {
    memset(&page, 0, sizeof(page));
    rc = kv_sync_collections(c->src, &page, cursor, COPY_PAGE);
    free(cursor);
    cursor = NULL;
    if (rc < 0) rc = cli_req_error(rc, &page);
    for (i = 0; rc == 0 && i < page.nnames; i++) {
      rc = walk_collection(c, page.names[i].base, count_only);
      c->collections += !count_only;
    }
    if (rc == 0 && page.cursor != NULL &&
        (cursor = strdup(page.cursor)) == NULL)
      rc = cli_store_error(KV_ENOMEM, "out of memory");
    kv_req_cleanup(&page);
  } while (rc == 0 && cursor != NULL);
  free(cursor);
  return rc;
}

int cli_cmd_copy(cli_ctx_t *ctx) {
  copy_t *c = calloc(1, sizeof(*c));
  int rc;

  if (c == NULL) return cli_store_error(KV_ENOMEM, "out of memory");
  c->o = ctx->o;
  c->src = ctx->sync;
  c->progress = isatty(STDERR_FILENO);
  /* The destination is written as the URL says, without --wrap. */
  if (strcmp(ctx->o->args[0], ctx->o->store_url) == 0)
    rc = cli_store_error(KV_EINVAL, "the destination is the source store");
  else
    rc = cli_open_sync(NULL, ctx->o->args[0], &c->dst);
  /* Counting first costs one extra listing; only a terminal needs it. */
  if (rc == 0 && c->progress) rc = walk_all(c, 1);
  if (rc == 0) rc = walk_all(c, 0);
  if (rc == 0)
    draw_progress(c, 1);
  else if (c->progress)
    fputc('\n', stderr);
  if (rc == 0 && ctx->o->json)
    rc = cli_json_print(json_pack("{s:I,s:I}", "collections",
                                  (json_int_t)c->collections, "keys",
                                  (json_int_t)c->copied));
  kv_sync_close(c->dst);
  free(c);
  return rc;
}
