# redis:// rediss:// redis+unix:// (and valkey:// valkeys:// valkey+unix://):
# the Redis / Valkey store (src/stores/redis*.c). hiredis (0.14 or later)
# for its RESP reader and command formatter only; OpenSSL's libssl for TLS.
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
pkg_check_modules(LIBSSL IMPORTED_TARGET libssl)
if(HIREDIS_FOUND AND LIBSSL_FOUND)
  set(KV_HAVE_REDIS ON)
  list(APPEND KV_PART_SOURCES ${CMAKE_SOURCE_DIR}/src/stores/redis.c
    ${CMAKE_SOURCE_DIR}/src/stores/redis_conn.c
    ${CMAKE_SOURCE_DIR}/src/stores/redis_cluster.c
    ${CMAKE_SOURCE_DIR}/src/stores/redis_sentinel.c)
  list(APPEND KV_PART_LIBS PkgConfig::HIREDIS PkgConfig::LIBSSL)
  foreach(scheme redis rediss redis+unix valkey valkeys valkey+unix)
    list(APPEND KV_BUILTINS "${scheme}=kv__redis_methods")
  endforeach()
  foreach(scheme redis+cluster rediss+cluster valkey+cluster valkeys+cluster)
    list(APPEND KV_BUILTINS "${scheme}=kv__redis_cluster_methods")
  endforeach()
  foreach(scheme redis+sentinel rediss+sentinel valkey+sentinel
      valkeys+sentinel)
    list(APPEND KV_BUILTINS "${scheme}=kv__redis_sentinel_methods")
  endforeach()
  list(APPEND KV_PC_PRIVATE "-lhiredis" "-lssl")
  list(APPEND KV_PART_DEFINITIONS KV_HAVE_REDIS)
else()
  set(KV_HAVE_REDIS OFF)
  if(NOT HIREDIS_FOUND)
    kv_part_missing(redis "libhiredis-dev")
  else()
    kv_part_missing(redis "libssl-dev")
  endif()
endif()
