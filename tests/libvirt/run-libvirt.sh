#!/usr/bin/env bash
# Run one step of libvirt/libvirt.sh (verify, test, syntax-check) on the libvirt
# build of the source tree, for meson (exit 77: skipped, with the reason).
set -euo pipefail

step=$1
root=${HD_SRCDIR:?HD_SRCDIR is not set}
build="$root/${LIBVIRT_BUILD:-build-libvirt}"

if [ ! -f "$build/build.ninja" ]; then
    echo "SKIP: no libvirt build at $build (make libvirt, or make check, builds it)"
    exit 77
fi

# hostdev's test environment (sanitizer options, G_DEBUG=fatal-criticals) is
# for hostdev's programs; libvirt's tests run as libvirt's meson runs them.
exec env -u G_DEBUG -u ASAN_OPTIONS -u UBSAN_OPTIONS \
    "$root/libvirt/libvirt.sh" "$step"
