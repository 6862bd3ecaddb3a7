/* kvio: the command-line tool. Argument parsing, the command table and
 * dispatch. The contract is SPEC section 7; docs/cli.md is the manual. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* ---- The command table ---------------------------------------------------
 *
 * min/max: positional arguments after the command name (-1: no maximum).
 * opts: the CLI_OPT_* the command accepts beyond the global options.
 * store: whether main() opens the store (blocking facade) before running. */

typedef struct cli_cmd_s {
  const char *name;
  cli_cmd_fn run;
  int min;
  int max;
  unsigned opts;
  int store;
  const char *usage;
} cli_cmd_t;

#define C_ CLI_OPT_COLLECTION
#define T_ CLI_OPT_TTL

static const cli_cmd_t commands[] = {
    {"put", cli_cmd_put, 1, 2, C_ | T_, 1, "put KEY [VALUE]"},
    {"get", cli_cmd_get, 1, 1, C_, 1, "get KEY"},
    {"ttl", cli_cmd_ttl, 1, 1, C_, 1, "ttl KEY"},
    {"delete", cli_cmd_delete, 1, 1, C_, 1, "delete KEY"},
    {"get-many", cli_cmd_get_many, 1, -1, C_, 1, "get-many KEY..."},
    {"put-many", cli_cmd_put_many, 0, 0, C_ | T_, 1, "put-many < JSONL"},
    {"delete-many", cli_cmd_delete_many, 1, -1, C_, 1, "delete-many KEY..."},
    {"keys", cli_cmd_keys, 0, 0, C_ | CLI_OPT_LIMIT, 1, "keys [--limit N]"},
    {"collections", cli_cmd_collections, 0, 0, CLI_OPT_LIMIT, 1,
     "collections [--limit N]"},
    {"destroy-collection", cli_cmd_destroy_collection, 1, 1, 0, 1,
     "destroy-collection NAME"},
    {"destroy", cli_cmd_destroy, 0, 0, 0, 1, "destroy"},
    {"cull", cli_cmd_cull, 0, 0, 0, 1, "cull"},
    {"put-if-absent", cli_cmd_put_if_absent, 2, 2, C_ | T_, 1,
     "put-if-absent KEY VALUE"},
    {"cas", cli_cmd_cas, 2, 3, C_ | T_ | CLI_OPT_ABSENT, 1,
     "cas KEY EXPECTED NEW | cas --absent KEY NEW"},
    {"incr", cli_cmd_incr, 1, 2, C_ | T_, 1, "incr KEY [DELTA]"},
    {"take", cli_cmd_take, 1, 1, C_, 1, "take KEY"},
    {"touch", cli_cmd_touch, 1, 1, C_ | T_, 1, "touch KEY"},
    {"copy", cli_cmd_copy, 1, 1, C_, 1, "copy DEST_URL"},
    {"bench", cli_cmd_bench, 0, 0, C_ | CLI_OPT_BENCH, 0,
     "bench --op OP [--clients N] [--requests N] [--size BYTES] [--keys N] "
     "[--sync]"},
    {"stats", cli_cmd_stats, 0, 0, 0, 0, "stats"},
    {"publish", cli_cmd_publish, 2, 2, 0, 1, "publish CHANNEL MESSAGE"},
    {"subscribe", cli_cmd_subscribe, 1, -1, CLI_OPT_SUB, 1,
     "subscribe [--pattern] [--count N] CHANNEL..."},
    {"redis", cli_cmd_redis, 1, -1, 0, 1, "redis ARG..."},
};

#undef C_
#undef T_

static const char help_text[] =
    "Usage: kvio [--store URL] [--wrap NAME[:opt=val,...]]... COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  put KEY [VALUE]          store VALUE (read from stdin when omitted)\n"
    "  get KEY                  print the value's bytes exactly\n"
    "  ttl KEY                  print the remaining seconds, or 'none'\n"
    "  delete KEY               remove a key\n"
    "  get-many KEY...          print KEY<TAB>VALUE per key (escaped)\n"
    "  put-many                 store JSON lines {\"key\":..,\"value\":..} "
    "from stdin\n"
    "  delete-many KEY...       remove keys, print how many were removed\n"
    "  keys [--limit N]         list the keys of the collection\n"
    "  collections [--limit N]  list the collections\n"
    "  destroy-collection NAME  remove a collection\n"
    "  destroy                  remove everything in the store\n"
    "  cull                     remove expired entries now\n"
    "  put-if-absent KEY VALUE  store only if the key holds no value\n"
    "  cas KEY EXPECTED NEW     replace EXPECTED by NEW (--absent KEY NEW)\n"
    "  incr KEY [DELTA]         add DELTA (default 1), print the result\n"
    "  take KEY                 print the value and remove it\n"
    "  touch KEY                store the current Unix time (seconds)\n"
    "  copy DEST_URL            copy every collection to another store\n"
    "  bench --op OP            measure throughput and latency\n"
    "  stats                    print statistics (statistics wrapper)\n"
    "  publish CHANNEL MESSAGE  (Redis) publish, print the receivers\n"
    "  subscribe CHANNEL...     (Redis) print CHANNEL<TAB>PAYLOAD per "
    "message\n"
    "                           (--pattern: PATTERN<TAB>CHANNEL<TAB>PAYLOAD;\n"
    "                           --count N: exit after N messages)\n"
    "  redis ARG...             (Redis) send one command, print the reply\n"
    "\n"
    "Options:\n"
    "  --store URL              store URL (default: $KVIO_STORE, else\n"
    "                           " CLI_DEFAULT_STORE ")\n"
    "  --wrap NAME[:o=v,...]    wrap the store (repeatable; first is "
    "innermost)\n"
    "  -c, --collection NAME    collection (default: the store's default)\n"
    "  -t, --ttl SECONDS        expiry for writes (default: never)\n"
    "      --limit N            list at most N names\n"
    "      --absent             cas: expect the key to be absent\n"
    "      --json               machine-readable output\n"
    "  -h, --help               show this help\n"
    "      --version            show the version\n"
    "\n"
    "bench: --op get|put|mixed|get-many|put-many  --clients N (64)\n"
    "       --requests N  --size BYTES (100)  --keys N (10000)  --sync\n"
    "\n"
    "Exit status: 0 ok, 1 missing / not deleted / condition false,\n"
    "2 usage error, 3 store error. See docs/cli.md.\n";

/* ---- The option table -----------------------------------------------------
 */

typedef enum {
  OPT_STORE,
  OPT_WRAP,
  OPT_COLLECTION,
  OPT_TTL,
  OPT_JSON,
  OPT_LIMIT,
  OPT_ABSENT,
  OPT_HELP,
  OPT_VERSION,
  OPT_OP,
  OPT_CLIENTS,
  OPT_REQUESTS,
  OPT_SIZE,
  OPT_KEYS,
  OPT_SYNC,
  OPT_PATTERN,
  OPT_COUNT
} opt_id_t;

typedef struct opt_def_s {
  opt_id_t id;
  const char *lname;
  char sname; /* 0: long form only */
  int has_arg;
  unsigned group; /* CLI_OPT_* bit, 0 for global options */
} opt_def_t;

static const opt_def_t option_defs[] = {
    {OPT_STORE, "store", 0, 1, 0},
    {OPT_WRAP, "wrap", 0, 1, 0},
    {OPT_COLLECTION, "collection", 'c', 1, CLI_OPT_COLLECTION},
    {OPT_TTL, "ttl", 't', 1, CLI_OPT_TTL},
    {OPT_JSON, "json", 0, 0, 0},
    {OPT_LIMIT, "limit", 0, 1, CLI_OPT_LIMIT},
    {OPT_ABSENT, "absent", 0, 0, CLI_OPT_ABSENT},
    {OPT_HELP, "help", 'h', 0, 0},
    {OPT_VERSION, "version", 0, 0, 0},
    {OPT_OP, "op", 0, 1, CLI_OPT_BENCH},
    {OPT_CLIENTS, "clients", 0, 1, CLI_OPT_BENCH},
    {OPT_REQUESTS, "requests", 0, 1, CLI_OPT_BENCH},
    {OPT_SIZE, "size", 0, 1, CLI_OPT_BENCH},
    {OPT_KEYS, "keys", 0, 1, CLI_OPT_BENCH},
    {OPT_SYNC, "sync", 0, 0, CLI_OPT_BENCH},
    {OPT_PATTERN, "pattern", 0, 0, CLI_OPT_SUB},
    {OPT_COUNT, "count", 0, 1, CLI_OPT_SUB},
};

#define N_OPTIONS (sizeof(option_defs) / sizeof(option_defs[0]))
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Parser state: what was seen, for the checks done once the command is
 * known (an option may come before its command). */
typedef struct parser_s {
  cli_opts_t *o;
  int help;
  int version;
  unsigned groups_seen;
  const opt_def_t *group_def[8]; /* the first option used of each group */
  int group_short[8];            /* ... and whether as -x */
  char **pos;                    /* positional arguments, command first */
  size_t npos;
} parser_t;

static const opt_def_t *find_long(const char *name, size_t len) {
  size_t i;
  for (i = 0; i < N_OPTIONS; i++)
    if (strlen(option_defs[i].lname) == len &&
        memcmp(option_defs[i].lname, name, len) == 0)
      return &option_defs[i];
  return NULL;
}

static const opt_def_t *find_short(char c) {
  size_t i;
  for (i = 0; i < N_OPTIONS; i++)
    if (option_defs[i].sname == c) return &option_defs[i];
  return NULL;
}

/* A non-negative decimal count that fits size_t; `min` is the smallest
 * accepted value. */
static int parse_count(const char *opt, const char *s, size_t min,
                       size_t *out) {
  char *end;
  unsigned long long v;

  errno = 0;
  if (*s < '0' || *s > '9')
    return cli_usage_error("invalid number for '--%s': '%s'", opt, s);
  v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > SIZE_MAX)
    return cli_usage_error("invalid number for '--%s': '%s'", opt, s);
  if (v < min) return cli_usage_error("'--%s' must be at least %zu", opt, min);
  *out = (size_t)v;
  return 0;
}

/* A TTL that is a number is passed on as given: the library, not the CLI,
 * decides which numbers are valid (negative, NaN, too large: KV_EINVAL). */
static int parse_ttl(const char *s, double *out) {
  char *end;

  errno = 0;
  *out = strtod(s, &end);
  if (end == s || *end != '\0') return cli_usage_error("invalid TTL '%s'", s);
  return 0;
}

static int group_bit(unsigned group) {
  int bit = 0;
  while ((1u << bit) != group)
    bit++;
  return bit;
}

static int apply_option(parser_t *p, const opt_def_t *d, int is_short,
                        const char *arg) {
  cli_opts_t *o = p->o;
  const char *spelled = d->lname;
  size_t nw;
  cli_wrap_t *w;

  if (d->group != 0 && !(p->groups_seen & d->group)) {
    p->group_def[group_bit(d->group)] = d;
    p->group_short[group_bit(d->group)] = is_short;
  }
  p->groups_seen |= d->group;

  switch (d->id) {
  case OPT_STORE:
    o->store_url = arg;
    return 0;
  case OPT_WRAP:
    nw = o->nwraps + 1;
    w = realloc(o->wraps, nw * sizeof(*w));
    if (w == NULL) return cli_store_error(KV_ENOMEM, "out of memory");
    o->wraps = w;
    memset(&w[o->nwraps], 0, sizeof(*w));
    o->nwraps = nw;
    return cli_wrap_parse(arg, &w[nw - 1]);
  case OPT_COLLECTION:
    o->collection = arg;
    return 0;
  case OPT_TTL:
    return parse_ttl(arg, &o->ttl);
  case OPT_JSON:
    o->json = 1;
    return 0;
  case OPT_LIMIT:
    return parse_count(spelled, arg, 1, &o->limit);
  case OPT_ABSENT:
    o->absent = 1;
    return 0;
  case OPT_HELP:
    p->help = 1;
    return 0;
  case OPT_VERSION:
    p->version = 1;
    return 0;
  case OPT_OP:
    o->bench_op = arg;
    return 0;
  case OPT_CLIENTS:
    return parse_count(spelled, arg, 1, &o->clients);
  case OPT_REQUESTS:
    return parse_count(spelled, arg, 1, &o->requests);
  case OPT_SIZE:
    return parse_count(spelled, arg, 0, &o->size);
  case OPT_KEYS:
    return parse_count(spelled, arg, 1, &o->keys);
  case OPT_SYNC:
    o->sync = 1;
    return 0;
  case OPT_PATTERN:
    o->pattern = 1;
    return 0;
  case OPT_COUNT:
    return parse_count(spelled, arg, 1, &o->count);
  }
  return 0;
}

/* --name, --name=value, --name value */
static int parse_long(parser_t *p, char **argv, int argc, int *i) {
  const char *s = argv[*i] + 2;
  const char *eq = strchr(s, '=');
  size_t len = eq ? (size_t)(eq - s) : strlen(s);
  const opt_def_t *d = find_long(s, len);
  char spelled[64];

  if (d == NULL) return cli_usage_error("unknown option '--%.*s'", (int)len, s);
  snprintf(spelled, sizeof(spelled), "--%s", d->lname);
  if (!d->has_arg) {
    if (eq != NULL)
      return cli_usage_error("option '%s' takes no argument", spelled);
    return apply_option(p, d, 0, NULL);
  }
  if (eq != NULL) return apply_option(p, d, 0, eq + 1);
  if (*i + 1 >= argc)
    return cli_usage_error("option '%s' requires an argument", spelled);
  (*i)++;
  return apply_option(p, d, 0, argv[*i]);
}

/* -h, -cNAME, -c NAME; flags may be grouped (-h). */
static int parse_short(parser_t *p, char **argv, int argc, int *i) {
  const char *s = argv[*i] + 1;

  for (; *s != '\0'; s++) {
    const opt_def_t *d = find_short(*s);
    if (d == NULL) return cli_usage_error("unknown option '-%c'", *s);
    if (!d->has_arg) {
      int rc = apply_option(p, d, 1, NULL);
      if (rc != 0) return rc;
      continue;
    }
    if (s[1] != '\0') return apply_option(p, d, 1, s + 1);
    if (*i + 1 >= argc)
      return cli_usage_error("option '-%c' requires an argument", *s);
    (*i)++;
    return apply_option(p, d, 1, argv[*i]);
  }
  return 0;
}

/* A word that starts with '-' but is a number ("-5", "-.5") is an argument:
 * no option is a digit, and `kvio incr hits -5` should just work. */
static int looks_numeric(const char *s) {
  return s[0] == '-' && ((s[1] >= '0' && s[1] <= '9') ||
                         (s[1] == '.' && s[2] >= '0' && s[2] <= '9'));
}

/* GNU-style permutation: options anywhere, "--" ends them. */
static int parse_argv(parser_t *p, int argc, char **argv) {
  int i;
  int rc;
  int only_args = 0;

  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (only_args || a[0] != '-' || a[1] == '\0' || looks_numeric(a)) {
      p->pos[p->npos++] = argv[i];
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_args = 1;
      continue;
    }
    rc = a[1] == '-' ? parse_long(p, argv, argc, &i)
                     : parse_short(p, argv, argc, &i);
    if (rc != 0) return rc;
  }
  return 0;
}

static const cli_cmd_t *find_command(const char *name) {
  size_t i;
  for (i = 0; i < N_COMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

static int arity_error(const cli_cmd_t *cmd, const char *what) {
  fprintf(stderr, "kvio: %s for '%s'\nUsage: kvio %s\n", what, cmd->name,
          cmd->usage);
  fprintf(stderr, "Try 'kvio --help' for more information.\n");
  return CLI_EXIT_USAGE;
}

/* Checks that need the command: arity and options that do not apply. */
static int check_command(const parser_t *p, const cli_cmd_t *cmd) {
  unsigned extra = p->groups_seen & ~cmd->opts;
  size_t nargs = p->npos - 1;
  const opt_def_t *d;
  int bit;

  if (extra != 0) {
    for (bit = 0; !(extra & (1u << bit)); bit++)
      ;
    d = p->group_def[bit];
    if (p->group_short[bit])
      return cli_usage_error("option '-%c' does not apply to '%s'", d->sname,
                             cmd->name);
    return cli_usage_error("option '--%s' does not apply to '%s'", d->lname,
                           cmd->name);
  }
  if (nargs < (size_t)cmd->min) return arity_error(cmd, "missing argument");
  if (cmd->max >= 0 && nargs > (size_t)cmd->max)
    return arity_error(cmd, "too many arguments");
  if (strcmp(cmd->name, "cas") == 0 && nargs != (p->o->absent ? 2u : 3u))
    return arity_error(cmd, nargs < 3 && !p->o->absent ? "missing argument"
                                                       : "too many arguments");
  return 0;
}

static int run_command(const cli_cmd_t *cmd, const cli_opts_t *o) {
  cli_ctx_t ctx;
  int rc;

  memset(&ctx, 0, sizeof(ctx));
  ctx.o = o;
  rc = cli_wrap_check(o);
  if (rc != 0) return rc;
  if (cmd->store) {
    rc = cli_open_sync(o, o->store_url, &ctx.sync);
    if (rc != 0) return rc;
  }
  rc = cmd->run(&ctx);
  if (ctx.sync != NULL) kv_sync_close(ctx.sync);
  return rc;
}

static void opts_init(cli_opts_t *o) {
  const char *env = getenv("KVIO_STORE");

  memset(o, 0, sizeof(*o));
  o->store_url = env != NULL && env[0] != '\0' ? env : CLI_DEFAULT_STORE;
  o->ttl = KV_TTL_NONE;
  o->clients = 64;
  o->size = 100;
  o->keys = 10000;
}

static void opts_free(cli_opts_t *o) {
  size_t i;
  for (i = 0; i < o->nwraps; i++)
    cli_wrap_free(&o->wraps[i]);
  free(o->wraps);
}

static int finish_output(int rc) {
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "kvio: write error: %s\n", strerror(errno));
    return CLI_EXIT_STORE;
  }
  return rc;
}

static int dispatch(parser_t *p) {
  const cli_cmd_t *cmd;
  cli_opts_t *o = p->o;
  int rc;

  if (p->help) {
    fputs(help_text, stdout);
    return CLI_EXIT_OK;
  }
  if (p->version) {
    printf("kvio %s\n", kv_version_string());
    return CLI_EXIT_OK;
  }
  if (p->npos == 0) return cli_usage_error("no command given");
  if (strcmp(p->pos[0], "help") == 0) {
    fputs(help_text, stdout);
    return CLI_EXIT_OK;
  }
  cmd = find_command(p->pos[0]);
  if (cmd == NULL) return cli_usage_error("unknown command '%s'", p->pos[0]);
  rc = check_command(p, cmd);
  if (rc == 0 && cmd->run == cli_cmd_bench) rc = cli_bench_check(o);
  if (rc != 0) return rc;
  o->command = cmd->name;
  o->args = p->pos + 1;
  o->nargs = p->npos - 1;
  return run_command(cmd, o);
}

int main(int argc, char **argv) {
  cli_opts_t o;
  parser_t p;
  int rc;

  opts_init(&o);
  memset(&p, 0, sizeof(p));
  p.o = &o;
  p.pos = calloc((size_t)argc + 1, sizeof(*p.pos));
  if (p.pos == NULL) {
    fprintf(stderr, "kvio: out of memory\n");
    return CLI_EXIT_STORE;
  }
  rc = parse_argv(&p, argc, argv);
  if (rc == 0) rc = dispatch(&p);
  free(p.pos);
  opts_free(&o);
  return finish_output(rc);
}
