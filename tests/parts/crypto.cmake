# Tests of part `crypto`: the compression and encryption wrappers' unit tests
# (with the Fernet specification's vectors) and the conformance suite through
# each wrapper over memory://.
set(KV_CRYPTO_TEST_DEPS kvio_static PkgConfig::CMOCKA ${KV_PART_LIBS} m)

function(kv_crypto_test name)
  add_executable(${name} ${CMAKE_CURRENT_SOURCE_DIR}/wrappers/${name}.c)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src
    ${CMAKE_CURRENT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE ${KV_WARNINGS})
  target_compile_definitions(${name} PRIVATE ${KV_PART_DEFINITIONS} ${ARGN})
  target_link_libraries(${name} PRIVATE ${KV_CRYPTO_TEST_DEPS})
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
    SKIP_RETURN_CODE 77 LABELS "unit;crypto")
endfunction()

if(KV_HAVE_COMPRESSION)
  kv_crypto_test(test-compression)
endif()

if(KV_HAVE_ENCRYPTION)
  kv_crypto_test(test-encryption
    KV_FERNET_VECTORS_DIR="${CMAKE_CURRENT_SOURCE_DIR}/vectors/fernet")
  target_link_libraries(test-encryption PRIVATE PkgConfig::JANSSON)
endif()

# The benchmark (bench/bench-crypto.c is globbed by the root CMakeLists.txt
# and linked with kvio_static and LMDB only).
if(TARGET bench-crypto)
  target_link_libraries(bench-crypto PRIVATE ${KV_PART_LIBS})
  target_compile_definitions(bench-crypto PRIVATE ${KV_PART_DEFINITIONS})
endif()

# The whole conformance suite through each wrapper (wrap:// URLs, part
# `wrappers`). min_size=1 makes every value but the empty one go through the
# compressor. The encryption key is the Fernet specification's test key.
if(COMMAND kv_conformance AND KV_HAVE_WRAPPERS)
  set(KV_TEST_FERNET_KEY "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=")
  if(KV_HAVE_COMPRESSION)
    kv_conformance(compression-zstd
      "wrap:///compression:algorithm=zstd,min_size=1@memory://")
    kv_conformance(compression-gzip
      "wrap:///compression:algorithm=gzip,min_size=1@memory://")
    kv_conformance(compression-lz4
      "wrap:///compression:algorithm=lz4,min_size=1@memory://")
  endif()
  if(KV_HAVE_ENCRYPTION)
    kv_conformance(encryption
      "wrap:///encryption:key=${KV_TEST_FERNET_KEY}@memory://")
    kv_conformance(encryption-disk
      "wrap:///encryption:key=${KV_TEST_FERNET_KEY}@disk://@TMP@/db")
  endif()
  if(KV_HAVE_COMPRESSION AND KV_HAVE_ENCRYPTION)
    # The useful order: encryption next to the store, compression above it
    # (values are compressed, then encrypted).
    kv_conformance(encryption-compression
      "wrap:///encryption:key=${KV_TEST_FERNET_KEY}|compression:min_size=1@memory://")
  endif()
endif()
