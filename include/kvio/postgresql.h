/* kvio/postgresql.h — the postgresql:// store (PostgreSQL through libpq).
 *
 * URL:   postgresql://[user[:password]@]host[:port]/dbname[?options]
 *        postgres://...  (the same store)
 *
 *   host, port, user, password, dbname   as libpq takes them; a host that
 *                starts with '/' (percent-encoded: %2Ftmp) is a Unix-socket
 *                directory. Host names are resolved on libuv's threadpool,
 *                never on the loop thread.
 *   table        the table holding the entries (default "kvio"); one SQL
 *                identifier, used exactly as given (quoted), 1..63 bytes.
 *   auto_create  true (default): the table and its expiry index are created
 *                when missing (CREATE ... IF NOT EXISTS, on each new
 *                connection). false: a missing table fails every request
 *                with KV_EBACKEND and a detail naming the table.
 *   timeout      seconds (default 30, 0 = none): the longest wait for a
 *                connection (with its setup) and, once connected, for the
 *                server's answer to the oldest batch in flight. When it
 *                passes, the connection is dropped and what was in flight
 *                fails with KV_ETIMEDOUT.
 *   sslmode, sslrootcert, sslcert, sslkey, sslpassword, sslcrl, sslcrldir,
 *   sslsni, sslcompression, ssl_min_protocol_version,
 *   ssl_max_protocol_version, channel_binding, gssencmode, krbsrvname,
 *   gsslib, requirepeer, passfile, service, options, application_name,
 *   connect_timeout, keepalives, keepalives_idle, keepalives_interval,
 *   keepalives_count, tcp_user_timeout, target_session_attrs, host,
 *   hostaddr, port, dbname, user, password
 *                passed to libpq unchanged (a query value overrides the
 *                same field of the URL). client_encoding is always UTF8.
 *   default_collection   as for every store.
 *
 * Opening contacts no server. The store connects on first use, over one
 * connection in libpq's pipeline mode: every request submitted during one
 * loop turn is sent together at the end of the turn, as one implicit
 * transaction closed by one PQpipelineSync (one round trip, one commit);
 * several turns' batches may be in flight at once. A request completes only
 * once its batch's Sync has been answered, i.e. once its writes are
 * committed. When one statement of a batch fails, the server rolls the batch
 * back: that request fails, and the others are sent again.
 *
 * A dropped connection fails the requests in flight with KV_ECONN (a write
 * among them may or may not have been committed); the next request
 * reconnects (failed attempts back off from 50 ms to 2 s). Authentication
 * failures (SQLSTATE 28P01, 28000) are KV_EAUTH; other server errors are
 * KV_EBACKEND with the server's message and SQLSTATE as the detail.
 *
 * Names of up to 1,024 bytes are stored as they are; longer ones are stored
 * in the key columns as a form that cannot equal a plain name (a prefix,
 * padding and the SHA-256 of the name, 1,025 bytes) with the name itself in
 * collection_full / key_full. Values up to 512 MiB (KV_ETOOBIG above).
 * docs/postgresql.md describes the table.
 *
 * Backend-specific controls, through kv_store_ctl():
 */
#ifndef KVIO_POSTGRESQL_H
#define KVIO_POSTGRESQL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters of one postgresql store since it was opened. */
typedef struct kv_postgresql_stats_s {
  uint64_t round_trips;      /* batches of requests sent: one PQpipelineSync
                                each, all sent at the end of a loop turn */
  uint64_t statements;       /* statements sent for requests (retries too) */
  uint64_t requests;         /* requests answered by the server */
  uint64_t retried;          /* requests sent again because their batch was
                                rolled back by another request's failure, a
                                deadlock or a serialization failure */
  uint64_t max_batch;        /* the most requests sent in one batch */
  uint64_t connects;         /* connections established (and set up) */
  uint64_t connect_failures; /* connection attempts that failed */
  uint64_t disconnects;      /* established connections lost or dropped */
  int connected;             /* 1 if a connection is up now */
} kv_postgresql_stats_t;

/* ctl(s, KV_POSTGRESQL_CTL_STATS, kv_postgresql_stats_t *out): copy the
 * counters. Returns 0. Call it on the loop thread. */
#define KV_POSTGRESQL_CTL_STATS (KV_CTL_RANGE_POSTGRESQL + 1)

#ifdef __cplusplus
}
#endif
#endif /* KVIO_POSTGRESQL_H */
