#!/usr/bin/env bash
# VM tier scenario (issue 14, finding 12): an unplug the guest does not
# answer by hostdevd's deadline, on the real kernel and a real QEMU.  The
# nested QEMU is paused with no guest OS: the unplug of a device on its
# command line (its slot powered) waits for a guest that never answers,
# as a very slow one would.  detach-device times out; the device stays
# assigned, its unplug pending (durably); asked again, QEMU refuses a
# second device_del while the first waits ("already in the process of
# unplug"), and hostdevd waits anew instead of failing; a restarted
# hostdevd connects its monitor again, finds the device still in QEMU and
# keeps the unplug pending; destroy ends it.  A late DEVICE_DELETED needs
# a guest that answers: the simulated host's hostile-late-unplug test
# covers its release.
# shellcheck disable=SC2154 # q_pid, q_qmp, q_hdqmp: set by vm_qemu_start
# shellcheck disable=SC2119 # vm_hd_start's arguments are optional
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
vm_discover
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
vm_hd_init daemon-late-unplug || { echo "SKIP: $VM_HOSTDEVD or $VM_HOSTDEVCTL was not built"; exit 77; }

domain=late
nic=$VM_NIC1
alias=$(vm_hd_alias "$nic")
q_pid=

# shellcheck disable=SC2317 # called by the trap
cleanup() {
    [ -z "$q_pid" ] || vm_qemu_stop q
    vm_hd_cleanup "$domain" "$nic"
}
trap cleanup EXIT

in_domain() {
    vm_hd_json "' '.join(d['address'] for x in r if x['name'] == '$domain' for d in x['devices'])" domains
}
pending() {
    vm_hd_json "' '.join(a for x in r if x['name'] == '$domain' for a in x['unplug-pending'])" domains
}
# qemu_has: whether QEMU still lists the device (device_del's namespace).
qemu_has() {
    vm_qmp q qom-list '{"path": "/machine/peripheral"}' | grep "\"$alias\"" >/dev/null && echo yes || echo no
}
# detach TIMEOUT_S: detach-device of the NIC; prints "STATUS OUTPUT".
detach() {
    local rc=0 out
    out=$(vm_hdctl detach-device --unplug-timeout "$1" "$domain" /tmp/$domain.xml 2>&1) || rc=$?
    echo "$rc $out"
}

vm_mark dl-start
vm_hd_start || { echo "hostdevd did not start"; exit 1; }
vm_hd_xml /tmp/$domain.xml "$domain" "$nic"
vm_expect "define and prepare" ok \
    "$(vm_hdctl define "$domain" >/dev/null && vm_hdctl prepare "$domain" /tmp/$domain.xml >/dev/null && echo ok)"
t0=$(vm_now_ms)
vm_qemu_start q -device "vfio-pci,host=$nic,bus=rp0,id=$alias" ||
    { vm_expect "QEMU starts with the device" up failed; vm_done; }
vm_fact "late: nested QEMU with the NIC up after (ms)" "$(($(vm_now_ms) - t0))"
vm_expect "define hostdevd's QMP socket and pid" ok \
    "$(vm_hdctl define "$domain" --qmp "$q_hdqmp" --pid "$q_pid" >/dev/null && echo ok)"

vm_log "--- detach-device, deadline 1 s: the guest never answers"
t0=$(vm_now_ms)
r=$(detach 1)
vm_fact "late: detach-device (unplug-timeout 1 s)" "after $(($(vm_now_ms) - t0)) ms: $r"
vm_expect "it times out (exit 7), and hostdevd keeps listening" "7 yes" \
    "${r%% *} $([[ $r == *"keeps listening"* ]] && echo yes || echo no)"
vm_expect "the NIC stays assigned on vfio-pci, its unplug pending, QEMU still has it" \
    "$nic vfio-pci $nic yes" "$(in_domain) $(vm_driver "$nic") $(pending) $(qemu_has)"

vm_log "--- detach-device again: QEMU refuses a second device_del meanwhile"
r=$(detach 1)
vm_fact "late: detach-device again" "$r"
vm_expect "asked again it waits anew (exit 7), no device_del failure" "7 no" \
    "${r%% *} $([[ $r == *refused* || $r == *DeviceNotFound* ]] && echo yes || echo no)"
vm_expect "still assigned, still pending" "$nic $nic" "$(in_domain) $(pending)"

vm_log "--- hostdevd restarted: the pending unplug and the monitor come back"
vm_hd_stop
vm_hd_start || { vm_expect "hostdevd restarts" up failed; vm_done; }
sleep 1
vm_expect "after the restart: still assigned, still pending, QEMU still has it" \
    "$nic $nic yes" "$(in_domain) $(pending) $(qemu_has)"
vm_expect "hostdevd's monitor thread runs" yes \
    "$(grep -qs '^hdd-qmp-late$' /proc/"$VM_HD_PID"/task/*/comm && echo yes || echo no)"

vm_log "--- destroy ends QEMU, the pending unplug and the monitor"
rc=0
out=$(vm_hdctl destroy --no-progress "$domain") || rc=$?
echo "$out"
vm_wait_gone "$q_pid" 10 || true
wait "$q_pid" 2>/dev/null || true
vm_expect "destroy: QEMU gone, the NIC home, nothing pending" \
    "0 no $(vm_native_driver "$nic") []" \
    "$rc $(kill -0 "$q_pid" 2>/dev/null && echo yes || echo no) $(vm_driver "$nic") [$(pending)]"
q_pid=
vm_expect "no monitor thread left" no \
    "$(grep -qs '^hdd-qmp-late$' /proc/"$VM_HD_PID"/task/*/comm && echo yes || echo no)"
vm_expect "undefine" ok "$(vm_hdctl undefine "$domain" >/dev/null && echo ok)"
vm_expect "nothing tracked, nothing pending" "tracked 0 pending-groups [] security-pending []" \
    "$(vm_hd_state)"
vm_expect "kernel logs no trouble" "" "$(vm_kernel_trouble dl-start "$nic")"

vm_done
