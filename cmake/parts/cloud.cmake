# s3:// and dynamodb:// — the cloud stores, over libcurl driven by the loop
# (src/stores/http.c: multi-socket API, SigV4 signing by curl >= 7.75).
# S3's XML answers are parsed with expat, DynamoDB's JSON with jansson.
pkg_check_modules(LIBCURL IMPORTED_TARGET libcurl>=7.75)
pkg_check_modules(EXPAT IMPORTED_TARGET expat)
if(LIBCURL_FOUND AND EXPAT_FOUND)
  set(KV_HAVE_CLOUD ON)
  kv_part(cloud
    SOURCES ${CMAKE_SOURCE_DIR}/src/stores/http.c
      ${CMAKE_SOURCE_DIR}/src/stores/s3.c ${CMAKE_SOURCE_DIR}/src/stores/s3_xml.c
      ${CMAKE_SOURCE_DIR}/src/stores/dynamodb.c
    LIBS PkgConfig::LIBCURL PkgConfig::EXPAT PkgConfig::JANSSON
      PkgConfig::LIBCRYPTO
    STORES s3=kv__s3_methods dynamodb=kv__dynamodb_methods
    PC_PRIVATE -lcurl -lexpat -ljansson
    DEFINITIONS KV_HAVE_CLOUD KV_HAVE_S3 KV_HAVE_DYNAMODB)
else()
  set(KV_HAVE_CLOUD OFF)
  if(NOT LIBCURL_FOUND)
    kv_part_missing(cloud "libcurl4-openssl-dev (libcurl >= 7.75)")
  else()
    kv_part_missing(cloud "libexpat1-dev")
  endif()
endif()
