# sqlite:// — one SQLite database file in WAL mode (src/stores/sqlite.c).
pkg_check_modules(SQLITE3 IMPORTED_TARGET sqlite3)
if(SQLITE3_FOUND)
  set(KV_HAVE_SQLITE ON)
  kv_part(sqlite
    SOURCES ${CMAKE_SOURCE_DIR}/src/stores/sqlite.c
    LIBS PkgConfig::SQLITE3
    STORES sqlite=kv__sqlite_methods
    PC_PRIVATE -lsqlite3
    DEFINITIONS KV_HAVE_SQLITE)
else()
  set(KV_HAVE_SQLITE OFF)
  kv_part_missing(sqlite "libsqlite3-dev")
endif()
