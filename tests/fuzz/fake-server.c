/* The fake server of the end-to-end fuzz targets: see fake-server.h. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "fuzz/fake-server.h"
#include "internal.h"

static void on_closed_handle(uv_handle_t *h) {
  (void)h;
}

/* Close the server's end; over TCP with a reset rather than a FIN, whoever
 * closes first: what was written stays readable, and no TIME_WAIT socket
 * (on either end) is left eating the machine's ephemeral ports. */
static void close_client(fake_server_t *fs) {
  fs->have_client = 0;
  if (fs->is_tcp) {
    uv_os_fd_t fd;
    struct linger lg = {1, 0};
    if (uv_fileno(&fs->client.handle, &fd) == 0)
      (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  uv_close(&fs->client.handle, on_closed_handle);
}

void fake_server_stop(fake_server_t *fs) {
  if (!uv_is_closing((uv_handle_t *)&fs->idle)) {
    uv_close((uv_handle_t *)&fs->idle, on_closed_handle);
    uv_close((uv_handle_t *)&fs->check, on_closed_handle);
  }
  if (fs->listening) {
    fs->listening = 0;
    uv_close(&fs->listener.handle, on_closed_handle);
  }
  if (fs->have_client) close_client(fs);
}

static void hang_up(fake_server_t *fs) {
  if (!fs->have_client) return;
  fs->hung_up = 1;
  close_client(fs);
}

static void on_written(uv_write_t *w, int status) {
  fake_server_t *fs = w->data;
  (void)status;
  free(w);
  if (--fs->writes == 0 && fs->pos >= fs->reply_len) hang_up(fs);
}

/* After each loop turn: a client that has been quiet for a few turns with
 * nothing left to write to it waits for answers that will not come (the
 * reply bytes ran out mid-exchange): hang up, so that it fails now. Writes
 * on loopback are readable at once, so a few turns are plenty. */
static void on_check(uv_check_t *h) {
  fake_server_t *fs = h->data;
  if (!fs->have_client) {
    uv_idle_stop(&fs->idle);
    uv_check_stop(&fs->check);
    return;
  }
  if (fs->writes > 0 || fs->reads != fs->seen) {
    fs->seen = fs->reads;
    fs->quiet = 0;
  } else if (++fs->quiet >= 3) {
    hang_up(fs);
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

/* Each time the client writes, answer with the next segment of the reply
 * bytes; after the last one, hang up. */
static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  static const char sep_text[] = FAKE_SERVER_SEP;
  const size_t sep_len = sizeof sep_text - 1;
  fake_server_t *fs = s->data;
  const char *start, *sep;
  size_t len;
  uv_write_t *w;
  uv_buf_t b;
  (void)buf;
  if (n == 0) return;
  fs->reads++;
  if (n < 0) { /* the client hung up */
    if (fs->have_client) close_client(fs);
    return;
  }
  if (fs->pos >= fs->reply_len) {
    if (fs->writes == 0) hang_up(fs);
    return;
  }
  start = fs->reply + fs->pos;
  sep = memmem(start, fs->reply_len - fs->pos, sep_text, sep_len);
  len = sep ? (size_t)(sep - start) : fs->reply_len - fs->pos;
  fs->pos += len + (sep ? sep_len : 0);
  if (len == 0) {
    if (fs->pos >= fs->reply_len && fs->writes == 0) hang_up(fs);
    return;
  }
  if ((w = malloc(sizeof *w)) == NULL) abort();
  w->data = fs;
  b = uv_buf_init((char *)(uintptr_t)start, (unsigned)len);
  if (uv_write(w, s, &b, 1, on_written) != 0) {
    free(w);
    hang_up(fs);
    return;
  }
  fs->writes++;
}

static void on_connection(uv_stream_t *l, int status) {
  fake_server_t *fs = l->data;
  if (status != 0 || fs->have_client) return;
  if (fs->is_tcp)
    uv_tcp_init(fs->loop, &fs->client.tcp);
  else
    uv_pipe_init(fs->loop, &fs->client.pipe, 0);
  fs->client.handle.data = fs;
  fs->have_client = 1;
  if (uv_accept(l, &fs->client.stream) != 0 ||
      uv_read_start(&fs->client.stream, srv_alloc, srv_read) != 0) {
    close_client(fs);
  }
  if (fs->have_client) {
    uv_idle_start(&fs->idle, on_idle);
    uv_check_start(&fs->check, on_check);
  }
  /* One connection: a reconnect finds nobody (and fails at once). */
  fs->listening = 0;
  uv_close(&fs->listener.handle, on_closed_handle);
}

static void init(fake_server_t *fs, uv_loop_t *loop, const char *reply,
                 size_t reply_len, int is_tcp) {
  memset(fs, 0, sizeof *fs);
  fs->loop = loop;
  fs->is_tcp = is_tcp;
  fs->reply = reply;
  fs->reply_len = reply_len;
  uv_idle_init(loop, &fs->idle);
  uv_check_init(loop, &fs->check);
  fs->idle.data = fs->check.data = fs;
}

int fake_server_start_tcp(fake_server_t *fs, uv_loop_t *loop, const char *reply,
                          size_t reply_len) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  init(fs, loop, reply, reply_len, 1);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  if (uv_tcp_init(loop, &fs->listener.tcp) != 0 ||
      uv_tcp_bind(&fs->listener.tcp, (const struct sockaddr *)&addr, 0) != 0 ||
      uv_listen(&fs->listener.stream, 4, on_connection) != 0 ||
      uv_tcp_getsockname(&fs->listener.tcp, (struct sockaddr *)&bound, &blen) !=
          0)
    abort();
  fs->listener.handle.data = fs;
  fs->listening = 1;
  return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static char tmp_dir[64], tmp_sock[128];

static void remove_tmp_dir(void) {
  unlink(tmp_sock);
  rmdir(tmp_dir);
}

const char *fake_server_unix_path(const char *name) {
  if (tmp_sock[0] == '\0') {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/kvio-fuzz-%s-XXXXXX", name);
    if (mkdtemp(tmp_dir) == NULL) abort();
    snprintf(tmp_sock, sizeof tmp_sock, "%s/s", tmp_dir);
    atexit(remove_tmp_dir);
  }
  return tmp_sock;
}

void fake_server_start_unix(fake_server_t *fs, uv_loop_t *loop,
                            const char *path, const char *reply,
                            size_t reply_len) {
  init(fs, loop, reply, reply_len, 0);
  unlink(path);
  if (uv_pipe_init(loop, &fs->listener.pipe, 0) != 0 ||
      uv_pipe_bind(&fs->listener.pipe, path) != 0 ||
      uv_listen(&fs->listener.stream, 4, on_connection) != 0)
    abort();
  fs->listener.handle.data = fs;
  fs->listening = 1;
}

/* ---- Checks on the finished request ------------------------------------ */

static void check_buf(const kv_buf_t *b) {
  if (b->base == NULL || b->base[b->len] != '\0') abort();
}

static void check_name(const kv_buf_t *b) {
  char err[256];
  check_buf(b);
  if (kv__check_name("name", b->base, b->len, err, sizeof err) != 0) abort();
}

/* A remaining time, or none: never NaN, infinite or negative. */
static void check_ttl(double ttl) {
  if (ttl != KV_TTL_NONE && !(ttl > 0 && isfinite(ttl))) abort();
}

void fake_server_check_done(const fake_server_t *fs, const kv_req_t *req,
                            int op, size_t nkeys, size_t limit) {
  if (getenv("KV_FUZZ_VERBOSE")) /* to see what a seed reaches */
    fprintf(stderr, "op %d: status %d (%s) found %d count %zu\n", op,
            req->status, kv_req_errmsg(req), req->found, req->count);
  if (req->status != 0) {
    const char *m = kv_req_errmsg(req);
    /* Timing out is right only while the server holds the connection
     * without answering; once it hung up, waiting is a bug. */
    if (req->status > 0 || (req->status == KV_ETIMEDOUT && fs->hung_up))
      abort();
    if (m == NULL || m[0] == '\0') abort();
    return;
  }
  switch (req->op) {
  case KV_OP_GET:
  case KV_OP_TAKE:
  case KV_OP_TTL:
    if (req->found) check_buf(&req->value);
    if (req->op == KV_OP_TTL && req->found) check_ttl(req->ttl);
    break;
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
    if (req->nresults != nkeys || req->results == NULL) abort();
    for (size_t i = 0; i < req->nresults; i++) {
      const kv_result_t *res = &req->results[i];
      if (!res->found) continue;
      check_buf(&res->value);
      if (req->op == KV_OP_TTL_MANY) check_ttl(res->ttl);
    }
    break;
  case KV_OP_DELETE_MANY:
    if (req->count > nkeys) abort(); /* removed more than asked */
    break;
  case KV_OP_KEYS:
  case KV_OP_COLLECTIONS:
    if (req->nnames > limit) abort();
    for (size_t i = 0; i < req->nnames; i++)
      check_name(&req->names[i]);
    if (req->cursor != NULL && req->cursor[0] == '\0') abort();
    break;
  default:
    break;
  }
}
