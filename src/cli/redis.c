/* The Redis commands of the CLI: publish, subscribe, redis (a raw
 * command). They need a Redis store (redis://, rediss://, redis+unix://,
 * redis+cluster://, redis+sentinel://, ... without --wrap): on any other
 * store they exit 3 with KV_ENOTSUP. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#ifdef KV_HAVE_REDIS
#include "kvio/redis.h"

static int need_redis(cli_ctx_t *ctx, kv_store_t **out) {
  kv_store_t *s = kv_sync_store(ctx->sync);
  char msg[256];
  if (s != NULL && (strcmp(kv_store_name(s), "redis") == 0 ||
                    strcmp(kv_store_name(s), "redis+cluster") == 0 ||
                    strcmp(kv_store_name(s), "redis+sentinel") == 0)) {
    *out = s;
    return 0;
  }
  snprintf(msg, sizeof msg,
           "'%s' needs a Redis store (redis://, rediss://, redis+unix://, "
           "redis+cluster://, redis+sentinel://, ...), not %s%s",
           ctx->o->command, s ? kv_store_name(s) : "this store",
           ctx->o->nwraps ? " (wrapped stores are not Redis stores)" : "");
  return cli_store_error(KV_ENOTSUP, msg);
}

static void raw_done(kv_redis_req_t *req) {
  *(int *)req->data = 1;
}

/* Run one raw request (req->data points to its done flag) to its end on
 * the facade's loop. */
static int run_raw(cli_ctx_t *ctx, kv_redis_req_t *req, int rc) {
  if (rc != 0) return rc;
  while (!*(int *)req->data)
    uv_run(kv_sync_loop(ctx->sync), UV_RUN_ONCE);
  return req->status;
}

int cli_cmd_publish(cli_ctx_t *ctx) {
  const cli_opts_t *o = ctx->o;
  kv_store_t *s;
  kv_redis_req_t req;
  int done = 0;
  int rc = need_redis(ctx, &s);
  if (rc != 0) return rc;
  memset(&req, 0, sizeof req);
  req.data = &done;
  rc = run_raw(ctx, &req,
               kv_redis_publish(s, &req, o->args[0], o->args[1],
                                strlen(o->args[1]), raw_done));
  if (rc != 0) {
    rc = cli_store_error(rc, kv_redis_req_errmsg(&req));
  } else if (req.reply->type == KV_REDIS_REPLY_ERROR) {
    rc = cli_store_error(KV_EBACKEND, req.reply->str);
  } else {
    rc = o->json ? cli_json_print(json_integer(req.reply->integer))
                 : cli_printf("%lld\n", req.reply->integer);
  }
  kv_redis_req_cleanup(&req);
  return rc;
}

/* redis-cli's output when it is not writing to a terminal. */
static int print_reply(const kv_redis_reply_t *r, int top) {
  int rc = 0;
  switch (r->type) {
  case KV_REDIS_REPLY_INTEGER:
    return cli_printf("%lld\n", r->integer);
  case KV_REDIS_REPLY_NIL:
    return cli_printf("\n");
  case KV_REDIS_REPLY_ARRAY:
    if (r->elements == 0) return top ? cli_printf("\n") : 0;
    for (size_t i = 0; i < r->elements && rc == 0; i++)
      rc = print_reply(r->element[i], 0);
    return rc;
  default: /* STRING, STATUS, an ERROR inside an array (EXEC) */
    rc = cli_write(r->str, r->len);
    return rc ? rc : cli_printf("\n");
  }
}

int cli_cmd_redis(cli_ctx_t *ctx) {
  const cli_opts_t *o = ctx->o;
  kv_store_t *s;
  kv_redis_req_t req;
  int done = 0;
  int rc = need_redis(ctx, &s);
  if (rc != 0) return rc;
  memset(&req, 0, sizeof req);
  req.data = &done;
  rc = run_raw(ctx, &req,
               kv_redis_command(s, &req, (int)o->nargs, (const char **)o->args,
                                NULL, raw_done));
  if (rc != 0)
    rc = cli_store_error(rc, kv_redis_req_errmsg(&req));
  else if (req.reply->type == KV_REDIS_REPLY_ERROR)
    rc = cli_store_error(KV_EBACKEND, req.reply->str);
  else
    rc = print_reply(req.reply, 1);
  kv_redis_req_cleanup(&req);
  return rc;
}

typedef struct {
  const cli_opts_t *o;
  size_t seen;
  int connected;
  int rc;
} sub_state_t;

static void on_sub(kv_redis_sub_t *sub, const kv_redis_msg_t *m) {
  sub_state_t *ss = kv_redis_sub_data(sub);
  switch (m->event) {
  case KV_REDIS_SUB_MESSAGE:
    if (ss->rc != 0 || (ss->o->count && ss->seen >= ss->o->count)) return;
    if (ss->o->pattern) {
      if (m->pattern == NULL) return;
      ss->rc = cli_write_escaped(m->pattern, m->pattern_len);
      if (ss->rc == 0) ss->rc = cli_write("\t", 1);
    }
    if (ss->rc == 0) ss->rc = cli_write_escaped(m->channel, m->channel_len);
    if (ss->rc == 0) ss->rc = cli_write("\t", 1);
    if (ss->rc == 0) ss->rc = cli_write_escaped(m->payload, m->payload_len);
    if (ss->rc == 0) ss->rc = cli_write("\n", 1);
    if (ss->rc == 0 && fflush(stdout) != 0) {
      fprintf(stderr, "kvio: write error: %s\n", strerror(errno));
      ss->rc = CLI_EXIT_STORE;
    }
    ss->seen++;
    if (ss->rc != 0 || (ss->o->count && ss->seen >= ss->o->count))
      kv_redis_sub_close(sub);
    return;
  case KV_REDIS_SUB_SUBSCRIBED:
    ss->connected = 1;
    return;
  case KV_REDIS_SUB_DOWN:
    if (!ss->connected) { /* never subscribed: the error is the answer */
      ss->rc = cli_store_error(m->status, m->errmsg);
      kv_redis_sub_close(sub);
    } else {
      fprintf(stderr,
              "kvio: subscription interrupted: %s: %s "
              "(reconnecting)\n",
              kv_err_name(m->status), m->errmsg);
    }
    return;
  case KV_REDIS_SUB_GAP:
    fprintf(stderr, "kvio: subscribed again; messages published while "
                    "disconnected were lost\n");
    return;
  default:
    return;
  }
}

int cli_cmd_subscribe(cli_ctx_t *ctx) {
  const cli_opts_t *o = ctx->o;
  kv_store_t *s;
  kv_redis_sub_t *sub;
  sub_state_t ss;
  int rc = need_redis(ctx, &s);
  if (rc != 0) return rc;
  memset(&ss, 0, sizeof ss);
  ss.o = o;
  rc = kv_redis_subscriber(s, on_sub, &ss, &sub);
  if (rc != 0) return cli_store_error(rc, "cannot create a subscriber");
  rc = o->pattern
           ? kv_redis_sub_psubscribe(sub, (int)o->nargs, (const char **)o->args)
           : kv_redis_sub_subscribe(sub, (int)o->nargs, (const char **)o->args);
  if (rc != 0) {
    kv_redis_sub_close(sub);
    ss.rc = cli_store_error(rc, "cannot subscribe");
  }
  /* Until --count messages (or an error) closed the subscriber. */
  uv_run(kv_sync_loop(ctx->sync), UV_RUN_DEFAULT);
  return ss.rc;
}

#else /* built without the redis part */

static int no_redis(cli_ctx_t *ctx) {
  char msg[160];
  snprintf(msg, sizeof msg,
           "'%s' needs a Redis store; this kvio was built without Redis",
           ctx->o->command);
  return cli_store_error(KV_ENOTSUP, msg);
}

int cli_cmd_publish(cli_ctx_t *ctx) {
  return no_redis(ctx);
}

int cli_cmd_subscribe(cli_ctx_t *ctx) {
  return no_redis(ctx);
}

int cli_cmd_redis(cli_ctx_t *ctx) {
  return no_redis(ctx);
}

#endif
