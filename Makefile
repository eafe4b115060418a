# Thin wrapper around meson for a fresh Debian machine.
#   make demo   install, build, run the main job on the simulated host
#   make check  install, build with ASan+UBSan, run every test suite
#   make bench  benchmarks (results in build/bench/)

BUILD ?= build
CHECK_BUILD ?= build-check
MESON_TEST_ARGS ?=

.PHONY: all deps build check demo bench clean

all: build

deps:
	@scripts/install-deps.sh $(DEPS_EXTRA)

build: deps
	@test -f $(BUILD)/build.ninja || meson setup $(BUILD) >/dev/null
	meson compile -C $(BUILD)

check: DEPS_EXTRA = vm
check: deps
	@test -f $(CHECK_BUILD)/build.ninja || meson setup $(CHECK_BUILD) \
	    -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dwerror=true >/dev/null
	meson compile -C $(CHECK_BUILD)
	meson test -C $(CHECK_BUILD) --print-errorlogs $(MESON_TEST_ARGS)

demo: build
	scripts/demo.sh $(BUILD)

bench: build
	meson test -C $(BUILD) --benchmark --suite bench --print-errorlogs

clean:
	rm -rf $(BUILD) $(CHECK_BUILD)
