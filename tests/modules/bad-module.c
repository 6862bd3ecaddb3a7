/* A module that loads but whose registration the core must refuse
 * (tests/modules/test-modules.c copies it into a temporary KVIO_MODULE_DIR
 * under the name of a real part's module). KV_BAD_PART is that part's name
 * (the entry point is kv_part_<KV_BAD_PART>_init); the environment variable
 * KVIO_TEST_BAD says how it misbehaves:
 *   close  a methods table without its required `close`
 *   abi    it claims to be built for another kvio version
 *   size   store_size smaller than kv_store_t
 *   none   an entry point that registers nothing (the scheme stays missing) */
#include <stdlib.h>
#include <string.h>

#include "kvio/module.h"
#include "kvio/version.h"

#define KV__CAT(a, b, c) a##b##c
#define KV__ENTRY(part) KV__CAT(kv_part_, part, _init)

static int bad_open(kv_store_t *s, const kv_url_t *url, char *e, size_t n) {
  return 0;
}
static int bad_op(kv_store_t *s, kv_req_t *req) {
  return KV_ENOTSUP;
}

static kv_store_methods_t bad_methods = {
    .version = KV_STORE_METHODS_VERSION,
    .name = "bad",
    .store_size = sizeof(kv_store_t),
    .open = bad_open,
    .close = kv_store_closed,
    .get = bad_op,
    .ttl = bad_op,
    .put = bad_op,
    .del = bad_op,
};

KV_EXTERN int KV__ENTRY(KV_BAD_PART)(kv_module_t *mod);
KV_EXTERN int KV__ENTRY(KV_BAD_PART)(kv_module_t *mod) {
  const char *how = getenv("KVIO_TEST_BAD");
  unsigned version = KV_VERSION_HEX;
  int err;
  if (how == NULL) how = "close";
  if (strcmp(how, "abi") == 0) version += 1;
  if ((err = kv_module_abi(mod, KV_MODULE_ABI, version)) != 0) return err;
  if (strcmp(how, "none") == 0) return 0;
  if (strcmp(how, "close") == 0) bad_methods.close = NULL;
  if (strcmp(how, "size") == 0) bad_methods.store_size = 8;
  return kv_module_add_store(mod, KV_BAD_SCHEME, &bad_methods);
}
