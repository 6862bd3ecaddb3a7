# Part "wrappers": the wrapper infrastructure (include/kvio/wrap.h), the
# wrappers of src/wrappers/ (except the compression and encryption ones,
# which cmake/parts/crypto.cmake adds), the JSON adapter (include/kvio/json.h,
# on jansson) and the wrap:// URL scheme (a wrapper stack over an inner URL).
# Built into libkvio (BUILTIN): the CLI's --wrap and wrap:// need it, and it
# links nothing the core does not (jansson is small).
if(NOT JANSSON_FOUND)
  pkg_check_modules(JANSSON IMPORTED_TARGET jansson)
endif()
if(JANSSON_FOUND)
  file(GLOB KV_WRAPPERS_SOURCES CONFIGURE_DEPENDS
    ${CMAKE_SOURCE_DIR}/src/wrappers/*.c)
  # Part `crypto` builds codec.c, compression.c, encryption.c and fernet*.c
  # (cmake/parts/crypto.cmake).
  list(FILTER KV_WRAPPERS_SOURCES EXCLUDE REGEX
    "/(codec|compression|encryption|fernet[^/]*)\\.c$")
  set(kv_wrappers "")
  foreach(w cache collection-routing default-value fallback fault-injection
      limit-size logging prefix-collections prefix-keys raise-on-missing
      read-only retry single-collection statistics timeout ttl-clamp)
    string(REPLACE "-" "_" fn "${w}")
    list(APPEND kv_wrappers "${w}=kv__wrap_${fn}_from_options")
  endforeach()
  kv_part(wrappers BUILTIN
    SOURCES ${KV_WRAPPERS_SOURCES}
    LIBS PkgConfig::JANSSON
    STORES wrap=kv__wrap_url_methods
    WRAPPERS ${kv_wrappers}
    PC_PRIVATE -ljansson
    DEFINITIONS KV_HAVE_WRAPPERS)
  set(KV_HAVE_WRAPPERS ON)
else()
  kv_part_missing(wrappers "libjansson-dev")
  set(KV_HAVE_WRAPPERS OFF)
endif()
