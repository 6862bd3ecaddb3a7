# memcached://: the Memcached store (src/stores/memcached*.c), an asynchronous
# client of memcached's meta text protocol written on libuv. It needs only
# OpenSSL's libcrypto (SHA-256 for the hash ring and long keys, RAND_bytes
# for generation tokens), which the core links already.
pkg_check_modules(MC_LIBCRYPTO IMPORTED_TARGET libcrypto)
if(MC_LIBCRYPTO_FOUND)
  set(KV_HAVE_MEMCACHED ON)
  kv_part(memcached
    SOURCES ${CMAKE_SOURCE_DIR}/src/stores/memcached.c
      ${CMAKE_SOURCE_DIR}/src/stores/memcached_conn.c
      ${CMAKE_SOURCE_DIR}/src/stores/memcached_ring.c
    LIBS PkgConfig::MC_LIBCRYPTO
    STORES memcached=kv__memcached_methods
    PC_PRIVATE -lcrypto
    DEFINITIONS KV_HAVE_MEMCACHED)
else()
  set(KV_HAVE_MEMCACHED OFF)
  kv_part_missing(memcached "libssl-dev")
endif()

