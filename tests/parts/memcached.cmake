# Tests of the Memcached store, against throwaway memcached processes started
# by tests/servers/with-memcached.sh (skipped, exit 77, when memcached is
# missing outside CI): the conformance suite on one server, on one server
# with a fresh key prefix per case, and on two servers; and the store's own
# tests (tests/stores/test-memcached.c), which also start and kill servers
# of their own.
if(KV_HAVE_MEMCACHED)
  set(KV_WITH_MEMCACHED ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-memcached.sh)
  if(COMMAND kv_conformance)
    kv_conformance(memcached "memcached://127.0.0.1:@PORT@"
      ${KV_WITH_MEMCACHED})
    kv_conformance(memcached-prefix "memcached://127.0.0.1:@PORT@?prefix=@TMP@"
      ${KV_WITH_MEMCACHED})
    # Two servers: "host:port,host:port" in the authority needs the core URL
    # parser to accept a host list; ?servers= works with any parser.
    kv_conformance(memcached-two
      "memcached://127.0.0.1:@PORT1@?servers=127.0.0.1:@PORT2@"
      ${KV_WITH_MEMCACHED} --servers 2)
  endif()
  add_executable(test-memcached ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-memcached.c)
  target_include_directories(test-memcached PRIVATE ${CMAKE_SOURCE_DIR}/src
    ${CMAKE_SOURCE_DIR}/src/stores ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(test-memcached PRIVATE ${KV_WARNINGS})
  target_compile_definitions(test-memcached PRIVATE ${KV_PART_DEFINITIONS})
  target_link_libraries(test-memcached PRIVATE kvio_static PkgConfig::CMOCKA
    ${KV_PART_LIBS} m)
  add_test(NAME test-memcached COMMAND ${KV_WITH_MEMCACHED} --servers 2
    $<TARGET_FILE:test-memcached>)
  set_tests_properties(test-memcached PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    SKIP_RETURN_CODE 77 LABELS unit)
endif()
