/* The batcher shared by the local stores: see batcher.h. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "stores/common/batcher.h"

/* ---- Slots -------------------------------------------------------------- */

int kv__op_is_read(kv_op_t op) {
  return op == KV_OP_GET || op == KV_OP_TTL || op == KV_OP_GET_MANY ||
         op == KV_OP_TTL_MANY || op == KV_OP_KEYS || op == KV_OP_COLLECTIONS;
}

void kv__slot_error(kv__slot_t *slot, int status, const char *msg) {
  slot->status = status;
  slot->msg = msg;
}

int kv__slot_add_name(kv__slot_t *slot, const char *name, size_t len) {
  size_t need = slot->names_len + 2 + len;
  unsigned char *p;
  if (need > slot->names_cap) {
    size_t cap = slot->names_cap ? slot->names_cap * 2 : 4096;
    char *q;
    while (cap < need)
      cap *= 2;
    q = kv_realloc(slot->names, cap);
    if (q == NULL) return KV_ENOMEM;
    slot->names = q;
    slot->names_cap = cap;
  }
  p = (unsigned char *)slot->names + slot->names_len;
  p[0] = (unsigned char)(len >> 8);
  p[1] = (unsigned char)len;
  memcpy(p + 2, name, len);
  slot->names_len = need;
  return 0;
}

/* The result helpers allocate with kv_malloc (kvio/backend.h) and the
 * request is still ours, so freeing here mirrors kv_req_cleanup for the
 * fields an engine sets. */
void kv__slot_reset(kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  size_t i;
  slot->status = 0;
  slot->code = 0;
  slot->has_detail = 0;
  slot->msg = NULL;
  kv_free(slot->errmsg);
  slot->errmsg = NULL;
  slot->names_len = 0;
  kv_free(slot->cursor);
  slot->cursor = NULL;
  kv_free(req->value.base);
  req->value.base = NULL;
  req->value.len = 0;
  if (req->results != NULL) {
    for (i = 0; i < req->nresults; i++)
      kv_free(req->results[i].value.base);
    kv_free(req->results);
    req->results = NULL;
    req->nresults = 0;
  }
  for (i = 0; i < req->nnames; i++)
    kv_free(req->names[i].base);
  kv_free(req->names);
  req->names = NULL;
  req->nnames = 0;
  kv_free(req->cursor);
  req->cursor = NULL;
  req->found = 0;
  req->ttl = 0;
  req->number = 0;
  req->count = 0;
}

static const char kv__hex[] = "0123456789abcdef";

void kv__slot_cursor(kv__slot_t *slot, char tag, const void *data, size_t len) {
  const unsigned char *p = data;
  char *s = kv_malloc(2 * len + 2);
  size_t i;
  if (s == NULL) {
    kv__slot_error(slot, KV_ENOMEM, "out of memory");
    return;
  }
  s[0] = tag;
  for (i = 0; i < len; i++) {
    s[1 + 2 * i] = kv__hex[p[i] >> 4];
    s[2 + 2 * i] = kv__hex[p[i] & 15];
  }
  s[1 + 2 * len] = '\0';
  kv_free(slot->cursor);
  slot->cursor = s;
}

static int kv__hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

size_t kv__cursor_parse(const char *s, char tag, void *out, size_t max) {
  unsigned char *o = out;
  size_t n = strlen(s), i;
  if (n < 3 || s[0] != tag || (n - 1) % 2 != 0 || (n - 1) / 2 > max) return 0;
  for (i = 0; i < (n - 1) / 2; i++) {
    int hi = kv__hexval(s[1 + 2 * i]), lo = kv__hexval(s[2 + 2 * i]);
    if (hi < 0 || lo < 0) return 0;
    o[i] = (unsigned char)(hi << 4 | lo);
  }
  return (n - 1) / 2;
}

void kv__slot_give_value(kv__slot_t *slot, const void *p, size_t len) {
  char *buf = kv_malloc(len + 1);
  if (buf == NULL) {
    kv__slot_error(slot, KV_ENOMEM, "out of memory");
    return;
  }
  if (len > 0) memcpy(buf, p, len);
  buf[len] = '\0';
  kv_req_give_value(slot->req, buf, len);
}

int kv__mkdirs(const char *path, int whole, char *buf, size_t buf_len) {
  size_t len = strlen(path), i, end = whole ? len : len - 1;
  struct stat st;
  if (len + 1 > buf_len) return ENAMETOOLONG;
  memcpy(buf, path, len + 1);
  for (i = 1; i <= end; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    if (buf[i - 1] == '/') continue;
    buf[i] = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return errno;
    if (i < len) buf[i] = '/';
  }
  if (!whole) return 0;
  if (stat(path, &st) != 0) return errno;
  if (!S_ISDIR(st.st_mode)) return ENOTDIR;
  return 0;
}

/* ---- Transactions (threadpool, or the loop for loop reads) -------------- */

/* Run slots [lo, hi) in one transaction. Returns the engine's code; on
 * failure *at is the slot that failed, or hi when the whole transaction
 * did (begin or commit). */
static int batch_txn_run(kv__batcher_t *b, size_t lo, size_t hi, size_t *at) {
  const kv__engine_t *e = b->eng;
  void *txn = NULL;
  int64_t now;
  size_t i;
  int rc;
  *at = hi;
  rc = e->begin(b, b->batch_mode, &txn);
  if (rc != 0) return rc;
  now = kv_now_ms();
  for (i = lo; i < hi; i++) {
    rc = e->exec(b, txn, &b->batch[i], now);
    if (rc != 0) {
      e->abort(b, txn, b->batch_mode);
      *at = i;
      return rc;
    }
  }
  rc = e->commit(b, txn, b->batch_mode);
  if (rc == 0) {
    if (b->batch_mode == KV__TXN_WRITE)
      b->w_write_txns++;
    else
      b->w_read_txns++;
  }
  return rc;
}

static void batch_work_cb(uv_work_t *w) {
  kv__batcher_t *b = w->data;
  const kv__engine_t *e = b->eng;
  size_t n = b->nbatch, lo = 0, hi = n, at, i;
  unsigned tries = 0;
  int rc;
  while (lo < n) {
    rc = batch_txn_run(b, lo, hi, &at);
    if (rc == 0) {
      lo = hi;
      hi = n;
      tries = 0;
      continue;
    }
    for (i = lo; i < (at < hi ? at + 1 : hi); i++)
      kv__slot_reset(&b->batch[i]);
    if (e->retry != NULL && e->retry(b, rc, tries++)) {
      b->w_retries++;
      continue; /* the same slots again */
    }
    if (at > lo && at < hi) {
      b->w_splits++;
      hi = at; /* commit the slots before the failing one first */
      continue;
    }
    if (at < hi) {
      e->fail(b, &b->batch[at], rc); /* it fails alone */
      lo = at + 1;
    } else {
      for (i = lo; i < hi; i++) {
        kv__slot_reset(&b->batch[i]);
        e->fail(b, &b->batch[i], rc);
      }
      lo = hi;
    }
    hi = n;
    tries = 0;
  }
}

/* ---- Loop side ---------------------------------------------------------- */

static void batch_deliver(kv__batcher_t *b, kv__slot_t *slot) {
  kv_req_t *req = slot->req;
  int status = slot->status;
  size_t off = 0, len;
  if (status == 0) {
    while (off < slot->names_len) {
      const unsigned char *p = (const unsigned char *)slot->names + off;
      len = ((size_t)p[0] << 8) | p[1];
      if (kv_req_add_name(req, slot->names + off + 2, len) != 0) {
        status = kv_req_set_error(req, KV_ENOMEM, "out of memory");
        break;
      }
      off += 2 + len;
    }
    if (status == 0 && slot->cursor != NULL &&
        kv_req_set_cursor(req, slot->cursor) != 0)
      status = kv_req_set_error(req, KV_ENOMEM, "out of memory");
  } else if (slot->has_detail) {
    /* the op said why, on the request */
  } else if ((slot->code != 0 || slot->errmsg != NULL) &&
             b->eng->detail != NULL) {
    b->eng->detail(b, slot);
  } else {
    kv_req_set_error(req, status, "%s: %s", b->eng->name,
                     slot->errmsg ? slot->errmsg
                     : slot->msg  ? slot->msg
                                  : kv_strerror(status));
  }
  kv_free(slot->names);
  slot->names = NULL;
  slot->names_len = slot->names_cap = 0;
  kv_free(slot->cursor);
  slot->cursor = NULL;
  kv_free(slot->errmsg);
  slot->errmsg = NULL;
  b->ops++;
  kv_req_complete(req, status);
}

/* Answer reads[0..n) on the loop thread in one loop transaction. Returns
 * how many were answered; the rest must go to the threadpool (nothing of
 * them is kept). */
static size_t batch_loop_serve(kv__batcher_t *b, kv_req_t **reqs, size_t n) {
  const kv__engine_t *e = b->eng;
  kv__slot_t slot;
  void *txn = NULL;
  int64_t now;
  size_t i;
  if (e->loop_begin(b, &txn) != 0) {
    b->loop_declined++;
    return 0;
  }
  now = kv_now_ms();
  for (i = 0; i < n; i++) {
    memset(&slot, 0, sizeof(slot));
    slot.req = reqs[i];
    if (e->exec(b, txn, &slot, now) != 0) {
      kv__slot_reset(&slot);
      kv_free(slot.names);
      e->abort(b, txn, KV__TXN_LOOP);
      b->loop_declined++;
      return i;
    }
    b->loop_reads_served++;
    batch_deliver(b, &slot); /* read from one snapshot: final already */
  }
  e->commit(b, txn, KV__TXN_LOOP); /* ends a read: nothing to lose */
  return n;
}

static void batch_idle_cb(uv_idle_t *h) {
  (void)h; /* only keeps the loop from blocking in poll before check runs */
}

static void batch_launch(kv__batcher_t *b);

static void batch_check_cb(uv_check_t *h) {
  kv__batcher_t *b = h->data;
  size_t i, n;
  uv_idle_stop(&b->idle);
  uv_check_stop(&b->check);
  b->scheduled = 0;
  if (b->nqueue == 0) return;
  /* The reads at the head of the queue are answered on the loop when the
   * engine can and no write is in flight (they were submitted before any
   * queued write); the first one it declines and everything after it form
   * the next batch. */
  if (b->loop_reads != KV__LOOP_NONE &&
      !(b->busy && b->batch_mode == KV__TXN_WRITE)) {
    for (n = 0; n < b->nqueue && kv__op_is_read(b->queue[n]->op) &&
                b->queue[n]->priv.store_data[0] != b;
         n++) {
    }
    i = n > 0 ? batch_loop_serve(b, b->queue, n) : 0;
    if (i > 0) {
      memmove(b->queue, b->queue + i, (b->nqueue - i) * sizeof(*b->queue));
      b->nqueue -= i;
    }
    if (b->nqueue == 0) return;
  }
  if (!b->busy) batch_launch(b);
}

/* Launch the queue at the end of this loop turn. */
static void batch_schedule(kv__batcher_t *b) {
  if (b->scheduled) return;
  b->scheduled = 1;
  uv_idle_start(&b->idle, batch_idle_cb);
  uv_check_start(&b->check, batch_check_cb);
}

static void batch_finish_close(kv__batcher_t *b);

static void batch_after_work_cb(uv_work_t *w, int status) {
  kv__batcher_t *b = w->data;
  size_t i;
  (void)status; /* never canceled: the batcher does not uv_cancel */
  /* The worker's counters, for ctl on the loop (which must not read them
   * while a batch runs). */
  b->read_txns = b->w_read_txns;
  b->write_txns = b->w_write_txns;
  b->retries = b->w_retries;
  b->splits = b->w_splits;
  for (i = 0; i < b->nbatch; i++)
    batch_deliver(b, &b->batch[i]);
  b->nbatch = 0;
  b->busy = 0;
  if (b->eng->after != NULL) b->eng->after(b);
  if (b->closing)
    batch_finish_close(b);
  else if (b->nqueue > 0)
    batch_schedule(b);
}

/* Move the queue into the batch and send it to the threadpool. */
static void batch_launch(kv__batcher_t *b) {
  size_t i;
  int rc;
  if (b->nqueue > b->batch_cap) {
    kv__slot_t *s = kv_realloc(b->batch, b->queue_cap * sizeof(*s));
    if (s == NULL) {
      for (i = 0; i < b->nqueue; i++)
        kv_req_complete(b->queue[i], kv_req_set_error(b->queue[i], KV_ENOMEM,
                                                      "out of memory"));
      b->nqueue = 0;
      return;
    }
    b->batch = s;
    b->batch_cap = b->queue_cap;
  }
  b->batch_mode = KV__TXN_READ;
  for (i = 0; i < b->nqueue; i++) {
    kv__slot_t *slot = &b->batch[i];
    memset(slot, 0, sizeof(*slot));
    slot->req = b->queue[i];
    if (!kv__op_is_read(slot->req->op)) b->batch_mode = KV__TXN_WRITE;
  }
  b->nbatch = b->nqueue;
  b->nqueue = 0;
  b->busy = 1;
  b->batches++;
  if (b->eng->launch != NULL) b->eng->launch(b);
  rc = uv_queue_work(b->store->loop, &b->work, batch_work_cb,
                     batch_after_work_cb);
  if (rc != 0) {
    b->busy = 0;
    for (i = 0; i < b->nbatch; i++)
      kv_req_complete(b->batch[i].req,
                      kv_req_set_error(b->batch[i].req, KV_EIO,
                                       "%s: cannot queue work: %s",
                                       b->eng->name, uv_strerror(rc)));
    b->nbatch = 0;
  }
}

/* A store on the batcher begins with these (KV__BATCHED_STORE). */
typedef struct batched_s {
  KV__BATCHED_STORE;
} batched_t;

static kv__batcher_t *batcher_of(kv_store_t *s) {
  return &((batched_t *)s)->batcher;
}

int kv__batch_submit(kv_store_t *s, kv_req_t *req) {
  kv__batcher_t *b = batcher_of(s);
  if (b->closing) return KV_ECLOSED;
  /* A read goes at once on the loop thread when nothing before it is
   * waiting and no write is in flight: it then sees every write submitted
   * before it. */
  if (b->loop_reads == KV__LOOP_SUBMIT && b->nqueue == 0 &&
      !(b->busy && b->batch_mode == KV__TXN_WRITE) && kv__op_is_read(req->op)) {
    if (batch_loop_serve(b, &req, 1) == 1) return 0;
    /* Declined: the threadpool's, not the loop's again at the check. */
    req->priv.store_data[0] = b;
  }
  if (b->nqueue == b->queue_cap) {
    size_t cap = b->queue_cap ? b->queue_cap * 2 : 64;
    kv_req_t **q = kv_realloc(b->queue, cap * sizeof(*q));
    if (q == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
    b->queue = q;
    b->queue_cap = cap;
  }
  b->queue[b->nqueue++] = req;
  /* Reads answered at the end of the turn do not wait for a read batch in
   * flight: they are scheduled at once (the check only serves them on the
   * loop, or launches when nothing is in flight). */
  if (!b->busy ||
      (b->loop_reads == KV__LOOP_TURN && b->batch_mode == KV__TXN_READ))
    batch_schedule(b);
  return 0;
}

void kv__batch_init(kv__batcher_t *b, kv_store_t *s, const kv__engine_t *eng) {
  b->store = s;
  b->eng = eng;
  uv_idle_init(s->loop, &b->idle);
  uv_check_init(s->loop, &b->check);
  b->idle.data = b;
  b->check.data = b;
  b->work.data = b;
}

/* ---- Close -------------------------------------------------------------- */

static void batch_handle_closed(uv_handle_t *h) {
  kv__batcher_t *b = h->data;
  if (--b->nhandles > 0) return;
  b->eng->closed(b);
  kv_free(b->queue);
  kv_free(b->batch);
  b->queue = NULL;
  b->batch = NULL;
  kv_store_closed(b->store);
}

static void batch_close_handles(kv__batcher_t *b) {
  b->nhandles = 2;
  if (b->eng->close_handles != NULL)
    b->nhandles += b->eng->close_handles(b, batch_handle_closed);
  uv_close((uv_handle_t *)&b->idle, batch_handle_closed);
  uv_close((uv_handle_t *)&b->check, batch_handle_closed);
}

static void batch_close_work_cb(uv_work_t *w) {
  kv__batcher_t *b = w->data;
  b->eng->close_work(b);
}

static void batch_close_after_cb(uv_work_t *w, int status) {
  (void)status;
  batch_close_handles(w->data);
}

static void batch_finish_close(kv__batcher_t *b) {
  if (b->eng->close_work == NULL) {
    batch_close_handles(b);
    return;
  }
  b->busy = 1;
  if (uv_queue_work(b->store->loop, &b->work, batch_close_work_cb,
                    batch_close_after_cb) != 0) {
    b->eng->close_work(b);
    batch_close_handles(b);
  }
}

/* Queued requests are canceled; a batch on the threadpool finishes and is
 * delivered, then the engine releases what it holds. */
void kv__batch_close(kv_store_t *s) {
  kv__batcher_t *b = batcher_of(s);
  size_t i;
  b->closing = 1;
  uv_idle_stop(&b->idle);
  uv_check_stop(&b->check);
  b->scheduled = 0;
  for (i = 0; i < b->nqueue; i++)
    kv_req_complete(b->queue[i],
                    kv_req_set_error(b->queue[i], KV_ECANCELED,
                                     "%s: store closed before the request "
                                     "started",
                                     b->eng->name));
  b->nqueue = 0;
  if (!b->busy) batch_finish_close(b);
}
