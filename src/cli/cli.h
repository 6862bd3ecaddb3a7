/* The kvio command-line tool: declarations shared by its source files.
 *
 *   main.c      argument parsing, the command table, dispatch, help
 *   commands.c  one function per protocol command (get, put, ...)
 *   copy.c      copy DEST_URL
 *   bench.c     bench (async load on the store's own loop)
 *   wrap.c      --wrap NAME[:opt=val,...] parsing; the hook for wrappers
 *   output.c    errors, JSON, escaping, base64, stdin
 *   redis.c     publish, subscribe, redis (Redis stores only)
 *
 * Every command returns an exit status (CLI_EXIT_*) and prints its own
 * diagnostics; nothing here calls exit() except main().
 */
#ifndef KV_CLI_H
#define KV_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "kvio.h"

/* Exit statuses (docs/cli.md). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FALSE 1 /* missing, nothing deleted, condition false */
#define CLI_EXIT_USAGE 2 /* the command line is wrong */
#define CLI_EXIT_STORE 3 /* the store or the library reported an error */

#define CLI_DEFAULT_STORE "disk://./kvio-data"

/* Options a command may accept beyond the global ones (--store, --wrap,
 * --json, --help, --version). */
#define CLI_OPT_COLLECTION (1u << 0)
#define CLI_OPT_TTL (1u << 1)
#define CLI_OPT_LIMIT (1u << 2)
#define CLI_OPT_ABSENT (1u << 3)
#define CLI_OPT_BENCH (1u << 4) /* --op, --clients, ... */
#define CLI_OPT_SUB (1u << 5)   /* subscribe: --pattern, --count */

/* One --wrap NAME[:opt=val,...] (wrap.c): the name, and the argument as
 * given, which the library parses (kv_wrap_stack). */
typedef struct cli_wrap_s {
  char *name;
  const char *spec;
} cli_wrap_t;

/* The parsed command line. Strings point into argv unless noted. */
typedef struct cli_opts_s {
  const char *store_url;
  cli_wrap_t *wraps; /* owned; the first one sits closest to the store */
  size_t nwraps;
  const char *collection; /* NULL: the store's default collection */
  double ttl;             /* KV_TTL_NONE unless -t was given */
  int json;
  size_t limit; /* 0: no limit */
  int absent;   /* cas --absent: expect the key to be absent */

  /* bench */
  const char *bench_op;
  size_t clients;
  size_t requests; /* 0: the default for the op */
  size_t size;
  size_t keys;
  int sync;

  /* subscribe */
  int pattern;  /* --pattern: the arguments are patterns */
  size_t count; /* --count N: exit after N messages (0: never) */

  const char *command;
  char **args; /* positional arguments after the command name */
  size_t nargs;
} cli_opts_t;

/* What a command runs with. `sync` is the opened store for commands that
 * want one (NULL for bench, which opens its own loop). */
typedef struct cli_ctx_s {
  const cli_opts_t *o;
  kv_sync_t *sync;
} cli_ctx_t;

typedef int (*cli_cmd_fn)(cli_ctx_t *ctx);

/* commands.c */
int cli_cmd_get(cli_ctx_t *ctx);
int cli_cmd_put(cli_ctx_t *ctx);
int cli_cmd_ttl(cli_ctx_t *ctx);
int cli_cmd_delete(cli_ctx_t *ctx);
int cli_cmd_get_many(cli_ctx_t *ctx);
int cli_cmd_put_many(cli_ctx_t *ctx);
int cli_cmd_delete_many(cli_ctx_t *ctx);
int cli_cmd_keys(cli_ctx_t *ctx);
int cli_cmd_collections(cli_ctx_t *ctx);
int cli_cmd_destroy_collection(cli_ctx_t *ctx);
int cli_cmd_destroy(cli_ctx_t *ctx);
int cli_cmd_cull(cli_ctx_t *ctx);
int cli_cmd_put_if_absent(cli_ctx_t *ctx);
int cli_cmd_cas(cli_ctx_t *ctx);
int cli_cmd_incr(cli_ctx_t *ctx);
int cli_cmd_take(cli_ctx_t *ctx);
int cli_cmd_touch(cli_ctx_t *ctx);
int cli_cmd_stats(cli_ctx_t *ctx);

/* redis.c */
int cli_cmd_publish(cli_ctx_t *ctx);
int cli_cmd_subscribe(cli_ctx_t *ctx);
int cli_cmd_redis(cli_ctx_t *ctx);

/* copy.c */
int cli_cmd_copy(cli_ctx_t *ctx);

/* bench.c */
int cli_cmd_bench(cli_ctx_t *ctx);
/* Validates --op and friends at parse time; returns 0 or prints a usage
 * error and returns CLI_EXIT_USAGE. */
int cli_bench_check(const cli_opts_t *o);

/* wrap.c */
/* Parse NAME[:opt=val,...] into *w (allocates; free with cli_wrap_free).
 * Returns 0, or prints a usage error and returns CLI_EXIT_USAGE. */
int cli_wrap_parse(const char *spec, cli_wrap_t *w);
void cli_wrap_free(cli_wrap_t *w);
/* Check that every wrapper named on the command line exists. Returns 0 or
 * prints the error and returns CLI_EXIT_USAGE. */
int cli_wrap_check(const cli_opts_t *o);
/* Whether a wrapper named `name` is in the stack. */
int cli_wrap_present(const cli_opts_t *o, const char *name);
/* Open the store at `url` inside every --wrap of `o` (o NULL: no wrappers),
 * on the blocking facade. Returns an exit status; on failure the error is
 * printed. */
int cli_open_sync(const cli_opts_t *o, const char *url, kv_sync_t **out);
/* The same on a caller's loop (bench). */
int cli_open_async(const cli_opts_t *o, uv_loop_t *loop, kv_store_t **out);

/* output.c */
/* "kvio: MESSAGE" and the --help hint on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* "kvio: ERROR_NAME: detail" on stderr; returns CLI_EXIT_STORE. */
int cli_store_error(int err, const char *detail);
/* The same for a failed request: err is the submit's return value or
 * req->status. */
int cli_req_error(int err, const kv_req_t *req);
/* Write n bytes to stdout. Returns 0 or CLI_EXIT_STORE (error printed). */
int cli_write(const void *p, size_t n);
/* printf to stdout. Returns 0 or CLI_EXIT_STORE (error printed). */
int cli_printf(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Print `v` compactly on one line to stdout and release it. */
int cli_json_print(json_t *v);
/* A JSON string when the bytes are valid UTF-8, else {"base64": "..."}. */
json_t *cli_json_bytes(const char *p, size_t n);
/* A name (key or collection) as JSON: a string, or bytes as above. */
json_t *cli_json_name(const char *p, size_t n);
/* Decode a JSON value made by cli_json_bytes back into bytes (malloc'ed,
 * NUL-terminated). Returns 0 or -1 with *why set. */
int cli_json_to_bytes(const json_t *v, char **out, size_t *len,
                      const char **why);
/* Print bytes escaped for line-oriented text output (docs/cli.md). */
int cli_write_escaped(const char *p, size_t n);
/* Read all of a stream (binary safe) into a malloc'ed, NUL-terminated
 * buffer. Returns 0 or -1 (errno set). */
int cli_read_all(FILE *f, char **out, size_t *len);
/* Remaining TTL as text: "none" or seconds with millisecond precision and
 * no trailing zeros ("59.5", "3600"). */
void cli_format_ttl(double ttl, char *buf, size_t len);
/* Seconds rounded to milliseconds (the precision every store keeps). */
double cli_round_ms(double seconds);

#endif /* KV_CLI_H */
