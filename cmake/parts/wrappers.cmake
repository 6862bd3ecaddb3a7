# Part "wrappers": the wrapper infrastructure (include/kvio/wrap.h), the
# wrappers of src/wrappers/ (except the compression and encryption ones,
# which cmake/parts/crypto.cmake adds), the JSON adapter (include/kvio/json.h,
# on jansson) and the wrap:// URL scheme (a wrapper stack over an inner URL).
if(NOT JANSSON_FOUND)
  pkg_check_modules(JANSSON IMPORTED_TARGET jansson)
endif()
if(JANSSON_FOUND)
  file(GLOB KV_WRAPPERS_SOURCES CONFIGURE_DEPENDS
    ${CMAKE_CURRENT_SOURCE_DIR}/src/wrappers/*.c)
  # Theirs: compression.c, encryption.c, fernet*.c (cmake/parts/crypto.cmake).
  list(FILTER KV_WRAPPERS_SOURCES EXCLUDE REGEX
    "/(compression|encryption|fernet[^/]*)\\.c$")
  list(APPEND KV_PART_SOURCES ${KV_WRAPPERS_SOURCES})
  list(APPEND KV_PART_LIBS PkgConfig::JANSSON)
  list(APPEND KV_BUILTINS "wrap=kv__wrap_url_methods")
  list(APPEND KV_PC_PRIVATE "-ljansson")
  list(APPEND KV_PART_DEFINITIONS KV_HAVE_WRAPPERS)
  set(KV_HAVE_WRAPPERS ON)
else()
  kv_part_missing(wrappers "libjansson-dev")
  set(KV_HAVE_WRAPPERS OFF)
endif()
