# Tests of the wrappers part: the conformance suite over wrapper stacks
# (wrap:// URLs, see docs/wrappers.md), one cmocka program per wrapper
# (tests/wrappers/test-*.c; the compression and encryption tests belong to
# the crypto part), and the CLI cases (tests/cli/cases/*wrap*, *stats*).
if(KV_HAVE_WRAPPERS AND TARGET test-conformance)
  # Each wrapper over memory:// with settings that keep the suite's
  # expectations true, then stacks.
  set(KV_WRAP_CONFORMANCE
    "statistics=wrap:///statistics@memory://"
    "logging=wrap:///logging:sink=null,values=true@memory://"
    "logging-json=wrap:///logging:sink=null,format=json@memory://"
    "retry=wrap:///retry:max=3@memory://"
    "timeout=wrap:///timeout:seconds=30@memory://"
    "ttl-clamp=wrap:///ttl-clamp:min=0,max=10000000000@memory://"
    "cache=wrap:///cache:store=memory://@memory://"
    "cache-missing=wrap:///cache:store=memory://,max_ttl=1,missing_ttl=0.5@memory://"
    "fallback=wrap:///fallback:store=memory://,write=true@memory://"
    "prefix-keys=wrap:///prefix-keys:prefix=app:@memory://"
    "prefix-keys-tilde=wrap:///prefix-keys:prefix=~@memory://"
    "prefix-collections=wrap:///prefix-collections:prefix=tenant1/@memory://"
    "single-collection=wrap:///single-collection:collection=everything@memory://"
    "limit-size=wrap:///limit-size:max=17000000@memory://"
    "fault-injection=wrap:///fault-injection:rate=0@memory://"
    "collection-routing=wrap:///collection-routing:users=memory://,c01=memory://@memory://"
    "stack-memory=wrap:///prefix-keys:prefix=p|timeout:seconds=30|retry:max=3|statistics@memory://"
    "stack-disk=wrap:///prefix-keys:prefix=p|timeout:seconds=60|retry:max=3|statistics@disk://@TMP@/db"
    "stack-all=wrap:///single-collection:collection=x|prefix-collections:prefix=y|prefix-keys:prefix=z|cache:store=memory://|limit-size:max=17000000|ttl-clamp:max=10000000000|fallback:store=null://|logging:sink=null|retry|timeout:seconds=60|statistics@disk://@TMP@/db")
  foreach(pair ${KV_WRAP_CONFORMANCE})
    string(FIND "${pair}" "=" eq)
    string(SUBSTRING "${pair}" 0 ${eq} label)
    math(EXPR from "${eq} + 1")
    string(SUBSTRING "${pair}" ${from} -1 url)
    kv_conformance(wrap-${label} "${url}")
  endforeach()
endif()

if(KV_HAVE_WRAPPERS)
  file(GLOB KV_WRAP_TESTS CONFIGURE_DEPENDS
    ${CMAKE_CURRENT_SOURCE_DIR}/wrappers/test-*.c)
  list(FILTER KV_WRAP_TESTS EXCLUDE REGEX "/test-(compression|encryption)\\.c$")
  foreach(src ${KV_WRAP_TESTS})
    get_filename_component(name ${src} NAME_WE)
    set(target wrap-${name})
    add_executable(${target} ${src})
    target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/src
      ${CMAKE_SOURCE_DIR}/tests ${CMAKE_CURRENT_SOURCE_DIR}/wrappers)
    target_compile_options(${target} PRIVATE ${KV_WARNINGS})
    target_compile_definitions(${target} PRIVATE ${KV_PART_DEFINITIONS})
    target_link_libraries(${target} PRIVATE kvio_static PkgConfig::CMOCKA
      ${KV_PART_LIBS} m)
    add_test(NAME ${target} COMMAND ${target})
    set_tests_properties(${target} PROPERTIES TIMEOUT ${KV_TEST_TIMEOUT}
      SKIP_RETURN_CODE 77 LABELS wrappers)
  endforeach()
endif()
