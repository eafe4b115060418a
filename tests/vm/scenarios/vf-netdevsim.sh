#!/usr/bin/env bash
# SR-IOV VF settings through libnl on a real kernel: netdevsim VFs get a
# MAC and a VLAN from their PF, and get back exactly what they had.
set -euo pipefail
. "$HD_SRCDIR/tests/vm/guest-lib.sh"

tool=$HD_BUILDDIR/tests/security/vfnet-tool
[ -x "$tool" ] || { echo "SKIP: $tool not built"; exit 77; }
if [ ! -d /sys/bus/netdevsim ]; then
    modprobe netdevsim 2>/dev/null || true
fi
[ -w /sys/bus/netdevsim/new_device ] || { echo "SKIP: no netdevsim in this kernel"; exit 77; }

id=$((RANDOM % 1000 + 100))
echo "$id 1" >/sys/bus/netdevsim/new_device
trap 'echo "$id" >/sys/bus/netdevsim/del_device 2>/dev/null || true' EXIT
dev=/sys/bus/netdevsim/devices/netdevsim$id
for _ in $(seq 50); do [ -d "$dev/net" ] && [ -n "$(ls "$dev/net")" ] && break; sleep 0.1; done
pf=$(ls "$dev/net" | head -n1)
echo 2 >"$dev/sriov_numvfs"
ip link set "$pf" up || true

before=$("$tool" get "$pf" 1)
echo "VF 1 of $pf before: $before"
"$tool" set "$pf" 1 52:54:00:aa:bb:cc 42
vm_expect "vf set" "52:54:00:aa:bb:cc 42" "$("$tool" get "$pf" 1)"
vm_expect "ip link sees it" yes \
    "$(ip link show "$pf" | grep -q 'vf 1 .*52:54:00:aa:bb:cc, vlan 42' && echo yes || echo no)"
vm_expect "other VF untouched" 0 "$("$tool" get "$pf" 0 | cut -d' ' -f2)"

# shellcheck disable=SC2086
"$tool" set "$pf" 1 $before
vm_expect "vf restored" "$before" "$("$tool" get "$pf" 1)"
vm_done
