# Tests of the rocksdb:// store: the conformance suite and its unit tests.
if(KV_HAVE_ROCKSDB)
  if(COMMAND kv_conformance)
    kv_conformance(rocksdb "rocksdb://@TMP@/db")
    kv_conformance(rocksdb-nosync "rocksdb://@TMP@/db?sync=false")
  endif()
  add_executable(test-rocksdb ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-rocksdb.c)
  target_include_directories(test-rocksdb PRIVATE ${CMAKE_SOURCE_DIR}/src
    ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(test-rocksdb PRIVATE ${KV_WARNINGS})
  target_compile_definitions(test-rocksdb PRIVATE ${KV_PART_DEFINITIONS})
  target_link_libraries(test-rocksdb PRIVATE kvio_static PkgConfig::CMOCKA
    ${KV_PART_LIBS} m)
  add_test(NAME test-rocksdb COMMAND test-rocksdb)
  set_tests_properties(test-rocksdb PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    SKIP_RETURN_CODE 77 LABELS unit)
endif()
if(TARGET bench-rocksdb-bare AND KV_HAVE_ROCKSDB)
  target_link_libraries(bench-rocksdb-bare PRIVATE kv_rocksdb_lib)
endif()
