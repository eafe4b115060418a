#!/usr/bin/env bash
# VM tier scenario (issue 8, 4): hostdevd's cgroup device ACLs on the real
# kernel (cgroup v2: hostdev's BPF device program).  A domain defined with
# a cgroup, its nested QEMU started inside that cgroup, devices assigned and
# detached through hostdevd (hostdevctl).  While a device is assigned a
# process of the cgroup may open its group node (QEMU does, from inside);
# once it left the domain the cgroup gets EPERM for that device number,
# and for /dev/vfio/vfio once the domain has no VFIO device left, while
# processes outside the cgroup (the root cgroup, a sibling) are unaffected.
#
# The cgroup check runs in open() before the driver is asked, so EPERM
# from inside the cgroup against anything else from outside it proves the
# ACL.  A managed device's node vanishes with the give-back (an open then
# says ENOENT, which proves nothing), so the scenario keeps a copy of each
# node (mknod, same device number) and also uses an unmanaged device
# (managed='no', detached with nodedev-detach), whose node stays after the
# release.
#
# The devices of the cgroup checks are first prepared through hostdevd
# (the ACL allows right after the prepare) and taken back with destroy
# (denied again), then hot-plugged through hostdevd (attach-device: the
# hostdev's guest <address> bus N puts it on QEMU's root port pci.N, and
# QEMU opens the nodes from inside the cgroup, which the attach must have
# allowed again) and detached through hostdevd (detach-device: device_del
# by alias, release, give-back).  Devices on QEMU's command line would not
# do: the paused guest never answers the unplug request of a cold-plugged
# device, so device_del times out.  An attach-device without a guest
# address goes to the q35 root bus pcie.0, which takes no hot-plug: QEMU
# refuses it and hostdevd rolls it back (why the address matters).
# shellcheck disable=SC2154 # q_pid, q_qmp, q_hdqmp: set by vm_qemu_start
# shellcheck disable=SC2119 # vm_hd_start's arguments are optional
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
vm_discover
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
vm_hd_init daemon-cgroup || { echo "SKIP: $VM_HOSTDEVD or $VM_HOSTDEVCTL was not built"; exit 77; }
[ -f /sys/fs/cgroup/cgroup.controllers ] || { echo "SKIP: no cgroup2 at /sys/fs/cgroup"; exit 77; }

domain=cg
nic1=$VM_NIC1            # managed
nic2=$VM_NIC2            # unmanaged: nodedev-detach first, stays on vfio-pci
g1=$(vm_group "$nic1")
g2=$(vm_group "$nic2")
gm=$(vm_group "$VM_MF0")
cg=$(vm_cgroup_new hd-daemon-cgroup)
other=$(vm_cgroup_new hd-daemon-cgroup-other)
copy1=/tmp/cg-vfio-$g1
copy2=/tmp/cg-vfio-$g2
q_pid=

# shellcheck disable=SC2317 # called by the trap
cleanup() {
    [ -z "$q_pid" ] || vm_qemu_stop q
    vm_hd_cleanup "$domain" "$nic1" "$nic2" "$VM_MF0" "$VM_MF1"
    rmdir "$cg" "$other" 2>/dev/null || true
    rm -f "$copy1" "$copy2"
}
trap cleanup EXIT

override() { cat "$VM_SYS/devices/$1/driver_override"; }
# where: "cgroup root other" opens of PATH... from the domain's cgroup, the
# root cgroup and a sibling cgroup.
where() { echo "$(vm_open_in "$cg" "$@") | $(vm_open "$@") | $(vm_open_in "$other" "$@")"; }
# parent_buses ADDR...: the name of the bus each device hangs on in QEMU.
parent_buses() {
    local a p buses=()
    for a in "$@"; do
        p=$(vm_qmp q qom-get "{\"path\": \"/machine/peripheral/$(vm_hd_alias "$a")\", \"property\": \"parent_bus\"}" 2>&1) || true
        p=${p//\"/}
        buses+=("${p##*/}")
    done
    echo "${buses[*]}"
}
# in_domain: the devices hostdevd has active in the domain.
in_domain() {
    vm_hd_json "' '.join(sorted(d['address'] for x in r if x['name'] == '$domain' for d in x['devices']))" domains
}

vm_mark dc-start
vm_hd_start || { echo "hostdevd did not start"; exit 1; }
vm_expect "define with the cgroup" ok "$(vm_hdctl define "$domain" --cgroup "$cg" >/dev/null && echo ok)"
vm_expect "before any assignment the cgroup may open /dev/vfio/vfio" ok \
    "$(vm_open_in "$cg" /dev/vfio/vfio)"

vm_log "--- nic2 detached (unmanaged), nic1 and nic2 prepared for $domain"
vm_expect "nodedev-detach nic2" "ok vfio-pci" \
    "$(vm_hdctl nodedev-detach "$nic2" >/dev/null && echo ok) $(vm_driver "$nic2")"
vm_hd_xml /tmp/$domain.xml "$domain" "$nic1" "$nic2=no"
rc=0
vm_hdctl prepare "$domain" /tmp/$domain.xml || rc=$?
vm_expect "prepare" "0 | $nic1 $nic2 | vfio-pci vfio-pci" \
    "$rc | $(in_domain) | $(vm_driver "$nic1") $(vm_driver "$nic2")"
vm_expect "assigned: the cgroup may open both group nodes and the container" "ok ok ok" \
    "$(vm_open_in "$cg" "/dev/vfio/$g1" "/dev/vfio/$g2" /dev/vfio/vfio)"

vm_log "--- destroy before QEMU starts: the attach has to allow them again"
rc=0
out=$(vm_hdctl destroy --no-progress "$domain") || rc=$?
echo "$out"
vm_expect "destroy of the prepared pair: nic1 given back, nic2 stays, the domain empty" \
    "0 | e1000e vfio-pci | []" "$rc | $(vm_driver "$nic1") $(vm_driver "$nic2") | [$(in_domain)]"
vm_expect "denied: the cgroup gets EPERM for nic2's node and the container" "EPERM EPERM" \
    "$(vm_open_in "$cg" "/dev/vfio/$g2" /dev/vfio/vfio)"

vm_log "--- QEMU started inside the cgroup, both devices attached through hostdevd"
t0=$(vm_now_ms)
# Empty root ports named as libvirt names the controllers of index 4 and 5.
VM_QEMU_CGROUP=$cg vm_qemu_start q -device pcie-root-port,id=pci.4,chassis=5,bus=pcie.0 \
    -device pcie-root-port,id=pci.5,chassis=6,bus=pcie.0 || { vm_expect "QEMU starts in the cgroup" up failed; vm_done; }
vm_fact "cgroup: nested QEMU up after (ms)" "$(($(vm_now_ms) - t0))"
vm_expect "QEMU runs in the cgroup" "0::/${cg#/sys/fs/cgroup/}" "$(cat "/proc/$q_pid/cgroup")"
vm_expect "define QMP socket and pid" ok \
    "$(vm_hdctl define "$domain" --qmp "$q_hdqmp" --pid "$q_pid" >/dev/null && echo ok)"
# Guest addresses on bus 4 and 5: device_add on pci.4 and pci.5.  QEMU
# opens the group nodes and the container from inside the cgroup.
vm_hd_xml /tmp/$domain-attach.xml "$domain" "$nic1@4" "$nic2=no@5"
t0=$(vm_now_ms)
rc=0
out=$(vm_hdctl attach-device "$domain" /tmp/$domain-attach.xml) || rc=$?
echo "$out"
vm_fact "cgroup: attach-device of nic1, nic2 on pci.4, pci.5 took (ms)" \
    "$(($(vm_now_ms) - t0)) (status $rc${out:+: $out})"
vm_expect "attach-device with guest addresses" "0 | $nic1 $nic2 | vfio-pci vfio-pci" \
    "$rc | $(in_domain) | $(vm_driver "$nic1") $(vm_driver "$nic2")"
vm_expect "QEMU opened both groups from inside the cgroup" 2 "$(vm_qemu_fds_on q '^/dev/vfio/[0-9]+$')"
vm_expect "QEMU put them on the buses of pci.4 and pci.5" "pci.4 pci.5" "$(parent_buses "$nic1" "$nic2")"
vm_node_copy "/dev/vfio/$g1" "$copy1"
vm_node_copy "/dev/vfio/$g2" "$copy2"
vm_fact "cgroup: device numbers of /dev/vfio/$g1, /dev/vfio/$g2, /dev/vfio/vfio" \
    "$(stat -c '%Hr:%Lr' "/dev/vfio/$g1" "/dev/vfio/$g2" /dev/vfio/vfio | tr '\n' ' ')"
r=$(vm_open_in "$cg" "/dev/vfio/$g1")
vm_fact "cgroup: open of /dev/vfio/$g1 from the cgroup while QEMU holds it" "$r"
vm_expect "held: the cgroup's open is refused by vfio, not by the ACL" EBUSY "$r"

vm_log "--- attach-device without a guest address: QEMU refuses pcie.0, rolled back"
vm_hd_xml /tmp/$domain-mf.xml "$domain" "$VM_MF0" "$VM_MF1"
rc=0
out=$(vm_hdctl attach-device "$domain" /tmp/$domain-mf.xml) || rc=$?
echo "$out"
vm_fact "cgroup: attach-device without a guest address" "status $rc: $out"
vm_expect "refused by QEMU: pcie.0 takes no hot-plug" "1 yes" \
    "$rc $([[ $out == *"Bus 'pcie.0' does not support hotplugging"* ]] && echo yes || echo no)"
vm_expect "a refused attach-device leaves QEMU as it was" 2 "$(vm_qemu_fds_on q '^/dev/vfio/[0-9]+$')"
vm_expect "the pair is back on e1000e, untracked, overrides cleared" \
    "$(vm_native_drivers "$VM_MF0" "$VM_MF1") | $nic1 $nic2 | (null) (null)" \
    "$(vm_drivers "$VM_MF0" "$VM_MF1") | $(in_domain) | $(override "$VM_MF0") $(override "$VM_MF1")"
vm_expect "no /dev/vfio/$gm left" no "$([ -e "/dev/vfio/$gm" ] && echo yes || echo no)"

vm_log "--- detach-device nic1 (managed): given back, its node gone"
vm_hd_xml /tmp/$domain-nic1.xml "$domain" "$nic1"
t0=$(vm_now_ms)
rc=0
out=$(vm_hdctl --json detach-device "$domain" /tmp/$domain-nic1.xml) || rc=$?
echo "$out"
vm_fact "cgroup: detach-device of nic1 took (ms)" "$(($(vm_now_ms) - t0)) ($(tr -d '\n ' <<<"$out"))"
vm_expect "detach-device nic1" 0 "$rc"
vm_expect "nic1 on e1000e, override cleared, node gone, nic2 still in $domain" \
    "e1000e (null) no $nic2" \
    "$(vm_driver "$nic1") $(override "$nic1") $([ -e "/dev/vfio/$g1" ] && echo yes || echo no) $(in_domain)"
r=$(where "$copy1")
vm_fact "cgroup: open of nic1's old device number: cgroup | root | other cgroup" "$r"
vm_expect "nic1's device number: EPERM only inside the cgroup" EPERM "${r%% *}"
vm_expect "outside the cgroup it is not an ACL refusal" no \
    "$([[ ${r#* | } == *EPERM* ]] && echo yes || echo no)"
vm_expect "the cgroup keeps /dev/vfio/vfio while nic2 is assigned" ok "$(vm_open_in "$cg" /dev/vfio/vfio)"

vm_log "--- detach-device nic2 (unmanaged): stays on vfio-pci, its node stays"
vm_hd_xml /tmp/$domain-nic2.xml "$domain" "$nic2=no"
rc=0
out=$(vm_hdctl --json detach-device "$domain" /tmp/$domain-nic2.xml) || rc=$?
echo "$out"
vm_expect "detach-device nic2" 0 "$rc"
vm_expect "nic2 stays on vfio-pci with its node, QEMU closed it, the domain is empty" \
    "vfio-pci yes 0 []" \
    "$(vm_driver "$nic2") $([ -e "/dev/vfio/$g2" ] && echo yes || echo no) $(vm_qemu_fds_on q '^/dev/vfio/[0-9]+$') [$(in_domain)]"
r=$(where "/dev/vfio/$g2" /dev/vfio/vfio)
vm_fact "cgroup: open of /dev/vfio/$g2 and /dev/vfio/vfio: cgroup | root | other cgroup" "$r"
vm_expect "released: EPERM inside the cgroup, both open elsewhere" "EPERM EPERM | ok ok | ok ok" "$r"
vm_expect "the cgroup's QEMU cannot open nic2's group either" EPERM "$(vm_open_in "$cg" "$copy2")"
vm_expect "nothing pending" "tracked 1 pending-groups [] security-pending []" "$(vm_hd_state)"

vm_log "--- nic2 prepared again: the deny becomes an allow; destroy takes it away"
vm_hd_xml /tmp/$domain-nic2.xml "$domain" "$nic2=no"
vm_expect "prepare nic2 again" ok "$(vm_hdctl prepare "$domain" /tmp/$domain-nic2.xml >/dev/null && echo ok)"
vm_expect "assigned again: the cgroup may open it and the container" "ok ok" \
    "$(vm_open_in "$cg" "/dev/vfio/$g2" /dev/vfio/vfio)"
rc=0
out=$(vm_hdctl destroy --no-progress "$domain") || rc=$?
echo "$out"
# An unmanaged device stays on vfio-pci: not a problem.
vm_fact "cgroup: destroy with the unmanaged nic2 assigned" "status $rc: $(tr '\n' ' ' <<<"$out")"
vm_expect "destroy ends QEMU, empties the domain, nic2 stays, no problem" \
    "0 | vfio-pci | 1 device stays" \
    "$rc | $(in_domain)$(vm_driver "$nic2") | $(grep -o '1 device stays' <<<"$out")"
vm_wait_gone "$q_pid" 10 || true
wait "$q_pid" 2>/dev/null || true
vm_expect "QEMU is gone" no "$(kill -0 "$q_pid" 2>/dev/null && echo yes || echo no)"
q_pid=
vm_expect "destroyed: EPERM inside the cgroup, open from the root cgroup" "EPERM EPERM | ok ok" \
    "$(vm_open_in "$cg" "/dev/vfio/$g2" /dev/vfio/vfio) | $(vm_open "/dev/vfio/$g2" /dev/vfio/vfio)"

vm_log "--- nic2 reattached: everything back"
vm_expect "nodedev-reattach nic2" ok "$(vm_hdctl nodedev-reattach "$nic2" >/dev/null && echo ok)"
vm_expect "every device on its native driver" "$(vm_native_drivers "$nic1" "$nic2")" \
    "$(vm_drivers "$nic1" "$nic2")"
vm_expect "driver_override cleared" "(null) (null)" "$(override "$nic1") $(override "$nic2")"
vm_expect "no /dev/vfio/$g1 or /dev/vfio/$g2 left" "" \
    "$(ls "/dev/vfio/$g1" "/dev/vfio/$g2" 2>/dev/null || true)"
vm_expect "nothing tracked, nothing pending" "tracked 0 pending-groups [] security-pending []" \
    "$(vm_hd_state)"
vm_expect "no ACL record left in security.json" 0 \
    "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["records"]))' \
        "$VM_HD_STATE/security.json")"
r=$(where "$copy1" "$copy2")
vm_fact "cgroup: old device numbers at the end: cgroup | root | other cgroup" "$r"
vm_expect "the denies stay: both old numbers EPERM inside the cgroup" "EPERM EPERM" "${r%% | *}"
vm_expect "undefine" ok "$(vm_hdctl undefine "$domain" >/dev/null && echo ok)"
vm_expect "kernel logs no trouble" "" \
    "$(vm_kernel_trouble dc-start "$nic1" "$nic2" "$VM_MF0" "$VM_MF1")"

vm_done
