# file:// — one human-readable JSON file (src/stores/file.c, docs/file.md).
# Needs jansson (libjansson-dev), which the core build already requires for
# the CLI; the part still checks for it so that it can be left out cleanly.
pkg_check_modules(KV_FILE_JANSSON IMPORTED_TARGET jansson)
if(KV_FILE_JANSSON_FOUND)
  set(KV_HAVE_FILE ON)
  kv_part(file
    SOURCES ${CMAKE_SOURCE_DIR}/src/stores/file.c
      ${CMAKE_SOURCE_DIR}/src/stores/file_format.c
    LIBS PkgConfig::KV_FILE_JANSSON
    STORES file=kv__file_methods
    PC_PRIVATE -ljansson
    DEFINITIONS KV_HAVE_FILE)
else()
  set(KV_HAVE_FILE OFF)
  kv_part_missing(file "libjansson-dev")
endif()
