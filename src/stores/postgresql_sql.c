/* postgresql:// — the table, its statements, their parameters and results.
 *
 * Table (created when missing unless auto_create=false):
 *
 *   collection      text COLLATE "C" NOT NULL   the collection's stored form
 *   key             text COLLATE "C" NOT NULL   the key's stored form
 *   value           bytea NOT NULL
 *   expires_at      bigint                      Unix ms; NULL = never
 *   collection_full text                        the name, when hashed
 *   key_full        text                        the name, when hashed
 *   PRIMARY KEY (collection, key)
 *   + an index on expires_at (non-NULL rows) for cull
 *
 * A stored form is the name itself up to PG_NAME_RAW_MAX bytes. A longer
 * name (a B-tree entry holds at most ~2.7 kB) is stored as its first bytes
 * (at most 960, cut at a character boundary), '~' padding and the hex
 * SHA-256 of the whole name: exactly PG_NAME_FORM_LEN bytes, so it never
 * equals a plain name, and the name itself goes in *_full for listings.
 *
 * Every statement is prepared once per connection and run with binary
 * parameters and binary results. Expiry uses the request's own timestamp
 * (req->in.now_ms): an expired row is never returned, counts as absent for
 * the atomic operations, and is removed by cull. */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stores/postgresql_int.h"

#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
#define OID_BYTEA_ARRAY 1001
#define OID_TEXT_ARRAY 1009

#define PG_NAME_PREFIX_MAX 960

/* ---- SQL ------------------------------------------------------------------
 */

#define LIVE(p) "(expires_at IS NULL OR expires_at > " p ")"
#define T_LIVE(p) "(t.expires_at IS NULL OR t.expires_at > " p ")"
#define T_EXPIRED(p) "(t.expires_at IS NOT NULL AND t.expires_at <= " p ")"
#define COLS "(collection, key, value, expires_at, collection_full, key_full)"
#define UPSERT                               \
  " ON CONFLICT (collection, key) DO UPDATE" \
  " SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"

static const Oid t_get[] = {OID_TEXT, OID_TEXT, OID_INT8};
static const Oid t_put[] = {OID_TEXT, OID_TEXT, OID_BYTEA,
                            OID_INT8, OID_TEXT, OID_TEXT};
static const Oid t_many[] = {OID_TEXT, OID_TEXT_ARRAY, OID_INT8};
static const Oid t_put_many[] = {OID_TEXT, OID_TEXT_ARRAY, OID_BYTEA_ARRAY,
                                 OID_INT8, OID_TEXT,       OID_TEXT_ARRAY};
static const Oid t_keys[] = {OID_TEXT, OID_TEXT, OID_INT8, OID_INT8};
static const Oid t_colls[] = {OID_TEXT, OID_INT8, OID_INT8};
static const Oid t_coll[] = {OID_TEXT};
static const Oid t_cull[] = {OID_INT8};
static const Oid t_pia[] = {OID_TEXT, OID_TEXT, OID_BYTEA, OID_INT8,
                            OID_TEXT, OID_TEXT, OID_INT8};
static const Oid t_cas[] = {OID_TEXT, OID_TEXT,  OID_BYTEA,
                            OID_INT8, OID_BYTEA, OID_INT8};
static const Oid t_incr[] = {OID_TEXT, OID_TEXT, OID_BYTEA, OID_INT8,
                             OID_TEXT, OID_TEXT, OID_INT8,  OID_INT8};
static const Oid t_take[] = {OID_TEXT, OID_TEXT};

static const struct {
  const char *name;
  const char *text; /* %T: the table's quoted name */
  int nparams;
  const Oid *types;
} stmt_defs[PG_STMT_COUNT] = {
    [PG_S_GET] = {"kvio_get",
                  "SELECT value, expires_at FROM %T"
                  " WHERE collection = $1 AND key = $2 AND " LIVE("$3"),
                  3, t_get},
    [PG_S_PUT] = {"kvio_put",
                  "INSERT INTO %T " COLS
                  " VALUES ($1, $2, $3, $4, $5, $6)" UPSERT,
                  6, t_put},
    [PG_S_DEL] = {"kvio_delete",
                  "DELETE FROM %T WHERE collection = $1 AND key = $2"
                  " RETURNING " LIVE("$3"),
                  3, t_get},
    [PG_S_GET_MANY] = {"kvio_get_many",
                       "SELECT k.i, t.value, t.expires_at"
                       " FROM unnest($2::text[]) WITH ORDINALITY AS k(key, i)"
                       " JOIN %T t ON t.collection = $1 AND t.key = k.key"
                       " WHERE " T_LIVE("$3"),
                       3, t_many},
    [PG_S_PUT_MANY] = {"kvio_put_many",
                       "INSERT INTO %T " COLS
                       " SELECT DISTINCT ON (u.key) $1, u.key, u.value, $4, $5,"
                       " u.kfull FROM unnest($2::text[], $3::bytea[],"
                       " $6::text[]) WITH ORDINALITY AS u(key, value, kfull, i)"
                       " ORDER BY u.key, u.i DESC" UPSERT,
                       6, t_put_many},
    [PG_S_DEL_MANY] = {"kvio_delete_many",
                       "WITH d AS (DELETE FROM %T WHERE collection = $1"
                       " AND key = ANY ($2::text[]) RETURNING expires_at)"
                       " SELECT count(*) FROM d WHERE " LIVE("$3"),
                       3, t_many},
    [PG_S_KEYS] = {"kvio_keys",
                   "SELECT key, key_full FROM %T WHERE collection = $1"
                   " AND key > $2 AND " LIVE("$3") " ORDER BY key LIMIT $4",
                   4, t_keys},
    /* A skip scan over the primary key: one index probe per collection. */
    [PG_S_COLLECTIONS] =
        {"kvio_collections",
         "WITH RECURSIVE c(name) AS ("
         "(SELECT collection FROM %T WHERE collection > $1"
         " ORDER BY collection LIMIT 1)"
         " UNION ALL"
         " SELECT (SELECT t.collection FROM %T t WHERE t.collection > c.name"
         " ORDER BY t.collection LIMIT 1) FROM c WHERE c.name IS NOT NULL)"
         " SELECT c.name, l.full_name FROM c CROSS JOIN LATERAL"
         " (SELECT coalesce(t.collection_full, t.collection) AS full_name"
         " FROM %T t WHERE t.collection = c.name AND " T_LIVE(
             "$2") " LIMIT 1) l LIMIT $3",
         3, t_colls},
    [PG_S_DESTROY] = {"kvio_destroy", "DELETE FROM %T", 0, NULL},
    [PG_S_DESTROY_COLLECTION] = {"kvio_destroy_collection",
                                 "DELETE FROM %T WHERE collection = $1", 1,
                                 t_coll},
    [PG_S_CULL] = {"kvio_cull", "DELETE FROM %T WHERE expires_at <= $1", 1,
                   t_cull},
    /* Stored when absent or expired; RETURNING says whether it was. */
    [PG_S_PUT_IF_ABSENT] = {"kvio_put_if_absent",
                            "INSERT INTO %T AS t " COLS
                            " VALUES ($1, $2, $3, $4, $5, $6)" UPSERT
                            " WHERE " T_EXPIRED("$7") " RETURNING true",
                            7, t_pia},
    [PG_S_CAS] = {"kvio_cas",
                  "UPDATE %T SET value = $3, expires_at = $4"
                  " WHERE collection = $1 AND key = $2 AND value = $5"
                  " AND " LIVE("$6") " RETURNING true",
                  6, t_cas},
    /* An absent or expired entry becomes $3 (the delta) with $4's expiry;
     * a live decimal integer (checked before any cast, computed in numeric
     * so that nothing can raise) gets $8 added and keeps its expiry;
     * anything else — not an integer, or an overflow — updates nothing and
     * returns no row. */
    [PG_S_INCR] =
        {"kvio_incr",
         "INSERT INTO %T AS t " COLS " VALUES ($1, $2, $3, $4, $5, $6)"
         " ON CONFLICT (collection, key) DO UPDATE SET"
         " value = CASE WHEN " T_EXPIRED(
             "$7") " THEN EXCLUDED.value"
                   " ELSE convert_to((encode(t.value, 'escape')::numeric + "
                   "$8)::text,"
                   " 'UTF8') END,"
                   " expires_at = CASE WHEN " T_EXPIRED(
                       "$7") " THEN EXCLUDED.expires_at"
                             " ELSE t.expires_at END"
                             " WHERE " T_EXPIRED(
                                 "$7") " OR CASE WHEN octet_length(t.value)"
                                       " BETWEEN 1 AND 40 AND encode(t.value, "
                                       "'escape') ~ '^[+-]?[0-9]+$'"
                                       " THEN encode(t.value, "
                                       "'escape')::numeric + $8"
                                       " BETWEEN -9223372036854775808 AND "
                                       "9223372036854775807"
                                       " ELSE false END RETURNING value",
         8, t_incr},
    [PG_S_TAKE] = {"kvio_take",
                   "DELETE FROM %T WHERE collection = $1 AND key = $2"
                   " RETURNING value, expires_at",
                   2, t_take},
};

/* `tmpl` with every %T replaced by `table` and %I by `index`. */
static char *sql_format(const char *tmpl, const char *table,
                        const char *index) {
  size_t n = 1, tl = strlen(table), il = index ? strlen(index) : 0;
  char *out, *o;
  for (const char *p = tmpl; *p; p++)
    n += p[0] == '%' && p[1] == 'T' ? tl : p[0] == '%' && p[1] == 'I' ? il : 1;
  out = o = kv_malloc(n);
  if (out == NULL) return NULL;
  for (const char *p = tmpl; *p; p++) {
    if (p[0] == '%' && p[1] == 'T') {
      memcpy(o, table, tl);
      o += tl;
      p++;
    } else if (p[0] == '%' && p[1] == 'I') {
      memcpy(o, index, il);
      o += il;
      p++;
    } else {
      *o++ = *p;
    }
  }
  *o = '\0';
  return out;
}

/* A quoted SQL identifier: "name" with inner quotes doubled. */
static char *quote_ident(const char *name, size_t len) {
  char *out = kv_malloc(2 * len + 3), *o = out;
  if (out == NULL) return NULL;
  *o++ = '"';
  for (size_t i = 0; i < len; i++) {
    if (name[i] == '"') *o++ = '"';
    *o++ = name[i];
  }
  *o++ = '"';
  *o = '\0';
  return out;
}

int kv__pg_sql_init(pg_sql_t *sql, const char *table, char *errbuf,
                    size_t errbuf_len) {
  static const char suffix[] = "_expires_at";
  size_t tl = strlen(table), cut = tl;
  char index[64];
  char *qt = NULL, *qi = NULL;
  memset(sql, 0, sizeof *sql);
  if (tl == 0 || tl > 63 || !kv__utf8_valid(table, tl))
    return kv__errbuf(errbuf, errbuf_len, KV_EINVAL,
                      "invalid table name '%s': expected 1 to 63 bytes of "
                      "UTF-8",
                      table);
  /* The index is named after the table, within PostgreSQL's 63 bytes. */
  if (cut > 63 - (sizeof suffix - 1)) {
    cut = 63 - (sizeof suffix - 1);
    while (cut > 0 && ((unsigned char)table[cut] & 0xC0) == 0x80)
      cut--;
  }
  snprintf(index, sizeof index, "%.*s%s", (int)cut, table, suffix);
  sql->table = kv_strndup(table, tl);
  qt = quote_ident(table, tl);
  qi = quote_ident(index, strlen(index));
  if (sql->table == NULL || qt == NULL || qi == NULL) goto oom;
  sql->create_table = sql_format(
      "CREATE TABLE IF NOT EXISTS %T ("
      "collection text COLLATE \"C\" NOT NULL, key text COLLATE \"C\" NOT NULL,"
      " value bytea NOT NULL, expires_at bigint, collection_full text,"
      " key_full text, PRIMARY KEY (collection, key))",
      qt, qi);
  sql->create_index =
      sql_format("CREATE INDEX IF NOT EXISTS %I ON %T (expires_at)"
                 " WHERE expires_at IS NOT NULL",
                 qt, qi);
  if (sql->create_table == NULL || sql->create_index == NULL) goto oom;
  for (int i = 0; i < PG_STMT_COUNT; i++) {
    sql->stmts[i].name = stmt_defs[i].name;
    sql->stmts[i].nparams = stmt_defs[i].nparams;
    sql->stmts[i].types = stmt_defs[i].types;
    sql->stmts[i].text = sql_format(stmt_defs[i].text, qt, qi);
    if (sql->stmts[i].text == NULL) goto oom;
  }
  kv_free(qt);
  kv_free(qi);
  return 0;
oom:
  kv_free(qt);
  kv_free(qi);
  kv__pg_sql_free(sql);
  return kv__errbuf(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
}

void kv__pg_sql_free(pg_sql_t *sql) {
  kv_free(sql->table);
  kv_free(sql->create_table);
  kv_free(sql->create_index);
  for (int i = 0; i < PG_STMT_COUNT; i++)
    kv_free(sql->stmts[i].text);
  memset(sql, 0, sizeof *sql);
}

/* ---- Names ------------------------------------------------------------------
 */

typedef struct pg_name_s {
  const char *form; /* the stored form */
  int form_len;
  const char *full; /* the name, when the form is hashed; else NULL */
  int full_len;
  char buf[PG_NAME_FORM_LEN + 1]; /* and the NUL kv__hex_encode writes */
} pg_name_t;

static void name_form(pg_name_t *f, const char *name, size_t len) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  size_t cut = PG_NAME_PREFIX_MAX, o;
  if (len <= PG_NAME_RAW_MAX) {
    f->form = name;
    f->form_len = (int)len;
    f->full = NULL;
    f->full_len = 0;
    return;
  }
  while (cut > 0 && ((unsigned char)name[cut] & 0xC0) == 0x80)
    cut--; /* never split a character: the form must be valid UTF-8 */
  memcpy(f->buf, name, cut);
  o = cut;
  while (o < PG_NAME_FORM_LEN - 2 * SHA256_DIGEST_LENGTH)
    f->buf[o++] = '~';
  SHA256((const unsigned char *)name, len, md);
  kv__hex_encode(md, SHA256_DIGEST_LENGTH, f->buf + o);
  f->form = f->buf;
  f->form_len = PG_NAME_FORM_LEN;
  f->full = name;
  f->full_len = (int)len;
}

/* ---- Parameters -------------------------------------------------------------
 */

typedef struct pg_buf_s {
  char *p;
  size_t len;
  size_t cap;
  int oom;
} pg_buf_t;

static void buf_put(pg_buf_t *b, const void *d, size_t n) {
  if (b->oom) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *p;
    while (cap < b->len + n)
      cap *= 2;
    p = kv_realloc(b->p, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, d, n);
  b->len += n;
}

static void buf_be32(pg_buf_t *b, int32_t v) {
  unsigned char x[4] = {(unsigned char)((uint32_t)v >> 24),
                        (unsigned char)((uint32_t)v >> 16),
                        (unsigned char)((uint32_t)v >> 8), (unsigned char)v};
  buf_put(b, x, 4);
}

/* The head of a one-dimensional binary array of n elements. */
static void array_head(pg_buf_t *b, size_t n, int hasnull, Oid elem) {
  buf_be32(b, n ? 1 : 0);
  buf_be32(b, hasnull);
  buf_be32(b, (int32_t)elem);
  if (n) {
    buf_be32(b, (int32_t)n);
    buf_be32(b, 1);
  }
}

static void array_elem(pg_buf_t *b, const void *d, int len) {
  buf_be32(b, d ? len : -1);
  if (d) buf_put(b, d, (size_t)len);
}

static void be64(char out[8], int64_t v) {
  for (int i = 7; i >= 0; i--) {
    out[i] = (char)(v & 0xff);
    v = (int64_t)((uint64_t)v >> 8);
  }
}

static int64_t get_be64(const char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | (unsigned char)p[i];
  return (int64_t)v;
}

int kv__pg_sql_check(kv_req_t *req) {
  size_t total = 0;
  switch (req->op) {
  case KV_OP_PUT:
  case KV_OP_PUT_IF_ABSENT:
  case KV_OP_CAS:
    total = req->in.value.len;
    if (req->op == KV_OP_CAS && req->in.expected.len > total)
      total = req->in.expected.len;
    break;
  case KV_OP_PUT_MANY:
    for (size_t i = 0; i < req->in.n; i++)
      total += req->in.values[i].len;
    break;
  case KV_OP_KEYS:
  case KV_OP_COLLECTIONS:
    if (req->in.cursor &&
        (strlen(req->in.cursor) > PG_NAME_FORM_LEN ||
         !kv__utf8_valid(req->in.cursor, strlen(req->in.cursor))))
      return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%.64s'",
                              req->in.cursor);
    return 0;
  default:
    return 0;
  }
  if (total > PG_VALUE_MAX)
    return kv_req_set_error(req, KV_ETOOBIG,
                            "postgresql: %zu bytes of values in one request "
                            "(at most %zu)",
                            total, PG_VALUE_MAX);
  return 0;
}

int kv__pg_sql_trivial(kv_req_t *req) {
  switch (req->op) {
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
  case KV_OP_PUT_MANY:
  case KV_OP_DELETE_MANY:
    if (req->in.n != 0) return 0;
    if (req->op == KV_OP_GET_MANY || req->op == KV_OP_TTL_MANY)
      kv_req_alloc_results(req);
    return 1;
  default:
    return 0;
  }
}

#define P_TEXT(d, n) (v[np] = nonnull(d), l[np++] = (int)(n))
#define P_NULL() (v[np] = NULL, l[np++] = 0)
#define P_INT8(buf, x) (be64((buf), (x)), v[np] = (buf), l[np++] = 8)
#define P_EXPIRES(buf)                    \
  do {                                    \
    if (req->in.expires_at_ms)            \
      P_INT8(buf, req->in.expires_at_ms); \
    else                                  \
      P_NULL();                           \
  } while (0)
#define P_FULL(nm) \
  ((nm).full ? (void)P_TEXT((nm).full, (nm).full_len) : (void)P_NULL())

/* The stored forms of req's keys as a text[]; with `full`, also the names
 * of hashed ones as a second text[] (NULL elements for the others). */
static void keys_arrays(const kv_req_t *req, pg_buf_t *forms, pg_buf_t *full) {
  int hashed = 0;
  pg_name_t *f = kv_malloc(sizeof *f);
  if (f == NULL) {
    forms->oom = 1;
    return;
  }
  array_head(forms, req->in.n, 0, OID_TEXT);
  for (size_t i = 0; i < req->in.n; i++) {
    name_form(f, req->in.keys[i].base, req->in.keys[i].len);
    array_elem(forms, f->form, f->form_len);
    hashed |= f->full != NULL;
  }
  if (full) {
    array_head(full, req->in.n, hashed, OID_TEXT);
    for (size_t i = 0; i < req->in.n; i++) {
      const kv_buf_t *k = &req->in.keys[i];
      array_elem(full, k->len > PG_NAME_RAW_MAX ? k->base : NULL, (int)k->len);
    }
  }
  kv_free(f);
}

/* LIMIT of a listing: one row more than the page, to know whether another
 * page follows. */
static int64_t page_limit(const kv_req_t *req) {
  return req->in.limit >= (size_t)INT64_MAX ? INT64_MAX
                                            : (int64_t)req->in.limit + 1;
}

/* A zero-length value may come with a NULL pointer; libpq would send NULL. */
static const char *nonnull(const char *p) {
  return p ? p : "";
}

int kv__pg_sql_send(const pg_sql_t *sql, PGconn *conn, kv_req_t *req) {
  static const int fmts[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  const char *v[8];
  int l[8];
  int np = 0, stmt = 0, ok;
  char i1[8], i2[8], i3[8], dec[24];
  pg_name_t *c = kv_malloc(2 * sizeof *c), *k;
  pg_buf_t a1 = {0}, a2 = {0}, a3 = {0};
  if (c == NULL) return KV_ENOMEM;
  k = c + 1;
  name_form(c, req->in.collection, req->in.collection_len);
  if (req->in.key) name_form(k, req->in.key, req->in.key_len);
  switch (req->op) {
  case KV_OP_GET:
  case KV_OP_TTL:
  case KV_OP_DELETE:
    stmt = req->op == KV_OP_DELETE ? PG_S_DEL : PG_S_GET;
    P_TEXT(c->form, c->form_len);
    P_TEXT(k->form, k->form_len);
    P_INT8(i1, req->in.now_ms);
    break;
  case KV_OP_PUT:
    stmt = PG_S_PUT;
    P_TEXT(c->form, c->form_len);
    P_TEXT(k->form, k->form_len);
    P_TEXT(req->in.value.base, req->in.value.len);
    P_EXPIRES(i1);
    P_FULL(*c);
    P_FULL(*k);
    break;
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
  case KV_OP_DELETE_MANY:
    stmt = req->op == KV_OP_DELETE_MANY ? PG_S_DEL_MANY : PG_S_GET_MANY;
    keys_arrays(req, &a1, NULL);
    P_TEXT(c->form, c->form_len);
    P_TEXT(a1.p, a1.len);
    P_INT8(i1, req->in.now_ms);
    break;
  case KV_OP_PUT_MANY:
    stmt = PG_S_PUT_MANY;
    keys_arrays(req, &a1, &a3);
    array_head(&a2, req->in.n, 0, OID_BYTEA);
    for (size_t i = 0; i < req->in.n; i++)
      array_elem(&a2, req->in.values[i].base, (int)req->in.values[i].len);
    P_TEXT(c->form, c->form_len);
    P_TEXT(a1.p, a1.len);
    P_TEXT(a2.p, a2.len);
    P_EXPIRES(i1);
    P_FULL(*c);
    P_TEXT(a3.p, a3.len);
    break;
  case KV_OP_KEYS:
    stmt = PG_S_KEYS;
    P_TEXT(c->form, c->form_len);
    P_TEXT(req->in.cursor ? req->in.cursor : "",
           req->in.cursor ? strlen(req->in.cursor) : 0);
    P_INT8(i1, req->in.now_ms);
    P_INT8(i2, page_limit(req));
    break;
  case KV_OP_COLLECTIONS:
    stmt = PG_S_COLLECTIONS;
    P_TEXT(req->in.cursor ? req->in.cursor : "",
           req->in.cursor ? strlen(req->in.cursor) : 0);
    P_INT8(i1, req->in.now_ms);
    P_INT8(i2, page_limit(req));
    break;
  case KV_OP_DESTROY:
    stmt = PG_S_DESTROY;
    break;
  case KV_OP_DESTROY_COLLECTION:
    stmt = PG_S_DESTROY_COLLECTION;
    P_TEXT(c->form, c->form_len);
    break;
  case KV_OP_CULL:
    stmt = PG_S_CULL;
    P_INT8(i1, req->in.now_ms);
    break;
  case KV_OP_CAS:
    if (!req->in.expected_absent) {
      stmt = PG_S_CAS;
      P_TEXT(c->form, c->form_len);
      P_TEXT(k->form, k->form_len);
      P_TEXT(req->in.value.base, req->in.value.len);
      P_EXPIRES(i1);
      P_TEXT(req->in.expected.base, req->in.expected.len);
      P_INT8(i2, req->in.now_ms);
      break;
    }
    /* "absent" is put_if_absent */
    /* fall through */
  case KV_OP_PUT_IF_ABSENT:
    stmt = PG_S_PUT_IF_ABSENT;
    P_TEXT(c->form, c->form_len);
    P_TEXT(k->form, k->form_len);
    P_TEXT(req->in.value.base, req->in.value.len);
    P_EXPIRES(i1);
    P_FULL(*c);
    P_FULL(*k);
    P_INT8(i2, req->in.now_ms);
    break;
  case KV_OP_INCR: {
    size_t n = kv_format_int64(req->in.delta, dec);
    stmt = PG_S_INCR;
    P_TEXT(c->form, c->form_len);
    P_TEXT(k->form, k->form_len);
    P_TEXT(dec, n);
    P_EXPIRES(i1);
    P_FULL(*c);
    P_FULL(*k);
    P_INT8(i2, req->in.now_ms);
    P_INT8(i3, req->in.delta);
    break;
  }
  case KV_OP_TAKE:
    stmt = PG_S_TAKE;
    P_TEXT(c->form, c->form_len);
    P_TEXT(k->form, k->form_len);
    break;
  default:
    kv_free(c);
    return KV_ENOMEM; /* not reached: every op is handled */
  }
  if (a1.oom || a2.oom || a3.oom) {
    ok = -1;
  } else {
    ok = PQsendQueryPrepared(conn, sql->stmts[stmt].name, np, v, l, fmts, 1);
  }
  kv_free(a1.p);
  kv_free(a2.p);
  kv_free(a3.p);
  kv_free(c);
  if (ok < 0) return KV_ENOMEM;
  return ok ? 0 : KV_ECONN;
}

/* ---- Results ----------------------------------------------------------------
 */

static int64_t col_int8(const PGresult *res, int row, int col) {
  if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8) return 0;
  return get_be64(PQgetvalue(res, row, col));
}

static int col_bool(const PGresult *res, int row, int col) {
  return !PQgetisnull(res, row, col) && PQgetlength(res, row, col) == 1 &&
         PQgetvalue(res, row, col)[0] != 0;
}

static int oom(char *msg, size_t len) {
  snprintf(msg, len, "postgresql: out of memory");
  return KV_ENOMEM;
}

/* Names of a listing: column 0 is the stored form (the cursor), column 1
 * the name when hashed. One row more than the page says there is more. */
static int apply_listing(const PGresult *res, kv_req_t *req, char *msg,
                         size_t len) {
  int rows = PQntuples(res);
  size_t limit = req->in.limit;
  for (int i = 0; i < rows && (size_t)i < limit; i++) {
    int col = PQgetisnull(res, i, 1) ? 0 : 1;
    if (kv_req_add_name(req, PQgetvalue(res, i, col),
                        (size_t)PQgetlength(res, i, col)) != 0)
      return oom(msg, len);
  }
  if ((size_t)rows > limit && limit > 0 &&
      kv_req_set_cursor(req, PQgetvalue(res, (int)limit - 1, 0)) != 0)
    return oom(msg, len);
  return 0;
}

int kv__pg_sql_apply(const pg_sql_t *sql, const PGresult *res, kv_req_t *req,
                     char *msg, size_t len) {
  int rows = PQntuples(res);
  int64_t now = req->in.now_ms;
  (void)sql;
  switch (req->op) {
  case KV_OP_GET:
  case KV_OP_TTL:
    if (rows == 1) {
      int64_t exp = col_int8(res, 0, 1);
      if (kv_req_set_value(req, PQgetvalue(res, 0, 0),
                           (size_t)PQgetlength(res, 0, 0)) != 0)
        return oom(msg, len);
      req->ttl = kv_remaining_ttl(exp, now);
    }
    return 0;
  case KV_OP_DELETE:
    req->found = rows == 1 && col_bool(res, 0, 0);
    return 0;
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
    if (kv_req_alloc_results(req) != 0) return oom(msg, len);
    for (int i = 0; i < rows; i++) {
      int64_t idx = col_int8(res, i, 0) - 1;
      if (idx < 0 || (size_t)idx >= req->in.n) continue;
      if (kv_req_set_result(req, (size_t)idx, PQgetvalue(res, i, 1),
                            (size_t)PQgetlength(res, i, 1),
                            kv_remaining_ttl(col_int8(res, i, 2), now)) != 0)
        return oom(msg, len);
    }
    return 0;
  case KV_OP_DELETE_MANY:
    req->count = rows == 1 ? (size_t)col_int8(res, 0, 0) : 0;
    return 0;
  case KV_OP_KEYS:
  case KV_OP_COLLECTIONS:
    return apply_listing(res, req, msg, len);
  case KV_OP_CULL:
    req->count = (size_t)strtoull(PQcmdTuples((PGresult *)res), NULL, 10);
    return 0;
  case KV_OP_PUT_IF_ABSENT:
    req->found = rows == 1;
    return 0;
  case KV_OP_CAS:
    if (rows == 1) {
      req->found = 1;
      return 0;
    }
    snprintf(msg, len,
             req->in.expected_absent
                 ? "key '%.200s' exists"
                 : "key '%.200s' does not hold the expected value",
             req->in.key);
    return KV_ECONFLICT;
  case KV_OP_INCR: {
    int64_t n;
    if (rows != 1) {
      snprintf(msg, len,
               "value of key '%.200s' is not a decimal integer, or adding "
               "%lld overflows",
               req->in.key, (long long)req->in.delta);
      return KV_EINVAL;
    }
    if (kv_parse_int64(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0),
                       &n) != 0) {
      snprintf(msg, len, "postgresql: incr of key '%.200s' returned '%.30s'",
               req->in.key, PQgetvalue(res, 0, 0));
      return KV_EBACKEND;
    }
    req->number = n;
    return 0;
  }
  case KV_OP_TAKE:
    if (rows == 1 && !KV_EXPIRED(col_int8(res, 0, 1), now) &&
        kv_req_set_value(req, PQgetvalue(res, 0, 0),
                         (size_t)PQgetlength(res, 0, 0)) != 0)
      return oom(msg, len);
    return 0;
  default:
    return 0;
  }
}

static int starts(const char *code, const char *prefix) {
  return strncmp(code, prefix, strlen(prefix)) == 0;
}

int kv__pg_sql_error(const pg_sql_t *sql, const PGresult *res,
                     const kv_req_t *req, char *msg, size_t len, int *whole,
                     int *retry) {
  const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *text =
      res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  char clean[512];
  size_t n;
  *whole = 0;
  *retry = 0;
  if (text == NULL) text = res ? PQresultErrorMessage(res) : NULL;
  if (text == NULL || text[0] == '\0') text = "the batch failed";
  snprintf(clean, sizeof clean, "%s", text);
  n = strlen(clean);
  while (n > 0 && clean[n - 1] == '\n')
    clean[--n] = '\0';
  if (code == NULL) { /* libpq's own: the connection */
    *whole = 1;
    snprintf(msg, len, "postgresql: %s", clean);
    return KV_ECONN;
  }
  snprintf(msg, len, "postgresql: %s (SQLSTATE %s)", clean, code);
  if (starts(code, "28")) {
    *whole = 1;
    return KV_EAUTH;
  }
  if (starts(code, "08") || starts(code, "57P")) {
    *whole = 1;
    return KV_ECONN;
  }
  if (strcmp(code, "40001") == 0 || strcmp(code, "40P01") == 0) {
    *retry = 1;
    return KV_EBACKEND;
  }
  if (strcmp(code, "42P01") == 0) {
    *whole = 1;
    snprintf(msg, len,
             "postgresql: table \"%s\" does not exist (auto_create=false, or "
             "it was dropped): %s (SQLSTATE %s)",
             sql->table, clean, code);
    return KV_EBACKEND;
  }
  if (strcmp(code, "57014") == 0) return KV_ETIMEDOUT;
  if (strcmp(code, "25006") == 0) {
    *whole = 1;
    return KV_EREADONLY;
  }
  if (strcmp(code, "54000") == 0) return KV_ETOOBIG;
  if (starts(code, "22") && req && req->op == KV_OP_INCR) return KV_EINVAL;
  /* Errors of the schema, the server or the session concern every
   * statement: retrying the others would only fail them one at a time. */
  if (starts(code, "42") || starts(code, "26") || starts(code, "25") ||
      starts(code, "53") || starts(code, "55") || starts(code, "58") ||
      starts(code, "XX") || starts(code, "0A") || starts(code, "F0"))
    *whole = 1;
  return KV_EBACKEND;
}
