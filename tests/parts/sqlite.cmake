# Tests of the sqlite:// store: the conformance suite and its unit tests.
if(KV_HAVE_SQLITE)
  if(COMMAND kv_conformance)
    kv_conformance(sqlite "sqlite://@TMP@/kv.db")
    kv_conformance(sqlite-sync-normal "sqlite://@TMP@/kv.db?sync=normal")
  endif()
  add_executable(test-sqlite ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-sqlite.c)
  target_include_directories(test-sqlite PRIVATE ${CMAKE_SOURCE_DIR}/src
    ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(test-sqlite PRIVATE ${KV_WARNINGS})
  target_compile_definitions(test-sqlite PRIVATE ${KV_PART_DEFINITIONS})
  target_link_libraries(test-sqlite PRIVATE kvio_static PkgConfig::CMOCKA
    ${KV_PART_LIBS} m)
  add_test(NAME test-sqlite COMMAND test-sqlite)
  set_tests_properties(test-sqlite PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    SKIP_RETURN_CODE 77 LABELS unit)
endif()
if(TARGET bench-sqlite-bare AND KV_HAVE_SQLITE)
  target_link_libraries(bench-sqlite-bare PRIVATE PkgConfig::SQLITE3)
endif()
