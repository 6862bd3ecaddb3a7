/* libFuzzer target: the memcached store's handling of server replies
 * (src/stores/memcached.c, memcached_conn.c). The meta-protocol parser is fuzzed alone by
 * fuzz-memcached-reply; here replies go through the store, end to end, over
 * a real connection:
 *
 *   input = op selector, flags, reply bytes
 *
 * A fake server on 127.0.0.1 (in this process, on the same loop) accepts
 * the store's connection and answers each write of the store with the next
 * segment of the reply bytes (segments are separated by "\n--\n": the
 * generation checks of a first batch are answered, then the commands sent
 * again), whatever they are; after the last segment, or when the store
 * waits for answers that the bytes do not hold, it hangs up. One
 * request of the
 * selected kind (get, ttl, take, delete, put with and without TTL,
 * put_if_absent, cas, incr, get_many, ttl_many, put_many, delete_many,
 * destroy, destroy_collection) runs against it. Then:
 *  - the callback runs exactly once; a failure has a message; nothing
 *    fails with KV_ETIMEDOUT once the server has hung up (the closed
 *    connection must fail what waits);
 *  - results are well formed: values NUL-terminated, one slot per key,
 *    TTLs positive and finite, delete_many's count at most the keys;
 *  - the store closes and the loop ends with every handle closed (ASan and
 *    LSan watch the memory). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "internal.h"

/* Separates the answers to successive writes of the store. */
#define SEP "\n--\n"

typedef struct {
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_tcp_t client;
  uv_idle_t idle;   /* keeps poll from blocking while the client is up */
  uv_check_t check; /* notices a client that waits for more answers */
  int listening, have_client, hung_up, writes, quiet;
  size_t pos;                /* reply bytes sent so far */
  unsigned long reads, seen; /* server reads, and as of the last check */
  const char *reply;
  size_t reply_len;
  kv_store_t *store;
  kv_req_t req;
  int op;
  size_t nkeys, limit;
  int calls, closed;
} fx_t;

static void on_closed_handle(uv_handle_t *h) {
  (void)h;
}

static void close_client(fx_t *fx);

static void server_stop(fx_t *fx) {
  if (!uv_is_closing((uv_handle_t *)&fx->idle)) {
    uv_close((uv_handle_t *)&fx->idle, on_closed_handle);
    uv_close((uv_handle_t *)&fx->check, on_closed_handle);
  }
  if (fx->listening) {
    fx->listening = 0;
    uv_close((uv_handle_t *)&fx->listener, on_closed_handle);
  }
  if (fx->have_client) {
    close_client(fx);
  }
}

/* Close the server's end with a reset rather than a FIN, whoever closes
 * first: what was written stays readable, and tens of thousands of runs
 * leave no TIME_WAIT sockets (on either end) eating the machine's ephemeral
 * ports. */
static void close_client(fx_t *fx) {
  uv_os_fd_t fd;
  struct linger lg = {1, 0};
  fx->have_client = 0;
  if (uv_fileno((uv_handle_t *)&fx->client, &fd) == 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  uv_close((uv_handle_t *)&fx->client, on_closed_handle);
}

static void hang_up(fx_t *fx) {
  if (!fx->have_client) return;
  fx->hung_up = 1;
  close_client(fx);
}

static void on_written(uv_write_t *w, int status) {
  fx_t *fx = w->data;
  (void)status;
  free(w);
  if (--fx->writes == 0 && fx->pos >= fx->reply_len) hang_up(fx);
}

/* After each loop turn: a client that has been quiet for a few turns with
 * nothing left to write to it waits for answers that will not come (the
 * reply bytes ran out mid-exchange): hang up, so that it fails now. Writes
 * on loopback are readable at once, so a few turns are plenty. */
static void on_check(uv_check_t *h) {
  fx_t *fx = h->data;
  if (!fx->have_client) {
    uv_idle_stop(&fx->idle);
    uv_check_stop(&fx->check);
    return;
  }
  if (fx->writes > 0 || fx->reads != fx->seen) {
    fx->seen = fx->reads;
    fx->quiet = 0;
  } else if (++fx->quiet >= 3) {
    hang_up(fx);
  }
}

static void on_idle(uv_idle_t *h) {
  (void)h;
}

static void srv_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf) {
  static char rbuf[65536];
  (void)h;
  (void)n;
  *buf = uv_buf_init(rbuf, sizeof rbuf);
}

/* Each time the store writes, answer with the next segment of the reply
 * bytes (segments end at SEP); after the last one, hang up. */
static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  fx_t *fx = s->data;
  const char *start, *sep;
  size_t len;
  uv_write_t *w;
  uv_buf_t b;
  (void)buf;
  if (n == 0) return;
  fx->reads++;
  if (n < 0) { /* the store hung up */
    if (fx->have_client) {
      close_client(fx);
    }
    return;
  }
  if (fx->pos >= fx->reply_len) {
    if (fx->writes == 0) hang_up(fx);
    return;
  }
  start = fx->reply + fx->pos;
  sep = memmem(start, fx->reply_len - fx->pos, SEP, sizeof SEP - 1);
  len = sep ? (size_t)(sep - start) : fx->reply_len - fx->pos;
  fx->pos += len + (sep ? sizeof SEP - 1 : 0);
  if (len == 0) {
    if (fx->pos >= fx->reply_len && fx->writes == 0) hang_up(fx);
    return;
  }
  if ((w = malloc(sizeof *w)) == NULL) abort();
  w->data = fx;
  b = uv_buf_init((char *)(uintptr_t)start, (unsigned)len);
  if (uv_write(w, s, &b, 1, on_written) != 0) {
    free(w);
    hang_up(fx);
    return;
  }
  fx->writes++;
}

static void on_connection(uv_stream_t *l, int status) {
  fx_t *fx = l->data;
  if (status != 0 || fx->have_client) return;
  uv_tcp_init(&fx->loop, &fx->client);
  fx->client.data = fx;
  fx->have_client = 1;
  if (uv_accept(l, (uv_stream_t *)&fx->client) != 0 ||
      uv_read_start((uv_stream_t *)&fx->client, srv_alloc, srv_read) != 0) {
    close_client(fx);
  }
  if (fx->have_client) {
    uv_idle_start(&fx->idle, on_idle);
    uv_check_start(&fx->check, on_check);
  }
  /* One connection: a reconnect finds nobody (and fails at once). */
  fx->listening = 0;
  uv_close((uv_handle_t *)&fx->listener, on_closed_handle);
}

static void store_closed(kv_store_t *s) {
  fx_t *fx = kv_store_loop(s)->data;
  fx->closed++;
  server_stop(fx);
}

static void check_buf(const kv_buf_t *b) {
  if (b->base == NULL || b->base[b->len] != '\0') abort();
}

static void check_name(const kv_buf_t *b) {
  char err[256];
  check_buf(b);
  if (kv__check_name("name", b->base, b->len, err, sizeof err) != 0) abort();
}

static void finish(fx_t *fx) {
  if (++fx->calls != 1) abort();
  kv_store_close(fx->store, store_closed);
}

static void on_done(kv_req_t *req) {
  fx_t *fx = req->data;
  if (getenv("KV_FUZZ_VERBOSE")) /* to see what a seed reaches */
    fprintf(stderr, "op %d: status %d (%s) found %d count %zu\n", fx->op,
            req->status, kv_req_errmsg(req), req->found, req->count);
  if (req->status != 0) {
    const char *m = kv_req_errmsg(req);
    /* Timing out is right only while the server holds the connection
     * without answering; once it hung up, waiting is a bug. */
    if (req->status > 0 || (req->status == KV_ETIMEDOUT && fx->hung_up))
      abort();
    if (m == NULL || m[0] == '\0') abort();
  } else {
    switch (req->op) {
    case KV_OP_GET:
    case KV_OP_TAKE:
    case KV_OP_TTL:
      if (req->found) check_buf(&req->value);
      if (req->op == KV_OP_TTL && req->found && req->ttl != KV_TTL_NONE &&
          !(req->ttl > 0 && isfinite(req->ttl)))
        abort();
      break;
    case KV_OP_GET_MANY:
    case KV_OP_TTL_MANY:
      if (req->nresults != fx->nkeys || req->results == NULL) abort();
      for (size_t i = 0; i < req->nresults; i++) {
        const kv_result_t *res = &req->results[i];
        if (!res->found) continue;
        check_buf(&res->value);
        /* A remaining time, or none: never NaN, infinite or negative. */
        if (req->op == KV_OP_TTL_MANY && res->ttl != KV_TTL_NONE &&
            !(res->ttl > 0 && isfinite(res->ttl)))
          abort();
      }
      break;
    case KV_OP_DELETE_MANY:
      if (req->count > fx->nkeys) abort(); /* removed more than asked */
      break;
    case KV_OP_KEYS:
    case KV_OP_COLLECTIONS:
      if (req->nnames > fx->limit) abort();
      for (size_t i = 0; i < req->nnames; i++)
        check_name(&req->names[i]);
      if (req->cursor != NULL && req->cursor[0] == '\0') abort();
      break;
    default:
      break;
    }
  }
  kv_req_cleanup(req);
  finish(fx);
}

#define NOPS 15

static int submit(fx_t *fx, int op) {
  static const char *const keys[] = {
      "k1", "k2", "k1",
      "a key with spaces, so hashed by the store (memcached keys have none)"};
  static char v1[] = "v1", v2[] = "v2", v3[] = "v3", v4[] = "v4";
  static const kv_buf_t vals[] = {{v1, 2}, {v2, 2}, {v3, 2}, {v4, 2}};
  kv_store_t *s = fx->store;
  kv_req_t *r = &fx->req;
  const char *c = "c:1";
  r->data = fx;
  switch (op) {
  case 0:
    return kv_get(s, r, c, "k", on_done);
  case 1:
    return kv_ttl(s, r, c, "k", on_done);
  case 2:
    return kv_take(s, r, c, "k", on_done);
  case 3:
    return kv_delete(s, r, c, "k", on_done);
  case 4:
    return kv_put(s, r, c, "k", "v", 1, 0, on_done);
  case 5:
    return kv_put(s, r, c, "k", "v", 1, 30, on_done);
  case 6:
    return kv_put_if_absent(s, r, c, "k", "v", 1, 0, on_done);
  case 7:
    return kv_cas(s, r, c, "k", "old", 3, "new", 3, 0, on_done);
  case 8:
    return kv_incr(s, r, c, "n", 5, 0, on_done);
  case 9:
    return kv_get_many(s, r, c, keys, fx->nkeys, on_done);
  case 10:
    return kv_ttl_many(s, r, c, keys, fx->nkeys, on_done);
  case 11:
    return kv_put_many(s, r, c, keys, vals, fx->nkeys, 10, on_done);
  case 12:
    return kv_delete_many(s, r, c, keys, fx->nkeys, on_done);
  case 13:
    return kv_destroy(s, r, on_done);
  default:
    return kv_destroy_collection(s, r, c, on_done);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int state; /* 0: not set up; 1: ready; -1: no memcached part */
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  fx_t *fx;
  char url[512], err[512];
  int flags, rc;
  if (state == 0)
    state = kv_schemes() && strstr(kv_schemes(), "memcached") ? 1 : -1;
  if (state < 0 || size < 2) return 0;
  fx = calloc(1, sizeof *fx);
  if (fx == NULL) abort();
  fx->op = data[0] % NOPS;
  flags = data[1];
  fx->nkeys = 1 + (size_t)(flags >> 4 & 3);
  fx->reply = (const char *)data + 2;
  fx->reply_len = size - 2;
  if (uv_loop_init(&fx->loop) != 0) abort();
  fx->loop.data = fx;
  uv_idle_init(&fx->loop, &fx->idle);
  uv_check_init(&fx->loop, &fx->check);
  fx->idle.data = fx->check.data = fx;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  if (uv_tcp_init(&fx->loop, &fx->listener) != 0 ||
      uv_tcp_bind(&fx->listener, (const struct sockaddr *)&addr, 0) != 0 ||
      uv_listen((uv_stream_t *)&fx->listener, 4, on_connection) != 0 ||
      uv_tcp_getsockname(&fx->listener, (struct sockaddr *)&bound, &blen) != 0)
    abort();
  fx->listener.data = fx;
  fx->listening = 1;
  snprintf(url, sizeof url, "memcached://127.0.0.1:%d?timeout=1000%s",
           ntohs(((struct sockaddr_in *)&bound)->sin_port),
           flags & 4 ? "&prefix=app" : "");
  if (kv_open_ex(&fx->loop, url, &fx->store, err, sizeof err) != 0) abort();
  rc = submit(fx, fx->op);
  if (rc != 0) { /* refused at submit: no callback will come */
    kv_req_cleanup(&fx->req);
    finish(fx);
  }
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  if (fx->calls != 1 || fx->closed != 1) abort();
  if (uv_loop_close(&fx->loop) != 0) abort();
  free(fx);
  return 0;
}
