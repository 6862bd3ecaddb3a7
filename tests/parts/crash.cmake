# Crash and two-process tests of the persistent stores (tests/crash/).
#
#   crash-<store>     tests/crash/run.sh: a writer with 64 puts in flight is
#                     killed with SIGKILL at a random moment, 5 rounds; no
#                     acknowledged write may be lost and the store must open,
#                     read and list again.
#   twoproc-<store>   tests/crash/two-proc.sh: two processes write a-<n> and
#                     b-<n> to the same path at once; both sets complete.
#
# disk:// always; file:// with its part (KV_HAVE_FILE); sqlite:// and
# rocksdb:// with theirs (KV_HAVE_SQLITE, KV_HAVE_ROCKSDB). RocksDB allows one
# process per path, so it has no two-process test.
add_executable(crash-tool ${CMAKE_CURRENT_SOURCE_DIR}/crash/crash-tool.c)
target_include_directories(crash-tool PRIVATE ${CMAKE_SOURCE_DIR}/src
  ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(crash-tool PRIVATE ${KV_WARNINGS})
target_link_libraries(crash-tool PRIVATE kvio_static ${KV_PART_LIBS} m)

function(kv_crash_test label url)
  add_test(NAME crash-${label}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/crash/run.sh
      $<TARGET_FILE:crash-tool> "${url}" 5)
  set_tests_properties(crash-${label} PROPERTIES TIMEOUT 120
    SKIP_RETURN_CODE 77 LABELS crash)
endfunction()

function(kv_twoproc_test label url count)
  add_test(NAME twoproc-${label}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/crash/two-proc.sh
      $<TARGET_FILE:crash-tool> "${url}" ${count})
  set_tests_properties(twoproc-${label} PROPERTIES TIMEOUT 120
    SKIP_RETURN_CODE 77 LABELS crash)
endfunction()

kv_crash_test(disk "disk://@TMP@/db")
kv_twoproc_test(disk "disk://@TMP@/db" 20000)
if(KV_HAVE_FILE)
  kv_crash_test(file "file://@TMP@/store.json")
  kv_twoproc_test(file "file://@TMP@/store.json" 2000)
endif()
if(KV_HAVE_SQLITE)
  kv_crash_test(sqlite "sqlite://@TMP@/db.sqlite")
  kv_twoproc_test(sqlite "sqlite://@TMP@/db.sqlite" 20000)
endif()
if(KV_HAVE_ROCKSDB)
  kv_crash_test(rocksdb "rocksdb://@TMP@/db")
endif()
