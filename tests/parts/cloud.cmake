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
