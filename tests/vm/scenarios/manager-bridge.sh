#!/usr/bin/env bash
# VM tier scenario: the manager on a group with a bridge (the two e1000
# behind the pcie-pci-bridge, one IOMMU group with the bridge).  Assigning
# one e1000 is refused naming the other (not the bridge, which makes no
# group non-viable); assigning both works and leaves the bridge as it is;
# a VFIO user can then take the group; after release both are back on
# e1000 and the bridge is still untouched.
# shellcheck disable=SC2154 # h_pid, h_out: set by vm_holder_start
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
vm_discover
vm_mgr_init manager-bridge || { echo "SKIP: $VM_MGR_TOOL was not built"; exit 77; }
[ -x "$VM_HOLDER" ] || { echo "SKIP: $VM_HOLDER was not built"; exit 77; }

domain=bridge
pair=("$VM_BR0" "$VM_BR1")
g=$(vm_group "$VM_BR0")

# shellcheck disable=SC2317 # called by the trap
cleanup() {
    vm_mgr_cleanup "$domain" "${pair[@]}"
}
trap cleanup EXIT

has() { grep -qF -- "$2" <<<"$1" && echo yes || echo no; }
# The bridge as the kernel shows it: driver, driver_override, group.
bridge() {
    local d
    d=$(vm_driver "$VM_PCIBR")
    echo "driver=${d:-none} override=$(cat "$VM_SYS/devices/$VM_PCIBR/driver_override") group=$(vm_group "$VM_PCIBR")"
}
overrides() { cat "$VM_SYS/devices/$VM_BR0/driver_override" "$VM_SYS/devices/$VM_BR1/driver_override" | tr '\n' ' '; }

before=$(bridge)
vm_fact "bridge before" "$before"
for a in "$VM_PCIBR" "${pair[@]}"; do
    vm_fact "reset_method $a" "$(cat "$VM_SYS/devices/$a/reset_method" 2>/dev/null || echo '(none)')"
done
vm_expect "the bridge is in the e1000s' group" "$g" "$(vm_group "$VM_PCIBR")"

vm_log "--- one e1000 alone is refused, naming the other"
vm_mgr_xml /tmp/$domain-one.xml "$domain" "$VM_BR0"
rc=0
out=$(vm_mgr prepare "$domain" /tmp/$domain-one.xml) || rc=$?
echo "$out"
vm_expect "prepare fails" 1 "$rc"
vm_expect "the message names the other e1000" yes "$(has "$out" "$VM_BR1 (e1000)")"
vm_expect "the message does not name the bridge" no "$(has "$out" "$VM_PCIBR")"
vm_expect "nothing moved" "$VM_BR0=e1000 $VM_BR1=e1000" "$(vm_drivers "${pair[@]}")"

vm_log "--- both e1000"
vm_mgr_xml /tmp/$domain.xml "$domain" "${pair[@]}"
vm_mark mb-prepare
rc=0
out=$(vm_mgr prepare "$domain" /tmp/$domain.xml) || rc=$?
echo "$out"
vm_expect "prepare of both succeeds" 0 "$rc"
vm_expect "br0 active" "active $domain" "$(vm_mgr_tracked "$out" "$VM_BR0")"
vm_expect "br1 active" "active $domain" "$(vm_mgr_tracked "$out" "$VM_BR1")"
vm_expect "the bridge is not tracked" untracked "$(vm_mgr_tracked "$out" "$VM_PCIBR")"
vm_expect "both on vfio-pci" "$VM_BR0=vfio-pci $VM_BR1=vfio-pci" "$(vm_drivers "${pair[@]}")"
vm_expect "the bridge stays as it was" "$before" "$(bridge)"
# What the give-back's reset will meet: reset_method is probed when the
# device is enumerated, so the first e1000 found alone on the bridge's bus
# may list "bus" though it has a sibling now.
for a in "${pair[@]}"; do
    vm_fact "reset of $a on vfio-pci (sibling on the bus)" "$(vm_try 1 "$VM_SYS/devices/$a/reset")"
done
out=$("$VM_HOLDER" --exit "${pair[@]}" 2>&1 | tr '\n' ';') || true
vm_fact "a VFIO user takes the bridge group" "$out"
vm_expect "the group is viable for a VFIO user" yes "$(has "$out" ";ready;")"

vm_log "--- release"
rc=0
out=$(vm_mgr release-domain "$domain") || rc=$?
echo "$out"
vm_expect "release-domain succeeds" 0 "$rc"
runs=$(vm_mgr_give_back_until 50 "${pair[@]}") || true
vm_fact "bridge group: give-back runs after the release" "$runs"
vm_expect "both back on e1000" "$VM_BR0=e1000 $VM_BR1=e1000" "$(vm_drivers "${pair[@]}")"
vm_expect "driver_override restored" "(null) (null) " "$(overrides)"
vm_expect "nothing tracked any more" "" "$(vm_mgr reconcile)"
vm_expect "the bridge stays as it was" "$before" "$(bridge)"
vm_expect "kernel logs no trouble" "" "$(vm_kernel_trouble mb-prepare "$VM_PCIBR" "${pair[@]}")"
vm_fact "dmesg of the bridge group's round trip" "$(vm_dmesg_since mb-prepare | tr '\n' '|')"

vm_done
