/* redis://, rediss://, redis+unix:// (and the valkey aliases): the Redis /
 * Valkey store. The connection lives in redis_conn.c; this file maps kvio's
 * operations to commands and replies to results.
 *
 * Layout: entry (c, k) is the string key P + E(c) + ":" + k, P the URL's
 * prefix, E escaping '%' as "%25" and ':' as "%3A" (so the first ':' after P
 * ends the collection: no two (c, k) pairs share a key). Values are the
 * user's bytes. TTLs are native: SET ... PX, PTTL; a put_many with a TTL is
 * one script per 1,000 keys that sets every key with PXAT: the first reads
 * the server's clock and returns the expiry, which the others (sent when it
 * has answered) are given, so the batch has one expiry time; ttl_many reads
 * TIME and PEXPIRETIME in one round trip, so equal expiries report equal
 * TTLs. A cluster's parts of one request share the expiry and the clock the
 * same way (kv__redis_hook_t).
 *
 * Every operation is one or more commands pipelined on the store's
 * connection; the request counts its outstanding replies in
 * priv.store_data[0] and its first error in store_data[1], and completes
 * when the last reply (or failure) has come back. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "stores/redis_cluster.h"

#define CHUNK 1000 /* keys per MGET / MSET / DEL / script call */
#define SCAN_COUNT 1000

#define STORE(s) ((kv__redis_t *)(s))

/* Tags: the kind of a command in the high bits, an index below. */
enum {
  T_MAIN = 1, /* the single reply of a one-command op */
  T_PTTL,     /* ttl: PTTL after GET */
  T_TIME,     /* ttl_many: the server's clock */
  T_MGET,     /* get_many / ttl_many: index = first key of the chunk */
  T_PEXP,     /* ttl_many: PEXPIRETIME of key index */
  T_WRITE,    /* put_many: MSET chunk (index = first key) */
  T_SCRIPT,   /* put_many with TTL: script chunk (index = first key) */
  T_DEL,      /* delete_many: DEL chunk */
  T_IGNORE,   /* MULTI, QUEUED: only errors count */
  T_EXEC,     /* incr with TTL: EXEC */
  T_CAS,      /* cas script */
  T_SCAN,     /* keys, collections, destroy*: SCAN */
  T_UNLINK    /* destroy*: UNLINK of a SCAN page */
};
#define TAG(kind, i) (((uint64_t)(kind) << 48) | (uint64_t)(i))
#define TAG_KIND(t) ((int)((t) >> 48))
#define TAG_INDEX(t) ((size_t)((t) & ((1ull << 48) - 1)))

/* put_many with a TTL: one server timestamp for the chunk. */
static const char put_script[] =
    "local at = tonumber(ARGV[1])\n"
    "if at < 0 then\n"
    "  at = string.format('%.0f', -at)\n"
    "else\n"
    "  local t = redis.call('TIME')\n"
    "  at = string.format('%.0f', tonumber(t[1]) * 1000 + "
    "math.floor(tonumber(t[2]) / 1000) + at)\n"
    "end\n"
    "for i = 1, #KEYS do\n"
    "  redis.call('SET', KEYS[i], ARGV[i + 1], 'PXAT', at)\n"
    "end\n"
    "return tonumber(at)\n";

/* cas: ARGV = expect-absent flag, expected, new value, px (0 = none). */
static const char cas_script[] = "local v = redis.call('GET', KEYS[1])\n"
                                 "if ARGV[1] == '1' then\n"
                                 "  if v then return 0 end\n"
                                 "elseif v ~= ARGV[2] then\n"
                                 "  return 0\n"
                                 "end\n"
                                 "if ARGV[4] == '0' then\n"
                                 "  redis.call('SET', KEYS[1], ARGV[3])\n"
                                 "else\n"
                                 "  redis.call('SET', KEYS[1], ARGV[3], "
                                 "'PX', ARGV[4])\n"
                                 "end\n"
                                 "return 1\n";

/* ---- Names ------------------------------------------------------------- */

/* E(c), the collection as it appears in keys; with st->tag_collections it
 * is wrapped in a hash tag, "{" + E(c) + "}", E also escaping '}' as "%7D"
 * (so a collection's keys share one Redis Cluster slot). */
static size_t esc_len(const kv__redis_t *st, const char *c, size_t n) {
  size_t len = n + (st->tag_collections ? 2 : 0);
  for (size_t i = 0; i < n; i++)
    if (c[i] == '%' || c[i] == ':' || (c[i] == '}' && st->tag_collections))
      len += 2;
  return len;
}

static char *esc_write(const kv__redis_t *st, char *o, const char *c,
                       size_t n) {
  if (st->tag_collections) *o++ = '{';
  for (size_t i = 0; i < n; i++) {
    if (c[i] == '%') {
      memcpy(o, "%25", 3), o += 3;
    } else if (c[i] == ':') {
      memcpy(o, "%3A", 3), o += 3;
    } else if (c[i] == '}' && st->tag_collections) {
      memcpy(o, "%7D", 3), o += 3;
    } else {
      *o++ = c[i];
    }
  }
  if (st->tag_collections) *o++ = '}';
  return o;
}

/* Decode an escaped collection (no ':' inside) into out (>= n bytes).
 * Returns the length, or (size_t)-1 when it is not a valid escape. */
static size_t unesc(const kv__redis_t *st, const char *e, size_t n, char *out) {
  size_t o = 0;
  if (st->tag_collections) {
    if (n < 2 || e[0] != '{' || e[n - 1] != '}') return (size_t)-1;
    e++, n -= 2;
  }
  for (size_t i = 0; i < n; i++) {
    if (e[i] != '%') {
      if (e[i] == '}' && st->tag_collections) return (size_t)-1;
      out[o++] = e[i];
    } else if (i + 2 < n && e[i + 1] == '2' && e[i + 2] == '5') {
      out[o++] = '%', i += 2;
    } else if (i + 2 < n && e[i + 1] == '3' && e[i + 2] == 'A') {
      out[o++] = ':', i += 2;
    } else if (i + 2 < n && e[i + 1] == '7' && e[i + 2] == 'D' &&
               st->tag_collections) {
      out[o++] = '}', i += 2;
    } else {
      return (size_t)-1;
    }
  }
  return o;
}

/* A glob pattern matching exactly these bytes. */
static char *glob_write(char *o, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (strchr("*?[]\\", s[i]) != NULL && s[i] != '\0') *o++ = '\\';
    *o++ = s[i];
  }
  return o;
}

static int name_ok(const char *s, size_t n) {
  return n >= 1 && n <= KV_NAME_MAX && memchr(s, '\0', n) == NULL &&
         kv__utf8_valid(s, n);
}

/* ---- Building commands ------------------------------------------------- */

static char *scratch_grow(kv__redis_t *st, size_t n) {
  if (st->scratch_len + n > st->scratch_cap) {
    size_t cap = st->scratch_cap ? st->scratch_cap : 1024;
    char *p;
    while (cap < st->scratch_len + n)
      cap *= 2;
    p = kv_realloc(st->scratch, cap);
    if (p == NULL) {
      st->cmd_err = KV_ENOMEM;
      return NULL;
    }
    st->scratch = p;
    st->scratch_cap = cap;
  }
  return st->scratch + st->scratch_len;
}

static void cmd_begin(kv__redis_t *st) {
  st->nargs = 0;
  st->scratch_len = 0;
  st->cmd_err = 0;
}

/* An argument: external bytes (p, valid until cmd_send) or, with p NULL,
 * the `len` bytes last written at the end of the scratch buffer. */
static void cmd_push(kv__redis_t *st, const char *p, size_t off, size_t len) {
  if (st->nargs == st->cap_args) {
    size_t cap = st->cap_args ? st->cap_args * 2 : 16;
    void *a = kv_realloc(st->args, cap * sizeof *st->args);
    if (a == NULL) {
      st->cmd_err = KV_ENOMEM;
      return;
    }
    st->args = a;
    st->cap_args = cap;
  }
  st->args[st->nargs].p = p;
  st->args[st->nargs].off = off;
  st->args[st->nargs].len = len;
  st->nargs++;
}

static void cmd_ext(kv__redis_t *st, const void *p, size_t len) {
  cmd_push(st, p ? p : "", 0, len);
}

static void cmd_lit(kv__redis_t *st, const char *s) {
  cmd_ext(st, s, strlen(s));
}

static void cmd_int(kv__redis_t *st, int64_t v) {
  char *o = scratch_grow(st, 24);
  size_t n;
  if (o == NULL) return;
  n = kv_format_int64(v, o);
  cmd_push(st, NULL, st->scratch_len, n);
  st->scratch_len += n;
}

/* The Redis key of (collection, key): prefix + E(c) + ':' + key (E: see
 * esc_len). */
static void cmd_key(kv__redis_t *st, const char *c, size_t clen, const char *k,
                    size_t klen) {
  size_t n = st->prefix_len + esc_len(st, c, clen) + 1 + klen;
  char *o = scratch_grow(st, n);
  if (o == NULL) return;
  memcpy(o, st->prefix, st->prefix_len);
  o = esc_write(st, o + st->prefix_len, c, clen);
  *o++ = ':';
  memcpy(o, k, klen);
  cmd_push(st, NULL, st->scratch_len, n);
  st->scratch_len += n;
}

size_t kv__redis_format_key(const kv__redis_t *st, const char *c, size_t clen,
                            const char *k, size_t klen, char *buf, size_t cap) {
  size_t n = st->prefix_len + esc_len(st, c, clen) + 1 + klen;
  char *o = buf;
  if (n > cap) return n;
  memcpy(o, st->prefix, st->prefix_len);
  o = esc_write(st, o + st->prefix_len, c, clen);
  *o++ = ':';
  memcpy(o, k, klen);
  return n;
}

/* The MATCH pattern of a collection's keys (c NULL: of every key of the
 * store): the prefix and E(c) with glob characters escaped, then ":*". */
static void cmd_pattern(kv__redis_t *st, const char *c, size_t clen) {
  size_t elen = c ? esc_len(st, c, clen) : 0;
  char *tmp = NULL, *o, *start;
  if (c != NULL) {
    if ((tmp = kv_malloc(elen + 1)) == NULL) {
      st->cmd_err = KV_ENOMEM;
      return;
    }
    esc_write(st, tmp, c, clen);
  }
  o = start = scratch_grow(st, 2 * (st->prefix_len + elen) + 2);
  if (o != NULL) {
    o = glob_write(o, st->prefix, st->prefix_len);
    if (c != NULL) {
      o = glob_write(o, tmp, elen);
      *o++ = ':';
    }
    *o++ = '*';
    cmd_push(st, NULL, st->scratch_len, (size_t)(o - start));
    st->scratch_len += (size_t)(o - start);
  }
  kv_free(tmp);
}

/* Format the command built since cmd_begin and queue it. */
static int cmd_send(kv__redis_t *st, kv__redis_reply_fn fn, void *ctx,
                    uint64_t tag) {
  if (st->cmd_err) return st->cmd_err;
  if (st->nargs > st->cap_argv) {
    const char **v = kv_realloc(st->argv, st->nargs * sizeof *v);
    size_t *l;
    if (v == NULL) return KV_ENOMEM;
    st->argv = v;
    l = kv_realloc(st->argvlen, st->nargs * sizeof *l);
    if (l == NULL) return KV_ENOMEM;
    st->argvlen = l;
    st->cap_argv = st->nargs;
  }
  for (size_t i = 0; i < st->nargs; i++) {
    st->argv[i] = st->args[i].p ? st->args[i].p : st->scratch + st->args[i].off;
    st->argvlen[i] = st->args[i].len;
  }
  return kv__redis_queue_argv(st, st->nargs, st->argv, st->argvlen, fn, ctx,
                              tag);
}

/* ---- Requests ------------------------------------------------------------ */

#define LEFT(req) ((req)->priv.store_data[0])
#define FIRST_ERR(req) ((int)(intptr_t)(req)->priv.store_data[1])

static void req_fail(kv_req_t *req, int err, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void req_fail(kv_req_t *req, int err, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  if (FIRST_ERR(req) != 0) return;
  req->priv.store_data[1] = (void *)(intptr_t)err;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  kv_req_set_error(req, err, "%s", msg);
}

static void state_free(kv_req_t *req);

static void req_finish(kv_req_t *req) {
  int err = FIRST_ERR(req);
  kv__redis_hook_t *hook = KV__REDIS_HOOK(req);
  state_free(req);
  if (hook != NULL && req->op == KV_OP_TTL_MANY) hook->ttl_time_ms = req->ttl;
  if (hook != NULL && req->op == KV_OP_PUT_MANY)
    hook->put_at_out = (int64_t)req->ttl;
  /* scratch of these two (the server's time, the batch's expiry) */
  if (req->op == KV_OP_TTL_MANY || req->op == KV_OP_PUT_MANY) req->ttl = 0;
  if (err != 0 && req->op == KV_OP_CAS) req->found = 0;
  if (hook != NULL) /* run for redis+cluster:// or redis+sentinel:// */
    hook->finish(hook, req, err);
  else
    kv_req_complete(req, err);
}

static void part_done(kv_req_t *req) {
  uintptr_t left = (uintptr_t)LEFT(req) - 1;
  LEFT(req) = (void *)left;
  if (left == 0) req_finish(req);
}

static void on_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                     kv_redis_reply_t *r, int err, const char *msg);

/* Send the command built for req; counts it as one outstanding reply. */
static int send_part(kv__redis_t *st, kv_req_t *req, uint64_t tag) {
  int rc = cmd_send(st, on_reply, req, tag);
  if (rc == 0) {
    LEFT(req) = (void *)((uintptr_t)LEFT(req) + 1);
  } else {
    req_fail(req, rc, "out of memory");
  }
  return rc;
}

/* An op's submit ends here: if nothing could be sent, complete now. */
static int submitted(kv_req_t *req) {
  if (LEFT(req) == NULL) req_finish(req);
  return 0;
}

/* Connect if needed; when the store is backing off, the request fails with
 * the last attempt's error (completed, not refused: it is a result). */
static int begin(kv__redis_t *st, kv_req_t *req) {
  int err = kv__redis_ready(st);
  if (err == 0) return 0;
  if (st->state == KV__REDIS_BACKOFF) {
    uint64_t now = kv__redis_now_ms();
    req_fail(req, err, "%s (next attempt in %llu ms)", st->last_msg,
             (unsigned long long)(st->retry_at > now ? st->retry_at - now : 0));
  } else {
    req_fail(req, err, "%s", st->last_msg);
  }
  req_finish(req);
  return err;
}

static int64_t px_of(const kv_req_t *req) {
  int64_t px = req->in.expires_at_ms - req->in.now_ms;
  return px < 1 ? 1 : px;
}

/* ---- Reply handling ---------------------------------------------------- */

static size_t chunk_end(const kv_req_t *req, size_t start);
static void send_put_script(kv__redis_t *st, kv_req_t *req, size_t start,
                            int eval);

static int reply_is(const kv_redis_reply_t *r, int type) {
  return r != NULL && r->type == type;
}

/* Move a string reply into req->value. */
static void take_value(kv_req_t *req, kv_redis_reply_t *r) {
  kv_req_give_value(req, r->str, r->len);
  r->str = NULL;
}

static void drop_value(kv_req_t *req) {
  kv_free(req->value.base);
  req->value.base = NULL;
  req->value.len = 0;
  req->found = 0;
}

static void bad_reply(kv__redis_t *st, kv_req_t *req,
                      const kv_redis_reply_t *r) {
  req_fail(req, KV_EPROTO, "unexpected reply of type %d from %s", r->type,
           st->endpoint);
}

static void scan_reply(kv__redis_t *st, kv_req_t *req, kv_redis_reply_t *r);
static void unlink_keys(kv__redis_t *st, kv_req_t *req, kv_redis_reply_t *keys);

static void handle(kv__redis_t *st, kv_req_t *req, uint64_t tag,
                   kv_redis_reply_t *r) {
  size_t idx = TAG_INDEX(tag);
  switch (TAG_KIND(tag)) {
  case T_MAIN:
    switch (req->op) {
    case KV_OP_GET:
    case KV_OP_TTL:
    case KV_OP_TAKE:
      if (reply_is(r, KV_REDIS_REPLY_STRING))
        take_value(req, r);
      else if (!reply_is(r, KV_REDIS_REPLY_NIL))
        bad_reply(st, req, r);
      return;
    case KV_OP_PUT:
      return;
    case KV_OP_DELETE:
      if (reply_is(r, KV_REDIS_REPLY_INTEGER))
        req->found = r->integer > 0;
      else
        bad_reply(st, req, r);
      return;
    case KV_OP_PUT_IF_ABSENT:
      req->found = reply_is(r, KV_REDIS_REPLY_STATUS);
      return;
    case KV_OP_INCR:
      if (reply_is(r, KV_REDIS_REPLY_INTEGER))
        req->number = r->integer;
      else
        bad_reply(st, req, r);
      return;
    default:
      return;
    }
  case T_PTTL:
    if (!req->found) return;
    if (!reply_is(r, KV_REDIS_REPLY_INTEGER)) {
      bad_reply(st, req, r);
    } else if (r->integer == -1) {
      req->ttl = KV_TTL_NONE;
    } else if (r->integer <= 0) {
      drop_value(req); /* gone or expiring between GET and PTTL */
    } else {
      req->ttl = (double)r->integer / 1000.0;
    }
    return;
  case T_TIME: {
    /* Seconds and microseconds, both decimal: anything else (a NaN
     * would make every TTL NaN) is a bad reply. */
    char *end0 = NULL, *end1 = NULL;
    double secs = 0;
    long long us = 0;
    if (reply_is(r, KV_REDIS_REPLY_ARRAY) && r->elements == 2 &&
        r->element[0]->str && r->element[1]->str) {
      secs = strtod(r->element[0]->str, &end0);
      us = strtoll(r->element[1]->str, &end1, 10);
    }
    if (end0 == NULL || end0 == r->element[0]->str || *end0 != '\0' ||
        end1 == r->element[1]->str || *end1 != '\0' ||
        !(secs >= 0 && secs < 1e13) || us < 0)
      bad_reply(st, req, r);
    else
      req->ttl = secs * 1000.0 + (double)(us / 1000);
    return;
  }
  case T_MGET:
    if (!reply_is(r, KV_REDIS_REPLY_ARRAY)) {
      bad_reply(st, req, r);
      return;
    }
    for (size_t i = 0; i < r->elements && idx + i < req->nresults; i++) {
      kv_redis_reply_t *e = r->element[i];
      kv_result_t *res = &req->results[idx + i];
      if (e->type != KV_REDIS_REPLY_STRING) continue;
      res->found = 1;
      res->value.base = e->str;
      res->value.len = e->len;
      e->str = NULL;
    }
    return;
  case T_PEXP: {
    kv_result_t *res = &req->results[idx];
    if (!reply_is(r, KV_REDIS_REPLY_INTEGER)) {
      bad_reply(st, req, r);
      return;
    }
    if (!res->found) return;
    if (r->integer == -1) {
      res->ttl = KV_TTL_NONE;
    } else if (r->integer < 0 || (double)r->integer <= req->ttl) {
      kv_free(res->value.base); /* gone, or expired by the server's clock */
      res->value.base = NULL;
      res->value.len = 0;
      res->found = 0;
    } else {
      res->ttl = ((double)r->integer - req->ttl) / 1000.0;
    }
    return;
  }
  case T_DEL: /* at most the keys of the chunk were removed */
    if (reply_is(r, KV_REDIS_REPLY_INTEGER) && r->integer >= 0 &&
        (unsigned long long)r->integer <=
            (req->in.n - idx > CHUNK ? CHUNK : req->in.n - idx))
      req->count += (size_t)r->integer;
    else
      bad_reply(st, req, r);
    return;
  case T_EXEC:
    if (!reply_is(r, KV_REDIS_REPLY_ARRAY) || r->elements != 2) {
      bad_reply(st, req, r);
    } else if (r->element[1]->type == KV_REDIS_REPLY_ERROR) {
      req_fail(req, KV_EINVAL, "incr of key '%s': %s", req->in.key,
               r->element[1]->str);
    } else if (r->element[1]->type == KV_REDIS_REPLY_INTEGER) {
      req->number = r->element[1]->integer;
    } else {
      bad_reply(st, req, r);
    }
    return;
  case T_CAS:
    if (!reply_is(r, KV_REDIS_REPLY_INTEGER)) {
      bad_reply(st, req, r);
    } else if (r->integer == 1) {
      req->found = 1;
    } else {
      req_fail(req, KV_ECONFLICT,
               req->in.expected_absent
                   ? "key '%s' exists"
                   : "key '%s' does not hold the expected value",
               req->in.key);
    }
    return;
  case T_SCAN:
    scan_reply(st, req, r);
    return;
  case T_SCRIPT: /* the batch's expiry: every later chunk gets it */
    if (!reply_is(r, KV_REDIS_REPLY_INTEGER) || r->integer <= 0) {
      bad_reply(st, req, r);
      return;
    }
    if (req->ttl == 0) {
      req->ttl = (double)r->integer;
      for (size_t i = chunk_end(req, 0); i < req->in.n; i = chunk_end(req, i)) {
        send_put_script(st, req, i, 0);
        if (FIRST_ERR(req) != 0) break;
      }
    }
    return;
  default: /* T_WRITE, T_IGNORE, T_UNLINK */
    return;
  }
}

static void send_cas(kv__redis_t *st, kv_req_t *req, int eval);

static void on_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                     kv_redis_reply_t *r, int err, const char *msg) {
  kv_req_t *req = p->ctx;
  int kind = TAG_KIND(p->tag);
  if (err != 0) {
    req_fail(req, err, "%s", msg);
  } else if (r->type == KV_REDIS_REPLY_ERROR) {
    if (KV__REDIS_HOOK(req) != NULL && KV__REDIS_HOOK(req)->error_reply != NULL)
      KV__REDIS_HOOK(req)->error_reply(KV__REDIS_HOOK(req), st, req, r);
    if (r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0 &&
        FIRST_ERR(req) == 0 && (kind == T_SCRIPT || kind == T_CAS)) {
      /* The script cache was flushed: send the script itself. */
      if (kind == T_SCRIPT)
        send_put_script(st, req, TAG_INDEX(p->tag), 1);
      else
        send_cas(st, req, 1);
    } else if (req->op == KV_OP_INCR &&
               (r->len >= 4 && memcmp(r->str, "ERR ", 4) == 0)) {
      req_fail(req, KV_EINVAL, "incr of key '%s': %s", req->in.key, r->str);
    } else {
      req_fail(req, kv__redis_error_code(r->str, r->len), "%s: %s",
               st->endpoint, r->str);
    }
  } else if (FIRST_ERR(req) == 0) {
    handle(st, req, p->tag, r);
  }
  part_done(req);
}

/* ---- Single-key operations --------------------------------------------- */

static int rds_single(kv_store_t *s, kv_req_t *req, const char *cmd) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  if (begin(st, req)) return 0;
  cmd_begin(st);
  cmd_lit(st, cmd);
  cmd_key(st, req->in.collection, req->in.collection_len, req->in.key,
          req->in.key_len);
  send_part(st, req, TAG(T_MAIN, 0));
  return submitted(req);
}

static int rds_get(kv_store_t *s, kv_req_t *req) {
  return rds_single(s, req, "GET");
}

static int rds_ttl(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  if (begin(st, req)) return 0;
  cmd_begin(st);
  cmd_lit(st, "GET");
  cmd_key(st, req->in.collection, req->in.collection_len, req->in.key,
          req->in.key_len);
  if (send_part(st, req, TAG(T_MAIN, 0)) == 0) {
    cmd_begin(st);
    cmd_lit(st, "PTTL");
    cmd_key(st, req->in.collection, req->in.collection_len, req->in.key,
            req->in.key_len);
    send_part(st, req, TAG(T_PTTL, 0));
  }
  return submitted(req);
}

static int rds_delete(kv_store_t *s, kv_req_t *req) {
  return rds_single(s, req, "DEL");
}

static int rds_take(kv_store_t *s, kv_req_t *req) {
  return rds_single(s, req, "GETDEL");
}

static void cmd_set(kv__redis_t *st, kv_req_t *req, int nx) {
  cmd_begin(st);
  cmd_lit(st, "SET");
  cmd_key(st, req->in.collection, req->in.collection_len, req->in.key,
          req->in.key_len);
  cmd_ext(st, req->in.value.base, req->in.value.len);
  if (nx) cmd_lit(st, "NX");
  if (req->in.expires_at_ms != 0) {
    cmd_lit(st, "PX");
    cmd_int(st, px_of(req));
  }
}

static int rds_put(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  if (begin(st, req)) return 0;
  cmd_set(st, req, 0);
  send_part(st, req, TAG(T_MAIN, 0));
  return submitted(req);
}

static int rds_put_if_absent(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  if (begin(st, req)) return 0;
  cmd_set(st, req, 1);
  send_part(st, req, TAG(T_MAIN, 0));
  return submitted(req);
}

static int rds_incr(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  if (begin(st, req)) return 0;
  if (req->in.expires_at_ms == 0) {
    cmd_begin(st);
    cmd_lit(st, "INCRBY");
    cmd_key(st, req->in.collection, req->in.collection_len, req->in.key,
            req->in.key_len);
    cmd_int(st, req->in.delta);
    send_part(st, req, TAG(T_MAIN, 0));
    return submitted(req);
  }
  /* A new key gets the TTL, an existing one keeps its own: SET NX PX then
   * INCRBY, atomically (MULTI / EXEC, written together). */
  cmd_begin(st);
  cmd_lit(st, "MULTI");
  if (send_part(st, req, TAG(T_IGNORE, 0)) != 0) return submitted(req);
  cmd_begin(st);
  cmd_lit(st, "SET");
  cmd_key(st, req->in.collection, req->in.collection_len, req->in.key,
          req->in.key_len);
  cmd_lit(st, "0");
  cmd_lit(st, "NX");
  cmd_lit(st, "PX");
  cmd_int(st, px_of(req));
  if (send_part(st, req, TAG(T_IGNORE, 0)) == 0) {
    cmd_begin(st);
    cmd_lit(st, "INCRBY");
    cmd_key(st, req->in.collection, req->in.collection_len, req->in.key,
            req->in.key_len);
    cmd_int(st, req->in.delta);
    send_part(st, req, TAG(T_IGNORE, 0));
  }
  /* EXEC even after a failure above: MULTI must not stay open. */
  cmd_begin(st);
  cmd_lit(st, "EXEC");
  send_part(st, req, TAG(T_EXEC, 0));
  return submitted(req);
}

static void send_cas(kv__redis_t *st, kv_req_t *req, int eval) {
  int64_t px = req->in.expires_at_ms ? px_of(req) : 0;
  cmd_begin(st);
  if (eval) {
    cmd_lit(st, "EVAL");
    cmd_lit(st, cas_script);
  } else {
    cmd_lit(st, "EVALSHA");
    cmd_lit(st, st->sha_cas);
  }
  cmd_lit(st, "1");
  cmd_key(st, req->in.collection, req->in.collection_len, req->in.key,
          req->in.key_len);
  cmd_lit(st, req->in.expected_absent ? "1" : "0");
  cmd_ext(st, req->in.expected.base, req->in.expected.len);
  cmd_ext(st, req->in.value.base, req->in.value.len);
  cmd_int(st, px);
  send_part(st, req, TAG(T_CAS, 0));
}

static int rds_cas(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  if (begin(st, req)) return 0;
  send_cas(st, req, 0);
  return submitted(req);
}

/* ---- Bulk operations ----------------------------------------------------- */

static void cmd_keys(kv__redis_t *st, kv_req_t *req, size_t start, size_t end) {
  for (size_t i = start; i < end; i++)
    cmd_key(st, req->in.collection, req->in.collection_len,
            req->in.keys[i].base, req->in.keys[i].len);
}

static size_t chunk_end(const kv_req_t *req, size_t start) {
  return req->in.n - start > CHUNK ? start + CHUNK : req->in.n;
}

static int rds_get_many(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  if (kv_req_alloc_results(req) != 0) {
    req_fail(req, KV_ENOMEM, "out of memory");
    return submitted(req);
  }
  if (req->in.n == 0) return submitted(req);
  if (begin(st, req)) return 0;
  if (req->op == KV_OP_TTL_MANY) {
    cmd_begin(st);
    cmd_lit(st, "TIME");
    if (send_part(st, req, TAG(T_TIME, 0)) != 0) return submitted(req);
  }
  for (size_t i = 0; i < req->in.n; i = chunk_end(req, i)) {
    cmd_begin(st);
    cmd_lit(st, "MGET");
    cmd_keys(st, req, i, chunk_end(req, i));
    if (send_part(st, req, TAG(T_MGET, i)) != 0) return submitted(req);
  }
  if (req->op == KV_OP_TTL_MANY) {
    for (size_t i = 0; i < req->in.n; i++) {
      cmd_begin(st);
      cmd_lit(st, "PEXPIRETIME");
      cmd_keys(st, req, i, i + 1);
      if (send_part(st, req, TAG(T_PEXP, i)) != 0) break;
    }
  }
  return submitted(req);
}

static void send_put_script(kv__redis_t *st, kv_req_t *req, size_t start,
                            int eval) {
  size_t end = chunk_end(req, start);
  cmd_begin(st);
  if (eval) {
    cmd_lit(st, "EVAL");
    cmd_lit(st, put_script);
  } else {
    cmd_lit(st, "EVALSHA");
    cmd_lit(st, st->sha_put);
  }
  cmd_int(st, (int64_t)(end - start));
  cmd_keys(st, req, start, end);
  /* the first chunk: the server's TIME + the TTL; the others (and parts of
   * one request on other nodes): the expiry it gave, negated */
  cmd_int(st, req->ttl > 0 ? -(int64_t)req->ttl : px_of(req));
  for (size_t i = start; i < end; i++)
    cmd_ext(st, req->in.values[i].base, req->in.values[i].len);
  send_part(st, req, TAG(T_SCRIPT, start));
}

static int rds_put_many(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  kv__redis_hook_t *hook = KV__REDIS_HOOK(req);
  if (req->in.n == 0) return submitted(req);
  if (begin(st, req)) return 0;
  req->ttl = hook != NULL ? (double)hook->put_at_in : 0;
  for (size_t i = 0; i < req->in.n; i = chunk_end(req, i)) {
    if (req->in.expires_at_ms != 0) {
      /* One expiry for the batch: without one given, the first chunk's
       * reply brings it, and the other chunks follow (handle, T_SCRIPT). */
      send_put_script(st, req, i, 0);
      if (req->ttl == 0) break;
    } else {
      cmd_begin(st);
      cmd_lit(st, "MSET");
      for (size_t j = i; j < chunk_end(req, i); j++) {
        cmd_key(st, req->in.collection, req->in.collection_len,
                req->in.keys[j].base, req->in.keys[j].len);
        cmd_ext(st, req->in.values[j].base, req->in.values[j].len);
      }
      send_part(st, req, TAG(T_WRITE, i));
    }
    if (FIRST_ERR(req) != 0) break;
  }
  return submitted(req);
}

static int rds_delete_many(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  if (req->in.n == 0) return submitted(req);
  if (begin(st, req)) return 0;
  for (size_t i = 0; i < req->in.n; i = chunk_end(req, i)) {
    cmd_begin(st);
    cmd_lit(st, "DEL");
    cmd_keys(st, req, i, chunk_end(req, i));
    if (send_part(st, req, TAG(T_DEL, i)) != 0) break;
  }
  return submitted(req);
}

/* ---- Enumeration and destroy: SCAN ------------------------------------- */

/* keys(): the state of one page. The cursor is "k<SCAN cursor in hex>", or
 * "k<hex>/<name>" when the last page stopped inside the batch that SCAN
 * returns for that cursor: that batch is read again and the names up to
 * <name> (in byte order) skipped. */
typedef struct {
  char *after; /* first member (freed by req_finish) */
  size_t after_len;
  unsigned long long scan;
} keys_state_t;

/* collections(): the whole keyspace of the store is scanned for every page;
 * names are collected, sorted and paged by the last name listed. */
typedef struct {
  kv_buf_t *names;
  size_t n, cap, sorted;
} coll_state_t;

typedef struct {
  const char *p;
  size_t len;
} span_t;

static int span_cmp(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
  if (c) return c;
  return x->len < y->len ? -1 : x->len > y->len;
}

static int buf_cmp(const void *a, const void *b) {
  const kv_buf_t *x = a, *y = b;
  span_t sx = {x->base, x->len}, sy = {y->base, y->len};
  return span_cmp(&sx, &sy);
}

/* Sort names and free the duplicates. Returns the new count. */
static size_t sort_unique(kv_buf_t *v, size_t n) {
  size_t o = 0;
  if (n == 0) return 0;
  qsort(v, n, sizeof *v, buf_cmp);
  for (size_t i = 0; i < n; i++) {
    if (o > 0 && buf_cmp(&v[o - 1], &v[i]) == 0) {
      kv_free(v[i].base);
      continue;
    }
    v[o++] = v[i];
  }
  return o;
}

static void send_scan(kv__redis_t *st, kv_req_t *req, unsigned long long cur) {
  char num[24];
  int whole = req->op != KV_OP_KEYS && req->op != KV_OP_DESTROY_COLLECTION;
  size_t count = SCAN_COUNT;
  if (req->op == KV_OP_KEYS && req->in.limit < count)
    count = req->in.limit < 100 ? 100 : req->in.limit;
  snprintf(num, sizeof num, "%llu", cur);
  cmd_begin(st);
  cmd_lit(st, "SCAN");
  cmd_lit(st, num);
  cmd_lit(st, "MATCH");
  cmd_pattern(st, whole ? NULL : req->in.collection, req->in.collection_len);
  cmd_lit(st, "COUNT");
  cmd_int(st, (int64_t)count);
  send_part(st, req, TAG(T_SCAN, 0));
}

/* Parse a key of this store: the collection (decoded into cbuf, >= len
 * bytes) and the key. 0 if it is not one of ours. */
static int parse_key(kv__redis_t *st, const char *k, size_t len, char *cbuf,
                     size_t *clen, const char **key, size_t *klen) {
  const char *colon;
  if (len < st->prefix_len || memcmp(k, st->prefix, st->prefix_len) != 0)
    return 0;
  k += st->prefix_len, len -= st->prefix_len;
  colon = memchr(k, ':', len);
  if (colon == NULL) return 0;
  *clen = unesc(st, k, (size_t)(colon - k), cbuf);
  *key = colon + 1;
  *klen = len - (size_t)(colon - k) - 1;
  return *clen != (size_t)-1 && name_ok(cbuf, *clen) && name_ok(*key, *klen);
}

static int keys_page(kv__redis_t *st, kv_req_t *req, kv_redis_reply_t *batch,
                     unsigned long long next) {
  keys_state_t *ks = req->priv.store_data[2];
  size_t plen = st->prefix_len +
                esc_len(st, req->in.collection, req->in.collection_len) + 1;
  span_t *v = kv_malloc((batch->elements ? batch->elements : 1) * sizeof *v);
  size_t n = 0, i = 0, room;
  char cur[40];
  if (v == NULL) return KV_ENOMEM;
  for (size_t j = 0; j < batch->elements; j++) {
    kv_redis_reply_t *e = batch->element[j];
    if (e->type != KV_REDIS_REPLY_STRING || e->len <= plen) continue;
    if (!name_ok(e->str + plen, e->len - plen)) continue;
    v[n].p = e->str + plen;
    v[n].len = e->len - plen;
    n++;
  }
  qsort(v, n, sizeof *v, span_cmp);
  if (ks->after != NULL) { /* resume inside this batch */
    span_t a = {ks->after, ks->after_len};
    while (i < n && span_cmp(&v[i], &a) <= 0)
      i++;
    kv_free(ks->after);
    ks->after = NULL;
  }
  room = req->in.limit - req->nnames;
  for (; i < n && room > 0; i++) {
    if (i > 0 && span_cmp(&v[i - 1], &v[i]) == 0) continue;
    if (kv_req_add_name(req, v[i].p, v[i].len) != 0) {
      kv_free(v);
      return KV_ENOMEM;
    }
    room--;
  }
  while (i < n && i > 0 && span_cmp(&v[i - 1], &v[i]) == 0)
    i++;
  if (i < n) { /* the page is full inside this batch */
    const kv_buf_t *last = &req->names[req->nnames - 1];
    char *c = kv_malloc(40 + last->len);
    kv_free(v);
    if (c == NULL) return KV_ENOMEM;
    int o = snprintf(c, 40, "k%llx/", ks->scan);
    memcpy(c + o, last->base, last->len + 1);
    kv_free(req->cursor);
    req->cursor = c;
    return 1;
  }
  kv_free(v);
  if (next == 0) return 1; /* the listing is complete */
  if (req->nnames >= req->in.limit) {
    snprintf(cur, sizeof cur, "k%llx", next);
    return kv_req_set_cursor(req, cur) ? KV_ENOMEM : 1;
  }
  ks->scan = next;
  return 0; /* scan on */
}

static int colls_add(coll_state_t *cs, const char *name, size_t len) {
  if (cs->n > 0 && cs->names[cs->n - 1].len == len &&
      memcmp(cs->names[cs->n - 1].base, name, len) == 0)
    return 0;
  if (cs->n == cs->cap) {
    size_t cap = cs->cap ? cs->cap * 2 : 64;
    kv_buf_t *p;
    if (cs->n > 2 * cs->sorted + 256) { /* compact before growing */
      cs->n = cs->sorted = sort_unique(cs->names, cs->n);
      if (cs->n < cs->cap / 2) return colls_add(cs, name, len);
    }
    p = kv_realloc(cs->names, cap * sizeof *p);
    if (p == NULL) return KV_ENOMEM;
    cs->names = p;
    cs->cap = cap;
  }
  cs->names[cs->n].base = kv_strndup(name, len);
  if (cs->names[cs->n].base == NULL) return KV_ENOMEM;
  cs->names[cs->n].len = len;
  cs->n++;
  return 0;
}

static void colls_free(coll_state_t *cs) {
  for (size_t i = 0; i < cs->n; i++)
    kv_free(cs->names[i].base);
  kv_free(cs->names);
  cs->names = NULL;
  cs->n = cs->cap = 0;
}

/* The last SCAN batch has come: list the page after the cursor's name. */
static int colls_page(kv_req_t *req, coll_state_t *cs) {
  size_t i = 0;
  cs->n = sort_unique(cs->names, cs->n);
  if (req->in.cursor != NULL) {
    kv_buf_t a = {(char *)req->in.cursor + 1, strlen(req->in.cursor + 1)};
    size_t lo = 0, hi = cs->n;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (buf_cmp(&cs->names[mid], &a) <= 0)
        lo = mid + 1;
      else
        hi = mid;
    }
    i = lo;
  }
  for (; i < cs->n && req->nnames < req->in.limit; i++) {
    if (kv_req_add_name(req, cs->names[i].base, cs->names[i].len) != 0)
      return KV_ENOMEM;
  }
  if (i < cs->n) {
    const kv_buf_t *last = &req->names[req->nnames - 1];
    char *c = kv_malloc(last->len + 2);
    if (c == NULL) return KV_ENOMEM;
    c[0] = 'c';
    memcpy(c + 1, last->base, last->len + 1);
    kv_free(req->cursor);
    req->cursor = c;
  }
  return 0;
}

/* The per-page state of keys() and collections() (store_data[2]). */
static void state_free(kv_req_t *req) {
  void *state = req->priv.store_data[2];
  if (state == NULL) return;
  if (req->op == KV_OP_KEYS) kv_free(((keys_state_t *)state)->after);
  if (req->op == KV_OP_COLLECTIONS) colls_free(state);
  kv_free(state);
  req->priv.store_data[2] = NULL;
}

static void scan_reply(kv__redis_t *st, kv_req_t *req, kv_redis_reply_t *r) {
  kv_redis_reply_t *batch;
  unsigned long long next;
  char *end;
  int rc = 0;
  if (!reply_is(r, KV_REDIS_REPLY_ARRAY) || r->elements != 2 ||
      r->element[0]->type != KV_REDIS_REPLY_STRING ||
      r->element[1]->type != KV_REDIS_REPLY_ARRAY) {
    bad_reply(st, req, r);
    return;
  }
  next = strtoull(r->element[0]->str, &end, 10);
  batch = r->element[1];
  switch (req->op) {
  case KV_OP_KEYS:
    rc = keys_page(st, req, batch, next);
    if (rc < 0) req_fail(req, rc, "out of memory");
    if (rc == 0) send_scan(st, req, next);
    return;
  case KV_OP_COLLECTIONS: {
    coll_state_t *cs = req->priv.store_data[2];
    char *cbuf = NULL;
    size_t cap = 0;
    for (size_t j = 0; j < batch->elements && rc == 0; j++) {
      kv_redis_reply_t *e = batch->element[j];
      const char *key;
      size_t clen, klen;
      if (e->type != KV_REDIS_REPLY_STRING) continue;
      if (e->len > cap) {
        kv_free(cbuf);
        cap = e->len;
        if ((cbuf = kv_malloc(cap)) == NULL) {
          rc = KV_ENOMEM;
          break;
        }
      }
      if (parse_key(st, e->str, e->len, cbuf, &clen, &key, &klen))
        rc = colls_add(cs, cbuf, clen);
    }
    kv_free(cbuf);
    if (rc == 0 && next == 0) rc = colls_page(req, cs);
    if (rc != 0) {
      req_fail(req, rc, "out of memory");
    } else if (next != 0) {
      send_scan(st, req, next);
    }
    if (next == 0 || rc != 0) colls_free(cs);
    return;
  }
  default: /* destroy, destroy_collection */
    if (batch->elements > 0) unlink_keys(st, req, batch);
    if (next != 0 && FIRST_ERR(req) == 0) send_scan(st, req, next);
    return;
  }
}

static int slot_cmp(const void *a, const void *b) {
  long long x = (*(kv_redis_reply_t *const *)a)->integer;
  long long y = (*(kv_redis_reply_t *const *)b)->integer;
  return x < y ? -1 : x > y;
}

static void unlink_keys(kv__redis_t *st, kv_req_t *req,
                        kv_redis_reply_t *keys) {
  size_t n = 0;
  char *cbuf = NULL;
  size_t cap = 0;
  if (st->cluster_slots) { /* one UNLINK per slot (CROSSSLOT otherwise) */
    for (size_t j = 0; j < keys->elements; j++) {
      kv_redis_reply_t *e = keys->element[j];
      e->integer = e->type == KV_REDIS_REPLY_STRING
                       ? (long long)kv__rcl_slot(e->str, e->len)
                       : -1;
    }
    qsort(keys->element, keys->elements, sizeof *keys->element, slot_cmp);
  }
  cmd_begin(st);
  cmd_lit(st, "UNLINK");
  for (size_t j = 0; j < keys->elements; j++) {
    kv_redis_reply_t *e = keys->element[j];
    const char *key;
    size_t clen, klen;
    if (e->type != KV_REDIS_REPLY_STRING) continue;
    if (n > 0 && st->cluster_slots &&
        e->integer != keys->element[j - 1]->integer) {
      if (send_part(st, req, TAG(T_UNLINK, 0)) != 0) break;
      cmd_begin(st);
      cmd_lit(st, "UNLINK");
      n = 0;
    }
    if (req->op == KV_OP_DESTROY) { /* only keys of our layout */
      if (e->len > cap) {
        kv_free(cbuf);
        cap = e->len;
        if ((cbuf = kv_malloc(cap)) == NULL) {
          req_fail(req, KV_ENOMEM, "out of memory");
          return;
        }
      }
      if (!parse_key(st, e->str, e->len, cbuf, &clen, &key, &klen)) continue;
    }
    cmd_ext(st, e->str, e->len);
    n++;
  }
  kv_free(cbuf);
  if (n > 0) send_part(st, req, TAG(T_UNLINK, 0));
}

static int rds_keys(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  keys_state_t *ks;
  unsigned long long cur = 0;
  const char *after = NULL;
  if (req->in.cursor != NULL) {
    char *end;
    if (req->in.cursor[0] != 'k' || req->in.cursor[1] == '\0')
      return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%s'",
                              req->in.cursor);
    cur = strtoull(req->in.cursor + 1, &end, 16);
    if (*end == '/')
      after = end + 1;
    else if (*end != '\0')
      return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%s'",
                              req->in.cursor);
  }
  ks = kv_calloc(1, sizeof *ks);
  if (ks == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  if (after != NULL) {
    ks->after_len = strlen(after);
    ks->after = kv_strndup(after, ks->after_len);
    if (ks->after == NULL) {
      kv_free(ks);
      return kv_req_set_error(req, KV_ENOMEM, "out of memory");
    }
  }
  ks->scan = cur;
  req->priv.store_data[2] = ks;
  if (begin(st, req)) return 0;
  send_scan(st, req, cur);
  return submitted(req);
}

static int rds_collections(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  coll_state_t *cs;
  if (req->in.cursor != NULL && req->in.cursor[0] != 'c')
    return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%s'",
                            req->in.cursor);
  cs = kv_calloc(1, sizeof *cs);
  if (cs == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  req->priv.store_data[2] = cs;
  if (begin(st, req)) {
    return 0;
  }
  send_scan(st, req, 0);
  return submitted(req);
}

static int rds_destroy(kv_store_t *s, kv_req_t *req) {
  kv__redis_t *st = kv__redis_pick(STORE(s));
  if (begin(st, req)) return 0;
  send_scan(st, req, 0);
  return submitted(req);
}

static int rds_cull(kv_store_t *s, kv_req_t *req) {
  (void)s; /* Redis expires entries by itself */
  return submitted(req);
}

/* ---- Raw commands -------------------------------------------------------- */

static int raw_error(kv_redis_req_t *req, int err, const char *msg) {
  kv_free(req->errmsg);
  req->errmsg = kv_strndup(msg, strlen(msg));
  return err;
}

/* A raw request's answer (or failure): kept in the request and queued; the
 * callback runs from the prepare handle of the connection (never from
 * inside a submit or a ctl call), exactly once. */
void kv__redis_raw_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                         kv_redis_reply_t *r, int err, const char *msg) {
  kv_redis_req_t *req = p->ctx;
  if (err != 0) {
    req->status = err;
    req->errmsg = kv_strndup(msg, strlen(msg));
  } else {
    kv_redis_reply_t *own = kv_malloc(sizeof *own);
    if (own == NULL) {
      req->status = KV_ENOMEM;
    } else {
      *own = *r; /* the tree moves to the request */
      memset(r, 0, sizeof *r);
      req->reply = own;
    }
  }
  req->next_done = NULL;
  if (st->raw_done_tail != NULL)
    st->raw_done_tail->next_done = req;
  else
    st->raw_done = req;
  st->raw_done_tail = req;
  kv__redis_kick(st);
}

void kv__redis_deliver_raw(kv__redis_t *st) {
  while (st->raw_done != NULL) {
    kv_redis_req_t *req = st->raw_done;
    st->raw_done = req->next_done;
    if (st->raw_done == NULL) st->raw_done_tail = NULL;
    req->next_done = NULL;
    req->cb(req);
  }
}

/* Case-insensitive: is the command name one of the list? */
static int cmd_is(const char *name, size_t len, const char *const *list) {
  for (; *list != NULL; list++)
    if (strlen(*list) == len && strncasecmp(name, *list, len) == 0) return 1;
  return 0;
}

/* Commands that change a connection's state for whoever uses it next. */
static const char *const conn_state_cmds[] = {
    "SUBSCRIBE",    "PSUBSCRIBE",   "SSUBSCRIBE", "UNSUBSCRIBE",
    "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",    "SELECT",
    "AUTH",         "HELLO",        "RESET",      "QUIT",
    "SYNC",         "PSYNC",        "REPLCONF",   NULL};
/* ... and those that are fine on a connection of one's own only. */
static const char *const tx_cmds[] = {"WATCH", "UNWATCH", "MULTI",
                                      "EXEC",  "DISCARD", NULL};

int kv__redis_cmd_kind(const char *name, size_t len) {
  return cmd_is(name, len, conn_state_cmds) ? 1
         : cmd_is(name, len, tx_cmds)       ? 2
                                            : 0;
}

/* Check a raw command's arguments (shared: the store's connections). */
int kv__redis_raw_check(kv_redis_req_t *req, int argc, const char **argv,
                        const size_t *argvlen, kv_redis_cb cb, int shared) {
  size_t len0;
  if (cb == NULL || argc < 1 || argv == NULL)
    return raw_error(req, KV_EINVAL,
                     "kv_redis_command: needs a callback and argc >= 1");
  for (int i = 0; i < argc; i++)
    if (argv[i] == NULL)
      return raw_error(req, KV_EINVAL, "kv_redis_command: NULL argument");
  len0 = argvlen ? argvlen[0] : strlen(argv[0]);
  if (cmd_is(argv[0], len0, conn_state_cmds)) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "kv_redis_command: '%.*s' changes the connection's state; use a "
             "subscriber (kv_redis_subscriber) or the URL's options",
             (int)(len0 > 40 ? 40 : len0), argv[0]);
    return raw_error(req, KV_EINVAL, msg);
  }
  if (shared && cmd_is(argv[0], len0, tx_cmds)) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "kv_redis_command: '%.*s' needs a connection of its own: use "
             "kv_redis_lease() or kv_redis_transaction()",
             (int)(len0 > 40 ? 40 : len0), argv[0]);
    return raw_error(req, KV_EINVAL, msg);
  }
  return 0;
}

void kv__redis_raw_init(kv_redis_req_t *req, kv_store_t *s, kv_redis_cb cb) {
  req->store = s;
  req->status = 0;
  req->reply = NULL;
  req->errmsg = NULL;
  req->next_done = NULL;
  req->cb = cb;
}

int kv_redis_command(kv_store_t *s, kv_redis_req_t *req, int argc,
                     const char **argv, const size_t *argvlen, kv_redis_cb cb) {
  kv__redis_t *st;
  char *cmd;
  int len, rc;
  if (req == NULL) return KV_EINVAL;
  kv__redis_raw_init(req, s, cb);
  if (s == NULL || (s->methods != &kv__redis_methods && !kv__redis_ha_kind(s)))
    return raw_error(req, KV_EINVAL, "kv_redis_command: not a redis store");
  if ((rc = kv__redis_raw_check(req, argc, argv, argvlen, cb, 1)) != 0)
    return rc;
  if (kv_store_is_closing(s))
    return raw_error(req, KV_ECLOSED, "the store is closing");
  if (s->methods != &kv__redis_methods) /* cluster, sentinel: redis_ha.c */
    return kv__redis_ha_command(s, req, argc, argv, argvlen);
  st = kv__redis_pick(STORE(s));
  rc = kv__redis_ready(st);
  if (rc != 0) return raw_error(req, rc, st->last_msg);
  len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
  if (len < 0) return raw_error(req, KV_ENOMEM, "out of memory");
  rc = kv__redis_queue(st, cmd, (size_t)len, kv__redis_raw_reply, req, 0);
  redisFreeCommand(cmd);
  if (rc != 0) return raw_error(req, rc, "out of memory");
  return 0;
}

int kv_redis_publish(kv_store_t *s, kv_redis_req_t *req, const char *channel,
                     const void *msg, size_t len, kv_redis_cb cb) {
  const char *argv[3];
  size_t argl[3];
  if (req == NULL) return KV_EINVAL;
  if (channel == NULL || (msg == NULL && len > 0)) {
    kv__redis_raw_init(req, s, cb);
    return raw_error(req, KV_EINVAL,
                     "kv_redis_publish: NULL channel or "
                     "message");
  }
  argv[0] = "PUBLISH", argl[0] = 7;
  argv[1] = channel, argl[1] = strlen(channel);
  argv[2] = msg ? msg : "", argl[2] = len;
  return kv_redis_command(s, req, 3, argv, argl, cb);
}

void kv_redis_req_cleanup(kv_redis_req_t *req) {
  if (req == NULL) return;
  kv__redis_reply_free(req->reply);
  kv_free(req->errmsg);
  req->reply = NULL;
  req->errmsg = NULL;
}

const char *kv_redis_req_errmsg(const kv_redis_req_t *req) {
  return req->errmsg ? req->errmsg : kv_strerror(req->status);
}

void kv_redis_reply_free(kv_redis_reply_t *reply) {
  kv__redis_reply_free(reply);
}

/* ---- Lifetime ------------------------------------------------------------ */

static int rds_ctl(kv_store_t *s, int op, void *arg, size_t size) {
  kv__redis_t *st = STORE(s);
  if (op == KV_REDIS_CTL_STATS) {
    kv_redis_stats_t *out = arg;
    KV_CTL_EXPECT(arg, size, kv_redis_stats_t);
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < st->nlanes; i++) {
      const kv__redis_t *ln = st->lanes[i];
      const kv_redis_stats_t *x;
      if (ln == NULL) continue;
      x = &ln->stats;
      out->commands += x->commands;
      out->replies += x->replies;
      out->writes += x->writes;
      out->bytes_written += x->bytes_written;
      out->reads += x->reads;
      out->bytes_read += x->bytes_read;
      out->connects += x->connects;
      out->connect_failures += x->connect_failures;
      out->in_flight += ln->fifo_sent;
      out->queued += ln->fifo_n - ln->fifo_sent;
      out->pool_connected += ln->state == KV__REDIS_READY;
    }
    out->pool_size = st->nlanes;
    out->leases = st->leases_total;
    for (const kv__redis_lease_t *l = st->leases; l != NULL; l = l->next) {
      if (l->out)
        out->leased++;
      else
        out->lease_idle++;
    }
    for (const struct kv_redis_sub_s *sub = st->subs; sub != NULL;
         sub = kv__redis_sub_next(sub))
      out->subscribers++;
    return 0;
  }
  if (op == KV_REDIS_CTL_DISCONNECT) {
    for (size_t i = 0; i < st->nlanes; i++)
      if (st->lanes[i] != NULL)
        kv__redis_disconnect(st->lanes[i], KV_ECONN,
                             "disconnected by KV_REDIS_CTL_DISCONNECT");
    return 0;
  }
  return KV_ENOTSUP;
}

static void sha1_hex(const char *text, char out[41]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL);
  kv__hex_encode(md, n < 20 ? n : 20, out);
}

static char *dup_str(const char *s) {
  return s ? kv_strndup(s, strlen(s)) : NULL;
}

static void free_config(kv__redis_t *st) {
  kv_free(st->host);
  kv_free(st->sock);
  kv_free(st->endpoint);
  kv_free(st->user);
  kv_free(st->password);
  kv_free(st->prefix);
  kv_free(st->tls_name);
  if (st->ssl_ctx) SSL_CTX_free(st->ssl_ctx);
  st->host = st->sock = st->endpoint = st->user = st->password = NULL;
  st->prefix = st->tls_name = NULL;
  st->ssl_ctx = NULL;
}

static int tls_setup(kv__redis_t *st, const kv_url_t *url, char *errbuf,
                     size_t errbuf_len) {
  const char *ca = kv_url_param(url, "ca");
  const char *cert = kv_url_param(url, "cert");
  const char *key = kv_url_param(url, "key");
  char msg[256];
  ERR_clear_error();
  st->ssl_ctx = SSL_CTX_new(TLS_client_method());
  if (st->ssl_ctx == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory (TLS)");
  SSL_CTX_set_min_proto_version(st->ssl_ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(st->ssl_ctx, SSL_VERIFY_PEER, NULL);
  if (ca != NULL ? SSL_CTX_load_verify_locations(st->ssl_ctx, ca, NULL) != 1
                 : SSL_CTX_set_default_verify_paths(st->ssl_ctx) != 1) {
    ERR_error_string_n(ERR_get_error(), msg, sizeof msg);
    ERR_clear_error();
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "cannot load the CA certificates '%s': %s",
                      ca ? ca : "(system default)", msg);
  }
  if ((cert == NULL) != (key == NULL))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "options 'cert' and 'key' go together");
  if (cert != NULL &&
      (SSL_CTX_use_certificate_chain_file(st->ssl_ctx, cert) != 1 ||
       SSL_CTX_use_PrivateKey_file(st->ssl_ctx, key, SSL_FILETYPE_PEM) != 1 ||
       SSL_CTX_check_private_key(st->ssl_ctx) != 1)) {
    ERR_error_string_n(ERR_get_error(), msg, sizeof msg);
    ERR_clear_error();
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "cannot load the client certificate '%s' / key '%s': "
                      "%s",
                      cert, key, msg);
  }
  return 0;
}

static int is_ip(const char *h) {
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  return uv_ip4_addr(h, 0, &a4) == 0 || uv_ip6_addr(h, 0, &a6) == 0;
}

static int parse_config(kv__redis_t *st, const kv_url_t *url, char *errbuf,
                        size_t errbuf_len) {
  const char *sc = url->scheme;
  int is_unix = strstr(sc, "+unix") != NULL;
  int64_t db = -1, db2 = -1, nconn = 1;
  int verify = 1;
  double timeout;
  const char *user = kv_url_param(url, "user");
  const char *pass = kv_url_param(url, "password");
  const char *prefix = kv_url_param(url, "prefix");
  const char *name = kv_url_param(url, "server_name");
  static const char *const tls_opts[] = {"ca", "cert", "key", "server_name",
                                         "verify_name"};
  char ep[300];
  int err;
  st->tls = strcmp(sc, "rediss") == 0 || strcmp(sc, "valkeys") == 0 ||
            strstr(sc, "+tls") != NULL;
  if ((err = kv_url_param_int(url, "db", 0, INT_MAX, -1, &db, errbuf,
                              errbuf_len)) ||
      (err = kv_url_param_int(url, "database", 0, INT_MAX, -1, &db2, errbuf,
                              errbuf_len)) ||
      (err = kv_url_param_int(url, "connections", 1, KV__REDIS_MAX_POOL, 1,
                              &nconn, errbuf, errbuf_len)) ||
      (err = kv_url_param_double(url, "timeout", 0, 1e6, 10, &timeout, errbuf,
                                 errbuf_len)) ||
      (err = kv_url_param_bool(url, "verify_name", 1, &verify, errbuf,
                               errbuf_len)))
    return err;
  for (size_t i = 0; !st->tls && i < KV__ARRAY_SIZE(tls_opts); i++)
    if (kv_url_param(url, tls_opts[i]) != NULL)
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "option '%s' needs TLS (rediss://, redis+tls:// or "
                        "redis+unix+tls://)",
                        tls_opts[i]);
  if (db >= 0 && db2 >= 0 && db != db2)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "options 'db' and 'database' disagree (%lld, %lld)",
                      (long long)db, (long long)db2);
  if (db < 0) db = db2;
  st->nlanes = (size_t)nconn;
  st->timeout_ms = (uint64_t)(timeout * 1000.0 + 0.5);
  if (timeout > 0 && st->timeout_ms == 0) st->timeout_ms = 1;
  if (is_unix) {
    /* redis+unix+tls://name/path: the host part is the certificate's
     * name (the socket path follows it). */
    if ((url->host != NULL && !st->tls) || url->port != -1 ||
        url->path == NULL || url->path[1] == '\0')
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "%s:// takes a socket path: %s://%s/path/redis.sock "
                        "(got '%s')",
                        sc, sc, st->tls ? "name.on.certificate" : "", url->raw);
    if (st->tls && url->host == NULL && name == NULL && verify != 0)
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "%s:// needs the name on the server's certificate: "
                        "%s://NAME/path/redis.sock (or server_name=NAME, or "
                        "verify_name=0)",
                        sc, sc);
    if (st->tls && url->host != NULL) {
      st->host = dup_str(url->host); /* the TLS name only */
      if (st->host == NULL)
        return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    }
    st->sock = dup_str(url->path);
    snprintf(ep, sizeof ep, "%s", url->path);
  } else {
    st->host = dup_str(url->host ? url->host : "127.0.0.1");
    if (st->host == NULL)
      return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    st->port = url->port > 0 ? url->port : 6379;
    if (url->path != NULL && url->path[1] != '\0') {
      int64_t pdb;
      if (kv_parse_int64(url->path + 1, strlen(url->path + 1), &pdb) != 0 ||
          pdb < 0 || pdb > INT_MAX || (db >= 0 && db != pdb))
        return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                          "invalid database '%s' in URL '%s' (expected /N, "
                          "N >= 0)",
                          url->path + 1, url->raw);
      db = pdb;
    }
    snprintf(ep, sizeof ep, strchr(st->host, ':') ? "[%s]:%d" : "%s:%d",
             st->host, st->port);
  }
  st->db = db < 0 ? 0 : (int)db;
  st->endpoint = dup_str(ep);
  if ((user || pass) && (url->user || url->password))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "credentials given both in the URL and as options");
  if (url->user || url->password) {
    user = url->user && url->user[0] ? url->user : NULL;
    pass = url->password;
  }
  if (user != NULL && pass == NULL)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "user '%s' given without a password (redis://"
                      "user:password@host)",
                      user);
  st->user = dup_str(user);
  st->password = dup_str(pass);
  st->prefix = dup_str(prefix ? prefix : "");
  st->prefix_len = prefix ? strlen(prefix) : 0;
  if (st->tls) {
    st->verify_name = verify;
    st->tls_name = dup_str(name ? name : st->host ? st->host : "localhost");
    if (st->tls_name) st->tls_name_is_ip = is_ip(st->tls_name);
  }
  if (st->endpoint == NULL || st->prefix == NULL ||
      (st->sock == NULL && st->host == NULL) || (user && st->user == NULL) ||
      (pass && st->password == NULL) || (st->tls && st->tls_name == NULL))
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  if (st->tls) return tls_setup(st, url, errbuf, errbuf_len);
  return 0;
}

static int rds_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                    size_t errbuf_len) {
  kv__redis_t *st = STORE(s);
  int err = parse_config(st, url, errbuf, errbuf_len);
  if (err) {
    free_config(st);
    return err;
  }
  sha1_hex(put_script, st->sha_put);
  sha1_hex(cas_script, st->sha_cas);
  st->lanes = kv_calloc(st->nlanes, sizeof *st->lanes);
  if (st->lanes == NULL) {
    free_config(st);
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  }
  st->lanes[0] = st; /* the others connect when first used */
  return kv__redis_init_handles(st);
}

static void rds_close(kv_store_t *s) {
  kv__redis_t *st = STORE(s);
  /* Raw requests still waiting are cancelled (a blocking command must not
   * hold the close); the kvio requests in flight finish (or time out). */
  for (size_t i = 0; i < st->nlanes; i++)
    if (st->lanes[i] != NULL)
      kv__redis_cancel_fifo(st->lanes[i], kv__redis_raw_reply,
                            "the store was closed");
  kv__redis_pool_close(st);
  kv__redis_close(st);
}

static const char *const rds_options[] = {
    "db",          "database",    "prefix", "timeout", "user",
    "password",    "ca",          "cert",   "key",     "server_name",
    "verify_name", "connections", NULL};

const kv_store_methods_t kv__redis_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "redis",
    .store_size = sizeof(kv__redis_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT | KV_CAP_SHARED,
    .options = rds_options,
    .open = rds_open,
    .close = rds_close,
    .get = rds_get,
    .ttl = rds_ttl,
    .put = rds_put,
    .del = rds_delete,
    .get_many = rds_get_many,
    .ttl_many = rds_get_many,
    .put_many = rds_put_many,
    .delete_many = rds_delete_many,
    .keys = rds_keys,
    .collections = rds_collections,
    .destroy = rds_destroy,
    .destroy_collection = rds_destroy,
    .cull = rds_cull,
    .put_if_absent = rds_put_if_absent,
    .cas = rds_cas,
    .incr = rds_incr,
    .take = rds_take,
    .ctl_ex = rds_ctl,
};
