/* The fake server of the end-to-end fuzz targets (fuzz-memcached-store,
 * fuzz-redis-reply, fuzz-redis-pubsub), and the checks they share on the
 * request that ran against it.
 *
 * The server listens on 127.0.0.1 or on a unix socket, on the caller's
 * loop, and accepts one connection (a reconnect finds nobody). Each time the
 * client writes, it answers with the next segment of the reply bytes
 * (segments are separated by FAKE_SERVER_SEP), whatever the client wrote;
 * after the last segment, or when the client has been quiet for a few loop
 * turns with nothing left to send it (it waits for answers the bytes do not
 * hold), it hangs up. A TCP connection is closed with a reset, so that tens
 * of thousands of runs leave no TIME_WAIT sockets behind. */
#ifndef KVIO_FUZZ_FAKE_SERVER_H
#define KVIO_FUZZ_FAKE_SERVER_H

#include <stddef.h>

#include "kvio.h"

/* Separates the answers to successive writes of the client. */
#define FAKE_SERVER_SEP "\n--\n"

typedef union {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} fake_stream_t;

typedef struct {
  uv_loop_t *loop;
  int is_tcp;
  fake_stream_t listener;
  fake_stream_t client;
  uv_idle_t idle;   /* keeps poll from blocking while the client is up */
  uv_check_t check; /* notices a client that waits for more answers */
  int listening, have_client, hung_up, writes, quiet;
  size_t pos;                /* reply bytes sent so far */
  unsigned long reads, seen; /* server reads, and as of the last check */
  const char *reply;
  size_t reply_len;
} fake_server_t;

/* Listen on 127.0.0.1 at a free port; returns the port. Aborts on failure. */
int fake_server_start_tcp(fake_server_t *fs, uv_loop_t *loop, const char *reply,
                          size_t reply_len);
/* A path for the unix socket, in a directory of its own made on the first
 * call (/tmp/kvio-fuzz-NAME-XXXXXX) and removed at exit; the same path for
 * every later call. Aborts on failure. */
const char *fake_server_unix_path(const char *name);
/* Listen on the unix socket at path (unlinked first). Aborts on failure. */
void fake_server_start_unix(fake_server_t *fs, uv_loop_t *loop,
                            const char *path, const char *reply,
                            size_t reply_len);
/* Close every handle of the server (run the loop to finish). */
void fake_server_stop(fake_server_t *fs);

/* Abort unless the finished request `req` (op selector `op`, for the
 * KV_FUZZ_VERBOSE trace) is well formed:
 *  - a failure has a message, and is not KV_ETIMEDOUT once the server hung
 *    up (the closed connection must fail what waits);
 *  - values are NUL-terminated, bulk reads have one slot per key (nkeys),
 *    TTLs are positive and finite or none, delete_many counts at most nkeys,
 *    listed names are valid names and at most `limit`. */
void fake_server_check_done(const fake_server_t *fs, const kv_req_t *req,
                            int op, size_t nkeys, size_t limit);

#endif
