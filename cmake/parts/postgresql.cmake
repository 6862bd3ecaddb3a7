# postgresql:// — PostgreSQL through libpq's asynchronous pipeline mode
# (src/stores/postgresql.c, postgresql_sql.c). Needs libpq >= 14 (pipeline
# mode); Debian 12 has 15.
pkg_check_modules(LIBPQ IMPORTED_TARGET libpq>=14)
if(LIBPQ_FOUND)
  set(KV_HAVE_POSTGRESQL ON)
  kv_part(postgresql
    SOURCES ${CMAKE_SOURCE_DIR}/src/stores/postgresql.c
      ${CMAKE_SOURCE_DIR}/src/stores/postgresql_sql.c
    LIBS PkgConfig::LIBPQ PkgConfig::LIBCRYPTO
    STORES postgresql=kv__postgresql_methods postgres=kv__postgresql_methods
    PC_PRIVATE -lpq
    DEFINITIONS KV_HAVE_POSTGRESQL)
else()
  set(KV_HAVE_POSTGRESQL OFF)
  kv_part_missing(postgresql "libpq-dev (libpq >= 14)")
endif()
