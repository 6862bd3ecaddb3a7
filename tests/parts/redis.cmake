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
    kv_conformance(redis-cluster "redis+cluster://@SEEDS@"
      ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-cluster.sh)
    kv_conformance(redis-cluster-keyslots "redis+cluster://@SEEDS@?slots=key"
      ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-cluster.sh)
    kv_conformance(redis-cluster-tls "rediss+cluster://@SEEDS@?ca=@CA@"
      ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-cluster.sh --tls)
    kv_conformance(redis-sentinel "redis+sentinel://@SENTINELS@/kvprimary?db=3"
      ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-sentinel.sh)
    kv_conformance(redis-sentinel-tls
      "rediss+sentinel://@SENTINELS@/kvprimary?db=3&ca=@CA@"
      ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-sentinel.sh --tls)
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
  add_test(NAME cli-redis-cluster
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-cluster.sh bash
    ${CMAKE_CURRENT_SOURCE_DIR}/cli/redis.sh $<TARGET_FILE:kvio_cli> cluster)
  add_test(NAME cli-redis-sentinel
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-redis-sentinel.sh bash
    ${CMAKE_CURRENT_SOURCE_DIR}/cli/redis.sh $<TARGET_FILE:kvio_cli> sentinel)
  set_tests_properties(cli-redis cli-redis-cluster cli-redis-sentinel
    PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT} SKIP_RETURN_CODE 77 LABELS cli)
endif()
# examples/redis-swapcase.c twice: foo goes "default VALUE" -> "DEFAULT value"
# -> "default VALUE".
if(KV_HAVE_REDIS AND TARGET example-redis-swapcase)
  add_test(NAME example-redis-swapcase COMMAND ${KV_WITH_REDIS} bash -c
    "u=redis://127.0.0.1:$KV_REDIS_PORT/0; redis-cli -p $KV_REDIS_PORT DEL foo >/dev/null && $<TARGET_FILE:example-redis-swapcase> $u && $<TARGET_FILE:example-redis-swapcase> $u && test \"$(redis-cli -p $KV_REDIS_PORT GET foo)\" = 'default VALUE' && echo swapcase-ok")
  set_tests_properties(example-redis-swapcase PROPERTIES
    TIMEOUT ${KV_TEST_TIMEOUT} SKIP_RETURN_CODE 77 LABELS unit
    PASS_REGULAR_EXPRESSION "foo: \"default VALUE\" -> \"DEFAULT value\".*foo: \"DEFAULT value\" -> \"default VALUE\".*swapcase-ok")
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
  # under --tls: a wrong CA fails with the certificate error
  add_test(NAME test-redis-sentinel-tls
    COMMAND ${KV_WITH_SENTINEL} --tls $<TARGET_FILE:test-redis-sentinel>)
  set_tests_properties(test-redis-sentinel test-redis-sentinel-kill
    test-redis-sentinel-failover test-redis-sentinel-tls PROPERTIES
    TIMEOUT ${KV_TEST_TIMEOUT} SKIP_RETURN_CODE 77 LABELS unit)
  # Raw commands, Pub/Sub and transactions over both (test-redis-ha.c):
  # each failover gets a fresh server set.
  add_executable(test-redis-ha ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-redis-ha.c)
  target_compile_options(test-redis-ha PRIVATE ${KV_WARNINGS})
  target_link_libraries(test-redis-ha PRIVATE kvio_static
    PkgConfig::CMOCKA ${KV_PART_LIBS} m)
  add_test(NAME test-redis-ha-cluster
    COMMAND ${KV_WITH_CLUSTER} $<TARGET_FILE:test-redis-ha> cluster)
  add_test(NAME test-redis-ha-cluster-failover
    COMMAND ${KV_WITH_CLUSTER} --replicas 1 $<TARGET_FILE:test-redis-ha>
    cluster-failover)
  set(kv_ha_tests test-redis-ha-cluster test-redis-ha-cluster-failover)
  foreach(mode sentinel sentinel-kill sentinel-switch sentinel-switch-sub)
    add_test(NAME test-redis-ha-${mode}
      COMMAND ${KV_WITH_SENTINEL} $<TARGET_FILE:test-redis-ha> ${mode})
    list(APPEND kv_ha_tests test-redis-ha-${mode})
  endforeach()
  set_tests_properties(${kv_ha_tests} PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    SKIP_RETURN_CODE 77 LABELS unit)
endif()
