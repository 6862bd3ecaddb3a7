/* libFuzzer target: memcached's meta-protocol reply parser
 * (kv__mc_parse_reply in src/stores/memcached_conn.c).
 *
 * Every input is what a server sent. It is parsed as the store's read
 * callback does (one reply after another until more input is needed or a
 * reply is malformed), once from the whole buffer and once fed in chunks
 * (sizes drawn from the input's hash) into a buffer that keeps only what
 * was not consumed, as on_read does:
 *  - each reply takes bytes inside the buffer, its line and data inside
 *    what it takes, and a data block ends with two more bytes;
 *  - both feeds give the same replies at the same offsets, and end the same
 *    way (malformed at the same offset, or waiting for more);
 *  - the data of a VA reply is decoded as an entry (kv__mc_entry_decode),
 *    as the store does with it.
 * Each parse runs on an exact-size copy, so ASan sees any read past it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "stores/memcached_int.h"

#pragma weak kv__mc_parse_reply
#pragma weak kv__mc_entry_decode

typedef struct {
  size_t off; /* where the reply starts in the stream */
  size_t taken;
  int type;
  size_t line_len; /* the line starts the reply */
  long data_off;   /* relative to the reply; -1: none */
  size_t dlen;
  uint64_t cas;
} seen_t;

typedef struct {
  seen_t *v;
  size_t n, cap;
  int end;        /* 0: waiting for more; -1: malformed */
  size_t end_off; /* where it ended */
} trace_t;

static void add(trace_t *t, const seen_t *s) {
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 16;
    t->v = realloc(t->v, t->cap * sizeof *t->v);
    if (t->v == NULL) abort();
  }
  t->v[t->n++] = *s;
}

/* Parse what buf[0..len) holds (buf is an exact-size copy); base: its
 * offset in the stream. Returns the bytes consumed; sets t->end on a
 * malformed reply. */
static size_t parse_all(const char *buf, size_t len, size_t base, trace_t *t) {
  size_t pos = 0;
  while (pos < len) {
    kv__mc_reply_t r;
    seen_t s;
    long n = kv__mc_parse_reply(buf + pos, len - pos, &r);
    if (n == 0) break;
    if (n < 0) {
      if (n != -1) abort();
      t->end = -1;
      t->end_off = base + pos;
      return pos;
    }
    if ((size_t)n > len - pos) abort();
    /* The line and the data inside what it took. */
    if (r.line != buf + pos || r.line_len >= (size_t)n) abort();
    if (r.data != NULL) {
      if (r.data < buf + pos + r.line_len ||
          (size_t)(r.data - (buf + pos)) + r.dlen + 2 != (size_t)n)
        abort();
      if (kv__mc_entry_decode != NULL) { /* as data_reply does */
        kv__mc_entry_t e;
        int rc = kv__mc_entry_decode(r.data, r.dlen, "k", 1, 0, &e);
        if (rc != 0 && rc != KV_ECORRUPT) abort();
        if (rc == 0 && e.live &&
            (e.value < r.data || e.value + e.vlen != r.data + r.dlen))
          abort();
      }
    } else if (r.dlen != 0) {
      abort();
    }
    memset(&s, 0, sizeof s);
    s.off = base + pos;
    s.taken = (size_t)n;
    s.type = r.type;
    s.line_len = r.line_len;
    s.data_off = r.data ? (long)(r.data - (buf + pos)) : -1;
    s.dlen = r.dlen;
    s.cas = r.cas;
    add(t, &s);
    pos += (size_t)n;
  }
  t->end = 0;
  t->end_off = base + pos;
  return pos;
}

static uint64_t rng;
/* 1..max(64, total / 16) bytes: small pieces, and few for a big input (each
 * piece parses the unconsumed rest again). */
static size_t next_chunk(size_t left, size_t total) {
  size_t cap = total / 16 > 64 ? total / 16 : 64;
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return left ? 1 + (size_t)(rng >> 33) % (left < cap ? left : cap) : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  trace_t whole = {0}, split = {0};
  char *buf, *acc = NULL;
  size_t fed = 0, have = 0, consumed = 0;
  if (!ready) {
    (void)kv_schemes();
    ready = 1;
  }
  if (kv__mc_parse_reply == NULL) return 0;
  /* Whole. */
  buf = malloc(size ? size : 1);
  if (buf == NULL) abort();
  if (size) memcpy(buf, data, size);
  parse_all(buf, size, 0, &whole);
  free(buf);
  /* In chunks: the unconsumed rest, plus the next chunk, parsed again. */
  rng = 0x9E3779B97F4A7C15ull ^ size;
  for (size_t i = 0; i < size; i++)
    rng = (rng ^ data[i]) * 0x100000001b3ull;
  while (fed < size) {
    size_t c = next_chunk(size - fed, size);
    char *nb = malloc(have + c);
    if (nb == NULL) abort();
    if (have) memcpy(nb, acc, have);
    memcpy(nb + have, data + fed, c);
    free(acc);
    acc = nb;
    have += c;
    fed += c;
    {
      size_t n = parse_all(acc, have, consumed, &split);
      if (split.end == -1) break;
      memmove(acc, acc + n, have - n);
      have -= n;
      consumed += n;
    }
  }
  free(acc);
  if (size == 0) split.end_off = 0;
  /* The same replies, ending the same way. */
  if (whole.n != split.n || whole.end != split.end ||
      whole.end_off != split.end_off)
    abort();
  for (size_t i = 0; i < whole.n; i++) {
    const seen_t *a = &whole.v[i], *b = &split.v[i];
    if (a->off != b->off || a->taken != b->taken || a->type != b->type ||
        a->line_len != b->line_len || a->data_off != b->data_off ||
        a->dlen != b->dlen || a->cas != b->cas)
      abort();
  }
  free(whole.v);
  free(split.v);
  return 0;
}
