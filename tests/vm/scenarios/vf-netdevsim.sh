#!/usr/bin/env bash
# SR-IOV VF settings through libnl on a real kernel: netdevsim VFs get a
# MAC and a VLAN from their PF, and get back exactly what they had.  The
# checks read the PF's "vf N" lines of `ip link show` (iproute2), not
# hostdev's own reading.  Debian's kernel has no netdevsim: the initramfs
# brings one built from linux-source (tests/vm/build-netdevsim.sh).
set -euo pipefail
. "$HD_SRCDIR/tests/vm/guest-lib.sh"

tool=$HD_BUILDDIR/tests/security/vfnet-tool
[ -x "$tool" ] || { echo "SKIP: $tool not built"; exit 77; }
if [ ! -d /sys/bus/netdevsim ]; then
    modprobe netdevsim 2>/dev/null || true
fi
if [ ! -w /sys/bus/netdevsim/new_device ]; then
    built=$HD_BUILDDIR/tests/vm/cache/netdevsim-$(uname -r)
    if [ -f "$built/reason" ]; then
        echo "SKIP: no netdevsim in kernel $(uname -r) and none built: $(cat "$built/reason")"
        exit 77
    fi
    if [ -f "$built/build.log" ]; then
        echo "FAIL: the netdevsim built for $(uname -r) failed to build or to load" \
             "(dmesg.txt in the results):"
        tail -n 20 "$built/build.log"
        exit 1
    fi
    echo "SKIP: no netdevsim in kernel $(uname -r)"
    exit 77
fi
vm_fact netdevsim.taint "$(</proc/sys/kernel/tainted)"

id=$((RANDOM % 1000 + 100))
echo "$id 1" >/sys/bus/netdevsim/new_device
trap 'echo "$id" >/sys/bus/netdevsim/del_device 2>/dev/null || true' EXIT
dev=/sys/bus/netdevsim/devices/netdevsim$id
for _ in $(seq 50); do [ -d "$dev/net" ] && [ -n "$(ls "$dev/net")" ] && break; sleep 0.1; done
pf=$(find "$dev/net" -mindepth 1 -maxdepth 1 -printf '%f\n' | sed -n 1p)
echo 2 >"$dev/sriov_numvfs"
vm_expect "sriov_numvfs" 2 "$(<"$dev/sriov_numvfs")"
ip link set "$pf" up

# "MAC VLAN" of VF $1 from the PF's `ip link show` line:
#     vf 1     link/ether 52:54:00:aa:bb:cc brd ff:ff:ff:ff:ff:ff, vlan 42, ...
# ("vlan" is absent when the VF has none).  Bash matching, not grep and
# sed: every process costs about half a second in the guest.
ip_vf() {
    local line
    while IFS= read -r line; do
        [[ $line =~ ^[[:space:]]+vf\ $1\ .*link/ether\ ([0-9a-f:]+) ]] || continue
        local mac=${BASH_REMATCH[1]} vlan=0
        [[ $line =~ ,\ vlan\ ([0-9]+) ]] && vlan=${BASH_REMATCH[1]}
        echo "$mac $vlan"
        return
    done <<<"$(ip link show "$pf")"
    echo "no vf $1"
}
ip link show "$pf"

# VF 1 starts with an administrator's setting made with iproute2; VF 0 with
# none (all zero).
ip link set "$pf" vf 1 mac 02:00:00:00:01:01 vlan 7
vm_expect "ip link: VF 1 set by hand" "02:00:00:00:01:01 7" "$(ip_vf 1)"
vm_expect "ip link: VF 0 unset" "00:00:00:00:00:00 0" "$(ip_vf 0)"

for vf in 1 0; do
    saved=$("$tool" get "$pf" "$vf")
    vm_expect "vfnet-tool saves VF $vf as ip link shows it" "$(ip_vf "$vf")" "$saved"
    "$tool" set "$pf" "$vf" 52:54:00:aa:bb:c$vf 4$vf
    vm_expect "ip link: VF $vf set" "52:54:00:aa:bb:c$vf 4$vf" "$(ip_vf "$vf")"
    vm_expect "vfnet-tool reads VF $vf back" "52:54:00:aa:bb:c$vf 4$vf" "$("$tool" get "$pf" "$vf")"
    other=$((1 - vf))
    vm_expect "ip link: VF $other untouched" \
        "$([ "$other" = 1 ] && echo "02:00:00:00:01:01 7" || echo "00:00:00:00:00:00 0")" \
        "$(ip_vf "$other")"
    # shellcheck disable=SC2086 # "MAC VLAN"
    "$tool" set "$pf" "$vf" $saved
    vm_expect "ip link: VF $vf restored" "$saved" "$(ip_vf "$vf")"
done
vm_expect "ip link: VF 1 back to the hand-made setting" "02:00:00:00:01:01 7" "$(ip_vf 1)"
vm_expect "ip link: VF 0 back to none" "00:00:00:00:00:00 0" "$(ip_vf 0)"

# What the PF refuses is an error (printed), and changes nothing.
outcome() { if "$@" >/dev/null; then echo ok; else echo fail; fi; }
vm_expect "no VF 2: get fails" fail "$(outcome "$tool" get "$pf" 2)"
vm_expect "no VF 2: set fails" fail "$(outcome "$tool" set "$pf" 2 52:54:00:00:00:02 2)"
vm_expect "multicast MAC refused" fail "$(outcome "$tool" set "$pf" 1 01:00:5e:00:00:01 9)"
vm_expect "ip link: VF 1 unchanged by the refused set" "02:00:00:00:01:01 7" "$(ip_vf 1)"

# Only the MAC and the VLAN id are saved (docs/security.rst): a QoS and an
# 802.1ad protocol come back as QoS 0 and 802.1Q.  Recorded, not checked.
ip link set "$pf" vf 1 vlan 7 qos 3 proto 802.1ad
vm_fact netdevsim.vf-before "$(ip link show "$pf" | grep -E '^[[:space:]]+vf 1 ')"
saved=$("$tool" get "$pf" 1)
"$tool" set "$pf" 1 52:54:00:aa:bb:c1 41
# shellcheck disable=SC2086
"$tool" set "$pf" 1 $saved
vm_fact netdevsim.vf-restored "$(ip link show "$pf" | grep -E '^[[:space:]]+vf 1 ')"
vm_done
