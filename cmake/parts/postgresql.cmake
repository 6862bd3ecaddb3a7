# postgresql:// — PostgreSQL through libpq's asynchronous pipeline mode
# (src/stores/postgresql.c, postgresql_sql.c). Needs libpq >= 14 (pipeline
# mode); Debian 12 has 15.
pkg_check_modules(LIBPQ IMPORTED_TARGET libpq>=14)
if(LIBPQ_FOUND)
  set(KV_HAVE_POSTGRESQL ON)
  list(APPEND KV_PART_SOURCES ${CMAKE_SOURCE_DIR}/src/stores/postgresql.c
    ${CMAKE_SOURCE_DIR}/src/stores/postgresql_sql.c)
  list(APPEND KV_PART_LIBS PkgConfig::LIBPQ)
  list(APPEND KV_BUILTINS "postgresql=kv__postgresql_methods"
    "postgres=kv__postgresql_methods")
  list(APPEND KV_PC_PRIVATE "-lpq")
  list(APPEND KV_PART_DEFINITIONS KV_HAVE_POSTGRESQL)
else()
  set(KV_HAVE_POSTGRESQL OFF)
  kv_part_missing(postgresql "libpq-dev (libpq >= 14)")
endif()
