/* test-conformance URL [FILTER]: run every conformance case against the
 * store named by URL. @TMP@ in the URL is replaced by a fresh temporary
 * directory for each case. FILTER is a cmocka test-name pattern ("c3*"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance.h"

const char *conf_url;

static void print_caps(unsigned caps) {
  static const struct {
    unsigned bit;
    const char *name;
  } bits[] = {{KV_CAP_ENUMERATE, "enumerate"},
              {KV_CAP_DESTROY, "destroy"},
              {KV_CAP_CULL, "cull"},
              {KV_CAP_ATOMIC, "atomic"},
              {KV_CAP_PERSISTENT, "persistent"},
              {KV_CAP_SHARED, "shared"}};
  size_t i;
  int first = 1;

  for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
    if (caps & bits[i].bit) {
      printf("%s%s", first ? "" : ",", bits[i].name);
      first = 0;
    }
  }
  printf("%s\n", first ? "(none)" : "");
}

/* Open the store once up front, so that a URL nobody can open is one clear
 * error rather than a failure per case. */
static int probe(void) {
  void *state = NULL;
  conf_t *fx;

  if (conf_setup(&state) != 0) return -1;
  fx = state;
  printf("[ STORE    ] %s: %s, caps ", conf_url, kv_store_name(fx->store));
  print_caps(fx->caps);
  if (fx->max_entries > 0)
    printf("[ STORE    ] bounded: max_entries=%lld\n",
           (long long)fx->max_entries);
  fflush(stdout);
  return conf_teardown(&state);
}

int main(int argc, char **argv) {
#define CONF_ENTRY(name) \
  cmocka_unit_test_setup_teardown(name, conf_setup, conf_teardown),
  static const struct CMUnitTest cases[] = {CONF_CASES(CONF_ENTRY)};
#undef CONF_ENTRY
  char group[512];

  if (argc < 2 || argc > 3 || strcmp(argv[1], "--help") == 0) {
    fprintf(stderr,
            "usage: %s URL [FILTER]\n"
            "  runs the kvio conformance suite against the store at URL;\n"
            "  @TMP@ in URL becomes a fresh temporary directory per case;\n"
            "  FILTER is a cmocka name pattern, e.g. 'c2*'\n",
            argv[0]);
    return 2;
  }
  conf_url = argv[1];
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (probe() != 0) {
    fprintf(stderr, "test-conformance: cannot open %s\n", conf_url);
    return 1;
  }
  if (argc == 3) cmocka_set_test_filter(argv[2]);
  snprintf(group, sizeof(group), "conformance %s", conf_url);
  return cmocka_run_group_tests_name(group, cases, NULL, NULL) != 0;
}
