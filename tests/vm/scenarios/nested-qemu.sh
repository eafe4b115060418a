#!/usr/bin/env bash
# shellcheck disable=SC2154 # q_pid, q_qmp: set by vm_qemu_start
# VM tier scenario: a real (nested, TCG) QEMU as the VFIO user.  Measures
# what hostdev's release detection relies on: which fds QEMU holds, when
# DEVICE_DELETED comes after device_del, and whether the group fd is
# already closed by then; and that killing QEMU frees everything.
set -euo pipefail

# shellcheck source=tests/vm/guest-lib.sh
. "$HD_SRCDIR/tests/vm/guest-lib.sh"
vm_discover

command -v qemu-system-x86_64 >/dev/null || { echo "no qemu-system-x86_64"; exit 77; }
dev=$VM_NIC2
g=$(vm_group "$dev")
has_group_fd() { vm_fds "$1" | grep -x "/dev/vfio/$g" >/dev/null && echo yes || echo no; }
device_fds() { vm_fds "$1" | grep -c 'vfio-device' || true; }

vm_fact "nested qemu" "$(qemu-system-x86_64 --version | sed -n 1p)"
vm_expect "nic2 to vfio-pci" ok "$(vm_bind_vfio "$dev" && echo ok)"

t0=$(vm_now_ms)
vm_qemu_start q
vm_fact "nested qemu up after (ms)" "$(($(vm_now_ms) - t0))"

echo "--- device_add"
r=$(vm_qmp q device_add "{\"driver\": \"vfio-pci\", \"host\": \"$dev\", \"bus\": \"rp0\", \"id\": \"hd0\"}")
vm_expect "device_add" "{}" "$r"
vm_expect "QEMU holds /dev/vfio/$g" yes "$(has_group_fd "$q_pid")"
vm_fact "QEMU's vfio fds with one device" \
    "$(vm_fds "$q_pid" | grep -E 'vfio' | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
vm_expect "one device fd" 1 "$(device_fds "$q_pid")"

echo "--- device_del"
out=$(vm_qmp q device_del '{"id": "hd0"}' --wait-event DEVICE_DELETED --timeout 30)
at_event_group=$(has_group_fd "$q_pid")
at_event_dev=$(device_fds "$q_pid")
vm_fact "device_del -> DEVICE_DELETED" "$(echo "$out" | tail -n1)"
vm_expect "DEVICE_DELETED received" yes "$(echo "$out" | grep '^event DEVICE_DELETED' >/dev/null && echo yes || echo no)"
vm_fact "at DEVICE_DELETED: group fd / device fds" "$at_event_group / $at_event_dev"
for ((i = 0; i < 100; i++)); do
    [ "$(has_group_fd "$q_pid")" = no ] && break
    sleep 0.05
done
vm_fact "group fd closed after DEVICE_DELETED (polls of 50 ms)" "$i"
vm_expect "QEMU closed the group once its last device is gone" no "$(has_group_fd "$q_pid")"
vm_expect "no device fd left" 0 "$(device_fds "$q_pid")"
r=$(vm_try "$dev" "$VM_SYS/drivers/vfio-pci/unbind")
vm_expect "unbind does not block after DEVICE_DELETED" ok "$r"
vm_expect "host driver binds back" ok "$(vm_bind_native "$dev" && echo ok)"

echo "--- QEMU killed with the device attached"
vm_expect "nic2 to vfio-pci" ok "$(vm_bind_vfio "$dev" && echo ok)"
r=$(vm_qmp q device_add "{\"driver\": \"vfio-pci\", \"host\": \"$dev\", \"bus\": \"rp1\", \"id\": \"hd1\"}")
vm_expect "device_add again" "{}" "$r"
t0=$(vm_now_ms)
kill -KILL "$q_pid"
wait "$q_pid" 2>/dev/null || true
t1=$(vm_now_ms)
vm_fact "SIGKILL of QEMU: dead after (ms)" "$((t1 - t0))"
vm_expect "group free after QEMU died" released "$("$VM_HOLDER" --exit "$dev" 2>&1 | tail -n1)"
vm_expect "host driver binds back" ok "$(vm_bind_native "$dev" && echo ok)"

vm_done
