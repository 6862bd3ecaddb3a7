/* memcached:// — an asynchronous memcached client on libuv, speaking the
 * meta text protocol (mg / ms / md, memcached >= 1.6).
 *
 * Connections (memcached_conn.c). One connection per server, opened on
 * first use; the commands of one loop turn go to each server as one
 * pipelined write, and replies are matched to them in order. A server that
 * refuses connections is left alone for a backoff period (its requests fail
 * at once with KV_ECONN) while the others keep working.
 *
 * Keys. Servers are chosen by a consistent-hashing ring over (collection,
 * key) (memcached_ring.c). A memcached key is at most 250 bytes without
 * spaces or control characters, so the store builds its own:
 *
 *   kvio:<prefix>:g                        the store generation
 *   kvio:<prefix>:c<collection>            a collection's generation
 *   kvio:<prefix>:d<sgen>.<cgen>.<key>     an entry
 *
 * where <prefix>, <collection> and <key> are "=" + the name when it is
 * printable ASCII without spaces and fits, and "#" + base64url(SHA-256(name))
 * otherwise. The generations are random 96-bit tokens (16 base64url
 * characters) kept on each server: destroy() writes a new store generation
 * on every server and destroy_collection() a new collection generation, so
 * every older entry becomes unreachable at once (memcached evicts it in
 * time). Each batch of commands for one collection on one server is
 * preceded, in the same pipeline, by an mg of both generation keys; when a
 * reply shows that a generation differs from the one the commands used (set
 * by another client, or lost with a restart or an eviction), their replies
 * are discarded and they are sent again with the new generation. So several
 * processes may share the servers.
 *
 * Values. Each entry is a 16-byte header (magic, version, flags, the exact
 * expiry in Unix ms, and the length of the original key when the key was
 * hashed) followed by the original key (hashed keys only, checked on read)
 * and the value bytes. memcached expires in whole seconds and reads
 * expiries over 30 days as absolute Unix times: the server TTL is the
 * remaining time rounded up plus one second (an absolute time past 30
 * days), so the server never drops an entry early, and every read filters
 * on the header's millisecond expiry.
 *
 * Atomic segment. put_if_absent, cas, incr and take read the entry with its
 * CAS id (mg ... c) and then write with ms ... C<cas> (or ms ... ME, add,
 * when it is absent) or delete with md ... C<cas>; a write that loses a race
 * (EX / NS / NF) starts over. incr does not use memcached's incr, which only
 * works on a bare decimal value: it is the same read / compare-and-set loop,
 * so the header stays consistent and an existing entry keeps its expiry.
 * Atomic requests on the same key from one store are run one after another,
 * so a thousand increments in flight do not race each other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "memcached_store.h"

extern const kv_store_methods_t kv__memcached_methods;

static void cmd_enqueue(mc_cmd_t *cmd);
static void op_start_atomic(mc_op_t *op);

/* ---- Encoding ------------------------------------------------------------ */

/* "#" + base64url(SHA-256(name)): 44 bytes. */
static void hash_name(const char *name, size_t len, char *out) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char text[KV__B64_SIZE(32)];
  if (!EVP_Digest(name, len, md, &mdlen, EVP_sha256(), NULL)) {
    memset(md, 0, sizeof md); /* never happens with the default provider */
  }
  kv__b64_encode(md, 32, text, KV__B64_URL | KV__B64_NOPAD);
  out[0] = '#';
  memcpy(out + 1, text, MC_HASH_LEN);
}

static int name_is_safe(const char *name, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c <= 0x20 || c >= 0x7f) return 0;
  }
  return 1;
}

static void new_token(char *out) {
  unsigned char raw[12];
  char text[KV__B64_SIZE(sizeof raw)];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    /* fall back on time and address bits: still unique in practice */
    uint64_t t = (uint64_t)kv_now_ms() ^ (uint64_t)(uintptr_t)out;
    uint32_t r = (uint32_t)rand();
    memcpy(raw, &t, 8);
    memcpy(raw + 8, &r, 4);
  }
  kv__b64_encode(raw, sizeof raw, text, KV__B64_URL);
  memcpy(out, text, MC_TOKEN_LEN);
}

static void put_be64(unsigned char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (unsigned char)v;
    v >>= 8;
  }
}

static uint64_t get_be64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/* ---- Keys ------------------------------------------------------------------
 */

/* Append "<=name | #hash>" so that the whole key stays within 250 bytes
 * (used bytes already taken). Needs 1 + max(len, 43) bytes of room. */
static void out_name(mc_store_t *st, const char *name, size_t len,
                     size_t used) {
  if (len + 1 + used <= MC_KEY_MAX && name_is_safe(name, len)) {
    st->out[st->out_len++] = '=';
    out_add(st, name, len);
  } else {
    hash_name(name, len, st->out + st->out_len);
    st->out_len += 1 + MC_HASH_LEN;
  }
}

static int name_is_raw(mc_store_t *st, size_t len, size_t used,
                       const char *name) {
  (void)st;
  return len + 1 + used <= MC_KEY_MAX && name_is_safe(name, len);
}

/* The collection generation key of a collection, kv_malloc'ed. */
static char *cgkey_make(mc_store_t *st, const char *coll, size_t clen,
                        size_t *outlen) {
  size_t used = st->kprefix_len + 1;
  char *k = kv_malloc(MC_KEY_MAX + 1);
  size_t n = 0;
  if (k == NULL) return NULL;
  memcpy(k, st->kprefix, st->kprefix_len);
  n = st->kprefix_len;
  k[n++] = 'c';
  if (name_is_raw(st, clen, used, coll)) {
    k[n++] = '=';
    memcpy(k + n, coll, clen);
    n += clen;
  } else {
    hash_name(coll, clen, k + n);
    n += 1 + MC_HASH_LEN;
  }
  k[n] = '\0';
  *outlen = n;
  return k;
}

static uint32_t bytes_hash(const char *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 16777619u;
  }
  return h;
}

/* ---- Generation cache (per server) ------------------------------------- */

static mc_gen_t **gen_slot(mc_server_t *srv, const char *key, size_t len,
                           uint32_t h) {
  mc_gen_t **pp = &srv->gens[h & (MC_LOCK_BUCKETS - 1)];
  for (; *pp; pp = &(*pp)->next)
    if ((*pp)->hash == h && (*pp)->keylen == len &&
        memcmp((*pp)->key, key, len) == 0)
      break;
  return pp;
}

static void gen_clear(mc_server_t *srv) {
  for (size_t b = 0; b < MC_LOCK_BUCKETS; b++) {
    mc_gen_t *g = srv->gens[b];
    while (g) {
      mc_gen_t *n = g->next;
      kv_free(g);
      g = n;
    }
    srv->gens[b] = NULL;
  }
  srv->ngens = 0;
}

static const char *gen_get(mc_server_t *srv, const char *key, size_t len) {
  mc_gen_t *g = *gen_slot(srv, key, len, bytes_hash(key, len));
  return g ? g->token : NULL;
}

static void gen_set(mc_server_t *srv, const char *key, size_t len,
                    const char *token) {
  uint32_t h = bytes_hash(key, len);
  mc_gen_t **pp = gen_slot(srv, key, len, h), *g;
  if (*pp) {
    if (token)
      memcpy((*pp)->token, token, MC_TOKEN_LEN);
    else {
      g = *pp;
      *pp = g->next;
      kv_free(g);
      srv->ngens--;
    }
    return;
  }
  if (token == NULL) return;
  if (srv->ngens >= MC_GEN_CACHE_MAX) {
    gen_clear(srv);
    pp = gen_slot(srv, key, len, h);
  }
  g = kv_malloc(sizeof *g + len);
  if (g == NULL) return; /* not cached: checked again next time */
  g->hash = h;
  g->keylen = len;
  memcpy(g->key, key, len);
  memcpy(g->token, token, MC_TOKEN_LEN);
  g->next = *pp;
  *pp = g;
  srv->ngens++;
}

/* ---- Requests --------------------------------------------------------------
 */

static const char *op_coll(mc_op_t *op, size_t *len) {
  *len = op->req->in.collection_len;
  return op->req->in.collection;
}

static const char *cmd_key(mc_cmd_t *cmd, size_t *len) {
  kv_req_t *req = cmd->op->req;
  if (req->in.keys) {
    *len = req->in.keys[cmd->idx].len;
    return req->in.keys[cmd->idx].base;
  }
  *len = req->in.key_len;
  return req->in.key;
}

static void op_free(mc_op_t *op) {
  for (size_t i = 0; i < op->ncmds; i++)
    kv_free(op->cmds[i].genkey);
  kv_free(op->buf);
  kv_free(op);
}

static void lock_release(mc_op_t *op);

/* The request is over: complete it (the first error wins). */
static void op_finish(mc_op_t *op) {
  kv_req_t *req = op->req;
  int err = op->err;
  if (op->lock) lock_release(op);
  if (err) {
    req->found = 0;
  }
  op_free(op);
  kv_req_complete(req, err);
}

static void op_error(mc_op_t *op, int err, const char *msg) {
  if (op->err) return;
  op->err = err;
  if (msg) kv_req_set_error(op->req, err, "%s", msg);
}

static void op_sub_done(mc_op_t *op) {
  if (--op->remaining == 0) op_finish(op);
}

/* ---- Atomic locks: one atomic request per key at a time ---------------- */

static int op_same_key(mc_op_t *a, mc_op_t *b) {
  kv_req_t *x = a->req, *y = b->req;
  return x->in.collection_len == y->in.collection_len &&
         x->in.key_len == y->in.key_len &&
         memcmp(x->in.collection, y->in.collection, x->in.collection_len) ==
             0 &&
         memcmp(x->in.key, y->in.key, x->in.key_len) == 0;
}

/* Take the key's lock or wait in line; returns 1 when op may run now. */
static int lock_acquire(mc_op_t *op) {
  mc_store_t *st = op->st;
  mc_lock_t **pp = &st->locks[op->hash & (MC_LOCK_BUCKETS - 1)], *l;
  for (l = *pp; l; l = l->next) {
    if (l->hash == op->hash && op_same_key(l->holder, op)) {
      op->lock = l;
      op->lock_next = NULL;
      if (l->wait_tail)
        l->wait_tail->lock_next = op;
      else
        l->wait_head = op;
      l->wait_tail = op;
      return 0;
    }
  }
  l = kv_calloc(1, sizeof *l);
  if (l == NULL) return 1; /* unserialised: the CAS loop still holds */
  l->hash = op->hash;
  l->holder = op;
  l->next = *pp;
  *pp = l;
  op->lock = l;
  return 1;
}

static void lock_release(mc_op_t *op) {
  mc_lock_t *l = op->lock, **pp;
  mc_op_t *next = l->wait_head;
  op->lock = NULL;
  if (next) {
    l->wait_head = next->lock_next;
    if (l->wait_head == NULL) l->wait_tail = NULL;
    l->holder = next;
    op_start_atomic(next);
    return;
  }
  pp = &op->st->locks[l->hash & (MC_LOCK_BUCKETS - 1)];
  while (*pp != l)
    pp = &(*pp)->next;
  *pp = l->next;
  kv_free(l);
}

/* ---- Groups ---------------------------------------------------------------
 */

static void group_unref(mc_group_t *g) {
  if (--g->refs == 0) kv_free(g);
}

/* Every check of the group is answered: send the deferred commands (or fail
 * them when a check failed). */
static void group_checks_done(mc_group_t *g) {
  mc_cmd_t *c = g->deferred;
  g->deferred = g->deferred_tail = NULL;
  while (c) {
    mc_cmd_t *next = c->next;
    c->group = NULL;
    g->refs--; /* never the last reference: the caller holds one */
    if (g->err)
      kv__mc_cmd_fail(c, g->err, "generation check failed");
    else
      cmd_enqueue(c);
    c = next;
  }
}

static void group_check_answered(mc_group_t *g) {
  if (--g->checks == 0) group_checks_done(g);
}

/* ---- Commands --------------------------------------------------------------
 */

static void cmd_retry(mc_cmd_t *cmd) {
  mc_store_t *st = cmd->op->st;
  st->stats.retries++;
  if (++cmd->retries > MC_MAX_RETRIES) {
    kv__mc_cmd_fail(cmd, KV_EBACKEND,
                    "gave up after 1000 retries (generations or values keep "
                    "changing under this request)");
    return;
  }
  cmd_enqueue(cmd);
}

static mc_server_t *server_for(mc_op_t *op, size_t idx) {
  mc_store_t *st = op->st;
  kv_req_t *req = op->req;
  const char *k;
  size_t kl;
  if (st->nservers == 1) return &st->servers[0];
  if (req->in.keys) {
    k = req->in.keys[idx].base;
    kl = req->in.keys[idx].len;
  } else {
    k = req->in.key;
    kl = req->in.key_len;
  }
  return &st->servers[kv__mc_ring_lookup(
      &st->ring,
      kv__mc_key_hash(req->in.collection, req->in.collection_len, k, kl))];
}

static void cmd_enqueue(mc_cmd_t *cmd) {
  mc_server_t *srv = cmd->srv;
  if (srv->st->closing) {
    kv__mc_cmd_fail(cmd, KV_ECANCELED, "the store is closing");
    return;
  }
  cmd->next = NULL;
  cmd->in_queue = 1;
  if (srv->q_tail)
    srv->q_tail->next = cmd;
  else
    srv->q_head = cmd;
  srv->q_tail = cmd;
  kv__mc_schedule_flush(srv->st, srv);
}

/* A command ends with an error (connection lost, server error...). */
void kv__mc_cmd_fail(mc_cmd_t *cmd, int err, const char *msg) {
  mc_group_t *g = cmd->group;
  cmd->group = NULL;
  switch (cmd->kind) {
  case CMD_CHECK:
  case CMD_ADDGEN:
    if (!g->err) g->err = err;
    group_check_answered(g);
    group_unref(g);
    kv_free(cmd);
    return;
  default:
    break;
  }
  if (g) group_unref(g);
  op_error(cmd->op, err, msg);
  op_sub_done(cmd->op);
}

/* ---- Values -----------------------------------------------------------------
 */

typedef kv__mc_entry_t mc_entry_t; /* memcached_int.h */

/* Decode the `dlen` bytes of an entry read for the user key ukey. Returns 0
 * (entry->live says whether it counts), or KV_ECORRUPT. */
int kv__mc_entry_decode(const char *data, size_t dlen, const char *ukey,
                        size_t ukl, int64_t now_ms, kv__mc_entry_t *e) {
  const unsigned char *p = (const unsigned char *)data;
  size_t klen;
  e->live = 0;
  if (dlen < MC_HDR_LEN || p[0] != MC_MAGIC || p[1] != MC_VERSION)
    return KV_ECORRUPT;
  e->expires_at = (int64_t)get_be64(p + 4);
  klen = (size_t)p[12] << 24 | (size_t)p[13] << 16 | (size_t)p[14] << 8 | p[15];
  if (klen > dlen - MC_HDR_LEN) return KV_ECORRUPT;
  if (p[2] & MC_HDR_KEY) {
    /* a hashed key: the original must match (it always does unless SHA-256
     * collides) */
    if (klen != ukl || memcmp(p + MC_HDR_LEN, ukey, ukl) != 0) return 0;
  }
  e->value = data + MC_HDR_LEN + klen;
  e->vlen = dlen - MC_HDR_LEN - klen;
  e->live = !KV_EXPIRED(e->expires_at, now_ms);
  return 0;
}

static int entry_decode(mc_cmd_t *cmd, const mc_reply_t *r, mc_entry_t *e) {
  size_t ukl;
  const char *ukey = cmd_key(cmd, &ukl);
  return kv__mc_entry_decode(r->data, r->dlen, ukey, ukl, kv_now_ms(), e);
}

static int line_has(const char *line, size_t len, const char *word) {
  size_t wl = strlen(word);
  for (size_t i = 0; i + wl <= len; i++)
    if (memcmp(line + i, word, wl) == 0) return 1;
  return 0;
}

static int reply_error(mc_cmd_t *cmd, const mc_reply_t *r) {
  int err = KV_EBACKEND;
  char msg[512];
  if (r->line_len >= 12 && memcmp(r->line, "SERVER_ERROR", 12) == 0 &&
      line_has(r->line, r->line_len, "too large"))
    err = KV_ETOOBIG;
  snprintf(msg, sizeof msg, "memcached %s: %.*s", cmd->srv->name,
           (int)(r->line_len > 400 ? 400 : r->line_len), r->line);
  op_error(cmd->op, err, msg);
  return err;
}

static void corrupt(mc_cmd_t *cmd) {
  size_t kl;
  const char *k = cmd_key(cmd, &kl);
  char msg[256];
  snprintf(msg, sizeof msg,
           "memcached %s: the entry for key '%.*s' was not written by kvio",
           cmd->srv->name, (int)(kl > 100 ? 100 : kl), k);
  op_error(cmd->op, KV_ECORRUPT, msg);
}

static int unexpected(mc_cmd_t *cmd, const mc_reply_t *r) {
  char msg[256];
  snprintf(msg, sizeof msg, "memcached %s: unexpected reply '%.*s'",
           cmd->srv->name, (int)(r->line_len > 100 ? 100 : r->line_len),
           r->line);
  op_error(cmd->op, KV_EPROTO, msg);
  return KV_EPROTO;
}

/* ---- Atomic operations ------------------------------------------------------
 * Step 1: CMD_GET with the CAS id. Step 2: a conditional write or delete,
 * decided here. A lost race starts over at step 1. */

static void atomic_restart(mc_cmd_t *cmd) {
  cmd->kind = CMD_GET;
  cmd->with_cas = 1;
  cmd->replies_left = 1;
  cmd_retry(cmd);
}

static void atomic_write(mc_cmd_t *cmd, const mc_entry_t *e, int present,
                         const char *val, size_t vlen, int64_t exp) {
  cmd->kind = CMD_SET;
  cmd->replies_left = 1;
  cmd->set_mode = present ? SET_CAS : SET_ADD;
  cmd->value = val;
  cmd->vlen = vlen;
  cmd->expires_at = exp;
  (void)e;
  cmd_enqueue(cmd);
}

static void atomic_got(mc_cmd_t *cmd, const mc_reply_t *r) {
  mc_op_t *op = cmd->op;
  kv_req_t *req = op->req;
  mc_entry_t e = {0};
  int present = r->type == R_VA;
  if (present) {
    if (entry_decode(cmd, r, &e) != 0) {
      corrupt(cmd);
      op_sub_done(op);
      return;
    }
    cmd->cas = r->cas;
  }
  switch (req->op) {
  case KV_OP_PUT_IF_ABSENT:
    if (e.live) {
      req->found = 0;
      op_sub_done(op);
      return;
    }
    atomic_write(cmd, &e, present, req->in.value.base, req->in.value.len,
                 req->in.expires_at_ms);
    return;
  case KV_OP_CAS: {
    int ok = req->in.expected_absent
                 ? !e.live
                 : e.live && e.vlen == req->in.expected.len &&
                       (e.vlen == 0 ||
                        memcmp(e.value, req->in.expected.base, e.vlen) == 0);
    if (!ok) {
      op_error(op, KV_ECONFLICT,
               e.live ? "the current value differs from the expected one"
                      : "the key is absent");
      op_sub_done(op);
      return;
    }
    atomic_write(cmd, &e, present, req->in.value.base, req->in.value.len,
                 req->in.expires_at_ms);
    return;
  }
  case KV_OP_INCR: {
    int64_t cur = 0, exp = req->in.expires_at_ms;
    char num[24];
    size_t n;
    if (e.live) {
      if (kv_parse_int64(e.value, e.vlen, &cur) != 0) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "the value of key '%.100s' is not a decimal integer",
                 req->in.key);
        op_error(op, KV_EINVAL, msg);
        op_sub_done(op);
        return;
      }
      exp = e.expires_at; /* an existing entry keeps its TTL */
    }
    if ((req->in.delta > 0 && cur > INT64_MAX - req->in.delta) ||
        (req->in.delta < 0 && cur < INT64_MIN - req->in.delta)) {
      char msg[200];
      snprintf(msg, sizeof msg, "incr of key '%.100s' overflows", req->in.key);
      op_error(op, KV_EINVAL, msg);
      op_sub_done(op);
      return;
    }
    req->number = cur + req->in.delta;
    n = kv_format_int64(req->number, num);
    kv_free(op->buf);
    op->buf = kv_strndup(num, n);
    if (op->buf == NULL) {
      op_error(op, KV_ENOMEM, "out of memory");
      op_sub_done(op);
      return;
    }
    op->buflen = n;
    atomic_write(cmd, &e, present, op->buf, n, exp);
    return;
  }
  case KV_OP_TAKE:
    if (!e.live) {
      req->found = 0;
      op_sub_done(op);
      return;
    }
    kv_free(op->buf);
    op->buf = kv_malloc(e.vlen + 1);
    if (op->buf == NULL) {
      op_error(op, KV_ENOMEM, "out of memory");
      op_sub_done(op);
      return;
    }
    memcpy(op->buf, e.value, e.vlen);
    op->buf[e.vlen] = '\0';
    op->buflen = e.vlen;
    cmd->kind = CMD_DELCAS;
    cmd->replies_left = 1;
    cmd_enqueue(cmd);
    return;
  default:
    op_sub_done(op);
    return;
  }
}

static void atomic_reply(mc_cmd_t *cmd, const mc_reply_t *r) {
  mc_op_t *op = cmd->op;
  kv_req_t *req = op->req;
  if (r->type == R_ERR) {
    reply_error(cmd, r);
    op_sub_done(op);
    return;
  }
  if (cmd->kind == CMD_GET) {
    if (r->type != R_VA && r->type != R_EN) {
      unexpected(cmd, r);
      op_sub_done(op);
      return;
    }
    atomic_got(cmd, r);
    return;
  }
  if (r->type == R_EX || r->type == R_NS || r->type == R_NF) {
    atomic_restart(cmd); /* lost a race: read again */
    return;
  }
  if (r->type != R_HD) {
    unexpected(cmd, r);
    op_sub_done(op);
    return;
  }
  if (cmd->kind == CMD_DELCAS) { /* take */
    kv_req_give_value(req, op->buf, op->buflen);
    op->buf = NULL;
  } else if (req->op != KV_OP_INCR) {
    req->found = 1;
  }
  op_sub_done(op);
}

/* ---- Replies to data commands ------------------------------------------- */

static void data_reply(mc_cmd_t *cmd, const mc_reply_t *r) {
  mc_op_t *op = cmd->op;
  kv_req_t *req = op->req;
  mc_entry_t e;
  switch (req->op) {
  case KV_OP_GET:
  case KV_OP_TTL:
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY: {
    int many = req->op == KV_OP_GET_MANY || req->op == KV_OP_TTL_MANY;
    if (r->type == R_ERR) {
      reply_error(cmd, r);
    } else if (r->type == R_VA) {
      if (entry_decode(cmd, r, &e) != 0) {
        corrupt(cmd);
      } else if (e.live) {
        /* Remaining time against the request's own timestamp: the slots of
         * one ttl_many agree even when their servers answer at different
         * milliseconds. */
        double ttl = kv_remaining_ttl(e.expires_at, req->in.now_ms);
        int rc = many ? kv_req_set_result(req, cmd->idx, e.value, e.vlen, ttl)
                      : kv_req_set_value(req, e.value, e.vlen);
        if (rc != 0)
          op_error(op, KV_ENOMEM, "out of memory");
        else if (!many)
          req->ttl = ttl;
      }
    } else if (r->type != R_EN) {
      unexpected(cmd, r);
    }
    op_sub_done(op);
    return;
  }
  case KV_OP_PUT:
  case KV_OP_PUT_MANY:
    if (r->type == R_ERR)
      reply_error(cmd, r);
    else if (r->type != R_HD)
      unexpected(cmd, r);
    op_sub_done(op);
    return;
  case KV_OP_DELETE:
  case KV_OP_DELETE_MANY:
    if (cmd->replies_left == 1) { /* the mg */
      if (r->type == R_VA) {
        if (entry_decode(cmd, r, &e) == 0) cmd->live = e.live;
      } else if (r->type == R_ERR) {
        reply_error(cmd, r);
      }
      return; /* the md's reply follows */
    }
    if (r->type == R_ERR) {
      reply_error(cmd, r);
    } else if (r->type == R_HD) {
      if (cmd->live) {
        if (req->op == KV_OP_DELETE)
          req->found = 1;
        else
          req->count++;
      }
    } else if (r->type != R_NF) {
      unexpected(cmd, r);
    }
    op_sub_done(op);
    return;
  case KV_OP_DESTROY:
  case KV_OP_DESTROY_COLLECTION:
    if (r->type == R_HD) {
      if (req->op == KV_OP_DESTROY) {
        memcpy(cmd->srv->sg, cmd->token, MC_TOKEN_LEN);
        cmd->srv->sg_known = 1;
      } else {
        gen_set(cmd->srv, cmd->genkey, cmd->genkey_len, cmd->token);
      }
    } else if (r->type == R_ERR) {
      reply_error(cmd, r);
    } else {
      unexpected(cmd, r);
    }
    op_sub_done(op);
    return;
  default:
    atomic_reply(cmd, r);
    return;
  }
}

/* A reply to a generation check or add. */
static void check_reply(mc_cmd_t *cmd, const mc_reply_t *r) {
  mc_group_t *g = cmd->group;
  mc_server_t *srv = g->srv;
  const char *used = cmd->check_coll ? g->cg : g->sg;
  int known = cmd->check_coll ? g->cg_known : g->sg_known;
  if (cmd->kind == CMD_ADDGEN) {
    if (r->type == R_HD) {
      if (cmd->check_coll)
        gen_set(srv, g->cgkey, g->cgkey_len, cmd->token);
      else {
        memcpy(srv->sg, cmd->token, MC_TOKEN_LEN);
        srv->sg_known = 1;
      }
    } else if (r->type == R_ERR && !g->err) {
      g->err = KV_EBACKEND;
    }
    /* NS: another client added it first; the retried commands read it */
    goto answered;
  }
  if (r->type == R_VA && r->dlen == MC_TOKEN_LEN) {
    if (!known || memcmp(used, r->data, MC_TOKEN_LEN) != 0) g->stale = 1;
    if (cmd->check_coll)
      gen_set(srv, g->cgkey, g->cgkey_len, r->data);
    else {
      memcpy(srv->sg, r->data, MC_TOKEN_LEN);
      srv->sg_known = 1;
    }
  } else if (r->type == R_EN || r->type == R_VA) {
    /* missing (first use, restart, eviction): add a new one; foreign (not a
     * token): overwrite it. The deferred commands are sent again once this
     * is answered. */
    g->stale = 1;
    if (cmd->check_coll)
      gen_set(srv, g->cgkey, g->cgkey_len, NULL);
    else
      srv->sg_known = 0;
    cmd->kind = CMD_ADDGEN;
    cmd->set_mode = r->type == R_EN ? SET_ADD : SET_PLAIN;
    new_token(cmd->token);
    cmd->replies_left = 1;
    cmd_enqueue(cmd);
    return;
  } else {
    if (!g->err) g->err = r->type == R_ERR ? KV_EBACKEND : KV_EPROTO;
  }
answered:
  group_check_answered(g);
  group_unref(g);
  kv_free(cmd);
}

static int is_atomic(kv_op_t op) {
  return op == KV_OP_PUT_IF_ABSENT || op == KV_OP_CAS || op == KV_OP_INCR ||
         op == KV_OP_TAKE;
}

void kv__mc_on_reply(mc_cmd_t *cmd, const mc_reply_t *r) {
  if (cmd->replies_left > 0) {
    /* CMD_DEL's first reply */
    data_reply(cmd, r);
    return;
  }
  if (cmd->kind == CMD_CHECK || cmd->kind == CMD_ADDGEN) {
    check_reply(cmd, r);
    return;
  }
  if (cmd->group) {
    mc_group_t *g = cmd->group;
    int stale = g->stale;
    cmd->group = NULL;
    group_unref(g);
    if (stale) {
      /* written with an old generation: its result means nothing */
      if (is_atomic(cmd->op->req->op))
        atomic_restart(cmd);
      else {
        cmd->replies_left = cmd->kind == CMD_DEL ? 2 : 1;
        cmd->live = 0;
        cmd_retry(cmd);
      }
      return;
    }
  }
  data_reply(cmd, r);
}

/* ---- Commands as text -------------------------------------------------- */

/* Room for one command line with its key (value bytes are reserved apart). */
#define MC_LINE_ROOM (2 * MC_KEY_MAX + 128)

static void emit_genkey_cmd(mc_store_t *st, mc_cmd_t *cmd, const char *key,
                            size_t klen) {
  if (cmd->kind == CMD_CHECK) {
    out_str(st, "mg ");
    out_add(st, key, klen);
    out_str(st, " v\r\n");
  } else {
    out_str(st, "ms ");
    out_add(st, key, klen);
    out_str(st, cmd->set_mode == SET_ADD ? " 16 T0 ME\r\n" : " 16 T0\r\n");
    out_add(st, cmd->token, MC_TOKEN_LEN);
    out_str(st, "\r\n");
  }
  st->stats.commands++;
}

/* Append the entry key of cmd, with the group's generations. */
static void emit_data_key(mc_store_t *st, mc_cmd_t *cmd, mc_group_t *g,
                          int *hashed) {
  size_t kl, used;
  const char *k = cmd_key(cmd, &kl);
  out_add(st, st->kprefix, st->kprefix_len);
  st->out[st->out_len++] = 'd';
  out_add(st, g->sg, MC_TOKEN_LEN);
  st->out[st->out_len++] = '.';
  out_add(st, g->cg, MC_TOKEN_LEN);
  st->out[st->out_len++] = '.';
  used = st->kprefix_len + 3 + 2 * MC_TOKEN_LEN;
  *hashed = !name_is_raw(st, kl, used, k);
  out_name(st, k, kl, used);
}

static int emit_data(mc_store_t *st, mc_cmd_t *cmd, mc_group_t *g) {
  int hashed;
  if (kv__mc_out_reserve(st, MC_LINE_ROOM) != 0) return KV_ENOMEM;
  switch (cmd->kind) {
  case CMD_GET:
    out_str(st, "mg ");
    emit_data_key(st, cmd, g, &hashed);
    out_str(st, cmd->with_cas ? " v c\r\n" : " v\r\n");
    st->stats.commands++;
    return 0;
  case CMD_DEL: {
    size_t start = st->out_len + 3, klen;
    out_str(st, "mg ");
    emit_data_key(st, cmd, g, &hashed);
    klen = st->out_len - start;
    out_str(st, " v\r\nmd ");
    memmove(st->out + st->out_len, st->out + start, klen);
    st->out_len += klen;
    out_str(st, "\r\n");
    st->stats.commands += 2;
    return 0;
  }
  case CMD_DELCAS:
    out_str(st, "md ");
    emit_data_key(st, cmd, g, &hashed);
    out_str(st, " C");
    out_u64(st, cmd->cas);
    out_str(st, "\r\n");
    st->stats.commands++;
    return 0;
  case CMD_SET: {
    unsigned char hdr[MC_HDR_LEN];
    size_t kl, total;
    const char *k = cmd_key(cmd, &kl);
    int64_t exp = cmd->expires_at;
    uint64_t ttl = 0;
    out_str(st, "ms ");
    emit_data_key(st, cmd, g, &hashed);
    total = MC_HDR_LEN + (hashed ? kl : 0) + cmd->vlen;
    st->out[st->out_len++] = ' ';
    out_u64(st, total);
    if (exp != 0) {
      int64_t now = kv_now_ms();
      int64_t rem = exp - now;
      uint64_t secs = rem > 0 ? (uint64_t)((rem + 999) / 1000) + 1 : 1;
      if (secs > MC_RELATIVE_MAX) {
        ttl = (uint64_t)((exp + 999) / 1000) + 1; /* absolute Unix time */
        /* memcached keeps expiries in 32 bits: past 2038, let the entry
         * live on the server and filter on read */
        if (ttl > MC_ABSOLUTE_MAX) ttl = 0;
      } else
        ttl = secs;
    }
    out_str(st, " T");
    out_u64(st, ttl);
    if (cmd->set_mode == SET_CAS) {
      out_str(st, " C");
      out_u64(st, cmd->cas);
    } else if (cmd->set_mode == SET_ADD) {
      out_str(st, " ME");
    }
    out_str(st, "\r\n");
    hdr[0] = MC_MAGIC;
    hdr[1] = MC_VERSION;
    hdr[2] = hashed ? MC_HDR_KEY : 0;
    hdr[3] = 0;
    put_be64(hdr + 4, (uint64_t)exp);
    size_t sk = hashed ? kl : 0;
    hdr[12] = (unsigned char)(sk >> 24);
    hdr[13] = (unsigned char)(sk >> 16);
    hdr[14] = (unsigned char)(sk >> 8);
    hdr[15] = (unsigned char)sk;
    if (kv__mc_out_reserve(
            st, MC_HDR_LEN + sk + 2 +
                    (cmd->vlen <= MC_INLINE_VALUE ? cmd->vlen : 0)) != 0)
      return KV_ENOMEM;
    out_add(st, hdr, MC_HDR_LEN);
    if (sk) out_add(st, k, sk);
    if (cmd->vlen <= MC_INLINE_VALUE) {
      if (cmd->vlen) out_add(st, cmd->value, cmd->vlen);
    } else {
      if (kv__mc_out_ref(st, cmd->value, cmd->vlen) != 0) return KV_ENOMEM;
    }
    out_str(st, "\r\n");
    st->stats.commands++;
    return 0;
  }
  default:
    return KV_EPROTO;
  }
}

/* The write being built for a server: generation commands go as they are;
 * data commands go in groups of one collection, each group led by checks of
 * both generations (see the comment at the top). */
void kv__mc_write_cmd(mc_store_t *st, mc_server_t *srv, mc_cmd_t *c,
                      mc_group_t **gp) {
  mc_group_t *g = *gp;
  int err = 0;
  if (c->kind == CMD_CHECK || c->kind == CMD_ADDGEN || c->kind == CMD_SETGEN) {
    /* generation commands; a check re-sent as an add keeps its group */
    const char *key;
    size_t klen;
    if (c->kind == CMD_SETGEN) {
      key = c->genkey;
      klen = c->genkey_len;
    } else if (c->check_coll) {
      key = c->group->cgkey;
      klen = c->group->cgkey_len;
    } else {
      key = st->kprefix; /* followed by 'g' */
      klen = 0;
    }
    if ((err = kv__mc_out_reserve(st, MC_LINE_ROOM)) == 0) {
      if (klen == 0) {
        char gk[MC_KEY_MAX + 2];
        memcpy(gk, st->kprefix, st->kprefix_len);
        gk[st->kprefix_len] = 'g';
        emit_genkey_cmd(st, c, gk, st->kprefix_len + 1);
      } else {
        emit_genkey_cmd(st, c, key, klen);
      }
      kv__mc_inflight_push(srv, c);
    }
  } else {
    size_t clen;
    const char *coll = op_coll(c->op, &clen);
    if (g == NULL || g->coll_len != clen ||
        (g->coll != coll && memcmp(g->coll, coll, clen) != 0)) {
      /* a new group: check both generations first */
      size_t cgl;
      char *cgk = cgkey_make(st, coll, clen, &cgl);
      mc_group_t *ng = cgk ? kv_malloc(sizeof *ng + cgl + 1) : NULL;
      mc_cmd_t *chk[2] = {NULL, NULL};
      if (ng) {
        chk[0] = kv_calloc(1, sizeof(mc_cmd_t));
        chk[1] = kv_calloc(1, sizeof(mc_cmd_t));
      }
      if (ng == NULL || chk[0] == NULL || chk[1] == NULL ||
          kv__mc_out_reserve(st, 2 * MC_LINE_ROOM) != 0) {
        kv_free(cgk);
        kv_free(ng);
        if (chk[0]) kv_free(chk[0]);
        if (chk[1]) kv_free(chk[1]);
        kv__mc_cmd_fail(c, KV_ENOMEM, "out of memory");
        return;
      }
      memset(ng, 0, sizeof *ng);
      ng->srv = srv;
      ng->coll = coll;
      ng->coll_len = clen;
      ng->cgkey_len = cgl;
      memcpy(ng->cgkey, cgk, cgl + 1);
      kv_free(cgk);
      ng->sg_known = srv->sg_known;
      memcpy(ng->sg, srv->sg, MC_TOKEN_LEN);
      const char *tok = gen_get(srv, ng->cgkey, cgl);
      ng->cg_known = tok != NULL;
      if (tok) memcpy(ng->cg, tok, MC_TOKEN_LEN);
      ng->refs = 2;
      ng->checks = 2;
      for (int i = 0; i < 2; i++) {
        chk[i]->kind = CMD_CHECK;
        chk[i]->check_coll = i;
        chk[i]->group = ng;
        chk[i]->srv = srv;
        chk[i]->replies_left = 1;
        if (i == 0) {
          char gk[MC_KEY_MAX + 2];
          memcpy(gk, st->kprefix, st->kprefix_len);
          gk[st->kprefix_len] = 'g';
          emit_genkey_cmd(st, chk[i], gk, st->kprefix_len + 1);
        } else {
          emit_genkey_cmd(st, chk[i], ng->cgkey, cgl);
        }
        kv__mc_inflight_push(srv, chk[i]);
      }
      g = ng;
    }
    if (!g->sg_known || !g->cg_known) {
      /* unknown generation: wait for the checks, then go again */
      c->group = g;
      g->refs++;
      c->next = NULL;
      if (g->deferred_tail)
        g->deferred_tail->next = c;
      else
        g->deferred = c;
      g->deferred_tail = c;
    } else if ((err = emit_data(st, c, g)) == 0) {
      c->group = g;
      g->refs++;
      kv__mc_inflight_push(srv, c);
    }
  }
  *gp = g;
  if (err) kv__mc_cmd_fail(c, err, "out of memory");
}

/* ---- Operations --------------------------------------------------------- */

static mc_op_t *op_new(mc_store_t *st, kv_req_t *req, size_t ncmds) {
  mc_op_t *op = kv_calloc(1, sizeof *op + ncmds * sizeof(mc_cmd_t));
  if (op == NULL) return NULL;
  op->req = req;
  op->st = st;
  op->ncmds = ncmds;
  op->remaining = ncmds;
  return op;
}

static int nomem(kv_req_t *req) {
  kv_req_complete(req, kv_req_set_error(req, KV_ENOMEM, "out of memory"));
  return 0;
}

/* One command per key (or one for a single-key op) of the given kind. */
static int submit_keys(kv_store_t *s, kv_req_t *req, int kind) {
  mc_store_t *st = STORE(s);
  size_t n = req->in.keys ? req->in.n : 1;
  mc_op_t *op;
  if (n == 0) {
    kv_req_complete(req, 0);
    return 0;
  }
  if ((req->op == KV_OP_GET_MANY || req->op == KV_OP_TTL_MANY) &&
      kv_req_alloc_results(req) != 0)
    return nomem(req);
  op = op_new(st, req, n);
  if (op == NULL) return nomem(req);
  for (size_t i = 0; i < n; i++) {
    mc_cmd_t *c = &op->cmds[i];
    c->op = op;
    c->idx = i;
    c->kind = kind;
    c->replies_left = kind == CMD_DEL ? 2 : 1;
    c->srv = server_for(op, i);
    if (kind == CMD_SET) {
      c->set_mode = SET_PLAIN;
      if (req->in.values) {
        c->value = req->in.values[i].base;
        c->vlen = req->in.values[i].len;
      } else {
        c->value = req->in.value.base;
        c->vlen = req->in.value.len;
      }
      c->expires_at = req->in.expires_at_ms;
    }
  }
  for (size_t i = 0; i < n; i++)
    cmd_enqueue(&op->cmds[i]); /* op may be gone after the last one */
  return 0;
}

static int mc_get(kv_store_t *s, kv_req_t *req) {
  return submit_keys(s, req, CMD_GET);
}

static int mc_put(kv_store_t *s, kv_req_t *req) {
  return submit_keys(s, req, CMD_SET);
}

static int mc_del(kv_store_t *s, kv_req_t *req) {
  return submit_keys(s, req, CMD_DEL);
}

static void op_start_atomic(mc_op_t *op) {
  mc_cmd_t *c = &op->cmds[0];
  c->kind = CMD_GET;
  c->with_cas = 1;
  c->replies_left = 1;
  cmd_enqueue(c);
}

static int mc_atomic(kv_store_t *s, kv_req_t *req) {
  mc_store_t *st = STORE(s);
  mc_op_t *op = op_new(st, req, 1);
  if (op == NULL) return nomem(req);
  op->cmds[0].op = op;
  op->cmds[0].srv = server_for(op, 0);
  op->hash = kv__mc_key_hash(req->in.collection, req->in.collection_len,
                             req->in.key, req->in.key_len);
  if (lock_acquire(op)) op_start_atomic(op);
  return 0;
}

/* destroy / destroy_collection: a new generation on every server. */
static int mc_destroy(kv_store_t *s, kv_req_t *req) {
  mc_store_t *st = STORE(s);
  mc_op_t *op = op_new(st, req, st->nservers);
  if (op == NULL) return nomem(req);
  for (size_t i = 0; i < st->nservers; i++) {
    mc_cmd_t *c = &op->cmds[i];
    c->op = op;
    c->kind = CMD_SETGEN;
    c->set_mode = SET_PLAIN;
    c->replies_left = 1;
    c->srv = &st->servers[i];
    new_token(c->token);
    if (req->op == KV_OP_DESTROY) {
      c->genkey = kv_malloc(st->kprefix_len + 2);
      if (c->genkey) {
        memcpy(c->genkey, st->kprefix, st->kprefix_len);
        c->genkey[st->kprefix_len] = 'g';
        c->genkey[st->kprefix_len + 1] = '\0';
        c->genkey_len = st->kprefix_len + 1;
      }
    } else {
      c->genkey = cgkey_make(st, req->in.collection, req->in.collection_len,
                             &c->genkey_len);
    }
    if (c->genkey == NULL) {
      op_free(op);
      return nomem(req);
    }
  }
  for (size_t i = 0; i < st->nservers; i++)
    cmd_enqueue(&op->cmds[i]);
  return 0;
}

static int mc_cull(kv_store_t *s, kv_req_t *req) {
  (void)s;
  req->count = 0; /* memcached expires entries itself */
  kv_req_complete(req, 0);
  return 0;
}

static int mc_ctl(kv_store_t *s, int op, void *arg, size_t size) {
  mc_store_t *st = STORE(s);
  switch (op) {
  case KV_MEMCACHED_CTL_STATS:
    KV_CTL_EXPECT(arg, size, kv_memcached_stats_t);
    *(kv_memcached_stats_t *)arg = st->stats;
    return 0;
  case KV_MEMCACHED_CTL_LOCATE: {
    kv_memcached_locate_t *l = arg;
    const char *c;
    KV_CTL_EXPECT(arg, size, kv_memcached_locate_t);
    if (l->key == NULL) return KV_EINVAL;
    c = l->collection && *l->collection ? l->collection : s->default_collection;
    l->server = (int)kv__mc_ring_lookup(
        &st->ring, kv__mc_key_hash(c, strlen(c), l->key, strlen(l->key)));
    if (st->nservers == 1) l->server = 0;
    return 0;
  }
  case KV_MEMCACHED_CTL_NSERVERS:
    KV_CTL_EXPECT(arg, size, int);
    *(int *)arg = (int)st->nservers;
    return 0;
  default:
    return KV_ENOTSUP;
  }
}

/* ---- Lifetime ----------------------------------------------------------- */

static int add_server(mc_store_t *st, const char *spec, size_t len, size_t *cap,
                      char *errbuf, size_t errbuf_len) {
  const char *host = spec, *colon = NULL, *end = spec + len;
  size_t hl;
  long port = MC_DEFAULT_PORT;
  mc_server_t *srv;
  if (len == 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "memcached://: empty server in the server list");
  if (*spec == '[') {
    const char *rb = memchr(spec, ']', len);
    if (rb == NULL)
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "memcached://: unterminated '[' in '%.*s'", (int)len,
                        spec);
    host = spec + 1;
    hl = (size_t)(rb - host);
    if (rb + 1 < end) {
      if (rb[1] != ':')
        return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                          "memcached://: bad server '%.*s'", (int)len, spec);
      colon = rb + 1;
    }
  } else {
    colon = memchr(spec, ':', len);
    hl = colon ? (size_t)(colon - spec) : len;
  }
  if (colon) {
    const char *p = colon + 1;
    port = 0;
    if (p == end) port = -1;
    for (; p < end; p++) {
      if (*p < '0' || *p > '9' || port > 65535) {
        port = -1;
        break;
      }
      port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "memcached://: invalid port in server '%.*s'", (int)len,
                        spec);
  }
  if (hl == 0)
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "memcached://: missing host in server '%.*s'", (int)len,
                      spec);
  if (st->nservers == *cap) {
    size_t nc = *cap ? *cap * 2 : 4;
    mc_server_t *p = kv_realloc(st->servers, nc * sizeof *p);
    if (p == NULL)
      return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "no memory");
    st->servers = p;
    *cap = nc;
  }
  srv = &st->servers[st->nservers];
  memset(srv, 0, sizeof *srv);
  srv->host = kv_strndup(host, hl);
  srv->port = (int)port;
  srv->name = kv_malloc(hl + 16);
  if (srv->host == NULL || srv->name == NULL) {
    kv_free(srv->host);
    kv_free(srv->name);
    return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "no memory");
  }
  snprintf(srv->name, hl + 16, "%s:%d", srv->host, srv->port);
  st->nservers++;
  return 0;
}

static int add_servers(mc_store_t *st, const char *list, size_t *cap,
                       char *errbuf, size_t errbuf_len) {
  const char *p = list;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    int err = add_server(st, p, n, cap, errbuf, errbuf_len);
    if (err) return err;
    if (comma == NULL) return 0;
    p = comma + 1;
  }
}

static void free_servers(mc_store_t *st) {
  for (size_t i = 0; i < st->nservers; i++) {
    mc_server_t *srv = &st->servers[i];
    if (srv->gens) gen_clear(srv);
    kv_free(srv->gens);
    kv_free(srv->host);
    kv_free(srv->name);
    kv_free(srv->rbuf);
  }
  kv_free(st->servers);
  st->servers = NULL;
  st->nservers = 0;
}

static int mc_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                   size_t errbuf_len) {
  mc_store_t *st = STORE(s);
  size_t cap = 0;
  int64_t timeout, bo;
  const char *prefix = kv_url_param(url, "prefix");
  const char *more = kv_url_param(url, "servers");
  const char *target = url->target ? url->target : "";
  const char **names = NULL;
  int err;
  size_t tl = strlen(target);

  err = kv_url_param_int(url, "timeout", 1, 3600000, 5000, &timeout, errbuf,
                         errbuf_len);
  if (err) return err;
  err =
      kv_url_param_int(url, "backoff", 1, 600000, 100, &bo, errbuf, errbuf_len);
  if (err) return err;
  if (tl && target[tl - 1] == '/') tl--; /* memcached://host:port/ */
  if (memchr(target, '/', tl) || memchr(target, '@', tl))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "memcached:// takes host:port[,host:port...] without a "
                      "path or user (got '%s')",
                      target);
  if (tl) {
    char *t = kv_strndup(target, tl);
    if (t == NULL) return KV_ENOMEM;
    err = add_servers(st, t, &cap, errbuf, errbuf_len);
    kv_free(t);
    if (err) goto fail;
  }
  if (more && *more) {
    err = add_servers(st, more, &cap, errbuf, errbuf_len);
    if (err) goto fail;
  }
  if (st->nservers == 0) {
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "memcached:// needs at least one host:port");
    goto fail;
  }
  names = kv_calloc(st->nservers, sizeof *names);
  if (names == NULL) {
    err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < st->nservers; i++) {
    mc_server_t *srv = &st->servers[i];
    names[i] = srv->name;
    srv->st = st;
    srv->index = (int)i;
    srv->backoff_ms = (uint64_t)bo;
    srv->gens = kv_calloc(MC_LOCK_BUCKETS, sizeof *srv->gens);
    if (srv->gens == NULL) {
      err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
      goto fail;
    }
    for (size_t j = 0; j < i; j++)
      if (strcmp(st->servers[j].name, srv->name) == 0) {
        err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                         "memcached://: server '%s' listed twice", srv->name);
        goto fail;
      }
  }
  err = kv__mc_ring_build(&st->ring, names, st->nservers);
  kv_free(names);
  names = NULL;
  if (err) {
    err = kv__errbuf(errbuf, errbuf_len, err, "out of memory");
    goto fail;
  }
  /* "kvio:" + ("=" prefix | "#" hash | "") + ":" */
  {
    size_t pl = prefix ? strlen(prefix) : 0;
    st->kprefix = kv_malloc(5 + 1 + MC_HASH_LEN + 2 + 1);
    if (st->kprefix == NULL) {
      err = kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
      goto fail;
    }
    memcpy(st->kprefix, "kvio:", 5);
    st->kprefix_len = 5;
    if (pl) {
      if (pl <= MC_HASH_LEN && name_is_safe(prefix, pl)) {
        st->kprefix[st->kprefix_len++] = '=';
        memcpy(st->kprefix + st->kprefix_len, prefix, pl);
        st->kprefix_len += pl;
      } else {
        hash_name(prefix, pl, st->kprefix + st->kprefix_len);
        st->kprefix_len += 1 + MC_HASH_LEN;
      }
    }
    st->kprefix[st->kprefix_len++] = ':';
    st->kprefix[st->kprefix_len] = '\0';
  }
  st->timeout_ms = (uint64_t)timeout;
  st->backoff_ms = (uint64_t)bo;
  kv__mc_conn_init(st);
  return 0;
fail:
  kv_free(names);
  kv__mc_ring_free(&st->ring);
  kv_free(st->kprefix);
  st->kprefix = NULL;
  free_servers(st);
  return err;
}

void kv__mc_maybe_closed(mc_store_t *st) {
  if (st->handles != 0) return;
  kv__mc_ring_free(&st->ring);
  kv_free(st->kprefix);
  kv_free(st->out);
  kv_free(st->segs);
  free_servers(st);
  kv_store_closed(&st->base);
}

/* Cancel the atomic requests waiting for a key's lock. */
static void cancel_lock_waiters(mc_store_t *st) {
  for (size_t b = 0; b < MC_LOCK_BUCKETS; b++) {
    for (mc_lock_t *l = st->locks[b]; l; l = l->next) {
      mc_op_t *w = l->wait_head;
      l->wait_head = l->wait_tail = NULL;
      while (w) {
        mc_op_t *next = w->lock_next;
        w->lock = NULL;
        kv_req_t *req = w->req;
        op_free(w);
        kv_req_complete(
            req, kv_req_set_error(req, KV_ECANCELED, "the store is closing"));
        w = next;
      }
    }
  }
}

static void mc_close(kv_store_t *s) {
  mc_store_t *st = STORE(s);
  st->closing = 1;
  cancel_lock_waiters(st);
  kv__mc_conn_close(st);
}

static const char *const mc_options[] = {"servers", "prefix", "timeout",
                                         "backoff", NULL};

const kv_store_methods_t kv__memcached_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "memcached",
    .store_size = sizeof(mc_store_t),
    .caps = KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC | KV_CAP_SHARED,
    .options = mc_options,
    .open = mc_open,
    .close = mc_close,
    .get = mc_get,
    .ttl = mc_get,
    .put = mc_put,
    .del = mc_del,
    .get_many = mc_get,
    .ttl_many = mc_get,
    .put_many = mc_put,
    .delete_many = mc_del,
    .destroy = mc_destroy,
    .destroy_collection = mc_destroy,
    .cull = mc_cull,
    .put_if_absent = mc_atomic,
    .cas = mc_atomic,
    .incr = mc_atomic,
    .take = mc_atomic,
    .ctl_ex = mc_ctl,
};
