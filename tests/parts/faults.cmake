# Fault tests (tests/faults/, docs/faults.md).
#
#   disk-full-<store>  tests/faults/test-disk-full.c: a persistent store on a
#                      disk that fills up (RLIMIT_FSIZE always; a small tmpfs
#                      too where mounting is allowed).
add_executable(test-disk-full ${CMAKE_CURRENT_SOURCE_DIR}/faults/test-disk-full.c)
target_include_directories(test-disk-full PRIVATE ${CMAKE_SOURCE_DIR}/src
  ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(test-disk-full PRIVATE ${KV_WARNINGS})
target_link_libraries(test-disk-full PRIVATE kvio_static PkgConfig::CMOCKA
  ${KV_PART_LIBS} m)

function(kv_disk_full_test label url)
  add_test(NAME disk-full-${label} COMMAND test-disk-full "${url}")
  set_tests_properties(disk-full-${label} PROPERTIES TIMEOUT 600
    SKIP_RETURN_CODE 77 LABELS faults)
endfunction()

kv_disk_full_test(disk "disk://@TMP@/db")
kv_disk_full_test(disk-nosync "disk://@TMP@/db?sync=none")
if(KV_HAVE_FILE)
  kv_disk_full_test(file "file://@TMP@/kv.json")
endif()
if(KV_HAVE_SQLITE)
  kv_disk_full_test(sqlite "sqlite://@TMP@/kv.db")
endif()
if(KV_HAVE_ROCKSDB)
  kv_disk_full_test(rocksdb "rocksdb://@TMP@/db")
endif()

# stall-<store>  tests/faults/test-stall.c: the server of a network store
#                stops (SIGSTOP) with requests in flight, before the first
#                connection, and while the store closes; then resumes. Each
#                store runs with a short per-command timeout of its own
#                option (1 s; 2 s for PostgreSQL).
add_executable(test-stall ${CMAKE_CURRENT_SOURCE_DIR}/faults/test-stall.c)
target_include_directories(test-stall PRIVATE ${CMAKE_SOURCE_DIR}/src
  ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(test-stall PRIVATE ${KV_WARNINGS})
target_link_libraries(test-stall PRIVATE kvio_static PkgConfig::CMOCKA
  ${KV_PART_LIBS} m)

# kv_stall_test(LABEL URL TIMEOUT_MS LAUNCHER...): URL sets the store's
# timeout option to TIMEOUT_MS; the launcher substitutes @PORT@ and @PID@.
function(kv_stall_test label url timeout_ms)
  add_test(NAME stall-${label}
    COMMAND ${ARGN} $<TARGET_FILE:test-stall> "${url}" @PID@ ${timeout_ms})
  set_tests_properties(stall-${label} PROPERTIES TIMEOUT 300
    SKIP_RETURN_CODE 77 LABELS faults)
endfunction()

set(KV_SERVERS_DIR ${CMAKE_CURRENT_SOURCE_DIR}/servers)
if(KV_HAVE_REDIS)
  kv_stall_test(redis "redis://127.0.0.1:@PORT@/0?timeout=1" 1000
    ${KV_SERVERS_DIR}/with-redis.sh)
  kv_stall_test(redis-tls "rediss://127.0.0.1:@PORT@/0?ca=@CA@&timeout=1" 1000
    ${KV_SERVERS_DIR}/with-redis.sh --tls)
endif()
if(KV_HAVE_MEMCACHED)
  kv_stall_test(memcached "memcached://127.0.0.1:@PORT@?timeout=1000" 1000
    ${KV_SERVERS_DIR}/with-memcached.sh)
endif()
if(KV_HAVE_POSTGRESQL)
  # 2 s: a new connection (SCRAM, table check, 15 PREPAREs) can take more
  # than 1 s on a loaded machine.
  kv_stall_test(postgresql "@URL@?timeout=2" 2000
    ${KV_SERVERS_DIR}/with-postgres.sh)
endif()

# valgrind-<store>  the conformance suite under valgrind (memcheck, leaks:
#                   definite and indirect are errors), for the stores that
#                   run in-process. Not in sanitizer builds (valgrind cannot
#                   run them); only when valgrind is installed. Suppressions:
#                   tests/faults/valgrind.supp (one OpenSSL exit-time block).
find_program(KV_VALGRIND valgrind)
if(KV_VALGRIND AND TARGET test-conformance AND NOT KV_ASAN AND NOT KV_UBSAN)
  function(kv_valgrind_conformance label url)
    add_test(NAME valgrind-${label}
      COMMAND ${KV_VALGRIND} -q --leak-check=full
        --errors-for-leak-kinds=definite,indirect --error-exitcode=1
        --suppressions=${CMAKE_CURRENT_SOURCE_DIR}/faults/valgrind.supp
        $<TARGET_FILE:test-conformance> "${url}")
    # Alone: valgrind is slow, and conformance case c45 checks that a TTL
    # of 100 s has 97 s left or more after a close and a reopen.
    set_tests_properties(valgrind-${label} PROPERTIES TIMEOUT 600
      SKIP_RETURN_CODE 77 LABELS valgrind RUN_SERIAL TRUE)
  endfunction()
  kv_valgrind_conformance(memory "memory://")
  kv_valgrind_conformance(disk "disk://@TMP@/db")
  if(KV_HAVE_SQLITE)
    kv_valgrind_conformance(sqlite "sqlite://@TMP@/kv.db")
  endif()
  if(KV_HAVE_FILE)
    kv_valgrind_conformance(file "file://@TMP@/kv.json")
  endif()
endif()
