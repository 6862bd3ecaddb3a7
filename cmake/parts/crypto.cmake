# Part `crypto`: the compression wrapper (zlib, libzstd, liblz4) and the
# encryption wrapper (Fernet with OpenSSL's libcrypto), src/wrappers/
# {compression,encryption,fernet}.c. Sets KV_HAVE_COMPRESSION and
# KV_HAVE_ENCRYPTION (CMake variables and compile definitions).
#
# Both sit on the wrapper infrastructure (src/wrappers/wrap.c, part
# `wrappers`, built with jansson) and share the value-codec engine in
# encryption.c, so compression needs the encryption half too; libcrypto is a
# dependency of the core, so in practice that half is always there.
pkg_check_modules(KV_ZLIB IMPORTED_TARGET zlib)
pkg_check_modules(KV_ZSTD IMPORTED_TARGET libzstd)
pkg_check_modules(KV_LZ4 IMPORTED_TARGET liblz4)
pkg_check_modules(KV_CRYPTO IMPORTED_TARGET libcrypto)
if(NOT JANSSON_FOUND)
  pkg_check_modules(JANSSON IMPORTED_TARGET jansson)
endif()

set(KV_HAVE_COMPRESSION OFF)
set(KV_HAVE_ENCRYPTION OFF)

if(KV_CRYPTO_FOUND AND JANSSON_FOUND)
  set(KV_HAVE_ENCRYPTION ON)
  list(APPEND KV_PART_SOURCES
    ${CMAKE_CURRENT_SOURCE_DIR}/src/wrappers/encryption.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/wrappers/fernet.c)
  # libcrypto is already in kvio.pc (Requires.private) for the core.
  list(APPEND KV_PART_LIBS PkgConfig::KV_CRYPTO)
  list(APPEND KV_PART_DEFINITIONS KV_HAVE_ENCRYPTION)
else()
  kv_part_missing(crypto "libssl-dev and libjansson-dev (encryption)")
endif()

if(KV_HAVE_ENCRYPTION AND KV_ZLIB_FOUND AND KV_ZSTD_FOUND AND KV_LZ4_FOUND)
  set(KV_HAVE_COMPRESSION ON)
  list(APPEND KV_PART_SOURCES
    ${CMAKE_CURRENT_SOURCE_DIR}/src/wrappers/compression.c)
  list(APPEND KV_PART_LIBS PkgConfig::KV_ZLIB PkgConfig::KV_ZSTD
    PkgConfig::KV_LZ4)
  list(APPEND KV_PC_PRIVATE -lz -lzstd -llz4)
  list(APPEND KV_PART_DEFINITIONS KV_HAVE_COMPRESSION)
else()
  kv_part_missing(crypto "zlib1g-dev, libzstd-dev and liblz4-dev (compression)")
endif()
