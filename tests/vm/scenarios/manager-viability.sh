#!/usr/bin/env bash
# VM tier scenario (issue 8, 5): group viability on the real kernel.
#
# First what QEMU itself says when given a function whose sibling sits on
# e1000e (bound to vfio-pci by hand): that is the late failure hostdev
# prevents.  Then assigning one function of the multifunction pair while
# its sibling sits on e1000e fails upfront with hostdev's own message,
# naming the sibling, its driver and the group, and changes nothing.  With
# the whole-group option both are detached (the sibling held on the
# inactive list), QEMU accepts the function, and after device_del and
# release both come back to e1000e.
# shellcheck disable=SC2154 # q_pid: set by vm_qemu_start
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
vm_discover
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
vm_mgr_init manager-viability || { echo "SKIP: $VM_MGR_TOOL was not built"; exit 77; }

domain=viability
pair=("$VM_MF0" "$VM_MF1")
g=$(vm_group "$VM_MF0")
q_pid=

# shellcheck disable=SC2317 # called by the trap
cleanup() {
    [ -z "$q_pid" ] || vm_qemu_stop q
    cp /tmp/q.log "$HD_VM_RESULTS/manager-viability.qemu.log" 2>/dev/null || true
    vm_mgr_cleanup "$domain" "${pair[@]}"
}
trap cleanup EXIT

node() { if [ -e "/dev/vfio/$g" ]; then echo present; else echo absent; fi; }
overrides() { cat "$VM_SYS/devices/$VM_MF0/driver_override" "$VM_SYS/devices/$VM_MF1/driver_override" | tr '\n' ' '; }
has() { grep -qF -- "$2" <<<"$1" && echo yes || echo no; }

vm_qemu_start q

vm_log "--- what QEMU says on its own (mf0 on vfio-pci by hand, mf1 on e1000e)"
vm_expect "mf0 to vfio-pci by hand" ok "$(vm_bind_vfio "$VM_MF0" && echo ok)"
r=$(vm_qmp q device_add "{\"driver\": \"vfio-pci\", \"host\": \"$VM_MF0\", \"bus\": \"rp0\", \"id\": \"late\"}") || true
vm_fact "QEMU's error for a non-viable group" "$r"
vm_expect "QEMU refuses the non-viable group" yes "$(has "$r" "group $g is not viable")"
vm_expect "mf0 back to e1000e" ok "$(vm_bind_native "$VM_MF0" && echo ok)"

vm_log "--- prepare of mf0 alone is refused upfront"
xml=/tmp/$domain.xml
vm_mgr_xml "$xml" "$domain" "$VM_MF0"
vm_mark mv-refused
rc=0
out=$(vm_mgr prepare "$domain" "$xml") || rc=$?
echo "$out"
vm_fact "hostdev's refusal" "$(head -n1 <<<"$out")"
vm_expect "prepare fails" 1 "$rc"
vm_expect "the message names the sibling" yes "$(has "$out" "$VM_MF1")"
vm_expect "the message names its driver" yes "$(has "$out" "e1000e")"
vm_expect "the message says why" yes "$(has "$out" "not be viable")"
vm_expect "the message names the group" yes "$(has "$out" "group $g ")"
vm_expect "it is hostdev's message, not QEMU's" no "$(has "$out" "is not viable")"
vm_expect "nothing moved" "$VM_MF0=e1000e $VM_MF1=e1000e" "$(vm_drivers "${pair[@]}")"
vm_expect "driver_override untouched" "(null) (null) " "$(overrides)"
vm_expect "nothing tracked" "" "$(vm_mgr reconcile)"
vm_expect "no /dev/vfio/$g" absent "$(node)"
vm_expect "the kernel saw nothing" "" "$(vm_dmesg_since mv-refused)"

vm_log "--- prepare of mf0 with the whole group"
rc=0
out=$(vm_mgr prepare "$domain" "$xml" whole-group) || rc=$?
echo "$out"
vm_expect "whole-group prepare succeeds" 0 "$rc"
vm_expect "mf0 active" "active $domain" "$(vm_mgr_tracked "$out" "$VM_MF0")"
vm_expect "mf1 held on the inactive list" "inactive -" "$(vm_mgr_tracked "$out" "$VM_MF1")"
vm_expect "both on vfio-pci" "$VM_MF0=vfio-pci $VM_MF1=vfio-pci" "$(vm_drivers "${pair[@]}")"
r=$(vm_qmp q device_add "{\"driver\": \"vfio-pci\", \"host\": \"$VM_MF0\", \"bus\": \"rp1\", \"id\": \"hd0\"}") || true
vm_expect "QEMU accepts mf0 now" "{}" "$r"
out=$(vm_mgr give-back) || true
vm_expect "the held sibling is not given back while mf0 is active" "given back: 0 | inactive - | vfio-pci" \
    "$(head -n1 <<<"$out") | $(vm_mgr_tracked "$out" "$VM_MF1") | $(vm_driver "$VM_MF1")"

vm_log "--- device_del and release"
vm_mark mv-release
out=$(vm_qmp q device_del '{"id": "hd0"}' --wait-event DEVICE_DELETED --timeout 30) || true
vm_expect "DEVICE_DELETED" yes "$(has "$out" "event DEVICE_DELETED")"
for ((i = 0; i < 100; i++)); do
    [ "$(vm_qemu_fds_on q "^/dev/vfio/$g\$")" -eq 0 ] && break
    sleep 0.05
done
rc=0
out=$(vm_mgr release "$domain" "$VM_MF0") || rc=$?
echo "$out"
vm_expect "release succeeds" 0 "$rc"
runs=$(vm_mgr_give_back_until 50 "${pair[@]}") || true
vm_fact "whole group: give-back runs after the release" "$runs"
vm_expect "both back on e1000e" "$VM_MF0=e1000e $VM_MF1=e1000e" "$(vm_drivers "${pair[@]}")"
vm_expect "driver_override restored" "(null) (null) " "$(overrides)"
vm_expect "nothing tracked any more" "" "$(vm_mgr reconcile)"
vm_expect "kernel logs no trouble" "" "$(vm_kernel_trouble mv-release "${pair[@]}")"

vm_qemu_stop q
q_pid=
vm_done
