/* The format of the file:// store: the data in memory, the loader (jansson
 * checks the syntax and reports the position of an error) and the writer (a
 * serializer of our own: a jansson tree costs several allocations per
 * entry, and dumping it dominated the write path). docs/file.md describes
 * the document; file_int.h the interface. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "file_int.h"
#include "internal.h"

#define FILE_FORMAT KV__FILE_FORMAT
#define FILE_VERSION KV__FILE_VERSION
#define FILE_NAME_SHOW KV__FILE_NAME_SHOW
#define FILE_WBUF 65536
#define TABLE_MIN 16

int kv__file_msg(char *msg, size_t len, int err, const char *fmt, ...) {
  va_list ap;
  if (msg == NULL || len == 0) return err;
  va_start(ap, fmt);
  vsnprintf(msg, len, fmt, ap);
  va_end(ap);
  return err;
}

/* ---- Base64 (RFC 4648, standard alphabet, padded: kv__b64_*) ------------ */

/* Decode strictly (length a multiple of 4, '=' only as final padding, one
 * spelling per byte string). With out NULL only validates. Returns the
 * decoded length, or -1 (also when out of memory while validating). */
static long long b64_decode(const char *s, size_t n, unsigned char *out) {
  long long r;
  unsigned char *tmp;
  if (out != NULL) return kv__b64_decode(s, n, out, 0);
  tmp = kv_malloc(n / 4 * 3 + 1);
  if (tmp == NULL) return -1;
  r = kv__b64_decode(s, n, tmp, 0);
  kv_free(tmp);
  return r;
}

/* ---- The data in memory -----------------------------------------------------
 *
 * The file's content, parsed: a hash table of collections, each a hash
 * table of entries with the key and value inline. Both tables also keep
 * insertion order (a doubly linked list), the order they are written in, so
 * a file keeps its order across rewrites and an overwritten key keeps its
 * place. */

uint32_t kv__file_hash(const char *p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n, v;
  while (n >= 8) {
    memcpy(&v, p, 8);
    h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  v = 0;
  memcpy(&v, p, n);
  h = (h ^ v) * 0x94d049bb133111ebull;
  h ^= h >> 29;
  return (uint32_t)h;
}

int kv__file_table_init(ftable_t *t) {
  memset(t, 0, sizeof(*t));
  t->buckets = kv_calloc(TABLE_MIN, sizeof(*t->buckets));
  if (t->buckets == NULL) return KV_ENOMEM;
  t->mask = TABLE_MIN - 1;
  return 0;
}

fnode_t *kv__file_table_find(const ftable_t *t, const char *name, size_t len,
                             uint32_t h) {
  fnode_t *n;
  for (n = t->buckets[h & t->mask]; n != NULL; n = n->hnext)
    if (n->hash == h && n->len == len && memcmp(n->name, name, len) == 0)
      return n;
  return NULL;
}

static void table_grow(ftable_t *t) {
  size_t nb = (t->mask + 1) * 2, b;
  fnode_t **nbk = kv_calloc(nb, sizeof(*nbk));
  if (nbk == NULL) return; /* longer chains, still correct */
  for (b = 0; b <= t->mask; b++) {
    fnode_t *n = t->buckets[b];
    while (n != NULL) {
      fnode_t *next = n->hnext;
      n->hnext = nbk[n->hash & (nb - 1)];
      nbk[n->hash & (nb - 1)] = n;
      n = next;
    }
  }
  kv_free(t->buckets);
  t->buckets = nbk;
  t->mask = nb - 1;
}

/* Add a node (not present) at the end of the order. */
void kv__file_table_link(ftable_t *t, fnode_t *n) {
  fnode_t **b = &t->buckets[n->hash & t->mask];
  n->hnext = *b;
  *b = n;
  n->prev = t->tail;
  n->next = NULL;
  if (t->tail != NULL)
    t->tail->next = n;
  else
    t->head = n;
  t->tail = n;
  if (++t->count > t->mask + 1) table_grow(t);
}

static fnode_t **table_slot(ftable_t *t, const fnode_t *n) {
  fnode_t **pp = &t->buckets[n->hash & t->mask];
  while (*pp != n)
    pp = &(*pp)->hnext;
  return pp;
}

void kv__file_table_unlink(ftable_t *t, fnode_t *n) {
  *table_slot(t, n) = n->hnext;
  if (n->prev != NULL)
    n->prev->next = n->next;
  else
    t->head = n->next;
  if (n->next != NULL)
    n->next->prev = n->prev;
  else
    t->tail = n->prev;
  t->count--;
}

/* Put `n` where `old` was, in the chain and in the order. */
void kv__file_table_replace(ftable_t *t, fnode_t *old, fnode_t *n) {
  *table_slot(t, old) = n;
  n->hnext = old->hnext;
  n->prev = old->prev;
  n->next = old->next;
  if (n->prev != NULL)
    n->prev->next = n;
  else
    t->head = n;
  if (n->next != NULL)
    n->next->prev = n;
  else
    t->tail = n;
}

int kv__file_is_text(const char *p, size_t len) {
  return len == 0 || (memchr(p, 0, len) == NULL && kv__utf8_valid(p, len));
}

fent_t *kv__file_ent_new(const char *key, size_t klen, uint32_t h,
                         const char *v, size_t vlen, int64_t expires_at,
                         int text) {
  fent_t *e;
  if (vlen > SIZE_MAX - sizeof(*e) - klen - 2) return NULL;
  e = kv_malloc(sizeof(*e) + klen + 1 + vlen + 1);
  if (e == NULL) return NULL;
  memcpy(e->data, key, klen);
  e->data[klen] = '\0';
  if (vlen > 0) memcpy(e->data + klen + 1, v, vlen);
  e->data[klen + 1 + vlen] = '\0';
  e->node.name = e->data;
  e->node.len = (uint32_t)klen;
  e->node.hash = h;
  e->expires_at = expires_at;
  e->vlen = vlen;
  e->text = text;
  e->json = 0;
  return e;
}

fcoll_t *kv__file_coll_new(const char *name, size_t len) {
  fcoll_t *c = kv_malloc(sizeof(*c) + len + 1);
  if (c == NULL) return NULL;
  if (kv__file_table_init(&c->entries) != 0) {
    kv_free(c);
    return NULL;
  }
  memcpy(c->name, name, len);
  c->name[len] = '\0';
  c->node.name = c->name;
  c->node.len = (uint32_t)len;
  c->node.hash = kv__file_hash(name, len);
  return c;
}

void kv__file_coll_free(fcoll_t *c) {
  fnode_t *n = c->entries.head;
  while (n != NULL) {
    fnode_t *next = n->next;
    kv_free(n);
    n = next;
  }
  kv_free(c->entries.buckets);
  kv_free(c);
}

void kv__file_data_free(fdata_t *d) {
  fnode_t *n = d->colls.head;
  while (n != NULL) {
    fnode_t *next = n->next;
    kv__file_coll_free((fcoll_t *)n);
    n = next;
  }
  kv_free(d->colls.buckets);
  json_decref(d->extra);
  kv_free(d->plain_coll);
  memset(d, 0, sizeof(*d));
}

fent_t *kv__file_ent_find(const fcoll_t *c, const char *key, size_t klen) {
  if (c == NULL) return NULL;
  return (fent_t *)kv__file_table_find(&c->entries, key, klen,
                                       kv__file_hash(key, klen));
}

/* ---- Loading --------------------------------------------------------------
 */

/* Add an entry read from the file to c. Returns NULL, or what is wrong. */
static const char *import_entry(fcoll_t *c, const char *key, size_t klen,
                                const json_t *e, int *oom_out) {
  const char *k, *text = NULL;
  const json_t *v, *b64 = NULL;
  size_t tlen = 0;
  int64_t expires_at = 0;
  int nvalues = 0;
  fent_t *ent;
  if (json_is_string(e)) {
    text = json_string_value(e);
    tlen = json_string_length(e);
  } else if (!json_is_object(e)) {
    return "an entry must be a string or an object with \"value\" or "
           "\"base64\"";
  } else {
    json_object_foreach((json_t *)e, k, v) {
      if (strcmp(k, "value") == 0) {
        if (!json_is_string(v)) return "\"value\" must be a string";
        text = json_string_value(v);
        tlen = json_string_length(v);
        nvalues++;
      } else if (strcmp(k, "base64") == 0) {
        if (!json_is_string(v) ||
            b64_decode(json_string_value(v), json_string_length(v), NULL) < 0)
          return "\"base64\" must be a string of padded base64";
        b64 = v;
        nvalues++;
      } else if (strcmp(k, "expires_at") == 0) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
          return "\"expires_at\" must be an integer (Unix milliseconds, 0 = "
                 "never)";
        expires_at = (int64_t)json_integer_value(v);
      } else {
        return "unknown member (an entry has \"value\" or \"base64\", and "
               "\"expires_at\")";
      }
    }
    if (nvalues != 1)
      return "an entry object needs exactly one of \"value\" and \"base64\"";
  }
  if (b64 != NULL) {
    const char *s = json_string_value(b64);
    size_t slen = json_string_length(b64);
    long long n = b64_decode(s, slen, NULL);
    char *raw = kv_malloc((size_t)n + 1);
    if (raw == NULL) goto oom;
    b64_decode(s, slen, (unsigned char *)raw);
    ent = kv__file_ent_new(key, klen, kv__file_hash(key, klen), raw, (size_t)n,
                           expires_at, kv__file_is_text(raw, (size_t)n));
    kv_free(raw);
  } else {
    /* jansson refuses NUL in strings (no JSON_ALLOW_NUL) and checks UTF-8. */
    ent = kv__file_ent_new(key, klen, kv__file_hash(key, klen), text, tlen,
                           expires_at, 1);
  }
  if (ent == NULL) goto oom;
  kv__file_table_link(&c->entries, &ent->node);
  return NULL;
oom:
  *oom_out = 1;
  return "out of memory";
}

/* Check a parsed document and build the data from it. Takes `doc`. Returns 0
 * or KV_ECORRUPT / KV_ENOMEM with the reason. */
/* An aiokv file: a JSON object of key → value, into collection plain_coll.
 * A string reads as its text; any other JSON value as its compact JSON text,
 * marked to be written back as JSON. Takes `doc`. */
static int plain_import(json_t *doc, const char *path, const char *plain_coll,
                        fdata_t *d, char *msg, size_t len) {
  const char *key;
  json_t *v;
  char nb[256];
  fcoll_t *fc = NULL;
  int rc = KV_ECORRUPT;
  size_t clen = strlen(plain_coll);
  if (kv__file_table_init(&d->colls) != 0) goto oom;
  d->plain_coll = kv_strndup(plain_coll, clen);
  if (d->plain_coll == NULL) goto oom;
  json_object_foreach(doc, key, v) {
    size_t klen = strlen(key), tlen;
    char *dump = NULL;
    const char *text;
    fent_t *e;
    if (kv__check_name("key", key, klen, nb, sizeof nb) != 0) {
      kv__file_msg(msg, len, rc, "file: %s: aiokv file: %s", path, nb);
      goto fail;
    }
    if (fc == NULL) {
      if ((fc = kv__file_coll_new(plain_coll, clen)) == NULL) goto oom;
      kv__file_table_link(&d->colls, &fc->node);
    }
    if (json_is_string(v)) {
      text = json_string_value(v);
      tlen = json_string_length(v);
    } else {
      dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
      if (dump == NULL) goto oom;
      text = dump;
      tlen = strlen(dump);
    }
    e = kv__file_ent_new(key, klen, kv__file_hash(key, klen), text, tlen, 0, 1);
    free(dump); /* jansson's allocator */
    if (e == NULL) goto oom;
    e->json = !json_is_string(v);
    kv__file_table_link(&fc->entries, &e->node);
  }
  json_decref(doc);
  return 0;
oom:
  rc = kv__file_msg(msg, len, KV_ENOMEM, "out of memory reading %s", path);
fail:
  json_decref(doc);
  kv__file_data_free(d);
  return rc;
}

static int doc_import(json_t *doc, const char *path, const char *plain_coll,
                      fdata_t *d, char *msg, size_t len) {
  const char *cname, *key, *why;
  json_t *x, *colls, *c, *e;
  char nb[256];
  int rc = KV_ECORRUPT, oom_hit = 0;
  memset(d, 0, sizeof(*d));
  if (!json_is_object(doc)) {
    kv__file_msg(msg, len, rc, "file: %s: the top level is not a JSON object",
                 path);
    goto fail;
  }
  x = json_object_get(doc, "format");
  if (!json_is_string(x) || strcmp(json_string_value(x), FILE_FORMAT) != 0) {
    if (plain_coll != NULL)
      return plain_import(doc, path, plain_coll, d, msg, len);
    kv__file_msg(msg, len, rc,
                 "file: %s: not a kvio file (\"format\" is not \"%s\")", path,
                 FILE_FORMAT);
    goto fail;
  }
  x = json_object_get(doc, "version");
  if (!json_is_integer(x)) {
    kv__file_msg(msg, len, rc,
                 "file: %s: \"version\" is missing or not an integer", path);
    goto fail;
  }
  if (json_integer_value(x) != FILE_VERSION) {
    kv__file_msg(msg, len, rc,
                 "file: %s: format version %lld is not supported (this kvio "
                 "reads version %d)",
                 path, (long long)json_integer_value(x), FILE_VERSION);
    goto fail;
  }
  colls = json_object_get(doc, "collections");
  if (!json_is_object(colls)) {
    kv__file_msg(msg, len, rc,
                 "file: %s: \"collections\" is missing or not an object", path);
    goto fail;
  }
  if (kv__file_table_init(&d->colls) != 0) goto oom;
  json_object_foreach(colls, cname, c) {
    size_t clen = strlen(cname); /* the parser refuses NUL in keys */
    fcoll_t *fc;
    if (kv__check_name("collection", cname, clen, nb, sizeof nb) != 0) {
      kv__file_msg(msg, len, rc, "file: %s: %s", path, nb);
      goto fail;
    }
    if (!json_is_object(c)) {
      kv__file_msg(msg, len, rc,
                   "file: %s: collection \"%.*s\" is not an object", path,
                   FILE_NAME_SHOW, cname);
      goto fail;
    }
    if ((fc = kv__file_coll_new(cname, clen)) == NULL) goto oom;
    kv__file_table_link(&d->colls, &fc->node);
    json_object_foreach(c, key, e) {
      size_t klen = strlen(key);
      if (kv__check_name("key", key, klen, nb, sizeof nb) != 0) {
        kv__file_msg(msg, len, rc, "file: %s: collection \"%.*s\": %s", path,
                     FILE_NAME_SHOW, cname, nb);
        goto fail;
      }
      if ((why = import_entry(fc, key, klen, e, &oom_hit)) != NULL) {
        if (oom_hit) goto oom;
        kv__file_msg(msg, len, rc,
                     "file: %s: collection \"%.*s\", key \"%.*s\": %s", path,
                     FILE_NAME_SHOW, cname, FILE_NAME_SHOW, key, why);
        goto fail;
      }
    }
  }
  /* What is left of the top level is someone else's: keep it. */
  json_object_del(doc, "format");
  json_object_del(doc, "version");
  json_object_del(doc, "collections");
  if (json_object_size(doc) > 0) d->extra = json_incref(doc);
  json_decref(doc);
  return 0;
oom:
  rc = kv__file_msg(msg, len, KV_ENOMEM, "out of memory reading %s", path);
fail:
  json_decref(doc);
  kv__file_data_free(d);
  return rc;
}

/* Parse the bytes of a file into *out. 0, or KV_ECORRUPT / KV_ENOMEM with
 * the reason (a JSON syntax error with its position) in msg. */
int kv__file_parse(const char *buf, size_t n, const char *path,
                   const char *plain_coll, kv__file_data_t *out, char *msg,
                   size_t len) {
  json_error_t jerr;
  json_t *doc = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
  if (doc == NULL)
    return kv__file_msg(msg, len, KV_ECORRUPT,
                        "file: %s: not valid JSON at line %d, column %d (byte "
                        "%d): %s",
                        path, jerr.line, jerr.column, jerr.position, jerr.text);
  return doc_import(doc, path, plain_coll, out, msg, len);
}

kv__file_data_t *kv__file_data_new(void) {
  return kv_calloc(1, sizeof(fdata_t));
}

void kv__file_data_destroy(kv__file_data_t *d) {
  if (d == NULL) return;
  kv__file_data_free(d);
  kv_free(d);
}

/* ---- Writing ---------------------------------------------------------------
 *
 * The serializer is ours (jansson's dump walks a json_t tree, which the
 * store does not keep); names and text values are valid UTF-8 already, so
 * JSON needs only '"', '\\' and the control characters escaped. */

typedef struct file_writer_s {
  int fd;
  int err; /* errno of the first failed write */
  size_t len;
  char buf[FILE_WBUF];
} file_writer_t;

static void w_flush(file_writer_t *w) {
  size_t off = 0;
  while (off < w->len && w->err == 0) {
    ssize_t r = write(w->fd, w->buf + off, w->len - off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      w->err = errno;
      break;
    }
    off += (size_t)r;
  }
  w->len = 0;
}

static void w_put(file_writer_t *w, const char *p, size_t n) {
  while (n > 0) {
    size_t room = sizeof(w->buf) - w->len, k = n < room ? n : room;
    memcpy(w->buf + w->len, p, k);
    w->len += k;
    p += k;
    n -= k;
    if (w->len == sizeof(w->buf)) w_flush(w);
  }
}

static void w_puts(file_writer_t *w, const char *s) {
  w_put(w, s, strlen(s));
}

static void w_newline(file_writer_t *w, int indent, int level) {
  static const char spaces[] = "                                        ";
  size_t n = (size_t)indent * (size_t)level;
  if (indent == 0) return;
  w_put(w, "\n", 1);
  while (n > 0) {
    size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
    w_put(w, spaces, k);
    n -= k;
  }
}

/* Length of the prefix of s[0..n) that JSON takes as it is: no '"', no
 * '\\', no control character. Eight bytes at a time while none of them
 * can need an escape (the SWAR tests may flag a byte wrongly, never miss
 * one; a flagged word is then checked byte by byte). */
static size_t json_plain_run(const unsigned char *s, size_t n) {
  const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, q, b;
    memcpy(&x, s + i, 8);
    q = x ^ (ones * '"');
    b = x ^ (ones * '\\');
    if ((((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) &
        high)
      break;
  }
  while (i < n && s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
    i++;
  return i;
}

static void w_string(file_writer_t *w, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t i = 0;
  w_put(w, "\"", 1);
  for (;;) {
    size_t run = json_plain_run((const unsigned char *)s + i, n - i);
    unsigned char c;
    char esc[6];
    w_put(w, s + i, run);
    i += run;
    if (i == n) break;
    c = (unsigned char)s[i++];
    esc[0] = '\\';
    switch (c) {
    case '"':
    case '\\':
      esc[1] = (char)c;
      break;
    case '\b':
      esc[1] = 'b';
      break;
    case '\f':
      esc[1] = 'f';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    default:
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      w_put(w, esc, 6);
      continue;
    }
    w_put(w, esc, 2);
  }
  w_put(w, "\"", 1);
}

static void w_base64(file_writer_t *w, const unsigned char *p, size_t n) {
  char out[4096 + 1]; /* 1024 groups of 4 and the NUL */
  w_put(w, "\"", 1);
  while (n > 0) {
    size_t chunk = n < 3072 ? n : 3072;
    w_put(w, out, kv__b64_encode(p, chunk, out, 0));
    p += chunk;
    n -= chunk;
  }
  w_put(w, "\"", 1);
}

static int w_json_cb(const char *p, size_t n, void *data) {
  w_put(data, p, n);
  return 0;
}

/* The whole document (format in docs/file.md). */
static void w_document(file_writer_t *w, const fdata_t *d, int indent) {
  const char *colon = indent ? ": " : ":";
  const char *comma = indent ? ", " : ",";
  const fnode_t *cn, *en;
  const char *k;
  json_t *v;
  char num[32];
  w_put(w, "{", 1);
  w_newline(w, indent, 1);
  w_puts(w, "\"format\"");
  w_puts(w, colon);
  w_puts(w, "\"" FILE_FORMAT "\",");
  w_newline(w, indent, 1);
  w_puts(w, "\"version\"");
  w_puts(w, colon);
  snprintf(num, sizeof num, "%d,", FILE_VERSION);
  w_puts(w, num);
  if (d->extra != NULL) {
    json_object_foreach(d->extra, k, v) {
      w_newline(w, indent, 1);
      w_string(w, k, strlen(k));
      w_puts(w, colon);
      json_dump_callback(v, w_json_cb, w, JSON_COMPACT | JSON_ENCODE_ANY);
      w_put(w, ",", 1);
    }
  }
  w_newline(w, indent, 1);
  w_puts(w, "\"collections\"");
  w_puts(w, colon);
  w_put(w, "{", 1);
  for (cn = d->colls.head; cn != NULL; cn = cn->next) {
    const fcoll_t *c = (const fcoll_t *)cn;
    w_newline(w, indent, 2);
    w_string(w, cn->name, cn->len);
    w_puts(w, colon);
    w_put(w, "{", 1);
    for (en = c->entries.head; en != NULL; en = en->next) {
      const fent_t *e = (const fent_t *)en;
      w_newline(w, indent, 3);
      w_string(w, en->name, en->len);
      w_puts(w, colon);
      if (e->text && e->expires_at == 0) {
        w_string(w, ENT_VALUE(e), e->vlen);
      } else {
        w_puts(w, e->text ? "{\"value\"" : "{\"base64\"");
        w_puts(w, colon);
        if (e->text)
          w_string(w, ENT_VALUE(e), e->vlen);
        else
          w_base64(w, (const unsigned char *)ENT_VALUE(e), e->vlen);
        if (e->expires_at != 0) {
          w_puts(w, comma);
          w_puts(w, "\"expires_at\"");
          w_puts(w, colon);
          snprintf(num, sizeof num, "%lld", (long long)e->expires_at);
          w_puts(w, num);
        }
        w_put(w, "}", 1);
      }
      if (en->next != NULL) w_put(w, ",", 1);
    }
    if (c->entries.head != NULL) w_newline(w, indent, 2);
    w_put(w, "}", 1);
    if (cn->next != NULL) w_put(w, ",", 1);
  }
  if (d->colls.head != NULL) w_newline(w, indent, 1);
  w_put(w, "}", 1);
  w_newline(w, indent, 0);
  w_put(w, "}\n", 2);
}

int kv__file_is_plain(const kv__file_data_t *d) {
  const fnode_t *cn = d->colls.head, *en;
  if (d->plain_coll == NULL || d->extra != NULL) return 0;
  if (cn == NULL) return 1;
  if (cn->next != NULL || strcmp(cn->name, d->plain_coll) != 0) return 0;
  for (en = ((const fcoll_t *)cn)->entries.head; en != NULL; en = en->next) {
    const fent_t *e = (const fent_t *)en;
    if (!e->text || e->expires_at != 0) return 0;
  }
  return 1;
}

/* A decimal integer as JSON writes it and reads it back unchanged (what
 * touch and incr store): no leading zero, no "-0", within int64. */
static int json_integer_text(const char *p, size_t n) {
  size_t i = n > 0 && p[0] == '-' ? 1 : 0;
  int64_t v;
  if (i == n || (p[i] == '0' && (n > i + 1 || i == 1))) return 0;
  for (; i < n; i++)
    if (p[i] < '0' || p[i] > '9') return 0;
  return kv_parse_int64(p, n, &v) == 0;
}

/* An aiokv file: {KEY: VALUE, ...}. A value read as JSON goes back as that
 * JSON, an integer (a touch, an incr) as a JSON number, anything else as a
 * JSON string. */
static void w_plain(file_writer_t *w, const fdata_t *d, int indent) {
  const char *colon = indent ? ": " : ":";
  const fnode_t *en =
      d->colls.head ? ((const fcoll_t *)d->colls.head)->entries.head : NULL;
  w_put(w, "{", 1);
  for (; en != NULL; en = en->next) {
    const fent_t *e = (const fent_t *)en;
    w_newline(w, indent, 1);
    w_string(w, en->name, en->len);
    w_puts(w, colon);
    if (e->json || json_integer_text(ENT_VALUE(e), e->vlen))
      w_put(w, ENT_VALUE(e), e->vlen);
    else
      w_string(w, ENT_VALUE(e), e->vlen);
    if (en->next != NULL) w_put(w, ",", 1);
  }
  w_newline(w, indent, 0);
  w_put(w, "}\n", 2);
}

/* Write the whole document to fd. 0, the errno of a failed write (> 0), or
 * KV_ENOMEM. */
int kv__file_serialize(int fd, const kv__file_data_t *d, int indent) {
  file_writer_t *w = kv_malloc(sizeof(*w));
  int err;
  if (w == NULL) return KV_ENOMEM;
  w->fd = fd;
  w->err = 0;
  w->len = 0;
  if (kv__file_is_plain(d))
    w_plain(w, d, indent);
  else
    w_document(w, d, indent);
  w_flush(w);
  err = w->err;
  kv_free(w);
  return err;
}

/* Write the data: PATH.tmp, fsync, rename over PATH, fsync the directory,
 * bump the generation. The lock is held. */
