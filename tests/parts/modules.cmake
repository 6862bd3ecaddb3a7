# Tests of the parts loaded on demand (tests/modules/; docs/design.md,
# "Parts and modules"). They link the shared libkvio, as applications do.
#
#   modules      tests/modules/test-modules.c: nothing loaded for the core's
#                stores, registration checks, missing / broken / refused
#                modules (tests/modules/bad-module.c), threads, shims
#   cli-modules  tests/modules/cli-maps.sh: what the kvio tool maps (LD_DEBUG)
#   modules-redis  tests/modules/test-modules-redis.c: the redis shims
#   conformance-module-*  the conformance suite through modules
if(KV_MODULES AND KV_HAVE_SQLITE AND KV_HAVE_ROCKSDB AND KV_HAVE_MEMCACHED
    AND KV_HAVE_FILE AND KV_HAVE_COMPRESSION AND KV_HAVE_WRAPPERS)
  add_library(test-bad-module MODULE
    ${CMAKE_CURRENT_SOURCE_DIR}/modules/bad-module.c)
  set_target_properties(test-bad-module PROPERTIES PREFIX ""
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  target_compile_options(test-bad-module PRIVATE ${KV_WARNINGS})
  target_compile_definitions(test-bad-module PRIVATE KV_BAD_PART=memcached
    KV_BAD_SCHEME="memcached")
  target_link_libraries(test-bad-module PRIVATE kvio)

  add_executable(test-modules ${CMAKE_CURRENT_SOURCE_DIR}/modules/test-modules.c)
  target_compile_options(test-modules PRIVATE ${KV_WARNINGS})
  target_compile_definitions(test-modules PRIVATE
    KV_TEST_BAD_MODULE="$<TARGET_FILE:test-bad-module>")
  target_link_libraries(test-modules PRIVATE kvio PkgConfig::CMOCKA
    Threads::Threads)
  add_dependencies(test-modules test-bad-module kvio_modules)
  add_test(NAME modules COMMAND test-modules)
  set_tests_properties(modules PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    LABELS "unit;modules")
endif()
if(KV_MODULES AND TARGET kvio_cli AND KV_HAVE_SQLITE AND KV_HAVE_COMPRESSION)
  add_test(NAME cli-modules COMMAND bash
    ${CMAKE_CURRENT_SOURCE_DIR}/modules/cli-maps.sh $<TARGET_FILE:kvio_cli>)
  set_tests_properties(cli-modules PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    LABELS "cli;modules")
endif()

# The conformance suite once more, linked with the shared libkvio, on stores
# and wrappers that live in modules (the other conformance runs link
# libkvio.a, where every part is linked in).
if(KV_MODULES AND KV_CONFORMANCE_SOURCES AND KV_HAVE_SQLITE AND KV_HAVE_FILE
    AND KV_HAVE_COMPRESSION AND KV_HAVE_WRAPPERS)
  add_executable(test-conformance-shared ${KV_CONFORMANCE_SOURCES})
  target_include_directories(test-conformance-shared PRIVATE
    ${CMAKE_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(test-conformance-shared PRIVATE ${KV_WARNINGS})
  target_link_libraries(test-conformance-shared PRIVATE kvio PkgConfig::CMOCKA m)
  add_dependencies(test-conformance-shared kvio_modules)
  foreach(pair "sqlite=sqlite://@TMP@/db.sqlite" "file=file://@TMP@/kv.json"
      "encryption-compression=wrap:///encryption:key=cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=|compression:min_size=1@memory://")
    string(FIND "${pair}" "=" eq)
    string(SUBSTRING "${pair}" 0 ${eq} label)
    math(EXPR eq "${eq} + 1")
    string(SUBSTRING "${pair}" ${eq} -1 url)
    add_test(NAME conformance-module-${label}
      COMMAND test-conformance-shared "${url}")
    set_tests_properties(conformance-module-${label} PROPERTIES
      TIMEOUT ${KV_TEST_TIMEOUT} SKIP_RETURN_CODE 77
      LABELS "conformance;modules")
  endforeach()
endif()

# The shims of kvio/redis.h through the shared libkvio, against a throwaway
# redis-server (tests/servers/with-redis.sh).
if(KV_MODULES AND KV_HAVE_REDIS)
  add_executable(test-modules-redis
    ${CMAKE_CURRENT_SOURCE_DIR}/modules/test-modules-redis.c)
  target_compile_options(test-modules-redis PRIVATE ${KV_WARNINGS})
  target_link_libraries(test-modules-redis PRIVATE kvio)
  add_dependencies(test-modules-redis kvio_modules)
  add_test(NAME modules-redis COMMAND
    ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis.sh
    $<TARGET_FILE:test-modules-redis> "redis://127.0.0.1:@PORT@/0")
  set_tests_properties(modules-redis PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    SKIP_RETURN_CODE 77 LABELS "modules;redis")
endif()
