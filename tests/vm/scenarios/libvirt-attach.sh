#!/usr/bin/env bash
# VM tier scenario (issue 13, scenario 2): hot-attach of one function of a
# multi-function group while its sibling sits on its host driver, stock
# and patched libvirtd one after the other (tests/vm/guest-libvirt.sh).
#
# Domain "c" runs with no device of group 10 (paused: a hot-plug needs no
# help from the guest, and the refusal comes before QEMU is asked).
# virsh attach-device of function 0 while function 1 is on e1000e must
# be refused upfront, naming function 1, and leave the host as it was:
# function 0 on e1000e, driver_override untouched, no /dev/vfio/N, and
# not a line about either function in the kernel log (no unbind, no
# probe).  Stock's outcome (QEMU's "group N is not viable", and what its
# rollback leaves) is recorded.
# shellcheck disable=SC2317 # flavour() runs through vm_lv_run
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
# shellcheck source=tests/vm/guest-libvirt.sh
. "$HD_SRCDIR/tests/vm/guest-libvirt.sh"
vm_lv_begin libvirt-attach "$@"

mf0=$VM_MF0 mf1=$VM_MF1 # the pair, group g
g=$(vm_group "$mf0")

flavour() {
    local t0 out rc=0 before
    vm_lv_start "$1" || return 0
    # The console file is the flavour's (vm_lv_console).
    vm_lv_xml "$VM_LV_DIR/c.xml" c
    vm_lv_hostdev "$mf0" >"$VM_LV_DIR/mf0.xml"
    vm_lv_must "define c" vm_virsh define "$VM_LV_DIR/c.xml" || return 0
    t0=$(vm_now_ms)
    vm_lv_must "start c (paused)" vm_virsh start --paused c || return 0
    vm_lv_fact "start c (ms)" "$(($(vm_now_ms) - t0))"
    before=$(vm_drivers "$mf0" "$mf1")
    vm_expect "$1: the pair on e1000e before" "$mf0=e1000e $mf1=e1000e" "$before"

    echo "--- $1: 2. attach-device $mf0 while $mf1 is on e1000e"
    vm_lv_log_mark
    vm_mark "libvirt-attach-$1"
    t0=$(vm_now_ms)
    out=$(vm_virsh attach-device c "$VM_LV_DIR/mf0.xml" 2>&1) || rc=$?
    vm_lv_fact "attach-device $mf0 (ms)" "$(($(vm_now_ms) - t0))"
    vm_lv_fact "attach-device $mf0: error" "$(echo "$out" | tr '\n' ' ')"
    vm_lv_fact "attach-device $mf0: libvirtd errors" "$(vm_lv_errors_since | tr '\n' '|')"
    sleep 2
    vm_lv_check "attach-device refused" 1 "$rc"
    vm_lv_check "the error names the sibling $mf1" yes \
        "$(grep -q "$mf1" <<<"$out" && echo yes || echo no)"
    vm_lv_check "the error names group $g" yes \
        "$(grep -q "group $g" <<<"$out" && echo yes || echo no)"
    vm_lv_check "$mf0 not in c" no "$(vm_lv_in_domain c "$mf0")"
    vm_lv_step "after attach-device $mf0" "$mf0" "$mf1"
    vm_lv_check "drivers as before" "$before" "$(vm_drivers "$mf0" "$mf1")"
    vm_lv_check "$mf0 driver_override untouched" "(null)" \
        "$(cat "$VM_SYS/devices/$mf0/driver_override")"
    vm_lv_check "no /dev/vfio/$g" no "$([ -e "/dev/vfio/$g" ] && echo yes || echo no)"
    vm_lv_check "the kernel saw nothing of the pair" "" \
        "$(vm_dmesg_since "libvirt-attach-$1" | grep -E "${mf0//./\\.}|${mf1//./\\.}" | tr '\n' '|')"
}

vm_lv_run flavour
