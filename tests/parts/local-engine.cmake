# Tests of the local stores' shared engine (src/stores/common/): the
# batching tests written once and run per store (tests/stores/
# test-local-engine.c), and the engine-specific tests of disk:// (built into
# the core) and file:// (skipped without the part). sqlite:// and rocksdb://
# have theirs in tests/parts/sqlite.cmake and rocksdb.cmake.
add_executable(test-local-engine
  ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-local-engine.c)
foreach(name test-disk test-file)
  add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/stores/${name}.c)
endforeach()
foreach(t test-local-engine test-disk test-file)
  target_include_directories(${t} PRIVATE ${CMAKE_SOURCE_DIR}/src
    ${CMAKE_CURRENT_SOURCE_DIR} ${LMDB_INCLUDE_DIR})
  target_compile_options(${t} PRIVATE ${KV_WARNINGS})
  target_compile_definitions(${t} PRIVATE ${KV_PART_DEFINITIONS})
  target_link_libraries(${t} PRIVATE kvio_static PkgConfig::CMOCKA
    ${LMDB_LIBRARY} ${KV_PART_LIBS} m)
endforeach()
foreach(t test-disk test-file)
  add_test(NAME ${t} COMMAND ${t})
  set_tests_properties(${t} PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    SKIP_RETURN_CODE 77 LABELS unit)
endforeach()

# local-engine-<label>: the batching tests against one store.
function(kv_local_engine label url)
  add_test(NAME local-engine-${label}
    COMMAND $<TARGET_FILE:test-local-engine> "${url}")
  set_tests_properties(local-engine-${label} PROPERTIES
    TIMEOUT ${KV_TEST_TIMEOUT} SKIP_RETURN_CODE 77 LABELS unit)
endfunction()
kv_local_engine(disk "disk://@TMP@/db")
kv_local_engine(disk-nosync "disk://@TMP@/db?sync=none")
if(KV_HAVE_SQLITE)
  kv_local_engine(sqlite "sqlite://@TMP@/kv.db")
endif()
if(KV_HAVE_ROCKSDB)
  kv_local_engine(rocksdb "rocksdb://@TMP@/db")
endif()
if(KV_HAVE_FILE)
  kv_local_engine(file "file://@TMP@/store.json")
  kv_local_engine(file-nowatch "file://@TMP@/store.json?watch=0&sync=none")
endif()
