/* libFuzzer target: the file:// store's format (src/stores/file.c).
 *
 * Every input is a file's bytes, loaded with kv__file_parse, the function
 * the store reads its file with:
 *  - it returns 0, or KV_ECORRUPT with a message (a JSON syntax error names
 *    its line and column);
 *  - a loaded file, written by the store's writer (kv__file_serialize, with
 *    and without indentation), loads again, and writing that gives the same
 *    bytes (the writer's output is a fixed point);
 *  - what was written means what the input meant: checked against jansson
 *    reading both documents, independently of the store's data structures
 *    (same collections and keys in the same order, same value bytes, same
 *    expiries, same foreign top-level members);
 *  - read as an aiokv file (a plain object allowed, into collection "c"),
 *    what the writer writes loads again and writes as the same bytes. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#if __has_include(<jansson.h>)
#include <jansson.h>

#include "stores/file_int.h"

/* The file part may be left out of the build: then this target does
 * nothing. The references are weak; kv_schemes() (the registry, which
 * names kv__file_methods when the part is built) pulls file.c's object
 * out of the static library. */
#pragma weak kv__file_parse
#pragma weak kv__file_serialize
#pragma weak kv__file_data_new
#pragma weak kv__file_data_destroy

static int out_fd = -1;

/* The writer's output for d. */
static char *serialize(const kv__file_data_t *d, int indent, size_t *len) {
  char *buf;
  off_t end;
  if (ftruncate(out_fd, 0) != 0 || lseek(out_fd, 0, SEEK_SET) != 0) abort();
  if (kv__file_serialize(out_fd, d, indent) != 0) abort();
  end = lseek(out_fd, 0, SEEK_CUR);
  if (end < 0) abort();
  *len = (size_t)end;
  buf = malloc(*len + 1);
  if (buf == NULL || pread(out_fd, buf, *len, 0) != (ssize_t)*len) abort();
  buf[*len] = '\0';
  return buf;
}

static int b64v(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Standard padded base64 (the loader accepted it: assume well-formed). */
static size_t b64_decode(const char *s, size_t n, unsigned char *out) {
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n && s[i] != '='; i++) {
    int v = b64v((unsigned char)s[i]);
    if (v < 0) abort();
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  return o;
}

/* An entry's meaning: its bytes and expiry. */
static void entry_meaning(const json_t *e, unsigned char **bytes, size_t *len,
                          json_int_t *exp) {
  const json_t *v;
  *exp = 0;
  if (json_is_string(e)) {
    v = e;
  } else {
    const json_t *x = json_object_get(e, "expires_at");
    if (x != NULL) *exp = json_integer_value(x);
    v = json_object_get(e, "value");
    if (v == NULL) {
      const json_t *b = json_object_get(e, "base64");
      const char *s = json_string_value(b);
      size_t n = json_string_length(b);
      *bytes = malloc(n / 4 * 3 + 1);
      if (*bytes == NULL) abort();
      *len = b64_decode(s, n, *bytes);
      return;
    }
  }
  *len = json_string_length(v);
  *bytes = malloc(*len + 1);
  if (*bytes == NULL) abort();
  memcpy(*bytes, json_string_value(v), *len);
}

/* The input and the writer's output say the same. */
static void same_meaning(const char *in, size_t in_len, const char *out,
                         size_t out_len) {
  json_t *a = json_loadb(in, in_len, JSON_REJECT_DUPLICATES, NULL);
  json_t *b = json_loadb(out, out_len, JSON_REJECT_DUPLICATES, NULL);
  json_t *ca, *cb;
  void *ia, *ib;
  if (a == NULL || b == NULL) abort(); /* the store loaded both */
  /* The foreign top-level members survive. */
  {
    json_t *xa = json_deep_copy(a), *xb = json_deep_copy(b);
    ca = json_object_get(a, "collections");
    cb = json_object_get(b, "collections");
    json_object_del(xa, "collections");
    json_object_del(xb, "collections");
    if (!json_equal(xa, xb)) abort();
    json_decref(xa);
    json_decref(xb);
  }
  /* Collections and keys in the same order, entries meaning the same. */
  for (ia = json_object_iter(ca), ib = json_object_iter(cb);
       ia != NULL || ib != NULL;
       ia = json_object_iter_next(ca, ia), ib = json_object_iter_next(cb, ib)) {
    json_t *ea, *eb;
    void *ja, *jb;
    if (ia == NULL || ib == NULL) abort();
    if (strcmp(json_object_iter_key(ia), json_object_iter_key(ib)) != 0)
      abort();
    ea = json_object_iter_value(ia);
    eb = json_object_iter_value(ib);
    for (ja = json_object_iter(ea), jb = json_object_iter(eb);
         ja != NULL || jb != NULL; ja = json_object_iter_next(ea, ja),
        jb = json_object_iter_next(eb, jb)) {
      unsigned char *va, *vb;
      size_t la, lb;
      json_int_t xa, xb;
      if (ja == NULL || jb == NULL) abort();
      if (strcmp(json_object_iter_key(ja), json_object_iter_key(jb)) != 0)
        abort();
      entry_meaning(json_object_iter_value(ja), &va, &la, &xa);
      entry_meaning(json_object_iter_value(jb), &vb, &lb, &xb);
      if (la != lb || memcmp(va, vb, la) != 0 || xa != xb) abort();
      free(va);
      free(vb);
    }
  }
  json_decref(a);
  json_decref(b);
}

/* Parse (plain_coll: aiokv files too); on failure check the message.
 * Returns the data or NULL. */
static kv__file_data_t *load_as(const char *buf, size_t len,
                                const char *plain_coll) {
  kv__file_data_t *d = kv__file_data_new();
  char msg[1024];
  int rc;
  if (d == NULL) abort();
  msg[0] = '\0';
  rc = kv__file_parse(buf, len, "fuzz.json", plain_coll, d, msg, sizeof msg);
  if (rc == 0) return d;
  kv__file_data_destroy(d);
  if (rc != KV_ECORRUPT || msg[0] == '\0') abort();
  if (strncmp(msg, "file: fuzz.json: ", 17) != 0) abort();
  /* A syntax error gives its position. */
  {
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL &&
        (strstr(msg, " at line ") == NULL || strstr(msg, ", column ") == NULL))
      abort();
    json_decref(doc);
  }
  return NULL;
}

static kv__file_data_t *load(const char *buf, size_t len) {
  return load_as(buf, len, NULL);
}

/* As an aiokv file: the writer's output is a fixed point. */
static void plain_round_trip(const char *buf, size_t len) {
  kv__file_data_t *d = load_as(buf, len, "c"), *d2;
  char *s1, *s2;
  size_t l1, l2;
  if (d == NULL) return;
  s1 = serialize(d, 2, &l1);
  kv__file_data_destroy(d);
  if ((d2 = load_as(s1, l1, "c")) == NULL) abort();
  s2 = serialize(d2, 2, &l2);
  kv__file_data_destroy(d2);
  if (l2 != l1 || memcmp(s2, s1, l1) != 0) abort();
  free(s1);
  free(s2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kv__file_data_t *d, *d2, *d3;
  char *s1, *s2, *s3, *s4;
  size_t l1, l2, l3, l4;
  if (out_fd < 0) (void)kv_schemes();
  if (kv__file_parse == NULL) return 0;
  if (out_fd < 0 && (out_fd = memfd_create("fuzz-file-format", 0)) < 0) abort();
  plain_round_trip((const char *)data, size);
  if ((d = load((const char *)data, size)) == NULL) return 0;
  s1 = serialize(d, 0, &l1);
  s2 = serialize(d, 2, &l2);
  kv__file_data_destroy(d);
  /* What the writer wrote loads, and writes again as the same bytes. */
  if ((d2 = load(s1, l1)) == NULL) abort();
  if ((d3 = load(s2, l2)) == NULL) abort();
  s3 = serialize(d2, 0, &l3);
  s4 = serialize(d3, 0, &l4);
  if (l3 != l1 || memcmp(s3, s1, l1) != 0) abort();
  if (l4 != l1 || memcmp(s4, s1, l1) != 0) abort();
  kv__file_data_destroy(d2);
  kv__file_data_destroy(d3);
  /* And it means what the input meant. */
  same_meaning((const char *)data, size, s1, l1);
  free(s1);
  free(s2);
  free(s3);
  free(s4);
  return 0;
}

#else /* no jansson: the file part is not built */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  (void)data;
  (void)size;
  return 0;
}

#endif
