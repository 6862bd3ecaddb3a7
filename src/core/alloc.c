/* The replaceable allocator (uv_replace_allocator's shape) and version. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static struct {
  kv_malloc_func malloc_;
  kv_realloc_func realloc_;
  kv_calloc_func calloc_;
  kv_free_func free_;
} allocator = {malloc, realloc, calloc, free};

int kv_replace_allocator(kv_malloc_func m, kv_realloc_func r, kv_calloc_func c,
                         kv_free_func f) {
  if (m == NULL || r == NULL || c == NULL || f == NULL) return KV_EINVAL;
  allocator.malloc_ = m;
  allocator.realloc_ = r;
  allocator.calloc_ = c;
  allocator.free_ = f;
  return 0;
}

void *kv_malloc(size_t size) {
  return allocator.malloc_(size ? size : 1);
}

void *kv_realloc(void *ptr, size_t size) {
  return allocator.realloc_(ptr, size ? size : 1);
}

void *kv_calloc(size_t count, size_t size) {
  return allocator.calloc_(count ? count : 1, size ? size : 1);
}

void kv_free(void *ptr) {
  if (ptr != NULL) allocator.free_(ptr);
}

char *kv_strndup(const char *s, size_t len) {
  char *p = kv_malloc(len + 1);
  if (p == NULL) return NULL;
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

unsigned kv_version(void) {
  return KV_VERSION_HEX;
}

#define KV__STR2(x) #x
#define KV__STR(x) KV__STR2(x)
const char *kv_version_string(void) {
  return KV__STR(KV_VERSION_MAJOR) "." KV__STR(KV_VERSION_MINOR) "." KV__STR(
      KV_VERSION_PATCH);
}
