/* libFuzzer target: store URLs and their options.
 *
 * Every input is parsed as a URL (kv__url_parse) and, when it parses, its
 * parts are checked for consistency; then it is opened for real as a
 * memory:// or null:// URL (the query part fuzzes option parsing), closed,
 * and the loop must end with nothing left on it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void check_parsed(const kv_url_t *u) {
  if (u->scheme == NULL || u->target == NULL) abort();
  for (const char *p = u->scheme; *p; p++)
    if (*p >= 'A' && *p <= 'Z') abort(); /* schemes are lower-cased */
  if (u->port != -1 && (u->port < 1 || u->port > 65535)) abort();
  for (size_t i = 0; i < u->nparams; i++) {
    if (u->params[i].name == NULL || u->params[i].value == NULL) abort();
    if (u->params[i].name[0] == '\0') abort();
    (void)kv_url_param(u, u->params[i].name);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 16);
  char err[256];
  kv_url_t u;
  uv_loop_t loop;
  kv_store_t *store = NULL;
  if (s == NULL) return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  if (strlen(s) != size) { /* an embedded NUL: not a C string URL */
    free(s);
    return 0;
  }
  if (kv__url_parse(s, &u, err, sizeof err) == 0) {
    check_parsed(&u);
    kv__url_free(&u);
  } else if (err[0] == '\0') {
    abort(); /* every failure explains itself */
  }
  /* Open it for real on the stores that touch nothing outside memory. */
  if (strncmp(s, "memory://", 9) == 0 || strncmp(s, "null://", 7) == 0) {
    uv_loop_init(&loop);
    if (kv_open_ex(&loop, s, &store, err, sizeof err) == 0) {
      kv_store_close(store, NULL);
      uv_run(&loop, UV_RUN_DEFAULT);
    } else if (store != NULL || err[0] == '\0') {
      abort();
    }
    if (uv_loop_close(&loop) != 0) abort();
  }
  free(s);
  return 0;
}
