/* Internal interface between postgresql.c (connection, batching) and
 * postgresql_sql.c (the table, the statements, parameters and results). */
#ifndef KVIO_STORES_POSTGRESQL_INT_H
#define KVIO_STORES_POSTGRESQL_INT_H

#include <libpq-fe.h>

#include "internal.h"

/* Names up to PG_NAME_RAW_MAX bytes are stored as they are; longer ones as a
 * PG_NAME_FORM_LEN-byte form (never equal to a stored plain name). */
#define PG_NAME_RAW_MAX 1024
#define PG_NAME_FORM_LEN (PG_NAME_RAW_MAX + 1)
/* Largest value (and largest put_many in all): well below PostgreSQL's
 * 1 GB limit on one field and on one protocol message. */
#define PG_VALUE_MAX ((size_t)512 << 20)

enum {
  PG_S_GET = 0,
  PG_S_PUT,
  PG_S_DEL,
  PG_S_GET_MANY,
  PG_S_PUT_MANY,
  PG_S_DEL_MANY,
  PG_S_KEYS,
  PG_S_COLLECTIONS,
  PG_S_DESTROY,
  PG_S_DESTROY_COLLECTION,
  PG_S_CULL,
  PG_S_PUT_IF_ABSENT,
  PG_S_CAS,
  PG_S_INCR,
  PG_S_TAKE,
  PG_STMT_COUNT
};

typedef struct pg_stmt_s {
  const char *name; /* the prepared statement's name */
  char *text;       /* SQL, with the table's quoted name */
  int nparams;
  const Oid *types;
} pg_stmt_t;

typedef struct pg_sql_s {
  char *table; /* as given */
  char *create_table;
  char *create_index;
  pg_stmt_t stmts[PG_STMT_COUNT];
} pg_sql_t;

/* Build the SQL for `table`. 0, KV_EINVAL (a bad name) or KV_ENOMEM. */
int kv__pg_sql_init(pg_sql_t *sql, const char *table, char *errbuf,
                    size_t errbuf_len);
void kv__pg_sql_free(pg_sql_t *sql);

/* At submit: 0, or an error (with a detail) that refuses the request. */
int kv__pg_sql_check(kv_req_t *req);
/* 1 if the request needs no statement (a bulk op of 0 keys); its results
 * are then set. */
int kv__pg_sql_trivial(kv_req_t *req);
/* Queue the request's statement. 0; KV_ENOMEM when nothing was queued;
 * KV_ECONN when libpq failed (see PQerrorMessage). */
int kv__pg_sql_send(const pg_sql_t *sql, PGconn *conn, kv_req_t *req);
/* Set the request's results from its statement's result (committed).
 * Returns 0 or an error with a detail in msg. */
int kv__pg_sql_apply(const pg_sql_t *sql, const PGresult *res, kv_req_t *req,
                     char *msg, size_t msg_len);
/* The error of a failed statement (res may be NULL) for `req` (may be
 * NULL): its code, a detail in msg; *whole = 1 when it concerns every
 * statement of the batch (the table is missing, the connection failed...),
 * *retry = 1 when the whole batch should simply be sent again (deadlock,
 * serialization failure). */
int kv__pg_sql_error(const pg_sql_t *sql, const PGresult *res,
                     const kv_req_t *req, char *msg, size_t msg_len, int *whole,
                     int *retry);

#endif
