# redis:// rediss:// redis+tls:// redis+unix:// redis+unix+tls:// (and the
# valkey spellings):
# the Redis / Valkey store (src/stores/redis*.c). hiredis (0.14 or later)
# for its RESP reader and command formatter only; OpenSSL's libssl for TLS.
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
pkg_check_modules(LIBSSL IMPORTED_TARGET libssl)
if(HIREDIS_FOUND AND LIBSSL_FOUND)
  set(KV_HAVE_REDIS ON)
  list(APPEND KV_PART_SOURCES ${CMAKE_SOURCE_DIR}/src/stores/redis.c
    ${CMAKE_SOURCE_DIR}/src/stores/redis_conn.c
    ${CMAKE_SOURCE_DIR}/src/stores/redis_pool.c
    ${CMAKE_SOURCE_DIR}/src/stores/redis_tx.c
    ${CMAKE_SOURCE_DIR}/src/stores/redis_pubsub.c)
  list(APPEND KV_PART_LIBS PkgConfig::HIREDIS PkgConfig::LIBSSL)
  foreach(scheme redis rediss redis+tls redis+unix redis+unix+tls valkey
      valkeys valkey+tls valkey+unix valkey+unix+tls)
    list(APPEND KV_BUILTINS "${scheme}=kv__redis_methods")
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
