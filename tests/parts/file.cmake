# Tests of the file:// store (cmake/parts/file.cmake). Its unit tests are
# tests/stores/test-file.c (tests/parts/local-engine.cmake); the crash
# and two-process tests are in tests/parts/crash.cmake.
if(KV_HAVE_FILE)
  kv_conformance(file "file://@TMP@/store.json")
  kv_conformance(file-nowatch "file://@TMP@/store.json?watch=0&sync=none")
endif()

# The naive reference loop (bench/bench-file-naive.c) parses and dumps JSON.
if(TARGET bench-file-naive)
  target_link_libraries(bench-file-naive PRIVATE PkgConfig::JANSSON)
endif()
