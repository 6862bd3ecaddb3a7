/* S3's XML answers, parsed with expat: the element path is tracked and the
 * text of the few leaves we need is collected. Namespaces are ignored (S3
 * and s3rver disagree on the namespace URI). */
#include <string.h>

#include <expat.h>

#include "stores/http.h"
#include "stores/s3_xml.h"

#define PATH_MAX_DEPTH 8

typedef struct {
  kv_s3_list_t *out;
  int depth;
  const char *path[PATH_MAX_DEPTH]; /* the names of the open elements */
  char names[PATH_MAX_DEPTH][32];
  kv_sbuf_t text;
  int oom;
} s3_parse_t;

static int at(const s3_parse_t *p, const char *a, const char *b, const char *c) {
  const char *want[3] = {a, b, c};
  int n = c ? 3 : b ? 2 : 1;
  if (p->depth != n) return 0;
  for (int i = 0; i < n; i++)
    if (strcmp(p->names[i], want[i]) != 0) return 0;
  return 1;
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
  s3_parse_t *p = ud;
  const char *local = strrchr(name, ':');
  (void)attrs;
  local = local ? local + 1 : name;
  if (p->depth < PATH_MAX_DEPTH) {
    size_t n = strlen(local);
    if (n >= sizeof p->names[0]) n = sizeof p->names[0] - 1;
    memcpy(p->names[p->depth], local, n);
    p->names[p->depth][n] = '\0';
  }
  p->depth++;
  p->text.len = 0;
  if (p->text.p) p->text.p[0] = '\0';
}

static int push(char ***arr, size_t *n, const char *s, size_t len) {
  char **a = kv_realloc(*arr, (*n + 1) * sizeof **arr);
  if (a == NULL) return -1;
  *arr = a;
  if ((a[*n] = kv_strndup(s, len)) == NULL) return -1;
  (*n)++;
  return 0;
}

static int set(char **dst, const char *s, size_t len) {
  char *v;
  if (*dst) return 0; /* keep the first */
  if ((v = kv_strndup(s, len)) == NULL) return -1;
  *dst = v;
  return 0;
}

static void on_end(void *ud, const XML_Char *name) {
  s3_parse_t *p = ud;
  kv_s3_list_t *o = p->out;
  const char *t = p->text.p ? p->text.p : "";
  size_t tl = p->text.len;
  int rc = 0;
  (void)name;
  if (p->depth <= PATH_MAX_DEPTH) {
    if (at(p, "ListBucketResult", "Contents", "Key"))
      rc = push(&o->keys, &o->nkeys, t, tl);
    else if (at(p, "ListBucketResult", "CommonPrefixes", "Prefix"))
      rc = push(&o->prefixes, &o->nprefixes, t, tl);
    else if (at(p, "ListBucketResult", "IsTruncated", NULL))
      o->truncated = tl == 4 && memcmp(t, "true", 4) == 0;
    else if (at(p, "ListBucketResult", "NextContinuationToken", NULL))
      rc = set(&o->next_token, t, tl);
    else if (at(p, "Error", "Code", NULL) ||
             at(p, "DeleteResult", "Error", "Code"))
      rc = set(&o->error_code, t, tl);
    else if (at(p, "Error", "Message", NULL) ||
             at(p, "DeleteResult", "Error", "Message"))
      rc = set(&o->error_message, t, tl);
    else if (at(p, "DeleteResult", "Error", NULL))
      o->nerrors++;
  }
  if (rc != 0) p->oom = 1;
  p->depth--;
  p->text.len = 0;
  if (p->text.p) p->text.p[0] = '\0';
}

static void on_text(void *ud, const XML_Char *s, int len) {
  s3_parse_t *p = ud;
  if (len > 0 && p->text.len + (size_t)len <= 65536)
    kv__sbuf_add(&p->text, s, (size_t)len);
  if (p->text.oom) p->oom = 1;
}

int kv__s3_parse(const char *xml, size_t len, kv_s3_list_t *out) {
  s3_parse_t p;
  XML_Parser parser;
  int ok;
  memset(out, 0, sizeof *out);
  memset(&p, 0, sizeof p);
  p.out = out;
  if ((parser = XML_ParserCreate("UTF-8")) == NULL) return KV_ENOMEM;
  XML_SetUserData(parser, &p);
  XML_SetElementHandler(parser, on_start, on_end);
  XML_SetCharacterDataHandler(parser, on_text);
  ok = len <= (size_t)1 << 30 &&
       XML_Parse(parser, xml, (int)len, 1) == XML_STATUS_OK;
  XML_ParserFree(parser);
  kv__sbuf_free(&p.text);
  if (p.oom) return KV_ENOMEM;
  return ok ? 0 : KV_EPROTO;
}

static void free_arr(char **a, size_t n) {
  for (size_t i = 0; i < n; i++) kv_free(a[i]);
  kv_free(a);
}

void kv__s3_list_free(kv_s3_list_t *l) {
  free_arr(l->keys, l->nkeys);
  free_arr(l->prefixes, l->nprefixes);
  kv_free(l->next_token);
  kv_free(l->error_code);
  kv_free(l->error_message);
  memset(l, 0, sizeof *l);
}
