# redis:// rediss:// redis+tls:// redis+unix:// redis+unix+tls:// (and the
# valkey spellings):
# the Redis / Valkey store (src/stores/redis*.c). hiredis (0.14 or later)
# for its RESP reader and command formatter only; OpenSSL's libssl for TLS.
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
pkg_check_modules(LIBSSL IMPORTED_TARGET libssl)
if(HIREDIS_FOUND AND LIBSSL_FOUND)
  set(KV_HAVE_REDIS ON)
  set(kv_redis_stores "")
  foreach(scheme redis rediss redis+tls redis+unix redis+unix+tls valkey
      valkeys valkey+tls valkey+unix valkey+unix+tls)
    list(APPEND kv_redis_stores "${scheme}=kv__redis_methods")
  endforeach()
  foreach(scheme redis+cluster rediss+cluster valkey+cluster valkeys+cluster)
    list(APPEND kv_redis_stores "${scheme}=kv__redis_cluster_methods")
  endforeach()
  foreach(scheme redis+sentinel rediss+sentinel valkey+sentinel
      valkeys+sentinel)
    list(APPEND kv_redis_stores "${scheme}=kv__redis_sentinel_methods")
  endforeach()
  kv_part(redis
    SOURCES ${CMAKE_SOURCE_DIR}/src/stores/redis.c
      ${CMAKE_SOURCE_DIR}/src/stores/redis_conn.c
      ${CMAKE_SOURCE_DIR}/src/stores/redis_pool.c
      ${CMAKE_SOURCE_DIR}/src/stores/redis_tx.c
      ${CMAKE_SOURCE_DIR}/src/stores/redis_pubsub.c
      ${CMAKE_SOURCE_DIR}/src/stores/redis_ha.c
      ${CMAKE_SOURCE_DIR}/src/stores/redis_cluster.c
      ${CMAKE_SOURCE_DIR}/src/stores/redis_sentinel.c
    LIBS PkgConfig::HIREDIS PkgConfig::LIBSSL PkgConfig::LIBCRYPTO
    STORES ${kv_redis_stores}
    SHIMS ${CMAKE_SOURCE_DIR}/src/shims/redis.c
    PC_PRIVATE -lhiredis -lssl
    DEFINITIONS KV_HAVE_REDIS)
else()
  set(KV_HAVE_REDIS OFF)
  if(NOT HIREDIS_FOUND)
    kv_part_missing(redis "libhiredis-dev")
  else()
    kv_part_missing(redis "libssl-dev")
  endif()
endif()
