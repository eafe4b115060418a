#!/usr/bin/env bash
# VM tier scenario (issue 8, 2): destroy of a guest holding every test
# device, the basic way (before the parallel teardown): the nested QEMU is
# killed (SIGTERM, SIGKILL after a grace), the domain is released and the
# pending groups are given back until done.  Every device must end on its
# original driver, with its driver_override cleared and nothing tracked.
#
# (A second round with SIGKILL and release-domain without waiting for QEMU
# found nothing more: mgr-tool starts long after the killed QEMU is gone.
# The parallel teardown will have its own scenario.)
# shellcheck disable=SC2154 # q_pid: set by vm_qemu_start
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
vm_discover
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
vm_mgr_init manager-destroy || { echo "SKIP: $VM_MGR_TOOL was not built"; exit 77; }

domain=destroy
all=("${VM_DEVICES[@]}")
q_pid=
drv() { local d; d=$(vm_driver "$1"); echo "${d:-none}"; }
bridge_driver=$(drv "$VM_PCIBR")

# shellcheck disable=SC2317 # called by the trap
cleanup() {
    [ -z "$q_pid" ] || vm_qemu_stop q
    vm_mgr_cleanup "$domain" "${all[@]}"
}
trap cleanup EXIT

# use ADDR...: the devices (devs) and groups of the next round.
use() {
    local a g
    devs=("$@")
    groups=()
    for a in "${devs[@]}"; do
        g=$(vm_group "$a")
        [[ " ${groups[*]} " == *" $g "* ]] || groups+=("$g")
    done
    vm_mgr_xml "/tmp/$domain.xml" "$domain" "${devs[@]}"
}

nodes() {
    local n out=()
    for n in "${groups[@]}"; do [ -e "/dev/vfio/$n" ] && out+=("$n"); done
    echo "${out[*]}"
}
overrides() {
    local a
    for a in "${devs[@]}"; do cat "$VM_SYS/devices/$a/driver_override"; done | sort -u | tr '\n' ' '
}

# Prepare the devices, start the nested QEMU with all of them.
# shellcheck disable=SC2054 # commas are QEMU's
start_guest() {
    local out rc=0 a i args=(-device pcie-root-port,id=rp4,chassis=5
                             -device pcie-root-port,id=rp5,chassis=6)
    out=$(vm_mgr prepare "$domain" /tmp/$domain.xml) || rc=$?
    echo "$out"
    vm_expect "prepare of every device" "0 ${#devs[@]}" "$rc $(grep -c " active $domain " <<<"$out" || true)"
    vm_expect "every device on vfio-pci" "${#devs[@]}" \
        "$(vm_drivers "${devs[@]}" | tr ' ' '\n' | grep -c '=vfio-pci$' || true)"
    vm_expect "the bridge keeps its driver" "$bridge_driver" "$(drv "$VM_PCIBR")"
    for i in "${!devs[@]}"; do
        a=${devs[i]}
        args+=(-device "vfio-pci,host=$a,bus=rp$i,id=hd$i")
    done
    t0=$(vm_now_ms)
    vm_qemu_start q "${args[@]}"
    vm_fact "nested QEMU with ${#devs[@]} devices up after (ms)" "$(($(vm_now_ms) - t0))"
    vm_expect "QEMU holds every group" "${#groups[@]}" "$(vm_qemu_fds_on q '^/dev/vfio/[0-9]+$')"
    vm_expect "QEMU holds a device fd per device" "${#devs[@]}" "$(vm_qemu_fds_on q 'vfio-device')"
}

# The end state: everything back where it was.
check_back() {
    vm_expect "every device on its native driver" "$(vm_native_drivers "${devs[@]}")" \
        "$(vm_drivers "${devs[@]}")"
    vm_expect "driver_override cleared" "(null) " "$(overrides)"
    vm_expect "nothing tracked any more" "" "$(vm_mgr reconcile)"
    vm_expect "no /dev/vfio/N left" "" "$(nodes)"
    vm_expect "the bridge keeps its driver" "$bridge_driver" "$(drv "$VM_PCIBR")"
    vm_expect "kernel logs no trouble" "" "$(vm_kernel_trouble "$1" "${devs[@]}")"
}

vm_log "--- destroy: SIGTERM, SIGKILL after 5 s, release-domain, give-back"
use "${all[@]}"
start_guest
vm_mark md-term
t0=$(vm_now_ms)
kill -TERM "$q_pid"
how=SIGTERM
vm_wait_gone "$q_pid" 5 || { how=SIGKILL; kill -KILL "$q_pid"; }
wait "$q_pid" 2>/dev/null || true
q_pid=
t1=$(vm_now_ms)
vm_fact "destroy: QEMU gone after (ms)" "$((t1 - t0)) ($how)"
rc=0
out=$(vm_mgr release-domain "$domain") || rc=$?
echo "$out"
t2=$(vm_now_ms)
vm_expect "release-domain succeeds" 0 "$rc"
vm_fact "destroy: still tracked after release-domain" "$(grep -c '^0000:' <<<"$out" || true) ($((t2 - t1)) ms)"
runs=$(vm_mgr_give_back_until 100 "${devs[@]}") || true
t3=$(vm_now_ms)
vm_fact "destroy: give-back runs until done" "$runs ($((t3 - t2)) ms; kill to all back $((t3 - t0)) ms)"
check_back md-term
vm_fact "dmesg during the destroy" "$(vm_dmesg_since md-term | tr '\n' '|')"

vm_done
