/* bench-memcached-bare: the reference for `kvio bench --store memcached://`
 * — a bare loop over memcached's meta protocol on one blocking socket, with
 * kvio bench's key and value shapes (16-byte keys "k%015u" drawn uniformly
 * from a keyspace, SIZE-byte values).
 *
 *   bench-memcached-bare HOST PORT get N [SIZE] [KEYS] [DEPTH]
 *   bench-memcached-bare HOST PORT put N [SIZE] [KEYS] [DEPTH]
 *
 * DEPTH (default 64) requests go out in one write ("mg KEY v" or "ms KEY
 * SIZE T0"), then their DEPTH replies are read; repeat until N. get first
 * stores every key of the keyspace (KEYS, default 10000; not timed). Prints
 * one JSON object in the shape of `kvio bench --json` (ops_per_sec, ...). */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEY_LEN 16

static int fd;
static char *rbuf;
static size_t rlen, rpos, rcap = 1 << 20;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void send_all(const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) die("write");
    p += w;
    n -= (size_t)w;
  }
}

/* Make sure `need` unread bytes are buffered. */
static void fill(size_t need) {
  if (rlen - rpos >= need) return;
  memmove(rbuf, rbuf + rpos, rlen - rpos);
  rlen -= rpos;
  rpos = 0;
  while (rlen < need) {
    ssize_t r = read(fd, rbuf + rlen, rcap - rlen);
    if (r <= 0) die("read");
    rlen += (size_t)r;
  }
}

/* Read one reply; returns 1 for a hit (VA), 0 otherwise. */
static int read_reply(void) {
  char *nl;
  size_t need = 1;
  for (;;) {
    fill(need);
    nl = memchr(rbuf + rpos, '\n', rlen - rpos);
    if (nl) break;
    need = rlen - rpos + 1;
  }
  size_t line = (size_t)(nl - (rbuf + rpos)) + 1;
  if (rbuf[rpos] == 'V' && rbuf[rpos + 1] == 'A') {
    size_t n = strtoul(rbuf + rpos + 3, NULL, 10);
    fill(line + n + 2);
    rpos += line + n + 2;
    return 1;
  }
  if (rbuf[rpos] != 'H' && rbuf[rpos] != 'E') {
    fprintf(stderr, "bench-memcached-bare: reply %.*s", (int)line, rbuf + rpos);
    exit(1);
  }
  rpos += line;
  return 0;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ull;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  struct addrinfo hints, *res;
  const char *op;
  size_t n, size = 100, keys = 10000, depth = 64, done = 0, hits = 0;
  char *out, *value;
  size_t olen;
  int one = 1;
  double t0, secs;
  if (argc < 5) {
    fprintf(stderr, "usage: bench-memcached-bare HOST PORT get|put N [SIZE] "
                    "[KEYS] [DEPTH]\n");
    return 2;
  }
  op = argv[3];
  n = strtoul(argv[4], NULL, 10);
  if (argc > 5) size = strtoul(argv[5], NULL, 10);
  if (argc > 6) keys = strtoul(argv[6], NULL, 10);
  if (argc > 7) depth = strtoul(argv[7], NULL, 10);
  if ((strcmp(op, "get") && strcmp(op, "put")) || !n || !keys || !depth) {
    fprintf(stderr, "bench-memcached-bare: bad arguments\n");
    return 2;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(argv[1], argv[2], &hints, &res) != 0) die("getaddrinfo");
  fd = socket(res->ai_family, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) die("connect");
  freeaddrinfo(res);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  rbuf = malloc(rcap);
  value = malloc(size + 2);
  out = malloc(depth * (size + 64));
  if (!rbuf || !value || !out) die("malloc");
  memset(value, 'v', size);
  memcpy(value + size, "\r\n", 2);

  if (strcmp(op, "get") == 0) { /* populate, not timed */
    for (size_t i = 0; i < keys;) {
      size_t b = 0;
      olen = 0;
      for (; b < depth && i < keys; b++, i++) {
        olen += (size_t)sprintf(out + olen, "ms k%015zu %zu T0\r\n", i, size);
        memcpy(out + olen, value, size + 2);
        olen += size + 2;
      }
      send_all(out, olen);
      while (b--)
        read_reply();
    }
  }
  t0 = now_s();
  while (done < n) {
    size_t b = 0;
    olen = 0;
    for (; b < depth && done + b < n; b++) {
      size_t k = (size_t)(next_rand() % keys);
      if (op[0] == 'g') {
        olen += (size_t)sprintf(out + olen, "mg k%015zu v\r\n", k);
      } else {
        olen += (size_t)sprintf(out + olen, "ms k%015zu %zu T0\r\n", k, size);
        memcpy(out + olen, value, size + 2);
        olen += size + 2;
      }
    }
    send_all(out, olen);
    for (size_t i = 0; i < b; i++)
      hits += (size_t)read_reply();
    done += b;
  }
  secs = now_s() - t0;
  printf("{\"store\": \"bare memcached meta protocol\", \"op\": \"%s\", "
         "\"requests\": %zu, \"depth\": %zu, \"size\": %zu, \"keys\": %zu, "
         "\"hits\": %zu, \"seconds\": %.6f, \"ops_per_sec\": %.1f}\n",
         op, n, depth, size, keys, hits, secs, (double)n / secs);
  close(fd);
  free(rbuf);
  free(value);
  free(out);
  return 0;
}
