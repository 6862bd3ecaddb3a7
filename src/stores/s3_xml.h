/* S3's XML answers, parsed with expat (src/stores/s3_xml.c). */
#ifndef KVIO_STORES_S3_XML_H
#define KVIO_STORES_S3_XML_H

#include <stddef.h>

typedef struct kv_s3_list_s {
  char **keys; /* Contents/Key */
  size_t nkeys;
  char **prefixes; /* CommonPrefixes/Prefix */
  size_t nprefixes;
  int truncated;
  char *next_token; /* NextContinuationToken, or NULL */
  size_t nerrors;   /* DeleteResult/Error */
  char *error_code; /* Error/Code, or the first DeleteResult/Error/Code */
  char *error_message;
} kv_s3_list_t;

/* Parse a ListBucketResult, a DeleteResult or an Error document. 0, or
 * KV_EPROTO (not well-formed XML) / KV_ENOMEM. `out` is filled as far as
 * the parse got; release it with kv__s3_list_free either way. */
int kv__s3_parse(const char *xml, size_t len, kv_s3_list_t *out);
void kv__s3_list_free(kv_s3_list_t *l);

#endif
