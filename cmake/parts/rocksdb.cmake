# rocksdb:// — RocksDB through its C API (src/stores/rocksdb.c).
pkg_check_modules(ROCKSDB IMPORTED_TARGET rocksdb)
if(NOT ROCKSDB_FOUND)
  # Some packages ship no rocksdb.pc: look for the header and library.
  find_path(ROCKSDB_INCLUDE_DIR rocksdb/c.h)
  find_library(ROCKSDB_LIBRARY rocksdb)
  if(ROCKSDB_INCLUDE_DIR AND ROCKSDB_LIBRARY)
    add_library(kv_rocksdb_lib INTERFACE IMPORTED)
    set_target_properties(kv_rocksdb_lib PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES ${ROCKSDB_INCLUDE_DIR}
      INTERFACE_LINK_LIBRARIES ${ROCKSDB_LIBRARY})
    set(ROCKSDB_FOUND ON)
  endif()
else()
  add_library(kv_rocksdb_lib INTERFACE IMPORTED)
  set_target_properties(kv_rocksdb_lib PROPERTIES
    INTERFACE_LINK_LIBRARIES PkgConfig::ROCKSDB)
endif()
if(ROCKSDB_FOUND)
  set(KV_HAVE_ROCKSDB ON)
  kv_part(rocksdb
    SOURCES ${CMAKE_SOURCE_DIR}/src/stores/rocksdb.c
    LIBS kv_rocksdb_lib PkgConfig::LIBCRYPTO
    STORES rocksdb=kv__rocksdb_methods
    PC_PRIVATE -lrocksdb
    DEFINITIONS KV_HAVE_ROCKSDB)
else()
  set(KV_HAVE_ROCKSDB OFF)
  kv_part_missing(rocksdb "librocksdb-dev")
endif()
