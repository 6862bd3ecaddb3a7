/* The format of the file:// store (src/stores/file_format.c): the data in
 * memory, the loader and the writer. file.c (the store) and the fuzz target
 * (tests/fuzz/fuzz-file-format.c) use it; docs/file.md describes the
 * format. */
#ifndef KVIO_FILE_INT_H
#define KVIO_FILE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define KV__FILE_FORMAT "kvio-file"
#define KV__FILE_VERSION 1
#define KV__FILE_NAME_SHOW 64 /* bytes of a name quoted in a message */

/* The file's content, parsed: a hash table of collections, each a hash
 * table of entries with the key and value inline. Both tables also keep
 * insertion order (a doubly linked list), the order they are written in, so
 * a file keeps its order across rewrites and an overwritten key keeps its
 * place. */
typedef struct fnode_s fnode_t;
struct fnode_s {
  fnode_t *hnext; /* hash chain */
  fnode_t *prev;  /* insertion order */
  fnode_t *next;
  const char *name; /* NUL-terminated, len bytes */
  uint32_t len;
  uint32_t hash;
};

typedef struct ftable_s {
  fnode_t **buckets;
  size_t mask; /* buckets - 1, a power of two minus one */
  size_t count;
  fnode_t *head;
  fnode_t *tail;
} ftable_t;

typedef struct fent_s {
  fnode_t node;       /* first: a node is its entry */
  int64_t expires_at; /* Unix ms, 0 = never */
  size_t vlen;
  int text;    /* the value is UTF-8 without NUL: written as a string */
  int json;    /* an aiokv file's value that was JSON other than a string:
                  its text is that JSON, written back as it is */
  char data[]; /* key NUL value NUL */
} fent_t;

typedef struct fcoll_s {
  fnode_t node; /* first: a node is its collection */
  ftable_t entries;
  char name[];
} fcoll_t;

typedef struct fdata_s {
  ftable_t colls;
  json_t *extra; /* other top-level members, kept as they were; or NULL */
  /* An aiokv file (a plain JSON object of key → value): the collection its
   * entries are in, kv_malloc'ed; NULL for a kvio file. */
  char *plain_coll;
} fdata_t;

#define ENT_VALUE(e) ((e)->data + (e)->node.len + 1)

typedef fdata_t kv__file_data_t;

/* A data set to parse into (kv_calloc'ed, empty), or NULL. */
kv__file_data_t *kv__file_data_new(void);
/* Free what it holds, and itself. NULL is accepted. */
void kv__file_data_destroy(kv__file_data_t *d);
/* Free what it holds; it is empty afterwards. */
void kv__file_data_free(fdata_t *d);
/* Parse `n` bytes of a file (path only for messages) into *out, which must
 * be empty. A JSON object without "format": "kvio-file" is an aiokv file:
 * its members are the entries of collection `plain_coll` (a string value
 * reads as its text, any other value as its compact JSON text). Returns 0,
 * or KV_ECORRUPT / KV_ENOMEM with the reason in msg (a JSON syntax error
 * gives its line, column and byte) and *out empty. */
int kv__file_parse(const char *buf, size_t n, const char *path,
                   const char *plain_coll, kv__file_data_t *out, char *msg,
                   size_t len);
/* Whether the data can be written as an aiokv file (it was read from one,
 * and holds only its collection, without expiries or binary values). */
int kv__file_is_plain(const kv__file_data_t *d);
/* Write the document (docs/file.md) to fd, indented by `indent` spaces per
 * level (0: compact): an aiokv file while kv__file_is_plain, else the kvio
 * format. Returns 0, the errno of a failed write, or KV_ENOMEM. */
int kv__file_serialize(int fd, const kv__file_data_t *d, int indent);

/* The tables. */
uint32_t kv__file_hash(const char *p, size_t n);
int kv__file_table_init(ftable_t *t);
fnode_t *kv__file_table_find(const ftable_t *t, const char *name, size_t len,
                             uint32_t h);
/* Add a node (not present) at the end of the order. */
void kv__file_table_link(ftable_t *t, fnode_t *n);
void kv__file_table_unlink(ftable_t *t, fnode_t *n);
/* Put `n` where `old` was, in the chain and in the order. */
void kv__file_table_replace(ftable_t *t, fnode_t *old, fnode_t *n);
/* Whether a value is written as a JSON string (UTF-8 without NUL). */
int kv__file_is_text(const char *p, size_t len);
fent_t *kv__file_ent_new(const char *key, size_t klen, uint32_t h,
                         const char *v, size_t vlen, int64_t expires_at,
                         int text);
fcoll_t *kv__file_coll_new(const char *name, size_t len);
void kv__file_coll_free(fcoll_t *c);
/* The entry for a key (live or expired), or NULL. */
fent_t *kv__file_ent_find(const fcoll_t *c, const char *key, size_t klen);

/* printf into msg (may be NULL); returns err. */
int kv__file_msg(char *msg, size_t len, int err, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif
