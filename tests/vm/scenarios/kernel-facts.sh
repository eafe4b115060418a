#!/usr/bin/env bash
# VM tier scenario: the kernel semantics the simulated host models
# (docs/simhost.rst, "Kernel semantics modelled"), measured on the real
# kernel.  Every measurement goes to facts.txt in the results; the checks
# pin what docs/vm-tier.rst records, so a kernel that behaves differently
# fails here first.
# shellcheck disable=SC2154 # h*_out, h*_pid: set by vm_holder_start
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
vm_discover

sys=$VM_SYS
ov() { cat "$sys/devices/$1/driver_override"; }
drv() { local d; d=$(vm_driver "$1"); echo "${d:-none}"; }
node() { if [ -e "/dev/vfio/$1" ]; then echo present; else echo absent; fi; }
names() {
    local f list=()
    for f in "$1"/*; do [ -e "$f" ] && list+=("${f##*/}"); done
    echo "${list[*]}"
}
# The holder's output (stdout), whatever its exit status.
hold() { "$VM_HOLDER" "$@" 2>/dev/null || true; }
holder_line() { grep -m1 "^$2" "$1" || echo "(none)"; }

: >"$VM_FACTS"
vm_fact kernel "$(uname -r)"
vm_fact devices "nic1=$VM_NIC1 nic2=$VM_NIC2 mf=$VM_MF0,$VM_MF1 bridge=$VM_PCIBR" \
    "behind-bridge=$VM_BR0,$VM_BR1"

g_nic1=$(vm_group "$VM_NIC1")
g_nic2=$(vm_group "$VM_NIC2")
g_mf=$(vm_group "$VM_MF0")
g_br=$(vm_group "$VM_BR0")

echo "--- groups"
for g in /sys/kernel/iommu_groups/*; do
    vm_fact "iommu_group ${g##*/}" "$(names "$g/devices")"
done
vm_expect "nic1 alone in its group" "$VM_NIC1" "$(names /sys/kernel/iommu_groups/"$g_nic1"/devices)"
vm_expect "nic2 alone in its group" "$VM_NIC2" "$(names /sys/kernel/iommu_groups/"$g_nic2"/devices)"
vm_expect "multifunction pair in one group" "$g_mf" "$(vm_group "$VM_MF1")"
vm_expect "bridge group: bridge + both e1000" "$VM_PCIBR $VM_BR0 $VM_BR1" \
    "$(names /sys/kernel/iommu_groups/"$g_br"/devices)"
vm_fact "pcie-pci-bridge driver" "$(drv "$VM_PCIBR")"
vm_fact "root port driver" "$(drv "$(basename "$(readlink -f "$sys/devices/$VM_NIC1/..")")")"

echo "--- initial state"
vm_fact "/dev/vfio at start" "$(names /dev/vfio)"
vm_fact "driver_override when unset" "$(ov "$VM_NIC1")"
vm_expect "driver_override reads (null)" "(null)" "$(ov "$VM_NIC1")"
vm_fact "/dev/iommu (iommufd)" "$([ -e /dev/iommu ] && echo present || echo absent)"
vm_fact "vfio modules" "$(names /sys/module | tr ' ' '\n' | grep -E 'vfio|iommufd' | tr '\n' ' ')"

echo "--- binding nic1 to vfio-pci"
vm_expect "override write" ok "$(vm_try vfio-pci "$sys/devices/$VM_NIC1/driver_override")"
vm_expect "override alone does not rebind" e1000e "$(drv "$VM_NIC1")"
r=$(vm_try "$VM_NIC1" "$sys/drivers_probe")
vm_fact "drivers_probe on a bound device" "write=$r driver=$(drv "$VM_NIC1")"
vm_expect "drivers_probe leaves a bound device alone" e1000e "$(drv "$VM_NIC1")"
r=$(vm_try "$VM_NIC1" "$sys/drivers/vfio-pci/bind")
vm_fact "bind to vfio-pci while bound to e1000e" "write=$r driver=$(drv "$VM_NIC1")"
vm_expect "bind while bound" EBUSY "$r"
r=$(vm_try "$VM_NIC1" "$sys/drivers/vfio-pci/unbind")
vm_fact "unbind from a driver it is not bound to" "write=$r"
vm_expect "unbind from the wrong driver" ENODEV "$r"
vm_expect "unbind e1000e" ok "$(vm_try "$VM_NIC1" "$sys/drivers/e1000e/unbind")"
vm_expect "driverless after unbind" none "$(drv "$VM_NIC1")"
vm_expect "no group node while driverless" absent "$(node "$g_nic1")"
r=$(vm_try "$VM_NIC1" "$sys/drivers/e1000e/bind")
vm_fact "bind e1000e while override=vfio-pci" "write=$r driver=$(drv "$VM_NIC1")"
vm_expect "bind a driver other than the override" ENODEV "$r"
vm_expect "drivers_probe binds the override" ok "$(vm_try "$VM_NIC1" "$sys/drivers_probe")"
vm_expect "nic1 on vfio-pci" vfio-pci "$(drv "$VM_NIC1")"
vm_expect "/dev/vfio/N appears" present "$(node "$g_nic1")"
vm_fact "/dev/vfio/$g_nic1 mode" "$(stat -c '%A %t:%T' "/dev/vfio/$g_nic1")"
vfiodev=$(names "$sys/devices/$VM_NIC1/vfio-dev")
vm_fact "vfio-dev/ under the device" "${vfiodev:-absent}"
vm_fact "/dev/vfio/devices (cdev)" "$(names /dev/vfio/devices)"
r=$(vm_try "$VM_NIC1" "$sys/drivers/vfio-pci/unbind")
vm_expect "unbind vfio-pci" ok "$r"
vm_expect "/dev/vfio/N goes with the last vfio-pci member" absent "$(node "$g_nic1")"
vm_expect "vfio-pci/bind with override vfio-pci" ok "$(vm_try "$VM_NIC1" "$sys/drivers/vfio-pci/bind")"

echo "--- vfio-pci/bind without driver_override"
vm_expect "unbind nic2" ok "$(vm_try "$VM_NIC2" "$sys/drivers/e1000e/unbind")"
r=$(vm_try "$VM_NIC2" "$sys/drivers/vfio-pci/bind")
vm_fact "vfio-pci/bind with no override (no ids)" "write=$r driver=$(drv "$VM_NIC2")"
vm_expect "vfio-pci/bind without override" ENODEV "$r"

echo "--- driver_override none"
vm_expect "override none" ok "$(vm_try none "$sys/devices/$VM_NIC2/driver_override")"
r=$(vm_try "$VM_NIC2" "$sys/drivers_probe")
vm_fact "drivers_probe with override none" "write=$r driver=$(drv "$VM_NIC2")"
vm_expect "override none: stays driverless" none "$(drv "$VM_NIC2")"
vm_expect "override unknown driver" ok "$(vm_try no-such-driver "$sys/devices/$VM_NIC2/driver_override")"
r=$(vm_try "$VM_NIC2" "$sys/drivers_probe")
vm_fact "drivers_probe with override no-such-driver" "write=$r driver=$(drv "$VM_NIC2")"
vm_expect "override unknown: stays driverless" none "$(drv "$VM_NIC2")"
vm_expect "clear override" ok "$(vm_try $'\n' "$sys/devices/$VM_NIC2/driver_override")"
vm_expect "cleared override reads (null)" "(null)" "$(ov "$VM_NIC2")"
vm_expect "drivers_probe: native driver" ok "$(vm_try "$VM_NIC2" "$sys/drivers_probe")"
vm_expect "nic2 back on e1000e" e1000e "$(drv "$VM_NIC2")"

echo "--- exclusive group open"
vm_holder_start h1 --no-container --group "$g_nic1" || true
vm_expect "first open of /dev/vfio/$g_nic1" "group $g_nic1 open" "$(holder_line "$h1_out" "group $g_nic1 open")"
vm_fact "status of an idle viable group" "$(holder_line "$h1_out" "group $g_nic1 status")"
r=$(hold --no-container --exit --group "$g_nic1" | grep '^error' || echo "error none")
vm_fact "second open of /dev/vfio/N" "$r"
vm_expect "second open fails" "error open-group EBUSY" "$r"
vm_holder_stop h1
r=$(hold --exit "$VM_NIC1" | grep -x ready || true)
vm_expect "open again after close" ready "$r"
r=$(hold --exit --group "$g_nic1" | tr '\n' ';')
vm_fact "group+container with no device fd" "$r"

echo "--- group nodes and viability (multifunction pair)"
vm_expect "mf0 to vfio-pci" ok "$(vm_bind_vfio "$VM_MF0" && echo ok)"
vm_expect "/dev/vfio/N with the first vfio-pci member" present "$(node "$g_mf")"
out=$(hold --no-container --exit --group "$g_mf" | tr '\n' ';')
vm_fact "open non-viable group (mf1 on e1000e)" "$out"
vm_expect "open of a non-viable group succeeds" "group $g_mf open;group $g_mf status viable=0 container-set=0;ready;released;" "$out"
out=$(hold --exit "$VM_MF0" | tail -n1)
vm_fact "holder (as QEMU) on non-viable group" "$out"
out=$(hold --force --exit "$VM_MF0" | grep '^error' || echo "error none")
vm_fact "SET_CONTAINER on a non-viable group" "$out"
vm_expect "SET_CONTAINER on non-viable group" "error set-container EPERM" "$out"
vm_expect "mf1 to vfio-pci" ok "$(vm_bind_vfio "$VM_MF1" && echo ok)"
out=$(hold --no-container --exit --group "$g_mf" | grep status)
vm_expect "viable with both on vfio-pci" "group $g_mf status viable=1 container-set=0" "$out"
vm_expect "unbind mf0" ok "$(vm_try "$VM_MF0" "$sys/drivers/vfio-pci/unbind")"
vm_expect "node stays while mf1 is on vfio-pci" present "$(node "$g_mf")"
out=$(hold --no-container --exit --group "$g_mf" | grep status)
vm_expect "viable with mf0 driverless" "group $g_mf status viable=1 container-set=0" "$out"
vm_expect "unbind mf1" ok "$(vm_try "$VM_MF1" "$sys/drivers/vfio-pci/unbind")"
vm_expect "node goes with the last member" absent "$(node "$g_mf")"
vm_expect "mf0 back to vfio" ok "$(vm_try "$VM_MF0" "$sys/drivers_probe")"
vm_expect "mf1 back to vfio" ok "$(vm_try "$VM_MF1" "$sys/drivers_probe")"

echo "--- blocked unbind: holder holds mf0's device fd"
vm_holder_start h2 "$VM_MF0" || { cat "$h2_out"; exit 1; }
vm_mark unbind-blocked
rm -f /tmp/unbind.done
t0=$(vm_now_ms)
# bash -c does the write itself: $writer is the process blocked in write().
bash -c 'printf %s "$1" >"$2"; echo "$?" >/tmp/unbind.rc; date +%s%3N >/tmp/unbind.done' \
    _ "$VM_MF0" "$sys/drivers/vfio-pci/unbind" 2>/dev/null &
writer=$!
sleep 3
vm_expect "unbind blocks while the device fd is open" yes \
    "$([ ! -e /tmp/unbind.done ] && kill -0 "$writer" 2>/dev/null && echo yes || echo no)"
vm_fact "driver link while unbind blocked" "$(drv "$VM_MF0")"
vm_fact "group node while unbind blocked" "$(node "$g_mf")"
vm_fact "writer while blocked" "state=$(awk '{print $3}' "/proc/$writer/stat") wchan=$(cat "/proc/$writer/wchan")"
kill -TERM "$writer" 2>/dev/null || true
sleep 1
if kill -0 "$writer" 2>/dev/null; then
    vm_fact "blocked writer after SIGTERM" "alive state=$(awk '{print $3}' "/proc/$writer/stat")"
else
    vm_fact "blocked writer after SIGTERM" "gone"
fi
t1=$(vm_now_ms)
vm_holder_stop h2
t2=$(vm_now_ms)
for _ in $(seq 100); do kill -0 "$writer" 2>/dev/null || break; sleep 0.05; done
t3=$(vm_now_ms)
wait "$writer" 2>/dev/null || true
vm_fact "unbind blocked for (ms)" "$((t1 - t0)) until the holder was stopped"
vm_fact "holder exit took (ms)" "$((t2 - t1))"
vm_fact "writer returned after holder exit (ms)" "$((t3 - t2)) write-status=$(cat /tmp/unbind.rc 2>/dev/null || echo none)"
vm_expect "mf0 unbound once the holder exits" none "$(drv "$VM_MF0")"
vm_fact "dmesg while unbind blocked" "$(vm_dmesg_since unbind-blocked | tr '\n' '|')"

echo "--- group fd without device fd: is an unbind blocked?"
vm_expect "mf0 back to vfio" ok "$(vm_try "$VM_MF0" "$sys/drivers_probe")"
vm_holder_start h3 --group "$g_mf" || { cat "$h3_out"; exit 1; }
t0=$(vm_now_ms)
rm -f /tmp/unbind.done
bash -c 'printf %s "$1" >"$2"; echo "$?" >/tmp/unbind.rc; date +%s%3N >/tmp/unbind.done' \
    _ "$VM_MF1" "$sys/drivers/vfio-pci/unbind" 2>/dev/null &
writer=$!
for _ in $(seq 50); do [ -e /tmp/unbind.done ] && break; sleep 0.1; done
t1=$(vm_now_ms)
r=blocked
[ -e /tmp/unbind.done ] && r="status $(cat /tmp/unbind.rc)"
vm_fact "unbind with only the group fd open" "write=$r after $((t1 - t0)) ms"
vm_expect "unbind is not blocked by a group fd alone" "status 0" "$r"
if [ "$r" != blocked ]; then
    vm_fact "node after unbinding mf1 (group held)" "$(node "$g_mf")"
    r=$(vm_try "$VM_MF0" "$sys/drivers/vfio-pci/unbind")
    vm_fact "unbind the last member while group held" "write=$r node=$(node "$g_mf")"
    out=$(hold --no-container --exit --group "$g_mf" | tr '\n' ';')
    vm_fact "open the group again while held, no member on vfio" "${out:-failed}"
fi
vm_holder_stop h3
wait "$writer" 2>/dev/null || true
vm_fact "node after holder exit" "$(node "$g_mf")"
vm_bind_native "$VM_MF0" >/dev/null || true
vm_bind_native "$VM_MF1" >/dev/null || true

echo "--- DMA ownership: host driver for a sibling of a held device"
vm_expect "mf0 to vfio" ok "$(vm_bind_vfio "$VM_MF0" && echo ok)"
vm_expect "mf1 to vfio" ok "$(vm_bind_vfio "$VM_MF1" && echo ok)"
vm_holder_start h4 "$VM_MF0" || { cat "$h4_out"; exit 1; }
vm_expect "unbind the unused sibling" ok "$(vm_try "$VM_MF1" "$sys/drivers/vfio-pci/unbind")"
vm_expect "clear override" ok "$(vm_try $'\n' "$sys/devices/$VM_MF1/driver_override")"
vm_mark dma-probe
r=$(vm_try "$VM_MF1" "$sys/drivers_probe")
vm_fact "drivers_probe host driver, group owned" "write=$r driver=$(drv "$VM_MF1")"
vm_fact "dmesg (drivers_probe)" "$(vm_dmesg_since dma-probe | tr '\n' '|')"
vm_expect "drivers_probe refused" EINVAL "$r"
vm_expect "device left without a driver" none "$(drv "$VM_MF1")"
vm_mark dma-bind
r=$(vm_try "$VM_MF1" "$sys/drivers/e1000e/bind")
vm_fact "e1000e/bind, group owned" "write=$r driver=$(drv "$VM_MF1")"
vm_fact "dmesg (bind)" "$(vm_dmesg_since dma-bind | tr '\n' '|')"
vm_expect "bind refused" EBUSY "$r"
out=$(hold --no-container --exit --group "$g_mf" | grep '^error' || echo none)
vm_fact "group status seen by a second opener" "$out"
vm_holder_stop h4
r=$(vm_try "$VM_MF1" "$sys/drivers_probe")
vm_expect "host driver binds once the group is free" "ok e1000e" "$r $(drv "$VM_MF1")"
out=$(hold --no-container --exit --group "$g_mf" | grep status || true)
vm_fact "group with mf1 back on e1000e" "$out"
vm_bind_native "$VM_MF0" >/dev/null

echo "--- an open group fd without a container does not own the group"
vm_expect "mf0 to vfio" ok "$(vm_bind_vfio "$VM_MF0" && echo ok)"
vm_expect "mf1 to vfio" ok "$(vm_bind_vfio "$VM_MF1" && echo ok)"
vm_holder_start h5 --no-container --group "$g_mf" || { cat "$h5_out"; exit 1; }
vm_expect "unbind mf1" ok "$(vm_try "$VM_MF1" "$sys/drivers/vfio-pci/unbind")"
vm_expect "clear override" ok "$(vm_try $'\n' "$sys/devices/$VM_MF1/driver_override")"
r=$(vm_try "$VM_MF1" "$sys/drivers_probe")
vm_fact "host driver for a sibling, group open without container" "write=$r driver=$(drv "$VM_MF1")"
vm_expect "no container, no DMA ownership: the host driver binds" "ok e1000e" "$r $(drv "$VM_MF1")"
vm_holder_stop h5
vm_bind_native "$VM_MF0" >/dev/null

echo "--- release after the holder is killed"
vm_expect "nic1 to vfio" ok "$(vm_bind_vfio "$VM_NIC1" && echo ok)"
vm_holder_start h6 "$VM_NIC1" || { cat "$h6_out"; exit 1; }
t0=$(vm_now_ms)
kill -KILL "$h6_pid"
wait "$h6_pid" 2>/dev/null || true
t1=$(vm_now_ms)
r=no
for ((tries = 1; tries <= 100; tries++)); do
    if [ "$(hold --exit "$VM_NIC1" | tail -n1)" = released ]; then r=yes; break; fi
    sleep 0.05
done
t2=$(vm_now_ms)
vm_fact "SIGKILL of a holder: dead after (ms)" "$((t1 - t0))"
vm_fact "group and device usable again after (ms)" "$((t2 - t1)) (attempt $tries)"
vm_expect "group usable again after SIGKILL" yes "$r"
vm_bind_native "$VM_NIC1" >/dev/null

echo "--- bridge group"
vm_expect "br0 to vfio" ok "$(vm_bind_vfio "$VM_BR0" && echo ok)"
vm_expect "br1 to vfio" ok "$(vm_bind_vfio "$VM_BR1" && echo ok)"
out=$(hold --exit "$VM_BR0" "$VM_BR1" | tr '\n' ';')
vm_fact "hold both e1000 behind the bridge" "$out"
vm_expect "bridge group is viable with a driverless bridge" ready \
    "$(echo "$out" | tr ';' '\n' | grep -x ready || echo no)"
vm_bind_native "$VM_BR0" >/dev/null
vm_bind_native "$VM_BR1" >/dev/null

vm_done
