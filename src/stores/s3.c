/* s3://BUCKET[/PREFIX] — one S3 object per entry, over the HTTP layer
 * (http.c: libcurl on the loop, SigV4 by curl).
 *
 * Object names: PREFIX + C + "/" + K, where C and K are the collection and
 * the key with '%', '/', control bytes, a leading '.' and a leading '#'
 * percent-encoded, so the first '/' after the prefix always ends the
 * collection and no two (collection, key) pairs share a name. A name longer
 * than S3's 1,024 bytes, or a part longer than 200 bytes, uses "#" +
 * SHA-256 (hex) for that part; a raw part never starts with '#', so a hashed
 * name never equals a raw one. The real names of hashed parts are kept in
 * small "sidecar" objects (PREFIX.kv-k/Cpart/Kpart, PREFIX.kv-c/Cpart) that
 * listings read; a raw part never starts with '.', so they never mix with
 * collections.
 *
 * The body is the value's bytes. The expiry (Unix ms) is the metadata
 * x-amz-meta-kv-expires; an expired object reads as missing, keys() skips
 * it (every listed object is HEAD-ed: ListObjectsV2 carries no metadata)
 * and cull() deletes it. Each kv request is a "job" of one or more HTTP
 * requests in flight together. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "internal.h"
#include "stores/http.h"
#include "stores/s3_xml.h"

#define S3_NAME_MAX 1024
/* Parts longer than this (escaped) are hashed: every path segment stays
 * below the 255 bytes of file systems, which S3-compatible servers that
 * store objects as files (s3rver, MinIO) need. */
#define S3_PART_RAW_MAX 200
#define S3_LIST_MAX 1000
#define S3_EMPTY_SHA                                                      \
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

extern const kv_store_methods_t kv__s3_methods;

typedef struct s3_job_s s3_job_t;

typedef struct s3_store_s {
  kv_store_t base;
  kv_http_t *http;
  char *base_url; /* endpoint + "/" + bucket (path style) or the vhost URL */
  char *endpoint;
  char *bucket;
  char *region;
  char *prefix; /* "" or ends with '/' */
  int create;
  int bucket_created;
  s3_job_t *jobs;
  int closing;
} s3_store_t;

/* A listed object of keys() / cull(). */
typedef struct {
  char *obj;  /* object name */
  char *name; /* decoded key (NULL: hashed, from the HEAD) */
  int live;
  int checked;
} s3_item_t;

struct s3_job_s {
  s3_store_t *st;
  kv_req_t *req;
  s3_job_t *next, *prev;
  int outstanding;
  int err;
  char errmsg[300];
  int phase;
  int need_bucket;
  int pass;
  int truncated;
  size_t max_items;
  size_t removed;
  /* listings */
  char *token;
  char *list_prefix;
  const char *delimiter;
  int list_done;
  s3_item_t *items;
  size_t nitems;
};

#define STORE(s) ((s3_store_t *)(s))

static void job_step(s3_job_t *job);
static void job_start(s3_job_t *job);

/* ---- Names ----------------------------------------------------------------- */

static void esc_part(kv_sbuf_t *b, const char *s, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '%' || c == '/' || c < 0x20 || c == 0x7f || c == '\\' ||
        (i == 0 && (c == '.' || c == '#'))) {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      kv__sbuf_add(b, e, 3);
    } else {
      kv__sbuf_add(b, (const char *)&c, 1);
    }
  }
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Decode a percent-encoded part; NULL when malformed or on ENOMEM. */
static char *unesc(const char *s, size_t len, size_t *out_len) {
  char *out = kv_malloc(len + 1), *o = out;
  if (out == NULL) return NULL;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '%') {
      int hi = i + 2 < len ? hexval((unsigned char)s[i + 1]) : -1;
      int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        kv_free(out);
        return NULL;
      }
      *o++ = (char)(hi * 16 + lo);
      i += 2;
    } else {
      *o++ = s[i];
    }
  }
  *o = '\0';
  *out_len = (size_t)(o - out);
  return out;
}

/* The collection's part of object names: escaped, or "#" + SHA-256 hex
 * when the escaped form is longer than S3_PART_RAW_MAX. */
static void coll_part(kv_sbuf_t *b, const char *c, size_t clen, int *hashed) {
  size_t start = b->len;
  esc_part(b, c, clen);
  *hashed = 0;
  if (!b->oom && b->len - start > S3_PART_RAW_MAX) {
    char hex[65];
    kv__http_sha256_hex(c, clen, hex);
    b->len = start;
    kv__sbuf_add(b, "#", 1);
    kv__sbuf_add(b, hex, 64);
    *hashed = 1;
  }
}

/* The names of one entry: its object, and the sidecar objects that keep
 * the names of hashed parts (NULL when the part is not hashed). */
typedef struct {
  char *obj;
  char *key_sidecar;  /* PREFIX ".kv-k/" Cpart "/" Kpart */
  char *coll_sidecar; /* PREFIX ".kv-c/" Cpart */
} s3_names_t;

static void names_free(s3_names_t *n) {
  kv_free(n->obj);
  kv_free(n->key_sidecar);
  kv_free(n->coll_sidecar);
  memset(n, 0, sizeof *n);
}

static int entry_names(s3_store_t *st, const char *c, size_t clen,
                       const char *k, size_t klen, s3_names_t *out) {
  kv_sbuf_t cp = {0}, kp = {0}, b = {0};
  int chashed, khashed = 0;
  size_t pl = strlen(st->prefix);
  memset(out, 0, sizeof *out);
  coll_part(&cp, c, clen, &chashed);
  esc_part(&kp, k, klen);
  if (!kp.oom &&
      (kp.len > S3_PART_RAW_MAX || pl + cp.len + 1 + kp.len > S3_NAME_MAX)) {
    char hex[65];
    kv__http_sha256_hex(k, klen, hex);
    kp.len = 0;
    kv__sbuf_add(&kp, "#", 1);
    kv__sbuf_add(&kp, hex, 64);
    khashed = 1;
  }
  if (cp.oom || kp.oom) goto oom;
  kv__sbuf_printf(&b, "%s%s/%s", st->prefix, cp.p, kp.p);
  if (b.oom) goto oom;
  out->obj = b.p;
  memset(&b, 0, sizeof b);
  if (khashed) {
    kv__sbuf_printf(&b, "%s.kv-k/%s/%s", st->prefix, cp.p, kp.p);
    if (b.oom) goto oom;
    out->key_sidecar = b.p;
    memset(&b, 0, sizeof b);
  }
  if (chashed) {
    kv__sbuf_printf(&b, "%s.kv-c/%s", st->prefix, cp.p);
    if (b.oom) goto oom;
    out->coll_sidecar = b.p;
  }
  kv__sbuf_free(&cp);
  kv__sbuf_free(&kp);
  return 0;
oom:
  kv__sbuf_free(&cp);
  kv__sbuf_free(&kp);
  kv__sbuf_free(&b);
  names_free(out);
  return KV_ENOMEM;
}

/* The listing prefix of a collection: PREFIX + Cpart + "/" (with
 * infix ".kv-k/" for the key sidecars). */
static char *coll_prefix(s3_store_t *st, const char *infix, const char *c,
                         size_t clen) {
  kv_sbuf_t b = {0};
  int hashed;
  kv__sbuf_adds(&b, st->prefix);
  kv__sbuf_adds(&b, infix);
  coll_part(&b, c, clen, &hashed);
  kv__sbuf_add(&b, "/", 1);
  if (b.oom) {
    kv__sbuf_free(&b);
    return NULL;
  }
  return b.p;
}

static char *obj_url(s3_store_t *st, const char *obj, const char *query) {
  char *e = kv__http_escape(obj, strlen(obj), 1);
  kv_sbuf_t b = {0};
  if (e == NULL) return NULL;
  kv__sbuf_adds(&b, st->base_url);
  kv__sbuf_add(&b, "/", 1);
  kv__sbuf_adds(&b, e);
  if (query) kv__sbuf_adds(&b, query);
  kv_free(e);
  if (b.oom) {
    kv__sbuf_free(&b);
    return NULL;
  }
  return b.p;
}

/* ---- Jobs ------------------------------------------------------------------ */

static void job_fail(s3_job_t *job, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_fail(s3_job_t *job, int err, const char *fmt, ...) {
  va_list ap;
  if (job->err) return; /* the first error wins */
  job->err = err;
  va_start(ap, fmt);
  vsnprintf(job->errmsg, sizeof job->errmsg, fmt, ap);
  va_end(ap);
}

static void items_free(s3_job_t *job) {
  for (size_t i = 0; i < job->nitems; i++) {
    kv_free(job->items[i].obj);
    kv_free(job->items[i].name);
  }
  kv_free(job->items);
  job->items = NULL;
  job->nitems = 0;
}

static void job_finish(s3_job_t *job) {
  s3_store_t *st = job->st;
  kv_req_t *req = job->req;
  if (job->prev)
    job->prev->next = job->next;
  else
    st->jobs = job->next;
  if (job->next) job->next->prev = job->prev;
  if (job->err) kv_req_set_error(req, job->err, "%s", job->errmsg);
  items_free(job);
  kv_free(job->token);
  kv_free(job->list_prefix);
  int err = job->err;
  kv_free(job);
  kv_req_complete(req, err);
}

/* An answer that is not 2xx (nor an expected 404): classify it. */
static void job_http_error(s3_job_t *job, kv_http_req_t *hr, const char *what) {
  kv_s3_list_t doc;
  int err;
  const char *code = "";
  const char *msg = "";
  if (hr->err) {
    job_fail(job, hr->err, "s3: %s: %s", what, hr->errmsg);
    return;
  }
  kv__s3_parse(hr->body ? hr->body : "", hr->body_len, &doc);
  if (doc.error_code) code = doc.error_code;
  if (doc.error_message) msg = doc.error_message;
  if (strcmp(code, "NoSuchBucket") == 0 && job->st->create &&
      !job->need_bucket && job->phase >= 0) {
    job->need_bucket = 1;
    kv__s3_list_free(&doc);
    return;
  }
  if (hr->status == 401 || hr->status == 403)
    err = KV_EAUTH;
  else if (hr->status == 503 || hr->status == 429 ||
           strcmp(code, "SlowDown") == 0)
    err = KV_EBUSY;
  else if (hr->status >= 500)
    err = KV_EIO;
  else
    err = KV_EBACKEND;
  if (strcmp(code, "NoSuchBucket") == 0)
    job_fail(job, err, "s3: bucket '%s' does not exist (create=1 creates it)",
             job->st->bucket);
  else
    job_fail(job, err, "s3: %s: HTTP %ld %s%s%s", what, hr->status,
             code[0] ? code : "error", msg[0] ? ": " : "", msg);
  kv__s3_list_free(&doc);
}

/* Start one HTTP request of the job. The request's own cb does the work
 * and then calls sub_done. */
static kv_http_req_t *sub_new(s3_job_t *job, const char *method,
                              const char *url, kv_http_cb cb) {
  kv_http_req_t *hr = kv__http_req_new(job->st->http, method, url, cb, job);
  if (hr == NULL) job_fail(job, KV_ENOMEM, "s3: out of memory");
  return hr;
}

static void sub_start(s3_job_t *job, kv_http_req_t *hr, const char *sha) {
  int err;
  if (kv__http_req_header(hr, "x-amz-content-sha256: %s",
                          sha ? sha : S3_EMPTY_SHA) != 0) {
    kv__http_req_free(hr);
    job_fail(job, KV_ENOMEM, "s3: out of memory");
    return;
  }
  if ((err = kv__http_start(hr)) != 0) {
    job_fail(job, err, "s3: cannot start a request: %s", kv_strerror(err));
    return;
  }
  job->outstanding++;
}

/* A sub-request finished: free it, and when it was the last one in flight,
 * let the job take its next step. */
static void sub_done(s3_job_t *job, kv_http_req_t *hr) {
  kv__http_req_free(hr);
  if (--job->outstanding == 0) job_step(job);
}

static int64_t expiry_of(kv_http_req_t *hr) {
  char buf[32];
  if (!kv__http_header(hr, "x-amz-meta-kv-expires", buf, sizeof buf)) return 0;
  return strtoll(buf, NULL, 10);
}

/* ---- Single-object requests ------------------------------------------------ */

/* What a GET / HEAD of one object says: -1 error (recorded), 0 missing or
 * expired, 1 live. */
static int object_state(s3_job_t *job, kv_http_req_t *hr, const char *what,
                        int64_t *expires) {
  *expires = 0;
  /* 404 is a missing object, unless the body says the bucket is missing
   * (a HEAD has no body: its 404 always reads as a missing object). */
  if (hr->err == 0 && hr->status == 404 &&
      (hr->body_len == 0 || !strstr(hr->body, "NoSuchBucket")))
    return 0;
  if (hr->err || hr->status < 200 || hr->status > 299) {
    job_http_error(job, hr, what);
    return -1;
  }
  *expires = expiry_of(hr);
  return KV_EXPIRED(*expires, job->req->in.now_ms) ? 0 : 1;
}

static void on_get(kv_http_req_t *hr) {
  s3_job_t *job = hr->data;
  kv_req_t *req = job->req;
  int64_t exp;
  int st = object_state(job, hr, "GET", &exp);
  if (st == 1) {
    size_t len;
    char *body = kv__http_take_body(hr, &len);
    if (body == NULL) {
      job_fail(job, KV_ENOMEM, "s3: out of memory");
    } else if (req->op == KV_OP_GET_MANY || req->op == KV_OP_TTL_MANY) {
      kv_result_t *r = &req->results[hr->index];
      r->found = 1;
      r->value.base = body;
      r->value.len = len;
      r->ttl = kv_remaining_ttl(exp, req->in.now_ms);
    } else {
      kv_req_give_value(req, body, len);
      req->ttl = kv_remaining_ttl(exp, req->in.now_ms);
    }
  }
  sub_done(job, hr);
}

/* HEAD before a delete: found = the entry was live. */
static void on_head(kv_http_req_t *hr) {
  s3_job_t *job = hr->data;
  int64_t exp;
  if (object_state(job, hr, "HEAD", &exp) == 1) job->req->found = 1;
  sub_done(job, hr);
}

static void on_put(kv_http_req_t *hr) {
  s3_job_t *job = hr->data;
  if (hr->err || hr->status < 200 || hr->status > 299)
    job_http_error(job, hr, "PUT");
  sub_done(job, hr);
}

static void on_delete(kv_http_req_t *hr) {
  s3_job_t *job = hr->data;
  if (hr->err || (hr->status != 404 && (hr->status < 200 || hr->status > 299)))
    job_http_error(job, hr, "DELETE");
  sub_done(job, hr);
}

static void put_sidecar(s3_job_t *job, const char *obj, const char *name,
                        size_t len) {
  char *url = obj_url(job->st, obj, NULL);
  kv_http_req_t *hr = url ? sub_new(job, "PUT", url, on_put) : NULL;
  char sha[65];
  kv_free(url);
  if (hr == NULL || kv__http_req_body(hr, name, len, 1) != 0) {
    kv__http_req_free(hr);
    job_fail(job, KV_ENOMEM, "s3: out of memory");
    return;
  }
  kv__http_sha256_hex(name, len, sha);
  sub_start(job, hr, sha);
}

static void issue_object(s3_job_t *job, const char *method, const char *key,
                         size_t klen, size_t index, kv_http_cb cb,
                         const kv_buf_t *value) {
  kv_req_t *req = job->req;
  s3_names_t nm;
  char *url = NULL;
  kv_http_req_t *hr = NULL;
  char sha[65];
  int rc;
  if (entry_names(job->st, req->in.collection, req->in.collection_len, key,
                  klen, &nm) != 0 ||
      (url = obj_url(job->st, nm.obj, NULL)) == NULL ||
      (hr = sub_new(job, method, url, cb)) == NULL) {
    kv_free(url);
    names_free(&nm);
    job_fail(job, KV_ENOMEM, "s3: out of memory");
    return;
  }
  kv_free(url);
  hr->index = index;
  if (value == NULL) {
    names_free(&nm);
    sub_start(job, hr, NULL);
    return;
  }
  rc = kv__http_req_body(hr, value->base, value->len, 0);
  if (rc == 0 && req->in.expires_at_ms)
    rc = kv__http_req_header(hr, "x-amz-meta-kv-expires: %" PRId64,
                             req->in.expires_at_ms);
  if (rc != 0) {
    kv__http_req_free(hr);
    names_free(&nm);
    job_fail(job, rc, "s3: cannot build the request");
    return;
  }
  kv__http_sha256_hex(value->base, value->len, sha);
  sub_start(job, hr, sha);
  /* Hashed names: keep the real names beside the object, for listings. */
  if (nm.key_sidecar) put_sidecar(job, nm.key_sidecar, key, klen);
  if (nm.coll_sidecar)
    put_sidecar(job, nm.coll_sidecar, req->in.collection,
                req->in.collection_len);
  names_free(&nm);
}

/* ---- Listings -------------------------------------------------------------- */

static void on_list(kv_http_req_t *hr) {
  s3_job_t *job = hr->data;
  kv_s3_list_t doc;
  int rc;
  if (hr->err || hr->status < 200 || hr->status > 299) {
    job_http_error(job, hr, "LIST");
    sub_done(job, hr);
    return;
  }
  rc = kv__s3_parse(hr->body ? hr->body : "", hr->body_len, &doc);
  if (rc != 0) {
    job_fail(job, rc, "s3: LIST: %s", rc == KV_EPROTO ? "malformed XML answer"
                                                      : "out of memory");
  } else {
    char **src = job->delimiter ? doc.prefixes : doc.keys;
    size_t n = job->delimiter ? doc.nprefixes : doc.nkeys;
    items_free(job);
    if (n && (job->items = kv_calloc(n, sizeof *job->items)) == NULL) {
      job_fail(job, KV_ENOMEM, "s3: out of memory");
    } else {
      for (size_t i = 0; i < n; i++) { /* take the strings */
        job->items[i].obj = src[i];
        src[i] = NULL;
      }
      job->nitems = n;
      kv_free(job->token);
      job->token = doc.truncated ? doc.next_token : NULL;
      if (doc.truncated) doc.next_token = NULL;
      job->list_done = !doc.truncated || job->token == NULL;
      job->truncated = doc.truncated;
      if (job->max_items && job->nitems > job->max_items) {
        for (size_t i = job->max_items; i < job->nitems; i++)
          kv_free(job->items[i].obj);
        job->nitems = job->max_items;
        job->truncated = 1;
      }
    }
  }
  kv__s3_list_free(&doc);
  sub_done(job, hr);
}

static void issue_list(s3_job_t *job, const char *prefix, const char *token,
                       size_t max_keys, const char *start_after) {
  s3_store_t *st = job->st;
  kv_sbuf_t u = {0};
  char *p = kv__http_escape(prefix, strlen(prefix), 0);
  /* Query parameters sorted by name: curl signs the query as given. */
  kv__sbuf_adds(&u, st->base_url);
  kv__sbuf_adds(&u, "?");
  if (token) {
    char *t = kv__http_escape(token, strlen(token), 0);
    kv__sbuf_adds(&u, "continuation-token=");
    kv__sbuf_adds(&u, t ? t : "");
    kv__sbuf_adds(&u, "&");
    if (t == NULL) u.oom = 1;
    kv_free(t);
  }
  if (job->delimiter) kv__sbuf_adds(&u, "delimiter=%2F&");
  kv__sbuf_printf(&u, "list-type=2&max-keys=%zu&prefix=%s", max_keys,
                  p ? p : "");
  kv_free(p);
  if (start_after) {
    char *sa = kv__http_escape(start_after, strlen(start_after), 0);
    kv__sbuf_adds(&u, "&start-after=");
    kv__sbuf_adds(&u, sa ? sa : "");
    if (sa == NULL) u.oom = 1;
    kv_free(sa);
  }
  if (p == NULL || u.oom) {
    kv__sbuf_free(&u);
    job_fail(job, KV_ENOMEM, "s3: out of memory");
    return;
  }
  kv_http_req_t *hr = sub_new(job, "GET", u.p, on_list);
  kv__sbuf_free(&u);
  if (hr) sub_start(job, hr, NULL);
}

/* HEAD of a listed object: is it live (cull: is it expired)? */
static void on_item_head(kv_http_req_t *hr) {
  s3_job_t *job = hr->data;
  s3_item_t *it = &job->items[hr->index];
  int64_t exp;
  int state = object_state(job, hr, "HEAD", &exp);
  it->checked = state >= 0 && hr->status == 200;
  it->live = state == 1;
  sub_done(job, hr);
}

/* GET of a sidecar: the real name of a hashed part. */
static void on_sidecar(kv_http_req_t *hr) {
  s3_job_t *job = hr->data;
  s3_item_t *it = &job->items[hr->index];
  if (hr->err == 0 && hr->status == 200) {
    size_t len;
    kv_free(it->name);
    it->name = kv__http_take_body(hr, &len);
    if (it->name == NULL) job_fail(job, KV_ENOMEM, "s3: out of memory");
  } else if (!(hr->err == 0 && hr->status == 404)) {
    job_http_error(job, hr, "GET");
  }
  sub_done(job, hr);
}

static void issue_get(s3_job_t *job, const char *obj, size_t index,
                      kv_http_cb cb, const char *method) {
  char *url = obj_url(job->st, obj, NULL);
  kv_http_req_t *hr = url ? sub_new(job, method, url, cb) : NULL;
  kv_free(url);
  if (hr == NULL) {
    job_fail(job, KV_ENOMEM, "s3: out of memory");
    return;
  }
  hr->index = index;
  sub_start(job, hr, NULL);
}

static void issue_item_heads(s3_job_t *job) {
  for (size_t i = 0; i < job->nitems && !job->err; i++)
    issue_get(job, job->items[i].obj, i, on_item_head, "HEAD");
}

static void on_delete_objects(kv_http_req_t *hr) {
  s3_job_t *job = hr->data;
  if (hr->err || hr->status < 200 || hr->status > 299) {
    job_http_error(job, hr, "DeleteObjects");
  } else {
    kv_s3_list_t doc;
    if (kv__s3_parse(hr->body ? hr->body : "", hr->body_len, &doc) == 0 &&
        doc.nerrors > 0)
      job_fail(job, KV_EBACKEND, "s3: DeleteObjects: %zu objects not deleted: %s",
               doc.nerrors, doc.error_code ? doc.error_code : "error");
    kv__s3_list_free(&doc);
  }
  sub_done(job, hr);
}

static void xml_escape(kv_sbuf_t *b, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&': kv__sbuf_adds(b, "&amp;"); break;
    case '<': kv__sbuf_adds(b, "&lt;"); break;
    case '>': kv__sbuf_adds(b, "&gt;"); break;
    case '"': kv__sbuf_adds(b, "&quot;"); break;
    default: kv__sbuf_add(b, s, 1);
    }
  }
}

/* DeleteObjects of the items selected by `which` (0: all, 1: not live). */
static void issue_delete_objects(s3_job_t *job, int expired_only) {
  kv_sbuf_t x = {0};
  unsigned char md5[EVP_MAX_MD_SIZE];
  unsigned int md5_len = 0;
  char sha[65];
  size_t n = 0;
  kv__sbuf_adds(&x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                    "<Delete><Quiet>true</Quiet>");
  for (size_t i = 0; i < job->nitems; i++) {
    if (expired_only && (job->items[i].live || !job->items[i].checked))
      continue;
    kv__sbuf_adds(&x, "<Object><Key>");
    xml_escape(&x, job->items[i].obj);
    kv__sbuf_adds(&x, "</Key></Object>");
    n++;
  }
  kv__sbuf_adds(&x, "</Delete>");
  if (x.oom) {
    kv__sbuf_free(&x);
    job_fail(job, KV_ENOMEM, "s3: out of memory");
    return;
  }
  job->removed += n;
  if (n == 0) {
    kv__sbuf_free(&x);
    return;
  }
  kv_sbuf_t u = {0};
  kv__sbuf_adds(&u, job->st->base_url);
  kv__sbuf_adds(&u, "?delete=");
  kv_http_req_t *hr = u.oom ? NULL : sub_new(job, "POST", u.p, on_delete_objects);
  kv__sbuf_free(&u);
  if (hr == NULL) {
    kv__sbuf_free(&x);
    return;
  }
  EVP_Digest(x.p, x.len, md5, &md5_len, EVP_md5(), NULL);
  char *b64 = kv__http_base64(md5, md5_len, NULL);
  if (b64 == NULL || kv__http_req_header(hr, "Content-MD5: %s", b64) != 0 ||
      kv__http_req_header(hr, "Content-Type: application/xml") != 0 ||
      kv__http_req_body(hr, x.p, x.len, 1) != 0) {
    kv_free(b64);
    kv__sbuf_free(&x);
    kv__http_req_free(hr);
    job_fail(job, KV_ENOMEM, "s3: out of memory");
    return;
  }
  kv_free(b64);
  kv__http_sha256_hex(x.p, x.len, sha);
  kv__sbuf_free(&x);
  sub_start(job, hr, sha);
}

/* ---- Bucket creation (create=1) ------------------------------------------- */

static void on_create_bucket(kv_http_req_t *hr) {
  s3_job_t *job = hr->data;
  if (hr->err == 0 && (hr->status == 200 || hr->status == 409)) {
    /* Created (or it exists now): run the job again from the start;
     * nothing of it happened while the bucket was missing. */
    job->st->bucket_created = 1;
    job->phase = 0;
    job->removed = 0;
    items_free(job);
    kv_free(job->token);
    job->token = NULL;
  } else {
    job->phase = -1; /* no second attempt */
    job->need_bucket = 0;
    job_http_error(job, hr, "CreateBucket");
  }
  sub_done(job, hr);
}

static void issue_create_bucket(s3_job_t *job) {
  s3_store_t *st = job->st;
  kv_http_req_t *hr = sub_new(job, "PUT", st->base_url, on_create_bucket);
  char sha[65];
  const char *body = "";
  char xml[256];
  job->need_bucket = 0;
  job->phase = -1;
  if (hr == NULL) return;
  if (strcmp(st->region, "us-east-1") != 0) {
    snprintf(xml, sizeof xml,
             "<CreateBucketConfiguration><LocationConstraint>%s"
             "</LocationConstraint></CreateBucketConfiguration>",
             st->region);
    body = xml;
  }
  if (kv__http_req_body(hr, body, strlen(body), 1) != 0) {
    kv__http_req_free(hr);
    job_fail(job, KV_ENOMEM, "s3: out of memory");
    return;
  }
  kv__http_sha256_hex(body, strlen(body), sha);
  sub_start(job, hr, sha);
}

/* ---- The steps of each op -------------------------------------------------- */

static void on_head_count(kv_http_req_t *hr) {
  s3_job_t *job = hr->data;
  int64_t exp;
  if (object_state(job, hr, "HEAD", &exp) == 1) job->removed++;
  sub_done(job, hr);
}

/* Issue the requests of the job's current phase; returns 0 when the job is
 * complete. */
static int advance(s3_job_t *job) {
  kv_req_t *req = job->req;
  const kv_req_in_t *in = &req->in;
  int phase = job->phase++;
  switch (req->op) {
  case KV_OP_GET:
    if (phase == 0) issue_object(job, "GET", in->key, in->key_len, 0, on_get, NULL);
    return phase == 0;
  case KV_OP_TTL:
    if (phase == 0) issue_object(job, "GET", in->key, in->key_len, 0, on_get, NULL);
    return phase == 0;
  case KV_OP_PUT:
    if (phase == 0)
      issue_object(job, "PUT", in->key, in->key_len, 0, on_put, &in->value);
    return phase == 0;
  case KV_OP_DELETE:
    if (phase == 0)
      issue_object(job, "HEAD", in->key, in->key_len, 0, on_head, NULL);
    else if (phase == 1)
      issue_object(job, "DELETE", in->key, in->key_len, 0, on_delete, NULL);
    return phase <= 1;
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
    if (phase == 0) {
      if (in->n && req->results == NULL && kv_req_alloc_results(req) != 0) {
        job_fail(job, KV_ENOMEM, "s3: out of memory");
        return 1;
      }
      for (size_t i = 0; i < in->n && !job->err; i++)
        issue_object(job, "GET", in->keys[i].base, in->keys[i].len, i, on_get,
                     NULL);
    }
    return phase == 0;
  case KV_OP_PUT_MANY:
    if (phase == 0)
      for (size_t i = 0; i < in->n && !job->err; i++) {
        /* All in flight at once, so a key given twice is written once,
         * with its last value. */
        int dup = 0;
        for (size_t j = i + 1; j < in->n && !dup; j++)
          dup = in->keys[j].len == in->keys[i].len &&
                memcmp(in->keys[j].base, in->keys[i].base, in->keys[i].len) == 0;
        if (!dup)
          issue_object(job, "PUT", in->keys[i].base, in->keys[i].len, i, on_put,
                       &in->values[i]);
      }
    return phase == 0;
  case KV_OP_DELETE_MANY:
    if (phase == 0 || phase == 1)
      for (size_t i = 0; i < in->n && !job->err; i++) {
        /* A key given twice is removed once: HEAD only its first copy. */
        int dup = 0;
        for (size_t j = 0; j < i && phase == 0 && !dup; j++)
          dup = in->keys[j].len == in->keys[i].len &&
                memcmp(in->keys[j].base, in->keys[i].base, in->keys[i].len) == 0;
        if (dup) continue;
        issue_object(job, phase == 0 ? "HEAD" : "DELETE", in->keys[i].base,
                     in->keys[i].len, i, phase == 0 ? on_head_count : on_delete,
                     NULL);
      }
    if (phase == 2) req->count = job->removed;
    return phase <= 1;
  case KV_OP_KEYS:
    if (phase == 0) {
      char *p = coll_prefix(job->st, "", in->collection, in->collection_len);
      if (p == NULL) {
        job_fail(job, KV_ENOMEM, "s3: out of memory");
        return 1;
      }
      job->list_prefix = p;
      issue_list(job, p, in->cursor,
                 in->limit && in->limit < S3_LIST_MAX ? in->limit : S3_LIST_MAX,
                 NULL);
    } else if (phase == 1) {
      size_t pl = strlen(job->list_prefix), sl = strlen(job->st->prefix);
      for (size_t i = 0; i < job->nitems && !job->err; i++) {
        s3_item_t *it = &job->items[i];
        size_t nl;
        if (strncmp(it->obj, job->list_prefix, pl) != 0) continue;
        if (it->obj[pl] == '#') {
          kv_sbuf_t b = {0};
          kv__sbuf_printf(&b, "%s.kv-k/%s", job->st->prefix, it->obj + sl);
          if (b.oom) {
            job_fail(job, KV_ENOMEM, "s3: out of memory");
            break;
          }
          issue_get(job, b.p, i, on_sidecar, "GET");
          kv__sbuf_free(&b);
        } else {
          it->name = unesc(it->obj + pl, strlen(it->obj) - pl, &nl);
        }
        issue_get(job, it->obj, i, on_item_head, "HEAD");
      }
    } else {
      for (size_t i = 0; i < job->nitems; i++)
        if (job->items[i].live && job->items[i].name &&
            kv_req_add_name(req, job->items[i].name,
                            strlen(job->items[i].name)) != 0)
          job_fail(job, KV_ENOMEM, "s3: out of memory");
      if (!job->err && kv_req_set_cursor(req, job->token) != 0)
        job_fail(job, KV_ENOMEM, "s3: out of memory");
    }
    return phase <= 1;
  case KV_OP_COLLECTIONS:
    if (phase == 0) {
      /* The cursor is the last collection prefix listed: the next page
       * starts after every key under it (U+10FFFF sorts after any UTF-8
       * name). Not S3's continuation token: some servers (s3rver) ignore
       * max-keys with a delimiter, and the store cuts the page itself. */
      job->delimiter = "/";
      job->max_items = in->limit && in->limit < S3_LIST_MAX ? in->limit : S3_LIST_MAX;
      kv_sbuf_t sa = {0};
      if (in->cursor) {
        kv__sbuf_adds(&sa, in->cursor);
        kv__sbuf_adds(&sa, "\xf4\x8f\xbf\xbf");
        if (sa.oom) {
          job_fail(job, KV_ENOMEM, "s3: out of memory");
          return 1;
        }
      }
      issue_list(job, job->st->prefix, NULL, job->max_items, sa.p);
      kv__sbuf_free(&sa);
    } else if (phase == 1) {
      /* items[i].obj is "PREFIX Cpart/": decode Cpart, or fetch the name
       * of a hashed one from its sidecar. "PREFIX." is ours (sidecars). */
      size_t pl = strlen(job->st->prefix);
      for (size_t i = 0; i < job->nitems && !job->err; i++) {
        s3_item_t *it = &job->items[i];
        size_t len = strlen(it->obj), nl;
        if (len <= pl + 1 || it->obj[pl] == '.') continue;
        it->live = 1;
        if (it->obj[pl] == '#') {
          kv_sbuf_t b = {0};
          kv__sbuf_printf(&b, "%s.kv-c/%.*s", job->st->prefix,
                          (int)(len - pl - 1), it->obj + pl);
          if (b.oom) {
            job_fail(job, KV_ENOMEM, "s3: out of memory");
            break;
          }
          issue_get(job, b.p, i, on_sidecar, "GET");
          kv__sbuf_free(&b);
        } else {
          it->name = unesc(it->obj + pl, len - pl - 1, &nl);
        }
      }
    } else {
      for (size_t i = 0; i < job->nitems; i++)
        if (job->items[i].live && job->items[i].name &&
            kv_req_add_name(req, job->items[i].name,
                            strlen(job->items[i].name)) != 0)
          job_fail(job, KV_ENOMEM, "s3: out of memory");
      if (!job->err &&
          kv_req_set_cursor(req, job->truncated && job->nitems
                                     ? job->items[job->nitems - 1].obj
                                     : NULL) != 0)
        job_fail(job, KV_ENOMEM, "s3: out of memory");
    }
    return phase <= 1;
  case KV_OP_DESTROY:
  case KV_OP_DESTROY_COLLECTION:
    /* List from the start, delete what was listed, until nothing is left;
     * destroy_collection then does the same with the collection's key
     * sidecars. */
    if (phase % 2 == 0) {
      if (phase > 0 && job->nitems == 0) {
        if (req->op == KV_OP_DESTROY || job->pass > 0) return 0;
        job->pass = 1;
        kv_free(job->list_prefix);
        job->list_prefix = NULL;
      }
      if (job->list_prefix == NULL) {
        job->list_prefix =
            req->op == KV_OP_DESTROY
                ? kv_strndup(job->st->prefix, strlen(job->st->prefix))
                : coll_prefix(job->st, job->pass ? ".kv-k/" : "",
                              in->collection, in->collection_len);
        if (job->list_prefix == NULL) {
          job_fail(job, KV_ENOMEM, "s3: out of memory");
          return 1;
        }
      }
      issue_list(job, job->list_prefix, NULL, S3_LIST_MAX, NULL);
    } else {
      issue_delete_objects(job, 0);
    }
    return 1;
  case KV_OP_CULL:
    /* Pages of: list, HEAD each, DeleteObjects of the expired. */
    if (phase % 3 == 0) {
      if (phase > 0 && job->list_done) {
        req->count = job->removed;
        return 0;
      }
      char *tok = job->token;
      job->token = NULL;
      issue_list(job, job->st->prefix, tok, S3_LIST_MAX, NULL);
      kv_free(tok);
    } else if (phase % 3 == 1) {
      issue_item_heads(job);
    } else {
      issue_delete_objects(job, 1);
    }
    return 1;
  default:
    job_fail(job, KV_ENOTSUP, "s3: operation not supported");
    return 1;
  }
}

static void job_step(s3_job_t *job) {
  for (;;) {
    if (job->st->closing && !job->err)
      job_fail(job, KV_ECANCELED, "s3: store closed");
    if (job->need_bucket && !job->err) {
      issue_create_bucket(job);
      if (job->outstanding > 0) return;
    }
    if (job->err) {
      job_finish(job);
      return;
    }
    if (!advance(job)) {
      job_finish(job);
      return;
    }
    if (job->outstanding > 0) return;
  }
}

static void job_start(s3_job_t *job) { job_step(job); }

static int s3_submit(kv_store_t *s, kv_req_t *req) {
  s3_store_t *st = STORE(s);
  s3_job_t *job = kv_calloc(1, sizeof *job);
  if (job == NULL) return kv_req_set_error(req, KV_ENOMEM, "s3: out of memory");
  job->st = st;
  job->req = req;
  job->next = st->jobs;
  if (st->jobs) st->jobs->prev = job;
  st->jobs = job;
  job_start(job);
  return 0;
}

/* ---- Open / close ------------------------------------------------------------ */

static int s3_retryable(const kv_http_req_t *hr) {
  return hr->status >= 500 || hr->status == 429;
}

static const char *const s3_options[] = {
    "endpoint", "region",     "path_style", "create",  "access_key",
    "secret_key", "session_token", "timeout", "max_connections",
    NULL};

static const char *env2(const char *a, const char *b) {
  const char *v = getenv(a);
  if ((v == NULL || v[0] == '\0') && b) v = getenv(b);
  return v && v[0] ? v : NULL;
}

static void s3_free_fields(s3_store_t *st) {
  kv_free(st->base_url);
  kv_free(st->endpoint);
  kv_free(st->bucket);
  kv_free(st->region);
  kv_free(st->prefix);
}

static int valid_bucket(const char *b) {
  size_t n = strlen(b);
  if (n < 3 || n > 63) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = b[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '.'))
      return 0;
  }
  return 1;
}

static int s3_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                   size_t errbuf_len) {
  s3_store_t *st = STORE(s);
  const char *target = url->target ? url->target : "";
  const char *slash = strchr(target, '/');
  const char *endpoint = kv_url_param(url, "endpoint");
  const char *ak = kv_url_param(url, "access_key");
  const char *sk = kv_url_param(url, "secret_key");
  const char *tok = kv_url_param(url, "session_token");
  const char *region = kv_url_param(url, "region");
  int path_style, err;
  int64_t maxconn;
  double timeout;
  kv_http_config_t cfg = {0};

  if ((err = kv_url_param_bool(url, "path_style", endpoint != NULL, &path_style,
                               errbuf, errbuf_len)) != 0 ||
      (err = kv_url_param_bool(url, "create", 0, &st->create, errbuf,
                               errbuf_len)) != 0 ||
      (err = kv_url_param_int(url, "max_connections", 1, 1024, 64, &maxconn,
                              errbuf, errbuf_len)) != 0 ||
      (err = kv_url_param_double(url, "timeout", 0, 86400, 30, &timeout,
                                 errbuf, errbuf_len)) != 0)
    return err;
  st->bucket = kv_strndup(target, slash ? (size_t)(slash - target) : strlen(target));
  if (st->bucket == NULL) goto oom;
  if (!valid_bucket(st->bucket)) {
    err = kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                     "invalid bucket name '%s': expected 3 to 63 of a-z 0-9 . -",
                     st->bucket);
    s3_free_fields(st);
    return err;
  }
  {
    const char *p = slash ? slash + 1 : "";
    size_t pl = strlen(p);
    if (pl > 512) {
      s3_free_fields(st);
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "s3: prefix longer than 512 bytes");
    }
    if ((st->prefix = kv_malloc(pl + 2)) == NULL) goto oom;
    memcpy(st->prefix, p, pl);
    if (pl && p[pl - 1] != '/') st->prefix[pl++] = '/';
    st->prefix[pl] = '\0';
  }
  if (region == NULL) region = env2("AWS_REGION", "AWS_DEFAULT_REGION");
  if (region == NULL) region = "us-east-1";
  if ((st->region = kv_strndup(region, strlen(region))) == NULL) goto oom;
  if (endpoint) {
    size_t el = strlen(endpoint);
    if (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0) {
      s3_free_fields(st);
      return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                        "s3: endpoint must start with http:// or https://");
    }
    while (el > 0 && endpoint[el - 1] == '/') el--;
    st->endpoint = kv_strndup(endpoint, el);
  } else {
    kv_sbuf_t b = {0};
    kv__sbuf_printf(&b, "https://s3.%s.amazonaws.com", region);
    st->endpoint = b.p;
  }
  if (st->endpoint == NULL) goto oom;
  {
    kv_sbuf_t b = {0};
    if (path_style) {
      kv__sbuf_printf(&b, "%s/%s", st->endpoint, st->bucket);
    } else {
      const char *scheme_end = strstr(st->endpoint, "://") + 3;
      kv__sbuf_add(&b, st->endpoint, (size_t)(scheme_end - st->endpoint));
      kv__sbuf_printf(&b, "%s.%s", st->bucket, scheme_end);
    }
    if (b.oom) goto oom;
    st->base_url = b.p;
  }
  if (ak == NULL && sk == NULL) {
    ak = env2("AWS_ACCESS_KEY_ID", NULL);
    sk = env2("AWS_SECRET_ACCESS_KEY", NULL);
    if (tok == NULL) tok = env2("AWS_SESSION_TOKEN", NULL);
  }
  if ((ak == NULL) != (sk == NULL)) {
    s3_free_fields(st);
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "s3: access_key and secret_key go together");
  }
  cfg.access_key = ak;
  cfg.secret_key = sk;
  cfg.session_token = tok;
  cfg.region = st->region;
  cfg.service = "s3";
  cfg.timeout_ms = (uint64_t)(timeout * 1e3 + 0.5);
  cfg.max_connections = (long)maxconn;
  cfg.retryable = s3_retryable;
  if ((err = kv__http_init(&st->http, s->loop, &cfg, errbuf, errbuf_len)) != 0) {
    s3_free_fields(st);
    return err;
  }
  return 0;
oom:
  s3_free_fields(st);
  return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "s3: out of memory");
}

static void s3_http_closed(void *data) {
  s3_store_t *st = data;
  s3_free_fields(st);
  kv_store_closed(&st->base);
}

static void s3_close(kv_store_t *s) {
  s3_store_t *st = STORE(s);
  st->closing = 1;
  kv__http_close(st->http, s3_http_closed, st);
}

const kv_store_methods_t kv__s3_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "s3",
    .store_size = sizeof(s3_store_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL |
            KV_CAP_PERSISTENT | KV_CAP_SHARED,
    .options = s3_options,
    .open = s3_open,
    .close = s3_close,
    .get = s3_submit,
    .ttl = s3_submit,
    .put = s3_submit,
    .del = s3_submit,
    .get_many = s3_submit,
    .ttl_many = s3_submit,
    .put_many = s3_submit,
    .delete_many = s3_submit,
    .keys = s3_submit,
    .collections = s3_submit,
    .destroy = s3_submit,
    .destroy_collection = s3_submit,
    .cull = s3_submit,
};
