/* libFuzzer target: DynamoDB's JSON answers as the dynamodb:// store reads
 * them (src/stores/dynamodb.c, jansson): items of GetItem / DeleteItem /
 * Query / Scan / BatchGetItem (expiry, base64 values, counters, hashed
 * names), error types, LastEvaluatedKey cursors. Decoded values must be
 * NUL-terminated, a cursor must read back as the key it came from, and
 * nothing may leak (ASan, LSan). */
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

int kv__ddb_fuzz_answer(const char *data, size_t len, int64_t now);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  (void)kv__ddb_fuzz_answer((const char *)data, size, 1700000000000);
  return 0;
}
