/* Tests of the Redis client features beyond key-value (docs/redis.md):
 * Pub/Sub subscribers (channels, patterns, unsubscribe, a server killed and
 * restarted under a subscriber), publish, leased connections, the
 * optimistic transaction helper (eight concurrent incrementers, conflicts
 * exhausted, errors), the connection pool (10,000 requests in flight over
 * four connections), the raw request rules (called back from the loop,
 * exactly once, cancelled on close), every URL form, and TLS over a unix
 * socket.
 *
 * Run under tests/servers/with-redis.sh (the shared server; tests that kill
 * a server start their own). Under `with-redis.sh --tls` only the TLS tests
 * run: redis+tls:// and redis+unix+tls:// (a unix socket relayed byte for
 * byte to the server's TLS port, so the TLS session is the client's and
 * the server's, over a unix socket, with the certificate with-redis.sh
 * generated). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kvio.h"
#include "kvio/redis.h"

static const char *g_port, *g_dir, *g_server, *g_ca, *g_sock;
static char g_cli[256] = "redis-cli";

#include "redis-fixture.h"

static void raw_ok(fx_t *fx, int argc, const char **argv) {
  kv_redis_req_t r;
  int rc = raw(fx, &r, argc, argv);
  if (rc != 0 || r.reply->type == KV_REDIS_REPLY_ERROR)
    fail_msg("%s: %s %s", argv[0], kv_err_name(rc),
             rc ? kv_redis_req_errmsg(&r) : r.reply->str);
  kv_redis_req_cleanup(&r);
}

static long long publish(fx_t *fx, const char *ch, const char *msg) {
  kv_redis_req_t r;
  long long n;
  memset(&r, 0, sizeof r);
  assert_int_equal(
      wait_req(fx, &r.status,
               kv_redis_publish(fx->store, &r, ch, msg, strlen(msg), raw_cb)),
      0);
  assert_int_equal(r.reply->type, KV_REDIS_REPLY_INTEGER);
  n = r.reply->integer;
  kv_redis_req_cleanup(&r);
  return n;
}

/* redis-cli, another process: what an outside publisher does. */
static void cli(const char *port, const char *args) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "%s -h 127.0.0.1 -p %s %s >/dev/null", g_cli, port,
           args);
  assert_int_equal(system(cmd), 0);
}

/* ---- A subscriber that records ------------------------------------------- */

typedef struct {
  int messages, subscribed, unsubscribed, downs, gaps, closed;
  char channel[64], pattern[64], payload[64];
  int last_status;
} rec_t;

static void on_sub(kv_redis_sub_t *sub, const kv_redis_msg_t *m) {
  rec_t *r = kv_redis_sub_data(sub);
  switch (m->event) {
  case KV_REDIS_SUB_MESSAGE:
    r->messages++;
    snprintf(r->channel, sizeof r->channel, "%.*s", (int)m->channel_len,
             m->channel);
    snprintf(r->pattern, sizeof r->pattern, "%.*s", (int)m->pattern_len,
             m->pattern ? m->pattern : "");
    snprintf(r->payload, sizeof r->payload, "%.*s", (int)m->payload_len,
             m->payload);
    assert_int_equal(m->channel[m->channel_len], '\0');
    break;
  case KV_REDIS_SUB_SUBSCRIBED:
    r->subscribed++;
    break;
  case KV_REDIS_SUB_UNSUBSCRIBED:
    r->unsubscribed++;
    break;
  case KV_REDIS_SUB_DOWN:
    r->downs++;
    r->last_status = m->status;
    assert_non_null(m->errmsg);
    break;
  case KV_REDIS_SUB_GAP:
    r->gaps++;
    break;
  case KV_REDIS_SUB_CLOSED:
    r->closed++;
    break;
  default:
    fail_msg("unknown event %d", m->event);
  }
}

static int reached(int have, int want) {
  return have >= want;
}

#define WAIT(fx, cond, ms)                                           \
  do {                                                               \
    uint64_t t0_ = uv_hrtime();                                      \
    while (!(cond) && uv_hrtime() - t0_ < (uint64_t)(ms)*1000000u) { \
      uv_timer_t t_;                                                 \
      int f_ = 0;                                                    \
      uv_timer_init(&(fx)->loop, &t_);                               \
      t_.data = &f_;                                                 \
      uv_timer_start(&t_, timer_cb, 20, 0);                          \
      while (!(cond) && !f_)                                         \
        uv_run(&(fx)->loop, UV_RUN_ONCE);                            \
      uv_close((uv_handle_t *)&t_, NULL);                            \
      uv_run(&(fx)->loop, UV_RUN_NOWAIT);                            \
    }                                                                \
    if (!(cond)) fail_msg("timed out waiting for %s", #cond);        \
  } while (0)

static void sub_close(fx_t *fx, kv_redis_sub_t *sub, rec_t *rec) {
  assert_int_equal(kv_redis_sub_close(sub), 0);
  assert_int_equal(kv_redis_sub_close(sub), KV_ECLOSED);
  assert_int_equal(rec->closed, 0); /* not from inside the call */
  WAIT(fx, rec->closed == 1, 5000);
}

/* ---- Pub/Sub ------------------------------------------------------------- */

static void test_subscribe_channels(void **state) {
  fx_t *fx = *state;
  char url[128];
  rec_t rec = {0};
  kv_redis_sub_t *sub;
  const char *chans[] = {"kvt.a", "kvt.b"};
  kv_redis_sub_stats_t ss;
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  assert_int_equal(kv_redis_subscriber(fx->store, on_sub, &rec, &sub), 0);
  assert_int_equal(kv_redis_sub_subscribe(sub, 2, chans), 0);
  WAIT(fx, reached(rec.subscribed, 2), 5000);
  /* From another process, with the channel's name. */
  cli(g_port, "PUBLISH kvt.a hello");
  WAIT(fx, rec.messages == 1, 5000);
  assert_string_equal(rec.channel, "kvt.a");
  assert_string_equal(rec.payload, "hello");
  assert_string_equal(rec.pattern, "");
  cli(g_port, "PUBLISH kvt.b world");
  WAIT(fx, rec.messages == 2, 5000);
  assert_string_equal(rec.channel, "kvt.b");
  assert_string_equal(rec.payload, "world");
  /* First-class publish: the number of receivers. */
  assert_int_equal(publish(fx, "kvt.a", "x"), 1);
  assert_int_equal(publish(fx, "kvt.nobody", "x"), 0);
  WAIT(fx, rec.messages == 3, 5000);
  /* Unsubscribe stops delivery: the server counts no receiver. */
  assert_int_equal(kv_redis_sub_unsubscribe(sub, 1, chans), 0);
  WAIT(fx, rec.unsubscribed == 1, 5000);
  assert_int_equal(publish(fx, "kvt.a", "gone"), 0);
  assert_int_equal(publish(fx, "kvt.b", "still"), 1);
  WAIT(fx, rec.messages == 4, 5000);
  assert_string_equal(rec.payload, "still");
  kv_redis_sub_stats(sub, &ss);
  assert_int_equal(ss.messages, 4);
  assert_int_equal(ss.channels, 1);
  assert_int_equal(ss.gaps, 0);
  /* Unsubscribe from everything. */
  assert_int_equal(kv_redis_sub_unsubscribe(sub, 0, NULL), 0);
  WAIT(fx, rec.unsubscribed == 2, 5000);
  assert_int_equal(publish(fx, "kvt.b", "none"), 0);
  /* Argument errors. */
  assert_int_equal(kv_redis_sub_subscribe(sub, 0, chans), KV_EINVAL);
  assert_int_equal(kv_redis_sub_subscribe(sub, 1, NULL), KV_EINVAL);
  sub_close(fx, sub, &rec);
  assert_int_equal(rec.messages, 4);
  assert_int_equal(rec.downs, 0);
}

static void test_subscribe_patterns(void **state) {
  fx_t *fx = *state;
  char url[128];
  rec_t rec = {0};
  kv_redis_sub_t *sub;
  const char *pats[] = {"kvt.news.*"};
  const char *chans[] = {"kvt.news.one"};
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0?connections=2", g_port);
  fx_open(fx, url);
  assert_int_equal(kv_redis_subscriber(fx->store, on_sub, &rec, &sub), 0);
  assert_int_equal(kv_redis_sub_psubscribe(sub, 1, pats), 0);
  WAIT(fx, rec.subscribed == 1, 5000);
  cli(g_port, "PUBLISH kvt.news.sport goal");
  WAIT(fx, rec.messages == 1, 5000);
  assert_string_equal(rec.pattern, "kvt.news.*");
  assert_string_equal(rec.channel, "kvt.news.sport");
  assert_string_equal(rec.payload, "goal");
  cli(g_port, "PUBLISH kvt.weather rain");
  /* A channel and a pattern that both match: two deliveries. */
  assert_int_equal(kv_redis_sub_subscribe(sub, 1, chans), 0);
  WAIT(fx, rec.subscribed == 2, 5000);
  assert_int_equal(publish(fx, "kvt.news.one", "both"), 2);
  WAIT(fx, rec.messages == 3, 5000);
  assert_int_equal(kv_redis_sub_punsubscribe(sub, 1, pats), 0);
  WAIT(fx, rec.unsubscribed == 1, 5000);
  assert_int_equal(publish(fx, "kvt.news.sport", "x"), 0);
  assert_int_equal(publish(fx, "kvt.news.one", "only"), 1);
  WAIT(fx, rec.messages == 4, 5000);
  assert_string_equal(rec.pattern, "");
  /* Closing the store closes its subscribers first. */
  g_done = 0;
  assert_int_equal(kv_store_close(fx->store, close_cb), 0);
  assert_int_equal(rec.closed, 0);
  run_until(fx, 1);
  assert_int_equal(rec.closed, 1);
  fx->store = NULL;
}

static void test_subscriber_survives_restart(void **state) {
  fx_t *fx = *state;
  int port = free_port();
  char url[128], ps[16];
  rec_t rec = {0};
  kv_redis_sub_t *sub;
  const char *chans[] = {"kvt.r"};
  const char *pats[] = {"kvt.p*"};
  pid_t pid = server_start(g_server, g_dir, port);
  snprintf(ps, sizeof ps, "%d", port);
  format_url(url, sizeof url, "redis://127.0.0.1:%d/0", port);
  fx_open(fx, url);
  assert_int_equal(kv_redis_subscriber(fx->store, on_sub, &rec, &sub), 0);
  assert_int_equal(kv_redis_sub_subscribe(sub, 1, chans), 0);
  assert_int_equal(kv_redis_sub_psubscribe(sub, 1, pats), 0);
  WAIT(fx, rec.subscribed == 2, 5000);
  cli(ps, "PUBLISH kvt.r before");
  WAIT(fx, rec.messages == 1, 5000);
  server_kill(pid);
  WAIT(fx, rec.downs == 1, 5000);
  assert_int_equal(rec.last_status, KV_ECONN);
  /* Down for a while: the subscriber retries with backoff, reporting the
   * outage once. */
  sleep_ms(fx, 300);
  assert_int_equal(rec.downs, 1);
  pid = server_start(g_server, g_dir, port);
  WAIT(fx, rec.gaps == 1, 5000);
  WAIT(fx, rec.subscribed == 4, 5000); /* both again, by itself */
  cli(ps, "PUBLISH kvt.r after");
  WAIT(fx, rec.messages == 2, 5000);
  assert_string_equal(rec.payload, "after");
  cli(ps, "PUBLISH kvt.pq pattern-after");
  WAIT(fx, rec.messages == 3, 5000);
  assert_string_equal(rec.pattern, "kvt.p*");
  sub_close(fx, sub, &rec);
  fx_close(fx);
  server_kill(pid);
}

/* ---- Transactions -------------------------------------------------------- */

typedef struct {
  fx_t *fx;
  int left;     /* increments still to do */
  int attempts; /* EXECs in all */
  int errors;
  int done;
  kv_redis_tx_t tx;
} incr_t;

static const char *k_counter[] = {"kvt:counter"};

static int incr_fn(kv_redis_tx_t *tx, const kv_redis_reply_t *const *v) {
  char buf[32];
  long long n = 0;
  const char *set[3];
  if (v[0]->type == KV_REDIS_REPLY_STRING) n = atoll(v[0]->str);
  snprintf(buf, sizeof buf, "%lld", n + 1);
  set[0] = "SET", set[1] = k_counter[0], set[2] = buf;
  return kv_redis_tx_queue(tx, 3, set, NULL);
}

static void incr_cb(kv_redis_tx_t *tx);

static void incr_next(incr_t *w) {
  memset(&w->tx, 0, sizeof w->tx);
  w->tx.data = w;
  assert_int_equal(kv_redis_transaction(w->fx->store, &w->tx, 1, k_counter,
                                        10000, incr_fn, incr_cb),
                   0);
}

static void incr_cb(kv_redis_tx_t *tx) {
  incr_t *w = tx->data;
  w->attempts += tx->attempts;
  if (tx->status != 0) {
    fprintf(stderr, "tx: %s: %s\n", kv_err_name(tx->status),
            kv_redis_tx_errmsg(tx));
    w->errors++;
  } else {
    assert_int_equal(tx->reply->type, KV_REDIS_REPLY_ARRAY);
    assert_int_equal(tx->reply->elements, 1);
    assert_int_equal(tx->reply->element[0]->type, KV_REDIS_REPLY_STATUS);
  }
  kv_redis_tx_cleanup(tx);
  if (--w->left > 0)
    incr_next(w);
  else
    g_done++;
}

static void test_tx_concurrent_incrementers(void **state) {
  fx_t *fx = *state;
  enum { W = 8, N = 25 };
  char url[128];
  incr_t w[W];
  int attempts = 0;
  kv_redis_req_t r;
  kv_redis_stats_t stats;
  const char *del[] = {"DEL", k_counter[0]};
  const char *get[] = {"GET", k_counter[0]};
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  raw_ok(fx, 2, del);
  memset(w, 0, sizeof w);
  g_done = 0;
  for (int i = 0; i < W; i++) {
    w[i].fx = fx;
    w[i].left = N;
    incr_next(&w[i]);
  }
  run_until(fx, W);
  for (int i = 0; i < W; i++) {
    assert_int_equal(w[i].errors, 0);
    attempts += w[i].attempts;
  }
  assert_int_equal(raw(fx, &r, 2, get), 0);
  assert_string_equal(r.reply->str, "200"); /* exactly W * N */
  kv_redis_req_cleanup(&r);
  /* Eight at once on one key: conflicts happened and were retried. */
  print_message("[   NOTE   ] %d transactions took %d attempts\n", W * N,
                attempts);
  assert_true(attempts > W * N);
  /* Every leased connection is back. */
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &stats, sizeof stats), 0);
  assert_int_equal(stats.leased, 0);
  assert_true(stats.lease_idle >= 1 && stats.lease_idle <= W);
  assert_int_equal(stats.leases, W * N);
  raw_ok(fx, 2, del);
}

typedef struct {
  const char *port;
  int calls;
  int ret;
} meddle_t;

/* Another client writes the watched key before EXEC, every time. */
static int meddle_fn(kv_redis_tx_t *tx, const kv_redis_reply_t *const *v) {
  meddle_t *m = tx->data;
  const char *set[] = {"SET", "kvt:w", "mine"};
  (void)v;
  m->calls++;
  if (m->ret != 0) return m->ret;
  cli(m->port, "SET kvt:w theirs");
  return kv_redis_tx_queue(tx, 3, set, NULL);
}

static void tx_cb(kv_redis_tx_t *tx) {
  (void)tx;
  g_done++;
}

static int in_call; /* set around submits: no callback may see it */

static void test_tx_conflicts_and_errors(void **state) {
  fx_t *fx = *state;
  char url[128];
  kv_redis_tx_t tx;
  meddle_t m = {g_port, 0, 0};
  kv_redis_stats_t stats;
  const char *keys[] = {"kvt:w"};
  const char *bad[] = {"NOSUCHCOMMAND"};
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  /* Every attempt conflicts: KV_ECONFLICT after 3. */
  memset(&tx, 0, sizeof tx);
  tx.data = &m;
  g_done = 0;
  assert_int_equal(
      kv_redis_transaction(fx->store, &tx, 1, keys, 3, meddle_fn, tx_cb), 0);
  assert_int_equal(g_done, 0);
  run_until(fx, 1);
  assert_int_equal(tx.status, KV_ECONFLICT);
  assert_int_equal(tx.attempts, 3);
  assert_int_equal(m.calls, 3);
  assert_null(tx.reply);
  assert_non_null(strstr(kv_redis_tx_errmsg(&tx), "watched key changed"));
  kv_redis_tx_cleanup(&tx);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &stats, sizeof stats), 0);
  assert_int_equal(stats.leased, 0); /* returned on error */
  assert_int_equal(stats.lease_idle, 1);
  /* The function says stop: its error, nothing executed, lease back. */
  m.ret = KV_EEXISTS;
  m.calls = 0;
  memset(&tx, 0, sizeof tx);
  tx.data = &m;
  g_done = 0;
  assert_int_equal(
      kv_redis_transaction(fx->store, &tx, 1, keys, 0, meddle_fn, tx_cb), 0);
  run_until(fx, 1);
  assert_int_equal(tx.status, KV_EEXISTS);
  assert_int_equal(m.calls, 1);
  kv_redis_tx_cleanup(&tx);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &stats, sizeof stats), 0);
  assert_int_equal(stats.leased, 0);
  assert_int_equal(stats.lease_idle, 1); /* the same connection, reused */
  assert_int_equal(stats.leases, 2);
  /* Bad arguments: refused at once, no callback. */
  assert_int_equal(
      kv_redis_transaction(fx->store, &tx, 0, keys, 0, meddle_fn, tx_cb),
      KV_EINVAL);
  kv_redis_tx_cleanup(&tx);
  assert_int_equal(kv_redis_tx_queue(&tx, 1, bad, NULL), KV_EINVAL);
  {
    kv_store_t *mem;
    assert_int_equal(kv_open(&fx->loop, "memory://", &mem), 0);
    assert_int_equal(
        kv_redis_transaction(mem, &tx, 1, keys, 0, meddle_fn, tx_cb),
        KV_EINVAL);
    kv_redis_tx_cleanup(&tx);
    close_other(fx, mem);
  }
}

static int refuse_fn(kv_redis_tx_t *tx, const kv_redis_reply_t *const *v) {
  const char *bad[] = {"NOSUCHCOMMAND", "x"};
  const char *set[] = {"SET", "kvt:e", "1"};
  (void)v;
  assert_int_equal(kv_redis_tx_queue(tx, 3, set, NULL), 0);
  return kv_redis_tx_queue(tx, 2, bad, NULL);
}

static void test_tx_execabort(void **state) {
  fx_t *fx = *state;
  char url[128];
  kv_redis_tx_t tx;
  kv_redis_req_t r;
  const char *keys[] = {"kvt:e"};
  const char *get[] = {"GET", "kvt:e"};
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  memset(&tx, 0, sizeof tx);
  g_done = 0;
  assert_int_equal(
      kv_redis_transaction(fx->store, &tx, 1, keys, 0, refuse_fn, tx_cb), 0);
  run_until(fx, 1);
  assert_int_equal(tx.status, KV_EBACKEND);
  assert_non_null(strstr(kv_redis_tx_errmsg(&tx), "EXECABORT"));
  kv_redis_tx_cleanup(&tx);
  assert_int_equal(raw(fx, &r, 2, get), 0);
  assert_int_equal(r.reply->type, KV_REDIS_REPLY_NIL); /* nothing ran */
  kv_redis_req_cleanup(&r);
}

/* ---- Leased connections -------------------------------------------------- */

static int lease_cmd(fx_t *fx, kv_redis_conn_t *c, kv_redis_req_t *req,
                     int argc, const char **argv) {
  memset(req, 0, sizeof *req);
  return wait_req(fx, &req->status,
                  kv_redis_conn_command(c, req, argc, argv, NULL, raw_cb));
}

static void test_lease(void **state) {
  fx_t *fx = *state;
  char url[128];
  kv_redis_conn_t *c;
  kv_redis_req_t r, q[5];
  kv_redis_stats_t stats;
  const char *watch[] = {"WATCH", "kvt:l"};
  const char *multi[] = {"MULTI"};
  const char *set[] = {"SET", "kvt:l", "1"};
  const char *incr[] = {"INCR", "kvt:l"};
  const char *exec[] = {"EXEC"};
  const char *sub[] = {"SUBSCRIBE", "x"};
  const char *id[] = {"CLIENT", "ID"};
  const char *ping[] = {"PING"};
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
  fx_open(fx, url);
  assert_int_equal(kv_redis_lease(fx->store, &c), 0);
  /* WATCH / MULTI / EXEC in separate turns: the connection is ours. */
  assert_int_equal(lease_cmd(fx, c, &r, 2, watch), 0);
  kv_redis_req_cleanup(&r);
  assert_int_equal(lease_cmd(fx, c, &r, 1, multi), 0);
  kv_redis_req_cleanup(&r);
  assert_int_equal(lease_cmd(fx, c, &r, 3, set), 0);
  assert_string_equal(r.reply->str, "QUEUED");
  kv_redis_req_cleanup(&r);
  assert_int_equal(lease_cmd(fx, c, &r, 2, incr), 0);
  kv_redis_req_cleanup(&r);
  assert_int_equal(lease_cmd(fx, c, &r, 1, exec), 0);
  assert_int_equal(r.reply->type, KV_REDIS_REPLY_ARRAY);
  assert_int_equal(r.reply->elements, 2);
  assert_int_equal(r.reply->element[1]->integer, 2);
  kv_redis_req_cleanup(&r);
  /* The shared connection refuses what needs a connection of its own. */
  assert_int_equal(kv_redis_command(fx->store, &r, 2, watch, NULL, raw_cb),
                   KV_EINVAL);
  assert_non_null(strstr(kv_redis_req_errmsg(&r), "kv_redis_lease"));
  kv_redis_req_cleanup(&r);
  assert_int_equal(kv_redis_command(fx->store, &r, 2, sub, NULL, raw_cb),
                   KV_EINVAL);
  kv_redis_req_cleanup(&r);
  assert_int_equal(kv_redis_conn_command(c, &r, 2, sub, NULL, raw_cb),
                   KV_EINVAL);
  kv_redis_req_cleanup(&r);
  /* Given back while in MULTI: DISCARDed before the next user. */
  assert_int_equal(lease_cmd(fx, c, &r, 1, multi), 0);
  kv_redis_req_cleanup(&r);
  kv_redis_release(c);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &stats, sizeof stats), 0);
  assert_int_equal(stats.leased, 0);
  assert_int_equal(stats.lease_idle, 1);
  assert_int_equal(kv_redis_lease(fx->store, &c), 0);
  assert_int_equal(lease_cmd(fx, c, &r, 2, incr), 0);
  assert_int_equal(r.reply->type, KV_REDIS_REPLY_INTEGER); /* not QUEUED */
  assert_int_equal(r.reply->integer, 3);
  kv_redis_req_cleanup(&r);
  /* Its connection killed: later commands fail, it does not reconnect in
   * the middle of someone's WATCH. */
  assert_int_equal(lease_cmd(fx, c, &r, 2, id), 0);
  {
    char ids[32];
    const char *kill_id[] = {"CLIENT", "KILL", "ID", ids};
    kv_redis_req_t k;
    snprintf(ids, sizeof ids, "%lld", r.reply->integer);
    kv_redis_req_cleanup(&r);
    assert_int_equal(lease_cmd(fx, c, &r, 2, watch), 0);
    kv_redis_req_cleanup(&r);
    assert_int_equal(raw(fx, &k, 4, kill_id), 0);
    kv_redis_req_cleanup(&k);
  }
  {
    int rc = lease_cmd(fx, c, &r, 1, ping);
    assert_int_equal(rc, KV_ECONN);
    kv_redis_req_cleanup(&r);
    assert_int_equal(kv_redis_conn_command(c, &r, 1, ping, NULL, raw_cb),
                     KV_ECONN);
    assert_non_null(strstr(kv_redis_req_errmsg(&r), "lease another"));
    kv_redis_req_cleanup(&r);
  }
  kv_redis_release(c); /* returned on error */
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &stats, sizeof stats), 0);
  assert_int_equal(stats.leased, 0);
  assert_int_equal(kv_redis_lease(fx->store, &c), 0);
  assert_int_equal(lease_cmd(fx, c, &r, 1, ping), 0); /* reconnects */
  kv_redis_req_cleanup(&r);
  /* Closing the store with the lease out and commands on it: each called
   * back once (answered or cancelled), before the close callback. */
  {
    int calls[5] = {0};
    for (int i = 0; i < 5; i++) {
      memset(&q[i], 0, sizeof q[i]);
      q[i].data = &calls[i];
      assert_int_equal(kv_redis_conn_command(c, &q[i], 1, ping, NULL, raw_cb),
                       0);
    }
    g_done = 0;
    assert_int_equal(kv_store_close(fx->store, close_cb), 0);
    run_until(fx, 6);
    for (int i = 0; i < 5; i++) {
      assert_int_equal(calls[i], 1);
      assert_true(q[i].status == 0 || q[i].status == KV_ECANCELED);
      kv_redis_req_cleanup(&q[i]);
    }
    fx->store = NULL;
  }
}

/* ---- The pool ------------------------------------------------------------ */

static void test_pool_ten_thousand(void **state) {
  fx_t *fx = *state;
  enum { N = 10000 };
  char url[128];
  kv_req_t *reqs = calloc(N, sizeof *reqs);
  kv_redis_req_t raws[100];
  int *calls = calloc(N + 100, sizeof *calls);
  kv_redis_stats_t stats;
  char key[32];
  const char *ping[] = {"PING"};
  assert_non_null(reqs);
  assert_non_null(calls);
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0?connections=4", g_port);
  fx_open(fx, url);
  g_done = 0;
  for (int i = 0; i < N; i++) {
    reqs[i].data = &calls[i];
    snprintf(key, sizeof key, "k%d", i % 500);
    if (i % 2)
      assert_int_equal(kv_put(fx->store, &reqs[i], "pool", key, key,
                              strlen(key), 0, done_cb),
                       0);
    else
      assert_int_equal(kv_get(fx->store, &reqs[i], "pool", key, done_cb), 0);
    if (i % 100 == 0) {
      memset(&raws[i / 100], 0, sizeof raws[0]);
      raws[i / 100].data = &calls[N + i / 100];
      assert_int_equal(
          kv_redis_command(fx->store, &raws[i / 100], 1, ping, NULL, raw_cb),
          0);
    }
  }
  assert_int_equal(g_done, 0);
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &stats, sizeof stats), 0);
  assert_int_equal(stats.pool_size, 4);
  assert_int_equal(stats.queued, N + 100);
  run_until(fx, N + 100);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  assert_int_equal(g_done, N + 100);
  for (int i = 0; i < N + 100; i++)
    assert_int_equal(calls[i], 1);
  for (int i = 0; i < N; i++) {
    assert_int_equal(reqs[i].status, 0);
    kv_req_cleanup(&reqs[i]);
  }
  for (int i = 0; i < 100; i++) {
    assert_int_equal(raws[i].status, 0);
    assert_string_equal(raws[i].reply->str, "PONG");
    kv_redis_req_cleanup(&raws[i]);
  }
  assert_int_equal(
      kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &stats, sizeof stats), 0);
  assert_int_equal(stats.connects, 4); /* every connection used */
  assert_int_equal(stats.pool_connected, 4);
  assert_int_equal(stats.commands, N + 100);
  assert_int_equal(stats.replies, N + 100);
  assert_true(stats.writes >= 4);
  assert_int_equal(stats.in_flight, 0);
  {
    kv_req_t r;
    int c = 0;
    memset(&r, 0, sizeof r);
    r.data = &c;
    assert_int_equal(kv_destroy(fx->store, &r, done_cb), 0);
    g_done = 0;
    run_until(fx, 1);
    assert_int_equal(r.status, 0);
    kv_req_cleanup(&r);
  }
  free(reqs);
  free(calls);
}

/* ---- The raw request rules ----------------------------------------------- */

static void check_cb(kv_redis_req_t *req) {
  if (in_call) fail_msg("callback inside the call");
  (*(int *)req->data)++;
  g_done++;
}

static void test_raw_rules(void **state) {
  fx_t *fx = *state;
  char url[128];
  kv_redis_req_t r[4];
  int calls[4] = {0};
  const char *ping[] = {"PING"};
  const char *blpop[] = {"BLPOP", "kvt:never", "0"};
  int port = free_port();
  /* Deferred: never from inside the submit, even when the answer (a
   * connection refused) is known early. */
  format_url(url, sizeof url, "redis://127.0.0.1:%d/0", port);
  fx_open(fx, url);
  memset(r, 0, sizeof r);
  r[0].data = &calls[0];
  in_call = 1;
  assert_int_equal(kv_redis_command(fx->store, &r[0], 1, ping, NULL, check_cb),
                   0);
  in_call = 0;
  g_done = 0;
  run_until(fx, 1);
  assert_int_equal(r[0].status, KV_ECONN);
  kv_redis_req_cleanup(&r[0]);
  fx_close(fx);
  /* Exactly once, and never inside kv_store_ctl: a disconnect with
   * commands in flight. */
  format_url(url, sizeof url, "redis://127.0.0.1:%s/0?timeout=0", g_port);
  fx_open(fx, url);
  memset(r, 0, sizeof r);
  r[0].data = &calls[0];
  calls[0] = 0;
  assert_int_equal(kv_redis_command(fx->store, &r[0], 1, ping, NULL, check_cb),
                   0);
  g_done = 0;
  run_until(fx, 1);
  assert_int_equal(r[0].status, 0);
  kv_redis_req_cleanup(&r[0]);
  calls[0] = 0;
  for (int i = 0; i < 2; i++) {
    r[i].data = &calls[i];
    assert_int_equal(
        kv_redis_command(fx->store, &r[i], 3, blpop, NULL, check_cb), 0);
  }
  sleep_ms(fx, 50); /* written, blocked on the server */
  in_call = 1;
  assert_int_equal(kv_store_ctl(fx->store, KV_REDIS_CTL_DISCONNECT, NULL, 0),
                   0);
  in_call = 0;
  g_done = 0;
  run_until(fx, 2);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(calls[i], 1);
    assert_int_equal(r[i].status, KV_ECONN);
    kv_redis_req_cleanup(&r[i]);
  }
  /* Cancelled on close: a command that blocks forever does not hold the
   * close (timeout=0: no limit), its callback runs once, with
   * KV_ECANCELED, before the close callback. */
  memset(r, 0, sizeof r);
  calls[0] = calls[1] = calls[2] = 0;
  r[0].data = &calls[0];
  assert_int_equal(kv_redis_command(fx->store, &r[0], 3, blpop, NULL, check_cb),
                   0);
  sleep_ms(fx, 50);
  r[1].data = &calls[1]; /* submitted in the closing turn */
  assert_int_equal(kv_redis_command(fx->store, &r[1], 1, ping, NULL, check_cb),
                   0);
  g_done = 0;
  in_call = 1;
  assert_int_equal(kv_store_close(fx->store, close_cb), 0);
  in_call = 0;
  r[2].data = &calls[2];
  assert_int_equal(kv_redis_command(fx->store, &r[2], 1, ping, NULL, check_cb),
                   KV_ECLOSED);
  kv_redis_req_cleanup(&r[2]);
  run_until(fx, 3); /* two callbacks, then the close callback */
  fx->store = NULL;
  assert_int_equal(calls[0], 1);
  assert_int_equal(calls[1], 1);
  assert_int_equal(calls[2], 0);
  assert_int_equal(r[0].status, KV_ECANCELED);
  assert_int_equal(r[1].status, KV_ECANCELED);
  kv_redis_req_cleanup(&r[0]);
  kv_redis_req_cleanup(&r[1]);
}

/* ---- URLs ---------------------------------------------------------------- */

static void test_url_forms(void **state) {
  fx_t *fx = *state;
  char url[512];
  kv_req_t r;
  int c = 0;
  static const char *const good[] = {
      "redis+tls://127.0.0.1:1/0",
      "valkey+tls://127.0.0.1:1/0?verify_name=0",
      "redis+unix+tls://localhost/nonexistent.sock",
      "redis+unix+tls:///nonexistent.sock?server_name=localhost",
      "valkey+unix+tls://host.example/tmp/x.sock",
      "redis+unix:///var/run/redis.sock?database=2",
      "redis://:password@localhost/2",
      "redis://localhost/",
      "redis://127.0.0.1:1/2?database=2&connections=64",
  };
  static const char *const bad[] = {
      "redis+unix+tls:///x.sock",         /* no name for the certificate */
      "redis://127.0.0.1:1/2?database=3", /* disagree */
      "redis://127.0.0.1:1/0?database=x",
      "redis://127.0.0.1:1/0?connections=0",
      "redis://127.0.0.1:1/0?connections=65",
      "redis+unix://host/x.sock",
      "redis+tls+unix://localhost/x.sock",  /* not a scheme */
      "redis+unix:///x.sock?server_name=a", /* a TLS option, no TLS */
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    fx_open(fx, good[i]);
    fx_close(fx);
  }
  expect_bad_urls(fx, bad, sizeof bad / sizeof bad[0]);
  /* RedIO's own example works: redis+unix:///path?database=2. */
  format_url(url, sizeof url, "redis+unix://%s?database=2", g_sock);
  fx_open(fx, url);
  memset(&r, 0, sizeof r);
  r.data = &c;
  g_done = 0;
  assert_int_equal(kv_put(fx->store, &r, "db2", "k", "v", 1, 0, done_cb), 0);
  run_until(fx, 1);
  assert_int_equal(r.status, 0);
  kv_req_cleanup(&r);
  fx_close(fx);
  {
    kv_redis_req_t rr;
    const char *sel[] = {"GET", "db2:k"};
    format_url(url, sizeof url, "redis://127.0.0.1:%s/2", g_port);
    fx_open(fx, url);
    assert_int_equal(raw(fx, &rr, 2, sel), 0);
    assert_string_equal(rr.reply->str, "v"); /* in database 2 */
    kv_redis_req_cleanup(&rr);
    fx_close(fx);
    format_url(url, sizeof url, "redis://127.0.0.1:%s/0", g_port);
    fx_open(fx, url);
    assert_int_equal(raw(fx, &rr, 2, sel), 0);
    assert_int_equal(rr.reply->type, KV_REDIS_REPLY_NIL);
    kv_redis_req_cleanup(&rr);
  }
}

/* ---- TLS: redis+tls://, and TLS over a unix socket ----------------------- */

/* A unix socket whose connections are relayed byte for byte to the
 * server's TLS port. */
typedef struct relay_s relay_t;
typedef struct {
  relay_t *rl;
  uv_pipe_t down; /* the client's side */
  uv_tcp_t up;    /* the server's side */
  uv_connect_t creq;
  int closing, open;
  char buf[2][65536];
} rconn_t;

struct relay_s {
  uv_pipe_t listener;
  int port;
  rconn_t *conns[8];
  int nconns;
};

static void rc_closed(uv_handle_t *h) {
  rconn_t *c = h->data;
  if (--c->open == 0) free(c);
}

static void rc_close(rconn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->down, rc_closed);
  uv_close((uv_handle_t *)&c->up, rc_closed);
}

static void rc_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  rconn_t *c = h->data;
  (void)n;
  *b = uv_buf_init(c->buf[(void *)h == (void *)&c->up], sizeof c->buf[0]);
}

static void rc_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void rc_forward(uv_stream_t *to, const char *p, size_t n) {
  uv_write_t *w = malloc(sizeof *w + n);
  uv_buf_t b;
  memcpy(w + 1, p, n);
  b = uv_buf_init((char *)(w + 1), (unsigned)n);
  if (uv_write(w, to, &b, 1, rc_written) != 0) free(w);
}

static void rc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  rconn_t *c = s->data;
  if (n < 0) {
    rc_close(c);
    return;
  }
  if (n > 0)
    rc_forward((void *)s == (void *)&c->up ? (uv_stream_t *)&c->down
                                           : (uv_stream_t *)&c->up,
               b->base, (size_t)n);
}

static void rc_connected(uv_connect_t *req, int status) {
  rconn_t *c = req->data;
  if (status != 0 || c->closing) {
    rc_close(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->up, rc_alloc, rc_read);
  uv_read_start((uv_stream_t *)&c->down, rc_alloc, rc_read);
}

static void relay_conn(uv_stream_t *l, int status) {
  relay_t *rl = l->data;
  rconn_t *c;
  struct sockaddr_in a;
  if (status != 0) return;
  c = calloc(1, sizeof *c);
  c->rl = rl;
  uv_pipe_init(l->loop, &c->down, 0);
  uv_tcp_init(l->loop, &c->up);
  c->down.data = c->up.data = c->creq.data = c;
  c->open = 2;
  if (rl->nconns < 8) rl->conns[rl->nconns++] = c;
  uv_accept(l, (uv_stream_t *)&c->down);
  uv_ip4_addr("127.0.0.1", rl->port, &a);
  uv_tcp_connect(&c->creq, &c->up, (struct sockaddr *)&a, rc_connected);
}

static void relay_stop(fx_t *fx, relay_t *rl) {
  for (int i = 0; i < rl->nconns; i++)
    rl->conns[i] = NULL; /* closed by the peers */
  uv_close((uv_handle_t *)&rl->listener, NULL);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static void put_get(fx_t *fx, const char *v) {
  kv_req_t r;
  int c = 0;
  memset(&r, 0, sizeof r);
  r.data = &c;
  g_done = 0;
  assert_int_equal(kv_put(fx->store, &r, "tls", "k", v, strlen(v), 0, done_cb),
                   0);
  run_until(fx, 1);
  if (r.status != 0)
    fail_msg("put: %s: %s", kv_err_name(r.status), kv_req_errmsg(&r));
  kv_req_cleanup(&r);
  memset(&r, 0, sizeof r);
  r.data = &c;
  g_done = 0;
  assert_int_equal(kv_get(fx->store, &r, "tls", "k", done_cb), 0);
  run_until(fx, 1);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.found, 1);
  assert_string_equal(r.value.base, v);
  kv_req_cleanup(&r);
}

static void test_tls_forms(void **state) {
  fx_t *fx = *state;
  char url[512], path[256];
  relay_t rl;
  kv_req_t r;
  int c = 0;
  format_url(url, sizeof url, "redis+tls://127.0.0.1:%s/0?ca=%s", g_port, g_ca);
  fx_open(fx, url);
  put_get(fx, "over redis+tls");
  fx_close(fx);
  /* TLS over a unix socket, the certificate's name from the host part. */
  memset(&rl, 0, sizeof rl);
  rl.port = atoi(g_port);
  snprintf(path, sizeof path, "%s/tls-relay.sock", g_dir);
  unlink(path);
  assert_int_equal(uv_pipe_init(&fx->loop, &rl.listener, 0), 0);
  rl.listener.data = &rl;
  assert_int_equal(uv_pipe_bind(&rl.listener, path), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&rl.listener, 8, relay_conn), 0);
  format_url(url, sizeof url, "redis+unix+tls://localhost%s?ca=%s&database=1",
             path, g_ca);
  fx_open(fx, url);
  put_get(fx, "over a unix socket");
  {
    kv_redis_stats_t st;
    assert_int_equal(
        kv_store_ctl(fx->store, KV_REDIS_CTL_STATS, &st, sizeof st), 0);
    assert_int_equal(st.connects, 1);
  }
  fx_close(fx);
  /* The name is checked: another name fails verification. */
  format_url(url, sizeof url, "redis+unix+tls://wrong.example%s?ca=%s", path,
             g_ca);
  fx_open(fx, url);
  memset(&r, 0, sizeof r);
  r.data = &c;
  g_done = 0;
  assert_int_equal(kv_get(fx->store, &r, "tls", "k", done_cb), 0);
  run_until(fx, 1);
  assert_int_equal(r.status, KV_EAUTH);
  assert_non_null(strstr(kv_req_errmsg(&r), "certificate verification"));
  kv_req_cleanup(&r);
  fx_close(fx);
  format_url(url, sizeof url, "redis+unix+tls://localhost%s?ca=%s&database=1",
             path, g_ca);
  fx_open(fx, url);
  {
    kv_req_t d;
    memset(&d, 0, sizeof d);
    d.data = &c;
    g_done = 0;
    assert_int_equal(kv_destroy(fx->store, &d, done_cb), 0);
    run_until(fx, 1);
    kv_req_cleanup(&d);
  }
  fx_close(fx);
  sleep_ms(fx, 20);
  relay_stop(fx, &rl);
  unlink(path);
}

int main(void) {
  const char *mode = getenv("KV_REDIS_MODE");
  static const struct CMUnitTest plain[] = {
      cmocka_unit_test_setup_teardown(test_subscribe_channels, setup, teardown),
      cmocka_unit_test_setup_teardown(test_subscribe_patterns, setup, teardown),
      cmocka_unit_test_setup_teardown(test_subscriber_survives_restart, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tx_concurrent_incrementers, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tx_conflicts_and_errors, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tx_execabort, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lease, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pool_ten_thousand, setup, teardown),
      cmocka_unit_test_setup_teardown(test_raw_rules, setup, teardown),
      cmocka_unit_test_setup_teardown(test_url_forms, setup, teardown),
  };
  static const struct CMUnitTest tls[] = {
      cmocka_unit_test_setup_teardown(test_tls_forms, setup, teardown),
  };
  const char *cli_bin = getenv("KV_REDIS_CLI");
  g_port = getenv("KV_REDIS_PORT");
  g_dir = getenv("KV_REDIS_DIR");
  g_server = getenv("KV_REDIS_SERVER");
  g_ca = getenv("KV_REDIS_CA");
  g_sock = getenv("KV_REDIS_SOCK");
  if (g_port == NULL || g_dir == NULL || g_server == NULL || mode == NULL) {
    fprintf(stderr,
            "test-redis-client: run it under tests/servers/with-redis.sh\n");
    return 77;
  }
  if (cli_bin != NULL) snprintf(g_cli, sizeof g_cli, "%s", cli_bin);
  srand((unsigned)uv_hrtime());
  if (strcmp(mode, "tls") == 0)
    return cmocka_run_group_tests_name("redis client tls", tls, NULL, NULL);
  if (strcmp(mode, "plain") != 0) return 77;
  return cmocka_run_group_tests_name("redis client", plain, NULL, NULL);
}
