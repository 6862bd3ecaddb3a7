# kv_part(): how an optional part of libkvio is declared (cmake/parts/*.cmake
# call it; cmake/parts/README.md is the guide). Included by CMakeLists.txt.
#
#   kv_part(NAME [BUILTIN]
#     SOURCES    file.c ...        the part's C files
#     LIBS       target|lib ...    what they link (imported targets welcome)
#     INCLUDES   dir ...           extra include directories
#     DEFINITIONS KV_HAVE_NAME ... compile definitions (also given to tests)
#     PC_PRIVATE -lfoo ...         kvio.pc Libs.private (static linking)
#     STORES     scheme=symbol ... URL schemes -> `const kv_store_methods_t`
#     WRAPPERS   name=function ... wrapper names -> factory (kv_wrap_factory_fn)
#     SHIMS      file.c ...)       the part's public C functions, forwarding
#                                  into the module (src/shims/, shared
#                                  libkvio only; see docs/design.md)
#
# A part is built three ways from the same objects:
#  - into libkvio.a (kvio_static): every part, registered without dlopen;
#  - as a module, lib/kvio/modules/NAME.so, that libkvio.so loads the first
#    time one of its schemes or wrapper names is used (KV_MODULES=ON, the
#    default), unless BUILTIN;
#  - into libkvio.so itself when BUILTIN (memory/null/disk, the wrappers and
#    wrap://) or with -DKV_MODULES=OFF.
# CMake generates the part's one entry point, kv_part_<NAME>_init(), which
# registers its stores and wrappers (kvio/module.h), and the table of every
# known part (src/core/parts.h), so the core names no store and no wrapper.
option(KV_MODULES "Build the optional parts as modules loaded on demand" ON)

set(KV__GEN ${CMAKE_BINARY_DIR}/generated)
set(KV_MODULE_OUTPUT_DIR ${CMAKE_BINARY_DIR}/lib/kvio/modules)
set(KV_MODULE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/kvio/modules)
set(KV__CORE_PART_SOURCES "")
set(KV__CORE_PART_LIBS "")
set(KV__SHIM_SOURCES "")
set(KV__STATIC_OBJECTS "")
set(KV__STATIC_LIBS "")
set(KV__NPARTS 0)
foreach(v DECLS_SHARED DECLS_STATIC LISTS ROWS_SHARED ROWS_STATIC
    ROWS_SHARED_B ROWS_STATIC_B)
  set(KV__PARTS_${v} "")
endforeach()

# Libraries appended to KV_PART_LIBS by older-style part files (not through
# kv_part): they are the legacy built-in part's (kv_parts_finish).
set(KV__LEGACY_LIBS "")
set(KV__LIBS_SEEN 0)
macro(kv__collect_legacy_libs)
  list(LENGTH KV_PART_LIBS kv__n)
  set(kv__i ${KV__LIBS_SEEN})
  while(kv__i LESS kv__n)
    list(GET KV_PART_LIBS ${kv__i} kv__lib)
    list(APPEND KV__LEGACY_LIBS ${kv__lib})
    math(EXPR kv__i "${kv__i} + 1")
  endwhile()
endmacro()

function(kv_part name)
  cmake_parse_arguments(P "BUILTIN" ""
    "SOURCES;LIBS;INCLUDES;DEFINITIONS;PC_PRIVATE;STORES;WRAPPERS;SHIMS" ${ARGN})
  kv__collect_legacy_libs()
  set(KV__LEGACY_LIBS ${KV__LEGACY_LIBS} PARENT_SCOPE)
  string(MAKE_C_IDENTIFIER "${name}" id)
  set(module ON)
  if(P_BUILTIN OR NOT KV_MODULES)
    set(module OFF)
  endif()

  # The entry point.
  set(KV_PART_NAME ${name})
  set(KV_PART_ID ${id})
  set(KV_PART_DECLS "")
  set(KV_PART_BODY "")
  set(KV_PART_EXPORT "")
  if(module)
    set(KV_PART_EXPORT "KV_EXTERN ")
  endif()
  set(stores "")
  set(wrappers "")
  foreach(s ${P_STORES})
    string(REPLACE "=" ";" pair "${s}")
    list(GET pair 0 scheme)
    list(GET pair 1 sym)
    string(APPEND KV_PART_DECLS "extern const kv_store_methods_t ${sym};\n")
    string(APPEND KV_PART_BODY
      "  if (err == 0) err = kv_module_add_store(mod, \"${scheme}\", &${sym});\n")
    string(APPEND stores "\"${scheme}\", ")
  endforeach()
  foreach(w ${P_WRAPPERS})
    string(REPLACE "=" ";" pair "${w}")
    list(GET pair 0 wname)
    list(GET pair 1 fn)
    string(APPEND KV_PART_DECLS "int ${fn}(const char *options, kv_store_t *inner,\n"
      "    kv_store_t **out, char *errbuf, size_t errbuf_len);\n")
    string(APPEND KV_PART_BODY
      "  if (err == 0) err = kv_module_add_wrapper(mod, \"${wname}\", ${fn});\n")
    string(APPEND wrappers "\"${wname}\", ")
  endforeach()
  set(entry ${KV__GEN}/part-${id}.c)
  configure_file(${CMAKE_SOURCE_DIR}/cmake/part-entry.c.in ${entry} @ONLY)

  # Its row in the table of parts.
  set(init "kv_part_${id}_init")
  set(KV__PARTS_LISTS "${KV__PARTS_LISTS}static const char *const s_${id}[] = {${stores}NULL};\nstatic const char *const w_${id}[] = {${wrappers}NULL};\n" PARENT_SCOPE)
  # (Built-in parts come first in the table, so they are listed first.)
  set(decl "int ${init}(kv_module_t *mod);\n")
  set(row "    {\"${name}\", \"${init}\", s_${id}, w_${id}, ${init}},\n")
  set(b "")
  if(P_BUILTIN)
    set(b "_B")
  endif()
  set(KV__PARTS_DECLS_STATIC "${KV__PARTS_DECLS_STATIC}${decl}" PARENT_SCOPE)
  set(KV__PARTS_ROWS_STATIC${b} "${KV__PARTS_ROWS_STATIC${b}}${row}" PARENT_SCOPE)
  if(module)
    string(REPLACE "${init}}" "NULL}" row "${row}")
  else()
    set(KV__PARTS_DECLS_SHARED "${KV__PARTS_DECLS_SHARED}${decl}" PARENT_SCOPE)
  endif()
  set(KV__PARTS_ROWS_SHARED${b} "${KV__PARTS_ROWS_SHARED${b}}${row}" PARENT_SCOPE)
  math(EXPR n "${KV__NPARTS} + 1")
  set(KV__NPARTS ${n} PARENT_SCOPE)

  # What the tests and kvio.pc see.
  set(libs ${KV_PART_LIBS} ${P_LIBS})
  list(LENGTH libs n)
  set(KV_PART_LIBS ${libs} PARENT_SCOPE)
  set(KV__LIBS_SEEN ${n} PARENT_SCOPE)
  set(KV_PART_INCLUDES ${KV_PART_INCLUDES} ${P_INCLUDES} PARENT_SCOPE)
  set(KV_PART_DEFINITIONS ${KV_PART_DEFINITIONS} ${P_DEFINITIONS} PARENT_SCOPE)
  set(KV_PC_PRIVATE ${KV_PC_PRIVATE} ${P_PC_PRIVATE} PARENT_SCOPE)

  if(NOT module)
    set(KV__CORE_PART_SOURCES ${KV__CORE_PART_SOURCES} ${P_SOURCES} ${entry}
      PARENT_SCOPE)
    set(KV__CORE_PART_LIBS ${KV__CORE_PART_LIBS} ${P_LIBS} PARENT_SCOPE)
    return()
  endif()

  # A module: one set of objects for libkvio.a and for NAME.so.
  add_library(kvpart_${id} OBJECT ${P_SOURCES} ${entry})
  target_include_directories(kvpart_${id} PRIVATE
    ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src ${KV__GEN}
    ${P_INCLUDES})
  target_compile_options(kvpart_${id} PRIVATE ${KV_WARNINGS})
  target_compile_definitions(kvpart_${id} PRIVATE ${P_DEFINITIONS})
  target_link_libraries(kvpart_${id} PRIVATE PkgConfig::LIBUV ${P_LIBS})

  add_library(kvmod_${id} MODULE $<TARGET_OBJECTS:kvpart_${id}>)
  set_target_properties(kvmod_${id} PROPERTIES PREFIX "" OUTPUT_NAME ${name}
    LIBRARY_OUTPUT_DIRECTORY ${KV_MODULE_OUTPUT_DIR}
    INSTALL_RPATH "$ORIGIN/../..")
  # libkvio.so is already loaded when a module is: the module's kv_ and
  # exported kv__ references bind to it; its own symbols bind inside it.
  target_link_libraries(kvmod_${id} PRIVATE kvio PkgConfig::LIBUV ${P_LIBS})
  target_link_options(kvmod_${id} PRIVATE -Wl,-Bsymbolic)
  if(NOT KV_ASAN AND NOT KV_UBSAN AND NOT KV_TSAN AND NOT KV_FUZZ)
    # Every symbol a module needs from libkvio must be exported by it.
    target_link_options(kvmod_${id} PRIVATE -Wl,--no-undefined)
  endif()
  install(TARGETS kvmod_${id} LIBRARY DESTINATION ${KV_MODULE_INSTALL_DIR})
  set_property(GLOBAL APPEND PROPERTY KV_MODULE_TARGETS kvmod_${id})

  set(KV__STATIC_OBJECTS ${KV__STATIC_OBJECTS} $<TARGET_OBJECTS:kvpart_${id}>
    PARENT_SCOPE)
  set(KV__STATIC_LIBS ${KV__STATIC_LIBS} ${P_LIBS} PARENT_SCOPE)
  set(KV__SHIM_SOURCES ${KV__SHIM_SOURCES} ${P_SHIMS} PARENT_SCOPE)
endfunction()

# After every part: a part file still written the old way (appending to
# KV_PART_SOURCES / KV_BUILTINS) is built into libkvio as a built-in part.
# Then the two tables of parts: libkvio.so's (modules by file) and
# libkvio.a's (every entry point linked in).
macro(kv_parts_finish)
  kv__collect_legacy_libs()
  list(LENGTH KV_PART_LIBS KV__LIBS_SEEN)
  if(KV_PART_SOURCES OR KV_BUILTINS)
    kv_part(builtin BUILTIN SOURCES ${KV_PART_SOURCES} LIBS ${KV__LEGACY_LIBS}
      STORES ${KV_BUILTINS})
  endif()
  if(KV__NPARTS GREATER 64)
    message(FATAL_ERROR "more than 64 kvio parts (src/core/registry.c)")
  endif()
  set(KV_PARTS_LISTS "${KV__PARTS_LISTS}")
  set(KV_PARTS_DECLS "${KV__PARTS_DECLS_SHARED}")
  set(KV_PARTS_ROWS "${KV__PARTS_ROWS_SHARED_B}${KV__PARTS_ROWS_SHARED}")
  configure_file(${CMAKE_SOURCE_DIR}/cmake/parts-table.c.in
    ${KV__GEN}/parts-shared.c @ONLY)
  set(KV_PARTS_DECLS "${KV__PARTS_DECLS_STATIC}")
  set(KV_PARTS_ROWS "${KV__PARTS_ROWS_STATIC_B}${KV__PARTS_ROWS_STATIC}")
  configure_file(${CMAKE_SOURCE_DIR}/cmake/parts-table.c.in
    ${KV__GEN}/parts-static.c @ONLY)
endmacro()
