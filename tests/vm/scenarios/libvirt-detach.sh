#!/usr/bin/env bash
# VM tier scenario (issue 13, scenarios 1, 5 and 3): one function of a
# multi-function group leaves a running guest through libvirt, stock and
# patched libvirtd one after the other (tests/vm/guest-libvirt.sh).
#
# Domain "a" (a nested Linux guest, which must answer the unplug request:
# ACPI hot-plug) gets both functions of group 10, managed.  Then:
#   1. virsh detach-device of function 1 while function 0 stays in the
#      guest (seed 000): it must wait on vfio-pci, never driverless.
#   5. a second domain "b" asks for function 1, whose group "a" still
#      holds: refused, with an error that says so; and "b2" asks for
#      function 0, which "a" has.
#   3. libvirtd is killed (SIGKILL) while function 1 is pending and started
#      again on the same state: "a" still runs, function 1 still waits.
#   1. virsh destroy of "a": both functions back on e1000e, given back by
#      the restarted daemon (function 1 only from its durable list).
# No test device is driverless after any step.  One boot of the nested
# guest per flavour serves all three, as it takes minutes under two
# levels of TCG.
# shellcheck disable=SC2317 # flavour() runs through vm_lv_run
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
# shellcheck source=tests/vm/guest-libvirt.sh
. "$HD_SRCDIR/tests/vm/guest-libvirt.sh"
vm_lv_begin libvirt-detach "$@"

mf0=$VM_MF0
mf1=$VM_MF1
g=$(vm_group "$mf0")
vm_lv_hostdev "$mf1" >"$VM_LV_DIR/mf1.xml"

# refused DOMAIN: start DOMAIN, which must fail; its error and what it did
# to the group become facts, the patched checks.
refused() {
    local dom=$1 out rc=0 t0
    vm_lv_must "define $dom" vm_virsh define "$VM_LV_DIR/$dom.xml" || return 1
    vm_lv_log_mark
    t0=$(vm_now_ms)
    out=$(vm_virsh start "$dom" 2>&1) || rc=$?
    vm_lv_fact "start $dom (ms)" "$(($(vm_now_ms) - t0))"
    vm_lv_fact "start $dom: error" "$(echo "$out" | tr '\n' ' ')"
    vm_lv_fact "start $dom: libvirtd errors" "$(vm_lv_errors_since | tr '\n' '|')"
    vm_lv_check "start $dom refused" 1 "$rc"
    vm_lv_check "start $dom: error names group $g or domain a" yes \
        "$(grep -qE "group $g|domain '?a'?" <<<"$out" && echo yes || echo no)"
    vm_lv_check "$dom not running" "shut off" "$(vm_virsh domstate "$dom" 2>&1)"
    vm_virsh undefine "$dom" >/dev/null 2>&1 || true
}

# acpi_hotplug DOMAIN: QEMU's answer whether its q35 machine hot-plugs
# through ACPI (a property of its ACPI device, the ICH9 LPC).
acpi_hotplug() {
    local get='{"execute": "qom-get", "arguments": {"path": "%s", "property": "%s"}}' cmd path
    # shellcheck disable=SC2059 # the format is $get
    cmd=$(printf "$get" /machine acpi-device)
    path=$(vm_virsh qemu-monitor-command "$1" "$cmd" | sed -n 's/.*"return": *"\([^"]*\)".*/\1/p')
    # shellcheck disable=SC2059
    cmd=$(printf "$get" "$path" acpi-pci-hotplug-with-bridge-support)
    vm_virsh qemu-monitor-command "$1" "$cmd" | sed -n 's/.*"return": *\([a-z]*\).*/\1/p'
}

flavour() {
    local t0 t1 out rc
    vm_lv_start "$1" || return 0
    # The console file is the flavour's (vm_lv_console).
    vm_lv_xml "$VM_LV_DIR/a.xml" a "$mf0" "$mf1"
    vm_lv_xml "$VM_LV_DIR/b.xml" b "$mf1"
    vm_lv_xml "$VM_LV_DIR/b2.xml" b2 "$mf0"

    echo "--- $1: domain a with $mf0 and $mf1"
    vm_lv_must "define a" vm_virsh define "$VM_LV_DIR/a.xml" || return 0
    t0=$(vm_now_ms)
    vm_lv_must "start a" vm_virsh start a || return 0
    vm_lv_fact "start a (ms)" "$(($(vm_now_ms) - t0))"
    if ! vm_lv_wait_ready a 600; then
        vm_expect "$1: the nested guest runs" ready "not after 600 s"
        return 0
    fi
    vm_lv_fact "nested guest ready after start (ms)" "$(($(vm_now_ms) - t0))"
    vm_lv_fact "nested guest" "$(grep -m1 '^hd-nested: ready' "$(vm_lv_console a)")"
    vm_lv_step "a started" "$mf0" "$mf1"
    vm_lv_fact "q35 hot-plug through ACPI (acpi-pci-hotplug-with-bridge-support)" \
        "$(acpi_hotplug a)"
    vm_lv_check "a holds /dev/vfio/$g" yes "$([ -e "/dev/vfio/$g" ] && echo yes || echo no)"

    echo "--- $1: 1. detach-device $mf1, $mf0 stays"
    vm_lv_log_mark
    vm_mark "libvirt-detach-$1"
    t0=$(vm_now_ms)
    rc=0
    out=$(vm_virsh detach-device a "$VM_LV_DIR/mf1.xml" 2>&1) || rc=$?
    vm_lv_fact "detach-device $mf1 (ms)" "$(($(vm_now_ms) - t0))"
    vm_lv_fact "detach-device $mf1" "status $rc: $(echo "$out" | tr '\n' ' ')"
    vm_lv_must "detach-device $mf1 accepted" test "$rc" -eq 0 || return 0
    for ((i = 0; i < 600; i++)); do
        [ "$(vm_lv_in_domain a "$mf1")" = no ] && break
        sleep 0.2
    done
    vm_lv_fact "$mf1 gone from a after (ms)" "$(($(vm_now_ms) - t0))"
    t1=$(vm_lv_log_time "Device $(vm_lv_alias "$mf1") removed from domain")
    vm_lv_fact "DEVICE_DELETED after (ms)" "${t1:+$((t1 - t0))}"
    vm_lv_must "$mf1 left the domain" test "$(vm_lv_in_domain a "$mf1")" = no || return 0
    # Let a stray rebind or give-back show itself before the drivers count.
    sleep 2
    vm_lv_step "after detach-device $mf1" "$mf0" "$mf1"
    vm_lv_check "$mf1 waits on vfio-pci" vfio-pci "$(vm_driver "$mf1")"
    vm_lv_check "$mf0 stays in the guest on vfio-pci" vfio-pci "$(vm_driver "$mf0")"
    vm_lv_check "$mf0 still in a" yes "$(vm_lv_in_domain a "$mf0")"
    vm_lv_fact "libvirtd errors during the detach" "$(vm_lv_errors_since | tr '\n' '|')"
    vm_lv_fact "kernel during the detach" "$(vm_kernel_trouble "libvirt-detach-$1" "$mf0" "$mf1" | tr '\n' '|')"

    echo "--- $1: 5. a second domain asks for the held group"
    refused b || return 0
    vm_lv_step "after start of b ($mf1)" "$mf0" "$mf1"
    vm_lv_check "$mf1 still waits on vfio-pci" vfio-pci "$(vm_driver "$mf1")"
    refused b2 || return 0
    vm_lv_step "after start of b2 ($mf0)" "$mf0" "$mf1"

    echo "--- $1: 3. libvirtd killed while group $g is pending"
    vm_lv_kill_daemon KILL
    vm_lv_step "libvirtd killed" "$mf0" "$mf1"
    t0=$(vm_now_ms)
    vm_lv_start "$1" keep || return 0
    vm_lv_fact "restart answers after (ms)" "$(($(vm_now_ms) - t0))"
    vm_lv_check "a still runs after the restart" running "$(vm_virsh domstate a 2>&1)"
    vm_lv_check "$mf0 still in a" yes "$(vm_lv_in_domain a "$mf0")"
    sleep 2
    vm_lv_step "after the restart" "$mf0" "$mf1"
    vm_lv_check "$mf1 still waits on vfio-pci" vfio-pci "$(vm_driver "$mf1")"

    echo "--- $1: destroy a: the group goes back"
    vm_lv_destroy a "both on e1000e" "$mf0=e1000e" "$mf1=e1000e" || return 0
    vm_lv_step "after destroy" "$mf0" "$mf1"
    vm_lv_check "both back on e1000e" "$mf0=e1000e $mf1=e1000e" "$(vm_drivers "$mf0" "$mf1")"
    vm_lv_check "/dev/vfio/$g gone" no "$([ -e "/dev/vfio/$g" ] && echo yes || echo no)"
    vm_lv_fact "libvirtd errors during the destroy" "$(vm_lv_errors_since | tr '\n' '|')"
    vm_lv_fact "kernel during the destroy" "$(vm_kernel_trouble "libvirt-destroy-$1" "$mf0" "$mf1" | tr '\n' '|')"
    vm_lv_fact "the nested guest's PCI devices beyond bus 0" "$(vm_lv_guest_pci a)"
}

vm_lv_run flavour
