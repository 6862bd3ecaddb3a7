/* logging: one line per completed operation, text or JSON lines, to a
 * callback or a stream. Values are logged only when asked for. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "wrappers/wrappers.h"

#define LOG_VALUE_MAX 256 /* bytes of a value shown */

typedef struct {
  kv_wrap_t w;
  int values, json;
  kv_wrap_log_cb cb;
  void *cb_data;
  FILE *stream;
} log_t;

typedef struct {
  char *p;
  size_t len, cap;
} lbuf_t;

static void lb_add(lbuf_t *b, const char *s, size_t n) {
  if (b->p == NULL && b->cap) return; /* out of memory earlier */
  if (b->len + n + 2 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    char *p;
    while (cap < b->len + n + 2)
      cap *= 2;
    p = kv_realloc(b->p, cap);
    if (p == NULL) {
      kv_free(b->p);
      b->p = NULL;
      b->cap = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void lb_str(lbuf_t *b, const char *s) {
  lb_add(b, s, strlen(s));
}

/* Text form of bytes: "..." with \\, \", \n, \t and \xHH escapes. */
static void lb_quoted(lbuf_t *b, const char *p, size_t n) {
  lb_add(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = (char)c;
      lb_add(b, esc, 2);
    } else if (c == '\n') {
      lb_add(b, "\\n", 2);
    } else if (c == '\t') {
      lb_add(b, "\\t", 2);
    } else if (c < 0x20 || c >= 0x7f) {
      snprintf(esc, sizeof esc, "\\x%02x", c);
      lb_add(b, esc, 4);
    } else {
      lb_add(b, (const char *)&c, 1);
    }
  }
  lb_add(b, "\"", 1);
}

static void lb_printf(lbuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void lb_printf(lbuf_t *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0)
    lb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static const char *status_name(int st) {
  return st == 0 ? "ok" : kv_err_name(st);
}

static int has_key(kv_op_t op) {
  return op == KV_OP_GET || op == KV_OP_TTL || op == KV_OP_PUT ||
         op == KV_OP_DELETE || op == KV_OP_PUT_IF_ABSENT || op == KV_OP_CAS ||
         op == KV_OP_INCR || op == KV_OP_TAKE;
}

static int has_collection(kv_op_t op) {
  return op != KV_OP_COLLECTIONS && op != KV_OP_DESTROY && op != KV_OP_CULL;
}

/* The value worth logging (input for writes, result for reads), or NULL. */
static const kv_buf_t *logged_value(const kv_wrap_req_t *wr, kv_buf_t *tmp) {
  const kv_req_t *in = &wr->inner;
  switch (wr->op) {
  case KV_OP_PUT:
  case KV_OP_PUT_IF_ABSENT:
  case KV_OP_CAS:
    tmp->base = (char *)wr->in.value.base;
    tmp->len = wr->in.value.len;
    return tmp;
  case KV_OP_GET:
  case KV_OP_TTL:
  case KV_OP_TAKE:
    return in->status == 0 && in->found ? &in->value : NULL;
  default:
    return NULL;
  }
}

static void text_line(log_t *l, kv_wrap_req_t *wr, double us, lbuf_t *b) {
  const kv_req_t *in = &wr->inner;
  const kv_req_in_t *a = &wr->in;
  kv_op_t op = wr->op;
  kv_buf_t tmp;
  const kv_buf_t *v;
  lb_str(b, "kvio: ");
  lb_str(b, kv_op_name(op));
  if (has_collection(op)) {
    lb_str(b, " collection=");
    lb_quoted(b, a->collection, strlen(a->collection));
  }
  if (has_key(op)) {
    lb_str(b, " key=");
    lb_quoted(b, a->key, strlen(a->key));
  }
  if (op >= KV_OP_GET_MANY && op <= KV_OP_DELETE_MANY)
    lb_printf(b, " n=%zu", a->n);
  lb_printf(b, " status=%s", status_name(in->status));
  if (in->status == 0) {
    switch (op) {
    case KV_OP_GET:
    case KV_OP_TTL:
    case KV_OP_DELETE:
    case KV_OP_TAKE:
    case KV_OP_PUT_IF_ABSENT:
    case KV_OP_CAS:
      lb_printf(b, " found=%d", in->found);
      break;
    case KV_OP_INCR:
      lb_printf(b, " number=%lld", (long long)in->number);
      break;
    case KV_OP_DELETE_MANY:
    case KV_OP_CULL:
      lb_printf(b, " count=%zu", in->count);
      break;
    case KV_OP_KEYS:
    case KV_OP_COLLECTIONS:
      lb_printf(b, " names=%zu more=%d", in->nnames, in->cursor != NULL);
      break;
    default:
      break;
    }
  }
  v = logged_value(wr, &tmp);
  if (v) lb_printf(b, " len=%zu", v->len);
  if (op == KV_OP_PUT || op == KV_OP_PUT_MANY || op == KV_OP_PUT_IF_ABSENT ||
      op == KV_OP_CAS || op == KV_OP_INCR)
    lb_printf(b, " ttl=%g", a->ttl);
  if (v && l->values) {
    lb_str(b, " value=");
    lb_quoted(b, v->base, v->len < LOG_VALUE_MAX ? v->len : LOG_VALUE_MAX);
    if (v->len > LOG_VALUE_MAX) lb_str(b, "...");
  }
  lb_printf(b, " us=%.0f", us);
  if (in->status < 0) {
    lb_str(b, " error=");
    const char *m = kv_req_errmsg(in);
    lb_quoted(b, m, strlen(m));
  }
}

static void json_line(log_t *l, kv_wrap_req_t *wr, double us, lbuf_t *b) {
  const kv_req_t *in = &wr->inner;
  const kv_req_in_t *a = &wr->in;
  kv_op_t op = wr->op;
  json_t *o = json_object();
  kv_buf_t tmp;
  const kv_buf_t *v;
  char *text;
  if (o == NULL) return;
  json_object_set_new(o, "op", json_string(kv_op_name(op)));
  if (has_collection(op))
    json_object_set_new(o, "collection", json_string(a->collection));
  if (has_key(op)) json_object_set_new(o, "key", json_string(a->key));
  if (op >= KV_OP_GET_MANY && op <= KV_OP_DELETE_MANY)
    json_object_set_new(o, "n", json_integer((json_int_t)a->n));
  json_object_set_new(o, "status", json_string(status_name(in->status)));
  if (in->status == 0) {
    if (op == KV_OP_GET || op == KV_OP_TTL || op == KV_OP_DELETE ||
        op == KV_OP_TAKE || op == KV_OP_PUT_IF_ABSENT || op == KV_OP_CAS)
      json_object_set_new(o, "found", json_boolean(in->found));
    if (op == KV_OP_INCR)
      json_object_set_new(o, "number", json_integer(in->number));
    if (op == KV_OP_DELETE_MANY || op == KV_OP_CULL)
      json_object_set_new(o, "count", json_integer((json_int_t)in->count));
  } else {
    json_object_set_new(o, "error", json_string(kv_req_errmsg(in)));
  }
  v = logged_value(wr, &tmp);
  if (v) json_object_set_new(o, "len", json_integer((json_int_t)v->len));
  if (v && l->values) {
    size_t n = v->len < LOG_VALUE_MAX ? v->len : LOG_VALUE_MAX;
    json_t *s = kv__utf8_valid(v->base, n) ? json_stringn(v->base, n) : NULL;
    if (s == NULL) {
      /* Not text: hex. */
      char *hex = kv_malloc(n * 2 + 1);
      if (hex) {
        kv__hex_encode(v->base, n, hex);
        json_object_set_new(o, "value_hex", json_string(hex));
        kv_free(hex);
      }
    } else {
      json_object_set_new(o, "value", s);
    }
    if (v->len > LOG_VALUE_MAX)
      json_object_set_new(o, "value_truncated", json_true());
  }
  json_object_set_new(o, "us", json_integer((json_int_t)us));
  text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (text) {
    lb_str(b, text);
    free(text);
  }
}

static void log_cb(kv_wrap_req_t *wr) {
  log_t *l = (log_t *)wr->w;
  double us = (double)(uv_hrtime() - wr->start_ns) / 1e3;
  lbuf_t b = {0};
  if (l->json)
    json_line(l, wr, us, &b);
  else
    text_line(l, wr, us, &b);
  if (b.p != NULL) {
    if (l->cb) {
      l->cb(b.p, b.len, l->cb_data);
    } else {
      lb_add(&b, "\n", 1);
      if (b.p) fwrite(b.p, 1, b.len, l->stream ? l->stream : stderr);
    }
    kv_free(b.p);
  }
  kv_wrap_finish(wr);
}

static int log_op(kv_store_t *s, kv_req_t *req) {
  kv_wrap_req_t *wr = kv_wrap_req_new(s, req, 0);
  int err;
  if (wr == NULL) return kv_req_set_error(req, KV_ENOMEM, "out of memory");
  wr->start_ns = uv_hrtime();
  err = kv_wrap_submit(wr, ((kv_wrap_t *)s)->inner, log_cb);
  if (err < 0) return kv_wrap_refuse(wr, err);
  return 0;
}

static kv_store_methods_t log_methods;
static uv_once_t log_once = UV_ONCE_INIT;

static void log_init(void) {
  kv_store_methods_t *m = &log_methods;
  kv_wrap_methods_init(m, "logging", sizeof(log_t));
  m->get = m->ttl = m->put = m->del = log_op;
  m->get_many = m->ttl_many = m->put_many = m->delete_many = log_op;
  m->keys = m->collections = m->destroy = m->destroy_collection = log_op;
  m->cull = m->put_if_absent = m->cas = m->incr = m->take = log_op;
}

int kv_wrap_logging(kv_store_t *inner, const kv_wrap_logging_opts_t *o,
                    kv_store_t **out) {
  kv_wrap_t *w;
  log_t *l;
  int err;
  *out = NULL;
  uv_once(&log_once, log_init);
  err = kv_wrap_create(inner, &log_methods, o && o->borrow, &w);
  if (err) return err;
  l = (log_t *)w;
  if (o) {
    l->values = o->values;
    l->json = o->json;
    l->cb = o->cb;
    l->cb_data = o->cb_data;
    l->stream = o->stream;
  }
  *out = &w->base;
  return 0;
}

/* The sink for tests: lines go nowhere (the formatting still runs). */
static void null_sink(const char *line, size_t len, void *data) {
  (void)line, (void)len, (void)data;
}

KV__WRAP_FROM_OPTIONS(logging) {
  static const char *const known[] = {"values", "format", "sink", NULL};
  kv_wrap_logging_opts_t o = {0};
  kv_url_t opts;
  const char *fmt, *sink;
  int err = kv__wrap_opts("logging", options, known, &opts, errbuf, errbuf_len);
  if (err) return err;
  err = kv_url_param_bool(&opts, "values", 0, &o.values, errbuf, errbuf_len);
  fmt = kv_url_param(&opts, "format");
  sink = kv_url_param(&opts, "sink");
  if (!err && fmt && strcmp(fmt, "json") != 0 && strcmp(fmt, "text") != 0)
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "invalid value '%s' for option 'format': expected text "
                     "or json",
                     fmt);
  if (!err && sink && strcmp(sink, "stderr") != 0 &&
      strcmp(sink, "stdout") != 0 && strcmp(sink, "null") != 0)
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "invalid value '%s' for option 'sink': expected stderr, "
                     "stdout or null",
                     sink);
  if (!err) {
    o.json = fmt && strcmp(fmt, "json") == 0;
    if (sink && strcmp(sink, "stdout") == 0) o.stream = stdout;
    if (sink && strcmp(sink, "null") == 0) o.cb = null_sink;
  }
  kv_wrap_opts_free(&opts);
  if (err) return err;
  return kv_wrap_logging(inner, &o, out);
}
