# Thin wrapper around meson for a fresh Debian machine.
#   make demo   install, build, run the main job on the simulated host
#   make check  install, build with ASan+UBSan, run every test suite
#   make bench  benchmarks (results in build/bench/)
#   make stress long runs (docs/stress.rst): fuzzers FUZZ_SECONDS each,
#               STRESS_STEPS random interleavings, every crash point
#   make libvirt       Debian's libvirt with libvirt/patches: fetch, apply,
#                      build into build-libvirt/, libvirt's tests and
#                      syntax-check (docs/libvirt.rst)
#   make libvirt-debs  Debian packages of it (build-libvirt-debs/)

BUILD ?= build
CHECK_BUILD ?= build-check
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
STRESS_STEPS ?= 200000
MESON_TEST_ARGS ?=

.PHONY: all deps build check demo bench stress clean libvirt libvirt-build libvirt-debs

all: build

deps:
	@scripts/install-deps.sh $(DEPS_EXTRA)

build: deps
	@test -f $(BUILD)/build.ninja || meson setup $(BUILD) >/dev/null
	meson compile -C $(BUILD)

check: DEPS_EXTRA = vm
check: deps libvirt-build
	@test -f $(CHECK_BUILD)/build.ninja || meson setup $(CHECK_BUILD) \
	    -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dwerror=true >/dev/null
	meson compile -C $(CHECK_BUILD)
	meson test -C $(CHECK_BUILD) --print-errorlogs $(MESON_TEST_ARGS)

demo: build
	scripts/demo.sh $(BUILD)

bench: build
	meson test -C $(BUILD) --benchmark --suite bench --print-errorlogs

stress: DEPS_EXTRA = stress
stress: deps
	@test -f $(CHECK_BUILD)/build.ninja || meson setup $(CHECK_BUILD) \
	    -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dwerror=true >/dev/null
	@test -f $(FUZZ_BUILD)/build.ninja || CC=clang meson setup $(FUZZ_BUILD) \
	    -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	meson compile -C $(CHECK_BUILD)
	meson compile -C $(FUZZ_BUILD)
	tests/fuzz/run-fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)
	HD_STRESS_STEPS=$(STRESS_STEPS) meson test -C $(CHECK_BUILD) -t 0 --print-errorlogs \
	    --verbose interleave crash-all manager-crash

# make check runs libvirt's suites (meson suite `libvirt`) on this build.
libvirt-build:
	libvirt/libvirt.sh build

libvirt:
	libvirt/libvirt.sh all

libvirt-debs:
	libvirt/libvirt.sh debs

clean:
	rm -rf $(BUILD) $(CHECK_BUILD) $(FUZZ_BUILD)
