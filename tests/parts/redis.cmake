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
    kv_conformance(redis-cluster "redis+cluster://@SEEDS@"
      ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-cluster.sh)
    kv_conformance(redis-cluster-tls "rediss+cluster://@SEEDS@?ca=@CA@"
      ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-cluster.sh --tls)
    kv_conformance(redis-sentinel "redis+sentinel://@SENTINELS@/kvprimary?db=3"
      ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-sentinel.sh)
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
  # redis+cluster://: a 3-primary cluster (with one replica each for the
  # failover test) started by with-redis-cluster.sh.
  set(KV_WITH_CLUSTER ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-cluster.sh)
  add_executable(test-redis-cluster
    ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-redis-cluster.c)
  target_compile_options(test-redis-cluster PRIVATE ${KV_WARNINGS})
  target_link_libraries(test-redis-cluster PRIVATE kvio_static
    PkgConfig::CMOCKA ${KV_PART_LIBS} m)
  add_test(NAME test-redis-cluster
    COMMAND ${KV_WITH_CLUSTER} $<TARGET_FILE:test-redis-cluster>)
  add_test(NAME test-redis-cluster-failover
    COMMAND ${KV_WITH_CLUSTER} --replicas 1
    $<TARGET_FILE:test-redis-cluster> failover)
  set_tests_properties(test-redis-cluster test-redis-cluster-failover
    PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT} SKIP_RETURN_CODE 77 LABELS unit)
  # redis+sentinel://: a primary, a replica and 3 sentinels started by
  # with-redis-sentinel.sh; each failover test gets a fresh set.
  set(KV_WITH_SENTINEL ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-sentinel.sh)
  add_executable(test-redis-sentinel
    ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-redis-sentinel.c)
  target_compile_options(test-redis-sentinel PRIVATE ${KV_WARNINGS})
  target_link_libraries(test-redis-sentinel PRIVATE kvio_static
    PkgConfig::CMOCKA ${KV_PART_LIBS} m)
  add_test(NAME test-redis-sentinel
    COMMAND ${KV_WITH_SENTINEL} $<TARGET_FILE:test-redis-sentinel>)
  add_test(NAME test-redis-sentinel-kill
    COMMAND ${KV_WITH_SENTINEL} $<TARGET_FILE:test-redis-sentinel> kill)
  add_test(NAME test-redis-sentinel-failover
    COMMAND ${KV_WITH_SENTINEL} $<TARGET_FILE:test-redis-sentinel> manual)
  set_tests_properties(test-redis-sentinel test-redis-sentinel-kill
    test-redis-sentinel-failover PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    SKIP_RETURN_CODE 77 LABELS unit)
endif()
