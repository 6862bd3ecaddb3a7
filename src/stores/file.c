/* file:// — one human-readable JSON file (aiokv's store), safe for several
 * processes at once.
 *
 * Shape of the store:
 *
 *  - The file is parsed with jansson (which checks the syntax and reports
 *    the position of an error) and its content kept in memory in hash
 *    tables of our own, key and value inline, in insertion order. Writes
 *    change them and then write the whole file with a serializer of our own
 *    (a jansson tree costs several allocations per entry, and dumping it
 *    dominated the write path). Format (docs/file.md):
 *      {"format": "kvio-file", "version": 1,
 *       "collections": {COLL: {KEY: ENTRY, ...}, ...}}
 *    where ENTRY is a string (a UTF-8 value without expiry) or an object with
 *    "value" (UTF-8 text) or "base64" (any bytes), and optional "expires_at"
 *    (Unix milliseconds). Other top-level members are kept as they are.
 *  - Requests are queued as they arrive; a uv_check_t (with a no-op idle so
 *    that poll does not block meanwhile) starts the queue as one batch at
 *    the end of the loop turn. At most one batch is on the threadpool; what
 *    arrives meanwhile forms the next one.
 *  - A batch with writes runs on the threadpool: it takes an flock() on
 *    PATH.lock, reloads the file if it changed (identity: dev, inode, size,
 *    mtime, ctime and the generation counter that writers keep in PATH.lock),
 *    runs its ops in arrival order and, when the data changed, writes it once
 *    (PATH.tmp, fsync, rename over PATH, fsync of the directory), bumps the
 *    generation and unlocks. If the write fails, every op of the batch fails
 *    and the data is reloaded from the (untouched) file next time.
 *  - A batch of reads only needs no lock (renames are atomic). It is answered
 *    on the loop, from memory, when the store knows that the file has not
 *    changed since it was last checked: the directory is watched with
 *    uv_fs_event (inotify), and any event naming PATH makes the store check
 *    again on the threadpool before its next batch. Without a watch
 *    (watch=0, or inotify unavailable) every batch checks on the threadpool.
 *  - The data belongs to the threadpool while a batch is there and to the
 *    loop otherwise; the two never touch it at once.
 *  - Names are opened relative to a descriptor of the directory, taken at
 *    open, with O_NOFOLLOW: PATH, PATH.lock and PATH.tmp are never followed
 *    through a symbolic link.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "file_int.h"
#include "internal.h"
#include "kvio/file.h"
#include "stores/common/batcher.h"

#define FILE_PAGE_DEFAULT 1000
#define FILE_MSG_MAX 1024
#define FILE_LOCK_TIMEOUT 30.0
#define FILE_LOCK_SLEEP_MAX_MS 20
#define FILE_NAME_SHOW KV__FILE_NAME_SHOW

/* What the data was loaded from (or last written as). */
typedef struct file_ident_s {
  int known;  /* 0: the data reflects no known state of the file */
  int exists; /* the file existed */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  struct timespec ctime;
  uint64_t gen; /* PATH.lock's generation counter */
} file_ident_t;
typedef struct kv_file_s {
  KV__BATCHED_STORE;
  char *path;      /* as given, for messages */
  char *dir;       /* its directory, for the watch */
  char *name;      /* the file's name in dir */
  char *lock_name; /* name.lock */
  char *tmp_name;  /* name.tmp */
  int dirfd;
  int lockfd;
  double lock_timeout;
  int sync;
  int indent;
  /* The data: owned by the threadpool while busy, by the loop otherwise. */
  fdata_t data;
  fcoll_t *last_coll; /* the collection used last: most calls hit it */
  file_ident_t ident;
  uint64_t mod; /* bumped by every change of the data */
  /* Sorted entries of one collection, for paging keys(). */
  fcoll_t *sorted_coll;
  fnode_t **sorted;
  size_t nsorted;
  size_t sorted_cap;
  uint64_t sorted_mod;
  /* Loop side. */
  uv_fs_event_t event;
  int watching;          /* the fs_event watch is running */
  int fresh;             /* the data is known to equal the file */
  uint64_t events;       /* fs events naming the file, since open */
  uint64_t batch_events; /* `events` when the batch was launched */
  /* Written by the worker, read on the loop after the batch. */
  char w_msg[FILE_MSG_MAX];
  int w_synced;   /* the data equals the file after the batch */
  int w_locked;   /* the batch holds the lock */
  int w_unlink;   /* the batch destroyed everything: remove the file */
  uint64_t w_mod; /* `mod` when the batch began */
  uint64_t w_rewrites;
  uint64_t w_reloads;
  uint64_t w_lock_waits;
  uint64_t w_file_bytes;
  kv_file_stats_t stats; /* the w_* above, copied after each batch */
} kv_file_t;

extern const kv_store_methods_t kv__file_methods;

static const char *const file_options[] = {"lock_timeout", "sync", "indent",
                                           "watch", NULL};

/* ---- The file -------------------------------------------------------------
 *
 * These run on the threadpool, and at open. */

static void ident_from_stat(file_ident_t *id, const struct stat *st) {
  id->known = 1;
  id->exists = 1;
  id->dev = st->st_dev;
  id->ino = st->st_ino;
  id->size = st->st_size;
  id->mtime = st->st_mtim;
  id->ctime = st->st_ctim;
}

static int ident_same(const file_ident_t *id, const struct stat *st) {
  return id->exists && id->dev == st->st_dev && id->ino == st->st_ino &&
         id->size == st->st_size && id->mtime.tv_sec == st->st_mtim.tv_sec &&
         id->mtime.tv_nsec == st->st_mtim.tv_nsec &&
         id->ctime.tv_sec == st->st_ctim.tv_sec &&
         id->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

static uint64_t lock_gen(kv_file_t *f) {
  unsigned char b[8];
  uint64_t g = 0;
  int i;
  if (pread(f->lockfd, b, sizeof b, 0) != (ssize_t)sizeof b) return 0;
  for (i = 0; i < 8; i++)
    g |= (uint64_t)b[i] << (8 * i);
  return g;
}

static void lock_set_gen(kv_file_t *f, uint64_t g) {
  unsigned char b[8];
  int i;
  for (i = 0; i < 8; i++)
    b[i] = (unsigned char)(g >> (8 * i));
  /* Best effort: without it, readers still see the new identity. */
  if (pwrite(f->lockfd, b, sizeof b, 0) != (ssize_t)sizeof b) return;
}

/* Open (creating) PATH.lock. 0 or an error with the detail in msg. */
static int lock_open(kv_file_t *f, char *msg, size_t len) {
  struct stat st;
  int fd = openat(f->dirfd, f->lock_name,
                  O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0666);
  if (fd < 0) {
    if (errno == ELOOP)
      return kv__file_msg(
          msg, len, KV_EINVAL,
          "file: %s.lock is a symbolic link; refusing to follow it", f->path);
    return kv__file_msg(msg, len, KV_EIO, "file: cannot open %s.lock: %s",
                        f->path, strerror(errno));
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return kv__file_msg(msg, len, KV_EINVAL,
                        "file: %s.lock is not a regular file", f->path);
  }
  f->lockfd = fd;
  return 0;
}

/* Take the exclusive lock, waiting up to lock_timeout. */
static int file_lock(kv_file_t *f, char *msg, size_t len) {
  uint64_t deadline = uv_hrtime() + (uint64_t)(f->lock_timeout * 1e9);
  long delay_ms = 1;
  int waited = 0, rc;
  for (;;) {
    struct stat a, b;
    if (flock(f->lockfd, LOCK_EX | LOCK_NB) == 0) {
      /* Someone may have removed or replaced PATH.lock while we waited: a
       * lock on an unlinked file excludes nobody. Lock the file at the
       * path. */
      if (fstat(f->lockfd, &a) == 0 &&
          fstatat(f->dirfd, f->lock_name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
          a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        return 0;
      }
      flock(f->lockfd, LOCK_UN);
      close(f->lockfd);
      f->lockfd = -1;
      if ((rc = lock_open(f, msg, len)) != 0) return rc;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK)
      return kv__file_msg(msg, len, KV_EIO, "file: cannot lock %s.lock: %s",
                          f->path, strerror(errno));
    {
      uint64_t now = uv_hrtime();
      struct timespec ts;
      uint64_t sleep_ns;
      if (now >= deadline)
        return kv__file_msg(msg, len, KV_ETIMEDOUT,
                            "file: %s.lock is held by another process for more "
                            "than lock_timeout=%g s",
                            f->path, f->lock_timeout);
      sleep_ns = (uint64_t)delay_ms * 1000000u;
      if (sleep_ns > deadline - now) sleep_ns = deadline - now;
      ts.tv_sec = (time_t)(sleep_ns / 1000000000u);
      ts.tv_nsec = (long)(sleep_ns % 1000000000u);
      nanosleep(&ts, NULL);
      if (!waited) f->w_lock_waits++;
      waited = 1;
      if (delay_ms < FILE_LOCK_SLEEP_MAX_MS) delay_ms *= 2;
    }
  }
}

static void file_unlock(kv_file_t *f) {
  if (f->lockfd >= 0) flock(f->lockfd, LOCK_UN);
}

/* Read and parse the file. On success *out holds its data (empty when the
 * file does not exist) and *id its identity (gen not set). */
static int file_load(kv_file_t *f, fdata_t *out, file_ident_t *id, char *msg,
                     size_t len) {
  struct stat st;
  char *buf = NULL;
  size_t cap, n = 0;
  int fd, rc;
  memset(id, 0, sizeof(*id));
  fd =
      openat(f->dirfd, f->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) {
      id->known = 1;
      memset(out, 0, sizeof(*out));
      return kv__file_table_init(&out->colls) == 0
                 ? 0
                 : kv__file_msg(msg, len, KV_ENOMEM, "out of memory");
    }
    if (errno == ELOOP)
      return kv__file_msg(msg, len, KV_EINVAL,
                          "file: %s is a symbolic link; refusing to follow it",
                          f->path);
    return kv__file_msg(msg, len, KV_EIO, "file: cannot open %s: %s", f->path,
                        strerror(errno));
  }
  if (fstat(fd, &st) != 0) {
    rc = kv__file_msg(msg, len, KV_EIO, "file: %s: %s", f->path,
                      strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = kv__file_msg(msg, len, KV_EINVAL, "file: %s is not a regular file",
                      f->path);
    goto out;
  }
  cap = (size_t)st.st_size + 1;
  for (;;) {
    ssize_t r;
    if (buf == NULL) {
      if ((buf = kv_malloc(cap)) == NULL) goto oom;
    } else if (n == cap) {
      char *p = kv_realloc(buf, cap * 2);
      if (p == NULL) goto oom;
      buf = p;
      cap *= 2;
    }
    r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = kv__file_msg(msg, len, KV_EIO, "file: cannot read %s: %s", f->path,
                        strerror(errno));
      goto out;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  if ((rc = kv__file_parse(buf, n, f->path, f->base.default_collection, out,
                           msg, len)) != 0)
    goto out;
  ident_from_stat(id, &st);
  goto out;
oom:
  rc = kv__file_msg(msg, len, KV_ENOMEM, "out of memory reading %s", f->path);
out:
  kv_free(buf);
  close(fd);
  return rc;
}

/* Replace the data (takes `d`). */
static void data_set(kv_file_t *f, fdata_t *d) {
  kv__file_data_free(&f->data);
  f->data = *d;
  f->last_coll = NULL;
  f->mod++;
}

/* Make the data equal the file: reload it when it changed since it was
 * loaded or written. */
static int file_refresh(kv_file_t *f, char *msg, size_t len) {
  struct stat st;
  file_ident_t id;
  fdata_t d;
  uint64_t gen;
  int rc = fstatat(f->dirfd, f->name, &st, AT_SYMLINK_NOFOLLOW);
  if (rc != 0 && errno != ENOENT)
    return kv__file_msg(msg, len, KV_EIO, "file: %s: %s", f->path,
                        strerror(errno));
  if (rc == 0 && S_ISLNK(st.st_mode))
    return kv__file_msg(msg, len, KV_EINVAL,
                        "file: %s is a symbolic link; refusing to follow it",
                        f->path);
  gen = lock_gen(f); /* after the stat: see docs/file.md */
  if (f->ident.known && f->ident.gen == gen &&
      (rc == 0 ? ident_same(&f->ident, &st) : !f->ident.exists))
    return 0;
  if ((rc = file_load(f, &d, &id, msg, len)) != 0) {
    f->ident.known = 0;
    return rc;
  }
  data_set(f, &d);
  f->ident = id;
  f->ident.gen = gen;
  f->w_reloads++;
  return 0;
}

/* destroy, as aiokv's clear: remove the file (PATH.lock stays: it
 * coordinates the processes, and its generation tells them). The lock is
 * held. */
static int file_remove(kv_file_t *f, char *msg, size_t len) {
  uint64_t gen;
  if (unlinkat(f->dirfd, f->name, 0) != 0 && errno != ENOENT)
    return kv__file_msg(msg, len, KV_EIO, "file: cannot remove %s: %s", f->path,
                        strerror(errno));
  if (f->sync && fsync(f->dirfd) != 0)
    return kv__file_msg(msg, len, KV_EIO,
                        "file: cannot fsync the directory of %s: %s", f->path,
                        strerror(errno));
  gen = f->ident.gen + 1;
  lock_set_gen(f, gen);
  memset(&f->ident, 0, sizeof(f->ident));
  f->ident.known = 1;
  f->ident.gen = gen;
  f->w_rewrites++;
  f->w_file_bytes = 0;
  return 0;
}

static int file_write(kv_file_t *f, char *msg, size_t len) {
  struct stat old, st;
  int fd, rc, have_old;
  uint64_t gen;
  have_old = fstatat(f->dirfd, f->name, &old, AT_SYMLINK_NOFOLLOW) == 0;
  fd = openat(
      f->dirfd, f->tmp_name,
      O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0666);
  if (fd < 0) {
    if (errno == ELOOP)
      return kv__file_msg(
          msg, len, KV_EINVAL,
          "file: %s.tmp is a symbolic link; refusing to follow it", f->path);
    return kv__file_msg(msg, len, KV_EIO, "file: cannot create %s.tmp: %s",
                        f->path, strerror(errno));
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return kv__file_msg(msg, len, KV_EINVAL,
                        "file: %s.tmp is not a regular file", f->path);
  }
  /* Keep the permissions someone gave the file. */
  if (have_old && S_ISREG(old.st_mode)) (void)fchmod(fd, old.st_mode & 07777);
  rc = kv__file_serialize(fd, &f->data, f->indent);
  if (rc == KV_ENOMEM) {
    rc = kv__file_msg(msg, len, KV_ENOMEM, "out of memory");
    goto fail;
  }
  if (rc != 0) {
    rc = kv__file_msg(msg, len, KV_EIO, "file: cannot write %s.tmp: %s",
                      f->path, strerror(rc));
    goto fail;
  }
  if (f->sync && fsync(fd) != 0) {
    rc = kv__file_msg(msg, len, KV_EIO, "file: cannot fsync %s.tmp: %s",
                      f->path, strerror(errno));
    goto fail;
  }
  if (renameat(f->dirfd, f->tmp_name, f->dirfd, f->name) != 0) {
    rc = kv__file_msg(msg, len, KV_EIO, "file: cannot rename %s.tmp to %s: %s",
                      f->path, f->path, strerror(errno));
    goto fail;
  }
  /* The identity after the rename (which changes the ctime). */
  rc = fstat(fd, &st);
  close(fd);
  if (rc != 0)
    return kv__file_msg(msg, len, KV_EIO, "file: cannot stat %s", f->path);
  if (f->sync && fsync(f->dirfd) != 0)
    return kv__file_msg(msg, len, KV_EIO,
                        "file: cannot fsync the directory of %s: %s", f->path,
                        strerror(errno));
  gen = f->ident.gen + 1;
  lock_set_gen(f, gen);
  ident_from_stat(&f->ident, &st);
  f->ident.gen = gen;
  f->w_rewrites++;
  f->w_file_bytes = (uint64_t)st.st_size;
  return 0;
fail:
  close(fd);
  unlinkat(f->dirfd, f->tmp_name, 0);
  return rc;
}

/* ---- Operations on the data -----------------------------------------------
 *
 * Each returns the request's status and sets its results; they run on the
 * threadpool or, for reads while the data is known fresh, on the loop. */

static int oom(kv_req_t *req) {
  return kv_req_set_error(req, KV_ENOMEM, "out of memory");
}

static fcoll_t *coll_find(kv_file_t *f, const char *name, size_t len) {
  fcoll_t *c = f->last_coll;
  if (c != NULL && c->node.len == len && memcmp(c->name, name, len) == 0)
    return c;
  c = (fcoll_t *)kv__file_table_find(&f->data.colls, name, len,
                                     kv__file_hash(name, len));
  if (c != NULL) f->last_coll = c;
  return c;
}

static fcoll_t *coll_of(kv_file_t *f, const kv_req_t *req) {
  return coll_find(f, req->in.collection, req->in.collection_len);
}

static fcoll_t *coll_make(kv_file_t *f, const kv_req_t *req) {
  fcoll_t *c = coll_of(f, req);
  if (c != NULL) return c;
  c = kv__file_coll_new(req->in.collection, req->in.collection_len);
  if (c == NULL) return NULL;
  kv__file_table_link(&f->data.colls, &c->node);
  f->last_coll = c;
  f->mod++;
  return c;
}

static void coll_remove(kv_file_t *f, fcoll_t *c) {
  kv__file_table_unlink(&f->data.colls, &c->node);
  if (f->last_coll == c) f->last_coll = NULL;
  kv__file_coll_free(c);
  f->mod++;
}

/* Drop the request's collection when it has become empty, so that it is
 * neither listed nor written. */
static void coll_prune(kv_file_t *f, const kv_req_t *req) {
  fcoll_t *c = coll_of(f, req);
  if (c != NULL && c->entries.count == 0) coll_remove(f, c);
}

static int ent_live(const fent_t *e, int64_t now) {
  return e != NULL && !KV_EXPIRED(e->expires_at, now);
}

static void ent_remove(kv_file_t *f, fcoll_t *c, fent_t *e) {
  kv__file_table_unlink(&c->entries, &e->node);
  kv_free(e);
  f->mod++;
}

/* Insert or replace; an overwritten key keeps its place. 0 or KV_ENOMEM. */
static int ent_put(kv_file_t *f, fcoll_t *c, const char *key, size_t klen,
                   const char *v, size_t vlen, int64_t expires_at) {
  uint32_t h = kv__file_hash(key, klen);
  fent_t *old = (fent_t *)kv__file_table_find(&c->entries, key, klen, h), *e;
  int text = kv__file_is_text(v, vlen);
  f->mod++;
  if (old != NULL && old->vlen == vlen) {
    if (vlen > 0) memcpy(ENT_VALUE(old), v, vlen);
    old->expires_at = expires_at;
    old->text = text;
    return 0;
  }
  if ((e = kv__file_ent_new(key, klen, h, v, vlen, expires_at, text)) == NULL)
    return KV_ENOMEM;
  if (old != NULL) {
    kv__file_table_replace(&c->entries, &old->node, &e->node);
    kv_free(old);
  } else {
    kv__file_table_link(&c->entries, &e->node);
  }
  return 0;
}

static int do_get(kv_file_t *f, kv_req_t *req, int64_t now) {
  fent_t *e = kv__file_ent_find(coll_of(f, req), req->in.key, req->in.key_len);
  if (!ent_live(e, now)) return 0;
  if (kv_req_set_value(req, ENT_VALUE(e), e->vlen) != 0) return oom(req);
  req->ttl = kv_remaining_ttl(e->expires_at, now);
  return 0;
}

static int do_take(kv_file_t *f, kv_req_t *req, int64_t now) {
  fcoll_t *c = coll_of(f, req);
  fent_t *e = kv__file_ent_find(c, req->in.key, req->in.key_len);
  if (e == NULL) return 0;
  if (ent_live(e, now) && kv_req_set_value(req, ENT_VALUE(e), e->vlen) != 0)
    return oom(req);
  ent_remove(f, c, e);
  coll_prune(f, req);
  return 0;
}

static int do_put(kv_file_t *f, kv_req_t *req) {
  fcoll_t *c = coll_make(f, req);
  if (c == NULL ||
      ent_put(f, c, req->in.key, req->in.key_len, req->in.value.base,
              req->in.value.len, req->in.expires_at_ms) != 0)
    return oom(req);
  return 0;
}

static int do_put_many(kv_file_t *f, kv_req_t *req) {
  fcoll_t *c;
  size_t i;
  if (req->in.n == 0) return 0;
  if ((c = coll_make(f, req)) == NULL) return oom(req);
  for (i = 0; i < req->in.n; i++)
    if (ent_put(f, c, req->in.keys[i].base, req->in.keys[i].len,
                req->in.values[i].base, req->in.values[i].len,
                req->in.expires_at_ms) != 0)
      return oom(req);
  return 0;
}

/* Remove a key; returns 1 if it held a live value. */
static int delete_one(kv_file_t *f, fcoll_t *c, const char *key, size_t klen,
                      int64_t now) {
  fent_t *e = kv__file_ent_find(c, key, klen);
  int live = ent_live(e, now);
  if (e != NULL) ent_remove(f, c, e);
  return live;
}

static int do_delete(kv_file_t *f, kv_req_t *req, int64_t now) {
  fcoll_t *c = coll_of(f, req);
  size_t i;
  if (c == NULL) return 0;
  if (req->op == KV_OP_DELETE) {
    req->found = delete_one(f, c, req->in.key, req->in.key_len, now);
  } else {
    for (i = 0; i < req->in.n; i++)
      req->count += (size_t)delete_one(f, c, req->in.keys[i].base,
                                       req->in.keys[i].len, now);
  }
  coll_prune(f, req);
  return 0;
}

static int do_get_many(kv_file_t *f, kv_req_t *req, int64_t now) {
  fcoll_t *c = coll_of(f, req);
  size_t i;
  if (kv_req_alloc_results(req) != 0) return oom(req);
  for (i = 0; i < req->in.n; i++) {
    fent_t *e = kv__file_ent_find(c, req->in.keys[i].base, req->in.keys[i].len);
    if (ent_live(e, now) &&
        kv_req_set_result(req, i, ENT_VALUE(e), e->vlen,
                          kv_remaining_ttl(e->expires_at, now)) != 0)
      return oom(req);
  }
  return 0;
}

static int do_atomic(kv_file_t *f, kv_req_t *req, int64_t now) {
  fcoll_t *c = coll_of(f, req);
  fent_t *e = kv__file_ent_find(c, req->in.key, req->in.key_len);
  if (!ent_live(e, now)) e = NULL;
  switch (req->op) {
  case KV_OP_PUT_IF_ABSENT:
    if (e != NULL) return 0; /* found = 0: not stored */
    req->found = 1;
    return do_put(f, req);
  case KV_OP_CAS:
    if (req->in.expected_absent
            ? e != NULL
            : e == NULL || e->vlen != req->in.expected.len ||
                  (e->vlen > 0 &&
                   memcmp(ENT_VALUE(e), req->in.expected.base, e->vlen) != 0))
      return kv_req_set_error(req, KV_ECONFLICT,
                              req->in.expected_absent
                                  ? "key '%.*s' holds a value"
                                  : "key '%.*s' does not hold the expected "
                                    "value",
                              FILE_NAME_SHOW, req->in.key);
    req->found = 1;
    return do_put(f, req);
  default: { /* KV_OP_INCR */
    int64_t cur = 0, expires_at = req->in.expires_at_ms;
    char text[32];
    size_t n;
    if (e != NULL) {
      if (kv_parse_int64(ENT_VALUE(e), e->vlen, &cur) != 0)
        return kv_req_set_error(req, KV_EINVAL,
                                "value of key '%.*s' is not a decimal integer",
                                FILE_NAME_SHOW, req->in.key);
      expires_at = e->expires_at; /* an existing entry keeps its TTL */
    }
    if (__builtin_add_overflow(cur, req->in.delta, &req->number))
      return kv_req_set_error(req, KV_EINVAL, "incr of key '%.*s' overflows",
                              FILE_NAME_SHOW, req->in.key);
    n = kv_format_int64(req->number, text);
    if ((c = coll_make(f, req)) == NULL ||
        ent_put(f, c, req->in.key, req->in.key_len, text, n, expires_at) != 0)
      return oom(req);
    return 0;
  }
  }
}

static int cmp_nodes(const void *a, const void *b) {
  return strcmp((*(const fnode_t *const *)a)->name,
                (*(const fnode_t *const *)b)->name);
}

/* The nodes of t in byte order of their names, in *out (kv_malloc'ed). */
static int sort_nodes(const ftable_t *t, fnode_t ***out, size_t *cap) {
  fnode_t *n;
  size_t i = 0;
  if (t->count > *cap) {
    fnode_t **p = kv_realloc(*out, t->count * sizeof(*p));
    if (p == NULL) return KV_ENOMEM;
    *out = p;
    *cap = t->count;
  }
  for (n = t->head; n != NULL; n = n->next)
    (*out)[i++] = n;
  qsort(*out, t->count, sizeof(**out), cmp_nodes);
  return 0;
}

/* Index of the first node in sorted[0..n) whose name sorts after `after`. */
static size_t nodes_after(fnode_t *const *sorted, size_t n, const char *after) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(sorted[mid]->name, after) <= 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Add the names of sorted[i..n) that pass `live` to the request, up to the
 * limit; set the cursor ("<tag><last name>") when more remain. */
static int page_names(kv_req_t *req, fnode_t *const *sorted, size_t n, size_t i,
                      char tag, int64_t now,
                      int (*live)(const fnode_t *, int64_t)) {
  size_t limit = req->in.limit ? req->in.limit : FILE_PAGE_DEFAULT;
  const fnode_t *last = NULL;
  for (; i < n; i++) {
    if (!live(sorted[i], now)) continue;
    if (req->nnames == limit) {
      char *cur = kv_malloc(last->len + 2);
      if (cur == NULL) return oom(req);
      cur[0] = tag;
      memcpy(cur + 1, last->name, last->len + 1);
      kv_free(req->cursor);
      req->cursor = cur;
      return 0;
    }
    if (kv_req_add_name(req, sorted[i]->name, sorted[i]->len) != 0)
      return oom(req);
    last = sorted[i];
  }
  return 0;
}

static int node_ent_live(const fnode_t *n, int64_t now) {
  return ent_live((const fent_t *)n, now);
}

static int node_coll_live(const fnode_t *n, int64_t now) {
  const fnode_t *e;
  for (e = ((const fcoll_t *)n)->entries.head; e != NULL; e = e->next)
    if (ent_live((const fent_t *)e, now)) return 1;
  return 0;
}

static int do_keys(kv_file_t *f, kv_req_t *req, int64_t now) {
  fcoll_t *c = coll_of(f, req);
  size_t start = 0;
  if (req->in.cursor != NULL && req->in.cursor[0] != 'k')
    return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%.*s'",
                            FILE_NAME_SHOW, req->in.cursor);
  if (c == NULL) return 0;
  /* Sorted once per collection and version of the data: paging through a
   * collection that does not change sorts it once. */
  if (f->sorted_coll != c || f->sorted_mod != f->mod) {
    if (sort_nodes(&c->entries, &f->sorted, &f->sorted_cap) != 0)
      return oom(req);
    f->nsorted = c->entries.count;
    f->sorted_coll = c;
    f->sorted_mod = f->mod;
  }
  if (req->in.cursor != NULL)
    start = nodes_after(f->sorted, f->nsorted, req->in.cursor + 1);
  return page_names(req, f->sorted, f->nsorted, start, 'k', now, node_ent_live);
}

static int do_collections(kv_file_t *f, kv_req_t *req, int64_t now) {
  fnode_t **sorted = NULL;
  size_t cap = 0, start = 0;
  int rc;
  if (req->in.cursor != NULL && req->in.cursor[0] != 'c')
    return kv_req_set_error(req, KV_EINVAL, "invalid cursor '%.*s'",
                            FILE_NAME_SHOW, req->in.cursor);
  if (f->data.colls.count == 0) return 0;
  if (sort_nodes(&f->data.colls, &sorted, &cap) != 0) return oom(req);
  if (req->in.cursor != NULL)
    start = nodes_after(sorted, f->data.colls.count, req->in.cursor + 1);
  rc = page_names(req, sorted, f->data.colls.count, start, 'c', now,
                  node_coll_live);
  kv_free(sorted);
  return rc;
}

static int do_cull(kv_file_t *f, kv_req_t *req, int64_t now) {
  fnode_t *cn = f->data.colls.head, *en;
  while (cn != NULL) {
    fcoll_t *c = (fcoll_t *)cn;
    cn = cn->next;
    for (en = c->entries.head; en != NULL;) {
      fent_t *e = (fent_t *)en;
      en = en->next;
      if (KV_EXPIRED(e->expires_at, now)) {
        ent_remove(f, c, e);
        req->count++;
      }
    }
    if (c->entries.count == 0) coll_remove(f, c);
  }
  return 0;
}

static int do_destroy(kv_file_t *f, kv_req_t *req) {
  fcoll_t *c;
  if (req->op == KV_OP_DESTROY_COLLECTION) {
    if ((c = coll_of(f, req)) != NULL) {
      req->count = c->entries.count;
      coll_remove(f, c);
    }
    return 0;
  }
  while (f->data.colls.head != NULL)
    coll_remove(f, (fcoll_t *)f->data.colls.head);
  f->w_unlink = 1; /* as aiokv's clear: the file goes (file_commit) */
  return 0;
}

static int file_exec(kv_file_t *f, kv_req_t *req, int64_t now) {
  switch (req->op) {
  case KV_OP_GET:
  case KV_OP_TTL:
    return do_get(f, req, now);
  case KV_OP_TAKE:
    return do_take(f, req, now);
  case KV_OP_PUT:
    return do_put(f, req);
  case KV_OP_DELETE:
  case KV_OP_DELETE_MANY:
    return do_delete(f, req, now);
  case KV_OP_GET_MANY:
  case KV_OP_TTL_MANY:
    return do_get_many(f, req, now);
  case KV_OP_PUT_MANY:
    return do_put_many(f, req);
  case KV_OP_PUT_IF_ABSENT:
  case KV_OP_CAS:
  case KV_OP_INCR:
    return do_atomic(f, req, now);
  case KV_OP_KEYS:
    return do_keys(f, req, now);
  case KV_OP_COLLECTIONS:
    return do_collections(f, req, now);
  case KV_OP_DESTROY:
  case KV_OP_DESTROY_COLLECTION:
    return do_destroy(f, req);
  case KV_OP_CULL:
    return do_cull(f, req, now);
  default:
    return kv_req_set_error(req, KV_ENOTSUP, "operation not supported");
  }
}

/* ---- The engine ---------------------------------------------------------- */

#define FILE_OF(b) ((kv_file_t *)(b)->store)

/* A batch: a write takes the lock; both reload the file if it changed. */
static int file_begin(kv__batcher_t *b, int mode, void **txn) {
  kv_file_t *f = FILE_OF(b);
  int rc;
  f->w_msg[0] = '\0';
  f->w_synced = 0;
  f->w_locked = 0;
  f->w_unlink = 0;
  if (mode == KV__TXN_WRITE) {
    rc = file_lock(f, f->w_msg, sizeof(f->w_msg));
    if (rc != 0) return rc;
    f->w_locked = 1;
  }
  rc = file_refresh(f, f->w_msg, sizeof(f->w_msg));
  if (rc != 0) {
    if (f->w_locked) file_unlock(f);
    f->w_locked = 0;
    return rc;
  }
  f->w_mod = f->mod;
  *txn = f;
  return 0;
}

/* Reads on the loop: from memory, while the file is known unchanged and no
 * batch holds the data. */
static int file_loop_begin(kv__batcher_t *b, void **txn) {
  kv_file_t *f = FILE_OF(b);
  if (b->busy || !f->fresh) return 1;
  *txn = f;
  return 0;
}

static int file_exec_engine(kv__batcher_t *b, void *txn, kv__slot_t *slot,
                            int64_t now) {
  int rc = file_exec(txn, slot->req, now);
  (void)b;
  if (rc != 0) {
    slot->status = rc;
    slot->has_detail = 1; /* the op set it */
  }
  return 0;
}

/* Write the file once when the batch changed the data. If the write fails,
 * nothing of the batch reached the file: every op fails, and the data is
 * reloaded from the (untouched) file next time. */
static int file_commit(kv__batcher_t *b, void *txn, int mode) {
  kv_file_t *f = txn;
  int rc = 0;
  (void)b;
  if (mode == KV__TXN_LOOP) return 0;
  if (f->mod != f->w_mod) {
    /* Emptied by a destroy: no file, unless it keeps another program's
     * top-level members. */
    if (f->w_unlink && f->data.colls.count == 0 && f->data.extra == NULL)
      rc = file_remove(f, f->w_msg, sizeof(f->w_msg));
    else
      rc = file_write(f, f->w_msg, sizeof(f->w_msg));
    if (rc != 0) f->ident.known = 0;
  }
  if (f->w_locked) file_unlock(f);
  f->w_locked = 0;
  f->w_synced = rc == 0;
  return rc;
}

static void file_abort(kv__batcher_t *b, void *txn, int mode) {
  kv_file_t *f = txn;
  (void)b;
  if (mode == KV__TXN_LOOP) return;
  f->ident.known = 0;
  if (f->w_locked) file_unlock(f);
  f->w_locked = 0;
}

static void file_fail(kv__batcher_t *b, kv__slot_t *slot, int code) {
  kv_file_t *f = FILE_OF(b);
  slot->status = code;
  slot->code = code;
  kv_free(slot->errmsg);
  slot->errmsg = kv_strndup(f->w_msg, strlen(f->w_msg));
}

static void file_detail(kv__batcher_t *b, kv__slot_t *slot) {
  (void)b;
  kv_req_set_error(slot->req, slot->status, "%s",
                   slot->errmsg ? slot->errmsg : kv_strerror(slot->status));
}

static void file_launch_hook(kv__batcher_t *b) {
  kv_file_t *f = FILE_OF(b);
  f->batch_events = f->events;
}

static void file_after(kv__batcher_t *b) {
  kv_file_t *f = FILE_OF(b);
  /* Fresh only if no event named the file since the batch began: the
   * worker's check may have come before that change. */
  f->fresh = f->w_synced && f->watching && f->events == f->batch_events;
  f->stats.rewrites = f->w_rewrites;
  f->stats.reloads = f->w_reloads;
  f->stats.lock_waits = f->w_lock_waits;
  f->stats.file_bytes = f->w_file_bytes;
}

static int file_close_handles(kv__batcher_t *b, uv_close_cb cb) {
  kv_file_t *f = FILE_OF(b);
  uv_close((uv_handle_t *)&f->event, cb);
  return 1;
}

static void file_free_names(kv_file_t *f);

static void file_closed(kv__batcher_t *b) {
  kv_file_t *f = FILE_OF(b);
  kv__file_data_free(&f->data);
  f->last_coll = NULL;
  if (f->lockfd >= 0) close(f->lockfd);
  if (f->dirfd >= 0) close(f->dirfd);
  f->lockfd = f->dirfd = -1;
  kv_free(f->sorted);
  f->sorted = NULL;
  file_free_names(f);
}

static const kv__engine_t file_engine = {
    .name = "file",
    .begin = file_begin,
    .exec = file_exec_engine,
    .commit = file_commit,
    .abort = file_abort,
    .fail = file_fail,
    .detail = file_detail,
    .loop_begin = file_loop_begin,
    .launch = file_launch_hook,
    .after = file_after,
    .close_handles = file_close_handles,
    .closed = file_closed,
};

/* A change in the directory: anything naming the file (or unnamed, such as
 * an overflow) means the data may be stale. */
static void file_event_cb(uv_fs_event_t *h, const char *filename, int events,
                          int status) {
  kv_file_t *f = FILE_OF((kv__batcher_t *)h->data);
  (void)events;
  if (status < 0) {
    /* The watch broke: fall back to checking before every batch. */
    uv_fs_event_stop(h);
    f->watching = 0;
    f->fresh = 0;
    return;
  }
  if (filename != NULL && strcmp(filename, f->name) != 0) return;
  f->events++;
  f->fresh = 0;
}

static int file_ctl(kv_store_t *s, int op, void *arg, size_t size) {
  kv_file_t *f = (kv_file_t *)s;
  kv__batcher_t *b = &f->batcher;
  kv_file_stats_t *st = arg;
  if (op == KV_FILE_CTL_STATS) {
    KV_CTL_EXPECT(arg, size, kv_file_stats_t);
    memset(st, 0, sizeof(*st));
    st->batches = b->batches;
    st->rewrites = f->stats.rewrites;
    st->reloads = f->stats.reloads;
    st->ops = b->ops;
    st->loop_reads = b->loop_reads_served;
    st->lock_waits = f->stats.lock_waits;
    st->file_bytes = f->stats.file_bytes;
    return 0;
  }
  return KV_ENOTSUP;
}

/* ---- Open and close ------------------------------------------------------ */

static void file_free_names(kv_file_t *f) {
  kv_free(f->path);
  kv_free(f->dir);
  kv_free(f->name);
  kv_free(f->lock_name);
  kv_free(f->tmp_name);
  f->path = f->dir = f->name = f->lock_name = f->tmp_name = NULL;
}

static char *str_cat(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *p = kv_malloc(la + lb + 1);
  if (p == NULL) return NULL;
  memcpy(p, a, la);
  memcpy(p + la, b, lb + 1);
  return p;
}

/* Split PATH into its directory and name. */
static int file_split(kv_file_t *f, const char *path, char *errbuf,
                      size_t errbuf_len) {
  const char *slash = strrchr(path, '/');
  const char *name = slash ? slash + 1 : path;
  if (*name == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return kv__file_msg(errbuf, errbuf_len, KV_EINVAL,
                        "file: '%s' names a directory, not a file", path);
  f->path = kv_strndup(path, strlen(path));
  if (slash == NULL)
    f->dir = kv_strndup(".", 1);
  else if (slash == path)
    f->dir = kv_strndup("/", 1);
  else
    f->dir = kv_strndup(path, (size_t)(slash - path));
  f->name = kv_strndup(name, strlen(name));
  f->lock_name = str_cat(name, ".lock");
  f->tmp_name = str_cat(name, ".tmp");
  if (!f->path || !f->dir || !f->name || !f->lock_name || !f->tmp_name) {
    file_free_names(f);
    return kv__file_msg(errbuf, errbuf_len, KV_ENOMEM, "out of memory");
  }
  return 0;
}

static int file_open(kv_store_t *s, const kv_url_t *url, char *errbuf,
                     size_t errbuf_len) {
  kv_file_t *f = (kv_file_t *)s;
  const char *sync = kv_url_param(url, "sync");
  struct stat st;
  file_ident_t id;
  fdata_t d;
  int64_t indent;
  int rc, watch;
  f->dirfd = -1;
  f->lockfd = -1;
  if (sync == NULL || strcmp(sync, "full") == 0)
    f->sync = 1;
  else if (strcmp(sync, "none") == 0)
    f->sync = 0;
  else
    return kv__file_msg(errbuf, errbuf_len, KV_EINVAL,
                        "file: sync must be full or none, not \"%s\"", sync);
  rc = kv_url_param_double(url, "lock_timeout", 0, 86400, FILE_LOCK_TIMEOUT,
                           &f->lock_timeout, errbuf, errbuf_len);
  if (rc == 0)
    rc = kv_url_param_int(url, "indent", 0, 8, 2, &indent, errbuf, errbuf_len);
  if (rc == 0)
    rc = kv_url_param_bool(url, "watch", 1, &watch, errbuf, errbuf_len);
  if (rc != 0) return rc;
  f->indent = (int)indent;
  if (url->target == NULL || url->target[0] == '\0')
    return kv__file_msg(errbuf, errbuf_len, KV_EINVAL,
                        "file: the URL needs a file: file://PATH");
  if ((rc = file_split(f, url->target, errbuf, errbuf_len)) != 0) return rc;
  f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (f->dirfd < 0) {
    rc = kv__file_msg(errbuf, errbuf_len, KV_EIO,
                      "file: cannot open the directory of %s (%s): %s", f->path,
                      f->dir, strerror(errno));
    goto fail;
  }
  if (fstatat(f->dirfd, f->tmp_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK(st.st_mode)) {
    rc = kv__file_msg(errbuf, errbuf_len, KV_EINVAL,
                      "file: %s.tmp is a symbolic link; refusing to follow it",
                      f->path);
    goto fail;
  }
  /* The data file first: a corrupt file is reported before anything is
   * created beside it. */
  if ((rc = file_load(f, &d, &id, errbuf, errbuf_len)) != 0) goto fail;
  data_set(f, &d);
  f->ident = id;
  if ((rc = lock_open(f, errbuf, errbuf_len)) != 0) goto fail;
  f->ident.gen = lock_gen(f);
  /* Handles last: nothing after this fails, and a failed open must leave
   * nothing on the loop. */
  kv__batch_init(&f->batcher, s, &file_engine);
  /* At the end of the turn, not in the submit: the poll phase before it
   * delivers the watch's events, so a change another process made before
   * the read was submitted is known by then. */
  f->batcher.loop_reads = KV__LOOP_TURN;
  uv_fs_event_init(s->loop, &f->event);
  f->event.data = &f->batcher;
  if (watch && uv_fs_event_start(&f->event, file_event_cb, f->dir, 0) == 0) {
    uv_unref((uv_handle_t *)&f->event); /* never keeps the loop alive */
    f->watching = 1;
    /* A change between the load and the watch is caught here. */
    rc = fstatat(f->dirfd, f->name, &st, AT_SYMLINK_NOFOLLOW);
    f->fresh = rc == 0 ? ident_same(&f->ident, &st)
                       : (errno == ENOENT && !f->ident.exists);
  }
  return 0;
fail:
  kv__file_data_free(&f->data);
  if (f->lockfd >= 0) close(f->lockfd);
  if (f->dirfd >= 0) close(f->dirfd);
  file_free_names(f);
  return rc;
}

const kv_store_methods_t kv__file_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "file",
    .store_size = sizeof(kv_file_t),
    .caps = KV_CAP_ENUMERATE | KV_CAP_DESTROY | KV_CAP_CULL | KV_CAP_ATOMIC |
            KV_CAP_PERSISTENT | KV_CAP_SHARED,
    .options = file_options,
    .open = file_open,
    KV__BATCHED_METHODS,
    .ctl_ex = file_ctl,
};
