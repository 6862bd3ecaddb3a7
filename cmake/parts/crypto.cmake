# Part `crypto`: the compression wrapper (zlib, libzstd, liblz4) and the
# encryption wrapper (Fernet with OpenSSL's libcrypto), src/wrappers/
# {compression,encryption,fernet}.c. Sets KV_HAVE_COMPRESSION and
# KV_HAVE_ENCRYPTION (CMake variables and compile definitions).
#
# Both sit on the wrapper infrastructure (src/wrappers/wrap.c, part
# `wrappers`, built with jansson) and share the value-codec engine
# (src/wrappers/codec.c). Their
# public functions (kv_wrap_compression, kv_fernet_*, ...) are forwarded by
# src/shims/ when the part is a module.
pkg_check_modules(KV_ZLIB IMPORTED_TARGET zlib)
pkg_check_modules(KV_ZSTD IMPORTED_TARGET libzstd)
pkg_check_modules(KV_LZ4 IMPORTED_TARGET liblz4)
pkg_check_modules(KV_CRYPTO IMPORTED_TARGET libcrypto)
if(NOT JANSSON_FOUND)
  pkg_check_modules(JANSSON IMPORTED_TARGET jansson)
endif()

set(KV_HAVE_COMPRESSION OFF)
set(KV_HAVE_ENCRYPTION OFF)

# One module, crypto.so, with both wrappers and their codec engine.
if(KV_CRYPTO_FOUND AND JANSSON_FOUND)
  set(KV_HAVE_ENCRYPTION ON)
  set(kv_crypto_sources ${CMAKE_SOURCE_DIR}/src/wrappers/codec.c
    ${CMAKE_SOURCE_DIR}/src/wrappers/encryption.c
    ${CMAKE_SOURCE_DIR}/src/wrappers/fernet.c)
  set(kv_crypto_libs PkgConfig::KV_CRYPTO)
  set(kv_crypto_wrappers encryption=kv__wrap_encryption_from_options)
  set(kv_crypto_shims ${CMAKE_SOURCE_DIR}/src/shims/encryption.c)
  set(kv_crypto_pc "")
  set(kv_crypto_defs KV_HAVE_ENCRYPTION)
  if(KV_ZLIB_FOUND AND KV_ZSTD_FOUND AND KV_LZ4_FOUND)
    set(KV_HAVE_COMPRESSION ON)
    list(APPEND kv_crypto_sources ${CMAKE_SOURCE_DIR}/src/wrappers/compression.c)
    list(APPEND kv_crypto_libs PkgConfig::KV_ZLIB PkgConfig::KV_ZSTD
      PkgConfig::KV_LZ4)
    list(INSERT kv_crypto_wrappers 0
      compression=kv__wrap_compression_from_options)
    list(APPEND kv_crypto_shims ${CMAKE_SOURCE_DIR}/src/shims/compression.c)
    list(APPEND kv_crypto_pc -lz -lzstd -llz4)
    list(APPEND kv_crypto_defs KV_HAVE_COMPRESSION)
  else()
    kv_part_missing(crypto "zlib1g-dev, libzstd-dev and liblz4-dev (compression)")
  endif()
  # libcrypto is already in kvio.pc (Requires.private) for the core.
  kv_part(crypto
    SOURCES ${kv_crypto_sources}
    LIBS ${kv_crypto_libs}
    WRAPPERS ${kv_crypto_wrappers}
    SHIMS ${kv_crypto_shims}
    PC_PRIVATE ${kv_crypto_pc}
    DEFINITIONS ${kv_crypto_defs})
else()
  kv_part_missing(crypto "libssl-dev and libjansson-dev (encryption)")
endif()
