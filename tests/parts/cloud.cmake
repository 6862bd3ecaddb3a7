# Tests of the cloud stores, each against a throwaway local server started by
# tests/servers/with-cloud.sh (s3rver / dynalite from npm; skipped, exit 77,
# when node is missing outside CI).
if(KV_HAVE_CLOUD)
  set(KV_WITH_CLOUD bash ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-cloud.sh)
  if(COMMAND kv_conformance)
    kv_conformance(s3 "s3://kvio-test?endpoint=@ENDPOINT@&create=1"
      ${KV_WITH_CLOUD} s3)
    kv_conformance(s3-prefix
      "s3://kvio-test/app1/data?endpoint=@ENDPOINT@&create=1&region=us-east-1"
      ${KV_WITH_CLOUD} s3)
    kv_conformance(dynamodb
      "dynamodb://kvio_test?endpoint=@ENDPOINT@&create=1" ${KV_WITH_CLOUD}
      dynamodb)
  endif()
endif()

if(KV_HAVE_CLOUD)
  add_executable(test-cloud ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-cloud.c)
  target_compile_options(test-cloud PRIVATE ${KV_WARNINGS})
  target_link_libraries(test-cloud PRIVATE kvio_static PkgConfig::CMOCKA
    ${KV_PART_LIBS} m)
  add_test(NAME test-s3 COMMAND ${KV_WITH_CLOUD} s3 $<TARGET_FILE:test-cloud> s3)
  add_test(NAME test-dynamodb
    COMMAND ${KV_WITH_CLOUD} dynamodb $<TARGET_FILE:test-cloud> dynamodb)
  add_test(NAME test-s3-throttle
    COMMAND ${KV_WITH_CLOUD} s3 --proxy $<TARGET_FILE:test-cloud> s3 throttle)
  add_test(NAME test-dynamodb-throttle COMMAND ${KV_WITH_CLOUD} dynamodb --proxy
    $<TARGET_FILE:test-cloud> dynamodb throttle)
  set_tests_properties(test-s3 test-dynamodb test-s3-throttle
    test-dynamodb-throttle PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    SKIP_RETURN_CODE 77 LABELS unit)
endif()
if(TARGET bench-cloud-bare AND KV_HAVE_CLOUD)
  target_link_libraries(bench-cloud-bare PRIVATE PkgConfig::LIBCURL)
endif()
