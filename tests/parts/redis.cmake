# Tests of the Redis store, each against a throwaway redis-server started by
# tests/servers/with-redis.sh (skipped, exit 77, when redis-server is missing
# outside CI): the conformance suite over TCP, TLS, a unix socket and an ACL
# user, and the store's own tests (plain, and the TLS part under --tls).
if(KV_HAVE_REDIS)
  set(KV_WITH_REDIS ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis.sh)
  if(COMMAND kv_conformance)
    kv_conformance(redis "redis://127.0.0.1:@PORT@/0" ${KV_WITH_REDIS})
    kv_conformance(redis-tls "rediss://127.0.0.1:@PORT@/0?ca=@CA@"
      ${KV_WITH_REDIS} --tls)
    kv_conformance(redis-unix "redis+unix://@SOCK@?db=1" ${KV_WITH_REDIS}
      --unix)
    kv_conformance(redis-acl "redis://kvuser:kvpass@127.0.0.1:@PORT@/0"
      ${KV_WITH_REDIS} --acl)
    kv_conformance(redis-prefix "valkey://127.0.0.1:@PORT@/2?prefix=app1:"
      ${KV_WITH_REDIS})
    kv_conformance(redis-pool "redis://127.0.0.1:@PORT@/3?connections=4"
      ${KV_WITH_REDIS})
  endif()
  add_executable(test-redis ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-redis.c)
  target_include_directories(test-redis PRIVATE ${CMAKE_SOURCE_DIR}/src
    ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(test-redis PRIVATE ${KV_WARNINGS})
  target_compile_definitions(test-redis PRIVATE ${KV_PART_DEFINITIONS})
  target_link_libraries(test-redis PRIVATE kvio_static PkgConfig::CMOCKA
    ${KV_PART_LIBS} m)
  add_test(NAME test-redis COMMAND ${KV_WITH_REDIS} $<TARGET_FILE:test-redis>)
  add_test(NAME test-redis-tls
    COMMAND ${KV_WITH_REDIS} --tls $<TARGET_FILE:test-redis>)
  set_tests_properties(test-redis test-redis-tls PROPERTIES
    TIMEOUT ${KV_TEST_TIMEOUT} SKIP_RETURN_CODE 77 LABELS unit)
  # Pub/Sub, transactions, leases, the pool, the raw request rules, URL
  # forms (tests/stores/test-redis-client.c); under --tls: redis+tls:// and
  # TLS over a unix socket.
  add_executable(test-redis-client
    ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-redis-client.c)
  target_compile_options(test-redis-client PRIVATE ${KV_WARNINGS})
  target_link_libraries(test-redis-client PRIVATE kvio_static
    PkgConfig::CMOCKA ${KV_PART_LIBS} m)
  add_test(NAME test-redis-client
    COMMAND ${KV_WITH_REDIS} $<TARGET_FILE:test-redis-client>)
  add_test(NAME test-redis-client-tls
    COMMAND ${KV_WITH_REDIS} --tls $<TARGET_FILE:test-redis-client>)
  set_tests_properties(test-redis-client test-redis-client-tls PROPERTIES
    TIMEOUT ${KV_TEST_TIMEOUT} SKIP_RETURN_CODE 77 LABELS unit)
endif()
# The CLI's publish / subscribe / redis commands against a real server.
if(KV_HAVE_REDIS AND TARGET kvio_cli)
  add_test(NAME cli-redis COMMAND ${KV_WITH_REDIS} bash
    ${CMAKE_CURRENT_SOURCE_DIR}/cli/redis.sh $<TARGET_FILE:kvio_cli>)
  set_tests_properties(cli-redis PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    SKIP_RETURN_CODE 77 LABELS cli)
endif()
# examples/redis-swapcase.c twice: foo goes "default VALUE" -> "DEFAULT value"
# -> "default VALUE".
if(KV_HAVE_REDIS AND TARGET example-redis-swapcase)
  add_test(NAME example-redis-swapcase COMMAND ${KV_WITH_REDIS} bash -c
    "u=redis://127.0.0.1:$KV_REDIS_PORT/0; redis-cli -p $KV_REDIS_PORT DEL foo >/dev/null && $<TARGET_FILE:example-redis-swapcase> $u && $<TARGET_FILE:example-redis-swapcase> $u && test \"$(redis-cli -p $KV_REDIS_PORT GET foo)\" = 'default VALUE' && echo swapcase-ok")
  set_tests_properties(example-redis-swapcase PROPERTIES
    TIMEOUT ${KV_TEST_TIMEOUT} SKIP_RETURN_CODE 77 LABELS unit
    PASS_REGULAR_EXPRESSION "foo: \"default VALUE\" -> \"DEFAULT value\".*foo: \"DEFAULT value\" -> \"default VALUE\".*swapcase-ok")
endif()
