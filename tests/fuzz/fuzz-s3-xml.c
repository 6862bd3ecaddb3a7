/* libFuzzer target: S3's XML answers (src/stores/s3_xml.c, expat):
 * ListBucketResult pages, DeleteResult and Error documents. Whatever the
 * bytes, the parse returns 0 / KV_EPROTO / KV_ENOMEM, every collected
 * string is NUL-terminated and the result frees cleanly (ASan, LSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "stores/s3_xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kv_s3_list_t l;
  int rc = kv__s3_parse((const char *)data, size, &l);
  if (rc != 0 && rc != KV_EPROTO && rc != KV_ENOMEM) abort();
  for (size_t i = 0; i < l.nkeys; i++)
    if (l.keys[i] == NULL || strlen(l.keys[i]) > size) abort();
  for (size_t i = 0; i < l.nprefixes; i++)
    if (l.prefixes[i] == NULL || strlen(l.prefixes[i]) > size) abort();
  if (l.next_token && strlen(l.next_token) > size) abort();
  kv__s3_list_free(&l);
  return 0;
}
