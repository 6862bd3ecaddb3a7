/* The protocol commands of the CLI, one function each, on the blocking
 * facade. Output formats are documented in docs/cli.md. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "kvio/wrap.h"

#define LIST_PAGE 1000 /* page size when following cursors */

/* The collection argument of every call: NULL is the store's default. */
static const char *coll(const cli_ctx_t *ctx) {
  return ctx->o->collection;
}

static json_t *json_key(const char *key) {
  return cli_json_name(key, strlen(key));
}

/* Print a found value (get, take): raw bytes, or the JSON record. */
static int print_value(const cli_ctx_t *ctx, const char *key,
                       const kv_req_t *req) {
  json_t *j;

  if (!ctx->o->json)
    return req->found ? cli_write(req->value.base, req->value.len) : 0;
  j = json_pack("{s:o,s:b}", "key", json_key(key), "found", req->found);
  if (j != NULL && req->found)
    json_object_set_new(j, "value",
                        cli_json_bytes(req->value.base, req->value.len));
  return cli_json_print(j);
}

/* Finish a request: the exit status for its outcome. */
static int finish(kv_req_t *req, int rc) {
  kv_req_cleanup(req);
  return rc;
}

int cli_cmd_get(cli_ctx_t *ctx) {
  const char *key = ctx->o->args[0];
  kv_req_t req;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_get(ctx->sync, &req, coll(ctx), key);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  rc = print_value(ctx, key, &req);
  return finish(&req, rc != 0 ? rc : req.found ? CLI_EXIT_OK : CLI_EXIT_FALSE);
}

int cli_cmd_take(cli_ctx_t *ctx) {
  const char *key = ctx->o->args[0];
  kv_req_t req;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_take(ctx->sync, &req, coll(ctx), key);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  rc = print_value(ctx, key, &req);
  return finish(&req, rc != 0 ? rc : req.found ? CLI_EXIT_OK : CLI_EXIT_FALSE);
}

/* A boolean outcome: nothing printed in text mode, {"key":..,NAME:bool} in
 * JSON mode; exit 1 when false. */
static int print_outcome(const cli_ctx_t *ctx, const char *key,
                         const char *name, int yes) {
  int rc = 0;

  if (ctx->o->json)
    rc =
        cli_json_print(json_pack("{s:o,s:b}", "key", json_key(key), name, yes));
  return rc != 0 ? rc : yes ? CLI_EXIT_OK : CLI_EXIT_FALSE;
}

int cli_cmd_put(cli_ctx_t *ctx) {
  const char *key = ctx->o->args[0];
  char *stdin_buf = NULL;
  const char *value;
  size_t len;
  kv_req_t req;
  int rc;

  if (ctx->o->nargs == 2) {
    value = ctx->o->args[1];
    len = strlen(value);
  } else {
    if (cli_read_all(stdin, &stdin_buf, &len) != 0)
      return cli_store_error(KV_EIO, strerror(errno));
    value = stdin_buf;
  }
  memset(&req, 0, sizeof(req));
  rc = kv_sync_put(ctx->sync, &req, coll(ctx), key, value, len, ctx->o->ttl);
  free(stdin_buf);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  return finish(&req, print_outcome(ctx, key, "stored", 1));
}

/* touch KEY: aiokv's "mark that I saw X at time T" — kv_touch stores the
 * current Unix time as decimal seconds. Prints nothing
 * ({"key","stored","time"} with --json: the time read back). */
int cli_cmd_touch(cli_ctx_t *ctx) {
  const char *key = ctx->o->args[0];
  kv_req_t req;
  json_t *j;
  int64_t when = 0;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_touch(ctx->sync, &req, coll(ctx), key, ctx->o->ttl);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  if (!ctx->o->json) return finish(&req, CLI_EXIT_OK);
  kv_req_cleanup(&req);
  memset(&req, 0, sizeof(req));
  rc = kv_sync_get(ctx->sync, &req, coll(ctx), key);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  if (req.found) kv_parse_int64(req.value.base, req.value.len, &when);
  j = json_pack("{s:o,s:b,s:I}", "key", json_key(key), "stored", 1, "time",
                (json_int_t)when);
  return finish(&req, cli_json_print(j));
}

int cli_cmd_ttl(cli_ctx_t *ctx) {
  const char *key = ctx->o->args[0];
  char text[64];
  kv_req_t req;
  json_t *j;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_ttl(ctx->sync, &req, coll(ctx), key);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  if (ctx->o->json) {
    j = json_pack("{s:o,s:b}", "key", json_key(key), "found", req.found);
    if (j != NULL && req.found)
      json_object_set_new(j, "ttl",
                          req.ttl == KV_TTL_NONE
                              ? json_null()
                              : json_real(cli_round_ms(req.ttl)));
    rc = cli_json_print(j);
  } else if (req.found) {
    cli_format_ttl(req.ttl, text, sizeof(text));
    rc = cli_printf("%s\n", text);
  }
  return finish(&req, rc != 0 ? rc : req.found ? CLI_EXIT_OK : CLI_EXIT_FALSE);
}

int cli_cmd_delete(cli_ctx_t *ctx) {
  const char *key = ctx->o->args[0];
  kv_req_t req;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_delete(ctx->sync, &req, coll(ctx), key);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  return finish(&req, print_outcome(ctx, key, "deleted", req.found));
}

/* Text: "KEY<TAB>VALUE" for a found key, "KEY" alone for a missing one,
 * both escaped (docs/cli.md). */
static int print_many_text(const cli_ctx_t *ctx, const kv_req_t *req) {
  size_t i;
  int rc = 0;

  for (i = 0; i < req->nresults && rc == 0; i++) {
    const char *key = ctx->o->args[i];
    const kv_result_t *r = &req->results[i];
    rc = cli_write_escaped(key, strlen(key));
    if (rc == 0 && r->found) {
      rc = cli_write("\t", 1);
      if (rc == 0) rc = cli_write_escaped(r->value.base, r->value.len);
    }
    if (rc == 0) rc = cli_write("\n", 1);
  }
  return rc;
}

static int print_many_json(const cli_ctx_t *ctx, const kv_req_t *req) {
  json_t *arr = json_array();
  size_t i;

  for (i = 0; arr != NULL && i < req->nresults; i++) {
    const kv_result_t *r = &req->results[i];
    json_t *j = json_pack("{s:o,s:b}", "key", json_key(ctx->o->args[i]),
                          "found", r->found);
    if (j != NULL && r->found)
      json_object_set_new(j, "value",
                          cli_json_bytes(r->value.base, r->value.len));
    json_array_append_new(arr, j);
  }
  return cli_json_print(arr);
}

int cli_cmd_get_many(cli_ctx_t *ctx) {
  const char *const *keys = (const char *const *)ctx->o->args;
  size_t i, missing = 0;
  kv_req_t req;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_get_many(ctx->sync, &req, coll(ctx), keys, ctx->o->nargs);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  rc = ctx->o->json ? print_many_json(ctx, &req) : print_many_text(ctx, &req);
  for (i = 0; i < req.nresults; i++)
    missing += !req.results[i].found;
  return finish(&req, rc != 0 ? rc : missing ? CLI_EXIT_FALSE : CLI_EXIT_OK);
}

/* ---- put-many
 * ---------------------------------------------------------------- */

typedef struct batch_s {
  char **keys;
  kv_buf_t *values;
  size_t n;
  size_t cap;
} batch_t;

static void batch_free(batch_t *b) {
  size_t i;
  for (i = 0; i < b->n; i++) {
    free(b->keys[i]);
    free(b->values[i].base);
  }
  free(b->keys);
  free(b->values);
}

static int batch_grow(batch_t *b) {
  size_t cap = b->cap ? b->cap * 2 : 64;
  char **k = realloc(b->keys, cap * sizeof(*k));
  kv_buf_t *v;

  if (k == NULL) return -1;
  b->keys = k;
  v = realloc(b->values, cap * sizeof(*v));
  if (v == NULL) return -1;
  b->values = v;
  b->cap = cap;
  return 0;
}

static int line_error(size_t lineno, const char *why) {
  char msg[256];
  snprintf(msg, sizeof(msg), "stdin line %zu: %s", lineno, why);
  return cli_store_error(KV_EINVAL, msg);
}

/* Convert the members of one parsed line; NULL or the reason it is bad. */
static const char *line_entry(const json_t *j, char **key, kv_buf_t *value) {
  const json_t *k = json_object_get(j, "key");
  const json_t *v = json_object_get(j, "value");
  const char *why = NULL;
  size_t klen;

  if (!json_is_object(j) || k == NULL || v == NULL || json_object_size(j) != 2)
    return "expected {\"key\": ..., \"value\": ...}";
  if (cli_json_to_bytes(k, key, &klen, &why) != 0) return why;
  if (memchr(*key, '\0', klen) != NULL) return "a key may not contain NUL";
  if (cli_json_to_bytes(v, &value->base, &value->len, &why) != 0) return why;
  return NULL;
}

/* One JSON line {"key": STRING, "value": STRING or {"base64": ...}}. */
static int parse_line(batch_t *b, const char *line, size_t len, size_t lineno) {
  json_error_t jerr;
  json_t *j = json_loadb(line, len, 0, &jerr);
  char *key = NULL;
  kv_buf_t value = {NULL, 0};
  const char *why;

  if (j == NULL) return line_error(lineno, jerr.text);
  why = line_entry(j, &key, &value);
  json_decref(j);
  if (why == NULL && b->n == b->cap && batch_grow(b) != 0)
    why = "out of memory";
  if (why != NULL) {
    free(key);
    free(value.base);
    return line_error(lineno, why);
  }
  b->keys[b->n] = key;
  b->values[b->n] = value;
  b->n++;
  return 0;
}

/* Every line is parsed before anything is written, so bad input writes
 * nothing (the batch is one put_many). */
static int read_batch(batch_t *b) {
  char *text, *line, *nl;
  size_t len, lineno = 0;
  int rc = 0;

  if (cli_read_all(stdin, &text, &len) != 0)
    return cli_store_error(KV_EIO, strerror(errno));
  for (line = text; rc == 0 && line < text + len; line = nl + 1) {
    nl = memchr(line, '\n', (size_t)(text + len - line));
    if (nl == NULL) nl = text + len;
    lineno++;
    if (strspn(line, " \t\r") >= (size_t)(nl - line)) continue; /* blank line */
    rc = parse_line(b, line, (size_t)(nl - line), lineno);
  }
  free(text);
  return rc;
}

int cli_cmd_put_many(cli_ctx_t *ctx) {
  batch_t b;
  kv_req_t req;
  int rc;

  memset(&b, 0, sizeof(b));
  rc = read_batch(&b);
  if (rc != 0) {
    batch_free(&b);
    return rc;
  }
  memset(&req, 0, sizeof(req));
  rc = kv_sync_put_many(ctx->sync, &req, coll(ctx), (const char *const *)b.keys,
                        b.values, b.n, ctx->o->ttl);
  if (rc < 0)
    rc = cli_req_error(rc, &req);
  else if (ctx->o->json)
    rc = cli_json_print(json_pack("{s:I}", "stored", (json_int_t)b.n));
  batch_free(&b);
  return finish(&req, rc);
}

int cli_cmd_delete_many(cli_ctx_t *ctx) {
  const char *const *keys = (const char *const *)ctx->o->args;
  kv_req_t req;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_delete_many(ctx->sync, &req, coll(ctx), keys, ctx->o->nargs);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  if (ctx->o->json)
    rc = cli_json_print(json_pack("{s:I}", "deleted", (json_int_t)req.count));
  else
    rc = cli_printf("%zu\n", req.count);
  return finish(&req, rc != 0 ? rc : req.count ? CLI_EXIT_OK : CLI_EXIT_FALSE);
}

/* ---- keys, collections
 * -------------------------------------------------------- */

/* Follow the cursors until the listing ends or --limit names were printed.
 * Text: one escaped name per line; JSON: an array of names. */
static int list_names(cli_ctx_t *ctx, int collections) {
  size_t limit = ctx->o->limit, printed = 0, i, page;
  json_t *arr = ctx->o->json ? json_array() : NULL;
  char *cursor = NULL;
  kv_req_t req;
  int rc = 0;

  do {
    page = limit && limit - printed < LIST_PAGE ? limit - printed : LIST_PAGE;
    memset(&req, 0, sizeof(req));
    rc = collections ? kv_sync_collections(ctx->sync, &req, cursor, page)
                     : kv_sync_keys(ctx->sync, &req, coll(ctx), cursor, page);
    free(cursor);
    cursor = NULL;
    if (rc < 0) {
      rc = cli_req_error(rc, &req);
      break;
    }
    for (i = 0; i < req.nnames && rc == 0 && (!limit || printed < limit);
         i++, printed++) {
      const kv_buf_t *nm = &req.names[i];
      if (arr != NULL)
        json_array_append_new(arr, cli_json_name(nm->base, nm->len));
      else if ((rc = cli_write_escaped(nm->base, nm->len)) == 0)
        rc = cli_write("\n", 1);
    }
    if (rc == 0 && req.cursor != NULL && (!limit || printed < limit) &&
        (cursor = strdup(req.cursor)) == NULL)
      rc = cli_store_error(KV_ENOMEM, "out of memory");
    kv_req_cleanup(&req);
  } while (rc == 0 && cursor != NULL);
  free(cursor);
  if (arr != NULL && rc == 0) return cli_json_print(arr);
  json_decref(arr); /* accepts NULL */
  return rc;
}

int cli_cmd_keys(cli_ctx_t *ctx) {
  return list_names(ctx, 0);
}

int cli_cmd_collections(cli_ctx_t *ctx) {
  return list_names(ctx, 1);
}

/* ---- destroy, cull
 * --------------------------------------------------------------- */

int cli_cmd_destroy_collection(cli_ctx_t *ctx) {
  const char *name = ctx->o->args[0];
  kv_req_t req;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_destroy_collection(ctx->sync, &req, name);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  if (ctx->o->json)
    rc = cli_json_print(json_pack("{s:o,s:b}", "collection",
                                  cli_json_name(name, strlen(name)),
                                  "destroyed", 1));
  return finish(&req, rc);
}

int cli_cmd_destroy(cli_ctx_t *ctx) {
  kv_req_t req;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_destroy(ctx->sync, &req);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  if (ctx->o->json) rc = cli_json_print(json_pack("{s:b}", "destroyed", 1));
  return finish(&req, rc);
}

int cli_cmd_cull(cli_ctx_t *ctx) {
  kv_req_t req;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_cull(ctx->sync, &req);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  if (ctx->o->json)
    rc = cli_json_print(json_pack("{s:I}", "culled", (json_int_t)req.count));
  else
    rc = cli_printf("%zu\n", req.count);
  return finish(&req, rc);
}

/* ---- atomic segment
 * ------------------------------------------------------------- */

int cli_cmd_put_if_absent(cli_ctx_t *ctx) {
  const char *key = ctx->o->args[0], *value = ctx->o->args[1];
  kv_req_t req;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_put_if_absent(ctx->sync, &req, coll(ctx), key, value,
                             strlen(value), ctx->o->ttl);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  return finish(&req, print_outcome(ctx, key, "stored", req.found));
}

/* A conflict is an answer ("the condition did not hold", exit 1), not an
 * error. */
int cli_cmd_cas(cli_ctx_t *ctx) {
  const cli_opts_t *o = ctx->o;
  const char *key = o->args[0];
  const char *expected = o->absent ? NULL : o->args[1];
  const char *value = o->args[o->absent ? 1 : 2];
  kv_req_t req;
  int rc;

  memset(&req, 0, sizeof(req));
  rc = kv_sync_cas(ctx->sync, &req, coll(ctx), key, expected,
                   expected ? strlen(expected) : 0, value, strlen(value),
                   o->ttl);
  if (rc < 0 && rc != KV_ECONFLICT)
    return finish(&req, cli_req_error(rc, &req));
  return finish(&req, print_outcome(ctx, key, "swapped", rc == 0));
}

static int parse_delta(const char *s, int64_t *out) {
  char *end;
  long long v;

  errno = 0;
  v = strtoll(s, &end, 10);
  if (end == s || *end != '\0' || errno == ERANGE)
    return cli_usage_error("invalid number for DELTA: '%s'", s);
  *out = (int64_t)v;
  return 0;
}

int cli_cmd_incr(cli_ctx_t *ctx) {
  const char *key = ctx->o->args[0];
  int64_t delta = 1;
  kv_req_t req;
  int rc;

  if (ctx->o->nargs == 2 && (rc = parse_delta(ctx->o->args[1], &delta)) != 0)
    return rc;
  memset(&req, 0, sizeof(req));
  rc = kv_sync_incr(ctx->sync, &req, coll(ctx), key, delta, ctx->o->ttl);
  if (rc < 0) return finish(&req, cli_req_error(rc, &req));
  if (ctx->o->json)
    rc = cli_json_print(json_pack("{s:o,s:I}", "key", json_key(key), "value",
                                  (json_int_t)req.number));
  else
    rc = cli_printf("%lld\n", (long long)req.number);
  return finish(&req, rc);
}

/* ---- stats
 * -------------------------------------------------------------------------- */

/* Statistics live in the statistics wrapper (kvio/wrap.h): the stack is
 * opened here, after checking that one is in it, and its counters printed
 * in Prometheus text format, or with --json as one JSON array. */
static int stats_json_row(const char *coll, kv_op_t op, const kv_stats_t *st,
                          void *data) {
  json_t *row, *b = json_array();
  int i;
  for (i = 0; b != NULL && i < KV_STATS_NBUCKETS; i++)
    json_array_append_new(b, json_integer((json_int_t)st->latency_buckets[i]));
  row = json_pack("{s:o,s:s,s:I,s:I,s:I,s:I,s:f,s:o}", "collection",
                  cli_json_name(coll, strlen(coll)), "op", kv_op_name(op),
                  "calls", (json_int_t)st->calls, "hits", (json_int_t)st->hits,
                  "misses", (json_int_t)st->misses, "errors",
                  (json_int_t)st->errors, "latency_sum", st->latency_sum,
                  "latency_buckets", b);
  return row == NULL || json_array_append_new((json_t *)data, row) != 0;
}

int cli_cmd_stats(cli_ctx_t *ctx) {
  kv_sync_t *sync = NULL;
  kv_store_t *top;
  int rc;

  if (!cli_wrap_present(ctx->o, "statistics")) {
    fprintf(stderr, "kvio: %s: no statistics wrapper in the stack\n",
            kv_err_name(KV_ENOTSUP));
    return CLI_EXIT_USAGE;
  }
  rc = cli_open_sync(ctx->o, ctx->o->store_url, &sync);
  if (rc != 0) return rc;
  top = kv_sync_store(sync);
  if (ctx->o->json) {
    json_t *rows = json_array();
    if (rows == NULL || kv_stats_foreach(top, stats_json_row, rows) != 0) {
      json_decref(rows);
      rc = cli_store_error(KV_ENOMEM, "out of memory");
    } else {
      rc = cli_json_print(rows); /* releases rows */
    }
  } else {
    size_t len = 0;
    char *text = kv_stats_prometheus(top, &len);
    rc = text ? cli_write(text, len)
              : cli_store_error(KV_ENOMEM, "out of memory");
    kv_free(text);
  }
  kv_sync_close(sync);
  return rc;
}
