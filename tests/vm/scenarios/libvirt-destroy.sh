#!/usr/bin/env bash
# VM tier scenario (issue 13, scenario 4): virsh destroy of a guest that
# holds every assignable device of the VM (six devices, four groups: the
# two single NICs, the multi-function pair, the two e1000 behind the
# PCI bridge), stock and patched libvirtd one after the other
# (tests/vm/guest-libvirt.sh).
#
# Domain "d" starts paused: QEMU opens every group and device when it
# starts, so the guest's own state plays no part in the release.  After
# the destroy every device must be back on its host driver (patched:
# checked, waiting up to 60 s for the give-back), none driverless, no
# /dev/vfio/N left; the wall times of the call and up to the last device
# back are recorded for both flavours, side by side.
# shellcheck disable=SC2317 # flavour() runs through vm_lv_run
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
# shellcheck source=tests/vm/guest-libvirt.sh
. "$HD_SRCDIR/tests/vm/guest-libvirt.sh"
vm_lv_begin libvirt-destroy "$@"

groups=()
for a in "${VM_DEVICES[@]}"; do groups+=("$(vm_group "$a")"); done
mapfile -t groups < <(printf '%s\n' "${groups[@]}" | sort -un)
read -ra native <<<"$(vm_native_drivers "${VM_DEVICES[@]}")"

# vfio_nodes: the /dev/vfio/N of the test devices' groups that exist.
vfio_nodes() {
    local n out=()
    for n in "${groups[@]}"; do [ ! -e "/dev/vfio/$n" ] || out+=("$n"); done
    echo "${out[*]}"
}

flavour() {
    local t0
    vm_lv_start "$1" || return 0
    # The console file is the flavour's (vm_lv_console).
    vm_lv_xml "$VM_LV_DIR/d.xml" d "${VM_DEVICES[@]}"
    vm_lv_must "define d" vm_virsh define "$VM_LV_DIR/d.xml" || return 0
    t0=$(vm_now_ms)
    vm_lv_must "start d (paused) with all six devices" vm_virsh start --paused d || return 0
    vm_lv_fact "start d (ms)" "$(($(vm_now_ms) - t0))"
    vm_lv_step "d started" "${VM_DEVICES[@]}"
    vm_expect "$1: every device on vfio-pci" 0 \
        "$(vm_drivers "${VM_DEVICES[@]}" | tr ' ' '\n' | grep -vc '=vfio-pci$' || true)"
    vm_lv_fact "groups held" "$(vfio_nodes)"

    echo "--- $1: 4. destroy d"
    vm_lv_destroy d "all six back" "${native[@]}" || return 0
    vm_lv_step "after destroy" "${VM_DEVICES[@]}"
    vm_lv_check "every device on its host driver" "${native[*]}" "$(vm_drivers "${VM_DEVICES[@]}")"
    vm_lv_check "no /dev/vfio/N of theirs left" "" "$(vfio_nodes)"
    vm_lv_fact "libvirtd errors during the destroy" "$(vm_lv_errors_since | tr '\n' '|')"
    vm_lv_fact "kernel during the destroy" \
        "$(vm_kernel_trouble "libvirt-destroy-$1" "${VM_DEVICES[@]}" | tr '\n' '|')"
}

vm_lv_run flavour
