# kvio — the two commands are `make demo` and `make check`.
#
#   make demo    install what is missing, build, run the quickstart on
#                memory:// and disk://, then a short CLI session
#   make check   install what is missing, build with -Werror, run every test,
#                then build with ASan + UBSan and run every test again
#   make         build (build/)
#   make bench   run the benchmarks recorded in BENCHMARKS.md
#   make install PREFIX=/usr/local

BUILD      ?= build
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
CTEST_ARGS ?= --output-on-failure -j$(JOBS)

.PHONY: all deps demo check check-release check-asan check-tsan check-fuzz fuzz bench \
  install clean format

all: deps
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

deps:
	@scripts/deps.sh build

demo:
	@scripts/deps.sh demo
	cmake -S . -B $(BUILD) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)
	@scripts/demo.sh $(BUILD)

check:
	@scripts/deps.sh check
	$(MAKE) --no-print-directory check-release check-asan check-tsan check-fuzz

check-release:
	cmake -S . -B build-check -DKV_WERROR=ON -DKV_REQUIRE_ALL=ON >/dev/null
	cmake --build build-check -j$(JOBS)
	cd build-check && ctest $(CTEST_ARGS)

check-asan:
	cmake -S . -B build-asan -DKV_WERROR=ON -DKV_REQUIRE_ALL=ON -DKV_ASAN=ON -DKV_UBSAN=ON \
	  -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_ARGS)

# ThreadSanitizer over the stores that work on libuv's threadpool (disk,
# file, sqlite, rocksdb, and wrapper stacks over disk): the conformance
# suite, without its fork()ing cases (TSan cannot follow a fork), through the
# static library (the module runs need the shared one, not built here).
check-tsan:
	cmake -S . -B build-tsan -DKV_WERROR=ON -DKV_REQUIRE_ALL=ON -DKV_TSAN=ON \
	  -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-tsan -j$(JOBS) --target test-conformance
	cd build-tsan && KVIO_TEST_NO_FORK=1 TSAN_OPTIONS=halt_on_error=1 \
	  ctest $(CTEST_ARGS) -L conformance -R 'disk|sqlite|rocksdb|file' -E module

# Fuzz targets, built with clang (libFuzzer + ASan + UBSan): a short run of
# each in `make check`, FUZZ_SECONDS per target in `make fuzz`.
FUZZ_SECONDS ?= 300
build-fuzz/CMakeCache.txt:
	CC=clang cmake -S . -B build-fuzz -DKV_FUZZ=ON -DKV_WERROR=ON \
	  -DKV_REQUIRE_ALL=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null

check-fuzz: build-fuzz/CMakeCache.txt
	cmake --build build-fuzz -j$(JOBS) --target fuzzers
	cd build-fuzz && ctest $(CTEST_ARGS) -L fuzz

fuzz: build-fuzz/CMakeCache.txt
	@scripts/deps.sh check
	cmake --build build-fuzz -j$(JOBS) --target fuzzers
	for t in build-fuzz/tests/fuzz-*; do \
	  n=$$(basename $$t); \
	  bash tests/fuzz/run.sh $$t tests/fuzz/corpus/$${n#fuzz-} $(FUZZ_SECONDS) s || exit 1; \
	done

bench: all
	@scripts/bench.sh $(BUILD)

install: all
	cmake --install $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-check build-asan build-tsan build-fuzz
