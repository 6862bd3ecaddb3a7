/* A due-time-ordered queue of interposed requests driven by one uv timer
 * (wrappers.h). Requests with equal delays arrive in due order, so adding
 * scans from the tail and is O(1) for timeouts and latency injection. */
#include <math.h>

#include "wrappers/wrappers.h"

static void on_timer(uv_timer_t *t);

static void arm(kv__timerq_t *q) {
  double now, wait;
  if (q->head == NULL) {
    uv_timer_stop(&q->timer);
    return;
  }
  now = (double)uv_now(q->timer.loop);
  wait = q->head->due - now;
  uv_timer_start(&q->timer, on_timer, wait > 0 ? (uint64_t)ceil(wait) : 0, 0);
}

static void on_timer(uv_timer_t *t) {
  kv__timerq_t *q = (kv__timerq_t *)t;
  double now = (double)uv_now(t->loop);
  while (q->head != NULL && q->head->due <= now) {
    kv_wrap_req_t *wr = q->head;
    kv__timerq_remove(q, wr);
    q->fire(q, wr);
  }
  if (!uv_is_closing((uv_handle_t *)&q->timer)) arm(q);
}

void kv__timerq_init(kv__timerq_t *q, kv_wrap_t *w,
                     void (*fire)(kv__timerq_t *q, kv_wrap_req_t *wr)) {
  uv_timer_init(w->base.loop, &q->timer);
  q->head = q->tail = NULL;
  q->w = w;
  q->fire = fire;
}

void kv__timerq_add(kv__timerq_t *q, kv_wrap_req_t *wr, double delay_s) {
  kv_wrap_req_t *after = q->tail;
  wr->due = (double)uv_now(q->timer.loop) + delay_s * 1000.0;
  while (after != NULL && after->due > wr->due)
    after = after->link_prev;
  wr->link_prev = after;
  wr->link = after ? after->link : q->head;
  if (wr->link)
    wr->link->link_prev = wr;
  else
    q->tail = wr;
  if (after)
    after->link = wr;
  else
    q->head = wr;
  if (q->head == wr || !uv_is_active((uv_handle_t *)&q->timer)) arm(q);
}

void kv__timerq_remove(kv__timerq_t *q, kv_wrap_req_t *wr) {
  if (wr->link_prev)
    wr->link_prev->link = wr->link;
  else
    q->head = wr->link;
  if (wr->link)
    wr->link->link_prev = wr->link_prev;
  else
    q->tail = wr->link_prev;
  wr->link = wr->link_prev = NULL;
  if (q->head == NULL) uv_timer_stop(&q->timer);
}

void kv__timerq_close(kv__timerq_t *q, void (*cancel)(kv_wrap_req_t *wr)) {
  uv_timer_stop(&q->timer);
  while (q->head != NULL) {
    kv_wrap_req_t *wr = q->head;
    kv__timerq_remove(q, wr);
    cancel(wr);
  }
  kv_wrap_close_handle(q->w, (uv_handle_t *)&q->timer);
}
