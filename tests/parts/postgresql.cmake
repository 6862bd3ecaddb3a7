# Tests of the postgresql:// store: the conformance suite and the store's own
# tests, each against a throwaway cluster started by
# tests/servers/with-postgres.sh (exit 77, skipped, without the PostgreSQL
# server binaries unless CI=true).
if(KV_HAVE_POSTGRESQL)
  set(KV_PG_LAUNCHER bash ${CMAKE_CURRENT_SOURCE_DIR}/servers/with-postgres.sh)
  if(COMMAND kv_conformance)
    kv_conformance(postgresql
      "postgresql://kv:kvpass@127.0.0.1:@PORT@/kvtest?table=kv"
      ${KV_PG_LAUNCHER})
  endif()
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-postgresql.c)
    add_executable(test-postgresql
      ${CMAKE_CURRENT_SOURCE_DIR}/stores/test-postgresql.c)
    target_include_directories(test-postgresql PRIVATE ${CMAKE_SOURCE_DIR}/src
      ${CMAKE_CURRENT_SOURCE_DIR})
    target_compile_options(test-postgresql PRIVATE ${KV_WARNINGS})
    target_compile_definitions(test-postgresql PRIVATE ${KV_PART_DEFINITIONS})
    target_link_libraries(test-postgresql PRIVATE kvio_static
      PkgConfig::CMOCKA ${KV_PART_LIBS} m)
    add_test(NAME test-postgresql COMMAND ${KV_PG_LAUNCHER}
      $<TARGET_FILE:test-postgresql> @URL@ @RESTART@ @STOP@ @START@)
    set_tests_properties(test-postgresql PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
      SKIP_RETURN_CODE 77 LABELS unit)
  endif()
endif()
if(TARGET bench-pg-bare AND KV_HAVE_POSTGRESQL)
  target_link_libraries(bench-pg-bare PRIVATE PkgConfig::LIBPQ)
endif()
