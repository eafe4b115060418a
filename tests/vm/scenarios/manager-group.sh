#!/usr/bin/env bash
# VM tier scenario (issue 8, 1): the manager detaches one function of a
# multifunction group (the GPU + audio case) from a running guest.
#
# Both functions of the pair are assigned to one domain (mgr-tool prepare)
# and given to a nested QEMU.  device_del of one function, then release:
# it must stay on vfio-pci (its sibling is still in use, so the group
# cannot go back) and the kernel must log nothing about it.  device_del of
# the other, release: once QEMU has closed the group, both are given back
# to e1000e.
# shellcheck disable=SC2154 # q_pid: set by vm_qemu_start
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
vm_discover
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
vm_mgr_init manager-group || { echo "SKIP: $VM_MGR_TOOL was not built"; exit 77; }

domain=group
pair=("$VM_MF0" "$VM_MF1")
g=$(vm_group "$VM_MF0")
q_pid=

# shellcheck disable=SC2317 # called by the trap
cleanup() {
    [ -z "$q_pid" ] || vm_qemu_stop q
    cp /tmp/q.log "$HD_VM_RESULTS/manager-group.qemu.log" 2>/dev/null || true
    vm_mgr_cleanup "$domain" "${pair[@]}"
}
trap cleanup EXIT

node() { if [ -e "/dev/vfio/$g" ]; then echo present; else echo absent; fi; }
overrides() { cat "$VM_SYS/devices/$VM_MF0/driver_override" "$VM_SYS/devices/$VM_MF1/driver_override" | tr '\n' ' '; }

for a in "${pair[@]}"; do
    vm_fact "reset_method $a (e1000e, multifunction)" \
        "$(cat "$VM_SYS/devices/$a/reset_method" 2>/dev/null || echo '(none)')"
done

vm_log "--- prepare: both functions to domain $domain"
xml=/tmp/$domain.xml
vm_mgr_xml "$xml" "$domain" "${pair[@]}"
rc=0
out=$(vm_mgr prepare "$domain" "$xml") || rc=$?
echo "$out"
vm_expect "prepare succeeds" 0 "$rc"
vm_expect "mf0 active" "active $domain" "$(vm_mgr_tracked "$out" "$VM_MF0")"
vm_expect "mf1 active" "active $domain" "$(vm_mgr_tracked "$out" "$VM_MF1")"
vm_expect "both on vfio-pci" "$VM_MF0=vfio-pci $VM_MF1=vfio-pci" "$(vm_drivers "${pair[@]}")"
vm_expect "/dev/vfio/$g" present "$(node)"

for a in "${pair[@]}"; do
    vm_fact "reset of $a on vfio-pci (multifunction)" "$(vm_try 1 "$VM_SYS/devices/$a/reset")"
done

vm_log "--- the nested QEMU gets both functions"
vm_qemu_start q
for i in 0 1; do
    r=$(vm_qmp q device_add "{\"driver\": \"vfio-pci\", \"host\": \"${pair[i]}\", \"bus\": \"rp$i\", \"id\": \"hd$i\"}")
    vm_expect "device_add ${pair[i]}" "{}" "$r"
done
vm_expect "QEMU holds /dev/vfio/$g" 1 "$(vm_qemu_fds_on q "^/dev/vfio/$g\$")"
vm_expect "QEMU holds two device fds" 2 "$(vm_qemu_fds_on q 'vfio-device')"

vm_log "--- device_del and release of mf0"
vm_mark mg-del0
out=$(vm_qmp q device_del '{"id": "hd0"}' --wait-event DEVICE_DELETED --timeout 30) || true
vm_expect "DEVICE_DELETED for mf0" yes "$(grep -q '^event DEVICE_DELETED' <<<"$out" && echo yes || echo no)"
vm_fact "mf0 device_del -> DEVICE_DELETED" "$(tail -n1 <<<"$out")"
vm_expect "QEMU still holds the group" 1 "$(vm_qemu_fds_on q "^/dev/vfio/$g\$")"
vm_expect "QEMU holds one device fd" 1 "$(vm_qemu_fds_on q 'vfio-device')"
t0=$(vm_now_ms)
rc=0
out=$(vm_mgr release "$domain" "$VM_MF0") || rc=$?
echo "$out"
vm_fact "release of mf0 took (ms)" "$(($(vm_now_ms) - t0))"
vm_expect "release of mf0 succeeds" 0 "$rc"
vm_expect "mf0 waits on the inactive list" "inactive -" "$(vm_mgr_tracked "$out" "$VM_MF0")"
vm_expect "mf1 still active" "active $domain" "$(vm_mgr_tracked "$out" "$VM_MF1")"
vm_expect "mf0 stays on vfio-pci" vfio-pci "$(vm_driver "$VM_MF0")"
out=$(vm_mgr give-back) || true
vm_expect "give-back leaves the group alone" "given back: 0" "$(head -n1 <<<"$out")"
sleep 0.5
vm_expect "both still on vfio-pci" "$VM_MF0=vfio-pci $VM_MF1=vfio-pci" "$(vm_drivers "${pair[@]}")"
vm_expect "kernel logs no trouble about the pair" "" "$(vm_kernel_trouble mg-del0 "${pair[@]}")"
vm_fact "dmesg after mf0's release" "$(vm_dmesg_since mg-del0 | tr '\n' '|')"

vm_log "--- device_del and release of mf1"
vm_mark mg-del1
out=$(vm_qmp q device_del '{"id": "hd1"}' --wait-event DEVICE_DELETED --timeout 30) || true
vm_expect "DEVICE_DELETED for mf1" yes "$(grep -q '^event DEVICE_DELETED' <<<"$out" && echo yes || echo no)"
vm_fact "mf1 device_del -> DEVICE_DELETED" "$(tail -n1 <<<"$out")"
for ((i = 0; i < 100; i++)); do
    [ "$(vm_qemu_fds_on q "^/dev/vfio/$g\$")" -eq 0 ] && break
    sleep 0.05
done
vm_expect "QEMU closed /dev/vfio/$g" 0 "$(vm_qemu_fds_on q "^/dev/vfio/$g\$")"
vm_expect "QEMU holds no device fd" 0 "$(vm_qemu_fds_on q 'vfio-device')"
t0=$(vm_now_ms)
rc=0
out=$(vm_mgr release "$domain" "$VM_MF1") || rc=$?
echo "$out"
t1=$(vm_now_ms)
vm_expect "release of mf1 succeeds" 0 "$rc"
vm_fact "release of the last function: tracked after it" \
    "mf0=$(vm_mgr_tracked "$out" "$VM_MF0") mf1=$(vm_mgr_tracked "$out" "$VM_MF1") ($((t1 - t0)) ms)"
runs=$(vm_mgr_give_back_until 50 "${pair[@]}") || true
vm_fact "give-back runs until both were given back" "$runs ($(($(vm_now_ms) - t0)) ms after the release)"
vm_expect "both back on e1000e" "$VM_MF0=e1000e $VM_MF1=e1000e" "$(vm_drivers "${pair[@]}")"
vm_expect "driver_override restored" "(null) (null) " "$(overrides)"
vm_expect "nothing tracked any more" "" "$(vm_mgr reconcile)"
vm_expect "/dev/vfio/$g gone" absent "$(node)"
vm_expect "kernel logs no trouble about the pair" "" "$(vm_kernel_trouble mg-del1 "${pair[@]}")"
vm_fact "dmesg from mf1's device_del to e1000e" "$(vm_dmesg_since mg-del1 | tr '\n' '|')"

vm_qemu_stop q
q_pid=
vm_done
