/* Optimistic transactions on a leased connection (kv_redis_transaction):
 *
 *   WATCH keys...; MGET keys...        (one write)
 *   fn(values) queues its commands
 *   MULTI; the commands; EXEC          (one write)
 *   EXEC = NIL (a watched key changed): again from WATCH, up to
 *   max_attempts in all, then KV_ECONFLICT.
 *
 * Every command of an attempt is counted in `left`; the transaction moves
 * on (calls fn, retries, completes) only when the last reply of the step
 * has come back, so no pending command refers to a finished transaction.
 * The lease goes back to the store before the user's callback runs. */
#include <stdio.h>
#include <string.h>

#include "stores/redis_cluster.h"

#define DEFAULT_ATTEMPTS 16
#define MAX_KEYS 1000
#define MAX_REDIRECTS 5 /* cluster: MOVED replies followed */

enum { T_WATCH = 1, T_MGET, T_MULTI, T_QUEUED, T_EXEC, T_DISCARD };

typedef struct {
  kv__redis_waiter_t w; /* first: waiting for the route (cluster, sentinel) */
  kv_redis_tx_t *tx;
  kv_store_t *ha;  /* the cluster or sentinel store, or NULL */
  int moved;       /* a MOVED reply in this attempt (nothing executed) */
  int ask;         /* an ASK or TRYAGAIN reply: the slot is migrating */
  int redirects;   /* attempts started again after a MOVED */
  kv__redis_t *st; /* the store, or the node of the keys' slot */
  kv__redis_lease_t *lease;
  size_t nkeys;
  char **keys;
  size_t *klen;
  int max_attempts;
  kv_redis_tx_fn fn;
  kv_redis_tx_cb cb;
  size_t left;   /* replies still to come for this step */
  int err;       /* first error of the step */
  char msg[320]; /* its detail */
  int in_fn;
  kv_redis_reply_t *values; /* the MGET reply of this attempt */
  kv_redis_reply_t *exec;   /* the EXEC reply of this attempt */
} tx_impl_t;

static void tx_fail(tx_impl_t *t, int err, const char *msg) {
  if (t->err != 0) return;
  t->err = err;
  snprintf(t->msg, sizeof t->msg, "%s", msg);
}

static void impl_free(tx_impl_t *t) {
  for (size_t i = 0; i < t->nkeys; i++)
    kv_free(t->keys[i]);
  kv_free(t->keys);
  kv_free(t->klen);
  kv__redis_reply_free(t->values);
  kv__redis_reply_free(t->exec);
  kv_free(t);
}

static void finish(kv_redis_tx_t *tx, int status, const char *msg,
                   kv_redis_reply_t *reply) {
  tx_impl_t *t = tx->impl;
  kv_redis_tx_cb cb = t->cb;
  if (t->lease != NULL) kv__redis_lease_put(t->lease);
  tx->impl = NULL;
  tx->status = status;
  tx->reply = reply;
  if (status != 0 && msg != NULL) tx->errmsg = kv_strndup(msg, strlen(msg));
  impl_free(t);
  cb(tx);
}

static void on_tx_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                        kv_redis_reply_t *r, int err, const char *msg);
static void restart(kv_redis_tx_t *tx);

static int tx_send(kv_redis_tx_t *tx, size_t argc, const char *const *argv,
                   const size_t *argvlen, int tag) {
  tx_impl_t *t = tx->impl;
  int rc = kv__redis_lease_send(t->lease, argc, argv, argvlen, on_tx_reply, tx,
                                (uint64_t)tag);
  if (rc == 0) {
    t->left++;
  } else {
    kv__redis_t *c = t->lease->conn;
    tx_fail(t, rc,
            rc == KV_ECLOSED ? "the store was closed"
            : c != NULL      ? c->last_msg
                             : kv_strerror(rc));
  }
  return rc;
}

/* WATCH keys...; MGET keys... */
static int attempt(kv_redis_tx_t *tx) {
  tx_impl_t *t = tx->impl;
  const char **argv = kv_malloc((t->nkeys + 1) * sizeof *argv);
  size_t *argl = kv_malloc((t->nkeys + 1) * sizeof *argl);
  int rc = KV_ENOMEM;
  t->err = 0;
  kv__redis_reply_free(t->values);
  kv__redis_reply_free(t->exec);
  t->values = t->exec = NULL;
  if (argv != NULL && argl != NULL) {
    for (size_t i = 0; i < t->nkeys; i++) {
      argv[i + 1] = t->keys[i];
      argl[i + 1] = t->klen[i];
    }
    argv[0] = "WATCH", argl[0] = 5;
    rc = tx_send(tx, t->nkeys + 1, argv, argl, T_WATCH);
    if (rc == 0) {
      argv[0] = "MGET", argl[0] = 4;
      rc = tx_send(tx, t->nkeys + 1, argv, argl, T_MGET);
    }
  } else {
    tx_fail(t, rc, "out of memory");
  }
  kv_free(argv);
  kv_free(argl);
  return rc;
}

/* The WATCH / MGET step is complete: let fn queue, then EXEC. */
static void run_fn(kv_redis_tx_t *tx) {
  tx_impl_t *t = tx->impl;
  const kv_redis_reply_t **vals;
  const char *multi = "MULTI", *exec = "EXEC", *discard = "DISCARD";
  size_t l5 = 5, l4 = 4, l7 = 7;
  int rc;
  if (t->values == NULL || t->values->type != KV_REDIS_REPLY_ARRAY ||
      t->values->elements != t->nkeys) {
    tx_fail(t, KV_EPROTO, "unexpected reply to MGET");
    return;
  }
  vals = kv_malloc(t->nkeys * sizeof *vals);
  if (vals == NULL) {
    tx_fail(t, KV_ENOMEM, "out of memory");
    return;
  }
  for (size_t i = 0; i < t->nkeys; i++)
    vals[i] = t->values->element[i];
  if (tx_send(tx, 1, &multi, &l5, T_MULTI) != 0) {
    kv_free(vals);
    return;
  }
  tx->attempts++;
  t->in_fn = 1;
  rc = t->fn(tx, vals);
  t->in_fn = 0;
  kv_free(vals);
  if (rc == 0 && t->err == 0) {
    tx_send(tx, 1, &exec, &l4, T_EXEC);
    return;
  }
  {
    /* Stop: DISCARD, and complete with the reason. */
    int why = rc < 0 ? rc : t->err ? t->err : KV_EINVAL;
    char m[sizeof t->msg];
    if (rc < 0)
      snprintf(m, sizeof m, "the transaction's function returned %s",
               kv_err_name(rc));
    else if (t->err)
      memcpy(m, t->msg, sizeof m);
    else
      snprintf(m, sizeof m, "the transaction's function returned %d", rc);
    t->err = 0;
    tx_send(tx, 1, &discard, &l7, T_DISCARD);
    t->err = 0;
    tx_fail(t, why, m);
  }
}

/* The connection's store is closing before EXEC was sent: the user's
 * store, or (cluster, sentinel) only the node, after a failover. */
static void node_closed(kv_redis_tx_t *tx) {
  tx_impl_t *t = tx->impl;
  if (t->ha != NULL && !kv_store_is_closing(t->ha))
    finish(tx, KV_ECONN,
           "the primary changed (failover) before EXEC: nothing was executed",
           NULL);
  else
    finish(tx, KV_ECANCELED, "the store was closed", NULL);
}

/* The last reply of a step has come back: decide. */
static void step_done(kv_redis_tx_t *tx) {
  tx_impl_t *t = tx->impl;
  if (t->err != 0 && t->ha != NULL) { /* cluster, sentinel */
    if (t->moved && t->redirects < MAX_REDIRECTS && !t->st->closing) {
      restart(tx); /* nothing was executed: again on the slot's node */
      return;
    }
    if (t->ask) {
      finish(tx, KV_EBUSY,
             "a key's slot is being migrated (ASK or TRYAGAIN): nothing was "
             "executed, try again",
             NULL);
      return;
    }
    if (t->err == KV_ECONN || t->err == KV_ETIMEDOUT || t->err == KV_EREADONLY)
      kv__redis_route_failed(t->ha, t->err);
  }
  if (t->err != 0) {
    finish(tx, t->err, t->msg, NULL);
    return;
  }
  if (t->exec == NULL) { /* WATCH / MGET done */
    if (t->st->closing) {
      node_closed(tx);
      return;
    }
    run_fn(tx);
  } else if (t->exec->type == KV_REDIS_REPLY_ARRAY) {
    kv_redis_reply_t *r = t->exec;
    t->exec = NULL;
    finish(tx, 0, NULL, r);
    return;
  } else if (t->exec->type == KV_REDIS_REPLY_NIL) { /* a conflict */
    char m[96];
    if (tx->attempts >= t->max_attempts) {
      snprintf(m, sizeof m, "a watched key changed before each of %d attempts",
               tx->attempts);
      finish(tx, KV_ECONFLICT, m, NULL);
      return;
    }
    if (t->st->closing) {
      node_closed(tx);
      return;
    }
    attempt(tx);
  } else {
    finish(tx, KV_EPROTO, "unexpected reply to EXEC", NULL);
    return;
  }
  if (t->left == 0) step_done(tx); /* nothing could be sent */
}

/* Cluster: MOVED (the map is corrected; the attempt starts again on the
 * new node) or ASK / TRYAGAIN (the slot is migrating). */
static void redirected(tx_impl_t *t, const kv_redis_reply_t *r) {
  kv__redis_t *to = NULL;
  int kind = kv__redis_route_redirect(t->ha, r->str, r->len, &to);
  if (kind == 1)
    t->moved = 1;
  else if (kind == 2 || (r->len >= 8 && memcmp(r->str, "TRYAGAIN", 8) == 0))
    t->ask = 1;
}

static void on_tx_reply(kv__redis_t *st, const kv__redis_pend_t *p,
                        kv_redis_reply_t *r, int err, const char *msg) {
  kv_redis_tx_t *tx = p->ctx;
  tx_impl_t *t = tx->impl;
  int tag = (int)p->tag;
  t->left--;
  if (err != 0) {
    tx_fail(t, err, msg);
  } else if (r->type == KV_REDIS_REPLY_ERROR) {
    if (t->ha != NULL) redirected(t, r);
    if (tag == T_EXEC || tag == T_MGET || tag == T_WATCH) {
      char m[300];
      snprintf(m, sizeof m, "%s: %s", st->endpoint, r->str);
      tx_fail(t, kv__redis_error_code(r->str, r->len), m);
    } /* a refused queued command: EXEC answers EXECABORT */
  } else if (tag == T_MGET) {
    kv_redis_reply_t *own = kv_malloc(sizeof *own);
    if (own == NULL) {
      tx_fail(t, KV_ENOMEM, "out of memory");
    } else {
      *own = *r;
      memset(r, 0, sizeof *r);
      t->values = own;
    }
  } else if (tag == T_EXEC) {
    kv_redis_reply_t *own = kv_malloc(sizeof *own);
    if (own == NULL) {
      tx_fail(t, KV_ENOMEM, "out of memory");
    } else {
      *own = *r;
      memset(r, 0, sizeof *r);
      t->exec = own;
    }
  }
  if (t->left == 0) step_done(tx);
}

/* Lease a connection (on a cluster: of the node that serves the keys'
 * slot; on a sentinel store: of the primary) and send the first WATCH.
 * 0: sent, or waiting for the route; < 0: nothing sent (t->err, t->msg). */
static int begin(kv_redis_tx_t *tx) {
  tx_impl_t *t = tx->impl;
  int rc;
  t->err = 0;
  t->moved = t->ask = 0;
  if (t->ha != NULL) {
    kv__redis_t *node = NULL;
    const char *msg = NULL;
    rc = kv__redis_route(t->ha, t->keys[0], t->klen[0], 0, &t->w, &node, &msg);
    if (rc == 1) return 0;
    if (rc < 0) {
      tx_fail(t, rc, msg);
      return rc;
    }
    t->st = node;
  }
  t->lease = kv__redis_lease_get(t->st, 1);
  if (t->lease == NULL) {
    tx_fail(t, KV_ENOMEM, "out of memory");
    return KV_ENOMEM;
  }
  rc = attempt(tx);
  return rc != 0 && t->left == 0 ? rc : 0;
}

/* The route is known (or cannot be): from the store's timer. */
static void on_route(kv__redis_waiter_t *w, int err, const char *msg) {
  tx_impl_t *t = (tx_impl_t *)w;
  kv_redis_tx_t *tx = t->tx;
  if (err != 0) {
    finish(tx, err, msg, NULL);
    return;
  }
  if (begin(tx) != 0) finish(tx, t->err, t->msg, NULL);
}

static void restart(kv_redis_tx_t *tx) {
  tx_impl_t *t = tx->impl;
  t->redirects++;
  kv__redis_lease_put(t->lease); /* DISCARD / UNWATCH go with it */
  t->lease = NULL;
  if (begin(tx) != 0) finish(tx, t->err, t->msg, NULL);
}

/* ---- API ----------------------------------------------------------------- */

static int tx_error(kv_redis_tx_t *tx, int err, const char *msg) {
  tx->errmsg = kv_strndup(msg, strlen(msg));
  return err;
}

int kv_redis_transaction(kv_store_t *s, kv_redis_tx_t *tx, int nkeys,
                         const char **keys, int max_attempts, kv_redis_tx_fn fn,
                         kv_redis_tx_cb cb) {
  kv__redis_t *st = (kv__redis_t *)s;
  tx_impl_t *t;
  int rc, ha = kv__redis_ha_kind(s);
  if (tx == NULL) return KV_EINVAL;
  tx->store = s;
  tx->status = 0;
  tx->attempts = 0;
  tx->reply = NULL;
  tx->errmsg = NULL;
  tx->impl = NULL;
  if (s == NULL || (s->methods != &kv__redis_methods && !ha))
    return tx_error(tx, KV_EINVAL, "kv_redis_transaction: not a redis store");
  if (fn == NULL || cb == NULL || keys == NULL || nkeys < 1 ||
      nkeys > MAX_KEYS || max_attempts < 0)
    return tx_error(tx, KV_EINVAL,
                    "kv_redis_transaction: needs fn, cb, 1 to 1000 keys and "
                    "max_attempts >= 0");
  for (int i = 0; i < nkeys; i++)
    if (keys[i] == NULL)
      return tx_error(tx, KV_EINVAL, "kv_redis_transaction: NULL key");
  if (ha == 1) /* WATCH, MGET and EXEC need every key in one slot */
    for (int i = 1; i < nkeys; i++)
      if (kv__rcl_slot(keys[i], strlen(keys[i])) !=
          kv__rcl_slot(keys[0], strlen(keys[0])))
        return tx_error(tx, KV_EINVAL,
                        "kv_redis_transaction: on a cluster every key must be "
                        "in one slot (give them a hash tag: {user1}:a, "
                        "{user1}:b)");
  if (kv_store_is_closing(s))
    return tx_error(tx, KV_ECLOSED, "the store is closing");
  t = kv_calloc(1, sizeof *t);
  if (t == NULL) return tx_error(tx, KV_ENOMEM, "out of memory");
  t->st = ha ? NULL : st;
  t->ha = ha ? s : NULL;
  t->tx = tx;
  t->w.ready = on_route;
  t->fn = fn;
  t->cb = cb;
  t->max_attempts = max_attempts ? max_attempts : DEFAULT_ATTEMPTS;
  t->nkeys = (size_t)nkeys;
  t->keys = kv_calloc(t->nkeys, sizeof *t->keys);
  t->klen = kv_calloc(t->nkeys, sizeof *t->klen);
  if (t->keys == NULL || t->klen == NULL) {
    impl_free(t);
    return tx_error(tx, KV_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < t->nkeys; i++) {
    t->klen[i] = strlen(keys[i]);
    t->keys[i] = kv_strndup(keys[i], t->klen[i]);
    if (t->keys[i] == NULL) {
      impl_free(t);
      return tx_error(tx, KV_ENOMEM, "out of memory");
    }
  }
  tx->impl = t;
  rc = begin(tx);
  if (rc != 0) { /* nothing sent: refuse, no callback */
    if (t->lease != NULL) kv__redis_lease_put(t->lease);
    tx->impl = NULL;
    rc = tx_error(tx, t->err, t->msg);
    impl_free(t);
    return rc;
  }
  return 0; /* an error after WATCH was sent completes from the loop */
}

int kv_redis_tx_queue(kv_redis_tx_t *tx, int argc, const char **argv,
                      const size_t *argvlen) {
  tx_impl_t *t = tx ? tx->impl : NULL;
  size_t *lens = NULL, stack[16], len0;
  int rc;
  if (t == NULL || !t->in_fn || argc < 1 || argv == NULL) return KV_EINVAL;
  for (int i = 0; i < argc; i++)
    if (argv[i] == NULL) return KV_EINVAL;
  len0 = argvlen ? argvlen[0] : strlen(argv[0]);
  if (kv__redis_cmd_kind(argv[0], len0) != 0) return KV_EINVAL;
  if (argvlen == NULL) {
    lens = argc <= 16 ? stack : kv_malloc((size_t)argc * sizeof *lens);
    if (lens == NULL) return KV_ENOMEM;
    for (int i = 0; i < argc; i++)
      lens[i] = strlen(argv[i]);
    argvlen = lens;
  }
  rc = tx_send(tx, (size_t)argc, argv, argvlen, T_QUEUED);
  if (lens != stack) kv_free(lens);
  return rc;
}

void kv_redis_tx_cleanup(kv_redis_tx_t *tx) {
  if (tx == NULL) return;
  kv__redis_reply_free(tx->reply);
  kv_free(tx->errmsg);
  tx->reply = NULL;
  tx->errmsg = NULL;
}

const char *kv_redis_tx_errmsg(const kv_redis_tx_t *tx) {
  return tx->errmsg ? tx->errmsg : kv_strerror(tx->status);
}
