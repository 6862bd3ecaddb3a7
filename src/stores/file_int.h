/* Internals of the file:// store exposed to its fuzz target
 * (tests/fuzz/fuzz-file-format.c): the format's loader and writer. */
#ifndef KVIO_FILE_INT_H
#define KVIO_FILE_INT_H

#include <stddef.h>

/* The file's content in memory (opaque outside file.c). */
typedef struct fdata_s kv__file_data_t;

/* An empty data set to parse into (kv_calloc'ed), or NULL. */
kv__file_data_t *kv__file_data_new(void);
/* Free what it holds, and itself. NULL is accepted. */
void kv__file_data_destroy(kv__file_data_t *d);
/* Parse `n` bytes of a file (path only for messages) into *out, which must
 * be empty. Returns 0, or KV_ECORRUPT / KV_ENOMEM with the reason in msg
 * (a JSON syntax error gives its line, column and byte) and *out empty. */
int kv__file_parse(const char *buf, size_t n, const char *path,
                   kv__file_data_t *out, char *msg, size_t len);
/* Write the document (docs/file.md) to fd, indented by `indent` spaces per
 * level (0: compact). Returns 0, the errno of a failed write, or
 * KV_ENOMEM. */
int kv__file_serialize(int fd, const kv__file_data_t *d, int indent);

#endif
